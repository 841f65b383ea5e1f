//! Mirror health remembered across runs (what freshclam lacks): consecutive failures and the
//! last latency per mirror, in a small JSON file in the database directory. Mirrors that
//! failed recently are tried after the healthy ones; otherwise the configured order is kept.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// File name in the database directory.
pub const HEALTH_FILE: &str = "vdb-update-health.json";

/// A failure counts for ordering for this long (seconds).
pub const FAILURE_MEMORY_SECS: i64 = 24 * 3600;

/// What is remembered about one mirror.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorHealth {
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Unix time of the last failure (0 = never).
    pub last_failure: i64,
    /// Unix time of the last success (0 = never).
    pub last_success: i64,
    /// Duration of the last successful check, in milliseconds.
    pub last_latency_ms: Option<u64>,
}

/// Health of every mirror seen, keyed by base URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Per mirror.
    pub mirrors: BTreeMap<String, MirrorHealth>,
}

impl Health {
    /// Reads the file; a missing or unreadable file is an empty memory (it is only a hint).
    pub fn load(dir: &Path) -> Self {
        std::fs::read(dir.join(HEALTH_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the file atomically.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        vdb_format::write_atomic(&dir.join(HEALTH_FILE), &text)
    }

    fn penalty(&self, url: &str, now: i64) -> u32 {
        self.mirrors.get(url).map_or(0, |h| {
            if h.consecutive_failures > 0 && now - h.last_failure < FAILURE_MEMORY_SECS {
                h.consecutive_failures
            } else {
                0
            }
        })
    }

    /// `mirrors` reordered: fewest recent consecutive failures first, configuration order
    /// among equals.
    pub fn order(&self, mirrors: &[String], now: i64) -> Vec<String> {
        let mut out = mirrors.to_vec();
        out.sort_by_key(|m| self.penalty(m, now));
        out
    }

    /// Notes a success.
    pub fn success(&mut self, url: &str, now: i64, latency_ms: u64) {
        let h = self.mirrors.entry(url.to_owned()).or_default();
        h.consecutive_failures = 0;
        h.last_success = now;
        h.last_latency_ms = Some(latency_ms);
    }

    /// Notes a failed attempt.
    pub fn failure(&mut self, url: &str, now: i64) {
        let h = self.mirrors.entry(url.to_owned()).or_default();
        h.consecutive_failures = h.consecutive_failures.saturating_add(1);
        h.last_failure = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_mirrors_go_last_until_forgotten() {
        let m: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let mut h = Health::default();
        assert_eq!(h.order(&m, 100), m);
        h.failure("a", 100);
        h.failure("a", 100);
        h.failure("b", 100);
        assert_eq!(h.order(&m, 200), ["c", "b", "a"]);
        // A day later the failures no longer count.
        assert_eq!(h.order(&m, 100 + FAILURE_MEMORY_SECS), m);
        h.success("a", 300, 5);
        assert_eq!(h.order(&m, 300), ["a", "c", "b"]);
    }

    #[test]
    fn round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = Health::default();
        h.success("http://x", 1, 2);
        h.save(dir.path()).unwrap();
        assert_eq!(Health::load(dir.path()), h);
        std::fs::write(dir.path().join(HEALTH_FILE), b"{garbage").unwrap();
        assert_eq!(Health::load(dir.path()), Health::default());
    }
}
