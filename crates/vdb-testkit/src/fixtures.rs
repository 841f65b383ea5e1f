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
