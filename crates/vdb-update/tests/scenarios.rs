//! The freshclam scenarios of spec §7.3, run with the real `vdb-update` binary against a local
//! mirror (test double: axum on 127.0.0.1:0) serving ClamAV's signed test fixtures. Each test
//! compares files, versions, requests and exit code with what §7.3 records for freshclam 1.4.6.

mod common;

use common::*;
use vdb_update::FreshclamDat;

fn req(path: &str, range: bool, ims: bool, status: u16) -> Req {
    Req {
        path: path.into(),
        range,
        ims,
        status,
    }
}

/// The requests a mirror saw, written `path flags status` and separated by commas, with flags
/// `r` (a `Range` header), `i` (`If-Modified-Since`), both or `-`:
/// `reqs("/test.cvd ri 206, /test-4.cdiff - 200")`.
fn reqs(list: &str) -> Vec<Req> {
    list.split(',')
        .map(|item| {
            let [path, flags, status] = item.split_whitespace().collect::<Vec<_>>()[..] else {
                panic!("{item:?} is not `path flags status`");
            };
            let status = status.parse().expect("a status code");
            req(path, flags.contains('r'), flags.contains('i'), status)
        })
        .collect()
}

/// www: test.cvd = v6 (+ the cdiffs `cdiffs`).
fn mirror_v6(w: &Work, cdiffs: &[u32]) {
    serve_fixture(&w.www(), "test-6.cvd", "test.cvd");
    for i in cdiffs {
        serve_fixture(
            &w.www(),
            &format!("test-{i}.cdiff"),
            &format!("test-{i}.cdiff"),
        );
    }
}

/// A client holding `test-<held>.cvd` as `test.cvd` (nothing for `None`), a mirror serving
/// `test.cvd` v6 and the cdiffs `cdiffs`, and the client's config naming that mirror, with the
/// freshclam options `extra`.
async fn client_and_mirror(
    held: Option<u32>,
    cdiffs: &[u32],
    extra: &str,
) -> (Work, Mirror, std::path::PathBuf) {
    let w = Work::new();
    mirror_v6(&w, cdiffs);
    if let Some(v) = held {
        w.put_db(&format!("test-{v}.cvd"), "test.cvd");
    }
    let m = Mirror::start(&w.www()).await;
    let conf = w.conf(&[m.url()], extra);
    (w, m, conf)
}

fn dat(w: &Work) -> FreshclamDat {
    FreshclamDat::parse(&std::fs::read(w.db().join("freshclam.dat")).unwrap()).unwrap()
}

#[tokio::test]
async fn fresh_download() {
    let (w, m, conf) = client_and_mirror(None, &[2, 3, 4, 5, 6], "").await;
    update_test_ok(&conf).await;
    assert_eq!(m.requests(), reqs("/test.cvd r 206, /test.cvd - 200"));
    w.assert_only("test.cvd", 6);
    // Byte-identical to what the mirror served.
    assert_eq!(
        std::fs::read(w.db().join("test.cvd")).unwrap(),
        std::fs::read(fixture("test-6.cvd")).unwrap()
    );
    let d = dat(&w);
    assert_eq!(d.retry_after, 0);
}

#[tokio::test]
async fn cdiff_update_then_up_to_date() {
    let (w, m, conf) = client_and_mirror(Some(1), &[2, 3, 4, 5, 6], "").await;
    let out = update_test_ok(&conf).await;
    let mut want = reqs("/test.cvd ri 206");
    for i in 2..=6 {
        want.push(req(&format!("/test-{i}.cdiff"), false, false, 200));
    }
    assert_eq!(m.requests(), want);
    w.assert_only("test.cld", 6);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("test.cld updated (version: 6, sigs: 14, f-level: 81, builder: micasnyd)"),
        "{}",
        text(&out)
    );
    // Same content as the CLD freshclam built from the same chain (member order may differ).
    let ours = vdb_format::container::read_to_map(
        std::fs::File::open(w.db().join("test.cld")).unwrap(),
        vdb_format::Kind::Cld,
        &vdb_format::KeySet::official(),
        &vdb_format::Limits::default(),
    )
    .unwrap()
    .1;
    let theirs = vdb_format::container::read_to_map(
        std::fs::File::open(fixture("derived/test-6.from-cdiffs.cld")).unwrap(),
        vdb_format::Kind::Cld,
        &vdb_format::KeySet::official(),
        &vdb_format::Limits::default(),
    )
    .unwrap()
    .1;
    assert_eq!(ours, theirs);

    // up_to_date: the probe carries the v6 build time and gets 304; nothing changes.
    let before = std::fs::read(w.db().join("test.cld")).unwrap();
    let out = update_test_ok(&conf).await;
    assert_eq!(m.requests(), reqs("/test.cvd ri 304"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("up-to-date"));
    assert_eq!(std::fs::read(w.db().join("test.cld")).unwrap(), before);
}

