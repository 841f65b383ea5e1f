//! A test double of a vdbnet master: serves a `Signed<Manifest>` at `MANIFEST_PATH` and objects
//! by SHA-256 at `/api/v1/objects/<sha256>`, over real HTTP/1.1 on 127.0.0.1:0 (std threads, one
//! request per connection). Object responses can be held behind a gate to make syncs slow.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use vdb_proto::{Manifest, SecretKey};

use crate::keys::{self, NETWORK};

#[derive(Debug, Default)]
struct State {
    manifest: Vec<u8>,
    objects: HashMap<String, Vec<u8>>,
    /// Flip a byte of every `206` body (a hub or master that garbles ranges).
    corrupt_ranges: bool,
    gate_closed: bool,
    object_delay: Duration,
    requests: Vec<String>,
    refuse_all: bool,
}

/// A running master double.
#[derive(Debug)]
pub struct MasterDouble {
    addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
}

impl MasterDouble {
    /// Starts on 127.0.0.1:0.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || handle(conn, &st));
            }
        });
        Self { addr, state, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.state.0.lock().unwrap());
        self.state.1.notify_all();
        r
    }

    /// Publishes `files` as manifest `serial` signed by `key` (objects added, old ones kept).
    pub fn publish<N: AsRef<str>>(
        &self,
        key: &SecretKey,
        serial: u64,
        issued_at: i64,
        databases: &[(&str, u32)],
        files: &[(N, Vec<u8>)],
    ) -> Manifest {
        let m = keys::manifest(NETWORK, serial, issued_at, databases, files);
        let env = keys::signed(&m, key);
        self.with(|s| {
            for (_, data) in files {
                s.objects.insert(vdb_proto::sha256_hex(data), data.clone());
            }
            s.manifest = env;
        });
        m
    }

    /// Adds an object (e.g. a segment map) without publishing a manifest.
    pub fn put_object(&self, data: Vec<u8>) {
        self.with(|s| {
            s.objects.insert(vdb_proto::sha256_hex(&data), data);
        });
    }

    /// While set, every `Range` answer (`206`) has a byte flipped.
    pub fn corrupt_ranges(&self, on: bool) {
        self.with(|s| s.corrupt_ranges = on);
    }

    /// Serves these exact manifest bytes.
    pub fn set_manifest_raw(&self, bytes: Vec<u8>) {
        self.with(|s| s.manifest = bytes);
    }

    /// Replaces an object's bytes (a corrupt master).
    pub fn corrupt_object(&self, sha256: &str, bytes: Vec<u8>) {
        self.with(|s| {
            s.objects.insert(sha256.to_owned(), bytes);
        });
    }

    /// While closed, object requests wait.
    pub fn set_gate(&self, closed: bool) {
        self.with(|s| s.gate_closed = closed);
    }

    /// Each object response waits this long first.
    pub fn set_object_delay(&self, d: Duration) {
        self.with(|s| s.object_delay = d);
    }

    /// Answer 503 to everything.
    pub fn set_down(&self, down: bool) {
        self.with(|s| s.refuse_all = down);
    }

    /// Request paths seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.with(|s| s.requests.clone())
    }

    /// Waits (bounded) until `n` object requests are waiting or done.
    pub fn wait_requests(&self, pred: impl Fn(&[String]) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut g = self.state.0.lock().unwrap();
        while !pred(&g.requests) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for requests"
            );
            g = self
                .state
                .1
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap()
                .0;
        }
    }
}

impl Drop for MasterDouble {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.set_gate(false);
        let _ = TcpStream::connect(self.addr);
    }
}

fn respond(conn: &mut TcpStream, status: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}

/// The request line and the `Range: bytes=A-B` header (both bounds given), if any.
fn read_request(conn: &TcpStream) -> Option<(String, Option<(usize, usize)>)> {
    use std::io::BufRead as _;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = std::io::BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut range = None;
    for _ in 0..100 {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => return None,
            Ok(_) if h == "\r\n" || h == "\n" => return Some((line, range)),
            Ok(_) => {
                let (name, value) = h.split_once(':').unwrap_or(("", ""));
                if name.eq_ignore_ascii_case("range") {
                    range = value
                        .trim()
                        .strip_prefix("bytes=")
                        .and_then(|r| r.split_once('-'))
                        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
                }
            }
        }
    }
    None
}

fn handle(mut conn: TcpStream, st: &(Mutex<State>, Condvar)) {
    let Some((line, range)) = read_request(&conn) else {
        return;
    };
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let (mut g, cv) = (st.0.lock().unwrap(), &st.1);
    g.requests.push(path.clone());
    cv.notify_all();
    if g.refuse_all {
        drop(g);
        return respond(&mut conn, "503 Service Unavailable", b"{}");
    }
    if path == vdb_proto::MANIFEST_PATH {
        let body = g.manifest.clone();
        drop(g);
        if body.is_empty() {
            return respond(&mut conn, "404 Not Found", b"{}");
        }
        return respond(&mut conn, "200 OK", &body);
    }
    if let Some(sha) = path.strip_prefix("/api/v1/objects/") {
        while g.gate_closed {
            g = cv.wait(g).unwrap();
        }
        let delay = g.object_delay;
        let body = g.objects.get(sha).cloned();
        let corrupt = g.corrupt_ranges;
        drop(g);
        std::thread::sleep(delay);
        return match (body, range) {
            (Some(b), Some((first, last))) if first <= last && last < b.len() => {
                let mut part = b[first..=last].to_vec();
                if corrupt {
                    part[0] ^= 1;
                }
                respond(&mut conn, "206 Partial Content", &part)
            }
            (Some(b), _) => respond(&mut conn, "200 OK", &b),
            (None, _) => respond(&mut conn, "404 Not Found", b"{}"),
        };
    }
    drop(g);
    respond(&mut conn, "404 Not Found", b"{}")
}
