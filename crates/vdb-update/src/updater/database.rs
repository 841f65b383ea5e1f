//! One database from one server (freshclam's `updatedb`): the remote version from DNS or a
//! header probe, then cdiffs or the whole file, checked, test-loaded and installed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use vdb_format::Kind;
use vdb_proto::Manifest;

use super::cdiff::Chain;
use super::{Code, DbOutcome, UpdateError, Updater, describe, file_name, sign};
use crate::fetch::{Download, Probe};
use crate::local::{self, LocalDb};

/// The version of `db` that `manifest` (the server's signed manifest) names, with its serial.
fn signed_version(manifest: Option<&Manifest>, db: &str) -> Option<(u64, u32)> {
    let m = manifest?;
    m.databases.get(db).map(|d| (m.serial, d.version))
}

/// The server answered `what` (a `304`, an old header) for `db`, while the signed manifest it
/// serves names a version newer than the installed one: it is out of sync, and "up to date"
/// would be a wrong conclusion. The run moves on to the next server.
fn out_of_sync(
    server: &str,
    db: &str,
    what: &str,
    (serial, signed): (u64, u32),
    local_version: u32,
) -> UpdateError {
    UpdateError::out_of_sync(format!(
        "Mirror {server} is out of sync: {what}, but its signed manifest (serial {serial}) names \
         {db} version {signed} (installed: {local_version})"
    ))
}

/// A server that answers 304 for `url` while its own signed manifest names `newer` (a version
/// above the installed `local_version`) is out of sync.
fn answers_304(
    server: &str,
    db: &str,
    url: &str,
    newer: Option<(u64, u32)>,
    local_version: u32,
) -> UpdateError {
    out_of_sync(
        server,
        db,
        &format!("{url} answers 304 Not Modified"),
        newer.expect("a newer signed version"),
        local_version,
    )
}

