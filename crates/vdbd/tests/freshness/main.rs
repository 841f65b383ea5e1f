//! Freshness end to end (issue 20): real `vdbd` processes with the default intervals of
//! `docs/deploy.md` (the monitor's `check_interval_secs = 300` included).
//!
//! - The TXT record follows the rollout, not the monitor's clock: it moves within 1 s of the
//!   last in-service mirror serving a release; a mirror that has not taken the release holds it
//!   back (invariant 9); a mirror that took an earlier one and then fails the monitor's check is
//!   out and no longer holds it back; before that, `current.cvd` is never NXDOMAIN once a
//!   release exists.
//! - `dns.txt` on every mirror and the directory's TXT record are the same bytes.
//! - Small downloads between real processes do not stall (TCP_NODELAY on both sides).
//! - The real freshclam 1.4.6 in DNS mode updates right after a publish (`freshclam.rs`).

mod freshclam;
mod harness;

use std::time::{Duration, Instant};

use harness::{
    MirrorSpec, Net, current_txt, dig, directory_view, http_get, row, secs, serial_at, sync_once,
    tamper, txt_version, wait_for, when,
};

const ZONE: &str = "fresh.test.";

/// What the issue asks: the TXT record moves within this long of the last in-service mirror
/// serving the release.
const GOAL: Duration = Duration::from_secs(1);

/// The mirror's `dns.txt` and the directory's `current.cvd` TXT record are the same bytes.
fn assert_txt_is_dns_txt(dns: std::net::SocketAddr, mirrors: &[&MirrorSpec]) {
    let txt = current_txt(dns, ZONE).expect("a current.cvd record");
    for m in mirrors {
        let file = http_get(&format!("{}/dns.txt", m.url)).expect("dns.txt");
        assert_eq!(
            format!("{txt}\n").as_bytes(),
            file.as_slice(),
            "{}'s dns.txt {:?} differs from the TXT record {txt:?}",
            m.name,
            String::from_utf8_lossy(&file)
        );
    }
}

#[test]
fn txt_follows_the_rollout_not_the_monitors_clock() {
    let net = Net::new();
    let _master = net.start_master();
    let keys = net.keys();
    let ip1 = "127.0.0.41";
    let ip2 = "127.0.0.42";
    let m1 = net.mirror("m1", ip1, vdb_testkit::free_port(ip1), true);
    let m2 = net.mirror("m2", ip2, vdb_testkit::free_port(ip2), false);
    let _p1 = net.start_mirror(&m1);
    let _p2 = net.start_mirror(&m2);
    let monitor = net.start_monitor();
    let dir = net.start_directory(ZONE, "127.0.0.1:0", &monitor.ready().http_url());
    let dns = dir.ready().dns_addr();
    let dir_http = dir.ready().http_url();

    // No release anywhere yet: the name does not exist.
    let d = dig::query(dns, &format!("current.cvd.{ZONE}"), "TXT").run();
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);

    // 1. Release 1 reaches m1 (pushed) but not m2 (no push; it polls hourly; it serves the
    //    masters' first, empty manifest): the TXT record is that manifest's, version 0.
    let s1 = net.publish(1);
    wait_for("m1 to serve release 1", 30, || {
        (serial_at(&m1.url, &keys) >= s1).then_some(())
    });
    wait_for("the directory to see m1 serve it", 10, || {
        (row(&directory_view(&dir_http), "m1")["serial"] == s1).then_some(())
    });
    assert_eq!(
        txt_version(dns, "test", ZONE),
        Some(0),
        "m2 does not serve it yet"
    );
    assert_txt_is_dns_txt(dns, &[&m2]);

    // m2 takes it: the TXT record appears within the goal, and it is dns.txt byte for byte.
    sync_once(&m2);
    let served = when("m2 to serve release 1", 10, || {
        serial_at(&m2.url, &keys) >= s1
    });
    let seen = when("the TXT record to show release 1", 10, || {
        txt_version(dns, "test", ZONE) == Some(1)
    });
    assert!(
        seen - served < GOAL,
        "TXT {:.3} s after the last mirror served release 1",
        secs(served, seen)
    );
    assert_txt_is_dns_txt(dns, &[&m1, &m2]);

    // 2. Release 2: m1 serves it within moments, m2 has not acknowledged it. The directory
    //    knows m1 serves it, and still advertises 1 (invariant 9).
    let published = Instant::now();
    let s2 = net.publish(2);
    let m1_at = when("m1 to serve release 2", 30, || {
        serial_at(&m1.url, &keys) >= s2
    });
    wait_for("the directory to see m1 serve release 2", 10, || {
        (row(&directory_view(&dir_http), "m1")["serial"] == s2).then_some(())
    });
    let view = directory_view(&dir_http);
    assert_eq!(view["txt_serial"], s1, "{view:#}");
    assert_eq!(txt_version(dns, "test", ZONE), Some(1), "{view:#}");
    assert_txt_is_dns_txt(dns, &[&m2]);

    // m2 takes it: the TXT record follows within the goal, long before the monitor's
    // 300 s interval.
    sync_once(&m2);
    let served = when("m2 to serve release 2", 10, || {
        serial_at(&m2.url, &keys) >= s2
    });
    let seen = when("the TXT record to show release 2", 10, || {
        txt_version(dns, "test", ZONE) == Some(2)
    });
    eprintln!(
        "release 2: m1 served it {:.3} s after the publish; m2 (sync --once) at {:.3} s; TXT {:.3} s after m2",
        secs(published, m1_at),
        secs(published, served),
        secs(served, seen)
    );
    assert!(
        seen - served < GOAL,
        "TXT {:.3} s after the last mirror served release 2",
        secs(served, seen)
    );
    assert_txt_is_dns_txt(dns, &[&m1, &m2]);
    let rec = vdb_format::dnstxt::CurrentRecord::parse(&current_txt(dns, ZONE).unwrap()).unwrap();
    assert_eq!(
        rec.clamav_version,
        vdb_proto::VersionRecord::default().clamav_version
    );

    // 3. m2 took release 2, then goes bad (a served file no longer matches its manifest), and
    //    does not take release 3. The monitor checks at once when release 3 appears, takes m2
    //    out, and the TXT record follows m1 alone.
    tamper(&m2, "test.cvd");
    let published = Instant::now();
    let s3 = net.publish(3);
    let m1_at = when("m1 to serve release 3", 30, || {
        serial_at(&m1.url, &keys) >= s3
    });
    let out_at = when("the directory to take m2 out", 30, || {
        row(&directory_view(&dir_http), "m2")["handed_out"] == false
    });
    let seen = when("the TXT record to show release 3", 10, || {
        txt_version(dns, "test", ZONE) == Some(3)
    });
    eprintln!(
        "release 3: m1 served it {:.3} s after the publish; m2 out at {:.3} s; TXT at {:.3} s",
        secs(published, m1_at),
        secs(published, out_at),
        secs(published, seen)
    );
    assert_eq!(serial_at(&m2.url, &keys), s2, "m2 stayed at release 2");
    let last = m1_at.max(out_at);
    assert!(
        seen.saturating_duration_since(last) < GOAL,
        "TXT {:.3} s after the last in-service mirror served release 3",
        secs(last, seen)
    );
    let a = dig::query(dns, &format!("database.{ZONE}"), "A").run();
    assert_eq!(a.data("A"), [ip1], "{}", a.raw);
    assert_txt_is_dns_txt(dns, &[&m1]);
    let verdicts: serde_json::Value = serde_json::from_slice(
        &http_get(&format!("{}/api/v1/verdicts", monitor.ready().http_url())).unwrap(),
    )
    .unwrap();
    let m2v = verdicts["mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "m2")
        .unwrap();
    assert_eq!(m2v["state"], "out", "{verdicts:#}");
}

