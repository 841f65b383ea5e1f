//! End to end with the real ClamAV 1.5.3 (`shared/tools/clamav-1.5.3`): a real master whose
//! gate verifies `.sign` files against ClamAV's test CA, a real mirror, ClamAV's test databases
//! published with their `.sign` files, and the real `freshclam` 1.5.3 updating from the mirror,
//! in FIPS mode (`FIPSCryptoHashLimits yes`: no MD5, so the `.sign` files are what verifies the
//! CVDs) and out of it. A wrong `.sign` is refused by the gate before any mirror sees it.
//!
//! The test fails, saying what is missing, when ClamAV 1.5.3 is not there: it never passes
//! without the real client.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vdb_client::ReleaseFile;
use vdb_proto::{MirrorRecord, PublicKey, SecretKey};
use vdb_testkit::checks::{assert_serves_exactly_a_signed_manifest, manifest_at};
use vdb_testkit::http::{block_on, fetch as http_get};
use vdb_testkit::{Proc, fixtures, output_text as text, wait_for};

const NETWORK: &str = "sign";
const ADMIN_TOKEN: &str = "clamav15-admin-token-0123456789";

struct Net {
    dir: tempfile::TempDir,
    master: SecretKey,
    publisher: SecretKey,
    master_url: String,
    mirror_url: String,
    _procs: Vec<Proc>,
}

impl Net {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn keys(&self) -> Vec<PublicKey> {
        vec![self.master.public()]
    }

    /// A master that verifies `.sign` files against ClamAV's test CA, and one mirror it pushes
    /// to.
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master = SecretKey::generate();
        let publisher = SecretKey::generate();
        let port = vdb_testkit::free_port("127.0.0.1");
        let master_url = format!("http://127.0.0.1:{port}");
        let p = |rel: &str| dir.path().join(rel).display().to_string();
        vdb_format::write_private(&dir.path().join("master.key"), master.to_text().as_bytes())
            .unwrap();
        let master_toml = dir.path().join("master.toml");
        std::fs::write(
            &master_toml,
            format!(
                "name = \"a\"\nnetwork = {NETWORK:?}\nlisten = \"127.0.0.1:{port}\"\n\
                 data_dir = {data:?}\nkey_file = {key:?}\nadmin_token = {ADMIN_TOKEN:?}\n\
                 cvd_certs_dir = {certs:?}\n\n\
                 [[publishers]]\nkey = \"{publisher}\"\ndatabases = [\"*\"]\n",
                data = p("master"),
                key = p("master.key"),
                certs = fixtures::certs_dir().display().to_string(),
                publisher = publisher.public(),
            ),
        )
        .unwrap();
        let vdbd = env!("CARGO_BIN_EXE_vdbd");
        let m = Proc::start_role(vdbd, "master", &master_toml, &dir.path().join("master.log"));
        assert_eq!(m.ready().http_url(), master_url);

        let mport = vdb_testkit::free_port("127.0.0.1");
        let mirror_url = format!("http://127.0.0.1:{mport}");
        let mirror_toml = dir.path().join("mirror.toml");
        std::fs::write(
            &mirror_toml,
            format!(
                "name = \"m1\"\nnetwork = {NETWORK:?}\nmasters = [{master_url:?}]\n\
                 master_keys = [\"{key}\"]\ndata_dir = {data:?}\nlisten = \"127.0.0.1:{mport}\"\n\
                 poll_secs = 300\n",
                key = master.public(),
                data = p("mirror"),
            ),
        )
        .unwrap();
        let mut r = MirrorRecord::new("m1", &mirror_url);
        r.push_url = Some(format!("{mirror_url}{}", vdb_proto::paths::PUSH));
        r.addresses = vec!["127.0.0.1".parse().unwrap()];
        let admin = vdb_client::Admin::new(&master_url, Some(ADMIN_TOKEN.to_owned()));
        wait_for("the master to register m1", 30, || {
            block_on(admin.add(&r)).ok()
        });
        let mirror = Proc::start_role(vdbd, "mirror", &mirror_toml, &dir.path().join("mirror.log"));
        Self {
            dir,
            master,
            publisher,
            master_url,
            mirror_url,
            _procs: vec![m, mirror],
        }
    }

    fn publish(&self, files: &[ReleaseFile]) -> Result<u32, vdb_client::PublishError> {
        block_on(vdb_testkit::publish::publish_once(
            std::slice::from_ref(&self.master_url),
            &self.publisher,
            files,
        ))
        .map(|a| a.version)
    }

    /// Waits until the mirror serves version `v` of `test`, and checks that it serves exactly
    /// its signed manifest.
    fn wait_mirror(&self, v: u32) {
        wait_for(&format!("the mirror to serve test {v}"), 30, || {
            manifest_at(&self.mirror_url, &self.keys())
                .filter(|m| m.databases.get("test").is_some_and(|d| d.version == v))
        });
        assert_serves_exactly_a_signed_manifest(&self.mirror_url, &self.keys());
    }

    /// Runs the real freshclam 1.5.3 once on database directory `db` (created), trusting
    /// ClamAV's test CA (`CVD_CERTS_DIR`, which also reaches its test load), with `extra`
    /// freshclam.conf lines.
    fn freshclam(&self, db: &str, extra: &str) -> Output {
        let clamav = fixtures::clamav_1_5();
        let dbdir = self.path(db);
        std::fs::create_dir_all(&dbdir).unwrap();
        let conf = self.path(&format!("{db}.conf"));
        std::fs::write(
            &conf,
            format!(
                "{extra}DatabaseMirror {}\nDNSDatabaseInfo no\nDatabaseDirectory {}\n\
                 DatabaseOwner root\nMaxAttempts 1\nConnectTimeout 5\nReceiveTimeout 10\n\
                 TestDatabases yes\nScriptedUpdates yes\nBytecode no\n",
                self.mirror_url,
                dbdir.display()
            ),
        )
        .unwrap();
        fixtures::freshclam_test_update(clamav.join("bin/freshclam"), &conf)
            .env("CVD_CERTS_DIR", fixtures::certs_dir())
            .output()
            .expect("ClamAV 1.5.3's freshclam runs (its libraries come from Debian's clamav packages; see its README)")
    }

    /// The files of database directory `db`, without freshclam's state.
    fn db_files(&self, db: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(db))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "freshclam.dat" && !n.starts_with("tmp"))
            .collect();
        v.sort();
        v
    }
}

