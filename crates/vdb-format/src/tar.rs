//! ClamAV's tar dialect (spec §1.2).
//!
//! Hand-written because ClamAV's writer emits headers the `tar` crate cannot reproduce byte
//! for byte (size as `%o` without leading zeros, everything but name/size/checksum zero, no
//! end-of-archive blocks), and because the reader must apply ClamAV's acceptance rules (stop at
//! a NUL block, regular files only, no `/` in names) plus our own limits on hostile input.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use crate::error::{Error, LimitError, TarError};
use crate::names::is_safe_member_name;

const BLOCK: usize = 512;

/// A member header read from the stream.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: String,
    pub(crate) size: u64,
}

/// Streaming reader over a tar body.
pub(crate) struct TarReader<R> {
    inner: R,
    offset: u64,
    remaining: u64,
    padding: u64,
    seen: HashSet<String>,
    max_member: u64,
    max_members: usize,
}

impl<R: Read> TarReader<R> {
    pub(crate) fn new(inner: R, max_member: u64, max_members: usize) -> Self {
        Self {
            inner,
            offset: 0,
            remaining: 0,
            padding: 0,
            seen: HashSet::new(),
            max_member,
            max_members,
        }
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// Skips what is left of the current member and reads the next header.
    /// Returns `None` at EOF or at a block starting with NUL (ClamAV's end marker).
    pub(crate) fn next_entry(&mut self) -> Result<Option<Entry>, Error> {
        let skip = self.remaining + self.padding;
        if skip > 0 {
            let copied = io::copy(&mut (&mut self.inner).take(skip), &mut io::sink())
                .map_err(Error::Gzip)?;
            self.offset += copied;
            if copied < skip {
                return Err(Error::tar(self.offset, TarError::Truncated("member data")));
            }
            self.remaining = 0;
            self.padding = 0;
        }
        let start = self.offset;
        let mut block = [0u8; BLOCK];
        let n = read_full(&mut self.inner, &mut block).map_err(Error::Gzip)?;
        self.offset += n as u64;
        if n == 0 {
            return Ok(None);
        }
        if n < BLOCK {
            return Err(Error::tar(start, TarError::Truncated("a member header")));
        }
        if block[0] == 0 {
            return Ok(None);
        }
        let name_end = block[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&block[..name_end]).into_owned();
        if !is_safe_member_name(&name) || name_end == 100 {
            return Err(Error::tar(start, TarError::UnsafeName(name)));
        }
        let typeflag = block[156];
        if typeflag != 0 && typeflag != b'0' {
            return Err(Error::tar(
                start,
                TarError::Type {
                    name,
                    typeflag: char::from(typeflag),
                },
            ));
        }
        let size = parse_octal(&block[124..136])
            .ok_or_else(|| Error::tar(start, TarError::Size(name.clone())))?;
        let stored = parse_octal(&block[148..156]);
        let mut sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
        sum -= block[148..156].iter().map(|&b| u64::from(b)).sum::<u64>();
        sum += 8 * u64::from(b' ');
        if stored != Some(sum) {
            return Err(Error::tar(start, TarError::Checksum(name)));
        }
        if size > self.max_member {
            return Err(Error::Limit(LimitError::MemberSize {
                name,
                size,
                limit: self.max_member,
            }));
        }
        if self.seen.len() >= self.max_members {
            return Err(Error::Limit(LimitError::Members(self.max_members)));
        }
        if !self.seen.insert(name.clone()) {
            return Err(Error::tar(start, TarError::Duplicate(name)));
        }
        self.remaining = size;
        self.padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        Ok(Some(Entry { name, size }))
    }

    /// Whether the current member's data has been read completely.
    pub(crate) fn member_done(&self) -> bool {
        self.remaining == 0
    }
}

impl<R: Read> Read for TarReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "tar member data is truncated",
            ));
        }
        self.remaining -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|&b| b != 0)
        .filter(|&b| b != b' ')
        .collect();
    if text.is_empty() || text.len() > 11 || !text.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// Writes one member header in ClamAV's dialect.
pub(crate) fn write_header(w: &mut impl Write, name: &str, size: u64) -> io::Result<()> {
    let mut block = [0u8; BLOCK];
    assert!(
        name.len() < 100 && is_safe_member_name(name),
        "unchecked tar name {name:?}"
    );
    block[..name.len()].copy_from_slice(name.as_bytes());
    let size_text = format!("{size:o}");
    block[124..124 + size_text.len()].copy_from_slice(size_text.as_bytes());
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum::<u64>() + 8 * u64::from(b' ');
    let sum_text = format!("{sum:06o}");
    block[148..148 + sum_text.len()].copy_from_slice(sum_text.as_bytes());
    w.write_all(&block)
}

/// Writes a member (header, data, zero padding).
pub(crate) fn append(w: &mut impl Write, name: &str, data: &[u8]) -> io::Result<()> {
    write_header(w, name, data.len() as u64)?;
    w.write_all(data)?;
    let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
    w.write_all(&[0u8; BLOCK][..pad])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_clamav_dialect() {
        // From test-6.cvd: COPYING, 17992 bytes, checksum 002022.
        let mut out = Vec::new();
        write_header(&mut out, "COPYING", 17992).unwrap();
        assert_eq!(&out[124..136], b"43110\0\0\0\0\0\0\0");
        assert_eq!(&out[148..156], b"002022\0\0");
        let mut r = TarReader::new(&out[..], 1 << 20, 10);
        // The header alone: the data is missing, so reading the member fails after the header.
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!((e.name.as_str(), e.size), ("COPYING", 17992));
        assert!(r.next_entry().is_err());
    }

    #[test]
    fn rejects_hostile_members() {
        for name in ["../etc", "a/b", "..", "", "a\\b"] {
            let mut block = [0u8; 512];
            block[..name.len()].copy_from_slice(name.as_bytes());
            block[124] = b'0';
            let sum: u64 = block.iter().map(|&b| u64::from(b)).sum::<u64>() + 256;
            block[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
            let mut r = TarReader::new(&block[..], 1 << 20, 10);
            match r.next_entry() {
                Ok(None) if name.is_empty() => {}
                Err(Error::Tar {
                    kind: TarError::UnsafeName(_),
                    ..
                }) => {}
                other => panic!("{name:?}: {other:?}"),
            }
        }
        let mut dir = Vec::new();
        append(&mut dir, "x.ndb", b"abc").unwrap();
        dir[156] = b'5';
        let sum: u64 = dir[..512].iter().map(|&b| u64::from(b)).sum::<u64>()
            - dir[148..156].iter().map(|&b| u64::from(b)).sum::<u64>()
            + 256;
        dir[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
        let mut r = TarReader::new(&dir[..], 1 << 20, 10);
        assert!(matches!(
            r.next_entry(),
            Err(Error::Tar {
                kind: TarError::Type { .. },
                ..
            })
        ));
        let mut big = Vec::new();
        append(&mut big, "x.ndb", &[b'a'; 2000]).unwrap();
        let mut r = TarReader::new(&big[..], 1000, 10);
        assert!(matches!(
            r.next_entry(),
            Err(Error::Limit(LimitError::MemberSize { .. }))
        ));
    }
}
