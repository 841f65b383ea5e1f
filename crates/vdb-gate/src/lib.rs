//! The verification gate of vdbnet's masters: nothing unverified goes out.
//!
//! A release statement is checked in this order, and the first failure is the answer:
//! publisher key and signature, statement shape, `issued_at` window, file names, sizes, every
//! file present with the stated size and SHA-256, version rules against the held version,
//! native ClamAV verification of containers (key set of the database, header version and
//! name), cdiffs: signature, then applied to the held version and compared with the new
//! container's content, and ClamAV 1.5 `.sign` files: strict format, then every line an engine
//! reads verified (PKCS#7, OpenSSL, as ClamAV does) for the bytes of the file it signs against
//! the configured certificate directory.
//!
//! The checks are pure: they read the release's bytes through [`Objects`] and the held release
//! as a [`Held`], and return a [`Refusal`] with a typed [`ErrorCode`]. The master
//! (`vdb-master`) runs them on its object store and its history; `vdb publish --dry-run` runs
//! the same code on files on disk ([`MemObjects`]), so a publisher sees a master's answer
//! without uploading. No server code and no signing code here.

mod supplement;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vdb_format::clamsign::{Certs, SignFile};
use vdb_format::container::{self, Kind, Limits};
use vdb_format::{KeySet, patch};
use vdb_proto::{ErrorCode, FileRef, PublicKey, ReleaseStatement, Signed, VerifyError};

/// ClamAV's install location of its certificate directory (where it puts the official root
/// `clamav.crt`): the certificates `.sign` files are verified against when none is configured.
pub const DEFAULT_CVD_CERTS_DIR: &str = "/etc/clamav/certs";

/// The largest file a release may hold unless configured otherwise (bytes).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 512 << 20;

/// Plain signature file extensions a database may publish as-is when allowed.
pub const PLAIN_EXTENSIONS: &[&str] = &[
    "ndb", "ndu", "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu", "ldb", "ldu", "cdb",
    "cbc", "cfg", "crb", "fp", "sfp", "ftm", "gdb", "idb", "ign", "ign2", "imp", "pdb", "wdb",
    "yar", "yara", "pwdb",
];

/// A refusal: a typed code (a master's HTTP status follows from it) and the exact reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Machine code (`bad_signature`, `older_version`, …).
    pub code: ErrorCode,
    /// The reason, for people (bounded: never a large input echoed back).
    pub message: String,
}

/// The longest reason a refusal carries (characters).
const MAX_MESSAGE: usize = 1024;

impl Refusal {
    /// A refusal; the message is cut to a bounded length.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.chars().count() > MAX_MESSAGE {
            message = message.chars().take(MAX_MESSAGE).collect::<String>() + "…";
        }
        Self { code, message }
    }

    /// The checker's own failure (disk, database), not the release's.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, e.to_string())
    }

    /// The HTTP status a master answers with.
    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

impl std::error::Error for Refusal {}

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

/// How one database's releases are checked (a master's `[databases.<db>]`, without its key
/// set, which [`Policy::database`] takes loaded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbRules {
    /// Whether plain signature files (`.ndb`, `.hdb`, `.ldb`, …) may be published as-is.
    pub allow_plain: bool,
    /// Whether `.sign` files are refused.
    pub refuse_sign_files: bool,
    /// The container kinds a release may bring, as `<db>.<kind>`: `cvd` (the default), `cld`,
    /// `cud`.
    pub containers: Vec<String>,
}

impl Default for DbRules {
    fn default() -> Self {
        Self {
            allow_plain: false,
            refuse_sign_files: false,
            containers: vec!["cvd".into()],
        }
    }
}

/// Who may publish what, and how each database is checked.
#[derive(Debug, Clone)]
pub struct Policy {
    publishers: Vec<(PublicKey, Vec<String>)>,
    dbs: BTreeMap<String, (KeySet, DbRules)>,
    official: KeySet,
    max_file_size: u64,
    window: u64,
    certs: SignCerts,
}

