//! The `<db>.info` manifest inside every container (spec §1.3).

use sha2::{Digest, Sha256};

use crate::error::{Error, InfoError};
use crate::header::Header;
use crate::names::is_safe_member_name;
use crate::sigenc::{self, hex, parse_sha256};

/// One `name:size:sha256` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoEntry {
    /// Member name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the member.
    pub sha256: [u8; 32],
}

/// A parsed `.info` manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The header line (MD5 and signature are normally `X`).
    pub header: Header,
    /// The member lines, in order.
    pub entries: Vec<InfoEntry>,
    /// The `DSIG:` payload, if present.
    pub dsig: Option<String>,
    /// SHA-256 over every line before `DSIG:`, newlines included: what the DSIG signs.
    pub signed_digest: [u8; 32],
}

impl Info {
    /// Parses a manifest. `member` names it in errors.
    pub fn parse(bytes: &[u8], member: &str) -> Result<Self, Error> {
        let err = |line: usize, kind: InfoError| Error::Info {
            member: member.to_owned(),
            line,
            kind,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| err(1, InfoError::NotText))?;
        let mut header = None;
        let mut entries: Vec<InfoEntry> = Vec::new();
        let mut dsig = None;
        let mut signed_len = bytes.len();
        let mut offset = 0;
        for (i, raw) in text.split_inclusive('\n').enumerate() {
            let line_no = i + 1;
            let start = offset;
            offset += raw.len();
            if dsig.is_some() {
                return Err(err(line_no, InfoError::AfterDsig));
            }
            let line = raw.strip_suffix('\n');
            if let Some(sig) = raw.strip_prefix("DSIG:") {
                let sig = sig.strip_suffix('\n').unwrap_or(sig);
                if header.is_none() {
                    return Err(err(line_no, InfoError::Empty));
                }
                signed_len = start;
                dsig = Some(sig.to_owned());
                continue;
            }
            let line = line.ok_or_else(|| err(line_no, InfoError::Unterminated))?;
            if header.is_none() {
                header = Some(Header::parse_line(line).map_err(Error::Header)?);
                continue;
            }
            let entry = parse_entry(line)
                .ok_or_else(|| err(line_no, InfoError::Entry(line.chars().take(120).collect())))?;
            if entries.iter().any(|e| e.name == entry.name) {
                return Err(err(line_no, InfoError::Duplicate(entry.name)));
            }
            entries.push(entry);
        }
        let header = header.ok_or_else(|| err(1, InfoError::Empty))?;
        let signed_digest = Sha256::digest(&bytes[..signed_len]).into();
        Ok(Self {
            header,
            entries,
            dsig,
            signed_digest,
        })
    }

    /// Looks up an entry by member name.
    pub fn entry(&self, name: &str) -> Option<&InfoEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The unsigned part of the manifest: header line and entries, each newline-terminated.
    pub fn unsigned_text(header: &Header, entries: &[InfoEntry]) -> String {
        let mut out = header.info_line();
        out.push('\n');
        for e in entries {
            out.push_str(&format!("{}:{}:{}\n", e.name, e.size, hex(&e.sha256)));
        }
        out
    }

    /// Verifies the DSIG under `key`.
    pub fn verify(&self, key: &crate::keys::RsaPublic) -> Result<(), Error> {
        let what = "`.info` DSIG";
        let dsig = self.dsig.as_deref().ok_or(Error::Signature {
            what,
            kind: crate::error::SignatureError::Missing,
        })?;
        sigenc::verify_pss(&self.signed_digest, dsig, key)
            .map_err(|kind| Error::Signature { what, kind })
    }
}

fn parse_entry(line: &str) -> Option<InfoEntry> {
    let mut parts = line.split(':');
    let name = parts.next()?;
    let size = parts.next()?;
    let sha = parts.next()?;
    if parts.next().is_some() || !is_safe_member_name(name) {
        return None;
    }
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(InfoEntry {
        name: name.to_owned(),
        size: size.parse().ok()?,
        sha256: parse_sha256(&sha.to_ascii_lowercase())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_errors() {
        let good = b"ClamAV-VDB:22 Jun 2021 21-34 -0400:6:14:81:X:X:micasnyd:1624412045\ntest.cfg:44:0748b843a1cea3242d70531083b84f877d8de398cfefe65509b5d3bb1e3bcb57\nDSIG:abc\n";
        let info = Info::parse(good, "test.info").unwrap();
        assert_eq!(info.entries.len(), 1);
        assert_eq!(info.dsig.as_deref(), Some("abc"));
        let signed = good.len() - b"DSIG:abc\n".len();
        assert_eq!(
            info.signed_digest,
            <[u8; 32]>::from(Sha256::digest(&good[..signed]))
        );

        let mut after = good.to_vec();
        after.extend_from_slice(b"x.ndb:1:00\n");
        assert!(matches!(
            Info::parse(&after, "t.info"),
            Err(Error::Info {
                line: 4,
                kind: InfoError::AfterDsig,
                ..
            })
        ));
        let bad = b"ClamAV-VDB:a:1:1:1:X:X:b:1\n../x:1:0748b843a1cea3242d70531083b84f877d8de398cfefe65509b5d3bb1e3bcb57\n";
        assert!(matches!(
            Info::parse(bad, "t.info"),
            Err(Error::Info {
                line: 2,
                kind: InfoError::Entry(_),
                ..
            })
        ));
        let unterminated = b"ClamAV-VDB:a:1:1:1:X:X:b:1";
        assert!(matches!(
            Info::parse(unterminated, "t.info"),
            Err(Error::Info {
                line: 1,
                kind: InfoError::Unterminated,
                ..
            })
        ));
    }
}
