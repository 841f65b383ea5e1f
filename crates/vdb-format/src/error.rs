//! The error types of the format library.
//!
//! Every error says what failed and where: the member of the container, the line of the
//! `.info` manifest or the cdiff script, the byte offset. The sub-enums are matchable so that
//! callers can act on them (a bad signature drops a mirror, a truncated file is retried).

use std::io;

/// Everything that can go wrong while reading, verifying, building or patching a database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The 512-byte container header (or the header line of a `.info`) is malformed.
    #[error("header: {0}")]
    Header(HeaderError),
    /// The tar stream inside the container is malformed or hostile.
    #[error("tar stream at body offset {offset}: {kind}")]
    Tar {
        /// Offset of the offending tar header within the uncompressed body.
        offset: u64,
        /// What was wrong.
        kind: TarError,
    },
    /// The gzip layer of the body is corrupt.
    #[error("gzip body: {0}")]
    Gzip(io::Error),
    /// A line of the `<db>.info` manifest is malformed.
    #[error("{member} line {line}: {kind}")]
    Info {
        /// Name of the `.info` member.
        member: String,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        kind: InfoError,
    },
    /// A container member does not match what the `.info` manifest says about it.
    #[error("member {member}: {kind}")]
    Member {
        /// The member name.
        member: String,
        /// What was wrong.
        kind: MemberError,
    },
    /// A signature is missing, malformed or does not verify.
    #[error("{what}: {kind}")]
    Signature {
        /// Which signature: "CVD header signature", "`.info` DSIG", "cdiff signature".
        what: &'static str,
        /// What was wrong.
        kind: SignatureError,
    },
    /// The body's MD5 does not match the header's MD5 field.
    #[error("body MD5 is {actual}, header says {expected}")]
    Md5Mismatch {
        /// MD5 from the header.
        expected: String,
        /// MD5 computed over the body.
        actual: String,
    },
    /// The `.info` header line disagrees with the container header.
    #[error("container header and {member} disagree on {field}: {outer} vs {inner}")]
    HeaderMismatch {
        /// The `.info` member name.
        member: String,
        /// The field that differs.
        field: &'static str,
        /// Value in the 512-byte header.
        outer: String,
        /// Value in the `.info` header line.
        inner: String,
    },
    /// A `.cdiff` file or script is malformed or does not apply.
    #[error("{0}")]
    Cdiff(CdiffError),
    /// A configured size limit was exceeded (gzip bomb, oversized member).
    #[error("limit exceeded: {0}")]
    Limit(LimitError),
    /// The input cannot be expressed in the requested format.
    #[error("cannot build: {0}")]
    Build(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// A segment map is malformed, or a delta reconstruction does not add up.
    #[error("segments: {0}")]
    Segment(String),
    /// An I/O error from the underlying reader, writer or file store.
    #[error("I/O error while {context}: {error}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error (part of the message, so not repeated as a source).
        error: io::Error,
    },
}

// The wrapped errors are part of the message: implementing `From` by hand (not `#[from]`,
// which also marks a source) keeps `{:#}` chains from printing them twice.
impl From<HeaderError> for Error {
    fn from(e: HeaderError) -> Self {
        Self::Header(e)
    }
}

impl From<CdiffError> for Error {
    fn from(e: CdiffError) -> Self {
        Self::Cdiff(e)
    }
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, error: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            error,
        }
    }

    pub(crate) fn tar(offset: u64, kind: TarError) -> Self {
        Self::Tar { offset, kind }
    }

    pub(crate) fn member(member: &str, kind: MemberError) -> Self {
        Self::Member {
            member: member.to_owned(),
            kind,
        }
    }
}

