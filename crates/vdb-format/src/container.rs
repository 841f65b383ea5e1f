//! Reading and verifying CVD / CLD / CUD containers in one streaming pass (spec §1.2–§1.6).
//!
//! Memory stays bounded: the body is hashed and decompressed as it streams, each member is
//! hashed as it is handed to the caller's sink, and only the `.info` manifest (capped by
//! [`Limits::max_info_size`]) is held in memory.

use std::collections::BTreeMap;
use std::io::{self, Read};

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::error::{Error, LimitError, MemberError, SignatureError};
use crate::header::{HEADER_LEN, Header};
use crate::info::Info;
use crate::keys::KeySet;
use crate::sigenc::{self, hex};
use crate::tar::{TarReader, read_full};

/// The three container flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Signed by the publisher: header MD5 + RSA signature, `.info` DSIG.
    Cvd,
    /// Built locally by an updater: no outer signature, `.info` DSIG required.
    Cld,
    /// Unsigned: header MD5, no signatures required.
    Cud,
}

impl Kind {
    /// The kind ClamAV infers from a file name's extension.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1;
        match ext.to_ascii_lowercase().as_str() {
            "cvd" => Some(Self::Cvd),
            "cld" => Some(Self::Cld),
            "cud" => Some(Self::Cud),
            _ => None,
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Cvd => "cvd",
            Self::Cld => "cld",
            Self::Cud => "cud",
        }
    }
}

/// Limits on hostile input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single member.
    pub max_member_size: u64,
    /// Largest uncompressed body (gzip bomb guard).
    pub max_body_size: u64,
    /// Most members.
    pub max_members: usize,
    /// Largest `.info` manifest.
    pub max_info_size: u64,
    /// Largest decompressed cdiff script.
    pub max_script_size: u64,
}

impl Default for Limits {
    /// Generous for real databases (daily.cvd unpacks to a few hundred MB), fatal for bombs.
    fn default() -> Self {
        Self {
            max_member_size: 1 << 30,
            max_body_size: 4 << 30,
            max_members: 4096,
            max_info_size: 4 << 20,
            max_script_size: 256 << 20,
        }
    }
}

/// One member as found in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: [u8; 32],
}

/// What a successful read established.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The container header.
    pub header: Header,
    /// The kind it was checked as.
    pub kind: Kind,
    /// Whether the body was gzip-compressed.
    pub compressed: bool,
    /// The parsed `.info`.
    pub info: Info,
    /// Every member in container order.
    pub members: Vec<Member>,
}

impl Verified {
    /// Whether the `.info` DSIG was present (and therefore verified): always true for CVD and
    /// CLD, false for a CUD built unsigned.
    pub fn info_signed(&self) -> bool {
        self.info.dsig.is_some()
    }
}

/// A sink receives each member's name and a reader over its bytes. It may read any amount;
/// the rest is drained and hashed. Bytes reach the sink *before* the member's hash has been
/// checked: a sink that writes files must stage them and discard everything on error.
pub type Sink<'a> = dyn FnMut(&str, &mut dyn Read) -> io::Result<()> + 'a;

/// Reads just the header of a container.
pub fn read_header(mut input: impl Read) -> Result<Header, Error> {
    let mut buf = [0u8; HEADER_LEN];
    let n = read_full(&mut input, &mut buf).map_err(|e| Error::io("reading the header", e))?;
    Ok(Header::parse(&buf[..n])?)
}

/// Verifies a container completely without keeping its members.
pub fn verify(
    input: impl Read,
    kind: Kind,
    keys: &KeySet,
    limits: &Limits,
) -> Result<Verified, Error> {
    read(input, kind, keys, limits, &mut |_, r| {
        io::copy(r, &mut io::sink()).map(drop)
    })
}

/// Reads and verifies a container, streaming every member through `sink`.
///
/// Checks, by kind: CVD: header MD5 and RSA signature, body MD5, `.info` DSIG, header vs
/// `.info`, every member against `.info`. CLD: `.info` DSIG, header vs `.info`, members.
/// CUD: body MD5, `.info` DSIG if present, header vs `.info`, members.
pub fn read(
    input: impl Read,
    kind: Kind,
    keys: &KeySet,
    limits: &Limits,
    sink: &mut Sink<'_>,
) -> Result<Verified, Error> {
    read_with(input, kind, Some(keys), limits, sink)
}