#[tokio::test]
async fn cdiff_partial() {
    let (w, m, conf) = client_and_mirror(Some(3), &[4, 5], "").await;
    let out = update_test_ok(&conf).await;
    assert_eq!(
        m.requests(),
        reqs("/test.cvd ri 206, /test-4.cdiff - 200, /test-5.cdiff - 200, /test-6.cdiff - 404")
    );
    w.assert_only("test.cld", 5);
    assert!(text(&out).contains("partial-update"), "{}", text(&out));
}

#[tokio::test]
async fn cdiff_missing_fallback() {
    let (w, m, conf) = client_and_mirror(Some(1), &[], "").await;
    let out = update_test_ok(&conf).await;
    assert_eq!(
        m.requests(),
        reqs("/test.cvd ri 206, /test-2.cdiff - 404, /test.cvd i 200")
    );
    w.assert_only("test.cvd", 6);
    assert!(text(&out).contains("Incremental update failed"));
}

#[tokio::test]
async fn missing_latest_patch_one_version_behind_stays() {
    let (w, m, conf) = client_and_mirror(Some(5), &[], "").await;
    let out = update_test_ok(&conf).await;
    assert_eq!(m.requests(), reqs("/test.cvd ri 206, /test-6.cdiff - 404"));
    assert_eq!(w.version("test.cvd"), 5);
    assert!(text(&out).contains("doesn't have the latest patch"));
}

#[tokio::test]
async fn empty_cdiff_falls_back_to_the_whole_cvd() {
    let (w, m, conf) = client_and_mirror(Some(1), &[2, 3, 4, 5, 6], "").await;
    std::fs::write(w.www().join("test-3.cdiff"), b"").unwrap();
    update_test_ok(&conf).await;
    let reqs = m.requests();
    assert_eq!(reqs.last().unwrap(), &req("/test.cvd", false, true, 200));
    w.assert_only("test.cvd", 6);
}

#[tokio::test]
async fn tampered_cdiff_falls_back_to_the_whole_cvd() {
    let (w, _m, conf) = client_and_mirror(Some(1), &[2, 3, 4, 5, 6], "").await;
    let p = w.www().join("test-4.cdiff");
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    b[n / 2] ^= 1;
    std::fs::write(&p, b).unwrap();
    update_test_ok(&conf).await;
    w.assert_only("test.cvd", 6);
}

#[tokio::test]
async fn private_mirror() {
    let w = Work::new();
    mirror_v6(&w, &[2, 3, 4, 5, 6]);
    w.put_db("test-1.cvd", "test.cvd");
    let m = Mirror::start(&w.www()).await;
    let conf = w.conf(&[], &format!("PrivateMirror {}\n", m.url()));
    update_test_ok(&conf).await;
    assert_eq!(
        m.requests(),
        reqs("/test.cld ri 404, /test.cvd ri 206, /test.cvd i 200")
    );
    w.assert_only("test.cvd", 6);
}

async fn probe_refused(status: u16) {
    let (w, m, conf) = client_and_mirror(None, &[], "").await;
    m.fault("/test.cvd", status, None, false);
    let t0 = now() as i64;
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(11), "{}", text(&out));
    assert_eq!(m.requests(), [req("/test.cvd", true, false, status)]);
    let want = if status == 403 { 24 * 3600 } else { 4 * 3600 };
    let d = dat(&w);
    assert!((d.retry_after - t0 - want).abs() <= 5, "{d}");
    // Second run: no request at all, exit 0.
    m.clear_faults();
    let out = update_test_ok(&conf).await;
    assert!(m.requests().is_empty());
    assert!(text(&out).contains("cool-down"), "{}", text(&out));
    assert!(w.db_files().is_empty());
}

