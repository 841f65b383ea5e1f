//! A delta rebuild's memory does not grow with the database: the patched members are spooled
//! on disk, not held in memory (issue 18: 100 mirrors rebuilding a 60 MB daily at once were
//! OOM-killed when each held the unpacked database twice).
//!
//! Its own test binary, because it counts every allocation of the process: no other test may
//! run beside it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};

use sha2::{Digest, Sha256};
use vdb_format::build::{BuildSpec, ENGINE_FLEVEL_146, build};
use vdb_format::cdiff::{Cdiff, diff};
use vdb_format::segment::{DeltaInputs, Expected, Missing, assemble, rebuild, segment_map};
use vdb_format::{HEADER_LEN, KeySet, Kind, Limits};

/// Counts every heap allocation once a profiler runs (dhat's heap-usage testing mode).
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Signature-like lines from a fixed xorshift sequence.
fn lines(seed: u64, n: usize) -> Vec<String> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..n)
        .map(|_| {
            let (a, b) = (next(), next());
            format!(
                "{a:016x}{b:016x}:{}:Sig.Test-{}-{}\n",
                a % 100_000,
                b % 9973,
                a % 7
            )
        })
        .collect()
}

fn spec(version: u32) -> BuildSpec {
    BuildSpec {
        db_name: "test".into(),
        kind: Kind::Cud,
        version,
        flevel: 200,
        builder: "memtest".into(),
        build_secs: 1_700_000_000 + u64::from(version),
        signatures: None,
        engine_flevel: ENGINE_FLEVEL_146,
    }
}

#[test]
fn a_rebuild_holds_a_bounded_amount_of_memory_whatever_the_database_size() {
    // About 20 MB of signature text in two members.
    let hdb = lines(7, 300_000);
    let ndb = lines(11, 60_000);
    let mut old: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    old.insert("COPYING".into(), b"copying terms\n".to_vec());
    old.insert("test.hdb".into(), hdb.concat().into_bytes());
    old.insert("test.ndb".into(), ndb.concat().into_bytes());
    let raw: usize = old.values().map(Vec::len).sum();
    // A daily-style update: lines deleted and changed all through, lines appended.
    let mut hdb2 = hdb.clone();
    for i in (0..hdb2.len()).step_by(997) {
        hdb2[i] = format!("{:064x}:1:Sig.Changed-{i}\n", i);
    }
    let mut i = 0;
    hdb2.retain(|_| {
        i += 1;
        i % 1009 != 0
    });
    hdb2.extend(lines(13, 2_000));
    let mut new = old.clone();
    new.insert("test.hdb".into(), hdb2.concat().into_bytes());

    let (old_cud, _) = build(&spec(1), &old, None).unwrap();
    let (new_cud, _) = build(&spec(2), &new, None).unwrap();
    let keys = KeySet::official();
    let members = |cud: &[u8]| {
        vdb_format::container::read_to_map(cud, Kind::Cud, &keys, &Limits::default())
            .unwrap()
            .1
    };
    let script = diff(&members(&old_cud), &members(&new_cud)).unwrap();
    let cdiff = Cdiff::write(2, script.to_text().as_bytes(), |_| Ok("A".repeat(330))).unwrap();
    let old_map = segment_map(&old_cud, 1 << 32).unwrap();
    let new_map = segment_map(&new_cud, 1 << 32).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old.cud"), &old_cud).unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let new_sha = hex(&Sha256::digest(&new_cud));
    let new_len = new_cud.len() as u64;
    drop((old, new, hdb, hdb2, ndb, old_cud));

    let mut old_file = File::open(dir.path().join("old.cud")).unwrap();
    let mut out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("new.cud"))
        .unwrap();
    out.set_len(new_len).unwrap();
    let inputs = DeltaInputs {
        db_name: "test",
        cdiffs: &[&cdiff],
        old_map: Some(&old_map),
        new_map: &new_map,
        keys: None,
        limits: Limits::default(),
        spool_dir: Some(&spool),
    };
    // Only what is allocated from here on counts.
    let profiler = dhat::Profiler::builder().testing().build();
    let rebuilt = rebuild(&mut old_file, &inputs, &mut out).unwrap();
    let peak = dhat::HeapStats::get().max_bytes;
    drop(profiler);

    // The rebuild is right: everything but the header was re-created, and with the header
    // fetched it is the new file.
    let header = Missing {
        offset: 0,
        len: HEADER_LEN as u64,
    };
    assert_eq!(
        rebuilt.missing,
        [header],
        "only the header is left to fetch"
    );
    let fetched = [(header, new_cud[..HEADER_LEN].to_vec())];
    assemble(
        &mut out,
        &new_map,
        &rebuilt,
        &fetched,
        &Expected {
            size: new_len,
            sha256: &new_sha,
            verify: None,
        },
    )
    .unwrap();
    // Nothing is left in the spool directory.
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    eprintln!(
        "database {raw} bytes unpacked, cdiff {} bytes: the rebuild's peak heap was {peak} bytes",
        cdiff.len()
    );
    // Workers' segments (at most 1 MiB each, two queued per worker), I/O buffers, the maps
    // and the cdiff's edits: a few MiB, where an unpacked copy alone would be all 20 MB.
    assert!(
        peak < raw / 4,
        "the rebuild's heap peaked at {peak} bytes for a {raw}-byte database"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
