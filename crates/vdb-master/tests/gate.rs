//! The verification gate end to end through the HTTP API of an in-process master: the ClamAV
//! fixture chain, every refusal with its reason, nothing changed by a refusal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vdb_master::client::{Admin, Progress, PublishError, Publisher, ReleaseFile, ReleaseInfo};
use vdb_master::{Config, Running};
use vdb_proto::{Clock, Manifest, ManualClock, PublicKey, SecretKey, SystemClock};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/clamav"
);
const TOKEN: &str = "admin-token-0123456789";

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

struct T {
    _dir: tempfile::TempDir,
    running: Option<Running>,
    clock: ManualClock,
    master_key: PublicKey,
    publisher: SecretKey,
    daily_only: SecretKey,
    url: String,
}

impl T {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed([9; 32]);
        let key_file = dir.path().join("master.key");
        std::fs::write(&key_file, key.to_text()).unwrap();
        let publisher = SecretKey::from_seed([1; 32]);
        let daily_only = SecretKey::from_seed([2; 32]);
        let mut c = Config::new("a", "testnet", dir.path().join("data"), key_file);
        c.admin_token = Some(TOKEN.into());
        c.tick_ms = 20;
        c.publishers = vec![
            vdb_master::config::PublisherConfig {
                key: publisher.public(),
                databases: vec!["test".into(), "synth".into()],
            },
            vdb_master::config::PublisherConfig {
                key: daily_only.public(),
                databases: vec!["daily".into()],
            },
        ];
        tweak(&mut c);
        let clock = ManualClock::new(SystemClock.now());
        let running = vdb_master::start(c, Arc::new(clock.clone())).await.unwrap();
        let url = format!("http://{}", running.http_addr());
        Self {
            _dir: dir,
            running: Some(running),
            clock,
            master_key: key.public(),
            publisher,
            daily_only,
            url,
        }
    }

    fn admin(&self) -> Admin {
        Admin::new(&self.url, Some(TOKEN.into()))
    }

    async fn manifest(&self) -> Manifest {
        self.admin().manifest(&[self.master_key]).await.unwrap()
    }

    async fn manifest_json(&self) -> String {
        reqwest_get(&format!("{}{}", self.url, vdb_proto::MANIFEST_PATH)).await
    }

    async fn publish_as(
        &self,
        key: &SecretKey,
        files: &[ReleaseFile],
        info: Option<ReleaseInfo>,
    ) -> Result<vdb_proto::ReleaseAccepted, PublishError> {
        let p = Publisher::new(vec![self.url.clone()], key.clone())
            .with_clock(Arc::new(self.clock.clone()));
        let info = match info {
            Some(i) => i,
            None => vdb_master::client::infer(files, None, None)?,
        };
        let (st, env) = p.statement(&info, files, "")?;
        p.publish(files, &st, &env, &|_: Progress| {}).await
    }

    async fn publish(
        &self,
        files: &[ReleaseFile],
    ) -> Result<vdb_proto::ReleaseAccepted, PublishError> {
        self.publish_as(&self.publisher, files, None).await
    }

    async fn accepted(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .admin()
            .history(1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.verdict == "accepted")
            .map(|r| r.id)
            .collect();
        v.sort();
        v
    }

    async fn status(&self) -> vdb_master::Status {
        serde_json::from_str(&reqwest_get(&format!("{}/api/v1/status", self.url)).await).unwrap()
    }

    async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

fn file(name: &str, path: PathBuf) -> ReleaseFile {
    ReleaseFile {
        name: name.into(),
        path,
    }
}

/// The release of fixture version `v`: `test.cvd` (+ `test-v.cdiff` from v2 on).
fn release(v: u32) -> Vec<ReleaseFile> {
    let mut f = vec![file("test.cvd", fixture(&format!("test-{v}.cvd")))];
    if v > 1 {
        f.push(file(
            &format!("test-{v}.cdiff"),
            fixture(&format!("test-{v}.cdiff")),
        ));
    }
    f
}