/// Problems with the 512-byte header or a `.info` header line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than 512 bytes.
    #[error("truncated: {0} bytes, a header needs 512")]
    Truncated(usize),
    /// A byte that is not printable ASCII.
    #[error("non-printable byte 0x{byte:02x} at offset {offset}")]
    NonPrintable {
        /// Offset within the header.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// The text does not start with `ClamAV-VDB`.
    #[error("bad magic {0:?}, expected \"ClamAV-VDB\"")]
    Magic(String),
    /// Wrong number of `:`-separated fields.
    #[error("{0} fields, expected 9")]
    FieldCount(usize),
    /// A field is empty (ClamAV's tokenizer would collapse it).
    #[error("field {0} ({1}) is empty")]
    EmptyField(usize, &'static str),
    /// A numeric field is not a decimal number.
    #[error("field {index} ({name}) is not a decimal number: {value:?}")]
    Number {
        /// Field index.
        index: usize,
        /// Field name.
        name: &'static str,
        /// The text found.
        value: String,
    },
    /// The MD5 field is neither `X` nor 32 lowercase hex digits.
    #[error("MD5 field {0:?} is neither X nor 32 lowercase hex digits")]
    Md5(String),
    /// The dsig field contains characters outside ClamAV's base-64 alphabet.
    #[error("signature field {0:?} is not in ClamAV's base-64 alphabet")]
    Dsig(String),
    /// A text field contains `:` or is too long.
    #[error("field {0} ({1}) is invalid: {2}")]
    Text(usize, &'static str, String),
    /// The encoded header does not fit in 512 bytes.
    #[error("encoded header is {0} bytes, longer than 512")]
    TooLong(usize),
}

/// Problems with the tar layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// The stream ends inside a header or member.
    #[error("truncated (stream ends inside {0})")]
    Truncated(&'static str),
    /// A member name that is unsafe: empty, with `/`, `\`, `..`, NUL or control bytes.
    #[error("unsafe member name {0:?}")]
    UnsafeName(String),
    /// A member type other than a regular file.
    #[error("member {name:?} has type {typeflag:?}, only regular files are allowed")]
    Type {
        /// Member name.
        name: String,
        /// The type flag byte, as a character.
        typeflag: char,
    },
    /// The size field is not octal.
    #[error("member {0:?} has a malformed size field")]
    Size(String),
    /// The same name appears twice.
    #[error("member {0:?} appears twice")]
    Duplicate(String),
    /// The tar header checksum is wrong.
    #[error("member {0:?} has a bad header checksum")]
    Checksum(String),
}

/// Problems with one line of a `.info` manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InfoError {
    /// The manifest is empty or has no header line.
    #[error("missing header line")]
    Empty,
    /// Not valid UTF-8 / ASCII text.
    #[error("not text")]
    NotText,
    /// An entry line is not `name:size:sha256`.
    #[error("malformed entry {0:?}")]
    Entry(String),
    /// The same file is listed twice.
    #[error("{0} is listed twice")]
    Duplicate(String),
    /// A line after the `DSIG:` line.
    #[error("text after the DSIG line")]
    AfterDsig,
    /// A line without its terminating newline.
    #[error("line is not newline-terminated")]
    Unterminated,
}

/// A member disagrees with the `.info` manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    /// A member that `.info` does not list.
    #[error("not listed in .info")]
    NotListed,
    /// A file listed in `.info` that is not in the container.
    #[error("listed in .info but missing from the container")]
    Missing,
    /// Size differs from `.info`.
    #[error("size {actual} differs from .info ({expected})")]
    Size {
        /// From `.info`.
        expected: u64,
        /// Actual.
        actual: u64,
    },
    /// SHA-256 differs from `.info`.
    #[error("SHA-256 {actual} differs from .info ({expected})")]
    Sha256 {
        /// From `.info`.
        expected: String,
        /// Actual.
        actual: String,
    },
    /// A database member before the `.info` manifest.
    #[error("comes before the .info manifest")]
    BeforeInfo,
    /// No `<db>.info` member at all.
    #[error("no .info manifest in the container")]
    NoInfo,
    /// More than one `.info` member.
    #[error("second .info manifest")]
    SecondInfo,
    /// A plain (uncompressed) container must start with `COPYING`.
    #[error("plain tar container does not start with COPYING")]
    CopyingNotFirst,
}

