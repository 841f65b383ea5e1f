//! Incremental updates: the cdiff chain from the local version to the remote one, applied in
//! one streaming pass to a staged CLD (spec §2.3).

use std::path::{Path, PathBuf};
use std::time::Instant;

use vdb_format::{Header, Kind};
use vdb_proto::Manifest;

use super::{Code, DbOutcome, UpdateError, Updater, describe, file_name};
use vdb_fetch::ErrorKind;

use crate::fetch::{FetchError, MAX_CDIFF};
use crate::local::{self, LocalDb};

/// What became of a cdiff chain.
pub(super) enum Chain {
    /// Patched up to `version` (maybe partially): the new CLD, staged.
    Applied {
        stage: tempfile::TempDir,
        staged: PathBuf,
        header: Header,
    },
    /// The first cdiff is missing and only one version is missing: stay.
    NoLatestPatch,
    /// Give up on cdiffs; download the whole CVD.
    Fallback(String),
}

impl Updater<'_> {
    /// Downloads cdiffs `local+1..=remote` in freshclam's order (spec §2.3; each one's
    /// signature and version checked as it arrives, so that a bad one stops the downloads),
    /// then applies them in one streaming pass from the local `.cvd`/`.cld` to a staged CLD:
    /// memory does not grow with the database.
    pub(super) async fn chain(
        &mut self,
        db: &str,
        server: &str,
        local: &LocalDb,
        remote: u32,
        manifest: Option<&Manifest>,
    ) -> Result<Chain, UpdateError> {
        if let Err(e) = std::fs::File::open(&local.path) {
            return Ok(Chain::Fallback(format!(
                "cannot open the local database: {e}"
            )));
        }
        if self.settings.fips_limits && local.kind == Kind::Cvd {
            // ClamAV unpacks the local CVD only once it verifies, and FIPS limits leave only
            // its `.sign` to verify it with.
            let sign = self.local_cvd_sign(db, &local.path, local.version());
            if let Err(e) = self.cvd_sign_verdict(&file_name(&local.path), &sign) {
                return Ok(Chain::Fallback(e.message));
            }
        }
        let first = local.version() + 1;
        let mut current = local.version();
        let mut cdiffs: Vec<Vec<u8>> = Vec::new();
        for i in first..=remote {
            let name = format!("{db}-{i}.cdiff");
            let url = format!("{server}/{name}");
            self.log.debug(format!("Retrieving {url}"));
            let mut attempt = 0;
            let got = loop {
                attempt += 1;
                let got = self.fetcher.download(&url, MAX_CDIFF).await;
                // freshclam tries a missing or failing cdiff again at once, but not after a
                // cool-down answer, an oversized or an empty file.
                let again = match &got {
                    Err(e @ FetchError::Http(h)) => {
                        e.cool_down_secs().is_none() && h.kind() != ErrorKind::TooLarge
                    }
                    _ => false,
                };
                if !again || attempt >= self.settings.max_attempts.max(1) {
                    break got;
                }
            };
            let bytes = match got {
                Ok(b) => b,
                Err(e) if e.cool_down_secs().is_some() => {
                    return Err(self.fetch_error(e, false));
                }
                Err(FetchError::Empty { .. }) => {
                    return Ok(Chain::Fallback(format!("{name} is empty")));
                }
                Err(e) => {
                    if current == local.version() {
                        if remote == first {
                            return Ok(Chain::NoLatestPatch);
                        }
                        return Ok(Chain::Fallback(format!("{e}")));
                    }
                    self.log.warn(format!(
                        "{e}; we'll settle for this partial-update, at least for now (version {current})"
                    ));
                    break;
                }
            };
            if let Some(m) = manifest
                && let Err(e) = crate::vdbnet::check_file(
                    m,
                    &name,
                    bytes.len() as u64,
                    &vdb_proto::sha256_hex(&bytes),
                )
            {
                return Ok(Chain::Fallback(e.to_string()));
            }
            // Signature and version now (cheap), the script when the chain is applied.
            let checked = vdb_format::cdiff::Cdiff::parse(&bytes, self.limits.max_script_size)
                .and_then(|c| {
                    c.verify(&self.settings.key_set.cdiff)?;
                    Ok(c.version)
                });
            match checked {
                Ok(v) if v == i => {}
                Ok(v) => {
                    return Ok(Chain::Fallback(format!(
                        "{name}: it produces version {v}, not {i}"
                    )));
                }
                Err(e) => return Ok(Chain::Fallback(format!("{name}: {e}"))),
            }
            // ClamAV 1.5: the cdiff's `.sign`, if any; one that fails rejects the cdiff.
            let sign_name = format!("{name}.sign");
            if let Some(sign) = self.download_sign(server, &sign_name, manifest).await? {
                match self.judge_sign(&sign_name, sign, &bytes) {
                    super::sign::Sign::Invalid(why) => {
                        return Ok(Chain::Fallback(format!(
                            "{why}: Incorrect digital signature"
                        )));
                    }
                    super::sign::Sign::Unusable(why) => self
                        .log
                        .warn(format!("{why}; the legacy signature of {name} decides")),
                    super::sign::Sign::Verified { signer, .. } => self.log.debug(format!(
                        "{name}: external signature verified, signed by {signer}"
                    )),
                    super::sign::Sign::Absent => {}
                }
            }
            cdiffs.push(bytes);
            current = i;
        }
        let stage = local::staging(&self.dir).map_err(|e| {
            UpdateError::new(
                Code::DbDirAccess,
                format!("cannot create a staging directory: {e}"),
            )
        })?;
        let staged = stage.path().join(format!("{db}.cld"));
        let links: Vec<&[u8]> = cdiffs.iter().map(Vec::as_slice).collect();
        let options = vdb_format::patch::CldOptions {
            compress: self.settings.compress_local_database,
            spool_dir: Some(stage.path().to_path_buf()),
        };
        match vdb_format::patch::apply_chain_to_cld(
            &local.path,
            &links,
            &self.settings.key_set,
            &self.limits,
            &staged,
            &options,
        ) {
            Ok(header) => Ok(Chain::Applied {
                stage,
                staged,
                header,
            }),
            Err(vdb_format::patch::ApplyError::Base(e)) => Ok(Chain::Fallback(format!(
                "the local {} does not verify: {e}",
                file_name(&local.path)
            ))),
            Err(vdb_format::patch::ApplyError::Chain(e)) => Ok(Chain::Fallback(format!(
                "{db}-{}.cdiff: {}",
                first as usize + e.index,
                e.error
            ))),
            Err(vdb_format::patch::ApplyError::Output(e)) => Err(UpdateError::new(
                Code::File,
                format!("cannot build {db}.cld: {e}"),
            )),
        }
    }

    /// Checks, test-loads and installs a CLD staged by [`Self::chain`].
    pub(super) async fn install_cld(
        &mut self,
        db: &str,
        _stage: &tempfile::TempDir,
        staged: &Path,
        header: &Header,
        superseded: &[PathBuf],
    ) -> Result<DbOutcome, UpdateError> {
        let name = format!("{db}.cld");
        let t0 = Instant::now();
        let ferr =
            |e: std::io::Error| UpdateError::new(Code::File, format!("{}: {e}", staged.display()));
        // The CLD is checked as ClamAV will load it.
        let file = std::fs::File::open(staged).map_err(ferr)?;
        vdb_format::container::verify(
            std::io::BufReader::with_capacity(1 << 20, file),
            Kind::Cld,
            &self.settings.key_set,
            &self.limits,
        )
        .map_err(|e| {
            UpdateError::new(Code::BadCvd, format!("built {name} does not verify: {e}"))
        })?;
        self.log.debug(format!(
            "checked {name} ({} bytes) in {} ms",
            std::fs::metadata(staged).map(|m| m.len()).unwrap_or(0),
            t0.elapsed().as_millis()
        ));
        self.test_load(staged).await?;
        local::install(staged, &self.dir, &name, superseded)
            .map_err(|e| UpdateError::new(Code::File, format!("cannot install {name}: {e}")))?;
        // A CLD is never externally signed: no `.sign` of this database stays.
        self.remove_stale_signs(db, None);
        self.log
            .info(format!("{name} updated ({})", describe(header)));
        Ok(DbOutcome::Updated {
            file: name,
            version: header.version,
            behind: false,
        })
    }
}
