//! `.cdiff` incremental updates: the file layout, the script language, applying and
//! generating scripts (spec §2).
//!
//! Semantics follow ClamAV 1.4.6 as observed with `sigtool --run-cdiff`: DEL/XCHG line numbers
//! refer to the file as it was at OPEN and are applied in line order at CLOSE (a later edit of
//! the same line replaces an earlier one); ADD text is everything after `ADD ` verbatim and is
//! appended at CLOSE, creating the file if needed; a file that is edited is rewritten as
//! `\n`-terminated lines; MOVE needs both files to exist; UNLINK takes a file name and needs no
//! open file. Where ClamAV would crash or silently drop work (an empty line, a script ending
//! with a file open, MOVE onto itself), we refuse the script instead.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::error::{CdiffError, Error, LimitError, ScriptError, SignatureError};
use crate::keys::RsaPublic;
use crate::names::is_cdiff_file_name;
use crate::sigenc::{self, MAX_SIG_CHARS};
use crate::store::FileStore;

const MAGIC: &[u8] = b"ClamAV-Diff";

/// A parsed `.cdiff` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cdiff {
    /// The version this cdiff produces.
    pub version: u32,
    /// The script length the header declares (ClamAV does not enforce it).
    pub declared_len: u64,
    /// The decompressed script.
    pub script: Vec<u8>,
    /// The signature string after the last `:`.
    pub dsig: String,
    /// SHA-256 of every byte before the last `:`: what the signature signs.
    pub signed_digest: [u8; 32],
}

impl Cdiff {
    /// Parses a `.cdiff` file (does not verify the signature; see [`Cdiff::verify`]).
    pub fn parse(bytes: &[u8], max_script: u64) -> Result<Self, Error> {
        if bytes.len() < MAX_SIG_CHARS {
            return Err(CdiffError::TooShort(bytes.len()).into());
        }
        let tail = &bytes[bytes.len() - MAX_SIG_CHARS..];
        let colon = tail
            .iter()
            .rposition(|&b| b == b':')
            .ok_or_else(|| CdiffError::Trailer("no ':' in the last 350 bytes".into()))?;
        let dsig_bytes = &tail[colon + 1..];
        let dsig = std::str::from_utf8(dsig_bytes)
            .ok()
            .filter(|s| !s.is_empty() && sigenc_alphabet(s))
            .ok_or_else(|| {
                CdiffError::Trailer("signature is not in ClamAV's base-64 alphabet".into())
            })?
            .to_owned();
        let signed_len = bytes.len() - dsig_bytes.len() - 1;
        let signed_digest = Sha256::digest(&bytes[..signed_len]).into();

        if !bytes.starts_with(MAGIC) || bytes.get(MAGIC.len()) != Some(&b':') {
            return Err(CdiffError::Header("does not start with \"ClamAV-Diff:\"".into()).into());
        }
        let rest = &bytes[MAGIC.len() + 1..];
        let (version, rest) = split_number(rest, "version")?;
        let (declared_len, rest) = split_number(rest, "script length")?;
        let gz_start = bytes.len() - rest.len();
        if gz_start > signed_len {
            return Err(CdiffError::Header("no gzip stream before the signature".into()).into());
        }
        let mut script = Vec::new();
        let mut decoder =
            GzDecoder::new(&bytes[gz_start..signed_len]).take(max_script.saturating_add(1));
        decoder
            .read_to_end(&mut script)
            .map_err(|e| CdiffError::Gzip(e.to_string()))?;
        if script.len() as u64 > max_script {
            return Err(Error::Limit(LimitError::Script(max_script)));
        }
        Ok(Self {
            version: u32::try_from(version)
                .map_err(|_| CdiffError::Header("version out of range".into()))?,
            declared_len,
            script,
            dsig,
            signed_digest,
        })
    }

    /// Verifies the trailing PSS signature under `key` (the cdiff key of a key set).
    pub fn verify(&self, key: &RsaPublic) -> Result<(), Error> {
        sigenc::verify_pss(&self.signed_digest, &self.dsig, key).map_err(|kind| Error::Signature {
            what: "cdiff signature",
            kind,
        })
    }

    /// Builds a signed `.cdiff` file. `sign` turns the SHA-256 of header + gzip into a
    /// signature string.
    pub fn write(
        version: u32,
        script: &[u8],
        sign: impl FnOnce(&[u8; 32]) -> Result<String, Error>,
    ) -> Result<Vec<u8>, Error> {
        let mut out = format!("ClamAV-Diff:{version}:{}:", script.len()).into_bytes();
        let mut gz = GzEncoder::new(&mut out, Compression::default());
        gz.write_all(script)
            .map_err(|e| Error::io("compressing the script", e))?;
        gz.finish()
            .map_err(|e| Error::io("compressing the script", e))?;
        let digest: [u8; 32] = Sha256::digest(&out).into();
        let sig = sign(&digest)?;
        if sig.is_empty() || sig.len() > MAX_SIG_CHARS || !sigenc_alphabet(&sig) {
            return Err(Error::Signature {
                what: "cdiff signature",
                kind: SignatureError::Encoding,
            });
        }
        out.push(b':');
        out.extend_from_slice(sig.as_bytes());
        Ok(out)
    }
}

fn sigenc_alphabet(s: &str) -> bool {
    s.len() <= MAX_SIG_CHARS && sigenc::is_alphabet(s)
}

fn split_number<'a>(bytes: &'a [u8], what: &str) -> Result<(u64, &'a [u8]), CdiffError> {
    let end = bytes
        .iter()
        .take(21)
        .position(|&b| b == b':')
        .ok_or_else(|| CdiffError::Header(format!("{what} is not followed by ':'")))?;
    let text = &bytes[..end];
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return Err(CdiffError::Header(format!(
            "{what} is not a decimal number"
        )));
    }
    let n = std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| CdiffError::Header(format!("{what} is out of range")))?;
    Ok((n, &bytes[end + 1..]))
}

