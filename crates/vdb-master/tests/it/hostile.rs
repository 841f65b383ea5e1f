//! The master against hostile peers, mirrors, upstreams and configurations: every outgoing
//! answer read under a size cap and no redirect followed, clock arithmetic that cannot
//! overflow, durations refused at load when zero or absurd, admins' addresses on no public
//! endpoint.

use axum::Router;
use axum::routing::get;
use vdb_master::client::Admin;
use vdb_master::{Config, UPLOAD_HEADER};
use vdb_proto::{
    Clock, ManualClock, MirrorRecord, RegistryEntry, RegistryExport, Signed, SystemClock,
    UploadTicket,
};
use vdb_testkit::{HostileServer, Hostility};

use crate::harness::{
    TOKEN, bogus_statement, config, metric, post, publish, publisher_key, start, until,
};

/// The most a replication page or registry may be (the master's cap), and what a loopback
/// connection may hold in its buffers besides.
const PAGE_CAP: u64 = 32 << 20;
const SLACK: u64 = 8 << 20;

#[test]
fn durations_that_are_zero_or_absurd_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "name = \"a\"\nnetwork = \"testnet\"\ndata_dir = {:?}\nkey_file = {:?}\n",
        dir.path().join("data"),
        dir.path().join("a.key")
    );
    let load = |extra: &str| {
        let path = dir.path().join("master.toml");
        std::fs::write(&path, format!("{base}{extra}\n")).unwrap();
        Config::load(&path)
    };
    load("").expect("the defaults are valid");
    load("manifest_ttl_secs = 604800").expect("a week-long manifest is fine");
    for (extra, field) in [
        (
            "manifest_ttl_secs = 9223372036854775807",
            "manifest_ttl_secs",
        ),
        ("manifest_ttl_secs = 0", "manifest_ttl_secs"),
        ("manifest_ttl_secs = -1", "manifest_ttl_secs"),
        ("heartbeat_secs = 0", "heartbeat_secs"),
        ("heartbeat_secs = 9223372036854775807", "heartbeat_secs"),
        ("heartbeat_secs = 8000000", "manifest lifetime"),
        ("forced_sync_secs = 9223372036854775807", "forced_sync_secs"),
        ("replicate_secs = 99999999999", "replicate_secs"),
        ("statement_window_secs = -5", "statement_window_secs"),
        (
            "statement_window_secs = 9223372036854775807",
            "statement_window_secs",
        ),
        ("catch_up_timeout_secs = -1", "catch_up_timeout_secs"),
        ("orphan_ttl_secs = 0", "orphan_ttl_secs"),
        ("tick_ms = 0", "tick_ms"),
        ("push_backoff_ms = 9223372036854775807", "push_backoff_ms"),
        (
            "[upstream]\nurl = \"http://127.0.0.1:9\"\ndatabases = [\"daily\"]\ninterval_secs = 0",
            "upstream.interval_secs",
        ),
        ("[upstream]\ndatabases = [\"daily\"]", "`url`"),
    ] {
        let err = format!("{:#}", load(extra).expect_err(extra));
        assert!(err.contains(field), "{extra}: {err}");
    }
}

#[tokio::test]
async fn statements_and_tickets_at_the_ends_of_time_are_replays_not_overflows() {
    let (dir, clock) = crate::harness::scratch();
    let a = start(config(dir.path(), "a", 9), &clock).await;
    let url = a.base_url();
    publish(&url, &clock, 1).await;
    for issued_at in [i64::MIN, -1, i64::MAX] {
        let st = bogus_statement(2, issued_at, "");
        let body = Signed::sign(&st, &publisher_key()).to_json();
        let (status, text) = post(&format!("{url}/api/v1/releases"), body).await;
        assert_eq!(status, 409, "{issued_at}: {text}");
        assert!(text.contains("\"replay\""), "{issued_at}: {text}");
        let ticket = UploadTicket {
            sha256: vdb_proto::sha256_hex(b"x"),
            size: 1,
            issued_at,
        };
        let ticket = Signed::sign(&ticket, &publisher_key()).to_json();
        let (status, text) = vdb_testkit::http::call(
            "PUT",
            &format!("{url}/api/v1/objects/{}", vdb_proto::sha256_hex(b"x")),
            &[(UPLOAD_HEADER, &ticket)],
            Some(b"x".to_vec()),
        )
        .await;
        assert_eq!(status, 409, "{issued_at}: {text}");
        assert!(text.contains("\"replay\""), "{issued_at}: {text}");
    }
    a.shutdown().await;
}

