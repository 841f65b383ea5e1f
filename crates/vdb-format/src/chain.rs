//! Applying a cdiff chain from a container on disk to a CLD on disk, with memory that does not
//! grow with the database ([`apply_chain_to_cld`], re-exported from [`crate::patch`]).
//!
//! The base is streamed once. Each member the chain touches flows through one pipeline of
//! streaming line editors (the [`crate::cdiff`] editor, one stage per OPEN..CLOSE block of every
//! link), so a file is read and written once however long the chain. Every member lands in a
//! spool file in a private directory (a tar header needs the size first, and a CLD orders its
//! members differently from a CVD); the CLD is then written from the spool, atomically. Memory
//! holds the cdiffs, the `.info` manifests and I/O buffers.
//!
//! A chain with a `MOVE` (which ties two files together; ClamAV's own cdiffs do not use it)
//! takes the in-memory path ([`crate::patch::apply_chain`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::cdiff::{self, EditFail, EditStream, Edits, OpenFile, Script, Target};
use crate::container::{self, Kind, Limits};
use crate::error::{CdiffError, Error, LimitError, MemberError, ScriptError};
use crate::header::Header;
use crate::info::Info;
use crate::keys::KeySet;
use crate::patch::{self, ChainError, check_link_info, open_link};
use crate::sigenc::hex;
use crate::tar;

/// How [`apply_chain_to_cld`] writes its result.
#[derive(Debug, Clone, Default)]
pub struct CldOptions {
    /// Compress the CLD body (freshclam's `CompressLocalDatabase`).
    pub compress: bool,
    /// Where the private spool directory is made (it holds about one unpacked database while
    /// the chain is applied, and is removed afterwards); default: the output's directory.
    pub spool_dir: Option<PathBuf>,
}

