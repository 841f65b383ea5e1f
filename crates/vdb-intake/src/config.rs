//! The intake's TOML configuration.
//!
//! ```toml
//! name = "intake"
//! listen = "0.0.0.0:8760"
//! data_dir = "/var/lib/vdbnet/intake"      # quarantine/ and intake.sqlite
//! admin_token = "a long random string"      # vdb samples … --token
//! public_url = "https://samples.example.org" # for links in e-mails
//!
//! [scanner]
//! database = "/var/lib/clamav"              # the network's current databases (vdb-update keeps it)
//! # clamd = "/run/clamav/clamd.ctl"         # scan through clamd's INSTREAM instead of clamscan
//!
//! [limits]
//! max_sample_bytes = 33554432
//! submissions_per_hour = 30
//!
//! [notify]
//! webhook_url = "https://chat.example.org/hooks/samples"
//! [notify.smtp]
//! server = "127.0.0.1:25"
//! from = "intake@example.org"
//! to = ["signatures@example.org"]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// `intake.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This intake's name (in notifications and the ready line).
    #[serde(default = "default_name")]
    pub name: String,
    /// HTTP listen address (`vdbd intake` binds it; `127.0.0.1:0` allowed).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory of the quarantine (`quarantine/<sha256>.zip`) and `intake.sqlite`.
    pub data_dir: PathBuf,
    /// Bearer token of the team's API (`vdb samples …`). Without it the team's API is off.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// The public base URL, for links in e-mails (default: none, links are relative).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Triage.
    #[serde(default)]
    pub scanner: ScannerConfig,
    /// Bounds on what the public may send.
    #[serde(default)]
    pub limits: Limits,
    /// Telling the team and the submitters.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// The HTTP listener's timeouts and connection caps (the `[limits]` section of the other
    /// roles, see `docs/deploy.md`; here `[listener]`, since `[limits]` bounds the samples).
    #[serde(default)]
    pub listener: vdb_service::Limits,
}

/// How new samples are checked against the network's current databases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerConfig {
    /// The `clamscan` executable.
    #[serde(default = "default_clamscan")]
    pub clamscan: PathBuf,
    /// The database directory (or one database file) `clamscan -d` loads. Without it (and
    /// without `clamd`) samples are not triaged.
    #[serde(default)]
    pub database: Option<PathBuf>,
    /// Scan through a running clamd instead (`/path/to/clamd.ctl` or `host:port`), with its
    /// `INSTREAM` command; clamd's own `StreamMaxLength` must be at least `max_sample_bytes`.
    #[serde(default)]
    pub clamd: Option<String>,
    /// A scan that takes longer is stopped and recorded as an error (seconds).
    #[serde(default = "default_scan_timeout")]
    pub timeout_secs: u64,
    /// How many scans run at once (clamscan loads the whole database each time).
    #[serde(default = "default_scan_concurrency")]
    pub concurrency: usize,
}

impl Default for ScannerConfig {
    fn default() -> Self {
        Self {
            clamscan: default_clamscan(),
            database: None,
            clamd: None,
            timeout_secs: default_scan_timeout(),
            concurrency: default_scan_concurrency(),
        }
    }
}

