//! Masters among themselves and with mirrors: pushes with acknowledgements, replication,
//! catch-up after a restore from an old backup, forced-sync gating, following an upstream.
//! Mirrors and the upstream are test doubles (real axum servers on 127.0.0.1:0).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use vdb_master::client::{Admin, Progress, Publisher, ReleaseFile};
use vdb_master::config::{PeerConfig, PublisherConfig, UpstreamConfig};
use vdb_master::{Config, Running};
use vdb_proto::{
    Clock, Manifest, ManualClock, PublicKey, PushNotice, SecretKey, Signed, SystemClock,
};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/clamav"
);
const TOKEN: &str = "admin-token-0123456789";

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
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

fn publisher() -> SecretKey {
    SecretKey::from_seed([1; 32])
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &Path, name: &str, seed: u8, port: u16) -> Config {
    let key = SecretKey::from_seed([seed; 32]);
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&key_file, key.to_text()).unwrap();
    let mut c = Config::new(name, "testnet", dir.join(format!("data-{name}")), key_file);
    c.listen = SocketAddr::from(([127, 0, 0, 1], port));
    c.admin_token = Some(TOKEN.into());
    c.tick_ms = 20;
    c.replicate_secs = 5;
    c.push_backoff_ms = 10;
    c.catch_up_timeout_secs = 30;
    c.publishers = vec![PublisherConfig {
        key: publisher().public(),
        databases: vec!["test".into()],
    }];
    c
}

async fn publish(url: &str, clock: &ManualClock, v: u32) -> vdb_proto::ReleaseAccepted {
    let p = Publisher::new(vec![url.to_owned()], publisher()).with_clock(Arc::new(clock.clone()));
    let files = release(v);
    let info = vdb_master::client::infer(&files, None, None).unwrap();
    let (st, env) = p.statement(&info, &files, "").unwrap();
    p.publish(&files, &st, &env, &|_: Progress| {})
        .await
        .unwrap()
}

