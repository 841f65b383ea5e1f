//! The verification gate: nothing unverified goes out.
//!
//! A release statement is checked in this order, and the first failure is the answer:
//! publisher key and signature, statement shape, `issued_at` window, file names, sizes, every
//! file present with the stated size and SHA-256, version rules against the held version,
//! native ClamAV verification of containers (key set of the database, header version and
//! name), and cdiffs: signature, then applied to the held version and compared with the new
//! container's content.

use std::collections::BTreeMap;

use vdb_format::container::{self, Kind, Limits};
use vdb_format::{KeySet, patch};
use vdb_proto::{FileRef, PublicKey, ReleaseStatement, Signed, VerifyError};

use crate::config::{Config, DbConfig};
use crate::objects::ObjectStore;

/// Plain signature file extensions a database may publish as-is when allowed.
pub const PLAIN_EXTENSIONS: &[&str] = &[
    "ndb", "ndu", "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu", "ldb", "ldu", "cdb",
    "cbc", "cfg", "crb", "fp", "sfp", "ftm", "gdb", "idb", "ign", "ign2", "imp", "pdb", "wdb",
    "yar", "yara", "pwdb",
];

/// A refusal: HTTP status, stable code and the exact reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status to answer with.
    pub status: u16,
    /// Machine code (`bad_signature`, `older_version`, …).
    pub code: &'static str,
    /// The reason, for people.
    pub message: String,
}

impl Refusal {
    /// A refusal.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// What the master holds of one database: the release that set its current version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Current version.
    pub version: u32,
    /// The release id.
    pub release: String,
    /// That release's files.
    pub files: Vec<FileRef>,
}

/// Who may publish what, and how each database is checked.
#[derive(Debug, Clone)]
pub struct Policy {
    publishers: Vec<(PublicKey, Vec<String>)>,
    dbs: BTreeMap<String, (KeySet, DbConfig)>,
    official: KeySet,
    max_file_size: u64,
    window: i64,
}

impl Policy {
    /// Builds the policy from the config (reads key set files).
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let mut dbs = BTreeMap::new();
        for (name, db) in &config.databases {
            let keys = match &db.keyset_file {
                Some(p) => {
                    let text = std::fs::read_to_string(p).map_err(|e| {
                        anyhow::anyhow!("reading key set {} for database {name}: {e}", p.display())
                    })?;
                    KeySet::from_text(&text).map_err(|e| {
                        anyhow::anyhow!("key set {} for database {name}: {e}", p.display())
                    })?
                }
                None => KeySet::official(),
            };
            dbs.insert(name.clone(), (keys, db.clone()));
        }
        Ok(Self {
            publishers: config
                .publishers
                .iter()
                .map(|p| (p.key, p.databases.clone()))
                .collect(),
            dbs,
            official: KeySet::official(),
            max_file_size: config.max_file_size,
            window: config.statement_window_secs,
        })
    }

    /// Adds a publisher (the upstream follower's own key).
    pub fn allow(&mut self, key: PublicKey, databases: Vec<String>) {
        self.publishers.push((key, databases));
    }

    /// The largest allowed file.
    pub fn max_file_size(&self) -> u64 {
        self.max_file_size
    }

    /// Whether `key` is a publisher at all.
    pub fn is_publisher(&self, key: &PublicKey) -> bool {
        self.publishers.iter().any(|(k, _)| k == key)
    }

    fn may_publish(&self, key: &PublicKey, db: &str) -> bool {
        self.publishers
            .iter()
            .any(|(k, dbs)| k == key && dbs.iter().any(|d| d == "*" || d == db))
    }

    fn db(&self, db: &str) -> (&KeySet, DbConfig) {
        match self.dbs.get(db) {
            Some((k, c)) => (k, c.clone()),
            None => (&self.official, DbConfig::default()),
        }
    }
}

/// Whether two releases consist of the same files (names, sizes and hashes), in any order.
pub fn same_files(a: &[FileRef], b: &[FileRef]) -> bool {
    let mut a: Vec<&FileRef> = a.iter().collect();
    let mut b: Vec<&FileRef> = b.iter().collect();
    a.sort();
    b.sort();
    a == b
}