/// ClamAV 1.5.3's `sigtool --info` on `path`, trusting the test CA.
fn sigtool_info(path: &Path) -> String {
    let out = Command::new(fixtures::clamav_1_5().join("bin/sigtool"))
        .arg("--info")
        .arg(path)
        .env("CVD_CERTS_DIR", fixtures::certs_dir())
        .output()
        .unwrap();
    text(&out)
}

/// A copy of a fixture under another name, as a release file.
fn file_from(dir: &Path, name: &str, fixture: &str) -> ReleaseFile {
    let path = dir.join(format!("wrong-{name}"));
    std::fs::copy(fixtures::path(fixture), &path).unwrap();
    ReleaseFile {
        name: name.into(),
        path,
    }
}

#[test]
fn freshclam_1_5_updates_with_sign_files_in_fips_mode_and_out_of_it() {
    // Fail now, with what to do, if ClamAV 1.5.3 is missing.
    fixtures::clamav_1_5();
    let net = Net::start();
    let signed = vdb_testkit::publish::signed_test_release;
    assert_eq!(net.publish(&signed(1)).unwrap(), 1);
    net.wait_mirror(1);
    // The mirror serves the .sign byte for byte.
    assert_eq!(
        http_get(&format!("{}/test-1.cvd.sign", net.mirror_url)).unwrap(),
        fixtures::read("test-1.cvd.sign")
    );

    // A fresh FIPS-mode client: the CVD and its .sign.
    let out = net.freshclam("fips", "FIPSCryptoHashLimits yes\n");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(net.db_files("fips"), ["test-1.cvd.sign", "test.cvd"]);

    // A wrong .sign (v3's under v2's name) is refused by the gate: the mirror never sees it.
    let tmp = tempfile::tempdir().unwrap();
    let mut wrong = vdb_testkit::publish::test_release(2);
    wrong.push(file_from(tmp.path(), "test-2.cvd.sign", "test-3.cvd.sign"));
    match net.publish(&wrong) {
        Err(vdb_client::PublishError::Refused { error, .. }) => {
            assert_eq!(error.code, "bad_sign", "{}", error.message);
        }
        other => panic!("a wrong .sign was not refused: {other:?}"),
    }
    let m = manifest_at(&net.mirror_url, &net.keys()).unwrap();
    assert_eq!(m.databases["test"].version, 1);
    assert!(http_get(&format!("{}/test-2.cvd.sign", net.mirror_url)).is_none());

    // v2..v6 with their .sign files.
    for v in 2..=6 {
        assert_eq!(net.publish(&signed(v)).unwrap(), v);
    }
    net.wait_mirror(6);

    // The FIPS client follows the cdiffs (its test-1.cvd.sign verifies the base CVD, each
    // cdiff's .sign is fetched); a CLD keeps no .sign.
    let out = net.freshclam("fips", "FIPSCryptoHashLimits yes\n");
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    for v in 2..=6 {
        assert!(
            log.contains(&format!("test-{v}.cdiff")),
            "no cdiff {v}:\n{log}"
        );
    }
    assert!(!log.contains("Incremental update failed"), "{log}");
    assert_eq!(net.db_files("fips"), ["test.cld"]);
    let info = sigtool_info(&net.path("fips/test.cld"));
    vdb_testkit::assert_contains(&info, "Version: 6");
    vdb_testkit::assert_contains(&info, "Verification OK");

    // A fresh client out of FIPS mode: the v6 CVD with its .sign, which sigtool verifies.
    let out = net.freshclam("plain", "");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(net.db_files("plain"), ["test-6.cvd.sign", "test.cvd"]);
    let info = sigtool_info(&net.path("plain/test.cvd"));
    vdb_testkit::assert_contains(&info, "Version: 6");
    vdb_testkit::assert_contains(&info, "Verification OK");
    // And one in FIPS mode from scratch.
    let out = net.freshclam("fips-fresh", "FIPSCryptoHashLimits yes\n");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(net.db_files("fips-fresh"), ["test-6.cvd.sign", "test.cvd"]);
}
