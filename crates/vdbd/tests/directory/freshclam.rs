//! The real `freshclam` 1.4.6 as a client of the directory:
//!
//! - DNS: freshclam runs in a private mount namespace whose `/etc/resolv.conf` names the
//!   directory (listening on port 53 of a loopback address of its own, which needs root), reads
//!   `test.cvd.clamav.net` (the name is hard-coded in freshclam, so the test zone is
//!   `clamav.net`), resolves `database.clamav.net` to the mirror the directory hands out, and
//!   updates test.cvd v1 → v6 with cdiffs and no header probe (the version came from DNS);
//! - HTTP: `DatabaseMirror` pointing at the redirector; freshclam follows the 302 to the mirror.

use std::path::Path;
use std::process::Command;

use vdb_testkit::{RegistryDouble, Served, fixtures};

use crate::harness::{mirror, start_directory, verdict, write};

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn freshclam_conf(work: &Path, mirror: &str, dns: bool) -> String {
    let w = work.display();
    format!(
        "DatabaseMirror {mirror}\n{}DatabaseDirectory {w}/db\nDatabaseOwner root\nPidFile {w}/freshclam.pid\n\
         LogVerbose yes\nLogFileMaxSize 0\nUpdateLogFile {w}/freshclam.log\nMaxAttempts 1\n\
         ConnectTimeout 5\nReceiveTimeout 10\nTestDatabases yes\nScriptedUpdates yes\nBytecode no\n",
        if dns {
            "DNSDatabaseInfo current.cvd.clamav.net\n"
        } else {
            "DNSDatabaseInfo no\n"
        }
    )
}

pub(crate) fn local_version(db: &Path) -> u32 {
    for name in ["test.cld", "test.cvd"] {
        if let Ok(bytes) = std::fs::read(db.join(name))
            && let Ok(h) = vdb_format::Header::parse(&bytes[..512.min(bytes.len())])
        {
            return h.version;
        }
    }
    0
}

pub(crate) async fn mirror_double(www: &Path) -> RegistryDouble {
    std::fs::create_dir_all(www).unwrap();
    for (name, bytes) in fixtures::served_set(6) {
        std::fs::write(www.join(name), bytes).unwrap();
    }
    let port_probe = RegistryDouble::start(Served {
        files: Some(www.to_owned()),
        ..Default::default()
    })
    .await;
    let url = port_probe.url.clone();
    port_probe.edit(|n| {
        n.registry = vec![mirror("m1", "127.0.0.1", &url)];
        n.verdicts = vec![verdict(
            "m1",
            &[("test", 6), ("main", 62), ("daily", 27001)],
        )];
    });
    port_probe
}

pub(crate) fn fresh_db(work: &Path) {
    let db = work.join("db");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::copy(fixtures::path("test-1.cvd"), db.join("test.cvd")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshclam_reads_txt_and_resolves_mirrors_through_the_directory() {
    if !is_root() {
        // Port 53 and `mount --bind` over /etc/resolv.conf need root (CI runs as root).
        panic!("this test needs root: it binds port 53 on a loopback address and uses unshare -m");
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let doubles = mirror_double(&work.join("www")).await;
    let port = doubles.url.rsplit(':').next().unwrap().to_owned();
    // A loopback address of our own so that port 53 is free whatever else runs here.
    let pid = std::process::id();
    let dns_ip = format!("127.53.{}.{}", (pid >> 8) & 0xff, (pid & 0xff).max(1));
    let cfg = write(
        &work.join("directory.toml"),
        &format!(
            "zone = \"clamav.net\"\ndns_listen = \"{dns_ip}:53\"\nhttp_listen = \"127.0.0.1:0\"\n\
             masters = [\"{u}\"]\nmonitors = [\"{u}\"]\npoll_secs = 1\n",
            u = doubles.url
        ),
    );
    let dir = start_directory(&cfg, &work.join("directory.log"));
    let txt = crate::harness::dig_short(dir.dns, "test.cvd.clamav.net", "TXT").await;
    assert!(
        txt.first().is_some_and(|t| t.starts_with("\"6:")),
        "{txt:?}"
    );

    // 1. DNS: resolver → directory; TXT says v6; database.clamav.net → 127.0.0.1 (the mirror).
    fresh_db(work);
    write(
        &work.join("resolv.conf"),
        &format!("nameserver {dns_ip}\noptions timeout:2 attempts:2\n"),
    );
    write(
        &work.join("freshclam.conf"),
        &freshclam_conf(work, &format!("http://database.clamav.net:{port}"), true),
    );
    let script = format!(
        "mount --bind {w}/resolv.conf /etc/resolv.conf && exec freshclam --config-file={w}/freshclam.conf --update-db=test",
        w = work.display()
    );
    let out = tokio::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .await
        .expect("unshare runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "freshclam failed:\n{log}");
    assert_eq!(local_version(&work.join("db")), 6, "{log}");
    let requests = doubles.log();
    let files: Vec<&String> = requests
        .iter()
        // The directory's own reads (registry, verdicts, the masters' manifest) aside.
        .filter(|r| !r.starts_with("/api/") && !r.starts_with("/.well-known/"))
        .collect();
    // The version came from the TXT record: no header probe (no Range request), only cdiffs.
    assert_eq!(
        files,
        [2, 3, 4, 5, 6]
            .map(|v| format!("/test-{v}.cdiff range=no"))
            .iter()
            .collect::<Vec<_>>(),
        "{log}"
    );
    assert!(!log.contains("OUTDATED"), "{log}");
    vdb_testkit::assert_contains(&log, "test.cld updated (version: 6");
    // freshclam's resolver asked the directory for the mirror's address.
    let metrics = crate::harness::http_get(&format!("{}/metrics", dir.http)).await;
    vdb_testkit::assert_contains(&metrics, r#"qtype="A""#);

    // 2. HTTP: DatabaseMirror = the redirector; freshclam follows the 302 to the mirror.
    std::fs::remove_dir_all(work.join("db")).unwrap();
    fresh_db(work);
    doubles.edit(|n| n.log.clear());
    write(
        &work.join("freshclam-http.conf"),
        &freshclam_conf(work, &dir.http, false),
    );
    let out = tokio::process::Command::new("freshclam")
        .arg(format!(
            "--config-file={}/freshclam-http.conf",
            work.display()
        ))
        .args(["--update-db=test"])
        .output()
        .await
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "freshclam via the redirector failed:\n{log}"
    );
    assert_eq!(local_version(&work.join("db")), 6, "{log}");
    vdb_testkit::assert_contains(&log, "302");
    let requests = doubles.log();
    assert!(
        requests.iter().any(|r| r == "/test.cvd range=yes"),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r == "/test-6.cdiff range=no"),
        "{requests:?}"
    );
}
