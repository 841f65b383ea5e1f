//! `vdb db …`: inspect, verify, unpack, build, diff and patch ClamAV databases.

use std::collections::BTreeMap;
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use vdb_format::build::{self, ENGINE_FLEVEL_146};
use vdb_format::cdiff::{self, Cdiff, Script};
use vdb_format::container::{self, Kind, Limits};
use vdb_format::{BuildSpec, DirStore, Header, KeySet, patch, sigenc, write_atomic};
use vdb_sign::PrivateKeySet;

use crate::exit;

/// `vdb db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Show a database's header fields (like `sigtool --info`) and the verification verdict.
    Info {
        /// A .cvd, .cld, .cud or .cdiff file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Which keys verify.
        #[command(flatten)]
        trust: Trust,
    },
    /// Verify databases completely; exit 0 when all verify, 1 otherwise.
    Verify {
        /// .cvd, .cld, .cud or .cdiff files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Which keys verify.
        #[command(flatten)]
        trust: Trust,
    },
    /// Verify a container and extract its members into DIR (created if missing).
    Unpack {
        /// The container.
        file: PathBuf,
        /// Target directory.
        dir: PathBuf,
        /// Which keys verify.
        #[command(flatten)]
        trust: Trust,
    },
    /// Build a container from an unpacked database directory.
    Build(BuildArgs),
    /// Make a cdiff that turns OLD into NEW (containers or directories).
    Diff(DiffArgs),
    /// Apply cdiffs to a base container and write the resulting CLD.
    Apply(ApplyArgs),
    /// Generate a ClamAV-format RSA key set for a private network.
    Keygen {
        /// Where to write the private key set (mode 0600).
        #[arg(short, long)]
        output: PathBuf,
        /// Where to write the public key set (default: OUTPUT with `.pub` appended).
        #[arg(long)]
        public: Option<PathBuf>,
        /// Name of the key set, shown in verification messages.
        #[arg(long, default_value = "private")]
        name: String,
    },
    /// Make a deterministic, realistic large database with a chain of cdiffs (for benchmarks).
    Synth(crate::synth::SynthArgs),
}

/// Which key set verifies.
#[derive(Debug, Clone, Args)]
pub struct Trust {
    /// `official` (ClamAV's built-in keys) or the path of a key set file.
    #[arg(long, value_name = "official|PATH", default_value = "official")]
    pub keys: String,
}

impl Trust {
    /// Loads the key set.
    pub fn load(&self) -> Result<KeySet> {
        load_public(&self.keys)
    }
}

/// Loads `official` or a key set file (public or private).
pub fn load_public(spec: &str) -> Result<KeySet> {
    if spec == "official" {
        return Ok(KeySet::official());
    }
    let text = fs::read_to_string(spec).with_context(|| format!("reading key set {spec}"))?;
    KeySet::from_text(&text).with_context(|| format!("key set {spec}"))
}

fn load_private(path: &Path) -> Result<PrivateKeySet> {
    let text =
        fs::read_to_string(path).with_context(|| format!("reading key set {}", path.display()))?;
    PrivateKeySet::from_text(&text).with_context(|| format!("key set {}", path.display()))
}

/// `vdb db build` arguments.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Directory holding COPYING and the `<db>.*` signature files.
    pub dir: PathBuf,
    /// Output file: `<db>.cvd` (signed) or `<db>.cud` (unsigned). The stem names the database.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Build an unsigned .cud.
    #[arg(long, conflicts_with = "keys", required_unless_present = "keys")]
    pub unsigned: bool,
    /// Private key set to sign a .cvd with (from `vdb db keygen`).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Database version.
    #[arg(long, default_value_t = 1)]
    pub version: u32,
    /// Functionality level written to the header.
    #[arg(long, default_value_t = 81)]
    pub flevel: u32,
    /// Builder name (≤32 characters).
    #[arg(long, default_value = "vdbnet")]
    pub builder: String,
    /// Build time in Unix seconds (default: now, or SOURCE_DATE_EPOCH).
    #[arg(long)]
    pub time: Option<u64>,
}

/// `vdb db diff` arguments.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Old version: a container or a directory.
    pub old: PathBuf,
    /// New version: a container or a directory.
    pub new: PathBuf,
    /// Output: a signed `.cdiff` with --keys, else a plain `.script`.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Private key set that signs the cdiff; its public half also verifies OLD and NEW.
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Database name (default: from the container names).
    #[arg(long)]
    pub name: Option<String>,
}

