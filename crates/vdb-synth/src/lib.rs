//! A deterministic, realistic daily-like ClamAV database and its signed cdiff chain, for
//! benchmarks, `vdb db synth`, the sample `vdbd dev` publishes (made at build time, so the
//! server links no publisher signing code) and tests.
//!
//! It writes `daily-V.cvd`, then `cdiffs` versions, each made by mutating the previous one the
//! way real daily updates do (a few deletions, a few signatures changed in place, many
//! appended), with the signed `.cdiff` between consecutive versions. The newest version is also
//! written as `daily.cvd` (what freshclam fetches) and, with `cud`, as an unsigned `daily.cud`
//! that stock `sigtool` can check.
//!
//! Everything is a function of the [`Spec`]: content comes from ChaCha20 streams seeded with
//! `seed`, build times are fixed, and the signer's PSS salts come from a seeded generator, so
//! two runs with the same spec give byte-identical files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use vdb_format::build::{self, ENGINE_FLEVEL_146};
use vdb_format::cdiff::{self, Cdiff};
use vdb_format::container::{self, Kind, Limits};
use vdb_format::{BuildSpec, Signer, patch, write_atomic};
use vdb_sign::PrivateKeySet;

/// What to make.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Output directory (created if missing).
    pub output: PathBuf,
    /// Target size of the compressed CVD in MiB (about twice as much signature text is made).
    pub size_mb: u32,
    /// Length of the cdiff chain: versions made after the base.
    pub cdiffs: u32,
    /// Version of the base CVD (`daily-N.cvd`).
    pub version: u32,
    /// Seed of the content (and of the default key set and the signatures' salts).
    pub seed: u64,
    /// Private key set that signs; `None`: a deterministic key set made from the seed, written
    /// to `output/synth.key` (mode 0600) and `output/synth.key.pub`.
    pub keys: Option<PathBuf>,
    /// Also write `output/daily.cud`: the newest version unsigned, for comparison with sigtool.
    pub cud: bool,
}

/// The database name.
pub const DB: &str = "daily";
/// Build time of the base version (2025-01-01 00:00:00 UTC); version V+i is i hours later.
const BASE_TIME: u64 = 1_735_689_600;
/// Functionality level written to the headers.
const FLEVEL: u32 = 90;
/// Builder name written to the headers.
const BUILDER: &str = "synth";
/// Bytes of signature text per byte of compressed CVD. Random hex compresses to a little
/// under half (segments at level 6, see `vdb_format::segment`) and names compress well, so
/// slightly over 2. Calibrated with the default arguments so that `--size-mb 60` makes a base
/// CVD of about 60 MiB.
const TEXT_PER_CVD_BYTE: f64 = 2.29;

/// Rates of change per version, as fractions of a file's lines.
const DELETE_RATE: f64 = 0.0005;
const CHANGE_RATE: f64 = 0.0002;
const APPEND_RATE: f64 = 0.005;

/// Writes the database and its chain into `spec.output` without printing anything. Returns
/// the names and sizes written.
pub fn write_chain(spec: &Spec) -> Result<Vec<(String, usize)>> {
    generate(spec, &mut |_| {}).map(|(_, written)| written)
}

/// What was made: per-version statistics, and each file written with its size.
pub type Generated = (Vec<VersionStats>, Vec<(String, usize)>);

/// [`write_chain`], calling `progress` after each version; also returns the statistics.
pub fn generate(spec: &Spec, progress: &mut dyn FnMut(&VersionStats)) -> Result<Generated> {
    let args = spec;
    let dir = &args.output;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    ensure!(args.size_mb > 0, "--size-mb must be at least 1");
    ensure!(
        args.version.checked_add(args.cdiffs).is_some(),
        "--version + --cdiffs overflows"
    );
    let signer = match &args.keys {
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("reading key set {}", path.display()))?;
            PrivateKeySet::from_text(&text)
                .with_context(|| format!("key set {}", path.display()))?
                .with_seed(args.seed)
        }
        None => {
            let keys = vdb_sign::deterministic_keys("synth", args.seed)?;
            let private = dir.join("synth.key");
            vdb_format::write_private(&private, keys.to_text().as_bytes())
                .with_context(|| format!("writing {}", private.display()))?;
            let public = dir.join("synth.key.pub");
            write_atomic(&public, keys.public().to_text().as_bytes())
                .with_context(|| format!("writing {}", public.display()))?;
            keys
        }
    };
    let plan = Plan {
        text_bytes: (f64::from(args.size_mb) * MIB * TEXT_PER_CVD_BYTE) as u64,
        cdiffs: args.cdiffs,
        version: args.version,
        seed: args.seed,
        cud: args.cud,
    };
    let mut written: Vec<(String, usize)> = Vec::new();
    let stats = synthesize(
        &plan,
        &signer,
        &mut |name, bytes| {
            let path = dir.join(name);
            write_atomic(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            written.push((name.to_owned(), bytes.len()));
            Ok(())
        },
        progress,
    )?;
    Ok((stats, written))
}