#[tokio::test]
async fn fixture_chain_v1_to_v6_is_published_with_derived_files() {
    let t = T::start(|_| {}).await;
    let mut serial = t.manifest().await.serial;
    for v in 1..=6 {
        let a = t
            .publish(&release(v))
            .await
            .unwrap_or_else(|e| panic!("v{v}: {e}"));
        assert_eq!(
            (a.db.as_str(), a.version, a.master.as_str()),
            ("test", v, "a")
        );
        assert!(a.serial > serial);
        serial = a.serial;
        let m = t.manifest().await;
        assert_eq!(m.databases["test"].version, v);
        assert_eq!(m.databases["test"].release, a.release_id);
        assert_eq!(m.serial, a.serial);
    }
    // Identical re-submission (publisher failover) answers with the same id.
    let p = Publisher::new(vec![t.url.clone()], t.publisher.clone())
        .with_clock(Arc::new(t.clock.clone()));
    let files = release(6);
    let info = vdb_master::client::infer(&files, None, None).unwrap();
    let (st, env) = p.statement(&info, &files, "").unwrap();
    let again = p
        .publish(&files, &st, &env, &|_: Progress| {})
        .await
        .unwrap();
    assert_eq!(
        again.release_id,
        env.id(),
        "the identical statement is answered with its id"
    );
    assert_eq!(
        again.serial,
        t.manifest().await.serial,
        "and changes nothing"
    );
    // Signed a second later, the same version and files are the same release (two masters
    // following one upstream, a publisher retrying with a fresh statement).
    t.clock.advance(1);
    let same = t.publish(&release(6)).await.unwrap();
    assert_eq!(same.release_id, env.id());
    // The same version with other files is equivocation.
    let mut other = release(6);
    other.pop();
    let err = t.publish(&other).await.unwrap_err();
    assert!(
        matches!(&err, PublishError::Refused { error, .. } if error.code == "equivocation"),
        "{err}"
    );
    let m = t.manifest().await;
    let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "MD5SUMS",
            "SHA256SUMS",
            "dns.txt",
            "test-2.cdiff",
            "test-3.cdiff",
            "test-4.cdiff",
            "test-5.cdiff",
            "test-6.cdiff",
            "test.cvd",
            "timestamp"
        ]
    );
    let admin = t.admin();
    for f in &m.files {
        let data = admin.object(&f.sha256).await.unwrap();
        assert_eq!(data.len() as u64, f.size, "{}", f.name);
        assert_eq!(vdb_proto::sha256_hex(&data), f.sha256);
    }
    let cvd = std::fs::read(fixture("test-6.cvd")).unwrap();
    assert_eq!(
        m.file("test.cvd").unwrap().sha256,
        vdb_proto::sha256_hex(&cvd)
    );
    let sums = String::from_utf8(
        admin
            .object(&m.file("SHA256SUMS").unwrap().sha256)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        sums.contains(&format!("{}  test.cvd\n", vdb_proto::sha256_hex(&cvd))),
        "{sums}"
    );
    assert_eq!(sums.lines().count(), 6);
    let md5 = String::from_utf8(
        admin
            .object(&m.file("MD5SUMS").unwrap().sha256)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        md5.contains("  test-2.cdiff\n")
            && md5
                .lines()
                .all(|l| l.split("  ").next().unwrap().len() == 32)
    );
    let txt = String::from_utf8(
        admin
            .object(&m.file("dns.txt").unwrap().sha256)
            .await
            .unwrap(),
    )
    .unwrap();
    let rec = vdb_format::dnstxt::CurrentRecord::parse(txt.trim()).unwrap();
    assert_eq!(rec.time, m.issued_at);
    let ts = String::from_utf8(
        admin
            .object(&m.file("timestamp").unwrap().sha256)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ts.trim(), m.issued_at.to_string());
    assert!(m.expires_at > m.issued_at);
    // Unreleased objects are not served.
    assert!(admin.object(&"0".repeat(64)).await.is_err());
    // Identical statement re-sent: same id.
    let again = reqwest_post(
        &format!("{}/api/v1/releases", t.url),
        history_envelope(&t, 6).await,
    )
    .await;
    assert_eq!(again.0, 200, "{}", again.1);
    let a: vdb_proto::ReleaseAccepted = serde_json::from_str(&again.1).unwrap();
    assert_eq!(a.release_id, m.databases["test"].release);
    // Metrics count the verdicts.
    let metrics = reqwest_get(&format!("{}/metrics", t.url)).await;
    assert!(
        metrics.contains("vdb_master_releases_total{verdict=\"accepted\",code=\"ok\"} 6"),
        "{metrics}"
    );
    assert!(metrics.contains("code=\"equivocation\""));
    assert!(
        metrics.contains("vdb_master_uploads_total{result=\"ok\"}"),
        "{metrics}"
    );
    t.stop().await;
}

async fn history_envelope(t: &T, version: u32) -> String {
    t.admin()
        .history(100)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.verdict == "accepted" && r.version == version)
        .unwrap()
        .envelope
}

