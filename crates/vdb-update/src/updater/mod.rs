//! The update run: freshclam's per-database algorithm (spec §4.3, §2.3) with its retries,
//! failover and cool-downs (§4.5–§4.7), plus health memory and vdbnet manifest checks.
//!
//! By concept: this module runs the databases over the servers in turn (failover, cool-downs,
//! hooks); `outcome` holds freshclam's result codes; `version` reads the versions the DNS
//! TXT records advertise; `database` probes a server and downloads, checks and installs a
//! whole database; `cdiff` fetches a cdiff chain and builds the CLD from it; `sign` fetches and
//! judges ClamAV 1.5's `.sign` files; `custom` handles `DatabaseCustomURL`.

mod cdiff;
mod custom;
mod database;
mod outcome;
mod sign;
mod version;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vdb_format::dnstxt::CurrentRecord;
use vdb_format::{Header, Limits};
use vdb_proto::{Clock, Manifest};

use crate::config::Settings;
use crate::fetch::{FetchError, Fetcher};
use crate::health::Health;
use crate::local;
use crate::log::Log;
use crate::notify::{self, HookOutcome};
use crate::state::FreshclamDat;
use vdb_fetch::ErrorKind;

pub use outcome::{Code, DbOutcome, UpdateError};

/// The name of `freshclam.dat` in the database directory.
pub const DAT_FILE: &str = "freshclam.dat";

/// Largest custom database accepted.
pub const MAX_CUSTOM: u64 = 512 << 20;
/// Options of one run that come from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// `--update-db`: only these (`custom` = the custom URLs); disables pruning.
    pub update_db: Vec<String>,
    /// `--no-dns`.
    pub no_dns: bool,
    /// Daemon mode: `EXIT_<n>` hooks are not interpreted.
    pub daemon: bool,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// freshclam's code for the run.
    pub code: Code,
    /// The process exit code (freshclam's, or an `EXIT_<n>` hook's).
    pub exit_code: u8,
    /// Files installed, with versions.
    pub updated: Vec<(String, u32)>,
    /// Servers skipped because they answered older data than their own signed manifest names
    /// (a `304` or an old header while the manifest has a newer version), once per database.
    pub out_of_sync: u32,
}
/// One update run over a database directory.
pub struct Updater<'a> {
    settings: &'a Settings,
    options: &'a RunOptions,
    log: &'a Log,
    clock: Arc<dyn Clock>,
    dir: PathBuf,
    dat: FreshclamDat,
    fetcher: Fetcher,
    health: Health,
    dns: Option<CurrentRecord>,
    manifests: HashMap<String, Manifest>,
    limits: Limits,
    certs: Option<vdb_format::clamsign::Certs>,
    out_of_sync: u32,
    _lock: local::DirLock,
}

fn new_uuid() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = vdb_proto::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn describe(h: &Header) -> String {
    format!(
        "version: {}, sigs: {}, f-level: {}, builder: {}",
        h.version, h.signatures, h.flevel, h.builder
    )
}
/// Runs one update with the system clock. See [`Updater::run`].
pub async fn run_once(settings: &Settings, options: &RunOptions, log: &Log) -> RunReport {
    run_with_clock(settings, options, log, Arc::new(vdb_proto::SystemClock)).await
}

/// Runs one update with the given clock.
pub async fn run_with_clock(
    settings: &Settings,
    options: &RunOptions,
    log: &Log,
    clock: Arc<dyn Clock>,
) -> RunReport {
    match Updater::new(settings, options, log, clock) {
        Ok(Some(mut u)) => u.run().await,
        Ok(None) => RunReport {
            code: Code::UpToDate,
            exit_code: 0,
            updated: Vec::new(),
            out_of_sync: 0,
        },
        Err(e) => {
            log.error(&e.message);
            RunReport {
                code: e.code,
                exit_code: e.code.exit_code(),
                updated: Vec::new(),
                out_of_sync: 0,
            }
        }
    }
}