/// Bytes in a MiB.
pub const MIB: f64 = 1_048_576.0;

/// `bytes` as `12.3 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB)
}

/// What to generate: the arguments minus paths and keys.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Bytes of signature text in the base version.
    text_bytes: u64,
    cdiffs: u32,
    version: u32,
    seed: u64,
    cud: bool,
}

/// One finished version.
#[derive(Debug, Clone)]
pub struct VersionStats {
    /// Its version.
    pub version: u32,
    /// Bytes of the unpacked files (without the `.info`).
    pub text_bytes: u64,
    /// Signatures in its header.
    pub signatures: u32,
    /// Size of its CVD.
    pub cvd_bytes: usize,
    /// The cdiff that produces this version, if any.
    pub cdiff_bytes: Option<usize>,
    /// Seconds it took.
    pub secs: f64,
}

impl VersionStats {
    /// One line for a progress display.
    pub fn progress_line(&self) -> String {
        let mut line = format!(
            "{DB}-{}.cvd: {} ({} bytes; {} text, {} signatures)",
            self.version,
            mib(self.cvd_bytes as u64),
            self.cvd_bytes,
            mib(self.text_bytes),
            self.signatures
        );
        if let Some(c) = self.cdiff_bytes {
            let _ = write!(line, ", {DB}-{}.cdiff: {c} bytes", self.version);
        }
        let _ = write!(line, ", {:.1} s", self.secs);
        line
    }
}

/// Generates every version and hands each output file to `out` as soon as it is made.
fn synthesize(
    plan: &Plan,
    signer: &PrivateKeySet,
    out: &mut dyn FnMut(&str, &[u8]) -> Result<()>,
    progress: &mut dyn FnMut(&VersionStats),
) -> Result<Vec<VersionStats>> {
    let keys = signer.public();
    let limits = Limits::default();
    let newest = plan
        .version
        .checked_add(plan.cdiffs)
        .context("version overflow")?;
    let mut db = Database::generate(&mut stream(plan.seed, 0), plan.text_bytes);
    let mut previous: Option<BTreeMap<String, Vec<u8>>> = None;
    let mut stats = Vec::new();
    for i in 0..=plan.cdiffs {
        let t = Instant::now();
        let version = plan.version + i;
        if i > 0 {
            db.mutate(&mut stream(plan.seed, u64::from(i)));
        }
        let files = db.files();
        let text_bytes = files.values().map(|v| v.len() as u64).sum();
        let spec = BuildSpec {
            db_name: DB.to_owned(),
            kind: Kind::Cvd,
            version,
            flevel: FLEVEL,
            builder: BUILDER.to_owned(),
            build_secs: BASE_TIME + u64::from(i) * 3600,
            signatures: None,
            engine_flevel: ENGINE_FLEVEL_146,
        };
        let (cvd, header) = build::build(&spec, &files, Some(signer))
            .with_context(|| format!("building version {version}"))?;
        drop(files);
        // The exact unpacked files, `.info` included: what a client patches.
        let (_, unpacked) = container::read_to_map(&cvd[..], Kind::Cvd, &keys, &limits)
            .with_context(|| format!("version {version} does not verify"))?;
        out(&format!("{DB}-{version}.cvd"), &cvd)?;
        let cdiff_bytes = match previous.take() {
            None => None,
            Some(mut old) => {
                let script = cdiff::diff(&old, &unpacked)?;
                let text = script.to_text();
                let bytes = Cdiff::write(version, text.as_bytes(), |d| signer.sign_cdiff(d))?;
                // Self-check: the signed cdiff turns the previous version into this one.
                let h = patch::apply_cdiff(&mut old, DB, &bytes, &keys, &limits)
                    .with_context(|| format!("the cdiff to version {version} does not apply"))?;
                if h.version != version || old != unpacked {
                    bail!("internal error: the cdiff to version {version} does not reproduce it");
                }
                out(&format!("{DB}-{version}.cdiff"), &bytes)?;
                Some(bytes.len())
            }
        };
        if version == newest {
            out(&format!("{DB}.cvd"), &cvd)?;
            if plan.cud {
                let spec = BuildSpec {
                    kind: Kind::Cud,
                    ..spec
                };
                // `build` ignores the `.info` in the map and writes a fresh, unsigned one.
                let (cud, _) = build::build(&spec, &unpacked, None)?;
                out(&format!("{DB}.cud"), &cud)?;
            }
        }
        let s = VersionStats {
            version,
            text_bytes,
            signatures: header.signatures,
            cvd_bytes: cvd.len(),
            cdiff_bytes,
            secs: t.elapsed().as_secs_f64(),
        };
        progress(&s);
        stats.push(s);
        previous = Some(unpacked);
    }
    Ok(stats)
}

