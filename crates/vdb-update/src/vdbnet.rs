//! On a vdbnet mirror: the master-signed manifest is fetched and checked before anything is
//! taken from the mirror (signature by a configured master key, network, expiry, no rollback
//! against the last manifest accepted), and every downloaded file must match its entry.

use std::path::Path;

use vdb_proto::{MANIFEST_PATH, Manifest, PublicKey, Signed};

use crate::config::VdbnetSettings;
use crate::fetch::{FetchError, Fetcher};

/// The last accepted manifest envelope, in the database directory.
pub const HELD_MANIFEST_FILE: &str = "vdbnet-manifest.json";

/// Largest manifest accepted.
pub const MAX_MANIFEST: u64 = 8 << 20;

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

/// Checks an envelope against the settings and the held manifest; on success stores it as
/// the held manifest (when it is newer) and returns it.
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
    let store = match held(dir, &settings.master_keys) {
        None => true,
        Some(h) => matches!(
            manifest.freshness(&h).map_err(|e| bad(e.to_string()))?,
            vdb_proto::Freshness::Newer | vdb_proto::Freshness::Refreshed
        ),
    };
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
