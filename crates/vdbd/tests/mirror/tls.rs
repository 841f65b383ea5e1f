//! HTTPS with a certificate that is replaced on disk while the mirror runs.

use std::process::Command;

use vdb_testkit::pki::self_signed;
use vdb_testkit::{MasterDouble, Proc, now, wait_for};

use crate::{master_key, test_release, vdbd, write_config};

fn subject(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sk", "-v", "-o", "/dev/null", url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    vdb_testkit::assert_contains(&err, "HTTP/1.1 200");
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
    let (cert, key) = self_signed("first.test").write(dir.path());
    let extra = format!(
        "tls_listen = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let config = write_config(dir.path(), &master.url(), &extra);
    let mirror = Proc::start_role(vdbd(), "mirror", &config, &dir.path().join("mirror.log"));
    let url = format!("{}/healthz", mirror.ready().https_url());
    assert!(subject(&url).contains("first.test"));
    self_signed("second.test").write(dir.path());
    wait_for("the certificate to be reloaded", 15, || {
        subject(&url).contains("second.test").then_some(())
    });
}
