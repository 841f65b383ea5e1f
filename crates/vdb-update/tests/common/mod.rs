//! Test doubles: a local HTTP mirror (axum on 127.0.0.1:0) serving real fixture bytes, with
//! injectable statuses, and a UDP DNS server answering TXT records.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;

pub use vdb_testkit::fixtures::path as fixture;
pub use vdb_testkit::output_text as text;

/// Build time (header field 8) of a container.
pub fn build_secs(path: &Path) -> u64 {
    let h = vdb_format::container::read_header(std::fs::File::open(path).unwrap()).unwrap();
    h.build_secs.unwrap()
}

/// Copies a fixture into `dir/name`, with mtime = its build time for containers (so the
/// mirror's If-Modified-Since answers are exact, spec §9.3).
pub fn serve_fixture(dir: &Path, fixture_name: &str, name: &str) {
    let dest = dir.join(name);
    std::fs::copy(fixture(fixture_name), &dest).unwrap();
    let mut perm = std::fs::metadata(&dest).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&dest, perm).unwrap();
    if name.ends_with(".cvd") || name.ends_with(".cld") || name.ends_with(".cud") {
        set_mtime(&dest, build_secs(&dest));
    }
}

pub fn set_mtime(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// A status forced on a path.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<u64>,
    /// Only for requests without `Range` (the download, not the probe).
    pub only_full: bool,
    /// `Location` header (for redirects).
    pub location: Option<String>,
}

/// One request as the mirror saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Req {
    pub path: String,
    pub range: bool,
    pub ims: bool,
    pub status: u16,
}

#[derive(Default)]
struct State {
    faults: HashMap<String, Fault>,
    log: Vec<Req>,
}

pub struct Mirror {
    pub addr: SocketAddr,
    pub root: PathBuf,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mirror {
    pub async fn start(root: &Path) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (st, r) = (state.clone(), root.to_owned());
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let (st, r) = (st.clone(), r.clone());
            async move { serve(&st, &r, &uri, &headers) }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            root: root.to_owned(),
            state,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn fault(&self, path: &str, status: u16, retry_after: Option<u64>, only_full: bool) {
        self.state.lock().unwrap().faults.insert(
            path.to_owned(),
            Fault {
                status,
                retry_after,
                only_full,
                location: None,
            },
        );
    }

    /// Answers `302 Found` for `path`, pointing at `to`.
    pub fn redirect(&self, path: &str, to: &str) {
        self.state.lock().unwrap().faults.insert(
            path.to_owned(),
            Fault {
                status: 302,
                retry_after: None,
                only_full: false,
                location: Some(to.to_owned()),
            },
        );
    }

    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    pub fn requests(&self) -> Vec<Req> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }
}

fn serve(state: &Mutex<State>, root: &Path, uri: &Uri, headers: &HeaderMap) -> Response {
    let path = uri.path().to_owned();
    let range = headers.contains_key(header::RANGE);
    let ims = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let fault = state.lock().unwrap().faults.get(&path).cloned();
    let resp = (|| {
        if let Some(f) = fault.filter(|f| !(f.only_full && range)) {
            let mut b = Response::builder().status(f.status);
            if let Some(l) = &f.location {
                b = b.header(header::LOCATION, l);
            }
            if let Some(r) = f.retry_after {
                b = b.header(header::RETRY_AFTER, r.to_string());
            }
            return b.body(Body::from("forced")).unwrap();
        }
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return status(404);
        }
        let file = root.join(rel);
        let Ok(data) = std::fs::read(&file) else {
            return status(404);
        };
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        let mtime_secs = mtime.duration_since(UNIX_EPOCH).unwrap().as_secs();
        if let Some(ims) = ims
            && mtime_secs <= ims.duration_since(UNIX_EPOCH).unwrap().as_secs()
        {
            return status(304);
        }
        let b = Response::builder().header(header::LAST_MODIFIED, httpdate::fmt_http_date(mtime));
        if range && data.len() > 512 {
            return b
                .status(206)
                .header(header::CONTENT_RANGE, format!("bytes 0-511/{}", data.len()))
                .body(Body::from(data[..512].to_vec()))
                .unwrap();
        }
        b.status(200).body(Body::from(data)).unwrap()
    })();
    state.lock().unwrap().log.push(Req {
        path,
        range,
        ims: ims.is_some(),
        status: resp.status().as_u16(),
    });
    resp
}

fn status(code: u16) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .body(Body::empty())
        .unwrap()
}

