//! Building containers: CVD/CUD the way `sigtool --build` does, CLD the way freshclam's
//! `buildcld` does (spec §1.2, §1.6, §5).

use std::collections::BTreeMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::container::Kind;
use crate::error::Error;
use crate::header::{HEADER_LEN, Header, format_build_time};
use crate::info::{Info, InfoEntry};
use crate::names::{SIGTOOL_EXT_ORDER, is_safe_member_name};
use crate::segment::SegmentedGz;
use crate::sigenc::hex;
use crate::store::FileStore;
use crate::tar;

/// Produces ClamAV signature strings with a private key set. Implemented outside this crate
/// (`vdb-sign`), so that verifying code never links signing code.
pub trait Signer {
    /// The legacy CVD header signature over a body MD5 (whose first byte is never 0).
    fn sign_md5(&self, md5: &[u8; 16]) -> Result<String, Error>;
    /// The `.info` DSIG over the SHA-256 of the manifest's unsigned lines.
    fn sign_info(&self, digest: &[u8; 32]) -> Result<String, Error>;
    /// The cdiff trailer over the SHA-256 of header and gzip stream.
    fn sign_cdiff(&self, digest: &[u8; 32]) -> Result<String, Error>;
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// Database name (`daily`): members are `<db>.<ext>`.
    pub db_name: String,
    /// CVD (signed) or CUD (unsigned).
    pub kind: Kind,
    /// Version.
    pub version: u32,
    /// Functionality level written to the header.
    pub flevel: u32,
    /// Builder name (≤32 characters, no `:`).
    pub builder: String,
    /// Build time, Unix seconds.
    pub build_secs: u64,
    /// Signature count; `None` counts them like sigtool (see [`count_signatures`]).
    pub signatures: Option<u32>,
    /// Engine functionality level used when counting (sigtool uses its own: 216 in 1.4.6).
    pub engine_flevel: u32,
}

/// The engine functionality level of Debian's ClamAV 1.4.6.
pub const ENGINE_FLEVEL_146: u32 = 216;

/// Orders and validates the members of an unpacked database the way sigtool packs them:
/// `COPYING`, then `<db>.<ext>` for the known extensions in sigtool order, then other
/// `<db>.*` files (e.g. bytecode `*.cbc`) sorted. Any `<db>.info` is ignored (regenerated).
pub(crate) fn member_order(db: &str, names: &[String]) -> Result<Vec<String>, Error> {
    if !names.iter().any(|n| n == "COPYING") {
        return Err(Error::Build(
            "COPYING is missing: ClamAV containers start with it".into(),
        ));
    }
    let mut known = Vec::new();
    let mut other = Vec::new();
    let prefix = format!("{db}.");
    for name in names {
        if name == "COPYING" || *name == format!("{db}.info") {
            continue;
        }
        if !is_safe_member_name(name) {
            return Err(Error::Build(format!("unsafe file name {name:?}")));
        }
        match name.strip_prefix(&prefix) {
            Some(ext) if SIGTOOL_EXT_ORDER.contains(&ext) => known.push(name.clone()),
            Some(_) => other.push(name.clone()),
            None if db == "bytecode" && name.ends_with(".cbc") => other.push(name.clone()),
            None => {
                return Err(Error::Build(format!(
                    "{name} does not belong to database {db} (expected {db}.<ext>)"
                )));
            }
        }
    }
    known.sort_by_key(|n| {
        let ext = &n[prefix.len()..];
        SIGTOOL_EXT_ORDER.iter().position(|e| *e == ext)
    });
    other.sort();
    Ok(std::iter::once("COPYING".to_owned())
        .chain(known)
        .chain(other)
        .collect())
}