/// `vdb db apply` arguments.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The base: a .cvd or .cld.
    pub base: PathBuf,
    /// The cdiffs, in order.
    #[arg(required = true)]
    pub cdiffs: Vec<PathBuf>,
    /// The CLD to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Compress the CLD body (freshclam's CompressLocalDatabase).
    #[arg(long)]
    pub compress: bool,
    /// Which keys verify the base and the cdiffs.
    #[command(flatten)]
    pub trust: Trust,
}

/// Runs a `vdb db` subcommand.
pub fn run(cmd: DbCommand) -> Result<ExitCode> {
    match cmd {
        DbCommand::Info { file, json, trust } => info(&file, json, &trust.load()?),
        DbCommand::Verify { files, trust } => verify(&files, &trust.load()?),
        DbCommand::Unpack { file, dir, trust } => unpack(&file, &dir, &trust.load()?),
        DbCommand::Build(args) => build_cmd(&args),
        DbCommand::Diff(args) => diff_cmd(&args),
        DbCommand::Apply(args) => apply_cmd(&args),
        DbCommand::Keygen {
            output,
            public,
            name,
        } => keygen(&output, public.as_deref(), &name),
        DbCommand::Synth(args) => crate::synth::run(&args).map(|()| ExitCode::SUCCESS),
    }
}

/// The kind of a file by its name.
fn kind_of(path: &Path) -> Result<Kind> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    Kind::from_file_name(name)
        .ok_or_else(|| anyhow!("{}: not a .cvd, .cld or .cud file", path.display()))
}

fn is_cdiff(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e == "cdiff" || e == "script")
}

/// The database name of a container or cdiff path: `daily.cvd` → `daily`, `daily-7.cdiff` → `daily`.
pub fn db_name_of(path: &Path) -> Result<String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| anyhow!("{}: no file name", path.display()))?;
    let name = if is_cdiff(path) {
        stem.rsplit_once('-').map_or(stem, |(n, _)| n)
    } else {
        stem
    };
    if name.is_empty() || !vdb_format::is_cdiff_file_name(name) {
        bail!(
            "{}: cannot tell the database name (expected <db>.cvd or <db>-<N>.cdiff)",
            path.display()
        );
    }
    Ok(name.to_owned())
}

fn open(path: &Path) -> Result<BufReader<fs::File>> {
    Ok(BufReader::with_capacity(
        256 << 10,
        fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    ))
}

fn verify_container(path: &Path, keys: &KeySet) -> Result<container::Verified> {
    let kind = kind_of(path)?;
    Ok(container::verify(
        open(path)?,
        kind,
        keys,
        &Limits::default(),
    )?)
}

fn verify_cdiff(path: &Path, keys: &KeySet) -> Result<Cdiff> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let c = Cdiff::parse(&bytes, Limits::default().max_script_size)?;
    check_cdiff(path, &c, keys)?;
    Ok(c)
}

/// Checks a parsed cdiff: its signature, and that its file name carries its version.
fn check_cdiff(path: &Path, c: &Cdiff, keys: &KeySet) -> Result<()> {
    c.verify(&keys.cdiff)?;
    match version_in_name(path) {
        Some(v) if v != c.version => {
            bail!(
                "file name says version {v} but the cdiff header says {}",
                c.version
            )
        }
        _ => Ok(()),
    }
}

/// The version in a cdiff file name: `daily-27001.cdiff` → 27001.
fn version_in_name(path: &Path) -> Option<u32> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.rsplit_once('-'))
        .and_then(|(_, v)| v.parse().ok())
}

fn header_lines(path: &Path, h: &Header, kind: Kind) -> Vec<String> {
    let mut lines = vec![
        format!("File: {}", path.display()),
        format!("Build time: {}", h.display_build_time()),
        format!("Version: {}", h.version),
        format!("Signatures: {}", h.signatures),
        format!("Functionality level: {}", h.flevel),
        format!("Builder: {}", h.builder),
    ];
    if kind == Kind::Cvd {
        lines.push(format!("MD5: {}", h.md5.as_deref().unwrap_or("X")));
        lines.push(format!(
            "Digital signature: {}",
            h.dsig.as_deref().unwrap_or("X")
        ));
    }
    lines
}

