//! The updater's settings, from `freshclam.conf` or from vdb-update's own TOML file.
//!
//! Both sources become one [`Settings`] value: what the update engine reads. The TOML schema is
//! [`TomlConfig`]; `freshclam.conf` is read by [`FreshclamConf`] and translated by
//! [`Settings::from_freshclam`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vdb_format::KeySet;
use vdb_proto::PublicKey;

use crate::freshclam_conf::{DEFAULT_DNS_DATABASE_INFO, FreshclamConf, Warning};

/// The ClamAV release this updater presents itself as (User-Agent, OUTDATED check).
pub const ENGINE_VERSION: &str = "1.4.6";

/// Where freshclam puts the hard-coded per-database TXT records (`<db>.cvd.clamav.net`).
pub const DEFAULT_DB_TXT_ZONE: &str = "clamav.net";

/// freshclam's pause between attempts on one server (seconds).
pub const DEFAULT_RETRY_DELAY_SECS: u64 = 5;

/// Proxy settings (always tunnelled, like freshclam).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySettings {
    /// `host[:port]` or a URL.
    pub server: String,
    /// Port, if not in `server`.
    pub port: Option<u16>,
    /// User name and password.
    pub credentials: Option<(String, String)>,
}

impl ProxySettings {
    /// The proxy URL (`http://host:port`), without credentials.
    pub fn url(&self) -> String {
        let base = if self.server.contains("://") {
            self.server.clone()
        } else {
            format!("http://{}", self.server)
        };
        let has_port = base
            .rsplit_once(':')
            .is_some_and(|(_, t)| t.parse::<u16>().is_ok());
        match self.port {
            // Only add the port when the server text has none.
            Some(p) if !has_port => format!("{base}:{p}"),
            _ => base,
        }
    }
}

/// vdbnet extras: signed manifests checked on mirrors that serve them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdbnetSettings {
    /// The network's name (the manifest's `network` field must match).
    pub network: String,
    /// Master public keys the manifest must be signed with.
    pub master_keys: Vec<PublicKey>,
}

/// Everything the update engine needs, whatever the configuration source.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The database directory.
    pub database_directory: PathBuf,
    /// Server base URLs, in configuration order.
    pub mirrors: Vec<String>,
    /// PrivateMirror mode: no DNS, no cdiffs, `.cld` probed first.
    pub private_mirror: bool,
    /// The `current.cvd` TXT domain, when DNS is used.
    pub dns_domain: Option<String>,
    /// A DNS server to ask instead of the system resolver (`127.0.0.1:5353`): the TXT records
    /// and the mirrors' addresses.
    pub dns_server: Option<SocketAddr>,
    /// Zone of the per-database records (`<db>.cvd.<zone>`).
    pub db_txt_zone: String,
    /// cdiff updates allowed.
    pub scripted_updates: bool,
    /// Databases to update, in order.
    pub databases: Vec<String>,
    /// `DatabaseCustomURL` values.
    pub custom_urls: Vec<String>,
    /// Attempts per server.
    pub max_attempts: u32,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Abort a transfer that receives nothing for this long (None = never).
    pub receive_timeout: Option<Duration>,
    /// Pause between two attempts on the same server.
    pub retry_delay: Duration,
    /// Checks per day in daemon mode.
    pub checks: u32,
    /// Build compressed CLDs.
    pub compress_local_database: bool,
    /// Command that must load a new database before it is installed; `{}` is replaced by the
    /// staged file's path (an argument vector, no shell).
    pub test_command: Option<Vec<String>>,
    /// clamd.conf of the clamd to tell `RELOAD`.
    pub notify_clamd: Option<PathBuf>,
    /// Shell command run after at least one database changed.
    pub on_update_execute: Option<String>,
    /// Shell command run when an update failed.
    pub on_error_execute: Option<String>,
    /// Shell command run when the TXT record says ClamAV is outdated (`%v` = new version).
    pub on_outdated_execute: Option<String>,
    /// HTTP proxy.
    pub proxy: Option<ProxySettings>,
    /// User-Agent override.
    pub user_agent: Option<String>,
    /// Keys that CVDs, CLDs and cdiffs must be signed with.
    pub key_set: KeySet,
    /// vdbnet manifest checks.
    pub vdbnet: Option<VdbnetSettings>,
    /// Remember mirror health across runs and try healthy mirrors first.
    pub health_memory: bool,
    /// Append log lines to this file.
    pub update_log_file: Option<PathBuf>,
    /// The ClamAV version compared with the TXT record's.
    pub engine_version: String,
    /// PEM file of the only CAs trusted for HTTPS mirrors (default: the platform's roots;
    /// freshclam's `CURL_CA_BUNDLE` environment variable sets it too).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mirrors that require them (freshclam's
    /// `FRESHCLAM_CLIENT_CERT` / `FRESHCLAM_CLIENT_KEY` environment variables set them too).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The certificate directory of ClamAV 1.5 `.sign` files, as configured
    /// (`CVDCertsDirectory`, else the `CVD_CERTS_DIR` environment variable): it must load. None:
    /// ClamAV's [`DEFAULT_CVD_CERTS_DIR`] if it exists, else `.sign` files are not fetched.
    pub cvd_certs_dir: Option<PathBuf>,
    /// `FIPSCryptoHashLimits`: a CVD is accepted only with a `.sign` file that verifies (its
    /// legacy signature is MD5-based); cdiffs keep their SHA-256 signature (spec §3.4).
    pub fips_limits: bool,
}

