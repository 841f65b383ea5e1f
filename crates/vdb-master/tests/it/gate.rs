//! The verification gate end to end through the HTTP API of an in-process master: the ClamAV
//! fixture chain, every refusal with its reason, nothing changed by a refusal.

use std::path::{Path, PathBuf};

use vdb_master::client::{Admin, Progress, PublishError, Publisher, ReleaseFile, ReleaseInfo};
use vdb_master::{Config, Running};
use vdb_proto::{Clock, Manifest, ManualClock, PublicKey, ReleaseAccepted, SecretKey, SystemClock};
use vdb_testkit::http::get_text;

use crate::harness::{
    TOKEN, bogus_statement, config, daily_only, fixture, post, publish_as, publisher_key, release,
    start,
};

struct T {
    dir: tempfile::TempDir,
    running: Option<Running>,
    clock: ManualClock,
    master_key: PublicKey,
    url: String,
}

impl T {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), "a", 9);
        tweak(&mut c);
        let clock = ManualClock::new(SystemClock.now());
        let running = start(c, &clock).await;
        let url = running.base_url();
        Self {
            dir,
            running: Some(running),
            clock,
            master_key: crate::harness::public(9),
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
        get_text(&format!("{}{}", self.url, vdb_proto::MANIFEST_PATH)).await
    }

    async fn publish_as(
        &self,
        key: &SecretKey,
        files: &[ReleaseFile],
        info: Option<ReleaseInfo>,
    ) -> Result<ReleaseAccepted, PublishError> {
        publish_as(&self.url, &self.clock, key, files, info).await
    }

    async fn publish(&self, files: &[ReleaseFile]) -> Result<ReleaseAccepted, PublishError> {
        self.publish_as(&publisher_key(), files, None).await
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

    /// What a refusal must leave unchanged: the manifest and the accepted releases.
    async fn state(&self) -> (String, Vec<String>) {
        (self.manifest_json().await, self.accepted().await)
    }

    async fn status(&self) -> vdb_master::Status {
        crate::harness::status(&self.url).await
    }

    async fn post_release(&self, body: String) -> (u16, String) {
        post(&format!("{}/api/v1/releases", self.url), body).await
    }

    /// Shuts the master down; its directory stays.
    async fn stop(mut self) -> tempfile::TempDir {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.dir
    }

    /// Asserts that publishing `files` (as `key`, with `info`) is refused with `code` and
    /// changes neither the manifest nor the accepted releases.
    async fn expect_refused(
        &self,
        what: &str,
        code: &str,
        key: &SecretKey,
        files: &[ReleaseFile],
        info: Option<ReleaseInfo>,
        before: &(String, Vec<String>),
    ) {
        match self.publish_as(key, files, info).await {
            Err(PublishError::Refused { error, .. }) => {
                assert_eq!(error.code, code, "{what}: {}", error.message);
                assert!(!error.message.is_empty());
            }
            other => panic!("{what}: expected refusal {code}, got {other:?}"),
        }
        assert_eq!(
            &self.state().await,
            before,
            "{what}: manifest or history changed"
        );
    }
}

fn file(name: &str, path: PathBuf) -> ReleaseFile {
    ReleaseFile {
        name: name.into(),
        path,
    }
}

/// A refusal case: what, the expected code, the signer, the files, the claims if not inferred.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a SecretKey,
    Vec<ReleaseFile>,
    Option<ReleaseInfo>,
);

/// Release files: (name, fixture) pairs.
fn fx(list: &[(&str, &str)]) -> Vec<ReleaseFile> {
    list.iter().map(|(n, f)| file(n, fixture(f))).collect()
}

/// A statement's claims, given instead of inferred.
fn info(db: &str, version: u32) -> Option<ReleaseInfo> {
    Some(ReleaseInfo {
        db: db.into(),
        version,
        built_at: 1,
    })
}

