//! The intake's SQLite file (WAL): one row per sample (by SHA-256) with its triage and
//! publication, one row per submission with the hash of its tracking id.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension as _, params};
use vdb_proto::sample::{
    Publication, SampleRecord, SampleState, ScanResult, Submission, SubmissionStatus, TrackingId,
};

/// A failure of the intake's database.
#[derive(Debug, thiserror::Error)]
#[error("intake database {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

type Result<T> = std::result::Result<T, StoreError>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS samples (
  sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, zip_size INTEGER NOT NULL,
  first_seen INTEGER NOT NULL,
  scan_at INTEGER, scan_engine TEXT, scan_outcome TEXT, scan_detail TEXT,
  pub_db TEXT, pub_version INTEGER, pub_detection TEXT, pub_at INTEGER);
CREATE TABLE IF NOT EXISTS submissions (
  id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL REFERENCES samples(sha256),
  tracking TEXT NOT NULL UNIQUE, at INTEGER NOT NULL, client TEXT NOT NULL,
  file_name TEXT, claimed TEXT, note TEXT NOT NULL, email TEXT);
CREATE INDEX IF NOT EXISTS submissions_sha ON submissions (sha256);
";

/// The records.
#[derive(Debug)]
pub(crate) struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SAMPLE_COLS: &str = "sha256, size, first_seen, scan_at, scan_engine, scan_outcome, \
     scan_detail, pub_db, pub_version, pub_detection, pub_at, \
     (SELECT COUNT(*) FROM submissions s WHERE s.sha256 = samples.sha256)";

fn sample_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SampleRecord> {
    let scan = match r.get::<_, Option<i64>>(3)? {
        Some(at) => Some(ScanResult {
            at,
            engine: r.get(4)?,
            outcome: r.get(5)?,
            detail: r.get(6)?,
        }),
        None => None,
    };
    let published = match r.get::<_, Option<String>>(7)? {
        Some(db) => Some(Publication {
            db,
            version: r.get(8)?,
            detection: r.get(9)?,
            at: r.get(10)?,
        }),
        None => None,
    };
    Ok(SampleRecord {
        sha256: r.get(0)?,
        size: r.get::<_, i64>(1)?.try_into().unwrap_or(0),
        first_seen: r.get(2)?,
        state: state(scan.as_ref(), published.as_ref()),
        scan,
        published,
        submission_count: r.get(11)?,
        submissions: Vec::new(),
    })
}

/// Where a sample stands.
fn state(scan: Option<&ScanResult>, published: Option<&Publication>) -> SampleState {
    if published.is_some() {
        SampleState::SignaturePublished
    } else if scan.is_some_and(|s| s.outcome == "found") {
        SampleState::AlreadyDetected
    } else {
        SampleState::Received
    }
}

