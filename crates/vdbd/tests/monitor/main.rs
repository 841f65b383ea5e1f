//! End-to-end tests of the real `vdbd monitor` binary: against a master and a mirror double
//! (frozen, then synced again; real time, thresholds of seconds), and against the real
//! masters and mirrors of `vdbd dev`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use vdb_proto::{
    DatabaseState, FileRef, MANIFEST_PATH, Manifest, MirrorRecord, SecretKey, Signed,
    VerdictReport, sha256_hex,
};

const NETWORK: &str = "e2e";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn key() -> SecretKey {
    SecretKey::from_seed([42; 32])
}

fn fixture(name: &str) -> Vec<u8> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/clamav"
    );
    std::fs::read(format!("{dir}/{name}")).unwrap()
}

/// Path → bytes of one release, manifest included.
fn release(version: u32) -> BTreeMap<String, Vec<u8>> {
    let issued = now();
    let mut files = BTreeMap::new();
    files.insert(
        "test.cvd".to_owned(),
        fixture(&format!("test-{version}.cvd")),
    );
    files.insert(
        format!("test-{version}.cdiff"),
        fixture(&format!("test-{version}.cdiff")),
    );
    files.insert("timestamp".to_owned(), format!("{issued}\n").into_bytes());
    let m = Manifest {
        network: NETWORK.into(),
        serial: u64::from(version),
        master: "a".into(),
        issued_at: issued,
        expires_at: issued + 86400,
        databases: [(
            "test".to_owned(),
            DatabaseState {
                version,
                built_at: issued,
                release: "0".repeat(64),
            },
        )]
        .into(),
        files: files
            .iter()
            .map(|(n, b)| FileRef {
                name: n.clone(),
                size: b.len() as u64,
                sha256: sha256_hex(b),
            })
            .collect(),
    };
    let mut out: BTreeMap<String, Vec<u8>> = files
        .into_iter()
        .map(|(n, b)| (format!("/{n}"), b))
        .collect();
    out.insert(
        MANIFEST_PATH.to_owned(),
        Signed::sign(&m, &key()).to_json().into_bytes(),
    );
    out
}

