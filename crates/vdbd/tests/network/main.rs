//! End to end: the whole network as `vdbd dev` runs it (two masters, mirrors, monitor,
//! directory), driven by real clients: ClamAV's `freshclam` 1.4.6, `sigtool`, `dig`, `wrk`, and
//! the publisher library behind `vdb publish`.
//!
//! Every process is started on loopback, bounded in time, and killed by a guard on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use vdb_client::{Publisher, ReleaseFile, infer};
use vdb_proto::{Manifest, PublicKey, SecretKey};
use vdb_testkit::checks::{assert_serves_exactly_a_signed_manifest, manifest_at};
use vdb_testkit::http::{block_on, fetch as http_get};
use vdb_testkit::publish::test_release;
use vdb_testkit::{Proc, dig, exe_beside, fixtures, output_text as text, wait_for};

/// A running `vdbd dev` (its stderr in `<dir>.log`), killed on drop.
struct Dev(Proc);

impl Dev {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdbd"));
        cmd.args(["dev", "--dir"])
            .arg(dir)
            .args(["--timeout-secs", "90"])
            .args(extra);
        // `vdbd dev` gives up by itself after --timeout-secs, within the kit's bound.
        Self(Proc::start(cmd, &dir.with_extension("log")))
    }

    fn strs(&self, key: &str) -> Vec<String> {
        let ready = self.0.ready().json();
        ready[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {ready}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(
            self.0.ready().json()[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key}")),
        )
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
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
    manifest_at(mirror, keys)
}

/// Invariant 3: every file a mirror serves outside `local_*` matches its signed manifest.
fn assert_serves_exactly_its_manifest(mirror: &str, keys: &[PublicKey]) -> Manifest {
    assert_serves_exactly_a_signed_manifest(mirror, keys)
}

fn freshclam(dev: &Dev) -> Output {
    run(&mut fixtures::freshclam_test_update(
        "freshclam",
        &dev.path("freshclam_conf"),
    ))
}

/// The `vdb-update` binary beside `vdbd` (`cargo test --workspace` builds both).
/// Runs freshclam, which must succeed having fetched cdiffs 2..=6; returns its output.
fn freshclam_by_cdiffs(dev: &Dev) -> String {
    let out = freshclam(dev);
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    for v in 2..=6 {
        assert!(
            log.contains(&format!("test-{v}.cdiff")),
            "no cdiff {v} in:\n{log}"
        );
    }
    log
}

fn vdb_update(dev: &Dev) -> Output {
    run(
        Command::new(exe_beside(env!("CARGO_BIN_EXE_vdbd"), "vdb-update"))
            .arg("--config")
            .arg(dev.path("vdb_update_conf"))
            .arg("--verbose"),
    )
}

fn sigtool_info(path: &Path) -> String {
    text(&run(Command::new("sigtool").arg("--info").arg(path)))
}

fn publish_fixture_chain(dev: &Dev, versions: std::ops::RangeInclusive<u32>) {
    let key =
        SecretKey::from_text(&std::fs::read_to_string(dev.path("publisher_key")).unwrap()).unwrap();
    for v in versions {
        let files = test_release(v);
        let info = infer(&files, None, None).unwrap();
        assert_eq!((info.db.as_str(), info.version), ("test", v));
        let accepted = block_on(vdb_testkit::publish::publish_once(
            &dev.strs("masters"),
            &key,
            &files,
        ))
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
    std::fs::copy(fixtures::path("test-1.cvd"), upstream.join("test-1.cvd")).unwrap();
    let mut dev = Dev::start(
        &tmp.path().join("net"),
        &["--upstream", upstream.to_str().unwrap(), "--mirrors", "3"],
    );
    let keys = master_keys(&dev);
    // Secrets are readable by their owner only: keys, the admin token, and the role
    // configurations that carry the token or the statistics password.
    let dir = dev.path("dir");
    for f in [
        "keys/master-a.key",
        "keys/publisher.key",
        "keys/upstream.key",
        "keys/admin.token",
        "master-a.toml",
        "mirror1.toml",
        "monitor.toml",
    ] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join(f))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f} has mode {:o}", mode & 0o777);
    }
    let mirrors = dev.strs("mirrors");
    assert_eq!(mirrors.len(), 3);
    for m in &mirrors {
        let held = assert_serves_exactly_its_manifest(m, &keys);
        assert_eq!(held.databases["test"].version, 1);
    }
    // Ready means ready, with no wait after the line: the monitor has judged every mirror in
    // service at the release, and the directory answers the version TXT record.
    let ready = dev.0.ready().json();
    let verdicts: Value = serde_json::from_slice(
        &http_get(&format!(
            "{}/api/v1/verdicts",
            ready["monitor"].as_str().unwrap()
        ))
        .expect("the monitor's verdicts"),
    )
    .unwrap();
    let judged = verdicts["mirrors"].as_array().unwrap();
    assert_eq!(judged.len(), 3, "{verdicts}");
    for v in judged {
        assert_eq!(v["state"], "in_service", "{v}");
        assert_eq!(v["serving"]["test"], 1, "{v}");
    }
    let dns = ready["directory"]["dns"].as_str().unwrap().parse().unwrap();
    let zone = ready["directory"]["zone"].as_str().unwrap();
    let txt = dig::query(dns, &format!("test.cvd.{zone}"), "TXT")
        .run()
        .short();
    assert_eq!(
        txt.len(),
        1,
        "the TXT record right after the ready line: {txt:?}"
    );
    assert!(txt[0].starts_with("\"1:"), "{txt:?}");

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
    let dns = dev.0.ready().dns_addr();
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
    let txt = dig::query(dns, "test.cvd.vdbnet.test.", "TXT").until(30, |d| {
        d.data("TXT").first().is_some_and(|t| t.starts_with("\"6:"))
    });
    assert_eq!(dig::txt_version(&txt), Some(6), "{}", txt.raw);
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
    freshclam_by_cdiffs(&dev);
    let info = sigtool_info(&db_dir.join("test.cld"));
    vdb_testkit::assert_contains(&info, "Version: 6");
    vdb_testkit::assert_contains(&info, "Verification OK");
    // vdb-update takes the same cdiffs, and ClamAV's sigtool accepts what it built.
    let out = vdb_update(&dev);
    assert!(out.status.success(), "{}", text(&out));
    let info = sigtool_info(&vu_dir.join("test.cld"));
    vdb_testkit::assert_contains(&info, "Version: 6");
    vdb_testkit::assert_contains(&info, "Verification OK");

    // Every metric the shipped alerting rules name is one these roles export.
    assert_the_alert_rules_name_exported_metrics(&dev);
    // So does every panel of the shipped Grafana dashboard.
    assert_the_dashboard_names_exported_metrics(&dev);

    // Clean stop on SIGTERM.
    let status = dev
        .0
        .terminate(20)
        .expect("vdbd dev stops within 20 s of SIGTERM");
    assert!(status.success(), "vdbd dev exited with {status}");
}

