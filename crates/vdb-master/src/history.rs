//! The SQLite history: releases (accepted and refused), pushes, the mirror registry, peer cursors.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension as _, params};
use vdb_proto::MirrorRecord;

const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE releases(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    db TEXT NOT NULL,
    version INTEGER NOT NULL,
    publisher TEXT NOT NULL,
    envelope TEXT NOT NULL,
    verdict TEXT NOT NULL,
    code TEXT,
    reason TEXT,
    origin TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    serial INTEGER,
    published_at INTEGER
);
CREATE UNIQUE INDEX releases_accepted ON releases(id) WHERE verdict = 'accepted';
CREATE TABLE pushes(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    serial INTEGER NOT NULL,
    mirror TEXT NOT NULL,
    forced INTEGER NOT NULL,
    sent_at INTEGER NOT NULL,
    acked_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE mirrors(
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE peer_cursors(peer TEXT PRIMARY KEY, after INTEGER NOT NULL);
",
    r"
ALTER TABLE pushes ADD COLUMN via TEXT;
CREATE TABLE syncs(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    serial INTEGER NOT NULL,
    mirror TEXT NOT NULL,
    outcome TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    hub_bytes INTEGER NOT NULL,
    source TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    reported_at INTEGER NOT NULL
);
CREATE INDEX syncs_serial ON syncs(serial);
",
];

/// The most sync reports kept (older ones are deleted as new ones come).
const MAX_SYNC_ROWS: i64 = 200_000;

/// Why the history failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite trouble.
    #[error("release history database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored record does not parse.
    #[error("release history holds a broken record: {0}")]
    Corrupt(String),
}

pub use vdb_proto::{PushRow, ReleaseRow, SyncRow};

pub use vdb_proto::RegistryEntry;

/// The history database (cheap to clone; one connection behind a mutex). Every method blocks:
/// call it from `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct History {
    conn: Arc<Mutex<Connection>>,
}

fn row_to_release(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReleaseRow> {
    Ok(ReleaseRow {
        seq: r.get(0)?,
        id: r.get(1)?,
        db: r.get(2)?,
        version: r.get(3)?,
        publisher: r.get(4)?,
        envelope: r.get(5)?,
        verdict: r.get(6)?,
        code: r.get(7)?,
        reason: r.get(8)?,
        origin: r.get(9)?,
        received_at: r.get(10)?,
        serial: r.get::<_, Option<i64>>(11)?.map(|s| s as u64),
        published_at: r.get(12)?,
    })
}

const RELEASE_COLS: &str = "seq, id, db, version, publisher, envelope, verdict, code, reason, origin, received_at, serial, published_at";

/// The most envelope bytes one page of releases holds (a page ends early rather than build an
/// answer of unbounded size).
pub const PAGE_BYTES: usize = 8 << 20;

/// How one push ended, for [`History::pushes_finished`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The record's id, from [`History::pushes_started`].
    pub id: i64,
    /// Attempts made.
    pub attempts: u32,
    /// When the mirror acknowledged it, if it did.
    pub acked_at: Option<i64>,
    /// The last error, if it was not acknowledged.
    pub error: Option<String>,
}

impl History {
    /// Opens (creating and migrating) the database at `path`, in WAL mode.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(m)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a release verdict. Returns the row's sequence number.
    pub fn insert_release(&self, row: &ReleaseRow) -> Result<i64, HistoryError> {
        let c = self.conn();
        c.execute(
            "INSERT INTO releases(id, db, version, publisher, envelope, verdict, code, reason, origin, received_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
            params![row.id, row.db, row.version, row.publisher, row.envelope, row.verdict, row.code, row.reason, row.origin, row.received_at],
        )?;
        Ok(c.last_insert_rowid())
    }

    /// The accepted release `id`.
    pub fn accepted(&self, id: &str) -> Result<Option<ReleaseRow>, HistoryError> {
        Ok(self
            .conn()
            .query_row(
                &format!(
                    "SELECT {RELEASE_COLS} FROM releases WHERE id = ?1 AND verdict = 'accepted'"
                ),
                [id],
                row_to_release,
            )
            .optional()?)
    }

    /// Every accepted release, oldest first.
    pub fn all_accepted(&self) -> Result<Vec<ReleaseRow>, HistoryError> {
        self.query_releases(
            &format!("SELECT {RELEASE_COLS} FROM releases WHERE verdict = 'accepted' ORDER BY seq"),
            params![],
            usize::MAX,
        )
    }

    /// Accepted releases after sequence `after` (at most `limit`, and no more than a
    /// [`PAGE_BYTES`] budget of envelopes, but at least one), for peers.
    pub fn accepted_after(&self, after: i64, limit: i64) -> Result<Vec<ReleaseRow>, HistoryError> {
        self.query_releases(
            &format!("SELECT {RELEASE_COLS} FROM releases WHERE verdict = 'accepted' AND seq > ?1 ORDER BY seq LIMIT ?2"),
            params![after, limit],
            PAGE_BYTES,
        )
    }

