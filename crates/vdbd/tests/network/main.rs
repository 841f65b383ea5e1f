//! End to end: the whole network as `vdbd dev` runs it (two masters, mirrors, monitor,
//! directory), driven by real clients: ClamAV's `freshclam` 1.4.6, `sigtool`, `dig`, `wrk`, and
//! the publisher library behind `vdb publish`.
//!
//! Every process is started on loopback, bounded in time, and killed by a guard on drop.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vdb_client::{Publisher, ReleaseFile, infer};
use vdb_proto::{Manifest, PublicKey, SecretKey, Signed};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/clamav"
);

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// A running `vdbd dev`, stopped (SIGTERM, then SIGKILL) on drop.
struct Dev {
    child: Child,
    ready: Value,
}

impl Dev {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vdbd"))
            .args(["dev", "--dir"])
            .arg(dir)
            .args(["--timeout-secs", "90"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start vdbd dev");
        // `vdbd dev` gives up by itself after --timeout-secs, so this read is bounded.
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the ready line");
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("vdbd dev did not print its ready line ({e}): {line:?}"));
        Self { child, ready }
    }

    fn strs(&self, key: &str) -> Vec<String> {
        self.ready[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {}", self.ready))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(self.ready[key].as_str().unwrap_or_else(|| panic!("{key}")))
    }

    /// SIGTERM, and the exit status within `secs`.
    fn stop(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if self.stop(10).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `secs` seconds.
fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_get(url: &str) -> Option<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::get(url).await.ok()?.error_for_status().ok()?;
        Some(r.bytes().await.ok()?.to_vec())
    })
}

fn master_keys(dev: &Dev) -> Vec<PublicKey> {
    // The masters' public keys, from their secret key files in the state directory.
    let dir = dev.path("dir");
    ["master-a.key", "master-b.key"]
        .iter()
        .map(|k| {
            SecretKey::from_text(&std::fs::read_to_string(dir.join("keys").join(k)).unwrap())
                .unwrap()
                .public()
        })
        .collect()
}

fn served_manifest(mirror: &str, keys: &[PublicKey]) -> Option<Manifest> {
    let body = http_get(&format!("{mirror}{}", vdb_proto::MANIFEST_PATH))?;
    Signed::<Manifest>::from_json(&body).ok()?.verify(keys).ok()
}

/// Invariant 3: every file a mirror serves outside `local_*` matches its signed manifest. The
/// mirror may switch to a newer release between two requests (each request sees one whole
/// release), so the files are compared with the manifest fetched before them, and the round is
/// repeated if the manifest changed meanwhile.
fn assert_serves_exactly_its_manifest(mirror: &str, keys: &[PublicKey]) -> Manifest {
    for _ in 0..10 {
        let m = served_manifest(mirror, keys).expect("a signed manifest");
        let mut mismatch = None;
        for f in &m.files {
            let body = http_get(&format!("{mirror}/{}", f.name))
                .unwrap_or_else(|| panic!("{mirror} does not serve {}", f.name));
            if body.len() as u64 != f.size || vdb_proto::sha256_hex(&body) != f.sha256 {
                mismatch = Some(f.name.clone());
            }
        }
        let after = served_manifest(mirror, keys).expect("a signed manifest");
        match mismatch {
            None => return m,
            Some(name) => assert_ne!(
                after.serial, m.serial,
                "{mirror}/{name} does not match the manifest it serves (serial {})",
                m.serial
            ),
        }
    }
    panic!("{mirror} kept switching releases during 10 rounds of checks")
}

fn freshclam(dev: &Dev) -> Output {
    run(Command::new("freshclam")
        .arg(format!(
            "--config-file={}",
            dev.path("freshclam_conf").display()
        ))
        .args([
            "--no-dns",
            "--update-db=test",
            "--foreground",
            "--stdout",
            "--verbose",
        ]))
}