/// Why [`apply_chain_to_cld`] failed. In every case the output file was left as it was.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The base container cannot be read or does not verify.
    #[error("the base database does not verify: {0}")]
    Base(#[source] Error),
    /// A cdiff of the chain is bad, or the patched database does not match its signed `.info`.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Spooling or writing the output failed (disk full, permissions).
    #[error("{0}")]
    Output(#[source] Error),
}

/// Applies a chain of signed cdiffs to the CVD or CLD at `base` and writes the resulting CLD
/// to `out`, checking exactly what [`crate::patch::apply_chain`] checks: the base as a
/// container of its kind, every cdiff's signature and version step, every link's `.info`
/// version, the last `.info`'s DSIG and every member's size and SHA-256.
///
/// The CLD is the one [`crate::build::build_cld`] writes for the same database, byte for byte.
/// It is written to a temporary file beside `out`, fsynced and renamed: on any error, or if the
/// process dies, `out` is unchanged. Returns the CLD's header.
pub fn apply_chain_to_cld(
    base: &Path,
    cdiffs: &[&[u8]],
    keys: &KeySet,
    limits: &Limits,
    out: &Path,
    options: &CldOptions,
) -> Result<Header, ApplyError> {
    let kind = base
        .file_name()
        .and_then(|n| Kind::from_file_name(&n.to_string_lossy()))
        .filter(|k| *k != Kind::Cud)
        .ok_or_else(|| {
            ApplyError::Base(Error::Build(format!(
                "{}: the base must be a .cvd or .cld (a .cud has no signed manifest to patch)",
                base.display()
            )))
        })?;
    let open = || {
        fs::File::open(base)
            .map(|f| BufReader::with_capacity(1 << 20, f))
            .map_err(|e| ApplyError::Base(Error::io(format!("opening {}", base.display()), e)))
    };
    let header = container::read_header(open()?).map_err(ApplyError::Base)?;
    let (plan, versions) = plan_chain(header.version, cdiffs, Some(keys), limits)?;
    if plan.has_move {
        return in_memory(open()?, kind, cdiffs, keys, limits, out, options.compress);
    }
    let spool_parent = match &options.spool_dir {
        Some(d) => d.clone(),
        None => out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    let (patched, header) = spool_chain(
        open()?,
        kind,
        Some(keys),
        limits,
        &plan,
        &versions,
        &spool_parent,
    )?;
    let cld_header = Header {
        md5: None,
        dsig: None,
        ..header
    };
    let head = cld_header
        .to_bytes()
        .map_err(|e| ApplyError::Output(Error::Header(e)))?;
    crate::store::write_atomic_with(out, |w| {
        w.write_all(&head)?;
        if options.compress {
            let mut gz = GzEncoder::new(w, Compression::best());
            patched.write_cld_body(&mut gz)?;
            gz.finish()?;
            Ok(())
        } else {
            patched.write_cld_body(w)
        }
    })
    .map_err(|e| ApplyError::Output(Error::io(format!("writing {}", out.display()), e)))?;
    Ok(cld_header)
}

/// Opens every link of the chain (signatures checked with `keys`, version steps always) and
/// turns it into a per-file plan. Returns the plan and the version each link makes.
fn plan_chain(
    mut version: u32,
    cdiffs: &[&[u8]],
    keys: Option<&KeySet>,
    limits: &Limits,
) -> Result<(Plan, Vec<u32>), ChainError> {
    let mut versions = Vec::with_capacity(cdiffs.len());
    let mut plan = Plan::default();
    for (index, bytes) in cdiffs.iter().enumerate() {
        // One script at a time: the plan keeps what it says, compactly.
        let (next, script) =
            open_link(bytes, version, keys, limits).map_err(|error| ChainError { index, error })?;
        plan.add(index, &script)?;
        versions.push(next);
        version = next;
    }
    Ok((plan, versions))
}

/// Streams `base` through the plan into a new spool directory under `spool_parent` and runs
/// the final check. Returns the spooled database and its `.info` header.
fn spool_chain(
    base: impl Read,
    kind: Kind,
    keys: Option<&KeySet>,
    limits: &Limits,
    plan: &Plan,
    versions: &[u32],
    spool_parent: &Path,
) -> Result<(Patched, Header), ApplyError> {
    let spool = Spool::create(spool_parent)
        .map_err(|e| ApplyError::Output(Error::io("creating the spool directory", e)))?;
    let patched = stream_base(base, kind, keys, limits, plan, versions, spool)?;
    let header = patched.check(keys, versions.len())?;
    Ok((patched, header))
}

/// Applies a chain of cdiffs to the container `base` (a CVD, CUD or CLD: the kind is read
/// from its header) and spools the patched database in a private directory under
/// `spool_parent`, removed when the result is dropped. Memory holds the cdiffs, the `.info`
/// and I/O buffers, not the database.
///
/// With `keys`, everything [`apply_chain_to_cld`] checks is checked. Without (a mirror
/// rebuilding a release, which holds no ClamAV keys and trusts `base` and its result by hashes
/// from a signed manifest), the signatures are not checked; every version step, every link's
/// `.info` version and every patched member's size and SHA-256 against the final `.info` are.
/// A chain with a `MOVE` (which needs the database in memory; ClamAV's cdiffs and
/// [`crate::cdiff::diff`] never write one) is refused.
pub(crate) fn spool_patched(
    base: &mut (impl Read + io::Seek),
    cdiffs: &[&[u8]],
    keys: Option<&KeySet>,
    limits: &Limits,
    spool_parent: &Path,
) -> Result<Patched, Error> {
    let unwrap = |e: ApplyError| match e {
        ApplyError::Base(e) | ApplyError::Output(e) => e,
        ApplyError::Chain(c) => c.error,
    };
    let rewind = |base: &mut dyn io::Seek| {
        base.seek(io::SeekFrom::Start(0))
            .map(drop)
            .map_err(|e| Error::io("reading the base database", e))
    };
    rewind(base)?;
    let header = container::read_header(&mut *base)?;
    let kind = match (&header.dsig, &header.md5) {
        (Some(_), _) => Kind::Cvd,
        (None, Some(_)) => Kind::Cud,
        (None, None) => Kind::Cld,
    };
    let (plan, versions) = plan_chain(header.version, cdiffs, keys, limits).map_err(|c| c.error)?;
    if plan.has_move {
        return Err(Error::Build(
            "the chain moves lines between files (MOVE), which is only applied in memory".into(),
        ));
    }
    rewind(base)?;
    spool_chain(
        &mut *base,
        kind,
        keys,
        limits,
        &plan,
        &versions,
        spool_parent,
    )
    .map(|(patched, _)| patched)
    .map_err(unwrap)
}

/// The chain with a `MOVE`: unpacked in memory, as [`crate::patch::apply_chain`] does.
fn in_memory(
    base: impl Read,
    kind: Kind,
    cdiffs: &[&[u8]],
    keys: &KeySet,
    limits: &Limits,
    out: &Path,
    compress: bool,
) -> Result<Header, ApplyError> {
    let (verified, mut files) =
        container::read_to_map(base, kind, keys, limits).map_err(ApplyError::Base)?;
    let info = verified
        .members
        .iter()
        .find_map(|m| m.name.strip_suffix(".info"))
        .ok_or_else(|| ApplyError::Base(Error::member("<db>.info", MemberError::NoInfo)))?
        .to_owned();
    patch::apply_chain(&mut files, &info, cdiffs, keys, limits)?;
    crate::store::write_atomic_with(out, |w| {
        crate::build::build_cld(&info, &files, compress, &mut { w }).map_err(io::Error::other)
    })
    .map_err(|e| ApplyError::Output(Error::io(format!("writing {}", out.display()), e)))
}

/// A private directory for spool files, removed on drop.
struct Spool {
    dir: PathBuf,
}

static SPOOL_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Spool {
    fn create(parent: &Path) -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = parent.join(format!(
            ".vdb-spool-{}-{}",
            std::process::id(),
            SPOOL_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What happens to one file over the chain, in order.
enum Op {
    /// An OPEN..CLOSE block with edits or lines to add.
    Block {
        link: usize,
        line: usize,
        name: String,
        edits: Edits,
        /// The ADD lines, each `\n`-terminated.
        adds: Vec<u8>,
    },
    /// UNLINK.
    Unlink { link: usize, line: usize },
}

impl Op {
    fn link(&self) -> usize {
        match self {
            Self::Block { link, .. } | Self::Unlink { link, .. } => *link,
        }
    }
}

/// The chain turned around: per file, the operations of every link.
#[derive(Default)]
struct Plan {
    files: BTreeMap<String, Vec<Op>>,
    has_move: bool,
}

/// Records a script's file work into a [`Plan`] (the grammar is checked by the interpreter).
struct Recorder<'p> {
    plan: &'p mut Plan,
    link: usize,
}

impl Target for Recorder<'_> {
    fn exists(&mut self, _name: &str) -> Result<bool, ScriptError> {
        // Checked against the base's file list once it is known (Plan::existence).
        Ok(true)
    }
    fn close(&mut self, file: OpenFile, line: usize) -> Result<(), ScriptError> {
        if file.edits.is_empty() && file.adds.is_empty() {
            return Ok(());
        }
        let ops = self.plan.files.entry(file.name.clone()).or_default();
        ops.push(Op::Block {
            link: self.link,
            line,
            name: file.name,
            edits: file.edits,
            adds: file
                .adds
                .iter()
                .flat_map(|a| [a.as_bytes(), b"\n"])
                .flatten()
                .copied()
                .collect(),
        });
        Ok(())
    }
    fn unlink(&mut self, name: &str, line: usize) -> Result<(), ScriptError> {
        let ops = self.plan.files.entry(name.to_owned()).or_default();
        ops.push(Op::Unlink {
            link: self.link,
            line,
        });
        Ok(())
    }
    fn move_lines(
        &mut self,
        _src: &str,
        _dst: &str,
        _start: (usize, &String),
        _end: (usize, &String),
    ) -> Result<(), ScriptError> {
        self.plan.has_move = true;
        Ok(())
    }
}

/// A script error tagged with its link, carried through `io::Error` between pipeline stages.
#[derive(Debug, thiserror::Error)]
#[error("cdiff {link} line {line}: {kind}")]
struct Tagged {
    link: usize,
    line: usize,
    kind: ScriptError,
}

fn tagged(link: usize, line: usize, kind: ScriptError) -> io::Error {
    io::Error::other(Tagged { link, line, kind })
}

/// A chain error from a tagged script error, or `None` for a real I/O error.
fn untag(e: &io::Error) -> Option<ChainError> {
    let t = e.get_ref()?.downcast_ref::<Tagged>()?;
    Some(ChainError {
        index: t.link,
        error: CdiffError::Line {
            line: t.line,
            kind: t.kind.clone(),
        }
        .into(),
    })
}

impl Plan {
    /// Adds link `index` of the chain.
    fn add(&mut self, index: usize, script: &Script) -> Result<(), ChainError> {
        let mut recorder = Recorder {
            plan: self,
            link: index,
        };
        cdiff::run(script, &mut recorder).map_err(|error| ChainError { index, error })
    }

    /// Replays which files exist through the chain (from the base's file list) and refuses
    /// what the in-memory interpreter refuses: edits or UNLINK of a file that does not exist.
    /// Returns the files that exist at the end among those the chain touches.
    fn existence(&self, base: &BTreeSet<String>) -> Result<BTreeSet<String>, ChainError> {
        let mut first: Option<ChainError> = None;
        let mut exist = BTreeSet::new();
        for (name, ops) in &self.files {
            match replay(name, ops, base.contains(name)) {
                Ok(true) => {
                    exist.insert(name.clone());
                }
                Ok(false) => {}
                Err(e) => {
                    if first.as_ref().is_none_or(|f| e.index < f.index) {
                        first = Some(e);
                    }
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(exist),
        }
    }
}

/// Whether a file exists after `ops`, given whether it existed before.
fn replay(name: &str, ops: &[Op], mut exists: bool) -> Result<bool, ChainError> {
    for op in ops {
        let (link, line, kind) = match op {
            Op::Block { edits, .. } if edits.is_empty() => {
                exists = true;
                continue;
            }
            Op::Block { link, line, .. } if !exists => (*link, *line, "CLOSE"),
            Op::Block { .. } => continue,
            Op::Unlink { link, line } if !exists => (*link, *line, "UNLINK"),
            Op::Unlink { .. } => {
                exists = false;
                continue;
            }
        };
        return Err(ChainError {
            index: link,
            error: CdiffError::Line {
                line,
                kind: ScriptError::NoSuchFile {
                    command: kind,
                    file: name.to_owned(),
                },
            }
            .into(),
        });
    }
    Ok(exists)
}

/// What a pipeline wrote.
struct Done {
    size: u64,
    sha256: [u8; 32],
    bytes: Vec<u8>,
}

/// One pipeline stage: bytes in, bytes out to the next stage; `finish` ends the input.
trait Stage: Write {
    fn finish(self: Box<Self>) -> io::Result<Done>;
}

/// The end of a pipeline: a spool file, memory, or nowhere; hashing what it gets.
struct Terminal<W> {
    out: W,
    sha: Sha256,
    size: u64,
}

impl<W: Write> Terminal<W> {
    fn new(out: W) -> Self {
        Self {
            out,
            sha: Sha256::new(),
            size: 0,
        }
    }
}

impl<W: Write> Write for Terminal<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write_all(buf)?;
        self.sha.update(buf);
        self.size += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Stage for Terminal<BufWriter<fs::File>> {
    fn finish(self: Box<Self>) -> io::Result<Done> {
        let Self { out, sha, size } = *self;
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
        Ok(Done {
            size,
            sha256: sha.finalize().into(),
            bytes: Vec::new(),
        })
    }
}

impl Stage for Terminal<Vec<u8>> {
    fn finish(self: Box<Self>) -> io::Result<Done> {
        let Self { out, sha, size } = *self;
        Ok(Done {
            size,
            sha256: sha.finalize().into(),
            bytes: out,
        })
    }
}

impl Stage for Terminal<io::Sink> {
    fn finish(self: Box<Self>) -> io::Result<Done> {
        Ok(Done {
            size: self.size,
            sha256: [0; 32],
            bytes: Vec::new(),
        })
    }
}

/// One OPEN..CLOSE block as a stage: the streaming editor (or, without edits, the bytes as
/// they are, as ClamAV leaves a file it only appends to), then the ADD lines.
struct BlockStage<'p> {
    link: usize,
    line: usize,
    adds: &'p [u8],
    inner: Inner<'p>,
}

enum Inner<'p> {
    Edit(EditStream<'p, Box<dyn Stage + 'p>>),
    Plain(Box<dyn Stage + 'p>),
}

impl<'p> BlockStage<'p> {
    fn new(op: &'p Op, next: Box<dyn Stage + 'p>) -> io::Result<Self> {
        let Op::Block {
            link,
            line,
            name,
            edits,
            adds,
        } = op
        else {
            unreachable!("only blocks become stages");
        };
        let inner = if edits.is_empty() {
            Inner::Plain(next)
        } else {
            Inner::Edit(EditStream::new(name, edits, next).map_err(|k| tagged(*link, *line, k))?)
        };
        Ok(Self {
            link: *link,
            line: *line,
            adds,
            inner,
        })
    }

    fn fail(&self, e: EditFail) -> io::Error {
        match e {
            EditFail::Script(kind) => tagged(self.link, self.line, kind),
            EditFail::Io(e) => e,
        }
    }
}

impl Write for BlockStage<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = match &mut self.inner {
            Inner::Edit(e) => e.write(buf),
            Inner::Plain(next) => next.write_all(buf).map_err(EditFail::Io),
        };
        r.map_err(|e| self.fail(e))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stage for BlockStage<'_> {
    fn finish(self: Box<Self>) -> io::Result<Done> {
        let Self {
            link,
            line,
            adds,
            inner,
        } = *self;
        let mut next = match inner {
            Inner::Edit(e) => e.finish().map_err(|e| match e {
                EditFail::Script(kind) => tagged(link, line, kind),
                EditFail::Io(e) => e,
            })?,
            Inner::Plain(next) => next,
        };
        next.write_all(adds)?;
        next.finish()
    }
}

/// Where a pipeline's output goes.
enum Output<'a> {
    Spool(&'a Path),
    Memory,
}

/// Why running a pipeline failed.
enum RunFail {
    /// Reading the input (the base member) failed: the container reader's business.
    Input(io::Error),
    /// The chain does not fit, or the spool cannot be written.
    Apply(ApplyError),
}

impl From<io::Error> for RunFail {
    fn from(e: io::Error) -> Self {
        Self::Apply(match untag(&e) {
            Some(c) => ApplyError::Chain(c),
            None => ApplyError::Output(Error::io("writing the spool", e)),
        })
    }
}

/// Runs `ops` (one file's, in chain order) over `input` (the file before them; `None`: absent).
/// Returns the file after them, or `None` when it ends absent (`exists` tells; from
/// [`Plan::existence`]). Everything before an UNLINK is still run, into nowhere, so that its
/// edits are checked as the in-memory interpreter checks them.
fn run_ops(
    ops: &[Op],
    mut input: Option<&mut dyn Read>,
    exists: bool,
    output: &Output<'_>,
) -> Result<Option<Done>, RunFail> {
    let segments: Vec<&[Op]> = ops.split(|op| matches!(op, Op::Unlink { .. })).collect();
    let last = segments.len() - 1;
    let mut result = None;
    for (i, segment) in segments.iter().enumerate() {
        let keep = i == last && exists;
        let mut sink: Box<dyn Stage + '_> = match output {
            _ if !keep => Box::new(Terminal::new(io::sink())),
            Output::Spool(path) => Box::new(Terminal::new(BufWriter::with_capacity(
                1 << 16,
                fs::File::create(path)?,
            ))),
            Output::Memory => Box::new(Terminal::new(Vec::new())),
        };
        for op in segment.iter().rev() {
            sink = Box::new(BlockStage::new(op, sink)?);
        }
        if let Some(input) = input.take().filter(|_| i == 0) {
            let mut buf = vec![0u8; 1 << 18];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(RunFail::Input(e)),
                };
                sink.write_all(&buf[..n])?;
            }
        }
        let done = sink.finish()?;
        if keep {
            result = Some(done);
        }
    }
    Ok(result)
}