    /// Rows (accepted and refused) before sequence `before` (all if `None`), newest first: at
    /// most `limit`, and no more than a [`PAGE_BYTES`] budget of envelopes, but at least one.
    pub fn recent(&self, before: Option<i64>, limit: i64) -> Result<Vec<ReleaseRow>, HistoryError> {
        self.query_releases(
            &format!(
                "SELECT {RELEASE_COLS} FROM releases WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"
            ),
            params![before.unwrap_or(i64::MAX), limit],
            PAGE_BYTES,
        )
    }

    /// Rows of `sql` until `budget` bytes of envelopes and reasons are spent (at least one).
    fn query_releases(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        budget: usize,
    ) -> Result<Vec<ReleaseRow>, HistoryError> {
        let c = self.conn();
        let mut st = c.prepare(sql)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for row in st.query_map(p, row_to_release)? {
            let row = row?;
            bytes = bytes
                .saturating_add(row.envelope.len() + row.reason.as_ref().map_or(0, String::len));
            if bytes > budget && !out.is_empty() {
                break;
            }
            out.push(row);
        }
        Ok(out)
    }

    /// Marks every accepted release not yet published as published in `serial` at `at`.
    pub fn mark_published(&self, serial: u64, at: i64) -> Result<(), HistoryError> {
        self.conn().execute(
            "UPDATE releases SET serial = ?1, published_at = ?2 WHERE verdict = 'accepted' AND serial IS NULL",
            params![serial as i64, at],
        )?;
        Ok(())
    }

