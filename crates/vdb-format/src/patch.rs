//! Patching an unpacked database with signed cdiffs, the way freshclam does (spec §2.3),
//! with the check `sigtool --verify-cdiff` adds: after the script, the patched `.info` must
//! carry a valid DSIG and describe every file exactly.

use sha2::{Digest, Sha256};

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;

use crate::cdiff::{self, Cdiff, Changes, Script};

pub use crate::chain::{ApplyError, CldOptions, apply_chain_to_cld};
use crate::container::Limits;
use crate::error::{CdiffError, Error, MemberError};
use crate::header::Header;
use crate::info::Info;
use crate::keys::KeySet;
use crate::sigenc::hex;
use crate::store::FileStore;

/// The header of the unpacked database `db_name` in `store` (from its `.info`).
pub fn current_header(store: &dyn FileStore, db_name: &str) -> Result<Header, Error> {
    Ok(read_info(store, &format!("{db_name}.info"))?.header)
}

fn read_info(store: &dyn FileStore, name: &str) -> Result<Info, Error> {
    let bytes = store
        .read(name)
        .map_err(|e| Error::io(format!("reading {name}"), e))?
        .ok_or_else(|| Error::member(name, MemberError::NoInfo))?;
    Info::parse(&bytes, name)
}

/// Verifies a cdiff, checks that it produces the next version, applies it and checks the
/// result. On any error the store is unchanged. Returns the new header.
///
/// The store must hold a database that matches its own `.info` (as [`crate::container::read`]
/// or a previous `apply_cdiff` leave it): a file the cdiff leaves alone, whose `.info` entry
/// it also leaves alone, is not hashed again.
pub fn apply_cdiff(
    store: &mut dyn FileStore,
    db_name: &str,
    cdiff_bytes: &[u8],
    keys: &KeySet,
    limits: &Limits,
) -> Result<Header, Error> {
    apply_chain(store, db_name, &[cdiff_bytes], keys, limits).map_err(|e| e.error)
}

/// Which link of a chain failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("cdiff {index} of the chain: {error}")]
pub struct ChainError {
    /// Index of the failing cdiff in the chain (0-based).
    pub index: usize,
    /// What went wrong.
    #[source]
    pub error: Error,
}

/// Applies a chain of cdiffs, all or nothing: each one's signature and version (it must
/// produce the next version, and its `.info` must say so) are checked as it is applied, and
/// the patched database is checked against its signed `.info` once, at the end. The result is
/// exactly as authentic as checking after every link (the last `.info` is signed and describes
/// every file), at the cost of one pass over what the chain changed instead of one per link.
/// On any error the store is unchanged. Same precondition as [`apply_cdiff`].
pub fn apply_chain(
    store: &mut dyn FileStore,
    db_name: &str,
    cdiffs: &[&[u8]],
    keys: &KeySet,
    limits: &Limits,
) -> Result<Header, ChainError> {
    let info_name = format!("{db_name}.info");
    let at = |index| move |error| ChainError { index, error };
    let old_info = read_info(&*store, &info_name).map_err(at(0))?;
    let mut layer = Layered {
        base: &*store,
        changes: BTreeMap::new(),
    };
    let mut version = old_info.header.version;
    for (index, bytes) in cdiffs.iter().enumerate() {
        let next =
            apply_link(&mut layer, &info_name, bytes, version, keys, limits).map_err(at(index))?;
        version = next;
    }
    let last = cdiffs.len().saturating_sub(1);
    let header = check_patched(&layer, &old_info, &info_name, keys).map_err(at(last))?;
    let changes = Changes {
        files: layer.changes,
    };
    changes.commit(store).map_err(at(last))?;
    Ok(header)
}

/// One link: verify, check the version step, run the script into the layer. Returns the new
/// version.
fn apply_link(
    layer: &mut Layered<'_>,
    info_name: &str,
    bytes: &[u8],
    version: u32,
    keys: &KeySet,
    limits: &Limits,
) -> Result<u32, Error> {
    let (next, script) = open_link(bytes, version, Some(keys), limits)?;
    cdiff::plan(&script, &*layer)?.commit(layer)?;
    check_link_info(&read_info(&*layer, info_name)?.header, next)?;
    Ok(next)
}

