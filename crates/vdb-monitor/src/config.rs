//! The monitor's TOML configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use vdb_proto::PublicKey;

/// How a check round picks mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckMode {
    /// Every registered mirror each round (the default).
    #[default]
    All,
    /// One mirror picked at random each round (the seed's "a random mirror every hour").
    Random,
}

/// `monitor.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This monitor's name, shown in verdicts and alerts.
    #[serde(default = "default_name")]
    pub name: String,
    /// The network's name: manifests for another network are refused.
    pub network: String,
    /// The masters' base URLs (`http://master-a:8080`), tried in order.
    pub masters: Vec<String>,
    /// The network's master public keys (`ed25519:<hex>`): manifests must be signed by one.
    pub master_keys: Vec<PublicKey>,
    /// Optional bearer token for the masters' object store (to compare CVD headers with the
    /// master's own bytes when the masters require pull tokens; with it the masters also show
    /// the mirror admins' contacts, which alerts go to).
    #[serde(default)]
    pub master_token: Option<String>,
    /// HTTP listen address for the status page, JSON and metrics (port 0 allowed).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// SQLite file for history, versions, rollouts and sent alerts.
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// Seconds between check rounds; 0 disables the scheduler (rounds only on demand).
    #[serde(default = "default_interval")]
    pub check_interval_secs: u64,
    /// Milliseconds between two looks at the masters' manifest: when its serial moves (a
    /// release, a heartbeat), a round runs at once instead of waiting for the interval, then
    /// again after 1, 2, 4, 8 and 16 s while a mirror in service does not serve it yet. 0
    /// turns this off (rounds only every `check_interval_secs`).
    #[serde(default = "default_release_watch")]
    pub release_watch_ms: u64,
    /// Which mirrors a round checks.
    #[serde(default)]
    pub check_mode: CheckMode,
    /// Timeout of one HTTP request to a mirror or master.
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// User agent of every request (mirrors exclude it from their statistics).
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// Extra trusted CA certificates (PEM bundle) for mirrors' HTTPS, besides the system's.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Files up to this size are downloaded whole and their SHA-256 checked.
    #[serde(default = "default_small_file")]
    pub small_file_max_bytes: u64,
    /// Every this many seconds, each mirror gets a whole-file check: every file its manifest
    /// lists (CVDs and other files above `small_file_max_bytes` included) is downloaded and its
    /// SHA-256 checked, so a changed byte anywhere in a CVD takes the mirror out. 0 turns it off
    /// (then a CVD is checked by its 512-byte header only).
    #[serde(default = "default_deep_check")]
    pub deep_check_secs: i64,
    /// At most this many mirrors get their whole-file check in one round (the ones waiting
    /// longest first), which bounds what one round downloads.
    #[serde(default = "default_deep_per_round")]
    pub deep_checks_per_round: usize,
    /// Freshness thresholds and hysteresis.
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Alerts.
    #[serde(default)]
    pub alerts: AlertConfig,
    /// Other monitors whose verdicts count towards a quorum.
    #[serde(default)]
    pub peers: Vec<String>,
    /// How many monitors (this one included) must judge a mirror not in service before the
    /// published verdict takes it out. 1 = this monitor alone decides.
    #[serde(default = "default_quorum")]
    pub quorum: usize,
    /// How many checks per mirror the status page shows.
    #[serde(default = "default_history")]
    pub history_len: usize,
    /// Days of per-mirror state history kept for the status page's chart (one row per mirror
    /// per `history_bucket_secs`, older rows pruned every round).
    #[serde(default = "default_history_days")]
    pub history_days: i64,
    /// Width of one history row in seconds: the worst state and the largest lag of the checks
    /// in it are kept (one hour by default: 672 rows per mirror over 28 days).
    #[serde(default = "default_history_bucket")]
    pub history_bucket_secs: i64,
    /// Timeouts and connection caps of the HTTP listener (the `[limits]` section, see
    /// `docs/deploy.md`).
    #[serde(default)]
    pub limits: vdb_service::Limits,
    /// The Ed25519 key that signs the verdict report (`GET /api/v1/verdicts/signed`), which
    /// directories configured with its public key (`monitor_keys`) trust. Made (`0600`) if
    /// missing. Default: `monitor.key` beside `database`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// PEM certificate chain: with `tls_key_file`, the listener serves HTTPS (reloaded when
    /// the files change or on SIGHUP).
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for `tls_cert_file`.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
}

