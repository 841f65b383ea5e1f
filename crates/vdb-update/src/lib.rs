//! The offline core of `vdb-update`, vdbnet's freshclam-compatible updater: no network, no
//! async.
//!
//! This crate owns what the updater reads and writes besides the databases themselves:
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

mod freshclam_conf;
mod state;

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