/// Parses and verifies one cdiff of a chain and checks that it turns `version` into the next
/// version. Returns that version and the script.
pub(crate) fn open_link(
    bytes: &[u8],
    version: u32,
    keys: Option<&KeySet>,
    limits: &Limits,
) -> Result<(u32, Script), Error> {
    let cdiff = Cdiff::parse(bytes, limits.max_script_size)?;
    if let Some(keys) = keys {
        cdiff.verify(&keys.cdiff)?;
    }
    if u64::from(cdiff.version) != u64::from(version) + 1 {
        return Err(CdiffError::Header(format!(
            "cdiff produces version {}, but the database is at version {version} (needs {})",
            cdiff.version,
            u64::from(version) + 1
        ))
        .into());
    }
    Ok((cdiff.version, Script::parse(&cdiff.script)?))
}

/// Checks the `.info` header a link leaves against the version the link is labelled with.
pub(crate) fn check_link_info(header: &Header, version: u32) -> Result<(), Error> {
    if header.version != version {
        return Err(CdiffError::Header(format!(
            "cdiff is labelled version {version} but its .info says {}",
            header.version
        ))
        .into());
    }
    Ok(())
}

/// A store seen through pending changes: what a chain has done so far, not yet committed.
struct Layered<'a> {
    base: &'a dyn FileStore,
    changes: BTreeMap<String, Option<Vec<u8>>>,
}

impl FileStore for Layered<'_> {
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self.changes.get(name) {
            Some(v) => Ok(v.clone()),
            None => self.base.read(name),
        }
    }
    fn read_cow(&self, name: &str) -> io::Result<Option<Cow<'_, [u8]>>> {
        match self.changes.get(name) {
            Some(v) => Ok(v.as_deref().map(Cow::Borrowed)),
            None => self.base.read_cow(name),
        }
    }
    fn write(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.changes.insert(name.to_owned(), Some(data.to_vec()));
        Ok(())
    }
    fn write_owned(&mut self, name: &str, data: Vec<u8>) -> io::Result<()> {
        self.changes.insert(name.to_owned(), Some(data));
        Ok(())
    }
    fn remove(&mut self, name: &str) -> io::Result<bool> {
        let existed = self.read_cow(name)?.is_some();
        self.changes.insert(name.to_owned(), None);
        Ok(existed)
    }
    fn names(&self) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .base
            .names()?
            .into_iter()
            .filter(|n| !self.changes.contains_key(n))
            .collect();
        names.extend(
            self.changes
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(n, _)| n.clone()),
        );
        names.sort();
        Ok(names)
    }
}

/// Checks a patched database: `.info` DSIG under the key set, every listed file present with
/// the listed size and SHA-256, every database file listed. Files that neither the pending
/// changes nor the new `.info` touch keep the check they passed before (see [`apply_cdiff`]).
fn check_patched(
    layer: &Layered<'_>,
    old_info: &Info,
    info_name: &str,
    keys: &KeySet,
) -> Result<Header, Error> {
    let io = |name: &str, e| Error::io(format!("reading patched {name}"), e);
    let info = read_info(layer, info_name)?;
    info.verify(&keys.info)?;
    for entry in &info.entries {
        let untouched = !layer.changes.contains_key(&entry.name)
            && old_info
                .entry(&entry.name)
                .is_some_and(|old| old.size == entry.size && old.sha256 == entry.sha256);
        if untouched {
            continue;
        }
        let data = layer
            .read_cow(&entry.name)
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
    for name in layer.names().map_err(|e| io("directory", e))? {
        if name != "COPYING" && name != info_name && info.entry(&name).is_none() {
            return Err(Error::member(&name, MemberError::NotListed));
        }
    }
    Ok(info.header)
}
