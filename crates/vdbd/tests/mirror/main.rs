//! End-to-end tests of `vdbd mirror` (the real binary) against a master double (`double.rs`):
//! the real freshclam 1.4.6 as a client, SIGKILL during syncs, `sync --once` beside a running
//! server, slow clients.

mod real_master;
mod tls;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vdb_proto::{Manifest, Signed};
use vdb_testkit::checks::disk_snapshot;
use vdb_testkit::fixtures::{self, freshclam_test_db, served_set as test_release};
use vdb_testkit::http::get;
use vdb_testkit::keys::{NETWORK, master_key};
use vdb_testkit::{Guard, MasterDouble, Proc, now, wait_for};

/// A `vdbd mirror` process and its plain HTTP address.
struct Mirror {
    _proc: Proc,
    http: SocketAddr,
}

fn write_config(dir: &Path, master: &str, extra: &str) -> PathBuf {
    let path = dir.join("mirror.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"m1\"\nnetwork = \"{NETWORK}\"\nmasters = [\"{master}\"]\n\
             master_keys = [\"{}\"]\ndata_dir = {:?}\nlisten = \"127.0.0.1:0\"\n\
             poll_secs = 3600\nstats_user = \"admin\"\nstats_password = \"pw\"\n\
             stats_flush_secs = 1\n{extra}",
            master_key().public(),
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    path
}

/// The vdbd binary under test (`VDBD_BIN` overrides, e.g. a release build for the benchmark).
fn vdbd() -> PathBuf {
    std::env::var_os("VDBD_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vdbd")), PathBuf::from)
}

