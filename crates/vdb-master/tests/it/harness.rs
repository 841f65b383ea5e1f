//! What every scenario of the suite shares: a master's config, a master started on a bound
//! loopback listener, publishing, reading its manifest, status and metrics.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use vdb_master::client::{Admin, Progress, PublishError, Publisher, ReleaseFile, ReleaseInfo};
use vdb_master::config::PublisherConfig;
use vdb_master::{Config, Listeners, Running};
use vdb_proto::{Manifest, ManualClock, PublicKey, ReleaseAccepted, SecretKey};
pub(crate) use vdb_testkit::fixtures::path as fixture;
pub(crate) use vdb_testkit::keys::publisher_key;
pub(crate) use vdb_testkit::publish::test_release as release;

/// The admin token of every test master.
pub(crate) const TOKEN: &str = "admin-token-0123456789";

/// A key that may publish database `daily` only.
pub(crate) fn daily_only() -> SecretKey {
    SecretKey::from_seed([2; 32])
}

/// The config of master `name` whose key comes from `seed` (written to `<dir>/<name>.key`),
/// with its data in `<dir>/data-<name>`, the admin token, fast loops, and two publishers:
/// [`publisher_key`] (databases `test` and `synth`) and [`daily_only`].
pub(crate) fn config(dir: &Path, name: &str, seed: u8) -> Config {
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&key_file, SecretKey::from_seed([seed; 32]).to_text()).unwrap();
    let mut c = Config::new(name, "testnet", dir.join(format!("data-{name}")), key_file);
    c.admin_token = Some(TOKEN.into());
    // The `.sign` fixtures are made by ClamAV's test CA.
    c.cvd_certs_dir = Some(vdb_testkit::fixtures::certs_dir());
    c.tick_ms = 20;
    c.replicate_secs = 5;
    c.push_backoff_ms = 10;
    c.catch_up_timeout_secs = 30;
    c.publishers = vec![
        PublisherConfig {
            key: publisher_key().public(),
            databases: vec!["test".into(), "synth".into()],
        },
        PublisherConfig {
            key: daily_only().public(),
            databases: vec!["daily".into()],
        },
    ];
    c
}

/// The public key of seed `seed`.
pub(crate) fn public(seed: u8) -> PublicKey {
    SecretKey::from_seed([seed; 32]).public()
}

/// A temporary directory and a manual clock at the wall clock's time.
pub(crate) fn scratch() -> (tempfile::TempDir, ManualClock) {
    use vdb_proto::Clock as _;
    (
        tempfile::tempdir().unwrap(),
        ManualClock::new(vdb_proto::SystemClock.now()),
    )
}

/// Starts a master on `listener` (bound by the test).
pub(crate) async fn start_on(
    config: Config,
    listener: std::net::TcpListener,
    clock: &ManualClock,
) -> Running {
    vdb_master::start_on(
        config,
        Listeners { http: listener },
        Arc::new(clock.clone()),
    )
    .await
    .unwrap()
}

/// Starts a master on a fresh loopback port.
pub(crate) async fn start(config: Config, clock: &ManualClock) -> Running {
    start_on(config, vdb_testkit::loopback(), clock).await
}

/// Publishes `files` to `url` signed by `key` at `clock`'s time (`info` inferred if `None`).
pub(crate) async fn publish_as(
    url: &str,
    clock: &ManualClock,
    key: &SecretKey,
    files: &[ReleaseFile],
    info: Option<ReleaseInfo>,
) -> Result<ReleaseAccepted, PublishError> {
    let p = Publisher::new(vec![url.to_owned()], key.clone()).with_clock(Arc::new(clock.clone()));
    let info = match info {
        Some(i) => i,
        None => vdb_master::client::infer(files, None, None)?,
    };
    let (st, env) = p.statement(&info, files, "")?;
    p.publish(files, &st, &env, &|_: Progress| {}).await
}

/// Publishes fixture release `v` to `url` as [`publisher_key`]; panics on a refusal.
pub(crate) async fn publish(url: &str, clock: &ManualClock, v: u32) -> ReleaseAccepted {
    publish_as(url, clock, &publisher_key(), &release(v), None)
        .await
        .unwrap_or_else(|e| panic!("publishing v{v} to {url}: {e}"))
}

/// The manifest of the master at `url`, verified with `key`.
pub(crate) async fn manifest(url: &str, key: PublicKey) -> Option<Manifest> {
    Admin::new(url, None).manifest(&[key]).await.ok()
}

/// The version of `test` in the manifest at `url` (0 without one).
pub(crate) async fn version(url: &str, key: PublicKey) -> u32 {
    manifest(url, key)
        .await
        .and_then(|m| m.databases.get("test").map(|d| d.version))
        .unwrap_or(0)
}

/// `GET /api/v1/status`.
pub(crate) async fn status(url: &str) -> vdb_master::Status {
    serde_json::from_str(&vdb_testkit::http::get_text(&format!("{url}/api/v1/status")).await)
        .unwrap()
}

/// The Prometheus text of the master at `url`.
pub(crate) async fn metrics(url: &str) -> String {
    vdb_testkit::http::get_text(&format!("{url}/metrics")).await
}

/// A series of the master at `url` (0 if absent).
pub(crate) async fn metric(url: &str, series: &str) -> f64 {
    vdb_testkit::http::metric(&metrics(url).await, series).unwrap_or(0.0)
}

/// Waits (at most 30 s) until `f` holds.
pub(crate) async fn until<F: Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    vdb_testkit::wait_for_async(what, 30, || {
        let check = f();
        async move { check.await.then_some(()) }
    })
    .await;
}

/// Waits until the master at `url` has looked at its clock at `now` or later (its heartbeat
/// loop has seen the time the test set).
pub(crate) async fn loops_saw(url: &str, now: i64) {
    until("the heartbeat loop to see the clock", || async {
        metric(url, "vdb_master_heartbeat_checked_at_seconds").await >= now as f64
    })
    .await;
}

/// `POST url` with `body`: (status, answer text).
pub(crate) async fn post(url: &str, body: String) -> (u16, String) {
    vdb_testkit::http::call("POST", url, &[], Some(body.into_bytes())).await
}

/// Lists `url` as this master's one peer (key of seed 11).
pub(crate) fn peer(c: &mut vdb_master::Config, url: &str) {
    c.peers = vec![vdb_master::config::PeerConfig {
        url: url.to_owned(),
        key: public(11),
        token: None,
    }];
}

/// A statement of `test` version `version` naming one file that was never uploaded.
pub(crate) fn bogus_statement(
    version: u32,
    issued_at: i64,
    notes: &str,
) -> vdb_proto::ReleaseStatement {
    vdb_proto::ReleaseStatement {
        db: "test".into(),
        version,
        built_at: 1,
        issued_at,
        files: vec![vdb_proto::FileRef {
            name: "test.cvd".into(),
            size: 1,
            sha256: "0".repeat(64),
            segments: None,
        }],
        notes: notes.into(),
    }
}
