//! Integration tests of the monitor against test doubles (a master, mirrors, a webhook, an
//! SMTP sink, a peer monitor), all real HTTP on 127.0.0.1, time driven by a `ManualClock`.

mod doubles;
mod image;
mod page;
mod tls;

use std::path::Path;
use std::sync::{Arc, Mutex};

use doubles::*;
use vdb_monitor::{Config, Running, start};
use vdb_proto::{MANIFEST_PATH, MaintenanceWindow, ManualClock, MirrorState, VerdictReport};

fn config(dir: &Path, master: &Master, hook: Option<&Webhook>) -> Config {
    let mut c = Config::new(
        NETWORK,
        vec![master.url.clone()],
        vec![master_key().public()],
    );
    c.name = "mon-test".into();
    c.database = dir.join("monitor.sqlite");
    c.check_interval_secs = 0;
    c.request_timeout_secs = 5;
    c.thresholds.lagging_secs = 10;
    c.thresholds.old_secs = 100;
    c.thresholds.out_secs = 200;
    c.thresholds.unreachable_out_secs = 200;
    c.thresholds.recover_checks = 2;
    c.alerts.webhook_url = hook.map(|h| h.url.clone());
    c.alerts.repeat_secs = 1000;
    c
}

struct Net {
    master: Master,
    m1: Mirror,
    m2: Mirror,
    hook: Webhook,
    clock: ManualClock,
    dir: tempfile::TempDir,
}

