//! The status page as a person sees it: rendered by headless Chromium.

use std::time::Duration;

use crate::doubles::*;
use crate::*;

/// Runs headless Chromium on `url` and returns the rendered DOM.
async fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let child = tokio::process::Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=390,844",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium is installed at /usr/bin/chromium");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("chromium finished within 60 s")
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Text content of the DOM: tags dropped, entities for the few we emit decoded.
fn text(dom: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in dom.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn status_page_in_headless_chromium() {
    let n = net().await;
    let m3 = Mirror::start().await;
    let r2 = release(2, T0);
    m3.sync(&r2);
    let mut rec3 = m3.record("m3-asia");
    rec3.region = Some("asia".into());
    rec3.country = Some("JP".into());
    n.master
        .set_registry(vec![n.m1.record("m1"), n.m2.record("m2"), rec3]);
    let r = n.monitor().await;
    at(&r, &n.clock, T0).await;
    let r3 = release(3, T0 + 10);
    n.master.publish(&r3);
    n.m2.sync(&r3);
    at(&r, &n.clock, T0 + 10).await;
    n.m1.sync(&r3);
    at(&r, &n.clock, T0 + 40).await;
    m3.set_down(true);
    at(&r, &n.clock, T0 + 130).await;
    at(&r, &n.clock, T0 + 230).await;

    let dom = dump_dom(&format!("http://{}/", r.http_addr())).await;
    assert!(dom.contains("name=\"viewport\""), "readable on a phone");
    let t = text(&dom);
    // The mirrors and their states as shown.
    vdb_testkit::assert_contains(&t, "m1 in service");
    vdb_testkit::assert_contains(&t, "m2 in service");
    vdb_testkit::assert_contains(&t, "m3-asia out");
    vdb_testkit::assert_contains(&t, "asia / JP");
    // The rollout of the last release: m2 at once, m1 30 s later, m3 not yet.
    vdb_testkit::assert_contains(&t, "test 3");
    let rollout = &t[t.find("test 3").unwrap()..];
    vdb_testkit::assert_contains(rollout, "on 2 of 3 mirrors");
    vdb_testkit::assert_contains(rollout, "m2 serving since 0s after release");
    vdb_testkit::assert_contains(rollout, "m1 serving since 30s after release");
    vdb_testkit::assert_contains(rollout, "m3-asia not yet");
    r.shutdown().await;
}
