//! Tamper tests: single-byte changes to ClamAV's own signed fixtures must be refused for the
//! right reason, and hand-crafted hostile containers and cdiffs must be refused before they
//! can do harm.
//!
//! Each per-byte loop collects every unexpected outcome and asserts at the end that there
//! were none, printing the first few, so that one run shows the whole picture.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Range;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use md5::{Digest, Md5};
use vdb_format::build::{self, BuildSpec};
use vdb_format::cdiff::{self, Cdiff, Script};
use vdb_format::container::{self, Kind, Limits, Verified};
use vdb_format::{
    CdiffError, Error, HEADER_LEN, Header, HeaderError, InfoError, KeySet, LimitError, MemberError,
    ScriptError, SignatureError, TarError, is_safe_member_name,
};

use crate::fixtures::{fixture, signed_fixtures};

/// ClamAV's signature alphabet (spec §1.4), used to pick a replacement that stays encodable.
const SIG_ALPHABET: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn verify(bytes: &[u8], kind: Kind, keys: &KeySet) -> Result<Verified, Error> {
    container::verify(bytes, kind, keys, &Limits::default())
}

/// The tampered inputs of one test: how many were checked and which were not refused as
/// expected.
#[derive(Default)]
struct Tally {
    checked: usize,
    failures: Vec<String>,
}

impl Tally {
    /// Counts one tampered input; `failure` describes it when it was not refused as expected.
    fn check(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        self.checked += 1;
        if !ok {
            self.failures.push(failure());
        }
    }

