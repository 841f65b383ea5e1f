//! Masters among themselves and with mirrors: pushes with acknowledgements, replication,
//! catch-up after a restore from an old backup, forced-sync gating, following an upstream,
//! HTTPS, mail. Mirrors and the upstream are test doubles (real axum servers on 127.0.0.1:0).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use vdb_master::client::Admin;
use vdb_master::config::{PeerConfig, UpstreamConfig};
use vdb_master::{Config, Running};
use vdb_proto::{Clock, Manifest, ManualClock, PublicKey, PushNotice, Signed, SystemClock};

use crate::harness::{
    TOKEN, config, fixture, manifest, metric, metrics, public, publish, publisher_key, start,
    start_on, until, version,
};

/// A mirror double: verifies push notices with the masters' keys and records them; answers
/// 503 to the first `fail_first` pushes.
#[derive(Clone)]
struct MirrorDouble {
    keys: Vec<PublicKey>,
    got: Arc<Mutex<Vec<PushNotice>>>,
    fail_first: Arc<Mutex<u32>>,
}

impl MirrorDouble {
    /// Starts one; returns it and its push URL.
    async fn start(keys: Vec<PublicKey>) -> (Self, String) {
        let m = Self {
            keys,
            got: Arc::default(),
            fail_first: Arc::default(),
        };
        let app = Router::new()
            .route(vdb_proto::paths::PUSH, post(push_handler))
            .with_state(m.clone());
        let addr = vdb_testkit::serve(app).await;
        (m, format!("http://{addr}{}", vdb_proto::paths::PUSH))
    }

