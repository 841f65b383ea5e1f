//! Hub mirrors (issue 18): a hub relays the masters' signed push notice to its leaves once it
//! has switched to the notice's serial, and every mirror reports its syncs to the masters (the
//! end-to-end acknowledgement the release timeline shows).
//!
//! Trust does not move: a leaf verifies the relayed notice against the master keys as any
//! push, and whatever it then pulls from its hub (the manifest, objects) against the
//! master-signed manifest, so a hub can delay its leaves but never alter what they serve.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use vdb_fetch::RetryPolicy;
use vdb_proto::{LeafTarget, RelayOutcome, SyncReport};

use crate::sync::{Facts, SyncOutcome, Syncer};

/// Leaves pushed to at once.
const RELAY_CONCURRENCY: usize = 16;
/// Attempts per leaf (the masters' default retry policy).
const RELAY_ATTEMPTS: u32 = 3;
/// Time allowed for one push to a leaf (it acknowledges before it syncs).
const RELAY_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one report to a master.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an error answer kept in a relay outcome.
const MAX_ERROR: usize = 300;

/// A push notice waiting to be relayed to the leaves.
#[derive(Debug, Clone)]
pub(crate) struct Relay {
    /// The serial it names.
    pub(crate) serial: u64,
    /// The master's signed envelope, byte for byte.
    pub(crate) body: String,
    /// Where it goes.
    pub(crate) leaves: Vec<LeafTarget>,
}

/// The newest notice to relay (an older one waiting is superseded: the leaves sync to the
/// newest serial anyway).
#[derive(Debug, Default)]
pub(crate) struct Pending(Mutex<Option<Relay>>);

impl Pending {
    /// Keeps `relay` unless a notice of a higher serial waits already.
    pub(crate) fn put(&self, relay: Relay) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if p.as_ref().is_none_or(|old| relay.serial >= old.serial) {
            *p = Some(relay);
        }
    }

    /// The waiting notice, if this hub is ready to relay it: it serves its serial (`held`), or
    /// no further sync is coming (`more_syncs` false: the hub could not get it, and the leaves
    /// are told anyway, to fall back to the masters rather than wait for a poll).
    pub(crate) fn take_ready(&self, held: Option<u64>, more_syncs: bool) -> Option<Relay> {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let ready = p
            .as_ref()
            .is_some_and(|r| held.is_some_and(|h| h >= r.serial) || !more_syncs);
        if ready { p.take() } else { None }
    }
}

/// Sends the master's notice to every leaf, concurrently (bounded), retrying retryable
/// failures with jittered back-off; returns each leaf's outcome.
pub(crate) async fn relay(syncer: &Syncer, relay: &Relay) -> Vec<RelayOutcome> {
    let policy = RetryPolicy {
        max_attempts: RELAY_ATTEMPTS,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(5),
        max_total: Duration::from_secs(60),
    };
    let (serial, body) = (relay.serial, relay.body.as_str());
    // Owned leaves: a stream of borrowed ones makes the future not `Send` for every lifetime.
    let out: Vec<RelayOutcome> = futures_util::stream::iter(relay.leaves.clone())
        .map(|leaf: LeafTarget| {
            async move {
                let started = Instant::now();
                let mut attempts = 0;
                let mut error = None;
                while attempts < RELAY_ATTEMPTS {
                    attempts += 1;
                    let sent = syncer
                        .client
                        .post(&leaf.push_url)
                        .json_body(body.to_owned())
                        .timeout(RELAY_TIMEOUT)
                        .send()
                        .await;
                    match sent {
                        Ok(_) => {
                            error = None;
                            break;
                        }
                        Err(e) => {
                            let body = e.body().unwrap_or_default();
                            let text: String =
                                String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR)])
                                    .chars()
                                    .filter(|c| !c.is_control())
                                    .collect();
                            error = Some(if text.is_empty() {
                                e.to_string()
                            } else {
                                format!("{e}: {text}")
                            });
                            match policy.wait_before_retry(attempts, started.elapsed(), &e) {
                                Some(w) => tokio::time::sleep(w).await,
                                None => break,
                            }
                        }
                    }
                }
                let acked = error.is_none();
                syncer
                    .metrics
                    .push(if acked { "relayed" } else { "relay_failed" });
                if acked {
                    tracing::info!(leaf = %leaf.name, serial, attempts, "push relayed");
                } else {
                    tracing::warn!(leaf = %leaf.name, serial, attempts, error = ?error, "push relay failed");
                }
                RelayOutcome {
                    leaf: leaf.name,
                    acked,
                    attempts,
                    error,
                }
            }
        })
        .buffer_unordered(RELAY_CONCURRENCY)
        .collect()
        .await;
    out
}

/// Reports a sync (and a hub's relays) to every master, each once (a lost report costs only a
/// line of the timeline; the next sync reports again).
pub(crate) async fn report(
    syncer: &Syncer,
    outcome: &SyncOutcome,
    facts: &Facts,
    took: Duration,
    relays: Vec<RelayOutcome>,
) {
    let (serial, label, bytes) = match outcome {
        SyncOutcome::Updated { serial, bytes, .. } => (*serial, "updated", *bytes),
        SyncOutcome::UpToDate { serial } => (*serial, "up_to_date", 0),
    };
    let report = SyncReport {
        network: syncer.network.clone(),
        mirror: syncer.name.clone(),
        serial,
        outcome: label.to_owned(),
        bytes,
        hub_bytes: facts.hub_bytes,
        source: if facts.source.is_empty() {
            "master".to_owned()
        } else {
            facts.source.clone()
        },
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        relays,
    };
    let Ok(body) = serde_json::to_string(&report) else {
        return;
    };
    let sends = syncer.masters.clone().into_iter().map(|base: String| {
        let url = format!(
            "{}{}",
            base.trim_end_matches('/'),
            vdb_proto::SYNC_REPORT_PATH
        );
        let body = body.clone();
        async move {
            let r = syncer
                .post(&url)
                .json_body(body)
                .timeout(REPORT_TIMEOUT)
                .send()
                .await;
            if let Err(e) = r {
                tracing::debug!(master = %base, error = %e, "sync report not taken");
            }
        }
    });
    futures_util::future::join_all(sends).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(serial: u64) -> Relay {
        Relay {
            serial,
            body: String::new(),
            leaves: Vec::new(),
        }
    }

    #[test]
    fn a_relay_waits_for_the_switch_or_for_the_last_sync() {
        let p = Pending::default();
        assert!(p.take_ready(Some(9), false).is_none());
        p.put(r(5));
        p.put(r(4));
        // Another sync is coming and the hub holds 4: wait.
        assert!(p.take_ready(Some(4), true).is_none());
        assert_eq!(p.take_ready(Some(5), true).map(|r| r.serial), Some(5));
        assert!(p.take_ready(Some(5), false).is_none());
        // No further sync and the hub could not get 6: the leaves are told anyway.
        p.put(r(6));
        assert_eq!(p.take_ready(Some(5), false).map(|r| r.serial), Some(6));
        p.put(r(7));
        assert_eq!(p.take_ready(None, false).map(|r| r.serial), Some(7));
    }
}
