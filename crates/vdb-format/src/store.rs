//! Where an unpacked database lives: in memory or in a directory.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::names::is_safe_member_name;

/// A flat set of named files: an unpacked database.
pub trait FileStore {
    /// The file's bytes, or `None` if it does not exist.
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Creates or replaces a file.
    fn write(&mut self, name: &str, data: &[u8]) -> io::Result<()>;
    /// The file's bytes, borrowed when the store holds them in memory.
    fn read_cow(&self, name: &str) -> io::Result<Option<Cow<'_, [u8]>>> {
        Ok(self.read(name)?.map(Cow::Owned))
    }
    /// Creates or replaces a file, taking the bytes (stores that keep files in memory avoid a
    /// copy).
    fn write_owned(&mut self, name: &str, data: Vec<u8>) -> io::Result<()> {
        self.write(name, &data)
    }
    /// Deletes a file; returns whether it existed.
    fn remove(&mut self, name: &str) -> io::Result<bool>;
    /// Every file name, sorted.
    fn names(&self) -> io::Result<Vec<String>>;
}

impl FileStore for BTreeMap<String, Vec<u8>> {
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.get(name).cloned())
    }
    fn write(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.insert(name.to_owned(), data.to_vec());
        Ok(())
    }
    fn read_cow(&self, name: &str) -> io::Result<Option<Cow<'_, [u8]>>> {
        Ok(self.get(name).map(|v| Cow::Borrowed(v.as_slice())))
    }
    fn write_owned(&mut self, name: &str, data: Vec<u8>) -> io::Result<()> {
        self.insert(name.to_owned(), data);
        Ok(())
    }
    fn remove(&mut self, name: &str) -> io::Result<bool> {
        Ok(Self::remove(self, name).is_some())
    }
    fn names(&self) -> io::Result<Vec<String>> {
        Ok(self.keys().cloned().collect())
    }
}

/// A database directory on disk. Only safe flat names are accepted; every write goes to a
/// temporary file that is fsynced and renamed into place, so a crash leaves each file either
/// old or new.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl DirStore {
    /// Uses an existing directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        if !is_safe_member_name(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsafe file name {name:?}"),
            ));
        }
        Ok(self.root.join(name))
    }
}

/// Writes `data` to `path` atomically: temp file in the same directory, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(data))
}

/// Like [`write_atomic`], for secrets: the file is created readable by its owner only (0600)
/// and never exists with other permissions, not even as the temporary file.
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    atomic(path, Some(0o600), |w| w.write_all(data))
}

/// Writes `path` atomically from a writer (for output too large to build in memory first):
/// `write` fills a temporary file in the same directory, which is then fsynced and renamed over
/// `path`, and the directory fsynced. On any error `path` is untouched and the temporary file
/// removed.
pub fn write_atomic_with<T>(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<T>,
) -> io::Result<T> {
    atomic(path, None, write)
}

fn atomic<T>(
    path: &Path,
    mode: Option<u32>,
    write: impl FnOnce(&mut dyn Write) -> io::Result<T>,
) -> io::Result<T> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        if let Some(mode) = mode {
            options.mode(mode);
        }
        let f = options.open(&tmp)?;
        let mut w = io::BufWriter::with_capacity(1 << 20, f);
        let value = write(&mut w)?;
        let f = w.into_inner().map_err(io::IntoInnerError::into_error)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()?;
        Ok(value)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl FileStore for DirStore {
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(name)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn write(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        write_atomic(&self.path(name)?, data)
    }
    fn remove(&mut self, name: &str) -> io::Result<bool> {
        match fs::remove_file(self.path(name)?) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
    fn names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            if let Some(name) = entry
                .file_name()
                .to_str()
                .filter(|n| is_safe_member_name(n))
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn atomic_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");

        // A failing writer leaves the old file and no temporary file behind.
        let err = write_atomic_with(&p, |w| {
            w.write_all(b"half")?;
            Err::<(), _>(io::Error::other("boom"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "boom");
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let s = dir.path().join("secret");
        write_private(&s, b"key").unwrap();
        assert_eq!(
            fs::metadata(&s).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read(&s).unwrap(), b"key");
    }
}
