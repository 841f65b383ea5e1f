//! Segmented gzip bodies and delta reconstruction of CVD/CUD containers.
//!
//! [`crate::build::build`] compresses the body (the tar stream) in *segments*: the stream is
//! cut at content-defined boundaries (a gear rolling hash, FastCDC-style, with a fixed table)
//! and every segment is deflated by a fresh compressor at [`SEGMENT_LEVEL`], ended by a full
//! flush (the last one by the final block). No segment refers back across a cut, so a segment's compressed
//! bytes depend on its uncompressed bytes alone. The result is still one ordinary gzip stream
//! (header with mtime 0, CRC32 + ISIZE trailer) that stock ClamAV reads.
//!
//! A [`SegmentMap`] lists, for one container file, the byte ranges of its segments with the
//! SHA-256 of their compressed and uncompressed bytes ([`segment_map`]). A container not built
//! this way (ClamAV's official CVDs) maps to one segment covering the whole body.
//!
//! A mirror that holds the previous release rebuilds the new one ([`rebuild`]): it applies the
//! cdiffs to the old members, writes the new tar stream as the builder does, and for every
//! segment whose uncompressed bytes match the map copies the old file's compressed bytes (when
//! the old map has the same segment) or re-compresses them, checking the compressed SHA-256.
//! What it cannot re-create (the 512-byte header, which holds the signature, and any segment
//! that did not match) is a list of byte ranges to fetch; [`assemble`] writes them in and checks
//! the whole file against the size and SHA-256 the caller trusts. Nothing here trusts the map:
//! a lying map only costs a fallback.

use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::build::member_order;
use crate::container::{self, Kind, Limits};
use crate::error::Error;
use crate::header::HEADER_LEN;
use crate::keys::KeySet;
use crate::sigenc::hex;

/// No cut before this many uncompressed bytes of a segment.
pub const MIN_SEGMENT: usize = 32 << 10;
/// Bits of the rolling hash that must be zero for a cut: 2^15 = 32 KiB expected beyond the
/// minimum, so segments of about 64 KiB. Smaller segments leave less to re-compress when a
/// cdiff edits lines all through a database (one edit re-creates one segment) at the cost of a
/// larger map. Measured on the 60 MB synthetic daily and its cdiff (`delta_measure`): 64 KiB +
/// 256 KiB segments re-compressed 54.8 of 63.6 MB (5.4 CPU s); 32 + 32 KiB, 25.0 of 60.2 MB
/// (2.1 CPU s) with a 0.42 MB map; 16 + 16 KiB, 15.0 MB (1.9 CPU s) with a 0.84 MB map.
const MASK_BITS: u32 = 15;
/// The deflate level of every segment: part of the format, since a mirror re-creates segments
/// byte for byte with it (an encoder that differs only costs a fetch of those segments).
/// zlib-rs at level 6 (its "medium" strategy) gave a smaller file than level 9 on the synthetic
/// database (59.6 against 63.3 MB, both segmented; one `gzip -9` stream: 62.2 MB) in 65 % of
/// the CPU time.
pub const SEGMENT_LEVEL: u32 = 6;
/// A cut is forced at this many uncompressed bytes.
pub const MAX_SEGMENT: usize = 1 << 20;
/// Most segments a map may list (2 GiB of minimal segments, 4 GiB of average ones).
pub const MAX_SEGMENTS: usize = 1 << 16;
/// Largest serialized map accepted.
pub const MAX_MAP_JSON: usize = 16 << 20;
/// The map format this code writes and reads.
pub const MAP_FORMAT: u32 = 1;
/// Length of the gzip header the builder writes (no name, no extra field).
const GZ_HEADER_LEN: usize = 10;
/// Length of the gzip trailer (CRC32, ISIZE).
const GZ_TRAILER_LEN: usize = 8;

const MASK: u64 = (1u64 << MASK_BITS) - 1;

/// The gear table: 256 words from splitmix64 with a fixed seed, so every build cuts alike.
const GEAR: [u64; 256] = gear_table();

const fn gear_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state: u64 = 0x7664_626e_6574_0001; // "vdbnet" + 1
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