#[tokio::test]
async fn http_429_on_probe() {
    probe_refused(429).await;
}

#[tokio::test]
async fn http_403_on_probe() {
    probe_refused(403).await;
}

#[tokio::test]
async fn http_403_on_download() {
    let (w, m, conf) = client_and_mirror(None, &[], "").await;
    m.fault("/test.cvd", 403, None, true);
    let t0 = now() as i64;
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(17), "{}", text(&out));
    assert_eq!(m.requests(), reqs("/test.cvd r 206, /test.cvd - 403"));
    assert!((dat(&w).retry_after - t0 - 24 * 3600).abs() <= 5);
    assert!(w.db_files().is_empty());
}

#[tokio::test]
async fn http_429_on_download() {
    let (w, m, conf) = client_and_mirror(None, &[], "").await;
    m.fault("/test.cvd", 429, Some(3600), true);
    let t0 = now() as i64;
    update_test_ok(&conf).await;
    assert_eq!(m.requests().len(), 2);
    assert!((dat(&w).retry_after - t0 - 3600).abs() <= 5);
    assert!(w.db_files().is_empty());
}

#[tokio::test]
async fn retry_503_then_second_mirror() {
    let w = Work::new();
    mirror_v6(&w, &[]);
    let a = Mirror::start(&w.www()).await;
    let b = Mirror::start(&w.www()).await;
    a.fault("/test.cvd", 503, None, false);
    let conf = w.conf(&[a.url(), b.url()], "MaxAttempts 2\n");
    let out = update_test_ok(&conf).await;
    assert_eq!(a.requests(), reqs("/test.cvd r 503, /test.cvd r 503"));
    assert_eq!(b.requests(), reqs("/test.cvd r 206, /test.cvd - 200"));
    assert_eq!(w.version("test.cvd"), 6);
    assert!(text(&out).contains("Trying again in 0 secs"));
    assert!(text(&out).contains(&format!("Giving up on {}", a.url())));

    // Health memory (beyond freshclam): the next run asks the healthy mirror B first.
    std::fs::remove_file(w.db().join("test.cvd")).unwrap();
    update_test_ok(&conf).await;
    assert!(a.requests().is_empty());
    assert_eq!(b.requests().len(), 2);
}

#[tokio::test]
async fn all_mirrors_fail_with_503() {
    let w = Work::new();
    mirror_v6(&w, &[]);
    let a = Mirror::start(&w.www()).await;
    a.fault("/test.cvd", 503, None, false);
    let marker = w.tmp.path().join("error-ran");
    let conf = w.conf(
        &[a.url()],
        &format!("OnErrorExecute touch {}\n", marker.display()),
    );
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(11), "{}", text(&out));
    assert!(text(&out).contains("Update failed for database: test"));
    assert!(marker.exists(), "OnErrorExecute ran");
}

#[tokio::test]
async fn failover_from_closed_port() {
    let w = Work::new();
    mirror_v6(&w, &[]);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let b = Mirror::start(&w.www()).await;
    let conf = w.conf(&[format!("http://{closed}"), b.url()], "");
    update_test_ok(&conf).await;
    assert_eq!(b.requests().len(), 2);
    assert_eq!(w.version("test.cvd"), 6);
}

#[tokio::test]
async fn only_mirror_closed_is_a_connection_error() {
    let w = Work::new();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let conf = w.conf(&[format!("http://{closed}")], "");
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
}

