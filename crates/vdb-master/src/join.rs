//! Mirrors joining the network and managing their own registry records with their identity
//! keys, and the registry's history.
//!
//! A mirror sends a [`MirrorRequest`] signed by its identity key. A join waits in a bounded
//! table of pending requests (at most `join_max_pending`, each at most [`MAX_REQUEST_BYTES`],
//! dropped after `join_expiry_secs`) until the network's admin approves it, which writes the
//! registry record with the key pinned, or rejects it. A registered mirror's later requests
//! (update, maintenance, key rotation, leave) must be signed by its pinned key. Every request
//! is refused outside a window of the master's clock and when its nonce was seen (the nonces
//! are kept on disk for twice the window, so a restart does not open a replay).
//!
//! Pending requests and the history replicate to the peers inside the signed
//! [`vdb_proto::RegistryExport`]; a peer verifies each request's own signature again.
//!
//! The state lives in `join.sqlite` beside the release history; the store owns it, and the
//! HTTP API's handlers (`server/join.rs`) read and write it.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension as _, params};
use vdb_proto::{
    JoinState, MAX_REQUEST_BYTES, MirrorAction, MirrorRequest, PendingJoin, PublicKey,
    RegistryEvent, Signed,
};

/// How far a mirror request's time may be from the master's clock (seconds).
pub(crate) const REQUEST_WINDOW: i64 = 300;

/// How far a signed pull's time may be from the master's clock (seconds).
pub(crate) const PULL_WINDOW: i64 = 120;

/// The most nonces kept (they are kept for twice [`REQUEST_WINDOW`]); beyond it requests are
/// refused until old ones age out, so a flood of signed requests cannot fill the disk.
const MAX_NONCES: i64 = 100_000;

/// The most history events one export carries (and one pull from a peer takes).
pub(crate) const EXPORT_EVENTS: i64 = 500;