/// The version a cdiff file name carries for `db` (`<db>-<N>.cdiff`, also `….cdiff.sign`).
pub fn cdiff_version(db: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(db)?.strip_prefix('-')?;
    let n = rest
        .strip_suffix(".cdiff")
        .or_else(|| rest.strip_suffix(".cdiff.sign"))?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

enum FileClass {
    Container(Kind),
    Cdiff(u32),
    Sign,
    Plain,
}

fn classify(db: &str, version: u32, name: &str, cfg: &DbConfig) -> Result<FileClass, Refusal> {
    let belongs = name
        .strip_prefix(db)
        .is_some_and(|r| r.starts_with('.') || r.starts_with('-'));
    if !belongs {
        return Err(Refusal::new(
            400,
            "unsafe_name",
            format!(
                "file {name:?} does not belong to database {db:?} (names start with \"{db}.\" or \"{db}-\")"
            ),
        ));
    }
    if name.ends_with(".sign") {
        if cfg.refuse_sign_files {
            return Err(Refusal::new(
                400,
                "file_not_allowed",
                format!("file {name:?}: .sign files are not accepted for database {db:?}"),
            ));
        }
        return Ok(FileClass::Sign);
    }
    if name.ends_with(".cdiff") {
        return cdiff_version(db, name)
            .map(FileClass::Cdiff)
            .ok_or_else(|| {
                Refusal::new(
                    400,
                    "unsafe_name",
                    format!("cdiff {name:?} must be named \"{db}-<version>.cdiff\""),
                )
            });
    }
    if let Some(kind) = Kind::from_file_name(name) {
        let base = &name[..name.len() - 4];
        if base != db && base != format!("{db}-{version}") {
            return Err(Refusal::new(
                400,
                "unsafe_name",
                format!(
                    "container {name:?} must be named \"{db}.{ext}\" or \"{db}-{version}.{ext}\"",
                    ext = kind.extension()
                ),
            ));
        }
        return Ok(FileClass::Container(kind));
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    if PLAIN_EXTENSIONS.contains(&ext) {
        if cfg.allow_plain {
            return Ok(FileClass::Plain);
        }
        return Err(Refusal::new(
            400,
            "file_not_allowed",
            format!(
                "plain signature file {name:?} is not allowed for database {db:?} (set allow_plain)"
            ),
        ));
    }
    Err(Refusal::new(
        400,
        "file_not_allowed",
        format!("file {name:?} is not a kind of file a release may hold"),
    ))
}

/// Checks the signature, the publisher's right to `db`, and the statement's shape; returns the
/// statement. Nothing in the payload is trusted before the signature checked.
pub fn check_signature(
    policy: &Policy,
    env: &Signed<ReleaseStatement>,
) -> Result<ReleaseStatement, Refusal> {
    let signer = env.signer();
    if !policy.is_publisher(&signer) {
        return Err(Refusal::new(
            403,
            "unknown_key",
            format!("{signer} is not a publisher key of this master"),
        ));
    }
    let st = env.verify(&[signer]).map_err(|e| match e {
        VerifyError::BadSignature(_) => Refusal::new(403, "bad_signature", e.to_string()),
        _ => Refusal::new(400, "bad_statement", e.to_string()),
    })?;
    if !policy.may_publish(&signer, &st.db) {
        return Err(Refusal::new(
            403,
            "key_not_allowed",
            format!("{signer} may not publish database {:?}", st.db),
        ));
    }
    st.check().map_err(|e| match e {
        vdb_proto::ReleaseError::UnsafeName(_) => Refusal::new(400, "unsafe_name", e.to_string()),
        _ => Refusal::new(400, "bad_statement", e.to_string()),
    })?;
    Ok(st)
}

/// The full gate for a statement whose signature [`check_signature`] accepted. `check_window`
/// is false for releases replicated from a peer (their age is expected).
pub fn check_release(
    policy: &Policy,
    held: Option<&Held>,
    objects: &ObjectStore,
    st: &ReleaseStatement,
    now: i64,
    check_window: bool,
) -> Result<(), Refusal> {
    if check_window && (st.issued_at - now).abs() > policy.window {
        return Err(Refusal::new(
            409,
            "replay",
            format!(
                "statement issued at {} is outside the accepted window of ±{} s around now ({now}): a replay or a wrong clock; sign a fresh statement",
                st.issued_at, policy.window
            ),
        ));
    }
    let (keys, cfg) = policy.db(&st.db);
    let mut classes = Vec::new();
    for f in &st.files {
        if f.size > policy.max_file_size {
            return Err(Refusal::new(
                413,
                "too_large",
                format!(
                    "file {:?} is {} bytes, over the limit of {} bytes",
                    f.name, f.size, policy.max_file_size
                ),
            ));
        }
        classes.push(classify(&st.db, st.version, &f.name, &cfg)?);
    }
    if let Some(h) = held {
        if st.version < h.version {
            return Err(Refusal::new(
                409,
                "older_version",
                format!(
                    "{} version {} is older than the current version {}",
                    st.db, st.version, h.version
                ),
            ));
        }
        if st.version == h.version {
            return Err(Refusal::new(
                409,
                "equivocation",
                format!(
                    "{} version {} is already published with other content (release {}); a new build needs a higher version",
                    st.db, st.version, h.release
                ),
            ));
        }
    }
    // Every file present, with the stated size and hash.
    let mut bytes = BTreeMap::new();
    for f in &st.files {
        match objects.size(&f.sha256) {
            None => {
                return Err(Refusal::new(
                    400,
                    "missing_object",
                    format!("file {:?} ({}) was not uploaded", f.name, f.sha256),
                ));
            }
            Some(s) if s != f.size => {
                return Err(Refusal::new(
                    400,
                    "size_mismatch",
                    format!(
                        "file {:?} is {s} bytes, the statement says {}",
                        f.name, f.size
                    ),
                ));
            }
            Some(_) => {}
        }
        let data = objects
            .read(&f.sha256, policy.max_file_size)
            .map_err(|e| Refusal::new(400, "hash_mismatch", format!("file {:?}: {e}", f.name)))?;
        bytes.insert(f.name.clone(), data);
    }
    let limits = Limits::default();
    let mut new_content = None;
    let mut cdiffs = BTreeMap::new();
    for (f, class) in st.files.iter().zip(&classes) {
        match class {
            FileClass::Container(kind) => {
                if new_content.is_some() {
                    return Err(Refusal::new(
                        400,
                        "bad_statement",
                        "a release holds at most one CVD/CLD/CUD",
                    ));
                }
                let (v, map) = container::read_to_map(&bytes[&f.name][..], *kind, keys, &limits)
                    .map_err(|e| {
                        Refusal::new(
                            422,
                            "bad_container",
                            format!("{}: {e} (verified with key set {:?})", f.name, keys.name),
                        )
                    })?;
                if v.header.version != st.version {
                    return Err(Refusal::new(
                        422,
                        "version_mismatch",
                        format!(
                            "{} has header version {}, the statement says {}",
                            f.name, v.header.version, st.version
                        ),
                    ));
                }
                if let Some(b) = v.header.build_secs
                    && i64::try_from(b).ok() != Some(st.built_at)
                {
                    return Err(Refusal::new(
                        422,
                        "built_at_mismatch",
                        format!(
                            "{} was built at {b}, the statement says {}",
                            f.name, st.built_at
                        ),
                    ));
                }
                new_content = Some((f.name.clone(), map));
            }
            FileClass::Cdiff(n) => {
                cdiffs.insert(*n, f.name.clone());
            }
            FileClass::Sign | FileClass::Plain => {}
        }
    }
    if new_content.is_none()
        && let Some(h) = held
        && h.files
            .iter()
            .any(|f| Kind::from_file_name(&f.name).is_some())
    {
        return Err(Refusal::new(
            422,
            "missing_container",
            format!(
                "{} is distributed as a CVD/CLD/CUD: a release is the complete set of files of a version and must hold the new container",
                st.db
            ),
        ));
    }
    if !cdiffs.is_empty() {
        let Some((new_name, new_map)) = &new_content else {
            return Err(Refusal::new(
                422,
                "cdiff_without_container",
                "a release with cdiffs must also hold the new CVD they lead to",
            ));
        };
        let Some(h) = held else {
            return Err(Refusal::new(
                422,
                "cdiff_without_base",
                format!(
                    "no version of {} is held, so its cdiffs cannot be checked; publish the CVD alone first",
                    st.db
                ),
            ));
        };
        let want: Vec<u32> = (h.version + 1..=st.version).collect();
        let got: Vec<u32> = cdiffs.keys().copied().collect();
        if got != want {
            return Err(Refusal::new(
                422,
                "cdiff_chain",
                format!(
                    "the cdiffs must lead from the held version {} to {} (versions {want:?}), got {got:?}",
                    h.version, st.version
                ),
            ));
        }
        let base_ref = h
            .files
            .iter()
            .find(|f| Kind::from_file_name(&f.name).is_some())
            .ok_or_else(|| {
                Refusal::new(
                    422,
                    "cdiff_without_base",
                    format!(
                        "the held release of {} has no container to apply cdiffs to",
                        st.db
                    ),
                )
            })?;
        let base_kind = Kind::from_file_name(&base_ref.name).unwrap_or(Kind::Cvd);
        let base = objects
            .read(&base_ref.sha256, policy.max_file_size)
            .map_err(|e| {
                Refusal::new(
                    500,
                    "internal",
                    format!("reading the held {}: {e}", base_ref.name),
                )
            })?;
        let (_, mut files) =
            container::read_to_map(&base[..], base_kind, keys, &limits).map_err(|e| {
                Refusal::new(
                    500,
                    "internal",
                    format!("the held {} no longer verifies: {e}", base_ref.name),
                )
            })?;
        for name in cdiffs.values() {
            patch::apply_cdiff(&mut files, &st.db, &bytes[name], keys, &limits)
                .map_err(|e| Refusal::new(422, "bad_cdiff", format!("{name}: {e}")))?;
        }
        if &files != new_map {
            let differ: Vec<&String> = files
                .keys()
                .chain(new_map.keys())
                .filter(|k| files.get(*k) != new_map.get(*k))
                .collect();
            return Err(Refusal::new(
                422,
                "cdiff_mismatch",
                format!(
                    "applying the cdiffs to version {} does not give the content of {new_name} (differs in {differ:?})",
                    h.version
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdiff_names() {
        assert_eq!(cdiff_version("daily", "daily-27543.cdiff"), Some(27543));
        assert_eq!(cdiff_version("daily", "daily-2.cdiff.sign"), Some(2));
        assert_eq!(cdiff_version("daily", "daily-.cdiff"), None);
        assert_eq!(cdiff_version("daily", "main-2.cdiff"), None);
        assert_eq!(cdiff_version("daily", "daily-x.cdiff"), None);
    }
}
