//! HTTP API shapes shared by the roles.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// Paths of the master's HTTP API.
pub mod paths {
    /// `PUT /api/v1/objects/<sha256>`: upload one file's bytes (publisher, authenticated by the
    /// later statement); `GET` fetches an object (mirrors, peers).
    pub const OBJECTS: &str = "/api/v1/objects";
    /// `POST /api/v1/releases`: submit a signed release statement; `GET ?after=N` lists them.
    pub const RELEASES: &str = "/api/v1/releases";
    /// `GET`: the mirror registry's public records; `POST`/`PUT`/`DELETE` (admin token) manage it.
    pub const MIRRORS: &str = "/api/v1/mirrors";
    /// `POST`: a mirror's signed join request; `GET` (admin token) lists the requests;
    /// `GET <name>` is one request's state, `POST <name>/approve` and `<name>/reject` decide it.
    pub const JOIN: &str = "/api/v1/join";
    /// `GET`: a master's public status (releases, peers, upstream, pending join requests by
    /// name).
    pub const STATUS: &str = "/api/v1/status";
    /// `POST`: a signed push notice (on a mirror).
    pub const PUSH: &str = "/.well-known/vdbnet/push";
    /// Prometheus metrics on every role.
    pub const METRICS: &str = "/metrics";
    /// Liveness on every role: `200 ok`.
    pub const HEALTH: &str = "/healthz";
}

/// The JSON body of every error answer: a machine code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable machine-readable code (`bad_signature`, `older_version`, `replay`, …).
    pub code: String,
    /// The exact reason, in words a publisher or operator can act on.
    pub message: String,
}

impl ApiError {
    /// An error body with a master API code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code.as_str().to_owned(),
            message: message.into(),
        }
    }

    /// The code as an [`ErrorCode`]; `None` for a code this build does not know (a newer
    /// server, another role, or an answer that was not an API error).
    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code)
    }
}

/// Answer to an object upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadAccepted {
    /// The object's SHA-256.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Answer to an accepted release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseAccepted {
    /// The release id (SHA-256 of the signed statement's payload).
    pub release_id: String,
    /// The name of the master that took it.
    pub master: String,
    /// Database name.
    pub db: String,
    /// Its new version.
    pub version: u32,
    /// The manifest serial that includes it.
    pub serial: u64,
}

// The master API's record shapes (shared by the master and its clients).

/// Header carrying the upload ticket envelope on `PUT /api/v1/objects/<sha256>`.
pub const UPLOAD_HEADER: &str = "x-vdb-upload";

/// One row of the release history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRow {
    /// Local sequence number.
    pub seq: i64,
    /// Release id (SHA-256 of the signed statement payload).
    pub id: String,
    /// Database.
    pub db: String,
    /// Version.
    pub version: u32,
    /// The publisher key.
    pub publisher: String,
    /// The signed statement envelope (JSON).
    pub envelope: String,
    /// `accepted` or `refused`.
    pub verdict: String,
    /// Refusal code.
    pub code: Option<String>,
    /// Refusal reason.
    pub reason: Option<String>,
    /// `publisher`, `peer:<url>` or `upstream`.
    pub origin: String,
    /// When the master received it.
    pub received_at: i64,
    /// The first manifest serial that included it.
    pub serial: Option<u64>,
    /// When that manifest was signed.
    pub published_at: Option<i64>,
}

/// One push attempt series to one mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRow {
    /// Manifest serial pushed.
    pub serial: u64,
    /// Mirror name.
    pub mirror: String,
    /// Forced sync.
    pub forced: bool,
    /// First attempt.
    pub sent_at: i64,
    /// Acknowledged (202) at.
    pub acked_at: Option<i64>,
    /// Attempts made.
    pub attempts: u32,
    /// Last error.
    pub error: Option<String>,
    /// The hub that relayed the notice to this leaf (none: a master pushed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// One sync a mirror reported ([`crate::SyncReport`]), as the release timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRow {
    /// The serial the mirror serves after it.
    pub serial: u64,
    /// The mirror.
    pub mirror: String,
    /// `updated` or `up_to_date`.
    pub outcome: String,
    /// Object bytes downloaded in all.
    pub bytes: u64,
    /// Of those, from hubs.
    pub hub_bytes: u64,
    /// Where the manifest came from (`master`, `hub:<url>`).
    pub source: String,
    /// How long the sync took (ms).
    pub duration_ms: u64,
    /// When the master received the report (Unix seconds).
    pub reported_at: i64,
}

/// `GET /api/v1/releases/<id>`: the release and its rollout timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timeline {
    /// The release row.
    pub release: ReleaseRow,
    /// Pushes of the manifest that first included it and of later ones.
    pub pushes: Vec<PushRow>,
    /// First acknowledgement per mirror (mirror, serial, time), relayed pushes included.
    pub acks: Vec<(String, u64, i64)>,
    /// The syncs the mirrors reported for those serials (every leaf too: the end-to-end
    /// acknowledgement, with bytes pulled and where from), oldest first.
    #[serde(default)]
    pub syncs: Vec<SyncRow>,
}

/// Body of `POST /api/v1/mirrors/<name>/drain`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Drain {
    /// Drain (true, the default) or put back (false).
    #[serde(default = "yes")]
    pub drained: bool,
}
fn yes() -> bool {
    true
}
