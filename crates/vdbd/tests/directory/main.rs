//! End-to-end tests of `vdbd directory`: the real binary, the real `dig`, a real Knot secondary
//! following the zone by AXFR and NOTIFY, and (where the machine allows) the real `freshclam`
//! resolving the zone through the directory.
//!
//! The master registry and the monitor are test doubles (a small HTTP server in this test).

mod freshclam;
mod harness;
mod vdb_update;

use std::process::Command;

use harness::{dig_short, dig_until, mirror, start_directory, verdict, write};
use vdb_testkit::{RegistryDouble, Served, free_port, wait_for_async};

fn soa_serial(lines: &[String]) -> u32 {
    lines
        .first()
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A directory config for zone `vdb.test` on loopback ports, reading `master`, with `extra`
/// top-level settings; written to `<dir>/directory.toml`.
fn directory_config(dir: &std::path::Path, master: &str, extra: &str) -> std::path::PathBuf {
    write(
        &dir.join("directory.toml"),
        &format!(
            r#"zone = "vdb.test"
dns_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
masters = ["{master}"]
{extra}
[[nameservers]]
name = "ns1.vdb.test"
addresses = ["127.0.0.1"]
"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_secondary_transfers_and_follows_notify() {
    let tmp = tempfile::tempdir().unwrap();
    let doubles = RegistryDouble::start(Served {
        registry: vec![
            mirror("a", "192.0.2.1", "http://192.0.2.1"),
            mirror("b", "192.0.2.2", "http://192.0.2.2"),
        ],
        verdicts: vec![
            verdict("a", &[("daily", 27001), ("main", 62)]),
            verdict("b", &[("daily", 27001), ("main", 62)]),
        ],
        ..Default::default()
    })
    .await;
    let knot_port = free_port("127.0.0.1");
    let cfg = directory_config(
        tmp.path(),
        &doubles.url,
        &format!(
            "monitors = [\"{u}\"]\npoll_secs = 1\nnotify = [\"127.0.0.1:{knot_port}\"]\n\
             axfr_allow = [\"127.0.0.1\"]\nregions = [\"europe\"]\n",
            u = doubles.url
        ),
    );
    let dir = start_directory(&cfg, &tmp.path().join("directory.log"));
    let ours = dig_until(dir.dns, "database.vdb.test", "A", 10, |v| v.len() == 2).await;
    assert_eq!(ours, ["192.0.2.1", "192.0.2.2"]);

    // AXFR from an allowed address, with dig: SOA first and last.
    let axfr = vdb_testkit::dig::query(dir.dns, "vdb.test", "AXFR")
        .args(&["+nocmd", "+nostats"])
        .run();
    let (text, rrs) = (&axfr.raw, axfr.records());
    assert!(rrs.first().unwrap().contains("\tSOA\t"), "{text}");
    assert!(rrs.last().unwrap().contains("\tSOA\t"), "{text}");
    vdb_testkit::assert_contains(text, "current.cvd.vdb.test.");
    vdb_testkit::assert_contains(text, "db.europe.vdb.test.");

    let knot_server =
        vdb_testkit::KnotSecondary::start(&tmp.path().join("knot"), "vdb.test", dir.dns, knot_port);
    let knot = knot_server.addr;
    let knot_log = || knot_server.log();

    // Knot transfers the zone at start.
    wait_for_async("Knot to load the zone", 20, || async {
        let v = dig_short(knot, "database.vdb.test", "A").await;
        (v == ["192.0.2.1", "192.0.2.2"]).then_some(())
    })
    .await;
    let txt = dig_short(knot, "current.cvd.vdb.test", "TXT").await;
    assert!(txt[0].contains(":62:27001:"), "{txt:?}");
    let s_ours = soa_serial(&dig_short(dir.dns, "vdb.test", "SOA").await);
    assert_eq!(
        soa_serial(&dig_short(knot, "vdb.test", "SOA").await),
        s_ours
    );

    // A change: b leaves, a new release is everywhere. Knot's refresh timer is an hour, so only
    // our NOTIFY can make it follow within seconds.
    doubles.edit(|n| {
        n.verdicts[1].state = vdb_proto::MirrorState::Out;
        n.verdicts[0].serving.insert("daily".into(), 27002);
    });
    dig_until(dir.dns, "database.vdb.test", "A", 10, |v| {
        v == ["192.0.2.1"]
    })
    .await;
    let s_new = soa_serial(&dig_short(dir.dns, "vdb.test", "SOA").await);
    assert!(s_new > s_ours);
    wait_for_async("Knot to follow the NOTIFY", 20, || async {
        let a = dig_short(knot, "database.vdb.test", "A").await;
        let soa = soa_serial(&dig_short(knot, "vdb.test", "SOA").await);
        (a == ["192.0.2.1"] && soa >= s_new).then_some(())
    })
    .await;
    let txt = dig_short(knot, "daily.cvd.vdb.test", "TXT").await;
    assert!(txt[0].starts_with("\"27002:"), "{txt:?}");

    let log = knot_log();
    vdb_testkit::assert_contains(&log, "notify, incoming");
    assert!(log.matches("zone updated").count() >= 2, "{log}");
    // The directory's own metrics saw NOTIFY acknowledged.
    let metrics = harness::http_get(&format!("{}/metrics", dir.http)).await;
    vdb_testkit::assert_contains(&metrics, "vdb_directory_notifies_total");
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): the role says it is ready on
/// `NOTIFY_SOCKET` once its ready line is out, then pings the watchdog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_systemd_it_is_ready_and_pings_the_watchdog() {
    let tmp = tempfile::tempdir().unwrap();
    let doubles = RegistryDouble::start(Served::default()).await;
    let cfg = directory_config(tmp.path(), &doubles.url, "");
    let socket_path = tmp.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // systemd names the watched process: the shell's pid, which `exec` hands to vdbd.
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "WATCHDOG_PID=$$ exec \"$0\" directory --config \"$1\"",
    ])
    .arg(env!("CARGO_BIN_EXE_vdbd"))
    .arg(&cfg)
    .env("NOTIFY_SOCKET", &socket_path)
    .env("WATCHDOG_USEC", "200000");
    let _dir = vdb_testkit::Proc::start(cmd, &tmp.path().join("directory.log"));
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(ready.contains("STATUS=directory ready"), "{ready}");
    for _ in 0..2 {
        assert_eq!(next().trim(), "WATCHDOG=1");
    }
    // Its log, written to a file, is plain text (no terminal colours).
    let log = std::fs::read_to_string(tmp.path().join("directory.log")).unwrap();
    assert!(log.contains("directory listening"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log file: {log}");
}