impl Store {
    /// Opens (creating) the database.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let err = |source| StoreError {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut c = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut c).map_err(|source| StoreError {
            path: self.path.clone(),
            source,
        })
    }

    /// Bytes the quarantine holds.
    pub(crate) fn quarantine_bytes(&self) -> Result<u64> {
        self.with(|c| {
            c.query_row("SELECT COALESCE(SUM(zip_size), 0) FROM samples", [], |r| {
                Ok(r.get::<_, i64>(0)?.try_into().unwrap_or(0))
            })
        })
    }

    /// Whether a sample is known.
    pub(crate) fn has(&self, sha256: &str) -> Result<bool> {
        self.with(|c| {
            c.query_row("SELECT 1 FROM samples WHERE sha256 = ?1", [sha256], |_| {
                Ok(())
            })
            .optional()
            .map(|o| o.is_some())
        })
    }

    /// Records a submission, adding the sample if it is new. Returns whether it was known.
    pub(crate) fn add(
        &self,
        sha256: &str,
        size: u64,
        zip_size: u64,
        tracking: &TrackingId,
        s: &Submission,
    ) -> Result<bool> {
        self.with(|c| {
            let tx = c.transaction()?;
            let new = tx.execute(
                "INSERT OR IGNORE INTO samples (sha256, size, zip_size, first_seen) VALUES (?1, ?2, ?3, ?4)",
                params![
                    sha256,
                    i64::try_from(size).unwrap_or(i64::MAX),
                    i64::try_from(zip_size).unwrap_or(i64::MAX),
                    s.at
                ],
            )? == 1;
            tx.execute(
                "INSERT INTO submissions (sha256, tracking, at, client, file_name, claimed, note, email) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    sha256,
                    tracking.digest(),
                    s.at,
                    s.client,
                    s.file_name,
                    s.claimed,
                    s.note,
                    s.email
                ],
            )?;
            tx.commit()?;
            Ok(!new)
        })
    }

    /// Records triage.
    pub(crate) fn set_scan(&self, sha256: &str, r: &ScanResult) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE samples SET scan_at = ?2, scan_engine = ?3, scan_outcome = ?4, scan_detail = ?5 \
                 WHERE sha256 = ?1",
                params![sha256, r.at, r.engine, r.outcome, r.detail],
            )
            .map(drop)
        })
    }

    /// Records the release that detects a sample. `false` if the sample is unknown.
    pub(crate) fn set_published(&self, sha256: &str, p: &Publication) -> Result<bool> {
        self.with(|c| {
            c.execute(
                "UPDATE samples SET pub_db = ?2, pub_version = ?3, pub_detection = ?4, pub_at = ?5 \
                 WHERE sha256 = ?1",
                params![sha256, p.db, p.version, p.detection, p.at],
            )
            .map(|n| n == 1)
        })
    }

    /// Samples not triaged yet (after a restart).
    pub(crate) fn unscanned(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT sha256 FROM samples WHERE scan_at IS NULL")?;
            st.query_map([], |r| r.get(0))?.collect()
        })
    }

    /// Samples, newest first, optionally in one state.
    pub(crate) fn list(&self, limit: u32, only: Option<SampleState>) -> Result<Vec<SampleRecord>> {
        let all = self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {SAMPLE_COLS} FROM samples ORDER BY first_seen DESC, sha256"
            ))?;
            st.query_map([], sample_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(all
            .into_iter()
            .filter(|r| only.is_none_or(|s| r.state == s))
            .take(limit as usize)
            .collect())
    }

    /// One sample with its submissions.
    pub(crate) fn show(&self, sha256: &str) -> Result<Option<SampleRecord>> {
        self.with(|c| {
            let Some(mut rec) = c
                .query_row(
                    &format!("SELECT {SAMPLE_COLS} FROM samples WHERE sha256 = ?1"),
                    [sha256],
                    sample_row,
                )
                .optional()?
            else {
                return Ok(None);
            };
            let mut st = c.prepare(
                "SELECT at, client, file_name, claimed, note, email FROM submissions \
                 WHERE sha256 = ?1 ORDER BY id",
            )?;
            rec.submissions = st
                .query_map([sha256], |r| {
                    Ok(Submission {
                        at: r.get(0)?,
                        client: r.get(1)?,
                        file_name: r.get(2)?,
                        claimed: r.get(3)?,
                        note: r.get(4)?,
                        email: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some(rec))
        })
    }

    /// A submitter's view, by tracking id.
    pub(crate) fn status(&self, id: &TrackingId) -> Result<Option<SubmissionStatus>> {
        let found = self.with(|c| {
            c.query_row(
                "SELECT sha256, at FROM submissions WHERE tracking = ?1",
                [id.digest()],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
        })?;
        let Some((sha, at)) = found else {
            return Ok(None);
        };
        let Some(rec) = self.show(&sha)? else {
            return Ok(None);
        };
        let detected_as = rec
            .scan
            .as_ref()
            .filter(|s| s.outcome == "found")
            .and_then(|s| s.detail.clone());
        Ok(Some(SubmissionStatus {
            sha256: rec.sha256,
            size: rec.size,
            received_at: at,
            state: rec.state,
            scanned: rec.scan.is_some(),
            detected_as,
            published: rec.published,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(at: i64, email: Option<&str>) -> Submission {
        Submission {
            at,
            client: "127.0.0.1".into(),
            file_name: Some("x.exe".into()),
            claimed: None,
            note: String::new(),
            email: email.map(str::to_owned),
        }
    }

    #[test]
    fn dedupe_adds_a_submitter_and_states_follow() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("i.sqlite")).unwrap();
        let (a, b) = (TrackingId::generate(), TrackingId::generate());
        assert!(!s.add("aa", 3, 100, &a, &sub(10, None)).unwrap());
        assert!(s.add("aa", 3, 100, &b, &sub(20, Some("x@y.org"))).unwrap());
        let rec = s.show("aa").unwrap().unwrap();
        assert_eq!(rec.submission_count, 2);
        assert_eq!(rec.submissions[1].email.as_deref(), Some("x@y.org"));
        assert_eq!(s.quarantine_bytes().unwrap(), 100);
        assert_eq!(s.unscanned().unwrap(), vec!["aa".to_owned()]);
        let st = s.status(&b).unwrap().unwrap();
        assert_eq!(
            (st.received_at, st.state, st.scanned),
            (20, SampleState::Received, false)
        );
        s.set_scan(
            "aa",
            &ScanResult {
                at: 30,
                engine: "clamscan".into(),
                outcome: "found".into(),
                detail: Some("Eicar-Test-Signature".into()),
            },
        )
        .unwrap();
        let st = s.status(&a).unwrap().unwrap();
        assert_eq!(st.state, SampleState::AlreadyDetected);
        assert_eq!(st.detected_as.as_deref(), Some("Eicar-Test-Signature"));
        let p = Publication {
            db: "daily".into(),
            version: 7,
            detection: None,
            at: 40,
        };
        assert!(s.set_published("aa", &p).unwrap());
        assert!(!s.set_published("bb", &p).unwrap());
        assert_eq!(
            s.status(&a).unwrap().unwrap().state,
            SampleState::SignaturePublished
        );
        assert!(s.status(&TrackingId::generate()).unwrap().is_none());
        assert_eq!(s.list(10, None).unwrap().len(), 1);
        assert!(s.list(10, Some(SampleState::Received)).unwrap().is_empty());
    }
}