#[tokio::test]
async fn bad_signature_is_refused() {
    let w = Work::new();
    mirror_v6(&w, &[]);
    let p = w.www().join("test.cvd");
    let mut b = std::fs::read(&p).unwrap();
    b[600] ^= 0x01;
    std::fs::write(&p, b).unwrap();
    set_mtime(&p, build_secs(&fixture("test-6.cvd")));
    w.put_db("test-1.cvd", "test.cvd");
    let before = std::fs::read(w.db().join("test.cvd")).unwrap();
    let m = Mirror::start(&w.www()).await;
    let conf = w.conf(&[m.url()], "ScriptedUpdates no\n");
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("Can't verify database integrity"));
    assert_eq!(std::fs::read(w.db().join("test.cvd")).unwrap(), before);
    assert_eq!(w.db_files(), ["test.cvd"]);
}

#[tokio::test]
async fn compressed_cld() {
    let (w, _m, conf) =
        client_and_mirror(Some(1), &[2, 3, 4, 5, 6], "CompressLocalDatabase yes\n").await;
    update_test_ok(&conf).await;
    let b = std::fs::read(w.db().join("test.cld")).unwrap();
    assert_eq!(&b[512..514], &[0x1f, 0x8b], "gzip body");
    assert_eq!(w.version("test.cld"), 6);
}

#[tokio::test]
async fn cld_to_next_cld() {
    let w = Work::new();
    serve_fixture(&w.www(), "test-3.cvd", "test.cvd");
    for i in [2, 3] {
        serve_fixture(
            &w.www(),
            &format!("test-{i}.cdiff"),
            &format!("test-{i}.cdiff"),
        );
    }
    w.put_db("test-1.cvd", "test.cvd");
    let m = Mirror::start(&w.www()).await;
    let conf = w.conf(&[m.url()], "");
    update_test_ok(&conf).await;
    assert_eq!(w.version("test.cld"), 3);
    m.requests();
    mirror_v6(&w, &[4, 5, 6]);
    update_test_ok(&conf).await;
    assert_eq!(
        m.requests(),
        reqs("/test.cvd ri 206, /test-4.cdiff - 200, /test-5.cdiff - 200, /test-6.cdiff - 200")
    );
    w.assert_only("test.cld", 6);
}