    /// Fails the test with the first few collected failures.
    fn finish(self, what: &str) {
        let Self { checked, failures } = self;
        assert!(checked > 0, "{what}: nothing was checked");
        assert!(
            failures.is_empty(),
            "{what}: {} of {checked} tampered inputs were not refused as expected; first ones:\n{}",
            failures.len(),
            failures
                .iter()
                .take(8)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// `bytes` with the byte at `off` set to `byte`.
fn with_byte(bytes: &[u8], off: usize, byte: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[off] = byte;
    out
}

/// How a verification ended, for a failure message.
fn outcome<T>(r: &Result<T, Error>) -> String {
    format!("{:?}", r.as_ref().map(|_| "verified"))
}

/// Byte ranges of the `:`-separated fields of a 512-byte header, padding excluded.
fn header_fields(bytes: &[u8]) -> Vec<Range<usize>> {
    let text = &bytes[..HEADER_LEN];
    let end = text.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
    let mut fields = Vec::new();
    let mut start = 0;
    for (i, &b) in text[..end].iter().enumerate() {
        if b == b':' {
            fields.push(start..i);
            start = i + 1;
        }
    }
    fields.push(start..end);
    assert_eq!(fields.len(), 9, "fixture header does not have 9 fields");
    fields
}

/// The next character of `set` after `c` (cyclically); `c` must be in `set`.
fn next_in(set: &[u8], c: u8) -> u8 {
    let i = set
        .iter()
        .position(|&x| x == c)
        .unwrap_or_else(|| panic!("{:?} not in {:?}", c as char, String::from_utf8_lossy(set)));
    set[(i + 1) % set.len()]
}

const DIGITS: &[u8] = b"0123456789";
const HEX: &[u8] = b"0123456789abcdef";
/// Lowercase letters that are not hex digits (so that hex stays hex and words stay words).
const LOWER: &[u8] = b"ghijklmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A replacement of the same character class (digit, lowercase hex, letter), or `None` for
/// punctuation, whitespace and newlines.
fn same_class(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(next_in(DIGITS, c)),
        b'a'..=b'f' => Some(next_in(HEX, c)),
        b'g'..=b'z' => Some(next_in(LOWER, c)),
        b'A'..=b'Z' => Some(next_in(UPPER, c)),
        _ => None,
    }
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5_hex(bytes: &[u8]) -> String {
    lower_hex(&Md5::digest(bytes))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(data).read_to_end(&mut out).unwrap();
    out
}

/// One member of a tar stream as laid out in the bytes.
#[derive(Debug, Clone)]
struct TarLayout {
    name: String,
    header: Range<usize>,
    data: Range<usize>,
    padding: Range<usize>,
}

/// Walks a tar stream in ClamAV's dialect (stops at EOF or at a block starting with NUL).
fn tar_layout(tar: &[u8]) -> Vec<TarLayout> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 512 <= tar.len() && tar[off] != 0 {
        let block = &tar[off..off + 512];
        let name_end = block[..100].iter().position(|&b| b == 0).unwrap();
        let name = String::from_utf8(block[..name_end].to_vec()).unwrap();
        let size_text: String = block[124..136]
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| b as char)
            .collect();
        let size = usize::from_str_radix(size_text.trim(), 8).unwrap();
        let data = off + 512..off + 512 + size;
        let padded = size.div_ceil(512) * 512;
        out.push(TarLayout {
            name,
            header: off..off + 512,
            padding: data.end..off + 512 + padded,
            data,
        });
        off += 512 + padded;
    }
    out
}

/// A tar header in ClamAV's dialect: name, size as `%o`, typeflag, checksum `%06o\0`.
fn tar_header(name: &[u8], size: u64, typeflag: u8) -> [u8; 512] {
    let mut block = [0u8; 512];
    let n = name.len().min(100);
    block[..n].copy_from_slice(&name[..n]);
    let size_text = format!("{size:o}");
    block[124..124 + size_text.len()].copy_from_slice(size_text.as_bytes());
    block[156] = typeflag;
    block[148..156].copy_from_slice(b"        ");
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    block
}

/// A whole tar member: header, data, zero padding.
fn tar_member(name: &[u8], data: &[u8], typeflag: u8) -> Vec<u8> {
    let mut out = tar_header(name, data.len() as u64, typeflag).to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

/// A small unpacked database named `test`.
fn small_store() -> BTreeMap<String, Vec<u8>> {
    [
        ("COPYING", &b"Test database for tamper tests.\n"[..]),
        (
            "test.hdb",
            &b"44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"[..],
        ),
        (
            "test.ndb",
            &b"Tamper.Test-1:0:*:54616d706572\nTamper.Test-2:0:*:6576696c\n"[..],
        ),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_owned(), d.to_vec()))
    .collect()
}

fn cud_spec() -> BuildSpec {
    BuildSpec {
        db_name: "test".into(),
        kind: Kind::Cud,
        version: 7,
        flevel: 81,
        builder: "tamper".into(),
        build_secs: 1_700_000_000,
        signatures: None,
        engine_flevel: build::ENGINE_FLEVEL_146,
    }
}

/// A valid unsigned CUD built from `store`, split into its header and uncompressed tar.
fn cud_parts(store: &BTreeMap<String, Vec<u8>>) -> (Header, Vec<u8>) {
    let (bytes, header) = build::build(&cud_spec(), store, None).unwrap();
    verify(&bytes, Kind::Cud, &KeySet::official()).expect("the untampered CUD verifies");
    (header, gunzip(&bytes[HEADER_LEN..]))
}

/// Reassembles a CUD around an edited body, with a correct MD5 in the header so that
/// verification gets past the MD5 check and reaches the body's own problems.
fn cud_with_body(header: &Header, body: &[u8]) -> Vec<u8> {
    let header = Header {
        md5: Some(md5_hex(body)),
        dsig: None,
        ..header.clone()
    };
    let mut out = header.to_bytes().unwrap().to_vec();
    out.extend_from_slice(body);
    out
}

/// Like [`cud_with_body`], gzip-compressing `tar` first.
fn cud_with_tar(header: &Header, tar: &[u8]) -> Vec<u8> {
    cud_with_body(header, &gzip(tar))
}

/// Verifies through `container::read` with a sink that records every name it is handed.
fn read_recording(
    bytes: &[u8],
    kind: Kind,
    limits: &Limits,
) -> (Result<Verified, Error>, Vec<String>) {
    let mut seen = Vec::new();
    let r = container::read(bytes, kind, &KeySet::official(), limits, &mut |name, r| {
        seen.push(name.to_owned());
        std::io::copy(r, &mut std::io::sink()).map(drop)
    });
    (r, seen)
}

// ---------------------------------------------------------------------------------------------
// 1. Every protected header byte and every body byte of the signed CVDs
// ---------------------------------------------------------------------------------------------

/// What a changed header character must lead to.
fn header_change_ok(
    field: usize,
    replacement_same_class: bool,
    r: &Result<Verified, Error>,
) -> bool {
    match (field, replacement_same_class, r) {
        (0, _, Err(Error::Header(HeaderError::Magic(_)))) => true,
        // Digit -> other digit: parses, the signatures do not cover it, the `.info` does.
        (2..=4 | 8, true, Err(Error::HeaderMismatch { field: f, .. })) => {
            *f == Header::FIELD_NAMES[field]
        }
        (2..=4 | 8, false, Err(Error::Header(HeaderError::Number { index, .. }))) => {
            *index == field
        }
        // Hex -> other hex: the RSA signature no longer matches.
        (
            5,
            true,
            Err(Error::Signature {
                what: "CVD header signature",
                kind: SignatureError::Mismatch(_),
            }),
        ) => true,
        (5, false, Err(Error::Header(HeaderError::Md5(_)))) => true,
        // Alphabet -> other alphabet character: a different integer.
        (
            6,
            true,
            Err(Error::Signature {
                what: "CVD header signature",
                kind: SignatureError::Mismatch(_) | SignatureError::TooLarge,
            }),
        ) => true,
        (6, false, Err(Error::Header(HeaderError::Dsig(_)))) => true,
        _ => false,
    }
}

/// The replacements tried for a header character: one of the same class (still parses) and
/// one that breaks the field's syntax, both printable and not `:`.
fn header_replacements(field: usize, c: u8) -> [(u8, bool); 2] {
    match field {
        0 => [(same_class(c).unwrap_or(b'x'), true), (b'!', false)],
        2..=4 | 8 => [(next_in(DIGITS, c), true), (b'x', false)],
        5 => [(next_in(HEX, c), true), (b'g', false)],
        6 => [(next_in(SIG_ALPHABET, c), true), (b'!', false)],
        _ => unreachable!("field {field} is not protected"),
    }
}

#[test]
fn every_protected_header_byte_of_every_cvd_is_refused() {
    let keys = KeySet::official();
    let mut tally = Tally::default();
    let mut per_file = Vec::new();
    for (_, name, original) in signed_fixtures("cvd", 1..=6) {
        verify(&original, Kind::Cvd, &keys).expect("untampered fixture verifies");
        let fields = header_fields(&original);
        let before = tally.checked;
        for field in [0, 2, 3, 4, 5, 6, 8] {
            for off in fields[field].clone() {
                for (replacement, same) in header_replacements(field, original[off]) {
                    assert_ne!(replacement, original[off]);
                    let r = verify(&with_byte(&original, off, replacement), Kind::Cvd, &keys);
                    tally.check(header_change_ok(field, same, &r), || {
                        format!(
                            "{name} field {field} ({}) offset {off}: {:?} -> {:?}: {}",
                            Header::FIELD_NAMES[field],
                            original[off] as char,
                            replacement as char,
                            outcome(&r)
                        )
                    });
                }
            }
        }
        // The separators and the padding are protected too: a merged field or text in the
        // padding breaks the parse or a later comparison.
        let text_end = fields[8].end;
        let separators = fields.windows(2).map(|w| w[0].end);
        for off in separators.chain(text_end..HEADER_LEN) {
            for replacement in [b'x', b'7', b':'] {
                if replacement == original[off] {
                    continue;
                }
                let r = verify(&with_byte(&original, off, replacement), Kind::Cvd, &keys);
                let ok = if off >= text_end {
                    // Text after the build seconds: not a number any more, or a tenth field.
                    match (replacement, &r) {
                        (b':', Err(Error::Header(HeaderError::FieldCount(10)))) => true,
                        (b'7', Err(Error::HeaderMismatch { field, .. })) => {
                            off == text_end && *field == "build seconds"
                        }
                        (_, Err(Error::Header(HeaderError::Number { index: 8, .. }))) => {
                            off != text_end || replacement == b'x'
                        }
                        _ => false,
                    }
                } else {
                    matches!(
                        r,
                        Err(Error::Header(_)
                            | Error::HeaderMismatch { .. }
                            | Error::Signature { .. })
                    )
                };
                tally.check(ok, || {
                    format!(
                        "{name} separator/padding offset {off}: -> {:?}: {}",
                        replacement as char,
                        outcome(&r)
                    )
                });
            }
        }
        per_file.push(format!("{name}: {}", tally.checked - before));
    }
    println!("header changes checked: {}", per_file.join(", "));
    tally.finish("CVD header");
}

#[test]
fn every_body_bit_flip_of_test_1_and_test_6_is_an_md5_mismatch() {
    let keys = KeySet::official();
    let mut tally = Tally::default();
    for name in ["test-1.cvd", "test-6.cvd"] {
        let original = fixture(name);
        let header = Header::parse(&original).unwrap();
        let md5 = header.md5.clone().unwrap();
        for off in HEADER_LEN..original.len() {
            // Rotate through the bit positions so that every bit position is exercised.
            let bytes = with_byte(&original, off, original[off] ^ (1 << (off % 8)));
            let r = verify(&bytes, Kind::Cvd, &keys);
            let ok = matches!(&r, Err(Error::Md5Mismatch { expected, actual })
                if *expected == md5 && *actual == md5_hex(&bytes[HEADER_LEN..]));
            tally.check(ok, || {
                format!("{name} offset {off} bit {}: {}", off % 8, outcome(&r))
            });
        }
        println!("{name}: {} body bit flips", original.len() - HEADER_LEN);
    }
    tally.finish("CVD body");
}

// ---------------------------------------------------------------------------------------------
// 2. The gap: human build time and builder are not covered by anything
// ---------------------------------------------------------------------------------------------

#[test]
fn build_time_and_builder_are_not_covered_by_any_signature() {
    let keys = KeySet::official();
    let mut tally = Tally::default();
    for (_, name, original) in signed_fixtures("cvd", 1..=6) {
        let fields = header_fields(&original);
        for field in [1, 7] {
            for off in fields[field].clone() {
                for replacement in [b'Z', b'0', b' ', b'~', b'-', b'.'] {
                    if replacement == original[off] {
                        continue;
                    }
                    let bytes = with_byte(&original, off, replacement);
                    let want = String::from_utf8(bytes[fields[field].clone()].to_vec()).unwrap();
                    match verify(&bytes, Kind::Cvd, &keys) {
                        Ok(ok) => {
                            let got = if field == 1 {
                                &ok.header.build_time
                            } else {
                                &ok.header.builder
                            };
                            tally.check(*got == want, || {
                                format!("{name} offset {off}: parsed {got:?}")
                            });
                        }
                        Err(e) => tally.check(false, || {
                            format!(
                                "{name} field {field} offset {off} -> {:?}: unexpectedly refused: {e}",
                                replacement as char
                            )
                        }),
                    }
                }
            }
        }
    }
    tally.finish("unprotected header text");
}

// ---------------------------------------------------------------------------------------------
// 3. Every byte of every cdiff
// ---------------------------------------------------------------------------------------------

#[test]
fn every_byte_of_every_cdiff_is_protected() {
    let keys = KeySet::official();
    let mut tally = Tally::default();
    for (_, name, original) in signed_fixtures("cdiff", 2..=6) {
        let parsed = Cdiff::parse(&original, 1 << 20).unwrap();
        parsed.verify(&keys.cdiff).unwrap();
        // Layout: "ClamAV-Diff:N:len:" gzip ":" signature.
        let gz_start = original
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b':')
            .nth(2)
            .unwrap()
            .0
            + 1;
        let sig_colon = original.iter().rposition(|&b| b == b':').unwrap();
        assert_eq!(&original[sig_colon + 1..], parsed.dsig.as_bytes());
        let before = tally.checked;
        for off in 0..original.len() {
            for mask in [0x01u8, 0x80, 0x20] {
                let bytes = with_byte(&original, off, original[off] ^ mask);
                let r = Cdiff::parse(&bytes, 1 << 20).and_then(|c| c.verify(&keys.cdiff));
                let signature = matches!(
                    r,
                    Err(Error::Signature {
                        what: "cdiff signature",
                        kind: SignatureError::Mismatch(_) | SignatureError::TooLarge
                    })
                );
                let (part, ok) = if off < gz_start {
                    let header = matches!(r, Err(Error::Cdiff(CdiffError::Header(_))));
                    ("header", signature || header)
                } else if off < sig_colon {
                    let gzip = matches!(
                        r,
                        Err(Error::Cdiff(CdiffError::Gzip(_)) | Error::Limit(LimitError::Script(_)))
                    );
                    ("gzip", signature || gzip)
                } else {
                    let trailer = matches!(
                        r,
                        Err(Error::Cdiff(CdiffError::Trailer(_))
                            | Error::Signature {
                                what: "cdiff signature",
                                kind: SignatureError::Encoding
                            })
                    );
                    ("trailer", signature || trailer)
                };
                tally.check(ok, || {
                    format!("{name} offset {off} ^{mask:#04x} ({part}): {}", outcome(&r))
                });
            }
        }
        let count = tally.checked - before;
        println!("{name}: {} bytes, {count} flips", original.len());
    }
    tally.finish("cdiff");
}

