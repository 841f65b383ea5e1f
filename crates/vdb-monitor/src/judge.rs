//! The verdict state machine: from one check's outcome to a mirror's state, version-aware.
//!
//! Pure functions over plain data, so every threshold and the hysteresis are tested with
//! explicit times.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vdb_proto::MirrorState;

use crate::config::Thresholds;

/// What one check of a mirror found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything it serves matches a manifest signed by a master.
    Good {
        /// Database versions it serves.
        serving: BTreeMap<String, u32>,
        /// Manifest serial it serves.
        serial: u64,
    },
    /// It could not be checked (connection, TLS, HTTP error, a listed file missing).
    Failed(String),
    /// It serves bad data: a bad signature, bytes that do not match its manifest, an expired
    /// manifest. Out at once.
    Bad(String),
}

/// When the monitor first saw each version of each database in the masters' manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VersionBook {
    /// db → version → first seen (Unix seconds).
    pub(crate) seen: BTreeMap<String, BTreeMap<u32, i64>>,
    /// The newest version of each database (from the newest manifest).
    pub(crate) newest: BTreeMap<String, u32>,
}

impl VersionBook {
    /// Seconds since what `serving` holds was superseded (0 while it serves the newest), and
    /// a sentence naming the database that lags most.
    pub(crate) fn lag(&self, serving: &BTreeMap<String, u32>, now: i64) -> (i64, String) {
        let mut worst = (0i64, String::new());
        for (db, &newest) in &self.newest {
            let versions = self.seen.get(db);
            let (superseded, what) = match serving.get(db) {
                Some(&v) if v >= newest => continue,
                Some(&v) => (
                    versions.and_then(|m| m.range(v + 1..).next().map(|(_, &t)| t)),
                    format!("{db} {v} (newest {newest})"),
                ),
                None => (
                    versions.and_then(|m| m.values().min().copied()),
                    format!("{db} missing (newest {newest})"),
                ),
            };
            let lag = superseded.map_or(0, |t| (now - t).max(0));
            if lag > worst.0 || worst.1.is_empty() {
                worst = (lag, what);
            }
        }
        worst
    }
}

/// Everything the monitor remembers about one mirror between checks (persisted as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MirrorStatus {
    /// This monitor's own judgement.
    pub(crate) state: MirrorState,
    /// Since when (Unix seconds).
    pub(crate) since: i64,
    /// Good checks in a row.
    pub(crate) good_streak: u32,
    /// Last good check.
    pub(crate) last_good: Option<i64>,
    /// Last check of any kind.
    pub(crate) last_check: Option<i64>,
    /// First failed check of the current run of failures.
    pub(crate) fail_since: Option<i64>,
    /// Versions served at the last good check.
    pub(crate) serving: BTreeMap<String, u32>,
    /// Serial served at the last good check.
    pub(crate) serial: Option<u64>,
    /// Highest serial ever seen on this mirror (rollback detection).
    pub(crate) max_serial: Option<u64>,
    /// Highest version of each database ever seen on this mirror (rollback detection).
    pub(crate) max_serving: BTreeMap<String, u32>,
    /// Lag at the last check.
    pub(crate) lag_secs: i64,
    /// Why, for people.
    pub(crate) reason: String,
    /// Whether the current state is due to bad data (not subject to quorum).
    pub(crate) bad: bool,
    /// The published (quorum) state at the last round, for alerts.
    pub(crate) published: MirrorState,
    /// Start of the open incident (old or out), if any.
    pub(crate) incident: Option<i64>,
}

impl MirrorStatus {
    /// A mirror never checked: in service until proven otherwise.
    pub(crate) fn new(now: i64) -> Self {
        Self {
            state: MirrorState::InService,
            since: now,
            good_streak: 0,
            last_good: None,
            last_check: None,
            fail_since: None,
            serving: BTreeMap::new(),
            serial: None,
            max_serial: None,
            max_serving: BTreeMap::new(),
            lag_secs: 0,
            reason: "not checked yet".into(),
            bad: false,
            published: MirrorState::InService,
            incident: None,
        }
    }
}

/// How bad a state is (higher is worse); maintenance is handled apart.
pub(crate) fn severity(s: MirrorState) -> u8 {
    match s {
        MirrorState::InService => 0,
        MirrorState::Lagging => 1,
        MirrorState::Old => 2,
        MirrorState::Out | MirrorState::Maintenance => 3,
    }
}

