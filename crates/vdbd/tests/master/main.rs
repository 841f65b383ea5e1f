//! End to end: real `vdbd master` processes on loopback, driven through the
//! `vdb_master::client` library (the `vdb` binary's publishing code).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vdb_master::client::{Admin, Progress, Publisher, ReleaseFile};
use vdb_proto::{Manifest, PublicKey, SecretKey};
use vdb_testkit::keys::publisher_key as publisher;
use vdb_testkit::publish::test_release;
use vdb_testkit::{Proc, RegistryDouble, Served, copy_dir, fixtures, free_port, wait_for_async};

/// A `vdbd master` process and its URL.
struct Master {
    proc: Proc,
    url: String,
}

struct Net {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    keys: Vec<SecretKey>,
}

impl Net {
    fn new(n: usize) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            ports: (0..n).map(|_| free_port("127.0.0.1")).collect(),
            keys: (0..n)
                .map(|i| SecretKey::from_seed([20 + i as u8; 32]))
                .collect(),
        }
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    fn key(&self, i: usize) -> PublicKey {
        self.keys[i].public()
    }

    /// Writes master `i`'s config; `extra` is appended TOML.
    fn config(&self, i: usize, extra: &str) -> PathBuf {
        let d = self.dir.path();
        let key_file = d.join(format!("m{i}.key"));
        std::fs::write(&key_file, self.keys[i].to_text()).unwrap();
        let mut peers = String::new();
        for j in 0..self.ports.len() {
            if j != i {
                peers.push_str(&format!(
                    "\n[[peers]]\nurl = \"{}\"\nkey = \"{}\"\n",
                    self.url(j),
                    self.key(j)
                ));
            }
        }
        let text = format!(
            "name = \"m{i}\"\nnetwork = \"testnet\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{data}\"\nkey_file = \"{key}\"\nadmin_token = \"admin-token-0123456789\"\ntick_ms = 50\nreplicate_secs = 1\ncatch_up_timeout_secs = 2\npush_backoff_ms = 20\n{extra}\n[[publishers]]\nkey = \"{pubkey}\"\ndatabases = [\"test\", \"extra\"]\n[databases.extra]\nallow_plain = true\n{peers}",
            port = self.ports[i],
            data = d.join(format!("data{i}")).display(),
            key = key_file.display(),
            pubkey = publisher().public(),
        );
        let path = d.join(format!("m{i}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn start(&self, i: usize, extra: &str) -> Master {
        let config = self.config(i, extra);
        let log = self.dir.path().join(format!("m{i}.log"));
        let proc = Proc::start_role(env!("CARGO_BIN_EXE_vdbd"), "master", &config, &log);
        assert_eq!(proc.ready().role(), "master");
        let url = proc.ready().http_url();
        assert_eq!(url, self.url(i));
        Master { proc, url }
    }
}

/// Publishing retried while a master is still catching up (it answers 503 then).
async fn publish_retry(masters: &[String], v: u32) -> vdb_proto::ReleaseAccepted {
    vdb_testkit::publish::publish(masters, &publisher(), &test_release(v), 20).await
}

async fn manifest(url: &str, key: PublicKey) -> Option<Manifest> {
    Admin::new(url, None).manifest(&[key]).await.ok()
}

/// Waits (30 s at most) until `f` holds.
async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    wait_for_async(what, 30, || {
        let check = f();
        async move { check.await.then_some(()) }
    })
    .await;
}

/// Whether the master at `url` says it is ready (caught up with its peers: it takes releases)
/// and holds `test` at `v`.
async fn ready_with(url: &str, v: u32) -> bool {
    let Ok(r) = reqwest::get(format!("{url}/api/v1/status")).await else {
        return false;
    };
    r.json::<serde_json::Value>()
        .await
        .is_ok_and(|s| s["ready"] == true && s["databases"]["test"] == v)
}

