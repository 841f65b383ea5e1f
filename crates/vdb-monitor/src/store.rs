//! The monitor's SQLite file: version history, mirror states, check history, rollouts, and
//! the alerts already sent (so a restart never resends one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;

use crate::judge::{MirrorStatus, VersionBook};

/// A failure of the monitor's database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error(
        "monitor database {path}: {source} (check the file is writable and not used by another monitor)"
    )]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The database's directory could not be made.
    #[error("monitor database {path}: cannot create its directory: {source}")]
    Directory {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

/// Rollouts of this many newest versions of each database are never pruned.
const KEEP_ROLLOUT_VERSIONS: i64 = 16;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
  db TEXT NOT NULL, version INTEGER NOT NULL, first_seen INTEGER NOT NULL,
  PRIMARY KEY (db, version));
CREATE TABLE IF NOT EXISTS mirrors (name TEXT PRIMARY KEY, status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checks (
  id INTEGER PRIMARY KEY, mirror TEXT NOT NULL, at INTEGER NOT NULL, result TEXT NOT NULL,
  state TEXT NOT NULL, lag_secs INTEGER NOT NULL, serial INTEGER, response_ms INTEGER,
  detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS checks_mirror_at ON checks (mirror, at);
CREATE TABLE IF NOT EXISTS rollout (
  db TEXT NOT NULL, version INTEGER NOT NULL, mirror TEXT NOT NULL, first_seen INTEGER NOT NULL,
  PRIMARY KEY (db, version, mirror));
CREATE TABLE IF NOT EXISTS alerts (
  mirror TEXT NOT NULL, incident INTEGER NOT NULL, kind TEXT NOT NULL, level INTEGER NOT NULL,
  channel TEXT NOT NULL, created_at INTEGER NOT NULL, status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, sent_at INTEGER, body TEXT NOT NULL,
  PRIMARY KEY (mirror, incident, kind, level, channel));
CREATE TABLE IF NOT EXISTS timeline (
  mirror TEXT NOT NULL, bucket INTEGER NOT NULL, rank INTEGER NOT NULL,
  lag_secs INTEGER NOT NULL, checks INTEGER NOT NULL,
  PRIMARY KEY (mirror, bucket)) WITHOUT ROWID;
";

/// One row of a mirror's state history: the checks of one `history_bucket_secs` bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimelineRow {
    /// Start of the bucket (Unix seconds, a multiple of the bucket width).
    pub(crate) bucket: i64,
    /// The worst published state in it (`charts::rank`).
    pub(crate) rank: u8,
    /// The largest lag in it.
    pub(crate) lag_secs: i64,
    /// Checks in it.
    pub(crate) checks: u32,
}

/// One row of a mirror's check history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    /// When (Unix seconds).
    pub at: i64,
    /// `good`, `failed` or `bad`.
    pub result: String,
    /// The state after the check.
    pub state: String,
    /// Lag after the check.
    pub lag_secs: i64,
    /// Serial served, if good.
    pub serial: Option<u64>,
    /// Slowest response of the check, milliseconds.
    pub response_ms: Option<u64>,
    /// What was found.
    pub detail: String,
}

/// A release and its rollout: (db, version, first seen, mirror → first seen serving it).
pub(crate) type ReleaseRow = (String, u32, i64, BTreeMap<String, i64>);

/// An alert waiting to be delivered on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingAlert {
    pub(crate) mirror: String,
    pub(crate) incident: i64,
    pub(crate) kind: String,
    pub(crate) level: i64,
    pub(crate) channel: String,
    pub(crate) body: String,
}