async fn net() -> Net {
    let master = Master::start().await;
    let (m1, m2) = (Mirror::start().await, Mirror::start().await);
    let r2 = release(2, T0);
    master.publish(&r2);
    m1.sync(&r2);
    m2.sync(&r2);
    master.set_registry(vec![m1.record("m1"), m2.record("m2")]);
    Net {
        master,
        m1,
        m2,
        hook: Webhook::start().await,
        clock: ManualClock::new(T0),
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Net {
    async fn monitor(&self) -> Running {
        self.monitor_with(config(self.dir.path(), &self.master, Some(&self.hook)))
            .await
    }

    async fn monitor_with(&self, c: Config) -> Running {
        start(c, Arc::new(self.clock.clone())).await.unwrap()
    }

    /// A monitor that asks `peer` for its verdicts too and needs two monitors to agree.
    async fn monitor_in_quorum(&self, peer: String) -> Running {
        let mut c = config(self.dir.path(), &self.master, Some(&self.hook));
        c.peers = vec![peer];
        c.quorum = 2;
        self.monitor_with(c).await
    }
}

/// The network of [`net`] and its monitor, after a first check at T0.
async fn checked_net() -> (Net, Running) {
    let n = net().await;
    let r = n.monitor().await;
    at(&r, &n.clock, T0).await;
    (n, r)
}

/// The monitor's verdicts through HTTP (as the directory reads them), with `query`.
async fn verdicts(r: &Running, query: &str) -> VerdictReport {
    let url = format!("http://{}/api/v1/verdicts{query}", r.http_addr());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Checks every mirror at `t`; the verdicts then.
async fn at(r: &Running, clock: &ManualClock, t: i64) -> VerdictReport {
    clock.set(t);
    let s = r.monitor().check_all(t).await.unwrap();
    assert!(!s.skipped_self_trouble);
    verdicts(r, "").await
}

/// Checks at each `(time, state, why)` in turn and asserts the state of mirror `name` after
/// each; the last verdicts.
async fn expect_states(
    r: &Running,
    clock: &ManualClock,
    name: &str,
    steps: &[(i64, MirrorState, &str)],
) -> VerdictReport {
    let mut last = None;
    for &(t, want, why) in steps {
        let rep = at(r, clock, t).await;
        let got = state(&rep, name);
        assert_eq!(
            got,
            want,
            "{name} at T0 + {}: {why} {:?}",
            t - T0,
            rep.mirrors
        );
        last = Some(rep);
    }
    last.expect("at least one step")
}

/// Asserts that mirror `i`'s reason mentions `what`.
#[track_caller]
fn assert_reason(rep: &VerdictReport, i: usize, what: &str) {
    let why = &rep.mirrors[i].reason;
    assert!(why.contains(what), "{why}");
}

/// Asserts that mirror `name` is out, for a reason that mentions `why`.
#[track_caller]
fn assert_out(rep: &VerdictReport, name: &str, why: &str) {
    let v = rep.mirrors.iter().find(|m| m.name == name).unwrap();
    assert_eq!(v.state, MirrorState::Out, "{:?}", rep.mirrors);
    assert!(v.reason.contains(why), "{}", v.reason);
}

/// Asserts the state of mirror `name`, showing every verdict if it differs.
#[track_caller]
fn assert_state(rep: &VerdictReport, name: &str, want: MirrorState) {
    assert_eq!(state(rep, name), want, "{:?}", rep.mirrors);
}

fn state(rep: &VerdictReport, name: &str) -> MirrorState {
    rep.mirrors.iter().find(|m| m.name == name).unwrap().state
}

#[tokio::test]
async fn frozen_mirror_turns_old_then_out_and_returns_alerts_once() {
    let n = net().await;
    let r = n.monitor().await;
    let rep = at(&r, &n.clock, T0).await;
    assert_eq!(state(&rep, "m1"), MirrorState::InService);
    assert_eq!(rep.newest["test"], 2);

    // Release 3 at T0+10: m2 syncs, m1 stays frozen on 2.
    let r3 = release(3, T0 + 10);
    n.master.publish(&r3);
    n.m2.sync(&r3);
    let steps = [
        (T0 + 10, MirrorState::InService, "superseded just now"),
        (T0 + 50, MirrorState::Lagging, ""),
    ];
    let rep = expect_states(&r, &n.clock, "m1", &steps).await;
    let v = rep.mirrors.iter().find(|m| m.name == "m1").unwrap();
    assert_eq!((v.lag_secs, v.serving["test"]), (40, 2));
    assert_eq!(state(&rep, "m2"), MirrorState::InService);
    let rep = at(&r, &n.clock, T0 + 109).await;
    assert_eq!(state(&rep, "m1"), MirrorState::Lagging);
    assert!(n.hook.hits().is_empty());
    let rep = at(&r, &n.clock, T0 + 110).await;
    assert_eq!(state(&rep, "m1"), MirrorState::Old, "old at the threshold");
    assert_eq!(n.hook.hits(), vec![("m1".into(), "old".into(), 0)]);
    at(&r, &n.clock, T0 + 150).await;
    assert_eq!(n.hook.hits().len(), 1, "an alert is sent once");
    let rep = at(&r, &n.clock, T0 + 210).await;
    assert_eq!(state(&rep, "m1"), MirrorState::Out);
    assert!(
        !state(&rep, "m1").in_service(),
        "leaves the directory's answers"
    );
    assert_eq!(n.hook.hits()[1], ("m1".into(), "out".into(), 0));

    // It syncs again: back after two good checks in a row, with one recovery notice.
    n.m1.sync(&r3);
    let steps = [
        (T0 + 220, MirrorState::Out, "hysteresis"),
        (T0 + 230, MirrorState::InService, ""),
    ];
    expect_states(&r, &n.clock, "m1", &steps).await;
    at(&r, &n.clock, T0 + 240).await;
    assert_eq!(
        n.hook.hits(),
        vec![
            ("m1".into(), "old".into(), 0),
            ("m1".into(), "out".into(), 0),
            ("m1".into(), "recovered".into(), 0)
        ]
    );
    // A restart remembers what was sent and the states.
    r.shutdown().await;
    let r = n.monitor().await;
    assert_eq!(state(&verdicts(&r, "").await, "m1"), MirrorState::InService);
    at(&r, &n.clock, T0 + 250).await;
    assert_eq!(n.hook.hits().len(), 3);
    r.shutdown().await;
}

#[tokio::test]
async fn unreachable_mirror_turns_old_then_out_and_returns() {
    let (n, r) = checked_net().await;
    n.m1.set_down(true);
    let steps = [
        (T0 + 10, MirrorState::InService, "one failure is not enough"),
        (T0 + 109, MirrorState::InService, ""),
        (T0 + 110, MirrorState::Old, ""),
        (T0 + 210, MirrorState::Out, ""),
    ];
    let rep = expect_states(&r, &n.clock, "m1", &steps).await;
    assert_reason(&rep, 0, "503");
    n.m1.set_down(false);
    let steps = [
        (T0 + 220, MirrorState::Out, ""),
        (T0 + 230, MirrorState::InService, ""),
    ];
    expect_states(&r, &n.clock, "m1", &steps).await;
    let kinds: Vec<String> = n.hook.hits().into_iter().map(|h| h.1).collect();
    assert_eq!(kinds, ["old", "out", "recovered"]);
    r.shutdown().await;
}

#[tokio::test]
async fn maintenance_raises_no_alert() {
    let n = net().await;
    let mut rec = n.m1.record("m1");
    rec.maintenance.push(MaintenanceWindow {
        start: T0 + 5,
        end: T0 + 400,
        reason: "disk swap".into(),
    });
    n.master.set_registry(vec![rec, n.m2.record("m2")]);
    let r = n.monitor().await;
    at(&r, &n.clock, T0).await;
    n.m1.set_down(true);
    let steps = [T0 + 10, T0 + 150, T0 + 300].map(|t| (t, MirrorState::Maintenance, ""));
    expect_states(&r, &n.clock, "m1", &steps).await;
    n.m1.set_down(false);
    let steps = [
        (T0 + 390, MirrorState::Maintenance, ""),
        (T0 + 400, MirrorState::InService, ""),
    ];
    expect_states(&r, &n.clock, "m1", &steps).await;
    assert!(n.hook.hits().is_empty(), "{:?}", n.hook.hits());
    r.shutdown().await;
}

#[tokio::test]
async fn tampered_file_is_out_at_the_next_check() {
    let (n, r) = checked_net().await;
    n.m1.tamper("timestamp", b"1\n".to_vec());
    let rep = at(&r, &n.clock, T0 + 1).await;
    assert_eq!(state(&rep, "m1"), MirrorState::Out);
    let why = &rep.mirrors[0].reason;
    assert!(
        why.contains("timestamp") && why.contains("does not match"),
        "{why}"
    );
    assert_eq!(state(&rep, "m2"), MirrorState::InService);
}

/// ClamAV 1.5's `.sign` files are checked like every small file of the manifest: a mirror that
/// serves other bytes for the CVD's `.sign` (ClamAV 1.5 clients would reject the CVD) is out.
#[tokio::test]
async fn a_wrong_sign_file_is_out_at_the_next_check() {
    let n = net().await;
    let r3 = release_with_signs(3, T0, true);
    n.master.publish(&r3);
    n.m1.sync(&r3);
    n.m2.sync(&r3);
    let r = n.monitor().await;
    let rep = at(&r, &n.clock, T0).await;
    assert_state(&rep, "m1", MirrorState::InService);
    // The .sign of another version under this version's name.
    n.m1.tamper("test-3.cvd.sign", fixture("test-2.cvd.sign"));
    n.m2.tamper("test-3.cdiff.sign", fixture("test-2.cdiff.sign"));
    let rep = at(&r, &n.clock, T0 + 1).await;
    assert_state(&rep, "m1", MirrorState::Out);
    assert_reason(&rep, 0, "test-3.cvd.sign");
    assert_state(&rep, "m2", MirrorState::Out);
    assert_reason(&rep, 1, "test-3.cdiff.sign");
    r.shutdown().await;
}

#[tokio::test]
async fn wrong_cvd_header_is_out_at_the_next_check() {
    let (n, r) = checked_net().await;
    // The body of another version under the name the manifest lists for version 2.
    n.m1.tamper("test.cvd", fixture("test-3.cvd"));
    let rep = at(&r, &n.clock, T0 + 1).await;
    assert_out(&rep, "m1", "test.cvd");
    // Same size, header altered in a byte not checked by version: the master's copy differs.
    let (n, r) = checked_net().await;
    let mut cvd = fixture("test-2.cvd");
    cvd[12] = b'7';
    n.m1.tamper("test.cvd", cvd);
    let rep = at(&r, &n.clock, T0 + 1).await;
    assert_out(&rep, "m1", "master's copy");
}

#[tokio::test]
async fn a_changed_byte_in_a_cvd_body_is_found_by_the_whole_file_check() {
    let n = net().await;
    let mut c = config(n.dir.path(), &n.master, Some(&n.hook));
    c.deep_check_secs = 3600;
    c.deep_checks_per_round = 1;
    let r = n.monitor_with(c).await;
    // Round 1 checks m1's whole files, round 2 m2's (one per round, longest waiting first).
    at(&r, &n.clock, T0).await;
    at(&r, &n.clock, T0 + 1).await;
    // Same size, header intact: only the body differs, which header checks cannot see.
    let mut cvd = fixture("test-2.cvd");
    let i = cvd.len() - 100;
    cvd[i] ^= 0x55;
    n.m1.tamper("test.cvd", cvd);
    let steps = [
        (
            T0 + 2,
            MirrorState::InService,
            "whole-file check not due yet",
        ),
        (T0 + 3600, MirrorState::Out, ""),
    ];
    let rep = expect_states(&r, &n.clock, "m1", &steps).await;
    assert!(
        rep.mirrors[0].reason.contains("test.cvd")
            && rep.mirrors[0].reason.contains("whole-file check"),
        "{}",
        rep.mirrors[0].reason
    );
    assert_eq!(state(&rep, "m2"), MirrorState::InService);
}

#[tokio::test]
async fn rollback_is_out_at_the_next_check() {
    let n = net().await;
    let r = n.monitor().await;
    let r3 = release(3, T0 + 10);
    n.master.publish(&r3);
    n.m1.sync(&r3);
    at(&r, &n.clock, T0 + 10).await;
    n.m1.sync(&release(2, T0));
    let rep = at(&r, &n.clock, T0 + 11).await;
    assert_out(&rep, "m1", "rollback");
    // A manifest signed by someone else is bad data too.
    let other = vdb_proto::SecretKey::from_seed([9; 32]);
    let mut forged = release(3, T0 + 10);
    let m = vdb_proto::Signed::<vdb_proto::Manifest>::from_json(forged.envelope.as_bytes())
        .unwrap()
        .verify(&[master_key().public()])
        .unwrap();
    forged.envelope = vdb_proto::Signed::sign(&m, &other).to_json();
    n.m2.sync(&forged);
    let rep = at(&r, &n.clock, T0 + 12).await;
    assert_out(&rep, "m2", "not a trusted key");
}

#[tokio::test]
async fn quorum_keeps_a_mirror_in_until_enough_monitors_agree() {
    let n = net().await;
    let peer_report = Arc::new(Mutex::new(VerdictReport {
        monitor: "peer".into(),
        generated_at: T0,
        newest: Default::default(),
        mirrors: Vec::new(),
    }));
    let peer_url = peer(peer_report.clone()).await;
    let r = n.monitor_in_quorum(peer_url).await;
    at(&r, &n.clock, T0).await;
    n.m1.set_down(true);
    at(&r, &n.clock, T0 + 10).await;
    let rep = at(&r, &n.clock, T0 + 210).await;
    assert_state(&rep, "m1", MirrorState::Lagging);
    assert_reason(&rep, 0, "1 of the 2");
    let local = verdicts(&r, "?view=local").await;
    assert_eq!(state(&local, "m1"), MirrorState::Out);
    assert!(n.hook.hits().is_empty(), "no alert without a quorum");
    // The peer agrees: out.
    let mut v = local.mirrors[0].clone();
    v.state = MirrorState::Out;
    peer_report.lock().unwrap().mirrors = vec![v];
    let rep = at(&r, &n.clock, T0 + 220).await;
    assert_eq!(state(&rep, "m1"), MirrorState::Out);
    assert_eq!(n.hook.hits().len(), 1);
    r.shutdown().await;
}

#[tokio::test]
async fn own_network_trouble_judges_nobody() {
    let (n, r) = checked_net().await;
    let mut c = config(n.dir.path(), &n.master, Some(&n.hook));
    // Nothing answers: a master URL that refuses connections and both mirrors down.
    c.masters = vec!["http://127.0.0.1:9".into()];
    r.shutdown().await;
    let r = n.monitor_with(c).await;
    n.m1.set_down(true);
    n.m2.set_down(true);
    n.clock.set(T0 + 500);
    let s = r.monitor().check_all(T0 + 500).await.unwrap();
    assert!(s.skipped_self_trouble);
    let rep = r.monitor().verdicts(false);
    assert!(
        rep.mirrors
            .iter()
            .all(|m| m.state == MirrorState::InService)
    );
    r.shutdown().await;
}

#[tokio::test]
async fn mail_to_team_and_admin_once() {
    let n = net().await;
    let smtp = vdb_testkit::SmtpSink::start().await;
    let mut c = config(n.dir.path(), &n.master, None);
    c.alerts.smtp = Some(vdb_monitor::SmtpConfig {
        server: smtp.addr.to_string(),
        from: "monitor@testnet.example".into(),
        to: vec!["team@testnet.example".into()],
        ..Default::default()
    });
    let r = n.monitor_with(c).await;
    at(&r, &n.clock, T0).await;
    n.m1.set_down(true);
    at(&r, &n.clock, T0 + 10).await;
    at(&r, &n.clock, T0 + 110).await;
    at(&r, &n.clock, T0 + 120).await;
    let got = smtp.mails();
    let mut to: Vec<String> = got.iter().map(|m| m.to.join(",")).collect();
    to.sort();
    assert_eq!(to, ["admin@m1.example", "team@testnet.example"]);
    assert!(
        got[0].data.contains("Subject: [vdbnet] mirror m1 is old"),
        "{}",
        got[0].data
    );
    r.shutdown().await;
}

#[tokio::test]
async fn status_json_metrics_and_health() {
    let (n, r) = checked_net().await;
    let r3 = release(3, T0 + 10);
    n.master.publish(&r3);
    n.m2.sync(&r3);
    at(&r, &n.clock, T0 + 15).await;
    let base = format!("http://{}", r.http_addr());
    let st: serde_json::Value = reqwest::get(format!("{base}/api/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["mirrors"].as_array().unwrap().len(), 2);
    assert_eq!(st["mirrors"][0]["region"], "europe");
    assert_eq!(st["mirrors"][0]["history"].as_array().unwrap().len(), 2);
    let rel = &st["releases"][0];
    assert_eq!(
        (rel["db"].as_str(), rel["version"].as_u64()),
        (Some("test"), Some(3))
    );
    assert_eq!(rel["rollout"]["m2"], T0 + 15);
    assert!(rel["rollout"].get("m1").is_none());
    let metrics = vdb_testkit::http::get_text(&format!("{base}/metrics")).await;
    vdb_testkit::assert_contains(
        &metrics,
        "vdb_monitor_mirror_state{mirror=\"m1\",state=\"in_service\"} 1",
    );
    vdb_testkit::assert_contains(&metrics, "vdb_monitor_newest_version{db=\"test\"} 3");
    assert_eq!(
        vdb_testkit::http::get_text(&format!("{base}/healthz")).await,
        "ok"
    );
    let nf = reqwest::get(format!("{base}/nope")).await.unwrap();
    assert_eq!(nf.status(), 404);
    let e: vdb_proto::ApiError = nf.json().await.unwrap();
    assert_eq!(e.code, "not_found");
    r.shutdown().await;
}

#[tokio::test]
async fn reminders_escalate_and_the_hourly_cap_holds() {
    let n = net().await;
    let mut c = config(n.dir.path(), &n.master, Some(&n.hook));
    c.alerts.repeat_secs = 40;
    c.alerts.max_per_hour = 3;
    let r = n.monitor_with(c).await;
    at(&r, &n.clock, T0).await;
    n.m1.set_down(true);
    n.m2.set_down(true);
    at(&r, &n.clock, T0 + 10).await;
    // Both old at once: two alerts.
    at(&r, &n.clock, T0 + 110).await;
    assert_eq!(n.hook.hits().len(), 2);
    // Still old 40 s later: one reminder each, but the cap (3 an hour) lets only one through.
    at(&r, &n.clock, T0 + 150).await;
    let hits = n.hook.hits();
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert_eq!((hits[2].1.as_str(), hits[2].2), ("old", 1));
    at(&r, &n.clock, T0 + 160).await;
    assert_eq!(
        n.hook.hits().len(),
        3,
        "suppressed alerts are not sent later"
    );
    let metrics = vdb_testkit::http::get_text(&format!("http://{}/metrics", r.http_addr())).await;
    vdb_testkit::assert_contains(
        &metrics,
        "vdb_monitor_alerts_total{kind=\"old\",outcome=\"suppressed\"} 1",
    );
    r.shutdown().await;
}

#[tokio::test]
async fn host_names_are_checked_at_each_registered_address() {
    let n = net().await;
    let port = n.m1.url.rsplit(':').next().unwrap().to_owned();
    let mut rec = MirrorRecordExt::named(&n.m1, "m1", &format!("http://db.m1.test:{port}"));
    rec.addresses = vec!["127.0.0.1".parse().unwrap()];
    n.master.set_registry(vec![rec.clone()]);
    let r = n.monitor().await;
    let rep = at(&r, &n.clock, T0).await;
    assert_state(&rep, "m1", MirrorState::InService);
    // An address where nothing listens: that way of reaching it fails.
    rec.addresses.push("127.0.0.2".parse().unwrap());
    n.master.set_registry(vec![rec]);
    let rep = at(&r, &n.clock, T0 + 1).await;
    assert_reason(&rep, 0, "via 127.0.0.2");
    r.shutdown().await;
}

#[tokio::test]
async fn random_mode_checks_one_mirror_a_round() {
    let n = net().await;
    let mut c = config(n.dir.path(), &n.master, None);
    c.check_mode = vdb_monitor::CheckMode::Random;
    let r = n.monitor_with(c).await;
    let s = r.monitor().check_round(T0).await.unwrap();
    assert_eq!(s.checked, 1);
    let hits = n.m1.data.lock().unwrap().hits + n.m2.data.lock().unwrap().hits;
    assert!(hits > 0);
    assert!(n.m1.data.lock().unwrap().hits == 0 || n.m2.data.lock().unwrap().hits == 0);
    r.shutdown().await;
}

/// A registry record under another base URL.
struct MirrorRecordExt;

impl MirrorRecordExt {
    fn named(m: &Mirror, name: &str, base: &str) -> vdb_proto::MirrorRecord {
        let mut r = m.record(name);
        r.base_urls = vec![base.to_owned()];
        r
    }
}

#[tokio::test]
async fn hostile_and_broken_mirrors() {
    let manifest = MANIFEST_PATH.trim_start_matches('/');
    let (n, r) = checked_net().await;
    // Garbage instead of a signed manifest: out at once.
    n.m1.tamper(manifest, b"{\"kind\":\"manifest\"".to_vec());
    // A manifest bigger than any real one: refused without reading it all.
    n.m2.tamper(manifest, vec![b' '; 9 << 20]);
    let rep = at(&r, &n.clock, T0 + 1).await;
    assert_out(&rep, "m1", "not a signed manifest");
    assert_out(&rep, "m2", "larger than");

    // An expired manifest (a mirror frozen for weeks): out.
    let (n, r) = checked_net().await;
    n.m1.sync(&release(2, T0 - 31 * 86400));
    let rep = at(&r, &n.clock, T0 + 1).await;
    assert_out(&rep, "m1", "expired");

    // A listed file that is missing: a failed check (not bad data), out only if it lasts.
    let mut broken = release(2, T0);
    broken.files.remove("timestamp");
    n.m2.sync(&broken);
    let rep = at(&r, &n.clock, T0 + 2).await;
    assert_eq!(state(&rep, "m2"), MirrorState::InService);
    assert_reason(&rep, 1, "timestamp: HTTP 404");
    r.shutdown().await;
}

#[tokio::test]
async fn an_undelivered_alert_is_retried_and_sent_once() {
    use std::sync::atomic::Ordering;
    let (n, r) = checked_net().await;
    n.m1.set_down(true);
    n.hook.failing.store(true, Ordering::SeqCst);
    at(&r, &n.clock, T0 + 10).await;
    let s = r.monitor().check_all(T0 + 110).await.unwrap();
    assert_eq!((s.alerts_queued, s.alerts_sent), (1, 0));
    n.hook.failing.store(false, Ordering::SeqCst);
    let s = r.monitor().check_all(T0 + 120).await.unwrap();
    assert_eq!((s.alerts_queued, s.alerts_sent), (0, 1));
    at(&r, &n.clock, T0 + 130).await;
    assert_eq!(n.hook.hits(), vec![("m1".into(), "old".into(), 0)]);
    r.shutdown().await;
}

#[tokio::test]
async fn two_real_monitors_reach_a_quorum() {
    let n = net().await;
    let dir_b = tempfile::tempdir().unwrap();
    let b = n.monitor_with(config(dir_b.path(), &n.master, None)).await;
    let a = n
        .monitor_in_quorum(format!("http://{}/api/v1/verdicts", b.http_addr()))
        .await;
    at(&b, &n.clock, T0).await;
    at(&a, &n.clock, T0).await;
    n.m1.set_down(true);
    at(&b, &n.clock, T0 + 10).await;
    at(&a, &n.clock, T0 + 10).await;
    // Only A has checked since the threshold: B still says in service, so A keeps it in.
    let rep = at(&a, &n.clock, T0 + 110).await;
    assert_state(&rep, "m1", MirrorState::Lagging);
    // B agrees after its own check: A takes it out, and alerts once.
    at(&b, &n.clock, T0 + 111).await;
    let rep = at(&a, &n.clock, T0 + 112).await;
    assert_eq!(state(&rep, "m1"), MirrorState::Old);
    assert_eq!(n.hook.hits(), vec![("m1".into(), "old".into(), 0)]);
    a.shutdown().await;
    b.shutdown().await;
}
