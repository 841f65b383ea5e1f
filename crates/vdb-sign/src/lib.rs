//! Signing ClamAV databases with a network's own RSA key set.
//!
//! ClamAV's formats carry three RSA signatures (spec §1.4, §1.5): the legacy CVD header
//! signature (textbook RSA over the body MD5), the `.info` `DSIG:` line and the `.cdiff`
//! trailer (both RSA-PSS/SHA-256, salt 32, encoded in ClamAV's base-64). Stock ClamAV clients
//! only accept the official keys, so these signatures are for a network's own clients and
//! tools (`vdb-update`, masters, mirrors) configured with the network's public key set.
//!
//! Only the `vdb` binary links this crate: clients and servers verify, never sign.
//!
//! ```no_run
//! use vdb_sign::PrivateKeySet;
//! let keys = PrivateKeySet::generate("mynet", &mut rand_core::OsRng).unwrap();
//! let text = keys.to_text(); // store with mode 0600
//! let public = keys.public(); // what verifiers need
//! # let _ = (text, public);
//! ```

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRngCore, SeedableRng};
use rsa::signature::SignatureEncoding;
use rsa::signature::hazmat::RandomizedPrehashSigner;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey};
use std::sync::Mutex;
use vdb_format::{Error, KeySet, RsaPublic, Signer, sigenc};

/// Modulus size of generated keys.
pub const KEY_BITS: usize = 2048;
/// How often a PSS signature is retried when ClamAV's verifier would reject it
/// (top byte of the encoded message zero: probability 1/128 per try).
const PSS_TRIES: usize = 64;

/// Why a private key set could not be made or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not a key set.
    #[error("key set: {0}")]
    Format(#[from] vdb_format::KeyError),
    /// A private part is missing (the file is a public key set).
    #[error(
        "{0} is missing: this is a public key set, signing needs the private one made by `vdb db keygen`"
    )]
    NotPrivate(String),
    /// The numbers do not form a valid RSA key.
    #[error("{role} key is not a valid RSA key: {source}")]
    Invalid {
        /// Which key.
        role: &'static str,
        /// Why.
        source: rsa::Error,
    },
}

/// A private ClamAV key set: CVD, `.info` and cdiff keys.
pub struct PrivateKeySet {
    name: String,
    cvd: RsaPrivateKey,
    info: RsaPrivateKey,
    cdiff: RsaPrivateKey,
    rng: Mutex<ChaCha20Rng>,
}

impl std::fmt::Debug for PrivateKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKeySet")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PrivateKeySet {
    /// Generates a new key set (three 2048-bit keys, exponent 65537).
    pub fn generate(name: &str, rng: &mut impl CryptoRngCore) -> Result<Self, KeyError> {
        let e = BigUint::from(65_537u32);
        let mut key = |role| {
            RsaPrivateKey::new_with_exp(rng, KEY_BITS, &e)
                .map_err(|source| KeyError::Invalid { role, source })
        };
        let (cvd, info, cdiff) = (key("cvd")?, key("info")?, key("cdiff")?);
        Ok(Self::from_keys(name, cvd, info, cdiff))
    }

    fn from_keys(
        name: &str,
        cvd: RsaPrivateKey,
        info: RsaPrivateKey,
        cdiff: RsaPrivateKey,
    ) -> Self {
        Self {
            name: name.to_owned(),
            cvd,
            info,
            cdiff,
            rng: Mutex::new(ChaCha20Rng::from_entropy()),
        }
    }

    /// Reads the text written by [`PrivateKeySet::to_text`].
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let public = KeySet::from_text(text)?;
        let fields = vdb_format::parse_key_fields(text)?;
        let get = |name: String| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
                .ok_or(KeyError::NotPrivate(name))
        };
        let key = |role: &'static str, public: &RsaPublic| -> Result<RsaPrivateKey, KeyError> {
            let d = get(format!("{role}.d"))?;
            let primes = vec![get(format!("{role}.p"))?, get(format!("{role}.q"))?];
            let k = RsaPrivateKey::from_components(public.n.clone(), public.e.clone(), d, primes)
                .map_err(|source| KeyError::Invalid { role, source })?;
            k.validate()
                .map_err(|source| KeyError::Invalid { role, source })?;
            Ok(k)
        };
        Ok(Self::from_keys(
            &public.name,
            key("cvd", &public.cvd)?,
            key("info", &public.info)?,
            key("cdiff", &public.cdiff)?,
        ))
    }

    /// The private key set as text. Keep it secret.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "# vdbnet ClamAV key set (PRIVATE: keep secret; share `vdb db keygen --public` output instead)\nname = {}\n",
            self.name
        );
        for (role, k) in [
            ("cvd", &self.cvd),
            ("info", &self.info),
            ("cdiff", &self.cdiff),
        ] {
            out.push_str(&format!(
                "{role}.n = {}\n{role}.e = {}\n{role}.d = {}\n",
                k.n(),
                k.e(),
                k.d()
            ));
            let p = k.primes();
            out.push_str(&format!("{role}.p = {}\n{role}.q = {}\n", p[0], p[1]));
        }
        out
    }

    /// The public half, for verifiers.
    pub fn public(&self) -> KeySet {
        let key = |k: &RsaPrivateKey, role: &str| RsaPublic {
            n: k.n().clone(),
            e: k.e().clone(),
            name: format!("{} {role}", self.name),
        };
        KeySet {
            name: self.name.clone(),
            cvd: key(&self.cvd, "cvd"),
            info: key(&self.info, "info"),
            cdiff: key(&self.cdiff, "cdiff"),
        }
    }

    /// Makes signatures reproducible (for tests and `vdb db synth`).
    pub fn with_seed(self, seed: u64) -> Self {
        *self.rng.lock().unwrap_or_else(|p| p.into_inner()) = ChaCha20Rng::seed_from_u64(seed);
        self
    }

    fn pss(
        &self,
        key: &RsaPrivateKey,
        public: &RsaPublic,
        digest: &[u8; 32],
    ) -> Result<String, Error> {
        let signer =
            rsa::pss::BlindedSigningKey::<rsa::sha2::Sha256>::new_with_salt_len(key.clone(), 32);
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..PSS_TRIES {
            let sig = signer
                .sign_prehash_with_rng(&mut *rng, digest)
                .map_err(|e| Error::Sign(e.to_string()))?;
            let text = sigenc::encode(&BigUint::from_bytes_be(&sig.to_bytes()));
            // ClamAV rejects encodings whose top byte is zero; a new salt fixes that.
            if sigenc::verify_pss(digest, &text, public).is_ok() {
                return Ok(text);
            }
        }
        Err(Error::Sign(
            "no PSS signature ClamAV accepts after 64 salts".into(),
        ))
    }
}