/// The random stream for one stage: 0 makes the base, i makes version V+i.
fn stream(seed: u64, stage: u64) -> ChaCha20Rng {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    rng.set_stream(stage);
    rng
}

/// A uniform number below `n` (n > 0; the bias is negligible for our small n).
fn below(rng: &mut ChaCha20Rng, n: u64) -> u64 {
    rng.next_u64() % n
}

/// A uniform number in `lo..=hi`.
fn between(rng: &mut ChaCha20Rng, lo: u64, hi: u64) -> u64 {
    lo + below(rng, hi - lo + 1)
}

/// A uniform number in [0, 1).
fn unit(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn pick<'a>(rng: &mut ChaCha20Rng, items: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = below(rng, u64::from(total)) as u32;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    items[0].0
}

fn push_hex(out: &mut String, rng: &mut ChaCha20Rng, bytes: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill_bytes(&mut buf[..n]);
        for b in &buf[..n] {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
        left -= n;
    }
}

/// The signature files, their share of the text and how their lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigFile {
    /// `<sha256>:<size>:Win.Trojan.Agent-<n>-0:73`
    Hsb,
    /// `<md5>:<size>:<name>`
    Hdb,
    /// `<section size>:<md5>:<name>`
    Mdb,
    /// `<name>:<target>:*:<hex pattern>`
    Ndb,
    /// `<name>;Engine:51-255,Target:1;0&1;<hex>;<hex>`
    Ldb,
    /// `<md5>:<size>:<name>` of known-clean files
    Fp,
}

/// In the order sigtool packs them; shares of the signature text by bytes.
const SIG_FILES: [(SigFile, &str, f64); 6] = [
    (SigFile::Hsb, "hsb", 0.35),
    (SigFile::Hdb, "hdb", 0.245),
    (SigFile::Mdb, "mdb", 0.10),
    (SigFile::Ndb, "ndb", 0.15),
    (SigFile::Ldb, "ldb", 0.15),
    (SigFile::Fp, "fp", 0.005),
];

const PLATFORMS: &[(&str, u32)] = &[
    ("Win", 50),
    ("Doc", 8),
    ("Xls", 4),
    ("Pdf", 4),
    ("Html", 6),
    ("Js", 5),
    ("Unix", 8),
    ("Andr", 5),
    ("Osx", 2),
    ("Email", 3),
    ("Txt", 2),
    ("Java", 1),
    ("Multios", 2),
];

const CATEGORIES: &[(&str, u32)] = &[
    ("Trojan", 40),
    ("Malware", 15),
    ("Downloader", 10),
    ("Dropper", 5),
    ("Exploit", 6),
    ("Ransomware", 4),
    ("Coinminer", 4),
    ("Worm", 3),
    ("Spyware", 3),
    ("Adware", 2),
    ("Phishing", 4),
    ("Packed", 3),
    ("Virus", 1),
];

const FAMILIES: &[(&str, u32)] = &[
    ("Agent", 30),
    ("Generic", 8),
    ("Emotet", 6),
    ("Qakbot", 4),
    ("Zbot", 3),
    ("Ursnif", 3),
    ("Dridex", 3),
    ("Trickbot", 3),
    ("AgentTesla", 4),
    ("Formbook", 3),
    ("Lokibot", 2),
    ("Remcos", 3),
    ("NanoCore", 2),
    ("AsyncRAT", 2),
    ("RedLine", 3),
    ("Mirai", 4),
    ("Gafgyt", 2),
    ("XMRig", 2),
    ("Lockbit", 2),
    ("Conti", 1),
    ("Kryptik", 4),
    ("Razy", 2),
    ("Zusy", 2),
    ("CobaltStrike", 2),
    ("Mimikatz", 1),
];

