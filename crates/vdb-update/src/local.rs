//! The database directory: what is installed, staging next to it, atomic installation and
//! pruning. A crash at any point leaves every installed file either old or new, complete.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use vdb_format::{Header, Kind};

/// Prefix of the staging directories made inside the database directory.
pub const STAGING_PREFIX: &str = "tmp.vdb-update-";

/// An installed database container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalDb {
    /// Its path.
    pub path: PathBuf,
    /// `.cvd` or `.cld`.
    pub kind: Kind,
    /// Its header.
    pub header: Header,
}

impl LocalDb {
    /// Its version.
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// Its build time (used as If-Modified-Since), if the header has it.
    pub fn build_secs(&self) -> Option<i64> {
        self.header.build_secs.and_then(|s| i64::try_from(s).ok())
    }
}

fn read_header(path: &Path) -> io::Result<Option<Header>> {
    match fs::File::open(path) {
        Ok(f) => Ok(vdb_format::container::read_header(f).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The installed copy of `db`: the higher version of `db.cvd` and `db.cld` (the CLD on a tie,
/// which is what ClamAV loads). A file whose header cannot be read counts as absent. Returns
/// the chosen copy and the other, superseded one if both exist.
pub fn find(dir: &Path, db: &str) -> io::Result<(Option<LocalDb>, Option<PathBuf>)> {
    let mut found = Vec::new();
    for kind in [Kind::Cld, Kind::Cvd] {
        let path = dir.join(format!("{db}.{}", kind.extension()));
        if let Some(header) = read_header(&path)? {
            found.push(LocalDb { path, kind, header });
        }
    }
    found.sort_by_key(|l| std::cmp::Reverse(l.header.version));
    let mut it = found.into_iter();
    let best = it.next();
    let other = it.next().map(|l| l.path);
    Ok((best, other))
}

/// Temporary names `write_atomic` gives our state files.
const OWN_TEMP_PREFIXES: [&str; 4] = [
    ".freshclam.dat.tmp-",
    ".vdb-update-health.json.tmp-",
    ".vdbnet-manifest.json.tmp-",
    ".vdbnet-floor.json.tmp-",
];

/// Removes staging directories and state-file temporaries left by an interrupted run.
pub fn clean_staging(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(STAGING_PREFIX) && entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
            n += 1;
        } else if OWN_TEMP_PREFIXES.iter().any(|p| name.starts_with(p))
            && entry.file_type()?.is_file()
        {
            // A state file's temporary copy (write_atomic) left by a killed run.
            fs::remove_file(entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}

/// A fresh staging directory inside the database directory (same file system, so
/// installation is a rename). Removed when dropped.
pub fn staging(dir: &Path) -> io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Moves a complete, verified, staged file to `dir/name` atomically (fsync, rename, fsync of
/// the directory), then removes the files in `superseded` (other than `name`).
pub fn install(staged: &Path, dir: &Path, name: &str, superseded: &[PathBuf]) -> io::Result<()> {
    fs::File::open(staged)?.sync_all()?;
    let dest = dir.join(name);
    fs::rename(staged, &dest)?;
    sync_dir(dir)?;
    let mut removed = false;
    for old in superseded {
        if *old != dest {
            match fs::remove_file(old) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Deletes `*.cvd` / `*.cld` files whose database is not in `keep` and whose file name is
/// not in `keep_files` (freshclam's "Pruning unwanted or deprecated database file").
/// Returns the removed file names.
pub fn prune(dir: &Path, keep: &[String], keep_files: &[String]) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((stem, ext)) = name.rsplit_once('.') else {
            continue;
        };
        if !matches!(ext, "cvd" | "cld") {
            continue;
        }
        if keep.iter().any(|k| k == stem) || keep_files.contains(&name) {
            continue;
        }
        fs::remove_file(entry.path())?;
        removed.push(name);
    }
    removed.sort();
    Ok(removed)
}

/// Name of the lock file in the database directory.
pub const LOCK_FILE: &str = "vdb-update.lock";

/// Held while a run uses the database directory; removed when dropped. A lock left by a killed
/// process (its pid no longer exists) is taken over.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock, or says which process holds it.
    pub fn acquire(dir: &Path) -> io::Result<Self> {
        let path = dir.join(LOCK_FILE);
        let me = std::process::id();
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    writeln!(f, "{me}")?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if pid != me && Path::new(&format!("/proc/{pid}")).exists() => {
                            return Err(io::Error::new(
                                io::ErrorKind::WouldBlock,
                                format!(
                                    "another updater (pid {pid}) is using {}; try again later",
                                    dir.display()
                                ),
                            ));
                        }
                        // Stale (or unreadable): take it over.
                        _ => {
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("cannot take {}", path.display()),
        ))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_excludes_live_holders_and_takes_over_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        // pid 1 is alive (init) in any Linux pid namespace.
        fs::write(dir.path().join(LOCK_FILE), "1\n").unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err();
        assert!(err.to_string().contains("pid 1"), "{err}");
        // A pid that cannot exist.
        fs::write(dir.path().join(LOCK_FILE), "4294967295\n").unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        drop(lock);
        assert!(!dir.path().join(LOCK_FILE).exists());
    }

    #[test]
    fn find_prefers_the_higher_version() {
        let dir = tempfile::tempdir().unwrap();
        let fx = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/clamav"
        );
        fs::copy(format!("{fx}/test-3.cvd"), dir.path().join("test.cvd")).unwrap();
        fs::copy(
            format!("{fx}/derived/test-6.from-cdiffs.cld"),
            dir.path().join("test.cld"),
        )
        .unwrap();
        let (best, other) = find(dir.path(), "test").unwrap();
        assert_eq!(best.unwrap().version(), 6);
        assert_eq!(other.unwrap(), dir.path().join("test.cvd"));
        // A truncated file counts as absent.
        fs::write(dir.path().join("test.cld"), b"ClamAV-VDB:").unwrap();
        let (best, other) = find(dir.path(), "test").unwrap();
        assert_eq!(best.unwrap().version(), 3);
        assert!(other.is_none());
    }
}
