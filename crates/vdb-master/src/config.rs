//! The master's TOML configuration.
//!
//! ```toml
//! name = "a"                          # goes into manifests and push notices
//! network = "vdbnet"
//! listen = "0.0.0.0:8700"
//! data_dir = "/var/lib/vdbnet/master"
//! key_file = "/etc/vdbnet/master.key" # vdb key gen -o …
//! admin_token = "a long random string"
//! pull_tokens = []                    # if set, GET /api/v1/objects/… needs one
//! # tls_cert_file / tls_key_file: serve HTTPS; tls_ca_file: trust a private CA for peers
//! heartbeat_secs = 21600
//! forced_sync_secs = 21600
//! keep_cdiffs = 30
//! # cvd_certs_dir = "/etc/clamav/certs" # trust anchors of ClamAV 1.5 .sign files (the default)
//!
//! [[publishers]]
//! key = "ed25519:…"
//! databases = ["daily", "main"]       # or ["*"]
//!
//! [databases.extra]
//! allow_plain = true                  # .ndb/.hdb/… published as-is
//! # containers = ["cvd"]              # container kinds a release may bring (cvd, cld, cud)
//! # keyset_file = "network-keys.txt"  # the network's own ClamAV key set
//!
//! [[peers]]
//! url = "https://master-b.example.org"
//! key = "ed25519:…"
//!
//! [upstream]                          # follow a ClamAV-style upstream (one master only)
//! url = "https://database.clamav.net"
//! # urls = ["https://mirror.example.org"]  # tried in order after `url`
//! databases = ["daily", "main", "bytecode"]
//! interval_secs = 3600
//! dns_txt = "current.cvd.clamav.net"  # no HTTP request while the TXT says nothing changed
//! # user_agent, proxy, max_redirects, timeout_secs, backoff_*_secs, cooldown_*_secs: see
//! # UpstreamConfig and docs/deploy.md "Following database.clamav.net"
//!
//! [smtp]                              # see vdb_service::smtp::SmtpConfig (STARTTLS, AUTH)
//! server = "127.0.0.1:25"
//! from = "vdbnet@example.org"
//! to = ["announce@example.org"]
//!
//! [limits]                            # see vdb_service::Limits (timeouts, connection caps)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use vdb_proto::PublicKey;