#[test]
fn cdiff_declared_length_is_not_enforced_but_is_signed() {
    let keys = KeySet::official();
    for (_, name, original) in signed_fixtures("cdiff", 2..=6) {
        let good = Cdiff::parse(&original, 1 << 20).unwrap();
        assert_eq!(good.declared_len, good.script.len() as u64);
        // "ClamAV-Diff:N:" then the length digits.
        let len_start = original.iter().position(|&b| b == b':').unwrap() + 1;
        let len_start = len_start
            + original[len_start..]
                .iter()
                .position(|&b| b == b':')
                .unwrap()
            + 1;
        let bytes = with_byte(&original, len_start, next_in(DIGITS, original[len_start]));
        let tampered = Cdiff::parse(&bytes, 1 << 20).expect("the length is not enforced");
        assert_ne!(tampered.declared_len, good.declared_len);
        assert_eq!(tampered.script, good.script);
        assert!(
            matches!(
                tampered.verify(&keys.cdiff),
                Err(Error::Signature {
                    kind: SignatureError::Mismatch(_),
                    ..
                })
            ),
            "{name}: a changed length must break the signature"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. CLDs: member data, the .info entries, the DSIG line
// ---------------------------------------------------------------------------------------------

const CLD_PLAIN: &str = "derived/test-6.from-cdiffs.cld";
const CLD_GZ: &str = "derived/test-6.from-cdiffs.gz.cld";

/// A CLD fixture taken apart: its header, its uncompressed tar and whether the body is gzip.
struct Cld {
    name: &'static str,
    header: Vec<u8>,
    tar: Vec<u8>,
    compress: bool,
    keys: KeySet,
}

impl Cld {
    /// Verifies the CLD rebuilt around `tar`.
    fn verify_tar(&self, tar: &[u8]) -> Result<Verified, Error> {
        let bytes = cld_from(&self.header, tar, self.compress);
        verify(&bytes, Kind::Cld, &self.keys)
    }

    /// Verifies the CLD with the byte at `off` of its tar set to `byte`.
    fn verify_with(&self, off: usize, byte: u8) -> Result<Verified, Error> {
        self.verify_tar(&with_byte(&self.tar, off, byte))
    }

    /// The `.info` member and the offset of its `DSIG:` line in the member's data.
    fn info(&self) -> (TarLayout, usize) {
        let info = tar_layout(&self.tar)[1].clone();
        let text = &self.tar[info.data.clone()];
        let dsig_line = text.windows(6).position(|w| w == b"\nDSIG:").unwrap() + 1;
        (info, dsig_line)
    }
}

/// The two CLD fixtures, plain and gzip.
fn cld_fixtures() -> [Cld; 2] {
    let plain = fixture(CLD_PLAIN);
    let gz = fixture(CLD_GZ);
    let gz_tar = gunzip(&gz[HEADER_LEN..]);
    assert_eq!(gz_tar, plain[HEADER_LEN..], "both CLDs carry the same tar");
    let cld = |name, bytes: &[u8], tar, compress| Cld {
        name,
        header: bytes[..HEADER_LEN].to_vec(),
        tar,
        compress,
        keys: KeySet::official(),
    };
    [
        cld(CLD_PLAIN, &plain, plain[HEADER_LEN..].to_vec(), false),
        cld(CLD_GZ, &gz, gz_tar, true),
    ]
}

fn cld_from(header: &[u8], tar: &[u8], compress: bool) -> Vec<u8> {
    let mut out = header.to_vec();
    if compress {
        out.extend_from_slice(&gzip(tar));
    } else {
        out.extend_from_slice(tar);
    }
    out
}

#[test]
fn cld_member_data_flips_are_sha256_mismatches() {
    let mut tally = Tally::default();
    for cld in cld_fixtures() {
        cld.verify_tar(&cld.tar).unwrap();
        let layout = tar_layout(&cld.tar);
        assert_eq!(layout[0].name, "COPYING");
        assert_eq!(layout[1].name, "test.info");
        let before = tally.checked;
        for member in layout.iter().skip(2) {
            for off in member.data.clone() {
                let r = cld.verify_with(off, cld.tar[off] ^ (1 << (off % 8)));
                let ok = matches!(&r, Err(Error::Member {
                        member: m,
                        kind: MemberError::Sha256 { .. },
                    }) if *m == member.name);
                tally.check(ok, || {
                    format!(
                        "{} {} data offset {off}: {}",
                        cld.name,
                        member.name,
                        outcome(&r)
                    )
                });
            }
        }
        println!("{}: {} member data flips", cld.name, tally.checked - before);
    }
    tally.finish("CLD member data");
}

#[test]
fn cld_info_dsig_line_flips_are_signature_errors() {
    let mut tally = Tally::default();
    for cld in cld_fixtures() {
        let (info, dsig_line) = cld.info();
        let payload = info.data.start + dsig_line + 5..info.data.end - 1;
        assert_eq!(cld.tar[payload.end], b'\n');
        let before = tally.checked;
        for off in payload.clone() {
            let c = cld.tar[off];
            for (replacement, encodable) in [(next_in(SIG_ALPHABET, c), true), (b'!', false)] {
                let r = cld.verify_with(off, replacement);
                let ok = matches!(
                    (&r, encodable),
                    (
                        Err(Error::Signature {
                            what: "`.info` DSIG",
                            kind: SignatureError::Mismatch(_) | SignatureError::TooLarge,
                        }),
                        true,
                    ) | (
                        Err(Error::Signature {
                            what: "`.info` DSIG",
                            kind: SignatureError::Encoding,
                        }),
                        false,
                    )
                );
                tally.check(ok, || {
                    format!(
                        "{} DSIG payload offset {off} -> {:?}: {}",
                        cld.name,
                        replacement as char,
                        outcome(&r)
                    )
                });
            }
        }
        // "DSIG:" itself and the final newline: the line stops being a DSIG line, or the
        // signature gets a foreign character.
        for off in (payload.start - 5..payload.start).chain([payload.end]) {
            let r = cld.verify_with(off, cld.tar[off] ^ 0x01);
            let ok = matches!(
                r,
                Err(Error::Signature { .. }
                    | Error::Info {
                        kind: InfoError::Entry(_),
                        ..
                    })
            );
            tally.check(ok, || {
                format!("{} DSIG marker offset {off}: {}", cld.name, outcome(&r))
            });
        }
        println!("{}: {} DSIG line changes", cld.name, tally.checked - before);
    }
    tally.finish("CLD .info DSIG line");
}

#[test]
fn cld_info_entry_and_header_line_changes_break_the_dsig() {
    let mut tally = Tally::default();
    for cld in cld_fixtures() {
        let (info, dsig_line) = cld.info();
        let text = &cld.tar[info.data.clone()];
        let first_nl = text.iter().position(|&b| b == b'\n').unwrap();
        let before = tally.checked;
        for rel in 0..dsig_line {
            let off = info.data.start + rel;
            let in_header = rel <= first_nl;
            // (a) A change that keeps the line parseable: only the DSIG can catch it.
            if let Some(replacement) = same_class(cld.tar[off]) {
                let r = cld.verify_with(off, replacement);
                let ok = match &r {
                    Err(Error::Signature {
                        what: "`.info` DSIG",
                        kind: SignatureError::Mismatch(_),
                    }) => true,
                    // A renamed entry can collide with another one ("test.mdb" -> "test.ndb").
                    Err(Error::Info {
                        kind: InfoError::Duplicate(_),
                        ..
                    }) => !in_header,
                    // The header line's magic and its `X` placeholders have a fixed syntax.
                    Err(Error::Header(HeaderError::Magic(_) | HeaderError::Md5(_))) => in_header,
                    _ => false,
                };
                tally.check(ok, || {
                    format!(
                        "{} .info offset {rel} {:?} -> {:?}: {}",
                        cld.name,
                        cld.tar[off] as char,
                        replacement as char,
                        outcome(&r)
                    )
                });
            }
            // (b) An arbitrary bit flip: refused as a signature or syntax error.
            let r = cld.verify_with(off, cld.tar[off] ^ 0x01);
            let ok = matches!(
                r,
                Err(Error::Signature {
                    what: "`.info` DSIG",
                    ..
                } | Error::Info { .. }
                    | Error::Header(_))
            );
            tally.check(ok, || {
                format!("{} .info offset {rel} ^0x01: {}", cld.name, outcome(&r))
            });
        }
        println!(
            "{}: {} .info text changes",
            cld.name,
            tally.checked - before
        );
    }
    tally.finish("CLD .info text");
}

#[test]
fn cld_tar_headers_are_checked_but_copying_and_padding_are_not() {
    let [cld, _] = cld_fixtures();
    let tar = &cld.tar;
    let layout = tar_layout(tar);
    let mut tally = Tally::default();
    // Every byte of every member header: the header checksum (or the name, type and size
    // rules) catches it, although ClamAV itself ignores the checksum. Two exceptions:
    // - the first 7 bytes of the body are how a plain tar is recognised (`COPYING`): changed,
    //   the body is taken for gzip and refused as such;
    // - the bytes of the checksum field after its NUL terminator are neither parsed nor
    //   summed (the sum counts the field as 8 spaces): changing them is harmless and accepted.
    let mut ignored = Vec::new();
    for member in &layout {
        let chk = member.header.start + 148..member.header.start + 156;
        let chk_nul = chk.start + tar[chk.clone()].iter().position(|&b| b == 0).unwrap();
        for off in member.header.clone() {
            let r = cld.verify_with(off, tar[off] ^ 0x01);
            let ok = if off < 7 {
                matches!(r, Err(Error::Gzip(_)))
            } else if off > chk_nul && off < chk.end {
                ignored.push(off - member.header.start);
                r.is_ok()
            } else {
                matches!(r, Err(Error::Tar { .. }))
            };
            tally.check(ok, || {
                format!(
                    "{} header byte {}: {}",
                    member.name,
                    off - member.header.start,
                    outcome(&r)
                )
            });
        }
    }
    let checked = tally.checked;
    tally.finish("CLD tar headers");
    println!(
        "{CLD_PLAIN}: {checked} tar header flips; accepted (checksum field after its NUL): {} \
         offsets, e.g. {:?}",
        ignored.len(),
        &ignored[..ignored.len().min(3)]
    );
    assert!(
        ignored.len() <= layout.len(),
        "one trailing checksum byte per header at most"
    );

    // Documented gaps (ClamAV behaves the same): COPYING is listed nowhere and a CLD has no
    // outer MD5, and padding bytes are skipped unread. Neither reaches the engine as a
    // signature.
    let copying = &layout[0];
    assert_eq!(copying.name, "COPYING");
    for off in copying.data.clone().step_by(97) {
        cld.verify_with(off, tar[off] ^ 0x01)
            .unwrap_or_else(|e| panic!("COPYING offset {off}: {e}"));
    }
    for member in &layout {
        for off in member.padding.clone().step_by(31) {
            cld.verify_with(off, b'A')
                .unwrap_or_else(|e| panic!("{} padding offset {off}: {e}", member.name));
        }
    }
}

#[test]
fn gz_cld_raw_byte_flips_never_change_content_unnoticed() {
    let keys = KeySet::official();
    let original = fixture(CLD_GZ);
    let tar = gunzip(&original[HEADER_LEN..]);
    let mut tally = Tally::default();
    let mut accepted = Vec::new();
    for off in HEADER_LEN..original.len() {
        let bytes = with_byte(&original, off, original[off] ^ (1 << (off % 8)));
        let ok = match verify(&bytes, Kind::Cld, &keys) {
            Err(_) => true,
            Ok(_) => {
                // Only acceptable if the content is exactly the same (gzip header metadata).
                let mut out = Vec::new();
                accepted.push(off - HEADER_LEN);
                GzDecoder::new(&bytes[HEADER_LEN..])
                    .read_to_end(&mut out)
                    .is_ok()
                    && out == tar
            }
        };
        tally.check(ok, || {
            format!(
                "gzip offset {} bit {}: verified with different content",
                off - HEADER_LEN,
                off % 8
            )
        });
    }
    println!(
        "{CLD_GZ}: {} raw flips, accepted with identical content at gzip offsets {accepted:?}",
        tally.checked
    );
    tally.finish("gz CLD raw bytes");
}

// ---------------------------------------------------------------------------------------------
// 5. Hostile containers
// ---------------------------------------------------------------------------------------------

#[test]
fn truncated_and_empty_containers() {
    let keys = KeySet::official();
    let cvd = fixture("test-6.cvd");
    for kind in [Kind::Cvd, Kind::Cld, Kind::Cud] {
        for len in [0, 1, 100, 511] {
            assert!(
                matches!(
                    verify(&cvd[..len], kind, &keys),
                    Err(Error::Header(HeaderError::Truncated(n))) if n == len
                ),
                "{kind:?} truncated at {len}"
            );
        }
    }
    // A correctly signed header with no body: the MD5 of nothing does not match.
    match verify(&cvd[..HEADER_LEN], Kind::Cvd, &keys) {
        Err(Error::Md5Mismatch { actual, .. }) => assert_eq!(actual, md5_hex(b"")),
        other => panic!("header-only CVD: {:?}", other.map(|_| "verified")),
    }
    // A CLD header with no body: no MD5 to check. An empty body does not start with
    // `COPYING`, so it is taken for gzip, and an empty gzip stream is an error.
    let cld = fixture(CLD_PLAIN);
    let r = verify(&cld[..HEADER_LEN], Kind::Cld, &keys);
    assert!(
        matches!(&r, Err(Error::Gzip(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "header-only CLD: {:?}",
        r.map(|_| "verified")
    );
    // A CLD whose body is a valid but empty tar, plain (just COPYING) or gzip (nothing at
    // all): no `.info` manifest.
    let copying = tar_layout(&cld[HEADER_LEN..])[0].clone();
    let only_copying = &cld[HEADER_LEN..HEADER_LEN + copying.padding.end];
    for (what, body) in [
        ("plain, COPYING only", only_copying.to_vec()),
        ("gzip, COPYING only", gzip(only_copying)),
        ("gzip, empty tar", gzip(b"")),
        ("gzip, end block only", gzip(&[0u8; 1024])),
    ] {
        let r = verify(
            &cld_from(&cld[..HEADER_LEN], &body, false),
            Kind::Cld,
            &keys,
        );
        assert!(
            matches!(
                r,
                Err(Error::Member {
                    kind: MemberError::NoInfo,
                    ..
                })
            ),
            "CLD {what}: {:?}",
            r.map(|_| "verified")
        );
    }
    // A CLD cut inside a member.
    let r = verify(&cld[..HEADER_LEN + 512 + 100], Kind::Cld, &keys);
    assert!(
        matches!(
            r,
            Err(Error::Tar {
                kind: TarError::Truncated(_),
                ..
            })
        ),
        "CLD cut inside COPYING: {:?}",
        r.map(|_| "verified")
    );
    // A CVD cut inside its gzip stream: the MD5 catches it first.
    let r = verify(&cvd[..cvd.len() - 100], Kind::Cvd, &keys);
    assert!(matches!(r, Err(Error::Md5Mismatch { .. })), "{r:?}");
}

#[test]
fn non_printable_header_bytes_are_refused() {
    let keys = KeySet::official();
    let cvd = fixture("test-6.cvd");
    let text_end = header_fields(&cvd)[8].end;
    for off in [text_end, 300, 511] {
        for byte in [0u8, b'\n', b'\t', 0x7f, 0x80, 0xff] {
            let mut bytes = cvd.clone();
            bytes[off] = byte;
            let r = verify(&bytes, Kind::Cvd, &keys);
            assert!(
                matches!(
                    r,
                    Err(Error::Header(HeaderError::NonPrintable { offset, byte: b }))
                        if offset == off && b == byte
                ),
                "byte {byte:#04x} at {off}: {:?}",
                r.map(|_| "verified")
            );
        }
    }
    // An all-NUL padding, as a C writer that forgot the spaces would produce.
    let mut bytes = cvd.clone();
    bytes[text_end..HEADER_LEN].fill(0);
    assert!(matches!(
        verify(&bytes, Kind::Cvd, &keys),
        Err(Error::Header(HeaderError::NonPrintable { offset, byte: 0 })) if offset == text_end
    ));
}

const SAFE_NAMES: [&str; 4] = ["COPYING", "test.info", "test.hdb", "test.ndb"];

#[test]
fn unsafe_member_names_are_refused_and_never_reach_the_sink() {
    let (header, tar) = cud_parts(&small_store());
    let long = [b'a'; 100];
    let names: [&[u8]; 10] = [
        b"../evil",
        b"a/b",
        b"/etc/passwd",
        b"..",
        b".hidden",
        b"a\\b",
        b"x\x01y",
        "é.ndb".as_bytes(),
        b"test.ndb\xff",
        &long,
    ];
    for name in names {
        let member = tar_member(name, b"evil payload\n", 0);
        let front = [member.as_slice(), &tar].concat();
        let back = [tar.as_slice(), &member].concat();
        let shown = String::from_utf8_lossy(&name[..name.len().min(100)]).into_owned();
        for (where_, body, compress) in [
            ("first, gzip", &front, true),
            ("last, gzip", &back, true),
            ("last, plain", &back, false),
        ] {
            let bytes = if compress {
                cud_with_tar(&header, body)
            } else {
                cud_with_body(&header, body)
            };
            let expect_offset = if where_.starts_with("first") {
                0
            } else {
                tar.len() as u64
            };
            let r = verify(&bytes, Kind::Cud, &KeySet::official());
            assert!(
                matches!(
                    &r,
                    Err(Error::Tar { offset, kind: TarError::UnsafeName(n) })
                        if *n == shown && *offset == expect_offset
                ),
                "{shown:?} ({where_}): {:?}",
                r.map(|_| "verified")
            );
            let (r, seen) = read_recording(&bytes, Kind::Cud, &Limits::default());
            assert!(
                matches!(
                    r,
                    Err(Error::Tar {
                        kind: TarError::UnsafeName(_),
                        ..
                    })
                ),
                "{shown:?} ({where_}) via read"
            );
            assert!(
                seen.iter()
                    .all(|s| is_safe_member_name(s) && SAFE_NAMES.contains(&s.as_str())),
                "{shown:?} ({where_}): the sink saw {seen:?}"
            );
            if where_.starts_with("first") {
                assert!(seen.is_empty(), "nothing precedes the bad member: {seen:?}");
            }
        }
    }
}

#[test]
fn non_regular_members_are_refused() {
    let (header, tar) = cud_parts(&small_store());
    for typeflag in [b'5', b'1', b'2', b'3', b'6', b'7', b'L', b'x', b'g'] {
        let member = tar_member(b"test.dir", b"", typeflag);
        for body in [
            [tar.as_slice(), &member].concat(),
            [member.as_slice(), &tar].concat(),
        ] {
            let bytes = cud_with_tar(&header, &body);
            let r = verify(&bytes, Kind::Cud, &KeySet::official());
            assert!(
                matches!(
                    &r,
                    Err(Error::Tar { kind: TarError::Type { name, typeflag: t }, .. })
                        if name == "test.dir" && *t == typeflag as char
                ),
                "typeflag {:?}: {:?}",
                typeflag as char,
                r.map(|_| "verified")
            );
            let (_, seen) = read_recording(&bytes, Kind::Cud, &Limits::default());
            assert!(!seen.iter().any(|s| s == "test.dir"), "{seen:?}");
        }
    }
}

#[test]
fn other_hostile_tar_streams_are_refused() {
    let keys = KeySet::official();
    let (header, tar) = cud_parts(&small_store());
    let layout = tar_layout(&tar);
    let names: Vec<&str> = layout.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["COPYING", "test.info", "test.hdb", "test.ndb"]);
    let member = |name: &str| {
        &tar[layout.iter().find(|m| m.name == name).unwrap().header.start
            ..layout.iter().find(|m| m.name == name).unwrap().padding.end]
    };
    let check = |what: &str, body: Vec<u8>, ok: &dyn Fn(&Error) -> bool| {
        let r = verify(&cud_with_tar(&header, &body), Kind::Cud, &keys);
        match r {
            Err(e) if ok(&e) => {}
            other => panic!("{what}: {:?}", other.map(|_| "verified")),
        }
    };
    // The same member twice.
    check(
        "duplicate",
        [tar.as_slice(), member("test.ndb")].concat(),
        &|e| matches!(e, Error::Tar { kind: TarError::Duplicate(n), .. } if n == "test.ndb"),
    );
    // A member the manifest does not list.
    check(
        "unlisted",
        [tar.as_slice(), &tar_member(b"test.ldb", b"x\n", b'0')].concat(),
        &|e| matches!(e, Error::Member { member, kind: MemberError::NotListed } if member == "test.ldb"),
    );
    // A listed member that is missing.
    check(
        "missing",
        [member("COPYING"), member("test.info"), member("test.hdb")].concat(),
        &|e| matches!(e, Error::Member { member, kind: MemberError::Missing } if member == "test.ndb"),
    );
    // A database member before the manifest.
    check(
        "before info",
        [
            member("COPYING"),
            member("test.hdb"),
            member("test.info"),
            member("test.ndb"),
        ]
        .concat(),
        &|e| {
            matches!(
                e,
                Error::Member {
                    kind: MemberError::BeforeInfo,
                    ..
                }
            )
        },
    );
    // A second manifest.
    let second = tar_member(b"other.info", &tar[layout[1].data.clone()], 0);
    check("second info", [tar.as_slice(), &second].concat(), &|e| {
        matches!(
            e,
            Error::Member {
                kind: MemberError::SecondInfo,
                ..
            }
        )
    });
    // A bad header checksum.
    let mut bad = tar.clone();
    let ndb = &layout[3];
    bad[ndb.header.start + 148] ^= 0x01;
    check(
        "checksum",
        bad,
        &|e| matches!(e, Error::Tar { kind: TarError::Checksum(n), .. } if n == "test.ndb"),
    );
    // A size field that is not octal.
    let mut bad = tar.clone();
    bad[ndb.header.start + 124] = b'9';
    check(
        "size",
        bad,
        &|e| matches!(e, Error::Tar { kind: TarError::Size(n), .. } if n == "test.ndb"),
    );
    // A member whose data is changed but whose size and checksum are kept: SHA-256.
    let mut bad = tar.clone();
    bad[ndb.data.start] ^= 0x01;
    check(
        "data",
        bad,
        &|e| matches!(e, Error::Member { member, kind: MemberError::Sha256 { .. } } if member == "test.ndb"),
    );
    // A member that claims more data than the stream has.
    let body = [
        member("COPYING"),
        member("test.info"),
        member("test.hdb"),
        &tar_header(b"test.ndb", 4096, 0),
        b"short",
    ]
    .concat();
    check("truncated member", body, &|e| {
        matches!(
            e,
            Error::Tar {
                kind: TarError::Truncated(_),
                ..
            }
        )
    });
}

#[test]
fn oversized_members_are_refused_before_their_data_is_read() {
    let mut store = small_store();
    store.insert("test.ndb".into(), b"Tamper.Big:0:*:41\n".repeat(200));
    let big = store["test.ndb"].len() as u64;
    let (bytes, _) = build::build(&cud_spec(), &store, None).unwrap();
    let limits = Limits {
        max_member_size: 1024,
        ..Limits::default()
    };
    let (r, seen) = read_recording(&bytes, Kind::Cud, &limits);
    assert!(
        matches!(
            &r,
            Err(Error::Limit(LimitError::MemberSize { name, size, limit: 1024 }))
                if name == "test.ndb" && *size == big
        ),
        "{:?}",
        r.map(|_| "verified")
    );
    assert!(!seen.iter().any(|s| s == "test.ndb"), "{seen:?}");
    // The same container verifies with the default limits.
    container::verify(
        &bytes[..],
        Kind::Cud,
        &KeySet::official(),
        &Limits::default(),
    )
    .unwrap();
    // Too many members.
    let limits = Limits {
        max_members: 3,
        ..Limits::default()
    };
    assert!(matches!(
        container::verify(&bytes[..], Kind::Cud, &KeySet::official(), &limits),
        Err(Error::Limit(LimitError::Members(3)))
    ));
    // An oversized manifest.
    let limits = Limits {
        max_info_size: 16,
        ..Limits::default()
    };
    assert!(matches!(
        container::verify(&bytes[..], Kind::Cud, &KeySet::official(), &limits),
        Err(Error::Limit(LimitError::InfoSize { limit: 16, .. }))
    ));
}

/// A gzip stream of `prefix` followed by `zeros` zero bytes, compressed as it is written.
fn gzip_bomb(prefix: &[u8], zeros: usize) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(prefix).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len());
        gz.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    gz.finish().unwrap()
}

#[test]
fn gzip_bombs_are_bounded() {
    const BOMB: usize = 200 << 20;
    let (header, tar) = cud_parts(&small_store());
    let small = Limits {
        max_body_size: 1 << 20,
        ..Limits::default()
    };
    // (a) 200 MB of zeros after a valid tar: the end marker is reached, then the drain of
    // the rest of the stream hits the body limit.
    let bomb = cud_with_body(&header, &gzip_bomb(&tar, BOMB));
    assert!(
        bomb.len() < 1 << 20,
        "the bomb is small: {} bytes",
        bomb.len()
    );
    let (r, seen) = read_recording(&bomb, Kind::Cud, &small);
    assert!(
        matches!(r, Err(Error::Limit(LimitError::Expansion(n))) if n == 1 << 20),
        "bomb after the end marker: {:?}",
        r.map(|_| "verified")
    );
    assert_eq!(seen, SAFE_NAMES);
    // (b) A 200 MB member of zeros (COPYING needs no .info entry, so its data is read).
    let prefix = tar_header(b"COPYING", BOMB as u64, 0);
    let bomb = cud_with_body(&header, &gzip_bomb(&prefix, BOMB));
    let r = container::verify(&bomb[..], Kind::Cud, &KeySet::official(), &small);
    assert!(
        matches!(r, Err(Error::Limit(LimitError::Expansion(n))) if n == 1 << 20),
        "bomb as member data: {:?}",
        r.map(|_| "verified")
    );
    // The same with a member limit: refused from the header alone.
    let limits = Limits {
        max_member_size: 1 << 20,
        ..small
    };
    let r = container::verify(&bomb[..], Kind::Cud, &KeySet::official(), &limits);
    assert!(
        matches!(
            &r,
            Err(Error::Limit(LimitError::MemberSize { name, size, limit }))
                if name == "COPYING" && *size == BOMB as u64 && *limit == 1 << 20
        ),
        "{:?}",
        r.map(|_| "verified")
    );
}

// ---------------------------------------------------------------------------------------------
// 6. cdiff scripts out of range
// ---------------------------------------------------------------------------------------------

fn three_lines() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        ("x.ndb".to_owned(), b"l1 a\nl2 b\nl3 c\n".to_vec()),
        ("y.ndb".to_owned(), b"z\n".to_vec()),
    ])
}