    fn got(&self) -> Vec<PushNotice> {
        self.got.lock().unwrap().clone()
    }
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

async fn register(url: &str, name: &str, push_url: &str) {
    let mut r = vdb_proto::MirrorRecord::new(name, "http://127.0.0.1:9");
    r.push_url = Some(push_url.to_owned());
    Admin::new(url, Some(TOKEN.into())).add(&r).await.unwrap();
}

#[tokio::test]
async fn pushes_are_retried_acknowledged_and_shown_in_the_rollout_timeline() {
    let (dir, clock) = crate::harness::scratch();
    let key = public(10);
    let a = start(config(dir.path(), "a", 10), &clock).await;
    let url = a.base_url();
    let (good, good_url) = MirrorDouble::start(vec![key]).await;
    let (flaky, flaky_url) = MirrorDouble::start(vec![key]).await;
    register(&url, "good", &good_url).await;
    register(&url, "flaky", &flaky_url).await;
    register(&url, "dead", "http://127.0.0.1:9/.well-known/vdbnet/push").await;
    // A newly registered mirror is pushed the current manifest at once.
    let initial = manifest(&url, key).await.unwrap().serial;
    until("registration pushes", || async {
        good.got().len() == 1 && flaky.got().len() == 1
    })
    .await;
    assert_eq!(good.got()[0].serial, initial);
    *flaky.fail_first.lock().unwrap() = 2;
    let r = publish(&url, &clock, 1).await;
    until("both pushes", || async {
        good.got().len() == 2 && flaky.got().len() == 2
    })
    .await;
    let n = good.got()[1].clone();
    assert_eq!(
        (n.network.as_str(), n.master.as_str(), n.serial, n.forced),
        ("testnet", "a", r.serial, false)
    );
    let admin = Admin::new(&url, None);
    until("the timeline", || async {
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
    let metrics = metrics(&url).await;
    assert!(
        metrics.contains("vdb_master_pushes_total{result=\"acked\"} 4"),
        "{metrics}"
    );
    // A heartbeat pushes again.
    clock.advance(6 * 3600);
    until("heartbeat push", || async { good.got().len() >= 3 }).await;
    assert!(good.got()[2].serial > r.serial);
    a.shutdown().await;
}

/// Two masters that list each other as peers, on listeners bound before either starts.
struct Pair {
    dir: tempfile::TempDir,
    clock: ManualClock,
    addrs: [SocketAddr; 2],
    bound: Mutex<[Option<std::net::TcpListener>; 2]>,
    keys: [PublicKey; 2],
}

impl Pair {
    fn new() -> Self {
        let bound = [vdb_testkit::loopback(), vdb_testkit::loopback()];
        Self {
            dir: tempfile::tempdir().unwrap(),
            clock: ManualClock::new(SystemClock.now()),
            addrs: [
                bound[0].local_addr().unwrap(),
                bound[1].local_addr().unwrap(),
            ],
            bound: Mutex::new(bound.map(Some)),
            keys: [public(10), public(11)],
        }
    }
    fn url(&self, i: usize) -> String {
        format!("http://{}", self.addrs[i])
    }
    fn config(&self, i: usize) -> Config {
        let mut c = config(self.dir.path(), ["a", "b"][i], 10 + i as u8);
        c.peers = vec![PeerConfig {
            url: self.url(1 - i),
            key: self.keys[1 - i],
            token: None,
        }];
        c
    }
    /// Starts master `i` of `config`: on its listener the first time, on the same address
    /// again after a shutdown (a restart).
    async fn start_with(&self, i: usize, config: Config) -> Running {
        let listener = self.bound.lock().unwrap()[i].take();
        let listener =
            listener.unwrap_or_else(|| std::net::TcpListener::bind(self.addrs[i]).unwrap());
        start_on(config, listener, &self.clock).await
    }
    async fn start(&self, i: usize) -> Running {
        self.start_with(i, self.config(i)).await
    }
    async fn start_both(&self) -> (Running, Running) {
        let a = self.start(0).await;
        let b = self.start(1).await;
        until("both ready", || async { a.is_ready() && b.is_ready() }).await;
        (a, b)
    }
    async fn version(&self, i: usize) -> u32 {
        version(&self.url(i), self.keys[i]).await
    }
    async fn manifest(&self, i: usize) -> Option<Manifest> {
        manifest(&self.url(i), self.keys[i]).await
    }
}

#[tokio::test]
async fn masters_replicate_releases_and_registry_with_disjoint_serials() {
    let p = Pair::new();
    let (a, b) = p.start_both().await;
    let ra = publish(&p.url(0), &p.clock, 1).await;
    until("B to replicate v1", || async { p.version(1).await == 1 }).await;
    let rb = publish(&p.url(1), &p.clock, 2).await;
    assert_eq!(rb.master, "b");
    until("A to replicate v2", || async { p.version(0).await == 2 }).await;
    // The same release ids on both; replicated releases passed the gate again.
    let ma = p.manifest(0).await.unwrap();
    let mb = p.manifest(1).await.unwrap();
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
    until("B to see m1", || async {
        Admin::new(&p.url(1), None).list().await.unwrap().len() == 1
    })
    .await;
    Admin::new(&p.url(1), Some(TOKEN.into()))
        .remove("m1")
        .await
        .unwrap();
    p.clock.advance(10);
    until("A to see the removal", || async {
        Admin::new(&p.url(0), None).list().await.unwrap().is_empty()
    })
    .await;
    let st = crate::harness::status(&p.url(0)).await;
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
    let b = p.start_with(1, cb).await;
    let a = p.start(0).await;
    until("A ready", || async { a.is_ready() }).await;
    publish(&p.url(1), &p.clock, 1).await;
    p.clock.advance(10);
    until("A to pull v1", || async { p.version(0).await == 1 }).await;
    assert!(a.forced_sync_now().await);
    publish(&p.url(1), &p.clock, 2).await;
    assert!(
        !a.forced_sync_now().await,
        "B holds v2, A only v1: no forced sync"
    );
    p.clock.advance(10);
    until("A to pull v2", || async { p.version(0).await == 2 }).await;
    assert!(a.forced_sync_now().await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn master_restored_from_an_old_backup_catches_up_before_it_signs_or_pushes() {
    let p = Pair::new();
    let (a, b) = p.start_both().await;
    publish(&p.url(0), &p.clock, 1).await;
    until("B to replicate v1", || async { p.version(1).await == 1 }).await;
    a.shutdown().await;
    // Back up A (stopped: consistent files).
    let data = p.dir.path().join("data-a");
    let backup = p.dir.path().join("backup-a");
    vdb_testkit::copy_dir(&data, &backup);
    let old_serial = manifest_file_serial(&data);
    // The network moves on through B.
    for v in 2..=4 {
        publish(&p.url(1), &p.clock, v).await;
    }
    let b_serial = p.manifest(1).await.unwrap().serial;
    assert!(b_serial > old_serial);
    // A mirror that records every push from A.
    let (mirror, push_url) = MirrorDouble::start(p.keys.to_vec()).await;
    register(&p.url(1), "watch", &push_url).await;
    // Restore A from the backup and start it.
    std::fs::remove_dir_all(&data).unwrap();
    vdb_testkit::copy_dir(&backup, &data);
    let a = p.start(0).await;
    until("A to catch up", || async {
        p.manifest(0)
            .await
            .is_some_and(|m| m.serial > b_serial && m.databases["test"].version == 4)
    })
    .await;
    // While it replicated v2 and v3, B already held v4: A signed nothing until it held v4
    // (a manifest above B's serial carrying v2 or v3 would be a rollback to every mirror), so
    // the three replicated releases went out in one manifest.
    let a_serial = p.manifest(0).await.unwrap().serial;
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
    until("a push from A", || async {
        mirror.got().iter().any(|n| n.master == "a")
    })
    .await;
    for n in mirror.got().iter().filter(|n| n.master == "a") {
        assert!(
            n.serial > b_serial,
            "A pushed serial {} (B was at {b_serial})",
            n.serial
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

fn manifest_file_serial(data: &Path) -> u64 {
    let bytes = std::fs::read(data.join("manifest.json")).unwrap();
    let env = Signed::<Manifest>::from_json(&bytes).unwrap();
    env.verify(&[env.signer()]).unwrap().serial
}

/// An upstream double: serves `test.cvd` at a chosen fixture version (or tampered bytes) and
/// the `test-N.cdiff` files, honouring `Range: bytes=0-511` like a CDN.
#[derive(Clone, Default)]
struct Upstream {
    cvd: Arc<Mutex<Vec<u8>>>,
}

impl Upstream {
    /// Starts one serving `test.cvd` of fixture `cvd`; returns it and its base URL.
    async fn start(cvd: &str) -> (Self, String) {
        let up = Self::default();
        up.serve(cvd);
        let app = Router::new()
            .route("/{name}", get(upstream_file))
            .with_state(up.clone());
        let addr = vdb_testkit::serve(app).await;
        (up, format!("http://{addr}"))
    }

    /// Serves these bytes as `test.cvd`.
    fn set(&self, cvd: Vec<u8>) {
        *self.cvd.lock().unwrap() = cvd;
    }

    /// Serves fixture `name` as `test.cvd`.
    fn serve(&self, name: &str) {
        self.set(std::fs::read(fixture(name)).unwrap());
    }
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

/// Follows `base` for database `test` every 10 s, signing with `key_file` (or its own key).
fn follow(c: &mut Config, base: &str, key_file: Option<std::path::PathBuf>) {
    c.upstream = Some(UpstreamConfig {
        url: base.to_owned(),
        databases: vec!["test".into()],
        interval_secs: 10,
        key_file,
        backoff_base_secs: 1,
        ..UpstreamConfig::default()
    });
}

#[tokio::test]
async fn following_an_upstream_publishes_new_versions_and_refuses_tampered_files() {
    let (up, base) = Upstream::start("test-1.cvd").await;
    let (dir, clock) = crate::harness::scratch();
    let mut c = config(dir.path(), "a", 10);
    follow(&mut c, &base, None);
    let key = public(10);
    let a = start(c, &clock).await;
    let url = a.base_url();
    until("v1 from upstream", || async {
        version(&url, key).await == 1
    })
    .await;
    up.serve("test-3.cvd");
    clock.advance(10);
    until("v3 from upstream", || async {
        version(&url, key).await == 3
    })
    .await;
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
    up.set(bad);
    let before = m.serial;
    clock.advance(10);
    let admin = Admin::new(&url, None);
    until("the refusal", || async {
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
}

#[tokio::test]
async fn https_with_rustls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = vdb_testkit::pki::TestPki::new();
    let (cert, key_pem) = pki.leaf(&["127.0.0.1"]).write(dir.path());
    let ca_file = dir.path().join("ca.pem");
    pki.write_ca(&ca_file);
    let clock = ManualClock::new(SystemClock.now());
    let mut c = config(dir.path(), "a", 10);
    c.tls_cert_file = Some(cert);
    c.tls_key_file = Some(key_pem);
    let a = start(c, &clock).await;
    let url = a.base_url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = vdb_master::client::read_ca(&ca_file).unwrap();
    let p = vdb_master::client::Publisher::new(vec![url.clone()], publisher_key())
        .with_clock(Arc::new(clock.clone()))
        .with_ca(&ca);
    let files = crate::harness::release(1);
    let info = vdb_master::client::infer(&files, None, None).unwrap();
    let (st, env) = p.statement(&info, &files, "").unwrap();
    let r = p
        .publish(&files, &st, &env, &|_: vdb_master::client::Progress| {})
        .await
        .unwrap();
    assert_eq!(r.version, 1);
    let key = public(10);
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

/// A master that mails to a relay double and has one unreachable peer (its forced sync is
/// skipped, with an alert), ready; with the relay, its clock and its directory.
async fn mailing() -> (
    Running,
    vdb_testkit::SmtpSink,
    ManualClock,
    tempfile::TempDir,
) {
    let sink = vdb_testkit::SmtpSink::start().await;
    let (dir, clock) = crate::harness::scratch();
    let mut c = config(dir.path(), "a", 10);
    c.smtp = Some(vdb_master::config::SmtpConfig {
        server: sink.addr.to_string(),
        from: "master@example.org".into(),
        to: vec!["announce@example.org".into()],
        tls: vdb_service::smtp::SmtpTls::None,
        ..Default::default()
    });
    crate::harness::peer(&mut c, "http://127.0.0.1:9");
    c.catch_up_timeout_secs = 0;
    let a = start(c, &clock).await;
    until("ready", || async { a.is_ready() }).await;
    (a, sink, clock, dir)
}

#[tokio::test]
async fn releases_and_alerts_are_mailed() {
    let (a, sink, clock, _dir) = mailing().await;
    publish(&a.base_url(), &clock, 1).await;
    let mailed = |needle: &'static str| {
        let sink = sink.clone();
        move || {
            let found = sink.mails().iter().any(|m| m.data.contains(needle));
            async move { found }
        }
    };
    until("the release mail", mailed("test version 1 released")).await;
    assert!(!a.forced_sync_now().await);
    until("the alert mail", mailed("alert: forced_sync_skipped")).await;
    let mails = sink.mails();
    assert!(mails.iter().all(|m| {
        m.data.contains("From: master@example.org\r\n")
            && m.data.contains("To: announce@example.org\r\n")
    }));
    a.shutdown().await;
}

#[tokio::test]
async fn two_masters_following_one_upstream_agree() {
    let (up, base) = Upstream::start("test-1.cvd").await;
    let p = Pair::new();
    // Masters that follow the same upstream share the follower's key (or list each other's
    // follower keys as publishers): a replicated release must come from a known publisher.
    let up_key = p.dir.path().join("upstream.key");
    std::fs::write(&up_key, vdb_proto::SecretKey::from_seed([42; 32]).to_text()).unwrap();
    let mut started = Vec::new();
    for i in 0..2 {
        let mut c = p.config(i);
        follow(&mut c, &base, Some(up_key.clone()));
        started.push(p.start_with(i, c).await);
    }
    until("both at v1", || async {
        p.version(0).await == 1 && p.version(1).await == 1
    })
    .await;
    up.serve("test-2.cvd");
    p.clock.advance(10);
    until("both at v2", || async {
        p.version(0).await == 2 && p.version(1).await == 2
    })
    .await;
    // One more round each, finding nothing newer.
    let current = "vdb_master_upstream_checks_total{result=\"current\"}";
    let seen = [
        metric(&p.url(0), current).await,
        metric(&p.url(1), current).await,
    ];
    p.clock.advance(10);
    until("a round on both that finds nothing new", || async {
        metric(&p.url(0), current).await > seen[0] && metric(&p.url(1), current).await > seen[1]
    })
    .await;
    // Each signed its own statement of the same files: no split brain, no refusal.
    for (i, m) in started.iter().enumerate() {
        assert!(m.forced_sync_now().await, "master {i}");
    }
    for i in 0..2 {
        let hist = Admin::new(&p.url(i), None).history(100).await.unwrap();
        assert!(hist.iter().all(|r| r.verdict == "accepted"), "{hist:?}");
    }
    for m in started {
        m.shutdown().await;
    }
}

#[tokio::test]
async fn line_breaks_in_release_notes_never_reach_the_smtp_dialogue() {
    let (a, sink, clock, _dir) = mailing().await;
    // Notes that would end the headers, add a header, end DATA and start a new envelope if
    // their bare CRs and LFs reached the wire as they are.
    let notes = "fixes\rBcc: evil@example.org\n\nX-Evil: 1\r.\rRCPT TO:<evil@example.org>\n.\nQUIT";
    let p = vdb_master::client::Publisher::new(vec![a.base_url()], publisher_key())
        .with_clock(Arc::new(clock.clone()));
    let files = crate::harness::release(1);
    let info = vdb_master::client::infer(&files, None, None).unwrap();
    let (st, env) = p.statement(&info, &files, notes).unwrap();
    p.publish(&files, &st, &env, &|_: vdb_master::client::Progress| {})
        .await
        .unwrap();
    let mail = vdb_testkit::wait_for_async("the release mail", 30, || async {
        sink.mails()
            .into_iter()
            .find(|m| m.data.contains("test version 1 released"))
    })
    .await;
    assert_eq!(mail.to, ["announce@example.org"], "{mail:?}");
    for line in mail.data.split_inclusive('\n') {
        assert!(
            line.ends_with("\r\n") && !line[..line.len() - 2].contains(['\r', '\n']),
            "a bare line break on the wire: {line:?}"
        );
    }
    let headers = mail.data.split("\r\n\r\n").next().unwrap();
    assert!(
        !headers.contains("Bcc") && !headers.contains("X-Evil"),
        "{headers}"
    );
    assert!(
        mail.data.contains("fixes\r\nBcc: evil@example.org\r\n"),
        "{mail:?}"
    );
    assert!(
        sink.mails()
            .iter()
            .all(|m| m.to == ["announce@example.org"]),
        "{:?}",
        sink.mails()
    );
    a.shutdown().await;
}
