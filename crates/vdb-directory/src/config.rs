//! The directory's TOML configuration.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// How a client whose address maps to a region is answered for `database.<zone>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeoMode {
    /// A CNAME to `db.<region>.<zone>` plus that name's records (what the seed's network did).
    #[default]
    Cname,
    /// The region's A/AAAA records directly under `database.<zone>`.
    Direct,
}

/// One name server of the zone (an NS record, plus glue when the name is inside the zone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameServer {
    /// Its host name (absolute; the trailing dot is optional).
    pub name: String,
    /// Its addresses, published as glue when `name` is inside the zone.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// The directory's configuration (`vdbd directory --config directory.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The zone this directory is authoritative for (`clamav.example.net`).
    pub zone: String,
    /// UDP and TCP address of the DNS server (same port for both; port 0 picks one).
    #[serde(default = "default_dns_listen")]
    pub dns_listen: SocketAddr,
    /// Address of the HTTP server (redirector, `/api/v1/mirrors`, `/healthz`, `/metrics`).
    #[serde(default = "default_http_listen")]
    pub http_listen: SocketAddr,
    /// Base URLs of the masters, tried in order, for the registry (`GET /api/v1/mirrors`) and
    /// the signed manifest (every `rollout_poll_ms`).
    #[serde(default)]
    pub masters: Vec<String>,
    /// Base URLs of the monitors (`GET /api/v1/verdicts`). Empty: every registered mirror that
    /// is neither drained nor in maintenance counts as in service, and the TXT records follow
    /// only what the directory itself sees the mirrors serve (none without `masters`).
    #[serde(default)]
    pub monitors: Vec<String>,
    /// Where the last known registry and verdicts are kept, so that a directory restarted while
    /// the masters or monitors are unreachable still answers (fail-static across restarts).
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// How many monitors must judge a mirror in service (capped at the number of monitors).
    #[serde(default = "one")]
    pub monitor_quorum: usize,
    /// Seconds between two polls of the masters and monitors.
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
    /// Timeout of one poll request, in seconds.
    #[serde(default = "default_http_timeout")]
    pub http_timeout_secs: u64,
    /// Fail-static: when fewer mirrors than this are in service, the freshest others are
    /// handed out too (never drained ones or ones in a maintenance window).
    #[serde(default = "one")]
    pub min_in_service: usize,
    /// Most A (and most AAAA) records in one answer.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// TTL of the dynamic names (`database`, `db.<region>`, the TXT records), seconds.
    #[serde(default = "default_dynamic_ttl")]
    pub dynamic_ttl: u32,
    /// TTL of SOA and NS records, seconds.
    #[serde(default = "default_static_ttl")]
    pub static_ttl: u32,
    /// SOA refresh / retry / expire for secondaries, seconds.
    #[serde(default = "default_refresh")]
    pub soa_refresh: i32,
    /// SOA retry, seconds.
    #[serde(default = "default_retry")]
    pub soa_retry: i32,
    /// SOA expire, seconds.
    #[serde(default = "default_expire")]
    pub soa_expire: i32,
    /// The zone admin's mailbox as a DNS name (`hostmaster.<zone>` by default).
    #[serde(default)]
    pub hostmaster: Option<String>,
    /// The zone's name servers; default: one, `ns.<zone>`, without glue.
    #[serde(default)]
    pub nameservers: Vec<NameServer>,
    /// A MaxMind-format database (GeoIP2-Country schema or `{country_code}` schema). Missing
    /// or unreadable: the directory refuses to start.
    #[serde(default)]
    pub geoip_db: Option<PathBuf>,
    /// ISO country code → region name.
    #[serde(default)]
    pub country_regions: BTreeMap<String, String>,
    /// Region for countries missing from `country_regions` (none: such clients get the global set).
    #[serde(default)]
    pub default_region: Option<String>,
    /// Region names that always exist as `db.<region>.<zone>` (besides those of registered mirrors).
    #[serde(default)]
    pub regions: Vec<String>,
    /// How `database.<zone>` answers a client in a region.
    #[serde(default)]
    pub geo_mode: GeoMode,
    /// Deprecated and ignored: the version record's ClamAV version comes from the masters'
    /// signed manifest (`clamav_version` in the masters' config), so that the TXT record and
    /// every mirror's `dns.txt` are the same bytes. Still accepted, with a warning at start.
    #[serde(default, skip_serializing)]
    pub clamav_version: Option<String>,
    /// Deprecated and ignored (the masters' `flevel`); accepted with a warning.
    #[serde(default, skip_serializing)]
    pub clamav_flevel: Option<u32>,
    /// Deprecated and ignored (the masters' `version_warning`); accepted with a warning.
    #[serde(default, skip_serializing)]
    pub version_warning: Option<bool>,
    /// Only when the served serial's record is older than this (freshclam drops a record
    /// older than 12 h), or when no manifest with a version record is known, does the
    /// directory stamp the TXT records' time itself (renewed at least this often, seconds).
    /// Otherwise the time is the manifest's signing time, as in `dns.txt`.
    #[serde(default = "default_txt_refresh")]
    pub txt_refresh_secs: u64,
    /// A monitor's verdicts expire when its report has not moved on (a newer `generated_at`)
    /// for this long by the directory's clock (seconds; 6 h by default, at most 12 h): the
    /// monitor is down, unreachable or frozen. Its verdicts then count for nothing (the
    /// fail-static rule still hands mirrors out), and the TXT time the directory stamps itself
    /// is never later than its freshest input, so that freshclam's own rule (a record older
    /// than 12 h is not trusted) sends clients to HTTP instead of a frozen answer.
    #[serde(default = "default_verdict_max_age")]
    pub verdict_max_age_secs: u64,
    /// Milliseconds between two looks at the masters' manifest; while an in-service mirror
    /// does not serve the newest one, it is asked for its own manifest this often too (and
    /// the monitors' verdicts are read this often), so the TXT records move within this
    /// long of the last in-service mirror serving a release.
    #[serde(default = "default_rollout_poll")]
    pub rollout_poll_ms: u64,
    /// The network's master public keys (`ed25519:<hex>`): when set, manifests (the masters'
    /// and the mirrors') must be signed by one of them to count. Empty: manifests are read
    /// from the configured masters and from registered mirrors as they come.
    #[serde(default)]
    pub master_keys: Vec<vdb_proto::PublicKey>,
    /// The monitors' verdict signing keys (`ed25519:<hex>`, each monitor logs its own at
    /// start): when set, a monitor's report counts only if it comes signed by one of them
    /// (`GET /api/v1/verdicts/signed`); a forged or unsigned report changes nothing. Empty:
    /// the plain report is read (trusting the path to the monitor).
    #[serde(default)]
    pub monitor_keys: Vec<vdb_proto::PublicKey>,
    /// Extra trusted CA certificates (PEM bundle) for masters and monitors served over HTTPS
    /// with a private CA, besides the system's.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Secondaries (`ip:port`) sent a NOTIFY on every serial change.
    #[serde(default)]
    pub notify: Vec<SocketAddr>,
    /// Addresses allowed to transfer the zone (AXFR/IXFR over TCP).
    #[serde(default)]
    pub axfr_allow: Vec<IpAddr>,
    /// Reverse proxies in front of the redirector: for requests from these addresses the
    /// client is the last address of `X-Forwarded-For`.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    /// Most alternative mirrors listed in a redirect's `Link: rel=duplicate` headers.
    #[serde(default = "default_alternatives")]
    pub redirect_alternatives: usize,
    /// Timeouts and connection caps of the HTTP listener (the `[limits]` section, see
    /// `docs/deploy.md`).
    #[serde(default)]
    pub limits: vdb_service::Limits,
}