/// ClamAV's certificate directory on Linux (its `CERTSDIR`, where it installs the official root
/// `clamav.crt`): where `.sign` trust anchors are looked for when none is configured.
pub const DEFAULT_CVD_CERTS_DIR: &str = "/etc/clamav/certs";

/// `CVD_CERTS_DIR`: freshclam's environment variable for the certificate directory.
pub const CVD_CERTS_DIR_ENV: &str = "CVD_CERTS_DIR";

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn env_client_cert() -> Option<(PathBuf, PathBuf)> {
    Some((
        env_path("FRESHCLAM_CLIENT_CERT")?,
        env_path("FRESHCLAM_CLIENT_KEY")?,
    ))
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_directory: PathBuf::from(crate::DEFAULT_DATABASE_DIRECTORY),
            mirrors: Vec::new(),
            private_mirror: false,
            dns_domain: Some(DEFAULT_DNS_DATABASE_INFO.into()),
            dns_server: None,
            db_txt_zone: DEFAULT_DB_TXT_ZONE.into(),
            scripted_updates: true,
            databases: vec!["daily".into(), "main".into(), "bytecode".into()],
            custom_urls: Vec::new(),
            max_attempts: 3,
            connect_timeout: Duration::from_secs(30),
            receive_timeout: Some(Duration::from_secs(60)),
            retry_delay: Duration::from_secs(DEFAULT_RETRY_DELAY_SECS),
            checks: 12,
            compress_local_database: false,
            test_command: None,
            notify_clamd: None,
            on_update_execute: None,
            on_error_execute: None,
            on_outdated_execute: None,
            proxy: None,
            user_agent: None,
            key_set: KeySet::official(),
            vdbnet: None,
            health_memory: true,
            update_log_file: None,
            engine_version: ENGINE_VERSION.into(),
            ca_file: None,
            client_cert: None,
            cvd_certs_dir: None,
            fips_limits: false,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `freshclam.conf` was refused.
    #[error("{path}: {source}")]
    Freshclam {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: crate::ConfError,
    },
    /// The TOML file was refused.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// Parser message (names the field).
        message: String,
    },
    /// A field has a value that cannot work.
    #[error("{path}: field `{field}`: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
}

