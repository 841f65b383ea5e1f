//! The invariants of DESIGN.md §4 as seen from outside: what a mirror serves and what it holds
//! on disk are exactly a release signed by a trusted master.

use std::path::Path;

use vdb_proto::{Manifest, PublicKey, Signed};

/// The manifest served at `base` (a master or a mirror), verified with `keys`; blocking.
#[cfg(feature = "net")]
pub fn manifest_at(base: &str, keys: &[PublicKey]) -> Option<Manifest> {
    let body = crate::http::fetch(&format!("{base}{}", vdb_proto::MANIFEST_PATH))?;
    Signed::<Manifest>::from_json(&body).ok()?.verify(keys).ok()
}

/// The version of `db` in the manifest at `base` (0 if none); blocking.
#[cfg(feature = "net")]
pub fn version_at(base: &str, keys: &[PublicKey], db: &str) -> u32 {
    manifest_at(base, keys)
        .and_then(|m| m.databases.get(db).map(|d| d.version))
        .unwrap_or(0)
}

/// Invariants 1 and 3 over HTTP: every file the mirror serves outside `local_*` matches a
/// manifest signed by a trusted master, all from one release. The files are compared with the
/// manifest fetched before them; a round is repeated if the mirror switched meanwhile.
#[cfg(feature = "net")]
pub fn assert_serves_exactly_a_signed_manifest(mirror: &str, keys: &[PublicKey]) -> Manifest {
    for _ in 0..10 {
        let m = manifest_at(mirror, keys)
            .unwrap_or_else(|| panic!("{mirror} serves no manifest signed by a trusted master"));
        let mut mismatch = None;
        for f in &m.files {
            let body = crate::http::fetch(&format!("{mirror}/{}", f.name))
                .unwrap_or_else(|| panic!("{mirror} does not serve {}", f.name));
            if body.len() as u64 != f.size || vdb_proto::sha256_hex(&body) != f.sha256 {
                mismatch = Some(f.name.clone());
            }
        }
        match mismatch {
            None => return m,
            Some(name) => {
                let after = manifest_at(mirror, keys).expect("a signed manifest");
                assert_ne!(
                    after.serial, m.serial,
                    "{mirror}/{name} does not match the signed manifest it serves (serial {})",
                    m.serial
                );
            }
        }
    }
    panic!("{mirror} kept switching releases during 10 rounds of checks")
}

/// Invariants 1 and 3 on disk: `<data>/current` is one whole snapshot, its envelope signed by a
/// trusted master and every file in it (and no other) exactly as that manifest lists; the small
/// files the manifest carries ([`Manifest::inline`]) are served from the envelope, with no file
/// of their own. `None` if the mirror has no `current` snapshot yet.
pub fn disk_snapshot(data: &Path, keys: &[PublicKey]) -> Option<Manifest> {
    let cur = data.join("current");
    std::fs::read_link(&cur).ok()?;
    let env = std::fs::read(cur.join(".manifest.json")).unwrap_or_else(|e| {
        panic!(
            "{}: no envelope in the current snapshot: {e}",
            data.display()
        )
    });
    let m = Signed::<Manifest>::from_json(&env)
        .and_then(|s| s.verify(keys))
        .unwrap_or_else(|e| {
            panic!(
                "{}: current snapshot not signed by a master: {e}",
                data.display()
            )
        });
    let mut on_disk: Vec<String> = std::fs::read_dir(&cur)
        .expect("the current snapshot")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n != ".manifest.json")
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = m.object_files().map(|f| f.name.clone()).collect();
    listed.sort();
    assert_eq!(
        on_disk,
        listed,
        "{}: snapshot files vs its manifest",
        data.display()
    );
    for f in &m.files {
        if m.carries(f) {
            assert!(
                m.inline_content(f).is_some(),
                "{}: {} carried in the manifest does not match its hash",
                data.display(),
                f.name
            );
            continue;
        }
        let b = std::fs::read(cur.join(&f.name)).expect("a listed file");
        assert_eq!(
            vdb_proto::sha256_hex(&b),
            f.sha256,
            "{}: {} on disk does not match its manifest",
            data.display(),
            f.name
        );
    }
    Some(m)
}
