//! The update run: freshclam's per-database algorithm (spec §4.3, §2.3) with its retries,
//! failover and cool-downs (§4.5–§4.7), plus health memory and vdbnet manifest checks.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vdb_format::dnstxt::{CurrentRecord, DbRecord};
use vdb_format::{Header, Kind, Limits};
use vdb_proto::{Clock, Manifest};

use crate::config::Settings;
use crate::fetch::{Download, FORBIDDEN_COOLDOWN_SECS, FetchError, Fetcher, MAX_CDIFF, Probe};
use crate::health::Health;
use crate::local::{self, LocalDb};
use crate::log::Log;
use crate::notify::{self, HookOutcome};
use crate::state::FreshclamDat;

/// The name of `freshclam.dat` in the database directory.
pub const DAT_FILE: &str = "freshclam.dat";

/// Largest custom database accepted.
pub const MAX_CUSTOM: u64 = 512 << 20;

/// freshclam's result codes (`fc_error_t`, spec §4.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Code {
    /// Something changed.
    Success = 0,
    /// Nothing to do (exit 0).
    UpToDate = 1,
    /// Initialisation failed.
    Init = 2,
    /// The database directory is missing or unusable.
    Directory = 3,
    /// A local file could not be written.
    File = 4,
    /// No connection.
    Connection = 5,
    /// An empty file was served.
    EmptyFile = 6,
    /// Verification failed.
    BadCvd = 7,
    /// The test load failed.
    TestFail = 8,
    /// The configuration is unusable.
    Config = 9,
    /// The database directory cannot be read or written.
    DbDirAccess = 10,
    /// A download failed.
    FailedGet = 11,
    /// The mirror serves an older version than advertised.
    MirrorNotSync = 12,
    /// A bad command-line argument.
    Arg = 16,
    /// 403: the run stops, daemons exit.
    Forbidden = 17,
    /// 429: the run stops (exit 0).
    RetryLater = 18,
    /// Anything else.
    Error = 19,
}

impl Code {
    /// The process exit code freshclam uses for this outcome (0 for up-to-date and 429).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::UpToDate | Self::RetryLater => 0,
            c => c as u8,
        }
    }
}

/// A failed step, with freshclam's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UpdateError {
    /// The code.
    pub code: Code,
    /// What happened and, where possible, what to do.
    pub message: String,
}

impl UpdateError {
    fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What happened to one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbOutcome {
    /// Already current at this version.
    UpToDate(u32),
    /// A new file was installed.
    Updated {
        /// The installed file name.
        file: String,
        /// Its version.
        version: u32,
        /// Installed a version older than the advertised one (mirror not synchronised).
        behind: bool,
    },
}

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
}