/// The gzip header flate2's `GzEncoder` writes at level 9 (mtime 0), as the builder always did.
fn gzip_header() -> [u8; GZ_HEADER_LEN] {
    let mut h = [0u8; GZ_HEADER_LEN];
    let bytes = flate2::write::GzEncoder::new(Vec::new(), Compression::best())
        .finish()
        .unwrap_or_default();
    if bytes.len() >= GZ_HEADER_LEN {
        h.copy_from_slice(&bytes[..GZ_HEADER_LEN]);
    }
    h
}

/// Cuts a byte stream into segments at content-defined boundaries.
#[derive(Debug, Default)]
struct Cutter {
    cur: Vec<u8>,
    hash: u64,
}

impl Cutter {
    /// Feeds `buf`; every completed segment goes to `emit`.
    fn push(
        &mut self,
        mut buf: &[u8],
        emit: &mut dyn FnMut(Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        while !buf.is_empty() {
            let need = MIN_SEGMENT.saturating_sub(self.cur.len());
            if need > 0 {
                let take = need.min(buf.len());
                self.cur.extend_from_slice(&buf[..take]);
                buf = &buf[take..];
                continue;
            }
            let room = MAX_SEGMENT - self.cur.len();
            let end = room.min(buf.len());
            let mut cut = None;
            let mut hash = self.hash;
            for (j, &b) in buf[..end].iter().enumerate() {
                hash = (hash << 1).wrapping_add(GEAR[usize::from(b)]);
                if hash & MASK == 0 {
                    cut = Some(j + 1);
                    break;
                }
            }
            self.hash = hash;
            let take = cut.unwrap_or(end);
            self.cur.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if cut.is_some() || self.cur.len() >= MAX_SEGMENT {
                self.hash = 0;
                emit(std::mem::take(&mut self.cur))?;
            }
        }
        Ok(())
    }

    /// What is left after the stream ended (possibly empty).
    fn finish(self) -> Vec<u8> {
        self.cur
    }
}

/// At the end of a stream: the segment held back (if any) that is not the last one, and the
/// last segment (possibly empty, for an empty stream). A non-empty remainder is the last
/// segment; otherwise the one held back is.
fn close(pending: Option<Vec<u8>>, rest: Vec<u8>) -> (Option<Vec<u8>>, Vec<u8>) {
    match pending {
        Some(p) if rest.is_empty() => (None, p),
        Some(p) => (Some(p), rest),
        None => (None, rest),
    }
}

/// Deflates one segment with a fresh compressor at [`SEGMENT_LEVEL`]: raw deflate, ended by a full flush
/// (`last == false`, byte-aligned, no back-references out of it) or by the final block.
pub fn deflate_segment(data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(SEGMENT_LEVEL), false);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Full
    };
    let mut out = Vec::with_capacity(data.len() / 3 + 1024);
    for _ in 0..(data.len() / 1024 + 1024) {
        if out.capacity() - out.len() < 32 << 10 {
            out.reserve(64 << 10);
        }
        let consumed = usize::try_from(c.total_in()).unwrap_or(usize::MAX);
        let status = c
            .compress_vec(&data[consumed.min(data.len())..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done_in = usize::try_from(c.total_in()).unwrap_or(usize::MAX) >= data.len();
        match status {
            Status::StreamEnd => return Ok(out),
            _ if !last && done_in && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
    Err(io::Error::other("deflate made no progress"))
}

/// A writer that gzips what it is given in segments (see the module docs). Call
/// [`SegmentedGz::finish`] at the end.
pub struct SegmentedGz<W: Write> {
    out: W,
    cutter: Cutter,
    pending: Option<Vec<u8>>,
    crc: Crc,
}

impl<W: Write> SegmentedGz<W> {
    /// Writes the gzip header and starts the body.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&gzip_header())?;
        Ok(Self {
            out,
            cutter: Cutter::default(),
            pending: None,
            crc: Crc::new(),
        })
    }

    /// Compresses the last segment, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let rest = std::mem::take(&mut self.cutter).finish();
        let out = &mut self.out;
        let (before, last) = close(self.pending.take(), rest);
        if let Some(p) = before {
            out.write_all(&deflate_segment(&p, false)?)?;
        }
        out.write_all(&deflate_segment(&last, true)?)?;
        out.write_all(&self.crc.sum().to_le_bytes())?;
        out.write_all(&self.crc.amount().to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for SegmentedGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        let out = &mut self.out;
        let pending = &mut self.pending;
        self.cutter.push(buf, &mut |seg| {
            if let Some(p) = pending.replace(seg) {
                out.write_all(&deflate_segment(&p, false)?)?;
            }
            Ok(())
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One segment of a container file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// Offset of its compressed bytes in the file.
    pub offset: u64,
    /// Length of its compressed bytes.
    pub len: u64,
    /// SHA-256 of its compressed bytes, lower-case hex.
    pub sha256: String,
    /// Length of its uncompressed bytes.
    pub raw_len: u64,
    /// SHA-256 of its uncompressed bytes, lower-case hex.
    pub raw_sha256: String,
}

/// The segments of one CVD/CUD file: bytes `0..512` are the container header; when `framed`,
/// a 10-byte gzip header as the builder writes it follows, then the segments, then the 8-byte
/// gzip trailer. When not `framed` (a container built elsewhere), one segment covers the whole
/// body and its "uncompressed" fields describe the body bytes themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentMap {
    /// Map format ([`MAP_FORMAT`]).
    pub format: u32,
    /// Size of the whole file.
    pub size: u64,
    /// Whether the body is the builder's segmented gzip (see the type's docs).
    pub framed: bool,
    /// Length of the uncompressed body (the tar stream) when `framed`, else of the body.
    pub raw_size: u64,
    /// The segments, in file order.
    pub segments: Vec<Segment>,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn seg_err(msg: impl Into<String>) -> Error {
    Error::Segment(msg.into())
}

impl SegmentMap {
    /// Parses and validates a serialized map (hostile input: bounded, and every range checked).
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_MAP_JSON {
            return Err(seg_err(format!(
                "map is {} bytes, more than {MAX_MAP_JSON}",
                bytes.len()
            )));
        }
        let map: Self =
            serde_json::from_slice(bytes).map_err(|e| seg_err(format!("map JSON: {e}")))?;
        map.validate()?;
        Ok(map)
    }

    /// The map as JSON (what the master publishes).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks the map's shape: known format, segments contiguous from the body's start (after
    /// the gzip header when framed) to its end (before the trailer), sizes within the limits.
    pub fn validate(&self) -> Result<(), Error> {
        if self.format != MAP_FORMAT {
            return Err(seg_err(format!("unknown map format {}", self.format)));
        }
        if self.segments.is_empty() || self.segments.len() > MAX_SEGMENTS {
            return Err(seg_err(format!(
                "{} segments (1 to {MAX_SEGMENTS} allowed)",
                self.segments.len()
            )));
        }
        if !self.framed && self.segments.len() != 1 {
            return Err(seg_err("an unframed map has exactly one segment"));
        }
        let (start, tail) = if self.framed {
            (HEADER_LEN + GZ_HEADER_LEN, GZ_TRAILER_LEN)
        } else {
            (HEADER_LEN, 0)
        };
        let mut at = start as u64;
        let mut raw = 0u64;
        for (i, s) in self.segments.iter().enumerate() {
            if s.offset != at {
                return Err(seg_err(format!(
                    "segment {i} starts at {}, expected {at}",
                    s.offset
                )));
            }
            if !is_hex64(&s.sha256) || !is_hex64(&s.raw_sha256) {
                return Err(seg_err(format!(
                    "segment {i}: hashes must be 64 hex digits"
                )));
            }
            if s.len == 0
                || (self.framed
                    && (s.raw_len > MAX_SEGMENT as u64 || s.len > 2 * MAX_SEGMENT as u64))
            {
                return Err(seg_err(format!("segment {i}: length out of range")));
            }
            at = at
                .checked_add(s.len)
                .ok_or_else(|| seg_err("segment lengths overflow"))?;
            raw = raw
                .checked_add(s.raw_len)
                .ok_or_else(|| seg_err("segment lengths overflow"))?;
        }
        if at.checked_add(tail as u64) != Some(self.size) {
            return Err(seg_err(format!(
                "segments end at {at}, the file is {} bytes",
                self.size
            )));
        }
        if raw != self.raw_size {
            return Err(seg_err("segment lengths do not add up to raw_size"));
        }
        Ok(())
    }

    /// The bytes of the file that are not segments: the container header, and when framed the
    /// gzip header and trailer.
    pub fn framing(&self) -> u64 {
        if self.framed {
            (HEADER_LEN + GZ_HEADER_LEN + GZ_TRAILER_LEN) as u64
        } else {
            HEADER_LEN as u64
        }
    }
}

fn whole_map(file: &[u8]) -> SegmentMap {
    let body = &file[HEADER_LEN..];
    let sha = hex(&Sha256::digest(body));
    SegmentMap {
        format: MAP_FORMAT,
        size: file.len() as u64,
        framed: false,
        raw_size: body.len() as u64,
        segments: vec![Segment {
            offset: HEADER_LEN as u64,
            len: body.len() as u64,
            sha256: sha.clone(),
            raw_len: body.len() as u64,
            raw_sha256: sha,
        }],
    }
}

/// The segment map of a CVD/CUD file. A body that is exactly what the builder writes (checked
/// by re-compressing every segment) maps segment by segment; anything else maps to one segment
/// covering the whole body. Decompression stops at `max_body` bytes (then: one segment).
/// Errors only when the file is shorter than a header or has an empty body.
pub fn segment_map(file: &[u8], max_body: u64) -> Result<SegmentMap, Error> {
    if file.len() <= HEADER_LEN {
        return Err(seg_err(format!(
            "a {}-byte file has no container body",
            file.len()
        )));
    }
    Ok(framed_map(file, max_body)
        .ok()
        .flatten()
        .unwrap_or_else(|| whole_map(file)))
}

/// One segment re-compressed by a worker of [`framed_map`].
struct Checked {
    index: usize,
    len: u64,
    sha256: String,
    raw_len: u64,
    raw_sha256: String,
}

/// `Ok(None)` when the file is not the builder's segmented gzip. The calling thread inflates
/// and cuts; re-compressing the segments (almost all the work) runs on [`with_workers`], and
/// the results are checked in file order.
fn framed_map(file: &[u8], max_body: u64) -> io::Result<Option<SegmentMap>> {
    let body = &file[HEADER_LEN..];
    if body.len() < GZ_HEADER_LEN + GZ_TRAILER_LEN || body[..GZ_HEADER_LEN] != gzip_header() {
        return Ok(None);
    }
    let check = |(index, seg, last): Job| {
        deflate_segment(&seg, last).map(|z| Checked {
            index,
            len: z.len() as u64,
            sha256: hex(&Sha256::digest(&z)),
            raw_len: seg.len() as u64,
            raw_sha256: hex(&Sha256::digest(&seg)),
        })
    };
    let (inflated, checked) = with_workers(check, |jobs, results| {
        let inflated = inflate_and_cut(&body[GZ_HEADER_LEN..], max_body, &jobs);
        // Closing the queue ends the workers once it is empty, and with them the results.
        drop(jobs);
        (
            inflated,
            results.into_iter().collect::<io::Result<Vec<_>>>(),
        )
    });
    let Some((count, crc)) = inflated? else {
        return Ok(None);
    };
    let mut checked = checked?;
    if checked.len() != count {
        return Ok(None);
    }
    checked.sort_unstable_by_key(|c| c.index);
    // In file order: each re-compressed segment must be the file's bytes at its offset.
    let mut at = (HEADER_LEN + GZ_HEADER_LEN) as u64;
    let mut segments = Vec::with_capacity(checked.len());
    for c in checked {
        let start = usize::try_from(at).unwrap_or(usize::MAX);
        let end = usize::try_from(at + c.len).unwrap_or(usize::MAX);
        match file.get(start..end) {
            Some(have) if hex(&Sha256::digest(have)) == c.sha256 => {}
            _ => return Ok(None),
        }
        segments.push(Segment {
            offset: at,
            len: c.len,
            sha256: c.sha256,
            raw_len: c.raw_len,
            raw_sha256: c.raw_sha256,
        });
        at += c.len;
    }
    let raw_total = segments.iter().map(|s| s.raw_len).sum();
    let mut trailer = [0u8; GZ_TRAILER_LEN];
    trailer[..4].copy_from_slice(&crc.sum().to_le_bytes());
    trailer[4..].copy_from_slice(&crc.amount().to_le_bytes());
    let t = usize::try_from(at).unwrap_or(usize::MAX);
    if file.get(t..) != Some(&trailer[..]) {
        return Ok(None);
    }
    let map = SegmentMap {
        format: MAP_FORMAT,
        size: file.len() as u64,
        framed: true,
        raw_size: raw_total,
        segments,
    };
    Ok(map.validate().is_ok().then_some(map))
}

/// Inflates a raw deflate stream, cuts it as the builder does and queues each segment (index,
/// bytes, whether it is the last). `Ok(None)` when it does not inflate, is larger than
/// `max_body` or has more than [`MAX_SEGMENTS`] segments; else the count and the CRC.
fn inflate_and_cut(
    deflate: &[u8],
    max_body: u64,
    queue: &SyncSender<Job>,
) -> io::Result<Option<(usize, Crc)>> {
    let mut dec = flate2::bufread::DeflateDecoder::new(deflate);
    let mut cutter = Cutter::default();
    let mut pending: Option<Vec<u8>> = None;
    let mut crc = Crc::new();
    let mut count = 0usize;
    let send = |seg: Vec<u8>, last: bool, count: &mut usize| -> io::Result<bool> {
        if *count >= MAX_SEGMENTS {
            return Ok(false);
        }
        queue
            .send((*count, seg, last))
            .map_err(|_| io::Error::other("the segment workers stopped"))?;
        *count += 1;
        Ok(true)
    };
    let mut buf = vec![0u8; 256 << 10];
    let mut raw_total = 0u64;
    let mut ok = true;
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) => return Ok(None),
        };
        raw_total += n as u64;
        if raw_total > max_body {
            return Ok(None);
        }
        crc.update(&buf[..n]);
        cutter.push(&buf[..n], &mut |seg| {
            if ok && let Some(p) = pending.replace(seg) {
                ok = send(p, false, &mut count)?;
            }
            Ok(())
        })?;
        if !ok {
            return Ok(None);
        }
    }
    let (before, last) = close(pending, cutter.finish());
    if let Some(p) = before
        && !send(p, false, &mut count)?
    {
        return Ok(None);
    }
    if !send(last, true, &mut count)? {
        return Ok(None);
    }
    Ok(Some((count, crc)))
}

/// A byte range of the new file that must be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing {
    /// Offset in the new file.
    pub offset: u64,
    /// Length.
    pub len: u64,
}

