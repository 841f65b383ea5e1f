//! The status page as a person sees it: rendered by headless Chromium.

use std::time::Duration;

use crate::doubles::*;
use crate::image::Image;
use crate::*;
use vdb_testkit::browser::Browser;

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
    rec3.hubs = vec!["m1".into()];
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
    vdb_testkit::assert_contains(&t, "asia / JP leaf of m1");
    // The hub tree, from the registry: in the table, and drawn (the masters, m1 with its
    // leaf m3-asia under it, then m2).
    vdb_testkit::assert_contains(&t, "hub of m3-asia");
    vdb_testkit::assert_contains(
        &t,
        "Distribution tree Who pushes to whom, from the masters' registry: the masters push to \
         the hubs and to mirrors with no hub; each hub relays to its leaves, which pull from it \
         first. masters m1 in service m3-asia out m2 in service",
    );
    assert!(
        dom.contains("<li data-node=\"m1\"><b>m1</b> <span class=\"st in_service\">in service</span><ul><li data-node=\"m3-asia\">"),
        "m3-asia is drawn under m1:\n{dom}"
    );
    // The rollout of the last release: m2 at once, m1 30 s later, m3 not yet.
    vdb_testkit::assert_contains(&t, "test 3");
    let rollout = &t[t.find("test 3").unwrap()..];
    vdb_testkit::assert_contains(rollout, "on 2 of 3 mirrors");
    vdb_testkit::assert_contains(rollout, "m2 serving since 0s after release");
    vdb_testkit::assert_contains(rollout, "m1 serving since 30s after release");
    vdb_testkit::assert_contains(rollout, "m3-asia not yet");
    r.shutdown().await;
}

