//! HTTPS mirrors through rustls: a private CA given in `ca_file` is trusted, an unknown
//! certificate is refused. The mirror is `openssl s_server -WWW` (a test double serving the
//! fixture files over TLS); skipped when openssl is not installed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
    let (ca, cert, key) = (t.join("ca.pem"), t.join("c.pem"), t.join("k.pem"));
    std::fs::write(
        t.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(t)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509", "-days", "2", "-subj", "/CN=test-ca"];
    a.extend(ec);
    a.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&a);
    let mut a = vec!["req", "-subj", "/CN=localhost"];
    a.extend(ec);
    a.extend(["-keyout", "k.pem", "-out", "leaf.csr"]);
    openssl(&a);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "c.pem",
    ]);
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
    let _guard = Kill(child);
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