/// The `vdb-update` binary beside `vdbd` (`cargo test --workspace` builds both).
fn vdb_update(dev: &Dev) -> Output {
    let exe = Path::new(env!("CARGO_BIN_EXE_vdbd")).with_file_name("vdb-update");
    assert!(
        exe.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (or `cargo build -p vdb-update` first)",
        exe.display()
    );
    run(Command::new(exe)
        .arg("--config")
        .arg(dev.path("vdb_update_conf"))
        .arg("--verbose"))
}

fn sigtool_info(path: &Path) -> String {
    text(&run(Command::new("sigtool").arg("--info").arg(path)))
}

fn publish_fixture_chain(dev: &Dev, versions: std::ops::RangeInclusive<u32>) {
    let key =
        SecretKey::from_text(&std::fs::read_to_string(dev.path("publisher_key")).unwrap()).unwrap();
    let publisher = Publisher::new(dev.strs("masters"), key);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for v in versions {
        let files = vec![
            ReleaseFile {
                name: "test.cvd".into(),
                path: fixture(&format!("test-{v}.cvd")),
            },
            ReleaseFile {
                name: format!("test-{v}.cdiff"),
                path: fixture(&format!("test-{v}.cdiff")),
            },
        ];
        let info = infer(&files, None, None).unwrap();
        assert_eq!((info.db.as_str(), info.version), ("test", v));
        let (st, env) = publisher.statement(&info, &files, "e2e").unwrap();
        let accepted = rt
            .block_on(publisher.publish(&files, &st, &env, &|_| {}))
            .unwrap_or_else(|e| panic!("publishing test {v}: {e}"));
        assert_eq!(accepted.version, v);
    }
}

