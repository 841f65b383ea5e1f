//! The publisher's release statement.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::signed::{DocKind, Document};
use crate::{is_safe_db_name, is_safe_file_name};

/// One file of a release or a manifest: name, size and SHA-256 (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FileRef {
    /// The flat file name a mirror serves it under (`daily.cvd`, `daily-27543.cdiff`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// The segment map of a large container (`vdb_format::segment::SegmentMap` as JSON),
    /// published by the master as an object: a mirror holding the previous release rebuilds
    /// this file from it and fetches only what it cannot re-create. Absent in release
    /// statements, for small files and in manifests of masters older than the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<ObjectRef>,
}

/// A content-addressed object that is not served as a file (e.g. a segment map).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRef {
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FileRef {
    /// A reference without a segment map.
    pub fn new(name: impl Into<String>, size: u64, sha256: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            size,
            sha256: sha256.into(),
            segments: None,
        }
    }

    /// Whether the name is safe and the hash is 64 lower-case hex digits.
    pub fn check(&self) -> Result<(), ReleaseError> {
        if !is_safe_file_name(&self.name) {
            return Err(ReleaseError::UnsafeName(self.name.clone()));
        }
        if !is_hex64(&self.sha256) || self.segments.as_ref().is_some_and(|s| !is_hex64(&s.sha256)) {
            return Err(ReleaseError::BadHash(self.name.clone()));
        }
        Ok(())
    }
}

/// What a publisher signs: "database `db` at `version` consists of exactly these files".
///
/// `issued_at` bounds replays: a master refuses statements issued too long ago or in the future.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseStatement {
    /// Database name (`daily`, `main`, …).
    pub db: String,
    /// The database version this release brings.
    pub version: u32,
    /// When the database was built (Unix seconds; the CVD header's build time for CVDs).
    pub built_at: i64,
    /// When the publisher signed this statement (Unix seconds).
    pub issued_at: i64,
    /// Every file of the release.
    pub files: Vec<FileRef>,
    /// Free-text release notes for the announcement.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

impl Document for ReleaseStatement {
    const KIND: DocKind = DocKind::Release;
}

/// Why a release statement is malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    /// Database names are `[a-z0-9_-]`.
    #[error("database name {0:?} is not allowed (use lower-case letters, digits, '_' and '-')")]
    BadDbName(String),
    /// A file name that could escape a directory or is otherwise not servable.
    #[error("file name {0:?} is not allowed (flat names of [A-Za-z0-9._-], no '..', no local_*)")]
    UnsafeName(String),
    /// The hash is not 64 lower-case hex digits.
    #[error("file {0:?}: sha256 must be 64 lower-case hex digits")]
    BadHash(String),
    /// The same name twice.
    #[error("file {0:?} is listed twice")]
    Duplicate(String),
    /// A release with nothing in it.
    #[error("the release lists no files")]
    Empty,
    /// Version 0 means "no database" in ClamAV.
    #[error("version must be at least 1")]
    ZeroVersion,
}

impl ReleaseStatement {
    /// Checks the statement's own shape (names, hashes, duplicates); not the files' contents.
    pub fn check(&self) -> Result<(), ReleaseError> {
        if !is_safe_db_name(&self.db) {
            return Err(ReleaseError::BadDbName(self.db.clone()));
        }
        if self.version == 0 {
            return Err(ReleaseError::ZeroVersion);
        }
        if self.files.is_empty() {
            return Err(ReleaseError::Empty);
        }
        let mut seen = BTreeSet::new();
        for f in &self.files {
            f.check()?;
            if !seen.insert(f.name.as_str()) {
                return Err(ReleaseError::Duplicate(f.name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt() -> ReleaseStatement {
        ReleaseStatement {
            db: "daily".into(),
            version: 2,
            built_at: 1,
            issued_at: 2,
            files: vec![FileRef {
                name: "daily.cvd".into(),
                size: 10,
                sha256: "a".repeat(64),
                segments: None,
            }],
            notes: String::new(),
        }
    }

    #[test]
    fn checks() {
        assert_eq!(stmt().check(), Ok(()));
        let mut s = stmt();
        s.files.push(s.files[0].clone());
        assert_eq!(s.check(), Err(ReleaseError::Duplicate("daily.cvd".into())));
        let mut s = stmt();
        s.files[0].name = "../daily.cvd".into();
        assert!(matches!(s.check(), Err(ReleaseError::UnsafeName(_))));
        let mut s = stmt();
        s.files[0].sha256 = "A".repeat(64);
        assert!(matches!(s.check(), Err(ReleaseError::BadHash(_))));
        let mut s = stmt();
        s.db = "Daily".into();
        assert!(matches!(s.check(), Err(ReleaseError::BadDbName(_))));
        let mut s = stmt();
        s.files.clear();
        assert_eq!(s.check(), Err(ReleaseError::Empty));
        let mut s = stmt();
        s.version = 0;
        assert_eq!(s.check(), Err(ReleaseError::ZeroVersion));
    }

    #[test]
    fn segments_are_optional_on_the_wire_and_checked() {
        // A reference from before the field parses, and one without it serializes the same.
        let old = r#"{"name":"daily.cvd","size":10,"sha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;
        let f: FileRef = serde_json::from_str(old).unwrap();
        assert_eq!(f, FileRef::new("daily.cvd", 10, "a".repeat(64)));
        assert_eq!(serde_json::to_string(&f).unwrap(), old);
        let mut with = f.clone();
        with.segments = Some(ObjectRef {
            sha256: "b".repeat(64),
            size: 99,
        });
        let text = serde_json::to_string(&with).unwrap();
        assert!(text.contains(r#""segments":{"sha256":"#), "{text}");
        assert_eq!(serde_json::from_str::<FileRef>(&text).unwrap(), with);
        assert_eq!(with.check(), Ok(()));
        with.segments = Some(ObjectRef {
            sha256: "B".repeat(64),
            size: 99,
        });
        assert_eq!(with.check(), Err(ReleaseError::BadHash("daily.cvd".into())));
    }
}