/// What [`rebuild`] re-created and what is left to fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Ranges to fetch, in file order (always at least the container header).
    pub missing: Vec<Missing>,
    /// Compressed bytes copied from the old file.
    pub copied: u64,
    /// Compressed bytes re-created by compressing again.
    pub recompressed: u64,
}

impl Rebuilt {
    /// Bytes left to fetch.
    pub fn missing_bytes(&self) -> u64 {
        self.missing.iter().map(|m| m.len).sum()
    }
}

/// The inputs of a reconstruction.
pub struct DeltaInputs<'a> {
    /// Database name (`daily`).
    pub db_name: &'a str,
    /// The cdiffs from the old version to the new one, in order.
    pub cdiffs: &'a [&'a [u8]],
    /// The old file's map, if known (segments found there are copied, not re-compressed).
    pub old_map: Option<&'a SegmentMap>,
    /// The new file's map (validated).
    pub new_map: &'a SegmentMap,
    /// ClamAV keys to check the cdiffs with, if the caller has them.
    pub keys: Option<&'a KeySet>,
    /// Limits on the old container and the cdiffs.
    pub limits: Limits,
    /// Where the patched database is spooled while the new file is written (it holds about
    /// the uncompressed size, and is removed afterwards); default: the system's temp dir.
    pub spool_dir: Option<&'a Path>,
}