/// The SQLite store (WAL mode). All calls are short; callers hold it behind a mutex.
#[derive(Debug)]
pub(crate) struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let err = |source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        };
        // A fresh host (or a StateDirectory= subdirectory) may not have the directory yet.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: path.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Runs one statement; the number of rows it changed.
    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
        self.conn.execute(sql, params).map_err(|e| self.err(e))
    }

    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    pub(crate) fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )
        .map(drop)
    }

    /// Records the versions of a manifest (first sighting only) and returns the book.
    pub(crate) fn note_versions(
        &self,
        newest: &BTreeMap<String, u32>,
        now: i64,
    ) -> Result<VersionBook> {
        for (db, v) in newest {
            self.execute(
                "INSERT OR IGNORE INTO versions (db, version, first_seen) VALUES (?1, ?2, ?3)",
                params![db, v, now],
            )?;
        }
        let mut book = VersionBook {
            newest: newest.clone(),
            ..VersionBook::default()
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT db, version, first_seen FROM versions")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?, r.get(2)?))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (db, v, t) = row.map_err(|e| self.err(e))?;
            book.seen.entry(db).or_default().insert(v, t);
        }
        Ok(book)
    }

    pub(crate) fn statuses(&self) -> Result<BTreeMap<String, MirrorStatus>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name, status FROM mirrors")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (name, json) = row.map_err(|e| self.err(e))?;
            // A row this version cannot read is treated as a mirror never checked.
            if let Ok(s) = serde_json::from_str(&json) {
                out.insert(name, s);
            }
        }
        Ok(out)
    }

    pub(crate) fn save_status(&self, name: &str, s: &MirrorStatus) -> Result<()> {
        let json = serde_json::to_string(s).expect("status serialises");
        self.execute(
            "INSERT INTO mirrors (name, status) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET status = excluded.status",
            params![name, json],
        )
        .map(drop)
    }

    pub(crate) fn add_check(&self, mirror: &str, row: &CheckRow) -> Result<()> {
        self.execute(
            "INSERT INTO checks (mirror, at, result, state, lag_secs, serial, response_ms, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                mirror,
                row.at,
                row.result,
                row.state,
                row.lag_secs,
                row.serial.map(|s| s as i64),
                row.response_ms.map(|s| s as i64),
                row.detail
            ],
        )
        .map(drop)
    }

    /// Drops history older than `before`.
    pub(crate) fn prune(&self, before: i64) -> Result<()> {
        self.execute("DELETE FROM checks WHERE at < ?1", [before])
            .map(drop)
    }

    pub(crate) fn history(&self, mirror: &str, n: usize) -> Result<Vec<CheckRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at, result, state, lag_secs, serial, response_ms, detail FROM checks
                 WHERE mirror = ?1 ORDER BY at DESC, id DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![mirror, n as i64], |r| {
                Ok(CheckRow {
                    at: r.get(0)?,
                    result: r.get(1)?,
                    state: r.get(2)?,
                    lag_secs: r.get(3)?,
                    serial: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    response_ms: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                    detail: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Folds one check into `mirror`'s history bucket: the worst state and the largest lag
    /// win. One statement, so a crash leaves the bucket as it was or with the check in it.
    pub(crate) fn note_timeline(
        &self,
        mirror: &str,
        bucket: i64,
        rank: u8,
        lag_secs: i64,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO timeline (mirror, bucket, rank, lag_secs, checks) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (mirror, bucket) DO UPDATE SET rank = max(rank, excluded.rank),
                 lag_secs = max(lag_secs, excluded.lag_secs), checks = checks + 1",
            params![mirror, bucket, rank, lag_secs.max(0)],
        )
        .map(drop)
    }

    /// `mirror`'s history buckets from `from` on, oldest first, at most `max` (the newest).
    pub(crate) fn timeline(&self, mirror: &str, from: i64, max: usize) -> Result<Vec<TimelineRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT bucket, rank, lag_secs, checks FROM timeline
                 WHERE mirror = ?1 AND bucket >= ?2 ORDER BY bucket DESC LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let mut rows: Vec<TimelineRow> = stmt
            .query_map(params![mirror, from, max as i64], |r| {
                Ok(TimelineRow {
                    bucket: r.get(0)?,
                    rank: r.get::<_, i64>(1)?.clamp(0, 255) as u8,
                    lag_secs: r.get(2)?,
                    checks: r.get::<_, i64>(3)?.clamp(0, i64::from(u32::MAX)) as u32,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))?;
        rows.reverse();
        Ok(rows)
    }

    /// The oldest history bucket kept at or after `from` (any mirror), if any.
    pub(crate) fn timeline_start(&self, from: i64) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT MIN(bucket) FROM timeline WHERE bucket >= ?1",
                [from],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Drops state history before `before`, and the rollouts of versions older than the
    /// newest [`KEEP_ROLLOUT_VERSIONS`] of their database first seen before `before`: the
    /// store stays bounded however long the monitor runs.
    pub(crate) fn prune_charts(&self, before: i64) -> Result<()> {
        self.execute("DELETE FROM timeline WHERE bucket < ?1", [before])?;
        self.execute(
            "DELETE FROM rollout WHERE first_seen < ?1 AND
                 (SELECT COUNT(*) FROM versions w WHERE w.db = rollout.db
                  AND w.version > rollout.version) >= ?2",
            params![before, KEEP_ROLLOUT_VERSIONS],
        )
        .map(drop)
    }

    /// Records that `mirror` serves `db` `version` (first sighting only).
    pub(crate) fn note_rollout(
        &self,
        db: &str,
        version: u32,
        mirror: &str,
        now: i64,
    ) -> Result<()> {
        self.execute(
                "INSERT OR IGNORE INTO rollout (db, version, mirror, first_seen) VALUES (?1, ?2, ?3, ?4)",
                params![db, version, mirror, now],
            ).map(drop)
    }

    /// The newest `n` versions of every database: (db, version, first seen, mirror → first
    /// check that saw it serving this version or a newer one).
    pub(crate) fn releases(&self, n: usize) -> Result<Vec<ReleaseRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT db, version, first_seen FROM versions v WHERE
                 (SELECT COUNT(*) FROM versions w WHERE w.db = v.db AND w.version > v.version) < ?1
                 ORDER BY first_seen DESC, db, version DESC",
            )
            .map_err(|e| self.err(e))?;
        let rows: Vec<(String, u32, i64)> = stmt
            .query_map([n as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT mirror, MIN(first_seen) FROM rollout WHERE db = ?1 AND version >= ?2
                 GROUP BY mirror",
            )
            .map_err(|e| self.err(e))?;
        for (db, v, t) in rows {
            let m = stmt
                .query_map(params![db, v], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.err(e))?
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| self.err(e))?;
            out.push((db, v, t, m));
        }
        Ok(out)
    }

    /// Queues an alert on a channel unless it was queued before; true if new.
    pub(crate) fn queue_alert(&self, a: &PendingAlert, now: i64) -> Result<bool> {
        self.execute(
                "INSERT OR IGNORE INTO alerts (mirror, incident, kind, level, channel, created_at, status, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
                params![a.mirror, a.incident, a.kind, a.level, a.channel, now, a.body],
            ).map(|n| n == 1)
    }

    /// Alerts still to deliver (fewer than `max_attempts` failed tries).
    pub(crate) fn pending_alerts(&self, max_attempts: i64) -> Result<Vec<PendingAlert>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT mirror, incident, kind, level, channel, body FROM alerts
                 WHERE status = 'pending' AND attempts < ?1 ORDER BY created_at",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([max_attempts], |r| {
            Ok(PendingAlert {
                mirror: r.get(0)?,
                incident: r.get(1)?,
                kind: r.get(2)?,
                level: r.get(3)?,
                channel: r.get(4)?,
                body: r.get(5)?,
            })
        })
        .map_err(|e| self.err(e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| self.err(e))
    }

    /// Marks the outcome of one delivery: `Some("sent")`, `Some("suppressed")`, or `None`
    /// for a failed attempt (retried next round).
    pub(crate) fn mark_alert(
        &self,
        a: &PendingAlert,
        status: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let key = "mirror = ?1 AND incident = ?2 AND kind = ?3 AND level = ?4 AND channel = ?5";
        match status {
            Some(st) => self.execute(
                &format!("UPDATE alerts SET status = ?6, sent_at = ?7, attempts = attempts + 1 WHERE {key}"),
                params![a.mirror, a.incident, a.kind, a.level, a.channel, st, now],
            ),
            None => self.execute(
                &format!("UPDATE alerts SET attempts = attempts + 1 WHERE {key}"),
                params![a.mirror, a.incident, a.kind, a.level, a.channel],
            ),
        }
        .map(drop)
    }

    /// Alerts delivered since `since` (the hourly rate limit).
    pub(crate) fn sent_since(&self, since: i64) -> Result<u32> {
        self.conn
            .query_row(
                "SELECT COUNT(DISTINCT mirror || '/' || incident || '/' || kind || '/' || level)
                 FROM alerts WHERE status = 'sent' AND sent_at >= ?1",
                [since],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Whether any alert of this incident was delivered (a recovery notice follows only then).
    pub(crate) fn incident_alerted(&self, mirror: &str, incident: i64) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM alerts WHERE mirror = ?1 AND incident = ?2
                 AND kind != 'recovered' AND status IN ('sent', 'pending'))",
                params![mirror, incident],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rollout_and_alert_dedup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        {
            let s = Store::open(&path).unwrap();
            let b = s
                .note_versions(&[("daily".to_owned(), 1)].into(), 10)
                .unwrap();
            assert_eq!(b.seen["daily"][&1], 10);
            let b = s
                .note_versions(&[("daily".to_owned(), 2)].into(), 20)
                .unwrap();
            assert_eq!(b.seen["daily"].len(), 2);
            s.note_rollout("daily", 2, "m1", 25).unwrap();
            s.note_rollout("daily", 2, "m1", 30).unwrap();
            let r = s.releases(5).unwrap();
            assert_eq!(r[0].0, "daily");
            assert_eq!(r[0].1, 2);
            assert_eq!(r[0].3["m1"], 25);
            let a = PendingAlert {
                mirror: "m1".into(),
                incident: 5,
                kind: "old".into(),
                level: 0,
                channel: "webhook".into(),
                body: "{}".into(),
            };
            assert!(s.queue_alert(&a, 40).unwrap());
            assert!(!s.queue_alert(&a, 41).unwrap());
            assert_eq!(s.pending_alerts(3).unwrap().len(), 1);
            s.mark_alert(&a, None, 42).unwrap();
            assert_eq!(s.pending_alerts(3).unwrap().len(), 1);
            s.mark_alert(&a, Some("sent"), 43).unwrap();
            assert!(s.pending_alerts(3).unwrap().is_empty());
            assert_eq!(s.sent_since(0).unwrap(), 1);
        }
        // Reopened: nothing forgotten.
        let s = Store::open(&path).unwrap();
        assert_eq!(s.sent_since(0).unwrap(), 1);
        assert!(s.incident_alerted("m1", 5).unwrap());
    }

    #[test]
    fn timeline_keeps_the_worst_of_a_bucket_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        {
            let s = Store::open(&path).unwrap();
            s.note_timeline("m1", 0, 0, 0).unwrap();
            s.note_timeline("m1", 0, 3, 500).unwrap();
            s.note_timeline("m1", 0, 1, 10).unwrap();
            s.note_timeline("m1", 60, 0, 0).unwrap();
            s.note_timeline("m2", 60, 4, 9000).unwrap();
            let rows = s.timeline("m1", 0, 10).unwrap();
            assert_eq!(
                rows,
                [
                    TimelineRow {
                        bucket: 0,
                        rank: 3,
                        lag_secs: 500,
                        checks: 3
                    },
                    TimelineRow {
                        bucket: 60,
                        rank: 0,
                        lag_secs: 0,
                        checks: 1
                    }
                ]
            );
            // At most `max` rows, the newest.
            assert_eq!(s.timeline("m1", 0, 1).unwrap()[0].bucket, 60);
            assert_eq!(s.timeline_start(0).unwrap(), Some(0));
            assert_eq!(s.timeline_start(61).unwrap(), None);
        }
        // Reopened (as after a crash or restart): the rows are there; pruning drops the old.
        let s = Store::open(&path).unwrap();
        assert_eq!(s.timeline("m1", 0, 10).unwrap().len(), 2);
        s.prune_charts(60).unwrap();
        assert_eq!(s.timeline("m1", 0, 10).unwrap().len(), 1);
        assert_eq!(s.timeline_start(0).unwrap(), Some(60));
    }

    #[test]
    fn a_release_counts_as_served_by_a_mirror_serving_it_or_newer_and_old_rollouts_go() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("m.sqlite")).unwrap();
        for v in 1..=20u32 {
            s.note_versions(&[("daily".to_owned(), v)].into(), i64::from(v) * 100)
                .unwrap();
        }
        // m1 went from 18 straight to 20; m2 served 19 then 20.
        s.note_rollout("daily", 18, "m1", 1800).unwrap();
        s.note_rollout("daily", 20, "m1", 2050).unwrap();
        s.note_rollout("daily", 19, "m2", 1910).unwrap();
        s.note_rollout("daily", 20, "m2", 2010).unwrap();
        let r = s.releases(3).unwrap();
        let v19 = r.iter().find(|r| r.1 == 19).unwrap();
        assert_eq!(v19.3["m1"], 2050, "served by 20, newer than 19");
        assert_eq!(v19.3["m2"], 1910);
        let v18 = r.iter().find(|r| r.1 == 18).unwrap();
        assert_eq!(v18.3["m1"], 1800);
        // Rollouts of versions among the newest 16 stay; older ones go once past the cut-off.
        s.note_rollout("daily", 2, "m1", 200).unwrap();
        s.note_rollout("daily", 5, "m1", 500).unwrap();
        s.prune_charts(300).unwrap();
        let left: i64 = s
            .conn
            .query_row("SELECT COUNT(*) FROM rollout WHERE version < 10", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(left, 1, "version 2 (before the cut-off) pruned, 5 kept");
    }

    #[test]
    fn open_makes_the_directory_and_says_when_it_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitor/state/m.sqlite");
        Store::open(&path).expect("a missing directory is made");
        assert!(path.exists());
        // A file where the directory should be: the error names the database and the cause.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"").unwrap();
        let e = Store::open(&blocked.join("m.sqlite"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m.sqlite") && e.contains("cannot create its directory"),
            "{e}"
        );
    }
}