/// Issue 13, end to end: a network that has just started following an upstream holding test
/// v6 and cdiffs 2–6 (with their `.sign` files) serves all of them, and the real freshclam
/// 1.4.6 at v1 updates by cdiffs (it deletes `test.cvd` once it has built `test.cld` from
/// them), ending at v6 with a CLD sigtool verifies.
#[test]
fn a_network_that_starts_following_serves_the_upstreams_cdiffs_to_the_real_freshclam() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("upstream");
    std::fs::create_dir_all(&upstream).unwrap();
    let mut names = vec!["test-6.cvd".to_owned(), "test-6.cvd.sign".to_owned()];
    for n in 2..=6 {
        names.push(format!("test-{n}.cdiff"));
        names.push(format!("test-{n}.cdiff.sign"));
    }
    for n in &names {
        std::fs::copy(fixtures::path(n), upstream.join(n)).unwrap();
    }
    // The .sign files are made with ClamAV's test CA: the masters must trust it.
    let certs = fixtures::certs_dir();
    let dev = Dev::start(
        &tmp.path().join("net"),
        &[
            "--upstream",
            upstream.to_str().unwrap(),
            "--mirrors",
            "1",
            "--cvd-certs-dir",
            certs.to_str().unwrap(),
        ],
    );
    let keys = master_keys(&dev);
    let mirror = dev.strs("mirrors")[0].clone();
    let held = wait_for("the mirror to serve v6 with every cdiff", 60, || {
        served_manifest(&mirror, &keys).filter(|m| {
            m.databases.get("test").is_some_and(|d| d.version == 6)
                && (2..=6).all(|n| m.file(&format!("test-{n}.cdiff.sign")).is_some())
        })
    });
    for n in names.iter().filter(|n| n.contains(".cdiff")) {
        let want = vdb_proto::sha256_hex(&std::fs::read(fixtures::path(n)).unwrap());
        assert_eq!(
            held.file(n).map(|f| f.sha256.as_str()),
            Some(want.as_str()),
            "{n}"
        );
    }
    assert_serves_exactly_its_manifest(&mirror, &keys);

    // freshclam at v1.
    let db_dir = dev.path("dir").join("freshclam-db");
    std::fs::create_dir_all(&db_dir).unwrap();
    std::fs::copy(fixtures::path("test-1.cvd"), db_dir.join("test.cvd")).unwrap();
    let log = freshclam_by_cdiffs(&dev);
    assert!(
        !db_dir.join("test.cvd").exists(),
        "freshclam kept test.cvd: it did not update by cdiffs:\n{log}"
    );
    let info = sigtool_info(&db_dir.join("test.cld"));
    vdb_testkit::assert_contains(&info, "Version: 6");
    vdb_testkit::assert_contains(&info, "Verification OK");

    // `vdbd dev` runs an intake too, named in its ready line: a sample sent to it is received
    // and triaged (the real clamscan, the network's databases) without a token.
    let ready = dev.0.ready().json();
    let intake = ready["intake"]["http"]
        .as_str()
        .unwrap_or_else(|| panic!("the intake in the ready line: {ready}"))
        .to_owned();
    assert_eq!(ready["intake"]["form"], format!("{intake}/"), "{ready}");
    let sample = tmp.path().join("sample.bin");
    std::fs::write(
        &sample,
        b"nothing detects these bytes: the dev intake's check\n",
    )
    .unwrap();
    let samples = vdb_client::samples::Samples::new(&intake, None);
    let info = vdb_client::samples::SubmitInfo {
        note: "from the network test".into(),
        ..Default::default()
    };
    let receipt = block_on(samples.submit(&sample, &info)).expect("submit to the dev intake");
    assert!(!receipt.duplicate);
    let status = wait_for("the dev intake to triage the sample", 60, || {
        block_on(samples.status(&receipt.tracking_id))
            .ok()
            .filter(|s| s.scanned)
    });
    assert_eq!(status.state, vdb_proto::sample::SampleState::Received);
    assert_eq!(status.detected_as, None);
}

