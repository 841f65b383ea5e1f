//! Access statistics for `/local_stats/`: requests, bytes, status codes and client versions per
//! file and day, counted in memory and written to SQLite in batches.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rusqlite::Connection;
use serde::Serialize;

/// The user agent of ClamAV's historical mirror checker; never counted.
pub(crate) const MIRROR_CHECK: &str = "ClamAV-MirrorCheck";

/// One row of the statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Row {
    pub(crate) day: String,
    pub(crate) file: String,
    pub(crate) status: u16,
    pub(crate) client: String,
    pub(crate) requests: u64,
    pub(crate) bytes: u64,
}

/// FNV-1a: the keys are short names and versions from a bounded set (served names, one
/// "not found" row, `ClamAV/x.y.z`), so a fast non-keyed hash is enough.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// Requests and bytes by status.
type ByStatus = Map<u16, (u64, u64)>;

/// Counts not yet written: day number → file → client → status. Nested so that counting an
/// already seen combination allocates nothing.
#[derive(Debug, Default)]
struct Pending {
    counts: Map<i64, Map<String, Map<String, ByStatus>>>,
    len: usize,
}

/// Pending counts are split in shards, one per serve thread (by a thread-local index), so that
/// serve threads do not contend on one lock; a flush merges them in one transaction.
const SHARDS: usize = 16;
/// Bound on distinct combinations pending per shard (a backstop against floods).
const SHARD_MAX: usize = 100_000 / SHARDS;

/// One shard, on its own cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<Pending>);

fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

/// Counted statistics.
#[derive(Debug)]
pub(crate) struct Stats {
    excluded: Vec<String>,
    pending: Box<[Shard]>,
    db: Mutex<Connection>,
}

/// The client of a user agent, in a strict grammar so that the set stays small: `ClamAV/1.4.6`
/// from `ClamAV/1.4.6 (OS: Linux, …)` (two to four numeric parts of at most three digits), with
/// any pre-release suffix (`1.5.0-rc`, `-devel-…`) counted as `-pre`; every other agent is
/// `other`.
pub(crate) fn client_version(user_agent: &str) -> std::borrow::Cow<'_, str> {
    let Some(rest) = user_agent.strip_prefix("ClamAV/") else {
        return "other".into();
    };
    let end = rest.find([' ', '(', '-']).unwrap_or(rest.len());
    let (version, after) = rest.split_at(end);
    let parts = version.split('.');
    let numeric = (2..=4).contains(&parts.clone().count())
        && parts
            .into_iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric {
        "other".into()
    } else if after.starts_with('-') {
        format!("ClamAV/{version}-pre").into()
    } else {
        // The common case, on every request: a slice of the agent, no allocation.
        user_agent[..7 + end].into()
    }
}

/// At most this many distinct clients are kept per day; past it, new ones count as `other`
/// (user agents are the client's to choose: a flood of made-up versions must not grow the
/// table).
const MAX_CLIENTS_PER_DAY: usize = 256;

