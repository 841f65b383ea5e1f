//! ClamAV's signature encoding and verification (spec §1.4, §1.5).
//!
//! Written by hand because no crate implements ClamAV's variants: the base-64 integer
//! encoding is least-significant digit first over a non-RFC alphabet, the legacy CVD check is
//! textbook RSA over an MD5 *string*, and the PSS check places the recovered integer
//! left-aligned in a 256-byte buffer without checking the zero padding.

use rsa::BigUint;
use sha2::{Digest, Sha256};

use crate::error::SignatureError;
use crate::keys::RsaPublic;

const ALPHABET: &[u8; 64] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
/// Longest signature string accepted (ClamAV's cdiff reader reads at most 350 characters).
pub const MAX_SIG_CHARS: usize = 350;

fn digit(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// Whether every character is in ClamAV's base-64 alphabet.
pub(crate) fn is_alphabet(s: &str) -> bool {
    s.bytes().all(|c| digit(c).is_some())
}

/// Decodes a ClamAV signature string into its integer value.
pub fn decode(s: &str) -> Result<BigUint, SignatureError> {
    if s.is_empty() || s.len() > MAX_SIG_CHARS {
        return Err(SignatureError::Encoding);
    }
    // Digits are least significant first: little-endian base 64. Pack 6 bits per digit.
    let mut bytes = vec![0u8; (s.len() * 6).div_ceil(8)];
    for (i, c) in s.bytes().enumerate() {
        let d = digit(c).ok_or(SignatureError::Encoding)?;
        let bit = i * 6;
        let v = d << (bit % 8);
        bytes[bit / 8] |= (v & 0xff) as u8;
        if bit / 8 + 1 < bytes.len() {
            bytes[bit / 8 + 1] |= (v >> 8) as u8;
        }
    }
    Ok(BigUint::from_bytes_le(&bytes))
}

/// Encodes an integer as a ClamAV signature string (no padding digits).
pub fn encode(value: &BigUint) -> String {
    let bytes = value.to_bytes_le();
    let bits = bytes.len() * 8;
    let mut out = Vec::with_capacity(bits.div_ceil(6));
    for i in 0..bits.div_ceil(6) {
        let bit = i * 6;
        let mut v = u32::from(bytes[bit / 8]) >> (bit % 8);
        if bit / 8 + 1 < bytes.len() {
            v |= u32::from(bytes[bit / 8 + 1]) << (8 - bit % 8);
        }
        out.push(ALPHABET[(v & 63) as usize]);
    }
    while out.len() > 1 && out.last() == Some(&ALPHABET[0]) {
        out.pop();
    }
    String::from_utf8(out).expect("alphabet is ASCII")
}

/// Verifies a legacy CVD header signature: `sig^e mod n`, written big-endian into the start
/// of a 16-byte zero buffer, must equal the MD5 given as 32 lowercase hex digits.
pub fn verify_md5(md5_hex: &str, dsig: &str, key: &RsaPublic) -> Result<(), SignatureError> {
    let sig = decode(dsig)?;
    let m = sig.modpow(&key.e, &key.n).to_bytes_be();
    // BN_bn2bin writes nothing for zero.
    let m: &[u8] = if m == [0] { &[] } else { &m };
    if m.len() > 16 {
        return Err(SignatureError::TooLarge);
    }
    let mut buf = [0u8; 16];
    buf[..m.len()].copy_from_slice(m);
    if hex(&buf) == md5_hex {
        Ok(())
    } else {
        Err(SignatureError::Mismatch(key.name.clone()))
    }
}

/// Length of the PSS encoded message ClamAV works with.
pub(crate) const PSS_EM_LEN: usize = 256;
const HASH_LEN: usize = 32;
const SALT_LEN: usize = 32;

/// Verifies a ClamAV PSS signature (`cli_versig2`) over a SHA-256 digest.
pub fn verify_pss(digest: &[u8; 32], dsig: &str, key: &RsaPublic) -> Result<(), SignatureError> {
    let sig = decode(dsig)?;
    let m = sig.modpow(&key.e, &key.n).to_bytes_be();
    if m.len() > PSS_EM_LEN {
        return Err(SignatureError::TooLarge);
    }
    let mismatch = || SignatureError::Mismatch(key.name.clone());
    // Left-aligned in a zeroed 256-byte buffer, as BN_bn2bin into the buffer start.
    let mut em = [0u8; PSS_EM_LEN];
    em[..m.len()].copy_from_slice(&m);
    if em[PSS_EM_LEN - 1] != 0xbc {
        return Err(mismatch());
    }
    let db_len = PSS_EM_LEN - HASH_LEN - 1;
    let h = &em[db_len..PSS_EM_LEN - 1];
    let mut db = em[..db_len].to_vec();
    mgf1_xor(&mut db, h);
    db[0] &= 0x7f;
    let one = db.iter().position(|&b| b == 1).ok_or_else(mismatch)?;
    let salt = &db[one + 1..];
    if salt.len() != SALT_LEN {
        return Err(mismatch());
    }
    let mut hasher = Sha256::new();
    hasher.update([0u8; 8]);
    hasher.update(digest);
    hasher.update(salt);
    if hasher.finalize().as_slice() == h {
        Ok(())
    } else {
        Err(mismatch())
    }
}

fn mgf1_xor(out: &mut [u8], seed: &[u8]) {
    let mut counter = 0u32;
    let mut offset = 0;
    while offset < out.len() {
        let mut hasher = Sha256::new();
        hasher.update(seed);
        hasher.update(counter.to_be_bytes());
        let block = hasher.finalize();
        for (o, b) in out[offset..].iter_mut().zip(block.iter()) {
            *o ^= b;
        }
        offset += HASH_LEN;
        counter += 1;
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Parses 64 lowercase hex digits.
pub(crate) fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_decode(bytes in proptest::collection::vec(any::<u8>(), 1..200)) {
            let v = BigUint::from_bytes_le(&bytes);
            let s = encode(&v);
            if s.len() <= MAX_SIG_CHARS {
                prop_assert_eq!(decode(&s).unwrap(), v);
            }
        }
    }

    #[test]
    fn digits_are_little_endian() {
        assert_eq!(decode("b").unwrap(), BigUint::from(1u32));
        assert_eq!(decode("ab").unwrap(), BigUint::from(64u32));
        assert_eq!(decode("ba").unwrap(), BigUint::from(1u32));
        assert_eq!(decode("ac").unwrap(), BigUint::from(128u32));
        assert_eq!(encode(&BigUint::from(128u32)), "ac");
        assert_eq!(encode(&BigUint::from(1u32)), "b");
        assert!(decode("a-b").is_err());
        assert!(decode("").is_err());
    }
}
