//! Following ClamAV's CDN (the [`CdnDouble`]): backfill of every cdiff the upstream holds,
//! supplements of the held version, `.sign` files, cool-downs that outlive a restart,
//! back-off and failover, the user agent, and hostile upstreams. Every test asserts the exact
//! requests the CDN received.

use vdb_master::config::UpstreamConfig;
use vdb_master::{Config, Running};
use vdb_proto::{Manifest, ManualClock, PublicKey};
use vdb_testkit::{CdnDouble, Delivery};

use crate::harness::{config, fixture, manifest, metric, public, start, status, until, version};

/// Follows `urls` for database `test` every 10 s.
fn follow(c: &mut Config, urls: &[String]) {
    c.upstream = Some(UpstreamConfig {
        url: urls[0].clone(),
        urls: urls[1..].to_vec(),
        databases: vec!["test".into()],
        interval_secs: 10,
        backoff_base_secs: 100,
        ..UpstreamConfig::default()
    });
}

const KEY: u8 = 10;

fn key() -> PublicKey {
    public(KEY)
}

fn sha(name: &str) -> String {
    vdb_proto::sha256_hex(&std::fs::read(fixture(name)).unwrap())
}

/// The names of `m`'s files of database `test`, sorted.
fn test_files(m: &Manifest) -> Vec<String> {
    let mut v: Vec<String> = m
        .files
        .iter()
        .filter(|f| f.name.starts_with("test"))
        .map(|f| f.name.clone())
        .collect();
    v.sort();
    v
}

/// Every file of v6 as the CDN serves it: the CVD, its `.sign`, cdiffs 2..6 and theirs.
fn all_of_v6() -> Vec<String> {
    let mut v = vec!["test-6.cvd.sign".to_owned(), "test.cvd".to_owned()];
    for n in 2..=6 {
        v.push(format!("test-{n}.cdiff"));
        v.push(format!("test-{n}.cdiff.sign"));
    }
    v.sort();
    v
}

async fn upstream_metric(url: &str, event: &str) -> f64 {
    metric(
        url,
        &format!("vdb_master_upstream_events_total{{event=\"{event}\",db=\"test\"}}"),
    )
    .await
}

async fn checks(url: &str, result: &str) -> f64 {
    metric(
        url,
        &format!("vdb_master_upstream_checks_total{{result=\"{result}\"}}"),
    )
    .await
}

/// Waits for one more upstream check with result `result` after advancing the clock by 10 s.
async fn next_check(m: &Running, clock: &ManualClock, result: &str) {
    let url = m.base_url();
    let seen = checks(&url, result).await;
    clock.advance(10);
    until(
        &format!("an upstream check with result {result}"),
        || async { checks(&url, result).await > seen },
    )
    .await;
}

/// Waits until the master at `url` holds `test` at version `v` with each of `cdiffs`
/// (`test-<n>.cdiff`), and returns that manifest.
async fn until_serves(url: &str, v: u32, cdiffs: &[u32]) -> Manifest {
    let what = format!("v{v} with cdiffs {cdiffs:?}");
    let holds = |m: &Manifest| {
        m.databases.get("test").is_some_and(|d| d.version == v)
            && cdiffs
                .iter()
                .all(|n| m.file(&format!("test-{n}.cdiff")).is_some())
    };
    until(&what, || async {
        manifest(url, key()).await.is_some_and(|m| holds(&m))
    })
    .await;
    manifest(url, key()).await.unwrap()
}

async fn full_manifest(url: &str) -> Manifest {
    let want = all_of_v6();
    until("every file of v6", || async {
        manifest(url, key())
            .await
            .is_some_and(|m| test_files(&m) == want)
    })
    .await;
    manifest(url, key()).await.unwrap()
}

