//! `freshclam.conf`: ClamAV's optparser syntax, freshclam's defaults, and the views the updater
//! needs (servers, databases, DNS, proxy), following spec §4.1 and §4.9.
//!
//! The syntax is the one of ClamAV's `common/optparser.c` for configuration files:
//!
//! - one `Option value` per line; the name ends at the first space or tab and is
//!   case-sensitive; leading blanks of the line and blanks around the value are dropped;
//! - lines that are empty, one character long, or start with `#` are skipped;
//! - a value starting with `"` runs to the last `"` of the line (what follows is dropped);
//! - a line starting with `Example` makes ClamAV refuse the whole file;
//! - booleans are `yes`/`no`/`true`/`false`/`1`/`0` in any case, numbers are decimal digits,
//!   sizes are digits with an optional `K`/`M` suffix (any case);
//! - a repeatable option (`DatabaseMirror`, …) collects every value in order; any other option
//!   keeps its **first** value (optparser ignores later ones; we also warn).
//!
//! Where we differ from freshclam, on purpose: an option freshclam does not know is a
//! [`WarningKind::Unknown`] warning here (freshclam refuses the file), and `LogFile` (a clamd
//! option that freshclam refuses) is accepted with a [`WarningKind::NotFreshclam`] warning.
//! Carriage returns at line ends are dropped (freshclam would keep them in the value).

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

/// The databases every freshclam updates unless excluded, in freshclam's order (spec §4.1).
pub const STANDARD_DATABASES: [&str; 3] = ["daily", "main", "bytecode"];

/// The official opt-in databases that `ExtraDatabase` may name (spec §4.1).
pub const OPTIONAL_DATABASES: [&str; 3] = ["safebrowsing", "test", "valhalla"];

/// The default `DNSDatabaseInfo` domain.
pub const DEFAULT_DNS_DATABASE_INFO: &str = "current.cvd.clamav.net";

/// The default `DatabaseDirectory` (ClamAV's build-time `DATADIR` on Debian).
pub const DEFAULT_DATABASE_DIRECTORY: &str = "/var/lib/clamav";

/// The default `LogFileMaxSize` in bytes (1 MiB, optparser's default).
pub const DEFAULT_LOG_FILE_MAX_SIZE: u64 = 1_048_576;

/// A parsed `freshclam.conf`: every option vdb-update uses, with freshclam's defaults.
///
/// Fields hold the values as written (after syntax checks); the methods give the derived
/// views freshclam computes from them ([`mirrors`](Self::mirrors),
/// [`databases`](Self::databases), [`dns_domain`](Self::dns_domain), [`proxy`](Self::proxy)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FreshclamConf {
    /// `DatabaseMirror` values in order (repeatable; ignored when a `PrivateMirror` is set).
    pub database_mirror: Vec<String>,
    /// `PrivateMirror` values in order (repeatable; forces DNS and scripted updates off).
    pub private_mirror: Vec<String>,
    /// `DNSDatabaseInfo`: the TXT domain, or `no` to disable DNS. Default
    /// [`DEFAULT_DNS_DATABASE_INFO`].
    pub dns_database_info: String,
    /// `DatabaseDirectory`. Default [`DEFAULT_DATABASE_DIRECTORY`].
    pub database_directory: PathBuf,
    /// `ScriptedUpdates` (cdiff updates). Default yes.
    pub scripted_updates: bool,
    /// `DatabaseCustomURL` values in order (repeatable; `http(s)://` or `file://`).
    pub database_custom_url: Vec<String>,
    /// `ExtraDatabase` values in order (repeatable; opt-in official databases).
    pub extra_database: Vec<String>,
    /// `ExcludeDatabase` values in order (repeatable; opt-out of standard databases).
    pub exclude_database: Vec<String>,
    /// `MaxAttempts` per server and database. Default 3.
    pub max_attempts: u32,
    /// `ConnectTimeout` in seconds. Default 30.
    pub connect_timeout: u32,
    /// `ReceiveTimeout` in seconds: abort below 1 byte/s for that long; 0 = off. Default 60.
    pub receive_timeout: u32,
    /// `Checks` per day in daemon mode. Default 12.
    pub checks: u32,
    /// `CompressLocalDatabase`: gzip the CLD body. Default no.
    pub compress_local_database: bool,
    /// `TestDatabases`: test-load a new database before installing it. Default yes.
    pub test_databases: bool,
    /// `NotifyClamd`: path of the `clamd.conf` whose socket gets `RELOAD`. Default none.
    pub notify_clamd: Option<PathBuf>,
    /// `OnUpdateExecute`: command run after at least one database changed.
    pub on_update_execute: Option<String>,
    /// `OnErrorExecute`: command run when an update fails.
    pub on_error_execute: Option<String>,
    /// `OnOutdatedExecute`: command run when DNS announces a newer ClamAV (`%v` = version).
    pub on_outdated_execute: Option<String>,
    /// `HTTPProxyServer` as written (see [`proxy`](Self::proxy) for the derived form).
    pub http_proxy_server: Option<String>,
    /// `HTTPProxyPort`. Default none (freshclam then uses `webcache/tcp`, else 8080).
    pub http_proxy_port: Option<u16>,
    /// `HTTPProxyUsername`.
    pub http_proxy_username: Option<String>,
    /// `HTTPProxyPassword`.
    pub http_proxy_password: Option<String>,
    /// `HTTPUserAgent`: replaces the `ClamAV/<version> (…)` User-Agent.
    pub http_user_agent: Option<String>,
    /// `LogFile` (a clamd option; freshclam itself refuses it, see the module docs).
    pub log_file: Option<PathBuf>,
    /// `UpdateLogFile`: freshclam's log file.
    pub update_log_file: Option<PathBuf>,
    /// `Foreground`: do not fork in daemon mode. Default no.
    pub foreground: bool,
    /// `Bytecode`: update `bytecode`. Default yes.
    pub bytecode: bool,
    /// `DatabaseOwner`: the user to drop privileges to. Default `clamav`.
    pub database_owner: String,
    /// `PidFile` in daemon mode.
    pub pid_file: Option<PathBuf>,
    /// `LogVerbose`. Default no.
    pub log_verbose: bool,
    /// `LogTime`: timestamp log lines. Default no.
    pub log_time: bool,
    /// `LogFileMaxSize` in bytes; `None` = no limit (written as `0`). Default 1 MiB.
    pub log_file_max_size: Option<u64>,
    /// `LogSyslog`. Default no.
    pub log_syslog: bool,
    /// `LocalIPAddress`: the client address to download from.
    pub local_ip_address: Option<String>,
    /// `CVDCertsDirectory` (ClamAV 1.5): the trust anchors of `.sign` files (spec §3.3).
    /// Default none: then the `CVD_CERTS_DIR` environment variable, else ClamAV's
    /// `/etc/clamav/certs`.
    pub cvd_certs_directory: Option<PathBuf>,
    /// `FIPSCryptoHashLimits` (ClamAV 1.5): no MD5-based verification, so a CVD needs a `.sign`
    /// file that verifies (spec §3.4). Default no.
    pub fips_crypto_hash_limits: bool,
}