/// `.ndb` targets and the platforms that go with them.
const NDB_TARGETS: [&[&str]; 8] = [
    &["Multios", "Win", "Txt"],
    &["Win"],
    &["Doc", "Xls"],
    &["Html"],
    &["Email"],
    &["Img"],
    &["Unix"],
    &["Js", "Txt"],
];

const COPYING: &str = "\
This is a synthetic ClamAV-format database made by `vdb db synth` for benchmarks.
Its signatures are random and match nothing; do not load it into a scanner.

The layout imitates ClamAV's daily database, whose signatures are
Copyright (C) Cisco Systems, Inc. and are distributed under the terms of the
GNU General Public License version 2.
";

const CFG: &str = "\
# Engine configuration (DCONF) for the synthetic daily database: every module on.
PE:0x000fffff
ELF:0x1
MACHO:0x1
ARCHIVE:0x01ffffff
DOCUMENT:0x1ffff
MAIL:0x1
OTHER:0x3fff
PHISHING:0x3
BYTECODE:0x7
STATS:0x0
PCRE:0x7
";

const FTM: &str = "\
0:0:4d5a:MS-DOS/Windows executable:CL_TYPE_ANY:CL_TYPE_MSEXE
0:0:7f454c46:ELF:CL_TYPE_ANY:CL_TYPE_ELF
0:0:cafebabe:Universal Binary/Java Bytecode:CL_TYPE_ANY:CL_TYPE_MACHO_UNIBIN:75
0:0:d0cf11e0a1b11ae1:OLE2 container:CL_TYPE_ANY:CL_TYPE_MSOLE2
0:0:504b0304:ZIP:CL_TYPE_ANY:CL_TYPE_ZIP
0:0:526172211a0700:RAR:CL_TYPE_ANY:CL_TYPE_RAR
0:0:377abcaf271c:7zip:CL_TYPE_ANY:CL_TYPE_7Z:53
0:0:1f8b:GZip:CL_TYPE_ANY:CL_TYPE_GZ
0:0:25504446:PDF document:CL_TYPE_ANY:CL_TYPE_PDF
1:*:255044462d:PDF document:CL_TYPE_ANY:CL_TYPE_PDF:51
0:0:7b5c727466:RTF:CL_TYPE_ANY:CL_TYPE_RTF
1:*:3c68746d6c:HTML data:CL_TYPE_ANY:CL_TYPE_HTML
1:*:3c736372697074:HTML data:CL_TYPE_ANY:CL_TYPE_HTML
0:0:89504e470d0a1a0a:PNG:CL_TYPE_ANY:CL_TYPE_PNG:76
0:0:ffd8ff:JPEG:CL_TYPE_ANY:CL_TYPE_JPEG:76
0:0:474946383961:GIF:CL_TYPE_ANY:CL_TYPE_GIF:76
0:0:4d534346:MS CAB:CL_TYPE_ANY:CL_TYPE_MSCAB
0:0:6465780a:Android DEX:CL_TYPE_ANY:CL_TYPE_ANY:90
";

/// The unpacked database as lines, plus the id counter that names new signatures.
struct Database {
    /// Lines of each signature file, indexed like [`SIG_FILES`].
    sigs: Vec<Vec<String>>,
    ign2: Vec<String>,
    next_id: u64,
}

impl Database {
    /// Generates about `text_bytes` of signature text, each file at its share.
    fn generate(rng: &mut ChaCha20Rng, text_bytes: u64) -> Self {
        let mut db = Self {
            sigs: vec![Vec::new(); SIG_FILES.len()],
            ign2: Vec::new(),
            next_id: 9_700_000,
        };
        let mut bytes = [0u64; SIG_FILES.len()];
        let mut total = 0u64;
        while total < text_bytes {
            // The file furthest below its share gets the next line, so ids interleave.
            let (k, _) = SIG_FILES
                .iter()
                .enumerate()
                .map(|(k, (_, _, share))| (k, bytes[k] as f64 / share))
                .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
            let line = db.new_line(rng, SIG_FILES[k].0);
            bytes[k] += line.len() as u64 + 1;
            total += line.len() as u64 + 1;
            db.sigs[k].push(line);
        }
        for _ in 0..24 {
            db.ignore_one(rng);
        }
        db
    }

