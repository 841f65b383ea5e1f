//! The mirror's TOML configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use vdb_proto::PublicKey;

/// What a mirror does with a request whose `Host` is not one of its configured names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnknownHost {
    /// Serve it anyway, as the default virtual host.
    #[default]
    Serve,
    /// Answer `421 Misdirected Request`.
    Reject,
}

/// A mirror's configuration (`vdbd mirror --config mirror.toml`).
///
/// ```toml
/// name = "mirror-eu-1"
/// network = "vdbnet"
/// masters = ["https://master-a.example.net", "https://master-b.example.net"]
/// # hubs = ["http://hub-eu-1.example.net"]   # a leaf: hub mirrors tried before the masters
/// master_keys = ["ed25519:<64 hex digits>", "ed25519:<64 hex digits>"]
/// pull_token = "…"                      # if the masters require one (not after `vdbd mirror join`)
/// # identity_key_file = "/var/lib/vdb-mirror/identity.key"   # the default: <data_dir>/identity.key
/// data_dir = "/var/lib/vdb-mirror"
/// listen = "0.0.0.0:80"
/// hosts = ["database.example.net", "db.eu.example.net", "mirror-eu-1.example.net"]
/// unknown_host = "reject"                # 421 for other Host headers (default: serve)
/// poll_secs = 300
/// # delta_transfer = false               # download new files whole (default: rebuild them)
/// stats_user = "admin"
/// stats_password = "…"
/// # serve_threads = 4                    # default: one per CPU
/// # tls_listen = "0.0.0.0:443"
/// # tls_cert_file = "/etc/vdb-mirror/cert.pem"
/// # tls_key_file = "/etc/vdb-mirror/key.pem"
///
/// [limits]                               # see docs/deploy.md; these are the defaults
/// header_read_timeout_secs = 10
/// send_timeout_secs = 60
/// min_rate_bytes_per_sec = 1024
/// max_connections_per_ip = 128
///
/// [registration]                         # what `vdbd mirror join` sends; see Registration
/// base_urls = ["https://mirror-eu-1.example.net"]
/// country = "DE"
/// admin_contact = "mirror-admin@example.net"
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This mirror's name (as registered with the masters).
    pub name: String,
    /// The network's name; manifests and pushes for another network are refused.
    pub network: String,
    /// The masters' base URLs (`http://master-a:8080`), tried in this order.
    pub masters: Vec<String>,
    /// The network's master public keys (`ed25519:<hex>`): manifests and pushes must be signed by
    /// one of them.
    pub master_keys: Vec<PublicKey>,
    /// A leaf's hub mirrors (their base URLs: `http://hub-eu-1:80`), tried in this order
    /// before the masters for the manifest and every object (issue 18). A hub's manifest is
    /// the masters' signed one and passes the same checks; an object whose size or hash does
    /// not match is refused and fetched from the next source. No credential is sent to a hub.
    /// Register the leaf with the same hub names (`vdb mirror update NAME --hub HUB`) so that
    /// the hub relays the masters' pushes to it.
    #[serde(default)]
    pub hubs: Vec<String>,
    /// Report every sync to the masters (`POST /api/v1/syncs`: serial, bytes pulled and from
    /// where), for the release timeline. Default true.
    #[serde(default = "default_true")]
    pub report_syncs: bool,
    /// Rebuild large containers from the held release and the cdiffs, fetching only what
    /// cannot be re-created (delta transfer). Default true; false downloads every new file
    /// whole, which costs bytes instead of CPU (a mirror with a fast link and a slow CPU).
    #[serde(default = "default_true")]
    pub delta_transfer: bool,
    /// Bearer token sent to the masters when pulling (if the masters require one).
    #[serde(default)]
    pub pull_token: Option<String>,
    /// Where objects, snapshots, the sync lock and the statistics live.
    pub data_dir: PathBuf,
    /// The operator's `local_*` files (default `<data_dir>/local`); sync never touches it.
    #[serde(default)]
    pub local_dir: Option<PathBuf>,
    /// How often `local_dir` is rescanned (changes show within this time).
    #[serde(default = "default_local_scan")]
    pub local_scan_secs: u64,
    /// Plain HTTP listen address (port 0 picks a free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Host names and aliases this mirror answers for (`database.example.net`,
    /// `db.eu.example.net`). Empty: any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// What to do with an unknown `Host` when `hosts` is not empty.
    #[serde(default)]
    pub unknown_host: UnknownHost,
    /// Self-poll interval: a sync runs at least this often even if no push arrives.
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
    /// Pushes issued further than this from now are refused (and replays within it).
    #[serde(default = "default_push_window")]
    pub push_window_secs: i64,
    /// Timeout for connecting to and reading from a master.
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_secs: u64,
    /// `Cache-Control: max-age` for mutable names (`*.cvd`, `timestamp`, `dns.txt`, manifest).
    #[serde(default = "default_max_age")]
    pub mutable_max_age_secs: u64,
    /// User agent (substring) of the network's monitor: not counted in the statistics.
    /// `ClamAV-MirrorCheck` is never counted either.
    #[serde(default = "default_monitor_agent")]
    pub monitor_user_agent: String,
    /// HTTP Basic user for `/local_stats/` (stats are not served without user and password).
    #[serde(default)]
    pub stats_user: Option<String>,
    /// HTTP Basic password for `/local_stats/`.
    #[serde(default)]
    pub stats_password: Option<String>,
    /// How often counted statistics are written to SQLite.
    #[serde(default = "default_stats_flush")]
    pub stats_flush_secs: u64,
    /// Threads serving connections, each with its own single-threaded event loop (as nginx's
    /// worker processes). Default: one per CPU (`available_parallelism`).
    #[serde(default)]
    pub serve_threads: Option<usize>,
    /// Optional HTTPS listen address (needs `tls_cert_file` and `tls_key_file`).
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// PEM certificate chain (`tls_cert_file`, as in every role; the older `tls_cert` is still
    /// read); reloaded when the file changes or on SIGHUP.
    #[serde(default, rename = "tls_cert_file", alias = "tls_cert")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (`tls_key_file`; the older `tls_key` is still read).
    #[serde(default, rename = "tls_key_file", alias = "tls_key")]
    pub tls_key: Option<PathBuf>,
    /// Timeouts and connection caps of the HTTP and HTTPS listeners (the `[limits]` section,
    /// see `docs/deploy.md`).
    #[serde(default)]
    pub limits: vdb_service::Limits,
    /// The mirror's Ed25519 identity key (made `0600` by `vdbd mirror join`; default
    /// `<data_dir>/identity.key`). Once the network's admin approved the join, the mirror signs
    /// its pulls with it (unless `pull_token` is set) and its own registry changes.
    #[serde(default)]
    pub identity_key_file: Option<PathBuf>,
    /// What `vdbd mirror join` asks the masters to register (the `[registration]` section;
    /// `vdbd mirror join` flags override it). The name and `hosts` come from above.
    #[serde(default)]
    pub registration: Registration,
}