fn run(script: &str) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let mut store = three_lines();
    let r = Script::parse(script.as_bytes()).and_then(|s| cdiff::apply(&s, &mut store));
    if r.is_err() {
        assert_eq!(store, three_lines(), "{script:?} changed the store");
    }
    r.map(|()| store)
}

#[test]
fn cdiff_line_numbers_out_of_range_are_refused() {
    for (script, command, line) in [
        ("OPEN x.ndb\nDEL 999 x\nCLOSE\n", "DEL", 999),
        ("OPEN x.ndb\nDEL 4 l4\nCLOSE\n", "DEL", 4),
        ("OPEN x.ndb\nXCHG 999 x y\nCLOSE\n", "XCHG", 999),
        ("OPEN x.ndb\nDEL 0 l1\nCLOSE\n", "DEL", 0),
        ("OPEN x.ndb\nXCHG 0 l1 y\nCLOSE\n", "XCHG", 0),
        ("OPEN x.ndb\nDEL 2 l3\nCLOSE\n", "DEL", 2),
        ("MOVE x.ndb y.ndb 2 l2 999 x\n", "MOVE", 999),
        ("MOVE x.ndb y.ndb 3 l3 2 l2\n", "MOVE", 2),
    ] {
        let r = run(script);
        assert!(
            matches!(
                &r,
                Err(Error::Cdiff(CdiffError::Line {
                    kind: ScriptError::NoMatch { command: c, line: l, .. },
                    ..
                })) if *c == command && *l == line
            ),
            "{script:?}: {r:?}"
        );
    }
}