    /// Adds the name of a random `.ndb`/`.ldb`/`.hdb` signature to `daily.ign2`.
    fn ignore_one(&mut self, rng: &mut ChaCha20Rng) {
        let k = [1, 3, 4][below(rng, 3) as usize];
        let lines = &self.sigs[k];
        if lines.is_empty() {
            return;
        }
        let line = &lines[below(rng, lines.len() as u64) as usize];
        if let Some(name) = name_of(SIG_FILES[k].0, line) {
            self.ign2.push(name.to_owned());
        }
    }

    /// Makes the next version: deletes and changes a few lines of every signature file,
    /// then appends new signatures across the files.
    fn mutate(&mut self, rng: &mut ChaCha20Rng) {
        let total: usize = self.sigs.iter().map(Vec::len).sum();
        for (k, (kind, _, _)) in SIG_FILES.iter().enumerate() {
            let n = self.sigs[k].len();
            if n < 2 {
                continue;
            }
            let deletes = count(rng, n, DELETE_RATE);
            let changes = count(rng, n, CHANGE_RATE);
            // index → delete (true) or change (false)
            let mut picked: BTreeMap<usize, bool> = BTreeMap::new();
            for (want, delete) in [(deletes, true), (changes, false)] {
                let goal = (picked.len() + want).min(n);
                while picked.len() < goal {
                    let i = below(rng, n as u64) as usize;
                    picked.entry(i).or_insert(delete);
                }
            }
            let old = std::mem::take(&mut self.sigs[k]);
            let mut new = Vec::with_capacity(n + n / 100);
            for (i, line) in old.into_iter().enumerate() {
                match picked.get(&i) {
                    Some(true) => {}
                    Some(false) => {
                        let name = name_of(*kind, &line).map(bump_revision);
                        new.push(match name {
                            Some(name) => line_named(rng, *kind, &name),
                            None => self.new_line(rng, *kind),
                        });
                    }
                    None => new.push(line),
                }
            }
            self.sigs[k] = new;
        }
        let appends = count(rng, total, APPEND_RATE);
        for _ in 0..appends {
            // Weighted by line count, so every file grows by about the same fraction.
            let lines: usize = self.sigs.iter().map(Vec::len).sum();
            let mut x = below(rng, lines.max(1) as u64) as usize;
            let k = self
                .sigs
                .iter()
                .position(|v| {
                    let hit = x < v.len();
                    x = x.saturating_sub(v.len());
                    hit
                })
                .unwrap_or(0);
            let line = self.new_line(rng, SIG_FILES[k].0);
            self.sigs[k].push(line);
        }
        self.ignore_one(rng);
    }

    /// A new signature name with the next id.
    fn new_name(&mut self, rng: &mut ChaCha20Rng, platform: Option<&str>) -> String {
        let id = self.next_id;
        self.next_id += between(rng, 1, 4);
        let platform = platform.unwrap_or_else(|| pick(rng, PLATFORMS));
        let category = pick(rng, CATEGORIES);
        let revision = u64::from(below(rng, 20) == 0);
        if category == "Exploit" {
            let year = between(rng, 2017, 2025);
            let cve = between(rng, 1000, 49_999);
            format!("{platform}.Exploit.CVE_{year}_{cve}-{id}-{revision}")
        } else {
            let family = pick(rng, FAMILIES);
            format!("{platform}.{category}.{family}-{id}-{revision}")
        }
    }

    fn new_line(&mut self, rng: &mut ChaCha20Rng, kind: SigFile) -> String {
        let name = match kind {
            SigFile::Hsb => {
                let id = self.next_id;
                self.next_id += between(rng, 1, 4);
                format!("Win.Trojan.Agent-{id}-0")
            }
            SigFile::Ndb => {
                let target = below(rng, 8) as usize;
                let platforms = NDB_TARGETS[target];
                let platform = platforms[below(rng, platforms.len() as u64) as usize];
                let name = self.new_name(rng, Some(platform));
                return ndb_line(rng, &name, target);
            }
            SigFile::Ldb => self.new_name(rng, Some("Win")),
            SigFile::Fp => {
                let id = self.next_id;
                self.next_id += between(rng, 1, 4);
                format!("FP.Clean.File-{id}-0")
            }
            SigFile::Hdb | SigFile::Mdb => self.new_name(rng, None),
        };
        line_named(rng, kind, &name)
    }

