//! A mirror's own requests to the masters, signed with its identity key: joining the network,
//! then changing its record, announcing maintenance, rotating its key and leaving; and the
//! signed `Authorization` header a joined mirror pulls objects with.
//!
//! A [`MirrorRequest`] travels in a [`crate::Signed`] envelope of kind
//! [`crate::DocKind::MirrorRequest`]. It names the network (a request for another network is
//! refused), carries its time and a random nonce (masters refuse stale times and nonces they saw),
//! and one [`MirrorAction`]. A join is signed by the key it asks the masters to pin; every later
//! request must be signed by the pinned key. A key rotation is signed by the old key and carries
//! a proof made with the new one, so nobody can pin a key they do not hold.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::PublicKey;
use crate::key::decode_hex;
use crate::registry::{MaintenanceWindow, MirrorRecord};
use crate::signed::{DocKind, Document};

/// The most bytes of a signed mirror request a master reads.
pub const MAX_REQUEST_BYTES: usize = 16 << 10;

/// The `Authorization` scheme of a mirror's signed pulls.
pub const PULL_AUTH_SCHEME: &str = "Vdb-Mirror";

/// What a mirror may ask for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorAction {
    /// Register this mirror with the signing key as its identity key (the network's admin
    /// approves or rejects it). The record's `identity_key` must be the signer; `drained` and
    /// `maintenance` are the network's, not the mirror's, and must be empty.
    Join(MirrorRecord),
    /// Change the mirror's public details (only the fields given).
    Update(MirrorChanges),
    /// Announce a planned downtime (added to the record's windows; past ones are dropped).
    Maintenance(MaintenanceWindow),
    /// Replace the identity key: signed by the old key, `proof` is the new key's signature over
    /// [`rotate_message`], so only the holder of the new key can have it pinned.
    RotateKey {
        /// The new key.
        new_key: PublicKey,
        /// The new key's signature (hex).
        proof: String,
    },
    /// Leave the network: the record is removed (its history stays).
    Leave {
        /// Why, for the registry's history.
        #[serde(default)]
        reason: String,
    },
}

impl MirrorAction {
    /// A short name for logs and the registry's history.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Join(_) => "join",
            Self::Update(_) => "update",
            Self::Maintenance(_) => "maintenance",
            Self::RotateKey { .. } => "rotate_key",
            Self::Leave { .. } => "leave",
        }
    }
}

/// The fields of a mirror's record it may change itself (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorChanges {
    /// Where masters push notices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_url: Option<String>,
    /// Public base URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_urls: Option<Vec<String>>,
    /// Host names and aliases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Addresses the directory hands out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<Vec<IpAddr>>,
    /// Bandwidth in Mbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbps: Option<u32>,
    /// The mirror admin's e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_contact: Option<String>,
}

impl MirrorChanges {
    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Applies the changes to `r`.
    pub fn apply(&self, r: &mut MirrorRecord) {
        if let Some(v) = &self.push_url {
            r.push_url = Some(v.clone());
        }
        if let Some(v) = &self.base_urls {
            r.base_urls.clone_from(v);
        }
        if let Some(v) = &self.hosts {
            r.hosts.clone_from(v);
        }
        if let Some(v) = &self.addresses {
            r.addresses.clone_from(v);
        }
        if let Some(v) = self.bandwidth_mbps {
            r.bandwidth_mbps = v;
        }
        if let Some(v) = &self.admin_contact {
            r.admin_contact = Some(v.clone());
        }
    }
}

/// A mirror's signed request (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorRequest {
    /// The network's name.
    pub network: String,
    /// The mirror's name.
    pub name: String,
    /// When it was signed (Unix seconds).
    pub issued_at: i64,
    /// 16 random bytes in hex: with `issued_at`, makes every request unique.
    pub nonce: String,
    /// What the mirror asks for.
    pub action: MirrorAction,
}

impl Document for MirrorRequest {
    const KIND: DocKind = DocKind::MirrorRequest;
}