/// `YYYY-MM-DD` (UTC) of a Unix time.
pub(crate) fn day(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

impl Stats {
    /// Opens (creates) the statistics database.
    pub(crate) fn open(path: &Path, monitor_agent: &str) -> rusqlite::Result<Self> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS access (
                day TEXT NOT NULL, file TEXT NOT NULL, status INTEGER NOT NULL,
                client TEXT NOT NULL, requests INTEGER NOT NULL, bytes INTEGER NOT NULL,
                PRIMARY KEY (day, file, status, client))",
        )?;
        let mut excluded = vec![MIRROR_CHECK.to_owned()];
        if !monitor_agent.is_empty() {
            excluded.push(monitor_agent.to_owned());
        }
        Ok(Self {
            excluded,
            pending: (0..SHARDS).map(|_| Shard::default()).collect(),
            db: Mutex::new(db),
        })
    }

    /// Counts one response (unless the agent is the checker or the monitor).
    pub(crate) fn record(&self, now: i64, user_agent: &str, file: &str, status: u16, bytes: u64) {
        if self
            .excluded
            .iter()
            .any(|x| user_agent.contains(x.as_str()))
        {
            return;
        }
        let client = client_version(user_agent);
        let client = client.as_ref();
        let mut p = self.pending[shard_index()]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let p = &mut *p;
        let by_file = p.counts.entry(now.div_euclid(86_400)).or_default();
        let slot = match by_file.get_mut(file).and_then(|c| c.get_mut(client)) {
            Some(by_status) => by_status.entry(status).or_default(),
            None => {
                // Bound memory against request floods: past the bound a new client is counted
                // as `other` (names are limited to the served set and one "not found" row, so
                // `other` adds a bounded number of entries).
                let client = if p.len >= SHARD_MAX { "other" } else { client };
                p.len += 1;
                by_file
                    .entry(file.to_owned())
                    .or_default()
                    .entry(client.to_owned())
                    .or_default()
                    .entry(status)
                    .or_default()
            }
        };
        slot.0 += 1;
        slot.1 += bytes;
    }

    /// Writes pending counts to SQLite (blocking).
    pub(crate) fn flush(&self) -> rusqlite::Result<()> {
        let batches: Vec<Pending> = self
            .pending
            .iter()
            .map(|s| std::mem::take(&mut *s.0.lock().unwrap_or_else(|e| e.into_inner())))
            .filter(|p| !p.counts.is_empty())
            .collect();
        if batches.is_empty() {
            return Ok(());
        }
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let tx = db.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO access (day, file, status, client, requests, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (day, file, status, client) DO UPDATE SET
                 requests = requests + excluded.requests, bytes = bytes + excluded.bytes",
            )?;
            let mut known: Map<i64, std::collections::HashSet<String>> = Map::default();
            for (daynum, files) in batches.iter().flat_map(|b| &b.counts) {
                let d = day(daynum * 86_400);
                if !known.contains_key(daynum) {
                    let mut q =
                        tx.prepare_cached("SELECT DISTINCT client FROM access WHERE day = ?1")?;
                    let seen = q
                        .query_map([&d], |r| r.get::<_, String>(0))?
                        .collect::<Result<_, _>>()?;
                    known.insert(*daynum, seen);
                }
                let seen = known.get_mut(daynum).expect("just filled");
                for (file, clients) in files {
                    for (client, statuses) in clients {
                        let client = if seen.contains(client) || seen.len() < MAX_CLIENTS_PER_DAY {
                            seen.insert(client.clone());
                            client.as_str()
                        } else {
                            "other"
                        };
                        for (status, (n, b)) in statuses {
                            st.execute(rusqlite::params![
                                d, file, status, client, *n as i64, *b as i64
                            ])?;
                        }
                    }
                }
            }
        }
        tx.commit()
    }

    /// Everything counted so far (flushes first), newest day first.
    pub(crate) fn rows(&self) -> rusqlite::Result<Vec<Row>> {
        self.flush()?;
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = db.prepare(
            "SELECT day, file, status, client, requests, bytes FROM access
             ORDER BY day DESC, file, status, client LIMIT 100000",
        )?;
        let rows = st
            .query_map([], |r| {
                Ok(Row {
                    day: r.get(0)?,
                    file: r.get(1)?,
                    status: r.get(2)?,
                    client: r.get(3)?,
                    requests: r.get::<_, i64>(4)? as u64,
                    bytes: r.get::<_, i64>(5)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML page.
pub(crate) fn html(mirror: &str, rows: &[Row]) -> String {
    let mut out = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0} access statistics</title>\
         <style>body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}\
         td.n{{text-align:right}}</style></head><body><h1>{0}: access statistics</h1>\
         <p>Monitor and ClamAV-MirrorCheck requests are not counted. \
         <a href=\"?format=json\">JSON</a></p><table><tr><th>day</th><th>file</th>\
         <th>status</th><th>client</th><th>requests</th><th>bytes</th></tr>",
        esc(mirror)
    );
    for r in rows {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            esc(&r.day),
            esc(&r.file),
            r.status,
            esc(&r.client),
            r.requests,
            r.bytes
        ));
    }
    out.push_str("</table></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_versions() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(1_624_412_045), "2021-06-23");
        assert_eq!(day(951_782_400), "2000-02-29");
        assert_eq!(
            client_version("ClamAV/1.4.6 (OS: Linux, ARCH: x86_64)"),
            "ClamAV/1.4.6"
        );
        assert_eq!(client_version("curl/8"), "other");
        assert_eq!(
            client_version("ClamAV/1.5.0-rc (OS: linux)"),
            "ClamAV/1.5.0-pre"
        );
        assert_eq!(client_version("ClamAV/0.103.12"), "ClamAV/0.103.12");
        for made_up in [
            "ClamAV/1.4.6x",
            "ClamAV/1",
            "ClamAV/1.2.3.4.5",
            "ClamAV/1234.1.1",
            "ClamAV/a.b.c",
            "ClamAV/1..2",
            "ClamAV/",
        ] {
            assert_eq!(client_version(made_up), "other", "{made_up}");
        }
    }

    #[test]
    fn made_up_versions_are_bounded_per_day() {
        let dir = tempfile::tempdir().unwrap();
        let s = Stats::open(&dir.path().join("stats.sqlite"), "").unwrap();
        // Tens of thousands of distinct agents, in several flushes, on one day.
        for round in 0..5u32 {
            for i in 0..10_000u32 {
                let n = round * 10_000 + i;
                let ua = format!(
                    "ClamAV/{}.{}.{} (flood)",
                    n / 1_000_000,
                    n / 1000 % 1000,
                    n % 1000
                );
                s.record(0, &ua, "daily.cvd", 200, 1);
            }
            s.flush().unwrap();
        }
        let rows = s.rows().unwrap();
        let clients: std::collections::HashSet<&str> =
            rows.iter().map(|r| r.client.as_str()).collect();
        assert_eq!(
            clients.len(),
            MAX_CLIENTS_PER_DAY + 1,
            "{} clients",
            clients.len()
        );
        assert!(clients.contains("other"));
        // Every request is still counted.
        assert_eq!(rows.iter().map(|r| r.requests).sum::<u64>(), 50_000);
        // A new day has room again.
        s.record(86_400, "ClamAV/1.4.6", "daily.cvd", 200, 1);
        assert!(
            s.rows()
                .unwrap()
                .iter()
                .any(|r| r.day == "1970-01-02" && r.client == "ClamAV/1.4.6")
        );
    }

    #[test]
    fn counts_persist_and_exclude_checkers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.sqlite");
        let s = Stats::open(&path, "vdbnet-monitor").unwrap();
        s.record(0, "ClamAV/1.4.6 (x)", "daily.cvd", 200, 10);
        s.record(0, "ClamAV/1.4.6 (y)", "daily.cvd", 200, 5);
        s.record(0, "ClamAV-MirrorCheck", "daily.cvd", 200, 5);
        s.record(0, "vdbnet-monitor/0.1", "daily.cvd", 200, 5);
        s.flush().unwrap();
        drop(s);
        let s = Stats::open(&path, "vdbnet-monitor").unwrap();
        s.record(0, "ClamAV/1.4.6", "daily.cvd", 200, 1);
        let rows = s.rows().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].requests, 3);
        assert_eq!(rows[0].bytes, 16);
        assert!(html("m", &rows).contains("ClamAV/1.4.6"));
    }

    #[test]
    fn shards_of_many_threads_merge_into_one_row() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(Stats::open(&dir.path().join("s.sqlite"), "mon").unwrap());
        let threads: Vec<_> = (0..SHARDS + 3)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        s.record(86_400, "ClamAV/1.4.6", "daily.cvd", 206, 512);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        s.record(86_400, "ClamAV/1.4.6", "daily.cvd", 304, 0);
        let rows = s.rows().unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        let partial = rows.iter().find(|r| r.status == 206).unwrap();
        assert_eq!(partial.requests, (SHARDS as u64 + 3) * 100);
        assert_eq!(partial.bytes, (SHARDS as u64 + 3) * 100 * 512);
        assert_eq!(partial.day, "1970-01-02");
        // Everything was written: a second flush adds nothing.
        assert_eq!(s.rows().unwrap(), rows);
    }
}