/// The public details of a mirror that `vdbd mirror join` (and `vdbd mirror update`) send.
///
/// ```toml
/// [registration]
/// base_urls = ["https://mirror-eu-1.example.net"]
/// # push_url = "https://mirror-eu-1.example.net/.well-known/vdbnet/push"  # default: from base_urls
/// addresses = ["192.0.2.10", "2001:db8::10"]
/// country = "DE"
/// region = "europe"
/// bandwidth_mbps = 1000
/// admin_contact = "mirror-admin@example.net"
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Public base URLs clients download from.
    #[serde(default)]
    pub base_urls: Vec<String>,
    /// Where masters push notices (default: the first base URL and the push path).
    #[serde(default)]
    pub push_url: Option<String>,
    /// Addresses the directory hands out (A and AAAA).
    #[serde(default)]
    pub addresses: Vec<std::net::IpAddr>,
    /// ISO 3166 country code (`DE`).
    #[serde(default)]
    pub country: Option<String>,
    /// Region (`europe`, `america`, `asia`, `other`, or the network's own).
    #[serde(default)]
    pub region: Option<String>,
    /// Bandwidth in Mbit/s (the weight in DNS and redirects; default 100).
    #[serde(default)]
    pub bandwidth_mbps: Option<u32>,
    /// The mirror admin's e-mail address (for the network's alerts; never public).
    #[serde(default)]
    pub admin_contact: Option<String>,
}