/// Why a mirror request (whose signature verified) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// For another network.
    #[error("the request is for network {0:?}")]
    WrongNetwork(String),
    /// Too old, or from the future.
    #[error(
        "the request was signed at {issued_at}, outside the accepted window around now ({now}, ±{window} s): check the mirror's clock"
    )]
    Stale {
        /// The request's time.
        issued_at: i64,
        /// The master's time.
        now: i64,
        /// The allowed skew.
        window: i64,
    },
    /// The nonce is not 32 hex digits.
    #[error("the request's nonce must be 32 hex digits")]
    BadNonce,
    /// A field makes no sense.
    #[error("{0}")]
    BadField(String),
    /// A join whose record does not pin the key that signed it.
    #[error("a join must pin the key that signs it ({0})")]
    KeyMismatch(PublicKey),
    /// A key rotation whose proof is not the new key's signature.
    #[error("the new key's proof does not verify (the new key must sign the rotation)")]
    BadProof,
}

fn check_url(u: &str) -> Result<(), RequestError> {
    if u.len() > 512 || !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(RequestError::BadField(format!(
            "URL {u:?} must start with http:// or https:// (and be under 512 bytes)"
        )));
    }
    Ok(())
}

fn check_text(field: &str, s: &str, max: usize) -> Result<(), RequestError> {
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(RequestError::BadField(format!(
            "field `{field}`: at most {max} bytes, no control characters"
        )));
    }
    Ok(())
}

fn check_list<T>(field: &str, v: &[T], max: usize) -> Result<(), RequestError> {
    if v.len() > max {
        return Err(RequestError::BadField(format!(
            "field `{field}`: at most {max} entries"
        )));
    }
    Ok(())
}

fn check_hosts(hosts: &[String]) -> Result<(), RequestError> {
    check_list("hosts", hosts, 32)?;
    for h in hosts {
        if h.is_empty()
            || h.len() > 253
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        {
            return Err(RequestError::BadField(format!("host name {h:?}")));
        }
    }
    Ok(())
}

