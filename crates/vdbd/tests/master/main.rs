//! End to end: real `vdbd master` processes on loopback, driven through the
//! `vdb_master::client` library (the `vdb` binary's publishing code).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vdb_master::client::{Admin, Progress, Publisher, ReleaseFile};
use vdb_proto::{Manifest, PublicKey, SecretKey};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/clamav"
);

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// A `vdbd master` process, killed on drop.
struct Proc {
    child: Child,
    url: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn stop(mut self) {
        // SIGTERM for a graceful shutdown, bounded.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Net {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    keys: Vec<SecretKey>,
}

fn publisher() -> SecretKey {
    SecretKey::from_seed([1; 32])
}

impl Net {
    fn new(n: usize) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            ports: (0..n).map(|_| free_port()).collect(),
            keys: (0..n)
                .map(|i| SecretKey::from_seed([20 + i as u8; 32]))
                .collect(),
        }
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    fn key(&self, i: usize) -> PublicKey {
        self.keys[i].public()
    }

    /// Writes master `i`'s config; `extra` is appended TOML.
    fn config(&self, i: usize, extra: &str) -> PathBuf {
        let d = self.dir.path();
        let key_file = d.join(format!("m{i}.key"));
        std::fs::write(&key_file, self.keys[i].to_text()).unwrap();
        let mut peers = String::new();
        for j in 0..self.ports.len() {
            if j != i {
                peers.push_str(&format!(
                    "\n[[peers]]\nurl = \"{}\"\nkey = \"{}\"\n",
                    self.url(j),
                    self.key(j)
                ));
            }
        }
        let text = format!(
            "name = \"m{i}\"\nnetwork = \"testnet\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{data}\"\nkey_file = \"{key}\"\nadmin_token = \"admin-token-0123456789\"\ntick_ms = 50\nreplicate_secs = 1\ncatch_up_timeout_secs = 2\npush_backoff_ms = 20\n{extra}\n[[publishers]]\nkey = \"{pubkey}\"\ndatabases = [\"test\", \"extra\"]\n[databases.extra]\nallow_plain = true\n{peers}",
            port = self.ports[i],
            data = d.join(format!("data{i}")).display(),
            key = key_file.display(),
            pubkey = publisher().public(),
        );
        let path = d.join(format!("m{i}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn start(&self, i: usize, extra: &str) -> Proc {
        let config = self.config(i, extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_vdbd"))
            .args(["master", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let ready: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        assert_eq!(ready["role"], "master");
        let url = ready["http"].as_str().unwrap().to_owned();
        assert_eq!(url, self.url(i));
        Proc { child, url }
    }
}

fn release(v: u32) -> Vec<ReleaseFile> {
    let mut f = vec![ReleaseFile {
        name: "test.cvd".into(),
        path: fixture(&format!("test-{v}.cvd")),
    }];
    if v > 1 {
        f.push(ReleaseFile {
            name: format!("test-{v}.cdiff"),
            path: fixture(&format!("test-{v}.cdiff")),
        });
    }
    f
}

async fn publish(
    masters: &[String],
    v: u32,
) -> Result<vdb_proto::ReleaseAccepted, vdb_master::client::PublishError> {
    let p = Publisher::new(masters.to_vec(), publisher());
    let files = release(v);
    let info = vdb_master::client::infer(&files, None, None).unwrap();
    let (st, env) = p.statement(&info, &files, "").unwrap();
    p.publish(&files, &st, &env, &|_: Progress| {}).await
}

/// Publishing retried while a master is still catching up (it answers 503 then).
async fn publish_retry(masters: &[String], v: u32) -> vdb_proto::ReleaseAccepted {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match publish(masters, v).await {
            Ok(a) => return a,
            Err(vdb_master::client::PublishError::Unreachable(e)) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("v{v}: {e}"),
        }
    }
}

async fn manifest(url: &str, key: PublicKey) -> Option<Manifest> {
    Admin::new(url, None).manifest(&[key]).await.ok()
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn version(url: &str, key: PublicKey) -> u32 {
    manifest(url, key)
        .await
        .and_then(|m| m.databases.get("test").map(|d| d.version))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_through_a_then_failover_to_b_and_restore_from_an_old_backup() {
    let net = Net::new(2);
    let a = net.start(0, "");
    let b = net.start(1, "");
    let both = vec![a.url.clone(), b.url.clone()];
    // Both have caught up with each other once they serve a manifest.
    wait_for("both ready", || async {
        manifest(&net.url(0), net.key(0)).await.is_some()
            && manifest(&net.url(1), net.key(1)).await.is_some()
    })
    .await;
    for v in 1..=4 {
        let r = publish_retry(&both, v).await;
        assert_eq!((r.master.as_str(), r.version), ("m0", v));
    }
    // Stop A gracefully and keep its state as an "old backup"; A comes back and goes on.
    a.stop();
    let data0 = net.dir.path().join("data0");
    let backup = net.dir.path().join("backup0");
    copy_dir(&data0, &backup);
    let a = net.start(0, "");
    for v in 5..=6 {
        let r = publish_retry(&both, v).await;
        assert_eq!((r.master.as_str(), r.version), ("m0", v));
    }
    wait_for("B to replicate v6", || async {
        version(&net.url(1), net.key(1)).await == 6
    })
    .await;
    // A dies: the next release fails over to B within a short, bounded time.
    drop(a);
    let extra = net.dir.path().join("extra.ndb");
    std::fs::write(&extra, "Eicar-Test:0:*:58354f2150\n").unwrap();
    let p = Publisher::new(both.clone(), publisher());
    let files = vec![ReleaseFile {
        name: "extra.ndb".into(),
        path: extra,
    }];
    let info = vdb_master::client::infer(&files, Some("extra"), Some(1)).unwrap();
    let (st, env) = p.statement(&info, &files, "").unwrap();
    let t = Instant::now();
    let r = p
        .publish(&files, &st, &env, &|_: Progress| {})
        .await
        .unwrap();
    assert_eq!((r.master.as_str(), r.db.as_str()), ("m1", "extra"));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "failover took {:?}",
        t.elapsed()
    );
    let mb = manifest(&net.url(1), net.key(1)).await.unwrap();
    assert_eq!(
        (mb.databases["test"].version, mb.databases["extra"].version),
        (6, 1)
    );
    // Restore A from the old backup (v4): it catches up from B and signs above B's serial.
    std::fs::remove_dir_all(&data0).unwrap();
    copy_dir(&backup, &data0);
    let old = manifest_file(&data0);
    assert!(old.serial < mb.serial && old.databases["test"].version == 4);
    let a = net.start(0, "");
    wait_for("A to catch up", || async {
        manifest(&net.url(0), net.key(0)).await.is_some_and(|m| {
            m.serial > mb.serial
                && m.databases.contains_key("extra")
                && m.databases["test"].version == 6
        })
    })
    .await;
    let m = manifest(&net.url(0), net.key(0)).await.unwrap();
    assert_eq!(m.databases["extra"].release, r.release_id);
    assert_eq!(m.databases["test"].release, mb.databases["test"].release);
    drop(a);
    drop(b);
}

fn manifest_file(data: &Path) -> Manifest {
    let bytes = std::fs::read(data.join("manifest.json")).unwrap();
    let env = vdb_proto::Signed::<Manifest>::from_json(&bytes).unwrap();
    env.verify(&[env.signer()]).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

async fn metrics(url: &str) -> String {
    let Ok(r) = reqwest_get(&format!("{url}/metrics")).await else {
        return String::new();
    };
    r
}

async fn reqwest_get(url: &str) -> Result<String, String> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        http_get(&url).map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
    })
    .await
    .unwrap()
}

/// A minimal blocking HTTP/1.0 GET (the test crate has no HTTP client of its own).
fn http_get(url: &str) -> Result<(u16, Vec<u8>), String> {
    let rest = url.strip_prefix("http://").ok_or("not http")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| e.to_string())?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no header end")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, buf[split + 4..].to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_sync_is_skipped_while_a_peer_is_unreachable() {
    let net = Net::new(2);
    // Only A runs; its peer B never answers.
    let a = net.start(0, "forced_sync_secs = 1");
    wait_for("a skipped forced sync", || async {
        metrics(&a.url)
            .await
            .contains("vdb_master_forced_sync_total{result=\"skipped\"}")
    })
    .await;
    let m = metrics(&a.url).await;
    assert!(
        !m.contains("vdb_master_forced_sync_total{result=\"run\"}"),
        "{m}"
    );
    // The peer comes up: forced syncs run.
    let b = net.start(1, "");
    wait_for("a forced sync run", || async {
        metrics(&a.url)
            .await
            .contains("vdb_master_forced_sync_total{result=\"run\"}")
    })
    .await;
    drop(b);
    drop(a);
}

/// A tiny upstream: serves files from a directory over HTTP/1.0 (no Range: the whole file,
/// which the master reads the header from), on a thread until the listener is dropped.
fn upstream(
    dir: PathBuf,
) -> (
    String,
    std::thread::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    l.set_nonblocking(true).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let h = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((mut s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            s.set_nonblocking(false).ok();
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&b[..n]),
                }
            }
            let text = String::from_utf8_lossy(&req).into_owned();
            let path = text
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_owned();
            let body = (vdb_proto::is_safe_file_name(&path))
                .then(|| std::fs::read(dir.join(&path)).ok())
                .flatten();
            let _ = match body {
                Some(b) => s
                    .write_all(
                        format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", b.len())
                            .as_bytes(),
                    )
                    .and_then(|()| s.write_all(&b)),
                None => s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            };
        }
    });
    (url, h, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_local_upstream() {
    let net = Net::new(1);
    let up_dir = net.dir.path().join("upstream");
    std::fs::create_dir_all(&up_dir).unwrap();
    std::fs::copy(fixture("test-2.cvd"), up_dir.join("test.cvd")).unwrap();
    for v in 2..=6 {
        std::fs::copy(
            fixture(&format!("test-{v}.cdiff")),
            up_dir.join(format!("test-{v}.cdiff")),
        )
        .unwrap();
    }
    let (up_url, h, stop) = upstream(up_dir.clone());
    let a = net.start(
        0,
        &format!("[upstream]\nurl = \"{up_url}\"\ndatabases = [\"test\"]\ninterval_secs = 1\n"),
    );
    wait_for("v2 from upstream", || async {
        version(&a.url, net.key(0)).await == 2
    })
    .await;
    std::fs::copy(fixture("test-5.cvd"), up_dir.join("test.cvd.tmp")).unwrap();
    std::fs::rename(up_dir.join("test.cvd.tmp"), up_dir.join("test.cvd")).unwrap();
    wait_for("v5 from upstream", || async {
        version(&a.url, net.key(0)).await == 5
    })
    .await;
    let m = manifest(&a.url, net.key(0)).await.unwrap();
    for v in 3..=5 {
        assert!(
            m.file(&format!("test-{v}.cdiff")).is_some(),
            "test-{v}.cdiff"
        );
    }
    // A tampered upstream CVD is refused: the manifest keeps v5.
    let mut bad = std::fs::read(fixture("test-6.cvd")).unwrap();
    let n = bad.len();
    bad[n - 10] ^= 0xff;
    std::fs::write(up_dir.join("test.cvd.tmp"), &bad).unwrap();
    std::fs::rename(up_dir.join("test.cvd.tmp"), up_dir.join("test.cvd")).unwrap();
    wait_for("the refusal", || async {
        metrics(&a.url)
            .await
            .contains("vdb_master_upstream_checks_total{result=\"refused\"}")
    })
    .await;
    assert_eq!(version(&a.url, net.key(0)).await, 5);
    drop(a);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    h.join().unwrap();
}