impl Default for FreshclamConf {
    /// freshclam's defaults (optparser), as listed in spec §4.1.
    fn default() -> Self {
        Self {
            database_mirror: Vec::new(),
            private_mirror: Vec::new(),
            dns_database_info: DEFAULT_DNS_DATABASE_INFO.to_owned(),
            database_directory: PathBuf::from(DEFAULT_DATABASE_DIRECTORY),
            scripted_updates: true,
            database_custom_url: Vec::new(),
            extra_database: Vec::new(),
            exclude_database: Vec::new(),
            max_attempts: 3,
            connect_timeout: 30,
            receive_timeout: 60,
            checks: 12,
            compress_local_database: false,
            test_databases: true,
            notify_clamd: None,
            on_update_execute: None,
            on_error_execute: None,
            on_outdated_execute: None,
            http_proxy_server: None,
            http_proxy_port: None,
            http_proxy_username: None,
            http_proxy_password: None,
            http_user_agent: None,
            log_file: None,
            update_log_file: None,
            foreground: false,
            bytecode: true,
            database_owner: "clamav".to_owned(),
            pid_file: None,
            log_verbose: false,
            log_time: false,
            log_file_max_size: Some(DEFAULT_LOG_FILE_MAX_SIZE),
            log_syslog: false,
            local_ip_address: None,
            cvd_certs_directory: None,
            fips_crypto_hash_limits: false,
        }
    }
}

/// Proxy settings derived from the `HTTPProxy*` options (spec §4.9).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Proxy {
    /// Host (and whatever else was written), with a leading `http://` removed.
    pub server: String,
    /// `HTTPProxyPort`, if given.
    pub port: Option<u16>,
    /// `HTTPProxyUsername` and `HTTPProxyPassword`, if given.
    pub credentials: Option<(String, String)>,
}

/// A problem in `freshclam.conf` that does not stop the updater.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line number.
    pub line: usize,
    /// The option name as written.
    pub option: String,
    /// What is wrong.
    pub kind: WarningKind,
}

/// The kinds of [`Warning`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// freshclam does not know this option (freshclam would refuse the file).
    Unknown,
    /// freshclam knows this option but vdb-update does not act on it.
    Ignored,
    /// freshclam ignores this deprecated option too ("Ignoring deprecated option").
    Deprecated,
    /// Accepted by vdb-update, but not a freshclam option (freshclam would refuse the file).
    NotFreshclam,
    /// A non-repeatable option given again; the first value is kept, as in freshclam.
    Duplicate,
    /// A size above 4 GiB, reset to 4 GiB - 1 as freshclam does.
    SizeClamped,
    /// `ExtraDatabase` names no official optional database; it is skipped, as in freshclam.
    UnavailableDatabase,
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unknown => "unknown option (freshclam would refuse this file)",
            Self::Ignored => "freshclam option not used by vdb-update; ignored",
            Self::Deprecated => "deprecated option; ignored",
            Self::NotFreshclam => "not a freshclam option (freshclam would refuse this file)",
            Self::Duplicate => "given again; the first value is kept",
            Self::SizeClamped => "size too large; reset to 4G",
            Self::UnavailableDatabase => "not an optional official database; skipped",
        })
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.option, self.kind)
    }
}

/// The kind of value an option expects (in [`ConfError::BadValue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueKind {
    /// `yes`/`no`/`true`/`false`/`1`/`0`.
    Bool,
    /// Decimal digits fitting in 32 bits.
    Number,
    /// A TCP port, 0–65535.
    Port,
    /// Digits with an optional `K`/`M` suffix.
    Size,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Bool => "expected yes/no/true/false/1/0",
            Self::Number => "expected a decimal number",
            Self::Port => "expected a port number (0-65535)",
            Self::Size => "expected a size (digits with optional K or M)",
        })
    }
}

/// Why a `freshclam.conf` (or a view derived from it) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfError {
    /// The file still has the `Example` line of ClamAV's sample configuration.
    #[error("line {line}: `Example` line: this is ClamAV's sample configuration, edit it first")]
    ExampleLine {
        /// 1-based line number.
        line: usize,
    },
    /// A line is not valid UTF-8.
    #[error("line {line}: not valid UTF-8")]
    NotUtf8 {
        /// 1-based line number.
        line: usize,
    },
    /// An option without a value.
    #[error("line {line}: option {option} has no value")]
    MissingValue {
        /// 1-based line number.
        line: usize,
        /// The option name as written.
        option: String,
    },
    /// A value opens a `"` that is never closed.
    #[error("line {line}: option {option}: missing closing quote")]
    UnclosedQuote {
        /// 1-based line number.
        line: usize,
        /// The option name as written.
        option: String,
    },
    /// A quoted value is empty (`""`).
    #[error("line {line}: option {option}: empty quoted value")]
    EmptyQuoted {
        /// 1-based line number.
        line: usize,
        /// The option name as written.
        option: String,
    },
    /// A value does not have the option's type.
    #[error("line {line}: option {option}: bad value {value:?}: {expected}")]
    BadValue {
        /// 1-based line number.
        line: usize,
        /// The option name as written.
        option: String,
        /// The value as written.
        value: String,
        /// What the option expects.
        expected: ValueKind,
    },
    /// Neither `DatabaseMirror` nor `PrivateMirror` is set.
    #[error("no DatabaseMirror or PrivateMirror set")]
    NoMirror,
    /// A `PrivateMirror` under `clamav.net`, which freshclam refuses.
    #[error("PrivateMirror {value}: may not be a server under *.clamav.net")]
    PrivateMirrorClamav {
        /// The value as written.
        value: String,
    },
    /// `HTTPProxyUsername` without `HTTPProxyPassword` (freshclam refuses it).
    #[error("HTTPProxyUsername requires HTTPProxyPassword")]
    ProxyPasswordMissing,
}

