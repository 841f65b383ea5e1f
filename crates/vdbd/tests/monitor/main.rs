//! End-to-end tests of the real `vdbd monitor` binary: against a master and a mirror double
//! (frozen, then synced again; real time, thresholds of seconds), and against the real
//! masters and mirrors of `vdbd dev`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use vdb_proto::{MANIFEST_PATH, MirrorRecord, SecretKey, VerdictReport};
use vdb_testkit::{Proc, fixtures, keys, now, wait_for_async};

const NETWORK: &str = "e2e";

fn key() -> SecretKey {
    SecretKey::from_seed([42; 32])
}

/// Path → bytes of one release, manifest included.
fn release(version: u32) -> BTreeMap<String, Vec<u8>> {
    let issued = now();
    let files = vec![
        (
            "test.cvd".to_owned(),
            fixtures::read(&format!("test-{version}.cvd")),
        ),
        (
            format!("test-{version}.cdiff"),
            fixtures::read(&format!("test-{version}.cdiff")),
        ),
        ("timestamp".to_owned(), format!("{issued}\n").into_bytes()),
    ];
    let m = keys::manifest(
        NETWORK,
        u64::from(version),
        issued,
        &[("test", version)],
        &files,
    );
    let mut out: BTreeMap<String, Vec<u8>> = files
        .into_iter()
        .map(|(n, b)| (format!("/{n}"), b))
        .collect();
    out.insert(MANIFEST_PATH.to_owned(), keys::signed(&m, &key()));
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

/// Spawns `vdbd <args> <config>` (its log beside `config`) and reads its ready line; `Err`
/// if it exits without one.
fn try_spawn(args: &[&str], config: &Path) -> Result<Proc, String> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vdbd"));
    cmd.args(args).arg(config).env("VDB_LOG", "warn");
    Proc::try_start(cmd, &config.with_extension("log"))
}

fn spawn(args: &[&str], config: &Path) -> Proc {
    try_spawn(args, config).unwrap_or_else(|e| panic!("{e}"))
}

/// Polls the monitor's verdicts until `pred` holds (bounded).
async fn wait_for(
    base: &str,
    what: &str,
    secs: u64,
    pred: impl Fn(&VerdictReport) -> bool,
) -> VerdictReport {
    let client = reqwest::Client::new();
    wait_for_async(what, secs, || async {
        let r = client
            .get(format!("{base}/api/v1/verdicts"))
            .send()
            .await
            .ok()?;
        r.json::<VerdictReport>().await.ok().filter(|rep| pred(rep))
    })
    .await
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
    let mut proc = spawn(&["monitor", "--config"], &config);
    assert_eq!(proc.ready().role(), "monitor");
    assert_eq!(proc.ready().json()["name"], "e2e-monitor");
    let base = proc.ready().http_url();

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

    let page = vdb_testkit::http::get_text(&format!("{base}/")).await;
    assert!(
        page.contains("data-mirror=\"m1\"") && page.contains("test 3"),
        "{page}"
    );

    // SIGTERM: a graceful exit with status 0.
    let st = proc.terminate(15).expect("vdbd monitor stops on SIGTERM");
    assert!(st.success(), "{st:?}");
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
        match try_spawn(&["dev", "--mirrors", "2", "--dir"], &dev_dir) {
            Ok(p) => {
                started = Some(p);
                break;
            }
            Err(e) => eprintln!("{e}"),
        }
    }
    let dev = started.expect("vdbd dev started in three tries");
    let ready = dev.ready().json();
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
    let mon = spawn(&["monitor", "--config"], &config);
    let base = mon.ready().http_url();
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

/// The monitor signs its verdicts and serves them over TLS: a real `vdbd directory` that
/// trusts the monitor's key (and the test CA) counts them; one that trusts another key
/// refuses them (no state from that monitor) and counts the failed polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vdbd_monitor_signs_its_verdicts_for_a_real_directory_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let r2 = release(2);
    let mirror = serve(Arc::new(Mutex::new(r2.clone()))).await;
    let mut master_map = BTreeMap::new();
    master_map.insert(MANIFEST_PATH.to_owned(), r2[MANIFEST_PATH].clone());
    let mut rec = MirrorRecord::new("m1", mirror.clone());
    rec.addresses = vec!["127.0.0.1".parse().unwrap()];
    master_map.insert(
        "/api/v1/mirrors".to_owned(),
        serde_json::to_vec(&vec![rec]).unwrap(),
    );
    let master = serve(Arc::new(Mutex::new(master_map))).await;

    let pki = vdb_testkit::pki::TestPki::new();
    let ca = dir.path().join("ca.pem");
    pki.write_ca(&ca);
    let (cert, tls_key) = pki.leaf(&["127.0.0.1"]).write(dir.path());
    let config = monitor_config(
        dir.path(),
        &format!("[{master:?}]"),
        &format!("[\"{}\"]", key().public()),
    );
    let key_file = dir.path().join("verdicts.key");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replacen(
        "[thresholds]",
        &format!(
            "key_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}\n[thresholds]",
            key_file.display().to_string(),
            cert.display().to_string(),
            tls_key.display().to_string()
        ),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let mut monitor = spawn(&["monitor", "--config"], &config);
    let url = format!("https://{}", monitor.ready().http_addr());
    assert_eq!(
        monitor.ready().json()["http"].as_str(),
        Some(url.as_str()),
        "the ready line names the HTTPS URL"
    );
    // The key the monitor made (0600) is the one its reports are signed with.
    let (signer, made) = SecretKey::load_or_create(&key_file).unwrap();
    assert!(!made, "the monitor made its key file");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Two directories, one trusting the monitor's key, one another key.
    let mut dirs = Vec::new();
    for (name, trusted) in [
        ("good", signer.public()),
        ("wrong", SecretKey::from_seed([9; 32]).public()),
    ] {
        let path = dir.path().join(format!("directory-{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "zone = \"vdb.test\"\ndns_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
                 masters = [{master:?}]\nmonitors = [{url:?}]\nmonitor_keys = [\"{trusted}\"]\n\
                 tls_ca_file = {:?}\npoll_secs = 1\n",
                ca.display().to_string()
            ),
        )
        .unwrap();
        dirs.push(spawn(&["directory", "--config"], &path));
    }
    let states = |p: &Proc| {
        let base = p.ready().http_url();
        async move {
            let text = vdb_testkit::http::get_text(&format!("{base}/api/v1/mirrors")).await;
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            v["mirrors"][0]["states"].clone()
        }
    };
    wait_for_async(
        "the trusting directory to count the monitor's verdict",
        30,
        || async { (states(&dirs[0]).await == serde_json::json!(["in_service"])).then_some(()) },
    )
    .await;
    let wrong = dirs[1].ready().http_url();
    wait_for_async("the other directory to refuse the reports", 30, || async {
        let text = vdb_testkit::http::get_text(&format!("{wrong}/metrics")).await;
        let n =
            vdb_testkit::http::metric(&text, "vdb_directory_poll_errors_total{source=\"monitor\"}");
        (n >= Some(2.0)).then_some(())
    })
    .await;
    assert_eq!(states(&dirs[1]).await, serde_json::json!([null]));
    let st = monitor
        .terminate(15)
        .expect("vdbd monitor stops on SIGTERM");
    assert!(st.success(), "{st:?}");
}