/// `master.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This master's name (goes into manifests and push notices).
    pub name: String,
    /// The network's name (manifests for another network are refused by mirrors).
    pub network: String,
    /// HTTP listen address (`127.0.0.1:0` allowed).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// PEM certificate chain: serve HTTPS (rustls) instead of plain HTTP.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Extra PEM root certificates trusted when talking to peers, mirrors and the upstream.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Directory for objects, the SQLite history and the current manifest.
    pub data_dir: PathBuf,
    /// The master's Ed25519 secret key file (`vdb key gen`); it signs manifests and pushes.
    pub key_file: PathBuf,
    /// Bearer token of the admin API (registry management). Without it the admin API is off.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// If not empty, `GET /api/v1/objects/…` requires `Authorization: Bearer <one of these>`.
    #[serde(default)]
    pub pull_tokens: Vec<String>,
    /// Who may publish what.
    #[serde(default)]
    pub publishers: Vec<PublisherConfig>,
    /// Per-database settings; databases not listed use the defaults of [`DbConfig`].
    #[serde(default)]
    pub databases: BTreeMap<String, DbConfig>,
    /// The other masters of the network.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Largest single file of a release (bytes).
    #[serde(default = "default_max_file")]
    pub max_file_size: u64,
    /// How far a release statement's `issued_at` may be from now (seconds): older statements
    /// are refused as replays.
    #[serde(default = "default_window")]
    pub statement_window_secs: i64,
    /// How many cdiffs per database the manifest keeps.
    #[serde(default = "default_keep_cdiffs")]
    pub keep_cdiffs: usize,
    /// Re-sign the manifest with a fresh `timestamp` this often.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: i64,
    /// A manifest expires this long after it is signed (default: four heartbeats).
    #[serde(default)]
    pub manifest_ttl_secs: Option<i64>,
    /// Forced sync of every mirror this often (only when every peer agrees).
    #[serde(default = "default_heartbeat")]
    pub forced_sync_secs: i64,
    /// Pull from the peers this often.
    #[serde(default = "default_replicate")]
    pub replicate_secs: i64,
    /// A restarted master waits this long for every peer before it signs or pushes anyway.
    #[serde(default = "default_catch_up")]
    pub catch_up_timeout_secs: i64,
    /// How many mirrors are pushed to at once.
    #[serde(default = "default_push_concurrency")]
    pub push_concurrency: usize,
    /// Attempts per push before giving up.
    #[serde(default = "default_push_attempts")]
    pub push_attempts: u32,
    /// First retry delay (milliseconds), doubled after each failure (capped at 60 s).
    #[serde(default = "default_push_backoff")]
    pub push_backoff_ms: u64,
    /// Webhook for release notifications and alerts (JSON POST).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Release notifications and alerts by e-mail.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Limits and timeouts of the HTTP listener (`[limits]`; safe defaults).
    #[serde(default)]
    pub limits: vdb_service::Limits,
    /// Field 0 of the version record (`dns.txt` and the directory's `current.cvd` TXT): the
    /// newest ClamAV release. Configured here only, signed into every manifest (the same on
    /// every master of the network).
    #[serde(default = "default_clamav_version")]
    pub clamav_version: String,
    /// Field 5 of the version record: the recommended functionality level.
    #[serde(default = "default_flevel")]
    pub flevel: u32,
    /// Field 4 of the version record: whether clients older than `clamav_version` warn that
    /// they are outdated.
    #[serde(default = "default_version_warning")]
    pub version_warning: bool,
    /// Follow a ClamAV-style upstream.
    #[serde(default)]
    pub upstream: Option<UpstreamConfig>,
    /// Uploaded objects that no release references are deleted after this long (seconds of
    /// file age), so a publisher key cannot fill the disk with abandoned uploads.
    #[serde(default = "default_orphan_ttl")]
    pub orphan_ttl_secs: u64,
    /// How often the background loops look at the clock (milliseconds; tests lower it).
    #[serde(default = "default_tick")]
    pub tick_ms: u64,
    /// The certificates that ClamAV 1.5 `.sign` files of releases must chain to: a directory
    /// laid out like ClamAV's `certs/` (every `*.pem`/`*.crt` in it is a trust anchor). Unset,
    /// ClamAV's own install location [`DEFAULT_CVD_CERTS_DIR`], where ClamAV puts its official
    /// root; if that does not exist, releases with `.sign` files are refused
    /// (`sign_unverifiable`) with a message saying to set this. Set, it must load at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvd_certs_dir: Option<PathBuf>,
    /// Objects need a pull token or a joined mirror's signature even when `pull_tokens` is
    /// empty (a network whose mirrors all joined with `vdbd mirror join`).
    #[serde(default)]
    pub require_pull_auth: bool,
    /// The most join requests waiting for the admin at once (more are refused until some are
    /// decided or expire).
    #[serde(default = "default_join_max_pending")]
    pub join_max_pending: usize,
    /// Join requests not decided within this long are dropped (decided ones are kept as long,
    /// for the joining mirror to read the answer).
    #[serde(default = "default_join_expiry")]
    pub join_expiry_secs: i64,
}

fn default_join_max_pending() -> usize {
    100
}
fn default_join_expiry() -> i64 {
    7 * 86_400
}

/// Where ClamAV installs its `.sign` trust anchors (its documented `CERTSDIR` on Linux, with the
/// official root `clamav.crt`): the master's `cvd_certs_dir` when none is configured.
pub const DEFAULT_CVD_CERTS_DIR: &str = vdb_gate::DEFAULT_CVD_CERTS_DIR;

/// One publisher key and the databases it may publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherConfig {
    /// `ed25519:<hex>`.
    pub key: PublicKey,
    /// Database names this key may publish (`*` for any).
    pub databases: Vec<String>,
}

/// Settings of one database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbConfig {
    /// A `vdb-format` key set file (the network's own ClamAV keys); official keys if absent.
    #[serde(default)]
    pub keyset_file: Option<PathBuf>,
    /// Whether plain signature files (`.ndb`, `.hdb`, `.ldb`, …) may be published as-is.
    #[serde(default)]
    pub allow_plain: bool,
    /// Whether `.sign` files are refused (by default they are accepted once they verify
    /// against `cvd_certs_dir`).
    #[serde(default)]
    pub refuse_sign_files: bool,
    /// The container kinds a release may bring, as `<db>.<kind>`: `cvd` (the default; what
    /// freshclam downloads), `cld`, `cud`.
    #[serde(default = "default_containers")]
    pub containers: Vec<String>,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            keyset_file: None,
            allow_plain: false,
            refuse_sign_files: false,
            containers: default_containers(),
        }
    }
}

fn default_containers() -> Vec<String> {
    vec!["cvd".into()]
}

/// Another master.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Base URL (`http://127.0.0.1:8001`).
    pub url: String,
    /// Its manifest key.
    pub key: PublicKey,
    /// Bearer token for its objects, if it requires one.
    #[serde(default)]
    pub token: Option<String>,
}

