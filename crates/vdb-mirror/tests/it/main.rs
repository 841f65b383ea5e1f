//! In-process tests of the mirror against the test kit's master double (real HTTP on loopback).

mod bench;
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

/// Starts the mirror of `s` on `masters` (its config plus `extra`).
async fn start(s: &Setup, masters: &[String], extra: &str) -> Running {
    vdb_mirror::start(config(&s.data, masters, extra), Arc::new(s.clock.clone()))
        .await
        .unwrap()
}

fn url(m: &Running, path: &str) -> String {
    format!("http://{}{path}", m.http_addr())
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
    s.master
        .publish(&master_key(), 1, NOW, &[("test", 1)], &test_release(1));
    let cfg = config(&s.data, &[s.master.url()], "");
    std::fs::create_dir_all(cfg.local_dir()).unwrap();
    std::fs::write(cfg.local_dir().join("local_logo.png"), b"logo").unwrap();
    let m = vdb_mirror::start(cfg, Arc::new(s.clock.clone()))
        .await
        .unwrap();
    wait_serial(&m, 1).await;
    let get = |p: &str| reqwest::get(url(&m, p));
    let body = get("/test.cvd").await.unwrap().bytes().await.unwrap();
    assert_eq!(&body[..], &test_release(1)[0].1[..]);
    assert_eq!(get("/test-2.cdiff").await.unwrap().status(), 404);

    s.master
        .publish(&master_key(), 2, NOW + 10, &[("test", 6)], &test_release(6));
    let out = m.sync_now(SyncRequest::default()).await.unwrap();
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
        let b = get(&format!("/{name}"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&b[..], &data[..], "{name}");
    }
    let env = get(vdb_proto::MANIFEST_PATH)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
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
    assert_eq!(
        get("/local_logo.png").await.unwrap().bytes().await.unwrap(),
        &b"logo"[..]
    );
    // Same again: nothing to do.
    assert_eq!(
        m.sync_now(SyncRequest::default()).await.unwrap(),
        SyncOutcome::UpToDate { serial: 2 }
    );
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
    s.master
        .publish(&key, 5, NOW, &[("test", 3)], &test_release(3));
    let m = start(&s, &[s.master.url()], "").await;
    wait_serial(&m, 5).await;
    let cvd = || async {
        reqwest::get(url(&m, "/test.cvd"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    };
    let before = cvd().await;

    let refused = |r: Result<SyncOutcome, SyncError>, what: &str| {
        let e = r.expect_err(what).to_string();
        assert!(e.contains(what), "{e}");
    };
    // Lower serial.
    s.master
        .publish(&key, 4, NOW + 1, &[("test", 6)], &test_release(6));
    refused(m.sync_now(SyncRequest::default()).await, "rollback");
    // Higher serial, lower database version.
    s.master
        .publish(&key, 6, NOW + 1, &[("test", 2)], &test_release(2));
    refused(m.sync_now(SyncRequest::default()).await, "down to 2");
    // Same serial, other content.
    s.master
        .publish(&key, 5, NOW + 1, &[("test", 6)], &test_release(6));
    refused(m.sync_now(SyncRequest::default()).await, "equivocation");
    // Expired.
    s.master
        .publish(&key, 7, NOW - 8 * 86_400, &[("test", 6)], &test_release(6));
    refused(m.sync_now(SyncRequest::default()).await, "expired");
    // Signed by a stranger.
    s.master.publish(
        &SecretKey::from_seed([9; 32]),
        8,
        NOW,
        &[("test", 6)],
        &test_release(6),
    );
    refused(
        m.sync_now(SyncRequest::default()).await,
        "not a trusted key",
    );
    // Tampered payload.
    let good = Signed::sign(
        &vdb_testkit::keys::manifest(NETWORK, 9, NOW, &[("test", 6)], &test_release(6)),
        &key,
    )
    .to_json();
    s.master.set_manifest_raw(
        good.replace("\\\"serial\\\":9", "\\\"serial\\\":10")
            .into_bytes(),
    );
    refused(m.sync_now(SyncRequest::default()).await, "bad signature");
    // Another network.
    let mut other = vdb_testkit::keys::manifest(NETWORK, 11, NOW, &[("test", 6)], &test_release(6));
    other.network = "othernet".into();
    s.master
        .set_manifest_raw(Signed::sign(&other, &key).to_json().into_bytes());
    refused(m.sync_now(SyncRequest::default()).await, "othernet");
    // Garbage.
    s.master.set_manifest_raw(b"{not json".to_vec());
    refused(m.sync_now(SyncRequest::default()).await, "malformed");

    assert_eq!(m.serial(), Some(5));
    assert_eq!(cvd().await, before);
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
    s.master
        .publish(&key, 1, NOW, &[("test", 1)], &test_release(1));
    good.publish(&key, 1, NOW, &[("test", 1)], &test_release(1));
    let m = start(&s, &[s.master.url(), good.url()], "").await;
    wait_serial(&m, 1).await;
    // The first master serves wrong bytes for the new CVD; the second is down.
    let rel = test_release(4);
    s.master.publish(&key, 2, NOW, &[("test", 4)], &rel);
    let sha = vdb_proto::sha256_hex(&rel[0].1);
    let mut evil = rel[0].1.clone();
    evil[600] ^= 1;
    s.master.corrupt_object(&sha, evil);
    good.set_down(true);
    let e = m
        .sync_now(SyncRequest::default())
        .await
        .unwrap_err()
        .to_string();
    vdb_testkit::assert_contains(&e, "does not match the manifest");
    let mut long = rel[0].1.clone();
    long.extend_from_slice(b"more");
    s.master.corrupt_object(&sha, long);
    let e = m
        .sync_now(SyncRequest::default())
        .await
        .unwrap_err()
        .to_string();
    vdb_testkit::assert_contains(&e, "bytes");
    assert_eq!(m.serial(), Some(1));
    // A leftover temp file never becomes visible.
    assert_eq!(std::fs::read_dir(s.data.join("tmp")).unwrap().count(), 0);
    // The second master comes back with the good bytes: the object is fetched from it.
    good.set_down(false);
    good.publish(&key, 2, NOW, &[("test", 4)], &rel);
    let out = m.sync_now(SyncRequest::default()).await.unwrap();
    assert!(
        matches!(out, SyncOutcome::Updated { serial: 2, .. }),
        "{out:?}"
    );
    let b = reqwest::get(url(&m, "/test.cvd"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&b[..], &rel[0].1[..]);
    // First master down entirely: failover for the manifest too.
    s.master.set_down(true);
    good.publish(&key, 3, NOW, &[("test", 5)], &test_release(5));
    assert!(matches!(
        m.sync_now(SyncRequest::default()).await.unwrap(),
        SyncOutcome::Updated { serial: 3, .. }
    ));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_verified_replays_refused_and_one_more_sync_after_a_busy_one() {
    let s = setup();
    let key = master_key();
    s.master
        .publish(&key, 1, NOW, &[("test", 1)], &test_release(1));
    let m = start(&s, &[s.master.url()], "").await;
    wait_serial(&m, 1).await;
    wait_syncs(&m, 1).await;
    let base = m.status().syncs;

    // Serial 2 is published, but its objects hang until the gate opens.
    s.master.set_gate(true);
    s.master
        .publish(&key, 2, NOW, &[("test", 2)], &test_release(2));
    let (st, body) = post_push(&m, push_body(&key, 2, NOW, false)).await;
    assert_eq!(st, 202, "{body}");
    s.master
        .wait_requests(|r| r.iter().any(|p| p.starts_with("/api/v1/objects/")));
    // During that sync: serial 3 appears and three pushes arrive.
    s.master
        .publish(&key, 3, NOW, &[("test", 3)], &test_release(3));
    for _ in 0..3 {
        let (st, body) = post_push(&m, push_body(&key, 3, NOW, false)).await;
        assert_eq!(st, 202, "{body}");
    }
    s.master.set_gate(false);
    wait_serial(&m, 3).await;
    wait_syncs(&m, base + 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_push_repairs_a_damaged_file() {
    let s = setup();
    let key = master_key();
    let rel = test_release(6);
    s.master.publish(&key, 1, NOW, &[("test", 6)], &rel);
    let m = start(&s, &[s.master.url()], "").await;
    wait_serial(&m, 1).await;
    wait_syncs(&m, 1).await;
    // Damage the object in place (same inode as the served link): a plain sync does not look.
    let sha = vdb_proto::sha256_hex(&rel[2].1);
    let obj = s.data.join("objects").join(&sha);
    let mut bytes = std::fs::read(&obj).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&obj, &bytes).unwrap();
    assert_eq!(
        m.sync_now(SyncRequest::default()).await.unwrap(),
        SyncOutcome::UpToDate { serial: 1 }
    );
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
    let got = reqwest::get(url(&m, &format!("/{}", rel[2].0)))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &rel[2].1[..]);
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_semantics() {
    let s = setup();
    let key = master_key();
    let rel = test_release(6);
    s.master.publish(&key, 1, NOW, &[("test", 6)], &rel);
    let cfg = config(
        &s.data,
        &[s.master.url()],
        "hosts = [\"database.test.net\", \"db.eu.test.net\"]\nunknown_host = \"reject\"\n",
    );
    let m = vdb_mirror::start(cfg, Arc::new(s.clock.clone()))
        .await
        .unwrap();
    wait_serial(&m, 1).await;
    let c = reqwest::Client::new();
    let get = |p: &str| c.get(url(&m, p)).header("host", "database.test.net");
    let cvd = &rel[0].1;

    // The CVD: Last-Modified = header build time (1624412045 for test-6).
    let r = get("/test.cvd").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["last-modified"], "Wed, 23 Jun 2021 01:34:05 GMT");
    assert_eq!(h["etag"], format!("\"{}\"", vdb_proto::sha256_hex(cvd)));
    assert_eq!(h["cache-control"], "public, max-age=60");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(&r.bytes().await.unwrap()[..], &cvd[..]);
    // freshclam's probe.
    let r = get("/test.cvd")
        .header("range", "bytes=0-511")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-511/{}", cvd.len())
    );
    assert_eq!(&r.bytes().await.unwrap()[..], &cvd[..512]);
    let r = get("/test.cvd")
        .header("range", "bytes=0-511")
        .header("if-modified-since", "Wed, 23 Jun 2021 01:34:05 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = get("/test.cvd")
        .header("if-modified-since", "Wed, 23 Jun 2021 01:34:04 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = get("/test.cvd")
        .header("if-none-match", h["etag"].clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = get("/test.cvd")
        .header("if-none-match", "\"other\"")
        .header("if-modified-since", "Wed, 23 Jun 2021 01:34:05 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "If-None-Match wins over If-Modified-Since");
    let r = get("/test.cvd")
        .header("range", "bytes=100000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", cvd.len())
    );
    let r = get("/test.cvd")
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "If-Range mismatch sends the whole file");
    let r = c
        .head(url(&m, "/test.cvd"))
        .header("host", "db.eu.test.net:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], cvd.len().to_string());
    // Immutable cdiff.
    let r = get("/test-3.cdiff").send().await.unwrap();
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    // Unknown host, method.
    let r = c
        .get(url(&m, "/test.cvd"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    let r = c
        .delete(url(&m, "/test.cvd"))
        .header("host", "database.test.net")
        .send()
        .await
        .unwrap();
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
    let r = c.get(url(&m, "/healthz")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ok");
    let metrics = vdb_testkit::http::get_text(&url(&m, "/metrics")).await;
    vdb_testkit::assert_contains(&metrics, "vdb_mirror_manifest_serial 1");
    vdb_testkit::assert_contains(&metrics, "vdb_mirror_http_responses_total{code=\"206\"}");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_clients_exclude_checkers_and_persist() {
    let s = setup();
    let key = master_key();
    s.master
        .publish(&key, 1, NOW, &[("test", 6)], &test_release(6));
    let cfg = config(&s.data, &[s.master.url()], "stats_flush_secs = 1\n");
    let m = vdb_mirror::start(cfg.clone(), Arc::new(s.clock.clone()))
        .await
        .unwrap();
    wait_serial(&m, 1).await;
    let c = reqwest::Client::new();
    for ua in [
        "ClamAV/1.4.6 (OS: Linux, ARCH: x86_64, CPU: x86_64, UUID: x)",
        "ClamAV/1.4.6 (OS: Linux, ARCH: x86_64, CPU: x86_64, UUID: y)",
        "ClamAV/1.0.7 (OS: Linux)",
        "ClamAV-MirrorCheck",
        "vdbnet-monitor/0.1 (probe)",
    ] {
        let r = c
            .get(url(&m, "/test.cvd"))
            .header("user-agent", ua)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = c.get(url(&m, "/local_stats/")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = c
        .get(url(&m, "/local_stats/"))
        .basic_auth("admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let rows: serde_json::Value = c
        .get(url(&m, "/local_stats/?format=json"))
        .basic_auth("admin", Some("s3cret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = rows.as_array().unwrap();
    let size = test_release(6)[0].1.len() as u64;
    let find = |client: &str| rows.iter().find(|r| r["client"] == client).cloned();
    let r146 = find("ClamAV/1.4.6").unwrap();
    assert_eq!(r146["requests"], 2);
    assert_eq!(r146["bytes"], 2 * size);
    assert_eq!(r146["file"], "test.cvd");
    assert_eq!(r146["day"], "2027-01-15");
    assert_eq!(find("ClamAV/1.0.7").unwrap()["requests"], 1);
    assert_eq!(rows.len(), 2, "checker and monitor not counted: {rows:?}");
    let html = c
        .get(url(&m, "/local_stats/"))
        .basic_auth("admin", Some("s3cret"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<table>") && html.contains("ClamAV/1.0.7"));
    m.shutdown().await;
    let m = vdb_mirror::start(cfg, Arc::new(s.clock.clone()))
        .await
        .unwrap();
    let rows: serde_json::Value = c
        .get(url(&m, "/local_stats/?format=json"))
        .basic_auth("admin", Some("s3cret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "kept across restarts");
    m.shutdown().await;
}