fn info(path: &Path, as_json: bool, keys: &KeySet) -> Result<ExitCode> {
    if is_cdiff(path) {
        return cdiff_info(path, as_json, keys);
    }
    let kind = kind_of(path)?;
    let header = container::read_header(open(path)?).with_context(|| path.display().to_string())?;
    let verdict = container::verify(open(path)?, kind, keys, &Limits::default());
    let ok = verdict.is_ok();
    let verdict_text = match (&verdict, kind) {
        (Ok(v), Kind::Cud) if !v.info_signed() => "Verification: Unsigned container".to_owned(),
        (Ok(_), _) => "Verification OK.".to_owned(),
        (Err(e), _) => format!("Verification FAILED: {e}"),
    };
    let unprotected =
        "the human-readable build time and the builder name are not covered by any signature";
    if as_json {
        let v = json!({
            "file": path.display().to_string(),
            "kind": kind.extension(),
            "build_time": header.display_build_time(),
            "version": header.version,
            "signatures": header.signatures,
            "functionality_level": header.flevel,
            "builder": header.builder,
            "md5": header.md5,
            "digital_signature": header.dsig,
            "build_seconds": header.build_secs,
            "keys": keys.name,
            "verified": ok,
            "verdict": verdict_text,
            "error": verdict.as_ref().err().map(ToString::to_string),
            "compressed": verdict.as_ref().ok().map(|v| v.compressed),
            "members": verdict.as_ref().ok().map(|v| v.members.iter().map(|m| json!({
                "name": m.name, "size": m.size, "sha256": sigenc::hex(&m.sha256)
            })).collect::<Vec<_>>()),
            "unprotected_fields": ["build_time", "builder"],
            "note": unprotected,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for line in header_lines(path, &header, kind) {
            println!("{line}");
        }
        println!("{verdict_text}");
        eprintln!("note: {unprotected}");
    }
    Ok(ExitCode::from(if ok { exit::OK } else { exit::FAILED }))
}

fn cdiff_info(path: &Path, as_json: bool, keys: &KeySet) -> Result<ExitCode> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let c = match Cdiff::parse(&bytes, Limits::default().max_script_size) {
        Ok(c) => c,
        Err(e) if as_json => {
            let v = json!({"file": path.display().to_string(), "kind": "cdiff", "verified": false, "error": e.to_string()});
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(ExitCode::from(exit::FAILED));
        }
        Err(e) => {
            println!("File: {}", path.display());
            println!("Verification FAILED: {e}");
            return Ok(ExitCode::from(exit::FAILED));
        }
    };
    let verdict = check_cdiff(path, &c, keys);
    let commands = Script::parse(&c.script).map(|s| s.commands.len());
    if as_json {
        let v = json!({
            "file": path.display().to_string(),
            "kind": "cdiff",
            "version": c.version,
            "script_length": c.script.len(),
            "declared_length": c.declared_len,
            "commands": commands.as_ref().ok(),
            "keys": keys.name,
            "verified": verdict.is_ok(),
            "error": verdict.as_ref().err().map(|e| format!("{e:#}")),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("File: {}", path.display());
        println!("Version: {}", c.version);
        println!(
            "Script length: {} (header says {})",
            c.script.len(),
            c.declared_len
        );
        match &commands {
            Ok(n) => println!("Commands: {n}"),
            Err(e) => println!("Commands: unparseable ({e})"),
        }
        match &verdict {
            Ok(_) => println!("Verification OK."),
            Err(e) => println!("Verification FAILED: {e:#}"),
        }
    }
    Ok(ExitCode::from(if verdict.is_ok() {
        exit::OK
    } else {
        exit::FAILED
    }))
}

fn verify(files: &[PathBuf], keys: &KeySet) -> Result<ExitCode> {
    let mut failed = 0;
    for path in files {
        let result = if is_cdiff(path) {
            verify_cdiff(path, keys).map(|c| format!("cdiff to version {}", c.version))
        } else {
            verify_container(path, keys).map(|v| {
                format!(
                    "{} version {}, {} signatures, {} members{}",
                    v.kind.extension(),
                    v.header.version,
                    v.header.signatures,
                    v.members.len(),
                    if v.info_signed() { "" } else { " (unsigned)" }
                )
            })
        };
        match result {
            Ok(what) => println!("{}: OK ({what})", path.display()),
            Err(e) => {
                failed += 1;
                println!("{}: FAILED: {e:#}", path.display());
            }
        }
    }
    Ok(ExitCode::from(if failed == 0 {
        exit::OK
    } else {
        exit::FAILED
    }))
}

/// A staging directory inside the target that is removed unless committed.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn new(dir: &Path) -> Result<Self> {
        let path = dir.join(format!(".vdb-staging-{}", std::process::id()));
        if path.exists() {
            fs::remove_dir_all(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn unpack(path: &Path, dir: &Path, keys: &KeySet) -> Result<ExitCode> {
    let kind = kind_of(path)?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let staging = Staging::new(dir)?;
    let stage = DirStore::new(&staging.path);
    let verified = container::read(
        open(path)?,
        kind,
        keys,
        &Limits::default(),
        &mut |name, r| {
            // Names were checked by the tar reader; DirStore checks again before joining.
            let target = stage.root().join(name);
            if !vdb_format::is_safe_member_name(name) {
                return Err(std::io::Error::other(format!(
                    "unsafe member name {name:?}"
                )));
            }
            let mut f = fs::File::create(&target)?;
            std::io::copy(r, &mut f)?;
            f.sync_all()
        },
    )
    .with_context(|| {
        format!(
            "{}: verification failed, nothing was unpacked",
            path.display()
        )
    })?;
    for m in &verified.members {
        fs::rename(staging.path.join(&m.name), dir.join(&m.name))
            .with_context(|| format!("moving {} into {}", m.name, dir.display()))?;
    }
    fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    println!(
        "unpacked {} members of {} version {} into {}",
        verified.members.len(),
        path.display(),
        verified.header.version,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn now_secs() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
}

fn build_cmd(args: &BuildArgs) -> Result<ExitCode> {
    let kind = kind_of(&args.output)?;
    let signer = match (&args.keys, kind) {
        (Some(k), Kind::Cvd) => Some(load_private(k)?),
        (None, Kind::Cud) => None,
        (Some(_), Kind::Cud) => bail!("a .cud is unsigned: drop --keys or write a .cvd"),
        (None, Kind::Cvd) => bail!(
            "a .cvd must be signed: pass --keys (from `vdb db keygen`), or write a .cud with --unsigned"
        ),
        (_, Kind::Cld) => bail!("a .cld is built from a patched database by `vdb db apply`"),
    };
    let spec = BuildSpec {
        db_name: db_name_of(&args.output)?,
        kind,
        version: args.version,
        flevel: args.flevel,
        builder: args.builder.clone(),
        build_secs: args.time.unwrap_or_else(now_secs),
        signatures: None,
        engine_flevel: ENGINE_FLEVEL_146,
    };
    let store = DirStore::new(&args.dir);
    let (bytes, header) = build::build(
        &spec,
        &store,
        signer.as_ref().map(|s| s as &dyn vdb_format::Signer),
    )
    .with_context(|| format!("building from {}", args.dir.display()))?;
    write_atomic(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "built {} version {} with {} signatures ({} bytes)",
        args.output.display(),
        header.version,
        header.signatures,
        bytes.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads an unpacked database from a container (verified) or a directory.
fn load_files(path: &Path, keys: &KeySet) -> Result<BTreeMap<String, Vec<u8>>> {
    if path.is_dir() {
        return Ok(build::to_map(&DirStore::new(path))?);
    }
    let kind = kind_of(path)?;
    let (_, files) = container::read_to_map(open(path)?, kind, keys, &Limits::default())
        .with_context(|| format!("{}: verification failed", path.display()))?;
    Ok(files)
}

/// The database name of an unpacked database: the stem of its one `<db>.info`.
fn db_name_in(files: &BTreeMap<String, Vec<u8>>, origin: &Path) -> Result<String> {
    let mut infos = files.keys().filter_map(|n| n.strip_suffix(".info"));
    match (infos.next(), infos.next()) {
        (Some(name), None) => Ok(name.to_owned()),
        (None, _) => bail!("{}: no <db>.info manifest", origin.display()),
        (Some(_), Some(_)) => bail!("{}: more than one .info manifest", origin.display()),
    }
}

fn diff_cmd(args: &DiffArgs) -> Result<ExitCode> {
    let signer = args.keys.as_deref().map(load_private).transpose()?;
    let trust = signer
        .as_ref()
        .map_or_else(KeySet::official, PrivateKeySet::public);
    let old = load_files(&args.old, &trust)?;
    let new = load_files(&args.new, &trust)?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => db_name_in(&new, &args.new)?,
    };
    let version = patch::current_header(&new, &name)
        .with_context(|| format!("reading {name}.info of the new version"))?
        .version;
    let old_version = patch::current_header(&old, &name)
        .with_context(|| format!("reading {name}.info of the old version"))?
        .version;
    // A cdiff always moves one version forward (freshclam fetches <db>-<N>.cdiff for each N).
    if u64::from(old_version) + 1 != u64::from(version) {
        bail!(
            "a cdiff turns version N-1 into N, but OLD is version {old_version} and NEW is version {version}"
        );
    }
    if let Some(v) = version_in_name(&args.output).filter(|&v| v != version) {
        bail!(
            "{}: the name says version {v} but the cdiff produces version {version}; name it {name}-{version}.{}",
            args.output.display(),
            args.output
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("cdiff")
        );
    }
    let script = cdiff::diff(&old, &new)?;
    let text = script.to_text();
    // Self-check: the script must turn OLD into exactly NEW.
    let mut check = old.clone();
    cdiff::apply(&Script::parse(text.as_bytes())?, &mut check)?;
    if check != new {
        bail!("internal error: the generated script does not reproduce the new version");
    }
    let bytes = match &signer {
        Some(s) => Cdiff::write(version, text.as_bytes(), |d| {
            vdb_format::Signer::sign_cdiff(s, d)
        })?,
        None => text.clone().into_bytes(),
    };
    write_atomic(&args.output, &bytes)
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "wrote {} ({} commands, {} bytes, {}) producing version {version}",
        args.output.display(),
        script.commands.len(),
        bytes.len(),
        if signer.is_some() {
            "signed"
        } else {
            "unsigned script"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn apply_cmd(args: &ApplyArgs) -> Result<ExitCode> {
    let keys = args.trust.load()?;
    if kind_of(&args.base)? == Kind::Cud {
        bail!(
            "{}: a .cud has no signed manifest to patch; use a .cvd or .cld",
            args.base.display()
        );
    }
    let cdiffs = args
        .cdiffs
        .iter()
        .map(|c| fs::read(c).with_context(|| format!("reading {}", c.display())))
        .collect::<Result<Vec<_>>>()?;
    let links: Vec<&[u8]> = cdiffs.iter().map(Vec::as_slice).collect();
    // Streamed: the base is read once, touched files flow through the chain's edits into a
    // spool beside the output, and the CLD is written atomically; memory does not grow with
    // the database.
    let options = patch::CldOptions {
        compress: args.compress,
        spool_dir: None,
    };
    let header = patch::apply_chain_to_cld(
        &args.base,
        &links,
        &keys,
        &Limits::default(),
        &args.output,
        &options,
    )
    .map_err(|e| match e {
        patch::ApplyError::Chain(e) => {
            let path = args.cdiffs[e.index].display().to_string();
            anyhow::Error::new(e.error).context(format!("applying {path}"))
        }
        patch::ApplyError::Base(e) => {
            anyhow::Error::new(e).context(format!("{}: verification failed", args.base.display()))
        }
        patch::ApplyError::Output(e) => anyhow::Error::new(e),
    })?;
    eprintln!(
        "applied {} cdiff(s) → version {}",
        args.cdiffs.len(),
        header.version
    );
    let len = fs::metadata(&args.output)?.len();
    println!(
        "wrote {} version {} ({} signatures, {} bytes)",
        args.output.display(),
        header.version,
        header.signatures,
        len
    );
    Ok(ExitCode::SUCCESS)
}

fn keygen(output: &Path, public: Option<&Path>, name: &str) -> Result<ExitCode> {
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("--name must be a single word");
    }
    let keys = PrivateKeySet::generate(name, &mut rand_core::OsRng)?;
    let public_path = public.map_or_else(
        || PathBuf::from(format!("{}.pub", output.display())),
        Path::to_path_buf,
    );
    write_private(output, keys.to_text().as_bytes())?;
    write_atomic(&public_path, keys.public().to_text().as_bytes())
        .with_context(|| format!("writing {}", public_path.display()))?;
    println!("private key set: {}", output.display());
    println!("public key set:  {}", public_path.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes a secret file with mode 0600, atomically.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    vdb_format::write_private(path, data).with_context(|| format!("writing {}", path.display()))
}