/// Builds a CVD (with `signer`) or an unsigned CUD from the files of `store`.
/// Returns the whole container and its header. When the body MD5 starts with 0x00 (which
/// ClamAV can never verify) a CVD is rebuilt one second later.
pub fn build(
    spec: &BuildSpec,
    store: &dyn FileStore,
    signer: Option<&dyn Signer>,
) -> Result<(Vec<u8>, Header), Error> {
    if spec.kind == Kind::Cvd && signer.is_none() {
        return Err(Error::Build(
            "a CVD needs a signing key set (or build a .cud unsigned)".into(),
        ));
    }
    if spec.kind == Kind::Cld {
        return Err(Error::Build("CLDs are built with build_cld".into()));
    }
    let io = |name: &str, e| Error::io(format!("reading {name}"), e);
    let names = store.names().map_err(|e| io("the database directory", e))?;
    let order = member_order(&spec.db_name, &names)?;
    let mut entries = Vec::new();
    let mut signatures = 0u32;
    for name in order.iter().skip(1) {
        let data = store
            .read_cow(name)
            .map_err(|e| io(name, e))?
            .unwrap_or_default();
        signatures = signatures.saturating_add(count_signatures(name, &data, spec.engine_flevel));
        entries.push(InfoEntry {
            name: name.clone(),
            size: data.len() as u64,
            sha256: Sha256::digest(&data).into(),
        });
    }
    let mut build_secs = spec.build_secs;
    for _ in 0..64 {
        let mut header = Header {
            build_time: format_build_time(build_secs),
            version: spec.version,
            signatures: spec.signatures.unwrap_or(signatures),
            flevel: spec.flevel,
            md5: None,
            dsig: None,
            builder: spec.builder.clone(),
            build_secs: Some(build_secs),
        };
        header.validate()?;
        let mut info = Info::unsigned_text(&header, &entries);
        if let Some(signer) = signer {
            let digest: [u8; 32] = Sha256::digest(info.as_bytes()).into();
            info.push_str(&format!("DSIG:{}\n", signer.sign_info(&digest)?));
        }
        let mut out = vec![b' '; HEADER_LEN];
        // Segmented gzip (see `segment`): one ordinary gzip stream for ClamAV, whose
        // segments a mirror can re-create from the previous release plus its cdiff.
        let mut gz =
            SegmentedGz::new(&mut out).map_err(|e| Error::io("compressing the body", e))?;
        write_members(&mut gz, &spec.db_name, &order, info.as_bytes(), store)?;
        gz.finish()
            .map_err(|e| Error::io("compressing the body", e))?;
        let md5: [u8; 16] = Md5::digest(&out[HEADER_LEN..]).into();
        if spec.kind == Kind::Cvd && md5[0] == 0 {
            build_secs += 1;
            continue;
        }
        header.md5 = Some(hex(&md5));
        if let Some(signer) = signer.filter(|_| spec.kind == Kind::Cvd) {
            header.dsig = Some(signer.sign_md5(&md5)?);
        }
        out[..HEADER_LEN].copy_from_slice(&header.to_bytes()?);
        return Ok((out, header));
    }
    Err(Error::Build(
        "could not get a body MD5 without a leading zero byte".into(),
    ))
}

/// The member order of a CLD body (freshclam's): `COPYING`, `<db>.cfg` if present, then the
/// rest of `names` (sorted) but the `.info`, which [`write_members_with`] writes second.
pub(crate) fn cld_order(db_name: &str, names: &[String]) -> Vec<String> {
    let info_name = format!("{db_name}.info");
    let cfg = format!("{db_name}.cfg");
    let mut order = vec!["COPYING".to_owned()];
    if names.contains(&cfg) {
        order.push(cfg.clone());
    }
    let mut rest: Vec<String> = names
        .iter()
        .filter(|n| *n != "COPYING" && **n != info_name && **n != cfg)
        .cloned()
        .collect();
    rest.sort();
    order.extend(rest);
    order
}

/// Writes the tar members of a container body from `store`: `order`, with `info` as
/// `<db>.info` after the first.
pub(crate) fn write_members(
    w: &mut impl Write,
    db: &str,
    order: &[String],
    info: &[u8],
    store: &dyn FileStore,
) -> Result<(), Error> {
    write_members_with(w, db, order, info, &mut |w, name| {
        let data = store
            .read_cow(name)
            .map_err(|e| Error::io(format!("reading {name}"), e))?
            .ok_or_else(|| Error::Build(format!("{name} vanished while building")))?;
        tar::append(w, name, &data).map_err(|e| Error::io("writing the container", e))
    })
}