    /// The files of this version.
    fn files(&self) -> BTreeMap<String, Vec<u8>> {
        let join = |lines: &[String]| {
            let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for l in lines {
                out.extend_from_slice(l.as_bytes());
                out.push(b'\n');
            }
            out
        };
        let mut files = BTreeMap::new();
        files.insert("COPYING".to_owned(), COPYING.as_bytes().to_vec());
        files.insert(format!("{DB}.cfg"), CFG.as_bytes().to_vec());
        files.insert(format!("{DB}.ftm"), FTM.as_bytes().to_vec());
        files.insert(format!("{DB}.ign2"), join(&self.ign2));
        for (k, (_, ext, _)) in SIG_FILES.iter().enumerate() {
            files.insert(format!("{DB}.{ext}"), join(&self.sigs[k]));
        }
        files
    }
}

/// About `n * rate` (randomly rounded), at least 1.
fn count(rng: &mut ChaCha20Rng, n: usize, rate: f64) -> usize {
    ((n as f64 * rate + unit(rng)).floor() as usize).max(1)
}

/// A file size: log-uniform between 512 bytes and 8 MiB.
fn file_size(rng: &mut ChaCha20Rng) -> u64 {
    let bits = between(rng, 9, 22);
    (1 << bits) + below(rng, 1 << bits)
}

/// A signature line of `kind` named `name` (for `.ndb`, with a random target).
fn line_named(rng: &mut ChaCha20Rng, kind: SigFile, name: &str) -> String {
    let mut l = String::with_capacity(160);
    match kind {
        SigFile::Hsb => {
            push_hex(&mut l, rng, 32);
            let _ = write!(l, ":{}:{name}:73", file_size(rng));
        }
        SigFile::Hdb | SigFile::Fp => {
            push_hex(&mut l, rng, 16);
            let _ = write!(l, ":{}:{name}", file_size(rng));
        }
        SigFile::Mdb => {
            let _ = write!(l, "{}:", 512 * between(rng, 1, 4096));
            push_hex(&mut l, rng, 16);
            let _ = write!(l, ":{name}");
        }
        SigFile::Ndb => {
            let target = below(rng, 8) as usize;
            return ndb_line(rng, name, target);
        }
        SigFile::Ldb => {
            let _ = write!(l, "{name};Engine:51-255,Target:1;0&1;");
            let a = between(rng, 10, 40) as usize;
            push_hex(&mut l, rng, a);
            l.push(';');
            let b = between(rng, 10, 40) as usize;
            push_hex(&mut l, rng, b);
        }
    }
    l
}

/// `<name>:<target>:*:<pattern>`: 10–100 pattern bytes, sometimes with a `{-N}` gap and/or
/// a `??` wildcard byte between static runs of at least two bytes.
fn ndb_line(rng: &mut ChaCha20Rng, name: &str, target: usize) -> String {
    let mut l = format!("{name}:{target}:*:");
    let n = between(rng, 10, 100) as usize;
    let gap = (below(rng, 10) < 3).then(|| between(rng, 3, n as u64 - 3) as usize);
    let wild = (below(rng, 10) < 2)
        .then(|| between(rng, 3, n as u64 - 3) as usize)
        .filter(|w| gap.is_none_or(|g| w.abs_diff(g) > 2));
    for i in 0..n {
        if Some(i) == gap {
            let _ = write!(l, "{{-{}}}", between(rng, 1, 20));
        }
        if Some(i) == wild {
            l.push_str("??");
        } else {
            push_hex(&mut l, rng, 1);
        }
    }
    l
}

/// The signature name in a line of `kind`.
fn name_of(kind: SigFile, line: &str) -> Option<&str> {
    match kind {
        SigFile::Hsb | SigFile::Hdb | SigFile::Mdb | SigFile::Fp => line.split(':').nth(2),
        SigFile::Ndb => line.split(':').next(),
        SigFile::Ldb => line.split(';').next(),
    }
}