/// A master's Prometheus text.
async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn manifest(url: &str, key: PublicKey) -> Option<Manifest> {
    Admin::new(url, None).manifest(&[key]).await.ok()
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A mirror double: verifies push notices with the masters' keys and records them.
#[derive(Clone)]
struct MirrorDouble {
    keys: Vec<PublicKey>,
    got: Arc<Mutex<Vec<PushNotice>>>,
    fail_first: Arc<Mutex<u32>>,
}

async fn push_handler(State(m): State<MirrorDouble>, body: axum::body::Bytes) -> StatusCode {
    {
        let mut f = m.fail_first.lock().unwrap();
        if *f > 0 {
            *f -= 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let Ok(env) = Signed::<PushNotice>::from_json(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let Ok(n) = env.verify(&m.keys) else {
        return StatusCode::FORBIDDEN;
    };
    m.got.lock().unwrap().push(n);
    StatusCode::ACCEPTED
}

async fn serve(app: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (
        addr,
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() }),
    )
}

async fn mirror_double(
    keys: Vec<PublicKey>,
    fail_first: u32,
) -> (MirrorDouble, String, tokio::task::JoinHandle<()>) {
    let m = MirrorDouble {
        keys,
        got: Arc::default(),
        fail_first: Arc::new(Mutex::new(fail_first)),
    };
    let app = Router::new()
        .route(vdb_proto::paths::PUSH, post(push_handler))
        .with_state(m.clone());
    let (addr, h) = serve(app).await;
    (m, format!("http://{addr}{}", vdb_proto::paths::PUSH), h)
}

async fn register(url: &str, name: &str, push_url: &str) {
    let mut r = vdb_proto::MirrorRecord::new(name, "http://127.0.0.1:9");
    r.push_url = Some(push_url.to_owned());
    Admin::new(url, Some(TOKEN.into())).add(&r).await.unwrap();
}

#[tokio::test]
async fn pushes_are_retried_acknowledged_and_shown_in_the_rollout_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(SystemClock.now());
    let c = config(dir.path(), "a", 10, 0);
    let key = SecretKey::from_seed([10; 32]).public();
    let a = vdb_master::start(c, Arc::new(clock.clone())).await.unwrap();
    let url = format!("http://{}", a.http_addr());
    let (good, good_url, h1) = mirror_double(vec![key], 0).await;
    let (flaky, flaky_url, h2) = mirror_double(vec![key], 0).await;
    register(&url, "good", &good_url).await;
    register(&url, "flaky", &flaky_url).await;
    register(&url, "dead", "http://127.0.0.1:9/.well-known/vdbnet/push").await;
    // A newly registered mirror is pushed the current manifest at once.
    let initial = Admin::new(&url, None)
        .manifest(&[key])
        .await
        .unwrap()
        .serial;
    wait_for("registration pushes", || async {
        good.got.lock().unwrap().len() == 1 && flaky.got.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(good.got.lock().unwrap()[0].serial, initial);
    *flaky.fail_first.lock().unwrap() = 2;
    let r = publish(&url, &clock, 1).await;
    wait_for("both pushes", || async {
        good.got.lock().unwrap().len() == 2 && flaky.got.lock().unwrap().len() == 2
    })
    .await;
    let n = good.got.lock().unwrap()[1].clone();
    assert_eq!(
        (n.network.as_str(), n.master.as_str(), n.serial, n.forced),
        ("testnet", "a", r.serial, false)
    );
    let admin = Admin::new(&url, None);
    wait_for("the timeline", || async {
        let t = admin.release(&r.release_id).await.unwrap();
        t.acks.len() == 2
            && t.pushes
                .iter()
                .any(|p| p.mirror == "dead" && p.error.is_some())
    })
    .await;
    let t = admin.release(&r.release_id).await.unwrap();
    assert_eq!(t.release.serial, Some(r.serial));
    assert!(t.release.published_at.is_some());
    let flaky_push = t.pushes.iter().find(|p| p.mirror == "flaky").unwrap();
    assert_eq!(flaky_push.attempts, 3, "two 503 answers, then the ack");
    assert!(flaky_push.acked_at.is_some());
    let dead = t.pushes.iter().find(|p| p.mirror == "dead").unwrap();
    assert_eq!(dead.attempts, 5);
    assert!(dead.acked_at.is_none());
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("vdb_master_pushes_total{result=\"acked\"} 4"),
        "{metrics}"
    );
    // A heartbeat pushes again.
    clock.advance(6 * 3600);
    wait_for("heartbeat push", || async {
        good.got.lock().unwrap().len() >= 3
    })
    .await;
    assert!(good.got.lock().unwrap()[2].serial > r.serial);
    a.shutdown().await;
    h1.abort();
    h2.abort();
}

struct Pair {
    dir: tempfile::TempDir,
    clock: ManualClock,
    ports: [u16; 2],
    keys: [PublicKey; 2],
}

impl Pair {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            clock: ManualClock::new(SystemClock.now()),
            ports: [free_port(), free_port()],
            keys: [
                SecretKey::from_seed([10; 32]).public(),
                SecretKey::from_seed([11; 32]).public(),
            ],
        }
    }
    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }
    fn config(&self, i: usize) -> Config {
        let names = ["a", "b"];
        let mut c = config(self.dir.path(), names[i], 10 + i as u8, self.ports[i]);
        c.peers = vec![PeerConfig {
            url: self.url(1 - i),
            key: self.keys[1 - i],
            token: None,
        }];
        c
    }
    async fn start(&self, i: usize) -> Running {
        vdb_master::start(self.config(i), Arc::new(self.clock.clone()))
            .await
            .unwrap()
    }
    async fn start_both(&self) -> (Running, Running) {
        let a = self.start(0).await;
        let b = self.start(1).await;
        wait_for("both ready", || async { a.is_ready() && b.is_ready() }).await;
        (a, b)
    }
    async fn version(&self, i: usize) -> u32 {
        manifest(&self.url(i), self.keys[i])
            .await
            .and_then(|m| m.databases.get("test").map(|d| d.version))
            .unwrap_or(0)
    }
}