impl<'a> Updater<'a> {
    /// Prepares a run: checks the directory, reads `freshclam.dat` (creating it), honours a
    /// running cool-down (returns `None`: no request may be made), cleans staging left by an
    /// interrupted run.
    pub fn new(
        settings: &'a Settings,
        options: &'a RunOptions,
        log: &'a Log,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, UpdateError> {
        let dir = settings.database_directory.clone();
        if !dir.is_dir() {
            return Err(UpdateError::new(
                Code::Directory,
                format!(
                    "database directory {} does not exist; create it or set DatabaseDirectory",
                    dir.display()
                ),
            ));
        }
        let lock = local::DirLock::acquire(&dir)
            .map_err(|e| UpdateError::new(Code::DbDirAccess, e.to_string()))?;
        let dat_path = dir.join(DAT_FILE);
        let now = clock.now();
        let mut dat = match std::fs::read(&dat_path) {
            Ok(b) => match FreshclamDat::parse(&b) {
                Ok(d) => Some(d),
                Err(e) => {
                    log.warn(format!("{}: {e}; starting a new one", dat_path.display()));
                    None
                }
            },
            Err(_) => None,
        };
        let fresh = dat.is_none();
        let dat_ref = dat.get_or_insert_with(|| {
            FreshclamDat::new(&new_uuid()).expect("generated UUIDs are well-formed")
        });
        if dat_ref.on_cooldown(now) {
            log.warn(format!(
                "FreshClam previously received error code 429 or 403 from the ClamAV Content \
                 Delivery Network (CDN). You are still on cool-down until after: {}",
                httpdate::fmt_http_date(
                    std::time::UNIX_EPOCH
                        + Duration::from_secs(u64::try_from(dat_ref.retry_after).unwrap_or(0))
                )
            ));
            return Ok(None);
        }
        let mut dat = dat.expect("set above");
        if fresh || dat.retry_after != 0 {
            dat.retry_after = 0;
            vdb_format::write_atomic(&dat_path, &dat.to_bytes()).map_err(|e| {
                UpdateError::new(
                    Code::DbDirAccess,
                    format!("cannot write {}: {e}", dat_path.display()),
                )
            })?;
        }
        match local::clean_staging(&dir) {
            Ok(0) => {}
            Ok(n) => log.debug(format!(
                "removed {n} staging directories of an interrupted run"
            )),
            Err(e) => log.warn(format!("cannot clean staging directories: {e}")),
        }
        let fetcher = Fetcher::new(settings, &dat.uuid)
            .map_err(|e| UpdateError::new(Code::Init, e.to_string()))?;
        let certs = sign::load_certs(settings, log)?;
        Ok(Some(Self {
            settings,
            options,
            log,
            clock,
            health: if settings.health_memory {
                Health::load(&dir)
            } else {
                Health::default()
            },
            dir,
            dat,
            fetcher,
            dns: None,
            manifests: HashMap::new(),
            limits: Limits::default(),
            certs,
            out_of_sync: 0,
            _lock: lock,
        }))
    }

    fn now(&self) -> i64 {
        self.clock.now()
    }

    fn cool_down(&mut self, secs: u64) {
        self.dat.retry_after = self.now() + i64::try_from(secs).unwrap_or(i64::MAX / 2);
        let path = self.dir.join(DAT_FILE);
        if let Err(e) = vdb_format::write_atomic(&path, &self.dat.to_bytes()) {
            self.log.error(format!(
                "cannot save the cool-down in {}: {e}",
                path.display()
            ));
        }
    }

