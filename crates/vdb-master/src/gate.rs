//! The verification gate: nothing unverified goes out.
//!
//! The checks themselves are in [`vdb_gate`], shared with `vdb publish --dry-run` so that a
//! publisher can see a master's answer without uploading; this module builds their
//! [`Policy`] from the master's config, reads releases from the [`ObjectStore`], logs the
//! gate's warnings and turns its refusals into the API's error answers ([`Refusal`]).

use vdb_format::KeySet;
use vdb_proto::{ErrorCode, ReleaseStatement, Signed};

pub use vdb_gate::{DbRules, Held, PLAIN_EXTENSIONS, Policy, SignCerts, cdiff_version, same_files};

use crate::config::Config;
use crate::objects::ObjectStore;

/// A refusal or any other error answer of the API: a typed code (its HTTP status follows
/// from it) and the exact reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Machine code (`bad_signature`, `older_version`, …).
    pub code: ErrorCode,
    /// The reason, for people (bounded: never a large input echoed back).
    pub message: String,
}

impl Refusal {
    /// A refusal; the message is cut to a bounded length (as the gate's).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        vdb_gate::Refusal::new(code, message).into()
    }

    /// The master's own failure (disk, database).
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, e.to_string())
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

impl From<vdb_gate::Refusal> for Refusal {
    fn from(r: vdb_gate::Refusal) -> Self {
        Self {
            code: r.code,
            message: r.message,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Builds the gate's policy from the config: its publishers, each database's key set file
/// and rules, the size limit and statement window, and the certificate directory of `.sign`
/// files (`cvd_certs_dir`, else ClamAV's install location if it loads).
pub fn policy(config: &Config) -> anyhow::Result<Policy> {
    let certs = SignCerts::load(config.cvd_certs_dir.as_deref())
        .map_err(|e| anyhow::anyhow!("field `cvd_certs_dir`: {e}"))?;
    match &certs {
        SignCerts::Loaded(dir, certs) if config.cvd_certs_dir.is_some() => {
            tracing::info!(dir = %dir.display(), anchors = ?certs.names(), ".sign files are verified against these certificates");
        }
        SignCerts::Loaded(dir, certs) => {
            tracing::info!(dir = %dir.display(), anchors = ?certs.names(), ".sign files are verified against ClamAV's installed certificates");
        }
        SignCerts::Missing(why) => {
            tracing::info!(reason = %why, "no certificate directory for .sign files: releases that bring them are refused until `cvd_certs_dir` is set");
        }
    }
    let mut policy = Policy::new(
        config.max_file_size,
        config.statement_window_secs.unsigned_abs(),
        certs,
    );
    for (name, db) in &config.databases {
        let keys = match &db.keyset_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    anyhow::anyhow!("reading key set {} for database {name}: {e}", p.display())
                })?;
                KeySet::from_text(&text).map_err(|e| {
                    anyhow::anyhow!("key set {} for database {name}: {e}", p.display())
                })?
            }
            None => KeySet::official(),
        };
        let rules = DbRules {
            allow_plain: db.allow_plain,
            refuse_sign_files: db.refuse_sign_files,
            containers: db.containers.clone(),
        };
        policy.database(name, keys, rules);
    }
    for p in &config.publishers {
        policy.allow(p.key, p.databases.clone());
    }
    Ok(policy)
}

impl vdb_gate::Objects for ObjectStore {
    fn size(&self, sha256: &str) -> Option<u64> {
        Self::size(self, sha256)
    }

    fn read(&self, sha256: &str, limit: u64) -> Result<Vec<u8>, String> {
        Self::read(self, sha256, limit).map_err(|e| e.to_string())
    }
}

/// See [`vdb_gate::authenticate`].
pub fn authenticate(policy: &Policy, env: &Signed<ReleaseStatement>) -> Result<(), Refusal> {
    Ok(vdb_gate::authenticate(policy, env)?)
}

/// See [`vdb_gate::check_statement`].
pub fn check_statement(
    policy: &Policy,
    env: &Signed<ReleaseStatement>,
) -> Result<ReleaseStatement, Refusal> {
    Ok(vdb_gate::check_statement(policy, env)?)
}

/// See [`vdb_gate::check_signature`].
pub fn check_signature(
    policy: &Policy,
    env: &Signed<ReleaseStatement>,
) -> Result<ReleaseStatement, Refusal> {
    Ok(vdb_gate::check_signature(policy, env)?)
}

/// [`vdb_gate::check_release`] on the object store; its warnings are logged.
pub fn check_release(
    policy: &Policy,
    held: Option<&Held>,
    objects: &ObjectStore,
    st: &ReleaseStatement,
    now: i64,
    check_window: bool,
) -> Result<(), Refusal> {
    let accepted = vdb_gate::check_release(policy, held, objects, st, now, check_window)?;
    for w in accepted.warnings {
        tracing::warn!(db = %st.db, version = st.version, "{w}");
    }
    Ok(())
}