/// Checks the fields of a record a mirror sends (joins) or ends up with (updates).
pub fn check_mirror_fields(r: &MirrorRecord) -> Result<(), RequestError> {
    if !crate::is_safe_db_name(&r.name) {
        return Err(RequestError::BadField(
            "mirror names are [a-z0-9_-], 1-64 characters".into(),
        ));
    }
    check_list("base_urls", &r.base_urls, 16)?;
    if r.base_urls.is_empty() {
        return Err(RequestError::BadField(
            "list at least one public base URL".into(),
        ));
    }
    for u in r.push_url.iter().chain(&r.base_urls) {
        check_url(u)?;
    }
    check_hosts(&r.hosts)?;
    check_list("addresses", &r.addresses, 32)?;
    if let Some(c) = &r.country
        && !(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
    {
        return Err(RequestError::BadField(format!(
            "country {c:?}: an ISO 3166 code in capitals (DE, JP)"
        )));
    }
    for (field, v) in [("region", &r.region), ("admin_contact", &r.admin_contact)] {
        if let Some(v) = v {
            check_text(field, v, 254)?;
        }
    }
    if !(1..=1_000_000).contains(&r.bandwidth_mbps) {
        return Err(RequestError::BadField(
            "field `bandwidth_mbps`: 1 to 1000000".into(),
        ));
    }
    check_list("maintenance", &r.maintenance, 16)?;
    for w in &r.maintenance {
        check_text("maintenance.reason", &w.reason, 200)?;
    }
    Ok(())
}

impl MirrorRequest {
    /// A fresh request with a random nonce.
    #[cfg(feature = "sign")]
    pub fn new(network: &str, name: &str, now: i64, action: MirrorAction) -> Self {
        Self {
            network: network.to_owned(),
            name: name.to_owned(),
            issued_at: now,
            nonce: random_nonce(),
            action,
        }
    }

    /// A key rotation from `old` (which signs the request) to `new` (which signs the proof).
    #[cfg(feature = "sign")]
    pub fn rotate(
        network: &str,
        name: &str,
        now: i64,
        old: &crate::SecretKey,
        new: &crate::SecretKey,
    ) -> Self {
        let proof = new.sign(&rotate_message(network, name, &old.public(), &new.public()));
        Self::new(
            network,
            name,
            now,
            MirrorAction::RotateKey {
                new_key: new.public(),
                proof: crate::hex(&proof),
            },
        )
    }

    /// Checks a request whose envelope was signed by `signer`: the network, the time window,
    /// the nonce's form, the fields, a join's pinned key and a rotation's proof. Whether
    /// `signer` is the mirror's key, and whether the nonce was seen, is the master's to check.
    pub fn check(
        &self,
        signer: &PublicKey,
        network: &str,
        now: i64,
        window: i64,
    ) -> Result<(), RequestError> {
        if self.network != network {
            return Err(RequestError::WrongNetwork(self.network.clone()));
        }
        if self.issued_at.abs_diff(now) > window.unsigned_abs() {
            return Err(RequestError::Stale {
                issued_at: self.issued_at,
                now,
                window,
            });
        }
        if self.nonce.len() != 32 || !self.nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RequestError::BadNonce);
        }
        if !crate::is_safe_db_name(&self.name) {
            return Err(RequestError::BadField(
                "mirror names are [a-z0-9_-], 1-64 characters".into(),
            ));
        }
        match &self.action {
            MirrorAction::Join(r) => {
                if r.name != self.name {
                    return Err(RequestError::BadField(
                        "the record's name is not the request's".into(),
                    ));
                }
                if r.identity_key != Some(*signer) {
                    return Err(RequestError::KeyMismatch(*signer));
                }
                if r.drained || !r.maintenance.is_empty() {
                    return Err(RequestError::BadField(
                        "a join carries no drain or maintenance windows".into(),
                    ));
                }
                check_mirror_fields(r)
            }
            MirrorAction::Update(c) => {
                if c.is_empty() {
                    return Err(RequestError::BadField(
                        "an update that changes nothing".into(),
                    ));
                }
                let mut r = MirrorRecord::new(self.name.clone(), "http://x");
                c.apply(&mut r);
                check_mirror_fields(&r)
            }
            MirrorAction::Maintenance(w) => {
                if w.end <= w.start || w.end.saturating_sub(w.start) > 31 * 86_400 {
                    return Err(RequestError::BadField(
                        "a maintenance window ends after it starts and lasts at most 31 days"
                            .into(),
                    ));
                }
                if w.end <= now {
                    return Err(RequestError::BadField(
                        "the maintenance window is already over".into(),
                    ));
                }
                check_text("reason", &w.reason, 200)
            }
            MirrorAction::RotateKey { new_key, proof } => {
                let ok = decode_hex(proof)
                    .and_then(|v| <[u8; 64]>::try_from(v).ok())
                    .is_some_and(|sig| {
                        new_key.verify(&rotate_message(network, &self.name, signer, new_key), &sig)
                    });
                if !ok {
                    return Err(RequestError::BadProof);
                }
                if new_key == signer {
                    return Err(RequestError::BadField("the new key is the old one".into()));
                }
                Ok(())
            }
            MirrorAction::Leave { reason } => check_text("reason", reason, 200),
        }
    }
}

/// What a rotation's new key signs: the network, the mirror, the old and the new key. The tag
/// `rotate-key` is no document kind, so this can never pass for a signed document.
pub fn rotate_message(network: &str, name: &str, old: &PublicKey, new: &PublicKey) -> Vec<u8> {
    format!("vdbnet-v1\0rotate-key\0{network}\0{name}\0{old}\0{new}").into_bytes()
}

#[cfg(feature = "sign")]
fn random_nonce() -> String {
    use rand_core::RngCore as _;
    let mut nonce = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut nonce);
    crate::hex(&nonce)
}

/// What a mirror's pull signature covers: the network, the mirror, the HTTP method, the
/// request's path and the time. The tag `pull` is no document kind.
fn pull_message(network: &str, name: &str, method: &str, path: &str, at: i64) -> Vec<u8> {
    format!("vdbnet-v1\0pull\0{network}\0{name}\0{method}\0{path}\0{at}").into_bytes()
}