    /// Starts one push record per mirror, in one transaction (one fsync for a whole fan-out);
    /// returns their ids in the order of `mirrors`.
    pub fn pushes_started(
        &self,
        serial: u64,
        mirrors: &[String],
        forced: bool,
        at: i64,
    ) -> Result<Vec<i64>, HistoryError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        let mut ids = Vec::with_capacity(mirrors.len());
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO pushes(serial, mirror, forced, sent_at) VALUES (?1,?2,?3,?4)",
            )?;
            for m in mirrors {
                st.execute(params![serial as i64, m, forced, at])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Records the outcomes of pushes, in one transaction.
    pub fn pushes_finished(&self, outcomes: &[PushOutcome]) -> Result<(), HistoryError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "UPDATE pushes SET attempts = ?2, acked_at = ?3, error = ?4 WHERE seq = ?1",
            )?;
            for o in outcomes {
                st.execute(params![o.id, o.attempts, o.acked_at, o.error])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Pushes of serial `from` and later, oldest first (the first 10,000).
    pub fn pushes_since(&self, from: u64) -> Result<Vec<PushRow>, HistoryError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT serial, mirror, forced, sent_at, acked_at, attempts, error, via FROM pushes WHERE serial >= ?1 ORDER BY seq LIMIT 10000",
        )?;
        let rows = st.query_map([from as i64], |r| {
            Ok(PushRow {
                serial: r.get::<_, i64>(0)? as u64,
                mirror: r.get(1)?,
                forced: r.get(2)?,
                sent_at: r.get(3)?,
                acked_at: r.get(4)?,
                attempts: r.get(5)?,
                error: r.get(6)?,
                via: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records what a hub reports of its relays of the push for `serial` (one row per leaf, as
    /// a push `via` the hub), in one transaction.
    pub fn relays_reported(
        &self,
        serial: u64,
        hub: &str,
        relays: &[vdb_proto::RelayOutcome],
        at: i64,
    ) -> Result<(), HistoryError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO pushes(serial, mirror, forced, sent_at, acked_at, attempts, error, via) VALUES (?1,?2,0,?3,?4,?5,?6,?7)",
            )?;
            for r in relays {
                st.execute(params![
                    serial as i64,
                    r.leaf,
                    at,
                    r.acked.then_some(at),
                    r.attempts,
                    r.error,
                    hub
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a mirror's sync report (beyond the newest 200,000 reports, the oldest go), in
    /// one transaction: one commit (one fsync) per report, every mirror of a release reports.
    pub fn sync_reported(&self, row: &SyncRow) -> Result<(), HistoryError> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.prepare_cached(
            "INSERT INTO syncs(serial, mirror, outcome, bytes, hub_bytes, source, duration_ms, reported_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
        )?
        .execute(params![
            row.serial as i64,
            row.mirror,
            row.outcome,
            row.bytes as i64,
            row.hub_bytes as i64,
            row.source,
            row.duration_ms as i64,
            row.reported_at
        ])?;
        tx.prepare_cached("DELETE FROM syncs WHERE seq <= (SELECT MAX(seq) FROM syncs) - ?1")?
            .execute([MAX_SYNC_ROWS])?;
        tx.commit()?;
        Ok(())
    }

    /// Sync reports of serial `from` and later, oldest first (the first 10,000).
    pub fn syncs_since(&self, from: u64) -> Result<Vec<SyncRow>, HistoryError> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT serial, mirror, outcome, bytes, hub_bytes, source, duration_ms, reported_at FROM syncs WHERE serial >= ?1 ORDER BY seq LIMIT 10000",
        )?;
        let rows = st.query_map([from as i64], |r| {
            Ok(SyncRow {
                serial: r.get::<_, i64>(0)? as u64,
                mirror: r.get(1)?,
                outcome: r.get(2)?,
                bytes: r.get::<_, i64>(3)? as u64,
                hub_bytes: r.get::<_, i64>(4)? as u64,
                source: r.get(5)?,
                duration_ms: r.get::<_, i64>(6)? as u64,
                reported_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every registry entry, tombstones included, by name.
    pub fn registry(&self) -> Result<Vec<RegistryEntry>, HistoryError> {
        let c = self.conn();
        let mut st = c.prepare("SELECT record, updated_at, deleted FROM mirrors ORDER BY name")?;
        let rows = st.query_map([], registry_row)?;
        rows.map(|row| registry_entry(row?)).collect()
    }

    /// The registry entry of mirror `name` (removed or not), read alone: a sync report or a
    /// signed pull costs one row, not the whole registry.
    pub fn mirror(&self, name: &str) -> Result<Option<RegistryEntry>, HistoryError> {
        let c = self.conn();
        let mut st =
            c.prepare_cached("SELECT record, updated_at, deleted FROM mirrors WHERE name = ?1")?;
        let row = st.query_row([name], registry_row).optional()?;
        row.map(registry_entry).transpose()
    }

    /// The live (not removed) mirror records.
    pub fn mirrors(&self) -> Result<Vec<MirrorRecord>, HistoryError> {
        Ok(self
            .registry()?
            .into_iter()
            .filter(|e| !e.deleted)
            .map(|e| e.record)
            .collect())
    }

    /// Writes an entry if it is newer than the held one (or there is none). Returns whether it
    /// was written.
    pub fn put_mirror(&self, entry: &RegistryEntry) -> Result<bool, HistoryError> {
        let text = serde_json::to_string(&entry.record)
            .map_err(|e| HistoryError::Corrupt(e.to_string()))?;
        let n = self.conn().execute(
            "INSERT INTO mirrors(name, record, updated_at, deleted) VALUES (?1,?2,?3,?4)
             ON CONFLICT(name) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at, deleted = excluded.deleted
             WHERE excluded.updated_at > mirrors.updated_at",
            params![entry.record.name, text, entry.updated_at, entry.deleted],
        )?;
        Ok(n > 0)
    }

    /// A peer's replication cursor.
    pub fn cursor(&self, peer: &str) -> Result<i64, HistoryError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT after FROM peer_cursors WHERE peer = ?1",
                [peer],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Moves a peer's replication cursor.
    pub fn set_cursor(&self, peer: &str, after: i64) -> Result<(), HistoryError> {
        self.conn().execute(
            "INSERT INTO peer_cursors(peer, after) VALUES (?1, ?2) ON CONFLICT(peer) DO UPDATE SET after = excluded.after",
            params![peer, after],
        )?;
        Ok(())
    }
}

/// A `mirrors` row: the record's text, `updated_at`, `deleted`.
fn registry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, i64, bool)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn registry_entry(
    (text, updated_at, deleted): (String, i64, bool),
) -> Result<RegistryEntry, HistoryError> {
    let record = serde_json::from_str(&text).map_err(|e| HistoryError::Corrupt(e.to_string()))?;
    Ok(RegistryEntry {
        record,
        updated_at,
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mirror_is_read_alone_removed_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("history.sqlite")).unwrap();
        for (name, deleted) in [("m1", false), ("m2", true), ("m3", false)] {
            let entry = RegistryEntry {
                record: MirrorRecord::new(name, format!("http://127.0.0.1:1/{name}")),
                updated_at: 7,
                deleted,
            };
            assert!(h.put_mirror(&entry).unwrap());
        }
        let m1 = h.mirror("m1").unwrap().unwrap();
        assert_eq!((m1.record.name.as_str(), m1.deleted), ("m1", false));
        assert_eq!(m1.record.base_urls, ["http://127.0.0.1:1/m1"]);
        let m2 = h.mirror("m2").unwrap().unwrap();
        assert_eq!((m2.record.name.as_str(), m2.deleted), ("m2", true));
        assert!(h.mirror("m4").unwrap().is_none());
        assert!(h.mirror("m1' OR '1'='1").unwrap().is_none());
        // The same entries as the whole registry holds them.
        let all = h.registry().unwrap();
        assert_eq!(all.len(), 3);
        assert!(all.iter().any(|e| e.record == m1.record && !e.deleted));
    }
}
