//! On a vdbnet mirror: the master-signed manifest is fetched and checked before anything is
//! taken from the mirror (signature by a configured master key, network, expiry, no rollback
//! against the last manifest accepted nor below the anti-rollback floor), and every downloaded
//! file must match its entry.
//!
//! Two files in the database directory back the rollback checks across runs: the last accepted
//! envelope ([`HELD_MANIFEST_FILE`]) and the floor ([`FLOOR_FILE`]): the highest version of
//! each database any accepted manifest named. The held manifest alone would let a manifest
//! that drops a database and a later one that brings it back lower pass; the floor does not.

use std::collections::BTreeMap;
use std::path::Path;

use vdb_proto::{MANIFEST_PATH, Manifest, ManifestError, PublicKey, Signed};

use crate::config::VdbnetSettings;
use crate::fetch::{FetchError, Fetcher};

/// The last accepted manifest envelope, in the database directory.
pub const HELD_MANIFEST_FILE: &str = "vdbnet-manifest.json";

/// The anti-rollback floor, in the database directory: database → the highest version any
/// accepted manifest named (JSON, written with temporary file, fsync and rename).
pub const FLOOR_FILE: &str = "vdbnet-floor.json";

/// Largest manifest accepted.
pub const MAX_MANIFEST: u64 = 8 << 20;

/// Largest floor file read.
const MAX_FLOOR: u64 = 1 << 20;

/// Why a mirror's manifest or file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The manifest could not be fetched.
    #[error("cannot fetch the signed manifest: {0}")]
    Fetch(#[from] FetchError),
    /// The manifest failed a check.
    #[error("signed manifest refused: {0}")]
    Manifest(String),
    /// The manifest brings a database below the anti-rollback floor: a version lower than one
    /// an earlier accepted manifest named (also after a manifest that dropped the database).
    #[error(
        "signed manifest refused: {source}; an earlier manifest named {db} version {floor} (anti-rollback floor in {FLOOR_FILE})"
    )]
    BelowFloor {
        /// The database.
        db: String,
        /// The highest version of it accepted before.
        floor: u32,
        /// The check that failed.
        source: ManifestError,
    },
    /// The floor file cannot be read or written: the check it backs must not silently go away.
    #[error(
        "anti-rollback floor {FLOOR_FILE}: {0} (restore it, or remove it to start over from the held manifest)"
    )]
    Floor(String),
    /// A downloaded file is not what the manifest lists.
    #[error("{name}: {message} (the mirror serves data the masters did not publish)")]
    File {
        /// The file.
        name: String,
        /// What differs.
        message: String,
    },
}

fn held(dir: &Path, keys: &[PublicKey]) -> Option<Manifest> {
    let bytes = std::fs::read(dir.join(HELD_MANIFEST_FILE)).ok()?;
    Signed::<Manifest>::from_json(&bytes)
        .ok()?
        .verify(keys)
        .ok()
}