/// A replayed or older release, sent to either master, is refused and changes nothing that
/// the mirrors serve (invariants 2 and 4 seen from a client).
#[test]
fn replays_and_rollbacks_change_nothing_on_the_mirrors() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("upstream");
    std::fs::create_dir_all(&upstream).unwrap();
    std::fs::copy(fixtures::path("test-1.cvd"), upstream.join("test-1.cvd")).unwrap();
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
    for master in dev.strs("masters") {
        let publisher = Publisher::new(vec![master.clone()], key.clone());
        // An older version.
        let files = vec![ReleaseFile {
            name: "test.cvd".into(),
            path: fixtures::path("test-2.cvd"),
        }];
        let info = infer(&files, None, None).unwrap();
        let (st, env) = publisher.statement(&info, &files, "rollback").unwrap();
        let err = block_on(publisher.publish(&files, &st, &env, &|_| {}))
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
    let ns53 = format!("{ns}:53").parse().unwrap();
    dig::query(ns53, "current.cvd.clamav.net.", "TXT").until(30, |d| {
        d.data("TXT")
            .iter()
            .any(|t| t.contains(&format!(":{daily}:")))
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

/// One sample of a metric without labels in a role's `/metrics` text.
fn metric(base: &str, name: &str) -> f64 {
    let body = http_get(&format!("{base}/metrics")).unwrap_or_else(|| panic!("{base}/metrics"));
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {base}/metrics"))
}

/// `vdbd dev --hubs 1`: mirror1 is the hub of mirror2 and mirror3. The masters push to the
/// hub, the hub relays to its leaves, and the leaves take the published sample from the hub,
/// serving exactly the signed manifest; the monitor shows the tree.
#[test]
fn a_dev_network_with_a_hub_relays_every_release_to_its_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let dev = Dev::start(&tmp.path().join("net"), &["--mirrors", "3", "--hubs", "1"]);
    let keys = master_keys(&dev);
    let mirrors = dev.strs("mirrors");
    let ready = dev.0.ready().json();
    let hub_of = &ready["hub_of"];
    assert_eq!(hub_of[&mirrors[1]], mirrors[0].as_str(), "{ready}");
    assert_eq!(hub_of[&mirrors[2]], mirrors[0].as_str(), "{ready}");
    assert!(hub_of.get(&mirrors[0]).is_none(), "{ready}");
    let hub = assert_serves_exactly_its_manifest(&mirrors[0], &keys);
    assert_eq!(
        metric(&mirrors[0], "vdb_mirror_pulled_hub_bytes_total"),
        0.0,
        "the hub pulls from the masters"
    );
    for leaf in &mirrors[1..] {
        let served = assert_serves_exactly_its_manifest(leaf, &keys);
        assert_eq!(served.serial, hub.serial, "{leaf}");
        let from_hub = metric(leaf, "vdb_mirror_pulled_hub_bytes_total");
        let daily = served.file("daily.cvd").unwrap().size as f64;
        assert!(
            from_hub >= daily,
            "{leaf} pulled {from_hub} bytes from its hub, less than daily.cvd ({daily})"
        );
    }
    // The monitor's view of the tree, from the masters' registry.
    let status = format!("{}/api/v1/status", ready["monitor"].as_str().unwrap());
    wait_for(
        "the monitor to show mirror1 as the hub of mirror2 and mirror3",
        60,
        || {
            let doc: Value = serde_json::from_slice(&http_get(&status)?).ok()?;
            let m1 = doc["mirrors"]
                .as_array()?
                .iter()
                .find(|m| m["name"] == "mirror1")?
                .clone();
            (m1["leaves"] == serde_json::json!(["mirror2", "mirror3"])).then_some(())
        },
    );
    let log = std::fs::read_to_string(tmp.path().join("net.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("{} (leaf of {})", mirrors[1], mirrors[0])),
        "the summary names the tree:\n{log}"
    );
}

/// The `/metrics` text of every role of `dev` (masters, mirrors, monitor, directory), and their
/// base URLs.
fn exported_metrics(dev: &Dev) -> (String, Vec<String>) {
    let ready = dev.0.ready().json();
    let mut urls = dev.strs("masters");
    urls.extend(dev.strs("mirrors"));
    urls.push(ready["monitor"].as_str().unwrap().to_owned());
    urls.push(ready["directory"]["http"].as_str().unwrap().to_owned());
    let mut exported = String::new();
    for u in &urls {
        let body =
            http_get(&format!("{u}/metrics")).unwrap_or_else(|| panic!("{u}/metrics answers"));
        exported.push_str(&String::from_utf8_lossy(&body));
    }
    (exported, urls)
}

/// The `vdb_…` metric names in PromQL expressions.
fn metric_names<'a>(
    exprs: impl IntoIterator<Item = &'a str>,
) -> std::collections::BTreeSet<&'a str> {
    exprs
        .into_iter()
        .flat_map(|e| e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| w.starts_with("vdb_"))
        .collect()
}

/// Asserts each name has a `# TYPE` line in `exported` (a counter without its `_total`).
fn assert_exported(
    what: &str,
    names: &std::collections::BTreeSet<&str>,
    exported: &str,
    urls: &[String],
) {
    for name in names {
        let base = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            exported.contains(&format!("# TYPE {base} ")),
            "{what} names {name}, which no role of {urls:?} exports"
        );
    }
}