async fn version(url: &str, key: PublicKey) -> u32 {
    manifest(url, key)
        .await
        .and_then(|m| m.databases.get("test").map(|d| d.version))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_through_a_then_failover_to_b_and_restore_from_an_old_backup() {
    let net = Net::new(2);
    let a = net.start(0, "");
    let b = net.start(1, "");
    let both = vec![a.url.clone(), b.url.clone()];
    // Both have caught up with each other once they serve a manifest.
    wait_for("both ready", || async {
        manifest(&net.url(0), net.key(0)).await.is_some()
            && manifest(&net.url(1), net.key(1)).await.is_some()
    })
    .await;
    for v in 1..=4 {
        let r = publish_retry(&both, v).await;
        assert_eq!((r.master.as_str(), r.version), ("m0", v));
    }
    // Stop A gracefully and keep its state as an "old backup"; A comes back and goes on.
    let mut a = a;
    a.proc.stop();
    let data0 = net.dir.path().join("data0");
    let backup = net.dir.path().join("backup0");
    copy_dir(&data0, &backup);
    let a = net.start(0, "");
    // A restarted answers releases once it has caught up with its peer again (until then it
    // answers 503 and the publisher rightly fails over to B).
    wait_for("A to serve again", || async {
        ready_with(&net.url(0), 4).await
    })
    .await;
    for v in 5..=6 {
        let r = publish_retry(&both, v).await;
        assert_eq!((r.master.as_str(), r.version), ("m0", v));
    }
    wait_for("B to replicate v6", || async {
        version(&net.url(1), net.key(1)).await == 6
    })
    .await;
    // A dies: the next release fails over to B within a short, bounded time.
    drop(a);
    let extra = net.dir.path().join("extra.ndb");
    std::fs::write(&extra, "Eicar-Test:0:*:58354f2150\n").unwrap();
    let p = Publisher::new(both.clone(), publisher());
    let files = vec![ReleaseFile {
        name: "extra.ndb".into(),
        path: extra,
    }];
    let info = vdb_master::client::infer(&files, Some("extra"), Some(1)).unwrap();
    let (st, env) = p.statement(&info, &files, "").unwrap();
    let t = Instant::now();
    let r = p
        .publish(&files, &st, &env, &|_: Progress| {})
        .await
        .unwrap();
    assert_eq!((r.master.as_str(), r.db.as_str()), ("m1", "extra"));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "failover took {:?}",
        t.elapsed()
    );
    let mb = manifest(&net.url(1), net.key(1)).await.unwrap();
    assert_eq!(
        (mb.databases["test"].version, mb.databases["extra"].version),
        (6, 1)
    );
    // Restore A from the old backup (v4): it catches up from B and signs above B's serial.
    std::fs::remove_dir_all(&data0).unwrap();
    copy_dir(&backup, &data0);
    let old = manifest_file(&data0);
    assert!(old.serial < mb.serial && old.databases["test"].version == 4);
    let a = net.start(0, "");
    wait_for("A to catch up", || async {
        manifest(&net.url(0), net.key(0)).await.is_some_and(|m| {
            m.serial > mb.serial
                && m.databases.contains_key("extra")
                && m.databases["test"].version == 6
        })
    })
    .await;
    let m = manifest(&net.url(0), net.key(0)).await.unwrap();
    assert_eq!(m.databases["extra"].release, r.release_id);
    assert_eq!(m.databases["test"].release, mb.databases["test"].release);
    drop(a);
    drop(b);
}

fn manifest_file(data: &Path) -> Manifest {
    let bytes = std::fs::read(data.join("manifest.json")).unwrap();
    let env = vdb_proto::Signed::<Manifest>::from_json(&bytes).unwrap();
    env.verify(&[env.signer()]).unwrap()
}

async fn metrics(url: &str) -> String {
    let body = vdb_testkit::http::fetch_async(&format!("{url}/metrics")).await;
    String::from_utf8_lossy(&body.unwrap_or_default()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_sync_is_skipped_while_a_peer_is_unreachable() {
    let net = Net::new(2);
    // Only A runs; its peer B never answers.
    let a = net.start(0, "forced_sync_secs = 1");
    wait_for("a skipped forced sync", || async {
        metrics(&a.url)
            .await
            .contains("vdb_master_forced_sync_total{result=\"skipped\"}")
    })
    .await;
    let m = metrics(&a.url).await;
    assert!(
        !m.contains("vdb_master_forced_sync_total{result=\"run\"}"),
        "{m}"
    );
    // The peer comes up: forced syncs run.
    let b = net.start(1, "");
    wait_for("a forced sync run", || async {
        metrics(&a.url)
            .await
            .contains("vdb_master_forced_sync_total{result=\"run\"}")
    })
    .await;
    drop(b);
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_a_local_upstream() {
    let net = Net::new(1);
    let up_dir = net.dir.path().join("upstream");
    std::fs::create_dir_all(&up_dir).unwrap();
    std::fs::copy(fixtures::path("test-2.cvd"), up_dir.join("test.cvd")).unwrap();
    for v in 2..=6 {
        std::fs::copy(
            fixtures::path(&format!("test-{v}.cdiff")),
            up_dir.join(format!("test-{v}.cdiff")),
        )
        .unwrap();
    }
    // The upstream: the files of a directory over HTTP (whole bodies; the master reads the
    // header from them).
    let upstream = RegistryDouble::start(Served {
        files: Some(up_dir.clone()),
        ..Default::default()
    })
    .await;
    let up_url = upstream.url.clone();
    let a = net.start(
        0,
        &format!("[upstream]\nurl = \"{up_url}\"\ndatabases = [\"test\"]\ninterval_secs = 1\n"),
    );
    wait_for("v2 from upstream", || async {
        version(&a.url, net.key(0)).await == 2
    })
    .await;
    std::fs::copy(fixtures::path("test-5.cvd"), up_dir.join("test.cvd.tmp")).unwrap();
    std::fs::rename(up_dir.join("test.cvd.tmp"), up_dir.join("test.cvd")).unwrap();
    wait_for("v5 from upstream", || async {
        version(&a.url, net.key(0)).await == 5
    })
    .await;
    let m = manifest(&a.url, net.key(0)).await.unwrap();
    for v in 3..=5 {
        assert!(
            m.file(&format!("test-{v}.cdiff")).is_some(),
            "test-{v}.cdiff"
        );
    }
    // A tampered upstream CVD is refused: the manifest keeps v5.
    let mut bad = std::fs::read(fixtures::path("test-6.cvd")).unwrap();
    let n = bad.len();
    bad[n - 10] ^= 0xff;
    std::fs::write(up_dir.join("test.cvd.tmp"), &bad).unwrap();
    std::fs::rename(up_dir.join("test.cvd.tmp"), up_dir.join("test.cvd")).unwrap();
    wait_for("the refusal", || async {
        metrics(&a.url)
            .await
            .contains("vdb_master_upstream_checks_total{result=\"refused\"}")
    })
    .await;
    assert_eq!(version(&a.url, net.key(0)).await, 5);
    drop(a);
}