/// The `Authorization` header value of a mirror's pull: `Vdb-Mirror name=<name> t=<unix
/// seconds> sig=<hex>`, a signature by its identity key over the network, its name, the method,
/// the path and the time. A master accepts it within a short window of its own clock.
#[cfg(feature = "sign")]
pub fn pull_authorization(
    key: &crate::SecretKey,
    network: &str,
    name: &str,
    method: &str,
    path: &str,
    now: i64,
) -> String {
    let sig = key.sign(&pull_message(network, name, method, path, now));
    format!(
        "{PULL_AUTH_SCHEME} name={name} t={now} sig={}",
        crate::hex(&sig)
    )
}

/// A parsed pull `Authorization` header (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullAuth {
    /// The mirror's name.
    pub name: String,
    /// When it was signed.
    pub at: i64,
    sig: [u8; 64],
}

/// Why a signed pull is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullAuthError {
    /// Signed too long ago or in the future.
    #[error(
        "the pull was signed at {at}, outside ±{window} s of the master's clock ({now}): check the mirror's clock"
    )]
    Stale {
        /// The header's time.
        at: i64,
        /// The master's time.
        now: i64,
        /// The window.
        window: i64,
    },
    /// The signature is not the mirror's key's over this request.
    #[error("the pull signature does not verify with mirror {0:?}'s identity key")]
    BadSignature(String),
}

impl PullAuth {
    /// Parses a header value; `None` when it is not of the [`PULL_AUTH_SCHEME`] form.
    pub fn parse(header: &str) -> Option<Self> {
        let rest = header.strip_prefix(PULL_AUTH_SCHEME)?.strip_prefix(' ')?;
        let (mut name, mut at, mut sig) = (None, None, None);
        for part in rest.split(' ').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=')?;
            match k {
                "name" if crate::is_safe_db_name(v) => name = Some(v.to_owned()),
                "t" => at = v.parse::<i64>().ok(),
                "sig" => sig = decode_hex(v).and_then(|v| <[u8; 64]>::try_from(v).ok()),
                _ => return None,
            }
        }
        Some(Self {
            name: name?,
            at: at?,
            sig: sig?,
        })
    }

    /// Checks the signature with the mirror's `key` for this request, within ±`window` s.
    pub fn verify(
        &self,
        key: &PublicKey,
        network: &str,
        method: &str,
        path: &str,
        now: i64,
        window: i64,
    ) -> Result<(), PullAuthError> {
        if self.at.abs_diff(now) > window.unsigned_abs() {
            return Err(PullAuthError::Stale {
                at: self.at,
                now,
                window,
            });
        }
        if !key.verify(
            &pull_message(network, &self.name, method, path, self.at),
            &self.sig,
        ) {
            return Err(PullAuthError::BadSignature(self.name.clone()));
        }
        Ok(())
    }
}

/// Where a join request stands (as masters answer `GET /api/v1/join/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinState {
    /// Waiting for the network's admin.
    Pending,
    /// Approved: the mirror is in the registry with its key.
    Approved,
    /// Rejected (see the reason).
    Rejected,
}

/// A join request as masters hold and replicate it: the mirror's signed envelope and the
/// admin's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingJoin {
    /// The mirror's name.
    pub name: String,
    /// The signed [`MirrorRequest`] envelope, as the mirror sent it (peers verify it again).
    pub request: String,
    /// Where it stands.
    pub state: JoinState,
    /// The admin's reason for a rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When a master first received it.
    pub received_at: i64,
    /// Last change (the newest wins between masters).
    pub updated_at: i64,
}

/// `GET /api/v1/join/<name>`: what a mirror polls while it waits (no contacts in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinStatus {
    /// The mirror's name.
    pub name: String,
    /// Where its request stands.
    pub state: JoinState,
    /// The key the request pins.
    pub key: PublicKey,
    /// A rejection's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the request expires unless decided (Unix seconds).
    pub expires_at: i64,
}