/// One script command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `OPEN <file>`
    Open(String),
    /// `ADD <text>`
    Add(String),
    /// `DEL <line> <prefix>`
    Del {
        /// 1-based line number at OPEN time.
        line: usize,
        /// The line must start with this.
        prefix: String,
    },
    /// `XCHG <line> <prefix> <text>`
    Xchg {
        /// 1-based line number at OPEN time.
        line: usize,
        /// The line must start with this.
        prefix: String,
        /// Replacement text.
        text: String,
    },
    /// `CLOSE`
    Close,
    /// `MOVE <src> <dst> <start> <start prefix> <end> <end prefix>`
    Move {
        /// Source file.
        src: String,
        /// Destination file (must exist).
        dst: String,
        /// First line moved.
        start: usize,
        /// Prefix of the first line.
        start_prefix: String,
        /// Last line moved.
        end: usize,
        /// Prefix of the last line.
        end_prefix: String,
    },
    /// `UNLINK <file>`
    Unlink(String),
}

/// A parsed script: commands with their 1-based line numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    /// `(line number, command)` in order.
    pub commands: Vec<(usize, Command)>,
}

fn line_err(line: usize, kind: ScriptError) -> Error {
    Error::Cdiff(CdiffError::Line { line, kind })
}

fn args(command: &'static str, reason: &str) -> ScriptError {
    ScriptError::Arguments {
        command,
        reason: reason.to_owned(),
    }
}

fn file_name(name: &str) -> Result<String, ScriptError> {
    if is_cdiff_file_name(name) {
        Ok(name.to_owned())
    } else {
        Err(ScriptError::FileName(name.chars().take(64).collect()))
    }
}

fn number(token: Option<&str>, command: &'static str, what: &str) -> Result<usize, ScriptError> {
    let t = token.ok_or_else(|| args(command, &format!("missing {what}")))?;
    if !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(args(command, &format!("{what} {t:?} is not a number")));
    }
    t.parse()
        .map_err(|_| args(command, &format!("{what} {t:?} is out of range")))
}

fn token(token: Option<&str>, command: &'static str, what: &str) -> Result<String, ScriptError> {
    token
        .map(str::to_owned)
        .ok_or_else(|| args(command, &format!("missing {what}")))
}

impl Script {
    /// Parses script text.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut commands = Vec::new();
        if bytes.is_empty() {
            return Ok(Self { commands });
        }
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = std::str::from_utf8(raw).map_err(|_| line_err(n, ScriptError::NotText))?;
            if line.starts_with('#') {
                continue;
            }
            let command = parse_command(line).map_err(|k| line_err(n, k))?;
            commands.push((n, command));
        }
        Ok(Self { commands })
    }

    /// The script as text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (_, c) in &self.commands {
            match c {
                Command::Open(f) => out.push_str(&format!("OPEN {f}\n")),
                Command::Add(t) => out.push_str(&format!("ADD {t}\n")),
                Command::Del { line, prefix } => out.push_str(&format!("DEL {line} {prefix}\n")),
                Command::Xchg { line, prefix, text } => {
                    out.push_str(&format!("XCHG {line} {prefix} {text}\n"));
                }
                Command::Close => out.push_str("CLOSE\n"),
                Command::Move {
                    src,
                    dst,
                    start,
                    start_prefix,
                    end,
                    end_prefix,
                } => out.push_str(&format!(
                    "MOVE {src} {dst} {start} {start_prefix} {end} {end_prefix}\n"
                )),
                Command::Unlink(f) => out.push_str(&format!("UNLINK {f}\n")),
            }
        }
        out
    }
}

fn parse_command(line: &str) -> Result<Command, ScriptError> {
    let (word, data) = match line.find(char::is_whitespace) {
        Some(i) => {
            let ws = line[i..].chars().next().map_or(1, char::len_utf8);
            (&line[..i], Some(&line[i + ws..]))
        }
        None => (line, None),
    };
    let need = |command: &'static str| data.ok_or_else(|| args(command, "missing arguments"));
    Ok(match word {
        "OPEN" => Command::Open(file_name(need("OPEN")?)?),
        "ADD" => Command::Add(need("ADD")?.to_owned()),
        "DEL" => {
            let mut t = need("DEL")?.split_whitespace();
            Command::Del {
                line: number(t.next(), "DEL", "line number")?,
                prefix: token(t.next(), "DEL", "line prefix")?,
            }
        }
        "XCHG" => {
            let mut t = need("XCHG")?.splitn(3, char::is_whitespace);
            Command::Xchg {
                line: number(t.next(), "XCHG", "line number")?,
                prefix: token(t.next(), "XCHG", "line prefix")?,
                text: token(t.next(), "XCHG", "new line")?,
            }
        }
        "CLOSE" => Command::Close,
        "MOVE" => {
            let mut t = need("MOVE")?.split_whitespace();
            let src = file_name(&token(t.next(), "MOVE", "source file")?)?;
            let dst = file_name(&token(t.next(), "MOVE", "destination file")?)?;
            Command::Move {
                src,
                dst,
                start: number(t.next(), "MOVE", "start line")?,
                start_prefix: token(t.next(), "MOVE", "start prefix")?,
                end: number(t.next(), "MOVE", "end line")?,
                end_prefix: token(t.next(), "MOVE", "end prefix")?,
            }
        }
        "UNLINK" => Command::Unlink(file_name(need("UNLINK")?.trim_end())?),
        other => {
            return Err(ScriptError::UnknownCommand(
                other.chars().take(32).collect(),
            ));
        }
    })
}

/// Changes buffered over a store so that a failing script changes nothing.
struct Overlay<'a> {
    base: &'a dyn FileStore,
    changes: BTreeMap<String, Option<Vec<u8>>>,
}

impl Overlay<'_> {
    /// A file as the script sees it now; borrowed where the stores allow it.
    fn get(&self, name: &str) -> Result<Option<Cow<'_, [u8]>>, ScriptError> {
        match self.changes.get(name) {
            Some(v) => Ok(v.as_deref().map(Cow::Borrowed)),
            None => self
                .base
                .read_cow(name)
                .map_err(|e| ScriptError::Store(e.to_string())),
        }
    }
}

