//! The directory in-process against test doubles of the registry (master) and verdicts
//! (monitor), queried with the real `dig` over UDP and TCP from several loopback sources.

mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use support::mmdb::{self, Schema};
use support::{Doubles, Network, dig, dig_until, mirror, verdict};
use vdb_directory::{Config, GeoMode, Running};
use vdb_format::dnstxt::{CurrentRecord, DbRecord};
use vdb_proto::{MaintenanceWindow, ManualClock, MirrorState};

const T0: i64 = 1_700_000_000;
const ZONE: &str = "vdb.test.";
const DATABASE: &str = "database.vdb.test.";

fn geo_db(dir: &std::path::Path, schema: Schema) -> PathBuf {
    let bytes = mmdb::build(
        schema,
        &[
            ("127.0.0.2".parse().unwrap(), 32, "DE"),
            ("127.0.0.3".parse().unwrap(), 32, "US"),
            ("127.0.0.4".parse().unwrap(), 32, "JP"),
        ],
    );
    let path = dir.join("test.mmdb");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn config(doubles: &Doubles, geo: Option<PathBuf>) -> Config {
    let mut c = support::loopback_config(doubles);
    c.geoip_db = geo;
    c.country_regions = BTreeMap::from([
        ("DE".to_owned(), "europe".to_owned()),
        ("US".to_owned(), "america".to_owned()),
    ]);
    c.regions = vec!["asia".into()];
    c
}

async fn start(c: Config, clock: &ManualClock) -> Running {
    vdb_directory::start(c, Arc::new(clock.clone()))
        .await
        .unwrap()
}

/// A directory on doubles serving `net` (GeoIP database `geo`), its clock at T0, its config
/// changed by `edit` first.
async fn directory(
    net: Network,
    geo: Option<PathBuf>,
    edit: impl FnOnce(&mut Config),
) -> (Doubles, ManualClock, Running) {
    let doubles = Doubles::start(net).await;
    let clock = ManualClock::new(T0);
    let mut c = config(&doubles, geo);
    edit(&mut c);
    let dir = start(c, &clock).await;
    (doubles, clock, dir)
}

/// `database.vdb.test. A` asked once from the default source with dig `args`.
async fn database(dns: SocketAddr, args: &[&str]) -> support::Dig {
    dig(dns, None, DATABASE, "A", args).await
}

/// `database.vdb.test. A` from the default source, asked until `ok` holds for the addresses
/// (10 s at most).
async fn database_until(dns: SocketAddr, ok: impl Fn(&[String]) -> bool) -> support::Dig {
    dig_until(dns, None, DATABASE, "A", 10, |d| ok(&d.data("A"))).await
}

fn soa_serial(d: &support::Dig) -> u32 {
    let soa = d
        .answer
        .iter()
        .chain(&d.authority)
        .find(|r| r.rtype == "SOA")
        .unwrap_or_else(|| panic!("no SOA in\n{}", d.raw));
    soa.data.split_whitespace().nth(2).unwrap().parse().unwrap()
}

async fn serial(dns: SocketAddr) -> u32 {
    soa_serial(&dig(dns, None, ZONE, "SOA", &[]).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_name_and_type_over_udp_and_tcp() {
    let tmp = tempfile::tempdir().unwrap();
    let geo = Some(geo_db(tmp.path(), Schema::GeoIp2Country));
    let (_doubles, _clock, dir) = directory(support::three_mirrors(), geo, |c| {
        c.nameservers = vec![vdb_directory::NameServer {
            name: "ns1.vdb.test".into(),
            addresses: vec!["127.0.0.1".parse().unwrap()],
        }];
    })
    .await;
    let dns = dir.dns_addr();

    for tcp in [false, true] {
        let args: &[&str] = if tcp { &["+tcp"] } else { &[] };
        let q = |src: Option<&'static str>, name: &'static str, t: &'static str| async move {
            dig(dns, src, name, t, args).await
        };

        let d = q(None, ZONE, "SOA").await;
        assert_eq!(d.status, "NOERROR", "{}", d.raw);
        assert!(d.has_flag("aa"));
        assert!(!d.has_flag("ra"));
        assert_eq!(d.data("SOA").len(), 1);
        assert!(d.data("SOA")[0].starts_with("ns1.vdb.test. hostmaster.vdb.test. "));
        assert!(
            d.raw.contains("OPT PSEUDOSECTION"),
            "EDNS echoed:\n{}",
            d.raw
        );

        let d = q(None, ZONE, "NS").await;
        assert_eq!(d.data("NS"), ["ns1.vdb.test."]);
        assert_eq!(d.additional.iter().filter(|r| r.rtype == "A").count(), 1);
        let d = q(None, "ns1.vdb.test.", "A").await;
        assert_eq!(d.data("A"), ["127.0.0.1"]);

        // No region for 127.0.0.1 (not in the GeoIP database): every in-service mirror.
        let d = q(None, "database.vdb.test.", "A").await;
        assert_eq!(d.status, "NOERROR");
        assert!(d.has_flag("aa"));
        assert_eq!(d.data("A"), ["192.0.2.1", "192.0.2.2", "198.51.100.1"]);
        assert!(d.answer.iter().all(|r| r.ttl == 30));
        let d = q(None, "database.vdb.test.", "AAAA").await;
        assert_eq!(d.data("AAAA"), ["2001:db8::2"]);

        // 127.0.0.2 is in DE → europe: a CNAME to the regional name plus its records.
        let d = q(Some("127.0.0.2"), "database.vdb.test.", "A").await;
        assert_eq!(d.data("CNAME"), ["db.europe.vdb.test."], "{}", d.raw);
        assert_eq!(d.data("A"), ["192.0.2.1", "192.0.2.2"]);
        assert!(
            d.answer
                .iter()
                .filter(|r| r.rtype == "A")
                .all(|r| r.name == "db.europe.vdb.test.")
        );
        let d = q(Some("127.0.0.3"), "database.vdb.test.", "A").await;
        assert_eq!(d.data("CNAME"), ["db.america.vdb.test."]);
        assert_eq!(d.data("A"), ["198.51.100.1"]);
        // JP has no region in the table: the global set, no CNAME.
        let d = q(Some("127.0.0.4"), "database.vdb.test.", "A").await;
        assert!(d.data("CNAME").is_empty());
        assert_eq!(d.data("A").len(), 3);

        let d = q(None, "db.europe.vdb.test.", "A").await;
        assert_eq!(d.data("A"), ["192.0.2.1", "192.0.2.2"]);
        let d = q(None, "db.europe.vdb.test.", "AAAA").await;
        assert_eq!(d.data("AAAA"), ["2001:db8::2"]);
        // A configured region without mirrors falls back to all of them.
        let d = q(None, "db.asia.vdb.test.", "A").await;
        assert_eq!(d.data("A").len(), 3);
        let d = q(None, "db.nowhere.vdb.test.", "A").await;
        assert_eq!(d.status, "NXDOMAIN");
        assert_eq!(d.authority[0].rtype, "SOA");

        // TXT: never ahead of any in-service mirror (eu2 serves daily 27000).
        let d = q(None, "current.cvd.vdb.test.", "TXT").await;
        let txt = d.data("TXT");
        assert_eq!(txt.len(), 1, "{}", d.raw);
        let rec = CurrentRecord::parse(txt[0].trim_matches('"')).unwrap();
        assert_eq!(
            (rec.main, rec.daily, rec.bytecode, rec.safebrowsing),
            (62, 27000, 339, 0)
        );
        assert_eq!(rec.time, T0);
        assert_eq!(rec.clamav_version, "1.4.6");
        assert_eq!(rec.flevel, 216);
        let d = q(None, "daily.cvd.vdb.test.", "TXT").await;
        let rec = DbRecord::parse(d.data("TXT")[0].trim_matches('"')).unwrap();
        assert_eq!(
            rec,
            DbRecord {
                version: 27000,
                time: T0
            }
        );
        let d = q(None, "nosuchdb.cvd.vdb.test.", "TXT").await;
        assert_eq!(d.status, "NXDOMAIN");

        // NODATA: the name exists, the type does not; SOA in the authority section.
        for (name, t) in [
            ("database.vdb.test.", "TXT"),
            ("current.cvd.vdb.test.", "A"),
            ("cvd.vdb.test.", "A"),
            ("db.vdb.test.", "A"),
            (ZONE, "TXT"),
        ] {
            let d = q(None, name, t).await;
            assert_eq!(d.status, "NOERROR", "{name} {t}: {}", d.raw);
            assert!(d.answer.is_empty(), "{name} {t}");
            assert_eq!(d.authority.len(), 1, "{name} {t}");
            assert_eq!(d.authority[0].rtype, "SOA");
            assert!(d.has_flag("aa"));
        }
        let d = q(None, "nothing.vdb.test.", "A").await;
        assert_eq!(d.status, "NXDOMAIN");
        assert_eq!(d.authority[0].rtype, "SOA");
        assert_eq!(d.authority[0].ttl, 30, "negative TTL");
        let d = q(None, "example.com.", "A").await;
        assert_eq!(d.status, "REFUSED");
        assert!(!d.has_flag("aa"));
    }

    // Without EDNS there is no OPT record in the answer.
    let d = dig(dns, None, ZONE, "SOA", &["+noedns"]).await;
    assert_eq!(d.status, "NOERROR");
    assert!(!d.raw.contains("OPT PSEUDOSECTION"));
    // EDNS Client Subnet decides the region when a resolver sends it.
    let d = database(dns, &["+subnet=127.0.0.3/32"]).await;
    assert_eq!(d.data("CNAME"), ["db.america.vdb.test."], "{}", d.raw);
    assert!(
        d.raw.contains("CLIENT-SUBNET: 127.0.0.3/32/32"),
        "{}",
        d.raw
    );
    // AXFR is refused to addresses that are not allowed.
    let d = dig(dns, None, ZONE, "AXFR", &[]).await;
    assert!(d.answer.is_empty(), "{}", d.raw);
    assert!(
        d.raw.contains("Transfer failed") || d.raw.contains("REFUSED"),
        "{}",
        d.raw
    );
    dir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_geo_mode_and_country_code_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let geo = Some(geo_db(tmp.path(), Schema::CountryCode));
    let (_doubles, _clock, dir) = directory(support::three_mirrors(), geo, |c| {
        c.geo_mode = GeoMode::Direct
    })
    .await;
    let d = dig(
        dir.dns_addr(),
        Some("127.0.0.2"),
        "database.vdb.test.",
        "A",
        &[],
    )
    .await;
    assert!(d.data("CNAME").is_empty(), "{}", d.raw);
    assert_eq!(d.data("A"), ["192.0.2.1", "192.0.2.2"]);
    assert!(d.answer.iter().all(|r| r.name == "database.vdb.test."));
    dir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_and_tcp_fallback() {
    let mut net = Network::default();
    for i in 0..60 {
        let name = format!("m{i}");
        net.registry
            .push(mirror(&name, &format!("10.0.0.{}", i + 1), None, 100));
        net.verdicts
            .push(verdict(&name, MirrorState::InService, 1, 1));
    }
    let (doubles, _clock, dir) = directory(net, None, |c| c.max_records = 100).await;
    let dns = dir.dns_addr();
    // 60 A records do not fit in 512 bytes: TC set, partial answer.
    let d = database(dns, &["+noedns", "+ignore"]).await;
    assert!(d.has_flag("tc"), "{}", d.raw);
    assert!(d.answer.len() < 60);
    // dig retries over TCP on TC by itself, and gets all of them.
    let d = database(dns, &["+noedns"]).await;
    assert!(!d.has_flag("tc"));
    assert_eq!(d.data("A").len(), 60, "{}", d.raw);
    let d = database(dns, &["+tcp"]).await;
    assert_eq!(d.data("A").len(), 60);
    // A large EDNS buffer carries them over UDP.
    let d = database(dns, &["+bufsize=4096", "+ignore"]).await;
    assert!(!d.has_flag("tc"));
    assert_eq!(d.data("A").len(), 60);
    dir.shutdown().await;
    // max_records caps an answer; a zone transfer carries every record, over several messages.
    doubles.edit(|n| {
        for i in 60..150 {
            let name = format!("m{i}");
            let region = ["europe", "america", "asia"][i % 3];
            n.registry.push(mirror(
                &name,
                &format!("10.0.1.{}", i - 59),
                Some(region),
                100,
            ));
            n.verdicts
                .push(verdict(&name, MirrorState::InService, 1, 1));
        }
    });
    let clock = ManualClock::new(T0);
    let mut c = config(&doubles, None);
    c.max_records = 5;
    c.axfr_allow = vec!["127.0.0.1".parse().unwrap()];
    let dir = start(c, &clock).await;
    let d = database(dir.dns_addr(), &[]).await;
    assert_eq!(d.data("A").len(), 5);
    let axfr = dig(dir.dns_addr(), None, "vdb.test.", "AXFR", &[]).await;
    let (text, rrs) = (&axfr.raw, axfr.records());
    let count = |needle: &str| rrs.iter().filter(|l| l.starts_with(needle)).count();
    assert_eq!(count("database.vdb.test."), 150, "{text}");
    assert_eq!(count("db.europe.vdb.test."), 30);
    assert_eq!(count("db.asia.vdb.test."), 30);
    assert_eq!(rrs.iter().filter(|l| l.contains("\tSOA\t")).count(), 2);
    vdb_testkit::assert_contains(text, "XFR size: 247 records (messages 2,");
    // IXFR from a current secondary: our SOA only; from an older serial: the whole zone.
    let dns = dir.dns_addr();
    let ixfr = |serial: u32| async move {
        let t = format!("IXFR={serial}");
        dig(dns, None, "vdb.test.", &t, &[]).await.raw
    };
    let now = serial(dir.dns_addr()).await;
    let text = ixfr(now).await;
    vdb_testkit::assert_contains(&text, "XFR size: 1 records");
    let text = ixfr(now - 1).await;
    vdb_testkit::assert_contains(&text, "XFR size: 247 records");
    dir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_service_mirrors_leave_within_seconds_and_the_serial_moves() {
    let (doubles, clock, dir) = directory(support::three_mirrors(), None, |_| {}).await;
    let dns = dir.dns_addr();
    let s0 = serial(dns).await;
    assert!(s0 >= T0 as u32, "serials start from the clock");

    // The monitor takes eu2 out.
    doubles.edit(|n| n.verdicts[1].state = MirrorState::Out);
    let d = database_until(dns, |a| a.len() == 2).await;
    assert_eq!(d.data("A"), ["192.0.2.1", "198.51.100.1"]);
    let s1 = serial(dns).await;
    assert!(s1 > s0);
    // With eu2 (daily 27000) gone, the TXT record may advertise 27001.
    let d = dig(dns, None, "daily.cvd.vdb.test.", "TXT", &[]).await;
    assert!(d.data("TXT")[0].starts_with("\"27001:"), "{}", d.raw);
    assert!(
        dig(dns, None, "database.vdb.test.", "AAAA", &[])
            .await
            .answer
            .is_empty()
    );

    // Its admin drains us1.
    doubles.edit(|n| n.registry[2].drained = true);
    database_until(dns, |a| a == ["192.0.2.1"]).await;
    assert!(serial(dns).await > s1);

    // eu1 announces a maintenance window; now it has begun.
    doubles.edit(|n| {
        n.verdicts[1].state = MirrorState::InService;
        n.registry[0].maintenance.push(MaintenanceWindow {
            start: T0 + 100,
            end: T0 + 200,
            reason: "disk swap".into(),
        });
    });
    database_until(dns, |a| a.len() == 2).await;
    clock.set(T0 + 150);
    database_until(dns, |a| a == ["192.0.2.2"]).await;
    clock.set(T0 + 200);
    database_until(dns, |a| a.len() == 2).await;
    dir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_static_and_unreachable_sources() {
    let (doubles, _clock, dir) =
        directory(support::three_mirrors(), None, |c| c.min_in_service = 2).await;
    let dns = dir.dns_addr();
    assert_eq!(database(dns, &[]).await.data("A").len(), 3);

    // The monitor says everyone is old; the freshest two stay (smallest lag first).
    doubles.edit(|n| {
        for (v, lag) in n.verdicts.iter_mut().zip([90_000, 200_000, 100_000]) {
            v.state = MirrorState::Old;
            v.lag_secs = lag;
        }
    });
    let d = database_until(dns, |a| a.len() == 2).await;
    assert_eq!(d.data("A"), ["192.0.2.1", "198.51.100.1"]);
    // TXT follows the handed-out set: both serve daily 27001.
    let d = dig(dns, None, "daily.cvd.vdb.test.", "TXT", &[]).await;
    assert!(d.data("TXT")[0].starts_with("\"27001:"), "{}", d.raw);

    // eu1 comes back; one in service plus the freshest other (us1) make two.
    doubles.edit(|n| n.verdicts[0].state = MirrorState::InService);
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/v1/mirrors", dir.http_addr());
    let list: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["zone"], "vdb.test");

    // The monitor and the master become unreachable: the last known state stays.
    doubles.edit(|n| {
        n.monitor_down = true;
        n.master_down = true;
    });
    // Checked after each of three failed polls (the directory had the chance to change it).
    for _ in 0..3 {
        let errors = monitor_poll_errors(&dir).await;
        vdb_testkit::wait_for_async("a failed poll of the monitor", 20, || async {
            (monitor_poll_errors(&dir).await > errors).then_some(())
        })
        .await;
        let d = database(dns, &[]).await;
        assert_eq!(d.data("A").len(), 2, "{}", d.raw);
    }
    let metrics = vdb_testkit::http::get_text(&format!("http://{}/metrics", dir.http_addr())).await;
    vdb_testkit::assert_contains(
        &metrics,
        "vdb_directory_poll_errors_total{source=\"monitor\"}",
    );
    vdb_testkit::assert_contains(&metrics, "vdb_directory_dns_queries_total");
    dir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txt_time_is_refreshed_and_never_ahead() {
    let (doubles, clock, dir) = directory(support::three_mirrors(), None, |c| {
        c.txt_refresh_secs = 3600
    })
    .await;
    let dns = dir.dns_addr();
    let s0 = serial(dns).await;
    // A new release reaches eu1 and us1 first: TXT stays at what eu2 serves.
    let rounds = doubles.edit(|n| {
        n.verdicts[0].serving.insert("daily".into(), 27002);
        n.verdicts[2].serving.insert("daily".into(), 27002);
        n.rounds
    });
    // Two reads of the verdicts since: the directory polled the change, and its next poll
    // began only once that poll's records were made.
    vdb_testkit::wait_for_async("two polls of the new verdicts", 20, || async {
        (doubles.edit(|n| n.rounds) >= rounds + 2).then_some(())
    })
    .await;
    let d = dig(dns, None, "current.cvd.vdb.test.", "TXT", &[]).await;
    let rec = CurrentRecord::parse(d.data("TXT")[0].trim_matches('"')).unwrap();
    assert_eq!(rec.daily, 27000);
    // eu2 gets it: now it is advertised.
    doubles.edit(|n| {
        n.verdicts[1]
            .serving
            .insert("daily".into(), 27002)
            .map(|_| ())
            .unwrap_or(())
    });
    let d = dig_until(dns, None, "current.cvd.vdb.test.", "TXT", 10, |d| {
        d.data("TXT").first().is_some_and(|t| t.contains(":27002:"))
    })
    .await;
    let rec = CurrentRecord::parse(d.data("TXT")[0].trim_matches('"')).unwrap();
    assert_eq!(rec.time, T0);
    let s1 = serial(dns).await;
    assert!(s1 > s0);
    // An hour later the record time is renewed (freshclam drops records older than 12 h),
    // and the serial moves so that secondaries get the new time too.
    clock.set(T0 + 3600);
    let d = dig_until(dns, None, "current.cvd.vdb.test.", "TXT", 10, |d| {
        d.data("TXT")
            .first()
            .is_some_and(|t| t.contains(&format!(":{}:", T0 + 3600)))
    })
    .await;
    assert!(
        CurrentRecord::parse(d.data("TXT")[0].trim_matches('"'))
            .unwrap()
            .is_fresh(T0 + 3600)
    );
    assert!(serial(dns).await > s1);
    dir.shutdown().await;
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `GET url` from the loopback address `ip`, with `X-Forwarded-For: xff` if given; redirects
/// are not followed.
async fn get_from(ip: &str, url: &str, xff: Option<&str>) -> reqwest::Response {
    let mut req = client_from(ip).get(url);
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_redirector() {
    let tmp = tempfile::tempdir().unwrap();
    let geo = Some(geo_db(tmp.path(), Schema::GeoIp2Country));
    let (doubles, _clock, dir) = directory(support::three_mirrors(), geo, |_| {}).await;
    let base = format!("http://{}", dir.http_addr());

    let r = get_from("127.0.0.3", &format!("{base}/daily.cvd"), None).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "http://198.51.100.1:8080/daily.cvd"
    );
    let links: Vec<&str> = r
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(links.iter().all(|l| l.contains("rel=duplicate")));
    for _ in 0..10 {
        let r = get_from("127.0.0.2", &format!("{base}/daily-27001.cdiff"), None).await;
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(loc.starts_with("http://192.0.2."), "{loc}");
        // The alternatives start with the other European mirror.
        let first_alt = r
            .headers()
            .get_all("link")
            .iter()
            .next()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(first_alt.starts_with("<http://192.0.2."), "{first_alt}");
    }
    for bad in ["local_stats", ".hidden", "a..b"] {
        let r = get_from("127.0.0.1", &format!("{base}/{bad}"), None).await;
        assert_eq!(r.status(), 404, "{bad}");
        let e: vdb_proto::ApiError = r.json().await.unwrap();
        assert_eq!(e.code, "bad_name");
    }
    let r = get_from("127.0.0.1", &format!("{base}/healthz"), None).await;
    assert_eq!(r.text().await.unwrap(), "ok");
    let list: serde_json::Value = get_from("127.0.0.1", &format!("{base}/api/v1/mirrors"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["mirrors"].as_array().unwrap().len(), 3);
    assert_eq!(list["mirrors"][0]["name"], "eu1");
    assert_eq!(list["mirrors"][0]["in_service"], true);
    assert_eq!(list["mirrors"][0]["serving"]["daily"], 27001);
    // X-Forwarded-For is ignored from untrusted peers (127.0.0.1 has no region: any mirror).
    let r = get_from("127.0.0.1", &format!("{base}/daily.cvd"), Some("127.0.0.3")).await;
    assert_eq!(r.status(), 302);
    let r = client_from("127.0.0.1")
        .post(format!("{base}/daily.cvd"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // Nobody registered: 503 with a reason.
    doubles.edit(|n| n.registry.clear());
    let status = vdb_testkit::wait_for_async("a 503 once nobody is registered", 10, || async {
        let st = get_from("127.0.0.1", &format!("{base}/daily.cvd"), None)
            .await
            .status()
            .as_u16();
        (st == 503).then_some(st)
    })
    .await;
    assert_eq!(status, 503);
    dir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirector_behind_a_trusted_proxy() {
    let tmp = tempfile::tempdir().unwrap();
    let geo = Some(geo_db(tmp.path(), Schema::GeoIp2Country));
    let (_doubles, _clock, dir) = directory(support::three_mirrors(), geo, |c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let base = format!("http://{}", dir.http_addr());
    for xff in ["127.0.0.3", "10.1.1.1, 127.0.0.3"] {
        let r = get_from("127.0.0.1", &format!("{base}/main.cvd"), Some(xff)).await;
        assert_eq!(
            r.headers()["location"],
            "http://198.51.100.1:8080/main.cvd",
            "{xff}"
        );
    }
    // Not from the proxy: the header is not believed; 127.0.0.2 is in europe.
    let r = get_from("127.0.0.2", &format!("{base}/main.cvd"), Some("127.0.0.3")).await;
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("http://192.0.2.")
    );
    dir.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_known_state_survives_a_restart_while_sources_are_down() {
    let tmp = tempfile::tempdir().unwrap();
    let doubles = Doubles::start(support::three_mirrors()).await;
    let clock = ManualClock::new(T0);
    let state = tmp.path().join("state.json");
    let mut c = config(&doubles, None);
    c.state_file = Some(state.clone());
    let dir = start(c.clone(), &clock).await;
    assert_eq!(database(dir.dns_addr(), &[]).await.data("A").len(), 3);
    dir.shutdown().await;
    assert!(state.exists());

    // Masters and monitor down; a restarted directory answers from the state file.
    doubles.edit(|n| {
        n.master_down = true;
        n.monitor_down = true;
    });
    let dir = start(c.clone(), &clock).await;
    let d = database(dir.dns_addr(), &[]).await;
    assert_eq!(d.data("A").len(), 3, "{}", d.raw);
    let d = dig(dir.dns_addr(), None, "daily.cvd.vdb.test.", "TXT", &[]).await;
    assert!(d.data("TXT")[0].starts_with("\"27000:"), "{}", d.raw);
    dir.shutdown().await;

    // A damaged state file is ignored, not fatal.
    std::fs::write(&state, b"{\"registry\": [garbage").unwrap();
    let dir = start(c, &clock).await;
    let d = database(dir.dns_addr(), &[]).await;
    assert_eq!(d.status, "NOERROR");
    assert!(d.answer.is_empty());
    let d = dig(dir.dns_addr(), None, "current.cvd.vdb.test.", "TXT", &[]).await;
    assert_eq!(d.status, "NXDOMAIN", "no versions known: {}", d.raw);
    dir.shutdown().await;
}

#[tokio::test]
async fn geoip_database_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let doubles = Doubles::start(Network::default()).await;
    let missing = tmp.path().join("nope.mmdb");
    let err = vdb_directory::start(
        config(&doubles, Some(missing.clone())),
        Arc::new(ManualClock::new(T0)),
    )
    .await
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("nope.mmdb") && msg.contains("geoip_db"),
        "{msg}"
    );
    let junk = tmp.path().join("junk.mmdb");
    std::fs::write(&junk, b"not a database").unwrap();
    let err = vdb_directory::start(config(&doubles, Some(junk)), Arc::new(ManualClock::new(T0)))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("junk.mmdb"));
    // Both record layouts give countries.
    for schema in [Schema::GeoIp2Country, Schema::CountryCode] {
        let path = geo_db(tmp.path(), schema);
        let regions = BTreeMap::from([("DE".to_owned(), "europe".to_owned())]);
        let geo = vdb_directory::Geo::open(&path, &regions, Some("other".into())).unwrap();
        assert_eq!(
            geo.country("127.0.0.2".parse().unwrap()).as_deref(),
            Some("DE")
        );
        assert_eq!(
            geo.region("127.0.0.2".parse().unwrap()).as_deref(),
            Some("europe")
        );
        assert_eq!(
            geo.region("127.0.0.3".parse().unwrap()).as_deref(),
            Some("other")
        );
        assert_eq!(geo.region("127.0.0.1".parse().unwrap()), None);
        assert_eq!(
            geo.region("::ffff:127.0.0.2".parse().unwrap()).as_deref(),
            Some("europe")
        );
    }
}

async fn raw_query(
    dns: SocketAddr,
    msg: &hickory_proto::op::Message,
) -> hickory_proto::op::Message {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&msg.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    hickory_proto::op::Message::from_vec(&buf[..n]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_odd_queries() {
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::{DNSClass, Name, RecordType};
    let (_doubles, _clock, dir) = directory(support::three_mirrors(), None, |_| {}).await;
    let dns = dir.dns_addr();

    // Garbage and truncated packets: no answer, no harm.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for junk in [
        &b""[..],
        b"\x00",
        b"\x12\x34\x01\x00\x00\x01",
        &[0xffu8; 600][..],
    ] {
        sock.send_to(junk, dns).await.unwrap();
    }
    // Two questions: FORMERR.
    let mut m = Message::new(7, MessageType::Query, OpCode::Query);
    let name = Name::from_ascii("database.vdb.test.").unwrap();
    m.add_query(Query::query(name.clone(), RecordType::A));
    m.add_query(Query::query(name.clone(), RecordType::AAAA));
    assert_eq!(
        raw_query(dns, &m).await.metadata.response_code,
        ResponseCode::FormErr
    );
    // UPDATE: not implemented.
    let mut m = Message::new(8, MessageType::Query, OpCode::Update);
    m.add_query(Query::query(
        Name::from_ascii("vdb.test.").unwrap(),
        RecordType::SOA,
    ));
    assert_eq!(
        raw_query(dns, &m).await.metadata.response_code,
        ResponseCode::NotImp
    );
    // CHAOS class: refused.
    let mut m = Message::new(9, MessageType::Query, OpCode::Query);
    let mut q = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    m.add_query(q);
    assert_eq!(
        raw_query(dns, &m).await.metadata.response_code,
        ResponseCode::Refused
    );
    // A response sent to us is never answered (no error ping-pong between servers).
    let mut m = Message::new(10, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(name.clone(), RecordType::A));
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&m.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = [0u8; 512];
    let got = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        sock.recv_from(&mut buf),
    )
    .await;
    assert!(got.is_err(), "a response was answered");
    // Odd query types do not create new metric labels.
    let d = dig(dns, None, "database.vdb.test.", "TYPE12345", &[]).await;
    assert_eq!(d.status, "NOERROR");
    let metrics = vdb_testkit::http::get_text(&format!("http://{}/metrics", dir.http_addr())).await;
    assert!(!metrics.contains("12345"), "{metrics}");
    vdb_testkit::assert_contains(&metrics, "qtype=\"other\"");
    // Mixed case is the same name (and the answer keeps working after all of the above).
    let d = dig(dns, None, "DataBase.VDB.test.", "A", &[]).await;
    assert_eq!(d.data("A").len(), 3, "{}", d.raw);
    // EDNS version 1: BADVERS.
    let d = dig(dns, None, "vdb.test.", "SOA", &["+edns=1", "+noednsneg"]).await;
    assert_eq!(d.status, "BADVERS", "{}", d.raw);
    // A name longer than the zone's own labels still gets NXDOMAIN.
    let d = dig(dns, None, "a.b.c.database.vdb.test.", "A", &[]).await;
    assert_eq!(d.status, "NXDOMAIN");
    dir.shutdown().await;
}

/// `vdb_directory_poll_errors_total{source="monitor"}` now.
async fn monitor_poll_errors(dir: &Running) -> f64 {
    let text = vdb_testkit::http::get_text(&format!("http://{}/metrics", dir.http_addr())).await;
    vdb_testkit::http::metric(&text, "vdb_directory_poll_errors_total{source=\"monitor\"}")
        .unwrap_or(0.0)
}

/// With `monitor_keys`, a monitor's report counts only when one of those keys signed it: a
/// report signed by another key (a forger on the path, a monitor not of this network) changes
/// nothing and is counted as a failed poll; the real monitor's next report counts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_count_only_when_signed_by_a_monitor_key() {
    let monitor = vdb_proto::SecretKey::from_seed([7; 32]);
    let mut net = support::three_mirrors();
    net.monitor_key = Some(monitor.clone());
    let (doubles, _clock, dir) =
        directory(net, None, |c| c.monitor_keys = vec![monitor.public()]).await;
    let dns = dir.dns_addr();
    // The monitor's signed report counts: it takes eu2 out.
    database_until(dns, |a| a.len() == 3).await;
    doubles.edit(|n| n.verdicts[1].state = MirrorState::Out);
    database_until(dns, |a| a == ["192.0.2.1", "198.51.100.1"]).await;

    // A report signed by another key says eu2 is back and us1 out: refused.
    let errors = monitor_poll_errors(&dir).await;
    doubles.edit(|n| {
        n.monitor_key = Some(vdb_proto::SecretKey::from_seed([8; 32]));
        n.verdicts[1].state = MirrorState::InService;
        n.verdicts[2].state = MirrorState::Out;
    });
    vdb_testkit::wait_for_async("two refused reports", 20, || async {
        (monitor_poll_errors(&dir).await >= errors + 2.0).then_some(())
    })
    .await;
    assert_eq!(
        database(dns, &[]).await.data("A"),
        ["192.0.2.1", "198.51.100.1"],
        "a forged report changed the answers"
    );
    // No signature at all (the plain report only): refused the same way.
    let errors = monitor_poll_errors(&dir).await;
    doubles.edit(|n| n.monitor_key = None);
    vdb_testkit::wait_for_async("an unsigned report refused", 20, || async {
        (monitor_poll_errors(&dir).await > errors).then_some(())
    })
    .await;
    assert_eq!(
        database(dns, &[]).await.data("A"),
        ["192.0.2.1", "198.51.100.1"]
    );

    // The monitor's own key again: the report counts.
    doubles.edit(|n| n.monitor_key = Some(monitor.clone()));
    database_until(dns, |a| a == ["192.0.2.1", "192.0.2.2"]).await;

    // A replay of older signed reports (their generated_at goes back) changes nothing.
    doubles.edit(|n| {
        n.rounds = 0;
        n.verdicts[0].state = MirrorState::Out;
    });
    vdb_testkit::wait_for_async("three replayed reports read", 20, || async {
        (doubles.edit(|n| n.rounds) >= 3).then_some(())
    })
    .await;
    assert_eq!(
        database(dns, &[]).await.data("A"),
        ["192.0.2.1", "192.0.2.2"],
        "a replayed report changed the answers"
    );
    dir.shutdown().await;
}