#[tokio::test]
async fn a_network_that_starts_following_serves_every_cdiff_and_sign_file_of_the_upstream() {
    let cdn = CdnDouble::start().await;
    cdn.serve_fixtures("test", 6, 2);
    let (dir, clock) = crate::harness::scratch();
    let mut c = config(dir.path(), "a", KEY);
    follow(&mut c, &[cdn.url()]);
    let a = start(c.clone(), &clock).await;
    let url = a.base_url();
    let m = full_manifest(&url).await;
    assert_eq!(m.databases["test"].version, 6);
    for n in 2..=6 {
        let name = format!("test-{n}.cdiff");
        assert_eq!(m.file(&name).unwrap().sha256, sha(&name));
        let sign = format!("{name}.sign");
        assert_eq!(m.file(&sign).unwrap().sha256, sha(&sign), "byte for byte");
    }
    assert_eq!(
        m.file("test-6.cvd.sign").unwrap().sha256,
        sha("test-6.cvd.sign")
    );
    // The CVD came first (nothing held: its cdiffs cannot be applied to anything), then a
    // supplement of version 6 with the cdiffs, walking down from 6 until the window ends.
    let paths = cdn.paths();
    assert_eq!(
        paths,
        [
            "/test.cvd",
            "/test.cvd",
            "/test-6.cvd.sign",
            "/test-6.cdiff",
            "/test-6.cdiff.sign",
            "/test-5.cdiff",
            "/test-5.cdiff.sign",
            "/test-4.cdiff",
            "/test-4.cdiff.sign",
            "/test-3.cdiff",
            "/test-3.cdiff.sign",
            "/test-2.cdiff",
            "/test-2.cdiff.sign",
        ]
    );
    let first = &cdn.requests()[0];
    assert_eq!(first.header("range"), Some("bytes=0-511"));
    let agent = first.header("user-agent").unwrap();
    assert!(
        agent.starts_with("vdbnet/") && agent.contains("ClamAV/1.4.6"),
        "{agent}"
    );
    assert!(upstream_metric(&url, "supplement").await >= 1.0);
    let hist = vdb_master::client::Admin::new(&url, None)
        .history(100)
        .await
        .unwrap();
    assert!(hist.iter().all(|r| r.verdict == "accepted"), "{hist:?}");
    assert!(hist.iter().all(|r| r.version == 6));

    // Nothing changed upstream: one conditional probe, answered 304, and nothing else.
    cdn.clear_requests();
    next_check(&a, &clock, "current").await;
    let reqs = cdn.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].status, 304);
    assert!(reqs[0].header("if-modified-since").is_some());

    // After a restart, still one probe per interval: everything is held.
    a.shutdown().await;
    cdn.clear_requests();
    let a = start(c, &clock).await;
    let url = a.base_url();
    until("a check after the restart", || async {
        checks(&url, "current").await >= 1.0
    })
    .await;
    assert_eq!(cdn.paths(), ["/test.cvd"]);
    assert_eq!(
        test_files(&manifest(&url, key()).await.unwrap()),
        all_of_v6()
    );
    a.shutdown().await;
}

/// `.sign` files the master cannot verify (here: a master that trusts only ClamAV's official
/// root, and the upstream's files are signed by the test CA) are refused one by one, and the
/// cdiffs they sign are still served: 1.4 clients and 1.5 clients outside FIPS mode use them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdiffs_are_served_even_when_their_sign_files_are_refused() {
    let cdn = CdnDouble::start().await;
    cdn.serve_fixtures("test", 6, 2);
    let (dir, clock) = crate::harness::scratch();
    let official = dir.path().join("official-certs");
    std::fs::create_dir_all(&official).unwrap();
    std::fs::copy(
        vdb_testkit::fixtures::path("certs/clamav-official-root.crt"),
        official.join("clamav.crt"),
    )
    .unwrap();
    let mut c = config(dir.path(), "a", KEY);
    c.cvd_certs_dir = Some(official);
    follow(&mut c, &[cdn.url()]);
    let a = start(c.clone(), &clock).await;
    let url = a.base_url();
    let m = until_serves(&url, 6, &[2, 3, 4, 5, 6]).await;
    for n in 2..=6 {
        let name = format!("test-{n}.cdiff");
        assert_eq!(
            m.file(&name).unwrap().sha256,
            sha(&name),
            "{name} is served"
        );
        assert!(
            m.file(&format!("{name}.sign")).is_none(),
            "{name}.sign is not"
        );
    }
    assert!(m.file("test-6.cvd.sign").is_none());
    assert!(upstream_metric(&url, "file_refused").await >= 5.0);
}

