//! The library API with a `ManualClock`: cool-down expiry and DNS staleness are checked at
//! exact instants, without sleeping. The mirror and DNS server are test doubles.

mod common;

use std::sync::Arc;

use common::*;
use vdb_proto::ManualClock;
use vdb_update::config::Settings;
use vdb_update::log::Log;
use vdb_update::updater::{Code, RunOptions, run_with_clock};

fn settings(w: &Work, mirror: &str) -> Settings {
    Settings {
        database_directory: w.db(),
        mirrors: vec![mirror.to_owned()],
        dns_domain: None,
        databases: vec!["test".into()],
        max_attempts: 1,
        retry_delay: std::time::Duration::ZERO,
        ..Settings::default()
    }
}

#[tokio::test]
async fn cool_down_ends_exactly_at_retry_after() {
    let w = Work::new();
    serve_fixture(&w.www(), "test-6.cvd", "test.cvd");
    let m = Mirror::start(&w.www()).await;
    m.fault("/test.cvd", 429, Some(3600), true);
    let s = settings(&w, &m.url());
    let opts = RunOptions::default();
    let clock = ManualClock::new(1_800_000_000);
    let log = Log::capture();
    let r = run_with_clock(&s, &opts, &log, Arc::new(clock.clone())).await;
    assert_eq!((r.code, r.exit_code), (Code::RetryLater, 0));
    assert_eq!(m.requests().len(), 2);
    m.clear_faults();
    // One second before the end: no request at all.
    clock.set(1_800_003_599);
    let r = run_with_clock(&s, &opts, &log, Arc::new(clock.clone())).await;
    assert_eq!((r.code, r.exit_code), (Code::UpToDate, 0));
    assert!(m.requests().is_empty());
    // At the end: the update happens.
    clock.set(1_800_003_600);
    let r = run_with_clock(&s, &opts, &log, Arc::new(clock.clone())).await;
    assert_eq!(r.code, Code::Success, "{:?}", log.captured());
    assert_eq!(r.updated, [("test.cvd".to_owned(), 6)]);
    assert_eq!(m.requests().len(), 2);
}

#[tokio::test]
async fn dns_record_is_used_for_12_hours_then_discarded() {
    let w = Work::new();
    serve_fixture(&w.www(), "test-6.cvd", "test.cvd");
    w.put_db("test-6.cvd", "test.cvd");
    let m = Mirror::start(&w.www()).await;
    let t = 1_800_000_000i64;
    let dns = FakeDns::start(&[
        (
            "current.cvd.example.test.",
            format!("1.4.6:62:27000:{t}:0:216:49192:335"),
        ),
        ("test.cvd.example.test.", format!("6:{t}")),
    ])
    .await;
    let s = Settings {
        dns_domain: Some("current.cvd.example.test".into()),
        dns_server: Some(dns.addr),
        db_txt_zone: "example.test".into(),
        ..settings(&w, &m.url())
    };
    let opts = RunOptions::default();
    let clock = ManualClock::new(t + 12 * 3600);
    let log = Log::capture();
    let r = run_with_clock(&s, &opts, &log, Arc::new(clock.clone())).await;
    assert_eq!(r.code, Code::UpToDate);
    assert!(m.requests().is_empty(), "DNS says current: no HTTP");
    clock.advance(1);
    let r = run_with_clock(&s, &opts, &log, Arc::new(clock.clone())).await;
    assert_eq!(r.code, Code::UpToDate);
    assert_eq!(m.requests().len(), 1, "stale record: header probe");
    assert!(
        log.captured()
            .iter()
            .any(|l| l.contains("older than 12 hours")),
        "{:?}",
        log.captured()
    );
}