/// E-mail through an SMTP relay (`[smtp]`: STARTTLS and AUTH, strict addresses).
pub use vdb_service::smtp::SmtpConfig;

/// A ClamAV-style upstream to follow (`database.clamav.net`, a cvdupdate mirror, a
/// directory served over HTTP). See `docs/deploy.md`, "Following database.clamav.net".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Base URL serving `<db>.cvd`, `<db>-<n>.cdiff` and their `.sign` files (the first
    /// upstream; kept for older configs, `urls` lists more).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// More base URLs, tried in order after `url` when one fails or is cooling down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Databases to follow.
    pub databases: Vec<String>,
    /// How often to look (seconds).
    #[serde(default = "default_upstream_interval")]
    pub interval_secs: i64,
    /// The key that signs the statements of followed releases (created if missing;
    /// default `<data_dir>/upstream.key`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The `User-Agent` of every upstream request (default [`default_user_agent`]: vdbnet's
    /// name and version and the ClamAV version whose protocol it speaks). ClamAV's CDN
    /// refuses outdated ClamAV agents; it serves other tools under their own name
    /// (cvdupdate sends `CVDUPDATE/<version>`), so an honest name is right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// An explicit HTTP proxy (`http://host:port`) for upstream requests only; the
    /// environment's proxy variables are never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The proxy's user name (Basic authentication), with `proxy_password_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_user: Option<String>,
    /// A file holding the proxy's password (its first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_password_file: Option<PathBuf>,
    /// Redirects followed per request (default 0: a redirect is an error).
    #[serde(default)]
    pub max_redirects: usize,
    /// The longest one upstream request may take, body included (seconds; default 300).
    #[serde(default = "default_upstream_timeout")]
    pub timeout_secs: u64,
    /// After a `5xx`, a timeout or a broken connection, that upstream gets no request for a
    /// back-off drawn from `0..=min(backoff_max_secs, backoff_base_secs × 2^(failures-1))`
    /// (full jitter). Default 60.
    #[serde(default = "default_backoff_base")]
    pub backoff_base_secs: u64,
    /// The longest back-off (seconds; default 6 hours).
    #[serde(default = "default_backoff_max")]
    pub backoff_max_secs: u64,
    /// The cool-down after a `429` or `403` that gives no `Retry-After` (seconds; default 4
    /// hours, as freshclam). A `Retry-After` is honoured up to `cooldown_max_secs`.
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: u64,
    /// The longest cool-down honoured (seconds; default 7 days).
    #[serde(default = "default_cooldown_max")]
    pub cooldown_max_secs: u64,
    /// The version TXT record read before any HTTP request (`current.cvd.clamav.net`): when
    /// it says a database has not changed, no HTTP request is made for it. `main`, `daily`,
    /// `safebrowsing` and `bytecode` are read from it; any other database from
    /// `<db>.<the same name without its first label>` (`test.cvd.clamav.net`), as freshclam
    /// does. Unset, missing, broken or older than 12 hours: header probes (spec §4.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_txt: Option<String>,
    /// Standby: this master asks the upstream only once its peers have not answered a
    /// replication pull for this long (seconds; e.g. 3 × `interval_secs`), so that a network
    /// never doubles the CDN's load. Set it on every following master but one (the primary);
    /// while the primary is up the others take its releases by replication, and they take
    /// over when it is gone. Unset: this master always follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_after_secs: Option<i64>,
    /// The DNS server asked for `dns_txt` (`ip:port`, UDP then TCP); the system resolver if
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_server: Option<SocketAddr>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            urls: Vec::new(),
            databases: Vec::new(),
            interval_secs: default_upstream_interval(),
            key_file: None,
            user_agent: None,
            proxy: None,
            proxy_user: None,
            proxy_password_file: None,
            max_redirects: 0,
            timeout_secs: default_upstream_timeout(),
            backoff_base_secs: default_backoff_base(),
            backoff_max_secs: default_backoff_max(),
            cooldown_secs: default_cooldown(),
            cooldown_max_secs: default_cooldown_max(),
            dns_txt: None,
            dns_server: None,
            standby_after_secs: None,
        }
    }
}

impl UpstreamConfig {
    /// The base URLs in the order they are tried (`url`, then `urls`), without trailing `/`.
    pub fn base_urls(&self) -> Vec<String> {
        std::iter::once(&self.url)
            .chain(&self.urls)
            .filter(|u| !u.is_empty())
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect()
    }

    /// The `User-Agent` sent upstream.
    pub fn user_agent(&self) -> String {
        self.user_agent.clone().unwrap_or_else(default_user_agent)
    }
}