impl Updater<'_> {
    /// Verifies a whole container (signature, `.info`, members) with freshclam's error text.
    pub(super) fn verify_container(
        &self,
        input: impl std::io::Read,
        kind: Kind,
        url: &str,
    ) -> Result<vdb_format::container::Verified, UpdateError> {
        vdb_format::container::verify(input, kind, &self.settings.key_set, &self.limits).map_err(
            |e| {
                UpdateError::new(
                    Code::BadCvd,
                    format!("Verification: Can't verify database integrity of {url}: {e}"),
                )
            },
        )
    }

    /// freshclam's `updatedb` for one database and one server.
    pub(super) async fn updatedb(
        &mut self,
        db: &str,
        server: &str,
        dns_version: Option<u32>,
        manifest: Option<&Manifest>,
    ) -> Result<DbOutcome, UpdateError> {
        let (local, other) = local::find(&self.dir, db).map_err(|e| {
            UpdateError::new(
                Code::DbDirAccess,
                format!("cannot read the database directory: {e}"),
            )
        })?;
        let local_version = local.as_ref().map_or(0, LocalDb::version);
        let ims = local.as_ref().and_then(LocalDb::build_secs);
        // The version the server's signed manifest names: it wins over unsigned answers.
        let signed = signed_version(manifest, db);
        let newer_signed = signed.filter(|&(_, v)| v > local_version);
        let mut remote_name = format!("{db}.cvd");
        let remote = match dns_version {
            Some(v) => match signed {
                Some((serial, sv)) if sv > v => {
                    self.log.debug(format!(
                        "{db}: {server}'s signed manifest (serial {serial}) names version {sv}, newer than DNS's {v}"
                    ));
                    sv
                }
                _ => v,
            },
            None => {
                let names: Vec<String> = if self.settings.private_mirror {
                    vec![format!("{db}.cld"), format!("{db}.cvd")]
                } else {
                    vec![format!("{db}.cvd")]
                };
                let mut found = None;
                for (i, name) in names.iter().enumerate() {
                    let url = format!("{server}/{name}");
                    self.log
                        .debug(format!("Trying to retrieve CVD header from {url}"));
                    match self.fetcher.probe(&url, ims).await {
                        Ok(Probe::NotModified) if newer_signed.is_some() => {
                            return Err(answers_304(server, db, &url, newer_signed, local_version));
                        }
                        Ok(Probe::NotModified) => {
                            if let Some(l) = &local {
                                self.log.info(format!(
                                    "{} database is up-to-date ({})",
                                    file_name(&l.path),
                                    describe(&l.header)
                                ));
                                if l.kind == Kind::Cvd {
                                    self.fetch_missing_cvd_sign(
                                        db,
                                        server,
                                        &l.path,
                                        l.version(),
                                        manifest,
                                    )
                                    .await;
                                }
                                return Ok(DbOutcome::UpToDate(l.version()));
                            }
                            return Err(UpdateError::new(
                                Code::FailedGet,
                                format!("{url}: 304 Not Modified, but there is no local {db}"),
                            ));
                        }
                        Ok(Probe::Header(h)) => {
                            // Nothing new by the header, something new by the manifest.
                            if let Some(ns) = newer_signed
                                && h.version <= local_version
                            {
                                return Err(out_of_sync(
                                    server,
                                    db,
                                    &format!("{url} has header version {}", h.version),
                                    ns,
                                    local_version,
                                ));
                            }
                            found = Some(h.version);
                            remote_name.clone_from(name);
                            break;
                        }
                        Err(e) if e.is_not_found() && i + 1 < names.len() => continue,
                        Err(e) => return Err(self.fetch_error(e, true)),
                    }
                }
                let v = found.ok_or_else(|| UpdateError::new(Code::FailedGet, "no header"))?;
                self.log.debug(format!(
                    "{db} database version obtained using HTTP GET: {v}"
                ));
                v
            }
        };
        if let Some(l) = &local
            && local_version >= remote
        {
            self.log.info(format!(
                "{} database is up-to-date ({})",
                file_name(&l.path),
                describe(&l.header)
            ));
            if l.kind == Kind::Cvd && local_version == remote {
                self.fetch_missing_cvd_sign(db, server, &l.path, local_version, manifest)
                    .await;
            }
            return Ok(DbOutcome::UpToDate(local_version));
        }
        self.log.info(format!(
            "{db} database available for update (local version: {local_version}, remote version: {remote})"
        ));
        let superseded: Vec<PathBuf> = local
            .iter()
            .map(|l| l.path.clone())
            .chain(other.clone())
            .collect();
        let Some(local) = local.filter(|_| self.settings.scripted_updates) else {
            return self
                .full(
                    db,
                    server,
                    &remote_name,
                    ims,
                    remote,
                    false,
                    &superseded,
                    manifest,
                    local_version,
                )
                .await;
        };
        let t0 = Instant::now();
        match self.chain(db, server, &local, remote, manifest).await? {
            Chain::Applied {
                stage,
                staged,
                header,
            } => {
                self.log.debug(format!(
                    "applied cdiffs {}..{} and built {db}.cld in {} ms",
                    local_version + 1,
                    header.version,
                    t0.elapsed().as_millis()
                ));
                self.install_cld(db, &stage, &staged, &header, &superseded)
                    .await
            }
            Chain::NoLatestPatch => {
                self.log.warn(format!(
                    "The database server doesn't have the latest patch for the {db} database \
                     (version {remote}). The server will likely have updated if you check again \
                     in a few hours."
                ));
                Ok(DbOutcome::UpToDate(local_version))
            }
            Chain::Fallback(why) => {
                self.log.warn(format!(
                    "Incremental update failed ({why}), trying to download {db}.cvd"
                ));
                let name = format!("{db}.cvd");
                self.full(
                    db,
                    server,
                    &name,
                    ims,
                    remote,
                    true,
                    &superseded,
                    manifest,
                    local_version,
                )
                .await
            }
        }
    }

    /// Downloads `name` whole, verifies it, test-loads it and installs it (`getcvd`).
    #[allow(clippy::too_many_arguments)]
    async fn full(
        &mut self,
        db: &str,
        server: &str,
        name: &str,
        ims: Option<i64>,
        remote: u32,
        fallback: bool,
        superseded: &[PathBuf],
        manifest: Option<&Manifest>,
        local_version: u32,
    ) -> Result<DbOutcome, UpdateError> {
        let url = format!("{server}/{name}");
        let stage = local::staging(&self.dir).map_err(|e| {
            UpdateError::new(
                Code::DbDirAccess,
                format!("cannot create a staging directory: {e}"),
            )
        })?;
        let staged = stage.path().join(name);
        let newer_signed = signed_version(manifest, db).filter(|&(_, v)| v > local_version);
        self.log.debug(format!("Retrieving {url}"));
        let t0 = Instant::now();
        let written = match self.fetcher.download_to(&url, ims, &staged, self.log).await {
            Ok(Download::Fetched(w)) => w,
            Ok(Download::NotModified) if newer_signed.is_some() => {
                return Err(answers_304(server, db, &url, newer_signed, local_version));
            }
            Ok(Download::NotModified) if local_version > 0 => {
                self.log
                    .info(format!("{name} is up-to-date (304 Not Modified)"));
                return Ok(DbOutcome::UpToDate(local_version));
            }
            Ok(Download::NotModified) => {
                return Err(UpdateError::new(
                    Code::FailedGet,
                    format!("{url}: 304 Not Modified, but there is no local {db}"),
                ));
            }
            Err(e) => return Err(self.fetch_error(e, false)),
        };
        self.log.debug(format!(
            "downloaded {} bytes in {} ms",
            written.size,
            t0.elapsed().as_millis()
        ));
        if let Some(m) = manifest {
            crate::vdbnet::check_file(m, name, written.size, &written.sha256)
                .map_err(|e| UpdateError::new(Code::BadCvd, e.to_string()))?;
        }
        let kind = Kind::from_file_name(name).unwrap_or(Kind::Cvd);
        let file = std::fs::File::open(&staged)
            .map_err(|e| UpdateError::new(Code::File, format!("{}: {e}", staged.display())))?;
        // ClamAV 1.5: the CVD's `.sign` (named for the version in its header) before it counts.
        let sign = if kind == Kind::Cvd {
            let version = vdb_format::container::read_header(&file)
                .map(|h| h.version)
                .map_err(|e| {
                    UpdateError::new(
                        Code::BadCvd,
                        format!("Can't read CVD header of new {name} database: {e}"),
                    )
                })?;
            let (sign_name, sign) = self
                .cvd_sign(db, version, server, &staged, manifest)
                .await?;
            self.cvd_sign_verdict(&url, &sign)?;
            match sign {
                sign::Sign::Verified { bytes, .. } => Some((sign_name, bytes)),
                _ => None,
            }
        } else {
            None
        };
        let file = std::fs::File::open(&staged)
            .map_err(|e| UpdateError::new(Code::File, format!("{}: {e}", staged.display())))?;
        let verified =
            self.verify_container(std::io::BufReader::with_capacity(1 << 20, file), kind, &url)?;
        let header = verified.header;
        if header.version < local_version {
            return Err(UpdateError::new(
                Code::MirrorNotSync,
                format!(
                    "{url} is version {}, older than the installed version {local_version}: mirror not synchronised",
                    header.version
                ),
            ));
        }
        if !name.starts_with(&format!("{db}.")) {
            return Err(UpdateError::new(
                Code::BadCvd,
                format!("{url}: unexpected name"),
            ));
        }
        self.test_load(&staged).await?;
        // The new `.sign` first: until the CVD is renamed in, a `.sign` of another version is
        // one nothing reads.
        if let Some((sign_name, bytes)) = &sign {
            self.install_sign(sign_name, bytes)?;
        }
        local::install(&staged, &self.dir, name, superseded)
            .map_err(|e| UpdateError::new(Code::File, format!("cannot install {name}: {e}")))?;
        self.remove_stale_signs(db, sign.as_ref().map(|(n, _)| n.as_str()));
        let behind = header.version < remote;
        if behind {
            self.log.warn(format!(
                "Mirror {server} is not synchronised: {name} is version {}, {remote} was advertised{}",
                header.version,
                if fallback { "; accepting it" } else { "" }
            ));
        }
        self.log
            .info(format!("{name} updated ({})", describe(&header)));
        Ok(DbOutcome::Updated {
            file: name.to_owned(),
            version: header.version,
            behind: behind && !fallback,
        })
    }

    /// Runs the configured test command on a staged file (TestDatabases).
    pub(super) async fn test_load(&self, staged: &Path) -> Result<(), UpdateError> {
        let Some(cmd) = &self.settings.test_command else {
            return Ok(());
        };
        let path = staged.to_string_lossy();
        let args: Vec<String> = cmd.iter().map(|a| a.replace("{}", &path)).collect();
        self.log
            .debug(format!("Testing database: '{}' ...", staged.display()));
        let out = tokio::process::Command::new(&args[0])
            .args(&args[1..])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                UpdateError::new(Code::TestFail, format!("cannot run {:?}: {e}", args[0]))
            })?;
        if !out.status.success() {
            return Err(UpdateError::new(
                Code::TestFail,
                format!(
                    "Database test FAILED ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        self.log.debug("Database test passed.");
        Ok(())
    }
}