/// vdb-update's own configuration file (TOML). Every field is optional.
///
/// ```toml
/// database_directory = "/var/lib/clamav"
/// mirrors = ["https://mirror.example.net"]      # DatabaseMirror semantics
/// dns_txt = "current.cvd.example.net"          # "no" = header probes only
/// network = "example"                          # vdbnet manifest checks, with:
/// master_keys = ["ed25519:…"]
/// key_set = "/etc/vdb-update/keys.txt"         # a network's own ClamAV key set
/// cvd_certs_dir = "/etc/clamav/certs"          # trust anchors of ClamAV 1.5 .sign files
/// fips_limits = false                          # true: CVDs only with a verified .sign
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomlConfig {
    /// Database directory (default `/var/lib/clamav`).
    pub database_directory: Option<PathBuf>,
    /// Mirrors as in `DatabaseMirror` (no scheme = `https://`), tried in order.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Mirrors as in `PrivateMirror` (no scheme = `http://`): no DNS, no cdiffs.
    #[serde(default)]
    pub private_mirrors: Vec<String>,
    /// The `current.cvd` TXT domain, or `"no"` (default `current.cvd.clamav.net`).
    pub dns_txt: Option<String>,
    /// `false` turns DNS off (versions from header probes only), like `dns_txt = "no"`.
    pub dns: Option<bool>,
    /// DNS server for every lookup, `ip:port`: the TXT records and the mirrors' host names
    /// (default: the system resolver).
    pub dns_server: Option<SocketAddr>,
    /// Zone of the `<db>.cvd.<zone>` records for databases not in `current.cvd`.
    pub db_txt_zone: Option<String>,
    /// cdiff updates (default true).
    pub scripted_updates: Option<bool>,
    /// Databases to update (default daily, main, bytecode).
    pub databases: Option<Vec<String>>,
    /// Extra files to keep current (`DatabaseCustomURL`).
    #[serde(default)]
    pub custom_urls: Vec<String>,
    /// Attempts per mirror (default 3).
    pub max_attempts: Option<u32>,
    /// Connect timeout in seconds (default 30).
    pub connect_timeout_secs: Option<u64>,
    /// Receive timeout in seconds, 0 = none (default 60).
    pub receive_timeout_secs: Option<u64>,
    /// Pause between attempts on one mirror in seconds (default 5).
    pub retry_delay_secs: Option<u64>,
    /// Checks per day in daemon mode (default 12).
    pub checks: Option<u32>,
    /// Compressed CLDs (default false).
    pub compress_local_database: Option<bool>,
    /// Test-load command, `{}` = staged database file (e.g. `["clamscan", "--quiet", "-d",
    /// "{}", "/dev/null"]`). Default: none.
    pub test_command: Option<Vec<String>>,
    /// clamd.conf of a clamd to tell `RELOAD`.
    pub notify_clamd: Option<PathBuf>,
    /// Shell command after an update.
    pub on_update_execute: Option<String>,
    /// Shell command after a failure.
    pub on_error_execute: Option<String>,
    /// Shell command when ClamAV is outdated (`%v`).
    pub on_outdated_execute: Option<String>,
    /// Proxy URL or host (tunnelled with CONNECT).
    pub proxy: Option<String>,
    /// Proxy user name (needs `proxy_password`).
    pub proxy_username: Option<String>,
    /// Proxy password.
    pub proxy_password: Option<String>,
    /// User-Agent override.
    pub user_agent: Option<String>,
    /// File with the network's ClamAV key set (`vdb db keygen` public output). Default: the
    /// official ClamAV keys.
    pub key_set: Option<PathBuf>,
    /// vdbnet network name; with `master_keys`, manifests are checked.
    pub network: Option<String>,
    /// Master public keys (`ed25519:<hex>`).
    #[serde(default)]
    pub master_keys: Vec<String>,
    /// Health memory across runs (default true).
    pub health_memory: Option<bool>,
    /// Log file (appended).
    pub update_log_file: Option<PathBuf>,
    /// ClamAV version for the OUTDATED check and the User-Agent.
    pub engine_version: Option<String>,
    /// PEM file of the CAs trusted for HTTPS mirrors (only these).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mirrors that require one (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM).
    pub client_key: Option<PathBuf>,
    /// Certificate directory of ClamAV 1.5 `.sign` files (`CVDCertsDirectory`; default: the
    /// `CVD_CERTS_DIR` environment variable, else `/etc/clamav/certs` if it exists).
    pub cvd_certs_dir: Option<PathBuf>,
    /// `FIPSCryptoHashLimits`: CVDs only with a `.sign` file that verifies (default false).
    pub fips_limits: Option<bool>,
}