/// Every `vdb_…` metric an `expr:` of `packaging/prometheus/vdbnet.rules.yml` names has a
/// `# TYPE` line in the `/metrics` of some role of `dev` (masters, mirrors, monitor, directory).
fn assert_the_alert_rules_name_exported_metrics(dev: &Dev) {
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../packaging/prometheus/vdbnet.rules.yml"
    ))
    .unwrap();
    let (exported, urls) = exported_metrics(dev);
    let names = metric_names(
        rules
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("expr:")),
    );
    assert!(names.len() >= 7, "{names:?}");
    assert_exported("the alerting rules", &names, &exported, &urls);
}

/// `packaging/grafana/vdbnet.json` (shipped in the vdbnet package) is a Grafana dashboard:
/// JSON with panels, each with a title and PromQL targets, and every `vdb_…` metric a target
/// names is exported by some role of `dev`.
fn assert_the_dashboard_names_exported_metrics(dev: &Dev) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../packaging/grafana/vdbnet.json"
    ))
    .unwrap();
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(
        dash["title"].is_string() && dash["uid"].is_string(),
        "{dash}"
    );
    let panels = dash["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().expect("every panel has a title");
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("panel {title} has targets"));
        assert!(!targets.is_empty(), "panel {title} has no target");
        for t in targets {
            let e = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("a target of {title} has no expr"));
            assert!(
                e.contains("vdb_"),
                "panel {title} plots no vdbnet metric: {e}"
            );
            exprs.push(e);
        }
    }
    // The panels the operators asked for.
    for want in [
        "vdb_monitor_mirror_state",
        "vdb_directory_txt_version",
        "vdb_monitor_newest_version",
        "vdb_master_manifest_expires_at_seconds",
        "vdb_master_upstream_blocked_until_seconds",
        "vdb_master_pushes_total",
        "vdb_mirror_served_bytes_total",
        "vdb_mirror_http_responses_total",
        "vdb_monitor_mirror_response_milliseconds",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(want)),
            "no panel plots {want}"
        );
    }
    let (exported, urls) = exported_metrics(dev);
    let names = metric_names(exprs.iter().copied());
    assert_exported("the Grafana dashboard", &names, &exported, &urls);
}
