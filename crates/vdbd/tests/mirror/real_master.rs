//! The real `vdbd master` pushing to the real `vdbd mirror`, and freshclam following the mirror.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vdb_master::client::{Admin, Progress, Publisher, ReleaseFile};
use vdb_proto::{MirrorRecord, SecretKey};

use crate::double::fixtures;
use crate::{Mirror, freshclam, get, sigtool_version, start};

const ADMIN: &str = "admin-token-0123456789";
const PULL: &str = "pull-token-0123456789";

fn release(v: u32) -> Vec<ReleaseFile> {
    let mut f = vec![ReleaseFile {
        name: "test.cvd".into(),
        path: fixtures().join(format!("test-{v}.cvd")),
    }];
    if v > 1 {
        f.push(ReleaseFile {
            name: format!("test-{v}.cdiff"),
            path: fixtures().join(format!("test-{v}.cdiff")),
        });
    }
    f
}

async fn publish(master: &str, v: u32) {
    let p = Publisher::new(vec![master.to_owned()], SecretKey::from_seed([1; 32]));
    let files = release(v);
    let info = vdb_master::client::infer(&files, None, None).unwrap();
    let (st, env) = p.statement(&info, &files, "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match p.publish(&files, &st, &env, &|_: Progress| {}).await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("publish v{v}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish v{v}: {e}"),
        }
    }
}

fn test_version(m: &Mirror) -> u64 {
    let (_, _, body) = get(m.http, vdb_mirror::STATUS_PATH, &[]);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["databases"]["test"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_master_pushes_and_freshclam_follows_the_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = SecretKey::from_seed([42; 32]);
    std::fs::write(d.join("master.key"), key.to_text()).unwrap();
    std::fs::write(
        d.join("master.toml"),
        format!(
            "name = \"ma\"\nnetwork = \"testnet\"\nlisten = \"127.0.0.1:0\"\ndata_dir = {:?}\n\
             key_file = {:?}\nadmin_token = \"{ADMIN}\"\npull_tokens = [\"{PULL}\"]\n\
             tick_ms = 50\npush_backoff_ms = 20\n\
             [[publishers]]\nkey = \"{}\"\ndatabases = [\"test\"]\n",
            d.join("mdata").display().to_string(),
            d.join("master.key").display().to_string(),
            SecretKey::from_seed([1; 32]).public(),
        ),
    )
    .unwrap();
    let mut child = Command::new(crate::vdbd())
        .args(["master", "--config"])
        .arg(d.join("master.toml"))
        .env("VDB_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let master_guard = Mirror {
        child,
        http: "127.0.0.1:1".parse().unwrap(),
    };
    let ready: serde_json::Value = serde_json::from_str(&line).expect(&line);
    let master = ready["http"].as_str().unwrap().to_owned();
    publish(&master, 1).await;

    let mdir = d.join("mirror");
    std::fs::create_dir_all(&mdir).unwrap();
    let cfg = mdir.join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"m1\"\nnetwork = \"testnet\"\nmasters = [\"{master}\"]\n\
             master_keys = [\"{}\"]\npull_token = \"{PULL}\"\ndata_dir = {:?}\n\
             poll_secs = 3600\n",
            key.public(),
            mdir.join("data").display().to_string()
        ),
    )
    .unwrap();
    let m = start(&cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    while test_version(&m) != 1 {
        assert!(Instant::now() < deadline, "mirror did not pull v1");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Register the mirror with its push URL: from now on only pushes move it (poll is 1 h).
    let mut rec = MirrorRecord::new("m1", format!("http://{}", m.http));
    rec.push_url = Some(format!("http://{}{}", m.http, vdb_proto::paths::PUSH));
    Admin::new(&master, Some(ADMIN.to_owned()))
        .add(&rec)
        .await
        .unwrap();
    for v in 2..=6 {
        publish(&master, v).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while test_version(&m) != 6 {
        assert!(Instant::now() < deadline, "pushes did not bring v6");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every file the master's manifest lists is served, byte for byte.
    let man = Admin::new(&master, None)
        .manifest(&[key.public()])
        .await
        .unwrap();
    for f in &man.files {
        let (st, _, body) = get(m.http, &format!("/{}", f.name), &[]);
        assert_eq!(st, 200, "{}", f.name);
        assert_eq!(vdb_proto::sha256_hex(&body), f.sha256, "{}", f.name);
    }
    let work = d.join("fc");
    std::fs::create_dir_all(work.join("db")).unwrap();
    std::fs::copy(fixtures().join("test-1.cvd"), work.join("db/test.cvd")).unwrap();
    let (ok, log) = freshclam(&work, &format!("DatabaseMirror http://{}", m.http));
    assert!(ok, "{log}");
    assert_eq!(sigtool_version(&work.join("db/test.cld")), 6);
    drop(master_guard);
}