impl Settings {
    /// Translates a parsed `freshclam.conf` (spec §4.1).
    pub fn from_freshclam(conf: &FreshclamConf, path: &Path) -> Result<Self, ConfigError> {
        let ferr = |source| ConfigError::Freshclam {
            path: path.to_owned(),
            source,
        };
        let proxy = conf.proxy().map_err(ferr)?.map(|p| ProxySettings {
            server: p.server,
            port: p.port,
            credentials: p.credentials,
        });
        Ok(Self {
            database_directory: conf.database_directory.clone(),
            mirrors: conf.mirrors().map_err(ferr)?,
            private_mirror: conf.private_mirror(),
            dns_domain: conf.dns_domain().map(str::to_owned),
            scripted_updates: conf.scripted_updates(),
            databases: conf.databases(),
            custom_urls: conf.database_custom_url.clone(),
            max_attempts: conf.max_attempts.max(1),
            connect_timeout: Duration::from_secs(conf.connect_timeout.into()),
            receive_timeout: (conf.receive_timeout > 0)
                .then(|| Duration::from_secs(conf.receive_timeout.into())),
            checks: conf.checks,
            compress_local_database: conf.compress_local_database,
            notify_clamd: conf.notify_clamd.clone(),
            on_update_execute: conf.on_update_execute.clone(),
            on_error_execute: conf.on_error_execute.clone(),
            on_outdated_execute: conf.on_outdated_execute.clone(),
            proxy,
            user_agent: conf.http_user_agent.clone(),
            update_log_file: conf.update_log_file.clone(),
            ca_file: env_path("CURL_CA_BUNDLE"),
            client_cert: env_client_cert(),
            cvd_certs_dir: conf
                .cvd_certs_directory
                .clone()
                .or_else(|| env_path(CVD_CERTS_DIR_ENV)),
            fips_limits: conf.fips_crypto_hash_limits,
            ..Self::default()
        })
    }

