//! The mirror's disk layout: content-addressed objects, immutable snapshot directories and the
//! `current` symlink that names the served one.
//!
//! ```text
//! <data_dir>/objects/<sha256>            verified file contents (written via tmp/, fsync, rename)
//! <data_dir>/snapshots/<id>/<name>       hard links to objects + `.manifest.json` (the envelope;
//!                                        the small files it carries have no file of their own)
//! <data_dir>/current -> snapshots/<id>   replaced by rename: the switch
//! <data_dir>/tmp/                        downloads and snapshots being built (emptied at start)
//! <data_dir>/sync.lock                   flock: one sync at a time, across processes
//! ```
//!
//! A kill at any point leaves `current` naming either the old or the new complete snapshot: a
//! snapshot directory is complete (files linked, envelope written, all fsynced) before it is
//! renamed into `snapshots/`, and `current` moves only after that.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::Digest as _;
use vdb_proto::{FileRef, Manifest, PublicKey, Signed};

/// File name of the manifest envelope inside a snapshot (a leading dot never names a file).
pub(crate) const ENVELOPE: &str = ".manifest.json";
/// The anti-rollback floor, beside `current`: database → the highest version ever served.
const FLOOR: &str = "floor.json";
/// Files up to this size are held in memory by the server.
const SMALL: u64 = 256 * 1024;
/// Bytes of every larger file held in memory (covers freshclam's 512-byte header probe).
const HEAD: usize = 4096;

/// Errors of the on-disk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O failure on a path.
    #[error("{path}: {source} (check the data directory's permissions and free space)")]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// A snapshot on disk does not match its manifest.
    #[error("snapshot {id}: {reason}")]
    Inconsistent {
        /// The snapshot id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How a served file may be cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheClass {
    /// Content never changes under this name (`*.cdiff`, `*.cdiff.sign`).
    Immutable,
    /// The name gets new content with new releases.
    Mutable,
}

impl CacheClass {
    pub(crate) fn of(name: &str) -> Self {
        if name.ends_with(".cdiff") || name.ends_with(".cdiff.sign") {
            Self::Immutable
        } else {
            Self::Mutable
        }
    }
}

/// One servable file of a snapshot.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    /// Strong ETag, quoted.
    pub(crate) etag: String,
    /// Unix seconds.
    pub(crate) modified: u64,
    pub(crate) cache: CacheClass,
    /// The whole content, for small files.
    pub(crate) data: Option<Bytes>,
    /// The first bytes, for large files.
    pub(crate) head: Bytes,
    /// `ETag`, `Last-Modified` and the whole file's `Content-Length` as header values
    /// (computed once per snapshot, not per request).
    pub(crate) etag_value: http::HeaderValue,
    pub(crate) modified_value: http::HeaderValue,
    pub(crate) size_value: http::HeaderValue,
}

impl Entry {
    pub(crate) fn new(
        path: PathBuf,
        size: u64,
        etag: String,
        modified: u64,
        cache: CacheClass,
        data: Option<Bytes>,
        head: Bytes,
    ) -> Self {
        let date = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(modified));
        Self {
            etag_value: http::HeaderValue::from_str(&etag)
                .unwrap_or_else(|_| http::HeaderValue::from_static("\"-\"")),
            modified_value: http::HeaderValue::from_str(&date).unwrap_or_else(|_| {
                http::HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT")
            }),
            size_value: http::HeaderValue::from(size),
            path,
            size,
            etag,
            modified,
            cache,
            data,
            head,
        }
    }
}

/// A complete, verified served set.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) id: String,
    pub(crate) manifest: Manifest,
    pub(crate) envelope: Entry,
    pub(crate) files: HashMap<String, Entry>,
    /// The segment maps held of its large containers, by SHA-256 (a hub serves them).
    pub(crate) maps: HashMap<String, Entry>,
}