/// A duration as the page writes it.
fn human(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

async fn json(r: &vdb_monitor::Running, path: &str) -> serde_json::Value {
    let url = format!("http://{}{path}", r.http_addr());
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.unwrap()
}

/// The page's figures with real data (21 rounds a minute apart; release 3 spreading to m2 at
/// once, m1 two minutes later and m3 only after ten, having lagged, gone old, out and down),
/// as headless Chromium shows them through WebDriver: one SVG per release and one for the
/// history, each an image with its accessible name; their bars and spans as many as the JSON
/// twins hold; the text alternatives say the JSON's figures; screenshots saved in the test's
/// directory decode to the window's size and show the states' colours.
#[tokio::test]
async fn charts_in_headless_chromium_match_their_json_twins() {
    let n = net().await;
    let m3 = Mirror::start().await;
    m3.sync(&release(2, T0));
    n.master.set_registry(vec![
        n.m1.record("m1"),
        n.m2.record("m2"),
        m3.record("m3-asia"),
    ]);
    let mut c = config(n.dir.path(), &n.master, Some(&n.hook));
    c.history_bucket_secs = 60;
    let r = n.monitor_with(c).await;
    let r3 = release(3, T0 + 300);
    for k in 0..=20 {
        match k {
            5 => {
                n.master.publish(&r3);
                n.m2.sync(&r3);
            }
            7 => n.m1.sync(&r3),
            10 => m3.set_down(true),
            15 => {
                m3.set_down(false);
                m3.sync(&r3);
            }
            _ => {}
        }
        at(&r, &n.clock, T0 + k * 60).await;
    }
    n.clock.set(T0 + 20 * 60 + 30);

    // The JSON twins hold what happened.
    let rel = json(&r, "/api/v1/charts/releases").await;
    let hist = json(&r, "/api/v1/charts/mirrors").await;
    let releases = rel["releases"].as_array().unwrap();
    assert_eq!(releases.len(), 2, "{rel}");
    let r3j = &releases[0];
    assert_eq!(
        (r3j["db"].as_str(), r3j["version"].as_u64()),
        (Some("test"), Some(3))
    );
    let secs: Vec<(&str, i64)> = r3j["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["secs"].as_i64().unwrap()))
        .collect();
    assert_eq!(secs, [("m2", 0), ("m1", 120), ("m3-asia", 600)], "{rel}");
    assert_eq!(
        (r3j["median_secs"].as_i64(), r3j["slowest_secs"].as_i64()),
        (Some(120), Some(600))
    );
    let mirrors = hist["mirrors"].as_array().unwrap();
    let by_name = |name: &str| mirrors.iter().find(|m| m["name"] == name).unwrap();
    assert_eq!(by_name("m2")["in_service_pct"], 100, "{hist}");
    let m3_states: Vec<&str> = by_name("m3-asia")["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        m3_states,
        ["in_service", "lagging", "old", "out", "in_service"],
        "{hist}"
    );

    // Chromium shows the same.
    let b = Browser::with_window(1000, 1400).await;
    b.goto(&format!("http://{}/", r.http_addr())).await;
    let figures = b.find_all("svg[role=img]").await;
    assert_eq!(
        figures.len(),
        releases.len() + 1,
        "one figure per release and the history"
    );
    for (i, rj) in releases.iter().enumerate() {
        let svg = b.find_all(&format!("#release-{i}")).await;
        assert_eq!(svg.len(), 1);
        let svg = &svg[0];
        let (db, v) = (rj["db"].as_str().unwrap(), rj["version"].as_u64().unwrap());
        assert_eq!(
            b.accessible_name(svg).await,
            format!("{db} {v}: time to serve per mirror")
        );
        assert!(
            ["img", "image"].contains(&b.role(svg).await.as_str()),
            "{}",
            b.role(svg).await
        );
        assert!(!b.attr_of(svg, "aria-describedby").await.is_empty());
        let listed = rj["mirrors"].as_array().unwrap();
        let served = rj["served"].as_u64().unwrap() as usize;
        assert_eq!(b.find_in(svg, "rect.bar").await.len(), served);
        assert_eq!(
            b.find_in(svg, "rect.pending").await.len(),
            listed.len() - served
        );
        // The text alternative: the summary and one row per mirror, the JSON's figures.
        let section = &b
            .find_all(&format!("section[data-release=\"{db}-{v}\"]"))
            .await[0];
        let caption = b.text_of(&b.find_in(section, "figcaption").await[0]).await;
        let mut want = format!(
            "{db} {v}: served by {served} of {} mirrors",
            rj["total"].as_u64().unwrap()
        );
        if let (Some(m), Some(x)) = (rj["median_secs"].as_i64(), rj["slowest_secs"].as_i64()) {
            want.push_str(&format!("; median {}; slowest {}", human(m), human(x)));
        }
        assert_eq!(caption, want);
        let rows = b.find_in(section, "tr.rollout").await;
        assert_eq!(rows.len(), listed.len());
        for (row, m) in rows.iter().zip(listed) {
            let want = match m["secs"].as_i64() {
                Some(s) => format!(
                    "{} serving since {} after release",
                    m["name"].as_str().unwrap(),
                    human(s)
                ),
                None => format!("{} not yet", m["name"].as_str().unwrap()),
            };
            assert_eq!(
                b.text_of(row)
                    .await
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                want
            );
        }
    }
    let history = &b.find_all("#history-chart").await[0];
    vdb_testkit::assert_contains(&b.accessible_name(history).await, "Mirror state from");
    let spans: usize = mirrors
        .iter()
        .map(|m| m["spans"].as_array().unwrap().len())
        .sum();
    assert_eq!(b.find_in(history, "rect.span").await.len(), spans);
    assert_eq!(b.find_in(history, "rect.lane").await.len(), mirrors.len());
    for m in mirrors {
        let name = m["name"].as_str().unwrap();
        let row = &b
            .find_all(&format!("tr.history[data-mirror=\"{name}\"]"))
            .await[0];
        let text = b.text_of(row).await;
        let pct = format!("{}%", m["in_service_pct"].as_u64().unwrap());
        let checks = m["checks"].as_u64().unwrap().to_string();
        for want in [name, pct.as_str(), checks.as_str()] {
            vdb_testkit::assert_contains(&text, want);
        }
        assert_eq!(m["checks"], 21, "a check every round: {m}");
    }

    // Screenshots, saved beside the monitor's database.
    let page = b.screenshot().await;
    std::fs::write(n.dir.path().join("status-page.png"), &page).unwrap();
    let img = Image::decode(&page);
    assert_eq!(
        (img.width, img.height),
        b.viewport().await,
        "the window's size"
    );
    assert!(img.colours() > 20, "not blank: {} colours", img.colours());
    let shot = b.element_screenshot(history).await;
    let path = n.dir.path().join("history-chart.png");
    std::fs::write(&path, &shot).unwrap();
    if let Ok(dir) = std::env::var("VDB_TEST_SCREENSHOTS") {
        std::fs::copy(&path, std::path::Path::new(&dir).join("history-chart.png")).unwrap();
        std::fs::write(std::path::Path::new(&dir).join("status-page.png"), &page).unwrap();
    }
    let img = Image::decode(&shot);
    let (_, _, w, h) = b.rect(history).await;
    assert!(
        (f64::from(img.width) - w).abs() <= 1.0 && (f64::from(img.height) - h).abs() <= 1.0,
        "the chart's screenshot is {}x{}, its box {w}x{h}",
        img.width,
        img.height
    );
    let all = (0, 0, img.width, img.height);
    for (state, rgb) in [
        ("in service", [0x1f, 0x88, 0x3d]),
        ("lagging", [0xbf, 0x87, 0x00]),
        ("old", [0xd1, 0x24, 0x2f]),
        ("out", [0x6e, 0x1b, 0x1b]),
    ] {
        let px = img.count_near(rgb, 3, all);
        assert!(
            px >= 20,
            "the {state} colour shows in the chart: {px} pixels"
        );
    }
    r.shutdown().await;
}