    /// Reads `freshclam.conf`; returns the settings and the warnings to print.
    pub fn load_freshclam(path: &Path) -> Result<(Self, Vec<Warning>), ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (conf, warnings) =
            FreshclamConf::parse_bytes(&bytes).map_err(|source| ConfigError::Freshclam {
                path: path.to_owned(),
                source,
            })?;
        if conf.http_proxy_password.is_some() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                return Err(ConfigError::Field {
                    path: path.to_owned(),
                    field: "HTTPProxyPassword",
                    message: format!(
                        "the file holds a password but is readable by others (mode {:o}); \
                         run chmod 600 on it",
                        mode & 0o777
                    ),
                });
            }
        }
        Ok((Self::from_freshclam(&conf, path)?, warnings))
    }

    /// Reads vdb-update's TOML configuration.
    pub fn load_toml(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let toml: TomlConfig = toml::from_str(&text).map_err(|e| ConfigError::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Self::from_toml(toml, path)
    }

    /// Translates a parsed TOML configuration; `path` is used in error messages and to
    /// resolve a relative `key_set`.
    pub fn from_toml(t: TomlConfig, path: &Path) -> Result<Self, ConfigError> {
        let field = |field, message: String| ConfigError::Field {
            path: path.to_owned(),
            field,
            message,
        };
        let mut fc = FreshclamConf {
            database_mirror: t.mirrors.clone(),
            private_mirror: t.private_mirrors.clone(),
            ..FreshclamConf::default()
        };
        if let Some(d) = &t.dns_txt {
            fc.dns_database_info = d.clone();
        }
        if t.dns == Some(false) {
            fc.dns_database_info = "no".into();
        }
        if let Some(s) = t.scripted_updates {
            fc.scripted_updates = s;
        }
        let mirrors = fc
            .mirrors()
            .map_err(|e| field("mirrors", format!("{e}; list at least one mirror URL")))?;
        let key_set = match &t.key_set {
            None => KeySet::official(),
            Some(p) => {
                let p = path.parent().unwrap_or(Path::new(".")).join(p);
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| field("key_set", format!("cannot read {}: {e}", p.display())))?;
                KeySet::from_text(&text)
                    .map_err(|e| field("key_set", format!("{}: {e}", p.display())))?
            }
        };
        let mut master_keys = Vec::new();
        for k in &t.master_keys {
            master_keys.push(k.parse::<PublicKey>().map_err(|e| {
                field(
                    "master_keys",
                    format!("{k:?}: {e}; expected ed25519:<64 hex digits>"),
                )
            })?);
        }
        let vdbnet = match (t.network.clone(), master_keys.is_empty()) {
            (Some(network), false) => Some(VdbnetSettings {
                network,
                master_keys,
            }),
            (None, true) => None,
            (None, false) => {
                return Err(field(
                    "network",
                    "master_keys needs the network's name in `network`".into(),
                ));
            }
            (Some(_), true) => {
                return Err(field(
                    "master_keys",
                    "`network` is set but no master key is listed".into(),
                ));
            }
        };
        let databases = match t.databases {
            Some(dbs) => {
                for db in &dbs {
                    if !vdb_proto::is_safe_db_name(db) {
                        return Err(field("databases", format!("{db:?} is not a database name")));
                    }
                }
                dbs
            }
            None => Self::default().databases,
        };
        if let Some(cmd) = &t.test_command
            && cmd.is_empty()
        {
            return Err(field("test_command", "empty command".into()));
        }
        let proxy = match t.proxy {
            None => None,
            Some(server) => Some(ProxySettings {
                server,
                port: None,
                credentials: match (t.proxy_username, t.proxy_password) {
                    (Some(u), Some(p)) => Some((u, p)),
                    (None, None) => None,
                    _ => {
                        return Err(field(
                            "proxy_username",
                            "proxy_username and proxy_password go together".into(),
                        ));
                    }
                },
            }),
        };
        let client_cert = match (t.client_cert, t.client_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => env_client_cert(),
            _ => {
                return Err(field(
                    "client_cert",
                    "client_cert and client_key go together".into(),
                ));
            }
        };
        let d = Self::default();
        Ok(Self {
            database_directory: t.database_directory.unwrap_or(d.database_directory),
            mirrors,
            private_mirror: fc.private_mirror(),
            dns_domain: fc.dns_domain().map(str::to_owned),
            dns_server: t.dns_server,
            db_txt_zone: t.db_txt_zone.unwrap_or(d.db_txt_zone),
            scripted_updates: fc.scripted_updates(),
            databases,
            custom_urls: t.custom_urls,
            max_attempts: t.max_attempts.unwrap_or(d.max_attempts).max(1),
            connect_timeout: t
                .connect_timeout_secs
                .map_or(d.connect_timeout, Duration::from_secs),
            receive_timeout: match t.receive_timeout_secs {
                None => d.receive_timeout,
                Some(0) => None,
                Some(s) => Some(Duration::from_secs(s)),
            },
            retry_delay: t
                .retry_delay_secs
                .map_or(d.retry_delay, Duration::from_secs),
            checks: t.checks.unwrap_or(d.checks),
            compress_local_database: t.compress_local_database.unwrap_or(false),
            test_command: t.test_command,
            notify_clamd: t.notify_clamd,
            on_update_execute: t.on_update_execute,
            on_error_execute: t.on_error_execute,
            on_outdated_execute: t.on_outdated_execute,
            proxy,
            user_agent: t.user_agent,
            key_set,
            vdbnet,
            health_memory: t.health_memory.unwrap_or(true),
            update_log_file: t.update_log_file,
            engine_version: t.engine_version.unwrap_or(d.engine_version),
            ca_file: t.ca_file.or_else(|| env_path("CURL_CA_BUNDLE")),
            client_cert,
            cvd_certs_dir: t
                .cvd_certs_dir
                .map(|p| path.parent().unwrap_or(Path::new(".")).join(p))
                .or_else(|| env_path(CVD_CERTS_DIR_ENV)),
            fips_limits: t.fips_limits.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshclam_conf_translates() {
        let (conf, w) = FreshclamConf::parse(
            "DatabaseMirror 127.0.0.1:8001\nDatabaseMirror http://b\nDNSDatabaseInfo no\n\
             ReceiveTimeout 0\nMaxAttempts 2\nBytecode no\nExtraDatabase test\n",
        )
        .unwrap();
        assert!(w.is_empty());
        let s = Settings::from_freshclam(&conf, Path::new("f.conf")).unwrap();
        assert_eq!(s.mirrors, ["https://127.0.0.1:8001", "http://b"]);
        assert_eq!(s.dns_domain, None);
        assert_eq!(s.receive_timeout, None);
        assert_eq!(s.max_attempts, 2);
        assert_eq!(s.databases, ["daily", "main", "test"]);
        assert!(s.scripted_updates);
    }

    #[test]
    fn private_mirror_turns_off_dns_and_cdiffs() {
        let (conf, _) = FreshclamConf::parse("PrivateMirror 10.0.0.1\n").unwrap();
        let s = Settings::from_freshclam(&conf, Path::new("f.conf")).unwrap();
        assert_eq!(s.mirrors, ["http://10.0.0.1"]);
        assert!(s.private_mirror && !s.scripted_updates && s.dns_domain.is_none());
    }

    #[test]
    fn toml_schema() {
        let key = vdb_proto::SecretKey::from_seed([7; 32]).public();
        let text = format!(
            "database_directory = \"/tmp/db\"\nmirrors = [\"http://127.0.0.1:1\"]\n\
             dns_txt = \"no\"\ndatabases = [\"test\"]\nretry_delay_secs = 0\n\
             network = \"n\"\nmaster_keys = [\"{key}\"]\n\
             test_command = [\"clamscan\", \"-d\", \"{{}}\"]\n"
        );
        let t: TomlConfig = toml::from_str(&text).unwrap();
        let s = Settings::from_toml(t, Path::new("/etc/x.toml")).unwrap();
        assert_eq!(s.databases, ["test"]);
        assert_eq!(s.retry_delay, Duration::ZERO);
        assert_eq!(s.dns_domain, None);
        assert_eq!(s.vdbnet.unwrap().network, "n");
        // Unknown fields are refused, with the field's name.
        let err = toml::from_str::<TomlConfig>("mirrorz = []").unwrap_err();
        assert!(err.to_string().contains("mirrorz"), "{err}");
        // Keys without a network are refused.
        let t: TomlConfig =
            toml::from_str(&format!("mirrors = [\"a\"]\nmaster_keys = [\"{key}\"]")).unwrap();
        let err = Settings::from_toml(t, Path::new("x.toml")).unwrap_err();
        assert!(err.to_string().contains("`network`"), "{err}");
    }

    #[test]
    fn proxy_url() {
        let p = ProxySettings {
            server: "proxy.local".into(),
            port: Some(3128),
            credentials: None,
        };
        assert_eq!(p.url(), "http://proxy.local:3128");
        let p = ProxySettings {
            server: "http://proxy.local:8080".into(),
            port: Some(3128),
            credentials: None,
        };
        assert_eq!(p.url(), "http://proxy.local:8080");
    }
}