/// The type of an option's value.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bool,
    Num,
    Port,
    Size,
}

/// What vdb-update does with an option.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Stored in [`FreshclamConf`]; `true` = repeatable.
    Stored(bool),
    /// Known to freshclam, checked, not used.
    Ignored,
    /// Deprecated in freshclam: not even checked.
    Deprecated,
}

/// The option table: freshclam's config-file options (`OPT_FRESHCLAM` in ClamAV's
/// `common/optparser.c`) plus `LogFile`.
const OPTIONS: &[(&str, Ty, Use)] = &[
    ("DatabaseMirror", Ty::Str, Use::Stored(true)),
    ("PrivateMirror", Ty::Str, Use::Stored(true)),
    ("DatabaseCustomURL", Ty::Str, Use::Stored(true)),
    ("ExtraDatabase", Ty::Str, Use::Stored(true)),
    ("ExcludeDatabase", Ty::Str, Use::Stored(true)),
    ("DNSDatabaseInfo", Ty::Str, Use::Stored(false)),
    ("DatabaseDirectory", Ty::Str, Use::Stored(false)),
    ("NotifyClamd", Ty::Str, Use::Stored(false)),
    ("OnUpdateExecute", Ty::Str, Use::Stored(false)),
    ("OnErrorExecute", Ty::Str, Use::Stored(false)),
    ("OnOutdatedExecute", Ty::Str, Use::Stored(false)),
    ("HTTPProxyServer", Ty::Str, Use::Stored(false)),
    ("HTTPProxyUsername", Ty::Str, Use::Stored(false)),
    ("HTTPProxyPassword", Ty::Str, Use::Stored(false)),
    ("HTTPUserAgent", Ty::Str, Use::Stored(false)),
    ("LogFile", Ty::Str, Use::Stored(false)),
    ("UpdateLogFile", Ty::Str, Use::Stored(false)),
    ("DatabaseOwner", Ty::Str, Use::Stored(false)),
    ("PidFile", Ty::Str, Use::Stored(false)),
    ("LocalIPAddress", Ty::Str, Use::Stored(false)),
    ("ScriptedUpdates", Ty::Bool, Use::Stored(false)),
    ("CompressLocalDatabase", Ty::Bool, Use::Stored(false)),
    ("TestDatabases", Ty::Bool, Use::Stored(false)),
    ("Foreground", Ty::Bool, Use::Stored(false)),
    ("Bytecode", Ty::Bool, Use::Stored(false)),
    ("LogVerbose", Ty::Bool, Use::Stored(false)),
    ("LogTime", Ty::Bool, Use::Stored(false)),
    ("LogSyslog", Ty::Bool, Use::Stored(false)),
    ("MaxAttempts", Ty::Num, Use::Stored(false)),
    ("ConnectTimeout", Ty::Num, Use::Stored(false)),
    ("ReceiveTimeout", Ty::Num, Use::Stored(false)),
    ("Checks", Ty::Num, Use::Stored(false)),
    ("HTTPProxyPort", Ty::Port, Use::Stored(false)),
    ("LogFileMaxSize", Ty::Size, Use::Stored(false)),
    ("LogFacility", Ty::Str, Use::Ignored),
    ("CVDCertsDirectory", Ty::Str, Use::Stored(false)),
    ("FIPSCryptoHashLimits", Ty::Bool, Use::Stored(false)),
    ("LogRotate", Ty::Bool, Use::Ignored),
    ("Debug", Ty::Bool, Use::Ignored),
    ("SafeBrowsing", Ty::Str, Use::Deprecated),
    ("AllowSupplementaryGroups", Ty::Str, Use::Deprecated),
];

/// Looks an option up by its exact (case-sensitive) name.
fn option_spec(name: &str) -> Option<(&'static str, Ty, Use)> {
    OPTIONS.iter().copied().find(|(n, _, _)| *n == name)
}

/// A checked value.
enum Value {
    Str(String),
    Bool(bool),
    Num(u32),
    Port(u16),
    Size(Option<u64>),
}

