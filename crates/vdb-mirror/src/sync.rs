//! Pulling from the hubs and the masters: manifest with failover, verification, anti-rollback,
//! downloads of missing objects (each from the hubs first, then the masters; a wrong object is
//! refused and fetched elsewhere), the atomic switch, garbage collection, the sync report.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use vdb_fetch::Expect;
use vdb_proto::{Clock, FileRef, Freshness, MANIFEST_PATH, Manifest, PublicKey, Signed, paths};

use crate::metrics::Metrics;
use crate::store::{Floor, Snapshot, Store, StoreError, io_err, map_file};

#[path = "delta.rs"]
mod delta;

/// Largest manifest envelope a mirror reads.
const MAX_MANIFEST: u64 = 16 << 20;
/// Objects of one sync fetched at once (besides delta rebuilds, which go one at a time).
const PARALLEL_OBJECTS: usize = 4;

/// Why a sync failed. A failed sync changes nothing that is served.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The data directory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every hub and master failed or offered a manifest that was refused.
    #[error("no hub or master gave an acceptable manifest: {0}")]
    NoManifest(Failures),
    /// A file could not be fetched from any hub or master.
    #[error("cannot fetch {name} ({sha256}) from any hub or master: {reasons}")]
    Download {
        /// The file's name.
        name: String,
        /// Its hash.
        sha256: String,
        /// One reason per master.
        reasons: Failures,
    },
    /// A background task died.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What to check when a master refuses this mirror (401/403).
fn refusal_hint(e: &vdb_fetch::Error) -> &'static str {
    if e.kind() == vdb_fetch::ErrorKind::Forbidden {
        " (the master refuses this mirror: check `pull_token` in the mirror's config against \
         `pull_tokens` in the masters' configs; a joined mirror: `vdbd mirror join` again shows \
         whether it is approved, and its clock must be right)"
    } else {
        ""
    }
}

/// What went wrong with one master.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MasterError {
    /// The request failed ([`vdb_fetch::Error::kind`] says how; a refusal says what to check).
    #[error("{err}{hint}", err = .0, hint = refusal_hint(.0))]
    Fetch(#[from] vdb_fetch::Error),
    /// The object's bytes are not the ones the manifest lists (size or SHA-256).
    #[error("{0} (the content does not match the manifest)")]
    Mismatch(#[source] vdb_fetch::Error),
    /// The manifest envelope is malformed or not signed by a master key.
    #[error(transparent)]
    Envelope(#[from] vdb_proto::VerifyError),
    /// The manifest is refused (other network, expired, a rollback, an equivocation).
    #[error(transparent)]
    Manifest(#[from] vdb_proto::ManifestError),
    /// The downloaded object could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One master's failure, by master, in the order tried.
#[derive(Debug, Default)]
pub struct Failures(pub Vec<(String, MasterError)>);

impl std::fmt::Display for Failures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (master, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{master}: {e}")?;
        }
        Ok(())
    }
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// A new snapshot is served.
    Updated {
        /// Its manifest serial.
        serial: u64,
        /// Files downloaded.
        downloaded: usize,
        /// Bytes downloaded.
        bytes: u64,
    },
    /// Nothing to do: the served set is the newest a master offers.
    UpToDate {
        /// The served serial.
        serial: u64,
    },
}

/// What asked for a sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncRequest {
    /// A push named this serial: prefer a master that has it.
    pub want_serial: Option<u64>,
    /// Re-verify every served file (a forced push).
    pub forced: bool,
}

/// What a sync did beyond its outcome, for its report to the masters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Where the manifest came from: `master` or `hub:<base URL>`.
    pub(crate) source: String,
    /// Object bytes that came from hubs.
    pub(crate) hub_bytes: u64,
}

/// Where a sync reads from: a hub (no credentials sent) or a master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source<'a> {
    Hub(&'a str),
    Master(&'a str),
}

impl<'a> Source<'a> {
    fn base(self) -> &'a str {
        match self {
            Self::Hub(b) | Self::Master(b) => b,
        }
    }
}

/// The snapshot the server reads, swapped atomically by a sync.
pub(crate) type Current = Arc<RwLock<Option<Arc<Snapshot>>>>;