/// Rebuilds what it can of the new file into `out` (positioned writes; the size is set to the
/// map's): applies the cdiffs to the old container's members, writes the new tar stream the
/// way [`crate::build::build`] does, and keeps each segment whose uncompressed and compressed
/// hashes match the map. Returns the ranges still missing. `old` is read twice (patched
/// into a spool directory on disk, then segments copied); memory holds the cdiffs, the
/// `.info`, the segments being compressed and I/O buffers, not the database. Without
/// `keys`, the patched members are still checked against the patched `.info`.
pub fn rebuild<O: Read + Seek, W: Write + Seek>(
    old: &mut O,
    inputs: &DeltaInputs<'_>,
    out: &mut W,
) -> Result<Rebuilt, Error> {
    let map = inputs.new_map;
    map.validate()?;
    if let Some(m) = inputs.old_map {
        m.validate()?;
    }
    let ioe = |what: &'static str| move |e| Error::io(what, e);
    if !map.framed {
        return Ok(Rebuilt {
            missing: vec![Missing {
                offset: 0,
                len: map.size,
            }],
            ..Rebuilt::default()
        });
    }
    let rebuilt = Rebuilt {
        missing: header_and_segments(map),
        ..Rebuilt::default()
    };
    let spool_parent = inputs
        .spool_dir
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    let patched = crate::chain::spool_patched(
        &mut *old,
        inputs.cdiffs,
        inputs.keys,
        &inputs.limits,
        &spool_parent,
    )?;
    if patched.info_name() != format!("{}.info", inputs.db_name) {
        return Err(seg_err(format!(
            "the old file is database {}, not {}",
            patched.info_name().trim_end_matches(".info"),
            inputs.db_name
        )));
    }
    let order = member_order(inputs.db_name, &patched.names())?;

    let old_index: HashMap<&str, &Segment> = inputs
        .old_map
        .filter(|m| m.framed)
        .map(|m| {
            m.segments
                .iter()
                .map(|s| (s.raw_sha256.as_str(), s))
                .collect()
        })
        .unwrap_or_default();

    out.seek(SeekFrom::Start(HEADER_LEN as u64))
        .map_err(ioe("writing the new file"))?;
    out.write_all(&gzip_header())
        .map_err(ioe("writing the new file"))?;

    // Re-compressing changed segments (most of the work) runs on the workers; the sink
    // writes each result at its map offset.
    let deflate = |(i, raw, last): Job| (i, deflate_segment(&raw, last));
    let mut rebuilt = with_workers(deflate, |jobs, results| {
        let mut sink = RebuildSink {
            old,
            out,
            map,
            old_index,
            next: 0,
            crc: Crc::new(),
            total: 0,
            cutter: Cutter::default(),
            pending: None,
            rebuilt,
            jobs: Some(jobs),
            results,
            outstanding: 0,
        };
        let written = patched.write_tar(&mut sink, inputs.db_name, &order);
        // Finishing closes the queue (the workers end once it is empty), also after an error.
        let finished = sink.finish();
        written?;
        finished
    })?;
    rebuilt.missing.sort_by_key(|m| m.offset);
    Ok(rebuilt)
}