/// The data directory.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    root: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{nanos}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Store {
    /// Opens (and creates) the layout under `root`.
    pub(crate) fn open(root: &Path) -> Result<Self, StoreError> {
        let store = Self {
            root: root.to_owned(),
        };
        for d in [
            store.root.clone(),
            store.objects(),
            store.snapshots(),
            store.tmp(),
        ] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(store)
    }

    pub(crate) fn objects(&self) -> PathBuf {
        self.root.join("objects")
    }
    pub(crate) fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    pub(crate) fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub(crate) fn lock_path(&self) -> PathBuf {
        self.root.join("sync.lock")
    }
    pub(crate) fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }
    pub(crate) fn object(&self, sha256: &str) -> PathBuf {
        self.objects().join(sha256)
    }

    /// A fresh path for a download in `tmp/`.
    pub(crate) fn tmp_file(&self, what: &str) -> PathBuf {
        self.tmp().join(format!("{what}.{}", unique()))
    }

    /// Takes the cross-process sync lock (blocking until the holder releases it).
    pub(crate) fn lock(&self) -> Result<fs::File, StoreError> {
        let path = self.lock_path();
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_err(&path)(e.into()))?;
        Ok(f)
    }

    /// Removes leftovers of interrupted syncs (call with the lock held).
    pub(crate) fn clean_tmp(&self) -> Result<(), StoreError> {
        let tmp = self.tmp();
        for e in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let p = e.map_err(io_err(&tmp))?.path();
            let r = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// The id of the current snapshot, if any.
    pub(crate) fn current_id(&self) -> Result<Option<String>, StoreError> {
        let link = self.current_link();
        match fs::read_link(&link) {
            Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&link)(e)),
        }
    }

    /// Loads snapshot `id`: the envelope must verify against `keys`, every file must have the
    /// manifest's size (and hash, with `verify_hashes`).
    pub(crate) fn load(
        &self,
        id: &str,
        keys: &[PublicKey],
        verify_hashes: bool,
    ) -> Result<Snapshot, StoreError> {
        let dir = self.snapshots().join(id);
        let bad = |reason: String| StoreError::Inconsistent {
            id: id.to_owned(),
            reason,
        };
        let env_path = dir.join(ENVELOPE);
        let text = fs::read(&env_path).map_err(io_err(&env_path))?;
        let manifest = Signed::<Manifest>::from_json(&text)
            .and_then(|s| s.verify(keys))
            .map_err(|e| bad(format!("manifest envelope: {e}")))?;
        let modified = fs::metadata(&env_path)
            .ok()
            .and_then(|m| m.modified().ok())
            .map_or(0, secs);
        let envelope = Entry::new(
            env_path,
            text.len() as u64,
            format!("\"{}\"", vdb_proto::sha256_hex(&text)),
            modified,
            CacheClass::Mutable,
            Some(Bytes::from(text)),
            Bytes::new(),
        );
        let mut files = HashMap::with_capacity(manifest.files.len());
        let mut maps = HashMap::new();
        for f in &manifest.files {
            let path = dir.join(&f.name);
            let entry = match manifest.inline_content(f) {
                // Carried in the envelope (verified against the manifest's hash): no file.
                Some(data) => file_entry(path, f, modified, Some(Bytes::from(data)), Bytes::new()),
                None => load_entry(&path, f, verify_hashes).map_err(bad)?,
            };
            files.insert(f.name.clone(), entry);
            // A map is an optional extra (a delta falls back without it): one that is missing
            // or wrong is not served.
            if let Some(map) = map_file(f)
                && let Ok(entry) = load_entry(&self.object(&map.sha256), &map, true)
            {
                maps.insert(map.sha256, entry);
            }
        }
        Ok(Snapshot {
            id: id.to_owned(),
            manifest,
            envelope,
            files,
            maps,
        })
    }

    /// Whether a verified object with this content is present.
    pub(crate) fn has_object(&self, f: &FileRef) -> bool {
        fs::metadata(self.object(&f.sha256)).is_ok_and(|m| m.is_file() && m.len() == f.size)
    }

    /// Re-hashes an object; removes it if it does not match (a forced sync).
    pub(crate) fn recheck_object(&self, f: &FileRef) -> Result<bool, StoreError> {
        let path = self.object(&f.sha256);
        match hash_file(&path) {
            Ok((size, sha)) if size == f.size && sha == f.sha256 => Ok(true),
            Ok(_) => {
                tracing::warn!(file = %f.name, path = %path.display(), "object does not match its hash; removing it");
                fs::remove_file(&path).map_err(io_err(&path))?;
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The highest version of each database this mirror ever served (`floor.json`; empty when
    /// absent). A file that cannot be read as such is an error: the check it backs must not
    /// silently go away.
    pub(crate) fn read_floor(&self) -> Result<Floor, StoreError> {
        let path = self.root.join(FLOOR);
        match fs::read(&path) {
            Ok(b) if b.len() <= 1 << 20 => {
                serde_json::from_slice(&b).map_err(|e| StoreError::Inconsistent {
                    id: FLOOR.into(),
                    reason: format!(
                        "{}: {e} (the anti-rollback floor; restore it or remove it to start over from the served manifest)",
                        path.display()
                    ),
                })
            }
            Ok(_) => Err(StoreError::Inconsistent {
                id: FLOOR.into(),
                reason: format!("{}: larger than 1 MiB", path.display()),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Raises the floor to `manifest`'s versions (temporary file, fsync, rename). Called after
    /// the switch: a crash in between leaves the floor one release behind, which the served
    /// manifest itself still covers.
    pub(crate) fn raise_floor(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let mut floor = self.read_floor()?;
        let before = floor.clone();
        manifest.raise_floor(&mut floor);
        if floor == before {
            return Ok(());
        }
        let path = self.root.join(FLOOR);
        let json = serde_json::to_vec(&floor).expect("a map of strings to numbers serializes");
        vdb_format::write_atomic(&path, &json).map_err(io_err(&path))
    }

    /// Builds a snapshot for `envelope` (whose manifest is `manifest`) from the objects, then
    /// makes it current. Returns its id. Every object must be present.
    pub(crate) fn build_and_switch(
        &self,
        manifest: &Manifest,
        envelope: &str,
    ) -> Result<String, StoreError> {
        // The sync renamed its new objects into `objects/` without fsyncing it each time.
        fsync_dir(&self.objects())?;
        let id = format!("{:020}-{}", manifest.serial, unique());
        let building = self.tmp().join(format!("snap-{id}"));
        fs::create_dir(&building).map_err(io_err(&building))?;
        for f in manifest.object_files() {
            let src = self.object(&f.sha256);
            let dst = building.join(&f.name);
            fs::hard_link(&src, &dst).map_err(io_err(&dst))?;
        }
        // `building` is this sync's own (no reader, emptied at every start): the envelope is
        // written in place, and the fsync of `building` makes it and the hard links durable.
        let env_path = building.join(ENVELOPE);
        let mut env = fs::File::create_new(&env_path).map_err(io_err(&env_path))?;
        env.write_all(envelope.as_bytes())
            .and_then(|()| env.sync_all())
            .map_err(io_err(&env_path))?;
        fsync_dir(&building)?;
        let final_dir = self.snapshots().join(&id);
        fs::rename(&building, &final_dir).map_err(io_err(&final_dir))?;
        // A directory has one parent: once `snapshots/` is durable with it, a crash cannot
        // leave it in `tmp/` as well (and `tmp/` is emptied at every start anyway).
        fsync_dir(&self.snapshots())?;
        let link_tmp = self.tmp().join(format!("current-{id}"));
        std::os::unix::fs::symlink(Path::new("snapshots").join(&id), &link_tmp)
            .map_err(io_err(&link_tmp))?;
        let link = self.current_link();
        fs::rename(&link_tmp, &link).map_err(io_err(&link))?;
        fsync_dir(&self.root)?;
        Ok(id)
    }

    /// Removes snapshots other than `keep`, and objects not listed in `manifest` (snapshots
    /// keep their own hard links, so a kept snapshot stays whole).
    pub(crate) fn gc(&self, keep: &[&str], manifest: &Manifest) -> Result<(), StoreError> {
        let snaps = self.snapshots();
        for e in fs::read_dir(&snaps).map_err(io_err(&snaps))? {
            let e = e.map_err(io_err(&snaps))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name.as_str()) {
                let p = e.path();
                fs::remove_dir_all(&p).map_err(io_err(&p))?;
            }
        }
        // The manifest's objects and their segment maps.
        let wanted: HashSet<&str> = manifest
            .files
            .iter()
            .flat_map(|f| [Some(&f.sha256), f.segments.as_ref().map(|r| &r.sha256)])
            .flatten()
            .map(String::as_str)
            .collect();
        let objs = self.objects();
        for e in fs::read_dir(&objs).map_err(io_err(&objs))? {
            let e = e.map_err(io_err(&objs))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_hex64(&name) || !wanted.contains(name.as_str()) {
                let p = e.path();
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
        Ok(())
    }
}

/// The anti-rollback floor: the highest version of each database ever served.
pub(crate) type Floor = std::collections::BTreeMap<String, u32>;

/// The segment map of a large container as an object to fetch and keep (`None` for others).
pub(crate) fn map_file(f: &FileRef) -> Option<FileRef> {
    f.segments.as_ref().map(|r| FileRef {
        name: format!("{} (segment map)", f.name),
        size: r.size,
        sha256: r.sha256.clone(),
        segments: None,
    })
}

pub(crate) fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut f = fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, vdb_proto::hex(&h.finalize())))
}

fn load_entry(path: &Path, f: &FileRef, verify_hash: bool) -> Result<Entry, String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", f.name))?;
    if meta.len() != f.size {
        return Err(format!(
            "{}: size {} but the manifest says {}",
            f.name,
            meta.len(),
            f.size
        ));
    }
    if verify_hash {
        let (_, sha) = hash_file(path).map_err(|e| format!("{}: {e}", f.name))?;
        if sha != f.sha256 {
            return Err(format!("{}: content does not match its sha256", f.name));
        }
    }
    let (data, head) = if f.size <= SMALL {
        let d = fs::read(path).map_err(|e| format!("{}: {e}", f.name))?;
        if d.len() as u64 != f.size {
            return Err(format!("{}: changed while reading", f.name));
        }
        (Some(Bytes::from(d)), Bytes::new())
    } else {
        let mut h = vec![0u8; HEAD];
        let mut file = fs::File::open(path).map_err(|e| format!("{}: {e}", f.name))?;
        file.read_exact(&mut h)
            .map_err(|e| format!("{}: {e}", f.name))?;
        (None, Bytes::from(h))
    };
    let first = data.as_ref().unwrap_or(&head);
    let modified = container_build_time(&f.name, first)
        .or_else(|| meta.modified().ok().map(secs))
        .unwrap_or(0);
    Ok(file_entry(path.to_owned(), f, modified, data, head))
}

/// The entry that serves listed file `f` (its hash is the `ETag`).
fn file_entry(
    path: PathBuf,
    f: &FileRef,
    modified: u64,
    data: Option<Bytes>,
    head: Bytes,
) -> Entry {
    Entry::new(
        path,
        f.size,
        format!("\"{}\"", f.sha256),
        modified,
        CacheClass::of(&f.name),
        data,
        head,
    )
}

/// The build time in a CVD/CLD/CUD header (spec §9.3: `Last-Modified` must be this, so that
/// freshclam's `If-Modified-Since` = its local header time gives exact 304s).
fn container_build_time(name: &str, first: &[u8]) -> Option<u64> {
    let container = [".cvd", ".cld", ".cud"].iter().any(|e| name.ends_with(e));
    if !container || first.len() < 512 {
        return None;
    }
    vdb_format::Header::parse(&first[..512]).ok()?.build_secs
}