fn default_dns_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5353))
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8053))
}
fn one() -> usize {
    1
}
fn default_poll() -> u64 {
    10
}
fn default_http_timeout() -> u64 {
    5
}
fn default_max_records() -> usize {
    8
}
fn default_dynamic_ttl() -> u32 {
    30
}
fn default_static_ttl() -> u32 {
    3600
}
fn default_refresh() -> i32 {
    3600
}
fn default_retry() -> i32 {
    600
}
fn default_expire() -> i32 {
    7 * 86400
}
fn default_txt_refresh() -> u64 {
    3600
}
fn default_verdict_max_age() -> u64 {
    6 * 3600
}
fn default_rollout_poll() -> u64 {
    250
}
fn default_alternatives() -> usize {
    4
}

impl Config {
    /// A configuration for `zone` with every other field at its default.
    pub fn new(zone: impl Into<String>) -> Self {
        Self {
            zone: zone.into(),
            dns_listen: default_dns_listen(),
            http_listen: default_http_listen(),
            masters: Vec::new(),
            monitors: Vec::new(),
            state_file: None,
            monitor_quorum: 1,
            poll_secs: default_poll(),
            http_timeout_secs: default_http_timeout(),
            min_in_service: 1,
            max_records: default_max_records(),
            dynamic_ttl: default_dynamic_ttl(),
            static_ttl: default_static_ttl(),
            soa_refresh: default_refresh(),
            soa_retry: default_retry(),
            soa_expire: default_expire(),
            hostmaster: None,
            nameservers: Vec::new(),
            geoip_db: None,
            country_regions: BTreeMap::new(),
            default_region: None,
            regions: Vec::new(),
            geo_mode: GeoMode::default(),
            clamav_version: None,
            clamav_flevel: None,
            version_warning: None,
            txt_refresh_secs: default_txt_refresh(),
            verdict_max_age_secs: default_verdict_max_age(),
            rollout_poll_ms: default_rollout_poll(),
            master_keys: Vec::new(),
            notify: Vec::new(),
            axfr_allow: Vec::new(),
            trusted_proxies: Vec::new(),
            redirect_alternatives: default_alternatives(),
            limits: vdb_service::Limits::default(),
            monitor_keys: Vec::new(),
            tls_ca_file: None,
        }
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the directory config {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("in the directory config {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("in the directory config {}", path.display()))?;
        Ok(config)
    }

    /// The deprecated keys this configuration sets (ignored; see [`Config::clamav_version`]).
    pub fn deprecated_keys(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.clamav_version.is_some() {
            v.push("clamav_version");
        }
        if self.clamav_flevel.is_some() {
            v.push("clamav_flevel");
        }
        if self.version_warning.is_some() {
            v.push("version_warning");
        }
        v
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            hickory_proto::rr::Name::from_ascii(&self.zone).is_ok() && !self.zone.is_empty(),
            "field `zone` must be a DNS name, got {:?}",
            self.zone
        );
        anyhow::ensure!(self.poll_secs >= 1, "field `poll_secs` must be >= 1");
        self.limits.check()?;
        anyhow::ensure!(
            self.http_timeout_secs >= 1,
            "field `http_timeout_secs` must be >= 1"
        );
        anyhow::ensure!(self.max_records >= 1, "field `max_records` must be >= 1");
        anyhow::ensure!(
            self.monitor_quorum >= 1,
            "field `monitor_quorum` must be >= 1"
        );
        anyhow::ensure!(
            (60..=12 * 3600).contains(&self.verdict_max_age_secs),
            "field `verdict_max_age_secs` must be between 60 and 43200 (freshclam distrusts a TXT record older than 12 h)"
        );
        anyhow::ensure!(
            self.txt_refresh_secs >= 1 && self.txt_refresh_secs <= 6 * 3600,
            "field `txt_refresh_secs` must be between 1 and 21600 (freshclam drops TXT records older than 12 h)"
        );
        anyhow::ensure!(
            (50..=60_000).contains(&self.rollout_poll_ms),
            "field `rollout_poll_ms` must be between 50 and 60000"
        );
        for region in self
            .regions
            .iter()
            .chain(self.country_regions.values())
            .chain(self.default_region.iter())
        {
            anyhow::ensure!(
                is_label(region),
                "region {region:?} must be one DNS label of [a-z0-9-] (fields `regions`, `country_regions`, `default_region`)"
            );
        }
        for ns in &self.nameservers {
            anyhow::ensure!(
                hickory_proto::rr::Name::from_ascii(&ns.name).is_ok(),
                "field `nameservers`: {:?} is not a DNS name",
                ns.name
            );
        }
        for url in self.masters.iter().chain(&self.monitors) {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "fields `masters`/`monitors`: {url:?} must be an http(s) base URL"
            );
        }
        Ok(())
    }
}

