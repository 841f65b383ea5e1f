use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use vdb_format::cdiff::Cdiff;
use vdb_format::container::{self, Kind, Limits};
use vdb_format::{Error, KeySet, patch};

pub(crate) use vdb_testkit::fixtures::{dir as fixture_dir, read as fixture};

/// `(v, name, bytes)` of the signed fixtures `test-{v}.{ext}`, for each `v` in `versions`.
pub(crate) fn signed_fixtures(
    ext: &'static str,
    versions: RangeInclusive<u32>,
) -> impl Iterator<Item = (u32, String, Vec<u8>)> {
    versions.map(move |v| {
        let name = format!("test-{v}.{ext}");
        let bytes = fixture(&name);
        (v, name, bytes)
    })
}

#[test]
fn every_fixture_cvd_verifies() {
    let keys = KeySet::official();
    for (v, name, bytes) in signed_fixtures("cvd", 1..=6) {
        let ok = container::verify(&bytes[..], Kind::Cvd, &keys, &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ok.header.version, v);
        assert!(ok.compressed);
        assert_eq!(ok.members[0].name, "COPYING");
        assert_eq!(ok.members[1].name, "test.info");
    }
}

#[test]
fn every_fixture_cdiff_verifies() {
    let keys = KeySet::official();
    for (v, name, bytes) in signed_fixtures("cdiff", 2..=6) {
        let c = Cdiff::parse(&bytes, 1 << 20).unwrap();
        assert_eq!(c.version, v);
        c.verify(&keys.cdiff)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn derived_containers_verify() {
    let keys = KeySet::official();
    let verify =
        |name: &str, kind| container::verify(&fixture(name)[..], kind, &keys, &Limits::default());
    let cld = verify("derived/test-6.from-cdiffs.cld", Kind::Cld).unwrap();
    assert!(!cld.compressed);
    assert_eq!(cld.header.version, 6);
    let gz = verify("derived/test-6.from-cdiffs.gz.cld", Kind::Cld).unwrap();
    assert!(gz.compressed);
    let cud = verify("derived/test-100.unsigned.cud", Kind::Cud).unwrap();
    assert!(!cud.info_signed());
    assert!(matches!(
        verify("derived/test-100.unsigned.cud", Kind::Cvd),
        Err(Error::Signature { .. })
    ));
}

#[test]
fn chain_of_cdiffs_reaches_version_6() {
    let keys = KeySet::official();
    let (_, mut files): (_, BTreeMap<String, Vec<u8>>) = container::read_to_map(
        &fixture("test-1.cvd")[..],
        Kind::Cvd,
        &keys,
        &Limits::default(),
    )
    .unwrap();
    for v in 2..=6 {
        let h = patch::apply_cdiff(
            &mut files,
            "test",
            &fixture(&format!("test-{v}.cdiff")),
            &keys,
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("test-{v}.cdiff: {e}"));
        assert_eq!(h.version, v);
    }
    let (_, want) = container::read_to_map(
        &fixture("test-6.cvd")[..],
        Kind::Cvd,
        &keys,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(files, want);
}