fn default_true() -> bool {
    true
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_local_scan() -> u64 {
    2
}
fn default_poll() -> u64 {
    300
}
fn default_push_window() -> i64 {
    300
}
fn default_fetch_timeout() -> u64 {
    60
}
fn default_max_age() -> u64 {
    60
}
fn default_monitor_agent() -> String {
    "vdbnet-monitor".to_owned()
}
fn default_stats_flush() -> u64 {
    5
}

impl Config {
    /// A configuration with every optional field at its default (listening on a free port of
    /// 127.0.0.1).
    pub fn new(
        name: &str,
        network: &str,
        masters: Vec<String>,
        master_keys: Vec<PublicKey>,
        data_dir: PathBuf,
    ) -> Self {
        Self {
            name: name.to_owned(),
            network: network.to_owned(),
            masters,
            master_keys,
            hubs: Vec::new(),
            report_syncs: true,
            delta_transfer: true,
            pull_token: None,
            data_dir,
            local_dir: None,
            local_scan_secs: default_local_scan(),
            listen: default_listen(),
            hosts: Vec::new(),
            unknown_host: UnknownHost::default(),
            poll_secs: default_poll(),
            push_window_secs: default_push_window(),
            fetch_timeout_secs: default_fetch_timeout(),
            mutable_max_age_secs: default_max_age(),
            monitor_user_agent: default_monitor_agent(),
            stats_user: None,
            stats_password: None,
            stats_flush_secs: default_stats_flush(),
            serve_threads: None,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            limits: vdb_service::Limits::default(),
            identity_key_file: None,
            registration: Registration::default(),
        }
    }

    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the mirror config {}", path.display()))?;
        let config: Self = toml::from_str(&text)
            .with_context(|| format!("invalid mirror config {}", path.display()))?;
        config
            .check()
            .with_context(|| format!("invalid mirror config {}", path.display()))?;
        Ok(config)
    }

    /// Checks values that the TOML types cannot express.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.masters.is_empty(),
            "field `masters`: list at least one master base URL"
        );
        for m in &self.masters {
            anyhow::ensure!(
                m.starts_with("http://") || m.starts_with("https://"),
                "field `masters`: {m:?} must start with http:// or https://"
            );
        }
        for h in &self.hubs {
            anyhow::ensure!(
                h.starts_with("http://") || h.starts_with("https://"),
                "field `hubs`: {h:?} must start with http:// or https://"
            );
        }
        anyhow::ensure!(
            !self.master_keys.is_empty(),
            "field `master_keys`: list the network's master public keys"
        );
        anyhow::ensure!(self.poll_secs >= 1, "field `poll_secs`: at least 1");
        anyhow::ensure!(
            self.serve_threads.is_none_or(|n| (1..=1024).contains(&n)),
            "field `serve_threads`: 1 to 1024 (or leave it out: one per CPU)"
        );
        anyhow::ensure!(
            self.tls_listen.is_none() || (self.tls_cert.is_some() && self.tls_key.is_some()),
            "field `tls_listen` needs `tls_cert_file` and `tls_key_file`"
        );
        self.limits.check()?;
        anyhow::ensure!(
            self.stats_user.is_some() == self.stats_password.is_some(),
            "fields `stats_user` and `stats_password` go together"
        );
        Ok(())
    }

    /// The number of serve threads: `serve_threads`, or one per CPU.
    pub fn serve_threads(&self) -> usize {
        self.serve_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// The identity key's file: `identity_key_file`, or `<data_dir>/identity.key`.
    pub fn identity_key_file(&self) -> PathBuf {
        self.identity_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("identity.key"))
    }

    /// The directory of `local_*` files.
    pub fn local_dir(&self) -> PathBuf {
        self.local_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("local"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> anyhow::Result<Config> {
        let text = format!(
            "name = \"m\"\nnetwork = \"n\"\nmasters = [\"http://127.0.0.1:1\"]\n\
             master_keys = [\"ed25519:01{}\"]\ndata_dir = \"/tmp/x\"\n{extra}",
            "00".repeat(31)
        );
        let c: Config = toml::from_str(&text)?;
        c.check()?;
        Ok(c)
    }

    #[test]
    fn serve_threads_default_to_the_cpus_and_are_bounded() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let c = parse("").unwrap();
        assert_eq!(c.serve_threads, None);
        assert_eq!(c.serve_threads(), cpus);
        assert_eq!(parse("serve_threads = 3").unwrap().serve_threads(), 3);
        for bad in ["serve_threads = 0", "serve_threads = 5000"] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(e.contains("serve_threads"), "{e}");
        }
        assert!(parse("serve_threads = -1").is_err());
    }
}