impl FreshclamConf {
    /// Parses `freshclam.conf` text. Returns the configuration and the warnings (unknown,
    /// ignored, deprecated and repeated options, with line numbers), or the first error.
    pub fn parse(text: &str) -> Result<(Self, Vec<Warning>), ConfError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// Like [`parse`](Self::parse), for raw file bytes: comments and blank lines may hold
    /// any bytes, every other line must be UTF-8.
    pub fn parse_bytes(bytes: &[u8]) -> Result<(Self, Vec<Warning>), ConfError> {
        let mut conf = Self::default();
        let mut warnings = Vec::new();
        let mut seen: HashSet<&'static str> = HashSet::new();
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let start = raw.iter().position(|&b| b != b' ' && b != b'\t');
            let Some(start) = start else { continue };
            let raw = &raw[start..];
            // optparser skips lines of at most one character besides the newline.
            if raw.len() <= 1 || raw[0] == b'#' {
                continue;
            }
            if raw.starts_with(b"Example") {
                return Err(ConfError::ExampleLine { line });
            }
            let text = std::str::from_utf8(raw).map_err(|_| ConfError::NotUtf8 { line })?;
            let (name, value) = split_line(text, line)?;
            let Some((key, ty, usage)) = option_spec(name) else {
                warnings.push(warning(line, name, WarningKind::Unknown));
                continue;
            };
            if usage == Use::Deprecated {
                warnings.push(warning(line, name, WarningKind::Deprecated));
                continue;
            }
            let value = check_value(ty, name, value, line, &mut warnings)?;
            match usage {
                Use::Ignored => warnings.push(warning(line, name, WarningKind::Ignored)),
                Use::Stored(repeatable) => {
                    if !repeatable && !seen.insert(key) {
                        warnings.push(warning(line, name, WarningKind::Duplicate));
                        continue;
                    }
                    if name == "LogFile" {
                        warnings.push(warning(line, name, WarningKind::NotFreshclam));
                    }
                    if name == "ExtraDatabase"
                        && let Value::Str(db) = &value
                        && optional_database(db).is_none()
                    {
                        warnings.push(warning(line, name, WarningKind::UnavailableDatabase));
                    }
                    conf.store(name, value);
                }
                Use::Deprecated => unreachable!("handled above"),
            }
        }
        Ok((conf, warnings))
    }

    fn store(&mut self, name: &str, value: Value) {
        match value {
            Value::Str(s) => match name {
                "DatabaseMirror" => self.database_mirror.push(s),
                "PrivateMirror" => self.private_mirror.push(s),
                "DatabaseCustomURL" => self.database_custom_url.push(s),
                "ExtraDatabase" => self.extra_database.push(s),
                "ExcludeDatabase" => self.exclude_database.push(s),
                "DNSDatabaseInfo" => self.dns_database_info = s,
                "DatabaseDirectory" => self.database_directory = s.into(),
                "NotifyClamd" => self.notify_clamd = Some(s.into()),
                "OnUpdateExecute" => self.on_update_execute = Some(s),
                "OnErrorExecute" => self.on_error_execute = Some(s),
                "OnOutdatedExecute" => self.on_outdated_execute = Some(s),
                "HTTPProxyServer" => self.http_proxy_server = Some(s),
                "HTTPProxyUsername" => self.http_proxy_username = Some(s),
                "HTTPProxyPassword" => self.http_proxy_password = Some(s),
                "HTTPUserAgent" => self.http_user_agent = Some(s),
                "LogFile" => self.log_file = Some(s.into()),
                "UpdateLogFile" => self.update_log_file = Some(s.into()),
                "DatabaseOwner" => self.database_owner = s,
                "PidFile" => self.pid_file = Some(s.into()),
                "LocalIPAddress" => self.local_ip_address = Some(s),
                "CVDCertsDirectory" => self.cvd_certs_directory = Some(s.into()),
                _ => unreachable!("string option {name} missing from store()"),
            },
            Value::Bool(b) => match name {
                "ScriptedUpdates" => self.scripted_updates = b,
                "CompressLocalDatabase" => self.compress_local_database = b,
                "TestDatabases" => self.test_databases = b,
                "Foreground" => self.foreground = b,
                "Bytecode" => self.bytecode = b,
                "LogVerbose" => self.log_verbose = b,
                "LogTime" => self.log_time = b,
                "LogSyslog" => self.log_syslog = b,
                "FIPSCryptoHashLimits" => self.fips_crypto_hash_limits = b,
                _ => unreachable!("bool option {name} missing from store()"),
            },
            Value::Num(n) => match name {
                "MaxAttempts" => self.max_attempts = n,
                "ConnectTimeout" => self.connect_timeout = n,
                "ReceiveTimeout" => self.receive_timeout = n,
                "Checks" => self.checks = n,
                _ => unreachable!("number option {name} missing from store()"),
            },
            Value::Port(p) => self.http_proxy_port = Some(p),
            Value::Size(s) => self.log_file_max_size = s,
        }
    }

    /// True when at least one `PrivateMirror` is set (spec §4.1).
    pub fn private_mirror(&self) -> bool {
        !self.private_mirror.is_empty()
    }

    /// The server base URLs to try, in order (spec §4.1). Files are fetched as
    /// `<server>/<file>`.
    ///
    /// With `PrivateMirror`: `DatabaseMirror` is ignored, a value without `://` gets
    /// `http://`, and a value ending in `.clamav.net` (any case) is refused. Otherwise each
    /// `DatabaseMirror` without `://` gets `https://`. In both cases a value starting with
    /// `db.` and containing `.clamav.net` becomes `https://database.clamav.net`, as freshclam
    /// does.
    pub fn mirrors(&self) -> Result<Vec<String>, ConfError> {
        if self.private_mirror() {
            self.private_mirror
                .iter()
                .map(|m| {
                    if ends_with_ignore_case(m, ".clamav.net") {
                        Err(ConfError::PrivateMirrorClamav { value: m.clone() })
                    } else {
                        Ok(server_url(m, "http"))
                    }
                })
                .collect()
        } else if self.database_mirror.is_empty() {
            Err(ConfError::NoMirror)
        } else {
            Ok(self
                .database_mirror
                .iter()
                .map(|m| server_url(m, "https"))
                .collect())
        }
    }

    /// True when versions come from the DNS TXT record: `DNSDatabaseInfo` is not `no` (any
    /// case) and no `PrivateMirror` is set (spec §4.1, §4.2).
    pub fn dns_enabled(&self) -> bool {
        !self.private_mirror() && !self.dns_database_info.eq_ignore_ascii_case("no")
    }

    /// The TXT domain to query, when DNS is enabled (see [`dns_enabled`](Self::dns_enabled)).
    pub fn dns_domain(&self) -> Option<&str> {
        self.dns_enabled()
            .then_some(self.dns_database_info.as_str())
    }

    /// True when cdiff updates are allowed: `ScriptedUpdates yes` and no `PrivateMirror`
    /// (freshclam passes `bPrivate ? 0 : ScriptedUpdates`).
    pub fn scripted_updates(&self) -> bool {
        self.scripted_updates && !self.private_mirror()
    }

    /// The official databases to update, in a stable order: `daily`, `main`, `bytecode`
    /// minus `ExcludeDatabase` (any case) and minus `bytecode` when `Bytecode no`; then each
    /// `ExtraDatabase` naming an optional database ([`OPTIONAL_DATABASES`], any case), in
    /// config order, lower-cased, without repeats.
    pub fn databases(&self) -> Vec<String> {
        let excluded = |db: &str| {
            self.exclude_database
                .iter()
                .any(|x| x.eq_ignore_ascii_case(db))
                || (db == "bytecode" && !self.bytecode)
        };
        let mut out: Vec<String> = STANDARD_DATABASES
            .iter()
            .filter(|db| !excluded(db))
            .map(|db| (*db).to_owned())
            .collect();
        for extra in &self.extra_database {
            if let Some(db) = optional_database(extra)
                && !out.iter().any(|d| d == db)
            {
                out.push(db.to_owned());
            }
        }
        out
    }

    /// The proxy to tunnel through, when `HTTPProxyServer` is set (spec §4.9): a leading
    /// `http://` (any case) is removed; `HTTPProxyUsername` requires `HTTPProxyPassword`.
    pub fn proxy(&self) -> Result<Option<Proxy>, ConfError> {
        let Some(server) = &self.http_proxy_server else {
            return Ok(None);
        };
        let server = match server.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &server[7..],
            _ => server.as_str(),
        };
        let credentials = match (&self.http_proxy_username, &self.http_proxy_password) {
            (Some(user), Some(pass)) => Some((user.clone(), pass.clone())),
            (Some(_), None) => return Err(ConfError::ProxyPasswordMissing),
            (None, _) => None,
        };
        Ok(Some(Proxy {
            server: server.to_owned(),
            port: self.http_proxy_port,
            credentials,
        }))
    }
}

