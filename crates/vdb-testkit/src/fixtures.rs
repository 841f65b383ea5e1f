//! ClamAV's signed test databases (`test-1.cvd` … `test-6.cvd`, `test-2.cdiff` …
//! `test-6.cdiff`, and derived files) in `shared/fixtures/clamav`, beside the repository.

use std::path::{Path, PathBuf};

/// The fixtures' directory, canonical (panics with the path if it is missing).
pub fn dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/clamav");
    dir.canonicalize()
        .unwrap_or_else(|e| panic!("ClamAV fixtures not found at {}: {e}", dir.display()))
}

/// The absolute path of one fixture, which must exist.
pub fn path(name: &str) -> PathBuf {
    let p = dir().join(name);
    assert!(p.is_file(), "fixture {} is missing", p.display());
    p
}

/// The bytes of one fixture.
pub fn read(name: &str) -> Vec<u8> {
    let p = path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Release `v` (1..=6) of the test database as a publisher hands it over: `test.cvd` and, from
/// version 2, `test-<v>.cdiff` (name, path).
pub fn release_files(v: u32) -> Vec<(String, PathBuf)> {
    let mut files = vec![("test.cvd".to_owned(), path(&format!("test-{v}.cvd")))];
    if v > 1 {
        let name = format!("test-{v}.cdiff");
        files.push((name.clone(), path(&name)));
    }
    files
}

/// Release `v` (1..=6) with ClamAV 1.5's `.sign` files made by ClamAV's *test* CA (verify
/// with [`certs_dir`]): [`release_files`] plus `test-<v>.cvd.sign` and, from version 2,
/// `test-<v>.cdiff.sign` (name, path).
pub fn signed_release_files(v: u32) -> Vec<(String, PathBuf)> {
    let mut files = release_files(v);
    let signs: Vec<String> = files
        .iter()
        .map(|(name, _)| match name.as_str() {
            "test.cvd" => format!("test-{v}.cvd.sign"),
            cdiff => format!("{cdiff}.sign"),
        })
        .collect();
    files.extend(signs.into_iter().map(|n| {
        let p = path(&n);
        (n, p)
    }));
    files
}

/// The certificate directory that ClamAV's test CA's `.sign` fixtures verify against (laid out
/// like ClamAV's `certs/`: the test root, intermediate and signer, and the official root).
pub fn certs_dir() -> PathBuf {
    let d = dir().join("certs");
    assert!(
        d.is_dir(),
        "fixture certificates {} are missing",
        d.display()
    );
    d
}

/// ClamAV 1.5.3 (`bin/freshclam`, `bin/sigtool`, `bin/clamscan`, its README) in
/// `shared/tools/clamav-1.5.3`, beside the fixtures. Panics with what to do when it is missing:
/// a test that needs the real 1.5 client never passes without it.
pub fn clamav_1_5() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/clamav-1.5.3");
    let freshclam = d.join("bin/freshclam");
    assert!(
        freshclam.is_file(),
        "ClamAV 1.5.3 is missing: {} not found. This test needs the real ClamAV 1.5 client; \
         put the build described in shared/tools/clamav-1.5.3/README.md there",
        freshclam.display()
    );
    d.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
}

/// What a mirror serves once it holds version `v` (1..=6) of the test database: `test.cvd`,
/// `timestamp` and the cdiffs `2..=v` (name, bytes).
pub fn served_set(v: u32) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        ("test.cvd".to_owned(), read(&format!("test-{v}.cvd"))),
        ("timestamp".to_owned(), format!("{v}\n").into_bytes()),
    ];
    for n in 2..=v {
        let name = format!("test-{n}.cdiff");
        out.push((name.clone(), read(&name)));
    }
    out
}

/// One run of the real freshclam 1.4.6 (from `PATH`) updating the test database in
/// `work/db` from the mirror `mirror_line` names (`DatabaseMirror URL` or `PrivateMirror
/// HOST`), with a config of its own in `work`: (success, its output).
pub fn freshclam_test_db(work: &Path, mirror_line: &str) -> (bool, String) {
    let db = work.join("db");
    std::fs::create_dir_all(&db).unwrap();
    let conf = work.join("freshclam.conf");
    std::fs::write(
        &conf,
        format!(
            "{mirror_line}\nDNSDatabaseInfo no\nDatabaseDirectory {}\nDatabaseOwner root\n\
             PidFile {}\nLogVerbose yes\nMaxAttempts 1\nConnectTimeout 5\nReceiveTimeout 10\n\
             TestDatabases yes\nScriptedUpdates yes\nBytecode no\n",
            db.display(),
            work.join("freshclam.pid").display()
        ),
    )
    .unwrap();
    let out = freshclam_test_update("freshclam", &conf)
        .output()
        .expect("freshclam is installed (apt-get install clamav-freshclam)");
    (out.status.success(), crate::output_text(&out))
}

/// One run of `freshclam` (`bin`: `freshclam` from `PATH`, or 1.5.3's) updating the test
/// database over HTTP as the suites run it: `--config-file=CONF --no-dns --update-db=test
/// --foreground --stdout --verbose`.
pub fn freshclam_test_update(
    bin: impl AsRef<std::ffi::OsStr>,
    conf: &Path,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg(format!("--config-file={}", conf.display())).args([
        "--no-dns",
        "--update-db=test",
        "--foreground",
        "--stdout",
        "--verbose",
    ]);
    cmd
}
