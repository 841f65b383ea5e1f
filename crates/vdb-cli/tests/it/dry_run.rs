//! `vdb publish --dry-run`: the real `vdb` binary runs the masters' gate on files on disk and
//! prints what a master would answer. Each case is also published to a real master
//! (in-process, the same `vdb-master` the network runs) holding the same version: the dry
//! run's answer must be the master's, code for code.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;
use vdb_proto::SecretKey;

use super::support::{self, flip_byte, fx};
use super::{append_line, build_with_k, keys_and_test_6_plus_a_line};

/// A master holding database `test` (checked with key set `K`) at version 7.
struct Master {
    rt: tokio::runtime::Runtime,
    running: Option<vdb_master::Running>,
    url: String,
    publisher: SecretKey,
}

impl Master {
    fn start(t: &Path) -> Self {
        let master_key = t.join("master.key");
        let data = t.join("master-data");
        vdb_cli::key::write_secret(&master_key, &SecretKey::generate()).unwrap();
        let publisher = SecretKey::generate();
        let mut c = vdb_master::Config::new("a", "net", data, master_key);
        c.publishers = vec![vdb_master::config::PublisherConfig {
            key: publisher.public(),
            databases: vec!["test".into()],
        }];
        c.databases.insert(
            "test".into(),
            vdb_master::config::DbConfig {
                keyset_file: Some(t.join("K.pub")),
                ..Default::default()
            },
        );
        let rt = tokio::runtime::Runtime::new().unwrap();
        let running = rt
            .block_on(vdb_master::start(c, Arc::new(vdb_proto::SystemClock)))
            .unwrap();
        let url = running.base_url();
        Self {
            rt,
            running: Some(running),
            url,
            publisher,
        }
    }

    /// Publishes `files` (in `dir`, under their names): `Ok` accepted, else the refusal code.
    fn answer(&self, dir: &Path, db: Option<&str>, version: Option<u32>) -> Result<(), String> {
        let paths: Vec<PathBuf> = names(dir).iter().map(|n| dir.join(n)).collect();
        let files = vdb_client::files_from_paths(&paths).unwrap();
        let info = vdb_client::infer(&files, db, version).unwrap();
        let p = vdb_client::Publisher::new(vec![self.url.clone()], self.publisher.clone());
        let (st, env) = p.statement(&info, &files, "").unwrap();
        match self.rt.block_on(p.publish(&files, &st, &env, &|_| {})) {
            Ok(_) => Ok(()),
            Err(vdb_client::PublishError::Refused { error, .. }) => Err(error.code),
            Err(e) => panic!("the master did not answer: {e}"),
        }
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.shutdown());
        }
    }
}