#[tokio::test]
async fn a_cdiff_that_failed_is_fetched_again_and_added_without_a_new_version() {
    let cdn = CdnDouble::start().await;
    cdn.serve_fixtures("test", 1, 2);
    let (dir, clock) = crate::harness::scratch();
    let mut c = config(dir.path(), "a", KEY);
    follow(&mut c, &[cdn.url()]);
    let a = start(c, &clock).await;
    let url = a.base_url();
    until("v1", || async { version(&url, key()).await == 1 }).await;
    // v3 arrives; test-2.cdiff breaks off half-way.
    cdn.serve_fixtures("test", 3, 2);
    cdn.deliver("test-2.cdiff", Delivery::Truncated);
    clock.advance(10);
    let m = until_serves(&url, 3, &[3]).await;
    assert!(m.file("test-2.cdiff").is_none());
    assert!(upstream_metric(&url, "cdiff_failed").await >= 1.0);
    // The next check asks for it again and adds it to version 3.
    cdn.deliver("test-2.cdiff", Delivery::Normal);
    cdn.clear_requests();
    clock.advance(10);
    until("test-2.cdiff added", || async {
        manifest(&url, key())
            .await
            .is_some_and(|m| m.file("test-2.cdiff").is_some())
    })
    .await;
    let after = manifest(&url, key()).await.unwrap();
    assert_eq!(after.databases["test"].version, 3, "no new version");
    assert!(after.serial > m.serial);
    assert_eq!(after.file("test.cvd"), m.file("test.cvd"), "the same CVD");
    assert_eq!(
        cdn.paths(),
        ["/test.cvd", "/test-2.cdiff", "/test-2.cdiff.sign"],
        "only what was missing"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn a_rate_limited_upstream_gets_no_request_during_its_cool_down_even_after_a_restart() {
    let cdn = CdnDouble::start().await;
    cdn.serve_fixtures("test", 6, 2);
    cdn.rate_limit(Some(Some(3600)));
    let (dir, clock) = crate::harness::scratch();
    let mut c = config(dir.path(), "a", KEY);
    follow(&mut c, &[cdn.url()]);
    let a = start(c.clone(), &clock).await;
    let url = a.base_url();
    until("the cool-down", || async {
        metric(
            &url,
            "vdb_master_upstream_events_total{event=\"cooldown\",db=\"\"}",
        )
        .await
            >= 1.0
    })
    .await;
    assert_eq!(cdn.requests().len(), 1);
    let st = status(&url).await;
    let h = &st.upstreams[0];
    assert!(
        h.blocked_until >= vdb_proto::Clock::now(&clock) + 3599,
        "{h:?}"
    );
    assert!(
        h.blocked_reason.as_deref().unwrap().contains("429"),
        "{h:?}"
    );
    for _ in 0..3 {
        next_check(&a, &clock, "blocked").await;
    }
    assert_eq!(cdn.requests().len(), 1, "no request during the cool-down");
    // The cool-down outlives a restart.
    a.shutdown().await;
    let a = start(c, &clock).await;
    let url = a.base_url();
    until("a blocked check after the restart", || async {
        checks(&url, "blocked").await >= 1.0
    })
    .await;
    assert_eq!(
        cdn.requests().len(),
        1,
        "no request after the restart either"
    );
    // Once it is over, the upstream is followed.
    cdn.rate_limit(None);
    clock.advance(3600);
    full_manifest(&url).await;
    a.shutdown().await;
}

#[tokio::test]
async fn failures_back_off_with_failover_to_the_next_upstream_and_a_forbidden_agent_cools_down() {
    let first = CdnDouble::start().await;
    let second = CdnDouble::start().await;
    first.serve_fixtures("test", 6, 2);
    second.serve_fixtures("test", 6, 2);
    first.fail_next(&[503]);
    let (dir, clock) = crate::harness::scratch();
    let mut c = config(dir.path(), "a", KEY);
    follow(&mut c, &[first.url(), second.url()]);
    let a = start(c, &clock).await;
    let url = a.base_url();
    full_manifest(&url).await;
    assert_eq!(first.paths(), ["/test.cvd"], "one failed probe");
    assert!(upstream_metric(&url, "failover").await >= 1.0);
    let h = status(&url).await.upstreams[0].clone();
    assert_eq!(h.failures, 1);
    assert!(
        h.blocked_reason.as_deref().unwrap().starts_with("backoff"),
        "{h:?}"
    );
    // Until the back-off ends, the first upstream gets nothing; then it is asked again.
    let now = vdb_proto::Clock::now(&clock);
    let wait = h.blocked_until - now;
    assert!((1..=100).contains(&wait), "{wait}");
    first.clear_requests();
    while vdb_proto::Clock::now(&clock) + 10 < h.blocked_until {
        next_check(&a, &clock, "current").await;
    }
    assert!(first.paths().is_empty(), "{:?}", first.paths());
    while vdb_proto::Clock::now(&clock) <= h.blocked_until {
        next_check(&a, &clock, "current").await;
    }
    until("the first upstream asked again", || async {
        !first.paths().is_empty()
    })
    .await;
    until("its back-off cleared", || async {
        status(&url).await.upstreams[0].failures == 0
    })
    .await;
    // A 403 for this agent: a cool-down of `cooldown_secs` (4 h), failing over meanwhile.
    first.forbid_agent(Some("vdbnet/"));
    first.clear_requests();
    next_check(&a, &clock, "current").await;
    let h = status(&url).await.upstreams[0].clone();
    assert!(
        h.blocked_until >= vdb_proto::Clock::now(&clock) + 4 * 3600 - 20,
        "{h:?}"
    );
    assert_eq!(first.requests().len(), 1);
    assert_eq!(first.requests()[0].status, 403);
    a.shutdown().await;
}

#[tokio::test]
async fn a_configured_user_agent_is_sent() {
    let cdn = CdnDouble::start().await;
    cdn.serve_fixtures("test", 2, 2);
    cdn.forbid_agent(Some("vdbnet/"));
    let (dir, clock) = crate::harness::scratch();
    let mut c = config(dir.path(), "a", KEY);
    follow(&mut c, &[cdn.url()]);
    c.upstream.as_mut().unwrap().user_agent =
        Some("example-org-mirror/1.0 (ops@example.org)".into());
    let a = start(c, &clock).await;
    let url = a.base_url();
    until("v2", || async { version(&url, key()).await == 2 }).await;
    assert!(
        cdn.requests()
            .iter()
            .all(|r| r.header("user-agent") == Some("example-org-mirror/1.0 (ops@example.org)"))
    );
    a.shutdown().await;
}

#[tokio::test]
async fn a_hostile_upstream_changes_nothing() {
    let cdn = CdnDouble::start().await;
    cdn.serve_fixtures("test", 3, 2);
    let (dir, clock) = crate::harness::scratch();
    let mut c = config(dir.path(), "a", KEY);
    c.max_file_size = 1 << 20;
    follow(&mut c, &[cdn.url()]);
    let a = start(c, &clock).await;
    let url = a.base_url();
    let held = until_serves(&url, 3, &[2]).await;
    let unchanged = || async {
        let m = manifest(&url, key()).await.unwrap();
        assert_eq!(m.databases, held.databases);
        assert_eq!(test_files(&m), test_files(&held));
        for f in &held.files {
            if f.name.starts_with("test") {
                assert_eq!(m.file(&f.name), Some(f));
            }
        }
    };

    // A CVD that goes backwards (from a mirror that ignores If-Modified-Since, which would
    // otherwise answer 304).
    cdn.serve_fixtures("test", 2, 2);
    cdn.ignore_if_modified_since(true);
    next_check(&a, &clock, "backwards").await;
    cdn.ignore_if_modified_since(false);
    unchanged().await;
    assert!(upstream_metric(&url, "backwards").await >= 1.0);

    // A held cdiff the upstream now serves with other bytes is not asked for again.
    cdn.serve_fixtures("test", 3, 2);
    cdn.put(
        "test-2.cdiff",
        std::fs::read(fixture("test-3.cdiff")).unwrap(),
    );
    cdn.clear_requests();
    next_check(&a, &clock, "current").await;
    unchanged().await;
    assert_eq!(cdn.paths(), ["/test.cvd"]);

    // A new version whose cdiff is another version's: the chain is refused, the CVD is
    // published alone, and the cdiff is refused as a supplement and never served.
    cdn.serve_fixtures("test", 4, 2);
    cdn.put(
        "test-4.cdiff",
        std::fs::read(fixture("test-3.cdiff")).unwrap(),
    );
    cdn.remove("test-4.cdiff.sign");
    clock.advance(10);
    until("v4", || async { version(&url, key()).await == 4 }).await;
    until("the bad cdiff refused", || async {
        upstream_metric(&url, "file_refused").await >= 1.0
    })
    .await;
    let m = manifest(&url, key()).await.unwrap();
    assert!(m.file("test-4.cdiff").is_none());
    assert_eq!(m.file("test-3.cdiff"), held.file("test-3.cdiff"));
    // It is not offered to the gate again.
    let refused = upstream_metric(&url, "file_refused").await;
    next_check(&a, &clock, "current").await;
    assert_eq!(upstream_metric(&url, "file_refused").await, refused);

    // A body that never ends is cut at max_file_size; a truncated one is an error; neither
    // changes anything.
    let before = manifest(&url, key()).await.unwrap();
    cdn.serve_fixtures("test", 5, 2);
    cdn.deliver("test.cvd", Delivery::Endless);
    next_check(&a, &clock, "error").await;
    assert_eq!(
        status(&url).await.upstreams[0].blocked_until,
        0,
        "a refusal of ours, not the upstream's unavailability"
    );
    cdn.deliver("test.cvd", Delivery::Truncated);
    next_check(&a, &clock, "error").await;
    let h = status(&url).await.upstreams[0].clone();
    assert!(
        h.blocked_reason.as_deref().unwrap().starts_with("backoff"),
        "{h:?}"
    );
    let m = manifest(&url, key()).await.unwrap();
    assert_eq!(m.databases, before.databases);
    assert_eq!(m.serial, before.serial);
    let too_large = metric(
        &url,
        "vdb_master_upstream_requests_total{upstream=\"0\",outcome=\"too_large\"}",
    )
    .await;
    assert!(too_large >= 1.0);
    a.shutdown().await;
}

#[test]
fn the_documented_follower_config_loads() {
    let doc = include_str!("../../../../docs/deploy.md");
    let start = doc
        .find("# file: /etc/vdbnet/master-follow.toml")
        .expect("docs/deploy.md has the follower's config");
    let block = &doc[start..];
    let block = &block[..block.find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master-follow.toml");
    std::fs::write(&path, block).unwrap();
    let c = Config::load(&path).unwrap();
    let up = c.upstream.unwrap();
    assert_eq!(
        up.base_urls(),
        [
            "https://database.clamav.net",
            "https://clamav-mirror.example.org"
        ]
    );
    assert_eq!(up.databases, ["main", "daily", "bytecode"]);
    assert_eq!((up.cooldown_secs, up.max_redirects), (14400, 0));
    assert_eq!(up.dns_txt.as_deref(), Some("current.cvd.clamav.net"));
    assert!(up.user_agent().contains("ClamAV/1.4.6 compatible"));
    // The defaults are what the document says.
    let d = UpstreamConfig::default();
    assert_eq!(
        (
            d.backoff_base_secs,
            d.backoff_max_secs,
            d.cooldown_secs,
            d.cooldown_max_secs
        ),
        (60, 21600, 14400, 604_800)
    );
    assert!(vdb_master::config::default_user_agent().starts_with("vdbnet/"));
}

#[tokio::test]
async fn the_txt_record_first_no_http_request_when_nothing_changed() {
    let cdn = CdnDouble::start().await;
    cdn.serve_fixtures("test", 3, 2);
    let (dir, clock) = crate::harness::scratch();
    let now = || vdb_proto::Clock::now(&clock);
    // `test` is not in current.cvd: freshclam asks test.cvd.<zone>, and so does the follower.
    let record = "test.cvd.vdbnet.test";
    cdn.set_txt(record, Some(&format!("3:{}", now())));
    let mut c = config(dir.path(), "a", KEY);
    follow(&mut c, &[cdn.url()]);
    let up = c.upstream.as_mut().unwrap();
    up.dns_txt = Some("current.cvd.vdbnet.test".into());
    up.dns_server = Some(cdn.dns_addr());
    let a = start(c, &clock).await;
    let url = a.base_url();
    // After a start, the first check looks whatever the record says.
    until_serves(&url, 3, &[2]).await;
    assert_eq!(cdn.dns_queries(), [record]);

    // The record says 3: one TXT lookup per interval, no HTTP request at all.
    cdn.clear_requests();
    for _ in 0..3 {
        let seen = upstream_metric(&url, "dns_current").await;
        clock.advance(10);
        until("a check answered by the TXT record", || async {
            upstream_metric(&url, "dns_current").await > seen
        })
        .await;
    }
    assert!(cdn.requests().is_empty(), "{:?}", cdn.paths());
    assert_eq!(cdn.dns_queries().len(), 4);

    // The upstream moves and the record with it: straight to the new files.
    cdn.serve_fixtures("test", 4, 2);
    cdn.set_txt(record, Some(&format!("4:{}", now())));
    clock.advance(10);
    until("v4", || async { version(&url, key()).await == 4 }).await;
    assert_eq!(
        cdn.paths(),
        [
            "/test.cvd",
            "/test.cvd",
            "/test-4.cvd.sign",
            "/test-4.cdiff",
            "/test-4.cdiff.sign"
        ]
    );

    // A stale record (over 12 hours old) or none at all: a conditional header probe.
    for text in [Some(format!("4:{}", now() - 13 * 3600)), None] {
        cdn.set_txt(record, text.as_deref());
        cdn.clear_requests();
        let seen = upstream_metric(&url, "dns_fallback").await;
        next_check(&a, &clock, "current").await;
        assert!(upstream_metric(&url, "dns_fallback").await > seen);
        let reqs = cdn.requests();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        assert_eq!((reqs[0].path.as_str(), reqs[0].status), ("/test.cvd", 304));
    }
    a.shutdown().await;
}

/// Only one master of a network polls the upstream: a standby does not while its peer
/// answers, and takes over once the peer has been silent for `standby_after_secs`.
#[tokio::test]
async fn a_standby_master_polls_only_when_its_peer_is_gone() {
    let cdn = CdnDouble::start().await;
    cdn.serve_fixtures("test", 2, 2);
    let (dir, clock) = crate::harness::scratch();
    // The primary (seed 11, as harness::peer expects); it does not follow here.
    let primary = start(config(dir.path(), "p", 11), &clock).await;
    let mut c = config(dir.path(), "b", KEY);
    follow(&mut c, &[cdn.url()]);
    c.upstream.as_mut().unwrap().standby_after_secs = Some(30);
    crate::harness::peer(&mut c, &primary.base_url());
    let b = start(c, &clock).await;
    let url = b.base_url();
    until("b ready", || async { b.is_ready() }).await;
    for _ in 0..4 {
        next_check(&b, &clock, "standby").await;
    }
    assert!(cdn.requests().is_empty(), "{:?}", cdn.paths());
    // The primary is gone: after 30 s of silence the standby follows. The clock moves on in
    // steps until it does: a replication pull in flight at the shutdown may still have counted
    // as an answer after the first step (seen once under load).
    primary.shutdown().await;
    clock.advance(40);
    until("v2 followed by the standby", || async {
        clock.advance(5);
        version(&url, key()).await == 2
    })
    .await;
    assert!(!cdn.requests().is_empty());
    b.shutdown().await;
}

#[tokio::test]
async fn a_slow_upstream_is_cut_at_its_timeout_and_backed_off() {
    let cdn = CdnDouble::start().await;
    cdn.serve_fixtures("test", 2, 2);
    // 1 KiB every 400 ms: the 512-byte probe comes at once, the whole CVD takes seconds.
    cdn.deliver("test.cvd", Delivery::Slow(400));
    let (dir, clock) = crate::harness::scratch();
    let mut c = config(dir.path(), "a", KEY);
    follow(&mut c, &[cdn.url()]);
    c.upstream.as_mut().unwrap().timeout_secs = 1;
    let a = start(c, &clock).await;
    let url = a.base_url();
    until("the timeout", || async {
        metric(
            &url,
            "vdb_master_upstream_requests_total{upstream=\"0\",outcome=\"timeout\"}",
        )
        .await
            >= 1.0
    })
    .await;
    let h = status(&url).await.upstreams[0].clone();
    assert!(
        h.blocked_reason.as_deref().unwrap().starts_with("backoff"),
        "{h:?}"
    );
    assert_eq!(version(&url, key()).await, 0);
    a.shutdown().await;
}