fn warning(line: usize, option: &str, kind: WarningKind) -> Warning {
    Warning {
        line,
        option: option.to_owned(),
        kind,
    }
}

/// Splits a trimmed, non-comment line into name and value, with optparser's quote rules.
fn split_line(text: &str, line: usize) -> Result<(&str, &str), ConfError> {
    let blank = |c: char| c == ' ' || c == '\t';
    let Some(at) = text.find(blank) else {
        return Err(ConfError::MissingValue {
            line,
            option: text.to_owned(),
        });
    };
    let name = &text[..at];
    let value = text[at + 1..].trim_matches(blank);
    if value.is_empty() {
        return Err(ConfError::MissingValue {
            line,
            option: name.to_owned(),
        });
    }
    let Some(quoted) = value.strip_prefix('"') else {
        return Ok((name, value));
    };
    let Some(end) = quoted.rfind('"') else {
        return Err(ConfError::UnclosedQuote {
            line,
            option: name.to_owned(),
        });
    };
    if end == 0 {
        return Err(ConfError::EmptyQuoted {
            line,
            option: name.to_owned(),
        });
    }
    Ok((name, &quoted[..end]))
}

fn check_value(
    ty: Ty,
    name: &str,
    value: &str,
    line: usize,
    warnings: &mut Vec<Warning>,
) -> Result<Value, ConfError> {
    let bad = |expected| ConfError::BadValue {
        line,
        option: name.to_owned(),
        value: value.to_owned(),
        expected,
    };
    Ok(match ty {
        Ty::Str => Value::Str(value.to_owned()),
        Ty::Bool => Value::Bool(parse_bool(value).ok_or_else(|| bad(ValueKind::Bool))?),
        Ty::Num => Value::Num(parse_number(value).ok_or_else(|| bad(ValueKind::Number))?),
        Ty::Port => {
            let n = parse_number(value).ok_or_else(|| bad(ValueKind::Port))?;
            Value::Port(u16::try_from(n).map_err(|_| bad(ValueKind::Port))?)
        }
        Ty::Size => {
            let (size, clamped) = parse_size(value).ok_or_else(|| bad(ValueKind::Size))?;
            if clamped {
                warnings.push(warning(line, name, WarningKind::SizeClamped));
            }
            Value::Size(size)
        }
    })
}

/// optparser's `^(yes|true|1|no|false|0)$`, case-insensitive.
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Some(true),
        "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// optparser's `^[0-9]+$`; values that do not fit in 32 bits are refused (freshclam's