/// The file names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Runs `vdb publish --dry-run` on the files of `dir` with `extra` options, in `t`; returns
/// `Ok(stdout)` when it says a master would accept, else the refusal code it printed.
fn dry_run(t: &Path, dir: &Path, extra: &[&str]) -> Result<String, String> {
    let mut args: Vec<String> = vec!["publish".into(), "--dry-run".into()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args.extend(names(dir).iter().map(|n| dir.join(n).display().to_string()));
    let out = support::vdb(t, &args);
    match out.code {
        Some(0) => {
            assert!(out.stdout.starts_with("accept: "), "{out}");
            Ok(out.stdout)
        }
        Some(1) => {
            let line = out
                .stdout
                .lines()
                .find_map(|l| l.strip_prefix("refuse: "))
                .unwrap_or_else(|| panic!("no refusal line:\n{out}"));
            let code = line.split_once(' ').map_or(line, |(c, _)| c);
            assert!(line.contains("(HTTP 4"), "{out}");
            Err(code.to_owned())
        }
        _ => panic!("unexpected exit:\n{out}"),
    }
}

/// A case directory `t/<name>` holding `files` (served name, bytes).
fn case(t: &Path, name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let dir = t.join(name);
    fs::create_dir_all(&dir).unwrap();
    for (n, bytes) in files {
        fs::write(dir.join(n), bytes).unwrap();
    }
    dir
}

#[test]
fn dry_run_answers_what_a_master_answers() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    // Key set K; v6 and v7 (the held version) of test-6's content; v8 adds a line; v8b adds
    // another; the cdiff 7→8 and one 7→8b, signed with K.
    keys_and_test_6_plus_a_line(t, "d8");
    support::copy_dir(&t.join("u6"), &t.join("d8b"));
    append_line(
        &t.join("d8b"),
        "test.ndb",
        "Test.Vdbnet.Other-1:0:*:ffeeddccbbaa99887766554433221100",
    );
    for (dir, out, version) in [
        ("u6", "v6/test.cvd", "6"),
        ("u6", "v7/test.cvd", "7"),
        ("d8", "v8/test.cvd", "8"),
        ("d8b", "v8b/test.cvd", "8"),
    ] {
        build_with_k(t, dir, out, version);
    }
    for (new, out) in [("v8", "right"), ("v8b", "wrong")] {
        fs::create_dir(t.join(out)).unwrap();
        vdb!(
            t,
            "db",
            "diff",
            "v7/test.cvd",
            format!("{new}/test.cvd"),
            "-o",
            format!("{out}/test-8.cdiff"),
            "--keys",
            "K"
        )
        .ok();
    }
    let read = |p: &str| fs::read(t.join(p)).unwrap();
    let (v6, v7, v8) = (
        read("v6/test.cvd"),
        read("v7/test.cvd"),
        read("v8/test.cvd"),
    );
    let (right, wrong) = (read("right/test-8.cdiff"), read("wrong/test-8.cdiff"));

    let master = Master::start(t);
    let held = case(t, "held", &[("test.cvd", v7.clone())]);
    master.answer(&held, None, None).unwrap();
    let gate = ["--held", "v7/test.cvd", "--keys", "K.pub"];

    let tampered = {
        let p = case(t, "tampered-src", &[("test-8.cdiff", right.clone())]).join("test-8.cdiff");
        flip_byte(&p, 40);
        fs::read(p).unwrap()
    };
    let mut trailing = v8.clone();
    trailing.push(0);
    type Case<'a> = (&'a str, Vec<(&'a str, Vec<u8>)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "container named for its version",
            vec![("test-8.cvd", v8.clone()), ("test-8.cdiff", right.clone())],
            vec![],
            "unsafe_name",
        ),
        (
            "cdiff named past the release's version",
            vec![("test.cvd", v8.clone()), ("test-9.cdiff", right.clone())],
            vec![],
            "unsafe_name",
        ),
        (
            "version given that is not the header's",
            vec![("test.cvd", v8.clone())],
            vec!["--version", "9"],
            "version_mismatch",
        ),
        (
            "container named for another database",
            vec![("daily.cvd", v8.clone()), ("test-8.cdiff", right.clone())],
            vec!["--db", "test"],
            "unsafe_name",
        ),
        (
            "cdiff that does not reproduce the new CVD",
            vec![("test.cvd", v8.clone()), ("test-8.cdiff", wrong)],
            vec![],
            "cdiff_mismatch",
        ),
        (
            "tampered cdiff",
            vec![("test.cvd", v8.clone()), ("test-8.cdiff", tampered)],
            vec![],
            "bad_cdiff",
        ),
        (
            "a byte after the gzip stream",
            vec![("test.cvd", trailing), ("test-8.cdiff", right.clone())],
            vec![],
            "bad_container",
        ),
        (
            "older than the held version",
            vec![("test.cvd", v6)],
            vec![],
            "older_version",
        ),
    ];
    for (i, (what, files, opts, code)) in cases.into_iter().enumerate() {
        let dir = case(t, &format!("case-{i}"), &files);
        let mut extra: Vec<&str> = gate.to_vec();
        extra.extend(&opts);
        let dry = dry_run(t, &dir, &extra);
        assert_eq!(dry, Err(code.to_owned()), "{what}: the dry run");
        let (db, version) = match opts.as_slice() {
            ["--db", db] => (Some(*db), None),
            ["--version", v] => (None, Some(v.parse().unwrap())),
            _ => (None, None),
        };
        assert_eq!(
            master.answer(&dir, db, version),
            Err(code.to_owned()),
            "{what}: the master"
        );
    }

    // The good release: accepted by the dry run, with the release it would make, and then by
    // the master.
    let good = case(
        t,
        "good",
        &[("test.cvd", v8.clone()), ("test-8.cdiff", right)],
    );
    let out = dry_run(t, &good, &gate).unwrap();
    assert!(out.contains("accept: test version 8"), "{out}");
    let sha = vdb_proto::sha256_hex(&v8);
    assert!(
        out.contains(&format!("test.cvd  {} bytes  sha256 {sha}", v8.len())),
        "{out}"
    );
    assert!(out.contains("test-8.cdiff"), "{out}");
    assert!(out.contains("nothing was uploaded"), "{out}");
    master.answer(&good, None, None).unwrap();
    // Without --held, the cdiff cannot be checked (a master holding nothing says the same).
    assert_eq!(
        dry_run(t, &good, &["--keys", "K.pub"]),
        Err("cdiff_without_base".to_owned())
    );
    // With another key set, the CVD does not verify.
    assert_eq!(dry_run(t, &held, &[]), Err("bad_container".to_owned()));
    // Nothing to infer the release from, or a --held that does not verify: usage errors.
    let sign_only = case(t, "sign-only", &[("test-8.cvd.sign", b"x".to_vec())]);
    support::vdb(
        t,
        &[
            "publish",
            "--dry-run",
            &sign_only.join("test-8.cvd.sign").display().to_string(),
        ],
    )
    .code(2);
    let bad_held = support::vdb(
        t,
        &[
            "publish",
            "--dry-run",
            "--held",
            &fx("test-6.cvd").display().to_string(),
            "--keys",
            "K.pub",
            &good.join("test.cvd").display().to_string(),
        ],
    )
    .code(2);
    assert!(bad_held.stderr.contains("--held"), "{bad_held}");
}