#[tokio::test]
async fn masters_replicate_releases_and_registry_with_disjoint_serials() {
    let p = Pair::new();
    let (a, b) = p.start_both().await;
    let ra = publish(&p.url(0), &p.clock, 1).await;
    wait_for("B to replicate v1", || async { p.version(1).await == 1 }).await;
    let rb = publish(&p.url(1), &p.clock, 2).await;
    assert_eq!(rb.master, "b");
    wait_for("A to replicate v2", || async { p.version(0).await == 2 }).await;
    // The same release ids on both; replicated releases passed the gate again.
    let ma = manifest(&p.url(0), p.keys[0]).await.unwrap();
    let mb = manifest(&p.url(1), p.keys[1]).await.unwrap();
    assert_eq!(ma.databases["test"].release, rb.release_id);
    assert_eq!(mb.databases["test"].release, rb.release_id);
    assert_ne!(ra.release_id, rb.release_id);
    let names = |m: &Manifest| {
        m.files
            .iter()
            .filter(|f| f.name != "timestamp" && f.name != "dns.txt")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&ma), names(&mb));
    // Serials: every master signs its own residue class, so the same serial never carries two
    // different manifests.
    assert_ne!(ma.serial % 2, mb.serial % 2);
    let hist = Admin::new(&p.url(0), None).history(100).await.unwrap();
    assert!(
        hist.iter()
            .any(|r| r.verdict == "accepted" && r.origin.starts_with("peer:"))
    );
    // Registry changes replicate (pulled every replicate_secs).
    register(&p.url(0), "m1", "http://127.0.0.1:9/push").await;
    p.clock.advance(10);
    wait_for("B to see m1", || async {
        Admin::new(&p.url(1), None).list().await.unwrap().len() == 1
    })
    .await;
    Admin::new(&p.url(1), Some(TOKEN.into()))
        .remove("m1")
        .await
        .unwrap();
    p.clock.advance(10);
    wait_for("A to see the removal", || async {
        Admin::new(&p.url(0), None).list().await.unwrap().is_empty()
    })
    .await;
    let st: vdb_master::Status = reqwest::get(format!("{}/api/v1/status", p.url(0)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(st.ready && st.serial > 0 && st.databases["test"] == 2 && st.name == "a");
    // Forced sync runs while the peer answers and agrees, and is skipped while it does not.
    assert!(a.forced_sync_now().await);
    b.shutdown().await;
    assert!(!a.forced_sync_now().await);
    let metrics = metrics(&p.url(0)).await;
    assert!(
        metrics.contains("vdb_master_forced_sync_total{result=\"skipped\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("vdb_master_forced_sync_total{result=\"run\"} 1"),
        "{metrics}"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn forced_sync_is_skipped_while_a_peer_holds_a_newer_release() {
    let p = Pair::new();
    // B does not know A (so it does not poke A after its releases); A pulls from B only on
    // its schedule, which the manual clock holds still.
    let mut cb = p.config(1);
    cb.peers.clear();
    let b = vdb_master::start(cb, Arc::new(p.clock.clone()))
        .await
        .unwrap();
    let a = p.start(0).await;
    wait_for("A ready", || async { a.is_ready() }).await;
    publish(&p.url(1), &p.clock, 1).await;
    p.clock.advance(10);
    wait_for("A to pull v1", || async { p.version(0).await == 1 }).await;
    assert!(a.forced_sync_now().await);
    publish(&p.url(1), &p.clock, 2).await;
    assert!(
        !a.forced_sync_now().await,
        "B holds v2, A only v1: no forced sync"
    );
    p.clock.advance(10);
    wait_for("A to pull v2", || async { p.version(0).await == 2 }).await;
    assert!(a.forced_sync_now().await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn master_restored_from_an_old_backup_catches_up_before_it_signs_or_pushes() {
    let p = Pair::new();
    let (a, b) = p.start_both().await;
    publish(&p.url(0), &p.clock, 1).await;
    wait_for("B to replicate v1", || async { p.version(1).await == 1 }).await;
    a.shutdown().await;
    // Back up A (stopped: consistent files).
    let data = p.dir.path().join("data-a");
    let backup = p.dir.path().join("backup-a");
    copy_dir(&data, &backup);
    let old_serial = manifest_file_serial(&data);
    // The network moves on through B.
    for v in 2..=4 {
        publish(&p.url(1), &p.clock, v).await;
    }
    let b_serial = manifest(&p.url(1), p.keys[1]).await.unwrap().serial;
    assert!(b_serial > old_serial);
    // A mirror that records every push from A.
    let (mirror, push_url, h) = mirror_double(vec![p.keys[0], p.keys[1]], 0).await;
    register(&p.url(1), "watch", &push_url).await;
    // Restore A from the backup and start it.
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&backup, &data);
    let a = p.start(0).await;
    wait_for("A to catch up", || async {
        manifest(&p.url(0), p.keys[0])
            .await
            .is_some_and(|m| m.serial > b_serial && m.databases["test"].version == 4)
    })
    .await;
    // While it replicated v2 and v3, B already held v4: A signed nothing until it held v4
    // (a manifest above B's serial carrying v2 or v3 would be a rollback to every mirror), so
    // the three replicated releases went out in one manifest.
    let a_serial = manifest(&p.url(0), p.keys[0]).await.unwrap().serial;
    let hist = Admin::new(&p.url(0), None).history(100).await.unwrap();
    let replicated: Vec<_> = hist
        .iter()
        .filter(|r| r.verdict == "accepted" && r.version >= 2)
        .collect();
    assert_eq!(replicated.len(), 3, "{hist:?}");
    for r in replicated {
        assert_eq!(r.serial, Some(a_serial), "v{} published alone", r.version);
    }
    let metrics = metrics(&p.url(0)).await;
    assert!(
        metrics.contains("vdb_master_signing_deferred_total 2"),
        "{metrics}"
    );
    // Every push A sent carries a serial above B's: A never pushed its old state.
    wait_for("a push from A", || async {
        mirror.got.lock().unwrap().iter().any(|n| n.master == "a")
    })
    .await;
    for n in mirror
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n.master == "a")
    {
        assert!(
            n.serial > b_serial,
            "A pushed serial {} (B was at {b_serial})",
            n.serial
        );
    }
    a.shutdown().await;
    b.shutdown().await;
    h.abort();
}

fn manifest_file_serial(data: &Path) -> u64 {
    let bytes = std::fs::read(data.join("manifest.json")).unwrap();
    let env = Signed::<Manifest>::from_json(&bytes).unwrap();
    env.verify(&[env.signer()]).unwrap().serial
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

/// An upstream double: serves `test.cvd` at a chosen fixture version (or tampered bytes) and
/// the `test-N.cdiff` files, honouring `Range: bytes=0-511` like a CDN.
#[derive(Clone, Default)]
struct Upstream {
    cvd: Arc<Mutex<Vec<u8>>>,
}

async fn upstream_file(
    State(u): State<Upstream>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Vec<u8>) {
    let data = if name == "test.cvd" {
        u.cvd.lock().unwrap().clone()
    } else if vdb_proto::is_safe_file_name(&name) && name.ends_with(".cdiff") {
        match std::fs::read(fixture(&name)) {
            Ok(d) => d,
            Err(_) => return (StatusCode::NOT_FOUND, Vec::new()),
        }
    } else {
        return (StatusCode::NOT_FOUND, Vec::new());
    };
    if headers.get("range").is_some_and(|r| r == "bytes=0-511") {
        return (
            StatusCode::PARTIAL_CONTENT,
            data[..512.min(data.len())].to_vec(),
        );
    }
    (StatusCode::OK, data)
}

#[tokio::test]
async fn following_an_upstream_publishes_new_versions_and_refuses_tampered_files() {
    let up = Upstream::default();
    *up.cvd.lock().unwrap() = std::fs::read(fixture("test-1.cvd")).unwrap();
    let app = Router::new()
        .route("/{name}", get(upstream_file))
        .with_state(up.clone());
    let (addr, h) = serve(app).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(SystemClock.now());
    let mut c = config(dir.path(), "a", 10, 0);
    c.upstream = Some(UpstreamConfig {
        url: format!("http://{addr}"),
        databases: vec!["test".into()],
        interval_secs: 10,
        key_file: None,
    });
    let key = SecretKey::from_seed([10; 32]).public();
    let a = vdb_master::start(c, Arc::new(clock.clone())).await.unwrap();
    let url = format!("http://{}", a.http_addr());
    let version = || async {
        manifest(&url, key)
            .await
            .and_then(|m| m.databases.get("test").map(|d| d.version))
            .unwrap_or(0)
    };
    wait_for("v1 from upstream", || async { version().await == 1 }).await;
    *up.cvd.lock().unwrap() = std::fs::read(fixture("test-3.cvd")).unwrap();
    clock.advance(10);
    wait_for("v3 from upstream", || async { version().await == 3 }).await;
    let m = manifest(&url, key).await.unwrap();
    assert!(m.file("test-2.cdiff").is_some() && m.file("test-3.cdiff").is_some());
    assert_eq!(
        m.file("test.cvd").unwrap().sha256,
        vdb_proto::sha256_hex(&std::fs::read(fixture("test-3.cvd")).unwrap())
    );
    // A tampered upstream CVD is refused and changes nothing.
    let mut bad = std::fs::read(fixture("test-4.cvd")).unwrap();
    let n = bad.len();
    bad[n - 10] ^= 0xff;
    *up.cvd.lock().unwrap() = bad;
    let before = m.serial;
    clock.advance(10);
    let admin = Admin::new(&url, None);
    wait_for("the refusal", || async {
        admin
            .history(100)
            .await
            .unwrap()
            .iter()
            .any(|r| r.origin == "upstream" && r.verdict == "refused")
    })
    .await;
    let row = admin
        .history(100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.verdict == "refused")
        .unwrap();
    assert_eq!(row.code.as_deref(), Some("bad_container"), "{row:?}");
    let m = manifest(&url, key).await.unwrap();
    assert_eq!((m.serial, m.databases["test"].version), (before, 3));
    a.shutdown().await;
    h.abort();
}

#[tokio::test]
async fn https_with_rustls() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(SystemClock.now());
    let mut c = config(dir.path(), "a", 10, 0);
    c.tls_cert_file = Some(data.join("tls-cert.pem"));
    c.tls_key_file = Some(data.join("tls-key.pem"));
    let a = vdb_master::start(c, Arc::new(clock.clone())).await.unwrap();
    let url = a.base_url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = vdb_master::client::read_ca(&data.join("ca-cert.pem")).unwrap();
    let p = Publisher::new(vec![url.clone()], publisher())
        .with_clock(Arc::new(clock.clone()))
        .with_ca(&ca);
    let files = release(1);
    let info = vdb_master::client::infer(&files, None, None).unwrap();
    let (st, env) = p.statement(&info, &files, "").unwrap();
    let r = p
        .publish(&files, &st, &env, &|_: Progress| {})
        .await
        .unwrap();
    assert_eq!(r.version, 1);
    let key = SecretKey::from_seed([10; 32]).public();
    let m = Admin::new(&url, None)
        .with_ca(&ca)
        .manifest(&[key])
        .await
        .unwrap();
    assert_eq!(m.databases["test"].version, 1);
    // Without the CA the certificate is not trusted; plain HTTP is not spoken.
    assert!(Admin::new(&url, None).manifest(&[key]).await.is_err());
    let plain = url.replace("https://", "http://");
    assert!(Admin::new(&plain, None).manifest(&[key]).await.is_err());
    a.shutdown().await;
}

/// A fake SMTP relay: records each message's DATA.
async fn smtp_double() -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let got2 = Arc::clone(&got);
    let h = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let (rd, mut wr) = s.into_split();
            let mut rd = BufReader::new(rd);
            wr.write_all(b"220 test ESMTP\r\n").await.unwrap();
            let mut data = None::<String>;
            loop {
                let mut line = String::new();
                if rd.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                if let Some(d) = data.as_mut() {
                    if line == ".\r\n" {
                        got2.lock().unwrap().push(data.take().unwrap());
                        wr.write_all(b"250 queued\r\n").await.unwrap();
                    } else {
                        d.push_str(&line);
                    }
                    continue;
                }
                let reply: &[u8] = if line.starts_with("EHLO") {
                    b"250-test\r\n250 8BITMIME\r\n"
                } else if line.starts_with("DATA") {
                    data = Some(String::new());
                    b"354 go\r\n"
                } else if line.starts_with("QUIT") {
                    b"221 bye\r\n"
                } else {
                    b"250 ok\r\n"
                };
                wr.write_all(reply).await.unwrap();
            }
        }
    });
    (addr, got, h)
}