/// Spawns the mirror without waiting for it (to kill it at a random point).
fn spawn(config: &Path) -> Child {
    Command::new(vdbd())
        .args(["mirror", "--config"])
        .arg(config)
        .env("VDB_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Starts the mirror (its log beside its config) and reads its ready line.
fn start(config: &Path) -> Mirror {
    let log = config.with_extension("log");
    let proc = Proc::start_role(vdbd(), "mirror", config, &log);
    assert_eq!(proc.ready().role(), "mirror");
    let http = proc.ready().http_addr();
    Mirror { _proc: proc, http }
}

fn wait_serial(m: &Mirror, serial: u64) {
    wait_for(&format!("the mirror at serial {serial}"), 30, || {
        let (st, _, body) = get(m.http, vdb_mirror::STATUS_PATH, &[]);
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (st == 200 && v["serial"] == serial).then_some(())
    });
}

/// `sigtool --info` → (version, "Verification OK.").
fn sigtool_version(path: &Path) -> u32 {
    let out = Command::new("sigtool")
        .arg("--info")
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    vdb_testkit::assert_contains(&text, "Verification OK.");
    text.lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn stats(m: &Mirror) -> Vec<serde_json::Value> {
    // Basic admin:pw
    let (st, _, body) = get(
        m.http,
        "/local_stats/?format=json",
        &[("Authorization", "Basic YWRtaW46cHc=")],
    );
    assert_eq!(st, 200);
    serde_json::from_slice::<serde_json::Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The statistics once `flushed` holds for them (bounded wait).
fn stats_once(
    m: &Mirror,
    flushed: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    wait_for("the statistics to be flushed", 30, || {
        let rows = stats(m);
        flushed(&rows).then_some(rows)
    })
}

fn count(rows: &[serde_json::Value], file: &str, status: u16) -> u64 {
    rows.iter()
        .filter(|r| r["file"] == file && r["status"] == status && r["client"] == "ClamAV/1.4.6")
        .map(|r| r["requests"].as_u64().unwrap())
        .sum()
}

fn mirror_at_v6() -> (tempfile::TempDir, MasterDouble, Mirror) {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterDouble::start();
    master.publish(&master_key(), 1, now(), &[("test", 6)], &test_release(6));
    let m = start(&write_config(dir.path(), &master.url(), ""));
    wait_serial(&m, 1);
    (dir, master, m)
}

#[test]
fn freshclam_fresh_download_then_up_to_date_via_304() {
    let (dir, _master, m) = mirror_at_v6();
    let work = dir.path().join("fc");
    let line = format!("DatabaseMirror http://{}", m.http);
    let (ok, log) = freshclam_test_db(&work, &line);
    assert!(ok, "{log}");
    assert_eq!(sigtool_version(&work.join("db/test.cvd")), 6);
    let (ok, log) = freshclam_test_db(&work, &line);
    assert!(ok, "{log}");
    vdb_testkit::assert_contains(&log, "up-to-date");
    // The statistics are flushed every second: wait for the last request's row.
    let rows = stats_once(&m, |rows| count(rows, "test.cvd", 304) > 0);
    assert_eq!(count(&rows, "test.cvd", 206), 1, "{rows:?}");
    assert_eq!(count(&rows, "test.cvd", 200), 1, "{rows:?}");
    assert_eq!(count(&rows, "test.cvd", 304), 1, "{rows:?}");
}

#[test]
fn freshclam_v1_to_v6_through_cdiffs() {
    let (dir, _master, m) = mirror_at_v6();
    let work = dir.path().join("fc");
    std::fs::create_dir_all(work.join("db")).unwrap();
    std::fs::copy(fixtures::path("test-1.cvd"), work.join("db/test.cvd")).unwrap();
    let (ok, log) = freshclam_test_db(&work, &format!("DatabaseMirror http://{}", m.http));
    assert!(ok, "{log}");
    vdb_testkit::assert_contains(&log, "test.cld updated (version: 6");
    assert_eq!(sigtool_version(&work.join("db/test.cld")), 6);
    let rows = stats_once(&m, |rows| count(rows, "test-6.cdiff", 200) > 0);
    for n in 2..=6 {
        assert_eq!(count(&rows, &format!("test-{n}.cdiff"), 200), 1, "{rows:?}");
    }
    assert_eq!(
        count(&rows, "test.cvd", 200),
        0,
        "no whole download: {rows:?}"
    );
}

#[test]
fn freshclam_private_mirror_mode() {
    let (dir, _master, m) = mirror_at_v6();
    let work = dir.path().join("fc");
    std::fs::create_dir_all(work.join("db")).unwrap();
    std::fs::copy(fixtures::path("test-1.cvd"), work.join("db/test.cvd")).unwrap();
    let (ok, log) = freshclam_test_db(&work, &format!("PrivateMirror {}", m.http));
    assert!(ok, "{log}");
    assert_eq!(sigtool_version(&work.join("db/test.cvd")), 6);
    let rows = stats_once(&m, |rows| count(rows, "test.cvd", 200) > 0);
    assert_eq!(
        count(&rows, "(not found)", 404),
        1,
        "the test.cld probe: {rows:?}"
    );
    assert_eq!(count(&rows, "test.cvd", 200), 1, "{rows:?}");
}

/// Checks the on-disk state a killed mirror left: `current` names a complete snapshot whose
/// every file matches its signed manifest. Returns that manifest's serial.
fn check_disk(data: &Path) -> Option<u64> {
    disk_snapshot(data, &[master_key().public()]).map(|m| m.serial)
}

fn release_with_blob(serial: u64) -> Vec<(String, Vec<u8>)> {
    let mut rel = test_release((serial % 6) as u32 + 1);
    let mut x = serial.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let blob: Vec<u8> = (0..(1 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    rel.push(("blob.bin".to_owned(), blob));
    rel
}

#[test]
fn sigkill_at_random_points_leaves_old_or_new_set() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterDouble::start();
    master.set_object_delay(Duration::from_millis(40));
    let config = write_config(dir.path(), &master.url(), "");
    let data = dir.path().join("data");
    let local = data.join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("local_logo.png"), b"operator's file").unwrap();
    let mut seed = (now() as u64) | 1;
    eprintln!("seed {seed}");
    let mut served = Vec::new();
    let mut published = 0;
    for round in 1..=20u64 {
        // Database versions cycle, so keep the manifest's `databases` monotonic by serial only.
        master.publish(&master_key(), round, now(), &[], &release_with_blob(round));
        published = round;
        let mut child = spawn(&config);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(seed % 400));
        child.kill().unwrap();
        child.wait().unwrap();
        let serial = check_disk(&data);
        served.push(serial);
        assert_eq!(
            std::fs::read(local.join("local_logo.png")).unwrap(),
            b"operator's file"
        );
    }
    eprintln!("serials after each kill: {served:?}");
    assert!(
        served.iter().any(Option::is_some),
        "no sync ever finished: {served:?}"
    );
    // A clean run catches up, and serves exactly the manifest.
    master.set_object_delay(Duration::ZERO);
    let m = start(&config);
    wait_serial(&m, published);
    assert_eq!(check_disk(&data), Some(published));
    assert_eq!(std::fs::read_dir(data.join("tmp")).unwrap().count(), 0);
    let (_, _, env) = get(m.http, vdb_proto::MANIFEST_PATH, &[]);
    let man: Manifest = Signed::<Manifest>::from_json(&env)
        .unwrap()
        .verify(&[master_key().public()])
        .unwrap();
    for f in &man.files {
        let (st, _, body) = get(m.http, &format!("/{}", f.name), &[]);
        assert_eq!(st, 200);
        assert_eq!(vdb_proto::sha256_hex(&body), f.sha256);
    }
    let (st, _, body) = get(m.http, "/local_logo.png", &[]);
    assert_eq!((st, &body[..]), (200, &b"operator's file"[..]));
}

#[test]
fn sync_once_waits_for_the_servers_sync_and_the_server_follows() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterDouble::start();
    master.publish(&master_key(), 1, now(), &[("test", 1)], &test_release(1));
    let config = write_config(dir.path(), &master.url(), "");
    let m = start(&config);
    wait_serial(&m, 1);
    // The server's next sync hangs in a download, holding the lock.
    master.set_gate(true);
    master.publish(&master_key(), 2, now(), &[("test", 3)], &test_release(3));
    let push = Signed::sign(
        &vdb_proto::PushNotice::new(NETWORK, "double", 2, now(), false),
        &master_key(),
    )
    .to_json();
    let mut s = TcpStream::connect(m.http).unwrap();
    write!(
        s,
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{push}",
        vdb_proto::paths::PUSH,
        push.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    master.wait_requests(|r| r.iter().any(|p| p.starts_with("/api/v1/objects/")));
    let once = Command::new(env!("CARGO_BIN_EXE_vdbd"))
        .args(["mirror", "--config"])
        .arg(&config)
        .args(["sync", "--once"])
        .env("VDB_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut once = Guard(once);
    // Seen blocked on the server's sync lock (in /proc/locks), and still running.
    let lock = dir.path().join("data").join("sync.lock");
    wait_for("sync --once to wait for the sync lock", 30, || {
        vdb_testkit::waits_for_flock(once.0.id(), &lock).then_some(())
    });
    assert!(
        once.0.try_wait().unwrap().is_none(),
        "sync --once waits for the lock"
    );
    master.publish(&master_key(), 3, now(), &[("test", 5)], &test_release(5));
    master.set_gate(false);
    let status = wait_for("sync --once to finish", 30, || once.0.try_wait().unwrap());
    assert!(status.success());
    let mut line = String::new();
    once.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect(&line);
    assert_eq!(v["serial"], 3, "{v}");
    // The server serves what `sync --once` switched to.
    wait_serial(&m, 3);
    let (st, _, body) = get(m.http, "/test.cvd", &[]);
    assert_eq!(st, 200);
    assert_eq!(body, std::fs::read(fixtures::path("test-5.cvd")).unwrap());
    assert_eq!(check_disk(&dir.path().join("data")), Some(3));
}

#[test]
fn slow_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterDouble::start();
    master.publish(&master_key(), 1, now(), &[("test", 6)], &test_release(6));
    let m = start(&write_config(
        dir.path(),
        &master.url(),
        "[limits]\nheader_read_timeout_secs = 1\n",
    ));
    wait_serial(&m, 1);
    let mut s = TcpStream::connect(m.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /test.cvd HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Others are still served.
    assert_eq!(get(m.http, "/test.cvd", &[]).0, 200);
}