/// Small downloads between real processes: the 11-byte `timestamp`, `dns.txt` and the manifest
/// from a real mirror, the manifest and the `timestamp` object (what a mirror pulls) from the
/// real master, over one kept-alive connection each (as the roles' vdb-fetch client does,
/// `TCP_NODELAY` on). The master writes an object's headers and body in two segments (seen
/// with strace), so with Nagle's algorithm on its socket the body would wait for the client's
/// delayed ACK (about 40 ms on Linux) every time; the median must stay well under that.
#[test]
fn small_downloads_do_not_stall() {
    let net = Net::new();
    let _master = net.start_master();
    let keys = net.keys();
    let m1 = net.mirror(
        "m1",
        "127.0.0.43",
        vdb_testkit::free_port("127.0.0.43"),
        true,
    );
    let _p1 = net.start_mirror(&m1);
    let s1 = net.publish(1);
    wait_for("m1 to serve release 1", 30, || {
        (serial_at(&m1.url, &keys) >= s1).then_some(())
    });
    // The 11-byte timestamp as mirrors pull it: an object of the master, read from its disk.
    let manifest = harness::manifest_at(&net.master_url(), &keys).expect("the master's manifest");
    let ts = manifest
        .file("timestamp")
        .expect("a timestamp")
        .sha256
        .clone();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4)
        .build()
        .unwrap();
    let n = 20;
    for (url, min_len) in [
        (format!("{}/timestamp", m1.url), 11),
        (format!("{}/dns.txt", m1.url), 20),
        (format!("{}{}", m1.url, vdb_proto::MANIFEST_PATH), 100),
        (
            format!("{}{}", net.master_url(), vdb_proto::MANIFEST_PATH),
            100,
        ),
        (
            format!("{}{}/{ts}", net.master_url(), vdb_proto::paths::OBJECTS),
            11,
        ),
    ] {
        let mut ms: Vec<f64> = harness::block_on(async {
            let mut v = Vec::new();
            for i in 0..=n {
                let t = Instant::now();
                let r = client.get(&url).send().await.unwrap();
                assert!(r.status().is_success(), "{url}: {}", r.status());
                let body = r.bytes().await.unwrap();
                assert!(body.len() >= min_len, "{url}: {} bytes", body.len());
                // The first request opens the connection; the others reuse it.
                if i > 0 {
                    v.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            v
        });
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        eprintln!(
            "{url}: median {median:.2} ms, max {:.2} ms over {n}",
            ms[ms.len() - 1]
        );
        assert!(
            median < 20.0,
            "{url}: median {median:.2} ms over {n} small downloads (Nagle's 40 ms stall?): {ms:?}"
        );
    }
}
