//! Tests of segmented gzip, segment maps and delta reconstruction.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use proptest::prelude::*;

use super::*;
use crate::build::{BuildSpec, build};
use crate::cdiff::{Cdiff, diff};

/// A small deterministic generator (xorshift) for signature-like text.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn line(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        format!(
            "{a:016x}{b:016x}:{}:Sig.Test-{}-{}\n",
            a % 100_000,
            b % 9973,
            a % 7
        )
    }
}

/// An unpacked database `test` with about `lines` signature lines over two files.
fn database(seed: u64, lines: usize) -> BTreeMap<String, Vec<u8>> {
    let mut g = Gen(seed | 1);
    let mut files = BTreeMap::new();
    files.insert("COPYING".to_owned(), b"copying terms\n".to_vec());
    let hdb: String = (0..lines * 3 / 4).map(|_| g.line()).collect();
    let ndb: String = (0..lines / 4).map(|_| g.line()).collect();
    files.insert("test.hdb".to_owned(), hdb.into_bytes());
    files.insert("test.fp".to_owned(), ndb.into_bytes());
    files
}

fn spec(version: u32) -> BuildSpec {
    BuildSpec {
        db_name: "test".into(),
        kind: Kind::Cud,
        version,
        flevel: 200,
        builder: "segtest".into(),
        build_secs: 1_700_000_000 + u64::from(version),
        signatures: None,
        engine_flevel: crate::build::ENGINE_FLEVEL_146,
    }
}

fn cud(files: &BTreeMap<String, Vec<u8>>, version: u32) -> Vec<u8> {
    build(&spec(version), files, None).unwrap().0
}

/// The members of a built container, `.info` included.
fn unpacked(file: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let keys = KeySet::official();
    container::read_to_map(file, Kind::Cud, &keys, &Limits::default())
        .unwrap()
        .1
}

/// A cdiff from `old` to `new` (containers), with a placeholder signature (the unverified
/// path does not check it).
fn cdiff_between(old: &[u8], new: &[u8], version: u32) -> Vec<u8> {
    let script = diff(&unpacked(old), &unpacked(new)).unwrap();
    Cdiff::write(
        version,
        script.to_text().as_bytes(),
        |_| Ok("A".repeat(330)),
    )
    .unwrap()
}

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// Rebuilds `new` from `old` plus the cdiff; fetches the missing ranges from `new`, lets
/// `corrupt` change them, and assembles. Returns the result and what was missing.
fn delta(
    old: &[u8],
    new: &[u8],
    cdiff: &[u8],
    corrupt: impl Fn(&mut Vec<(Missing, Vec<u8>)>),
) -> (Result<Vec<u8>, Error>, Rebuilt) {
    let old_map = segment_map(old, 1 << 32).unwrap();
    let new_map = segment_map(new, 1 << 32).unwrap();
    let inputs = DeltaInputs {
        db_name: "test",
        cdiffs: &[cdiff],
        old_map: Some(&old_map),
        new_map: &new_map,
        keys: None,
        limits: Limits::default(),
        spool_dir: None,
    };
    let mut out = Cursor::new(Vec::new());
    let rebuilt = rebuild(&mut Cursor::new(old), &inputs, &mut out).unwrap();
    let mut fetched: Vec<(Missing, Vec<u8>)> = rebuilt
        .missing
        .iter()
        .map(|m| {
            let (a, b) = (m.offset as usize, (m.offset + m.len) as usize);
            (*m, new[a..b].to_vec())
        })
        .collect();
    corrupt(&mut fetched);
    let expected = Expected {
        size: new.len() as u64,
        sha256: &sha(new),
        verify: None,
    };
    let result = assemble(&mut out, &new_map, &rebuilt, &fetched, &expected).map(|()| {
        let mut v = Vec::new();
        out.set_position(0);
        out.read_to_end(&mut v).unwrap();
        v
    });
    (result, rebuilt)
}

#[test]
fn gear_table_is_fixed() {
    // Every build's cut points depend on it: it must never change (values from an independent
    // splitmix64 computation).
    assert_eq!(GEAR[0], 0x488a_4f84_b428_5ceb);
    assert_eq!(GEAR[255], 0xfb6c_e3cc_5560_cc6f);
    assert_eq!(GEAR.iter().fold(0, |a, &g| a ^ g), 0x4962_e2cd_77f7_9527);
}

