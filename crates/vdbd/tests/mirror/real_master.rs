//! The real `vdbd master` pushing to the real `vdbd mirror`, and freshclam following the mirror.

use vdb_master::client::Admin;
use vdb_proto::{MirrorRecord, SecretKey};
use vdb_testkit::fixtures::freshclam_test_db;
use vdb_testkit::keys::publisher_key;
use vdb_testkit::publish::{publish, test_release};
use vdb_testkit::{Proc, fixtures, wait_for};

use crate::{Mirror, get, sigtool_version, start};

const ADMIN: &str = "admin-token-0123456789";
const PULL: &str = "pull-token-0123456789";

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
            publisher_key().public(),
        ),
    )
    .unwrap();
    let master_proc = Proc::start_role(
        crate::vdbd(),
        "master",
        &d.join("master.toml"),
        &d.join("master.log"),
    );
    let master = master_proc.ready().http_url();
    publish(
        std::slice::from_ref(&master),
        &publisher_key(),
        &test_release(1),
        20,
    )
    .await;

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
    wait_for("the mirror to pull v1", 30, || {
        (test_version(&m) == 1).then_some(())
    });
    // Register the mirror with its push URL: from now on only pushes move it (poll is 1 h).
    let mut rec = MirrorRecord::new("m1", format!("http://{}", m.http));
    rec.push_url = Some(format!("http://{}{}", m.http, vdb_proto::paths::PUSH));
    Admin::new(&master, Some(ADMIN.to_owned()))
        .add(&rec)
        .await
        .unwrap();
    for v in 2..=6 {
        publish(
            std::slice::from_ref(&master),
            &publisher_key(),
            &test_release(v),
            20,
        )
        .await;
    }
    wait_for("pushes to bring v6", 30, || {
        (test_version(&m) == 6).then_some(())
    });
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
    std::fs::copy(fixtures::path("test-1.cvd"), work.join("db/test.cvd")).unwrap();
    let (ok, log) = freshclam_test_db(&work, &format!("DatabaseMirror http://{}", m.http));
    assert!(ok, "{log}");
    assert_eq!(sigtool_version(&work.join("db/test.cld")), 6);

    // A mirror with a wrong pull token is told what to check, not only "401".
    let wdir = d.join("wrong");
    std::fs::create_dir_all(&wdir).unwrap();
    let cfg = wdir.join("mirror.toml");
    std::fs::write(
        &cfg,
        format!(
            "name = \"m2\"\nnetwork = \"testnet\"\nmasters = [\"{master}\"]\n\
             master_keys = [\"{}\"]\npull_token = \"not-the-token\"\ndata_dir = {:?}\n\
             poll_secs = 3600\n",
            key.public(),
            wdir.join("data").display().to_string()
        ),
    )
    .unwrap();
    let wrong = start(&cfg);
    let error = wait_for("the refused sync's error", 30, || {
        let (_, _, body) = get(wrong.http, vdb_mirror::STATUS_PATH, &[]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        v["last_error"].as_str().map(str::to_owned)
    });
    assert!(
        error.contains("401") && error.contains("check `pull_token`"),
        "{error}"
    );
    drop(master_proc);
}