/// Bounds on the public side. Every refusal is a clear error and stores nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest sample (bytes), enforced while the upload streams.
    #[serde(default = "default_max_sample")]
    pub max_sample_bytes: u64,
    /// Submissions accepted per client address (IPv6: per /64) per hour.
    #[serde(default = "default_per_hour")]
    pub submissions_per_hour: u32,
    /// Uploads one client address may have in flight at once.
    #[serde(default = "default_per_client")]
    pub concurrent_per_client: u32,
    /// Uploads in flight at once, from everyone.
    #[serde(default = "default_concurrent")]
    pub concurrent_uploads: u32,
    /// An upload that takes longer is cut (seconds).
    #[serde(default = "default_upload_timeout")]
    pub upload_timeout_secs: u64,
    /// The whole quarantine may not grow beyond this (bytes); then submissions are refused.
    #[serde(default = "default_quota")]
    pub quarantine_bytes: u64,
    /// Reverse proxies (TLS terminators) whose `X-Forwarded-For` names the client: the
    /// rightmost address in it is the one counted.
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sample_bytes: default_max_sample(),
            submissions_per_hour: default_per_hour(),
            concurrent_per_client: default_per_client(),
            concurrent_uploads: default_concurrent(),
            upload_timeout_secs: default_upload_timeout(),
            quarantine_bytes: default_quota(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Notifications: the team on each new sample, submitters (who left an address) on a release.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The team's webhook (JSON POST) for new samples and resolutions.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// E-mail to the team, and answers to submitters.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
}

/// E-mail through an SMTP relay: [`vdb_service::smtp::SmtpConfig`], as for the master and the
/// monitor (`server`, `from`, `to`; `tls`, `username`, `password`, `ca_file` optional).
pub use vdb_service::smtp::SmtpConfig;

fn default_name() -> String {
    "intake".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8760))
}
fn default_clamscan() -> PathBuf {
    "clamscan".into()
}
fn default_scan_timeout() -> u64 {
    300
}
fn default_scan_concurrency() -> usize {
    1
}
fn default_max_sample() -> u64 {
    32 << 20
}
fn default_per_hour() -> u32 {
    30
}
fn default_per_client() -> u32 {
    2
}
fn default_concurrent() -> u32 {
    32
}
fn default_upload_timeout() -> u64 {
    300
}
fn default_quota() -> u64 {
    10 << 30
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the intake config {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("invalid intake config {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("invalid intake config {}", path.display()))?;
        Ok(config)
    }

    /// A minimal configuration (tests, `vdbd dev`): everything else default.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: default_name(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            admin_token: None,
            public_url: None,
            scanner: ScannerConfig::default(),
            limits: Limits::default(),
            listener: vdb_service::Limits::default(),
            notify: NotifyConfig::default(),
        }
    }

    /// Checks values that TOML alone cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listener.check()?;
        let l = &self.limits;
        anyhow::ensure!(
            l.max_sample_bytes > 0 && l.max_sample_bytes <= 1 << 30,
            "field `limits.max_sample_bytes`: between 1 byte and 1 GiB"
        );
        anyhow::ensure!(
            l.submissions_per_hour > 0 && l.concurrent_per_client > 0 && l.concurrent_uploads > 0,
            "fields `limits.submissions_per_hour`, `concurrent_per_client`, `concurrent_uploads`: at least 1"
        );
        anyhow::ensure!(
            l.upload_timeout_secs > 0 && self.scanner.timeout_secs > 0,
            "fields `limits.upload_timeout_secs`, `scanner.timeout_secs`: at least 1"
        );
        anyhow::ensure!(
            self.scanner.concurrency > 0,
            "field `scanner.concurrency`: at least 1"
        );
        if let Some(t) = &self.admin_token {
            anyhow::ensure!(t.len() >= 16, "field `admin_token`: at least 16 characters");
        }
        if let Some(smtp) = &self.notify.smtp {
            vdb_service::smtp::Mailer::new(smtp, &self.name).context("field `notify.smtp`")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused_and_defaults_hold() {
        let c: Config = toml::from_str("data_dir = \"/tmp/x\"").unwrap();
        assert_eq!(c.limits.max_sample_bytes, 32 << 20);
        assert!(c.validate().is_ok());
        let e = toml::from_str::<Config>("data_dir = \"/tmp/x\"\nmax_size = 1").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = toml::from_str::<Config>("data_dir = \"/x\"\n[limits]\nmax_bytes = 1").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let mut c = Config::new("/tmp/x");
        c.admin_token = Some("short".into());
        assert!(c.validate().is_err());
    }
}