/// The floor in `dir` (empty when absent). A file that cannot be read as one is an error.
pub fn read_floor(dir: &Path) -> Result<BTreeMap<String, u32>, TrustError> {
    use std::io::Read as _;
    let path = dir.join(FLOOR_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(TrustError::Floor(e.to_string())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FLOOR + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| TrustError::Floor(e.to_string()))?;
    if bytes.len() as u64 > MAX_FLOOR {
        return Err(TrustError::Floor(format!("larger than {MAX_FLOOR} bytes")));
    }
    serde_json::from_slice(&bytes).map_err(|e| TrustError::Floor(e.to_string()))
}

fn write_floor(dir: &Path, floor: &BTreeMap<String, u32>) -> Result<(), TrustError> {
    let json = serde_json::to_vec(floor).map_err(|e| TrustError::Floor(e.to_string()))?;
    vdb_format::write_atomic(&dir.join(FLOOR_FILE), &json)
        .map_err(|e| TrustError::Floor(format!("cannot write it: {e}")))
}

/// Checks an envelope against the settings, the anti-rollback floor and the held manifest; on
/// success raises the floor, stores it as the held manifest (when it is newer) and returns it.
pub fn accept(
    bytes: &[u8],
    settings: &VdbnetSettings,
    dir: &Path,
    now: i64,
) -> Result<Manifest, TrustError> {
    let bad = |e: String| TrustError::Manifest(e);
    let env = Signed::<Manifest>::from_json(bytes).map_err(|e| bad(e.to_string()))?;
    let manifest = env
        .verify(&settings.master_keys)
        .map_err(|e| bad(e.to_string()))?;
    manifest
        .check(&settings.network, now)
        .map_err(|e| bad(e.to_string()))?;
    let held = held(dir, &settings.master_keys);
    let on_disk = read_floor(dir)?;
    let mut floor = on_disk.clone();
    // A held manifest from before the floor file existed counts too.
    if let Some(h) = &held {
        h.raise_floor(&mut floor);
    }
    manifest
        .check_floor(&floor)
        .map_err(|source| match source {
            ManifestError::Downgrade {
                ref db,
                held: highest,
                ..
            } => TrustError::BelowFloor {
                db: db.clone(),
                floor: highest,
                source,
            },
            other => bad(other.to_string()),
        })?;
    let store = match &held {
        None => true,
        Some(h) => matches!(
            manifest.freshness(h).map_err(|e| bad(e.to_string()))?,
            vdb_proto::Freshness::Newer | vdb_proto::Freshness::Refreshed
        ),
    };
    manifest.raise_floor(&mut floor);
    // The floor first: a crash before the held manifest is written leaves a floor this
    // manifest already satisfies.
    if floor != on_disk {
        write_floor(dir, &floor)?;
    }
    if store {
        vdb_format::write_atomic(&dir.join(HELD_MANIFEST_FILE), env.to_json().as_bytes())
            .map_err(|e| bad(format!("cannot store it: {e}")))?;
    }
    Ok(manifest)
}

/// Fetches `<server>/.well-known/vdbnet/manifest.json` and [`accept`]s it.
pub async fn fetch(
    fetcher: &Fetcher,
    server: &str,
    settings: &VdbnetSettings,
    dir: &Path,
    now: i64,
) -> Result<Manifest, TrustError> {
    let url = format!("{server}{MANIFEST_PATH}");
    let bytes = fetcher.download(&url, MAX_MANIFEST).await?;
    accept(&bytes, settings, dir, now)
}

/// Checks a downloaded file against the manifest entry of the same name.
pub fn check_file(
    manifest: &Manifest,
    name: &str,
    size: u64,
    sha256: &str,
) -> Result<(), TrustError> {
    let err = |message: String| TrustError::File {
        name: name.to_owned(),
        message,
    };
    let entry = manifest
        .file(name)
        .ok_or_else(|| err(format!("not listed in manifest serial {}", manifest.serial)))?;
    if entry.size != size || entry.sha256 != sha256 {
        return Err(err(format!(
            "size {size} sha256 {sha256}, manifest serial {} lists size {} sha256 {}",
            manifest.serial, entry.size, entry.sha256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdb_proto::SecretKey;

    const NOW: i64 = 1_800_000_000;

    fn key() -> SecretKey {
        SecretKey::from_seed([7; 32])
    }

    fn settings() -> VdbnetSettings {
        VdbnetSettings {
            network: "n".into(),
            master_keys: vec![key().public()],
        }
    }

    /// A signed manifest of `serial` with these database versions (the test kit's).
    fn envelope(serial: u64, dbs: &[(&str, u32)]) -> Vec<u8> {
        let no_files: &[(&str, Vec<u8>)] = &[];
        let m = vdb_testkit::keys::manifest("n", serial, NOW, dbs, no_files);
        vdb_testkit::keys::signed(&m, &key())
    }

    #[test]
    fn a_database_dropped_then_brought_back_lower_is_below_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let (s, d) = (settings(), dir.path());
        accept(&envelope(5, &[("daily", 7), ("main", 3)]), &s, d, NOW).unwrap();
        assert_eq!(
            read_floor(d).unwrap(),
            [("daily".to_owned(), 7), ("main".to_owned(), 3)].into()
        );
        // Dropping daily is accepted (a database may be retired); the floor keeps it.
        accept(&envelope(6, &[("main", 3)]), &s, d, NOW).unwrap();
        assert_eq!(read_floor(d).unwrap()["daily"], 7);
        // Bringing it back lower is not, even though the held manifest has no daily.
        let e = accept(&envelope(7, &[("daily", 6), ("main", 3)]), &s, d, NOW).unwrap_err();
        assert!(
            matches!(&e, TrustError::BelowFloor { db, floor: 7, source: ManifestError::Downgrade { got: 6, .. } } if db == "daily"),
            "{e:?}"
        );
        assert!(e.to_string().contains("anti-rollback floor"), "{e}");
        // Nothing changed: the held manifest is still serial 6.
        let held = held(d, &s.master_keys).unwrap();
        assert_eq!(held.serial, 6);
        // The floor holds without the held manifest too (it is its own file).
        std::fs::remove_file(d.join(HELD_MANIFEST_FILE)).unwrap();
        let e = accept(&envelope(2, &[("daily", 5)]), &s, d, NOW).unwrap_err();
        assert!(
            matches!(e, TrustError::BelowFloor { floor: 7, .. }),
            "{e:?}"
        );
        // Back at the floor or above is fine.
        accept(&envelope(8, &[("daily", 7), ("main", 4)]), &s, d, NOW).unwrap();
        assert_eq!(read_floor(d).unwrap()["main"], 4);
    }

    #[test]
    fn a_held_manifest_without_a_floor_file_sets_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let (s, d) = (settings(), dir.path());
        // An installation from before the floor: only the held manifest.
        std::fs::write(d.join(HELD_MANIFEST_FILE), envelope(5, &[("daily", 7)])).unwrap();
        accept(&envelope(6, &[]), &s, d, NOW).unwrap();
        let e = accept(&envelope(7, &[("daily", 3)]), &s, d, NOW).unwrap_err();
        assert!(
            matches!(e, TrustError::BelowFloor { floor: 7, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn an_unreadable_floor_is_an_error_not_an_empty_floor() {
        let dir = tempfile::tempdir().unwrap();
        let (s, d) = (settings(), dir.path());
        std::fs::write(d.join(FLOOR_FILE), b"{not json").unwrap();
        let e = accept(&envelope(1, &[("daily", 1)]), &s, d, NOW).unwrap_err();
        assert!(matches!(e, TrustError::Floor(_)), "{e:?}");
        assert!(e.to_string().contains("remove it to start over"), "{e}");
        assert!(!d.join(HELD_MANIFEST_FILE).exists());
    }
}