/// The README's promise, end to end: publish a release, every mirror serves it, the TXT record
/// moves only then, and the real freshclam updates through the network, first a whole CVD, then
/// the cdiff chain; a bounded wrk load on a mirror during the rollout sees no errors; Ctrl-C
/// (SIGTERM) stops everything cleanly.
#[test]
fn a_release_reaches_every_mirror_and_the_real_freshclam() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("upstream");
    std::fs::create_dir_all(&upstream).unwrap();
    std::fs::copy(fixture("test-1.cvd"), upstream.join("test-1.cvd")).unwrap();
    let mut dev = Dev::start(
        &tmp.path().join("net"),
        &["--upstream", upstream.to_str().unwrap(), "--mirrors", "3"],
    );
    let keys = master_keys(&dev);
    let mirrors = dev.strs("mirrors");
    assert_eq!(mirrors.len(), 3);
    for m in &mirrors {
        let held = assert_serves_exactly_its_manifest(m, &keys);
        assert_eq!(held.databases["test"].version, 1);
    }

    // A fresh freshclam takes the whole CVD (through the directory's redirector).
    let out = freshclam(&dev);
    assert!(out.status.success(), "{}", text(&out));
    let db_dir = dev.path("dir").join("freshclam-db");
    assert!(sigtool_info(&db_dir.join("test.cvd")).contains("Version: 1"));
    // So does vdb-update, checking the signed manifest as it goes.
    let out = vdb_update(&dev);
    assert!(out.status.success(), "{}", text(&out));
    let vu_dir = dev.path("dir").join("vdb-update-db");
    assert!(sigtool_info(&vu_dir.join("test.cvd")).contains("Version: 1"));

    // Publish v2..v6 while wrk loads a mirror.
    let dns = dev.ready["directory"]["dns"].as_str().unwrap().to_owned();
    let (dns_ip, dns_port) = dns.rsplit_once(':').unwrap();
    let wrk = Command::new("wrk")
        .args(["-t1", "-c4", "-d4s", "--timeout", "2s"])
        .arg(format!("{}/test.cvd", mirrors[0]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk (apt-get install wrk)");
    publish_fixture_chain(&dev, 2..=6);
    for m in &mirrors {
        wait_for("every mirror to serve test 6", 30, || {
            served_manifest(m, &keys).filter(|h| h.databases["test"].version == 6)
        });
        assert_serves_exactly_its_manifest(m, &keys);
    }
    // Invariant 9 from the outside: the TXT record says 6 only now, and it does say it.
    let txt = wait_for("the TXT record to advertise test 6", 30, || {
        let out = run(Command::new("dig")
            .args(["+short", "-p", dns_port, &format!("@{dns_ip}")])
            .args(["TXT", "test.cvd.vdbnet.test."]));
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        s.starts_with("\"6:").then_some(s)
    });
    assert!(txt.trim().trim_matches('"').starts_with("6:"), "{txt}");
    let wrk = wrk.wait_with_output().unwrap();
    let report = text(&wrk);
    assert!(wrk.status.success(), "{report}");
    assert!(
        !report.contains("Non-2xx"),
        "errors under load during the rollout: {report}"
    );
    assert!(
        !report.contains("Socket errors"),
        "errors under load during the rollout: {report}"
    );

    // freshclam takes the cdiffs 2..6 and builds test.cld 6; sigtool agrees.
    let out = freshclam(&dev);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    for v in 2..=6 {
        assert!(
            log.contains(&format!("test-{v}.cdiff")),
            "no cdiff {v} in:\n{log}"
        );
    }
    let info = sigtool_info(&db_dir.join("test.cld"));
    assert!(info.contains("Version: 6"), "{info}");
    assert!(info.contains("Verification OK"), "{info}");
    // vdb-update takes the same cdiffs, and ClamAV's sigtool accepts what it built.
    let out = vdb_update(&dev);
    assert!(out.status.success(), "{}", text(&out));
    let info = sigtool_info(&vu_dir.join("test.cld"));
    assert!(info.contains("Version: 6"), "{info}");
    assert!(info.contains("Verification OK"), "{info}");

    // Clean stop on SIGTERM.
    let status = dev.stop(20).expect("vdbd dev stops within 20 s of SIGTERM");
    assert!(status.success(), "vdbd dev exited with {status}");
}

/// A replayed or older release, sent to either master, is refused and changes nothing that
/// the mirrors serve (invariants 2 and 4 seen from a client).
#[test]
fn replays_and_rollbacks_change_nothing_on_the_mirrors() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("upstream");
    std::fs::create_dir_all(&upstream).unwrap();
    std::fs::copy(fixture("test-1.cvd"), upstream.join("test-1.cvd")).unwrap();
    let dev = Dev::start(
        &tmp.path().join("net"),
        &["--upstream", upstream.to_str().unwrap(), "--mirrors", "2"],
    );
    let keys = master_keys(&dev);
    publish_fixture_chain(&dev, 2..=3);
    let mirrors = dev.strs("mirrors");
    let before: Vec<Manifest> = mirrors
        .iter()
        .map(|m| {
            wait_for("test 3 on every mirror", 30, || {
                served_manifest(m, &keys).filter(|h| h.databases["test"].version == 3)
            })
        })
        .collect();

    let key =
        SecretKey::from_text(&std::fs::read_to_string(dev.path("publisher_key")).unwrap()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for master in dev.strs("masters") {
        let publisher = Publisher::new(vec![master.clone()], key.clone());
        // An older version.
        let files = vec![ReleaseFile {
            name: "test.cvd".into(),
            path: fixture("test-2.cvd"),
        }];
        let info = infer(&files, None, None).unwrap();
        let (st, env) = publisher.statement(&info, &files, "rollback").unwrap();
        let err = rt
            .block_on(publisher.publish(&files, &st, &env, &|_| {}))
            .expect_err("an older version must be refused");
        assert!(err.to_string().contains("refused"), "{master}: {err}");
    }
    // Nothing moved on any mirror.
    for (m, held) in mirrors.iter().zip(&before) {
        let now = assert_serves_exactly_its_manifest(m, &keys);
        assert_eq!(now.databases, held.databases, "{m}");
    }
}

/// `cvdupdate` (PyPI), ClamAV's own private-mirror tool, mirrors from a vdbnet mirror: it reads
/// the TXT record from the directory (which must sit on port 53: cvdupdate takes a name server
/// address, not a port, so this test needs root, as CI has) and downloads the CVD and the newest
/// cdiff, byte for byte what the signed manifest lists.
#[test]
fn cvdupdate_mirrors_from_a_vdbnet_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let ns = "127.54.0.2";
    let dev = Dev::start(
        &tmp.path().join("net"),
        &[
            "--mirrors",
            "2",
            "--zone",
            "clamav.net",
            "--dns-listen",
            &format!("{ns}:53"),
        ],
    );
    let keys = master_keys(&dev);
    let mirror = &dev.strs("mirrors")[0];
    let held = assert_serves_exactly_its_manifest(mirror, &keys);
    let daily = held.databases["daily"].version;
    wait_for("the current.cvd TXT record", 30, || {
        let out = run(Command::new("dig").args([
            "+short",
            &format!("@{ns}"),
            "TXT",
            "current.cvd.clamav.net.",
        ]));
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!(":{daily}:"))
            .then_some(())
    });

    // cvdupdate keeps its config and state under $HOME/.cvdupdate.
    let home = tmp.path().join("home");
    let db = tmp.path().join("cvd-db");
    let cvd = |args: &[&str]| {
        run(Command::new("cvd")
            .args(args)
            .env("HOME", &home)
            .env_remove("CVDUPDATE_NAMESERVER"))
    };
    let out = cvd(&[
        "config",
        "set",
        "--dbdir",
        db.to_str().unwrap(),
        "--logdir",
        home.join("logs").to_str().unwrap(),
        "--nameserver",
        ns,
    ]);
    assert!(
        out.status.success(),
        "cvd config set (pip install cvdupdate): {}",
        text(&out)
    );
    // Only `daily`, from our mirror.
    let state_path = home.join(".cvdupdate/state.json");
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    let dbs = state["dbs"].as_object_mut().unwrap();
    dbs.retain(|k, _| k == "daily.cvd");
    dbs.get_mut("daily.cvd").unwrap()["url"] = Value::from(format!("{mirror}/daily.cvd"));
    std::fs::write(&state_path, serde_json::to_string_pretty(&state).unwrap()).unwrap();

    let out = cvd(&["update"]);
    assert!(out.status.success(), "{}", text(&out));
    for name in ["daily.cvd".to_owned(), format!("daily-{daily}.cdiff")] {
        let want = held
            .file(&name)
            .unwrap_or_else(|| panic!("{name} in the manifest"));
        let got = std::fs::read(db.join(&name))
            .unwrap_or_else(|e| panic!("cvdupdate did not fetch {name}: {e}\n{}", text(&out)));
        assert_eq!(vdb_proto::sha256_hex(&got), want.sha256, "{name}");
    }
}