async fn reqwest_post(url: &str, body: String) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn reqwest_get(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn old_cdiffs_are_pruned() {
    let t = T::start(|c| c.keep_cdiffs = 2).await;
    for v in 1..=6 {
        t.publish(&release(v)).await.unwrap();
    }
    let m = t.manifest().await;
    let cdiffs: Vec<&str> = m
        .files
        .iter()
        .map(|f| f.name.as_str())
        .filter(|n| n.ends_with(".cdiff"))
        .collect();
    assert_eq!(cdiffs, ["test-5.cdiff", "test-6.cdiff"]);
    t.stop().await;
}

async fn expect_refused(
    t: &T,
    what: &str,
    code: &str,
    r: Result<vdb_proto::ReleaseAccepted, PublishError>,
    before: &(String, Vec<String>),
) {
    match r {
        Err(PublishError::Refused { error, .. }) => {
            assert_eq!(error.code, code, "{what}: {}", error.message);
            assert!(!error.message.is_empty());
        }
        other => panic!("{what}: expected refusal {code}, got {other:?}"),
    }
    assert_eq!(
        &t.manifest_json().await,
        &before.0,
        "{what}: manifest changed"
    );
    assert_eq!(
        &t.accepted().await,
        &before.1,
        "{what}: history of accepted releases changed"
    );
}

#[tokio::test]
async fn every_tamper_case_is_refused_with_its_reason_and_changes_nothing() {
    let t = T::start(|c| c.max_file_size = 20_000).await;
    t.publish(&release(1)).await.unwrap();
    t.publish(&release(2)).await.unwrap();
    t.clock.advance(1);
    let before = (t.manifest_json().await, t.accepted().await);
    let tmp = tempfile::tempdir().unwrap();
    let refused_before = t.admin().history(1000).await.unwrap().len();

    // A tampered byte inside the CVD (re-hashed, so only native verification can see it).
    let mut cvd = std::fs::read(fixture("test-3.cvd")).unwrap();
    let n = cvd.len();
    cvd[n - 100] ^= 0x55;
    std::fs::write(tmp.path().join("tampered.cvd"), &cvd).unwrap();
    let files = vec![
        file("test.cvd", tmp.path().join("tampered.cvd")),
        file("test-3.cdiff", fixture("test-3.cdiff")),
    ];
    let info = ReleaseInfo {
        db: "test".into(),
        version: 3,
        built_at: 1,
    };
    expect_refused(
        &t,
        "tampered byte",
        "bad_container",
        t.publish_as(&t.publisher, &files, Some(info)).await,
        &before,
    )
    .await;

    // A tampered cdiff.
    let mut cd = std::fs::read(fixture("test-3.cdiff")).unwrap();
    cd[40] ^= 0x01;
    std::fs::write(tmp.path().join("bad.cdiff"), &cd).unwrap();
    let files = vec![
        file("test.cvd", fixture("test-3.cvd")),
        file("test-3.cdiff", tmp.path().join("bad.cdiff")),
    ];
    expect_refused(
        &t,
        "tampered cdiff",
        "bad_cdiff",
        t.publish(&files).await,
        &before,
    )
    .await;

    // A key that may publish other databases only.
    expect_refused(
        &t,
        "wrong key",
        "key_not_allowed",
        t.publish_as(&t.daily_only, &release(3), None).await,
        &before,
    )
    .await;
    // A key nobody listed (refused already at the upload).
    let stranger = SecretKey::from_seed([3; 32]);
    expect_refused(
        &t,
        "unknown key",
        "unknown_key",
        t.publish_as(&stranger, &release(3), None).await,
        &before,
    )
    .await;
    // An older version.
    expect_refused(
        &t,
        "older version",
        "older_version",
        t.publish(&release(1)).await,
        &before,
    )
    .await;
    // The same version with other bytes.
    let files = vec![
        file("test.cvd", fixture("test-2.cvd")),
        file("test-2.cvd.sign", fixture("test-2.cvd.sign")),
    ];
    expect_refused(
        &t,
        "equivocation",
        "equivocation",
        t.publish(&files).await,
        &before,
    )
    .await;
    // A file over the size limit (refused at the upload already).
    std::fs::write(tmp.path().join("big.ndb"), vec![b'a'; 30_000]).unwrap();
    let files = vec![file("test.ndb", tmp.path().join("big.ndb"))];
    let info = ReleaseInfo {
        db: "test".into(),
        version: 3,
        built_at: 1,
    };
    expect_refused(
        &t,
        "oversized",
        "too_large",
        t.publish_as(&t.publisher, &files, Some(info)).await,
        &before,
    )
    .await;
    // An unsafe name.
    let files = vec![file("../test.cvd", fixture("test-3.cvd"))];
    let info = ReleaseInfo {
        db: "test".into(),
        version: 3,
        built_at: 1,
    };
    expect_refused(
        &t,
        "unsafe name",
        "unsafe_name",
        t.publish_as(&t.publisher, &files, Some(info)).await,
        &before,
    )
    .await;
    // A name of another database.
    let files = vec![file("daily.cvd", fixture("test-3.cvd"))];
    let info = ReleaseInfo {
        db: "test".into(),
        version: 3,
        built_at: 1,
    };
    expect_refused(
        &t,
        "foreign name",
        "unsafe_name",
        t.publish_as(&t.publisher, &files, Some(info)).await,
        &before,
    )
    .await;
    // A plain signature file where none is allowed.
    std::fs::write(tmp.path().join("x.ndb"), b"Sig:0:*:414243\n").unwrap();
    let files = vec![file("test.ndb", tmp.path().join("x.ndb"))];
    let info = ReleaseInfo {
        db: "test".into(),
        version: 3,
        built_at: 1,
    };
    expect_refused(
        &t,
        "plain file",
        "file_not_allowed",
        t.publish_as(&t.publisher, &files, Some(info)).await,
        &before,
    )
    .await;
    // A cdiff chain with a gap.
    let files = vec![
        file("test.cvd", fixture("test-4.cvd")),
        file("test-4.cdiff", fixture("test-4.cdiff")),
    ];
    expect_refused(
        &t,
        "cdiff gap",
        "cdiff_chain",
        t.publish(&files).await,
        &before,
    )
    .await;
    // A CVD whose header version is not the statement's.
    let files = vec![file("test.cvd", fixture("test-4.cvd"))];
    let info = ReleaseInfo {
        db: "test".into(),
        version: 3,
        built_at: 1,
    };
    expect_refused(
        &t,
        "version mismatch",
        "version_mismatch",
        t.publish_as(&t.publisher, &files, Some(info)).await,
        &before,
    )
    .await;
    // A release of a CVD database without its CVD.
    let files = vec![file("test-3.cvd.sign", fixture("test-3.cvd.sign"))];
    let info = ReleaseInfo {
        db: "test".into(),
        version: 3,
        built_at: 1,
    };
    expect_refused(
        &t,
        "no container",
        "missing_container",
        t.publish_as(&t.publisher, &files, Some(info)).await,
        &before,
    )
    .await;
    // A statement whose build time is not the CVD's.
    let info = ReleaseInfo {
        db: "test".into(),
        version: 3,
        built_at: 1,
    };
    expect_refused(
        &t,
        "built_at",
        "built_at_mismatch",
        t.publish_as(&t.publisher, &release(3), Some(info)).await,
        &before,
    )
    .await;
    // A replayed (old) statement: signed an hour ago.
    let p = Publisher::new(vec![t.url.clone()], t.publisher.clone())
        .with_clock(Arc::new(ManualClock::new(t.clock.now() - 3600)));
    let files = release(3);
    let (st, env) = p
        .statement(
            &vdb_master::client::infer(&files, None, None).unwrap(),
            &files,
            "",
        )
        .unwrap();
    // Upload with fresh tickets, then send the old statement.
    let fresh = Publisher::new(vec![t.url.clone()], t.publisher.clone())
        .with_clock(Arc::new(t.clock.clone()));
    let (fst, fenv) = fresh
        .statement(
            &vdb_master::client::infer(&files, None, None).unwrap(),
            &files,
            "",
        )
        .unwrap();
    drop((fst, fenv));
    let r = reqwest_post(&format!("{}/api/v1/releases", t.url), env.to_json()).await;
    assert_eq!(r.0, 409, "{}", r.1);
    let e: vdb_proto::ApiError = serde_json::from_str(&r.1).unwrap();
    assert!(e.code == "replay" || e.code == "missing_object", "{e:?}");
    drop(st);
    // A statement with a broken signature.
    let good = env.to_json();
    let bad = good.replace("\\\"version\\\":3", "\\\"version\\\":7");
    assert_ne!(bad, good);
    let r = reqwest_post(&format!("{}/api/v1/releases", t.url), bad).await;
    assert_eq!(r.0, 403, "{}", r.1);
    assert!(r.1.contains("bad_signature"));
    // Garbage.
    let r = reqwest_post(&format!("{}/api/v1/releases", t.url), "{not json".into()).await;
    assert_eq!(r.0, 400);
    assert_eq!(&t.manifest_json().await, &before.0);
    assert_eq!(&t.accepted().await, &before.1);

    // Refusals are recorded in the history.
    let hist = t.admin().history(1000).await.unwrap();
    let codes: Vec<String> = hist.iter().filter_map(|r| r.code.clone()).collect();
    for c in [
        "bad_container",
        "bad_cdiff",
        "key_not_allowed",
        "older_version",
        "equivocation",
        "unsafe_name",
        "file_not_allowed",
        "cdiff_chain",
        "version_mismatch",
    ] {
        assert!(codes.iter().any(|x| x == c), "{c} not recorded: {codes:?}");
    }
    assert!(hist.len() > refused_before);
    // A broken signature and garbage prove nobody: counted, not recorded.
    for c in ["bad_signature", "bad_statement"] {
        assert!(!codes.iter().any(|x| x == c), "{c} recorded: {codes:?}");
    }
    assert!(t.status().await.unrecorded_refusals >= 2);
    // The chain still goes on after all that.
    t.publish(&release(3)).await.unwrap();
    assert_eq!(t.manifest().await.databases["test"].version, 3);
    t.stop().await;
}

#[tokio::test]
async fn replayed_statement_is_refused() {
    let t = T::start(|_| {}).await;
    t.publish(&release(1)).await.unwrap();
    // The statement of v2 made and uploaded now, sent after the window has passed.
    let p = Publisher::new(vec![t.url.clone()], t.publisher.clone())
        .with_clock(Arc::new(t.clock.clone()));
    let files = release(2);
    let (st, env) = p
        .statement(
            &vdb_master::client::infer(&files, None, None).unwrap(),
            &files,
            "",
        )
        .unwrap();
    drop(st);
    t.clock.advance(3600);
    let before = (t.manifest_json().await, t.accepted().await);
    let r = reqwest_post(&format!("{}/api/v1/releases", t.url), env.to_json()).await;
    assert_eq!(r.0, 409, "{}", r.1);
    assert!(r.1.contains("\"replay\""), "{}", r.1);
    assert_eq!(t.manifest_json().await, before.0);
    assert_eq!(t.accepted().await, before.1);
    // An accepted statement re-sent long after is a replay too.
    let old = history_envelope(&t, 1).await;
    let r = reqwest_post(&format!("{}/api/v1/releases", t.url), old).await;
    assert_eq!(r.0, 409, "{}", r.1);
    assert!(r.1.contains("\"replay\""));
    t.stop().await;
}

/// Builds a CVD of database `synth` with the given members, signed with `keys`.
fn synth_cvd(keys: &vdb_sign::PrivateKeySet, version: u32, ndb: &str) -> Vec<u8> {
    use vdb_format::container::Kind;
    let spec = vdb_format::BuildSpec {
        db_name: "synth".into(),
        kind: Kind::Cvd,
        version,
        flevel: 90,
        builder: "test".into(),
        build_secs: 1_700_000_000 + u64::from(version),
        signatures: None,
        engine_flevel: 216,
    };
    let mut files = std::collections::BTreeMap::new();
    files.insert("COPYING".to_owned(), b"test\n".to_vec());
    files.insert("synth.ndb".to_owned(), ndb.as_bytes().to_vec());
    vdb_format::build::build(&spec, &files, Some(keys))
        .unwrap()
        .0
}

#[tokio::test]
async fn cdiff_that_does_not_produce_the_new_cvd_is_refused() {
    use vdb_format::container::{self, Kind, Limits};
    let keys = vdb_sign::deterministic_keys("synth-test", 7).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ks = tmp.path().join("keys.txt");
    std::fs::write(&ks, keys.public().to_text()).unwrap();
    let t = T::start(|c| {
        c.databases.insert(
            "synth".into(),
            vdb_master::config::DbConfig {
                keyset_file: Some(ks.clone()),
                ..Default::default()
            },
        );
    })
    .await;
    let v1 = synth_cvd(&keys, 1, "A:0:*:41414141\n");
    let v2 = synth_cvd(&keys, 2, "B:0:*:42424242\n");
    let v2_other = synth_cvd(&keys, 2, "C:0:*:43434343\n");
    let pk = keys.public();
    let map = |b: &[u8]| {
        container::read_to_map(b, Kind::Cvd, &pk, &Limits::default())
            .unwrap()
            .1
    };
    let script = vdb_format::cdiff::diff(&map(&v1), &map(&v2_other)).unwrap();
    let wrong = vdb_format::cdiff::Cdiff::write(2, script.to_text().as_bytes(), |d| {
        vdb_format::Signer::sign_cdiff(&keys, d)
    })
    .unwrap();
    let script = vdb_format::cdiff::diff(&map(&v1), &map(&v2)).unwrap();
    let right = vdb_format::cdiff::Cdiff::write(2, script.to_text().as_bytes(), |d| {
        vdb_format::Signer::sign_cdiff(&keys, d)
    })
    .unwrap();
    for (n, b) in [
        ("v1.cvd", &v1),
        ("v2.cvd", &v2),
        ("wrong.cdiff", &wrong),
        ("right.cdiff", &right),
    ] {
        std::fs::write(tmp.path().join(n), b).unwrap();
    }
    t.publish(&[file("synth.cvd", tmp.path().join("v1.cvd"))])
        .await
        .unwrap();
    let before = (t.manifest_json().await, t.accepted().await);
    let files = [
        file("synth.cvd", tmp.path().join("v2.cvd")),
        file("synth-2.cdiff", tmp.path().join("wrong.cdiff")),
    ];
    expect_refused(
        &t,
        "cdiff mismatch",
        "cdiff_mismatch",
        t.publish(&files).await,
        &before,
    )
    .await;
    // Official-key fixtures do not verify under this network's own key set.
    let files = [file("synth.cvd", fixture("test-2.cvd"))];
    let info = ReleaseInfo {
        db: "synth".into(),
        version: 2,
        built_at: 1,
    };
    expect_refused(
        &t,
        "wrong key set",
        "bad_container",
        t.publish_as(&t.publisher, &files, Some(info)).await,
        &before,
    )
    .await;
    let files = [
        file("synth.cvd", tmp.path().join("v2.cvd")),
        file("synth-2.cdiff", tmp.path().join("right.cdiff")),
    ];
    t.publish(&files).await.unwrap();
    assert_eq!(t.manifest().await.databases["synth"].version, 2);
    t.stop().await;
}

async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn heartbeat_resigns_with_a_fresh_timestamp_and_restart_serves_the_same_manifest() {
    let dir_keep;
    let t = T::start(|c| c.heartbeat_secs = 100).await;
    t.publish(&release(1)).await.unwrap();
    let m1 = t.manifest().await;
    t.clock.advance(50);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        t.manifest().await.serial,
        m1.serial,
        "no heartbeat before it is due"
    );
    t.clock.advance(60);
    wait_for("heartbeat", || async {
        t.manifest().await.serial > m1.serial
    })
    .await;
    let m2 = t.manifest().await;
    assert_eq!(m2.databases, m1.databases);
    assert_ne!(m2.file("timestamp"), m1.file("timestamp"));
    assert_eq!(m2.issued_at, t.clock.now());
    assert_eq!(m2.expires_at, m2.issued_at + 400);
    // Restart: the persisted manifest is served as it was.
    let json = reqwest_get(&format!("{}{}", t.url, vdb_proto::MANIFEST_PATH)).await;
    let T { _dir, running, .. } = t;
    running.unwrap().shutdown().await;
    dir_keep = _dir;
    let key_file = dir_keep.path().join("master.key");
    let mut c = Config::new("a", "testnet", dir_keep.path().join("data"), key_file);
    c.heartbeat_secs = 100;
    let clock = ManualClock::new(m2.issued_at + 1);
    let r = vdb_master::start(c, Arc::new(clock)).await.unwrap();
    let again = reqwest_get(&format!(
        "http://{}{}",
        r.http_addr(),
        vdb_proto::MANIFEST_PATH
    ))
    .await;
    assert_eq!(again, json);
    r.shutdown().await;
}

