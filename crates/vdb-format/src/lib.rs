//! ClamAV database formats for vdbnet: no network, no async.
//!
//! This crate owns everything about the bytes of a ClamAV signature database:
//!
//! - the 512-byte header of `.cvd` / `.cld` / `.cud` containers ([`Header`]);
//! - the body: ClamAV's tar dialect, gzip or plain, with `COPYING` first;
//! - the `<db>.info` manifest with per-file sizes, SHA-256 and the `DSIG:` line ([`Info`]);
//! - verification in one streaming pass with bounded memory ([`container::read`],
//!   [`container::verify`]) under a [`KeySet`]: ClamAV's official keys are built in, a
//!   network's own set is loaded from text;
//! - `.cdiff` files and their script language: parse, verify, apply with ClamAV 1.4.6's exact
//!   semantics, and generate from two versions ([`cdiff`], [`patch`]);
//! - building CVD/CUD containers like `sigtool --build` and CLDs like freshclam ([`build`]).
//!
//! Signing lives in `vdb-sign`, behind the [`Signer`] trait, so that clients never link
//! private-key code. The facts this crate implements are in the project's
//! `shared/spec/clamav.md`; section numbers in the docs refer to it.
//!
//! ```
//! use vdb_format::{Header, KeySet};
//! let line = "ClamAV-VDB:22 Jun 2021 21-34 -0400:6:14:81:X:X:micasnyd:1624412045";
//! let header = Header::parse_line(line).unwrap();
//! assert_eq!(header.version, 6);
//! assert_eq!(KeySet::official().name, "official");
//! ```

pub mod build;
pub mod cdiff;
mod chain;
pub mod clamsign;
pub mod container;
pub mod dnstxt;
mod error;
mod header;
mod info;
mod keys;
mod names;
pub mod patch;
pub mod segment;
pub mod sigenc;
mod store;
mod tar;

pub use build::{BuildSpec, Signer};
pub use container::{Kind, Limits, Member, Verified};
pub use error::{
    CdiffError, Error, HeaderError, InfoError, LimitError, MemberError, ScriptError,
    SignatureError, TarError,
};
pub use header::{HEADER_LEN, Header, format_build_time};
pub use info::{Info, InfoEntry};
pub use keys::{KeyError, KeySet, RsaPublic, parse_fields as parse_key_fields};
pub use names::{is_cdiff_file_name, is_safe_member_name};
pub use store::{DirStore, FileStore, write_atomic, write_atomic_with, write_private};

/// Re-exported big integer type used in keys.
pub use rsa::BigUint;