/// A UDP DNS server answering TXT records from a map (name with trailing dot → text).
pub struct FakeDns {
    pub addr: SocketAddr,
    pub records: Arc<Mutex<HashMap<String, String>>>,
    pub queries: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeDns {
    pub async fn start(records: &[(&str, String)]) -> Self {
        use hickory_proto::op::{Message, ResponseCode};
        use hickory_proto::rr::rdata::TXT;
        use hickory_proto::rr::{RData, Record, RecordType};
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let map: HashMap<String, String> = records
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let records = Arc::new(Mutex::new(map));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (rec, q) = (records.clone(), queries.clone());
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(req) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
                resp.metadata.recursion_desired = req.metadata.recursion_desired;
                resp.metadata.recursion_available = true;
                resp.metadata.authoritative = true;
                for query in &req.queries {
                    let name = query.name().to_ascii();
                    q.lock().unwrap().push(name.clone());
                    resp.add_query(query.clone());
                    let text = rec.lock().unwrap().get(&name).cloned();
                    match text {
                        Some(t) if query.query_type() == RecordType::TXT => {
                            resp.add_answer(Record::from_rdata(
                                query.name().clone(),
                                60,
                                RData::TXT(TXT::new(vec![t])),
                            ));
                        }
                        _ => resp.metadata.response_code = ResponseCode::NXDomain,
                    }
                }
                if let Ok(bytes) = resp.to_vec() {
                    let _ = sock.send_to(&bytes, peer).await;
                }
            }
        });
        Self {
            addr,
            records,
            queries,
            task,
        }
    }
}

/// A scratch area: `www/` for the mirror, `db/` for the client.
pub struct Work {
    pub tmp: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("www")).unwrap();
        std::fs::create_dir(tmp.path().join("db")).unwrap();
        Self { tmp }
    }
    pub fn www(&self) -> PathBuf {
        self.tmp.path().join("www")
    }
    pub fn db(&self) -> PathBuf {
        self.tmp.path().join("db")
    }
    /// Writes a freshclam.conf with the test defaults of spec §7.2 plus `extra` lines.
    pub fn conf(&self, mirrors: &[String], extra: &str) -> PathBuf {
        // Options given first win (optparser keeps the first value).
        let mut text = extra.to_owned();
        for m in mirrors {
            text.push_str(&format!("DatabaseMirror {m}\n"));
        }
        text.push_str(&format!(
            "DNSDatabaseInfo no\nDatabaseDirectory {}\nMaxAttempts 1\nConnectTimeout 5\n\
             ReceiveTimeout 10\nScriptedUpdates yes\nBytecode no\n",
            self.db().display()
        ));
        let p = self.tmp.path().join("freshclam.conf");
        std::fs::write(&p, text).unwrap();
        p
    }
    pub fn put_db(&self, fixture_name: &str, name: &str) {
        std::fs::copy(fixture(fixture_name), self.db().join(name)).unwrap();
    }
    /// db/ holds exactly `name` (besides state files), at `version`.
    #[track_caller]
    pub fn assert_only(&self, name: &str, version: u32) {
        assert_eq!(self.db_files(), [name]);
        assert_eq!(self.version(name), version);
    }
    /// Names of the files in db/ (sorted), without freshclam.dat and our state files.
    pub fn db_files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.db())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "freshclam.dat" && !n.starts_with("vdb"))
            .collect();
        v.sort();
        v
    }
    /// Version of db/<name>, verified as ClamAV would load it.
    pub fn version(&self, name: &str) -> u32 {
        let p = self.db().join(name);
        let kind = vdb_format::Kind::from_file_name(name).unwrap();
        let v = vdb_format::container::verify(
            std::fs::File::open(&p).unwrap(),
            kind,
            &vdb_format::KeySet::official(),
            &vdb_format::Limits::default(),
        )
        .unwrap();
        v.header.version
    }
}

/// Runs the vdb-update binary (bounded by a timeout).
pub async fn run(args: &[&str]) -> Output {
    let fut = tokio::process::Command::new(env!("CARGO_BIN_EXE_vdb-update"))
        .args(args)
        .arg("--retry-delay=0")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("vdb-update did not finish in 60 s")
        .unwrap()
}

/// `vdb-update --update-db=test` with `conf`, which must succeed (exit 0).
pub async fn update_test_ok(conf: &Path) -> Output {
    let out = run_conf(conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    out
}

pub async fn run_conf(conf: &Path, extra: &[&str]) -> Output {
    let c = format!("--config-file={}", conf.display());
    let mut args = vec![c.as_str(), "--verbose"];
    args.extend_from_slice(extra);
    run(&args).await
}

/// The wall clock in Unix seconds.
pub fn now() -> u64 {
    u64::try_from(vdb_testkit::now()).unwrap_or(0)
}

/// Whether a real ClamAV tool is installed.
pub fn have(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
