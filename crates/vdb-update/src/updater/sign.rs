//! ClamAV 1.5's external `.sign` files (spec §3), fetched as freshclam 1.5 fetches them:
//! `<db>-<V>.cvd.sign` after a whole CVD (and once for an up-to-date CVD that has none),
//! `<db>-<N>.cdiff.sign` after each cdiff; a 404 (or any failed request) means "none", silently.
//!
//! Each one is judged before it counts: a line any ClamAV ≥ 1.5 reads must verify against the
//! certificate directory (`CVDCertsDirectory`, `CVD_CERTS_DIR`, else ClamAV's
//! `/etc/clamav/certs`) for the exact bytes of the file it signs. vdb-update does not know which
//! engine will load the database, so it checks the line of every engine, not just one; a file
//! that fails is never installed (a wrong `.sign` makes ClamAV 1.5 reject a good database).
//! Without a certificate directory nothing is fetched (nothing could be checked).
//!
//! Only the current CVD's `.sign` is kept in the database directory; a CLD has none (freshclam
//! drops them when it builds one), so every `<db>-*.sign` goes when a CLD is installed.
//! `FIPSCryptoHashLimits` turns the MD5-based legacy CVD signature off: a CVD (downloaded, or
//! the local one cdiffs apply to) needs a `.sign` that verifies. cdiffs keep their SHA-256
//! legacy signature.

use std::path::{Path, PathBuf};

use vdb_format::clamsign::{Certs, MAX_SIGN_FILE, SignFile};
use vdb_proto::Manifest;

use super::{Code, UpdateError, Updater};
use crate::config::{DEFAULT_CVD_CERTS_DIR, Settings};
use crate::local;
use crate::log::Log;

/// What a `.sign` file says about the file it signs.
#[derive(Debug)]
pub(super) enum Sign {
    /// None served or listed, or no certificates to check one with: the legacy signature
    /// decides.
    Absent,
    /// One that does not parse or has no line for ClamAV ≥ 1.5: not kept; the legacy signature
    /// decides (as in ClamAV).
    Unusable(String),
    /// Verified for every engine that reads it: its bytes (to keep beside a CVD).
    Verified {
        /// The file.
        bytes: Vec<u8>,
        /// The signer's common name.
        signer: String,
    },
    /// A line fails: ClamAV would reject the signed file with no fallback.
    Invalid(String),
}

/// The trust anchors of `.sign` files: the configured directory must load; without one,
/// ClamAV's default is used if it loads, else `.sign` files are left alone.
pub(super) fn load_certs(settings: &Settings, log: &Log) -> Result<Option<Certs>, UpdateError> {
    match &settings.cvd_certs_dir {
        Some(dir) => Certs::load_dir(dir).map(Some).map_err(|e| {
            UpdateError::new(
                Code::Init,
                format!(
                    "cannot use CVDCertsDirectory: {e}; point it (or CVD_CERTS_DIR) at a directory of *.pem/*.crt certificates laid out like ClamAV's certs/"
                ),
            )
        }),
        None => match Certs::load_dir(Path::new(DEFAULT_CVD_CERTS_DIR)) {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                log.debug(format!(
                    "no certificate directory for .sign files ({e}); set CVDCertsDirectory to use them"
                ));
                Ok(None)
            }
        },
    }
}

/// The name of the `.sign` file of version `version` of `db`'s CVD.
pub(super) fn cvd_sign_name(db: &str, version: u32) -> String {
    format!("{db}-{version}.cvd.sign")
}