/// Freshness thresholds (seconds) and hysteresis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// A mirror whose version was superseded this long ago is lagging (still handed out).
    #[serde(default = "default_lagging")]
    pub lagging_secs: i64,
    /// Superseded this long ago, or unreachable this long: old (the seed: a day).
    #[serde(default = "default_old")]
    pub old_secs: i64,
    /// Superseded this long ago: out of the directory (the seed: two days).
    #[serde(default = "default_out")]
    pub out_secs: i64,
    /// Unreachable this long: out.
    #[serde(default = "default_out")]
    pub unreachable_out_secs: i64,
    /// Good checks in a row before an old or out mirror is put back.
    #[serde(default = "default_recover")]
    pub recover_checks: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            lagging_secs: default_lagging(),
            old_secs: default_old(),
            out_secs: default_out(),
            unreachable_out_secs: default_out(),
            recover_checks: default_recover(),
        }
    }
}

/// Where alerts go and how often.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The team's webhook: every alert is POSTed there as JSON.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// E-mail over SMTP (to the team addresses and to each mirror's `admin_contact`).
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// While a mirror stays old or out, a reminder (one level higher) every this many seconds.
    #[serde(default = "default_repeat")]
    pub repeat_secs: i64,
    /// At most this many alerts per hour across all mirrors; the rest are recorded, not sent.
    #[serde(default = "default_rate")]
    pub max_per_hour: u32,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            smtp: None,
            repeat_secs: default_repeat(),
            max_per_hour: default_rate(),
        }
    }
}

/// The SMTP relay and the team's addresses (`to = [...]`, as in every role; the older `team` is
/// still read); each alert also goes to the mirror's `admin_contact`. See [`vdb_service::smtp::SmtpConfig`].
pub use vdb_service::smtp::SmtpConfig;

fn default_name() -> String {
    "monitor".into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8090))
}
fn default_database() -> PathBuf {
    PathBuf::from("monitor.sqlite")
}
fn default_interval() -> u64 {
    300
}
fn default_release_watch() -> u64 {
    1000
}
fn default_timeout() -> u64 {
    20
}
fn default_user_agent() -> String {
    format!(
        "ClamAV-MirrorCheck vdbnet-monitor/{}",
        env!("CARGO_PKG_VERSION")
    )
}
fn default_small_file() -> u64 {
    1 << 20
}
fn default_deep_check() -> i64 {
    6 * 3600
}
fn default_deep_per_round() -> usize {
    2
}
fn default_quorum() -> usize {
    1
}
fn default_history() -> usize {
    24
}
fn default_history_days() -> i64 {
    28
}
fn default_history_bucket() -> i64 {
    3600
}
fn default_lagging() -> i64 {
    3 * 3600
}
fn default_old() -> i64 {
    24 * 3600
}
fn default_out() -> i64 {
    48 * 3600
}
fn default_recover() -> u32 {
    3
}
fn default_repeat() -> i64 {
    24 * 3600
}
fn default_rate() -> u32 {
    30
}