#[tokio::test]
async fn releases_and_alerts_are_mailed() {
    let (addr, got, h) = smtp_double().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(SystemClock.now());
    let mut c = config(dir.path(), "a", 10, 0);
    c.smtp = Some(vdb_master::config::SmtpConfig {
        server: addr,
        from: "master@example.org".into(),
        to: vec!["announce@example.org".into()],
        ..Default::default()
    });
    c.peers = vec![PeerConfig {
        url: "http://127.0.0.1:9".into(),
        key: publisher().public(),
        token: None,
    }];
    c.catch_up_timeout_secs = 0;
    let a = vdb_master::start(c, Arc::new(clock.clone())).await.unwrap();
    let url = a.base_url();
    wait_for("ready", || async { a.is_ready() }).await;
    publish(&url, &clock, 1).await;
    wait_for("the release mail", || async {
        got.lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("test version 1 released"))
    })
    .await;
    assert!(!a.forced_sync_now().await);
    wait_for("the alert mail", || async {
        got.lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("alert: forced_sync_skipped"))
    })
    .await;
    let mails = got.lock().unwrap().clone();
    assert!(
        mails
            .iter()
            .all(|m| m.contains("From: master@example.org\r\n")
                && m.contains("To: announce@example.org\r\n"))
    );
    a.shutdown().await;
    h.abort();
}

