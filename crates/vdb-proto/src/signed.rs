//! The signed envelope every trusted document travels in.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::key::{PublicKey, decode_hex};

/// The kinds of signed documents. The kind is part of the signed message, so a signature
/// made for one kind never verifies as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// A publisher's [`crate::ReleaseStatement`].
    Release,
    /// A master's [`crate::Manifest`].
    Manifest,
    /// A master's [`crate::PushNotice`].
    Push,
    /// A publisher's [`crate::UploadTicket`] (proof of key for one object upload).
    Upload,
    /// A monitor's [`crate::VerdictReport`].
    Verdicts,
    /// A master's [`crate::RegistryExport`].
    Registry,
    /// A mirror's [`crate::MirrorRequest`] (join, update, maintenance, key rotation, leave).
    MirrorRequest,
}

impl DocKind {
    fn tag(self) -> &'static str {
        match self {
            Self::Release => "release",
            Self::Manifest => "manifest",
            Self::Push => "push",
            Self::Upload => "upload",
            Self::Verdicts => "verdicts",
            Self::Registry => "registry",
            Self::MirrorRequest => "mirror-request",
        }
    }
}

/// A document type that travels signed.
pub trait Document: Serialize + DeserializeOwned {
    /// Which kind of document this is.
    const KIND: DocKind;
}

/// Why a signed document was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The envelope is not valid JSON of the expected shape.
    #[error("malformed signed document: {0}")]
    Malformed(String),
    /// The signing key is not one of the trusted keys.
    #[error("signed by {0}, which is not a trusted key for this {1}")]
    UntrustedKey(PublicKey, &'static str),
    /// The signature does not match the payload.
    #[error("bad signature on the {0} (the document was altered or signed by another key)")]
    BadSignature(&'static str),
    /// The payload verified but is not a valid document of this kind.
    #[error("malformed {0} payload: {1}")]
    BadPayload(&'static str, String),
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    kind: String,
    key: PublicKey,
    sig: String,
    payload: String,
}

/// A document of type `T` with the Ed25519 signature over its exact JSON bytes.
///
/// The payload is kept as the exact text that was signed, so verification never depends on
/// re-serialising; [`Signed::id`] is the SHA-256 of that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<T> {
    key: PublicKey,
    sig: [u8; 64],
    payload: String,
    _doc: PhantomData<fn() -> T>,
}

fn message(kind: DocKind, payload: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(payload.len() + 32);
    m.extend_from_slice(b"vdbnet-v1\0");
    m.extend_from_slice(kind.tag().as_bytes());
    m.push(0);
    m.extend_from_slice(payload.as_bytes());
    m
}

impl<T: Document> Signed<T> {
    /// Signs `doc` with `key`.
    #[cfg(feature = "sign")]
    pub fn sign(doc: &T, key: &crate::SecretKey) -> Self {
        let payload = serde_json::to_string(doc).expect("documents always serialise");
        let sig = key.sign(&message(T::KIND, &payload));
        Self {
            key: key.public(),
            sig,
            payload,
            _doc: PhantomData,
        }
    }

    /// Checks the signature against `trusted` and parses the payload. Nothing in the payload is
    /// looked at before the signature has been checked.
    pub fn verify(&self, trusted: &[PublicKey]) -> Result<T, VerifyError> {
        let what = T::KIND.tag();
        if !trusted.contains(&self.key) {
            return Err(VerifyError::UntrustedKey(self.key, what));
        }
        if !self.key.verify(&message(T::KIND, &self.payload), &self.sig) {
            return Err(VerifyError::BadSignature(what));
        }
        serde_json::from_str(&self.payload)
            .map_err(|e| VerifyError::BadPayload(what, e.to_string()))
    }

    /// The key that signed (not yet checked against anything).
    pub fn signer(&self) -> PublicKey {
        self.key
    }

    /// The exact signed JSON text.
    pub fn payload(&self) -> &str {
        &self.payload
    }

    /// SHA-256 (hex) of the signed payload: the document's identity.
    pub fn id(&self) -> String {
        crate::sha256_hex(self.payload.as_bytes())
    }

    /// The envelope as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Envelope {
            kind: T::KIND.tag().to_owned(),
            key: self.key,
            sig: crate::hex(&self.sig),
            payload: self.payload.clone(),
        })
        .expect("envelopes always serialise")
    }

    /// Reads an envelope. Only the shape is checked here; call [`Signed::verify`].
    pub fn from_json(text: &[u8]) -> Result<Self, VerifyError> {
        let env: Envelope =
            serde_json::from_slice(text).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if env.kind != T::KIND.tag() {
            return Err(VerifyError::Malformed(format!(
                "expected a {} document, got {:?}",
                T::KIND.tag(),
                env.kind
            )));
        }
        let sig = decode_hex(&env.sig)
            .and_then(|v| <[u8; 64]>::try_from(v).ok())
            .ok_or_else(|| VerifyError::Malformed("signature is not 128 hex digits".into()))?;
        Ok(Self {
            key: env.key,
            sig,
            payload: env.payload,
            _doc: PhantomData,
        })
    }
}

#[cfg(all(test, feature = "sign"))]
mod tests {
    use super::*;
    use crate::{PushNotice, ReleaseStatement, SecretKey};

    fn push() -> PushNotice {
        PushNotice {
            network: "net".into(),
            master: "a".into(),
            serial: 3,
            issued_at: 100,
            nonce: "00".repeat(16),
            forced: false,
            leaves: Vec::new(),
        }
    }

    #[test]
    fn sign_verify_and_tamper() {
        let k = SecretKey::from_seed([1; 32]);
        let s = Signed::sign(&push(), &k);
        let text = s.to_json();
        let back = Signed::<PushNotice>::from_json(text.as_bytes()).unwrap();
        assert_eq!(back.verify(&[k.public()]).unwrap(), push());
        assert_eq!(back.id(), s.id());

        let other = SecretKey::from_seed([2; 32]);
        assert!(matches!(
            back.verify(&[other.public()]),
            Err(VerifyError::UntrustedKey(..))
        ));
        let tampered = text.replace("\\\"serial\\\":3", "\\\"serial\\\":4");
        assert_ne!(tampered, text);
        let t = Signed::<PushNotice>::from_json(tampered.as_bytes()).unwrap();
        assert!(matches!(
            t.verify(&[k.public()]),
            Err(VerifyError::BadSignature(_))
        ));
    }

    #[test]
    fn kind_is_bound() {
        let k = SecretKey::from_seed([1; 32]);
        let text = Signed::sign(&push(), &k).to_json();
        // Relabel the envelope: the kind check refuses it, and even a forged label fails the
        // signature because the kind is part of the signed message.
        assert!(Signed::<ReleaseStatement>::from_json(text.as_bytes()).is_err());
        let relabelled = text.replace("\"kind\":\"push\"", "\"kind\":\"release\"");
        let r = Signed::<ReleaseStatement>::from_json(relabelled.as_bytes()).unwrap();
        assert!(matches!(
            r.verify(&[k.public()]),
            Err(VerifyError::BadSignature(_))
        ));
    }

    #[test]
    fn malformed() {
        for bad in [
            &b""[..],
            b"{}",
            b"[1]",
            b"{\"kind\":\"push\",\"key\":\"x\",\"sig\":\"\",\"payload\":\"\"}",
        ] {
            assert!(Signed::<PushNotice>::from_json(bad).is_err());
        }
    }
}