#[test]
fn cdiff_move_from_line_zero_is_refused() {
    let r = std::panic::catch_unwind(|| run("MOVE x.ndb y.ndb 0 l1 2 l2\n"));
    let r = r.expect("MOVE from line 0 must not panic");
    assert!(
        matches!(
            &r,
            Err(Error::Cdiff(CdiffError::Line {
                kind: ScriptError::NoMatch {
                    command: "MOVE",
                    line: 0,
                    ..
                },
                ..
            }))
        ),
        "{r:?}"
    );
}

#[test]
fn cdiff_file_names_with_paths_are_refused() {
    for (script, bad) in [
        ("OPEN ../x\nCLOSE\n", "../x"),
        ("OPEN /etc/passwd\nCLOSE\n", "/etc/passwd"),
        ("OPEN a/b.ndb\nCLOSE\n", "a/b.ndb"),
        ("OPEN ..\nCLOSE\n", ".."),
        ("OPEN .hidden\nCLOSE\n", ".hidden"),
        ("UNLINK ../x.ndb\n", "../x.ndb"),
        ("MOVE x.ndb ../y.ndb 1 l1 2 l2\n", "../y.ndb"),
        ("MOVE ../x.ndb y.ndb 1 l1 2 l2\n", "../x.ndb"),
    ] {
        let r = run(script);
        assert!(
            matches!(
                &r,
                Err(Error::Cdiff(CdiffError::Line {
                    line: 1,
                    kind: ScriptError::FileName(n),
                })) if n == bad
            ),
            "{script:?}: {r:?}"
        );
    }
}

