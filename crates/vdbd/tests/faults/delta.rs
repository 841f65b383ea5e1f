//! Delta transfer with real processes: the real master publishes the segment map of each large
//! CVD, the real mirror that holds release N rebuilds N+1 from it plus the cdiff and pulls only
//! what it lacks; a leaf does so through its hub while real clients update from it under load.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vdb_testkit::fixtures::freshclam_test_db;

use crate::harness::{
    Net, assert_serves_exactly_a_signed_manifest, counter, header_version, http_get, spawn, text,
    vdb_update, version_at, wait_for,
};

/// Base version of the synthetic `daily` chain.
const BASE: u32 = 27000;

#[test]
fn a_mirror_holding_n_pulls_under_5_percent_of_n_plus_1() {
    let mut net = Net::new(1);
    net.synth_sized(BASE, 1, 3);
    let a = net.start_master(0, None, "");
    let master = a.ready().http_url();
    let keys = net.keys();
    let spec = net.mirror(0, std::slice::from_ref(&master));
    let _mirror = spawn("mirror", &spec.config, &spec.log);
    // A second mirror with delta transfer turned off downloads the new file whole.
    let whole = net.mirror(1, std::slice::from_ref(&master));
    let text = std::fs::read_to_string(&whole.config).unwrap();
    std::fs::write(&whole.config, format!("{text}delta_transfer = false\n")).unwrap();
    let _whole = spawn("mirror", &whole.config, &whole.log);
    net.publish_ok(
        std::slice::from_ref(&master),
        &net.synth_release(BASE, BASE),
    );
    wait_for("the mirror to serve the base release", 60, || {
        (version_at(&spec.url, &keys, "daily") == BASE).then_some(())
    });
    let pulled = counter(&spec.url, "vdb_mirror_pulled_bytes_total");
    assert_eq!(
        counter(&spec.url, "vdb_mirror_delta_reused_bytes_total"),
        0.0
    );

    net.publish_ok(
        std::slice::from_ref(&master),
        &net.synth_release(BASE + 1, BASE),
    );
    let whole_pulled = counter(&whole.url, "vdb_mirror_pulled_bytes_total");
    wait_for("both mirrors to serve the next release", 60, || {
        (version_at(&spec.url, &keys, "daily") == BASE + 1
            && version_at(&whole.url, &keys, "daily") == BASE + 1)
            .then_some(())
    });
    let new = std::fs::read(net.path("synth").join(format!("daily-{}.cvd", BASE + 1))).unwrap();
    let update = counter(&spec.url, "vdb_mirror_pulled_bytes_total") - pulled;
    let reused = counter(&spec.url, "vdb_mirror_delta_reused_bytes_total");
    eprintln!(
        "one update of a {}-byte CVD: pulled {update} bytes ({:.2} %), re-created {reused}",
        new.len(),
        100.0 * update / new.len() as f64
    );
    assert!(
        update <= 0.05 * new.len() as f64,
        "pulled {update} bytes for a {}-byte CVD",
        new.len()
    );
    assert!(reused > 0.9 * new.len() as f64, "re-created {reused}");
    assert_eq!(
        http_get(&format!("{}/daily.cvd", spec.url)).as_deref(),
        Some(&new[..]),
        "the mirror serves the master's bytes"
    );
    assert!(
        counter(&whole.url, "vdb_mirror_pulled_bytes_total") - whole_pulled >= new.len() as f64,
        "delta_transfer = false pulls the whole file"
    );
    assert_eq!(
        counter(&whole.url, "vdb_mirror_delta_reused_bytes_total"),
        0.0
    );
    assert_eq!(
        http_get(&format!("{}/daily.cvd", whole.url)).as_deref(),
        Some(&new[..])
    );
}

/// Base version of the rollout test's `daily` chain.
const ROLLOUT: u32 = 27100;

/// `wrk` against `url`, two seconds at a time until stopped (at most 60 runs): every report.
struct Load {
    stop: Arc<AtomicBool>,
    runs: std::thread::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let runs = std::thread::spawn(move || {
            let mut reports = Vec::new();
            for _ in 0..60 {
                let out = Command::new("wrk")
                    .args(["-t1", "-c2", "-d2s", "--timeout", "2s"])
                    .arg(&url)
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("wrk is installed (apt-get install wrk)");
                assert!(out.status.success(), "{}", text(&out));
                reports.push(String::from_utf8_lossy(&out.stdout).into_owned());
                if flag.load(Ordering::Relaxed) {
                    break;
                }
            }
            reports
        });
        Self { stop, runs }
    }

    fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.runs.join().expect("the load thread")
    }
}

/// The version of `db` in a database directory (`.cld` after cdiffs, else `.cvd`).
fn held_version(dir: &Path, db: &str) -> Option<u32> {
    ["cld", "cvd"]
        .iter()
        .map(|ext| dir.join(format!("{db}.{ext}")))
        .find(|p: &PathBuf| p.is_file())
        .and_then(|p| header_version(&p))
}