/// [`read`], with the signature checks only when `keys` is given. Without keys every other
/// check still runs (body MD5, header against `.info`, every member against `.info`): for a
/// caller that already trusts the file by a hash from a signed manifest (a mirror's delta
/// rebuild), which holds no ClamAV keys.
pub(crate) fn read_with(
    input: impl Read,
    kind: Kind,
    keys: Option<&KeySet>,
    limits: &Limits,
    sink: &mut Sink<'_>,
) -> Result<Verified, Error> {
    let mut input = HashingReader {
        inner: input,
        md5: Md5::new(),
    };
    let mut head = [0u8; HEADER_LEN];
    let n = read_full(&mut input, &mut head).map_err(|e| Error::io("reading the header", e))?;
    let header = Header::parse(&head[..n])?;
    // Only the body is hashed.
    input.md5 = Md5::new();
    match kind {
        Kind::Cvd => {
            let what = "CVD header signature";
            let md5 = header.md5.as_deref().ok_or(Error::Signature {
                what: "CVD header MD5",
                kind: SignatureError::Missing,
            })?;
            if let Some(keys) = keys {
                let dsig = header.dsig.as_deref().ok_or(Error::Signature {
                    what,
                    kind: SignatureError::Missing,
                })?;
                sigenc::verify_md5(md5, dsig, &keys.cvd)
                    .map_err(|kind| Error::Signature { what, kind })?;
            }
        }
        Kind::Cud => {
            if header.md5.is_none() {
                return Err(Error::Signature {
                    what: "CUD header MD5",
                    kind: SignatureError::Missing,
                });
            }
        }
        Kind::Cld => {}
    }

    let mut peek = [0u8; 7];
    let n = read_full(&mut input, &mut peek).map_err(|e| Error::io("reading the body", e))?;
    let compressed = &peek[..n] != b"COPYING";
    let body = io::Cursor::new(peek[..n].to_vec()).chain(&mut input);
    let outcome = if compressed {
        let mut gz = flate2::read::GzDecoder::new(body);
        let r = read_members(&mut gz, &header, kind, keys, limits, sink);
        // Drain the raw input so that the MD5 covers every byte of the file.
        let raw = gz.into_inner();
        let _ = io::copy(&mut raw.take(u64::MAX), &mut io::sink());
        r
    } else {
        let mut body = body;
        let r = read_members(&mut body, &header, kind, keys, limits, sink);
        let _ = io::copy(&mut body, &mut io::sink());
        r
    };
    if matches!(kind, Kind::Cvd | Kind::Cud) {
        let actual = hex(&std::mem::take(&mut input.md5).finalize());
        let expected = header.md5.clone().unwrap_or_default();
        if actual != expected {
            // A body that does not match its MD5 is the root cause of any later error.
            return Err(Error::Md5Mismatch { expected, actual });
        }
    }
    let (info, members) = outcome?;
    Ok(Verified {
        header,
        kind,
        compressed,
        info,
        members,
    })
}

fn read_members(
    body: &mut dyn Read,
    header: &Header,
    kind: Kind,
    keys: Option<&KeySet>,
    limits: &Limits,
    sink: &mut Sink<'_>,
) -> Result<(Info, Vec<Member>), Error> {
    let limited = LimitedReader {
        inner: body,
        left: limits.max_body_size,
        limit: limits.max_body_size,
    };
    let mut tar = TarReader::new(limited, limits.max_member_size, limits.max_members);
    let mut info: Option<Info> = None;
    let mut members = Vec::new();
    while let Some(entry) = tar.next_entry().map_err(|e| lift_limit(e, limits))? {
        if entry.name.ends_with(".info") {
            if info.is_some() {
                return Err(Error::member(&entry.name, MemberError::SecondInfo));
            }
            if entry.size > limits.max_info_size {
                return Err(Error::Limit(LimitError::InfoSize {
                    size: entry.size,
                    limit: limits.max_info_size,
                }));
            }
            let mut bytes = Vec::with_capacity(entry.size as usize);
            tar.read_to_end(&mut bytes)
                .map_err(|e| member_io(&entry.name, e, limits))?;
            let parsed = Info::parse(&bytes, &entry.name)?;
            check_info(header, &parsed, &entry.name, kind, keys)?;
            sink(&entry.name, &mut &bytes[..])
                .map_err(|e| Error::io(format!("writing {}", entry.name), e))?;
            members.push(Member {
                name: entry.name.clone(),
                size: entry.size,
                sha256: Sha256::digest(&bytes).into(),
            });
            info = Some(parsed);
            continue;
        }
        let expected = if entry.name == "COPYING" {
            None
        } else {
            let Some(info) = &info else {
                return Err(Error::member(&entry.name, MemberError::BeforeInfo));
            };
            Some(
                info.entry(&entry.name)
                    .ok_or_else(|| Error::member(&entry.name, MemberError::NotListed))?
                    .clone(),
            )
        };
        let mut hashing = HashingMember {
            inner: &mut tar,
            sha: Sha256::new(),
            size: 0,
        };
        sink(&entry.name, &mut hashing).map_err(|e| member_io(&entry.name, e, limits))?;
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| member_io(&entry.name, e, limits))?;
        let HashingMember { sha, size, .. } = hashing;
        let sha256: [u8; 32] = sha.finalize().into();
        if let Some(expected) = expected {
            if expected.size != size {
                return Err(Error::member(
                    &entry.name,
                    MemberError::Size {
                        expected: expected.size,
                        actual: size,
                    },
                ));
            }
            if expected.sha256 != sha256 {
                return Err(Error::member(
                    &entry.name,
                    MemberError::Sha256 {
                        expected: hex(&expected.sha256),
                        actual: hex(&sha256),
                    },
                ));
            }
        }
        debug_assert!(tar.member_done());
        members.push(Member {
            name: entry.name,
            size,
            sha256,
        });
    }
    let info = info.ok_or_else(|| Error::member("<db>.info", MemberError::NoInfo))?;
    for e in &info.entries {
        if !members.iter().any(|m| m.name == e.name) {
            return Err(Error::member(&e.name, MemberError::Missing));
        }
    }
    // Read past the end marker so that a bomb hidden after it is still bounded and a corrupt
    // gzip trailer (CRC) is still noticed.
    let mut rest = tar.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| body_io(e, limits))?;
    Ok((info, members))
}

