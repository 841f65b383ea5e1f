//! HTTPS mirrors through rustls: a private CA given in `ca_file` is trusted, an unknown
//! certificate is refused. The mirror is `openssl s_server -WWW` (a test double serving the
//! fixture files over TLS); skipped when openssl is not installed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

#[tokio::test]
async fn https_mirror_with_private_ca() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: openssl not installed");
        return;
    }
    let w = Work::new();
    serve_fixture(&w.www(), "test-6.cvd", "test.cvd");
    // A private CA and a server certificate it signed.
    let t = w.tmp.path();
    let pki = vdb_testkit::pki::TestPki::new();
    let ca = t.join("ca.pem");
    pki.write_ca(&ca);
    let (cert, key) = pki.leaf(&["127.0.0.1"]).write(t);
    let mut child = Command::new("openssl")
        .args(["s_server", "-accept", "127.0.0.1:0", "-WWW"])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .current_dir(w.www())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = vdb_testkit::Guard(child);
    // Ready line: "ACCEPT 127.0.0.1:<port>" (read with a bounded wait).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("ACCEPT ") {
                let _ = tx.send(a.to_owned());
                return;
            }
        }
    });
    let addr = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("openssl s_server did not start");
    let conf = |with_ca: bool| {
        let p = w.tmp.path().join("u.toml");
        let mut t = format!(
            "database_directory = {:?}\nmirrors = [\"https://{addr}\"]\ndns = false\n\
             databases = [\"test\"]\nmax_attempts = 1\n",
            w.db().display().to_string()
        );
        if with_ca {
            t.push_str(&format!("ca_file = {:?}\n", ca.display().to_string()));
        }
        std::fs::write(&p, t).unwrap();
        format!("--config={}", p.display())
    };
    // Unknown CA: a connection error, nothing installed.
    let out = run(&[&conf(false)]).await;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(w.db_files().is_empty());
    // With the private CA: updated.
    let out = run(&[&conf(true)]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(w.version("test.cvd"), 6);
}