/// A join request as the network's admin sees it (`GET /api/v1/join`, admin token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinView {
    /// The mirror's name.
    pub name: String,
    /// Where it stands.
    pub state: JoinState,
    /// The key it pins.
    pub key: PublicKey,
    /// The record it asks for (with the admin contact).
    pub record: MirrorRecord,
    /// A rejection's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it arrived.
    pub received_at: i64,
    /// When it expires unless decided.
    pub expires_at: i64,
}

/// One change of the registry, as its history shows it (`GET /api/v1/mirrors/<name>/history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEvent {
    /// Unique id: the master that recorded it first and its sequence there (`a:17`).
    pub id: String,
    /// The mirror.
    pub mirror: String,
    /// When (Unix seconds).
    pub at: i64,
    /// What: `add`, `update`, `remove`, `drain`, `undrain`, `join_request`, `approve`,
    /// `reject`, `maintenance`, `rotate_key`, `leave`.
    pub action: String,
    /// Who: `admin`, or the mirror's key (`ed25519:…`) for its own signed requests.
    pub actor: String,
    /// Details for people.
    #[serde(default)]
    pub detail: String,
}

#[cfg(all(test, feature = "sign"))]
mod tests {
    use super::*;
    use crate::{SecretKey, Signed, VerifyError};

    const NET: &str = "net";

    fn record(key: &SecretKey) -> MirrorRecord {
        let mut r = MirrorRecord::new("m1", "https://m1.example.org");
        r.identity_key = Some(key.public());
        r.country = Some("DE".into());
        r
    }

    fn join(key: &SecretKey, now: i64) -> MirrorRequest {
        MirrorRequest::new(NET, "m1", now, MirrorAction::Join(record(key)))
    }

    #[test]
    fn a_join_signs_verifies_and_checks() {
        let k = SecretKey::from_seed([3; 32]);
        let env = Signed::sign(&join(&k, 1000), &k);
        let back = Signed::<MirrorRequest>::from_json(env.to_json().as_bytes()).unwrap();
        let req = back.verify(&[back.signer()]).unwrap();
        assert_eq!(req.check(&k.public(), NET, 1000, 300), Ok(()));
        assert!(matches!(
            req.check(&k.public(), "other", 1000, 300),
            Err(RequestError::WrongNetwork(_))
        ));
        assert!(matches!(
            req.check(&k.public(), NET, 1400, 300),
            Err(RequestError::Stale { .. })
        ));
        assert!(matches!(
            req.check(&k.public(), NET, i64::MIN, 300),
            Err(RequestError::Stale { .. })
        ));
        // Signed by another key than the one it pins.
        let other = SecretKey::from_seed([4; 32]);
        assert_eq!(
            req.check(&other.public(), NET, 1000, 300),
            Err(RequestError::KeyMismatch(other.public()))
        );
    }

    #[test]
    fn a_tampered_or_relabelled_request_fails_its_signature() {
        let k = SecretKey::from_seed([3; 32]);
        let text = Signed::sign(&join(&k, 1000), &k).to_json();
        let tampered = text.replace("m1.example.org", "evil.example.org");
        assert_ne!(tampered, text);
        let t = Signed::<MirrorRequest>::from_json(tampered.as_bytes()).unwrap();
        assert!(matches!(
            t.verify(&[k.public()]),
            Err(VerifyError::BadSignature(_))
        ));
        let relabelled = text.replace("\"kind\":\"mirror-request\"", "\"kind\":\"push\"");
        assert!(
            Signed::<crate::PushNotice>::from_json(relabelled.as_bytes())
                .unwrap()
                .verify(&[k.public()])
                .is_err()
        );
    }