/// Signature problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No signature where one is required.
    #[error("missing")]
    Missing,
    /// A character outside ClamAV's base-64 alphabet, or an empty or overlong string.
    #[error("malformed encoding")]
    Encoding,
    /// The decoded value does not fit the scheme (e.g. larger than 16 bytes for an MD5).
    #[error("decoded value too large for the scheme")]
    TooLarge,
    /// The signature does not verify under the key.
    #[error("does not verify under the {0} key")]
    Mismatch(String),
}

/// A configured limit was exceeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// One member is larger than allowed.
    #[error("member {name:?} is {size} bytes, the limit is {limit}")]
    MemberSize {
        /// Member name.
        name: String,
        /// Its declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The uncompressed body is larger than allowed (gzip bomb guard).
    #[error("uncompressed body exceeds {0} bytes")]
    Expansion(u64),
    /// Too many members.
    #[error("more than {0} members")]
    Members(usize),
    /// The `.info` manifest is larger than allowed.
    #[error(".info is {size} bytes, the limit is {limit}")]
    InfoSize {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A cdiff script is larger than allowed.
    #[error("cdiff script exceeds {0} bytes")]
    Script(u64),
}

/// Problems with a `.cdiff` file or script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CdiffError {
    /// The `ClamAV-Diff:N:len:` header is malformed.
    #[error("cdiff header: {0}")]
    Header(String),
    /// The file is shorter than ClamAV's 350-byte signature window.
    #[error("cdiff is {0} bytes; ClamAV requires at least 350")]
    TooShort(usize),
    /// The trailing `:signature` is missing or too long.
    #[error("cdiff signature trailer: {0}")]
    Trailer(String),
    /// The gzip stream of the script is corrupt.
    #[error("cdiff gzip stream: {0}")]
    Gzip(String),
    /// A script line is malformed or a command fails.
    #[error("cdiff script line {line}: {kind}")]
    Line {
        /// 1-based line number in the script.
        line: usize,
        /// What was wrong.
        kind: ScriptError,
    },
    /// The script ended with a file still open.
    #[error("cdiff script ends with {0} still open (no CLOSE)")]
    Unclosed(String),
    /// A difference that a cdiff script cannot express.
    #[error("cannot express in a cdiff: {0}")]
    Inexpressible(String),
}

/// One failing script command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// Not valid UTF-8.
    #[error("not UTF-8 text")]
    NotText,
    /// An unknown command word.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// Missing or malformed arguments.
    #[error("{command}: bad arguments: {reason}")]
    Arguments {
        /// The command word.
        command: &'static str,
        /// What is missing or malformed.
        reason: String,
    },
    /// A file name with forbidden characters (only alphanumerics and `.` are allowed).
    #[error("forbidden file name {0:?} (only letters, digits and '.')")]
    FileName(String),
    /// A command that needs an open file while none is open.
    #[error("{0} without an open file")]
    NoOpenFile(&'static str),
    /// A command that needs no open file while one is open.
    #[error("{command} while {open} is open")]
    FileOpen {
        /// The command word.
        command: &'static str,
        /// The open file.
        open: String,
    },
    /// A line number beyond the file, or a prefix that does not match.
    #[error("{command} {file} line {line}: {reason}")]
    NoMatch {
        /// The command word.
        command: &'static str,
        /// File name.
        file: String,
        /// Line number.
        line: usize,
        /// What did not match.
        reason: String,
    },
    /// The file a command needs does not exist.
    #[error("{command}: {file} does not exist")]
    NoSuchFile {
        /// The command word.
        command: &'static str,
        /// File name.
        file: String,
    },
    /// A file being rewritten is not valid UTF-8 (ClamAV reads lines as UTF-8).
    #[error("{0} is not UTF-8 text, ClamAV cannot patch it")]
    FileNotText(String),
    /// An I/O error of the file store.
    #[error("file store: {0}")]
    Store(String),
}