enum Chain {
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

/// Compares dotted version strings numerically (`1.4.10` > `1.4.9`).
fn version_newer(candidate: &str, own: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> {
        s.split(['.', '-'])
            .map_while(|p| p.parse::<u64>().ok())
            .collect()
    };
    parse(candidate) > parse(own)
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
        },
        Err(e) => {
            log.error(&e.message);
            RunReport {
                code: e.code,
                exit_code: e.code.exit_code(),
                updated: Vec::new(),
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
        let fetcher =
            Fetcher::new(settings, &dat.uuid).map_err(|e| UpdateError::new(Code::Init, e))?;
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
        RunReport {
            code,
            exit_code: exit_override.unwrap_or(code.exit_code()),
            updated,
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

    /// Reads the `current.cvd` record; `None` (HTTP mode) when it is missing, broken or stale.
    async fn current_record(&self) -> Option<CurrentRecord> {
        let domain = self.settings.dns_domain.as_deref()?;
        let txt = match crate::dns::Txt::new(self.settings.dns_server) {
            Ok(t) => t,
            Err(e) => {
                self.log.warn(format!("{e}; falling back to HTTP mode"));
                return None;
            }
        };
        let text = match txt.first_string(domain).await {
            Ok(t) => t,
            Err(e) => {
                self.log.warn(format!(
                    "Invalid DNS reply ({e}). Falling back to HTTP mode."
                ));
                return None;
            }
        };
        self.log.debug(format!("TXT {domain}: {text}"));
        let rec = match CurrentRecord::parse(&text) {
            Ok(r) => r,
            Err(e) => {
                self.log.warn(format!("{e}. Falling back to HTTP mode."));
                return None;
            }
        };
        if !rec.is_fresh(self.now()) {
            self.log
                .warn("DNS record is older than 12 hours. Falling back to HTTP mode.");
            return None;
        }
        if rec.version_warning && version_newer(&rec.clamav_version, &self.settings.engine_version)
        {
            self.log.warn("Your ClamAV installation is OUTDATED!");
            self.log.warn(format!(
                "Local version: {} Recommended version: {}",
                self.settings.engine_version, rec.clamav_version
            ));
            if let Some(t) = &self.settings.on_outdated_execute
                && let Some(cmd) = notify::outdated_command(t, &rec.clamav_version)
            {
                let _ = self.hook("OnOutdatedExecute", &cmd).await;
            }
        }
        Some(rec)
    }

    /// The version DNS gives for `db`, if DNS is in use and has a fresh, valid value.
    async fn dns_version(&self, db: &str) -> Option<u32> {
        let rec = self.dns.as_ref()?;
        if let Some(v) = rec.version_of(db) {
            return Some(v);
        }
        let name = format!("{db}.cvd.{}", self.settings.db_txt_zone);
        let txt = crate::dns::Txt::new(self.settings.dns_server).ok()?;
        let text = match txt.first_string(&name).await {
            Ok(t) => t,
            Err(e) => {
                self.log.debug(format!("{e}; using HTTP for {db}"));
                return None;
            }
        };
        match DbRecord::parse(&text) {
            Ok(r) if r.is_fresh(self.now()) => Some(r.version),
            Ok(_) => {
                self.log.warn(format!(
                    "DNS record for {db} is older than 12 hours. Falling back to HTTP mode."
                ));
                None
            }
            Err(_) => {
                self.log
                    .warn("Broken database version in TXT record. Falling back to HTTP mode.");
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
            .map_err(|e| UpdateError::new(Code::BadCvd, e.to_string()))?;
        self.log.debug(format!(
            "{server}: signed manifest serial {} from master {} accepted",
            m.serial, m.master
        ));
        self.manifests.insert(server.to_owned(), m.clone());
        Ok(Some(m))
    }

    fn fetch_error(&mut self, e: FetchError, probe: bool) -> UpdateError {
        let msg = e.to_string();
        match e {
            FetchError::Forbidden { .. } => {
                self.cool_down(FORBIDDEN_COOLDOWN_SECS);
                if probe {
                    UpdateError::new(
                        Code::FailedGet,
                        format!("{msg}; malformed CVD header (too short)"),
                    )
                } else {
                    UpdateError::new(Code::Forbidden, msg)
                }
            }
            FetchError::RetryLater { secs, .. } => {
                self.cool_down(secs);
                if probe {
                    UpdateError::new(
                        Code::FailedGet,
                        format!("{msg}; malformed CVD header (too short)"),
                    )
                } else {
                    UpdateError::new(Code::RetryLater, msg)
                }
            }
            FetchError::Connection { .. } => UpdateError::new(Code::Connection, msg),
            FetchError::Empty { .. } => UpdateError::new(Code::EmptyFile, msg),
            FetchError::Local { .. } => UpdateError::new(Code::File, msg),
            _ => UpdateError::new(Code::FailedGet, msg),
        }
    }

    /// freshclam's `updatedb` for one database and one server.
    async fn updatedb(
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
        let mut remote_name = format!("{db}.cvd");
        let remote = match dns_version {
            Some(v) => v,
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
                        Ok(Probe::NotModified) => {
                            if let Some(l) = &local {
                                self.log.info(format!(
                                    "{} database is up-to-date ({})",
                                    file_name(&l.path),
                                    describe(&l.header)
                                ));
                                return Ok(DbOutcome::UpToDate(l.version()));
                            }
                            return Err(UpdateError::new(
                                Code::FailedGet,
                                format!("{url}: 304 Not Modified, but there is no local {db}"),
                            ));
                        }
                        Ok(Probe::Header(h)) => {
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
        self.log.debug(format!("Retrieving {url}"));
        let t0 = Instant::now();
        let written = match self.fetcher.download_to(&url, ims, &staged, self.log).await {
            Ok(Download::Fetched(w)) => w,
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
        let verified = vdb_format::container::verify(
            std::io::BufReader::with_capacity(1 << 20, file),
            kind,
            &self.settings.key_set,
            &self.limits,
        )
        .map_err(|e| {
            UpdateError::new(
                Code::BadCvd,
                format!("Verification: Can't verify database integrity of {url}: {e}"),
            )
        })?;
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
        local::install(&staged, &self.dir, name, superseded)
            .map_err(|e| UpdateError::new(Code::File, format!("cannot install {name}: {e}")))?;
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

    /// Downloads cdiffs `local+1..=remote` in freshclam's order (spec §2.3; each one's
    /// signature and version checked as it arrives, so that a bad one stops the downloads),
    /// then applies them in one streaming pass from the local `.cvd`/`.cld` to a staged CLD:
    /// memory does not grow with the database.
    async fn chain(
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
        let first = local.version() + 1;
        let mut current = local.version();
        let mut cdiffs: Vec<Vec<u8>> = Vec::new();
        for i in first..=remote {
            let name = format!("{db}-{i}.cdiff");
            let url = format!("{server}/{name}");
            self.log.debug(format!("Retrieving {url}"));
            let mut got = Err(FetchError::Status {
                url: url.clone(),
                status: 0,
            });
            for _ in 0..self.settings.max_attempts.max(1) {
                got = match self.fetcher.download(&url, None, MAX_CDIFF).await {
                    Ok(Download::Fetched(b)) => Ok(b),
                    Ok(Download::NotModified) => Err(FetchError::Status {
                        url: url.clone(),
                        status: 304,
                    }),
                    Err(e) => Err(e),
                };
                match &got {
                    Err(FetchError::Connection { .. } | FetchError::Status { .. }) => continue,
                    _ => break,
                }
            }
            let bytes = match got {
                Ok(b) => b,
                Err(e @ (FetchError::Forbidden { .. } | FetchError::RetryLater { .. })) => {
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
    async fn install_cld(
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
        self.log
            .info(format!("{name} updated ({})", describe(header)));
        Ok(DbOutcome::Updated {
            file: name,
            version: header.version,
            behind: false,
        })
    }

    /// Runs the configured test command on a staged file (TestDatabases).
    async fn test_load(&self, staged: &Path) -> Result<(), UpdateError> {
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

    /// `DatabaseCustomURL`: `If-Modified-Since` = the local file's mtime; `file://` copies.
    async fn update_custom(&mut self, url: &str) -> Result<Option<(String, u32)>, UpdateError> {
        let name = url.rsplit('/').next().unwrap_or_default().to_owned();
        if !vdb_format::is_safe_member_name(&name) {
            return Err(UpdateError::new(
                Code::Config,
                format!("DatabaseCustomURL {url}: {name:?} is not a safe file name"),
            ));
        }
        let dest = self.dir.join(&name);
        let mtime = std::fs::metadata(&dest)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        let bytes = if let Some(path) = url.strip_prefix("file://") {
            std::fs::read(path).map_err(|e| {
                UpdateError::new(Code::FailedGet, format!("DatabaseCustomURL {url}: {e}"))
            })?
        } else {
            match self.fetcher.download(url, mtime, MAX_CUSTOM).await {
                Ok(Download::Fetched(b)) => b,
                Ok(Download::NotModified) => {
                    self.log
                        .info(format!("{name} is up-to-date (304 Not Modified)"));
                    return Ok(None);
                }
                Err(e) => return Err(self.fetch_error(e, false)),
            }
        };
        if std::fs::read(&dest).is_ok_and(|old| old == bytes) {
            self.log.info(format!("{name} is up-to-date"));
            return Ok(None);
        }
        let mut version = 0;
        if let Some(kind) = Kind::from_file_name(&name) {
            let v = vdb_format::container::verify(
                &bytes[..],
                kind,
                &self.settings.key_set,
                &self.limits,
            )
            .map_err(|e| {
                UpdateError::new(
                    Code::BadCvd,
                    format!("Verification: Can't verify database integrity of {url}: {e}"),
                )
            })?;
            version = v.header.version;
        }
        let stage = local::staging(&self.dir).map_err(|e| {
            UpdateError::new(
                Code::DbDirAccess,
                format!("cannot create a staging directory: {e}"),
            )
        })?;
        let staged = stage.path().join(&name);
        std::fs::write(&staged, &bytes)
            .map_err(|e| UpdateError::new(Code::File, format!("{}: {e}", staged.display())))?;
        self.test_load(&staged).await?;
        local::install(&staged, &self.dir, &name, &[])
            .map_err(|e| UpdateError::new(Code::File, format!("cannot install {name}: {e}")))?;
        self.log
            .info(format!("{name} updated from {url} ({} bytes)", bytes.len()));
        Ok(Some((name, version)))
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
    fn exit_codes_match_freshclam() {
        assert_eq!(Code::UpToDate.exit_code(), 0);
        assert_eq!(Code::RetryLater.exit_code(), 0);
        assert_eq!(Code::Forbidden.exit_code(), 17);
        assert_eq!(Code::FailedGet.exit_code(), 11);
        assert_eq!(Code::BadCvd.exit_code(), 7);
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_newer("9.9.9", "1.4.6"));
        assert!(version_newer("1.4.10", "1.4.9"));
        assert!(!version_newer("1.4.6", "1.4.6"));
        assert!(!version_newer("1.3.0", "1.4.6"));
    }

    #[test]
    fn uuids_are_v4() {
        let u = new_uuid();
        assert!(FreshclamDat::new(&u).is_ok(), "{u}");
        assert_eq!(&u[14..15], "4");
    }
}