/// Splits file text into lines the way Rust's `BufRead::lines` does (what ClamAV uses):
/// on `\n`, dropping one trailing `\r`, with no empty last line after a final `\n`.
fn lines_of(text: &str) -> Vec<&str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    body.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

fn text_of(name: &str, bytes: &[u8]) -> Result<String, ScriptError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ScriptError::FileNotText(name.to_owned()))
}

/// The changes a script makes, computed without touching the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// New contents (`Some`) or deletion (`None`) per file name.
    pub files: BTreeMap<String, Option<Vec<u8>>>,
}

impl Changes {
    /// A file as it reads after the changes.
    pub fn read(&self, base: &dyn FileStore, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        match self.files.get(name) {
            Some(v) => Ok(v.clone()),
            None => base.read(name),
        }
    }

    /// Every file name after the changes, sorted.
    pub fn names(&self, base: &dyn FileStore) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = base
            .names()?
            .into_iter()
            .filter(|n| !matches!(self.files.get(n), Some(None)))
            .collect();
        names.extend(
            self.files
                .iter()
                .filter(|(n, v)| v.is_some() && !names.contains(n))
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
        );
        names.sort();
        Ok(names)
    }

    /// Writes the changes to `store`.
    pub fn commit(self, store: &mut dyn FileStore) -> Result<(), Error> {
        for (name, change) in self.files {
            let r = match change {
                Some(data) => store.write_owned(&name, data),
                None => store.remove(&name).map(drop),
            };
            r.map_err(|e| Error::io(format!("writing patched {name}"), e))?;
        }
        Ok(())
    }
}

/// Runs a script against a store and returns its changes; the store is not modified.
pub fn plan(script: &Script, store: &dyn FileStore) -> Result<Changes, Error> {
    let mut ov = Overlay {
        base: store,
        changes: BTreeMap::new(),
    };
    run(script, &mut ov)?;
    Ok(Changes { files: ov.changes })
}

/// Applies a script to a store. All-or-nothing: on error nothing in `store` changes.
/// (Across several files the final commit is a sequence of atomic writes; callers that need
/// crash atomicity apply to a staging copy, as freshclam does.)
pub fn apply(script: &Script, store: &mut dyn FileStore) -> Result<(), Error> {
    plan(script, &*store)?.commit(store)
}

/// The DEL/XCHG edits of one OPEN..CLOSE block: line number at OPEN → (prefix, replacement;
/// `None` deletes the line).
pub(crate) type Edits = BTreeMap<usize, (String, Option<String>)>;

/// One OPEN..CLOSE block as the interpreter hands it to a [`Target`] at CLOSE.
pub(crate) struct OpenFile {
    pub(crate) name: String,
    pub(crate) edits: Edits,
    pub(crate) adds: Vec<String>,
}

/// What a script runs against: the in-memory overlay here, or a recorder that plans a
/// streaming pass (`chain.rs`). The interpreter ([`run`]) checks the command grammar (one open
/// file at a time, nothing left open); a target does the file work.
pub(crate) trait Target {
    /// Whether `name` exists now (a recorder that cannot know yet answers `true` and checks
    /// later).
    fn exists(&mut self, name: &str) -> Result<bool, ScriptError>;
    /// CLOSE of a block; `line` is the script line of the CLOSE.
    fn close(&mut self, file: OpenFile, line: usize) -> Result<(), ScriptError>;
    /// UNLINK of an existing file.
    fn unlink(&mut self, name: &str, line: usize) -> Result<(), ScriptError>;
    /// MOVE of lines `start..=end` from `src` to the end of `dst`.
    fn move_lines(
        &mut self,
        src: &str,
        dst: &str,
        start: (usize, &String),
        end: (usize, &String),
    ) -> Result<(), ScriptError>;
}

impl Target for Overlay<'_> {
    fn exists(&mut self, name: &str) -> Result<bool, ScriptError> {
        Ok(self.get(name)?.is_some())
    }
    fn close(&mut self, file: OpenFile, _line: usize) -> Result<(), ScriptError> {
        close(self, file)
    }
    fn unlink(&mut self, name: &str, _line: usize) -> Result<(), ScriptError> {
        self.changes.insert(name.to_owned(), None);
        Ok(())
    }
    fn move_lines(
        &mut self,
        src: &str,
        dst: &str,
        start: (usize, &String),
        end: (usize, &String),
    ) -> Result<(), ScriptError> {
        move_lines(self, src, dst, start, end)
    }
}

/// Interprets a script against a target.
pub(crate) fn run(script: &Script, target: &mut dyn Target) -> Result<(), Error> {
    let mut open: Option<OpenFile> = None;
    for (n, command) in &script.commands {
        let n = *n;
        let fail = |kind| line_err(n, kind);
        match command {
            Command::Open(name) => {
                if let Some(o) = &open {
                    return Err(fail(ScriptError::FileOpen {
                        command: "OPEN",
                        open: o.name.clone(),
                    }));
                }
                open = Some(OpenFile {
                    name: name.clone(),
                    edits: BTreeMap::new(),
                    adds: Vec::new(),
                });
            }
            Command::Add(text) => {
                let o = open
                    .as_mut()
                    .ok_or_else(|| fail(ScriptError::NoOpenFile("ADD")))?;
                o.adds.push(text.clone());
            }
            Command::Del { line, prefix } => {
                let o = open
                    .as_mut()
                    .ok_or_else(|| fail(ScriptError::NoOpenFile("DEL")))?;
                o.edits.insert(*line, (prefix.clone(), None));
            }
            Command::Xchg { line, prefix, text } => {
                let o = open
                    .as_mut()
                    .ok_or_else(|| fail(ScriptError::NoOpenFile("XCHG")))?;
                o.edits.insert(*line, (prefix.clone(), Some(text.clone())));
            }
            Command::Close => {
                let o = open
                    .take()
                    .ok_or_else(|| fail(ScriptError::NoOpenFile("CLOSE")))?;
                target.close(o, n).map_err(fail)?;
            }
            Command::Move {
                src,
                dst,
                start,
                start_prefix,
                end,
                end_prefix,
            } => {
                if let Some(o) = &open {
                    return Err(fail(ScriptError::FileOpen {
                        command: "MOVE",
                        open: o.name.clone(),
                    }));
                }
                target
                    .move_lines(src, dst, (*start, start_prefix), (*end, end_prefix))
                    .map_err(fail)?;
            }
            Command::Unlink(name) => {
                if let Some(o) = &open {
                    return Err(fail(ScriptError::FileOpen {
                        command: "UNLINK",
                        open: o.name.clone(),
                    }));
                }
                if !target.exists(name).map_err(fail)? {
                    return Err(fail(ScriptError::NoSuchFile {
                        command: "UNLINK",
                        file: name.clone(),
                    }));
                }
                target.unlink(name, n).map_err(fail)?;
            }
        }
    }
    if let Some(o) = open {
        return Err(CdiffError::Unclosed(o.name).into());
    }
    Ok(())
}