fn check_info(
    header: &Header,
    info: &Info,
    member: &str,
    kind: Kind,
    keys: Option<&KeySet>,
) -> Result<(), Error> {
    match (kind, keys) {
        (_, None) => {}
        (Kind::Cvd | Kind::Cld, Some(keys)) => info.verify(&keys.info)?,
        (Kind::Cud, Some(keys)) => {
            if info.dsig.is_some() {
                info.verify(&keys.info)?;
            }
        }
    }
    let inner = &info.header;
    let fields: [(&'static str, String, String); 4] = [
        (
            "version",
            header.version.to_string(),
            inner.version.to_string(),
        ),
        (
            "signature count",
            header.signatures.to_string(),
            inner.signatures.to_string(),
        ),
        (
            "functionality level",
            header.flevel.to_string(),
            inner.flevel.to_string(),
        ),
        (
            "build seconds",
            format!("{:?}", header.build_secs),
            format!("{:?}", inner.build_secs),
        ),
    ];
    for (field, outer, inner) in fields {
        if outer != inner {
            return Err(Error::HeaderMismatch {
                member: member.to_owned(),
                field,
                outer,
                inner,
            });
        }
    }
    Ok(())
}

/// Turns the limited reader's error back into a typed limit error.
fn lift_limit(e: Error, limits: &Limits) -> Error {
    match e {
        Error::Gzip(io) => body_io(io, limits),
        other => other,
    }
}

fn body_io(e: io::Error, limits: &Limits) -> Error {
    if e.kind() == io::ErrorKind::FileTooLarge {
        Error::Limit(LimitError::Expansion(limits.max_body_size))
    } else {
        Error::Gzip(e)
    }
}

fn member_io(name: &str, e: io::Error, limits: &Limits) -> Error {
    match e.kind() {
        io::ErrorKind::FileTooLarge => Error::Limit(LimitError::Expansion(limits.max_body_size)),
        io::ErrorKind::UnexpectedEof => {
            Error::tar(0, crate::error::TarError::Truncated("member data"))
        }
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => Error::Gzip(e),
        _ => Error::io(format!("streaming member {name}"), e),
    }
}

struct HashingReader<R> {
    inner: R,
    md5: Md5,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        Ok(n)
    }
}

struct HashingMember<'a, R> {
    inner: &'a mut R,
    sha: Sha256,
    size: u64,
}

impl<R: Read> Read for HashingMember<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

struct LimitedReader<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // Allow a clean EOF exactly at the limit; anything more is a bomb.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!("uncompressed body exceeds {} bytes", self.limit),
                )),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads a whole container into memory as a name → bytes map (for patching and rebuilding).
pub fn read_to_map(
    input: impl Read,
    kind: Kind,
    keys: &KeySet,
    limits: &Limits,
) -> Result<(Verified, BTreeMap<String, Vec<u8>>), Error> {
    let mut files = BTreeMap::new();
    let verified = read(input, kind, keys, limits, &mut |name, r| {
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)?;
        files.insert(name.to_owned(), buf);
        Ok(())
    })?;
    Ok((verified, files))
}