/// The text of an object of the manifest.
async fn object_text(admin: &Admin, m: &Manifest, name: &str) -> String {
    String::from_utf8(admin.object(&m.file(name).unwrap().sha256).await.unwrap()).unwrap()
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
    let p = Publisher::new(vec![t.url.clone()], publisher_key())
        .with_clock(std::sync::Arc::new(t.clock.clone()));
    let files = release(6);
    let inferred = vdb_master::client::infer(&files, None, None).unwrap();
    let (st, env) = p.statement(&inferred, &files, "").unwrap();
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
    let sums = object_text(&admin, &m, "SHA256SUMS").await;
    assert!(
        sums.contains(&format!("{}  test.cvd\n", vdb_proto::sha256_hex(&cvd))),
        "{sums}"
    );
    assert_eq!(sums.lines().count(), 6);
    let md5 = object_text(&admin, &m, "MD5SUMS").await;
    assert!(
        md5.contains("  test-2.cdiff\n")
            && md5
                .lines()
                .all(|l| l.split("  ").next().unwrap().len() == 32)
    );
    let txt = object_text(&admin, &m, "dns.txt").await;
    let rec = vdb_format::dnstxt::CurrentRecord::parse(txt.trim()).unwrap();
    assert_eq!(rec.time, m.issued_at);
    let ts = object_text(&admin, &m, "timestamp").await;
    assert_eq!(ts.trim(), m.issued_at.to_string());
    assert!(m.expires_at > m.issued_at);
    // Unreleased objects are not served.
    assert!(admin.object(&"0".repeat(64)).await.is_err());
    // Identical statement re-sent: same id.
    let again = t.post_release(history_envelope(&t, 6).await).await;
    assert_eq!(again.0, 200, "{}", again.1);
    let a: ReleaseAccepted = serde_json::from_str(&again.1).unwrap();
    assert_eq!(a.release_id, m.databases["test"].release);
    // Metrics count the verdicts.
    let metrics = crate::harness::metrics(&t.url).await;
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

/// A copy of fixture `name` with the byte at `at` (from the end if negative) flipped by `mask`.
fn tampered(dir: &Path, name: &str, at: isize, mask: u8) -> PathBuf {
    let mut data = std::fs::read(fixture(name)).unwrap();
    let i = if at < 0 {
        data.len() - at.unsigned_abs()
    } else {
        at.unsigned_abs()
    };
    data[i] ^= mask;
    let out = dir.join(format!("tampered-{name}"));
    std::fs::write(&out, data).unwrap();
    out
}

/// A copy of fixture `name` with one byte appended.
fn trailing(dir: &Path, name: &str) -> PathBuf {
    let mut data = std::fs::read(fixture(name)).unwrap();
    data.push(0);
    let out = dir.join(format!("trailing-{name}"));
    std::fs::write(&out, data).unwrap();
    out
}

#[tokio::test]
async fn every_tamper_case_is_refused_with_its_reason_and_changes_nothing() {
    let t = T::start(|c| c.max_file_size = 20_000).await;
    t.publish(&release(1)).await.unwrap();
    t.publish(&release(2)).await.unwrap();
    t.clock.advance(1);
    let before = t.state().await;
    let tmp = tempfile::tempdir().unwrap();
    let refused_before = t.admin().history(1000).await.unwrap().len();
    std::fs::write(tmp.path().join("big.ndb"), vec![b'a'; 30_000]).unwrap();
    std::fs::write(tmp.path().join("x.ndb"), b"Sig:0:*:414243\n").unwrap();
    let (publisher, daily, stranger) =
        (publisher_key(), daily_only(), SecretKey::from_seed([3; 32]));
    let cases: Vec<Case<'_>> = vec![
        // A tampered byte inside the CVD (re-hashed, so only native verification can see it).
        (
            "tampered byte",
            "bad_container",
            &publisher,
            vec![
                file("test.cvd", tampered(tmp.path(), "test-3.cvd", -100, 0x55)),
                file("test-3.cdiff", fixture("test-3.cdiff")),
            ],
            info("test", 3),
        ),
        // A byte after the gzip stream (outside what the inner tar and `.info` cover).
        (
            "trailing byte",
            "bad_container",
            &publisher,
            vec![
                file("test.cvd", trailing(tmp.path(), "test-3.cvd")),
                file("test-3.cdiff", fixture("test-3.cdiff")),
            ],
            None,
        ),
        (
            "tampered cdiff",
            "bad_cdiff",
            &publisher,
            vec![
                file("test.cvd", fixture("test-3.cvd")),
                file(
                    "test-3.cdiff",
                    tampered(tmp.path(), "test-3.cdiff", 40, 0x01),
                ),
            ],
            None,
        ),
        // A key that may publish other databases only.
        ("wrong key", "key_not_allowed", &daily, release(3), None),
        // A key nobody listed (refused already at the upload).
        ("unknown key", "unknown_key", &stranger, release(3), None),
        (
            "older version",
            "older_version",
            &publisher,
            release(1),
            None,
        ),
        // The same version with other bytes.
        (
            "equivocation",
            "equivocation",
            &publisher,
            fx(&[
                ("test.cvd", "test-2.cvd"),
                ("test-2.cvd.sign", "test-2.cvd.sign"),
            ]),
            None,
        ),
        // A file over the size limit (refused at the upload already).
        (
            "oversized",
            "too_large",
            &publisher,
            vec![file("test.ndb", tmp.path().join("big.ndb"))],
            info("test", 3),
        ),
        (
            "unsafe name",
            "unsafe_name",
            &publisher,
            fx(&[("../test.cvd", "test-3.cvd")]),
            info("test", 3),
        ),
        (
            "foreign name",
            "unsafe_name",
            &publisher,
            fx(&[("daily.cvd", "test-3.cvd")]),
            info("test", 3),
        ),
        // A plain signature file where none is allowed.
        (
            "plain file",
            "file_not_allowed",
            &publisher,
            vec![file("test.ndb", tmp.path().join("x.ndb"))],
            info("test", 3),
        ),
        // A cdiff chain with a gap.
        (
            "cdiff gap",
            "cdiff_chain",
            &publisher,
            fx(&[("test.cvd", "test-4.cvd"), ("test-4.cdiff", "test-4.cdiff")]),
            None,
        ),
        // A CVD whose header version is not the statement's.
        (
            "version mismatch",
            "version_mismatch",
            &publisher,
            fx(&[("test.cvd", "test-4.cvd")]),
            info("test", 3),
        ),
        // A release of a CVD database without its CVD.
        (
            "no container",
            "missing_container",
            &publisher,
            fx(&[("test-3.cvd.sign", "test-3.cvd.sign")]),
            info("test", 3),
        ),
        // A statement whose build time is not the CVD's.
        (
            "built_at",
            "built_at_mismatch",
            &publisher,
            release(3),
            info("test", 3),
        ),
    ];
    for (what, code, key, files, claims) in cases {
        t.expect_refused(what, code, key, &files, claims, &before)
            .await;
    }
    // A replayed (old) statement: signed an hour ago, sent after fresh uploads.
    let p = Publisher::new(vec![t.url.clone()], publisher_key())
        .with_clock(std::sync::Arc::new(ManualClock::new(t.clock.now() - 3600)));
    let files = release(3);
    let inferred = vdb_master::client::infer(&files, None, None).unwrap();
    let (_, env) = p.statement(&inferred, &files, "").unwrap();
    let fresh = Publisher::new(vec![t.url.clone()], publisher_key())
        .with_clock(std::sync::Arc::new(t.clock.clone()));
    drop(fresh.statement(&inferred, &files, "").unwrap());
    let r = t.post_release(env.to_json()).await;
    assert_eq!(r.0, 409, "{}", r.1);
    let e: vdb_proto::ApiError = serde_json::from_str(&r.1).unwrap();
    assert!(e.code == "replay" || e.code == "missing_object", "{e:?}");
    // A statement with a broken signature.
    let good = env.to_json();
    let bad = good.replace("\\\"version\\\":3", "\\\"version\\\":7");
    assert_ne!(bad, good);
    let r = t.post_release(bad).await;
    assert_eq!(r.0, 403, "{}", r.1);
    assert!(r.1.contains("bad_signature"));
    // Garbage.
    let r = t.post_release("{not json".into()).await;
    assert_eq!(r.0, 400);
    assert_eq!(t.state().await, before);

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
    let p = Publisher::new(vec![t.url.clone()], publisher_key())
        .with_clock(std::sync::Arc::new(t.clock.clone()));
    let files = release(2);
    let inferred = vdb_master::client::infer(&files, None, None).unwrap();
    let (_, env) = p.statement(&inferred, &files, "").unwrap();
    t.clock.advance(3600);
    let before = t.state().await;
    let r = t.post_release(env.to_json()).await;
    assert_eq!(r.0, 409, "{}", r.1);
    assert!(r.1.contains("\"replay\""), "{}", r.1);
    assert_eq!(t.state().await, before);
    // An accepted statement re-sent long after is a replay too.
    let r = t.post_release(history_envelope(&t, 1).await).await;
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
    let keys = vdb_testkit::keys::key_set("synth-test");
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
    let cdiff_to = |target: &[u8]| {
        let script = vdb_format::cdiff::diff(&map(&v1), &map(target)).unwrap();
        vdb_format::cdiff::Cdiff::write(2, script.to_text().as_bytes(), |d| {
            vdb_format::Signer::sign_cdiff(&keys, d)
        })
        .unwrap()
    };
    let (wrong, right) = (cdiff_to(&v2_other), cdiff_to(&v2));
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
    let before = t.state().await;
    let files = [
        file("synth.cvd", tmp.path().join("v2.cvd")),
        file("synth-2.cdiff", tmp.path().join("wrong.cdiff")),
    ];
    t.expect_refused(
        "cdiff mismatch",
        "cdiff_mismatch",
        &publisher_key(),
        &files,
        None,
        &before,
    )
    .await;
    // Official-key fixtures do not verify under this network's own key set.
    t.expect_refused(
        "wrong key set",
        "bad_container",
        &publisher_key(),
        &[file("synth.cvd", fixture("test-2.cvd"))],
        info("synth", 2),
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

#[tokio::test]
async fn heartbeat_resigns_with_a_fresh_timestamp_and_restart_serves_the_same_manifest() {
    let t = T::start(|c| c.heartbeat_secs = 100).await;
    t.publish(&release(1)).await.unwrap();
    let m1 = t.manifest().await;
    t.clock.advance(50);
    crate::harness::loops_saw(&t.url, t.clock.now()).await;
    assert_eq!(
        t.manifest().await.serial,
        m1.serial,
        "no heartbeat before it is due"
    );
    t.clock.advance(60);
    crate::harness::until("heartbeat", || async {
        t.manifest().await.serial > m1.serial
    })
    .await;
    let m2 = t.manifest().await;
    assert_eq!(m2.databases, m1.databases);
    assert_ne!(m2.file("timestamp"), m1.file("timestamp"));
    assert_eq!(m2.issued_at, t.clock.now());
    assert_eq!(m2.expires_at, m2.issued_at + 400);
    // Restart: the persisted manifest is served as it was.
    let json = t.manifest_json().await;
    let dir = t.stop().await;
    let mut c = config(dir.path(), "a", 9);
    c.heartbeat_secs = 100;
    let r = start(c, &ManualClock::new(m2.issued_at + 1)).await;
    let again = get_text(&format!("{}{}", r.base_url(), vdb_proto::MANIFEST_PATH)).await;
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
        let url = format!("{}{path}", t.url);
        let public = get_text(&url).await;
        assert!(
            public.contains("DE") && !public.contains("admin@m1"),
            "{path}: {public}"
        );
        let auth = format!("Bearer {TOKEN}");
        let (_, trusted) =
            vdb_testkit::http::call("GET", &url, &[("authorization", &auth)], None).await;
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
    const PULL: &str = "pull-token-0123456789";
    let t = T::start(|c| c.pull_tokens = vec![PULL.into()]).await;
    t.publish(&release(1)).await.unwrap();
    let m = t.manifest().await;
    let sha = &m.file("test.cvd").unwrap().sha256;
    let url = format!("{}/api/v1/objects/{sha}", t.url);
    let client = vdb_fetch::Client::builder("test").build().unwrap();
    // (status, body, Content-Length) of `method` with `token`, the first 512 bytes if `ranged`.
    let ask = |method, token: Option<&'static str>, ranged: bool| {
        let mut req = client.request(method, &url).bearer(token);
        if ranged {
            req = req.range(0, Some(511));
        }
        async move {
            match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let length = r
                        .header(vdb_fetch::header::CONTENT_LENGTH)
                        .map(str::to_owned);
                    let body = r.bytes(&vdb_fetch::Expect::at_most(1 << 20)).await.unwrap();
                    (status, body, length)
                }
                Err(e) => (e.status().map_or(0, |s| s.as_u16()), Vec::new(), None),
            }
        }
    };
    use vdb_fetch::Method;
    assert_eq!(ask(Method::GET, None, false).await.0, 401);
    assert_eq!(ask(Method::GET, Some("wrong"), false).await.0, 401);
    let (status, body, _) = ask(Method::GET, Some(PULL), false).await;
    assert_eq!(status, 200);
    assert_eq!(vdb_proto::sha256_hex(&body), *sha);
    // Range (a CVD header) and HEAD work on objects.
    let (status, head, _) = ask(Method::GET, Some(PULL), true).await;
    assert_eq!(status, 206);
    assert_eq!(head.len(), 512);
    assert!(head.starts_with(b"ClamAV-VDB:"));
    let (status, _, length) = ask(Method::HEAD, Some(PULL), false).await;
    assert_eq!(status, 200);
    assert_eq!(length, Some(m.file("test.cvd").unwrap().size.to_string()));
    // Uploads without a valid ticket are refused.
    let refused = client.put(&url).body("x").send().await.unwrap_err();
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(401));
    t.stop().await;
}