pub(crate) fn read_current(current: &Current) -> Option<Arc<Snapshot>> {
    current.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn set_current(current: &Current, snap: Option<Arc<Snapshot>>) {
    *current.write().unwrap_or_else(|e| e.into_inner()) = snap;
}

/// Everything a sync needs.
#[derive(Debug, Clone)]
pub(crate) struct Syncer {
    pub(crate) store: Store,
    pub(crate) network: String,
    pub(crate) masters: Vec<String>,
    /// A leaf's hubs (base URLs), tried before the masters.
    pub(crate) hubs: Vec<String>,
    /// Delta transfer on (`delta_transfer`).
    pub(crate) delta: bool,
    pub(crate) keys: Vec<PublicKey>,
    pub(crate) token: Option<String>,
    /// The mirror's name (signed pulls name it).
    pub(crate) name: String,
    /// The identity key's file; read at the start of every sync, so a rotated key is used at
    /// once. Pulls are signed with it when there is no `token`.
    pub(crate) identity_file: std::path::PathBuf,
    pub(crate) identity: Arc<RwLock<Option<vdb_proto::SecretKey>>>,
    pub(crate) client: vdb_fetch::Client,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) current: Current,
    /// The snapshot the last switch replaced, kept until the next one.
    pub(crate) retired: Arc<std::sync::Mutex<Option<String>>>,
    pub(crate) metrics: Arc<Metrics>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Internal(e.to_string()))?
        .map_err(SyncError::from)
}

/// What `current` names on disk, against the snapshot in memory.
enum DiskCurrent {
    /// Nothing usable: serve nothing until a sync builds a snapshot.
    None,
    /// The snapshot in memory.
    Same,
    /// Another snapshot, loaded.
    Loaded(Arc<Snapshot>),
}

/// Reads the snapshot `current` names unless it is `mem_id` (and `verify` is off).
fn load_disk(
    store: &Store,
    keys: &[PublicKey],
    mem_id: Option<&str>,
    verify: bool,
) -> Result<DiskCurrent, StoreError> {
    let Some(id) = store.current_id()? else {
        return Ok(DiskCurrent::None);
    };
    if !verify && mem_id == Some(id.as_str()) {
        return Ok(DiskCurrent::Same);
    }
    match store.load(&id, keys, verify) {
        Ok(s) => Ok(DiskCurrent::Loaded(Arc::new(s))),
        Err(e) => {
            tracing::error!(error = %e, "the current snapshot is unusable; it will be rebuilt");
            Ok(DiskCurrent::None)
        }
    }
}

/// The identity key in `path` (none, and a warning when it is unusable: pulls go unsigned).
fn read_identity(path: &std::path::Path) -> Option<vdb_proto::SecretKey> {
    let text = std::fs::read_to_string(path).ok()?;
    match vdb_proto::SecretKey::from_text(&text) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "the identity key file is unusable; pulls are not signed");
            None
        }
    }
}

impl Syncer {
    /// Loads the snapshot `current` names on disk into memory (at start, and when another process
    /// switched it). Verifies hashes when `verify` is set.
    pub(crate) async fn load_disk_current(&self, verify: bool) -> Result<(), SyncError> {
        let (store, keys) = (self.store.clone(), self.keys.clone());
        let mem_id = read_current(&self.current).map(|s| s.id.clone());
        let loaded = blocking(move || load_disk(&store, &keys, mem_id.as_deref(), verify)).await?;
        self.apply_disk(loaded);
        Ok(())
    }

    /// Serves what [`load_disk`] found.
    fn apply_disk(&self, loaded: DiskCurrent) {
        match loaded {
            DiskCurrent::None => set_current(&self.current, None),
            DiskCurrent::Same => {}
            DiskCurrent::Loaded(s) => {
                self.metrics.serial.set(s.manifest.serial as i64);
                set_current(&self.current, Some(s));
            }
        }
    }

    /// One sync under the cross-process lock, then its garbage collection.
    pub(crate) async fn sync(&self, req: SyncRequest) -> Result<SyncOutcome, SyncError> {
        let r = self.sync_with_facts(req).await.0;
        if matches!(r, Ok(SyncOutcome::Updated { .. })) {
            self.collect_garbage().await;
        }
        r
    }