fn close(ov: &mut Overlay<'_>, o: OpenFile) -> Result<(), ScriptError> {
    if o.edits.is_empty() && o.adds.is_empty() {
        return Ok(());
    }
    let mut data = match (o.edits.is_empty(), ov.get(&o.name)?) {
        (true, current) => current.map(Cow::into_owned),
        (false, None) => {
            return Err(ScriptError::NoSuchFile {
                command: "CLOSE",
                file: o.name,
            });
        }
        (false, Some(bytes)) => Some(apply_edits(&o.name, &bytes, &o.edits)?),
    };
    if !o.adds.is_empty() {
        let bytes = data.get_or_insert_with(Vec::new);
        for add in &o.adds {
            bytes.extend_from_slice(add.as_bytes());
            bytes.push(b'\n');
        }
    }
    if let Some(data) = data {
        ov.changes.insert(o.name, Some(data));
    }
    Ok(())
}

/// Applies DEL/XCHG edits to a file held in memory: the streaming editor fed in one piece.
fn apply_edits(name: &str, bytes: &[u8], edits: &Edits) -> Result<Vec<u8>, ScriptError> {
    let mut editor = EditStream::new(name, edits, Vec::with_capacity(bytes.len() + 64))?;
    editor.write(bytes).map_err(EditFail::into_script)?;
    editor.finish().map_err(EditFail::into_script)
}

/// Why a streamed edit stopped: the script does not fit the file, or the output failed.
#[derive(Debug)]
pub(crate) enum EditFail {
    /// The script does not fit the file.
    Script(ScriptError),
    /// Writing the output failed.
    Io(std::io::Error),
}

impl EditFail {
    fn into_script(self) -> ScriptError {
        match self {
            Self::Script(e) => e,
            Self::Io(e) => ScriptError::Store(e.to_string()),
        }
    }
}

impl From<std::io::Error> for EditFail {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// The line editor of ClamAV's OPEN..CLOSE block, streaming: applies DEL/XCHG edits (sorted by
/// line) to a file fed in chunks of any size and writes the result to `out`. The result is what
/// rewriting every line the ClamAV way gives ([`lines_of`], each line then `\n`-terminated: a
/// `\r` before a line end dropped, a missing final `\n` added); runs of lines between edits are
/// copied in bulk. Memory: the first bytes of the line being edited (its prefix), nothing else.
/// The whole input must be UTF-8 (checked across chunk boundaries).
pub(crate) struct EditStream<'e, W> {
    name: &'e str,
    edits: Vec<(usize, &'e str, Option<&'e str>)>,
    next: usize,
    /// Number of the line the next byte belongs to.
    line: usize,
    /// The next byte starts line `line`.
    at_start: bool,
    /// The current line is the next edit's line.
    editing: bool,
    /// The first bytes of the edited line (up to its prefix length + 1).
    head: Vec<u8>,
    line_len: usize,
    /// A `\r` ended the last chunk: dropped if a `\n` follows (or the input ends).
    pending_cr: bool,
    utf8: Utf8Check,
    out: W,
}

impl<'e, W: Write> EditStream<'e, W> {
    /// An editor for `edits` (as an OPEN..CLOSE block collects them) on file `name`.
    pub(crate) fn new(name: &'e str, edits: &'e Edits, out: W) -> Result<Self, ScriptError> {
        let edits: Vec<_> = edits
            .iter()
            .map(|(&at, (prefix, new))| (at, prefix.as_str(), new.as_deref()))
            .collect();
        if let Some(&(0, _, new)) = edits.first() {
            return Err(ScriptError::NoMatch {
                command: if new.is_some() { "XCHG" } else { "DEL" },
                file: name.to_owned(),
                line: 0,
                reason: "line numbers start at 1".into(),
            });
        }
        Ok(Self {
            name,
            edits,
            next: 0,
            line: 1,
            at_start: true,
            editing: false,
            head: Vec::new(),
            line_len: 0,
            pending_cr: false,
            utf8: Utf8Check::default(),
            out,
        })
    }

    /// Feeds the next chunk of the file.
    pub(crate) fn write(&mut self, mut buf: &[u8]) -> Result<(), EditFail> {
        if !self.utf8.feed(buf) {
            return Err(EditFail::Script(ScriptError::FileNotText(
                self.name.to_owned(),
            )));
        }
        while !buf.is_empty() {
            if self.at_start {
                self.at_start = false;
                self.editing = self.edits.get(self.next).is_some_and(|e| e.0 == self.line);
                self.head.clear();
                self.line_len = 0;
            }
            if self.editing {
                let prefix_len = self.edits[self.next].1.len();
                let end = memchr::memchr(b'\n', buf);
                let part = &buf[..end.unwrap_or(buf.len())];
                let room = (prefix_len + 1).saturating_sub(self.head.len());
                self.head.extend_from_slice(&part[..part.len().min(room)]);
                self.line_len += part.len();
                match end {
                    Some(i) => {
                        self.end_edited_line()?;
                        buf = &buf[i + 1..];
                    }
                    None => buf = &[],
                }
            } else {
                let n = match self.edits.get(self.next) {
                    None => buf.len(),
                    Some(&(at, ..)) => {
                        let mut want = at - self.line;
                        let mut end = buf.len();
                        for i in memchr::memchr_iter(b'\n', buf) {
                            self.line += 1;
                            want -= 1;
                            if want == 0 {
                                end = i + 1;
                                break;
                            }
                        }
                        end
                    }
                };
                let (run, rest) = buf.split_at(n);
                self.copy(run)?;
                self.at_start = run.last() == Some(&b'\n');
                buf = rest;
            }
        }
        Ok(())
    }

