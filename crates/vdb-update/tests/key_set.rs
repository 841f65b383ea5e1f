//! A network's own ClamAV key set (TOML `key_set`): databases and cdiffs signed with it are
//! accepted, and refused under the official keys. The database is built here with
//! `vdb-format` and the test kit's key set; the mirror is a test double.

mod common;

use std::collections::BTreeMap;

use common::*;
use vdb_format::build::{BuildSpec, ENGINE_FLEVEL_146};
use vdb_format::cdiff::{self, Cdiff};
use vdb_format::{Kind, Limits, Signer};

fn version(extra: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mut ndb = String::from("Net.Test.A:0:*:4142434445464748\n");
    for l in extra {
        ndb.push_str(l);
        ndb.push('\n');
    }
    [
        ("COPYING".to_owned(), b"test network\n".to_vec()),
        ("mydb.ndb".to_owned(), ndb.into_bytes()),
    ]
    .into()
}

/// The test network's key set, and `mydb` CVDs built and read with it.
struct TestNet {
    keys: vdb_sign::PrivateKeySet,
    public: vdb_format::KeySet,
    limits: Limits,
}

impl TestNet {
    fn new() -> Self {
        let keys = vdb_testkit::keys::key_set("testnet");
        Self {
            public: keys.public(),
            keys,
            limits: Limits::default(),
        }
    }

    /// `mydb.cvd` version `v` holding `files`, signed with the test key set.
    fn build(&self, v: u32, files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
        let spec = BuildSpec {
            db_name: "mydb".into(),
            kind: Kind::Cvd,
            version: v,
            flevel: 90,
            builder: "test".into(),
            build_secs: 1_700_000_000 + u64::from(v) * 3600,
            signatures: None,
            engine_flevel: ENGINE_FLEVEL_146,
        };
        vdb_format::build::build(&spec, files, Some(&self.keys))
            .unwrap()
            .0
    }

    /// The files of a CVD signed with the test key set.
    fn unpack(&self, cvd: &[u8]) -> BTreeMap<String, Vec<u8>> {
        vdb_format::container::read_to_map(cvd, Kind::Cvd, &self.public, &self.limits)
            .unwrap()
            .1
    }
}

