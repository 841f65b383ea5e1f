//! The operator's `local_*` files, rescanned every few seconds and served from memory (small
//! files) or streamed from disk (large ones). Sync never writes here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::UNIX_EPOCH;

use bytes::Bytes;

use crate::store::{CacheClass, Entry};

/// Files up to this size are held in memory.
const SMALL: u64 = 256 * 1024;

/// The current view of the local directory.
pub(crate) type LocalFiles = RwLock<Arc<HashMap<String, Arc<Entry>>>>;

fn servable(name: &str) -> bool {
    name.starts_with("local_")
        && crate::files::file_name(&format!("/{name}")).is_ok_and(|n| n == name)
}

/// Reads the directory; unchanged files (same mtime and size) keep their entries.
pub(crate) fn scan(dir: &Path, old: &HashMap<String, Arc<Entry>>) -> HashMap<String, Arc<Entry>> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !servable(&name) {
            continue;
        }
        let path = e.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let Ok(mtime) = meta.modified() else { continue };
        let nanos = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let etag = format!("\"l{nanos:x}-{:x}\"", meta.len());
        if let Some(o) = old.get(&name).filter(|o| o.etag == etag) {
            out.insert(name, o.clone());
            continue;
        }
        let data = if meta.len() <= SMALL {
            match std::fs::read(&path) {
                Ok(d) if d.len() as u64 == meta.len() => Some(Bytes::from(d)),
                _ => continue,
            }
        } else {
            None
        };
        let entry = Entry::new(
            path,
            meta.len(),
            etag,
            crate::store::secs(mtime),
            CacheClass::Mutable,
            data,
            Bytes::new(),
        );
        out.insert(name, Arc::new(entry));
    }
    out
}

/// Rescans into `files`. The write lock is taken only when something changed: the serve
/// threads read `files` on every `local_*` request, and a writer waiting for the lock makes
/// them wait too, for as long as the rescanning thread waits for a CPU on a busy machine.
pub(crate) fn refresh(dir: &Path, files: &LocalFiles) {
    let old = files.read().unwrap_or_else(|e| e.into_inner()).clone();
    let new = scan(dir, &old);
    if unchanged(&old, &new) {
        return;
    }
    let previous = std::mem::replace(
        &mut *files.write().unwrap_or_else(|e| e.into_inner()),
        Arc::new(new),
    );
    // Freed after the lock is released.
    drop(previous);
}

/// Whether a rescan found the same entries (same names, the very same `Entry` each).
fn unchanged(old: &HashMap<String, Arc<Entry>>, new: &HashMap<String, Arc<Entry>>) -> bool {
    old.len() == new.len()
        && new
            .iter()
            .all(|(name, e)| old.get(name).is_some_and(|o| Arc::ptr_eq(o, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_only_local_names_and_reuses_unchanged() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("local_logo.png"), b"png").unwrap();
        std::fs::write(d.path().join("daily.cvd"), b"no").unwrap();
        std::fs::write(d.path().join("local_bad name"), b"no").unwrap();
        std::fs::create_dir(d.path().join("local_dir")).unwrap();
        let a = scan(d.path(), &HashMap::new());
        assert_eq!(a.len(), 1);
        assert_eq!(a["local_logo.png"].data.as_deref(), Some(&b"png"[..]));
        let b = scan(d.path(), &a);
        assert!(Arc::ptr_eq(&a["local_logo.png"], &b["local_logo.png"]));
        assert!(unchanged(&a, &b));
    }

    #[test]
    fn refresh_swaps_only_on_a_change() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("local_a.txt"), b"a").unwrap();
        let files: LocalFiles = RwLock::new(Arc::new(scan(d.path(), &HashMap::new())));
        let before = files.read().unwrap().clone();
        refresh(d.path(), &files);
        assert!(
            Arc::ptr_eq(&before, &files.read().unwrap()),
            "nothing changed"
        );
        std::fs::write(d.path().join("local_b.txt"), b"b").unwrap();
        refresh(d.path(), &files);
        let after = files.read().unwrap().clone();
        assert!(!Arc::ptr_eq(&before, &after));
        assert_eq!(after.len(), 2);
        assert!(Arc::ptr_eq(&before["local_a.txt"], &after["local_a.txt"]));
        std::fs::remove_file(d.path().join("local_a.txt")).unwrap();
        refresh(d.path(), &files);
        assert_eq!(
            files.read().unwrap().len(),
            1,
            "a removed file is no longer served"
        );
    }
}