/// A mirror whose bytes are tampered with on disk: `vdb-update`, which tries it first, refuses
/// its file (the hash in the signed manifest) and takes the database from the next mirror, and
/// what it installs is exactly the signed bytes. (The mirror keeps small files and CVD headers in
/// memory as verified at sync, so on-disk tampering shows only in the bodies of large files; the
/// monitor's own tamper detection is proven in vdb-monitor's tests with a mirror that serves
/// altered bytes.)
#[test]
fn clients_refuse_a_tampered_mirror_and_fail_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Dev::start(&tmp.path().join("net"), &["--mirrors", "3"]);
    let keys = master_keys(&dev);
    let mirrors = dev.strs("mirrors");
    let held = assert_serves_exactly_its_manifest(&mirrors[0], &keys);

    // A byte in the middle of mirror1's daily.cvd, changed in place.
    let path = dev.path("dir").join("mirror1/current/daily.cvd");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let served = http_get(&format!("{}/daily.cvd", mirrors[0])).unwrap();
    assert_ne!(
        vdb_proto::sha256_hex(&served),
        held.file("daily.cvd").unwrap().sha256,
        "the tampering did not take"
    );

    // vdb-update tries mirror1 first, refuses its file, and updates from mirror2.
    let out = vdb_update(&dev);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    let got = std::fs::read(dev.path("dir").join("vdb-update-db/daily.cvd")).unwrap();
    assert_eq!(
        vdb_proto::sha256_hex(&got),
        held.file("daily.cvd").unwrap().sha256,
        "vdb-update installed bytes that are not the signed ones:\n{log}"
    );
    assert!(
        log.contains(&mirrors[0]),
        "vdb-update did not try mirror1 first:\n{log}"
    );
}