#[test]
fn short_cdiffs_are_refused() {
    let fixture6 = fixture("test-6.cdiff");
    for len in [0, 1, 100, 349] {
        assert!(
            matches!(
                Cdiff::parse(&fixture6[..len], 1 << 20),
                Err(Error::Cdiff(CdiffError::TooShort(n))) if n == len
            ),
            "{len}"
        );
    }
    // A well-formed but tiny cdiff with a short signature string.
    let tiny = Cdiff::write(6, b"OPEN x.ndb\nADD y\nCLOSE\n", |_| Ok("b".into())).unwrap();
    assert!(tiny.len() < 350);
    assert!(matches!(
        Cdiff::parse(&tiny, 1 << 20),
        Err(Error::Cdiff(CdiffError::TooShort(n))) if n == tiny.len()
    ));
    // 350 bytes are enough to be parsed; then the signature decides.
    let mut padded = tiny.clone();
    let colon = padded.iter().rposition(|&b| b == b':').unwrap();
    padded.truncate(colon + 1);
    padded.extend(std::iter::repeat_n(b'b', 350 - padded.len()));
    let parsed = Cdiff::parse(&padded, 1 << 20).unwrap();
    assert!(matches!(
        parsed.verify(&KeySet::official().cdiff),
        Err(Error::Signature { .. })
    ));
}