/// Writes the tar members of a container body: `member` writes each of `order` (tar header,
/// data, padding), and `info` goes in as `<db>.info` after the first.
pub(crate) fn write_members_with<W: Write>(
    w: &mut W,
    db: &str,
    order: &[String],
    info: &[u8],
    member: &mut dyn FnMut(&mut W, &str) -> Result<(), Error>,
) -> Result<(), Error> {
    let info_name = format!("{db}.info");
    for (i, name) in order.iter().enumerate() {
        member(w, name)?;
        if i == 0 {
            tar::append(w, &info_name, info).map_err(|e| Error::io("writing the container", e))?;
        }
    }
    Ok(())
}

/// Builds a CLD from a patched database directory, as freshclam does: the header is the
/// `<db>.info` header line padded with spaces; members are `COPYING`, `<db>.info`,
/// `<db>.cfg` if present, then every other file (sorted). The body is a plain tar, or gzip
/// (level 9) when `compress`.
pub fn build_cld(
    db_name: &str,
    store: &dyn FileStore,
    compress: bool,
    out: &mut impl Write,
) -> Result<Header, Error> {
    let info_name = format!("{db_name}.info");
    let info_bytes = store
        .read(&info_name)
        .map_err(|e| Error::io(format!("reading {info_name}"), e))?
        .ok_or_else(|| Error::Build(format!("{info_name} is missing")))?;
    let info = Info::parse(&info_bytes, &info_name)?;
    let names = store
        .names()
        .map_err(|e| Error::io("listing the database directory", e))?;
    if !names.iter().any(|n| n == "COPYING") {
        return Err(Error::Build(
            "COPYING is missing: a CLD body must start with it".into(),
        ));
    }
    let order = cld_order(db_name, &names);
    let header = Header {
        md5: None,
        dsig: None,
        ..info.header.clone()
    };
    out.write_all(&header.to_bytes()?)
        .map_err(|e| Error::io("writing the CLD", e))?;
    if compress {
        let mut gz = GzEncoder::new(out, Compression::best());
        write_members(&mut gz, db_name, &order, &info_bytes, store)?;
        gz.finish().map_err(|e| Error::io("writing the CLD", e))?;
    } else {
        write_members(out, db_name, &order, &info_bytes, store)?;
    }
    Ok(header)
}

/// Counts the signatures of one file the way sigtool's loader does, as far as it can be told
/// from the text: one per non-empty, non-comment line of a signature file, skipping `.ndb`
/// and `.ldb` signatures whose functionality-level range excludes `engine_flevel`; one per
/// bytecode file; none for `COPYING`, `.info`, `.cfg`, `.ign`, `.ign2`.
pub fn count_signatures(name: &str, data: &[u8], engine_flevel: u32) -> u32 {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "info" | "cfg" | "ign" | "ign2" | "" => return 0,
        "cbc" => return 1,
        _ if name == "COPYING" => return 0,
        _ => {}
    }
    let text = String::from_utf8_lossy(data);
    let in_range = |min: Option<&str>, max: Option<&str>| {
        let min = min.and_then(|m| m.trim().parse::<u32>().ok()).unwrap_or(0);
        let max = max
            .and_then(|m| m.trim().parse::<u32>().ok())
            .unwrap_or(u32::MAX);
        (min..=max).contains(&engine_flevel)
    };
    let mut count = 0u32;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let ok = match ext {
            "ndb" | "ndu" => {
                let f: Vec<&str> = line.split(':').collect();
                in_range(f.get(4).copied(), f.get(5).copied())
            }
            "ldb" | "ldu" => line
                .split(';')
                .nth(1)
                .and_then(|tdb| tdb.split(',').find_map(|kv| kv.strip_prefix("Engine:")))
                .is_none_or(|range| {
                    let (min, max) = range.split_once('-').unwrap_or((range, ""));
                    in_range(Some(min), (!max.is_empty()).then_some(max))
                }),
            _ => true,
        };
        count += u32::from(ok);
    }
    count
}

/// Reads an unpacked database into memory (for small databases and tests).
pub fn to_map(store: &dyn FileStore) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let mut map = BTreeMap::new();
    for name in store.names().map_err(|e| Error::io("listing files", e))? {
        let data = store
            .read(&name)
            .map_err(|e| Error::io(format!("reading {name}"), e))?
            .unwrap_or_default();
        map.insert(name, data);
    }
    Ok(map)
}