#[test]
fn builds_are_deterministic_segmented_and_valid_gzip() {
    let files = database(7, 60_000);
    let a = cud(&files, 3);
    let b = cud(&files, 3);
    assert_eq!(a, b, "same input, same bytes");
    let map = segment_map(&a, 1 << 32).unwrap();
    assert!(map.framed);
    assert!(map.segments.len() > 4, "{} segments", map.segments.len());
    // One ordinary gzip stream: the container verifies (body MD5, members against .info).
    let keys = KeySet::official();
    let v = container::verify(&a[..], Kind::Cud, &keys, &Limits::default()).unwrap();
    assert!(v.compressed);
    assert_eq!(v.header.version, 3);
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&a[HEADER_LEN..])
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(raw.len() as u64, map.raw_size);
    for s in &map.segments {
        assert!(s.raw_len <= MAX_SEGMENT as u64);
    }
    let back = SegmentMap::from_json(&map.to_json()).unwrap();
    assert_eq!(back, map);
}

#[test]
fn a_single_stream_body_maps_to_one_segment() {
    // An official-style container: one gzip stream as ClamAV's sigtool writes it.
    let fixture = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/clamav/test-2.cvd"),
    )
    .expect("fixture test-2.cvd (../shared/fixtures/clamav)");
    let map = segment_map(&fixture, 1 << 32).unwrap();
    assert!(!map.framed);
    assert_eq!(map.segments.len(), 1);
    assert_eq!(map.segments[0].offset, HEADER_LEN as u64);
    assert_eq!(map.size, fixture.len() as u64);
    map.validate().unwrap();
    // Rebuilding against it re-creates nothing: the whole file is fetched.
    let inputs = DeltaInputs {
        db_name: "test",
        cdiffs: &[],
        old_map: None,
        new_map: &map,
        keys: None,
        limits: Limits::default(),
        spool_dir: None,
    };
    let r = rebuild(
        &mut Cursor::new(&fixture[..]),
        &inputs,
        &mut Cursor::new(Vec::new()),
    )
    .unwrap();
    assert_eq!(r.missing_bytes(), fixture.len() as u64);
    // A single-stream gzip of our own tar is not mistaken for a segmented one either.
    let files = database(3, 30_000);
    let seg = cud(&files, 1);
    let mut single = seg[..HEADER_LEN].to_vec();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&seg[HEADER_LEN..])
        .read_to_end(&mut raw)
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(&mut single, Compression::best());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap();
    assert!(!segment_map(&single, 1 << 32).unwrap().framed);
    // Nor a truncated one, nor one with bytes after the trailer.
    assert!(!segment_map(&seg[..seg.len() - 1], 1 << 32).unwrap().framed);
    let mut longer = seg.clone();
    longer.push(0);
    assert!(!segment_map(&longer, 1 << 32).unwrap().framed);
    // The decompression bound holds.
    assert!(!segment_map(&seg, 1000).unwrap().framed);
    assert!(segment_map(&seg[..HEADER_LEN], 1 << 32).is_err());
}

#[test]
fn hostile_maps_are_refused() {
    let files = database(5, 30_000);
    let file = cud(&files, 1);
    let map = segment_map(&file, 1 << 32).unwrap();
    let bad = |f: &dyn Fn(&mut SegmentMap)| {
        let mut m = map.clone();
        f(&mut m);
        assert!(SegmentMap::from_json(&m.to_json()).is_err(), "{m:?}");
    };
    bad(&|m| m.format = 2);
    bad(&|m| m.segments.clear());
    bad(&|m| m.segments[0].offset += 1);
    bad(&|m| m.segments[0].len += 1);
    bad(&|m| m.size += 1);
    bad(&|m| m.raw_size += 1);
    bad(&|m| m.segments[0].sha256 = "zz".into());
    bad(&|m| m.segments[0].raw_sha256.make_ascii_uppercase());
    bad(&|m| m.segments[0].raw_len = MAX_SEGMENT as u64 + 1);
    bad(&|m| m.framed = false);
    bad(&|m| m.segments[0].len = u64::MAX);
    assert!(SegmentMap::from_json(b"{}").is_err());
    assert!(SegmentMap::from_json(&vec![b' '; MAX_MAP_JSON + 1]).is_err());
    let mut extra = serde_json::to_value(&map).unwrap();
    extra["more"] = 1.into();
    assert!(SegmentMap::from_json(&serde_json::to_vec(&extra).unwrap()).is_err());
}