#[tokio::test]
async fn a_rotated_master_key_signs_above_the_old_serial() {
    let t = T::start(|_| {}).await;
    t.publish(&release(1)).await.unwrap();
    let old = t.manifest().await;
    let dir = t.stop().await;
    // The same data directory under a new master key.
    let c = config(dir.path(), "a", 77);
    let r = start(c, &ManualClock::new(SystemClock.now())).await;
    let m = Admin::new(&r.base_url(), None)
        .manifest(&[crate::harness::public(77)])
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
    let data = t.dir.path().join("data-a");
    let before_bytes = tree_bytes(&data);
    let before = t.state().await;
    let rows_before = t.admin().history(1000).await.unwrap().len();
    // 200 statements of about 1 MB (just under the body limit), each signed by a fresh key
    // no master knows.
    let notes = "x".repeat(1_000_000);
    for i in 0..200u32 {
        let st = bogus_statement(2 + i, t.clock.now(), &notes);
        let body = vdb_proto::Signed::sign(&st, &SecretKey::generate()).to_json();
        assert!(
            body.len() > 1_000_000 && body.len() < 1 << 20,
            "{}",
            body.len()
        );
        let (status, text) = t.post_release(body).await;
        assert_eq!(status, 403);
        let e: vdb_proto::ApiError = serde_json::from_str(&text).unwrap();
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
    let metrics = crate::harness::metrics(&t.url).await;
    assert!(
        metrics.contains("vdb_master_refusals_unrecorded_total{code=\"unknown_key\"} 200"),
        "{metrics}"
    );
    assert_eq!(t.state().await, before);
    t.stop().await;
}

#[tokio::test]
async fn history_answers_in_bounded_pages() {
    let t = T::start(|_| {}).await;
    t.publish(&release(1)).await.unwrap();
    // 250 recorded refusals: a publisher key asking for a database it may not publish.
    for i in 0..250u32 {
        let st = bogus_statement(2 + i, t.clock.now(), "");
        let body = vdb_proto::Signed::sign(&st, &daily_only()).to_json();
        assert_eq!(t.post_release(body).await.0, 403);
    }
    let page = |q: String| {
        let url = format!("{}/api/v1/history?{q}", t.url);
        async move { serde_json::from_str::<Vec<vdb_proto::ReleaseRow>>(&get_text(&url).await).unwrap() }
    };
    let first = page("limit=1000".into()).await;
    assert_eq!(first.len(), 200, "one page is at most 200 rows");
    assert!(
        first.windows(2).all(|w| w[0].seq > w[1].seq),
        "newest first"
    );
    let last = first.last().unwrap().seq;
    let next = page(format!("limit=1000&before={last}")).await;
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
    let star = SecretKey::from_seed([8; 32]);
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
    let before = t.state().await;
    let v3 = || file("test.cvd", fixture("test-3.cvd"));
    let cases: Vec<(&str, &str, Vec<ReleaseFile>)> = vec![
        // The `daily-27100.cvd` with `--db daily` case: mirrors would stop serving test.cvd.
        (
            "numbered container",
            "unsafe_name",
            fx(&[
                ("test-3.cvd", "test-3.cvd"),
                ("test-3.cdiff", "test-3.cdiff"),
            ]),
        ),
        (
            "container in capitals",
            "unsafe_name",
            fx(&[("test.CVD", "test-3.cvd")]),
        ),
        (
            "cdiff past the release's version",
            "unsafe_name",
            vec![v3(), file("test-4.cdiff", fixture("test-4.cdiff"))],
        ),
        (
            "cdiff with a leading zero",
            "unsafe_name",
            vec![v3(), file("test-03.cdiff", fixture("test-3.cdiff"))],
        ),
        (
            ".sign of another version",
            "unsafe_name",
            vec![
                v3(),
                file("test-3.cdiff", fixture("test-3.cdiff")),
                file("test-2.cvd.sign", fixture("test-2.cvd.sign")),
            ],
        ),
        (
            ".sign of a file the release does not bring",
            "unsafe_name",
            vec![
                v3(),
                file("test-2.cdiff.sign", fixture("test-2.cdiff.sign")),
            ],
        ),
        (
            ".sign not named for a file",
            "unsafe_name",
            vec![v3(), file("test.cvd.sign", fixture("test-3.cvd.sign"))],
        ),
        (
            "a kind of container the database does not allow",
            "file_not_allowed",
            fx(&[("test.cud", "test-3.cvd")]),
        ),
        (
            "a CLD where mirrors serve test.cvd",
            "container_kind",
            fx(&[("test.cld", "test-3.cvd")]),
        ),
    ];
    for (what, code, files) in cases {
        t.expect_refused(
            what,
            code,
            &publisher_key(),
            &files,
            info("test", 3),
            &before,
        )
        .await;
    }
    // A database name that reads as a numbered file of another one.
    t.expect_refused(
        "database name ending in a number",
        "unsafe_name",
        &star,
        &[file("synth-3.cvd", fixture("test-3.cvd"))],
        info("synth-3", 3),
        &before,
    )
    .await;
    // The layout's own names pass: the CVD, its cdiff, and the .sign files named for them.
    t.publish(&[
        v3(),
        file("test-3.cdiff", fixture("test-3.cdiff")),
        file("test-3.cvd.sign", fixture("test-3.cvd.sign")),
        file("test-3.cdiff.sign", fixture("test-3.cdiff.sign")),
    ])
    .await
    .unwrap();
    assert_eq!(t.manifest().await.databases["test"].version, 3);
    t.stop().await;
}

/// A supplement: the held version again, its container byte for byte and every held file,
/// plus files (older cdiffs, `.sign` files), each cdiff checked on its own. Anything else at
/// the held version is still equivocation, and no file changes its bytes.
#[tokio::test]
async fn supplements_add_files_to_the_held_version_and_change_nothing_else() {
    let t = T::start(|_| {}).await;
    let v4 = t.publish(&fx(&[("test.cvd", "test-4.cvd")])).await.unwrap();
    assert_eq!(v4.version, 4);
    let first = t.manifest().await;
    let sup = fx(&[
        ("test.cvd", "test-4.cvd"),
        ("test-4.cvd.sign", "test-4.cvd.sign"),
        ("test-3.cdiff", "test-3.cdiff"),
        ("test-4.cdiff", "test-4.cdiff"),
        ("test-4.cdiff.sign", "test-4.cdiff.sign"),
    ]);
    let added = t.publish(&sup).await.unwrap();
    assert_eq!(added.version, 4);
    assert_ne!(added.release_id, v4.release_id);
    let m = t.manifest().await;
    assert!(m.serial > first.serial);
    assert_eq!(m.databases["test"].version, 4);
    assert_eq!(m.file("test.cvd"), first.file("test.cvd"));
    for n in [
        "test-3.cdiff",
        "test-4.cdiff",
        "test-4.cdiff.sign",
        "test-4.cvd.sign",
    ] {
        assert!(m.file(n).is_some(), "{n}");
    }
    let key = publisher_key();
    let before = t.state().await;
    let with = |extra: &[(&str, &str)]| {
        let mut f = sup.clone();
        f.extend(fx(extra));
        f
    };
    let cases: Vec<Case> = vec![
        (
            "a cdiff of another version under an older name",
            "version_mismatch",
            &key,
            with(&[("test-2.cdiff", "test-3.cdiff")]),
            None,
        ),
        (
            "a cdiff that is not one",
            "bad_cdiff",
            &key,
            with(&[("test-2.cdiff", "test-2.cdiff.sign")]),
            None,
        ),
        (
            "a held file left out",
            "equivocation",
            &key,
            fx(&[("test.cvd", "test-4.cvd"), ("test-2.cdiff", "test-2.cdiff")]),
            None,
        ),
        (
            "a held cdiff with other bytes",
            "equivocation",
            &key,
            fx(&[
                ("test.cvd", "test-4.cvd"),
                ("test-4.cvd.sign", "test-4.cvd.sign"),
                ("test-3.cdiff", "test-2.cdiff"),
                ("test-4.cdiff", "test-4.cdiff"),
                ("test-4.cdiff.sign", "test-4.cdiff.sign"),
            ]),
            None,
        ),
        (
            "another container of the held version",
            "equivocation",
            &key,
            fx(&[("test.cvd", "test-3.cvd"), ("test-2.cdiff", "test-2.cdiff")]),
            info("test", 4),
        ),
        (
            "a supplement of an older version",
            "older_version",
            &key,
            fx(&[("test.cvd", "test-3.cvd"), ("test-2.cdiff", "test-2.cdiff")]),
            None,
        ),
    ];
    for (what, code, key, files, info) in cases {
        t.expect_refused(what, code, key, &files, info, &before)
            .await;
    }
    // The next version still needs its chain from the held one, applied and compared.
    let v5 = t
        .publish(&fx(&[
            ("test.cvd", "test-5.cvd"),
            ("test-5.cdiff", "test-5.cdiff"),
        ]))
        .await
        .unwrap();
    assert_eq!(v5.version, 5);
    let m = t.manifest().await;
    for n in [
        "test-3.cdiff",
        "test-4.cdiff",
        "test-5.cdiff",
        "test-4.cdiff.sign",
    ] {
        assert!(m.file(n).is_some(), "{n}");
    }
    assert!(
        m.file("test-4.cvd.sign").is_none(),
        "a CVD's .sign goes with its CVD"
    );
}

/// A copy of fixture `from` saved as `name` in `dir` with `edit` applied to its text.
fn edited(dir: &Path, name: &str, from: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let text = String::from_utf8(std::fs::read(fixture(from)).unwrap()).unwrap();
    let out = dir.join(name);
    std::fs::write(&out, edit(text)).unwrap();
    out
}

/// ClamAV 1.5 `.sign` files go out only when they verify, with the master's certificate
/// directory, for the exact bytes of the file of the same release they name: ClamAV's own
/// (test-CA) files pass; a `.sign` of another file, a tampered one, one that does not parse and
/// one by a CA the master does not trust are refused with `bad_sign`, and nothing changes (no
/// mirror ever sees them: they never reach a manifest).
#[tokio::test]
async fn sign_files_are_verified_before_any_mirror_sees_them() {
    let t = T::start(|_| {}).await;
    let signed = vdb_testkit::publish::signed_test_release;
    t.publish(&signed(1)).await.unwrap();
    t.publish(&signed(2)).await.unwrap();
    let m = t.manifest().await;
    assert!(m.file("test-2.cvd.sign").is_some() && m.file("test-2.cdiff.sign").is_some());
    assert!(
        m.file("test-1.cvd.sign").is_none(),
        "only the current CVD's .sign"
    );
    t.clock.advance(1);
    let before = t.state().await;
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let v3 = || {
        vec![
            file("test.cvd", fixture("test-3.cvd")),
            file("test-3.cdiff", fixture("test-3.cdiff")),
        ]
    };
    let with =
        |extra: Vec<ReleaseFile>| -> Vec<ReleaseFile> { v3().into_iter().chain(extra).collect() };
    // The base64 of the signature with one character changed near its end (inside the RSA
    // signature value), and the same file with its first line changed.
    let tampered_sign = edited(p, "t.sign", "test-3.cvd.sign", |s| {
        let i = s.trim_end().len() - 8;
        let c = if &s[i..=i] == "A" { "B" } else { "A" };
        format!("{}{c}{}", &s[..i], &s[i + 1..])
    });
    let not_sign = edited(p, "n.sign", "test-3.cvd.sign", |s| {
        s.replacen("#clamsign-1.0", "#clamsign-2.0", 1)
    });
    let cases: Vec<(&str, Vec<ReleaseFile>)> = vec![
        (
            "the CVD's .sign of another version under this version's name",
            with(vec![file("test-3.cvd.sign", fixture("test-4.cvd.sign"))]),
        ),
        (
            "the CVD's .sign as the cdiff's",
            with(vec![file("test-3.cdiff.sign", fixture("test-3.cvd.sign"))]),
        ),
        (
            "a tampered .sign",
            with(vec![file("test-3.cvd.sign", tampered_sign)]),
        ),
        (
            "not a .sign file",
            with(vec![file("test-3.cvd.sign", not_sign)]),
        ),
    ];
    for (what, files) in cases {
        t.expect_refused(what, "bad_sign", &publisher_key(), &files, None, &before)
            .await;
    }
    let hist = t.admin().history(1000).await.unwrap();
    let reasons: Vec<String> = hist
        .iter()
        .filter(|r| r.code.as_deref() == Some("bad_sign"))
        .filter_map(|r| r.reason.clone())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("does not verify") && r.contains("publish the signer's .sign")),
        "{reasons:?}"
    );
    // A line no ClamAV that reads .sign files reads (relabelled for engines before 1.5):
    // accepted, as clients skip it.
    let old_engines = edited(p, "o.sign", "test-3.cdiff.sign", |s| {
        s.replacen("\n230::", "\n100:229:", 1)
    });
    t.publish(&with(vec![
        file("test-3.cvd.sign", fixture("test-3.cvd.sign")),
        file("test-3.cdiff.sign", old_engines),
    ]))
    .await
    .unwrap();
    assert_eq!(t.manifest().await.databases["test"].version, 3);
    t.stop().await;

    // A master that trusts only ClamAV's official root refuses the test CA's files.
    let official = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("certs/clamav-official-root.crt"),
        official.path().join("clamav.crt"),
    )
    .unwrap();
    let dir = official.path().to_path_buf();
    let t = T::start(move |c| c.cvd_certs_dir = Some(dir)).await;
    t.publish(&release(1)).await.unwrap();
    let before = t.state().await;
    t.expect_refused(
        "a .sign by a CA the master does not trust",
        "bad_sign",
        &publisher_key(),
        &signed(2),
        None,
        &before,
    )
    .await;
    // The same release without its .sign files is fine (the legacy signatures hold).
    t.publish(&release(2)).await.unwrap();
    t.stop().await;
}

