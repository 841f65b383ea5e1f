//! In-process tests of the mirror against the test kit's master double (real HTTP on loopback).

mod bench;
mod delta;
mod floor;
mod threads;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vdb_mirror::{Config, Running, SyncError, SyncOutcome, SyncRequest};
use vdb_proto::{ManualClock, PushNotice, SecretKey, Signed};
use vdb_testkit::fixtures::served_set as test_release;
use vdb_testkit::keys::{NETWORK, master_key};
use vdb_testkit::{MasterDouble, wait_for_async};

const NOW: i64 = 1_800_000_000;

fn config(data: &Path, masters: &[String], extra: &str) -> Config {
    let text = format!(
        "name = \"m1\"\nnetwork = \"{NETWORK}\"\nmasters = {masters:?}\n\
         master_keys = [\"{}\"]\ndata_dir = {:?}\nlisten = \"127.0.0.1:0\"\n\
         poll_secs = 3600\nstats_user = \"admin\"\nstats_password = \"s3cret\"\n{extra}",
        master_key().public(),
        data.display().to_string(),
    );
    let path = data.with_extension("toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

async fn wait_serial(m: &Running, serial: u64) {
    wait_for_async(&format!("the mirror at serial {serial}"), 20, || async {
        (m.serial() == Some(serial)).then_some(())
    })
    .await;
}

async fn wait_syncs(m: &Running, n: u64) {
    wait_for_async(&format!("{n} syncs"), 20, || async {
        (m.status().syncs >= n).then_some(())
    })
    .await;
}

/// Starts the mirror of `cfg` on the clock of `s`.
async fn start_config(s: &Setup, cfg: Config) -> Running {
    vdb_mirror::start(cfg, Arc::new(s.clock.clone()))
        .await
        .unwrap()
}

/// Starts the mirror of `s` on `masters` (its config plus `extra`).
async fn start(s: &Setup, masters: &[String], extra: &str) -> Running {
    start_config(s, config(&s.data, masters, extra)).await
}

/// Publishes manifest `serial` (issued `at`, signed by `key`) of the test database at `version`.
fn publish(master: &MasterDouble, key: &SecretKey, serial: u64, at: i64, version: u32) {
    master.publish(
        key,
        serial,
        at,
        &[("test", version)],
        &test_release(version),
    );
}

/// A mirror of `s.master` (its config plus `extra`) serving `serial`, the test database at
/// `version` published now.
async fn serving(s: &Setup, extra: &str, serial: u64, version: u32) -> Running {
    publish(&s.master, &master_key(), serial, NOW, version);
    let m = start(s, &[s.master.url()], extra).await;
    wait_serial(&m, serial).await;
    m
}

/// One sync outside the loop.
async fn sync(m: &Running) -> Result<SyncOutcome, SyncError> {
    m.sync_now(SyncRequest::default()).await
}

fn url(m: &Running, path: &str) -> String {
    format!("http://{}{path}", m.http_addr())
}

/// Request headers as (name, value) pairs.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// `method path` on the mirror with `headers`.
async fn request(
    m: &Running,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new().request(method, url(m, path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// The body of `GET path` on the mirror.
async fn body(m: &Running, path: &str) -> Vec<u8> {
    let r = request(m, "GET", path, &[]).await;
    r.bytes().await.unwrap().to_vec()
}

/// `GET /local_stats/{query}`, as the admin with `password` if one is given.
async fn local_stats(m: &Running, query: &str, password: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url(m, &format!("/local_stats/{query}")));
    if let Some(p) = password {
        req = req.basic_auth("admin", Some(p));
    }
    req.send().await.unwrap()
}

/// The rows of the local statistics as JSON.
async fn stats_rows(m: &Running) -> Vec<serde_json::Value> {
    let r = local_stats(m, "?format=json", Some("s3cret")).await;
    r.json().await.unwrap()
}

fn push_body(key: &SecretKey, serial: u64, at: i64, forced: bool) -> String {
    Signed::sign(&PushNotice::new(NETWORK, "double", serial, at, forced), key).to_json()
}

async fn post_push(m: &Running, body: String) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url(m, vdb_proto::paths::PUSH))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn raw(m: &Running, request: &[u8]) -> String {
    let mut s = TcpStream::connect(m.http_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

struct Setup {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    master: MasterDouble,
    clock: ManualClock,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Setup {
        _dir: dir,
        data,
        master: MasterDouble::start(),
        clock: ManualClock::new(NOW),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_switches_sets_and_keeps_local_files() {
    let s = setup();
    publish(&s.master, &master_key(), 1, NOW, 1);
    let cfg = config(&s.data, &[s.master.url()], "");
    std::fs::create_dir_all(cfg.local_dir()).unwrap();
    std::fs::write(cfg.local_dir().join("local_logo.png"), b"logo").unwrap();
    let m = start_config(&s, cfg).await;
    wait_serial(&m, 1).await;
    assert_eq!(body(&m, "/test.cvd").await, test_release(1)[0].1);
    assert_eq!(request(&m, "GET", "/test-2.cdiff", &[]).await.status(), 404);

    publish(&s.master, &master_key(), 2, NOW + 10, 6);
    let out = sync(&m).await.unwrap();
    assert!(
        matches!(
            out,
            SyncOutcome::Updated {
                serial: 2,
                downloaded: 7,
                ..
            }
        ),
        "{out:?}"
    );
    for (name, data) in test_release(6) {
        assert_eq!(body(&m, &format!("/{name}")).await, data, "{name}");
    }
    let env = body(&m, vdb_proto::MANIFEST_PATH).await;
    let man = Signed::<vdb_proto::Manifest>::from_json(&env)
        .unwrap()
        .verify(&[master_key().public()])
        .unwrap();
    assert_eq!(man.serial, 2);
    // Only the files of serial 2 remain as objects; at most the current and previous snapshot.
    assert_eq!(
        std::fs::read_dir(s.data.join("objects")).unwrap().count(),
        7
    );
    assert!(std::fs::read_dir(s.data.join("snapshots")).unwrap().count() <= 2);
    assert_eq!(body(&m, "/local_logo.png").await, b"logo");
    // Same again: nothing to do.
    assert_eq!(sync(&m).await.unwrap(), SyncOutcome::UpToDate { serial: 2 });
    m.shutdown().await;
    // Restart: the served set comes back from disk before any sync.
    s.master.set_down(true);
    let m = start(&s, &[s.master.url()], "").await;
    assert_eq!(m.serial(), Some(2));
    assert_eq!(
        std::fs::read(s.data.join("local/local_logo.png")).unwrap(),
        b"logo"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_rollback_expired_foreign_and_equivocating_manifests() {
    let s = setup();
    let key = master_key();
    let m = serving(&s, "", 5, 3).await;
    let before = body(&m, "/test.cvd").await;

    let refused = |r: Result<SyncOutcome, SyncError>, what: &str| {
        let e = r.expect_err(what).to_string();
        assert!(e.contains(what), "{e}");
    };
    // (signer, serial, issued at, database version, what the refusal names)
    for (signer, serial, at, version, what) in [
        // Lower serial.
        (&key, 4, NOW + 1, 6, "rollback"),
        // Higher serial, lower database version.
        (&key, 6, NOW + 1, 2, "down to 2"),
        // Same serial, other content.
        (&key, 5, NOW + 1, 6, "equivocation"),
        (&key, 7, NOW - 8 * 86_400, 6, "expired"),
        (
            &SecretKey::from_seed([9; 32]),
            8,
            NOW,
            6,
            "not a trusted key",
        ),
    ] {
        publish(&s.master, signer, serial, at, version);
        refused(sync(&m).await, what);
    }
    // Manifests served as they are: a signed one of `serial` on `network`.
    let signed = |serial, network: &str| {
        let mut man =
            vdb_testkit::keys::manifest(NETWORK, serial, NOW, &[("test", 6)], &test_release(6));
        man.network = network.into();
        Signed::sign(&man, &key).to_json()
    };
    for (manifest, what) in [
        // Tampered payload.
        (
            signed(9, NETWORK).replace("\\\"serial\\\":9", "\\\"serial\\\":10"),
            "bad signature",
        ),
        (signed(11, "othernet"), "othernet"),
        ("{not json".to_owned(), "malformed"),
    ] {
        s.master.set_manifest_raw(manifest.into_bytes());
        refused(sync(&m).await, what);
    }

    assert_eq!(m.serial(), Some(5));
    assert_eq!(body(&m, "/test.cvd").await, before);
    assert_eq!(
        m.status().last_error,
        None,
        "status tracks the loop, not sync_now"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_oversized_objects_change_nothing_and_failover_works() {
    let s = setup();
    let key = master_key();
    let good = MasterDouble::start();
    publish(&s.master, &key, 1, NOW, 1);
    publish(&good, &key, 1, NOW, 1);
    let m = start(&s, &[s.master.url(), good.url()], "").await;
    wait_serial(&m, 1).await;
    // The first master serves wrong bytes for the new CVD; the second is down.
    let rel = test_release(4);
    publish(&s.master, &key, 2, NOW, 4);
    let sha = vdb_proto::sha256_hex(&rel[0].1);
    let mut evil = rel[0].1.clone();
    evil[600] ^= 1;
    let mut long = rel[0].1.clone();
    long.extend_from_slice(b"more");
    good.set_down(true);
    for (bytes, what) in [(evil, "does not match the manifest"), (long, "bytes")] {
        s.master.corrupt_object(&sha, bytes);
        let e = sync(&m).await.unwrap_err().to_string();
        vdb_testkit::assert_contains(&e, what);
    }
    assert_eq!(m.serial(), Some(1));
    // A leftover temp file never becomes visible.
    assert_eq!(std::fs::read_dir(s.data.join("tmp")).unwrap().count(), 0);
    // The second master comes back with the good bytes: the object is fetched from it.
    good.set_down(false);
    publish(&good, &key, 2, NOW, 4);
    let out = sync(&m).await.unwrap();
    assert!(
        matches!(out, SyncOutcome::Updated { serial: 2, .. }),
        "{out:?}"
    );
    assert_eq!(body(&m, "/test.cvd").await, rel[0].1);
    // First master down entirely: failover for the manifest too.
    s.master.set_down(true);
    publish(&good, &key, 3, NOW, 5);
    assert!(matches!(
        sync(&m).await.unwrap(),
        SyncOutcome::Updated { serial: 3, .. }
    ));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_verified_replays_refused_and_one_more_sync_after_a_busy_one() {
    let s = setup();
    let key = master_key();
    let m = serving(&s, "", 1, 1).await;
    wait_syncs(&m, 1).await;
    let base = m.status().syncs;

    // Serial 2 is published, but its objects hang until the gate opens.
    s.master.set_gate(true);
    publish(&s.master, &key, 2, NOW, 2);
    let (st, body) = post_push(&m, push_body(&key, 2, NOW, false)).await;
    assert_eq!(st, 202, "{body}");
    s.master
        .wait_requests(|r| r.iter().any(|p| p.starts_with("/api/v1/objects/")));
    // During that sync: serial 3 appears and three pushes arrive.
    publish(&s.master, &key, 3, NOW, 3);
    for _ in 0..3 {
        let (st, body) = post_push(&m, push_body(&key, 3, NOW, false)).await;
        assert_eq!(st, 202, "{body}");
    }
    s.master.set_gate(false);
    wait_serial(&m, 3).await;
    wait_syncs(&m, base + 2).await;
    // A third loop sync would be taken at once after the second (no wait between them), and
    // hold the store's lock. `sync_now` (not counted in the status) queues behind it: once it
    // returns, the loop has had its chance, and such a sync would have been counted.
    assert_eq!(sync(&m).await.unwrap(), SyncOutcome::UpToDate { serial: 3 });
    assert_eq!(
        m.status().syncs,
        base + 2,
        "exactly one more sync after the busy one"
    );

    // Refusals.
    let replay = push_body(&key, 3, NOW, false);
    assert_eq!(post_push(&m, replay.clone()).await.0, 202);
    let (st, body) = post_push(&m, replay).await;
    assert_eq!(st, 409, "{body}");
    vdb_testkit::assert_contains(&body, "\"code\":\"replay\"");
    let (st, body) = post_push(&m, push_body(&SecretKey::from_seed([3; 32]), 9, NOW, false)).await;
    assert_eq!(st, 403, "{body}");
    let (st, body) = post_push(&m, push_body(&key, 9, NOW - 3600, false)).await;
    assert_eq!((st, body.contains("stale")), (400, true), "{body}");
    let (st, body) = post_push(&m, push_body(&key, 2, NOW, false)).await;
    assert_eq!((st, body.contains("older_serial")), (409, true), "{body}");
    let (st, body) = post_push(&m, "x".repeat(100_000)).await;
    assert_eq!((st, body.contains("too_large")), (413, true), "{body}");
    let (st, body) = post_push(&m, "{}".into()).await;
    assert_eq!(st, 400, "{body}");
    // The clock moves: a notice from "now" is fine again later, the old one is stale.
    s.clock.advance(1000);
    let (st, _) = post_push(&m, push_body(&key, 3, NOW + 1000, false)).await;
    assert_eq!(st, 202);
    assert_eq!(m.serial(), Some(3));
    m.shutdown().await;
}

/// A push whose sync fails (the master answers 503 for a moment) is tried again with back-off,
/// without another push and long before the next poll (an hour here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_is_tried_again_before_the_next_poll() {
    let s = setup();
    let key = master_key();
    let m = serving(&s, "", 1, 1).await;
    wait_syncs(&m, 1).await;
    s.master.set_down(true);
    publish(&s.master, &key, 2, NOW, 2);
    let (st, body) = post_push(&m, push_body(&key, 2, NOW, false)).await;
    assert_eq!(st, 202, "{body}");
    wait_for_async("a failed sync", 20, || async {
        (m.status().failed_syncs >= 1).then_some(())
    })
    .await;
    assert_eq!(m.serial(), Some(1));
    s.master.set_down(false);
    wait_serial(&m, 2).await;
    assert!(m.status().last_error.is_none(), "{:?}", m.status());
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_update_leaves_only_its_own_objects_once_served() {
    let s = setup();
    let key = master_key();
    let m = serving(&s, "", 1, 1).await;
    wait_syncs(&m, 1).await;
    publish(&s.master, &key, 2, NOW, 6);
    let (st, body_text) = post_push(&m, push_body(&key, 2, NOW, false)).await;
    assert_eq!(st, 202, "{body_text}");
    wait_serial(&m, 2).await;
    let env = body(&m, vdb_proto::MANIFEST_PATH).await;
    let man = Signed::<vdb_proto::Manifest>::from_json(&env)
        .unwrap()
        .verify(&[key.public()])
        .unwrap();
    let wanted: std::collections::HashSet<String> = man
        .files
        .iter()
        .flat_map(|f| {
            [
                Some(f.sha256.clone()),
                f.segments.as_ref().map(|r| r.sha256.clone()),
            ]
        })
        .flatten()
        .collect();
    // Garbage collection runs after the switch (off the way to serving): wait for it.
    let objects = s.data.join("objects");
    wait_for_async("the old release's objects removed", 20, || async {
        let names: std::collections::HashSet<String> = std::fs::read_dir(&objects)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        (names == wanted).then_some(())
    })
    .await;
    assert!(std::fs::read_dir(s.data.join("snapshots")).unwrap().count() <= 2);
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_push_repairs_a_damaged_file() {
    let s = setup();
    let rel = test_release(6);
    let m = serving(&s, "", 1, 6).await;
    wait_syncs(&m, 1).await;
    // Damage the object in place (same inode as the served link): a plain sync does not look.
    let sha = vdb_proto::sha256_hex(&rel[2].1);
    let obj = s.data.join("objects").join(&sha);
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&obj, &bytes).unwrap();
    assert_eq!(sync(&m).await.unwrap(), SyncOutcome::UpToDate { serial: 1 });
    let out = m
        .sync_now(SyncRequest {
            want_serial: None,
            forced: true,
        })
        .await
        .unwrap();
    assert!(
        matches!(out, SyncOutcome::Updated { downloaded: 1, .. }),
        "{out:?}"
    );
    assert_eq!(body(&m, &format!("/{}", rel[2].0)).await, rel[2].1);
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_semantics() {
    let s = setup();
    let rel = test_release(6);
    let hosts = "hosts = [\"database.test.net\", \"db.eu.test.net\"]\nunknown_host = \"reject\"\n";
    let m = serving(&s, hosts, 1, 6).await;
    const HOST: (&str, &str) = ("host", "database.test.net");
    // Last-Modified = header build time (1624412045 for test-6).
    const BUILT: &str = "Wed, 23 Jun 2021 01:34:05 GMT";
    let cvd = &rel[0].1;
    async fn get(m: &Running, headers: &[(&str, &str)]) -> reqwest::Response {
        request(m, "GET", "/test.cvd", headers).await
    }

    // The CVD.
    let r = get(&m, &[HOST]).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["last-modified"], BUILT);
    assert_eq!(h["etag"], format!("\"{}\"", vdb_proto::sha256_hex(cvd)));
    assert_eq!(h["cache-control"], "public, max-age=60");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(&r.bytes().await.unwrap()[..], &cvd[..]);
    // freshclam's probe.
    let r = get(&m, &[HOST, ("range", "bytes=0-511")]).await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-511/{}", cvd.len())
    );
    assert_eq!(&r.bytes().await.unwrap()[..], &cvd[..512]);
    let etag = h["etag"].to_str().unwrap();
    // (request headers, status, why)
    let conditional: [(Headers<'_>, u16, &str); 5] = [
        (
            &[HOST, ("range", "bytes=0-511"), ("if-modified-since", BUILT)],
            304,
            "a probe of an unchanged file",
        ),
        (
            &[HOST, ("if-modified-since", "Wed, 23 Jun 2021 01:34:04 GMT")],
            200,
            "modified since",
        ),
        (&[HOST, ("if-none-match", etag)], 304, "the same ETag"),
        (
            &[
                HOST,
                ("if-none-match", "\"other\""),
                ("if-modified-since", BUILT),
            ],
            200,
            "If-None-Match wins over If-Modified-Since",
        ),
        (
            &[HOST, ("range", "bytes=0-9"), ("if-range", "\"stale\"")],
            200,
            "If-Range mismatch sends the whole file",
        ),
    ];
    for (headers, status, why) in conditional {
        assert_eq!(get(&m, headers).await.status(), status, "{why}");
    }
    let r = get(&m, &[HOST, ("range", "bytes=100000-")]).await;
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", cvd.len())
    );
    let r = request(&m, "HEAD", "/test.cvd", &[("host", "db.eu.test.net:80")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], cvd.len().to_string());
    // Immutable cdiff.
    let r = request(&m, "GET", "/test-3.cdiff", &[HOST]).await;
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    // Unknown host, method.
    let r = get(&m, &[("host", "evil.example")]).await;
    assert_eq!(r.status(), 421);
    let r = request(&m, "DELETE", "/test.cvd", &[HOST]).await;
    assert_eq!(r.status(), 405);
    assert!(r.text().await.unwrap().contains("method_not_allowed"));
    // Nothing outside the served set.
    for (req, want) in [
        ("GET /../../etc/passwd HTTP/1.1", "HTTP/1.1 400"),
        ("GET /%2e%2e/etc/passwd HTTP/1.1", "HTTP/1.1 400"),
        ("GET /test.cvd%00 HTTP/1.1", "HTTP/1.1 400"),
        ("GET /..%2fobjects HTTP/1.1", "HTTP/1.1 400"),
        ("GET / HTTP/1.1", "HTTP/1.1 404"),
        ("GET /objects/ HTTP/1.1", "HTTP/1.1 404"),
        ("GET /.manifest.json HTTP/1.1", "HTTP/1.1 404"),
        ("GET /current/test.cvd HTTP/1.1", "HTTP/1.1 404"),
        ("GET /sync.lock HTTP/1.1", "HTTP/1.1 404"),
        ("GET /stats.sqlite HTTP/1.1", "HTTP/1.1 404"),
        ("GET /local_nothing HTTP/1.1", "HTTP/1.1 404"),
        (
            "GET http://database.test.net/test.cvd\\ HTTP/1.1",
            "HTTP/1.1 4",
        ),
        ("BREW /test.cvd HTTP/1.1", "HTTP/1.1 405"),
        ("GARBAGE", "HTTP/1.1 400"),
    ] {
        let out = raw(
            &m,
            format!("{req}\r\nHost: database.test.net\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(out.starts_with(want), "{req}: {out}");
    }
    // Keep-alive: two requests on one connection.
    let out = raw(
        &m,
        b"GET /timestamp HTTP/1.1\r\nHost: database.test.net\r\n\r\nGET /timestamp HTTP/1.1\r\nHost: database.test.net\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
    // A client that never finishes its headers is cut off (header_read_timeout_secs = 1 below
    // is not set here; default 10 s is too long for a test, see the vdbd test).
    assert_eq!(body(&m, "/healthz").await, b"ok");
    let metrics = vdb_testkit::http::get_text(&url(&m, "/metrics")).await;
    vdb_testkit::assert_contains(&metrics, "vdb_mirror_manifest_serial 1");
    vdb_testkit::assert_contains(&metrics, "vdb_mirror_http_responses_total{code=\"206\"}");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_clients_exclude_checkers_and_persist() {
    let s = setup();
    let flush = "stats_flush_secs = 1\n";
    let m = serving(&s, flush, 1, 6).await;
    for ua in [
        "ClamAV/1.4.6 (OS: Linux, ARCH: x86_64, CPU: x86_64, UUID: x)",
        "ClamAV/1.4.6 (OS: Linux, ARCH: x86_64, CPU: x86_64, UUID: y)",
        "ClamAV/1.0.7 (OS: Linux)",
        "ClamAV-MirrorCheck",
        "vdbnet-monitor/0.1 (probe)",
    ] {
        let r = request(&m, "GET", "/test.cvd", &[("user-agent", ua)]).await;
        assert_eq!(r.status(), 200);
    }
    let r = local_stats(&m, "", None).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(local_stats(&m, "", Some("wrong")).await.status(), 401);
    let rows = stats_rows(&m).await;
    let size = test_release(6)[0].1.len() as u64;
    let find = |client: &str| rows.iter().find(|r| r["client"] == client).cloned();
    let r146 = find("ClamAV/1.4.6").unwrap();
    assert_eq!(r146["requests"], 2);
    assert_eq!(r146["bytes"], 2 * size);
    assert_eq!(r146["file"], "test.cvd");
    assert_eq!(r146["day"], "2027-01-15");
    assert_eq!(find("ClamAV/1.0.7").unwrap()["requests"], 1);
    assert_eq!(rows.len(), 2, "checker and monitor not counted: {rows:?}");
    let r = local_stats(&m, "", Some("s3cret")).await;
    let html = r.text().await.unwrap();
    assert!(html.contains("<table>") && html.contains("ClamAV/1.0.7"));
    m.shutdown().await;
    let m = start(&s, &[s.master.url()], flush).await;
    assert_eq!(stats_rows(&m).await.len(), 2, "kept across restarts");
    m.shutdown().await;
}