/// A peer double serving no releases and `entries` as its registry, signed by key `seed`
/// (the harness's peer is seed 11) for network `network`.
async fn registry_peer(entries: Vec<RegistryEntry>, seed: u8, network: &str) -> String {
    let export = RegistryExport {
        network: network.into(),
        master: "b".into(),
        issued_at: SystemClock.now(),
        entries,
        pending: Vec::new(),
        log: Vec::new(),
    };
    let body = Signed::sign(&export, &vdb_proto::SecretKey::from_seed([seed; 32])).to_json();
    let app = Router::new()
        .route(
            "/api/v1/releases",
            get(|| async { axum::Json(serde_json::json!({"releases": []})) }),
        )
        .route("/api/v1/registry", get(move || async move { body }));
    format!("http://{}", vdb_testkit::serve(app).await)
}

fn registry_entry(name: &str, updated_at: i64) -> RegistryEntry {
    RegistryEntry {
        record: MirrorRecord::new(name, "http://127.0.0.1:9"),
        updated_at,
        deleted: false,
    }
}

#[tokio::test]
async fn a_peer_cannot_date_a_registry_entry_past_the_end_of_time() {
    let now = SystemClock.now();
    let peer = registry_peer(
        vec![
            registry_entry("forever", i64::MAX),
            registry_entry("fresh", now - 10),
        ],
        11,
        "testnet",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now);
    let mut c = config(dir.path(), "a", 10);
    crate::harness::peer(&mut c, &peer);
    let a = start(c, &clock).await;
    until("caught up", || async { a.is_ready() }).await;
    let admin = Admin::new(&a.base_url(), Some(TOKEN.into()));
    let names = |l: Vec<MirrorRecord>| l.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(names(admin.list().await.unwrap()), ["fresh"]);
    // The name stays the operators': it can be registered and changed here.
    let mut r = MirrorRecord::new("forever", "http://127.0.0.1:9");
    admin.add(&r).await.unwrap();
    r.bandwidth_mbps = 10;
    admin.update(&r).await.unwrap();
    assert_eq!(admin.show("forever").await.unwrap(), r);
    a.shutdown().await;
}

/// The registry replicates as a signed export: one signed by a key that is not the peer's, or
/// made for another network, changes nothing, and the failed pulls are counted.
#[tokio::test]
async fn a_registry_not_signed_by_the_peer_changes_nothing() {
    let now = SystemClock.now();
    // The peer's own key and network (the control), another key, another network.
    for (seed, network, taken) in [
        (11, "testnet", true),
        (12, "testnet", false),
        (11, "othernet", false),
    ] {
        let peer = registry_peer(vec![registry_entry("planted", now - 10)], seed, network).await;
        let (dir, clock) = crate::harness::scratch();
        let mut c = config(dir.path(), "a", 10);
        crate::harness::peer(&mut c, &peer);
        let a = start(c, &clock).await;
        let url = a.base_url();
        let outcome = if taken { "ok" } else { "error" };
        until("a pull", || async {
            metric(
                &url,
                &format!("vdb_master_replication_total{{result=\"{outcome}\"}}"),
            )
            .await
                >= 1.0
        })
        .await;
        let admin = Admin::new(&url, Some(TOKEN.into()));
        assert_eq!(
            !admin.list().await.unwrap().is_empty(),
            taken,
            "key seed {seed}, network {network}"
        );
        a.shutdown().await;
    }
}