/// The trust anchors of `.sign` files, or why there are none.
#[derive(Debug, Clone)]
pub enum SignCerts {
    /// Certificates loaded from this directory.
    Loaded(PathBuf, Arc<Certs>),
    /// None: releases with `.sign` files are refused with this reason.
    Missing(String),
}

impl SignCerts {
    /// Loads the certificate directory of `.sign` verification as a master does: a configured
    /// one (`dir`) must load; without one, ClamAV's install location
    /// [`DEFAULT_CVD_CERTS_DIR`] is used if it loads, else `.sign` files are refused with the
    /// reason.
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        match dir {
            Some(dir) => {
                let certs = Certs::load_dir(dir).map_err(|e| {
                    format!(
                        "{e} (a directory of *.pem/*.crt certificates laid out like ClamAV's certs/)"
                    )
                })?;
                Ok(Self::Loaded(dir.to_owned(), Arc::new(certs)))
            }
            None => {
                let default = Path::new(DEFAULT_CVD_CERTS_DIR);
                match Certs::load_dir(default) {
                    Ok(certs) => Ok(Self::Loaded(default.to_owned(), Arc::new(certs))),
                    Err(e) => Ok(Self::Missing(format!(
                        "`cvd_certs_dir` is not set and ClamAV's default {} cannot be used ({e})",
                        default.display()
                    ))),
                }
            }
        }
    }
}

/// Where the gate reads a release's files: content-addressed by SHA-256 (hex).
pub trait Objects {
    /// The size of object `sha256`, or `None` when it is absent.
    fn size(&self, sha256: &str) -> Option<u64>;
    /// The bytes of object `sha256`: at most `limit` of them, and hashing to `sha256`.
    fn read(&self, sha256: &str, limit: u64) -> Result<Vec<u8>, String>;
}

/// Objects in memory, by SHA-256: the files of a release read from disk.
#[derive(Debug, Clone, Default)]
pub struct MemObjects(BTreeMap<String, Vec<u8>>);

impl MemObjects {
    /// Adds `data`; returns its reference under `name`.
    pub fn add(&mut self, name: &str, data: Vec<u8>) -> FileRef {
        let r = FileRef {
            name: name.to_owned(),
            size: data.len() as u64,
            sha256: vdb_proto::sha256_hex(&data),
            segments: None,
        };
        self.0.insert(r.sha256.clone(), data);
        r
    }
}

impl Objects for MemObjects {
    fn size(&self, sha256: &str) -> Option<u64> {
        self.0.get(sha256).map(|d| d.len() as u64)
    }

    fn read(&self, sha256: &str, limit: u64) -> Result<Vec<u8>, String> {
        let data = self
            .0
            .get(sha256)
            .ok_or_else(|| format!("object {sha256} is absent"))?;
        if data.len() as u64 > limit {
            return Err(format!("larger than {limit} bytes"));
        }
        Ok(data.clone())
    }
}

/// What the gate says of a release it accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Things worth an operator's look that do not refuse the release (a `.sign` file with no
    /// line for ClamAV 1.5 or later: clients skip it).
    pub warnings: Vec<String>,
}

impl Policy {
    /// A policy with no publisher and no database settings (every database is checked with
    /// the official key set and [`DbRules::default`]): files up to `max_file_size` bytes,
    /// statements issued within `window` seconds of now, `.sign` files against `certs`.
    pub fn new(max_file_size: u64, window: u64, certs: SignCerts) -> Self {
        Self {
            publishers: Vec::new(),
            dbs: BTreeMap::new(),
            official: KeySet::official(),
            max_file_size,
            window,
            certs,
        }
    }

    /// Checks database `name` with its own ClamAV key set and rules.
    pub fn database(&mut self, name: &str, keys: KeySet, rules: DbRules) {
        self.dbs.insert(name.to_owned(), (keys, rules));
    }

    /// Adds a publisher of `databases` (`*`: every database).
    pub fn allow(&mut self, key: PublicKey, databases: Vec<String>) {
        self.publishers.push((key, databases));
    }