/// Issue 18's rollout: a leaf behind a hub takes three `daily` releases (3 MB CVDs) by delta
/// transfer while `wrk` loads it and the real freshclam 1.4.6 (ClamAV's own `test` database,
/// published alongside) and `vdb-update` (`daily`, checking the signed manifest) update from
/// it: no client sees an error, the leaf re-creates most of each CVD, everything it pulls comes
/// from its hub (maps, cdiffs and ranges), and it serves exactly the master's bytes.
#[test]
fn a_delta_rollout_through_a_hub_under_load_with_the_real_clients() {
    let mut net = Net::new(1);
    net.synth_sized(ROLLOUT, 3, 3);
    let a = net.start_master(0, None, "");
    let master = a.ready().http_url();
    let masters = std::slice::from_ref(&master);
    let keys = net.keys();
    let (hub, mut leaves) = net.hub_tree(masters, 1, 3600);
    let leaf = leaves.remove(0);
    let _hub = spawn("mirror", &hub.config, &hub.log);
    let _leaf = spawn("mirror", &leaf.config, &leaf.log);
    let serves = |daily: u32, test: u32| {
        wait_for(
            &format!("the leaf to serve daily {daily} and test {test}"),
            60,
            || {
                (version_at(&leaf.url, &keys, "daily") == daily
                    && version_at(&leaf.url, &keys, "test") == test)
                    .then_some(())
            },
        );
        assert_serves_exactly_a_signed_manifest(&leaf.url, &keys);
    };
    net.publish_ok(masters, &net.fixture_release(1));
    net.publish_ok(masters, &net.synth_release(ROLLOUT, ROLLOUT));
    serves(ROLLOUT, 1);
    let work = net.path("clients");
    std::fs::create_dir_all(&work).unwrap();
    let (ok, log) = freshclam_test_db(&work, &format!("DatabaseMirror {}", leaf.url));
    assert!(ok, "{log}");
    let (vu, vu_db) = net.vdb_update_config("vu", std::slice::from_ref(&leaf.url), "daily");
    let out = vdb_update(&vu);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(held_version(&vu_db, "daily"), Some(ROLLOUT));

    let before = |name: &str| counter(&leaf.url, name);
    let pulled0 = before("vdb_mirror_pulled_bytes_total");
    let hub0 = before("vdb_mirror_pulled_hub_bytes_total");
    let reused0 = before("vdb_mirror_delta_reused_bytes_total");
    let load = Load::start(format!("{}/daily.cvd", leaf.url));
    let mut sizes = 0.0;
    for k in 1..=3 {
        net.publish_ok(masters, &net.fixture_release(1 + k));
        net.publish_ok(masters, &net.synth_release(ROLLOUT + k, ROLLOUT));
        serves(ROLLOUT + k, 1 + k);
        sizes += std::fs::metadata(net.path("synth").join(format!("daily-{}.cvd", ROLLOUT + k)))
            .unwrap()
            .len() as f64;
        let (ok, log) = freshclam_test_db(&work, &format!("DatabaseMirror {}", leaf.url));
        assert!(ok, "freshclam during the rollout: {log}");
        let out = vdb_update(&vu);
        assert!(
            out.status.success(),
            "vdb-update during the rollout: {}",
            text(&out)
        );
        assert_eq!(held_version(&vu_db, "daily"), Some(ROLLOUT + k));
    }
    let reports = load.stop();
    for r in &reports {
        assert!(
            !r.contains("Non-2xx") && !r.contains("Socket errors"),
            "errors under load during the rollout: {r}"
        );
    }
    let info = Command::new("sigtool")
        .arg("--info")
        .arg(work.join("db/test.cld"))
        .output()
        .expect("sigtool is installed");
    let info = text(&info);
    vdb_testkit::assert_contains(&info, "Version: 4");
    vdb_testkit::assert_contains(&info, "Verification OK");

    let pulled = counter(&leaf.url, "vdb_mirror_pulled_bytes_total") - pulled0;
    let from_hub = counter(&leaf.url, "vdb_mirror_pulled_hub_bytes_total") - hub0;
    let reused = counter(&leaf.url, "vdb_mirror_delta_reused_bytes_total") - reused0;
    eprintln!(
        "three updates of ~{:.0}-byte CVDs under {} wrk runs: the leaf pulled {pulled} bytes \
         ({:.2} % of the CVDs; {from_hub} from its hub), re-created {reused}",
        sizes / 3.0,
        reports.len(),
        100.0 * pulled / sizes
    );
    assert!(pulled <= 0.05 * sizes, "pulled {pulled} of {sizes}");
    assert_eq!(from_hub, pulled, "everything came from the hub");
    assert!(reused > 0.9 * sizes, "re-created {reused} of {sizes}");
    let newest =
        std::fs::read(net.path("synth").join(format!("daily-{}.cvd", ROLLOUT + 3))).unwrap();
    assert_eq!(
        http_get(&format!("{}/daily.cvd", leaf.url)).as_deref(),
        Some(&newest[..]),
        "the leaf serves the master's bytes"
    );
}
