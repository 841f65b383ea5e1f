//! Segmented gzip bodies with the real ClamAV tools (`sigtool`, `clamscan`, which must be
//! installed: the test fails, never skips, without them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use vdb_format::build::{BuildSpec, ENGINE_FLEVEL_146, build};
use vdb_format::segment::segment_map;
use vdb_format::{Kind, Limits};

/// Finds a required external tool in PATH, or fails the test.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|c| c.is_file())
        .unwrap_or_else(|| panic!("required tool `{name}` not found in PATH; install ClamAV"))
}

fn run(cwd: &Path, name: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(tool(name))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

#[test]
fn stock_clamav_reads_a_segmented_cud() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Enough signatures for several segments: 40 000 hash signatures (≈ 2.6 MB of tar).
    let mut hdb = String::new();
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for i in 0..40_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        hdb.push_str(&format!(
            "{x:016x}{:016x}:{}:Seg.Test-{i}\n",
            x.rotate_left(17),
            1000 + i
        ));
    }
    hdb.push_str("44d88612fea8a8f36de82e1278abb02f:68:Seg.Eicar\n");
    let mut files = BTreeMap::new();
    files.insert("COPYING".to_owned(), b"test database\n".to_vec());
    files.insert("seg.hdb".to_owned(), hdb.clone().into_bytes());
    let spec = BuildSpec {
        db_name: "seg".into(),
        kind: Kind::Cud,
        version: 7,
        flevel: 200,
        builder: "segtest".into(),
        build_secs: 1_700_000_000,
        signatures: None,
        engine_flevel: ENGINE_FLEVEL_146,
    };
    let (cud, _) = build(&spec, &files, None).unwrap();
    assert_eq!(cud, build(&spec, &files, None).unwrap().0, "deterministic");
    let map = segment_map(&cud, Limits::default().max_body_size).unwrap();
    assert!(
        map.framed && map.segments.len() >= 3,
        "{} segments",
        map.segments.len()
    );
    std::fs::write(dir.join("seg.cud"), &cud).unwrap();

    let (code, info) = run(dir, "sigtool", &["--info=seg.cud"]);
    assert_eq!(code, Some(0), "sigtool --info:\n{info}");
    assert!(info.contains("Version: 7"), "{info}");
    assert!(info.contains("Signatures: 40001"), "{info}");

    let unpack = dir.join("unpacked");
    std::fs::create_dir(&unpack).unwrap();
    let (code, out) = run(&unpack, "sigtool", &["--unpack=../seg.cud"]);
    assert_eq!(code, Some(0), "sigtool --unpack:\n{out}");
    assert_eq!(
        std::fs::read(unpack.join("seg.hdb")).unwrap(),
        hdb.as_bytes()
    );

    std::fs::write(dir.join("eicar.txt"), EICAR).unwrap();
    std::fs::write(dir.join("clean.txt"), b"nothing to see\n").unwrap();
    let (code, out) = run(
        dir,
        "clamscan",
        &["--no-summary", "-d", "seg.cud", "eicar.txt"],
    );
    assert_eq!(code, Some(1), "clamscan should find EICAR:\n{out}");
    assert!(out.contains("Seg.Eicar"), "{out}");
    let (code, out) = run(dir, "clamscan", &["-d", "seg.cud", "clean.txt"]);
    assert_eq!(code, Some(0), "clamscan on a clean file:\n{out}");
    assert!(out.contains("Known viruses: 40001"), "{out}");
}