impl Config {
    /// Reads and checks a TOML file; errors name the file and the field.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the monitor config {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("invalid monitor config {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("invalid monitor config {}", path.display()))?;
        Ok(config)
    }

    /// A minimal configuration (tests, `vdbd dev`): everything else default.
    pub fn new(network: &str, masters: Vec<String>, master_keys: Vec<PublicKey>) -> Self {
        toml::from_str::<Self>(&format!(
            "network = {network:?}\nmasters = []\nmaster_keys = []\nlisten = \"127.0.0.1:0\""
        ))
        .map(|c| Self {
            masters,
            master_keys,
            ..c
        })
        .expect("the minimal monitor config parses")
    }

    /// The verdict signing key's file (`key_file`, or `monitor.key` beside the database).
    pub fn key_path(&self) -> PathBuf {
        self.key_file.clone().unwrap_or_else(|| {
            self.database
                .parent()
                .unwrap_or(Path::new("."))
                .join("monitor.key")
        })
    }

    /// Checks values that TOML alone cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.limits.check()?;
        anyhow::ensure!(
            self.tls_cert_file.is_some() == self.tls_key_file.is_some(),
            "fields `tls_cert_file` and `tls_key_file`: set both (HTTPS) or neither"
        );
        anyhow::ensure!(
            !self.masters.is_empty(),
            "field `masters`: list at least one master base URL"
        );
        anyhow::ensure!(
            !self.master_keys.is_empty(),
            "field `master_keys`: list the network's master public keys"
        );
        let t = &self.thresholds;
        anyhow::ensure!(
            0 < t.lagging_secs && t.lagging_secs <= t.old_secs && t.old_secs <= t.out_secs,
            "fields `thresholds.*`: need 0 < lagging_secs <= old_secs <= out_secs"
        );
        anyhow::ensure!(
            t.old_secs <= t.unreachable_out_secs,
            "field `thresholds.unreachable_out_secs` must be at least old_secs"
        );
        anyhow::ensure!(
            self.quorum >= 1 && self.quorum <= self.peers.len() + 1,
            "field `quorum`: between 1 and the number of peers + 1"
        );
        anyhow::ensure!(
            self.deep_check_secs >= 0,
            "field `deep_check_secs` must be 0 (off) or more"
        );
        anyhow::ensure!(
            self.deep_checks_per_round >= 1,
            "field `deep_checks_per_round` must be at least 1"
        );
        anyhow::ensure!(
            self.release_watch_ms == 0 || (100..=3_600_000).contains(&self.release_watch_ms),
            "field `release_watch_ms` must be 0 (off) or between 100 and 3600000"
        );
        anyhow::ensure!(
            self.request_timeout_secs > 0,
            "field `request_timeout_secs` must be at least 1"
        );
        anyhow::ensure!(
            (1..=366).contains(&self.history_days),
            "field `history_days` must be between 1 and 366"
        );
        anyhow::ensure!(
            self.history_bucket_secs >= 1
                && self.history_days * 86400 / self.history_bucket_secs <= 100_000,
            "field `history_bucket_secs` must be at least 1 and keep history_days to at most \
             100000 rows per mirror (e.g. 3600 for an hour)"
        );
        anyhow::ensure!(
            self.alerts.repeat_secs > 0,
            "field `alerts.repeat_secs` must be at least 1"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(
            &p,
            "network = \"n\"\nmasters = [\"http://127.0.0.1:1\"]\nmaster_keys = [\"ed25519:d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a\"]\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.check_interval_secs, 300);
        assert_eq!(c.release_watch_ms, 1000);
        assert_eq!(c.thresholds.old_secs, 86400);
        assert_eq!(c.thresholds.out_secs, 172_800);
        assert_eq!(c.quorum, 1);
        std::fs::write(
            &p,
            "network = \"n\"\nmasters = []\nmaster_keys = []\nbogus = 1\n",
        )
        .unwrap();
        let e = format!("{:#}", Config::load(&p).unwrap_err());
        assert!(e.contains("bogus") && e.contains("m.toml"), "{e}");
    }

    #[test]
    fn example_loads_with_the_defaults_it_shows() {
        let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/monitor.example.toml"));
        let c = Config::load(p).unwrap();
        let d = Config::new("vdbnet", c.masters.clone(), c.master_keys.clone());
        assert_eq!(c.thresholds.lagging_secs, d.thresholds.lagging_secs);
        assert_eq!(c.thresholds.recover_checks, d.thresholds.recover_checks);
        assert_eq!(c.alerts.max_per_hour, d.alerts.max_per_hour);
        assert_eq!(c.small_file_max_bytes, d.small_file_max_bytes);
    }
}