/// Removes every `<db>-*.sign` in `dir` but `keep`: what freshclam does after installing a
/// database (old versions' files, cdiff files, any file of a CVD replaced by a CLD).
pub(super) fn remove_stale(
    dir: &Path,
    db: &str,
    keep: Option<&str>,
) -> std::io::Result<Vec<String>> {
    let prefix = format!("{db}-");
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix)
            && name.ends_with(".sign")
            && Some(name.as_str()) != keep
            && entry.file_type()?.is_file()
        {
            std::fs::remove_file(entry.path())?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

impl Updater<'_> {
    /// Downloads `<server>/<name>` if it can be checked: certificates are loaded and, on a
    /// vdbnet network, the manifest lists it (whose hash it must then have). `None`: absent.
    pub(super) async fn download_sign(
        &self,
        server: &str,
        name: &str,
        manifest: Option<&Manifest>,
    ) -> Result<Option<Vec<u8>>, UpdateError> {
        if self.certs.is_none() {
            return Ok(None);
        }
        if let Some(m) = manifest
            && m.file(name).is_none()
        {
            self.log.debug(format!(
                "No external .sign digital signature file for {name} (not in the manifest)"
            ));
            return Ok(None);
        }
        let url = format!("{server}/{name}");
        let bytes = match self.fetcher.download(&url, MAX_SIGN_FILE as u64).await {
            Ok(b) => b,
            Err(e) => {
                self.log.debug(format!(
                    "No external .sign digital signature file for {name}: {e}"
                ));
                return Ok(None);
            }
        };
        if let Some(m) = manifest {
            crate::vdbnet::check_file(m, name, bytes.len() as u64, &vdb_proto::sha256_hex(&bytes))
                .map_err(|e| UpdateError::new(Code::BadCvd, e.to_string()))?;
        }
        self.log
            .debug(format!("Downloaded digital signature file: {name}"));
        Ok(Some(bytes))
    }

    /// Judges the `.sign` file `name` (its `bytes`) for the bytes of the file it signs.
    pub(super) fn judge_sign(&self, name: &str, bytes: Vec<u8>, target: &[u8]) -> Sign {
        let Some(certs) = &self.certs else {
            return Sign::Absent;
        };
        let sign = match SignFile::parse(&bytes) {
            Ok(s) => s,
            Err(e) => return Sign::Unusable(format!("{name}: {e}")),
        };
        match sign.verify_for_every_engine(target, certs) {
            Ok(signers) if signers.is_empty() => {
                Sign::Unusable(format!("{name} has no line for ClamAV 1.5 or later"))
            }
            Ok(mut signers) => Sign::Verified {
                bytes,
                signer: signers.swap_remove(0),
            },
            Err(e) => Sign::Invalid(format!("{name}: {e}")),
        }
    }

    /// Fetches and judges the `.sign` of a CVD staged at `staged` with header version
    /// `version`.
    pub(super) async fn cvd_sign(
        &self,
        db: &str,
        version: u32,
        server: &str,
        staged: &Path,
        manifest: Option<&Manifest>,
    ) -> Result<(String, Sign), UpdateError> {
        let name = cvd_sign_name(db, version);
        let Some(bytes) = self.download_sign(server, &name, manifest).await? else {
            return Ok((name, Sign::Absent));
        };
        let target = std::fs::read(staged)
            .map_err(|e| UpdateError::new(Code::File, format!("{}: {e}", staged.display())))?;
        let sign = self.judge_sign(&name, bytes, &target);
        Ok((name, sign))
    }

    /// The local `.sign` of an installed CVD, judged (FIPS mode needs it to use the CVD).
    pub(super) fn local_cvd_sign(&self, db: &str, cvd: &Path, version: u32) -> Sign {
        let name = cvd_sign_name(db, version);
        let Ok(bytes) = std::fs::read(self.dir.join(&name)) else {
            return Sign::Absent;
        };
        match std::fs::read(cvd) {
            Ok(target) => self.judge_sign(&name, bytes, &target),
            Err(e) => Sign::Unusable(format!("{}: {e}", cvd.display())),
        }
    }

    /// What a CVD's `.sign` verdict means for using it: an invalid one refuses it; in FIPS mode
    /// anything but a verified one refuses it. `what` names the CVD in messages.
    pub(super) fn cvd_sign_verdict(&self, what: &str, sign: &Sign) -> Result<(), UpdateError> {
        match sign {
            Sign::Invalid(why) => Err(UpdateError::new(
                Code::BadCvd,
                format!(
                    "Verification: Detached CVD signature is invalid for {what}: {why}; ClamAV 1.5 would reject it"
                ),
            )),
            Sign::Verified { signer, .. } => {
                self.log.debug(format!(
                    "{what}: external signature verified, signed by {signer}"
                ));
                Ok(())
            }
            Sign::Unusable(_) | Sign::Absent if self.settings.fips_limits => {
                let why = match sign {
                    Sign::Unusable(why) => why.clone(),
                    _ if self.certs.is_none() => {
                        "no certificate directory to verify a .sign file with (set CVDCertsDirectory)".to_owned()
                    }
                    _ => "no .sign file".to_owned(),
                };
                Err(UpdateError::new(
                    Code::BadCvd,
                    format!(
                        "Verification: Unable to verify {what} with a detached signature file ({why}) and MD5 verification is disabled (FIPSCryptoHashLimits)"
                    ),
                ))
            }
            Sign::Unusable(why) => {
                self.log
                    .warn(format!("{why}; the legacy signature of {what} decides"));
                Ok(())
            }
            Sign::Absent => Ok(()),
        }
    }

    /// Installs a verified `.sign` file as `dir/name` (staged, fsynced, renamed).
    pub(super) fn install_sign(&self, name: &str, bytes: &[u8]) -> Result<(), UpdateError> {
        let err = |e: std::io::Error| {
            UpdateError::new(Code::DbDirAccess, format!("cannot install {name}: {e}"))
        };
        let stage = local::staging(&self.dir).map_err(err)?;
        let staged: PathBuf = stage.path().join(name);
        std::fs::write(&staged, bytes).map_err(err)?;
        local::install(&staged, &self.dir, name, &[]).map_err(err)
    }

    /// Removes the stale `.sign` files of `db` (all but `keep`), logging what went.
    pub(super) fn remove_stale_signs(&self, db: &str, keep: Option<&str>) {
        match remove_stale(&self.dir, db, keep) {
            Ok(removed) => {
                for f in removed {
                    self.log
                        .debug(format!("removed the old signature file {f}"));
                }
            }
            Err(e) => self
                .log
                .warn(format!("cannot remove old .sign files of {db}: {e}")),
        }
    }

    /// An up-to-date CVD without its `.sign`: freshclam 1.5 tries once to fetch it; here it is
    /// kept only if it verifies.
    pub(super) async fn fetch_missing_cvd_sign(
        &self,
        db: &str,
        server: &str,
        cvd: &Path,
        version: u32,
        manifest: Option<&Manifest>,
    ) {
        let name = cvd_sign_name(db, version);
        if self.certs.is_none() || self.dir.join(&name).exists() {
            return;
        }
        self.log.debug(format!(
            "Trying to download missing CVD .sign file {server}/{name}"
        ));
        let bytes = match self.download_sign(server, &name, manifest).await {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => {
                self.log.warn(format!("{name}: {e}"));
                return;
            }
        };
        let target = match std::fs::read(cvd) {
            Ok(t) => t,
            Err(e) => {
                self.log.warn(format!("{}: {e}", cvd.display()));
                return;
            }
        };
        match self.judge_sign(&name, bytes, &target) {
            Sign::Verified { bytes, signer } => match self.install_sign(&name, &bytes) {
                Ok(()) => self.log.info(format!(
                    "Downloaded missing CVD .sign file {name} (signed by {signer})"
                )),
                Err(e) => self.log.warn(e.message),
            },
            Sign::Invalid(why) => self.log.warn(format!(
                "{why}; not installed (ClamAV 1.5 would reject {})",
                cvd.display()
            )),
            Sign::Unusable(why) => self.log.warn(format!("{why}; not installed")),
            Sign::Absent => {}
        }
    }
}