fn by_lag(lag: i64, t: &Thresholds) -> MirrorState {
    if lag >= t.out_secs {
        MirrorState::Out
    } else if lag >= t.old_secs {
        MirrorState::Old
    } else if lag >= t.lagging_secs {
        MirrorState::Lagging
    } else {
        MirrorState::InService
    }
}

fn worse(a: MirrorState, b: MirrorState) -> MirrorState {
    if severity(a) >= severity(b) { a } else { b }
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// The rollback rule on one mirror: what it serves now against the most it ever served.
fn rollback(prev: &MirrorStatus, serving: &BTreeMap<String, u32>, serial: u64) -> Option<String> {
    if let Some(max) = prev.max_serial
        && serial < max
    {
        return Some(format!(
            "rollback: serves manifest serial {serial} after serving {max}"
        ));
    }
    for (db, &v) in serving {
        if let Some(&max) = prev.max_serving.get(db)
            && v < max
        {
            return Some(format!("rollback: serves {db} {v} after serving {max}"));
        }
    }
    None
}

/// The new status after one check at `now`.
pub(crate) fn judge(
    prev: &MirrorStatus,
    outcome: &Outcome,
    now: i64,
    maintenance: bool,
    t: &Thresholds,
    book: &VersionBook,
) -> MirrorStatus {
    let mut s = prev.clone();
    s.last_check = Some(now);
    let mut outcome = outcome.clone();
    if let Outcome::Good { serving, serial } = &outcome
        && let Some(why) = rollback(prev, serving, *serial)
    {
        outcome = Outcome::Bad(why);
    }
    let raw = match outcome {
        Outcome::Good { serving, serial } => {
            s.fail_since = None;
            s.last_good = Some(now);
            s.bad = false;
            for (db, &v) in &serving {
                let m = s.max_serving.entry(db.clone()).or_insert(v);
                *m = (*m).max(v);
            }
            s.max_serial = Some(s.max_serial.map_or(serial, |m| m.max(serial)));
            s.serving = serving;
            s.serial = Some(serial);
            let (lag, what) = book.lag(&s.serving, now);
            s.lag_secs = lag;
            s.reason = if lag == 0 && what.is_empty() {
                "serves the newest release".into()
            } else {
                format!("serves {what}, superseded {} ago", human(lag))
            };
            let raw = by_lag(lag, t);
            // Only checks that would put it in service count towards coming back.
            s.good_streak = if raw.in_service() {
                s.good_streak.saturating_add(1)
            } else {
                0
            };
            raw
        }
        Outcome::Failed(why) => {
            let first = *s.fail_since.get_or_insert(now);
            s.good_streak = 0;
            let down = now - first;
            let (lag, _) = book.lag(&s.serving, now);
            s.lag_secs = lag;
            let unreachable = if down >= t.unreachable_out_secs {
                MirrorState::Out
            } else if down >= t.old_secs {
                MirrorState::Old
            } else if prev.state == MirrorState::Maintenance {
                MirrorState::InService
            } else {
                // A failure alone does not make it better than it was.
                prev.state
            };
            s.reason = format!("failing for {}: {why}", human(down));
            let r = worse(unreachable, by_lag(lag, t));
            if r != MirrorState::Out {
                s.bad = false;
            }
            r
        }
        Outcome::Bad(why) => {
            s.fail_since.get_or_insert(now);
            s.good_streak = 0;
            s.bad = true;
            s.reason = why;
            MirrorState::Out
        }
    };
    let next = if maintenance {
        MirrorState::Maintenance
    } else if prev.state == MirrorState::Maintenance
        || severity(raw) >= severity(prev.state)
        || prev.state.in_service()
    {
        raw
    } else if raw.in_service() {
        if s.good_streak >= t.recover_checks {
            raw
        } else {
            s.reason = format!(
                "recovering ({}/{} good checks): {}",
                s.good_streak, t.recover_checks, s.reason
            );
            prev.state
        }
    } else {
        raw
    };
    if next != prev.state {
        s.since = now;
    }
    s.state = next;
    s
}

/// The published state: a mirror is taken out (old or out) only when `quorum` monitors
/// (this one included) judge it not in service, unless it serves bad data.
pub(crate) fn with_quorum(
    local: &MirrorStatus,
    peers_not_in_service: usize,
    quorum: usize,
) -> (MirrorState, Option<String>) {
    let s = local.state;
    if s.in_service() || s == MirrorState::Maintenance || local.bad {
        return (s, None);
    }
    let votes = 1 + peers_not_in_service;
    if votes >= quorum {
        (s, None)
    } else {
        (
            MirrorState::Lagging,
            Some(format!(
                "this monitor judges it {s:?} but only {votes} of the {quorum} monitors needed agree"
            )),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Thresholds {
        Thresholds {
            lagging_secs: 10,
            old_secs: 100,
            out_secs: 200,
            unreachable_out_secs: 200,
            recover_checks: 2,
        }
    }

    fn book() -> VersionBook {
        VersionBook {
            seen: [("daily".to_owned(), [(1, 0), (2, 1000)].into())].into(),
            newest: [("daily".to_owned(), 2)].into(),
        }
    }

    fn good(v: u32, serial: u64) -> Outcome {
        Outcome::Good {
            serving: [("daily".to_owned(), v)].into(),
            serial,
        }
    }

    #[test]
    fn version_aware_lag_thresholds_and_hysteresis() {
        let (t, b) = (t(), book());
        let mut s = MirrorStatus::new(0);
        s = judge(&s, &good(2, 2), 1000, false, &t, &b);
        assert_eq!((s.state, s.lag_secs), (MirrorState::InService, 0));
        // Frozen on 2 while 2 is newest: never lags.
        s = judge(&s, &good(2, 2), 100_000, false, &t, &b);
        assert_eq!(s.state, MirrorState::InService);
        // Serving 1, superseded at 1000.
        let mut s = judge(&MirrorStatus::new(0), &good(1, 1), 1005, false, &t, &b);
        assert_eq!((s.state, s.lag_secs), (MirrorState::InService, 5));
        s = judge(&s, &good(1, 1), 1010, false, &t, &b);
        assert_eq!(s.state, MirrorState::Lagging);
        s = judge(&s, &good(1, 1), 1100, false, &t, &b);
        assert_eq!(s.state, MirrorState::Old);
        s = judge(&s, &good(1, 1), 1200, false, &t, &b);
        assert_eq!(s.state, MirrorState::Out);
        // Syncs: needs two good checks in a row.
        s = judge(&s, &good(2, 2), 1210, false, &t, &b);
        assert_eq!(s.state, MirrorState::Out);
        assert!(s.reason.contains("recovering"), "{}", s.reason);
        s = judge(&s, &good(2, 2), 1220, false, &t, &b);
        assert_eq!((s.state, s.since), (MirrorState::InService, 1220));
    }

    #[test]
    fn unreachable_and_bad_and_rollback() {
        let (t, b) = (t(), book());
        let mut s = judge(&MirrorStatus::new(0), &good(2, 2), 1000, false, &t, &b);
        let down = Outcome::Failed("connection refused".into());
        s = judge(&s, &down, 1050, false, &t, &b);
        assert_eq!(s.state, MirrorState::InService);
        s = judge(&s, &down, 1150, false, &t, &b);
        assert_eq!(s.state, MirrorState::Old);
        s = judge(&s, &down, 1250, false, &t, &b);
        assert_eq!(s.state, MirrorState::Out);
        assert!(!s.bad);
        s = judge(&s, &good(2, 2), 1260, false, &t, &b);
        s = judge(&s, &good(2, 2), 1270, false, &t, &b);
        assert_eq!(s.state, MirrorState::InService);
        // Rollback: serial or version lower than seen before.
        let r = judge(&s, &good(2, 1), 1280, false, &t, &b);
        assert_eq!(r.state, MirrorState::Out);
        assert!(r.bad && r.reason.contains("rollback"), "{}", r.reason);
        let r = judge(&s, &good(1, 3), 1280, false, &t, &b);
        assert!(r.bad && r.reason.contains("rollback"), "{}", r.reason);
        let r = judge(&s, &Outcome::Bad("tampered".into()), 1280, false, &t, &b);
        assert_eq!(r.state, MirrorState::Out);
        // Maintenance wins while it lasts.
        let m = judge(&r, &down, 1290, true, &t, &b);
        assert_eq!(m.state, MirrorState::Maintenance);
    }

    #[test]
    fn quorum() {
        let mut s = MirrorStatus::new(0);
        s.state = MirrorState::Out;
        assert_eq!(with_quorum(&s, 0, 1).0, MirrorState::Out);
        assert_eq!(with_quorum(&s, 0, 2).0, MirrorState::Lagging);
        assert_eq!(with_quorum(&s, 1, 2).0, MirrorState::Out);
        s.bad = true;
        assert_eq!(with_quorum(&s, 0, 2).0, MirrorState::Out);
    }
}