/// A spooled member.
struct Spooled {
    size: u64,
    /// `None`: passed through untouched (the base's `.info` vouched for it).
    sha256: Option<[u8; 32]>,
}

/// The patched database, spooled; the spool directory is removed on drop.
pub(crate) struct Patched {
    spool: Spool,
    info_name: String,
    base_info: Info,
    info_bytes: Vec<u8>,
    files: BTreeMap<String, Spooled>,
}

fn stream_base(
    input: impl Read,
    kind: Kind,
    keys: Option<&KeySet>,
    limits: &Limits,
    plan: &Plan,
    versions: &[u32],
    spool: Spool,
) -> Result<Patched, ApplyError> {
    let mut failed: Option<ApplyError> = None;
    let mut info: Option<(String, Info, Vec<u8>, BTreeSet<String>)> = None;
    let mut files = BTreeMap::new();
    let stop = |failed: &mut Option<ApplyError>, e: ApplyError| {
        *failed = Some(e);
        io::Error::other("the chain does not apply")
    };
    let read = container::read_with(input, kind, keys, limits, &mut |name, r| {
        if name.ends_with(".info") {
            let mut bytes = Vec::new();
            r.read_to_end(&mut bytes)?;
            let base_info = Info::parse(&bytes, name).map_err(io::Error::other)?;
            let mut names: BTreeSet<String> =
                base_info.entries.iter().map(|e| e.name.clone()).collect();
            names.insert("COPYING".into());
            names.insert(name.to_owned());
            let step = plan
                .existence(&names)
                .map_err(ApplyError::Chain)
                .and_then(|exist| {
                    let patched = info_chain(plan, name, bytes, versions, limits)?;
                    Ok((exist, patched))
                });
            let (exist, patched) = step.map_err(|e| stop(&mut failed, e))?;
            info = Some((name.to_owned(), base_info, patched, exist));
            return Ok(());
        }
        let path = spool.path(name);
        let spooled = match (plan.files.get(name), &info) {
            (Some(ops), Some((_, _, _, exist))) => {
                match run_ops(ops, Some(r), exist.contains(name), &Output::Spool(&path)) {
                    Ok(done) => done.map(|d| Spooled {
                        size: d.size,
                        sha256: Some(d.sha256),
                    }),
                    Err(RunFail::Input(e)) => return Err(e),
                    Err(RunFail::Apply(e)) => return Err(stop(&mut failed, e)),
                }
            }
            _ => {
                // COPYING (before the .info) and every member the chain leaves alone.
                let mut w = BufWriter::with_capacity(1 << 16, fs::File::create(&path)?);
                let size = io::copy(r, &mut w)?;
                w.into_inner().map_err(io::IntoInnerError::into_error)?;
                Some(Spooled { size, sha256: None })
            }
        };
        if let Some(s) = spooled {
            files.insert(name.to_owned(), s);
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    read.map_err(ApplyError::Base)?;
    let (info_name, base_info, info_bytes, exist) =
        info.ok_or_else(|| ApplyError::Base(Error::member("<db>.info", MemberError::NoInfo)))?;
    if let Some(ops) = plan.files.get("COPYING") {
        // COPYING comes before the .info, so before the plan could be checked: its edits run
        // over the spooled copy.
        let path = spool.path("COPYING");
        let spool_err = |e| ApplyError::Output(Error::io("spooling COPYING", e));
        let mut base_copy = None;
        if files.remove("COPYING").is_some() {
            let copy = spool.path(".COPYING.base");
            fs::rename(&path, &copy).map_err(spool_err)?;
            base_copy = Some(fs::File::open(&copy).map_err(spool_err)?);
        }
        let input = base_copy.as_mut().map(|f| f as &mut dyn Read);
        let done =
            run_ops(ops, input, exist.contains("COPYING"), &Output::Spool(&path)).map_err(|e| {
                match e {
                    RunFail::Input(e) => spool_err(e),
                    RunFail::Apply(e) => e,
                }
            })?;
        if let Some(d) = done {
            files.insert(
                "COPYING".into(),
                Spooled {
                    size: d.size,
                    sha256: Some(d.sha256),
                },
            );
        }
    }
    // Files the chain creates.
    for (name, ops) in &plan.files {
        if files.contains_key(name) || *name == info_name || base_info.entry(name).is_some() {
            continue;
        }
        if name == "COPYING" {
            continue;
        }
        let done = run_ops(
            ops,
            None,
            exist.contains(name),
            &Output::Spool(&spool.path(name)),
        )
        .map_err(|e| match e {
            RunFail::Input(e) => ApplyError::Output(Error::io("spooling", e)),
            RunFail::Apply(e) => e,
        })?;
        if let Some(d) = done {
            files.insert(
                name.clone(),
                Spooled {
                    size: d.size,
                    sha256: Some(d.sha256),
                },
            );
        }
    }
    Ok(Patched {
        spool,
        info_name,
        base_info,
        info_bytes,
        files,
    })
}

/// Runs the chain over the `.info`, link by link in memory (it is small and bounded by
/// [`Limits::max_info_size`]), checking the version each link's `.info` states.
fn info_chain(
    plan: &Plan,
    name: &str,
    mut bytes: Vec<u8>,
    versions: &[u32],
    limits: &Limits,
) -> Result<Vec<u8>, ApplyError> {
    let ops = plan.files.get(name).map_or(&[][..], Vec::as_slice);
    let mut exists = true;
    for (index, &version) in versions.iter().enumerate() {
        let at = |error| ApplyError::Chain(ChainError { index, error });
        let from = ops.partition_point(|op| op.link() < index);
        let to = ops.partition_point(|op| op.link() <= index);
        let link_ops = &ops[from..to];
        if !link_ops.is_empty() {
            let after = replay(name, link_ops, exists)?;
            let mut input = &bytes[..];
            let input: Option<&mut dyn Read> = if exists { Some(&mut input) } else { None };
            let done = run_ops(link_ops, input, after, &Output::Memory).map_err(|e| match e {
                RunFail::Input(e) => at(Error::io(format!("reading {name}"), e)),
                RunFail::Apply(e) => e,
            })?;
            exists = after;
            bytes = done.map(|d| d.bytes).unwrap_or_default();
        }
        if !exists {
            return Err(at(Error::member(name, MemberError::NoInfo)));
        }
        if bytes.len() as u64 > limits.max_info_size {
            return Err(at(Error::Limit(LimitError::InfoSize {
                size: bytes.len() as u64,
                limit: limits.max_info_size,
            })));
        }
        let info = Info::parse(&bytes, name).map_err(at)?;
        check_link_info(&info.header, version).map_err(at)?;
    }
    Ok(bytes)
}

impl Patched {
    /// The final check: `.info` DSIG, every listed member present with its size and SHA-256,
    /// every member listed. Returns the `.info`'s header.
    fn check(&self, keys: Option<&KeySet>, links: usize) -> Result<Header, ApplyError> {
        let at = |error| {
            ApplyError::Chain(ChainError {
                index: links.saturating_sub(1),
                error,
            })
        };
        let info = Info::parse(&self.info_bytes, &self.info_name).map_err(at)?;
        if let Some(keys) = keys {
            info.verify(&keys.info).map_err(at)?;
        }
        for entry in &info.entries {
            let file = self
                .files
                .get(&entry.name)
                .ok_or_else(|| at(Error::member(&entry.name, MemberError::Missing)))?;
            if file.size != entry.size {
                return Err(at(Error::member(
                    &entry.name,
                    MemberError::Size {
                        expected: entry.size,
                        actual: file.size,
                    },
                )));
            }
            let actual = match file.sha256 {
                Some(sha) => sha,
                // Untouched: as the base's .info says (the container reader checked that).
                None => self
                    .base_info
                    .entry(&entry.name)
                    .map_or([0; 32], |e| e.sha256),
            };
            if actual != entry.sha256 {
                return Err(at(Error::member(
                    &entry.name,
                    MemberError::Sha256 {
                        expected: hex(&entry.sha256),
                        actual: hex(&actual),
                    },
                )));
            }
        }
        for name in self.files.keys() {
            if name != "COPYING" && info.entry(name).is_none() {
                return Err(at(Error::member(name, MemberError::NotListed)));
            }
        }
        if !self.files.contains_key("COPYING") {
            return Err(at(Error::Build(
                "COPYING is missing: a CLD body must start with it".into(),
            )));
        }
        Ok(info.header)
    }

    /// The `.info` member's name (`<db>.info`).
    pub(crate) fn info_name(&self) -> &str {
        &self.info_name
    }

    /// Every member but the `.info`, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    /// The tar body in `build_cld`'s order (`COPYING`, `<db>.info`, `<db>.cfg`, the rest
    /// sorted by name).
    fn write_cld_body(&self, w: &mut dyn Write) -> io::Result<()> {
        let db = self
            .info_name
            .strip_suffix(".info")
            .unwrap_or(&self.info_name);
        let order = crate::build::cld_order(db, &self.names());
        self.write_tar(&mut { w }, db, &order)
            .map_err(io::Error::other)
    }

    /// The tar body with the members in `order` (the `.info` after the first), each streamed
    /// from its spool file.
    pub(crate) fn write_tar(
        &self,
        w: &mut impl Write,
        db: &str,
        order: &[String],
    ) -> Result<(), Error> {
        crate::build::write_members_with(w, db, order, &self.info_bytes, &mut |w, name| {
            self.copy_member(w, name)
                .map_err(|e| Error::io(format!("copying spooled {name}"), e))
        })
    }

    fn copy_member(&self, w: &mut dyn Write, name: &str) -> io::Result<()> {
        let size = self
            .files
            .get(name)
            .ok_or_else(|| io::Error::other(format!("{name} is not in the spool")))?
            .size;
        tar::write_header(&mut { &mut *w }, name, size)?;
        let f = fs::File::open(self.spool.path(name))?;
        let copied = io::copy(&mut f.take(size), w)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("spool file {name} shrank"),
            ));
        }
        let pad = (512 - size % 512) % 512;
        w.write_all(&[0u8; 512][..usize::try_from(pad).unwrap_or(0)])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The streaming engine over files in memory: what [`apply_chain_to_cld`] does to each
    /// file, minus containers and signatures. `Err` carries the failing link.
    pub(crate) fn apply_scripts(
        base: &BTreeMap<String, Vec<u8>>,
        scripts: &[Script],
    ) -> Result<BTreeMap<String, Vec<u8>>, usize> {
        let mut plan = Plan::default();
        for (i, s) in scripts.iter().enumerate() {
            plan.add(i, s).map_err(|e| e.index)?;
        }
        assert!(!plan.has_move, "MOVE takes the in-memory path");
        let names: BTreeSet<String> = base.keys().cloned().collect();
        let exist = plan.existence(&names).map_err(|e| e.index)?;
        let mut out = BTreeMap::new();
        let fail = |e| match e {
            RunFail::Apply(ApplyError::Chain(c)) => c.index,
            RunFail::Apply(e) => panic!("{e}"),
            RunFail::Input(e) => panic!("{e}"),
        };
        for name in names.iter().chain(plan.files.keys()) {
            if out.contains_key(name) {
                continue;
            }
            let Some(ops) = plan.files.get(name) else {
                out.insert(name.clone(), base[name].clone());
                continue;
            };
            let mut input = base.get(name).map(Vec::as_slice);
            let input = input.as_mut().map(|r| r as &mut dyn Read);
            if let Some(d) =
                run_ops(ops, input, exist.contains(name), &Output::Memory).map_err(fail)?
            {
                out.insert(name.clone(), d.bytes);
            }
        }
        Ok(out)
    }

    mod properties {
        use super::*;
        use crate::cdiff::Command;
        use proptest::prelude::*;

        const NAMES: [&str; 3] = ["x.ndb", "x.hdb", "x.ldb"];

        fn file() -> impl Strategy<Value = Option<Vec<u8>>> {
            proptest::option::of(
                proptest::collection::vec("[a-c]{0,3}(\r\n|\n|\r)?", 0..8)
                    .prop_map(|parts| parts.concat().into_bytes()),
            )
        }

        fn command() -> impl Strategy<Value = Command> {
            let prefix = prop_oneof![Just(String::new()), "[a-c]{1,2}"];
            prop_oneof![
                3 => (0usize..7, prefix.clone()).prop_map(|(line, prefix)| Command::Del { line, prefix }),
                3 => (0usize..7, prefix, "[x-z]{0,3}").prop_map(|(line, prefix, text)| Command::Xchg { line, prefix, text }),
                3 => "[a-z ]{0,4}".prop_map(Command::Add),
            ]
        }

        /// A script: blocks on random files, sometimes an UNLINK, sometimes a broken grammar.
        fn script() -> impl Strategy<Value = Script> {
            let block = (
                0usize..3,
                proptest::collection::vec(command(), 0..5),
                0u8..12,
            );
            proptest::collection::vec(block, 0..4).prop_map(|blocks| {
                let mut commands = Vec::new();
                for (f, body, kind) in blocks {
                    let name = NAMES[f].to_owned();
                    match kind {
                        0 => commands.push(Command::Unlink(name)),
                        1 => commands.push(Command::Add(name)),
                        _ => {
                            commands.push(Command::Open(name));
                            commands.extend(body);
                            commands.push(Command::Close);
                        }
                    }
                }
                Script {
                    commands: commands
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| (i + 1, c))
                        .collect(),
                }
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]
            /// The streaming engine gives what the in-memory interpreter gives, link by link,
            /// on random files (CRLF, no final newline, absent) and random scripts.
            #[test]
            fn streaming_matches_in_memory(
                files in proptest::collection::vec(file(), 3),
                scripts in proptest::collection::vec(script(), 1..5),
            ) {
                let base: BTreeMap<String, Vec<u8>> = NAMES
                    .iter()
                    .zip(files)
                    .filter_map(|(n, f)| Some(((*n).to_owned(), f?)))
                    .collect();
                let mut memory = base.clone();
                let mut failed = None;
                for (i, s) in scripts.iter().enumerate() {
                    if cdiff::apply(s, &mut memory).is_err() {
                        failed = Some(i);
                        break;
                    }
                }
                let streamed = apply_scripts(&base, &scripts);
                match (failed, streamed) {
                    (None, Ok(out)) => prop_assert_eq!(out, memory),
                    (Some(_), Err(_)) => {}
                    (a, b) => prop_assert!(false, "in memory failed at {:?}, streamed: {:?}", a, b),
                }
            }
        }
    }
}
