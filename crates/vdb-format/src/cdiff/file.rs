//! The file layout: `ClamAV-Diff:<version>:<script length>:` header, gzip-compressed
//! script, and the RSA signature over its SHA-256 (spec §2.1).

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::error::{CdiffError, Error, LimitError, SignatureError};
use crate::keys::RsaPublic;
use crate::sigenc::{self, MAX_SIG_CHARS};

pub(super) const MAGIC: &[u8] = b"ClamAV-Diff";

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

pub(super) fn sigenc_alphabet(s: &str) -> bool {
    s.len() <= MAX_SIG_CHARS && sigenc::is_alphabet(s)
}

pub(super) fn split_number<'a>(bytes: &'a [u8], what: &str) -> Result<(u64, &'a [u8]), CdiffError> {
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