/// Starts a master wired by `wire` to a server that answers with endless bodies, waits until
/// `failed` (a counter) counts a failure, and returns (bytes the server got out, requests).
async fn against_endless(wire: impl FnOnce(&mut Config, String), failed: &str) -> (u64, u64) {
    let hostile = HostileServer::start(Hostility::EndlessBody);
    let (dir, clock) = crate::harness::scratch();
    let mut c = config(dir.path(), "a", 10);
    wire(&mut c, hostile.url());
    let a = start(c, &clock).await;
    let url = a.base_url();
    until(failed, || async { metric(&url, failed).await >= 1.0 }).await;
    until("ready", || async { a.is_ready() }).await;
    let figures = (hostile.bytes_sent(), hostile.requests().len() as u64);
    a.shutdown().await;
    figures
}

#[tokio::test]
async fn endless_answers_from_a_peer_are_cut_at_the_cap() {
    let peer = |c: &mut Config, url: String| {
        crate::harness::peer(c, &url);
        c.catch_up_timeout_secs = 0;
    };
    let failed = "vdb_master_replication_total{result=\"error\"}";
    let (sent, asked) = against_endless(peer, failed).await;
    println!("hostile peer: {sent} bytes sent over {asked} requests");
    assert!(asked >= 1);
    assert!(
        sent <= asked * (PAGE_CAP + SLACK),
        "{sent} bytes taken over {asked} requests: an answer was read past the cap"
    );
}

#[tokio::test]
async fn an_upstream_that_never_ends_costs_a_header_probe() {
    let upstream = |c: &mut Config, url: String| {
        c.upstream = Some(vdb_master::config::UpstreamConfig {
            url,
            databases: vec!["test".into()],
            interval_secs: 3600,
            key_file: None,
            ..Default::default()
        });
    };
    let failed = "vdb_master_upstream_checks_total{result=\"error\"}";
    let (sent, asked) = against_endless(upstream, failed).await;
    assert!(
        asked >= 1 && sent <= asked * SLACK,
        "{sent} bytes over {asked} requests"
    );
}

#[tokio::test]
async fn a_mirror_that_redirects_a_push_is_not_followed_and_no_admin_address_is_public() {
    let elsewhere = HostileServer::start(Hostility::EndlessBody);
    let moved = HostileServer::start(Hostility::Redirect(format!(
        "{}{}",
        elsewhere.url(),
        vdb_proto::paths::PUSH
    )));
    let (dir, clock) = crate::harness::scratch();
    let a = start(config(dir.path(), "a", 10), &clock).await;
    let url = a.base_url();
    let mut rec = MirrorRecord::new("moved", "http://127.0.0.1:9");
    rec.push_url = Some(format!("{}{}", moved.url(), vdb_proto::paths::PUSH));
    rec.admin_contact = Some("admin@moved.example".into());
    Admin::new(&url, Some(TOKEN.into()))
        .add(&rec)
        .await
        .unwrap();
    let r = publish(&url, &clock, 1).await;
    let admin = Admin::new(&url, None);
    let push = || async {
        admin
            .release(&r.release_id)
            .await
            .unwrap()
            .pushes
            .into_iter()
            .find(|p| p.serial == r.serial && p.error.is_some())
    };
    until("the failed push", || async { push().await.is_some() }).await;
    let p = push().await.unwrap();
    let error = p.error.unwrap();
    assert!(error.contains("302"), "{error}");
    assert_eq!(
        p.attempts, 1,
        "a redirect is an answer, not a reason to retry"
    );
    assert!(p.acked_at.is_none());
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect was followed: {:?}",
        elsewhere.requests()
    );
    // Nothing a stranger can read names the mirror's admin.
    for path in [
        "/healthz".to_owned(),
        "/metrics".to_owned(),
        vdb_proto::MANIFEST_PATH.to_owned(),
        "/api/v1/status".to_owned(),
        "/api/v1/history?limit=1000".to_owned(),
        "/api/v1/releases?after=0".to_owned(),
        format!("/api/v1/releases/{}", r.release_id),
        "/api/v1/mirrors".to_owned(),
        "/api/v1/mirrors/moved".to_owned(),
        "/api/v1/registry".to_owned(),
    ] {
        let (status, text) =
            vdb_testkit::http::call("GET", &format!("{url}{path}"), &[], None).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert!(!text.contains("admin@moved"), "{path}: {text}");
    }
    a.shutdown().await;
}
