//! Test keys (deterministic, obviously test-only), key sets and signed manifests.

use std::collections::BTreeMap;

use vdb_proto::{DatabaseState, FileRef, Manifest, SecretKey, Signed};

/// The network name the doubles and most tests use.
pub const NETWORK: &str = "testnet";

/// The master key of the doubles ([`crate::MasterDouble`]) and of tests that sign manifests
/// themselves.
pub fn master_key() -> SecretKey {
    SecretKey::from_seed([7; 32])
}

/// The publisher key of tests that publish releases.
pub fn publisher_key() -> SecretKey {
    SecretKey::from_seed([1; 32])
}

/// A ClamAV-style RSA key set named `name` (what signs a network's own CVDs and cdiffs),
/// deterministic: the same name gives the same keys in every run. Its public half
/// (`.public()`) is what a client or a master is told to trust.
///
/// ```no_run
/// // A key-set file for a role's config (`keyset_file`, `key_set`).
/// let keys = vdb_testkit::keys::key_set("testnet");
/// std::fs::write("keys.txt", keys.public().to_text()).unwrap();
/// ```
#[cfg(feature = "sign")]
pub fn key_set(name: &str) -> vdb_sign::PrivateKeySet {
    vdb_sign::deterministic_keys(name, 7).expect("a deterministic test key set")
}

/// A manifest of `network` listing `files` (sorted by name) and `databases` at the given
/// versions, signed by master `"double"`, valid for a week from `issued_at`.
pub fn manifest<N: AsRef<str>>(
    network: &str,
    serial: u64,
    issued_at: i64,
    databases: &[(&str, u32)],
    files: &[(N, Vec<u8>)],
) -> Manifest {
    let mut refs: Vec<FileRef> = files
        .iter()
        .map(|(n, d)| FileRef {
            name: n.as_ref().to_owned(),
            size: d.len() as u64,
            sha256: vdb_proto::sha256_hex(d),
            segments: None,
        })
        .collect();
    refs.sort();
    let databases: BTreeMap<String, DatabaseState> = databases
        .iter()
        .map(|(n, v)| {
            (
                (*n).to_owned(),
                DatabaseState {
                    version: *v,
                    built_at: 0,
                    release: "r".repeat(64),
                },
            )
        })
        .collect();
    Manifest {
        network: network.to_owned(),
        serial,
        master: "double".to_owned(),
        issued_at,
        expires_at: issued_at + 7 * 86_400,
        databases,
        files: refs,
        version_record: None,
        inline: Default::default(),
    }
}

/// The signed envelope's bytes, as a master serves them.
pub fn signed(m: &Manifest, key: &SecretKey) -> Vec<u8> {
    Signed::sign(m, key).to_json().into_bytes()
}