/// A segment to re-compress: its index in the map, its bytes, whether it is the last.
type Job = (usize, Vec<u8>, bool);

/// Runs `body` beside one worker per CPU (at most 8) that applies `work` to each job `body`
/// sends through the bounded queue; the results come back on the receiver as they finish.
/// The workers end once `body` has dropped the sender and the queue is empty.
fn with_workers<R: Send, T>(
    work: impl Fn(Job) -> R + Sync,
    body: impl FnOnce(SyncSender<Job>, Receiver<R>) -> T,
) -> T {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let (jobs, job_rx) = std::sync::mpsc::sync_channel::<Job>(2 * workers);
    let job_rx = std::sync::Mutex::new(job_rx);
    let (done_tx, results) = std::sync::mpsc::channel::<R>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (done, job_rx, work) = (done_tx.clone(), &job_rx, &work);
            scope.spawn(move || {
                // The lock is held only to take the next job.
                while let Ok(Ok(job)) = job_rx.lock().map(|r| r.recv()) {
                    if done.send(work(job)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        body(jobs, results)
    })
}
/// A re-compressed segment, by index.
type Done = (usize, io::Result<Vec<u8>>);

struct RebuildSink<'a, O, W> {
    old: &'a mut O,
    out: &'a mut W,
    map: &'a SegmentMap,
    old_index: HashMap<&'a str, &'a Segment>,
    next: usize,
    crc: Crc,
    total: u64,
    cutter: Cutter,
    pending: Option<Vec<u8>>,
    rebuilt: Rebuilt,
    /// The workers' queue; `None` once closed.
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Done>,
    /// Jobs sent and not yet written.
    outstanding: usize,
}

impl<O: Read + Seek, W: Write + Seek> RebuildSink<'_, O, W> {
    /// Writes the re-compressed segments that are ready (all of them, waiting, with `all`).
    fn drain(&mut self, all: bool) -> io::Result<()> {
        while self.outstanding > 0 {
            let next = if all {
                self.results.recv().ok()
            } else {
                match self.results.try_recv() {
                    Ok(d) => Some(d),
                    Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(()),
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => None,
                }
            };
            let Some((i, buf)) = next else {
                return Err(io::Error::other("the segment workers stopped"));
            };
            self.outstanding -= 1;
            let buf = buf?;
            let want = &self.map.segments[i];
            if buf.len() as u64 == want.len && hex(&Sha256::digest(&buf)) == want.sha256 {
                self.rebuilt.recompressed += want.len;
                self.out.seek(SeekFrom::Start(want.offset))?;
                self.out.write_all(&buf)?;
                self.rebuilt.missing.retain(|m| m.offset != want.offset);
            }
        }
        Ok(())
    }

    /// Handles one rebuilt segment: keep it if it is the map's next segment, byte for byte.
    fn segment(&mut self, raw: &[u8], last: bool) -> io::Result<()> {
        let i = self.next;
        self.next += 1;
        let Some(want) = self.map.segments.get(i) else {
            return Ok(());
        };
        let is_last = i + 1 == self.map.segments.len();
        if last != is_last
            || raw.len() as u64 != want.raw_len
            || hex(&Sha256::digest(raw)) != want.raw_sha256
        {
            return Ok(());
        }
        let mut z = None;
        if let Some(old) = self.old_index.get(want.raw_sha256.as_str())
            && old.len == want.len
        {
            let mut buf = vec![0u8; usize::try_from(old.len).unwrap_or(0)];
            self.old.seek(SeekFrom::Start(old.offset))?;
            if self.old.read_exact(&mut buf).is_ok() && hex(&Sha256::digest(&buf)) == want.sha256 {
                self.rebuilt.copied += want.len;
                z = Some(buf);
            }
        }
        match z {
            Some(z) => {
                self.out.seek(SeekFrom::Start(want.offset))?;
                self.out.write_all(&z)?;
                self.rebuilt.missing.retain(|m| m.offset != want.offset);
            }
            None => {
                let jobs = self
                    .jobs
                    .as_ref()
                    .ok_or_else(|| io::Error::other("the segment queue is closed"))?;
                jobs.send((i, raw.to_vec(), last))
                    .map_err(|_| io::Error::other("the segment workers stopped"))?;
                self.outstanding += 1;
            }
        }
        self.drain(false)
    }

    fn finish(mut self) -> Result<Rebuilt, Error> {
        let werr = |e| Error::io("rebuilding segments", e);
        let rest = std::mem::take(&mut self.cutter).finish();
        let (before, last) = close(self.pending.take(), rest);
        let mut r = Ok(());
        if let Some(p) = before {
            r = self.segment(&p, false);
        }
        if r.is_ok() {
            r = self.segment(&last, true);
        }
        // Close the queue, then write what the workers still hold.
        self.jobs = None;
        r.and_then(|()| self.drain(true)).map_err(werr)?;
        let trailer_at = self.map.size - GZ_TRAILER_LEN as u64;
        if self.total == self.map.raw_size {
            self.out
                .seek(SeekFrom::Start(trailer_at))
                .and_then(|_| self.out.write_all(&self.crc.sum().to_le_bytes()))
                .and_then(|()| self.out.write_all(&self.crc.amount().to_le_bytes()))
                .map_err(werr)?;
        } else {
            self.rebuilt.missing.push(Missing {
                offset: trailer_at,
                len: GZ_TRAILER_LEN as u64,
            });
        }
        Ok(self.rebuilt)
    }
}

