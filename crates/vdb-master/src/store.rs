//! The release store: the publish path (authenticate → gate → history → manifest) and the
//! signed manifest. It tells the other parts what happened through [`Events`] and knows none
//! of them.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use md5::Digest as _;
use tokio::sync::Mutex;
use vdb_proto::{
    Clock, DatabaseState, ErrorCode, FileRef, Manifest, PublicKey, ReleaseAccepted,
    ReleaseStatement, SecretKey, Signed,
};

use crate::config::Config;
use crate::events::{Event, Events, Origin};
use crate::gate::{self, Held, Policy, Refusal};
use crate::history::{History, ReleaseRow};
use crate::join::JoinDb;
use crate::metrics::Metrics;
use crate::objects::ObjectStore;
use crate::peers::Peers;
use crate::tasks::blocking;

/// Files every manifest derives.
pub const DERIVED: [&str; 4] = ["MD5SUMS", "SHA256SUMS", "dns.txt", "timestamp"];

/// The most of a refused statement the history keeps (bytes of its envelope).
const MAX_REFUSED_ENVELOPE: usize = 16 << 10;
/// Containers larger than this get a segment map (see `vdb_format::segment`).
const SEGMENT_MAP_MIN_SIZE: u64 = 1 << 20;

/// The signed manifest currently served.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// The envelope JSON.
    pub(crate) json: String,
    /// Its content.
    pub(crate) manifest: Manifest,
}

/// The release store of a running master.
#[derive(Debug)]
pub(crate) struct Store {
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    key: SecretKey,
    policy: Policy,
    objects: ObjectStore,
    history: History,
    join: JoinDb,
    metrics: Arc<Metrics>,
    peers: Arc<Peers>,
    events: Events,
    publish_lock: Mutex<()>,
    current: RwLock<Option<Current>>,
    servable: RwLock<HashSet<String>>,
    /// MD5 (hex) of objects by SHA-256, for `MD5SUMS` without re-reading every heartbeat.
    md5_cache: std::sync::Mutex<HashMap<String, String>>,
    /// Segment map object of each large container (by the container's SHA-256).
    segment_cache: std::sync::Mutex<HashMap<String, vdb_proto::ObjectRef>>,
    ready: AtomicBool,
    /// Statements refused before anyone could be held to them (unknown key, bad signature,
    /// not a statement): counted, never stored.
    unrecorded: AtomicU64,
    stride: u64,
    index: u64,
}

/// Why a master did not sign: a peer holds a newer version of a database it holds.
#[derive(Debug)]
pub(crate) struct Deferred {
    db: String,
    peer: u32,
    held: u32,
}

/// The smallest serial above `floor` that belongs to master `index` of `stride` masters, so
/// two masters never sign the same serial.
pub fn next_serial(floor: u64, index: u64, stride: u64) -> u64 {
    let stride = stride.max(1);
    let mut s = floor + 1;
    let r = s % stride;
    if r != index {
        s += (index + stride - r) % stride;
    }
    s
}