const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS pending(
    name TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    received_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces(nonce TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE,
    mirror TEXT NOT NULL,
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_mirror ON events(mirror, seq);
";

/// The join and registry-history database (cheap to clone; every method blocks).
#[derive(Debug, Clone)]
pub(crate) struct JoinDb {
    conn: Arc<Mutex<Connection>>,
    master: String,
}

fn state_text(s: JoinState) -> &'static str {
    match s {
        JoinState::Pending => "pending",
        JoinState::Approved => "approved",
        JoinState::Rejected => "rejected",
    }
}

fn parse_state(s: &str) -> JoinState {
    match s {
        "approved" => JoinState::Approved,
        "rejected" => JoinState::Rejected,
        _ => JoinState::Pending,
    }
}

fn row_to_pending(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingJoin> {
    Ok(PendingJoin {
        name: r.get(0)?,
        request: r.get(1)?,
        state: parse_state(&r.get::<_, String>(2)?),
        reason: r.get(3)?,
        received_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

const PENDING_COLS: &str = "name, request, state, reason, received_at, updated_at";

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<RegistryEvent> {
    Ok(RegistryEvent {
        id: r.get(0)?,
        mirror: r.get(1)?,
        at: r.get(2)?,
        action: r.get(3)?,
        actor: r.get(4)?,
        detail: r.get(5)?,
    })
}

impl JoinDb {
    /// Opens (creating) `path`; `master` names this master in the events' ids.
    pub(crate) fn open(path: &Path, master: &str) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            master: master.to_owned(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `nonce` (seen at `now`); false if it was seen already or the table is full.
    /// Nonces older than twice the window are forgotten first (their requests are stale).
    pub(crate) fn fresh_nonce(&self, nonce: &str, now: i64) -> rusqlite::Result<bool> {
        let c = self.conn();
        c.execute(
            "DELETE FROM nonces WHERE at < ?1",
            [now.saturating_sub(2 * REQUEST_WINDOW)],
        )?;
        let n: i64 = c.query_row("SELECT count(*) FROM nonces", [], |r| r.get(0))?;
        if n >= MAX_NONCES {
            return Ok(false);
        }
        Ok(c.execute(
            "INSERT OR IGNORE INTO nonces(nonce, at) VALUES (?1, ?2)",
            params![nonce, now],
        )? == 1)
    }

    /// Drops requests not changed for `expiry` seconds.
    pub(crate) fn prune(&self, now: i64, expiry: i64) -> rusqlite::Result<()> {
        self.conn().execute(
            "DELETE FROM pending WHERE updated_at < ?1",
            [now.saturating_sub(expiry)],
        )?;
        Ok(())
    }

    /// One request.
    pub(crate) fn get(&self, name: &str) -> rusqlite::Result<Option<PendingJoin>> {
        self.conn()
            .query_row(
                &format!("SELECT {PENDING_COLS} FROM pending WHERE name = ?1"),
                [name],
                row_to_pending,
            )
            .optional()
    }

    /// Every request, by name.
    pub(crate) fn all(&self) -> rusqlite::Result<Vec<PendingJoin>> {
        let c = self.conn();
        let mut st = c.prepare(&format!("SELECT {PENDING_COLS} FROM pending ORDER BY name"))?;
        let rows = st.query_map([], row_to_pending)?;
        rows.collect()
    }

    /// How many requests wait, not counting `except`'s.
    pub(crate) fn waiting(&self, except: &str) -> rusqlite::Result<i64> {
        self.conn().query_row(
            "SELECT count(*) FROM pending WHERE state = 'pending' AND name != ?1",
            [except],
            |r| r.get(0),
        )
    }

    /// Writes `p` (pinning `key`) if it is newer than the held one; whether it was written.
    pub(crate) fn put(&self, p: &PendingJoin, key: &PublicKey) -> rusqlite::Result<bool> {
        Ok(self.conn().execute(
            "INSERT INTO pending(name, request, key, state, reason, received_at, updated_at)
             VALUES (?1,?2,?3,?4,?5,?6,?7)
             ON CONFLICT(name) DO UPDATE SET request = excluded.request, key = excluded.key,
               state = excluded.state, reason = excluded.reason,
               received_at = excluded.received_at, updated_at = excluded.updated_at
             WHERE excluded.updated_at > pending.updated_at",
            params![
                p.name,
                p.request,
                key.to_string(),
                state_text(p.state),
                p.reason,
                p.received_at,
                p.updated_at
            ],
        )? > 0)
    }

    /// Appends a history event made here; returns it.
    pub(crate) fn log(
        &self,
        mirror: &str,
        at: i64,
        action: &str,
        actor: &str,
        detail: &str,
    ) -> rusqlite::Result<RegistryEvent> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute(
            "INSERT INTO events(mirror, at, action, actor, detail) VALUES (?1,?2,?3,?4,?5)",
            params![mirror, at, action, actor, detail],
        )?;
        let seq = tx.last_insert_rowid();
        let id = format!("{}:{seq}", self.master);
        tx.execute("UPDATE events SET id = ?1 WHERE seq = ?2", params![id, seq])?;
        tx.commit()?;
        Ok(RegistryEvent {
            id,
            mirror: mirror.to_owned(),
            at,
            action: action.to_owned(),
            actor: actor.to_owned(),
            detail: detail.to_owned(),
        })
    }

    /// Keeps a peer's event unless it is held already.
    pub(crate) fn merge_event(&self, e: &RegistryEvent) -> rusqlite::Result<bool> {
        Ok(self.conn().execute(
            "INSERT OR IGNORE INTO events(id, mirror, at, action, actor, detail) VALUES (?1,?2,?3,?4,?5,?6)",
            params![e.id, e.mirror, e.at, e.action, e.actor, e.detail],
        )? == 1)
    }

    /// A mirror's events (all mirrors' with `None`), newest first, at most `limit`.
    pub(crate) fn events(
        &self,
        mirror: Option<&str>,
        limit: i64,
    ) -> rusqlite::Result<Vec<RegistryEvent>> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT id, mirror, at, action, actor, detail FROM events
             WHERE ?1 IS NULL OR mirror = ?1 ORDER BY at DESC, seq DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![mirror, limit], row_to_event)?;
        rows.collect()
    }
}

/// The request inside a pending join and the key that signed it (`None` if it does not verify).
pub(crate) fn request_key(p: &PendingJoin) -> Option<(MirrorRequest, PublicKey)> {
    let env = Signed::<MirrorRequest>::from_json(p.request.as_bytes()).ok()?;
    let key = env.signer();
    Some((env.verify(&[key]).ok()?, key))
}

/// Takes a peer's pending requests and events (from its verified export): each request's own
/// signature is checked again, and only as many as this master would hold itself are kept.
pub(crate) fn merge_from_peer(
    db: &JoinDb,
    network: &str,
    max_pending: usize,
    pending: Vec<PendingJoin>,
    events: Vec<RegistryEvent>,
    now: i64,
) -> rusqlite::Result<()> {
    let mut waiting = db.waiting("")?;
    for p in pending.into_iter().take(max_pending.saturating_mul(2)) {
        let Some((req, key)) = request_key(&p) else {
            continue;
        };
        if req.network != network
            || req.name != p.name
            || !matches!(req.action, MirrorAction::Join(_))
            || p.request.len() > MAX_REQUEST_BYTES
            || p.reason.as_ref().is_some_and(|r| r.len() > 1000)
            || p.updated_at > now.saturating_add(REQUEST_WINDOW)
        {
            continue;
        }
        let new_waiting = p.state == JoinState::Pending && db.get(&p.name)?.is_none();
        if new_waiting && waiting >= i64::try_from(max_pending).unwrap_or(i64::MAX) {
            continue;
        }
        if db.put(&p, &key)? && new_waiting {
            waiting += 1;
        }
    }
    for e in events
        .into_iter()
        .take(usize::try_from(EXPORT_EVENTS).unwrap_or(500))
    {
        if !vdb_proto::is_safe_db_name(&e.mirror)
            || e.id.len() > 100
            || e.action.len() > 40
            || e.actor.len() > 100
            || e.detail.len() > 2000
        {
            continue;
        }
        db.merge_event(&e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdb_proto::{MirrorRecord, SecretKey};

    fn pending(name: &str, key: &SecretKey, at: i64, state: JoinState) -> PendingJoin {
        let mut r = MirrorRecord::new(name, "http://m.example");
        r.identity_key = Some(key.public());
        let req = MirrorRequest::new("net", name, at, MirrorAction::Join(r));
        PendingJoin {
            name: name.into(),
            request: Signed::sign(&req, key).to_json(),
            state,
            reason: None,
            received_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn requests_newest_wins_expire_and_nonces_refuse_replays() {
        let dir = tempfile::tempdir().unwrap();
        let db = JoinDb::open(&dir.path().join("join.sqlite"), "a").unwrap();
        let k = SecretKey::from_seed([1; 32]);
        assert!(
            db.put(&pending("m1", &k, 100, JoinState::Pending), &k.public())
                .unwrap()
        );
        assert!(
            !db.put(&pending("m1", &k, 90, JoinState::Rejected), &k.public())
                .unwrap(),
            "an older change loses"
        );
        assert!(
            db.put(&pending("m1", &k, 101, JoinState::Approved), &k.public())
                .unwrap()
        );
        assert_eq!(db.get("m1").unwrap().unwrap().state, JoinState::Approved);
        assert!(
            db.put(&pending("m2", &k, 200, JoinState::Pending), &k.public())
                .unwrap()
        );
        assert_eq!(db.waiting("").unwrap(), 1);
        assert_eq!(db.waiting("m2").unwrap(), 0);
        db.prune(250, 100).unwrap();
        assert!(db.get("m1").unwrap().is_none(), "expired");
        assert!(db.get("m2").unwrap().is_some());

        assert!(db.fresh_nonce("ab", 1000).unwrap());
        assert!(!db.fresh_nonce("ab", 1001).unwrap(), "a replay");
        // Forgotten only once its requests are stale anyway.
        assert!(db.fresh_nonce("ab", 1000 + 2 * REQUEST_WINDOW + 1).unwrap());
    }

    #[test]
    fn events_get_ids_and_merge_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = JoinDb::open(&dir.path().join("join.sqlite"), "a").unwrap();
        let e = db.log("m1", 10, "approve", "admin", "x").unwrap();
        assert_eq!(e.id, "a:1");
        let mut peer = e.clone();
        peer.id = "b:1".into();
        peer.at = 11;
        assert!(db.merge_event(&peer).unwrap());
        assert!(!db.merge_event(&peer).unwrap());
        assert!(!db.merge_event(&e).unwrap());
        let all = db.events(Some("m1"), 10).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, "b:1", "newest first");
        assert!(db.events(Some("m2"), 10).unwrap().is_empty());
    }

    #[test]
    fn a_peers_forged_or_foreign_requests_are_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let db = JoinDb::open(&dir.path().join("join.sqlite"), "a").unwrap();
        let k = SecretKey::from_seed([2; 32]);
        let good = pending("m1", &k, 100, JoinState::Pending);
        let mut renamed = pending("m2", &k, 100, JoinState::Pending);
        renamed.name = "m3".into();
        let mut tampered = pending("m4", &k, 100, JoinState::Pending);
        tampered.request = tampered.request.replace("m.example", "x.example");
        let future = pending("m5", &k, 10_000, JoinState::Pending);
        merge_from_peer(
            &db,
            "net",
            2,
            vec![good, renamed, tampered, future],
            Vec::new(),
            100,
        )
        .unwrap();
        let names: Vec<String> = db.all().unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, vec!["m1".to_owned()]);
        // The bound holds for replicated requests too.
        let many: Vec<PendingJoin> = (0..5)
            .map(|i| pending(&format!("n{i}"), &k, 100, JoinState::Pending))
            .collect();
        merge_from_peer(&db, "net", 2, many, Vec::new(), 100).unwrap();
        assert_eq!(db.waiting("").unwrap(), 2);
    }
}
