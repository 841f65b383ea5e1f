//! The master's push notice: "a new manifest is ready, sync now".

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::signed::{DocKind, Document};

/// A signed nudge from a master to a mirror. It carries no file data: the mirror answers by
/// pulling and verifying the manifest, so a push can only ever cause a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushNotice {
    /// The network's name.
    pub network: String,
    /// The master that sent it.
    pub master: String,
    /// The manifest serial the master holds.
    pub serial: u64,
    /// When it was signed (Unix seconds).
    pub issued_at: i64,
    /// 16 random bytes in hex; with `issued_at` it makes every notice unique.
    pub nonce: String,
    /// A forced sync (the 6-hourly one): the mirror re-checks every file, not only new ones.
    #[serde(default)]
    pub forced: bool,
    /// For a hub: the leaves it relays this very notice to once it has switched to `serial`
    /// (the master signed the list, so the hub may trust it). Empty for every other mirror.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaves: Vec<LeafTarget>,
}

/// A leaf mirror a hub relays a push notice to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafTarget {
    /// The leaf's registered name.
    pub name: String,
    /// Where it takes push notices.
    pub push_url: String,
}

/// Where a mirror reports each sync (`POST`, authorised like its pulls: its pull token, or its
/// identity key's `Vdb-Mirror` signature over `POST` and this path).
pub const SYNC_REPORT_PATH: &str = "/api/v1/syncs";

/// What one sync of a mirror did, as it reports it to the masters: the end-to-end
/// acknowledgement the release timeline shows (who holds which serial, how many bytes it pulled
/// and from where).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// The network.
    pub network: String,
    /// The reporting mirror.
    pub mirror: String,
    /// The serial it serves after the sync.
    pub serial: u64,
    /// `updated` or `up_to_date`.
    pub outcome: String,
    /// Object bytes it downloaded in all.
    pub bytes: u64,
    /// Of those, the bytes that came from hubs.
    #[serde(default)]
    pub hub_bytes: u64,
    /// Where the manifest came from: `master` or `hub:<base URL>`.
    pub source: String,
    /// How long the sync took, in milliseconds.
    pub duration_ms: u64,
    /// For a hub: what became of the push notice it relayed to each leaf.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<RelayOutcome>,
}

/// A hub's relay of one push notice to one leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayOutcome {
    /// The leaf.
    pub leaf: String,
    /// Whether the leaf acknowledged (202).
    pub acked: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, if it was not acknowledged.
    #[serde(default)]
    pub error: Option<String>,
}

impl SyncReport {
    /// The most relay outcomes one report carries (bounded work for the master).
    pub const MAX_RELAYS: usize = 10_000;
}

impl Document for PushNotice {
    const KIND: DocKind = DocKind::Push;
}

/// Why a push notice is refused (after its signature verified).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    /// For another network.
    #[error("push is for network {0:?}")]
    WrongNetwork(String),
    /// Too old or from the future.
    #[error(
        "push issued at {issued_at} is outside the accepted window around now ({now}, ±{window} s)"
    )]
    Stale {
        /// The notice's time.
        issued_at: i64,
        /// The receiver's time.
        now: i64,
        /// The allowed skew.
        window: i64,
    },
    /// Seen before.
    #[error("push nonce {0} was already used (replay refused)")]
    Replay(String),
    /// The nonce is not 32 hex digits.
    #[error("push nonce must be 32 hex digits")]
    BadNonce,
}

/// Remembers recent push nonces so that a captured notice cannot be replayed. Notices older
/// than the window are refused outright, so only the window's nonces need remembering.
#[derive(Debug)]
pub struct ReplayGuard {
    network: String,
    window: i64,
    capacity: usize,
    seen: VecDeque<(i64, String)>,
}

impl ReplayGuard {
    /// A guard for `network` accepting notices within ±`window_secs` of now, remembering at most
    /// `capacity` nonces (older ones are forgotten first; their notices are stale by then).
    pub fn new(network: impl Into<String>, window_secs: i64, capacity: usize) -> Self {
        Self {
            network: network.into(),
            window: window_secs,
            capacity: capacity.max(1),
            seen: VecDeque::new(),
        }
    }

    /// Accepts `notice` (already signature-checked) at time `now`, or says why not.
    pub fn accept(&mut self, notice: &PushNotice, now: i64) -> Result<(), PushError> {
        if notice.network != self.network {
            return Err(PushError::WrongNetwork(notice.network.clone()));
        }
        if notice.issued_at.abs_diff(now) > self.window.unsigned_abs() {
            return Err(PushError::Stale {
                issued_at: notice.issued_at,
                now,
                window: self.window,
            });
        }
        if notice.nonce.len() != 32 || !notice.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PushError::BadNonce);
        }
        while self
            .seen
            .front()
            .is_some_and(|(t, _)| *t < now.saturating_sub(self.window.saturating_mul(2)))
        {
            self.seen.pop_front();
        }
        if self.seen.iter().any(|(_, n)| *n == notice.nonce) {
            return Err(PushError::Replay(notice.nonce.clone()));
        }
        if self.seen.len() == self.capacity {
            self.seen.pop_front();
        }
        self.seen
            .push_back((notice.issued_at, notice.nonce.clone()));
        Ok(())
    }
}

impl PushNotice {
    /// A fresh notice with a random nonce.
    #[cfg(feature = "sign")]
    pub fn new(network: &str, master: &str, serial: u64, now: i64, forced: bool) -> Self {
        use rand_core::RngCore as _;
        let mut nonce = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut nonce);
        Self {
            network: network.to_owned(),
            master: master.to_owned(),
            serial,
            issued_at: now,
            nonce: crate::hex(&nonce),
            forced,
            leaves: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(nonce: &str, at: i64) -> PushNotice {
        PushNotice {
            network: "n".into(),
            master: "a".into(),
            serial: 1,
            issued_at: at,
            nonce: nonce.into(),
            forced: false,
            leaves: Vec::new(),
        }
    }

    #[test]
    fn replay_and_window() {
        let mut g = ReplayGuard::new("n", 300, 1000);
        let a = "a".repeat(32);
        assert_eq!(g.accept(&n(&a, 1000), 1000), Ok(()));
        assert_eq!(
            g.accept(&n(&a, 1000), 1001),
            Err(PushError::Replay(a.clone()))
        );
        assert!(matches!(
            g.accept(&n(&"b".repeat(32), 600), 1000),
            Err(PushError::Stale { .. })
        ));
        assert!(matches!(
            g.accept(&n(&"b".repeat(32), 1400), 1000),
            Err(PushError::Stale { .. })
        ));
        assert_eq!(g.accept(&n("xyz", 1000), 1000), Err(PushError::BadNonce));
        // Hostile times cannot overflow the window check.
        assert!(matches!(
            g.accept(&n(&"d".repeat(32), i64::MIN), 1000),
            Err(PushError::Stale { .. })
        ));
        assert!(matches!(
            g.accept(&n(&"d".repeat(32), i64::MAX), -1000),
            Err(PushError::Stale { .. })
        ));
        let mut other = n(&"c".repeat(32), 1000);
        other.network = "m".into();
        assert!(matches!(
            g.accept(&other, 1000),
            Err(PushError::WrongNetwork(_))
        ));
    }
}
