//! HTTPS with a certificate that is replaced on disk while the mirror runs.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::double::{MasterDouble, master_key, test_release};
use crate::{now, spawn, write_config};

fn make_cert(dir: &Path, cn: &str) {
    let tmp = dir.join("new");
    std::fs::create_dir_all(&tmp).unwrap();
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", &format!("/CN={cn}")])
        .args(["-addext", &format!("subjectAltName=DNS:{cn}")])
        .arg("-keyout")
        .arg(tmp.join("key.pem"))
        .arg("-out")
        .arg(tmp.join("cert.pem"))
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl req failed");
    std::fs::rename(tmp.join("key.pem"), dir.join("key.pem")).unwrap();
    std::fs::rename(tmp.join("cert.pem"), dir.join("cert.pem")).unwrap();
}

fn subject(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sk", "-v", "-o", "/dev/null", url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("HTTP/1.1 200"), "{err}");
    err.lines()
        .find_map(|l| l.trim().strip_prefix("*  subject: "))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn https_serves_and_reloads_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterDouble::start();
    master.publish(&master_key(), 1, now(), &[("test", 6)], &test_release(6));
    make_cert(dir.path(), "first.test");
    let extra = format!(
        "tls_listen = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n",
        dir.path().join("cert.pem").display().to_string(),
        dir.path().join("key.pem").display().to_string()
    );
    let mut child = spawn(&write_config(dir.path(), &master.url(), &extra));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let guard = crate::Mirror {
        child,
        http: "127.0.0.1:1".parse().unwrap(),
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect(&line);
    let https = v["https"].as_str().expect(&line).to_owned();
    let url = format!("{https}/healthz");
    assert!(subject(&url).contains("first.test"));
    make_cert(dir.path(), "second.test");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !subject(&url).contains("second.test") {
        assert!(Instant::now() < deadline, "certificate not reloaded");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(guard);
}