#[test]
fn a_daily_style_update_needs_only_the_header() {
    let old_files = database(11, 60_000);
    let mut new_files = old_files.clone();
    // Scattered edits: drop and change lines across the file, append at the end.
    let hdb = String::from_utf8(new_files["test.hdb"].clone()).unwrap();
    let mut lines: Vec<String> = hdb.lines().map(str::to_owned).collect();
    for i in (0..lines.len()).step_by(9_000) {
        lines[i] = format!("{}:edited", lines[i]);
    }
    lines.remove(20_000);
    lines.push("ffffffffffffffffffffffffffffffff:1:Appended".into());
    new_files.insert("test.hdb".into(), (lines.join("\n") + "\n").into_bytes());
    let old = cud(&old_files, 1);
    let new = cud(&new_files, 2);
    let cdiff = cdiff_between(&old, &new, 2);
    let (got, rebuilt) = delta(&old, &new, &cdiff, |_| {});
    assert_eq!(got.unwrap(), new, "reassembled byte for byte");
    assert_eq!(rebuilt.missing.len(), 1, "{:?}", rebuilt.missing);
    assert_eq!(rebuilt.missing_bytes(), HEADER_LEN as u64);
    assert!(rebuilt.copied > rebuilt.recompressed, "{rebuilt:?}");
    // A corrupted header range is refused (the whole-file hash).
    let (bad, _) = delta(&old, &new, &cdiff, |f| f[0].1[100] ^= 1);
    assert!(bad.is_err());
    // A map that lies about a segment: that segment is fetched, and a wrong fetch refused.
    let mut lying = segment_map(&new, 1 << 32).unwrap();
    lying.segments[2].raw_sha256 = "0".repeat(64);
    let inputs = DeltaInputs {
        db_name: "test",
        cdiffs: &[&cdiff],
        old_map: None,
        new_map: &lying,
        keys: None,
        limits: Limits::default(),
        spool_dir: None,
    };
    let mut out = Cursor::new(Vec::new());
    let r = rebuild(&mut Cursor::new(&old[..]), &inputs, &mut out).unwrap();
    assert_eq!(r.missing.len(), 2);
    assert_eq!(r.missing[1].offset, lying.segments[2].offset);
}

fn edit_strategy() -> impl Strategy<Value = Vec<(u8, u16, u8)>> {
    // (kind, where, which file)
    prop::collection::vec((0u8..4, any::<u16>(), 0u8..2), 0..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// Random members and random edits: assembly reproduces every byte of the new file, and
    /// any corrupted fetched range is refused.
    #[test]
    fn assembly_reproduces_the_new_file_or_refuses(
        seed in any::<u64>(),
        lines in 100usize..25_000,
        edits in edit_strategy(),
        corrupt_at in any::<prop::sample::Index>(),
        corrupt_byte in any::<prop::sample::Index>(),
    ) {
        let old_files = database(seed, lines);
        let mut new_files = old_files.clone();
        let mut g = Gen(seed ^ 0x5555);
        for (kind, at, file) in edits {
            let name = if file == 0 { "test.hdb" } else { "test.fp" };
            let text = String::from_utf8(new_files[name].clone()).unwrap();
            let mut ls: Vec<String> = text.lines().map(str::to_owned).collect();
            let i = usize::from(at) % (ls.len() + 1);
            match kind {
                0 if i < ls.len() => { ls.remove(i); }
                1 if i < ls.len() => ls[i] = g.line().trim_end().to_owned(),
                2 => ls.insert(i, g.line().trim_end().to_owned()),
                _ => ls.push(g.line().trim_end().to_owned()),
            }
            let joined = if ls.is_empty() { String::new() } else { ls.join("\n") + "\n" };
            new_files.insert(name.to_owned(), joined.into_bytes());
        }
        let old = cud(&old_files, 1);
        let new = cud(&new_files, 2);
        let cdiff = cdiff_between(&old, &new, 2);
        let (got, rebuilt) = delta(&old, &new, &cdiff, |_| {});
        prop_assert_eq!(got.unwrap(), new.clone());
        let (bad, _) = delta(&old, &new, &cdiff, |f| {
            let k = corrupt_at.index(f.len());
            let j = corrupt_byte.index(f[k].1.len());
            f[k].1[j] ^= 0x40;
        });
        prop_assert!(bad.is_err(), "a corrupted range was accepted; missing {:?}", rebuilt.missing);
    }
}