impl<O: Read + Seek, W: Write + Seek> Write for RebuildSink<'_, O, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.total += buf.len() as u64;
        let mut done = Vec::new();
        let pending = &mut self.pending;
        self.cutter.push(buf, &mut |seg| {
            if let Some(p) = pending.replace(seg) {
                done.push(p);
            }
            Ok(())
        })?;
        for p in done {
            self.segment(&p, false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Every range of a framed map's file that is not gzip framing: the header and each segment
/// (where [`rebuild`] starts before it re-creates segments).
fn header_and_segments(map: &SegmentMap) -> Vec<Missing> {
    let mut v = vec![Missing {
        offset: 0,
        len: HEADER_LEN as u64,
    }];
    v.extend(map.segments.iter().map(|s| Missing {
        offset: s.offset,
        len: s.len,
    }));
    v
}

/// What [`assemble`] checks the finished file against.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// Size of the file.
    pub size: u64,
    /// SHA-256, lower-case hex (from the signed manifest).
    pub sha256: &'a str,
    /// Also verify the container (CVD: body MD5 and RSA signature; CUD: body MD5) with these
    /// keys, if the caller has them.
    pub verify: Option<(Kind, &'a KeySet)>,
}

/// Writes the fetched ranges into the rebuilt file, then checks the whole file: size, SHA-256
/// and (if asked) the container's own checks. `fetched` must hold exactly the ranges
/// `rebuilt.missing` lists; a fetched segment is checked against its hash in `map` before it
/// is written. Any mismatch is an error and the caller must discard `file` (and fall back to
/// a whole download). The caller fsyncs and renames.
pub fn assemble<F: Read + Write + Seek>(
    file: &mut F,
    map: &SegmentMap,
    rebuilt: &Rebuilt,
    fetched: &[(Missing, Vec<u8>)],
    expected: &Expected<'_>,
) -> Result<(), Error> {
    let ioe = |e| Error::io("assembling the new file", e);
    if map.size != expected.size {
        return Err(seg_err(format!(
            "the map describes {} bytes, the manifest {}",
            map.size, expected.size
        )));
    }
    if fetched.len() != rebuilt.missing.len() {
        return Err(seg_err(format!(
            "{} ranges fetched, {} missing",
            fetched.len(),
            rebuilt.missing.len()
        )));
    }
    let by_offset: HashMap<u64, &Segment> = map.segments.iter().map(|s| (s.offset, s)).collect();
    for ((range, bytes), want) in fetched.iter().zip(&rebuilt.missing) {
        if range != want || bytes.len() as u64 != want.len {
            return Err(seg_err(format!(
                "fetched range {}+{} does not match the missing {}+{}",
                range.offset,
                bytes.len(),
                want.offset,
                want.len
            )));
        }
        if let Some(seg) = by_offset.get(&range.offset)
            && (seg.len != range.len || hex(&Sha256::digest(bytes)) != seg.sha256)
        {
            return Err(seg_err(format!(
                "fetched segment at {} does not match its hash",
                range.offset
            )));
        }
        file.seek(SeekFrom::Start(range.offset)).map_err(ioe)?;
        file.write_all(bytes).map_err(ioe)?;
    }
    file.flush().map_err(ioe)?;
    file.seek(SeekFrom::Start(0)).map_err(ioe)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(ioe)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    let sha = hex(&hasher.finalize());
    if total != expected.size || sha != expected.sha256 {
        return Err(seg_err(format!(
            "the rebuilt file is {total} bytes with SHA-256 {sha}, expected {} bytes with {}",
            expected.size, expected.sha256
        )));
    }
    if let Some((kind, keys)) = expected.verify {
        file.seek(SeekFrom::Start(0)).map_err(ioe)?;
        container::verify(&mut *file, kind, keys, &Limits::default())?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
