//! The publisher's upload ticket: proof that an object upload comes from a listed publisher key.

use serde::{Deserialize, Serialize};

use crate::signed::{DocKind, Document};

/// "I, the signer, upload the object with this hash and size now". Sent (as a one-line
/// [`crate::Signed`] envelope) in the `X-Vdb-Upload` header of `PUT /api/v1/objects/<sha256>`.
/// Uploads are content-addressed and idempotent, so a replayed ticket can only upload the same
/// bytes again; `issued_at` bounds how long a captured ticket is usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadTicket {
    /// SHA-256 of the object, lower-case hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// When the publisher signed the ticket (Unix seconds).
    pub issued_at: i64,
}

impl Document for UploadTicket {
    const KIND: DocKind = DocKind::Upload;
}
