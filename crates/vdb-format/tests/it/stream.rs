//! The streaming chain apply (`patch::apply_chain_to_cld`) against the in-memory path, on
//! ClamAV's own signed fixtures.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use vdb_format::container::{self, Kind, Limits};
use vdb_format::patch::{self, ApplyError, CldOptions};
use vdb_format::{KeySet, build};

use crate::fixtures::{fixture, fixture_dir};

fn cdiffs(range: std::ops::RangeInclusive<u32>) -> Vec<Vec<u8>> {
    range.map(|v| fixture(&format!("test-{v}.cdiff"))).collect()
}

/// The in-memory path: unpack, apply the chain, build the CLD.
fn in_memory(base: &[u8], kind: Kind, links: &[&[u8]], compress: bool) -> Vec<u8> {
    let keys = KeySet::official();
    let (_, mut files): (_, BTreeMap<String, Vec<u8>>) =
        container::read_to_map(base, kind, &keys, &Limits::default()).unwrap();
    patch::apply_chain(&mut files, "test", links, &keys, &Limits::default()).unwrap();
    let mut out = Vec::new();
    build::build_cld("test", &files, compress, &mut out).unwrap();
    out
}

fn streamed(base: &Path, links: &[&[u8]], out: &Path, compress: bool) -> Result<(), ApplyError> {
    let options = CldOptions {
        compress,
        spool_dir: None,
    };
    let h = patch::apply_chain_to_cld(
        base,
        links,
        &KeySet::official(),
        &Limits::default(),
        out,
        &options,
    )?;
    assert_eq!(h.md5, None);
    Ok(())
}

/// Only the output (no spool directory, no temporary file) is left in `dir`.
fn only(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, names, "files left in {}", dir.display());
}

#[test]
fn streamed_chain_is_the_in_memory_cld_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let all = cdiffs(2..=6);
    let links: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
    let base = fixture_dir().join("test-1.cvd");
    for compress in [false, true] {
        let out = tmp.path().join("test.cld");
        streamed(&base, &links, &out, compress).unwrap();
        let got = fs::read(&out).unwrap();
        assert_eq!(
            got,
            in_memory(&fixture("test-1.cvd"), Kind::Cvd, &links, compress),
            "compress {compress}"
        );
        let v = container::verify(&got[..], Kind::Cld, &KeySet::official(), &Limits::default())
            .unwrap();
        assert_eq!((v.header.version, v.compressed), (6, compress));
        // The same database as ClamAV's own test-6.cvd.
        let (_, ours) =
            container::read_to_map(&got[..], Kind::Cld, &KeySet::official(), &Limits::default())
                .unwrap();
        let (_, want) = container::read_to_map(
            &fixture("test-6.cvd")[..],
            Kind::Cvd,
            &KeySet::official(),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(ours, want);
        only(tmp.path(), &["test.cld"]);
    }

    // A CLD as the base: 1 → 3 plain, then 3 → 6 from it (the updater's usual step).
    let t3 = tmp.path().join("t3.cld");
    streamed(&base, &links[..2], &t3, false).unwrap();
    let t6 = tmp.path().join("t6.cld");
    streamed(&t3, &links[2..], &t6, true).unwrap();
    assert_eq!(
        fs::read(&t6).unwrap(),
        in_memory(&fs::read(&t3).unwrap(), Kind::Cld, &links[2..], true)
    );
}

#[test]
fn refused_chains_leave_the_output_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("test.cld");
    fs::write(&out, b"old").unwrap();
    let base = fixture_dir().join("test-1.cvd");
    let all = cdiffs(2..=6);

    // A tampered link (a flipped byte in the middle of test-4.cdiff): refused at index 2.
    let mut tampered = all.clone();
    let mid = tampered[2].len() / 2;
    tampered[2][mid] ^= 0x20;
    let links: Vec<&[u8]> = tampered.iter().map(Vec::as_slice).collect();
    match streamed(&base, &links, &out, false) {
        Err(ApplyError::Chain(e)) => assert_eq!(e.index, 2, "{e}"),
        other => panic!("tampered link accepted: {other:?}"),
    }

    // A link that does not produce the next version: test-3 onto test-1.
    let links: Vec<&[u8]> = vec![&all[1]];
    match streamed(&base, &links, &out, false) {
        Err(ApplyError::Chain(e)) => {
            assert_eq!(e.index, 0);
            assert!(e.to_string().contains("needs 2"), "{e}");
        }
        other => panic!("wrong version accepted: {other:?}"),
    }

    // A corrupt base.
    let mut cvd = fixture("test-1.cvd");
    let at = cvd.len() - 100;
    cvd[at] ^= 1;
    let bad = tmp.path().join("bad.cvd");
    fs::write(&bad, &cvd).unwrap();
    let links: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
    assert!(matches!(
        streamed(&bad, &links, &out, false),
        Err(ApplyError::Base(_))
    ));
    // A .cud has no signed manifest to patch.
    assert!(matches!(
        streamed(&tmp.path().join("x.cud"), &links, &out, false),
        Err(ApplyError::Base(_))
    ));

    assert_eq!(fs::read(&out).unwrap(), b"old");
    only(tmp.path(), &["bad.cvd", "test.cld"]);
}