#[tokio::test]
async fn network_key_set() {
    let net = TestNet::new();
    let (keys, public, limits) = (&net.keys, &net.public, &net.limits);
    let build = |v: u32, files: &BTreeMap<String, Vec<u8>>| net.build(v, files);
    let unpack = |b: &[u8]| net.unpack(b);
    let v1 = build(1, &version(&[]));
    let v2 = build(2, &version(&["Net.Test.B:0:*:5152535455565758"]));
    let script = cdiff::diff(&unpack(&v1), &unpack(&v2)).unwrap().to_text();
    let cd = Cdiff::write(2, script.as_bytes(), |d| keys.sign_cdiff(d)).unwrap();

    let w = Work::new();
    std::fs::write(w.www().join("mydb.cvd"), &v2).unwrap();
    set_mtime(&w.www().join("mydb.cvd"), 1_700_000_000 + 2 * 3600);
    std::fs::write(w.www().join("mydb-2.cdiff"), &cd).unwrap();
    std::fs::write(w.db().join("mydb.cvd"), &v1).unwrap();
    let m = Mirror::start(&w.www()).await;
    let key_file = w.tmp.path().join("keys.pub");
    std::fs::write(&key_file, public.to_text()).unwrap();
    let conf = |with_keys: bool| {
        let p = w.tmp.path().join("u.toml");
        let mut t = format!(
            "database_directory = {:?}\nmirrors = [{:?}]\ndns = false\ndatabases = [\"mydb\"]\n\
             max_attempts = 1\n",
            w.db().display().to_string(),
            m.url()
        );
        if with_keys {
            t.push_str("key_set = \"keys.pub\"\n");
        }
        std::fs::write(&p, t).unwrap();
        format!("--config={}", p.display())
    };

    // Official keys: the local copy and the download do not verify; nothing changes.
    let out = run(&[&conf(false)]).await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert_eq!(std::fs::read(w.db().join("mydb.cvd")).unwrap(), v1);
    m.requests();

    // The network's keys: updated through the cdiff.
    let out = run(&[&conf(true), "--verbose"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        m.requests()
            .iter()
            .map(|r| r.path.as_str())
            .collect::<Vec<_>>(),
        ["/mydb.cvd", "/mydb-2.cdiff"]
    );
    let cld = std::fs::read(w.db().join("mydb.cld")).unwrap();
    let (v, files) =
        vdb_format::container::read_to_map(&cld[..], Kind::Cld, public, limits).unwrap();
    assert_eq!(v.header.version, 2);
    assert!(String::from_utf8_lossy(&files["mydb.ndb"]).contains("Net.Test.B"));
    assert!(!w.db().join("mydb.cvd").exists());
}

/// The streaming chain apply refuses a validly signed cdiff whose result does not match the
/// signed `.info` it brings (a member's hash, or the `.info` signature itself), and leaves no
/// output, no temporary file and no spool behind.
#[test]
fn streamed_chain_refuses_a_result_its_info_does_not_vouch_for() {
    use vdb_format::patch::{self, ApplyError, CldOptions};
    let net = TestNet::new();
    let (keys, public, limits) = (&net.keys, &net.public, &net.limits);
    let build = |v: u32, files: &BTreeMap<String, Vec<u8>>| net.build(v, files);
    let unpack = |b: &[u8]| net.unpack(b);
    let v1_cvd = build(1, &version(&[]));
    let v1 = unpack(&v1_cvd);
    let v2 = unpack(&build(2, &version(&["Net.Test.B:0:*:5152535455565758"])));
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("mydb.cvd");
    std::fs::write(&base, &v1_cvd).unwrap();
    let out = tmp.path().join("mydb.cld");

    // Version 2's signed .info, but a member that is not what it lists.
    let mut wrong_member = v2.clone();
    wrong_member
        .get_mut("mydb.ndb")
        .unwrap()
        .extend_from_slice(b"Net.Test.C:0:*:6162636465666768\n");
    // Version 2's .info with a signature that does not verify.
    let mut bad_dsig = v2.clone();
    let info = String::from_utf8(bad_dsig["mydb.info"].clone()).unwrap();
    let (head, sig) = info.rsplit_once("DSIG:").unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    bad_dsig.insert(
        "mydb.info".into(),
        format!("{head}DSIG:{flipped}{}", &sig[1..]).into_bytes(),
    );
    for (what, new) in [("member", wrong_member), ("dsig", bad_dsig)] {
        let script = cdiff::diff(&v1, &new).unwrap().to_text();
        let cd = Cdiff::write(2, script.as_bytes(), |d| keys.sign_cdiff(d)).unwrap();
        let r =
            patch::apply_chain_to_cld(&base, &[&cd], public, limits, &out, &CldOptions::default());
        match r {
            Err(ApplyError::Chain(e)) => {
                assert_eq!(e.index, 0, "{what}: {e}");
                match (what, &e.error) {
                    ("member", vdb_format::Error::Member { member, .. }) => {
                        assert_eq!(member, "mydb.ndb");
                    }
                    ("dsig", vdb_format::Error::Signature { .. }) => {}
                    _ => panic!("{what}: wrong refusal: {e}"),
                }
            }
            other => panic!("{what}: accepted: {other:?}"),
        }
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["mydb.cvd"], "{what}");
    }

    // The honest cdiff goes through.
    let script = cdiff::diff(&v1, &v2).unwrap().to_text();
    let cd = Cdiff::write(2, script.as_bytes(), |d| keys.sign_cdiff(d)).unwrap();
    let h = patch::apply_chain_to_cld(&base, &[&cd], public, limits, &out, &CldOptions::default())
        .unwrap();
    assert_eq!(h.version, 2);
}

/// A chain with a MOVE (two files tied together) takes the in-memory path and gives the same
/// CLD as building the expected database directly.
#[test]
fn streamed_chain_with_a_move_matches_the_expected_database() {
    use vdb_format::patch::{self, CldOptions};
    let net = TestNet::new();
    let (keys, public, limits) = (&net.keys, &net.public, &net.limits);
    let build = |v: u32, files: &BTreeMap<String, Vec<u8>>| net.build(v, files);
    let unpack = |b: &[u8]| net.unpack(b);
    let mut files = version(&["Net.Test.B:0:*:5152535455565758", "Net.Test.C:0:*:61626364"]);
    files.insert(
        "mydb.hdb".into(),
        b"0123456789abcdef0123456789abcdef:10:Net.Test.H\n".to_vec(),
    );
    let v1_cvd = build(1, &files);
    let v1 = unpack(&v1_cvd);
    let mv = "MOVE mydb.ndb mydb.hdb 2 Net.Test.B 3 Net.Test.C\n";
    let mut moved = v1.clone();
    cdiff::apply(&cdiff::Script::parse(mv.as_bytes()).unwrap(), &mut moved).unwrap();
    moved.remove("mydb.info");
    let v2 = unpack(&build(2, &moved));
    let mut v1_moved = v1.clone();
    cdiff::apply(&cdiff::Script::parse(mv.as_bytes()).unwrap(), &mut v1_moved).unwrap();
    let script = format!("{mv}{}", cdiff::diff(&v1_moved, &v2).unwrap().to_text());
    let cd = Cdiff::write(2, script.as_bytes(), |d| keys.sign_cdiff(d)).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("mydb.cvd");
    std::fs::write(&base, &v1_cvd).unwrap();
    let out = tmp.path().join("mydb.cld");
    let h = patch::apply_chain_to_cld(&base, &[&cd], public, limits, &out, &CldOptions::default())
        .unwrap();
    assert_eq!(h.version, 2);
    let mut want = Vec::new();
    vdb_format::build::build_cld("mydb", &v2, false, &mut want).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), want);
}