/// The default upstream `User-Agent`: `vdbnet/<version> (ClamAV/1.4.6 compatible)`.
pub fn default_user_agent() -> String {
    format!(
        "vdbnet/{} (ClamAV/1.4.6 compatible)",
        env!("CARGO_PKG_VERSION")
    )
}

fn default_upstream_timeout() -> u64 {
    300
}
fn default_backoff_base() -> u64 {
    60
}
fn default_backoff_max() -> u64 {
    6 * 3600
}
fn default_cooldown() -> u64 {
    4 * 3600
}
fn default_cooldown_max() -> u64 {
    7 * 86400
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8700))
}
fn default_max_file() -> u64 {
    vdb_gate::DEFAULT_MAX_FILE_SIZE
}
fn default_window() -> i64 {
    600
}
fn default_keep_cdiffs() -> usize {
    30
}
fn default_heartbeat() -> i64 {
    6 * 3600
}
fn default_replicate() -> i64 {
    60
}
fn default_catch_up() -> i64 {
    120
}
fn default_push_concurrency() -> usize {
    16
}
fn default_push_attempts() -> u32 {
    5
}
fn default_push_backoff() -> u64 {
    1000
}
fn default_clamav_version() -> String {
    vdb_proto::VersionRecord::default().clamav_version
}
fn default_flevel() -> u32 {
    vdb_proto::VersionRecord::default().flevel
}
fn default_version_warning() -> bool {
    vdb_proto::VersionRecord::default().version_warning
}
fn default_upstream_interval() -> i64 {
    3600
}
fn default_orphan_ttl() -> u64 {
    86_400
}
fn default_tick() -> u64 {
    500
}

/// The longest duration a setting may have (a year, in seconds): longer ones are mistakes, and
/// would overflow the clock arithmetic.
pub const MAX_SECS: i64 = 366 * 86_400;

/// The longest loop tick or push back-off (milliseconds).
const MAX_MS: u64 = 60_000;

