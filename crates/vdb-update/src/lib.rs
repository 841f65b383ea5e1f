//! `vdb-update`, vdbnet's freshclam-compatible updater.
//!
//! The update engine ([`updater`]) follows freshclam 1.4.6's observable behaviour (spec §4):
//! versions from the DNS TXT record or a `Range: bytes=0-511` header probe, cdiff chains with
//! freshclam's fallbacks, CLDs built locally, everything verified before an atomic rename,
//! cool-downs on 429/403, the same exit codes, clamd notification and hooks. Beyond freshclam it
//! remembers mirror health across runs ([`health`]) and, on a vdbnet network, checks the
//! masters' signed manifest and every file's hash ([`vdbnet`]).
//!
//! Configuration comes from `freshclam.conf` or vdb-update's TOML file ([`config`]). Besides,
//! this crate owns:
//!
//! - `freshclam.conf` in ClamAV's optparser syntax, with freshclam's defaults, and the views
//!   freshclam derives from it: the ordered server URLs, PrivateMirror mode, whether DNS and
//!   cdiff updates are used, the databases to update, the proxy ([`FreshclamConf`]). Options
//!   freshclam does not know are reported as [`Warning`]s, not ignored;
//! - `freshclam.dat`, the 90-byte cool-down file freshclam keeps in the database directory
//!   ([`FreshclamDat`]).
//!
//! The facts implemented here are in the project's `shared/spec/clamav.md` (§4.1 servers and
//! databases, §4.7 `freshclam.dat`, §4.9 proxy); section numbers in the docs refer to it.
//!
//! ```
//! use vdb_update::{FreshclamConf, FreshclamDat};
//!
//! let text = "DatabaseMirror 127.0.0.1:8001\nDNSDatabaseInfo no\nBytecode no\n";
//! let (conf, warnings) = FreshclamConf::parse(text).unwrap();
//! assert!(warnings.is_empty());
//! assert_eq!(conf.mirrors().unwrap(), ["https://127.0.0.1:8001"]);
//! assert!(!conf.dns_enabled());
//! assert_eq!(conf.databases(), ["daily", "main"]);
//!
//! let mut dat = FreshclamDat::new("2c00be7f-a4dc-42ba-9c4e-2fd22e5d6ffc").unwrap();
//! dat.retry_after = 1_700_000_000;
//! let bytes = dat.to_bytes();
//! assert_eq!(FreshclamDat::parse(&bytes).unwrap(), dat);
//! assert!(dat.on_cooldown(1_699_999_000));
//! ```

pub mod config;
pub use vdb_fetch::dns;
pub mod fetch;
mod freshclam_conf;
pub mod health;
pub mod local;
pub mod log;
pub mod notify;
mod state;
pub mod updater;
pub mod vdbnet;

pub use freshclam_conf::{
    ConfError, DEFAULT_DATABASE_DIRECTORY, DEFAULT_DNS_DATABASE_INFO, DEFAULT_LOG_FILE_MAX_SIZE,
    FreshclamConf, OPTIONAL_DATABASES, Proxy, STANDARD_DATABASES, ValueKind, Warning, WarningKind,
};
pub use state::{CF_RAY_MAX, DAT_LEN, DAT_MAGIC, DAT_VERSION, FreshclamDat, StateError};

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `freshclam.conf` was refused.
    #[error(transparent)]
    Conf(#[from] ConfError),
    /// `freshclam.dat` was refused.
    #[error(transparent)]
    State(#[from] StateError),
}