#[test]
fn dry_run_verifies_sign_files_against_the_certificate_directory() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    let files: Vec<(String, Vec<u8>)> = vdb_testkit::fixtures::signed_release_files(3)
        .into_iter()
        .map(|(n, p)| (n, fs::read(p).unwrap()))
        .collect();
    let borrowed: Vec<(&str, Vec<u8>)> =
        files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let dir = case(t, "v3", &borrowed);
    let held = fx("test-2.cvd").display().to_string();
    let certs = vdb_testkit::fixtures::certs_dir().display().to_string();
    let out = dry_run(t, &dir, &["--held", &held, "--cvd-certs-dir", &certs]).unwrap();
    assert!(out.contains("accept: test version 3"), "{out}");
    assert!(out.contains("test-3.cvd.sign"), "{out}");
    // A .sign for other bytes: what every ClamAV 1.5 client would reject.
    fs::copy(fx("test-2.cvd.sign"), dir.join("test-3.cvd.sign")).unwrap();
    assert_eq!(
        dry_run(t, &dir, &["--held", &held, "--cvd-certs-dir", &certs]),
        Err("bad_sign".to_owned())
    );
    // No certificate directory to verify against (as on a master without cvd_certs_dir).
    let none = t.join("no-certs");
    let out = support::vdb(
        t,
        &[
            "publish",
            "--dry-run",
            "--cvd-certs-dir",
            &none.display().to_string(),
            &dir.join("test.cvd").display().to_string(),
        ],
    )
    .code(2);
    assert!(out.stderr.contains("--cvd-certs-dir"), "{out}");
}