    #[test]
    fn fields_are_bounded() {
        let k = SecretKey::from_seed([3; 32]);
        let mut r = record(&k);
        r.base_urls = vec!["ftp://x".into()];
        let req = MirrorRequest::new(NET, "m1", 10, MirrorAction::Join(r));
        assert!(matches!(
            req.check(&k.public(), NET, 10, 300),
            Err(RequestError::BadField(_))
        ));
        let mut r = record(&k);
        r.admin_contact = Some("x".repeat(300));
        let req = MirrorRequest::new(NET, "m1", 10, MirrorAction::Join(r));
        assert!(req.check(&k.public(), NET, 10, 300).is_err());
        let mut r = record(&k);
        r.drained = true;
        let req = MirrorRequest::new(NET, "m1", 10, MirrorAction::Join(r));
        assert!(req.check(&k.public(), NET, 10, 300).is_err());
        let req = MirrorRequest::new(
            NET,
            "m1",
            10,
            MirrorAction::Update(MirrorChanges::default()),
        );
        assert!(req.check(&k.public(), NET, 10, 300).is_err());
        let w = MaintenanceWindow {
            start: 20,
            end: 10,
            reason: String::new(),
        };
        let req = MirrorRequest::new(NET, "m1", 10, MirrorAction::Maintenance(w));
        assert!(req.check(&k.public(), NET, 10, 300).is_err());
        let mut req = join(&k, 10);
        req.nonce = "zz".into();
        assert_eq!(
            req.check(&k.public(), NET, 10, 300),
            Err(RequestError::BadNonce)
        );
    }

    #[test]
    fn a_rotation_needs_the_new_keys_proof() {
        let old = SecretKey::from_seed([5; 32]);
        let new = SecretKey::from_seed([6; 32]);
        let req = MirrorRequest::rotate(NET, "m1", 10, &old, &new);
        assert_eq!(req.check(&old.public(), NET, 10, 300), Ok(()));
        // The proof binds the old key, the name and the network.
        assert_eq!(
            req.check(&new.public(), NET, 10, 300),
            Err(RequestError::BadProof)
        );
        let mut other_name = req.clone();
        other_name.name = "m2".into();
        assert_eq!(
            other_name.check(&old.public(), NET, 10, 300),
            Err(RequestError::BadProof)
        );
        // A key the mirror does not hold cannot be pinned.
        let stranger = SecretKey::from_seed([7; 32]);
        let mut forged = req.clone();
        forged.action = MirrorAction::RotateKey {
            new_key: stranger.public(),
            proof: "00".repeat(64),
        };
        assert_eq!(
            forged.check(&old.public(), NET, 10, 300),
            Err(RequestError::BadProof)
        );
    }

    #[test]
    fn pull_authorization_binds_method_path_time_and_key() {
        let k = SecretKey::from_seed([8; 32]);
        let h = pull_authorization(&k, NET, "m1", "GET", "/api/v1/objects/ab", 1000);
        let a = PullAuth::parse(&h).unwrap();
        assert_eq!(a.name, "m1");
        let ok = |a: &PullAuth, key: &PublicKey, path: &str, now: i64| {
            a.verify(key, NET, "GET", path, now, 60)
        };
        assert_eq!(ok(&a, &k.public(), "/api/v1/objects/ab", 1010), Ok(()));
        assert!(ok(&a, &k.public(), "/api/v1/objects/cd", 1000).is_err());
        assert!(matches!(
            ok(&a, &k.public(), "/api/v1/objects/ab", 1100),
            Err(PullAuthError::Stale { .. })
        ));
        let other = SecretKey::from_seed([9; 32]);
        assert!(ok(&a, &other.public(), "/api/v1/objects/ab", 1000).is_err());
        assert!(
            a.verify(
                &k.public(),
                "othernet",
                "GET",
                "/api/v1/objects/ab",
                1000,
                60
            )
            .is_err()
        );
        for bad in [
            "",
            "Bearer x",
            "Vdb-Mirror name=m1 t=1",
            "Vdb-Mirror name=M! t=1 sig=00",
            "Vdb-Mirror name=m1 t=x sig=00",
            "Vdb-Mirror name=m1 t=1 sig=00 extra=1",
        ] {
            assert!(PullAuth::parse(bad).is_none(), "{bad:?}");
        }
    }
}