    /// Removes snapshots other than the served one and the one it replaced, and objects the
    /// served manifest does not list. Run after an update, once it is served and announced (it
    /// is not on the way to serving). Skipped when another process switched `current` since:
    /// its own sync or our next one collects. A failure is logged: nothing served depends on it.
    pub(crate) async fn collect_garbage(&self) {
        let Some(served) = read_current(&self.current) else {
            return;
        };
        let store = self.store.clone();
        let retired = self
            .retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let r = blocking(move || {
            let _lock = store.lock()?;
            if store.current_id()?.as_deref() != Some(served.id.as_str()) {
                return Ok(());
            }
            let mut keep = vec![served.id.as_str()];
            keep.extend(retired.as_deref());
            store.gc(&keep, &served.manifest)
        })
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "garbage collection failed; the next update tries again");
        }
    }

    /// [`Syncer::sync`], with where the bytes came from.
    pub(crate) async fn sync_with_facts(
        &self,
        req: SyncRequest,
    ) -> (Result<SyncOutcome, SyncError>, Facts) {
        let mut facts = Facts::default();
        let r = self.sync_inner(req, &mut facts).await;
        (r, facts)
    }

    async fn sync_inner(
        &self,
        req: SyncRequest,
        facts: &mut Facts,
    ) -> Result<SyncOutcome, SyncError> {
        let started = Instant::now();
        let result = match self.prepare().await {
            Ok((lock, floor)) => {
                let span = tracing::info_span!(
                    "sync",
                    forced = req.forced,
                    want = ?req.want_serial,
                    held = ?read_current(&self.current).map(|s| s.manifest.serial),
                );
                let r = tracing::Instrument::instrument(self.sync_locked(req, facts, floor), span)
                    .await;
                drop(lock);
                r
            }
            Err(e) => Err(e),
        };
        let label = match &result {
            Ok(SyncOutcome::Updated { .. }) => "updated",
            Ok(SyncOutcome::UpToDate { .. }) => "up_to_date",
            Err(_) => "failed",
        };
        self.metrics.sync(label, started.elapsed());
        match &result {
            Ok(o) => tracing::info!(outcome = ?o, forced = req.forced, "sync done"),
            Err(e) => tracing::warn!(error = %e, "sync failed"),
        }
        result
    }

    /// Takes the cross-process lock and reads, in one trip to the blocking pool, what a sync
    /// starts from: the identity key (rotated keys are used at once), the snapshot `current`
    /// names (another process may have switched it) and the anti-rollback floor.
    async fn prepare(&self) -> Result<(std::fs::File, Floor), SyncError> {
        let (store, keys) = (self.store.clone(), self.keys.clone());
        let identity_file = self.token.is_none().then(|| self.identity_file.clone());
        let mem_id = read_current(&self.current).map(|s| s.id.clone());
        let (lock, identity, loaded, floor) = blocking(move || {
            let lock = store.lock()?;
            store.clean_tmp()?;
            let identity = identity_file.map(|path| read_identity(&path));
            let loaded = load_disk(&store, &keys, mem_id.as_deref(), false)?;
            let floor = store.read_floor()?;
            Ok((lock, identity, loaded, floor))
        })
        .await?;
        if let Some(key) = identity {
            *self.identity.write().unwrap_or_else(|e| e.into_inner()) = key;
        }
        self.apply_disk(loaded);
        Ok((lock, floor))
    }

    /// Hubs first, then masters.
    fn sources(&self) -> Vec<Source<'_>> {
        self.hubs
            .iter()
            .map(|h| Source::Hub(h))
            .chain(self.masters.iter().map(|m| Source::Master(m)))
            .collect()
    }

    async fn sync_locked(
        &self,
        req: SyncRequest,
        facts: &mut Facts,
        mut floor: Floor,
    ) -> Result<SyncOutcome, SyncError> {
        let held = read_current(&self.current);
        if let Some(h) = &held {
            h.manifest.raise_floor(&mut floor);
        }
        let now = self.clock.now();
        let mut reasons = Failures::default();
        let mut best: Option<(usize, Signed<Manifest>, Manifest, Freshness)> = None;
        let sources = self.sources();
        for (i, src) in sources.iter().enumerate() {
            let base = src.base();
            let (signed, manifest) = match self.fetch_manifest(*src).await {
                Ok(m) => m,
                Err(e) => {
                    reasons.0.push((base.to_owned(), e));
                    continue;
                }
            };
            let fresh = manifest
                .check(&self.network, now)
                .and_then(|()| manifest.check_floor(&floor))
                .and_then(|()| match &held {
                    Some(h) => manifest.freshness(&h.manifest),
                    None => Ok(Freshness::Newer),
                });
            let fresh = match fresh {
                Ok(f) => f,
                Err(e) => {
                    // A master whose serial is below the held one is normal with two masters
                    // (the other signed last); anything else is worth an operator's look.
                    if matches!(e, vdb_proto::ManifestError::OlderSerial { .. }) {
                        tracing::debug!(source = %base, error = %e, "manifest not newer");
                    } else {
                        tracing::warn!(source = %base, error = %e, "manifest refused");
                    }
                    reasons.0.push((base.to_owned(), e.into()));
                    continue;
                }
            };
            let serial = manifest.serial;
            if best.as_ref().is_none_or(|b| serial > b.2.serial) {
                best = Some((i, signed, manifest, fresh));
            }
            // A push names its serial: the first source that has it will do. A poll asks a
            // master too, so a hub stuck on an old (still valid) release delays its leaves by
            // one poll at most; the objects still come from the hubs first.
            let enough = match req.want_serial {
                Some(w) => serial >= w,
                None => matches!(src, Source::Master(_)),
            };
            if enough {
                break;
            }
        }
        let Some((source, signed, manifest, fresh)) = best else {
            return Err(SyncError::NoManifest(reasons));
        };
        facts.source = match sources[source] {
            Source::Hub(h) => format!("hub:{h}"),
            Source::Master(_) => "master".to_owned(),
        };
        let mut rebuild = fresh != Freshness::Same;
        if req.forced {
            rebuild |= self.recheck(&manifest, held.as_deref()).await?;
        }
        if !rebuild {
            return Ok(SyncOutcome::UpToDate {
                serial: manifest.serial,
            });
        }
        let pulled = self.metrics.pulled_bytes.get();
        let pulled_hub = self.metrics.pulled_hub_bytes.get();
        // Large containers that may be rebuilt from the held release wait for the rest (the
        // cdiffs a rebuild reads among them); everything else, and every large container's
        // segment map (kept as an object: a hub serves it to its leaves, the next release's
        // delta reads it), is fetched a few at a time, since a small object costs round trips
        // and fsyncs rather than bandwidth. The small files the manifest carries are not
        // fetched at all: the snapshot serves them from its envelope.
        let (rebuildable, plain): (Vec<&FileRef>, Vec<&FileRef>) = manifest
            .object_files()
            .partition(|f| self.delta && held.is_some() && f.segments.is_some());
        let maps: Vec<FileRef> = manifest.files.iter().filter_map(map_file).collect();
        let jobs: Vec<(&FileRef, bool)> = maps
            .iter()
            .map(|m| (m, true))
            .chain(plain.into_iter().map(|f| (f, false)))
            .collect();
        // Which objects the store holds already, in one trip to the blocking pool.
        let store = self.store.clone();
        let wanted: Vec<FileRef> = jobs.iter().map(|(f, _)| (*f).clone()).collect();
        let present = blocking(move || {
            Ok(wanted
                .iter()
                .map(|f| store.has_object(f))
                .collect::<Vec<_>>())
        })
        .await?;
        let fetches: Vec<_> = jobs
            .into_iter()
            .zip(present)
            .filter(|(_, held)| !held)
            .map(|((f, is_map), _)| self.fetch_object(f, is_map, source))
            .collect();
        let mut fetches = futures_util::stream::iter(fetches).buffer_unordered(PARALLEL_OBJECTS);
        // Every fetch runs to its end, also after one failed: a fetch dropped halfway would
        // leave its temporary file behind (each one removes its own on failure).
        let (mut downloaded, mut failed) = (0, None);
        while let Some(n) = fetches.next().await {
            match n {
                Ok(n) => downloaded += n,
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        drop(fetches);
        if let Some(e) = failed {
            return Err(e);
        }
        // One at a time: a rebuild keeps every CPU busy.
        for f in rebuildable {
            if self.holds(f).await? {
                continue;
            }
            if !self.try_delta(f, &manifest, held.as_deref(), source).await {
                self.download(f, source).await?;
            }
            downloaded += 1;
        }
        let bytes = self.metrics.pulled_bytes.get() - pulled;
        facts.hub_bytes = self.metrics.pulled_hub_bytes.get() - pulled_hub;
        let store = self.store.clone();
        let keys = self.keys.clone();
        let envelope = signed.to_json();
        let m2 = manifest.clone();
        let prev = held.as_ref().map(|h| h.id.clone());
        let snap = blocking(move || {
            let id = store.build_and_switch(&m2, &envelope)?;
            store.raise_floor(&m2)?;
            let snap = store.load(&id, &keys, false)?;
            Ok(snap)
        })
        .await?;
        self.metrics.serial.set(manifest.serial as i64);
        set_current(&self.current, Some(Arc::new(snap)));
        // The replaced snapshot stays for one more round (a reader may still be sending from
        // it); [`Syncer::collect_garbage`] removes the rest once the new one is announced.
        *self.retired.lock().unwrap_or_else(|e| e.into_inner()) = prev;
        Ok(SyncOutcome::Updated {
            serial: manifest.serial,
            downloaded,
            bytes,
        })
    }

    /// A forced sync: re-hashes every object of `manifest` and the served files; true when the
    /// served set must be rebuilt.
    async fn recheck(
        &self,
        manifest: &Manifest,
        held: Option<&Snapshot>,
    ) -> Result<bool, SyncError> {
        let store = self.store.clone();
        let keys = self.keys.clone();
        let manifest = manifest.clone();
        let held_id = held.map(|h| h.id.clone());
        blocking(move || {
            let mut bad = false;
            for f in manifest.object_files() {
                bad |= !store.recheck_object(f)?;
            }
            if let Some(id) = held_id
                && let Err(e) = store.load(&id, &keys, true)
            {
                tracing::warn!(error = %e, "forced sync: served snapshot failed re-verification");
                bad = true;
            }
            Ok(bad)
        })
        .await
    }

    /// A GET to a master: with the pull token, or signed with the identity key (the header
    /// covers the method, the path and the time), or neither.
    fn get(&self, url: &str) -> vdb_fetch::Request {
        self.authorized(self.client.get(url), "GET", url)
    }

    /// A POST to a master, authorised as [`Syncer::get`] is.
    pub(crate) fn post(&self, url: &str) -> vdb_fetch::Request {
        self.authorized(self.client.post(url), "POST", url)
    }

    fn authorized(&self, req: vdb_fetch::Request, method: &str, url: &str) -> vdb_fetch::Request {
        let req = req.bearer(self.token.as_deref());
        if self.token.is_some() {
            return req;
        }
        let key = self.identity.read().unwrap_or_else(|e| e.into_inner());
        match key.as_ref() {
            Some(k) => req.header(
                http::header::AUTHORIZATION,
                vdb_proto::pull_authorization(
                    k,
                    &self.network,
                    &self.name,
                    method,
                    url_path(url),
                    self.clock.now(),
                ),
            ),
            None => req,
        }
    }

    /// A GET to `src`: a master's with this mirror's credentials, a hub's with none (a hub is
    /// another mirror: it never sees the leaf's token or signature).
    fn get_from(&self, src: Source<'_>, url: &str) -> vdb_fetch::Request {
        match src {
            Source::Hub(_) => self.client.get(url),
            Source::Master(_) => self.get(url),
        }
    }

    async fn fetch_manifest(
        &self,
        src: Source<'_>,
    ) -> Result<(Signed<Manifest>, Manifest), MasterError> {
        let url = format!("{}{MANIFEST_PATH}", src.base().trim_end_matches('/'));
        let body = self
            .get_from(src, &url)
            .send()
            .await?
            .bytes(&Expect::at_most(MAX_MANIFEST))
            .await?;
        let signed = Signed::<Manifest>::from_json(&body)?;
        let manifest = signed.verify(&self.keys)?;
        Ok((signed, manifest))
    }

    /// Where objects are fetched from, in order: the hubs, then the masters starting with the
    /// one whose manifest is used (`source` indexes [`Syncer::sources`]).
    fn object_sources(&self, source: usize) -> impl Iterator<Item = Source<'_>> {
        let n = self.masters.len();
        let first = source.saturating_sub(self.hubs.len());
        self.hubs
            .iter()
            .map(|h| Source::Hub(h))
            .chain((0..n).map(move |k| Source::Master(&self.masters[(first + k) % n])))
    }

    /// Whether the object store holds `f` (by size; its hash was checked when it came in).
    async fn holds(&self, f: &FileRef) -> Result<bool, SyncError> {
        let store = self.store.clone();
        let f = f.clone();
        blocking(move || Ok(store.has_object(&f))).await
    }

    /// One object of a sync that the store lacks: a segment map (a failure only means no delta
    /// transfer for its file) or a file. Returns how many files it downloaded (0 or 1).
    async fn fetch_object(
        &self,
        f: &FileRef,
        is_map: bool,
        source: usize,
    ) -> Result<usize, SyncError> {
        if is_map {
            if let Err(e) = self.download(f, source).await {
                tracing::warn!(file = %f.name, error = %e, "no segment map: no delta transfer for its file");
            }
            return Ok(0);
        }
        self.download(f, source).await.map(|()| 1)
    }

    /// Downloads `f` (as [`Syncer::download`]) unless the object store holds it.
    async fn ensure(&self, f: &FileRef, source: usize) -> Result<(), SyncError> {
        if self.holds(f).await? {
            return Ok(());
        }
        self.download(f, source).await
    }

    /// Downloads `f` from the hubs in order, then from the masters starting with the one whose
    /// manifest is used (`source` indexes [`Syncer::sources`]).
    async fn download(&self, f: &FileRef, source: usize) -> Result<(), SyncError> {
        let mut reasons = Failures::default();
        for src in self.object_sources(source) {
            let base = src.base();
            match self.download_from(src, f).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(source = %base, hub = matches!(src, Source::Hub(_)), file = %f.name, error = %e, "download failed");
                    reasons.0.push((base.to_owned(), e));
                }
            }
        }
        Err(SyncError::Download {
            name: f.name.clone(),
            sha256: f.sha256.clone(),
            reasons,
        })
    }

    /// Downloads one object (size and hash checked while it streams) to a temporary file,
    /// fsyncs it and renames it into the object store.
    async fn download_from(&self, src: Source<'_>, f: &FileRef) -> Result<(), MasterError> {
        let url = format!(
            "{}{}/{}",
            src.base().trim_end_matches('/'),
            paths::OBJECTS,
            f.sha256
        );
        let tmp = self.store.tmp_file(&f.sha256);
        let started = Instant::now();
        let got = self
            .get_from(src, &url)
            .send()
            .await?
            .to_file(&tmp, &Expect::exactly(f.size, &f.sha256))
            .await
            .map_err(|e| match e {
                vdb_fetch::Error::DigestMismatch { .. }
                | vdb_fetch::Error::TooLarge { .. }
                | vdb_fetch::Error::Truncated { .. } => MasterError::Mismatch(e),
                e => MasterError::Fetch(e),
            })?;
        tracing::info!(
            file = %f.name,
            from = %src.base(),
            hub = matches!(src, Source::Hub(_)),
            bytes = got.size,
            ms = started.elapsed().as_millis() as u64,
            "object downloaded"
        );
        // The object's bytes are durable (fsynced before this); its name in `objects/` is made
        // durable once per sync, before the switch ([`Store::build_and_switch`]).
        let dst = self.store.object(&f.sha256);
        let tmp2 = tmp.clone();
        let moved =
            tokio::task::spawn_blocking(move || std::fs::rename(&tmp2, &dst).map_err(io_err(&dst)))
                .await
                .unwrap_or_else(|e| {
                    Err(StoreError::Io {
                        path: tmp.clone(),
                        source: std::io::Error::other(e),
                    })
                });
        if let Err(e) = moved {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e.into());
        }
        self.pulled(src, got.size);
        Ok(())
    }

    /// Counts `n` bytes pulled from `src`.
    fn pulled(&self, src: Source<'_>, n: u64) {
        self.metrics.pulled_bytes.inc_by(n);
        if matches!(src, Source::Hub(_)) {
            self.metrics.pulled_hub_bytes.inc_by(n);
        }
    }
}

/// The path of an absolute URL (what a signed pull covers).
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split('?').next().unwrap_or(path)
}

/// The client for pulling from masters.
pub(crate) fn client(timeout_secs: u64) -> Result<vdb_fetch::Client, vdb_fetch::Error> {
    vdb_fetch::Client::builder(concat!("vdbnet-mirror/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(timeout_secs.min(30)))
        .read_timeout(Some(Duration::from_secs(timeout_secs)))
        .build()
}