/// Whether `s` is a lower-case DNS label usable as a region name.
pub(crate) fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_minimal_and_rejects_unknown() {
        let c: Config = toml::from_str("zone = \"vdb.test\"").unwrap();
        c.validate().unwrap();
        assert_eq!(c.max_records, 8);
        assert_eq!(c.geo_mode, GeoMode::Cname);
        assert!(toml::from_str::<Config>("zone = \"a\"\nbogus = 1").is_err());
        let mut c = Config::new("vdb.test");
        c.regions = vec!["Europe".into()];
        assert!(c.validate().is_err());
        let mut c = Config::new("vdb.test");
        c.poll_secs = 0;
        assert!(c.validate().is_err());
        let mut c = Config::new("vdb.test");
        c.rollout_poll_ms = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn old_version_record_keys_are_accepted_and_reported() {
        let c: Config = toml::from_str(
            "zone = \"vdb.test\"\nclamav_version = \"1.4.6\"\nclamav_flevel = 216\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.deprecated_keys(), ["clamav_version", "clamav_flevel"]);
        assert!(Config::new("vdb.test").deprecated_keys().is_empty());
    }

    #[test]
    fn example_file_loads_and_errors_name_the_file() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/directory.example.toml");
        let c = Config::load(Path::new(example)).unwrap();
        assert_eq!(c.country_regions["JP"], "asia");
        assert_eq!(c.nameservers.len(), 2);
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "zone = \"x.test\"\nmax_records = \"many\"\n").unwrap();
        let err = format!("{:#}", Config::load(&bad).unwrap_err());
        assert!(
            err.contains("bad.toml") && err.contains("max_records"),
            "{err}"
        );
    }
}
