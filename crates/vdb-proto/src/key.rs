//! Ed25519 keys in vdbnet's one-line text form.
//!
//! A public key is `ed25519:<64 hex>`; a secret key file holds `ed25519-secret:<64 hex>` (the
//! 32-byte seed), optionally preceded by `#` comment lines. The text form is what config files
//! list (`publishers`, `master_keys`) and what `vdb key gen` writes.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, VerifyingKey};

const PUBLIC_PREFIX: &str = "ed25519:";
#[cfg(feature = "sign")]
const SECRET_PREFIX: &str = "ed25519-secret:";

/// Why a key could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The text is not `ed25519:` followed by 64 hex digits.
    #[error("not an Ed25519 public key (expected `ed25519:` and 64 hex digits)")]
    BadPublic,
    /// The text is not a secret key file.
    #[error("not an Ed25519 secret key (expected a line `ed25519-secret:` and 64 hex digits)")]
    BadSecret,
    /// The 32 bytes are not a point on the curve.
    #[error("the public key is not a valid Ed25519 point")]
    InvalidPoint,
}

/// An Ed25519 public key: who signed a document.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `sig` over `msg` was made by this key (strict verification: no malleable
    /// signatures, no small-order keys).
    pub(crate) fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        let Ok(vk) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        vk.verify_strict(msg, &Signature::from_bytes(sig)).is_ok()
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let hex = s
            .trim()
            .strip_prefix(PUBLIC_PREFIX)
            .ok_or(KeyError::BadPublic)?;
        let bytes = decode_hex32(hex).ok_or(KeyError::BadPublic)?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPoint)?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", crate::hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signing key. Its `Debug` output never shows the secret.
#[cfg(feature = "sign")]
#[derive(Clone)]
pub struct SecretKey(ed25519_dalek::SigningKey);

#[cfg(feature = "sign")]
impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Self {
        use rand_core::RngCore as _;
        let mut seed = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    /// The key for a 32-byte seed (deterministic; for tests and `vdbd dev`).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Reads the text form (see the module docs).
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or(KeyError::BadSecret)?;
        let hex = line
            .strip_prefix(SECRET_PREFIX)
            .ok_or(KeyError::BadSecret)?;
        Ok(Self::from_seed(
            decode_hex32(hex).ok_or(KeyError::BadSecret)?,
        ))
    }

    /// The text form, with a comment naming the public key.
    pub fn to_text(&self) -> String {
        format!(
            "# vdbnet secret key; public key {}\n{SECRET_PREFIX}{}\n",
            self.public(),
            crate::hex(&self.0.to_bytes())
        )
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    /// Reads the key file at `path`, or, when there is none, makes a key and writes it there:
    /// readable by its owner only (`0600`), through a temporary file that is fsynced and then
    /// linked into place, so that a crash leaves no partial key and an existing file (another
    /// process's key) is never replaced. Returns the key and whether it was made now.
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<(Self, bool)> {
        use std::io::{Error, ErrorKind, Write as _};
        use std::os::unix::fs::OpenOptionsExt as _;
        let read = |p: &std::path::Path| -> std::io::Result<Self> {
            let text = std::fs::read_to_string(p)?;
            Self::from_text(&text)
                .map_err(|e| Error::new(ErrorKind::InvalidData, format!("{}: {e}", p.display())))
        };
        match read(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            other => return other.map(|k| (k, false)),
        }
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir)?;
        let key = Self::generate();
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
            std::process::id()
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let written = f
            .write_all(key.to_text().as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::hard_link(&tmp, path));
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                std::fs::File::open(dir)?.sync_all()?;
                Ok((key, true))
            }
            // Another process made it first: its key is the key.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => read(path).map(|k| (k, false)),
            Err(e) => Err(e),
        }
    }

    /// Signs `msg`.
    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.0.sign(msg).to_bytes()
    }
}

#[cfg(feature = "sign")]
impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public())
    }
}

pub(crate) fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let v = decode_hex(s)?;
    v.try_into().ok()
}

pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            let pair = s.get(i..i + 2)?;
            if !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u8::from_str_radix(pair, 16).ok()
        })
        .collect()
}

#[cfg(all(test, feature = "sign"))]
mod tests {
    #[test]
    fn a_key_file_is_made_once_owner_only_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/monitor.key");
        let (a, made) = super::SecretKey::load_or_create(&path).unwrap();
        assert!(made);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, made) = super::SecretKey::load_or_create(&path).unwrap();
        assert!(!made);
        assert_eq!(a.public(), b.public());
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1,
            "no temp file left"
        );
        std::fs::write(&path, "not a key").unwrap();
        assert!(
            super::SecretKey::load_or_create(&path).is_err(),
            "a broken key file is an error, never replaced"
        );
    }

    use super::*;

    #[test]
    fn text_round_trip() {
        let k = SecretKey::from_seed([7; 32]);
        let back = SecretKey::from_text(&k.to_text()).unwrap();
        assert_eq!(back.public(), k.public());
        let p: PublicKey = k.public().to_string().parse().unwrap();
        assert_eq!(p, k.public());
        assert!(!format!("{k:?}").contains(&crate::hex(&[7; 32])));
    }

    #[test]
    fn bad_text() {
        assert_eq!("ed25519:zz".parse::<PublicKey>(), Err(KeyError::BadPublic));
        assert_eq!("".parse::<PublicKey>(), Err(KeyError::BadPublic));
        let short = format!("ed25519:{}", "ab".repeat(31));
        assert_eq!(short.parse::<PublicKey>(), Err(KeyError::BadPublic));
        assert!(SecretKey::from_text("# only a comment\n").is_err());
        assert!(SecretKey::from_text("ed25519-secret:00").is_err());
    }
}
