//! The content-addressed object store: `<dir>/<sha256>`, immutable, written atomically.

use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Why an object could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The address is not 64 lower-case hex digits.
    #[error("object address {0:?} is not a SHA-256 (64 lower-case hex digits)")]
    BadAddress(String),
    /// The bytes do not hash to the address.
    #[error("uploaded bytes hash to {got}, not to the address {want}")]
    HashMismatch {
        /// The address.
        want: String,
        /// The actual hash.
        got: String,
    },
    /// Larger than allowed.
    #[error("object is larger than the limit of {0} bytes")]
    TooLarge(u64),
    /// Disk trouble.
    #[error("object store: {0}")]
    Io(#[from] io::Error),
}

/// Whether `s` is a lower-case hex SHA-256.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The object directory.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    dir: PathBuf,
}

/// An object being written: bytes go to a temp file and are hashed on the way.
#[derive(Debug)]
pub struct Upload {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl Upload {
    /// Appends bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<(), ObjectError> {
        self.size += data.len() as u64;
        if self.size > self.limit {
            return Err(ObjectError::TooLarge(self.limit));
        }
        self.hasher.update(data);
        self.file.write_all(data)?;
        Ok(())
    }
}

impl ObjectStore {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The path of object `sha256` (checked address).
    pub fn path(&self, sha256: &str) -> Result<PathBuf, ObjectError> {
        if !is_sha256(sha256) {
            return Err(ObjectError::BadAddress(sha256.to_owned()));
        }
        Ok(self.dir.join(sha256))
    }

    /// Whether the object exists, and its size.
    pub fn size(&self, sha256: &str) -> Option<u64> {
        let p = self.path(sha256).ok()?;
        std::fs::metadata(p).ok().map(|m| m.len())
    }

    /// Starts an upload capped at `limit` bytes.
    pub fn begin(&self, limit: u64) -> Result<Upload, ObjectError> {
        Ok(Upload {
            file: tempfile::NamedTempFile::new_in(self.dir.join("tmp"))?,
            hasher: Sha256::new(),
            size: 0,
            limit,
        })
    }

    /// Finishes an upload: checks the hash against `want` and renames it into place (fsynced).
    /// Returns the size.
    pub fn finish(&self, upload: Upload, want: &str) -> Result<u64, ObjectError> {
        let path = self.path(want)?;
        let got = vdb_proto::hex(&upload.hasher.finalize());
        if got != want {
            return Err(ObjectError::HashMismatch {
                want: want.to_owned(),
                got,
            });
        }
        if path.exists() {
            return Ok(upload.size);
        }
        upload.file.as_file().sync_all()?;
        upload
            .file
            .persist(&path)
            .map_err(|e| ObjectError::Io(e.error))?;
        if let Ok(d) = std::fs::File::open(&self.dir) {
            d.sync_all()?;
        }
        Ok(upload.size)
    }

    /// Finishes an upload whose address is not known in advance: stores it under the hash of
    /// its bytes. Returns the address and the size.
    pub fn finish_any(&self, upload: Upload) -> Result<(String, u64), ObjectError> {
        let sha = vdb_proto::hex(&upload.hasher.clone().finalize());
        let size = self.finish(upload, &sha)?;
        Ok((sha, size))
    }

    /// Deletes objects for which `keep` is false and whose file is older than `min_age`, and
    /// stale temporary files. Returns how many objects went.
    pub fn prune(
        &self,
        keep: impl Fn(&str) -> bool,
        min_age: std::time::Duration,
    ) -> io::Result<usize> {
        let old = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= min_age)
        };
        let mut n = 0;
        for e in std::fs::read_dir(&self.dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_sha256(name) && !keep(name) && old(&e.path()) {
                std::fs::remove_file(e.path())?;
                n += 1;
            }
        }
        for e in std::fs::read_dir(self.dir.join("tmp"))? {
            let e = e?;
            if old(&e.path()) && min_age >= std::time::Duration::from_secs(3600) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(n)
    }

    /// Stores bytes in memory (derived files), returning their address.
    pub fn put(&self, data: &[u8]) -> Result<String, ObjectError> {
        let sha = vdb_proto::sha256_hex(data);
        let path = self.path(&sha)?;
        if !path.exists() {
            vdb_format::write_atomic(&path, data)?;
        }
        Ok(sha)
    }

    /// Reads a whole object (at most `limit` bytes) and checks its hash.
    pub fn read(&self, sha256: &str, limit: u64) -> Result<Vec<u8>, ObjectError> {
        let f = std::fs::File::open(self.path(sha256)?)?;
        let mut data = Vec::new();
        f.take(limit.saturating_add(1)).read_to_end(&mut data)?;
        if data.len() as u64 > limit {
            return Err(ObjectError::TooLarge(limit));
        }
        let got = vdb_proto::sha256_hex(&data);
        if got != sha256 {
            return Err(ObjectError::HashMismatch {
                want: sha256.to_owned(),
                got,
            });
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_checks_hash_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let s = ObjectStore::open(dir.path()).unwrap();
        let want = vdb_proto::sha256_hex(b"hello");
        let mut u = s.begin(10).unwrap();
        u.write(b"hello").unwrap();
        assert_eq!(s.finish(u, &want).unwrap(), 5);
        assert_eq!(s.read(&want, 10).unwrap(), b"hello");
        let mut u = s.begin(10).unwrap();
        u.write(b"hellO").unwrap();
        assert!(matches!(
            s.finish(u, &want),
            Err(ObjectError::HashMismatch { .. })
        ));
        let mut u = s.begin(3).unwrap();
        assert!(matches!(u.write(b"hello"), Err(ObjectError::TooLarge(3))));
        assert!(matches!(s.path("../x"), Err(ObjectError::BadAddress(_))));
    }

    #[test]
    fn prune_keeps_what_is_referenced() {
        let dir = tempfile::tempdir().unwrap();
        let s = ObjectStore::open(dir.path()).unwrap();
        let a = s.put(b"kept").unwrap();
        let b = s.put(b"orphan").unwrap();
        let day = std::time::Duration::from_secs(86_400);
        assert_eq!(s.prune(|_| false, day).unwrap(), 0, "young objects stay");
        assert_eq!(s.prune(|x| x == a, std::time::Duration::ZERO).unwrap(), 1);
        assert!(s.size(&a).is_some());
        assert!(s.size(&b).is_none());
    }
}