    /// How far a statement's or ticket's `issued_at` may be from now (seconds).
    pub fn window(&self) -> u64 {
        self.window
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

    fn db(&self, db: &str) -> (&KeySet, DbRules) {
        match self.dbs.get(db) {
            Some((k, c)) => (k, c.clone()),
            None => (&self.official, DbRules::default()),
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

/// `N` of `<db>-<N><suffix>`: decimal digits without a leading zero (one name per version).
fn numbered(db: &str, name: &str, suffix: &str) -> Option<u32> {
    let n = name
        .strip_prefix(db)?
        .strip_prefix('-')?
        .strip_suffix(suffix)?;
    if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The version a cdiff file name carries for `db` (`<db>-<N>.cdiff`, also `….cdiff.sign`).
pub fn cdiff_version(db: &str, name: &str) -> Option<u32> {
    numbered(db, name, ".cdiff").or_else(|| numbered(db, name, ".cdiff.sign"))
}

enum FileClass {
    Container(Kind),
    Cdiff(u32),
    Sign,
    Plain,
}

fn unsafe_name(message: String) -> Refusal {
    Refusal::new(ErrorCode::UnsafeName, message)
}

/// Classifies one file of a release of `db` at `version` by its name, which must follow
/// ClamAV's serving layout: `<db>.cvd` (or `.cld`/`.cud` where the database allows them),
/// `<db>-<N>.cdiff` with `N` at most the release's version, `<db>-<version>.cvd.sign` and
/// `<db>-<N>.cdiff.sign`, and `<db>.<ext>` plain signature files where allowed.
fn classify(db: &str, version: u32, name: &str, cfg: &DbRules) -> Result<FileClass, Refusal> {
    let shown = shown(name);
    let Some(rest) = name
        .strip_prefix(db)
        .filter(|r| r.starts_with('.') || r.starts_with('-'))
    else {
        return Err(unsafe_name(format!(
            "file {shown:?} does not belong to database {db:?} (names start with \"{db}.\" or \"{db}-\")"
        )));
    };
    if let Some(n) = numbered(db, name, ".cdiff") {
        if n > version {
            return Err(unsafe_name(format!(
                "cdiff {shown:?} leads to version {n}, past this release's version {version}"
            )));
        }
        return Ok(FileClass::Cdiff(n));
    }
    if name.ends_with(".sign") {
        let signs_own_cvd = numbered(db, name, ".cvd.sign") == Some(version);
        let signs_cdiff = numbered(db, name, ".cdiff.sign").is_some_and(|n| n <= version);
        if !signs_own_cvd && !signs_cdiff {
            return Err(unsafe_name(format!(
                "{shown:?} is not a .sign name of this release: \"{db}-{version}.cvd.sign\" signs its CVD, \"{db}-<N>.cdiff.sign\" its cdiffs"
            )));
        }
        if cfg.refuse_sign_files {
            return Err(Refusal::new(
                ErrorCode::FileNotAllowed,
                format!("file {shown:?}: .sign files are not accepted for database {db:?}"),
            ));
        }
        return Ok(FileClass::Sign);
    }
    if name.ends_with(".cdiff") {
        return Err(unsafe_name(format!(
            "cdiff {shown:?} must be named \"{db}-<version>.cdiff\""
        )));
    }
    if let Some(kind) = Kind::from_file_name(name) {
        let ext = kind.extension();
        if rest != format!(".{ext}") {
            return Err(unsafe_name(format!(
                "a release of {db} brings its container as \"{db}.{ext}\": mirrors serve {db}.{ext} and no other name (got {shown:?})"
            )));
        }
        if !cfg.containers.iter().any(|c| c == ext) {
            return Err(Refusal::new(
                ErrorCode::FileNotAllowed,
                format!(
                    "database {db:?} is not distributed as .{ext} (allowed: {:?}; see `containers`)",
                    cfg.containers
                ),
            ));
        }
        return Ok(FileClass::Container(kind));
    }
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    if PLAIN_EXTENSIONS.contains(&ext) {
        if rest != format!(".{ext}") {
            return Err(unsafe_name(format!(
                "plain signature file {shown:?} must be named \"{db}.{ext}\""
            )));
        }
        if cfg.allow_plain {
            return Ok(FileClass::Plain);
        }
        return Err(Refusal::new(
            ErrorCode::FileNotAllowed,
            format!(
                "plain signature file {shown:?} is not allowed for database {db:?} (set allow_plain)"
            ),
        ));
    }
    Err(Refusal::new(
        ErrorCode::FileNotAllowed,
        format!("file {shown:?} is not a kind of file a release may hold"),
    ))
}

/// The names of a release, all together: each one in the serving layout ([`classify`]),
/// every `.sign` next to the file it signs, and a database name that cannot be read as a
/// numbered file of another database.
fn check_names(policy: &Policy, st: &ReleaseStatement) -> Result<(), Refusal> {
    let db = st.db.as_str();
    if let Some((_, n)) = db.rsplit_once('-')
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(unsafe_name(format!(
            "database name {db:?} ends in -<number>: its files would read as versions of another database"
        )));
    }
    let (_, cfg) = policy.db(db);
    let has = |name: &str| st.files.iter().any(|f| f.name == name);
    let has_container = st
        .files
        .iter()
        .any(|f| Kind::from_file_name(&f.name).is_some());
    for f in &st.files {
        classify(db, st.version, &f.name, &cfg)?;
        if let Some(signed) = f.name.strip_suffix(".sign") {
            let target = if signed.ends_with(".cvd") {
                // A release without any container is refused for that, later.
                if !has_container {
                    continue;
                }
                format!("{db}.cvd")
            } else {
                signed.to_owned()
            };
            if !has(&target) {
                return Err(unsafe_name(format!(
                    "{:?} signs {target:?}, which this release does not bring",
                    shown(&f.name)
                )));
            }
        }
    }
    Ok(())
}

/// Checks that a publisher of this master signed the envelope, and that the signature
/// verifies. Nothing else is looked at: a refusal here is a stranger's, and nothing of it is
/// kept.
pub fn authenticate(policy: &Policy, env: &Signed<ReleaseStatement>) -> Result<(), Refusal> {
    let signer = env.signer();
    if !policy.is_publisher(&signer) {
        return Err(Refusal::new(
            ErrorCode::UnknownKey,
            format!("{signer} is not a publisher key of this master"),
        ));
    }
    env.verify(&[signer]).map(drop).map_err(|e| match e {
        VerifyError::BadSignature(_) => Refusal::new(ErrorCode::BadSignature, e.to_string()),
        _ => Refusal::new(ErrorCode::BadStatement, e.to_string()),
    })
}

/// Checks the publisher's right to the statement's database and the statement's shape, for an
/// envelope [`authenticate`] accepted; returns the statement.
pub fn check_statement(
    policy: &Policy,
    env: &Signed<ReleaseStatement>,
) -> Result<ReleaseStatement, Refusal> {
    let signer = env.signer();
    let st = env
        .verify(&[signer])
        .map_err(|e| Refusal::new(ErrorCode::BadSignature, e.to_string()))?;
    if !policy.may_publish(&signer, &st.db) {
        return Err(Refusal::new(
            ErrorCode::KeyNotAllowed,
            format!("{signer} may not publish database {:?}", shown(&st.db)),
        ));
    }
    check_shape(policy, &st)?;
    Ok(st)
}

/// The statement's shape and names, whoever signed it (part of [`check_statement`]).
pub fn check_shape(policy: &Policy, st: &ReleaseStatement) -> Result<(), Refusal> {
    st.check().map_err(|e| match e {
        vdb_proto::ReleaseError::UnsafeName(_) => {
            Refusal::new(ErrorCode::UnsafeName, e.to_string())
        }
        _ => Refusal::new(ErrorCode::BadStatement, e.to_string()),
    })?;
    check_names(policy, st)
}

/// [`authenticate`] and [`check_statement`]: the checks that need no stored state.
pub fn check_signature(
    policy: &Policy,
    env: &Signed<ReleaseStatement>,
) -> Result<ReleaseStatement, Refusal> {
    authenticate(policy, env)?;
    check_statement(policy, env)
}

/// A name from a request, cut short for a message.
fn shown(name: &str) -> String {
    if name.chars().count() <= 80 {
        name.to_owned()
    } else {
        name.chars().take(80).collect::<String>() + "…"
    }
}

/// The full gate for a statement whose signature [`check_signature`] accepted (or whose shape
/// [`check_shape`] accepted), against `held`, the release that set the database's current
/// version, with every file read from `objects`. `check_window` is false for releases
/// replicated from a peer (their age is expected).
pub fn check_release(
    policy: &Policy,
    held: Option<&Held>,
    objects: &dyn Objects,
    st: &ReleaseStatement,
    now: i64,
    check_window: bool,
) -> Result<Accepted, Refusal> {
    if check_window && st.issued_at.abs_diff(now) > policy.window {
        return Err(Refusal::new(
            ErrorCode::Replay,
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
                ErrorCode::TooLarge,
                format!(
                    "file {:?} is {} bytes, over the limit of {} bytes",
                    f.name, f.size, policy.max_file_size
                ),
            ));
        }
        classes.push(classify(&st.db, st.version, &f.name, &cfg)?);
    }
    let mut supplement = false;
    if let Some(h) = held {
        if st.version < h.version {
            return Err(Refusal::new(
                ErrorCode::OlderVersion,
                format!(
                    "{} version {} is older than the current version {}",
                    st.db, st.version, h.version
                ),
            ));
        }
        if st.version == h.version {
            if !supplement::is_supplement(h, st) {
                return Err(supplement::not_a_supplement(h, st));
            }
            supplement = true;
        }
    }
    let cvd = format!("{}.cvd", st.db);
    if classes.iter().any(|c| matches!(c, FileClass::Container(_)))
        && held.is_some_and(|h| h.files.iter().any(|f| f.name == cvd))
        && !st.files.iter().any(|f| f.name == cvd)
    {
        return Err(Refusal::new(
            ErrorCode::ContainerKind,
            format!(
                "{} is served as {cvd}: a release that replaces it with another kind of container would leave every mirror without {cvd}",
                st.db
            ),
        ));
    }
    // Every file present, with the stated size and hash.
    let mut bytes = BTreeMap::new();
    for f in &st.files {
        match objects.size(&f.sha256) {
            None => {
                return Err(Refusal::new(
                    ErrorCode::MissingObject,
                    format!("file {:?} ({}) was not uploaded", f.name, f.sha256),
                ));
            }
            Some(s) if s != f.size => {
                return Err(Refusal::new(
                    ErrorCode::SizeMismatch,
                    format!(
                        "file {:?} is {s} bytes, the statement says {}",
                        f.name, f.size
                    ),
                ));
            }
            Some(_) => {}
        }
        let data = objects.read(&f.sha256, policy.max_file_size).map_err(|e| {
            Refusal::new(ErrorCode::HashMismatch, format!("file {:?}: {e}", f.name))
        })?;
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
                        ErrorCode::BadStatement,
                        "a release holds at most one CVD/CLD/CUD",
                    ));
                }
                let (v, map) = container::read_to_map(&bytes[&f.name][..], *kind, keys, &limits)
                    .map_err(|e| {
                        Refusal::new(
                            ErrorCode::BadContainer,
                            format!("{}: {e} (verified with key set {:?})", f.name, keys.name),
                        )
                    })?;
                if v.header.version != st.version {
                    return Err(Refusal::new(
                        ErrorCode::VersionMismatch,
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
                        ErrorCode::BuiltAtMismatch,
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
            ErrorCode::MissingContainer,
            format!(
                "{} is distributed as a CVD/CLD/CUD: a release is the complete set of files of a version and must hold the new container",
                st.db
            ),
        ));
    }
    if new_content.is_none()
        && let Some(f) = st.files.iter().find(|f| f.name.ends_with(".cvd.sign"))
    {
        return Err(unsafe_name(format!(
            "{:?} signs {}.cvd, which this release does not bring",
            f.name, st.db
        )));
    }
    if supplement {
        supplement::check_cdiffs(&cdiffs, &bytes, keys, &limits)?;
    } else if !cdiffs.is_empty() {
        let Some((new_name, new_map)) = &new_content else {
            return Err(Refusal::new(
                ErrorCode::CdiffWithoutContainer,
                "a release with cdiffs must also hold the new CVD they lead to",
            ));
        };
        let Some(h) = held else {
            return Err(Refusal::new(
                ErrorCode::CdiffWithoutBase,
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
                ErrorCode::CdiffChain,
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
                    ErrorCode::CdiffWithoutBase,
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
                    ErrorCode::Internal,
                    format!("reading the held {}: {e}", base_ref.name),
                )
            })?;
        let (_, mut files) =
            container::read_to_map(&base[..], base_kind, keys, &limits).map_err(|e| {
                Refusal::new(
                    ErrorCode::Internal,
                    format!("the held {} no longer verifies: {e}", base_ref.name),
                )
            })?;
        for name in cdiffs.values() {
            patch::apply_cdiff(&mut files, &st.db, &bytes[name], keys, &limits)
                .map_err(|e| Refusal::new(ErrorCode::BadCdiff, format!("{name}: {e}")))?;
        }
        if &files != new_map {
            let differ: Vec<&String> = files
                .keys()
                .chain(new_map.keys())
                .filter(|k| files.get(*k) != new_map.get(*k))
                .collect();
            return Err(Refusal::new(
                ErrorCode::CdiffMismatch,
                format!(
                    "applying the cdiffs to version {} does not give the content of {new_name} (differs in {differ:?})",
                    h.version
                ),
            ));
        }
    }
    let mut accepted = Accepted::default();
    for (f, class) in st.files.iter().zip(&classes) {
        if matches!(class, FileClass::Sign) {
            accepted
                .warnings
                .extend(check_sign(policy, &st.db, &f.name, &bytes)?);
        }
    }
    Ok(accepted)
}

/// The file of the release a `.sign` file signs: `<db>.cvd` for `<db>-<V>.cvd.sign` (the
/// names tie `V` to the release's version), `<db>-<N>.cdiff` for `<db>-<N>.cdiff.sign`.
fn signed_file(db: &str, sign: &str) -> Option<String> {
    let signed = sign.strip_suffix(".sign")?;
    if signed.ends_with(".cvd") {
        Some(format!("{db}.cvd"))
    } else {
        Some(signed.to_owned())
    }
}

/// Checks one `.sign` file of a release (spec §3): it parses strictly, and every line a ClamAV
/// engine reads verifies for the bytes of the file it signs against the master's certificate
/// directory; a line that fails would make every 1.5 client reject the file (no fallback), so
/// the release is refused. A file no engine reads a line of is accepted with a warning (the
/// answer): clients skip it and use the legacy signature.
fn check_sign(
    policy: &Policy,
    db: &str,
    name: &str,
    bytes: &BTreeMap<String, Vec<u8>>,
) -> Result<Option<String>, Refusal> {
    let shown_name = shown(name);
    let target = signed_file(db, name)
        .filter(|t| bytes.contains_key(t))
        .ok_or_else(|| {
            unsafe_name(format!(
                "{shown_name:?} signs a file this release does not bring"
            ))
        })?;
    let sign = SignFile::parse(&bytes[name]).map_err(|e| {
        Refusal::new(
            ErrorCode::BadSign,
            format!(
                "{shown_name:?} is not a ClamAV .sign file: {e}; publish the signer's file byte for byte (it starts with \"#clamsign-1.0\")"
            ),
        )
    })?;
    let (dir, certs) = match &policy.certs {
        SignCerts::Loaded(dir, certs) => (dir, certs),
        SignCerts::Missing(why) => {
            return Err(Refusal::new(
                ErrorCode::SignUnverifiable,
                format!(
                    "{shown_name:?} cannot be verified: {why}; set `cvd_certs_dir` in the master config to a directory laid out like ClamAV's certs/ holding the root your clients trust, or publish without .sign files"
                ),
            ));
        }
    };
    let signers = sign
        .verify_for_every_engine(&bytes[&target], certs)
        .map_err(|e| {
            Refusal::new(
                ErrorCode::BadSign,
                // What to do first: OpenSSL's reasons can be long, and a refusal is bounded.
                format!(
                    "{shown_name:?} does not verify for {target:?} against the certificates in {}: ClamAV 1.5 clients would reject {target} (a wrong .sign is worse than none); publish the signer's .sign for exactly these bytes, or leave it out ({e})",
                    dir.display()
                ),
            )
        })?;
    Ok(signers.is_empty().then(|| {
        format!(
            "{shown_name:?} has no line for ClamAV 1.5 or later: accepted, clients skip it and use the legacy signature"
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/clamav"
        );
        std::fs::read(Path::new(dir).join(name)).unwrap()
    }

    /// Objects holding `test-2.cvd` (held) and the release's files; the statement of them.
    fn release(files: &[(&str, Vec<u8>)]) -> (MemObjects, Held, ReleaseStatement) {
        let mut objects = MemObjects::default();
        let held = Held {
            version: 2,
            release: "r2".into(),
            files: vec![objects.add("test.cvd", fixture("test-2.cvd"))],
        };
        let refs = files
            .iter()
            .map(|(n, b)| objects.add(n, b.clone()))
            .collect();
        let st = ReleaseStatement {
            db: "test".into(),
            version: 3,
            built_at: 1_624_408_809,
            issued_at: 0,
            files: refs,
            notes: String::new(),
        };
        (objects, held, st)
    }

    fn judge(files: &[(&str, Vec<u8>)]) -> Result<Accepted, Refusal> {
        let policy = Policy::new(DEFAULT_MAX_FILE_SIZE, 0, SignCerts::Missing("none".into()));
        let (objects, held, st) = release(files);
        check_shape(&policy, &st)?;
        check_release(&policy, Some(&held), &objects, &st, 0, false)
    }

    #[test]
    fn a_release_over_the_held_version_is_checked_on_objects_in_memory() {
        let cvd = fixture("test-3.cvd");
        let cdiff = fixture("test-3.cdiff");
        assert_eq!(
            judge(&[("test.cvd", cvd.clone()), ("test-3.cdiff", cdiff.clone())]),
            Ok(Accepted::default())
        );
        let code = |files: &[(&str, Vec<u8>)]| judge(files).unwrap_err().code;
        let mut trailing = cvd.clone();
        trailing.push(0);
        assert_eq!(code(&[("test.cvd", trailing)]), ErrorCode::BadContainer);
        assert_eq!(code(&[("test-3.cvd", cvd.clone())]), ErrorCode::UnsafeName);
        assert_eq!(
            code(&[("test.cvd", fixture("test-4.cvd"))]),
            ErrorCode::VersionMismatch
        );
        assert_eq!(
            code(&[("test.cvd", cvd), ("test-3.cdiff.sign", b"x".to_vec())]),
            ErrorCode::UnsafeName
        );
    }

    #[test]
    fn a_file_missing_from_the_objects_is_refused() {
        let policy = Policy::new(DEFAULT_MAX_FILE_SIZE, 0, SignCerts::Missing("none".into()));
        let (_, held, st) = release(&[("test.cvd", fixture("test-3.cvd"))]);
        let r = check_release(&policy, Some(&held), &MemObjects::default(), &st, 0, false);
        assert_eq!(r.unwrap_err().code, ErrorCode::MissingObject);
    }

    #[test]
    fn cdiff_names() {
        assert_eq!(cdiff_version("daily", "daily-27543.cdiff"), Some(27543));
        assert_eq!(cdiff_version("daily", "daily-2.cdiff.sign"), Some(2));
        assert_eq!(cdiff_version("daily", "daily-.cdiff"), None);
        assert_eq!(cdiff_version("daily", "main-2.cdiff"), None);
        assert_eq!(cdiff_version("daily", "daily-x.cdiff"), None);
    }
}
