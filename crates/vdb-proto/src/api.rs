//! HTTP API shapes shared by the roles.

use serde::{Deserialize, Serialize};

/// Paths of the master's HTTP API.
pub mod paths {
    /// `PUT /api/v1/objects/<sha256>`: upload one file's bytes (publisher, authenticated by the
    /// later statement); `GET` fetches an object (mirrors, peers).
    pub const OBJECTS: &str = "/api/v1/objects";
    /// `POST /api/v1/releases`: submit a signed release statement; `GET ?after=N` lists them.
    pub const RELEASES: &str = "/api/v1/releases";
    /// `GET`: the mirror registry's public records; `POST`/`PUT`/`DELETE` (admin token) manage it.
    pub const MIRRORS: &str = "/api/v1/mirrors";
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