/// `atoi` would silently wrap them).
fn parse_number(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// optparser's size: `^[0-9]+[KM]?$` (any case), read with `strtoul(…, 0)` — so a leading
/// `0` means octal — then scaled. Returns the size (`None` for 0 = no limit) and whether it
/// was clamped to 4G.
fn parse_size(value: &str) -> Option<(Option<u64>, bool)> {
    let (digits, scale) = match value.as_bytes().last()? {
        b'K' | b'k' => (&value[..value.len() - 1], 1024),
        b'M' | b'm' => (&value[..value.len() - 1], 1024 * 1024),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let max = u64::from(u32::MAX);
    let parsed = if digits.len() > 1 && digits.starts_with('0') {
        // `8` or `9` stops strtoul early and optparser refuses the value.
        if digits.bytes().any(|b| b == b'8' || b == b'9') {
            return None;
        }
        u64::from_str_radix(digits, 8)
    } else {
        digits.parse::<u64>()
    };
    let (n, clamped) = match parsed {
        Ok(n) if scale == 1 || n <= max / scale => (n * scale, false),
        // strtoul's ERANGE, or a scaled value above 4G: optparser resets it to 4G.
        _ => (max, true),
    };
    Some(((n != 0).then_some(n), clamped))
}

/// freshclam's `get_server_node`.
fn server_url(server: &str, default_scheme: &str) -> String {
    if server.starts_with("db.") && server.contains(".clamav.net") {
        "https://database.clamav.net".to_owned()
    } else if !server.contains("://") {
        format!("{default_scheme}://{server}")
    } else {
        server.to_owned()
    }
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    let (s, suffix) = (s.as_bytes(), suffix.as_bytes());
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// The canonical name of an optional official database, matched in any case.
fn optional_database(name: &str) -> Option<&'static str> {
    OPTIONAL_DATABASES
        .iter()
        .copied()
        .find(|db| db.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (FreshclamConf, Vec<Warning>) {
        FreshclamConf::parse(text).unwrap()
    }

    fn conf(text: &str) -> FreshclamConf {
        let (conf, warnings) = parse(text);
        assert!(warnings.is_empty(), "unexpected warnings: {warnings:?}");
        conf
    }

    /// The configuration of spec §7.2, with `$W` filled in.
    const SPEC_7_2: &str = "\
DatabaseMirror http://127.0.0.1:8001
DNSDatabaseInfo no
DatabaseDirectory /tmp/w/db
DatabaseOwner root
PidFile /tmp/w/freshclam.pid
LogVerbose yes
LogTime yes
LogFileMaxSize 0
UpdateLogFile /tmp/w/freshclam.log
MaxAttempts 1
ConnectTimeout 5
ReceiveTimeout 10
TestDatabases yes
ScriptedUpdates yes
Bytecode no
";

    #[test]
    fn spec_7_2_configuration() {
        let c = conf(SPEC_7_2);
        assert_eq!(c.mirrors().unwrap(), ["http://127.0.0.1:8001"]);
        assert!(!c.dns_enabled());
        assert_eq!(c.dns_domain(), None);
        assert_eq!(c.database_directory, PathBuf::from("/tmp/w/db"));
        assert_eq!(c.database_owner, "root");
        assert_eq!(c.pid_file, Some(PathBuf::from("/tmp/w/freshclam.pid")));
        assert!(c.log_verbose && c.log_time);
        assert_eq!(c.log_file_max_size, None);
        assert_eq!(
            c.update_log_file,
            Some(PathBuf::from("/tmp/w/freshclam.log"))
        );
        assert_eq!(
            (c.max_attempts, c.connect_timeout, c.receive_timeout),
            (1, 5, 10)
        );
        assert!(c.test_databases && c.scripted_updates());
        assert!(!c.bytecode);
        assert_eq!(c.databases(), ["daily", "main"]);
        assert!(!c.private_mirror());
    }

    #[test]
    fn defaults_match_freshclam() {
        let c = conf("");
        assert_eq!(c, FreshclamConf::default());
        assert_eq!(c.dns_database_info, "current.cvd.clamav.net");
        assert!(c.dns_enabled());
        assert_eq!(c.dns_domain(), Some("current.cvd.clamav.net"));
        assert!(c.scripted_updates && c.scripted_updates());
        assert!(c.test_databases && c.bytecode);
        assert!(!c.compress_local_database && !c.foreground);
        assert_eq!(
            (c.max_attempts, c.connect_timeout, c.receive_timeout),
            (3, 30, 60)
        );
        assert_eq!(c.checks, 12);
        assert_eq!(c.database_owner, "clamav");
        assert_eq!(c.database_directory, PathBuf::from("/var/lib/clamav"));
        assert_eq!(c.log_file_max_size, Some(1_048_576));
        assert_eq!(c.notify_clamd, None);
        assert_eq!(c.databases(), ["daily", "main", "bytecode"]);
        assert_eq!(c.mirrors(), Err(ConfError::NoMirror));
        assert_eq!(c.proxy(), Ok(None));
    }

    #[test]
    fn every_stored_option_is_read() {
        let text = "\
DatabaseMirror a.example
PrivateMirror p.example
DNSDatabaseInfo current.example.net
DatabaseDirectory /db
ScriptedUpdates no
DatabaseCustomURL http://x.example/a.ndb
ExtraDatabase test
ExcludeDatabase main
MaxAttempts 7
ConnectTimeout 8
ReceiveTimeout 0
Checks 24
CompressLocalDatabase yes
TestDatabases no
NotifyClamd /etc/clamav/clamd.conf
OnUpdateExecute /bin/up %v
OnErrorExecute /bin/err
OnOutdatedExecute /bin/old %v
HTTPProxyServer http://proxy.example
HTTPProxyPort 3128
HTTPProxyUsername user
HTTPProxyPassword secret
HTTPUserAgent agent/1.0
UpdateLogFile /log/fc.log
Foreground yes
Bytecode no
DatabaseOwner vdb
PidFile /run/fc.pid
LogVerbose true
LogTime 1
LogFileMaxSize 2M
LogSyslog YES
LocalIPAddress 192.0.2.1
";
        let c = conf(text);
        assert_eq!(c.database_mirror, ["a.example"]);
        assert_eq!(c.private_mirror, ["p.example"]);
        assert_eq!(c.dns_database_info, "current.example.net");
        assert_eq!(c.database_directory, PathBuf::from("/db"));
        assert!(!c.scripted_updates);
        assert_eq!(c.database_custom_url, ["http://x.example/a.ndb"]);
        assert_eq!(c.extra_database, ["test"]);
        assert_eq!(c.exclude_database, ["main"]);
        assert_eq!(
            (c.max_attempts, c.connect_timeout, c.receive_timeout),
            (7, 8, 0)
        );
        assert_eq!(c.checks, 24);
        assert!(c.compress_local_database && !c.test_databases);
        assert_eq!(
            c.notify_clamd,
            Some(PathBuf::from("/etc/clamav/clamd.conf"))
        );
        assert_eq!(c.on_update_execute.as_deref(), Some("/bin/up %v"));
        assert_eq!(c.on_error_execute.as_deref(), Some("/bin/err"));
        assert_eq!(c.on_outdated_execute.as_deref(), Some("/bin/old %v"));
        assert_eq!(c.http_proxy_server.as_deref(), Some("http://proxy.example"));
        assert_eq!(c.http_proxy_port, Some(3128));
        assert_eq!(c.http_proxy_username.as_deref(), Some("user"));
        assert_eq!(c.http_proxy_password.as_deref(), Some("secret"));
        assert_eq!(c.http_user_agent.as_deref(), Some("agent/1.0"));
        assert_eq!(c.update_log_file, Some(PathBuf::from("/log/fc.log")));
        assert!(c.foreground && !c.bytecode);
        assert_eq!(c.database_owner, "vdb");
        assert_eq!(c.pid_file, Some(PathBuf::from("/run/fc.pid")));
        assert!(c.log_verbose && c.log_time && c.log_syslog);
        assert_eq!(c.log_file_max_size, Some(2 * 1024 * 1024));
        assert_eq!(c.local_ip_address.as_deref(), Some("192.0.2.1"));
        // PrivateMirror wins over DatabaseMirror and turns DNS and cdiffs off.
        assert_eq!(c.mirrors().unwrap(), ["http://p.example"]);
        assert!(c.private_mirror() && !c.dns_enabled() && !c.scripted_updates());
        assert_eq!(c.databases(), ["daily", "test"]);
    }

    #[test]
    fn comments_blank_lines_and_whitespace() {
        let c = conf(
            "# a comment\n\n   \t\n  # indented comment\n\tDatabaseMirror \t  m.example  \t\r\nx\n",
        );
        assert_eq!(c.database_mirror, ["m.example"]);
    }

    #[test]
    fn quoted_values() {
        let c = conf("OnUpdateExecute \"/bin/echo \"a b\"\" trailing\n");
        assert_eq!(c.on_update_execute.as_deref(), Some("/bin/echo \"a b\""));
        let err = FreshclamConf::parse("OnErrorExecute \"/bin/x\n").unwrap_err();
        assert_eq!(
            err,
            ConfError::UnclosedQuote {
                line: 1,
                option: "OnErrorExecute".into()
            }
        );
        let err = FreshclamConf::parse("\nHTTPUserAgent \"\"\n").unwrap_err();
        assert_eq!(
            err,
            ConfError::EmptyQuoted {
                line: 2,
                option: "HTTPUserAgent".into()
            }
        );
    }

    #[test]
    fn example_line_is_refused_with_its_line_number() {
        let err = FreshclamConf::parse("# sample\nDatabaseMirror a\n  Example\n").unwrap_err();
        assert_eq!(err, ConfError::ExampleLine { line: 3 });
        assert!(err.to_string().contains("line 3"));
        // optparser compares the first seven characters only.
        assert_eq!(
            FreshclamConf::parse("Examples yes\n").unwrap_err(),
            ConfError::ExampleLine { line: 1 }
        );
        // A commented-out Example line is fine.
        conf("#Example\n");
    }

    #[test]
    fn missing_values_are_errors() {
        let err = FreshclamConf::parse("Checks\n").unwrap_err();
        assert_eq!(
            err,
            ConfError::MissingValue {
                line: 1,
                option: "Checks".into()
            }
        );
        let err = FreshclamConf::parse("\n\nChecks   \t \n").unwrap_err();
        assert_eq!(
            err,
            ConfError::MissingValue {
                line: 3,
                option: "Checks".into()
            }
        );
    }

    #[test]
    fn booleans_accept_freshclam_spellings() {
        for (text, want) in [
            ("yes", true),
            ("YES", true),
            ("True", true),
            ("1", true),
            ("no", false),
            ("No", false),
            ("FALSE", false),
            ("0", false),
        ] {
            let c = conf(&format!("Foreground {text}\n"));
            assert_eq!(c.foreground, want, "{text}");
        }
        for text in ["y", "on", "2", "yes please", "off"] {
            let err = FreshclamConf::parse(&format!("# x\nBytecode {text}\n")).unwrap_err();
            assert_eq!(
                err,
                ConfError::BadValue {
                    line: 2,
                    option: "Bytecode".into(),
                    value: text.into(),
                    expected: ValueKind::Bool,
                },
                "{text}"
            );
        }
    }

    #[test]
    fn numbers_are_checked() {
        for bad in ["-1", "3s", "0x10", "99999999999", "1.5"] {
            let err = FreshclamConf::parse(&format!("MaxAttempts {bad}\n")).unwrap_err();
            assert!(
                matches!(&err, ConfError::BadValue { line: 1, option, value, expected: ValueKind::Number }
                    if option == "MaxAttempts" && value == bad),
                "{bad}: {err:?}"
            );
        }
        assert_eq!(conf("Checks 0024\n").checks, 24);
    }

    #[test]
    fn proxy_port_must_fit() {
        assert_eq!(conf("HTTPProxyPort 65535\n").http_proxy_port, Some(65535));
        let err = FreshclamConf::parse("HTTPProxyPort 65536\n").unwrap_err();
        assert!(
            matches!(
                err,
                ConfError::BadValue {
                    expected: ValueKind::Port,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn sizes_follow_optparser() {
        let size = |v: &str| conf(&format!("LogFileMaxSize {v}\n")).log_file_max_size;
        assert_eq!(size("0"), None);
        assert_eq!(size("5000"), Some(5000));
        assert_eq!(size("5k"), Some(5 * 1024));
        assert_eq!(size("5K"), Some(5 * 1024));
        assert_eq!(size("5m"), Some(5 * 1024 * 1024));
        assert_eq!(size("5M"), Some(5 * 1024 * 1024));
        assert_eq!(
            size("010"),
            Some(8),
            "strtoul base 0 reads a leading 0 as octal"
        );
        for bad in ["5G", "M", "5KB", "-5", "08", "5 M"] {
            let err = FreshclamConf::parse(&format!("LogFileMaxSize {bad}\n")).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfError::BadValue {
                        expected: ValueKind::Size,
                        ..
                    }
                ),
                "{bad}"
            );
        }
        let (c, w) = parse("LogFileMaxSize 5000M\n");
        assert_eq!(c.log_file_max_size, Some(u64::from(u32::MAX)));
        assert_eq!(w, [warning(1, "LogFileMaxSize", WarningKind::SizeClamped)]);
    }

    #[test]
    fn unknown_ignored_and_deprecated_options_are_reported() {
        let text = "\
DatabaseMirror m.example
TCPSocket 3310
databasemirror lower.example
LogFacility LOG_MAIL
LogRotate yes
SafeBrowsing whatever
AllowSupplementaryGroups yes
LogFile /var/log/x.log
";
        let (c, w) = parse(text);
        assert_eq!(c.database_mirror, ["m.example"], "names are case-sensitive");
        assert_eq!(c.log_file, Some(PathBuf::from("/var/log/x.log")));
        assert_eq!(
            w,
            [
                warning(2, "TCPSocket", WarningKind::Unknown),
                warning(3, "databasemirror", WarningKind::Unknown),
                warning(4, "LogFacility", WarningKind::Ignored),
                warning(5, "LogRotate", WarningKind::Ignored),
                warning(6, "SafeBrowsing", WarningKind::Deprecated),
                warning(7, "AllowSupplementaryGroups", WarningKind::Deprecated),
                warning(8, "LogFile", WarningKind::NotFreshclam),
            ]
        );
        assert_eq!(
            w[0].to_string(),
            "line 2: TCPSocket: unknown option (freshclam would refuse this file)"
        );
        // Ignored options are still type-checked, as freshclam does.
        assert!(FreshclamConf::parse("LogRotate maybe\n").is_err());
    }

    #[test]
    fn clamav_1_5_sign_options_are_read() {
        let (c, w) = parse("CVDCertsDirectory /etc/clamav/certs\nFIPSCryptoHashLimits yes\n");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.cvd_certs_directory,
            Some(PathBuf::from("/etc/clamav/certs"))
        );
        assert!(c.fips_crypto_hash_limits);
        let (c, _) = parse("DatabaseMirror a\n");
        assert!(c.cvd_certs_directory.is_none() && !c.fips_crypto_hash_limits);
        assert!(FreshclamConf::parse("FIPSCryptoHashLimits maybe\n").is_err());
    }

    #[test]
    fn repeated_options_keep_the_first_value_and_repeatables_collect() {
        let (c, w) = parse("Checks 24\nChecks 6\nDatabaseMirror a\nDatabaseMirror b\n");
        assert_eq!(c.checks, 24);
        assert_eq!(w, [warning(2, "Checks", WarningKind::Duplicate)]);
        assert_eq!(c.database_mirror, ["a", "b"]);
        // A repeated value is still checked.
        assert!(FreshclamConf::parse("Checks 24\nChecks x\n").is_err());
    }

    #[test]
    fn non_utf8_only_matters_outside_comments() {
        let (c, _) = FreshclamConf::parse_bytes(b"# caf\xe9\nChecks 3\n").unwrap();
        assert_eq!(c.checks, 3);
        let err = FreshclamConf::parse_bytes(b"Checks 3\nDatabaseOwner caf\xe9\n").unwrap_err();
        assert_eq!(err, ConfError::NotUtf8 { line: 2 });
    }

    #[test]
    fn database_mirror_urls() {
        let c = conf(
            "DatabaseMirror database.clamav.net\n\
             DatabaseMirror db.us.clamav.net\n\
             DatabaseMirror db.local.clamav.net.example\n\
             DatabaseMirror http://127.0.0.1:8001\n\
             DatabaseMirror mirror.example:8443\n\
             DatabaseMirror DB.XX.clamav.net\n",
        );
        assert_eq!(
            c.mirrors().unwrap(),
            [
                "https://database.clamav.net",
                "https://database.clamav.net",
                "https://database.clamav.net",
                "http://127.0.0.1:8001",
                "https://mirror.example:8443",
                // freshclam's `db.` test is case-sensitive.
                "https://DB.XX.clamav.net",
            ]
        );
        assert!(!c.private_mirror());
        assert!(c.dns_enabled() && c.scripted_updates());
    }

    #[test]
    fn private_mirror_urls_and_refusal() {
        let c = conf(
            "DatabaseMirror ignored.example\n\
             PrivateMirror 10.0.0.1:8080\n\
             PrivateMirror https://mirror.example/clamav\n",
        );
        assert_eq!(
            c.mirrors().unwrap(),
            ["http://10.0.0.1:8080", "https://mirror.example/clamav"]
        );
        assert!(c.private_mirror() && !c.dns_enabled() && !c.scripted_updates());
        assert_eq!(c.dns_domain(), None);
        for refused in ["mirror.clamav.net", "http://x.CLAMAV.NET"] {
            let c = conf(&format!(
                "PrivateMirror ok.example\nPrivateMirror {refused}\n"
            ));
            assert_eq!(
                c.mirrors(),
                Err(ConfError::PrivateMirrorClamav {
                    value: refused.into()
                }),
                "{refused}"
            );
        }
    }

    #[test]
    fn dns_database_info_no_disables_dns() {
        assert!(!conf("DNSDatabaseInfo no\n").dns_enabled());
        assert!(!conf("DNSDatabaseInfo NO\n").dns_enabled());
        let c = conf("DNSDatabaseInfo current.example.net\n");
        assert_eq!(c.dns_domain(), Some("current.example.net"));
    }

    #[test]
    fn database_selection() {
        let dbs = |text: &str| parse(text).0.databases();
        assert_eq!(dbs("ExcludeDatabase DAILY\n"), ["main", "bytecode"]);
        assert_eq!(
            dbs("ExcludeDatabase main\nExcludeDatabase bytecode\n"),
            ["daily"]
        );
        assert_eq!(
            dbs("Bytecode no\nExtraDatabase safebrowsing\n"),
            ["daily", "main", "safebrowsing"]
        );
        assert_eq!(
            dbs("ExtraDatabase Test\nExtraDatabase valhalla\nExtraDatabase test\n"),
            ["daily", "main", "bytecode", "test", "valhalla"]
        );
        // ExcludeDatabase only removes standard databases.
        assert_eq!(
            dbs("ExtraDatabase test\nExcludeDatabase test\n"),
            ["daily", "main", "bytecode", "test"]
        );
        let (c, w) = parse("ExtraDatabase nonesuch\nExtraDatabase daily\n");
        assert_eq!(c.databases(), ["daily", "main", "bytecode"]);
        assert_eq!(
            w,
            [
                warning(1, "ExtraDatabase", WarningKind::UnavailableDatabase),
                warning(2, "ExtraDatabase", WarningKind::UnavailableDatabase),
            ]
        );
    }

    #[test]
    fn proxy_view() {
        let c = conf("HTTPProxyServer HTTP://proxy.example\nHTTPProxyPort 3128\n");
        assert_eq!(
            c.proxy().unwrap(),
            Some(Proxy {
                server: "proxy.example".into(),
                port: Some(3128),
                credentials: None
            })
        );
        let c = conf("HTTPProxyServer proxy.example\nHTTPProxyUsername u\nHTTPProxyPassword p\n");
        let proxy = c.proxy().unwrap().unwrap();
        assert_eq!(proxy.server, "proxy.example");
        assert_eq!(proxy.port, None);
        assert_eq!(proxy.credentials, Some(("u".into(), "p".into())));
        let c = conf("HTTPProxyServer proxy.example\nHTTPProxyUsername u\n");
        assert_eq!(c.proxy(), Err(ConfError::ProxyPasswordMissing));
        // Credentials without a server mean no proxy, as in freshclam.
        assert_eq!(conf("HTTPProxyUsername u\n").proxy(), Ok(None));
    }

    #[test]
    fn every_table_option_is_stored_or_classified() {
        // Guards the option table and store() against drift: store() panics on a name it
        // does not handle.
        for &(name, ty, usage) in OPTIONS {
            let value = match ty {
                Ty::Bool => "yes",
                Ty::Num | Ty::Port | Ty::Size => "1",
                Ty::Str => "test",
            };
            let (_, w) = parse(&format!("{name} {value}\n{name} {value}\n"));
            let last = w.last().map(|w| w.kind);
            match usage {
                Use::Stored(false) => assert_eq!(last, Some(WarningKind::Duplicate), "{name}"),
                Use::Stored(true) => {
                    assert!(w.iter().all(|w| w.kind != WarningKind::Duplicate), "{name}")
                }
                Use::Ignored => assert_eq!(last, Some(WarningKind::Ignored), "{name}"),
                Use::Deprecated => assert_eq!(last, Some(WarningKind::Deprecated), "{name}"),
            }
        }
    }
}