#[tokio::test]
async fn custom_url() {
    let w = Work::new();
    serve_fixture(&w.www(), "derived/test-100.unsigned.cud", "test.cud");
    let m = Mirror::start(&w.www()).await;
    let conf = w.conf(
        &[m.url()],
        &format!("DatabaseCustomURL {}/test.cud\n", m.url()),
    );
    let out = run_conf(&conf, &["--update-db=custom"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(m.requests(), reqs("/test.cud - 200"));
    assert_eq!(w.db_files(), ["test.cud"]);
    let out = run_conf(&conf, &["--update-db=custom"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(m.requests(), reqs("/test.cud i 304"));
}

#[tokio::test]
async fn dns_txt() {
    let w = Work::new();
    mirror_v6(&w, &[2, 3, 4, 5, 6]);
    w.put_db("test-1.cvd", "test.cvd");
    let m = Mirror::start(&w.www()).await;
    let t = now();
    let dns = FakeDns::start(&[
        (
            "current.cvd.example.test.",
            format!("9.9.9:62:27000:{t}:1:216:49192:335"),
        ),
        ("test.cvd.clamav.net.", format!("6:{t}")),
    ])
    .await;
    let outdated = w.tmp.path().join("outdated-");
    let conf = w.conf(
        &[m.url()],
        &format!("OnOutdatedExecute touch {}%v\n", outdated.display()),
    );
    let text_conf = std::fs::read_to_string(&conf).unwrap().replace(
        "DNSDatabaseInfo no",
        "DNSDatabaseInfo current.cvd.example.test",
    );
    std::fs::write(&conf, text_conf).unwrap();
    let server = format!("--dns-server={}", dns.addr);
    let out = run_conf(&conf, &["--update-db=test", &server]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // No probe: straight to the cdiffs.
    let want: Vec<Req> = (2..=6)
        .map(|i| req(&format!("/test-{i}.cdiff"), false, false, 200))
        .collect();
    assert_eq!(m.requests(), want);
    assert_eq!(w.version("test.cld"), 6);
    assert!(text(&out).contains("OUTDATED"), "{}", text(&out));
    assert!(text(&out).contains("Recommended version: 9.9.9"));
    assert!(
        w.tmp.path().join("outdated-9.9.9").exists(),
        "OnOutdatedExecute ran"
    );
    // Second run: DNS says 6 = local: no HTTP at all.
    let out = run_conf(&conf, &["--update-db=test", &server]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(m.requests().is_empty());

    // A record older than 12 hours is discarded: HTTP mode (a probe).
    let old = t - 13 * 3600;
    dns.records.lock().unwrap().insert(
        "current.cvd.example.test.".into(),
        format!("1.4.6:62:27000:{old}:1:216:49192:335"),
    );
    let out = run_conf(&conf, &["--update-db=test", &server]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("older than 12 hours"), "{}", text(&out));
    assert_eq!(m.requests(), reqs("/test.cvd ri 304"));
}

#[tokio::test]
async fn notify_clamd_and_on_update_execute() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = Work::new();
    mirror_v6(&w, &[]);
    let m = Mirror::start(&w.www()).await;
    let sock = w.tmp.path().join("clamd.sock");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let fake = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = [0u8; 7];
        s.read_exact(&mut got).await.unwrap();
        s.write_all(b"RELOADING\n").await.unwrap();
        got
    });
    let clamd_conf = w.tmp.path().join("clamd.conf");
    std::fs::write(&clamd_conf, format!("LocalSocket {}\n", sock.display())).unwrap();
    let marker = w.tmp.path().join("hook-ran");
    let conf = w.conf(
        &[m.url()],
        &format!(
            "NotifyClamd {}\nOnUpdateExecute touch {}\n",
            clamd_conf.display(),
            marker.display()
        ),
    );
    let out = update_test_ok(&conf).await;
    assert_eq!(&fake.await.unwrap(), b"RELOAD\0");
    assert!(text(&out).contains("Clamd successfully notified about the update."));
    assert!(marker.exists());
}

#[tokio::test]
async fn exit_hook_sets_the_exit_code() {
    let (_w, _m, conf) = client_and_mirror(None, &[], "OnUpdateExecute EXIT_42\n").await;
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(42), "{}", text(&out));
}

#[tokio::test]
async fn prune_unwanted_databases() {
    let w = Work::new();
    mirror_v6(&w, &[]);
    // An unwanted database and an unrelated file.
    w.put_db("test-1.cvd", "old.cvd");
    std::fs::write(w.db().join("local.ign2"), b"x\n").unwrap();
    let m = Mirror::start(&w.www()).await;
    let conf = w.conf(
        &[m.url()],
        "ExcludeDatabase daily\nExcludeDatabase main\nExtraDatabase test\n",
    );
    let out = run_conf(&conf, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(w.db_files(), ["local.ign2", "test.cvd"]);
    assert!(text(&out).contains("Pruning unwanted or deprecated database file old.cvd"));
}

#[tokio::test]
async fn unknown_freshclam_option_is_reported() {
    let (_w, _m, conf) = client_and_mirror(None, &[], "NoSuchOption yes\n").await;
    let out = update_test_ok(&conf).await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NoSuchOption: unknown option"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn mirror_not_synchronised_then_cdiff() {
    // DNS advertises 6, the mirror's test.cvd is still 5: freshclam keeps the older CVD and
    // retries at once, now through the cdiff (FC_EMIRRORNOTSYNC).
    let w = Work::new();
    serve_fixture(&w.www(), "test-5.cvd", "test.cvd");
    serve_fixture(&w.www(), "test-6.cdiff", "test-6.cdiff");
    let m = Mirror::start(&w.www()).await;
    let t = now();
    let dns = FakeDns::start(&[
        (
            "current.cvd.example.test.",
            format!("1.4.6:62:27000:{t}:0:216:49192:335"),
        ),
        ("test.cvd.clamav.net.", format!("6:{t}")),
    ])
    .await;
    let conf = w.conf(
        &[m.url()],
        "MaxAttempts 2\nDNSDatabaseInfo current.cvd.example.test\n",
    );
    let server = format!("--dns-server={}", dns.addr);
    let out = run_conf(&conf, &["--update-db=test", &server]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(m.requests(), reqs("/test.cvd - 200, /test-6.cdiff - 200"));
    assert!(text(&out).contains("not synchronised"), "{}", text(&out));
    assert!(!text(&out).contains("OUTDATED"));
    w.assert_only("test.cld", 6);
}

#[tokio::test]
async fn daemon_checks_on_sigusr1_and_exits_on_403() {
    let (w, m, conf) = client_and_mirror(Some(6), &[], "Checks 1\n").await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vdb-update"))
        .arg(format!("--config-file={}", conf.display()))
        .args(["--update-db=test", "-d", "--foreground", "--retry-delay=0"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    let wait_requests = |n: usize| {
        let m = &m;
        async move {
            let mut got = Vec::new();
            vdb_testkit::wait_for_async(&format!("{n} requests to the mirror"), 30, || {
                got.extend(m.requests());
                let done = got.len() >= n;
                async move { done.then_some(()) }
            })
            .await;
            got
        }
    };
    // First check at start: up to date.
    assert_eq!(wait_requests(1).await, reqs("/test.cvd ri 304"));
    // SIGUSR1: check now (the next scheduled one is a day away).
    let kill = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
    };
    assert!(kill("-USR1").success());
    assert_eq!(wait_requests(1).await, reqs("/test.cvd ri 304"));
    // A 403 on the download stops the daemon with exit 17, as freshclam does.
    std::fs::remove_file(w.db().join("test.cvd")).unwrap();
    m.fault("/test.cvd", 403, None, true);
    assert!(kill("-USR1").success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("daemon did not exit on 403")
        .unwrap();
    assert_eq!(status.code(), Some(17));
}

#[tokio::test]
async fn private_mirror_serving_a_cld() {
    let w = Work::new();
    serve_fixture(&w.www(), "derived/test-6.from-cdiffs.cld", "test.cld");
    w.put_db("test-1.cvd", "test.cvd");
    let m = Mirror::start(&w.www()).await;
    let conf = w.conf(&[], &format!("PrivateMirror {}\n", m.url()));
    update_test_ok(&conf).await;
    assert_eq!(m.requests(), reqs("/test.cld ri 206, /test.cld i 200"));
    w.assert_only("test.cld", 6);
}

#[tokio::test]
async fn concurrent_run_is_refused_while_the_lock_is_held() {
    let w = Work::new();
    mirror_v6(&w, &[]);
    let m = Mirror::start(&w.www()).await;
    // pid 1 always exists: a live holder.
    std::fs::write(w.db().join("vdb-update.lock"), "1\n").unwrap();
    let conf = w.conf(&[m.url()], "");
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(10), "{}", text(&out));
    assert!(m.requests().is_empty());
    assert!(text(&out).contains("another updater (pid 1)"));
}

#[tokio::test]
async fn redirects_are_followed_like_freshclam() {
    // The directory's HTTP redirector answers 302 to a mirror; freshclam follows up to 3.
    let w = Work::new();
    mirror_v6(&w, &[]);
    let redirector = Mirror::start(&w.www()).await;
    let b = Mirror::start(&w.www()).await;
    redirector.redirect("/test.cvd", &format!("{}/test.cvd", b.url()));
    let conf = w.conf(&[redirector.url()], "");
    update_test_ok(&conf).await;
    assert_eq!(b.requests(), reqs("/test.cvd r 206, /test.cvd - 200"));
    assert_eq!(redirector.requests().len(), 2);
    assert_eq!(w.version("test.cvd"), 6);
}

// ClamAV 1.5's `.sign` files (spec §3): fetched as freshclam 1.5 fetches them, kept only when
// they verify against the certificate directory, only the current one kept.

/// The `CVDCertsDirectory` line for ClamAV's test CA (which made the fixtures' `.sign` files).
fn test_ca() -> String {
    format!(
        "CVDCertsDirectory {}\n",
        vdb_testkit::fixtures::certs_dir().display()
    )
}

/// Serves the fixture `.sign` files `names` (e.g. `test-6.cvd.sign`) under their names.
fn serve_signs(w: &Work, names: &[&str]) {
    for n in names {
        serve_fixture(&w.www(), n, n);
    }
}

#[tokio::test]
async fn sign_file_after_a_full_cvd_then_only_when_missing() {
    let (w, m, conf) = client_and_mirror(None, &[], &test_ca()).await;
    serve_signs(&w, &["test-6.cvd.sign"]);
    update_test_ok(&conf).await;
    assert_eq!(
        m.requests(),
        reqs("/test.cvd r 206, /test.cvd - 200, /test-6.cvd.sign - 200")
    );
    assert_eq!(w.db_files(), ["test-6.cvd.sign", "test.cvd"]);
    assert_eq!(
        std::fs::read(w.db().join("test-6.cvd.sign")).unwrap(),
        std::fs::read(fixture("test-6.cvd.sign")).unwrap()
    );
    // Up to date with its .sign: one probe, no .sign fetched again.
    update_test_ok(&conf).await;
    assert_eq!(m.requests(), reqs("/test.cvd ri 304"));
    // Up to date without it: fetched once, and kept because it verifies.
    std::fs::remove_file(w.db().join("test-6.cvd.sign")).unwrap();
    let out = update_test_ok(&conf).await;
    assert_eq!(
        m.requests(),
        reqs("/test.cvd ri 304, /test-6.cvd.sign - 200")
    );
    assert!(text(&out).contains("Downloaded missing CVD .sign file"));
    assert_eq!(w.db_files(), ["test-6.cvd.sign", "test.cvd"]);
}

#[tokio::test]
async fn a_missing_sign_file_is_silent_and_none_is_fetched_without_certificates() {
    let (w, m, conf) = client_and_mirror(None, &[], &test_ca()).await;
    let out = update_test_ok(&conf).await;
    assert_eq!(
        m.requests().last().unwrap(),
        &req("/test-6.cvd.sign", false, false, 404)
    );
    w.assert_only("test.cvd", 6);
    assert!(
        !text(&out).contains("ERROR") && !text(&out).contains("WARNING"),
        "{}",
        text(&out)
    );
    // Without a certificate directory nothing could be checked: nothing is asked for (the
    // default /etc/clamav/certs is absent on the test machines).
    if !std::path::Path::new(vdb_update::config::DEFAULT_CVD_CERTS_DIR).exists() {
        let (w, m, conf) = client_and_mirror(None, &[], "").await;
        serve_signs(&w, &["test-6.cvd.sign"]);
        update_test_ok(&conf).await;
        assert!(m.requests().iter().all(|r| !r.path.ends_with(".sign")));
        w.assert_only("test.cvd", 6);
    }
}

#[tokio::test]
async fn cdiff_signs_are_fetched_after_each_cdiff_and_none_stays_beside_the_cld() {
    let (w, m, conf) = client_and_mirror(Some(1), &[2, 3, 4, 5, 6], &test_ca()).await;
    let signs: Vec<String> = (2..=6).map(|i| format!("test-{i}.cdiff.sign")).collect();
    serve_signs(&w, &signs.iter().map(String::as_str).collect::<Vec<_>>());
    w.put_db("test-1.cvd.sign", "test-1.cvd.sign");
    update_test_ok(&conf).await;
    let mut want = reqs("/test.cvd ri 206");
    for i in 2..=6 {
        want.push(req(&format!("/test-{i}.cdiff"), false, false, 200));
        want.push(req(&format!("/test-{i}.cdiff.sign"), false, false, 200));
    }
    assert_eq!(m.requests(), want);
    // The CLD has no .sign: the old CVD's is gone with the CVD.
    w.assert_only("test.cld", 6);
}

#[tokio::test]
async fn a_wrong_cvd_sign_refuses_the_cvd() {
    // The .sign of v5 served as v6's: ClamAV 1.5 would reject test.cvd (exit 7).
    let (w, m, conf) = client_and_mirror(None, &[], &test_ca()).await;
    std::fs::copy(fixture("test-5.cvd.sign"), w.www().join("test-6.cvd.sign")).unwrap();
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(
        text(&out).contains("Detached CVD signature is invalid"),
        "{}",
        text(&out)
    );
    assert!(w.db_files().is_empty(), "{:?}", w.db_files());
    // A certificate directory with only ClamAV's official root: the test CA is unknown.
    let official = w.tmp.path().join("official");
    std::fs::create_dir(&official).unwrap();
    std::fs::copy(
        fixture("certs/clamav-official-root.crt"),
        official.join("clamav.crt"),
    )
    .unwrap();
    serve_signs(&w, &["test-6.cvd.sign"]);
    let conf = w.conf(
        &[m.url()],
        &format!("CVDCertsDirectory {}\n", official.display()),
    );
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(w.db_files().is_empty(), "{:?}", w.db_files());
}

#[tokio::test]
async fn a_wrong_cdiff_sign_falls_back_to_the_whole_cvd() {
    let (w, m, conf) = client_and_mirror(Some(1), &[2, 3, 4, 5, 6], &test_ca()).await;
    serve_signs(&w, &["test-2.cdiff.sign", "test-6.cvd.sign"]);
    std::fs::copy(
        fixture("test-4.cdiff.sign"),
        w.www().join("test-3.cdiff.sign"),
    )
    .unwrap();
    let out = update_test_ok(&conf).await;
    assert!(
        text(&out).contains("Incremental update failed"),
        "{}",
        text(&out)
    );
    let reqs = m.requests();
    assert!(reqs.contains(&req("/test-3.cdiff.sign", false, false, 200)));
    assert!(!reqs.iter().any(|r| r.path == "/test-4.cdiff"), "{reqs:?}");
    assert_eq!(w.db_files(), ["test-6.cvd.sign", "test.cvd"]);
}

#[tokio::test]
async fn fips_limits_need_a_verified_sign_for_every_cvd() {
    let fips = format!("{}FIPSCryptoHashLimits yes\n", test_ca());
    // No .sign: the MD5-based signature is all there is, and it is off.
    let (w, m, conf) = client_and_mirror(None, &[], &fips).await;
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(
        text(&out).contains("MD5 verification is disabled"),
        "{}",
        text(&out)
    );
    assert!(w.db_files().is_empty());
    // With it: accepted.
    serve_signs(&w, &["test-6.cvd.sign"]);
    m.requests();
    update_test_ok(&conf).await;
    assert_eq!(w.db_files(), ["test-6.cvd.sign", "test.cvd"]);

    // A local CVD without its .sign cannot be the base of cdiffs: the whole CVD instead.
    let (w, _m, conf) = client_and_mirror(Some(1), &[2, 3, 4, 5, 6], &fips).await;
    serve_signs(&w, &["test-6.cvd.sign"]);
    let out = update_test_ok(&conf).await;
    assert!(
        text(&out).contains("Incremental update failed"),
        "{}",
        text(&out)
    );
    assert_eq!(w.db_files(), ["test-6.cvd.sign", "test.cvd"]);
    // With its .sign it can (cdiffs keep their SHA-256 signature, .sign or not).
    let (w, m, conf) = client_and_mirror(Some(1), &[2, 3, 4, 5, 6], &fips).await;
    w.put_db("test-1.cvd.sign", "test-1.cvd.sign");
    update_test_ok(&conf).await;
    assert!(!m.requests().contains(&req("/test.cvd", false, true, 200)));
    w.assert_only("test.cld", 6);
}

#[tokio::test]
async fn the_certificate_directory_comes_from_the_environment_and_must_exist() {
    let (w, m, conf) = client_and_mirror(None, &[], "").await;
    serve_signs(&w, &["test-6.cvd.sign"]);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vdb-update"))
        .arg(format!("--config-file={}", conf.display()))
        .args(["--update-db=test", "--retry-delay=0"])
        .env("CVD_CERTS_DIR", vdb_testkit::fixtures::certs_dir())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        m.requests()
            .contains(&req("/test-6.cvd.sign", false, false, 200))
    );
    assert_eq!(w.db_files(), ["test-6.cvd.sign", "test.cvd"]);
    // A configured directory that does not exist: freshclam 1.5 does not start either.
    let conf = w.conf(&[m.url()], "CVDCertsDirectory /nonexistent/vdbnet-certs\n");
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("CVDCertsDirectory"), "{}", text(&out));
}
