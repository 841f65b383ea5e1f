//! Beyond freshclam, on a vdbnet mirror: the master-signed manifest is checked (signature,
//! network, expiry, no rollback) and every downloaded file must match it. The mirrors are test
//! doubles (axum on 127.0.0.1:0) serving fixture bytes and a manifest made and signed with the
//! test kit; the client is the real binary with a TOML configuration.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use vdb_proto::{MANIFEST_PATH, SecretKey};
use vdb_testkit::keys::{self, NETWORK};

fn key() -> SecretKey {
    SecretKey::from_seed([11; 32])
}

/// Signs a manifest listing every file in `www` (except the manifest itself).
fn publish(www: &Path, serial: u64, daily_version: u32, expires_in: i64, key: &SecretKey) {
    publish_dbs(www, serial, &[("test", daily_version)], expires_in, key);
}

/// [`publish`] with these databases (none: a manifest that drops them): the test kit's manifest
/// of every file in `www`, issued now, expiring in `expires_in` seconds.
fn publish_dbs(www: &Path, serial: u64, dbs: &[(&str, u32)], expires_in: i64, key: &SecretKey) {
    let mut files = Vec::new();
    for e in std::fs::read_dir(www).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            files.push((
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            ));
        }
    }
    let now = vdb_testkit::now();
    let mut m = keys::manifest(NETWORK, serial, now, dbs, &files);
    m.expires_at = now + expires_in;
    let dir = www.join(".well-known/vdbnet");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        www.join(MANIFEST_PATH.trim_start_matches('/')),
        keys::signed(&m, key),
    )
    .unwrap();
}

fn toml(w: &Work, mirrors: &[String]) -> PathBuf {
    let list: Vec<String> = mirrors.iter().map(|m| format!("{m:?}")).collect();
    let text = format!(
        "database_directory = {:?}\nmirrors = [{}]\ndns = false\ndatabases = [\"test\"]\n\
         network = {NETWORK:?}\nmaster_keys = [\"{}\"]\nmax_attempts = 1\nretry_delay_secs = 0\n",
        w.db().display().to_string(),
        list.join(", "),
        key().public()
    );
    let p = w.tmp.path().join("vdb-update.toml");
    std::fs::write(&p, text).unwrap();
    p
}

async fn run_toml(conf: &Path) -> std::process::Output {
    let c = format!("--config={}", conf.display());
    run(&[c.as_str(), "--verbose"]).await
}

fn serve_chain(www: &Path, version: u32) {
    serve_fixture(www, &format!("test-{version}.cvd"), "test.cvd");
    for i in 2..=version {
        serve_fixture(www, &format!("test-{i}.cdiff"), &format!("test-{i}.cdiff"));
    }
}

/// A mirror serving ClamAV's test chain up to version 6 under a signed manifest of serial 10,
/// and a client's configuration for it; the client holds the fixture `held` as test.cvd.
async fn signed_v6(held: Option<&str>) -> (Work, Mirror, PathBuf) {
    let w = Work::new();
    serve_chain(&w.www(), 6);
    publish(&w.www(), 10, 6, 3600, &key());
    if let Some(fixture) = held {
        w.put_db(fixture, "test.cvd");
    }
    let m = Mirror::start(&w.www()).await;
    let conf = toml(&w, &[m.url()]);
    (w, m, conf)
}

#[tokio::test]
async fn signed_manifest_accepted_and_files_checked() {
    let (w, _m, conf) = signed_v6(Some("test-1.cvd")).await;
    let out = run_toml(&conf).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(w.version("test.cld"), 6);
    assert!(
        text(&out).contains("signed manifest serial 10"),
        "{}",
        text(&out)
    );
    assert!(w.db().join("vdbnet-manifest.json").exists());
}

#[tokio::test]
async fn file_not_matching_the_manifest_is_refused() {
    let w = Work::new();
    serve_chain(&w.www(), 6);
    publish(&w.www(), 10, 6, 3600, &key());
    // The mirror now serves a different (validly signed by ClamAV!) test.cvd: v5.
    serve_fixture(&w.www(), "test-5.cvd", "test.cvd");
    let m = Mirror::start(&w.www()).await;
    let conf = toml(&w, &[m.url()]);
    let out = run_toml(&conf).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(
        text(&out).contains("the masters did not publish"),
        "{}",
        text(&out)
    );
    assert!(w.db_files().is_empty(), "{:?}", w.db_files());
}