#[tokio::test]
async fn two_masters_following_one_upstream_agree() {
    let up = Upstream::default();
    *up.cvd.lock().unwrap() = std::fs::read(fixture("test-1.cvd")).unwrap();
    let app = Router::new()
        .route("/{name}", get(upstream_file))
        .with_state(up.clone());
    let (addr, h) = serve(app).await;
    let p = Pair::new();
    // Masters that follow the same upstream share the follower's key (or list each other's
    // follower keys as publishers): a replicated release must come from a known publisher.
    let up_key = p.dir.path().join("upstream.key");
    std::fs::write(&up_key, SecretKey::from_seed([42; 32]).to_text()).unwrap();
    let follow = |mut c: Config| {
        c.upstream = Some(UpstreamConfig {
            url: format!("http://{addr}"),
            databases: vec!["test".into()],
            interval_secs: 10,
            key_file: Some(up_key.clone()),
        });
        c
    };
    let a = vdb_master::start(follow(p.config(0)), Arc::new(p.clock.clone()))
        .await
        .unwrap();
    let b = vdb_master::start(follow(p.config(1)), Arc::new(p.clock.clone()))
        .await
        .unwrap();
    wait_for("both at v1", || async {
        p.version(0).await == 1 && p.version(1).await == 1
    })
    .await;
    *up.cvd.lock().unwrap() = std::fs::read(fixture("test-2.cvd")).unwrap();
    p.clock.advance(10);
    wait_for("both at v2", || async {
        p.version(0).await == 2 && p.version(1).await == 2
    })
    .await;
    p.clock.advance(10);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Each signed its own statement of the same files: no split brain, no refusal.
    assert!(a.forced_sync_now().await);
    assert!(b.forced_sync_now().await);
    for i in 0..2 {
        let hist = Admin::new(&p.url(i), None).history(100).await.unwrap();
        assert!(hist.iter().all(|r| r.verdict == "accepted"), "{hist:?}");
    }
    a.shutdown().await;
    b.shutdown().await;
    h.abort();
}