impl Store {
    /// Opens the state of `config` (no network yet).
    pub(crate) fn open(
        config: Arc<Config>,
        clock: Arc<dyn Clock>,
        key: SecretKey,
        policy: Policy,
        metrics: Arc<Metrics>,
        peers: Arc<Peers>,
        events: Events,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let objects = ObjectStore::open(&config.data_dir.join("objects"))?;
        let history = History::open(&config.data_dir.join("history.sqlite"))?;
        let join = JoinDb::open(&config.data_dir.join("join.sqlite"), &config.name)?;
        let mut keys: Vec<PublicKey> = config.peers.iter().map(|p| p.key).collect();
        keys.push(key.public());
        keys.sort();
        keys.dedup();
        let index = keys.iter().position(|k| *k == key.public()).unwrap_or(0) as u64;
        let stride = keys.len() as u64;
        // The persisted manifest is served again after a restart. One signed by another key
        // (the master key was rotated) is not served, but its serial stays the floor, so the
        // next manifest is still above what mirrors hold.
        let current = match std::fs::read(config.data_dir.join("manifest.json")) {
            Ok(bytes) => {
                let env = Signed::<Manifest>::from_json(&bytes)?;
                match env.verify(&[key.public()]) {
                    Ok(manifest) => Some(Current {
                        json: String::from_utf8(bytes).unwrap_or_default(),
                        manifest,
                    }),
                    Err(e) => {
                        let m = env.verify(&[env.signer()])?;
                        tracing::warn!(error = %e, serial = m.serial, "the persisted manifest is not signed by this master's key; signing a new one above its serial");
                        peers.observe(m.serial);
                        None
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let ready = config.peers.is_empty();
        let store = Self {
            config,
            clock,
            key,
            policy,
            objects,
            history,
            join,
            metrics,
            peers,
            events,
            publish_lock: Mutex::new(()),
            current: RwLock::new(current),
            servable: RwLock::new(HashSet::new()),
            md5_cache: std::sync::Mutex::default(),
            segment_cache: std::sync::Mutex::default(),
            ready: AtomicBool::new(ready),
            unrecorded: AtomicU64::new(0),
            stride,
            index,
        };
        store.refresh_servable()?;
        if let Some(c) = store.current() {
            store.metrics.manifest(&c.manifest);
        }
        Ok(store)
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// The clock.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The manifest key.
    pub(crate) fn public_key(&self) -> PublicKey {
        self.key.public()
    }

    /// The object store.
    pub(crate) fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    /// The history.
    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    /// The join requests and the registry's history.
    pub(crate) fn join(&self) -> &JoinDb {
        &self.join
    }

    /// The gate's policy.
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether the master has caught up with its peers (before that it takes no releases from
    /// publishers, and neither signs nor pushes).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Marks the master caught up.
    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// How many statements were refused without being stored (their signer is nobody this
    /// master knows).
    pub(crate) fn unrecorded_refusals(&self) -> u64 {
        self.unrecorded.load(Ordering::SeqCst)
    }

    /// A signed push notice for `serial` (with the leaves a hub relays it to), as JSON.
    pub(crate) fn push_notice(
        &self,
        serial: u64,
        forced: bool,
        leaves: &[vdb_proto::LeafTarget],
    ) -> String {
        let mut notice = vdb_proto::PushNotice::new(
            &self.config.network,
            &self.config.name,
            serial,
            self.clock.now(),
            forced,
        );
        notice.leaves = leaves.to_vec();
        Signed::sign(&notice, &self.key).to_json()
    }

    /// `entries`, join requests and history events signed as this master's registry export,
    /// as JSON.
    pub(crate) fn registry_export(
        &self,
        entries: Vec<vdb_proto::RegistryEntry>,
        pending: Vec<vdb_proto::PendingJoin>,
        log: Vec<vdb_proto::RegistryEvent>,
    ) -> String {
        let export = vdb_proto::RegistryExport {
            network: self.config.network.clone(),
            master: self.config.name.clone(),
            issued_at: self.clock.now(),
            entries,
            pending,
            log,
        };
        Signed::sign(&export, &self.key).to_json()
    }

    /// The manifest currently served.
    pub(crate) fn current(&self) -> Option<Current> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current serial (0 before the first manifest).
    pub(crate) fn serial(&self) -> u64 {
        self.current().map_or(0, |c| c.manifest.serial)
    }

    /// The segment map of a large container, published as an object (see
    /// `vdb_format::segment`); cached by the container's hash. `None` (logged) when it cannot
    /// be made: the file is then only served whole.
    fn segment_map_of(&self, f: &FileRef) -> Option<vdb_proto::ObjectRef> {
        let cache = || {
            self.segment_cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if let Some(r) = cache().get(&f.sha256) {
            return Some(r.clone());
        }
        let started = std::time::Instant::now();
        let made = self
            .objects
            .read(&f.sha256, self.config.max_file_size)
            .map_err(anyhow::Error::from)
            .and_then(|data| {
                let limit = vdb_format::Limits::default().max_body_size;
                let map = vdb_format::segment::segment_map(&data, limit)?;
                let json = map.to_json();
                let sha = self.objects.put(&json)?;
                Ok((
                    map.segments.len(),
                    vdb_proto::ObjectRef {
                        sha256: sha,
                        size: json.len() as u64,
                    },
                ))
            });
        match made {
            Ok((segments, r)) => {
                tracing::info!(
                    file = %f.name,
                    segments,
                    map_bytes = r.size,
                    ms = started.elapsed().as_millis() as u64,
                    "segment map made"
                );
                cache().insert(f.sha256.clone(), r.clone());
                Some(r)
            }
            Err(e) => {
                tracing::warn!(file = %f.name, error = %e, "no segment map");
                None
            }
        }
    }

    fn refresh_servable(&self) -> anyhow::Result<()> {
        let mut set = HashSet::new();
        for row in self.history.all_accepted()? {
            if let Ok(st) = parse_statement(&row.envelope) {
                set.extend(st.files.into_iter().map(|f| f.sha256));
            }
        }
        if let Some(c) = self.current() {
            set.extend(c.manifest.files.iter().map(|f| f.sha256.clone()));
            set.extend(
                c.manifest
                    .files
                    .iter()
                    .filter_map(|f| f.segments.as_ref().map(|s| s.sha256.clone())),
            );
        }
        *self
            .servable
            .write()
            .unwrap_or_else(PoisonError::into_inner) = set;
        Ok(())
    }

    /// Whether `GET /api/v1/objects/<sha>` may serve this object.
    pub(crate) fn is_servable(&self, sha: &str) -> bool {
        self.servable
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(sha)
    }

    /// Submits a signed release statement through the gate. The signer is checked before any
    /// lock or write: a statement nobody this master knows signed is counted, never stored.
    /// Refusals of publishers' statements are recorded.
    pub(crate) async fn submit(
        self: &Arc<Self>,
        envelope: &[u8],
        origin: Origin,
    ) -> Result<ReleaseAccepted, Refusal> {
        if origin == Origin::Publisher && !self.is_ready() {
            return Err(Refusal::new(
                ErrorCode::CatchingUp,
                "this master is catching up with its peers; try another master or retry shortly",
            ));
        }
        let this = Arc::clone(self);
        let envelope = envelope.to_vec();
        let origin2 = origin.clone();
        let outcome = blocking(move || -> Result<_, Refusal> {
            let env = this.authenticate(&envelope, &origin2)?;
            let st = match gate::check_statement(&this.policy, &env) {
                Ok(st) => st,
                Err(r) => {
                    this.record_refusal(&env, &origin2, None, &r);
                    return Err(r);
                }
            };
            Ok((env, st))
        })
        .await;
        let (env, st) = match outcome {
            Ok(x) => x,
            Err(r) => return Err(self.refused(r, &origin)),
        };
        let _guard = self.publish_lock.lock().await;
        let this = Arc::clone(self);
        let origin2 = origin.clone();
        match blocking(move || this.gate_and_record(&env, st, &origin2)).await {
            Ok((st, id, true)) => {
                self.metrics.release("accepted", "ok");
                tracing::info!(release = %id, db = %st.db, version = st.version, origin = %origin.label(), "release accepted");
                let serial = self.sign_locked(false).await.map_err(Refusal::internal)?;
                let accepted = ReleaseAccepted {
                    release_id: id.clone(),
                    master: self.config.name.clone(),
                    db: st.db.clone(),
                    version: st.version,
                    serial,
                };
                self.events.emit(Event::ReleaseAccepted {
                    id,
                    statement: Box::new(st),
                    origin,
                });
                Ok(accepted)
            }
            Ok((st, id, false)) => {
                tracing::info!(release = %id, db = %st.db, version = st.version, "re-submission of an accepted release (same version and files)");
                let serial = blocking({
                    let h = self.history.clone();
                    let id = id.clone();
                    move || h.accepted(&id)
                })
                .await
                .map_err(Refusal::internal)?
                .and_then(|r| r.serial)
                .unwrap_or_else(|| self.serial());
                Ok(ReleaseAccepted {
                    release_id: id,
                    master: self.config.name.clone(),
                    db: st.db,
                    version: st.version,
                    serial,
                })
            }
            Err(r) => Err(self.refused(r, &origin)),
        }
    }

    /// Counts and logs a refusal.
    fn refused(&self, r: Refusal, origin: &Origin) -> Refusal {
        self.metrics.release("refused", r.code.as_str());
        tracing::warn!(code = %r.code, reason = %r.message, origin = %origin.label(), "release refused");
        r
    }

    /// Parses the envelope and checks that a publisher of this master signed it. A refusal
    /// here stores nothing: it only goes up a counter.
    fn authenticate(
        &self,
        envelope: &[u8],
        origin: &Origin,
    ) -> Result<Signed<ReleaseStatement>, Refusal> {
        let checked = Signed::<ReleaseStatement>::from_json(envelope)
            .map_err(|e| Refusal::new(ErrorCode::BadStatement, e.to_string()))
            .and_then(|env| gate::authenticate(&self.policy, &env).map(|()| env));
        if let Err(r) = &checked {
            self.unrecorded.fetch_add(1, Ordering::SeqCst);
            self.metrics.unrecorded_refusal(r.code.as_str());
            tracing::debug!(code = %r.code, origin = %origin.label(), "statement of no known publisher refused (not recorded)");
        }
        checked
    }

    /// Records a refusal of an authenticated statement (its envelope bounded).
    fn record_refusal(
        &self,
        env: &Signed<ReleaseStatement>,
        origin: &Origin,
        st: Option<&ReleaseStatement>,
        r: &Refusal,
    ) {
        let mut envelope = env.to_json();
        if envelope.len() > MAX_REFUSED_ENVELOPE {
            let mut cut = MAX_REFUSED_ENVELOPE;
            while !envelope.is_char_boundary(cut) {
                cut -= 1;
            }
            envelope.truncate(cut);
        }
        let row = ReleaseRow {
            seq: 0,
            id: env.id(),
            db: st.map(|s| s.db.clone()).unwrap_or_default(),
            version: st.map_or(0, |s| s.version),
            publisher: env.signer().to_string(),
            envelope,
            verdict: "refused".into(),
            code: Some(r.code.as_str().to_owned()),
            reason: Some(r.message.clone()),
            origin: origin.label(),
            received_at: self.clock.now(),
            serial: None,
            published_at: None,
        };
        if let Err(e) = self.history.insert_release(&row) {
            tracing::error!(error = %e, "could not record a refusal in the history");
        }
    }

    /// The held state of each database, from the history.
    pub(crate) fn held(&self) -> Result<BTreeMap<String, Held>, Refusal> {
        let mut held: BTreeMap<String, Held> = BTreeMap::new();
        for row in self.history.all_accepted().map_err(Refusal::internal)? {
            let st = parse_statement(&row.envelope).map_err(Refusal::internal)?;
            // The newest release of the highest version: a supplement of the held version
            // (the same container, more files) is held once accepted.
            if held.get(&st.db).is_none_or(|h| st.version >= h.version) {
                held.insert(
                    st.db.clone(),
                    Held {
                        version: st.version,
                        release: row.id.clone(),
                        files: st.files,
                    },
                );
            }
        }
        Ok(held)
    }

    /// Runs the gate on an authenticated statement and records the verdict (refusals too).
    /// Returns (statement, id, newly accepted). Call with the publish lock held.
    fn gate_and_record(
        &self,
        env: &Signed<ReleaseStatement>,
        st: ReleaseStatement,
        origin: &Origin,
    ) -> Result<(ReleaseStatement, String, bool), Refusal> {
        let now = self.clock.now();
        let id = env.id();
        match self.judge(&id, &st, origin, now) {
            Ok(Some(existing)) => Ok((st, existing, false)),
            Ok(None) => {
                let row = ReleaseRow {
                    seq: 0,
                    id: id.clone(),
                    db: st.db.clone(),
                    version: st.version,
                    publisher: env.signer().to_string(),
                    envelope: env.to_json(),
                    verdict: "accepted".into(),
                    code: None,
                    reason: None,
                    origin: origin.label(),
                    received_at: now,
                    serial: None,
                    published_at: None,
                };
                self.history
                    .insert_release(&row)
                    .map_err(Refusal::internal)?;
                self.servable
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(st.files.iter().map(|f| f.sha256.clone()));
                Ok((st, id, true))
            }
            Err(r) => {
                self.record_refusal(env, origin, Some(&st), &r);
                Err(r)
            }
        }
    }

    /// The gate proper, for an authenticated statement. Returns, when it brings nothing new,
    /// the id of the accepted release it repeats (the same statement re-sent, or another
    /// statement of the same version and files).
    fn judge(
        &self,
        id: &str,
        st: &ReleaseStatement,
        origin: &Origin,
        now: i64,
    ) -> Result<Option<String>, Refusal> {
        let check_window = *origin == Origin::Publisher;
        let held = self.held()?;
        let known = if self
            .history
            .accepted(id)
            .map_err(Refusal::internal)?
            .is_some()
        {
            Some(id.to_owned())
        } else {
            held.get(&st.db)
                .filter(|h| h.version == st.version && gate::same_files(&h.files, &st.files))
                .map(|h| h.release.clone())
        };
        if let Some(existing) = known {
            if check_window && st.issued_at.abs_diff(now) > self.policy.window() {
                return Err(Refusal::new(
                    ErrorCode::Replay,
                    format!(
                        "release {} was accepted long ago (issued at {}); re-sending it now is a replay",
                        existing, st.issued_at
                    ),
                ));
            }
            return Ok(Some(existing));
        }
        self.check_known_cdiffs(st)?;
        gate::check_release(
            &self.policy,
            held.get(&st.db),
            &self.objects,
            st,
            now,
            check_window,
        )?;
        Ok(None)
    }

    /// Every cdiff (and cdiff `.sign`) ever accepted for `db`, by name.
    pub(crate) fn accepted_cdiffs(&self, db: &str) -> anyhow::Result<BTreeMap<String, FileRef>> {
        let mut out = BTreeMap::new();
        for row in self.history.all_accepted()? {
            if row.db != db {
                continue;
            }
            for f in parse_statement(&row.envelope)?.files {
                if gate::cdiff_version(db, &f.name).is_some() {
                    out.insert(f.name.clone(), f);
                }
            }
        }
        Ok(out)
    }

    /// A cdiff (or cdiff `.sign`) name once accepted for a database keeps its bytes: mirrors
    /// and clients may hold it already, and one name means one file.
    fn check_known_cdiffs(&self, st: &ReleaseStatement) -> Result<(), Refusal> {
        let known = self.accepted_cdiffs(&st.db).map_err(Refusal::internal)?;
        for f in &st.files {
            if let Some(k) = known.get(&f.name)
                && k != f
            {
                return Err(Refusal::new(
                    ErrorCode::Equivocation,
                    format!(
                        "{} was accepted before with other content (sha256 {}); a cdiff's name is its identity",
                        f.name, k.sha256
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Signs a new manifest (new serial, fresh timestamp); once the master is ready, the
    /// pushes follow from the event. `heartbeat` only changes the label in logs.
    pub(crate) async fn sign(self: &Arc<Self>, heartbeat: bool) -> anyhow::Result<u64> {
        let _guard = self.publish_lock.lock().await;
        self.sign_locked(heartbeat).await
    }

    /// [`Self::sign`] with the publish lock held.
    async fn sign_locked(self: &Arc<Self>, heartbeat: bool) -> anyhow::Result<u64> {
        // Learn the peers' newest serials first (bounded), so the new serial is above theirs.
        let peer_newest = self.peers.newest_versions().await;
        let this = Arc::clone(self);
        let serial = match blocking(move || this.sign_manifest(&peer_newest)).await? {
            Ok(serial) => serial,
            Err(Deferred { db, peer, held }) => {
                self.metrics.signing_deferred();
                if heartbeat {
                    tracing::debug!(%db, peer, held, "not signing yet: a peer holds a newer version");
                } else {
                    tracing::info!(%db, peer, held, "not signing yet: a peer holds a newer version");
                }
                return Ok(self.serial());
            }
        };
        tracing::info!(serial, heartbeat, "manifest signed");
        if self.is_ready() {
            self.events.emit(Event::ManifestSigned { serial });
        }
        Ok(serial)
    }

    /// Deletes uploads no release references (older than `orphan_ttl_secs`).
    pub(crate) async fn prune_uploads(self: &Arc<Self>) {
        let _guard = self.publish_lock.lock().await;
        let this = Arc::clone(self);
        let pruned = blocking(move || {
            this.objects.prune(
                |sha| this.is_servable(sha),
                std::time::Duration::from_secs(this.config.orphan_ttl_secs),
            )
        })
        .await;
        match pruned {
            Ok(0) => {}
            Ok(n) => tracing::info!(objects = n, "deleted unreferenced uploads"),
            Err(e) => tracing::warn!(error = %e, "pruning unreferenced uploads failed"),
        }
    }

    /// Builds, signs and persists the next manifest. Blocking. Signs nothing (`None`) while a
    /// peer holds a newer version of a database this master holds: that manifest would carry
    /// a serial above the peer's and an older database, which every mirror refuses as a
    /// rollback (it happens while a master replicates a burst of releases, or catches up after
    /// a restore); the master signs once it has caught up.
    fn sign_manifest(
        &self,
        peer_newest: &BTreeMap<String, u32>,
    ) -> anyhow::Result<Result<u64, Deferred>> {
        let now = self.clock.now();
        let held = self.held().map_err(|r| anyhow::anyhow!("{r}"))?;
        let rows = self.history.all_accepted()?;
        let mut databases = BTreeMap::new();
        let mut files: BTreeMap<String, FileRef> = BTreeMap::new();
        for (db, h) in &held {
            let built_at = rows
                .iter()
                .find(|r| r.id == h.release)
                .and_then(|r| parse_statement(&r.envelope).ok())
                .map_or(0, |s| s.built_at);
            databases.insert(
                db.clone(),
                DatabaseState {
                    version: h.version,
                    built_at,
                    release: h.release.clone(),
                },
            );
            for f in &h.files {
                if gate::cdiff_version(db, &f.name).is_none() {
                    files.insert(f.name.clone(), f.clone());
                }
            }
            // cdiffs of every release of this database, the newest `keep_cdiffs` versions.
            let mut cdiffs: BTreeMap<u32, Vec<FileRef>> = BTreeMap::new();
            for r in rows.iter().filter(|r| &r.db == db) {
                if let Ok(st) = parse_statement(&r.envelope) {
                    for f in st.files {
                        if let Some(v) = gate::cdiff_version(db, &f.name)
                            && v <= h.version
                        {
                            cdiffs.entry(v).or_default().push(f);
                        }
                    }
                }
            }
            let keep: BTreeSet<u32> = cdiffs
                .keys()
                .rev()
                .take(self.config.keep_cdiffs)
                .copied()
                .collect();
            for (v, fs) in cdiffs {
                if keep.contains(&v) {
                    for f in fs {
                        files.insert(f.name.clone(), f);
                    }
                }
            }
        }
        if let Some(d) = databases.iter().find_map(|(db, d)| {
            let peer = peer_newest.get(db).copied().unwrap_or(0);
            (peer > d.version).then(|| Deferred {
                db: db.clone(),
                peer,
                held: d.version,
            })
        }) {
            return Ok(Err(d));
        }
        // Segment maps of large containers (computed once per object, then cached): a mirror
        // holding the previous release rebuilds these files from it plus the cdiffs.
        let mut servable = Vec::new();
        for f in files.values_mut() {
            if f.segments.is_none()
                && f.size > SEGMENT_MAP_MIN_SIZE
                && matches!(
                    vdb_format::Kind::from_file_name(&f.name),
                    Some(vdb_format::Kind::Cvd | vdb_format::Kind::Cud)
                )
            {
                f.segments = self.segment_map_of(f);
                servable.extend(f.segments.as_ref().map(|s| s.sha256.clone()));
            }
        }
        // Derived files.
        let mut md5sums = String::new();
        let mut shasums = String::new();
        for f in files.values() {
            let cached = self
                .md5_cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&f.sha256)
                .cloned();
            let md5 = match cached {
                Some(m) => m,
                None => {
                    let data = self.objects.read(&f.sha256, self.config.max_file_size)?;
                    let m = vdb_proto::hex(&md5::Md5::digest(&data));
                    self.md5_cache
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(f.sha256.clone(), m.clone());
                    m
                }
            };
            md5sums.push_str(&format!("{md5}  {}\n", f.name));
            shasums.push_str(&format!("{}  {}\n", f.sha256, f.name));
        }
        // The version record: one definition (vdb_proto) for `dns.txt` here and the
        // directory's TXT record, from the fields signed into the manifest below.
        let version_record = self.config.version_record();
        let versions = databases
            .iter()
            .map(|(db, d): (&String, &DatabaseState)| (db.clone(), d.version))
            .collect();
        let txt = version_record.current(&versions, now).to_string();
        let derived = [
            ("MD5SUMS", md5sums.into_bytes()),
            ("SHA256SUMS", shasums.into_bytes()),
            ("dns.txt", format!("{txt}\n").into_bytes()),
            ("timestamp", format!("{now}\n").into_bytes()),
        ];
        for (name, data) in derived {
            let sha = self.objects.put(&data)?;
            servable.push(sha.clone());
            files.insert(
                name.to_owned(),
                FileRef {
                    name: name.to_owned(),
                    size: data.len() as u64,
                    sha256: sha,
                    segments: None,
                },
            );
        }
        let floor = self.serial().max(self.peers.serial());
        let serial = next_serial(floor, self.index, self.stride);
        let mut manifest = Manifest {
            network: self.config.network.clone(),
            serial,
            master: self.config.name.clone(),
            issued_at: now,
            expires_at: now + self.config.manifest_ttl(),
            databases,
            files: files.into_values().collect(),
            version_record: Some(version_record),
            inline: Default::default(),
        };
        // Small files travel in the manifest: a mirror need not fetch, write and fsync each.
        let mut small: Vec<FileRef> = (manifest.files.iter())
            .filter(|f| f.size <= vdb_proto::INLINE_MAX)
            .cloned()
            .collect();
        small.sort_by_key(|f| f.size);
        for f in &small {
            let data = self.objects.read(&f.sha256, vdb_proto::INLINE_MAX)?;
            manifest.carry(f, &data);
        }
        let env = Signed::sign(&manifest, &self.key);
        let json = env.to_json();
        vdb_format::write_atomic(&self.config.data_dir.join("manifest.json"), json.as_bytes())?;
        self.history.mark_published(serial, now)?;
        self.servable
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(servable);
        self.metrics.manifest(&manifest);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            Some(Current { json, manifest });
        Ok(Ok(serial))
    }
}

/// Parses a stored (already verified) statement envelope.
pub(crate) fn parse_statement(envelope: &str) -> anyhow::Result<ReleaseStatement> {
    let env = Signed::<ReleaseStatement>::from_json(envelope.as_bytes())?;
    Ok(env.verify(&[env.signer()])?)
}

#[cfg(test)]
mod tests {
    use super::next_serial;

    #[test]
    fn serials_are_disjoint_and_above_the_floor() {
        for floor in 0..20 {
            let a = next_serial(floor, 0, 2);
            let b = next_serial(floor, 1, 2);
            assert!(a > floor && b > floor && a != b);
            assert_eq!(a % 2, 0);
            assert_eq!(b % 2, 1);
            assert!(a <= floor + 2 && b <= floor + 2);
            assert_eq!(next_serial(floor, 0, 1), floor + 1);
        }
    }
}