#[tokio::test]
async fn rollback_expired_and_foreign_manifests_are_refused() {
    let (w, _m, conf) = signed_v6(None).await;
    let out = run_toml(&conf).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(w.version("test.cvd"), 6);

    // A stale mirror: serial 9 after 10 was accepted.
    let stale = Work::new();
    serve_chain(&stale.www(), 5);
    publish(&stale.www(), 9, 5, 3600, &key());
    let s = Mirror::start(&stale.www()).await;
    let conf = toml(&w, &[s.url()]);
    let out = run_toml(&conf).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("rollback refused"), "{}", text(&out));
    // Only the manifest was fetched from it.
    assert_eq!(s.requests().len(), 1);

    // Expired.
    publish(&stale.www(), 11, 6, -1, &key());
    let out = run_toml(&conf).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("expired"), "{}", text(&out));

    // Signed by someone else.
    publish(&stale.www(), 12, 6, 3600, &SecretKey::from_seed([12; 32]));
    let out = run_toml(&conf).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert_eq!(w.version("test.cvd"), 6);
}

#[tokio::test]
async fn stale_mirror_is_skipped_for_a_current_one() {
    let w = Work::new();
    // Client already accepted serial 10 (v6) — simulate with a first run on a good mirror.
    let good = Work::new();
    serve_chain(&good.www(), 6);
    publish(&good.www(), 10, 6, 3600, &key());
    let g = Mirror::start(&good.www()).await;
    let stale = Work::new();
    serve_chain(&stale.www(), 3);
    publish(&stale.www(), 7, 3, 3600, &key());
    let s = Mirror::start(&stale.www()).await;
    // Held manifest: serial 10.
    std::fs::copy(
        good.www().join(MANIFEST_PATH.trim_start_matches('/')),
        w.db().join("vdbnet-manifest.json"),
    )
    .unwrap();
    w.put_db("test-1.cvd", "test.cvd");
    let conf = toml(&w, &[s.url(), g.url()]);
    let out = run_toml(&conf).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(w.version("test.cld"), 6);
    assert_eq!(s.requests().len(), 1);
}

/// A mirror double out of sync with its own signed manifest: it serves the signed manifest of
/// `good` (which names test version 6) but `test-<old>.cvd` as its test.cvd.
fn out_of_sync_mirror(good: &Work, old: u32) -> Work {
    let bad = Work::new();
    serve_chain(&bad.www(), old);
    let rel = MANIFEST_PATH.trim_start_matches('/');
    std::fs::create_dir_all(bad.www().join(rel).parent().unwrap()).unwrap();
    std::fs::copy(good.www().join(rel), bad.www().join(rel)).unwrap();
    bad
}

fn good_mirror() -> Work {
    let good = Work::new();
    serve_chain(&good.www(), 6);
    publish(&good.www(), 10, 6, 3600, &key());
    good
}

/// Consecutive failures vdb-update's health memory holds for `mirror`.
fn failures(w: &Work, mirror: &Mirror) -> u64 {
    let bytes = std::fs::read(w.db().join(vdb_update::health::HEALTH_FILE)).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["mirrors"][mirror.url()]["consecutive_failures"]
        .as_u64()
        .unwrap_or(0)
}

/// A client holding test.cvd version 3 runs once against `mirrors`: its database directory,
/// exit code and output.
async fn run_from_v3(mirrors: &[String]) -> (Work, Option<i32>, String) {
    let w = Work::new();
    w.put_db("test-3.cvd", "test.cvd");
    let out = run_toml(&toml(&w, mirrors)).await;
    (w, out.status.code(), text(&out))
}

/// Asserts that the output `t` says each of `parts`.
fn assert_contains(t: &str, parts: &[&str]) {
    for p in parts {
        assert!(t.contains(p), "{p:?} is not in: {t}");
    }
}