/// `Name-123-0` → `Name-123-1`: an updated signature keeps its id.
fn bump_revision(name: &str) -> String {
    match name.rsplit_once('-') {
        Some((stem, rev)) => match rev.parse::<u64>() {
            Ok(r) => format!("{stem}-{}", r + 1),
            Err(_) => format!("{name}-1"),
        },
        None => format!("{name}-1"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdb_format::KeySet;
    use vdb_format::cdiff::Script;

    fn collect(plan: &Plan, seed: u64) -> BTreeMap<String, Vec<u8>> {
        let keys = vdb_sign::deterministic_keys("synth", seed).unwrap();
        let mut files = BTreeMap::new();
        let stats = synthesize(
            plan,
            &keys,
            &mut |name, bytes| {
                assert!(
                    files.insert(name.to_owned(), bytes.to_vec()).is_none(),
                    "{name} written twice"
                );
                Ok(())
            },
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(stats.len(), plan.cdiffs as usize + 1);
        files
    }

    #[test]
    fn deterministic_and_the_chain_applies() {
        let plan = Plan {
            text_bytes: 300_000,
            cdiffs: 2,
            version: 100,
            seed: 5,
            cud: true,
        };
        let a = collect(&plan, 5);
        let b = collect(&plan, 5);
        assert_eq!(a, b, "two runs differ");
        let names: Vec<&str> = a.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "daily-100.cvd",
                "daily-101.cdiff",
                "daily-101.cvd",
                "daily-102.cdiff",
                "daily-102.cvd",
                "daily.cud",
                "daily.cvd"
            ]
        );
        assert_eq!(a["daily.cvd"], a["daily-102.cvd"]);

        let keys = vdb_sign::deterministic_keys("synth", 5).unwrap().public();
        let limits = Limits::default();
        let (_, mut files) =
            container::read_to_map(&a["daily-100.cvd"][..], Kind::Cvd, &keys, &limits).unwrap();
        let text: u64 = files
            .iter()
            .filter(|(n, _)| !n.ends_with(".info"))
            .map(|(_, v)| v.len() as u64)
            .sum();
        assert!((300_000..310_000).contains(&text), "{text} bytes of text");
        let hsb = files["daily.hsb"].len() as f64 / text as f64;
        assert!((0.30..0.40).contains(&hsb), "hsb share {hsb}");
        for v in [101, 102] {
            let bytes = &a[&format!("daily-{v}.cdiff")];
            let script = Cdiff::parse(bytes, limits.max_script_size).unwrap().script;
            let text = String::from_utf8(script).unwrap();
            for command in ["OPEN daily.info", "DEL ", "XCHG ", "ADD ", "CLOSE"] {
                assert!(text.contains(command), "version {v} has no {command:?}");
            }
            Script::parse(text.as_bytes()).unwrap();
            let h = patch::apply_cdiff(&mut files, DB, bytes, &keys, &limits).unwrap();
            assert_eq!(h.version, v);
        }
        let (_, newest) =
            container::read_to_map(&a["daily.cvd"][..], Kind::Cvd, &keys, &limits).unwrap();
        assert_eq!(files, newest);

        let cud = container::verify(&a["daily.cud"][..], Kind::Cud, &KeySet::official(), &limits)
            .unwrap();
        assert!(!cud.info_signed());
        assert_eq!(cud.header.version, 102);
        // A different seed gives different content.
        let other = collect(&Plan { seed: 6, ..plan }, 6);
        assert_ne!(other["daily-100.cvd"], a["daily-100.cvd"]);
    }

    #[test]
    fn lines_look_like_clamav() {
        let mut rng = stream(1, 0);
        let db = Database::generate(&mut rng, 50_000);
        let hsb = &db.sigs[0][0];
        let f: Vec<&str> = hsb.split(':').collect();
        assert_eq!(f.len(), 4, "{hsb}");
        assert_eq!(f[0].len(), 64);
        assert!(f[2].starts_with("Win.Trojan.Agent-") && f[2].ends_with("-0"));
        assert_eq!(f[3], "73");
        for line in &db.sigs[3] {
            let f: Vec<&str> = line.splitn(4, ':').collect();
            assert!(f[1].parse::<u8>().unwrap() < 8);
            assert_eq!(f[2], "*");
            let hex = f[3].chars().filter(char::is_ascii_hexdigit).count();
            assert!((20..=200 + 4).contains(&hex), "{line}");
        }
        for line in &db.sigs[4] {
            assert!(line.contains(";Engine:51-255,Target:1;0&1;"), "{line}");
        }
        assert_eq!(
            bump_revision("Doc.Malware.Emotet-9700001-0"),
            "Doc.Malware.Emotet-9700001-1"
        );
    }
}
