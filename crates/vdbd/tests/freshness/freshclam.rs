//! The real freshclam 1.4.6 in DNS mode, right after a publish: `DNSDatabaseInfo` names the
//! directory's zone, resolved through the directory itself (port 53 of a loopback address of
//! its own, in a private mount namespace whose `/etc/resolv.conf` names it: root needed). The
//! zone is `clamav.net` because freshclam reads `test.cvd.clamav.net` for the test database
//! whatever `DNSDatabaseInfo` says. Two mirrors on one port of two loopback addresses, so that
//! `database.clamav.net:<port>` reaches whichever the directory hands out.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::harness::{Net, secs, serial_at, text, txt_version, wait_for, when};

const ZONE: &str = "clamav.net.";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn local_version(db: &Path) -> u32 {
    for name in ["test.cld", "test.cvd"] {
        if let Ok(bytes) = std::fs::read(db.join(name))
            && let Ok(h) = vdb_format::Header::parse(&bytes[..512.min(bytes.len())])
        {
            return h.version;
        }
    }
    0
}

/// A port free on every one of `ips`.
fn common_port(ips: &[&str]) -> u16 {
    wait_for("a port free on every mirror address", 10, || {
        let p = vdb_testkit::free_port(ips[0]);
        ips.iter()
            .all(|ip| std::net::TcpListener::bind((*ip, p)).is_ok())
            .then_some(p)
    })
}

/// Runs freshclam once in DNS mode through the directory at `dns_ip`; returns (success, log).
fn freshclam_dns(work: &Path, dns_ip: &str, port: u16) -> (bool, String) {
    let w = work.display();
    std::fs::write(
        work.join("resolv.conf"),
        format!("nameserver {dns_ip}\noptions timeout:2 attempts:2\n"),
    )
    .unwrap();
    std::fs::write(
        work.join("freshclam.conf"),
        format!(
            "DatabaseMirror http://database.clamav.net:{port}\nDNSDatabaseInfo current.cvd.clamav.net\n\
             DatabaseDirectory {w}/db\nDatabaseOwner root\nPidFile {w}/freshclam.pid\n\
             LogVerbose yes\nLogFileMaxSize 0\nUpdateLogFile {w}/freshclam.log\nMaxAttempts 1\n\
             ConnectTimeout 5\nReceiveTimeout 10\nTestDatabases yes\nScriptedUpdates yes\nBytecode no\n"
        ),
    )
    .unwrap();
    let script = format!(
        "mount --bind {w}/resolv.conf /etc/resolv.conf && exec freshclam --config-file={w}/freshclam.conf --update-db=test --stdout"
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    (out.status.success(), text(&out))
}

#[test]
fn freshclam_in_dns_mode_updates_right_after_a_publish() {
    assert!(
        is_root(),
        "this test needs root: it binds port 53 on a loopback address and uses unshare -m"
    );
    let net = Net::new();
    let _master = net.start_master();
    let keys = net.keys();
    let ips = ["127.0.0.51", "127.0.0.52"];
    let port = common_port(&ips);
    let mirrors: Vec<_> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| net.mirror(&format!("m{}", i + 1), ip, port, true))
        .collect();
    let _procs: Vec<_> = mirrors.iter().map(|m| net.start_mirror(m)).collect();
    let monitor = net.start_monitor();
    let pid = std::process::id();
    let dns_ip = format!("127.53.{}.{}", (pid >> 8) & 0xff, (pid & 0xff).max(1));
    let dir = net.start_directory(ZONE, &format!("{dns_ip}:53"), &monitor.ready().http_url());
    let dns = dir.ready().dns_addr();

    // Release 1 everywhere; freshclam starts from it.
    let s1 = net.publish(1);
    for m in &mirrors {
        wait_for(&format!("{} to serve release 1", m.name), 30, || {
            (serial_at(&m.url, &keys) >= s1).then_some(())
        });
    }
    wait_for("the TXT record to show release 1", 10, || {
        (txt_version(dns, "test", ZONE) == Some(1)).then_some(())
    });
    let work = net.path("freshclam");
    std::fs::create_dir_all(work.join("db")).unwrap();
    std::fs::copy(
        vdb_testkit::fixtures::path("test-1.cvd"),
        work.join("db/test.cvd"),
    )
    .unwrap();

    // Release 2: the TXT record moves within 1 s of the last mirror serving it, and a
    // freshclam started then updates on its first try (the version from DNS, then the cdiff).
    let published = Instant::now();
    let s2 = net.publish(2);
    let last = mirrors
        .iter()
        .map(|m| {
            when(&format!("{} to serve release 2", m.name), 30, || {
                serial_at(&m.url, &keys) >= s2
            })
        })
        .max()
        .unwrap();
    let seen = when("the TXT record to show release 2", 10, || {
        txt_version(dns, "test", ZONE) == Some(2)
    });
    let (ok, log) = freshclam_dns(&work, &dns_ip, port);
    let done = Instant::now();
    eprintln!(
        "release 2: last mirror {:.3} s after the publish, TXT {:.3} s, freshclam done {:.3} s",
        secs(published, last),
        secs(published, seen),
        secs(published, done)
    );
    assert!(ok, "freshclam failed:\n{log}");
    assert!(
        seen.saturating_duration_since(last) < std::time::Duration::from_secs(1),
        "TXT {:.3} s after the last mirror",
        secs(last, seen)
    );
    assert_eq!(local_version(&work.join("db")), 2, "{log}");
    vdb_testkit::assert_contains(&log, "test.cld updated (version: 2");
    assert!(!log.contains("Invalid DNS reply"), "{log}");
    assert!(!log.contains("OUTDATED"), "{log}");
}
