//! vdbnet's wire protocol and its trust model (`../shared/DESIGN.md` §3).
//!
//! Everything that crosses a trust boundary between vdbnet's roles is a [`Signed`] JSON document:
//! the publisher's [`ReleaseStatement`], the master's [`Manifest`] and [`PushNotice`]. A signature
//! covers the exact payload bytes plus a per-document-kind domain tag, so a signature made for one
//! kind of document can never be replayed as another. Keys are Ed25519 ([`PublicKey`],
//! [`SecretKey`]) in a one-line text form that fits in config files.
//!
//! The crate also holds the plain records that roles exchange without signatures, over
//! authenticated or public channels: the mirror registry ([`MirrorRecord`]), the monitor's
//! verdicts ([`VerdictReport`]), the API's error body ([`ApiError`]), the roles' [`Ready`] line, and an injectable
//! [`Clock`] so that schedules can be tested without sleeping. [`sample`] holds the sample
//! intake's input checks and records.
//!
//! Signing is behind the `sign` feature (on by default); `vdb-update` builds without it.

mod api;
mod clock;
mod error_code;
mod key;
mod manifest;
mod mirror_request;
mod names;
mod push;
mod ready;
mod registry;
mod release;
pub mod sample;
mod signed;
mod upload;
mod verdict;

pub use api::{
    ApiError, Drain, PushRow, ReleaseAccepted, ReleaseRow, SyncRow, Timeline, UPLOAD_HEADER,
    UploadAccepted, paths,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error_code::ErrorCode;
#[cfg(feature = "sign")]
pub use key::SecretKey;
pub use key::{KeyError, PublicKey};
pub use manifest::{
    DatabaseState, Freshness, INLINE_MAX, INLINE_TOTAL, MANIFEST_PATH, Manifest, ManifestError,
    VersionRecord,
};
#[cfg(feature = "sign")]
pub use mirror_request::pull_authorization;
pub use mirror_request::{
    JoinState, JoinStatus, JoinView, MAX_REQUEST_BYTES, MirrorAction, MirrorChanges, MirrorRequest,
    PULL_AUTH_SCHEME, PendingJoin, PullAuth, PullAuthError, RegistryEvent, RequestError,
    check_mirror_fields, rotate_message,
};
pub use names::{is_safe_db_name, is_safe_file_name};
pub use push::{
    LeafTarget, PushError, PushNotice, RelayOutcome, ReplayGuard, SYNC_REPORT_PATH, SyncReport,
};
pub use ready::{DevDatabase, DevDirectory, DevIntake, DevNetwork, READY_EVENT, Ready, ReadyError};
pub use registry::{
    HubError, MaintenanceWindow, MirrorRecord, RegistryEntry, RegistryExport, check_hubs,
    relaying_hub,
};
pub use release::{FileRef, ObjectRef, ReleaseError, ReleaseStatement};
pub use signed::{DocKind, Document, Signed, VerifyError};
pub use upload::UploadTicket;
pub use verdict::{MirrorState, MirrorVerdict, VerdictReport};

/// Lower-case hex of a byte string.
pub use vdb_format::sigenc::hex;

/// SHA-256 of `data` as lower-case hex: the content address used everywhere in vdbnet.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(data))
}