    /// Ends the input: checks that every edited line existed and returns the output.
    pub(crate) fn finish(mut self) -> Result<W, EditFail> {
        if !self.at_start {
            if self.editing {
                self.end_edited_line()?;
            } else {
                self.pending_cr = false;
                self.out.write_all(b"\n")?;
            }
        }
        if let Some(&(at, _, new)) = self.edits.get(self.next) {
            return Err(EditFail::Script(ScriptError::NoMatch {
                command: if new.is_some() { "XCHG" } else { "DEL" },
                file: self.name.to_owned(),
                line: at,
                reason: "beyond the end of the file".into(),
            }));
        }
        if !self.utf8.complete() {
            return Err(EditFail::Script(ScriptError::FileNotText(
                self.name.to_owned(),
            )));
        }
        Ok(self.out)
    }

    fn end_edited_line(&mut self) -> Result<(), EditFail> {
        let (at, prefix, new) = self.edits[self.next];
        // The whole line is in `head` when it is short; then its final `\r` is not part of it.
        let view = if self.line_len <= prefix.len() + 1 {
            self.head.strip_suffix(b"\r").unwrap_or(&self.head)
        } else {
            &self.head[..]
        };
        if !view.starts_with(prefix.as_bytes()) {
            return Err(EditFail::Script(ScriptError::NoMatch {
                command: if new.is_some() { "XCHG" } else { "DEL" },
                file: self.name.to_owned(),
                line: at,
                reason: format!("line does not start with {prefix:?}"),
            }));
        }
        if let Some(new) = new {
            self.out.write_all(new.as_bytes())?;
            self.out.write_all(b"\n")?;
        }
        self.next += 1;
        self.line += 1;
        self.at_start = true;
        Ok(())
    }

    /// Copies unedited bytes, dropping each `\r` that ends a line.
    fn copy(&mut self, mut run: &[u8]) -> Result<(), EditFail> {
        if std::mem::take(&mut self.pending_cr) && run.first() != Some(&b'\n') {
            self.out.write_all(b"\r")?;
        }
        while let Some(i) = memchr::memchr(b'\r', run) {
            if i + 1 == run.len() {
                self.out.write_all(&run[..i])?;
                self.pending_cr = true;
                return Ok(());
            }
            let keep = if run[i + 1] == b'\n' { i } else { i + 1 };
            self.out.write_all(&run[..keep])?;
            run = &run[i + 1..];
        }
        self.out.write_all(run)?;
        Ok(())
    }
}

/// UTF-8 validation of a byte stream fed in pieces (a character may span two pieces).
#[derive(Default)]
struct Utf8Check {
    carry: [u8; 4],
    len: usize,
}