type Files = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// Serves whatever `files` holds (full bodies; the monitor copes with a server that ignores
/// Range).
async fn serve(files: Files) -> String {
    let app = Router::new().fallback(get(move |uri: Uri| {
        let files = files.clone();
        async move {
            let f = files.lock().unwrap().get(uri.path()).cloned();
            match f {
                Some(b) => b.into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
    }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns `vdbd <args>` and returns it with its JSON ready line.
fn spawn(args: &[&str], config: &Path) -> (Proc, serde_json::Value) {
    try_spawn(args, config).expect("vdbd exited without a ready line")
}

/// Spawns `vdbd <args>`; `None` if it exits without a ready line.
fn try_spawn(args: &[&str], config: &Path) -> Option<(Proc, serde_json::Value)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vdbd"))
        .args(args)
        .arg(config)
        .env("VDB_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a ready line within 60 s");
    if line.is_empty() {
        return None;
    }
    let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    Some((proc, v))
}

/// Polls the monitor's verdicts until `pred` holds (bounded).
async fn wait_for(
    base: &str,
    what: &str,
    secs: u64,
    pred: impl Fn(&VerdictReport) -> bool,
) -> VerdictReport {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(format!("{base}/api/v1/verdicts")).send().await
            && let Ok(rep) = r.json::<VerdictReport>().await
            && pred(&rep)
        {
            return rep;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn state_of(rep: &VerdictReport, name: &str) -> Option<vdb_proto::MirrorState> {
    rep.mirrors.iter().find(|m| m.name == name).map(|m| m.state)
}

fn monitor_config(dir: &Path, masters: &str, keys: &str) -> PathBuf {
    let path = dir.join("monitor.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"e2e-monitor\"\nnetwork = {NETWORK:?}\nmasters = {masters}\nmaster_keys = {keys}\n\
             listen = \"127.0.0.1:0\"\ndatabase = {:?}\ncheck_interval_secs = 1\nrequest_timeout_secs = 5\n\
             [thresholds]\nlagging_secs = 1\nold_secs = 2\nout_secs = 3\nunreachable_out_secs = 3\nrecover_checks = 2\n",
            dir.join("monitor.sqlite").display().to_string()
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdbd_monitor_takes_a_frozen_mirror_out_and_back() {
    use vdb_proto::MirrorState::{InService, Out};
    let dir = tempfile::tempdir().unwrap();
    let r2 = release(2);
    let mirror_files: Files = Arc::new(Mutex::new(r2.clone()));
    let mirror = serve(mirror_files.clone()).await;
    let mut master_map = BTreeMap::new();
    master_map.insert(MANIFEST_PATH.to_owned(), r2[MANIFEST_PATH].clone());
    let mut rec = MirrorRecord::new("m1", mirror.clone());
    rec.region = Some("europe".into());
    master_map.insert(
        "/api/v1/mirrors".to_owned(),
        serde_json::to_vec(&vec![rec]).unwrap(),
    );
    let master_files: Files = Arc::new(Mutex::new(master_map));
    let master = serve(master_files.clone()).await;

    let config = monitor_config(
        dir.path(),
        &format!("[{master:?}]"),
        &format!("[\"{}\"]", key().public()),
    );
    let (proc, ready) = spawn(&["monitor", "--config"], &config);
    assert_eq!(ready["role"], "monitor");
    assert_eq!(ready["name"], "e2e-monitor");
    let base = ready["http"].as_str().unwrap().to_owned();

    wait_for(&base, "m1 in service", 30, |r| {
        state_of(r, "m1") == Some(InService) && r.newest.get("test") == Some(&2)
    })
    .await;
    // Release 3 on the master; the mirror stays frozen on 2.
    let r3 = release(3);
    master_files
        .lock()
        .unwrap()
        .insert(MANIFEST_PATH.to_owned(), r3[MANIFEST_PATH].clone());
    let rep = wait_for(&base, "m1 out", 30, |r| state_of(r, "m1") == Some(Out)).await;
    assert_eq!(rep.mirrors[0].serving["test"], 2);
    // It syncs: back in service after good checks.
    *mirror_files.lock().unwrap() = r3;
    let rep = wait_for(&base, "m1 back", 30, |r| {
        state_of(r, "m1") == Some(InService)
    })
    .await;
    assert_eq!(rep.mirrors[0].serving["test"], 3);

    let page = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("data-mirror=\"m1\"") && page.contains("test 3"),
        "{page}"
    );

    // SIGTERM: a graceful exit with status 0.
    let mut proc = proc;
    let pid = proc.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = proc.0.try_wait().unwrap() {
            assert!(st.success(), "{st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "vdbd monitor did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdbd_monitor_judges_the_real_mirrors_of_vdbd_dev() {
    let dir = tempfile::tempdir().unwrap();
    let dev_dir = dir.path().join("dev");
    // `vdbd dev` has been seen (once, under load) to refuse its own sample chain at start;
    // that is the dev network's business, not the monitor's: try it up to three times.
    let mut started = None;
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(&dev_dir);
        started = try_spawn(&["dev", "--mirrors", "2", "--dir"], &dev_dir);
        if started.is_some() {
            break;
        }
    }
    let (_dev, ready) = started.expect("vdbd dev started in three tries");
    // Our own monitor process, configured like dev's but separate.
    let dev_monitor: toml::Table =
        toml::from_str(&std::fs::read_to_string(dev_dir.join("monitor.toml")).unwrap()).unwrap();
    let masters = dev_monitor["masters"].to_string();
    let keys = dev_monitor["master_keys"].to_string();
    let network = dev_monitor["network"].as_str().unwrap().to_owned();
    let mon_dir = dir.path().join("mon");
    std::fs::create_dir_all(&mon_dir).unwrap();
    let config = mon_dir.join("monitor.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"e2e\"\nnetwork = {network:?}\nmasters = {masters}\nmaster_keys = {keys}\n\
             listen = \"127.0.0.1:0\"\ndatabase = {:?}\ncheck_interval_secs = 1\n",
            mon_dir.join("m.sqlite").display().to_string()
        ),
    )
    .unwrap();
    let (_mon, mready) = spawn(&["monitor", "--config"], &config);
    let base = mready["http"].as_str().unwrap().to_owned();
    let newest: u32 = ready["databases"][0]["version"].as_u64().unwrap() as u32;
    let db = ready["databases"][0]["name"].as_str().unwrap().to_owned();
    let rep = wait_for(
        &base,
        "both dev mirrors in service on the newest",
        60,
        |r| {
            r.mirrors.len() == 2
                && r.mirrors.iter().all(|m| {
                    m.state == vdb_proto::MirrorState::InService
                        && m.serving.get(&db) == Some(&newest)
                })
        },
    )
    .await;
    assert_eq!(rep.newest[&db], newest);
}
