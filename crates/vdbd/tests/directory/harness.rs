//! Processes with guards, a minimal HTTP double for the registry and verdicts, and `dig`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vdb_proto::{MirrorRecord, MirrorState, MirrorVerdict, VerdictReport};

/// Kills its child on drop.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `vdbd directory`.
pub(crate) struct Directory {
    pub(crate) dns: SocketAddr,
    pub(crate) http: String,
    _guard: Guard,
}

/// Starts `vdbd directory --config <config>` and waits for its ready line.
pub(crate) fn start_directory(config: &Path, log: &Path) -> Directory {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vdbd"))
        .args(["directory", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Guard(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!(
            "no ready line ({e}): {line:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    assert_eq!(v["role"], "directory");
    Directory {
        dns: v["dns"].as_str().unwrap().parse().unwrap(),
        http: v["http"].as_str().unwrap().to_owned(),
        _guard: guard,
    }
}

/// What the doubles serve.
#[derive(Debug, Default)]
pub(crate) struct Network {
    pub(crate) registry: Vec<MirrorRecord>,
    pub(crate) verdicts: Vec<MirrorVerdict>,
    /// Other paths are served from this directory (a mirror double), flat names only.
    pub(crate) files: Option<PathBuf>,
    /// Every request: `<path> range=<yes|no>`.
    pub(crate) log: Vec<String>,
}

/// A master-registry and monitor double: a few lines of HTTP/1.0 over tokio.
#[derive(Clone)]
pub(crate) struct Doubles {
    pub(crate) url: String,
    pub(crate) net: Arc<Mutex<Network>>,
}

impl Doubles {
    pub(crate) async fn start(net: Network, bind: &str) -> Self {
        let net = Arc::new(Mutex::new(net));
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = net.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let net = shared.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf);
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let ranged = head
                        .lines()
                        .any(|l| l.to_ascii_lowercase().starts_with("range:"));
                    let body = {
                        let mut n = net.lock().unwrap();
                        n.log.push(format!(
                            "{path} range={}",
                            if ranged { "yes" } else { "no" }
                        ));
                        match path.as_str() {
                            "/api/v1/mirrors" => Some(serde_json::to_vec(&n.registry).unwrap()),
                            "/api/v1/verdicts" => Some(
                                serde_json::to_vec(&VerdictReport {
                                    monitor: "double".into(),
                                    generated_at: 0,
                                    newest: BTreeMap::new(),
                                    mirrors: n.verdicts.clone(),
                                })
                                .unwrap(),
                            ),
                            p => {
                                let name = p.trim_start_matches('/');
                                let safe = !name.is_empty()
                                    && name.bytes().all(|b| {
                                        b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
                                    })
                                    && !name.starts_with('.');
                                match &n.files {
                                    Some(dir) if safe => std::fs::read(dir.join(name)).ok(),
                                    _ => None,
                                }
                            }
                        }
                    };
                    let (status, body) = match body {
                        Some(b) => ("200 OK", b),
                        None => ("404 Not Found", b"{}".to_vec()),
                    };
                    let head = format!(
                        "HTTP/1.0 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self { url, net }
    }

    pub(crate) fn edit(&self, f: impl FnOnce(&mut Network)) {
        f(&mut self.net.lock().unwrap());
    }
}

pub(crate) fn mirror(name: &str, ip: &str, base_url: &str) -> MirrorRecord {
    let mut r = MirrorRecord::new(name, base_url);
    r.addresses = vec![ip.parse().unwrap()];
    r
}

pub(crate) fn verdict(name: &str, serving: &[(&str, u32)]) -> MirrorVerdict {
    MirrorVerdict {
        name: name.into(),
        state: MirrorState::InService,
        serving: serving.iter().map(|(d, v)| ((*d).to_owned(), *v)).collect(),
        serial: None,
        lag_secs: 0,
        last_good: None,
        reason: String::new(),
    }
}

/// `dig +short`-like: the answer records' data of `qtype`, sorted.
pub(crate) async fn dig_short(
    server: SocketAddr,
    name: &str,
    qtype: &str,
    extra: &[&str],
) -> Vec<String> {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "+norec",
            "+time=1",
            "+tries=2",
            "+short",
        ])
        .args(extra)
        .args([name, qtype])
        .output()
        .await
        .expect("dig runs");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// Asks again until `ok`, for at most `secs` seconds; returns the last answer.
pub(crate) async fn dig_until(
    server: SocketAddr,
    name: &str,
    qtype: &str,
    secs: u64,
    ok: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = dig_short(server, name, qtype, &[]).await;
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name} {qtype} @{server}: no good answer within {secs} s; last {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A free port on 127.0.0.1 for both UDP and TCP (bound and released; a tiny race is accepted
/// because Knot cannot be told to report the port it picked).
pub(crate) fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

pub(crate) fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

/// A plain HTTP/1.0 GET; returns the whole response (head and body).
pub(crate) async fn http_get(url: &str) -> String {
    let url = url.strip_prefix("http://").unwrap();
    let (host, path) = url.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