/// Without a certificate directory, releases with `.sign` files are refused with a message that
/// says to set one; a configured directory that cannot be used stops the master at start.
#[tokio::test]
async fn sign_files_need_a_certificate_directory() {
    let default = Path::new(vdb_master::config::DEFAULT_CVD_CERTS_DIR);
    if default.exists() {
        // ClamAV's certificates are installed here: they are the default, and the test CA's
        // files are refused or accepted by them, not for want of a directory.
        eprintln!(
            "{} exists: the missing-directory case is not reachable here",
            default.display()
        );
    } else {
        let t = T::start(|c| c.cvd_certs_dir = None).await;
        t.publish(&release(1)).await.unwrap();
        let before = t.state().await;
        match t
            .publish(&vdb_testkit::publish::signed_test_release(2))
            .await
        {
            Err(PublishError::Refused { error, .. }) => {
                assert_eq!(error.code, "sign_unverifiable", "{}", error.message);
                assert!(error.message.contains("cvd_certs_dir"), "{}", error.message);
            }
            other => panic!("expected sign_unverifiable, got {other:?}"),
        }
        assert_eq!(t.state().await, before);
        t.stop().await;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut c = crate::harness::config(tmp.path(), "a", 9);
    c.cvd_certs_dir = Some(tmp.path().join("no-such-dir"));
    let started = vdb_master::start_on(
        c,
        vdb_master::Listeners {
            http: vdb_testkit::loopback(),
        },
        std::sync::Arc::new(ManualClock::new(SystemClock.now())),
    )
    .await;
    let Err(e) = started else {
        panic!("a master with a missing certificate directory started");
    };
    assert!(format!("{e:#}").contains("cvd_certs_dir"), "{e:#}");
}