/// Checks that a duration setting is within `min..=max` (`unit`: "seconds", "milliseconds").
fn in_range(field: &str, value: i128, min: i128, max: i128, unit: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        (min..=max).contains(&value),
        "field `{field}` is {value}: it must be {min} to {max} {unit}"
    );
    Ok(())
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let read = || -> anyhow::Result<Self> {
            let config: Self = toml::from_str(&std::fs::read_to_string(path)?)?;
            config.validate()?;
            Ok(config)
        };
        read().with_context(|| format!("in the master config {}", path.display()))
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.name.is_empty(), "field `name` must not be empty");
        anyhow::ensure!(
            !self.network.is_empty(),
            "field `network` must not be empty"
        );
        self.version_record()
            .check()
            .map_err(|e| anyhow::anyhow!("field `clamav_version`: {e}"))?;
        self.check_durations()?;
        anyhow::ensure!(
            self.push_concurrency >= 1,
            "field `push_concurrency` must be >= 1"
        );
        anyhow::ensure!(
            self.push_attempts >= 1,
            "field `push_attempts` must be >= 1"
        );
        anyhow::ensure!(self.keep_cdiffs >= 1, "field `keep_cdiffs` must be >= 1");
        anyhow::ensure!(
            (1..=10_000).contains(&self.join_max_pending),
            "field `join_max_pending` must be 1 to 10000"
        );
        anyhow::ensure!(
            self.tls_cert_file.is_some() == self.tls_key_file.is_some(),
            "fields `tls_cert_file` and `tls_key_file` go together"
        );
        if let Some(t) = &self.admin_token {
            anyhow::ensure!(
                t.len() >= 16,
                "field `admin_token` must be at least 16 characters"
            );
        }
        self.limits.check().context("in section `limits`")?;
        if let Some(ttl) = self.manifest_ttl_secs {
            anyhow::ensure!(
                ttl > self.heartbeat_secs,
                "field `manifest_ttl_secs` ({ttl}) must be longer than `heartbeat_secs` ({}): a manifest must outlive the next heartbeat",
                self.heartbeat_secs
            );
        }
        for (name, db) in &self.databases {
            anyhow::ensure!(
                vdb_proto::is_safe_db_name(name),
                "field `databases`: {name:?} is not a valid database name"
            );
            for c in &db.containers {
                anyhow::ensure!(
                    ["cvd", "cld", "cud"].contains(&c.as_str()),
                    "field `databases.{name}.containers`: {c:?} is not cvd, cld or cud"
                );
            }
        }
        Ok(())
    }

    /// Every duration within its bounds: none zero where that would spin or refuse
    /// everything, none so large that the clock arithmetic overflows.
    fn check_durations(&self) -> anyhow::Result<()> {
        let max = i128::from(MAX_SECS);
        let mut secs: Vec<(&str, i128, i128)> = vec![
            ("heartbeat_secs", self.heartbeat_secs.into(), 1),
            ("forced_sync_secs", self.forced_sync_secs.into(), 1),
            ("replicate_secs", self.replicate_secs.into(), 1),
            (
                "statement_window_secs",
                self.statement_window_secs.into(),
                1,
            ),
            (
                "catch_up_timeout_secs",
                self.catch_up_timeout_secs.into(),
                0,
            ),
            ("orphan_ttl_secs", self.orphan_ttl_secs.into(), 1),
            ("join_expiry_secs", self.join_expiry_secs.into(), 60),
        ];
        if let Some(ttl) = self.manifest_ttl_secs {
            secs.push(("manifest_ttl_secs", ttl.into(), 2));
        }
        if let Some(up) = &self.upstream {
            secs.push(("upstream.interval_secs", up.interval_secs.into(), 1));
            if let Some(s) = up.standby_after_secs {
                secs.push(("upstream.standby_after_secs", s.into(), 1));
            }
            for (field, v) in [
                ("upstream.timeout_secs", up.timeout_secs),
                ("upstream.backoff_base_secs", up.backoff_base_secs),
                ("upstream.backoff_max_secs", up.backoff_max_secs),
                ("upstream.cooldown_secs", up.cooldown_secs),
                ("upstream.cooldown_max_secs", up.cooldown_max_secs),
            ] {
                secs.push((field, v.into(), 1));
            }
            if up.base_urls().is_empty() {
                anyhow::bail!("[upstream]: set `url` (or `urls`) to the upstream's base URL");
            }
            if up.proxy_user.is_some() != up.proxy_password_file.is_some() {
                anyhow::bail!("[upstream]: `proxy_user` and `proxy_password_file` go together");
            }
        }
        for (field, value, min) in secs {
            in_range(field, value, min, max, "seconds")?;
        }
        let ms = i128::from(MAX_MS);
        in_range("tick_ms", self.tick_ms.into(), 1, ms, "milliseconds")?;
        in_range(
            "push_backoff_ms",
            self.push_backoff_ms.into(),
            0,
            ms,
            "milliseconds",
        )?;
        anyhow::ensure!(
            self.manifest_ttl() <= MAX_SECS,
            "the manifest lifetime is {} s (four heartbeats unless `manifest_ttl_secs` is set): it must be at most {MAX_SECS} s",
            self.manifest_ttl()
        );
        Ok(())
    }

    /// The version record's fields that are not database versions, as signed into manifests.
    pub fn version_record(&self) -> vdb_proto::VersionRecord {
        vdb_proto::VersionRecord {
            clamav_version: self.clamav_version.clone(),
            version_warning: self.version_warning,
            flevel: self.flevel,
        }
    }

    /// The manifest lifetime.
    pub fn manifest_ttl(&self) -> i64 {
        self.manifest_ttl_secs
            .unwrap_or(self.heartbeat_secs.saturating_mul(4))
    }

    /// A minimal config for tests and `vdbd dev`.
    pub fn new(name: &str, network: &str, data_dir: PathBuf, key_file: PathBuf) -> Self {
        Self {
            name: name.into(),
            network: network.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            data_dir,
            key_file,
            admin_token: None,
            pull_tokens: Vec::new(),
            publishers: Vec::new(),
            databases: BTreeMap::new(),
            peers: Vec::new(),
            max_file_size: default_max_file(),
            statement_window_secs: default_window(),
            keep_cdiffs: default_keep_cdiffs(),
            heartbeat_secs: default_heartbeat(),
            manifest_ttl_secs: None,
            forced_sync_secs: default_heartbeat(),
            replicate_secs: default_replicate(),
            catch_up_timeout_secs: default_catch_up(),
            push_concurrency: default_push_concurrency(),
            push_attempts: default_push_attempts(),
            push_backoff_ms: default_push_backoff(),
            webhook_url: None,
            smtp: None,
            limits: vdb_service::Limits::default(),
            clamav_version: default_clamav_version(),
            flevel: default_flevel(),
            version_warning: default_version_warning(),
            upstream: None,
            orphan_ttl_secs: default_orphan_ttl(),
            tick_ms: default_tick(),
            cvd_certs_dir: None,
            require_pull_auth: false,
            join_max_pending: default_join_max_pending(),
            join_expiry_secs: default_join_expiry(),
        }
    }
}