impl Utf8Check {
    /// Whether everything fed so far is UTF-8 or a prefix of it.
    fn feed(&mut self, mut buf: &[u8]) -> bool {
        if self.len > 0 {
            let need = match self.carry[0] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let take = (need - self.len).min(buf.len());
            self.carry[self.len..self.len + take].copy_from_slice(&buf[..take]);
            self.len += take;
            buf = &buf[take..];
            match std::str::from_utf8(&self.carry[..self.len]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() && self.len < need => return true,
                Err(_) => return false,
            }
        }
        match std::str::from_utf8(buf) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let tail = &buf[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.len = tail.len();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the stream ended on a character boundary.
    fn complete(&self) -> bool {
        self.len == 0
    }
}

fn move_lines(
    ov: &mut Overlay<'_>,
    src: &str,
    dst: &str,
    (start, start_prefix): (usize, &String),
    (end, end_prefix): (usize, &String),
) -> Result<(), ScriptError> {
    let no_match = |line, reason: String| ScriptError::NoMatch {
        command: "MOVE",
        file: src.to_owned(),
        line,
        reason,
    };
    if src == dst {
        return Err(no_match(
            start,
            "source and destination are the same file".into(),
        ));
    }
    if start == 0 {
        return Err(no_match(start, "line numbers start at 1".into()));
    }
    if end <= start {
        return Err(no_match(
            end,
            "end line must come after the start line".into(),
        ));
    }
    let missing = |file: &str| ScriptError::NoSuchFile {
        command: "MOVE",
        file: file.to_owned(),
    };
    let src_bytes = ov.get(src)?.ok_or_else(|| missing(src))?.into_owned();
    let mut dst_bytes = ov.get(dst)?.ok_or_else(|| missing(dst))?.into_owned();
    let text = text_of(src, &src_bytes)?;
    let lines = lines_of(&text);
    if end > lines.len() {
        return Err(no_match(end, "beyond the end of the file".into()));
    }
    if !lines[start - 1].starts_with(start_prefix.as_str()) {
        return Err(no_match(
            start,
            format!("line does not start with {start_prefix:?}"),
        ));
    }
    if !lines[end - 1].starts_with(end_prefix.as_str()) {
        return Err(no_match(
            end,
            format!("line does not start with {end_prefix:?}"),
        ));
    }
    let mut kept = String::new();
    for (i, line) in lines.iter().enumerate() {
        let target = if (start - 1..end).contains(&i) {
            dst_bytes.extend_from_slice(line.as_bytes());
            dst_bytes.push(b'\n');
            continue;
        } else {
            &mut kept
        };
        target.push_str(line);
        target.push('\n');
    }
    ov.changes.insert(src.to_owned(), Some(kept.into_bytes()));
    ov.changes.insert(dst.to_owned(), Some(dst_bytes));
    Ok(())
}

/// The prefix sigtool writes for DEL/XCHG: the old line's first ≤16 bytes, cut at the first
/// whitespace. `None` when that is empty (the line starts with whitespace or is empty).
fn prefix_of(line: &str) -> Option<String> {
    let mut end = line.len().min(16);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let p = line[..end].split(char::is_whitespace).next().unwrap_or("");
    (!p.is_empty()).then(|| p.to_owned())
}

/// Generates a script that turns the files of `old` into the files of `new`
/// (every file name of both; names must be cdiff-safe).
pub fn diff(old: &dyn FileStore, new: &dyn FileStore) -> Result<Script, Error> {
    let io = |e: std::io::Error| Error::io("listing files for the diff", e);
    let old_names = old.names().map_err(io)?;
    let new_names = new.names().map_err(io)?;
    let mut names: Vec<String> = old_names.iter().chain(&new_names).cloned().collect();
    names.sort();
    names.dedup();
    // The manifest first, as sigtool does.
    names.sort_by_key(|n| !n.ends_with(".info"));
    let mut commands = Vec::new();
    for name in names {
        let read = |s: &dyn FileStore| {
            s.read(&name)
                .map_err(|e| Error::io(format!("reading {name}"), e))
        };
        let (a, b) = (read(old)?, read(new)?);
        if a == b {
            continue;
        }
        if !is_cdiff_file_name(&name) {
            return Err(CdiffError::Inexpressible(format!(
                "file name {name:?} is not allowed in a cdiff"
            ))
            .into());
        }
        match (a, b) {
            (Some(_), None) => commands.push(Command::Unlink(name)),
            (a, Some(b)) => commands.extend(diff_file(&name, a.as_deref(), &b)?),
            (None, None) => {}
        }
    }
    Ok(Script {
        commands: commands.into_iter().map(|c| (0, c)).collect(),
    })
}

fn inexpressible(name: &str, why: &str) -> Error {
    CdiffError::Inexpressible(format!("{name}: {why}")).into()
}

fn diff_file(name: &str, old: Option<&[u8]>, new: &[u8]) -> Result<Vec<Command>, Error> {
    let new_text = std::str::from_utf8(new)
        .map_err(|_| inexpressible(name, "new version is not UTF-8 text"))?;
    if !new_text.is_empty() && !new_text.ends_with('\n') {
        return Err(inexpressible(
            name,
            "new version does not end with a newline",
        ));
    }
    let new_lines = lines_of(new_text);
    if new_text.split('\n').any(|l| l.ends_with('\r')) {
        return Err(inexpressible(name, "new version has CRLF line endings"));
    }
    let Some(old) = old else {
        if new_lines.is_empty() {
            return Err(inexpressible(
                name,
                "a new empty file cannot be created by a cdiff",
            ));
        }
        return Ok(recreate(name, &new_lines, false));
    };
    let old_text = std::str::from_utf8(old)
        .map_err(|_| inexpressible(name, "old version is not UTF-8 text"))?;
    let old_lines = lines_of(old_text);
    let old_clean = old_text.is_empty() || (old_text.ends_with('\n') && !old_text.contains('\r'));

    let ops = similar::capture_diff_slices(similar::Algorithm::Myers, &old_lines, &new_lines);
    // (old index → replacement or deletion), appended lines.
    let mut edits: BTreeMap<usize, Option<&str>> = BTreeMap::new();
    let mut adds: Vec<&str> = Vec::new();
    let mut tail_from: Option<(usize, usize)> = None;
    for op in &ops {
        if tail_from.is_some() {
            break;
        }
        match *op {
            similar::DiffOp::Equal { .. } => {}
            similar::DiffOp::Delete {
                old_index, old_len, ..
            } => {
                for i in old_index..old_index + old_len {
                    edits.insert(i, None);
                }
            }
            similar::DiffOp::Insert {
                old_index,
                new_index,
                new_len,
            } => {
                if old_index == old_lines.len() {
                    adds.extend(&new_lines[new_index..new_index + new_len]);
                } else {
                    tail_from = Some((old_index, new_index));
                }
            }
            similar::DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => {
                let paired = old_len.min(new_len);
                for k in 0..paired {
                    edits.insert(old_index + k, Some(new_lines[new_index + k]));
                }
                for k in paired..old_len {
                    edits.insert(old_index + k, None);
                }
                if new_len > old_len {
                    if old_index + old_len == old_lines.len() {
                        adds.extend(&new_lines[new_index + paired..new_index + new_len]);
                    } else {
                        tail_from = Some((old_index + paired, new_index + paired));
                    }
                }
            }
        }
    }
    if let Some((o, n)) = tail_from {
        // An insertion in the middle: rewrite the rest of the file in place (XCHG), then
        // delete or append the difference. Order is preserved, which is all that matters.
        adds.clear();
        edits.retain(|&i, _| i < o);
        let (old_rest, new_rest) = (old_lines.len() - o, new_lines.len() - n);
        for k in 0..old_rest.min(new_rest) {
            if old_lines[o + k] != new_lines[n + k] {
                edits.insert(o + k, Some(new_lines[n + k]));
            }
        }
        for k in new_rest..old_rest {
            edits.insert(o + k, None);
        }
        adds.extend(&new_lines[n + old_rest.min(new_rest)..]);
    }
    if !old_clean && edits.is_empty() {
        // Appending to a file without a final newline (or with CRLF) would not give `new`:
        // force ClamAV to rewrite it by exchanging the last line with itself.
        if let Some(last) = old_lines.len().checked_sub(1) {
            edits.insert(last, Some(old_lines[last]));
        }
    }
    let mut commands = vec![Command::Open(name.to_owned())];
    for (&i, &new) in &edits {
        let prefix = prefix_of(old_lines[i]);
        match (new, prefix) {
            (None, Some(prefix)) => commands.push(Command::Del {
                line: i + 1,
                prefix,
            }),
            // A replacement starting with whitespace would lose it to the argument split.
            (Some(text), Some(prefix)) if !text.starts_with(char::is_whitespace) => {
                commands.push(Command::Xchg {
                    line: i + 1,
                    prefix,
                    text: text.to_owned(),
                });
            }
            // No usable prefix (empty line, leading whitespace): rewrite the whole file.
            _ if new_lines.is_empty() => {
                return Err(inexpressible(
                    name,
                    "cannot empty a file whose lines have no prefix",
                ));
            }
            _ => return Ok(recreate(name, &new_lines, true)),
        }
    }
    commands.extend(adds.iter().map(|l| Command::Add((*l).to_owned())));
    commands.push(Command::Close);
    if new_lines.is_empty() && commands.len() == 2 {
        return Ok(Vec::new());
    }
    Ok(commands)
}

fn recreate(name: &str, lines: &[&str], unlink_first: bool) -> Vec<Command> {
    let mut commands = Vec::new();
    if unlink_first {
        commands.push(Command::Unlink(name.to_owned()));
    }
    commands.push(Command::Open(name.to_owned()));
    commands.extend(lines.iter().map(|l| Command::Add((*l).to_owned())));
    commands.push(Command::Close);
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(files: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        files
            .iter()
            .map(|(n, c)| ((*n).to_owned(), c.as_bytes().to_vec()))
            .collect()
    }

    fn run_script(
        files: &[(&str, &str)],
        script: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, Error> {
        let mut s = store(files);
        apply(&Script::parse(script.as_bytes())?, &mut s)?;
        Ok(s)
    }

    const X: &str = "l1 a\nl2 b\nl3 c\nl4 d\n";

    fn text(s: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
        String::from_utf8(s[name].clone()).unwrap()
    }

    // Each case below was observed with the real sigtool 1.4.6 `--run-cdiff`.
    #[test]
    fn matches_clamav_146() {
        let s = run_script(
            &[("x.ndb", X)],
            "OPEN x.ndb\nXCHG 3 l3 NEW3\nXCHG 1 l1 NEW1\nCLOSE\n",
        )
        .unwrap();
        assert_eq!(text(&s, "x.ndb"), "NEW1\nl2 b\nNEW3\nl4 d\n");
        let s = run_script(&[("x.ndb", X)], "OPEN x.ndb\nDEL 3 l3\nDEL 1 l1\nCLOSE\n").unwrap();
        assert_eq!(text(&s, "x.ndb"), "l2 b\nl4 d\n");
        let s = run_script(
            &[("x.ndb", X)],
            "OPEN x.ndb\nDEL 2 l2\nXCHG 2 l2 foo\nCLOSE\n",
        )
        .unwrap();
        assert_eq!(text(&s, "x.ndb"), "l1 a\nfoo\nl3 c\nl4 d\n");
        let s = run_script(&[("x.ndb", X)], "OPEN x.ndb\nADD \nADD   spaced  \nCLOSE\n").unwrap();
        assert_eq!(text(&s, "x.ndb"), format!("{X}\n  spaced  \n"));
        let s = run_script(&[("x.ndb", X)], "OPEN y.ndb\nADD hello\nCLOSE\n").unwrap();
        assert_eq!(text(&s, "y.ndb"), "hello\n");
        let s = run_script(&[("x.ndb", X)], "UNLINK x.ndb\n").unwrap();
        assert!(s.is_empty());
        let s = run_script(
            &[("x.ndb", X), ("y.ndb", "z\n")],
            "MOVE x.ndb y.ndb 2 l2 3 l3\n",
        )
        .unwrap();
        assert_eq!(text(&s, "x.ndb"), "l1 a\nl4 d\n");
        assert_eq!(text(&s, "y.ndb"), "z\nl2 b\nl3 c\n");
    }

    #[test]
    fn refusals_change_nothing() {
        for (script, want) in [
            ("MOVE x.ndb y.ndb 2 l2 3 l3\n", "does not exist"),
            ("OPEN x.ndb\nDEL 5 l5\nCLOSE\n", "beyond the end"),
            ("OPEN x.ndb\nDEL 2 zz\nCLOSE\n", "does not start with"),
            ("OPEN ../x.ndb\nCLOSE\n", "forbidden file name"),
            ("OPEN x.ndb\nOPEN x.ndb\n", "while x.ndb is open"),
            ("OPEN x.ndb\nADD y\n", "still open"),
            ("FOO x\n", "unknown command"),
            ("OPEN x.ndb\nXCHG 2 l2\nCLOSE\n", "missing new line"),
            ("\n", "unknown command"),
            ("OPEN ..\nCLOSE\n", "forbidden"),
            (
                "OPEN x.ndb\nXCHG 99999999999999999999999 l2 a\nCLOSE\n",
                "out of range",
            ),
        ] {
            let mut s = store(&[("x.ndb", X)]);
            let err = Script::parse(script.as_bytes())
                .and_then(|sc| apply(&sc, &mut s))
                .expect_err(script);
            assert!(err.to_string().contains(want), "{script:?}: {err}");
            assert_eq!(s, store(&[("x.ndb", X)]), "{script:?} changed the store");
        }
    }

    #[test]
    fn diff_handles_middle_inserts_and_odd_lines() {
        for (a, b) in [
            ("a\nb\nc\n", "a\nx\nb\nc\n"),
            ("a\nb\nc\n", "c\nb\na\n"),
            ("a\nb", "a\nb\nc\n"),
            ("a\r\nb\r\n", "a\nb\nc\n"),
            (" lead\nb\n", "b\n"),
            ("a\n\nb\n", "a\nb\n"),
            ("a\n", ""),
            ("a\nb\n", " x\nb\n"),
        ] {
            let old = store(&[("f.ndb", a)]);
            let new = store(&[("f.ndb", b)]);
            let script = diff(&old, &new).unwrap();
            let mut patched = old.clone();
            let text = script.to_text();
            apply(&Script::parse(text.as_bytes()).unwrap(), &mut patched).unwrap();
            assert_eq!(patched, new, "{a:?} -> {b:?} via\n{text}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A signature-file-like line: a token, then fields, sometimes with spaces,
        /// sometimes empty or starting with whitespace, sometimes non-ASCII.
        fn line() -> impl Strategy<Value = String> {
            prop_oneof![
                8 => "[A-Za-z][A-Za-z0-9.]{0,12}(:[0-9a-f*]{0,20}){0,4}",
                2 => "[A-Za-z0-9]{1,20}( [a-z]{0,6}){0,3}",
                1 => Just(String::new()),
                1 => " {1,3}[a-z]{0,5}",
                1 => "#[ -~]{0,20}",
                1 => "[a-zé]{1,18}",
            ]
        }

        fn file() -> impl Strategy<Value = Vec<String>> {
            proptest::collection::vec(line(), 0..25)
        }

        fn text(lines: &[String]) -> Vec<u8> {
            lines
                .iter()
                .flat_map(|l| format!("{l}\n").into_bytes())
                .collect()
        }

        /// Derives a new version of a file: deletions, changes, insertions anywhere.
        fn mutate(old: Vec<String>, edits: Vec<(usize, u8, String)>) -> Vec<String> {
            let mut new = old;
            for (at, op, l) in edits {
                let at = if new.is_empty() {
                    0
                } else {
                    at % (new.len() + 1)
                };
                match op % 3 {
                    0 if at < new.len() => {
                        new.remove(at);
                    }
                    1 if at < new.len() => new[at] = l,
                    _ => new.insert(at, l),
                }
            }
            new
        }

        /// The plain definition of applying edits: split into lines the ClamAV way, rewrite
        /// every line. `apply_edits` must give the same bytes and the same verdict.
        fn apply_edits_reference(
            bytes: &[u8],
            edits: &BTreeMap<usize, (String, Option<String>)>,
        ) -> Option<Vec<u8>> {
            let text = std::str::from_utf8(bytes).ok()?;
            let lines = lines_of(text);
            let mut out = Vec::new();
            for (at, (prefix, _)) in edits {
                if *at == 0 || *at > lines.len() || !lines[at - 1].starts_with(prefix.as_str()) {
                    return None;
                }
            }
            for (i, line) in lines.iter().enumerate() {
                match edits.get(&(i + 1)) {
                    Some((_, None)) => {}
                    Some((_, Some(new))) => {
                        out.extend_from_slice(new.as_bytes());
                        out.push(b'\n');
                    }
                    None => {
                        out.extend_from_slice(line.as_bytes());
                        out.push(b'\n');
                    }
                }
            }
            Some(out)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]
            #[test]
            fn apply_edits_matches_the_reference(
                raw in "([a-c]{0,3}(\r|\n|\r\n)?){0,12}",
                edits in proptest::collection::btree_map(0usize..14, ("[a-c]{0,2}", proptest::option::of("[x-z]{0,3}")), 0..5),
            ) {
                let fast = apply_edits("f", raw.as_bytes(), &edits).ok();
                let slow = apply_edits_reference(raw.as_bytes(), &edits);
                prop_assert_eq!(fast, slow, "input {:?} edits {:?}", raw, edits);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]
            /// Fed in pieces of any size (a line, a `\r\n` or a character split between two),
            /// the streaming editor gives the same bytes and verdict as the reference.
            #[test]
            fn edit_stream_in_pieces_matches_the_reference(
                raw in "([a-cé]{0,3}(\r|\n|\r\n)?){0,12}",
                edits in proptest::collection::btree_map(0usize..14, ("[a-c]{0,2}", proptest::option::of("[x-z]{0,3}")), 0..5),
                cuts in proptest::collection::vec(1usize..5, 0..30),
            ) {
                let bytes = raw.as_bytes();
                let streamed = (|| {
                    let mut e = EditStream::new("f", &edits, Vec::new()).ok()?;
                    let mut rest = bytes;
                    for n in cuts {
                        let (piece, tail) = rest.split_at(n.min(rest.len()));
                        e.write(piece).ok()?;
                        rest = tail;
                    }
                    e.write(rest).ok()?;
                    e.finish().ok()
                })();
                prop_assert_eq!(streamed, apply_edits_reference(bytes, &edits), "input {:?} edits {:?}", raw, edits);
            }
        }

        #[test]
        fn edit_stream_rejects_split_invalid_utf8() {
            let edits = Edits::new();
            let mut e = EditStream::new("f", &edits, Vec::new()).unwrap();
            e.write(b"a\xc3").unwrap();
            assert!(e.write(b"(\n").is_err());
            let mut e = EditStream::new("f", &edits, Vec::new()).unwrap();
            e.write(b"a\xc3").unwrap();
            e.write(b"\xa9\n").unwrap();
            assert_eq!(e.finish().unwrap(), "aé\n".as_bytes());
            let mut e = EditStream::new("f", &edits, Vec::new()).unwrap();
            e.write(b"a\xe2\x82").unwrap();
            assert!(e.finish().is_err());
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            #[test]
            fn apply_diff_is_identity(
                a in file(),
                b in file(),
                c in file(),
                edits in proptest::collection::vec((0usize..40, any::<u8>(), line()), 0..12),
                drop_c in any::<bool>(),
            ) {
                let old: BTreeMap<String, Vec<u8>> = [
                    ("x.info".to_owned(), text(&a)),
                    ("x.ndb".to_owned(), text(&b)),
                    ("x.hdb".to_owned(), text(&c)),
                ].into_iter().collect();
                let mut new = old.clone();
                new.insert("x.ndb".into(), text(&mutate(b.clone(), edits.clone())));
                new.insert("x.info".into(), text(&mutate(a.clone(), edits)));
                if drop_c {
                    new.remove("x.hdb");
                }
                if !a.is_empty() {
                    new.insert("x.ldb".into(), text(&a));
                }
                match diff(&old, &new) {
                    Ok(script) => {
                        let text = script.to_text();
                        let mut patched = old.clone();
                        apply(&Script::parse(text.as_bytes()).unwrap(), &mut patched)
                            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                        prop_assert_eq!(patched, new, "script:\n{}", text);
                    }
                    // Only a handful of differences are truly inexpressible.
                    Err(Error::Cdiff(CdiffError::Inexpressible(why))) => {
                        prop_assert!(why.contains("prefix") || why.contains("empty"), "{}", why);
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
        }
    }
}