impl Signer for PrivateKeySet {
    fn sign_md5(&self, md5: &[u8; 16]) -> Result<String, Error> {
        if md5[0] == 0 {
            return Err(Error::Sign(
                "an MD5 starting with 0x00 can never verify; rebuild".into(),
            ));
        }
        let m = BigUint::from_bytes_be(md5);
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let sig = rsa::hazmat::rsa_decrypt_and_check(&self.cvd, Some(&mut *rng), &m)
            .map_err(|e| Error::Sign(e.to_string()))?;
        Ok(sigenc::encode(&sig))
    }

    fn sign_info(&self, digest: &[u8; 32]) -> Result<String, Error> {
        self.pss(&self.info, &self.public().info, digest)
    }

    fn sign_cdiff(&self, digest: &[u8; 32]) -> Result<String, Error> {
        self.pss(&self.cdiff, &self.public().cdiff, digest)
    }
}

/// A deterministic key set from a seed (for benchmarks and tests, never for production).
pub fn deterministic_keys(name: &str, seed: u64) -> Result<PrivateKeySet, KeyError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    Ok(PrivateKeySet::generate(name, &mut rng)?.with_seed(seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdb_format::sigenc;

    #[test]
    fn signatures_verify_with_clamav_rules() {
        let keys = deterministic_keys("test", 7).unwrap();
        let public = keys.public();
        let md5 = [0x5au8; 16];
        let sig = keys.sign_md5(&md5).unwrap();
        sigenc::verify_md5(&"5a".repeat(16), &sig, &public.cvd).unwrap();
        assert!(sigenc::verify_md5(&"5b".repeat(16), &sig, &public.cvd).is_err());
        assert!(sigenc::verify_md5(&"5a".repeat(16), &sig, &KeySet::official().cvd).is_err());
        for i in 0..40u8 {
            let digest = [i; 32];
            let sig = keys.sign_info(&digest).unwrap();
            sigenc::verify_pss(&digest, &sig, &public.info).unwrap();
            assert!(sigenc::verify_pss(&digest, &sig, &public.cdiff).is_err());
            assert!(sig.len() <= sigenc::MAX_SIG_CHARS);
        }
        assert!(keys.sign_md5(&[0u8; 16]).is_err());
        let back = PrivateKeySet::from_text(&keys.to_text()).unwrap();
        assert_eq!(back.public(), public);
        assert!(matches!(
            PrivateKeySet::from_text(&public.to_text()),
            Err(KeyError::NotPrivate(_))
        ));
    }
}
