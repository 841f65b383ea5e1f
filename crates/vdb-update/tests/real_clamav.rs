//! Judged by the real ClamAV 1.4.6 tools: `sigtool --info` and `clamscan` accept what
//! vdb-update produces, the real `freshclam` reaches the same result against the same local
//! mirror, a real `clamd` reloads when notified, and a SIGKILL at any point of an update
//! leaves loadable databases. Tests skip (with a message) when a tool is not installed.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn sigtool_info(path: &std::path::Path) -> String {
    let o = Command::new("sigtool")
        .arg(format!("--info={}", path.display()))
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "sigtool failed: {s}");
    s
}

/// `clamscan -d <dir>` on a clean file: returns the "Known viruses" count.
fn clamscan_loads(dir: &std::path::Path) -> u32 {
    let f = dir.parent().unwrap().join("clean.txt");
    std::fs::write(&f, b"nothing to see here\n").unwrap();
    let o = Command::new("clamscan")
        .arg("--no-summary")
        .arg("--debug")
        .arg("-d")
        .arg(dir)
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "clamscan: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new("clamscan")
        .arg("-d")
        .arg(dir)
        .arg(&f)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    s.lines()
        .find_map(|l| l.strip_prefix("Known viruses: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no signature count in {s}"))
}

#[tokio::test]
async fn sigtool_and_clamscan_accept_the_result_and_freshclam_agrees() {
    if !have("sigtool") || !have("clamscan") || !have("freshclam") {
        eprintln!("skipped: ClamAV tools not installed");
        return;
    }
    let www = Work::new();
    serve_fixture(&www.www(), "test-6.cvd", "test.cvd");
    for i in 2..=6 {
        serve_fixture(
            &www.www(),
            &format!("test-{i}.cdiff"),
            &format!("test-{i}.cdiff"),
        );
    }
    let m = Mirror::start(&www.www()).await;

    for compress in [false, true] {
        let extra = format!(
            "DatabaseOwner root\nLogFileMaxSize 0\nCompressLocalDatabase {}\n",
            if compress { "yes" } else { "no" }
        );
        // vdb-update.
        let ours = Work::new();
        ours.put_db("test-1.cvd", "test.cvd");
        let conf = ours.conf(&[m.url()], &extra);
        let out = run_conf(&conf, &["--update-db=test"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let our_reqs = m.requests();
        // freshclam, same mirror, same starting point.
        let theirs = Work::new();
        theirs.put_db("test-1.cvd", "test.cvd");
        let conf = theirs.conf(&[m.url()], &extra);
        let fc = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new("freshclam")
                .arg(format!("--config-file={}", conf.display()))
                .arg("--no-dns")
                .arg("--update-db=test")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(fc.status.code(), Some(0), "{}", text(&fc));
        assert_eq!(m.requests(), our_reqs, "same requests as freshclam");
        assert_eq!(ours.db_files(), theirs.db_files());
        assert_eq!(ours.db_files(), ["test.cld"]);
        let a = sigtool_info(&ours.db().join("test.cld"));
        let b = sigtool_info(&theirs.db().join("test.cld"));
        assert!(
            a.contains("Version: 6") && a.contains("Verification OK."),
            "{a}"
        );
        let fields = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.starts_with("File:"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(fields(&a), fields(&b));
        // Same size as freshclam's (member order may differ by file system, spec §7.2).
        let size = |w: &Work| std::fs::metadata(w.db().join("test.cld")).unwrap().len();
        if !compress {
            assert_eq!(size(&ours), size(&theirs));
        }
        assert_eq!(clamscan_loads(&ours.db()), clamscan_loads(&theirs.db()));
    }
}

#[tokio::test]
async fn clamd_reloads_when_notified() {
    if !have("clamd") {
        eprintln!("skipped: clamd not installed");
        return;
    }
    let w = Work::new();
    serve_fixture(&w.www(), "test-6.cvd", "test.cvd");
    w.put_db("test-1.cvd", "test.cvd");
    let m = Mirror::start(&w.www()).await;
    let sock = w.tmp.path().join("clamd.sock");
    let log = w.tmp.path().join("clamd.log");
    let clamd_conf = w.tmp.path().join("clamd.conf");
    std::fs::write(
        &clamd_conf,
        format!(
            "LocalSocket {}\nDatabaseDirectory {}\nForeground yes\nLogFile {}\nLogVerbose yes\n\
             PidFile {}\nUser root\n",
            sock.display(),
            w.db().display(),
            log.display(),
            w.tmp.path().join("clamd.pid").display()
        ),
    )
    .unwrap();
    let child = Command::new("clamd")
        .arg(format!("--config-file={}", clamd_conf.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _guard = vdb_testkit::Guard(child);
    // Ready when the socket answers PING (bounded).
    vdb_testkit::wait_for_async("clamd to answer PING", 60, || async {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&sock).ok()?;
        s.write_all(b"zPING\0").unwrap();
        let mut r = String::new();
        let _ = s.read_to_string(&mut r);
        r.contains("PONG").then_some(())
    })
    .await;
    let conf = w.conf(
        &[m.url()],
        &format!("NotifyClamd {}\nScriptedUpdates no\n", clamd_conf.display()),
    );
    let out = run_conf(&conf, &["--update-db=test"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("Clamd successfully notified about the update."),
        "{}",
        text(&out)
    );
    // clamd logs the reload and loads the new database (bounded wait on its log).
    let what = format!("clamd to reload (its log: {})", log.display());
    let l = vdb_testkit::wait_for_async(&what, 60, || async {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        l.contains("Database correctly reloaded").then_some(l)
    })
    .await;
    vdb_testkit::assert_contains(&l, "Reading databases from");
}

/// Every container in the directory verifies, and the test database is at v1 or v6.
fn assert_loadable(w: &Work) -> u32 {
    let mut best = 0;
    for name in w.db_files() {
        // Staging left by a killed run: a directory, ignored by ClamAV, removed by the next run.
        if name.starts_with("tmp.vdb-update-") && w.db().join(&name).is_dir() {
            continue;
        }
        // A state file's temporary (hidden, no database extension): ignored by ClamAV.
        if name.starts_with('.') && name.contains(".tmp-") {
            continue;
        }
        if name.ends_with(".cvd") || name.ends_with(".cld") {
            best = best.max(w.version(&name));
        } else {
            panic!("unexpected file {name} in {:?}", w.db_files());
        }
    }
    assert!(best == 1 || best == 6, "version {best}");
    best
}

#[tokio::test]
async fn sigkill_at_any_point_leaves_loadable_databases() {
    for scripted in [true, false] {
        let w = Work::new();
        serve_fixture(&w.www(), "test-6.cvd", "test.cvd");
        for i in 2..=6 {
            serve_fixture(
                &w.www(),
                &format!("test-{i}.cdiff"),
                &format!("test-{i}.cdiff"),
            );
        }
        let m = Mirror::start(&w.www()).await;
        let conf = w.conf(
            &[m.url()],
            if scripted { "" } else { "ScriptedUpdates no\n" },
        );
        // How long a whole run takes here.
        w.put_db("test-1.cvd", "test.cvd");
        let t0 = Instant::now();
        let out = run_conf(&conf, &["--update-db=test"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let full = t0.elapsed();
        let mut seen = [false; 7];
        for i in 0..10u32 {
            for f in w.db_files() {
                std::fs::remove_file(w.db().join(f)).unwrap();
            }
            w.put_db("test-1.cvd", "test.cvd");
            let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vdb-update"))
                .arg(format!("--config-file={}", conf.display()))
                .arg("--update-db=test")
                .arg("--quiet")
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            // Kill points spread over the run's duration.
            tokio::time::sleep(full * i / 10).await;
            let _ = child.start_kill();
            let _ = child.wait().await;
            let v = assert_loadable(&w);
            seen[v as usize] = true;
            if have("clamscan") {
                // Loads (exit 0); test-1 has no signatures, test-6 has 14 (10 counted).
                let n = clamscan_loads(&w.db());
                assert_eq!(n > 0, v == 6, "{n} signatures at version {v}");
            }
            // The next run finishes the job from whatever state is left.
            let out = run_conf(&conf, &["--update-db=test"]).await;
            assert_eq!(out.status.code(), Some(0), "{}", text(&out));
            assert_eq!(assert_loadable(&w), 6);
            assert!(
                std::fs::read_dir(w.db()).unwrap().all(|e| !e
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("tmp.")),
                "staging left behind"
            );
            assert!(
                std::fs::read_dir(w.db()).unwrap().all(|e| !e
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp-")),
                "temporary state file left behind"
            );
            m.requests();
        }
        assert!(seen[1], "no kill landed before the install");
    }
}
