//! Patching an unpacked database with signed cdiffs, the way freshclam does (spec §2.3),
//! with the check `sigtool --verify-cdiff` adds: after the script, the patched `.info` must
//! carry a valid DSIG and describe every file exactly.

use sha2::{Digest, Sha256};

use crate::cdiff::{self, Cdiff, Changes, Script};
use crate::container::Limits;
use crate::error::{Error, MemberError};
use crate::header::Header;
use crate::info::Info;
use crate::keys::KeySet;
use crate::sigenc::hex;
use crate::store::FileStore;

/// The header of the unpacked database `db_name` in `store` (from its `.info`).
pub fn current_header(store: &dyn FileStore, db_name: &str) -> Result<Header, Error> {
    let name = format!("{db_name}.info");
    let bytes = store
        .read(&name)
        .map_err(|e| Error::io(format!("reading {name}"), e))?
        .ok_or_else(|| Error::member(&name, MemberError::NoInfo))?;
    Ok(Info::parse(&bytes, &name)?.header)
}

/// Verifies a cdiff, checks that it produces the next version, applies it and checks the
/// result. On any error the store is unchanged. Returns the new header.
pub fn apply_cdiff(
    store: &mut dyn FileStore,
    db_name: &str,
    cdiff_bytes: &[u8],
    keys: &KeySet,
    limits: &Limits,
) -> Result<Header, Error> {
    let cdiff = Cdiff::parse(cdiff_bytes, limits.max_script_size)?;
    cdiff.verify(&keys.cdiff)?;
    let current = current_header(store, db_name)?;
    if u64::from(cdiff.version) != u64::from(current.version) + 1 {
        return Err(crate::error::CdiffError::Header(format!(
            "cdiff produces version {}, but the database is at version {} (needs {})",
            cdiff.version,
            current.version,
            u64::from(current.version) + 1
        ))
        .into());
    }
    let script = Script::parse(&cdiff.script)?;
    let changes = cdiff::plan(&script, &*store)?;
    let header = check_patched(&*store, &changes, db_name, keys)?;
    if header.version != cdiff.version {
        return Err(crate::error::CdiffError::Header(format!(
            "cdiff is labelled version {} but its .info says {}",
            cdiff.version, header.version
        ))
        .into());
    }
    changes.commit(store)?;
    Ok(header)
}

/// Checks a patched database: `.info` DSIG under the key set, every listed file present with
/// the listed size and SHA-256, every database file listed.
fn check_patched(
    store: &dyn FileStore,
    changes: &Changes,
    db_name: &str,
    keys: &KeySet,
) -> Result<Header, Error> {
    let io = |name: &str, e| Error::io(format!("reading patched {name}"), e);
    let info_name = format!("{db_name}.info");
    let bytes = changes
        .read(store, &info_name)
        .map_err(|e| io(&info_name, e))?
        .ok_or_else(|| Error::member(&info_name, MemberError::NoInfo))?;
    let info = Info::parse(&bytes, &info_name)?;
    info.verify(&keys.info)?;
    for entry in &info.entries {
        let data = changes
            .read(store, &entry.name)
            .map_err(|e| io(&entry.name, e))?
            .ok_or_else(|| Error::member(&entry.name, MemberError::Missing))?;
        if data.len() as u64 != entry.size {
            return Err(Error::member(
                &entry.name,
                MemberError::Size {
                    expected: entry.size,
                    actual: data.len() as u64,
                },
            ));
        }
        let sha: [u8; 32] = Sha256::digest(&data).into();
        if sha != entry.sha256 {
            return Err(Error::member(
                &entry.name,
                MemberError::Sha256 {
                    expected: hex(&entry.sha256),
                    actual: hex(&sha),
                },
            ));
        }
    }
    for name in changes.names(store).map_err(|e| io("directory", e))? {
        if name != "COPYING" && name != info_name && info.entry(&name).is_none() {
            return Err(Error::member(&name, MemberError::NotListed));
        }
    }
    Ok(info.header)
}