#[tokio::test]
async fn registry_admin_api() {
    let t = T::start(|_| {}).await;
    let admin = t.admin();
    let mut rec = vdb_proto::MirrorRecord::new("m1", "http://127.0.0.1:1");
    rec.country = Some("DE".into());
    rec.admin_contact = Some("admin@m1.example".into());
    admin.add(&rec).await.unwrap();
    // The admin's e-mail address is for trusted readers (admin or pull token) only.
    for path in ["/api/v1/mirrors", "/api/v1/mirrors/m1", "/api/v1/registry"] {
        let public = reqwest_get(&format!("{}{path}", t.url)).await;
        assert!(
            public.contains("DE") && !public.contains("admin@m1"),
            "{path}: {public}"
        );
        let trusted = reqwest::Client::new()
            .get(format!("{}{path}", t.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(trusted.contains("admin@m1.example"), "{path}: {trusted}");
    }
    let mut public_rec = rec.clone();
    public_rec.admin_contact = None;
    assert!(admin.add(&rec).await.is_err(), "duplicate add refused");
    let no_token = Admin::new(&t.url, None);
    assert!(
        matches!(no_token.add(&vdb_proto::MirrorRecord::new("m2", "http://x")).await, Err(vdb_master::client::AdminError::Api(e)) if e.code == "no_token")
    );
    let wrong = Admin::new(&t.url, Some("wrong-token-wrong-token".into()));
    assert!(
        matches!(wrong.remove("m1").await, Err(vdb_master::client::AdminError::Api(e)) if e.code == "bad_token")
    );
    let bad = vdb_proto::MirrorRecord::new("../m", "http://x");
    assert!(admin.add(&bad).await.is_err());
    assert_eq!(no_token.list().await.unwrap(), vec![public_rec]);
    assert_eq!(admin.list().await.unwrap(), vec![rec.clone()]);
    rec.bandwidth_mbps = 1000;
    rec.maintenance.push(vdb_proto::MaintenanceWindow {
        start: 1,
        end: 2,
        reason: "disk".into(),
    });
    admin.update(&rec).await.unwrap();
    assert_eq!(admin.show("m1").await.unwrap(), rec);
    assert!(admin.drain("m1", true).await.unwrap().drained);
    assert!(admin.show("m1").await.unwrap().drained);
    assert!(!admin.drain("m1", false).await.unwrap().drained);
    admin.remove("m1").await.unwrap();
    assert!(admin.show("m1").await.is_err());
    assert!(admin.list().await.unwrap().is_empty());
    // A removed name can be registered again.
    admin.add(&rec).await.unwrap();
    assert_eq!(admin.list().await.unwrap().len(), 1);
    t.stop().await;
}

#[tokio::test]
async fn objects_need_a_pull_token_when_configured() {
    let t = T::start(|c| c.pull_tokens = vec!["pull-token-0123456789".into()]).await;
    t.publish(&release(1)).await.unwrap();
    let m = t.manifest().await;
    let sha = &m.file("test.cvd").unwrap().sha256;
    let url = format!("{}/api/v1/objects/{sha}", t.url);
    let c = reqwest::Client::new();
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    let r = c.get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(&url)
        .bearer_auth("pull-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(vdb_proto::sha256_hex(&r.bytes().await.unwrap()), *sha);
    // Range (a CVD header) and HEAD work on objects.
    let r = c
        .get(&url)
        .bearer_auth("pull-token-0123456789")
        .header("range", "bytes=0-511")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    let head = r.bytes().await.unwrap();
    assert_eq!(head.len(), 512);
    assert!(head.starts_with(b"ClamAV-VDB:"));
    let r = c
        .head(&url)
        .bearer_auth("pull-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        m.file("test.cvd").unwrap().size.to_string().as_str()
    );
    // Uploads without a valid ticket are refused.
    let r = c.put(&url).body("x").send().await.unwrap();
    assert_eq!(r.status(), 401);
    t.stop().await;
}

#[tokio::test]
async fn a_rotated_master_key_signs_above_the_old_serial() {
    let t = T::start(|_| {}).await;
    t.publish(&release(1)).await.unwrap();
    let old = t.manifest().await;
    let T {
        _dir: dir, running, ..
    } = t;
    running.unwrap().shutdown().await;
    let new_key = SecretKey::from_seed([77; 32]);
    let key_file = dir.path().join("master.key");
    std::fs::write(&key_file, new_key.to_text()).unwrap();
    let c = Config::new("a", "testnet", dir.path().join("data"), key_file);
    let r = vdb_master::start(c, Arc::new(ManualClock::new(SystemClock.now())))
        .await
        .unwrap();
    let m = Admin::new(&r.base_url(), None)
        .manifest(&[new_key.public()])
        .await
        .unwrap();
    assert!(m.serial > old.serial);
    assert_eq!(m.databases, old.databases);
    r.shutdown().await;
}

/// The bytes of every file under `dir`.
fn tree_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        n += if m.is_dir() {
            tree_bytes(&e.path())
        } else {
            m.len()
        };
    }
    n
}

#[tokio::test]
async fn statements_of_strangers_leave_no_trace() {
    let t = T::start(|_| {}).await;
    t.publish(&release(1)).await.unwrap();
    let data = t._dir.path().join("data");
    let before_bytes = tree_bytes(&data);
    let before = (t.manifest_json().await, t.accepted().await);
    let rows_before = t.admin().history(1000).await.unwrap().len();
    // 200 statements of about 1 MB (just under the body limit), each signed by a fresh key
    // no master knows.
    let notes = "x".repeat(1_000_000);
    let http = reqwest::Client::new();
    for i in 0..200u32 {
        let st = vdb_proto::ReleaseStatement {
            db: "test".into(),
            version: 2 + i,
            built_at: 1,
            issued_at: t.clock.now(),
            files: vec![vdb_proto::FileRef {
                name: "test.cvd".into(),
                size: 1,
                sha256: "0".repeat(64),
            }],
            notes: notes.clone(),
        };
        let body = vdb_proto::Signed::sign(&st, &SecretKey::generate()).to_json();
        assert!(
            body.len() > 1_000_000 && body.len() < 1 << 20,
            "{}",
            body.len()
        );
        let r = http
            .post(format!("{}/api/v1/releases", t.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let e: vdb_proto::ApiError = r.json().await.unwrap();
        assert_eq!(e.error_code(), Some(vdb_proto::ErrorCode::UnknownKey));
        assert!(e.message.len() < 200, "{}", e.message);
    }
    let after_bytes = tree_bytes(&data);
    println!(
        "data dir: {before_bytes} bytes before, {after_bytes} bytes after 200 statements of 1 MB by unknown keys"
    );
    assert!(
        after_bytes < before_bytes + (64 << 10),
        "the data dir grew from {before_bytes} to {after_bytes} bytes"
    );
    assert_eq!(t.admin().history(1000).await.unwrap().len(), rows_before);
    assert_eq!(t.status().await.unrecorded_refusals, 200);
    let metrics = reqwest_get(&format!("{}/metrics", t.url)).await;
    assert!(
        metrics.contains("vdb_master_refusals_unrecorded_total{code=\"unknown_key\"} 200"),
        "{metrics}"
    );
    assert_eq!(t.manifest_json().await, before.0);
    assert_eq!(t.accepted().await, before.1);
    t.stop().await;
}

#[tokio::test]
async fn history_answers_in_bounded_pages() {
    let t = T::start(|_| {}).await;
    t.publish(&release(1)).await.unwrap();
    // 250 recorded refusals: a publisher key asking for a database it may not publish.
    let http = reqwest::Client::new();
    for i in 0..250u32 {
        let st = vdb_proto::ReleaseStatement {
            db: "test".into(),
            version: 2 + i,
            built_at: 1,
            issued_at: t.clock.now(),
            files: vec![vdb_proto::FileRef {
                name: "test.cvd".into(),
                size: 1,
                sha256: "0".repeat(64),
            }],
            notes: String::new(),
        };
        let body = vdb_proto::Signed::sign(&st, &t.daily_only).to_json();
        let r = http
            .post(format!("{}/api/v1/releases", t.url))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let page: Vec<vdb_proto::ReleaseRow> =
        serde_json::from_str(&reqwest_get(&format!("{}/api/v1/history?limit=1000", t.url)).await)
            .unwrap();
    assert_eq!(page.len(), 200, "one page is at most 200 rows");
    assert!(page.windows(2).all(|w| w[0].seq > w[1].seq), "newest first");
    let last = page.last().unwrap().seq;
    let next: Vec<vdb_proto::ReleaseRow> = serde_json::from_str(
        &reqwest_get(&format!(
            "{}/api/v1/history?limit=1000&before={last}",
            t.url
        ))
        .await,
    )
    .unwrap();
    assert_eq!(
        next.len(),
        51,
        "the rest: 50 refusals and the accepted release"
    );
    assert!(next.iter().all(|r| r.seq < last));
    assert_eq!(next.last().unwrap().verdict, "accepted");
    t.stop().await;
}

#[tokio::test]
async fn names_follow_the_serving_layout() {
    let star = SecretKey::from_seed([7; 32]);
    let t = T::start(|c| {
        c.publishers.push(vdb_master::config::PublisherConfig {
            key: star.public(),
            databases: vec!["*".into()],
        });
        c.databases.insert(
            "test".into(),
            vdb_master::config::DbConfig {
                containers: vec!["cvd".into(), "cld".into()],
                ..Default::default()
            },
        );
    })
    .await;
    t.publish(&release(1)).await.unwrap();
    t.publish(&release(2)).await.unwrap();
    let before = (t.manifest_json().await, t.accepted().await);
    let info = || {
        Some(ReleaseInfo {
            db: "test".into(),
            version: 3,
            built_at: 1,
        })
    };
    let cases: Vec<(&str, &str, Vec<ReleaseFile>)> = vec![
        // The `daily-27100.cvd` with `--db daily` case: mirrors would stop serving test.cvd.
        (
            "numbered container",
            "unsafe_name",
            vec![
                file("test-3.cvd", fixture("test-3.cvd")),
                file("test-3.cdiff", fixture("test-3.cdiff")),
            ],
        ),
        (
            "container in capitals",
            "unsafe_name",
            vec![file("test.CVD", fixture("test-3.cvd"))],
        ),
        (
            "cdiff past the release's version",
            "unsafe_name",
            vec![
                file("test.cvd", fixture("test-3.cvd")),
                file("test-4.cdiff", fixture("test-4.cdiff")),
            ],
        ),
        (
            "cdiff with a leading zero",
            "unsafe_name",
            vec![
                file("test.cvd", fixture("test-3.cvd")),
                file("test-03.cdiff", fixture("test-3.cdiff")),
            ],
        ),
        (
            ".sign of another version",
            "unsafe_name",
            vec![
                file("test.cvd", fixture("test-3.cvd")),
                file("test-3.cdiff", fixture("test-3.cdiff")),
                file("test-2.cvd.sign", fixture("test-2.cvd.sign")),
            ],
        ),
        (
            ".sign of a file the release does not bring",
            "unsafe_name",
            vec![
                file("test.cvd", fixture("test-3.cvd")),
                file("test-2.cdiff.sign", fixture("test-2.cdiff.sign")),
            ],
        ),
        (
            ".sign not named for a file",
            "unsafe_name",
            vec![
                file("test.cvd", fixture("test-3.cvd")),
                file("test.cvd.sign", fixture("test-3.cvd.sign")),
            ],
        ),
        (
            "a kind of container the database does not allow",
            "file_not_allowed",
            vec![file("test.cud", fixture("test-3.cvd"))],
        ),
        (
            "a CLD where mirrors serve test.cvd",
            "container_kind",
            vec![file("test.cld", fixture("test-3.cvd"))],
        ),
    ];
    for (what, code, files) in cases {
        expect_refused(
            &t,
            what,
            code,
            t.publish_as(&t.publisher, &files, info()).await,
            &before,
        )
        .await;
    }
    // A database name that reads as a numbered file of another one.
    let files = [file("synth-3.cvd", fixture("test-3.cvd"))];
    let info = ReleaseInfo {
        db: "synth-3".into(),
        version: 3,
        built_at: 1,
    };
    expect_refused(
        &t,
        "database name ending in a number",
        "unsafe_name",
        t.publish_as(&star, &files, Some(info)).await,
        &before,
    )
    .await;
    // The layout's own names pass: the CVD, its cdiff, and the .sign files named for them.
    t.publish(&[
        file("test.cvd", fixture("test-3.cvd")),
        file("test-3.cdiff", fixture("test-3.cdiff")),
        file("test-3.cvd.sign", fixture("test-3.cvd.sign")),
        file("test-3.cdiff.sign", fixture("test-3.cdiff.sign")),
    ])
    .await
    .unwrap();
    assert_eq!(t.manifest().await.databases["test"].version, 3);
    t.stop().await;
}