    /// Runs every database, the custom URLs, pruning, and the after-update actions.
    pub async fn run(&mut self) -> RunReport {
        let started = Instant::now();
        if self.settings.dns_domain.is_some() && !self.options.no_dns {
            self.dns = self.current_record().await;
        }
        let custom_only = |s: &str| s == "custom";
        let dbs: Vec<String> = if self.options.update_db.is_empty() {
            self.settings.databases.clone()
        } else {
            self.options
                .update_db
                .iter()
                .filter(|d| !custom_only(d))
                .cloned()
                .collect()
        };
        let do_custom = self.options.update_db.is_empty()
            || self.options.update_db.iter().any(|d| custom_only(d));
        let mut updated = Vec::new();
        let mut failure: Option<UpdateError> = None;
        for db in &dbs {
            if !vdb_proto::is_safe_db_name(db) {
                failure = Some(UpdateError::new(
                    Code::Arg,
                    format!("{db:?} is not a database name"),
                ));
                break;
            }
            match self.update_database(db).await {
                Ok(DbOutcome::Updated { file, version, .. }) => updated.push((file, version)),
                Ok(DbOutcome::UpToDate(_)) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && do_custom {
            for url in self.settings.custom_urls.clone() {
                match self.update_custom(&url).await {
                    Ok(Some(u)) => updated.push(u),
                    Ok(None) => {}
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        if failure.is_none() && self.options.update_db.is_empty() {
            let keep_files: Vec<String> = self
                .settings
                .custom_urls
                .iter()
                .filter_map(|u| u.rsplit('/').next().map(str::to_owned))
                .collect();
            match local::prune(&self.dir, &self.settings.databases, &keep_files) {
                Ok(removed) => {
                    for f in removed {
                        self.log
                            .info(format!("Pruning unwanted or deprecated database file {f}."));
                    }
                }
                Err(e) => self.log.warn(format!("pruning failed: {e}")),
            }
        }
        if self.settings.health_memory
            && let Err(e) = self.health.save(&self.dir)
        {
            self.log.warn(format!("cannot save mirror health: {e}"));
        }
        self.log.debug(format!(
            "update run took {} ms",
            started.elapsed().as_millis()
        ));
        let mut exit_override = None;
        if !updated.is_empty() {
            if let Some(conf) = &self.settings.notify_clamd {
                match notify::notify_clamd(conf).await {
                    Ok(()) => self
                        .log
                        .info("Clamd successfully notified about the update."),
                    Err(e) => self.log.error(format!("NotifyClamd failed: {e}")),
                }
            }
            if let Some(cmd) = &self.settings.on_update_execute {
                exit_override = self.hook("OnUpdateExecute", cmd).await;
            }
        }
        let code = match &failure {
            None if updated.is_empty() => Code::UpToDate,
            None => Code::Success,
            Some(e) => {
                if e.code != Code::RetryLater {
                    self.log.error(format!("Update failed: {}", e.message));
                    if let Some(cmd) = &self.settings.on_error_execute {
                        exit_override = exit_override.or(self.hook("OnErrorExecute", cmd).await);
                    }
                } else {
                    self.log.warn(&e.message);
                }
                e.code
            }
        };
        if self.out_of_sync > 0 {
            self.log.warn(format!(
                "{} mirror answer(s) contradicted the mirror's own signed manifest (out of sync) and were skipped",
                self.out_of_sync
            ));
        }
        RunReport {
            code,
            exit_code: exit_override.unwrap_or(code.exit_code()),
            updated,
            out_of_sync: self.out_of_sync,
        }
    }

    async fn hook(&self, what: &str, cmd: &str) -> Option<u8> {
        match notify::run_hook(cmd).await {
            Ok(HookOutcome::Exit(n)) if !self.options.daemon => Some(n),
            Ok(HookOutcome::Exit(_)) => None,
            Ok(HookOutcome::Ran(Some(0))) => None,
            Ok(HookOutcome::Ran(status)) => {
                self.log
                    .warn(format!("{what} command {cmd:?} exited with {status:?}"));
                None
            }
            Err(e) => {
                self.log
                    .error(format!("cannot run {what} command {cmd:?}: {e}"));
                None
            }
        }
    }

    /// freshclam's `fc_update_database`: each server in turn, `MaxAttempts` attempts each.
    async fn update_database(&mut self, db: &str) -> Result<DbOutcome, UpdateError> {
        let dns_version = self.dns_version(db).await;
        if let Some(v) = dns_version {
            self.log.debug(format!("{db} version from DNS: {v}"));
        }
        let servers = if self.settings.health_memory {
            self.health.order(&self.settings.mirrors, self.now())
        } else {
            self.settings.mirrors.clone()
        };
        let mut last = UpdateError::new(Code::FailedGet, format!("no mirror to update {db} from"));
        for server in &servers {
            let manifest = match self.manifest_for(server).await {
                Ok(m) => m,
                Err(e) => {
                    self.log.error(format!("{server}: {e}"));
                    self.health.failure(server, self.now());
                    last = e;
                    continue;
                }
            };
            let attempts = self.settings.max_attempts.max(1);
            for attempt in 1..=attempts {
                let t0 = Instant::now();
                let r = self
                    .updatedb(db, server, dns_version, manifest.as_ref())
                    .await;
                match r {
                    Ok(DbOutcome::Updated { behind: true, .. }) if attempt < attempts => {
                        self.log.warn(format!(
                            "Mirror {server} is not synchronised; trying again at once"
                        ));
                        last = UpdateError::new(Code::MirrorNotSync, "mirror not synchronised");
                    }
                    Ok(o) => {
                        let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
                        self.health.success(server, self.now(), ms);
                        return Ok(o);
                    }
                    Err(e) if e.next_mirror => {
                        // Out of sync with its own signed manifest: asking it again gives the
                        // same answer.
                        self.log
                            .error(format!("{}; trying the next mirror", e.message));
                        self.health.failure(server, self.now());
                        self.out_of_sync += 1;
                        last = e;
                        break;
                    }
                    Err(e) => {
                        match e.code {
                            Code::Forbidden | Code::RetryLater => return Err(e),
                            Code::MirrorNotSync => {
                                self.log.warn(&e.message);
                                last = e;
                                continue;
                            }
                            _ => {}
                        }
                        self.log.error(&e.message);
                        self.health.failure(server, self.now());
                        last = e;
                        if attempt < attempts {
                            let d = self.settings.retry_delay;
                            self.log
                                .info(format!("Trying again in {} secs...", d.as_secs()));
                            tokio::time::sleep(d).await;
                        } else {
                            self.log.info(format!("Giving up on {server}..."));
                        }
                    }
                }
            }
        }
        self.log.error(format!("Update failed for database: {db}"));
        Err(last)
    }

    async fn manifest_for(&mut self, server: &str) -> Result<Option<Manifest>, UpdateError> {
        let Some(v) = &self.settings.vdbnet else {
            return Ok(None);
        };
        if let Some(m) = self.manifests.get(server) {
            return Ok(Some(m.clone()));
        }
        let m = crate::vdbnet::fetch(&self.fetcher, server, v, &self.dir, self.now())
            .await
            .map_err(|e| {
                let code = match e {
                    crate::vdbnet::TrustError::Floor(_) => Code::DbDirAccess,
                    _ => Code::BadCvd,
                };
                UpdateError::new(code, e.to_string())
            })?;
        self.log.debug(format!(
            "{server}: signed manifest serial {} from master {} accepted",
            m.serial, m.master
        ));
        self.manifests.insert(server.to_owned(), m.clone());
        Ok(Some(m))
    }

    /// freshclam's outcome for a failed request; 403 and 429 start a cool-down.
    fn fetch_error(&mut self, e: FetchError, probe: bool) -> UpdateError {
        let msg = e.to_string();
        if let Some(secs) = e.cool_down_secs() {
            self.cool_down(secs);
            if probe {
                return UpdateError::new(
                    Code::FailedGet,
                    format!("{msg}; malformed CVD header (too short)"),
                );
            }
            let code = if e.kind() == Some(ErrorKind::Forbidden) {
                Code::Forbidden
            } else {
                Code::RetryLater
            };
            return UpdateError::new(code, msg);
        }
        let code = match (&e, e.kind()) {
            (FetchError::Empty { .. }, _) => Code::EmptyFile,
            (
                _,
                Some(
                    ErrorKind::Network
                    | ErrorKind::Timeout
                    | ErrorKind::Protocol
                    | ErrorKind::Config,
                ),
            ) => Code::Connection,
            (_, Some(ErrorKind::Local)) => Code::File,
            _ => Code::FailedGet,
        };
        UpdateError::new(code, msg)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v4() {
        let u = new_uuid();
        assert!(FreshclamDat::new(&u).is_ok(), "{u}");
        assert_eq!(&u[14..15], "4");
    }
}