/// A mirror whose test.cvd is version 3 (the installed one) while its signed manifest names 6.
/// Alone, it is an error (exit 12, "names test version 6", `alone_says`, never "up to date";
/// `alone_asked` checks what it was asked), not retried; before a good mirror, it is skipped
/// (`skipped_says`) and the client ends at version 6 from the good one. With `header_newer`,
/// its file is newer on disk than the installed build, so the probe gets a header, not a 304.
async fn out_of_sync_mirror_is_skipped(
    header_newer: bool,
    alone_says: &[&str],
    alone_asked: impl Fn(&[Req]),
    skipped_says: &[&str],
) {
    let good = good_mirror();
    let bad = out_of_sync_mirror(&good, 3);
    if header_newer {
        set_mtime(&bad.www().join("test.cvd"), now());
    }
    let (g, b) = (
        Mirror::start(&good.www()).await,
        Mirror::start(&bad.www()).await,
    );
    let (w, code, t) = run_from_v3(&[b.url()]).await;
    assert_eq!(code, Some(12), "{t}");
    assert_contains(&t, alone_says);
    assert_contains(&t, &["names test version 6 (installed: 3)"]);
    assert!(!t.contains("up-to-date"), "{t}");
    assert_eq!(failures(&w, &b), 1);
    w.assert_only("test.cvd", 3);
    alone_asked(&b.requests());

    let (w, code, t) = run_from_v3(&[b.url(), g.url()]).await;
    assert_eq!(code, Some(0), "{t}");
    assert_contains(&t, skipped_says);
    w.assert_only("test.cld", 6);
    assert_eq!(failures(&w, &b), 1);
    assert_eq!(failures(&w, &g), 0);
    assert!(b.requests().iter().all(|r| !r.path.ends_with(".cdiff")));
}

#[tokio::test]
async fn a_mirror_answering_304_while_its_manifest_names_a_newer_version_is_skipped() {
    out_of_sync_mirror_is_skipped(
        false,
        &["is out of sync", "answers 304 Not Modified"],
        // The manifest and one probe: asking it again cannot help.
        |asked| {
            let paths: Vec<&str> = asked.iter().map(|r| r.path.as_str()).collect();
            assert_eq!(paths, [MANIFEST_PATH, "/test.cvd"]);
        },
        &[
            "is out of sync",
            "contradicted the mirror's own signed manifest",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_mirror_whose_header_says_nothing_new_while_its_manifest_does_is_skipped() {
    out_of_sync_mirror_is_skipped(
        true,
        &["has header version 3"],
        |asked| assert!(asked.iter().any(|r| r.range && r.status == 206)),
        &[],
    )
    .await;
}

#[tokio::test]
async fn a_database_dropped_then_brought_back_lower_is_refused_across_runs() {
    let (w, _m, conf) = signed_v6(None).await;
    let out = run_toml(&conf).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    w.assert_only("test.cvd", 6);
    let floor: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.db().join("vdbnet-floor.json")).unwrap()).unwrap();
    assert_eq!(floor, serde_json::json!({"test": 6}));

    // A manifest that drops test is taken (a database may be retired)...
    publish_dbs(&w.www(), 11, &[], 3600, &key());
    let out = run_toml(&conf).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // ...but the next one may not bring it back lower than 6.
    serve_chain(&w.www(), 5);
    publish(&w.www(), 12, 5, 3600, &key());
    let out = run_toml(&conf).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(7), "{t}");
    assert!(t.contains("moves test from version 6 down to 5"), "{t}");
    assert!(
        t.contains("anti-rollback floor in vdbnet-floor.json"),
        "{t}"
    );
    w.assert_only("test.cvd", 6);

    // The floor is a file of its own: without the held manifest it still holds.
    std::fs::remove_file(w.db().join("vdbnet-manifest.json")).unwrap();
    let out = run_toml(&conf).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("anti-rollback floor"), "{}", text(&out));
    w.assert_only("test.cvd", 6);
}

#[tokio::test]
async fn a_manifest_newer_than_the_dns_record_wins() {
    let (w, _m, conf) = signed_v6(Some("test-3.cvd")).await;
    // The TXT record lags: it still says 3, the installed version.
    let t = now();
    let dns = FakeDns::start(&[
        (
            "current.cvd.example.test.",
            format!("1.4.6:62:27000:{t}:1:216:49192:335"),
        ),
        ("test.cvd.clamav.net.", format!("3:{t}")),
    ])
    .await;
    let text_conf = std::fs::read_to_string(&conf).unwrap().replace(
        "dns = false\n",
        &format!(
            "dns_txt = \"current.cvd.example.test\"\ndns_server = \"{}\"\n",
            dns.addr
        ),
    );
    std::fs::write(&conf, text_conf).unwrap();
    let out = run_toml(&conf).await;
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("newer than DNS's 3"), "{t}");
    w.assert_only("test.cld", 6);
    assert!(!dns.queries.lock().unwrap().is_empty());
}
