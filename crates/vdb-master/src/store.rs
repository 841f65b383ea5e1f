//! The master's core: the publish path (gate → history → manifest) and the signed manifest.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use md5::Digest as _;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;
use vdb_format::dnstxt::CurrentRecord;
use vdb_proto::{
    Clock, DatabaseState, FileRef, Manifest, PublicKey, ReleaseAccepted, ReleaseStatement,
    SecretKey, Signed,
};

use crate::config::Config;
use crate::gate::{self, Held, Policy, Refusal};
use crate::history::{History, ReleaseRow};
use crate::metrics::Metrics;
use crate::objects::ObjectStore;

/// Files every manifest derives.
pub const DERIVED: [&str; 4] = ["MD5SUMS", "SHA256SUMS", "dns.txt", "timestamp"];

/// Where a release came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A publisher, over the API.
    Publisher,
    /// A peer master (base URL).
    Peer(String),
    /// The upstream follower.
    Upstream,
}

impl Origin {
    fn label(&self) -> String {
        match self {
            Self::Publisher => "publisher".into(),
            Self::Peer(u) => format!("peer:{u}"),
            Self::Upstream => "upstream".into(),
        }
    }
}

/// The signed manifest currently served.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// The envelope JSON.
    pub(crate) json: String,
    /// Its content.
    pub(crate) manifest: Manifest,
}

/// Shared state of a running master.
#[derive(Debug)]
pub(crate) struct Master {
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) key: SecretKey,
    pub(crate) policy: Policy,
    pub(crate) objects: ObjectStore,
    pub(crate) history: History,
    pub(crate) metrics: Metrics,
    pub(crate) http: reqwest::Client,
    pub(crate) publish_lock: Mutex<()>,
    pub(crate) current: RwLock<Option<Current>>,
    pub(crate) servable: RwLock<HashSet<String>>,
    /// MD5 (hex) of objects by SHA-256, for `MD5SUMS` without re-reading every heartbeat.
    md5_cache: std::sync::Mutex<std::collections::HashMap<String, String>>,
    pub(crate) peer_serial: AtomicU64,
    pub(crate) ready: AtomicBool,
    pub(crate) replicate_now: Notify,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: Tasks,
    stride: u64,
    index: u64,
}

/// Background tasks that shutdown waits for.
#[derive(Debug, Default)]
pub(crate) struct Tasks(std::sync::Mutex<tokio::task::JoinSet<()>>);

impl Tasks {
    /// Spawns a task.
    pub(crate) fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Reap finished tasks so the set does not grow.
        while set.try_join_next().is_some() {}
        set.spawn(f);
    }

    /// Waits for every task (call after cancelling).
    pub(crate) async fn wait(&self) {
        let mut set = std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        while set.join_next().await.is_some() {}
    }
}

/// Runs blocking work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
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

fn internal(e: impl std::fmt::Display) -> Refusal {
    Refusal::new(500, "internal", e.to_string())
}

impl Master {
    /// Sets up state from the config (no network yet).
    pub(crate) fn new(
        config: Config,
        clock: Arc<dyn Clock>,
        key: SecretKey,
        policy: Policy,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let objects = ObjectStore::open(&config.data_dir.join("objects"))?;
        let history = History::open(&config.data_dir.join("history.sqlite"))?;
        let mut keys: Vec<PublicKey> = config.peers.iter().map(|p| p.key).collect();
        keys.push(key.public());
        keys.sort();
        keys.dedup();
        let index = keys.iter().position(|k| *k == key.public()).unwrap_or(0) as u64;
        let stride = keys.len() as u64;
        // The persisted manifest is served again after a restart. One signed by another key
        // (the master key was rotated) is not served, but its serial stays the floor, so the
        // next manifest is still above what mirrors hold.
        let mut floor = 0;
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
                        floor = m.serial;
                        None
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let mut http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(std::time::Duration::from_secs(60));
        if let Some(ca) = &config.tls_ca_file {
            for cert in crate::client::read_ca(ca)? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build()?;
        let ready = config.peers.is_empty();
        let m = Self {
            config,
            clock,
            key,
            policy,
            objects,
            history,
            metrics: Metrics::default(),
            http,
            publish_lock: Mutex::new(()),
            current: RwLock::new(current),
            servable: RwLock::new(HashSet::new()),
            md5_cache: std::sync::Mutex::default(),
            peer_serial: AtomicU64::new(floor),
            ready: AtomicBool::new(ready),
            replicate_now: Notify::new(),
            cancel: CancellationToken::new(),
            tasks: Tasks::default(),
            stride,
            index,
        };
        m.refresh_servable()?;
        if let Some(c) = m.current() {
            m.metrics.serial(c.manifest.serial);
        }
        Ok(m)
    }

    /// The manifest currently served.
    pub(crate) fn current(&self) -> Option<Current> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The current serial (0 before the first manifest).
    pub(crate) fn serial(&self) -> u64 {
        self.current().map_or(0, |c| c.manifest.serial)
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
        }
        *self
            .servable
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = set;
        Ok(())
    }

    /// Whether `GET /api/v1/objects/<sha>` may serve this object.
    pub(crate) fn is_servable(&self, sha: &str) -> bool {
        self.servable
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(sha)
    }

    /// Submits a signed release statement through the gate. Refusals are recorded.
    pub(crate) async fn submit(
        self: &Arc<Self>,
        envelope: &[u8],
        origin: Origin,
    ) -> Result<ReleaseAccepted, Refusal> {
        if origin == Origin::Publisher && !self.ready.load(Ordering::SeqCst) {
            return Err(Refusal::new(
                503,
                "catching_up",
                "this master is catching up with its peers; try another master or retry shortly",
            ));
        }
        let _guard = self.publish_lock.lock().await;
        let this = Arc::clone(self);
        let envelope = envelope.to_vec();
        let origin2 = origin.clone();
        let outcome = blocking(move || this.gate_and_record(&envelope, &origin2)).await;
        match outcome {
            Ok((st, id, true)) => {
                self.metrics.release("accepted", "ok");
                tracing::info!(release = %id, db = %st.db, version = st.version, origin = %origin.label(), "release accepted");
                let serial = self.sign_and_push(false).await.map_err(internal)?;
                // The master that took a release announces it and pokes its peers; replicas
                // stay quiet (one announcement per release).
                if !matches!(origin, Origin::Peer(_)) {
                    self.poke_peers();
                    crate::notify::release(self, &st, &id);
                }
                Ok(ReleaseAccepted {
                    release_id: id,
                    master: self.config.name.clone(),
                    db: st.db,
                    version: st.version,
                    serial,
                })
            }
            Ok((st, id, false)) => {
                tracing::info!(release = %id, db = %st.db, version = st.version, "re-submission of an accepted release (same version and files)");
                let serial = blocking({
                    let h = self.history.clone();
                    let id = id.clone();
                    move || h.accepted(&id)
                })
                .await
                .map_err(internal)?
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
            Err(r) => {
                self.metrics.release("refused", r.code);
                tracing::warn!(code = r.code, reason = %r.message, origin = %origin.label(), "release refused");
                Err(r)
            }
        }
    }

    /// The held state of each database, from the history.
    pub(crate) fn held(&self) -> Result<BTreeMap<String, Held>, Refusal> {
        let mut held: BTreeMap<String, Held> = BTreeMap::new();
        for row in self.history.all_accepted().map_err(internal)? {
            let st = parse_statement(&row.envelope).map_err(internal)?;
            if held.get(&st.db).is_none_or(|h| st.version > h.version) {
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

    /// Runs the gate and records the verdict (refusals too). Returns (statement, id, newly
    /// accepted).
    fn gate_and_record(
        &self,
        envelope: &[u8],
        origin: &Origin,
    ) -> Result<(ReleaseStatement, String, bool), Refusal> {
        let now = self.clock.now();
        let mut row = ReleaseRow {
            seq: 0,
            id: String::new(),
            db: String::new(),
            version: 0,
            publisher: String::new(),
            envelope: String::from_utf8_lossy(envelope)
                .chars()
                .take(1 << 16)
                .collect(),
            verdict: "refused".into(),
            code: None,
            reason: None,
            origin: origin.label(),
            received_at: now,
            serial: None,
            published_at: None,
        };
        match self.judge(envelope, origin, now, &mut row) {
            Ok((st, Some(existing))) => Ok((st, existing, false)),
            Ok((st, None)) => {
                row.verdict = "accepted".into();
                self.history.insert_release(&row).map_err(internal)?;
                self.servable
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(st.files.iter().map(|f| f.sha256.clone()));
                Ok((st, row.id, true))
            }
            Err(r) => {
                row.code = Some(r.code.to_owned());
                row.reason = Some(r.message.clone());
                if let Err(e) = self.history.insert_release(&row) {
                    tracing::error!(error = %e, "could not record a refusal in the history");
                }
                Err(r)
            }
        }
    }

    /// The gate proper; fills in `row` as far as the statement can be trusted. Returns the
    /// statement and, when it brings nothing new, the id of the accepted release it repeats
    /// (the same statement re-sent, or another statement of the same version and files).
    fn judge(
        &self,
        envelope: &[u8],
        origin: &Origin,
        now: i64,
        row: &mut ReleaseRow,
    ) -> Result<(ReleaseStatement, Option<String>), Refusal> {
        let env = Signed::<ReleaseStatement>::from_json(envelope)
            .map_err(|e| Refusal::new(400, "bad_statement", e.to_string()))?;
        row.id = env.id();
        row.envelope = env.to_json();
        row.publisher = env.signer().to_string();
        let st = gate::check_signature(&self.policy, &env)?;
        row.db.clone_from(&st.db);
        row.version = st.version;
        let check_window = *origin == Origin::Publisher;
        let held = self.held()?;
        let known = if self.history.accepted(&row.id).map_err(internal)?.is_some() {
            Some(row.id.clone())
        } else {
            held.get(&st.db)
                .filter(|h| h.version == st.version && gate::same_files(&h.files, &st.files))
                .map(|h| h.release.clone())
        };
        if let Some(existing) = known {
            if check_window && (st.issued_at - now).abs() > self.config.statement_window_secs {
                return Err(Refusal::new(
                    409,
                    "replay",
                    format!(
                        "release {} was accepted long ago (issued at {}); re-sending it now is a replay",
                        existing, st.issued_at
                    ),
                ));
            }
            return Ok((st, Some(existing)));
        }
        gate::check_release(
            &self.policy,
            held.get(&st.db),
            &self.objects,
            &st,
            now,
            check_window,
        )?;
        Ok((st, None))
    }

    /// Signs a new manifest (new serial, fresh timestamp) and pushes it to the mirrors.
    /// `heartbeat` only changes the label in logs. Call with the publish lock held or from the
    /// loops (which take it).
    pub(crate) async fn sign_and_push(self: &Arc<Self>, heartbeat: bool) -> anyhow::Result<u64> {
        // Learn the peers' newest serials first (bounded), so the new serial is above theirs.
        let peers = self.config.peers.iter().map(|p| {
            tokio::time::timeout(
                std::time::Duration::from_secs(2),
                crate::push::fetch_peer_manifest(self, &p.url, p.key),
            )
        });
        let mut peer_newest: BTreeMap<String, u32> = BTreeMap::new();
        for m in futures_util::future::join_all(peers)
            .await
            .into_iter()
            .filter_map(|r| r.ok()?.ok()?)
        {
            for (db, d) in m.databases {
                let v = peer_newest.entry(db).or_default();
                *v = (*v).max(d.version);
            }
        }
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
        if self.ready.load(Ordering::SeqCst) {
            let this = Arc::clone(self);
            self.tasks
                .spawn(async move { crate::push::push_all(&this, serial, false).await });
        }
        Ok(serial)
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
        // Derived files.
        let mut md5sums = String::new();
        let mut shasums = String::new();
        for f in files.values() {
            let cached = self
                .md5_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&f.sha256)
                .cloned();
            let md5 = match cached {
                Some(m) => m,
                None => {
                    let data = self.objects.read(&f.sha256, self.config.max_file_size)?;
                    let m = vdb_proto::hex(&md5::Md5::digest(&data));
                    self.md5_cache
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(f.sha256.clone(), m.clone());
                    m
                }
            };
            md5sums.push_str(&format!("{md5}  {}\n", f.name));
            shasums.push_str(&format!("{}  {}\n", f.sha256, f.name));
        }
        let v = |db: &str| databases.get(db).map_or(0, |d: &DatabaseState| d.version);
        let txt = CurrentRecord {
            clamav_version: self.config.clamav_version.clone(),
            main: v("main"),
            daily: v("daily"),
            time: now,
            version_warning: false,
            flevel: self.config.flevel,
            safebrowsing: v("safebrowsing"),
            bytecode: v("bytecode"),
        }
        .to_string();
        let derived = [
            ("MD5SUMS", md5sums.into_bytes()),
            ("SHA256SUMS", shasums.into_bytes()),
            ("dns.txt", format!("{txt}\n").into_bytes()),
            ("timestamp", format!("{now}\n").into_bytes()),
        ];
        let mut servable = Vec::new();
        for (name, data) in derived {
            let sha = self.objects.put(&data)?;
            servable.push(sha.clone());
            files.insert(
                name.to_owned(),
                FileRef {
                    name: name.to_owned(),
                    size: data.len() as u64,
                    sha256: sha,
                },
            );
        }
        let floor = self.serial().max(self.peer_serial.load(Ordering::SeqCst));
        let serial = next_serial(floor, self.index, self.stride);
        let manifest = Manifest {
            network: self.config.network.clone(),
            serial,
            master: self.config.name.clone(),
            issued_at: now,
            expires_at: now + self.config.manifest_ttl(),
            databases,
            files: files.into_values().collect(),
        };
        let env = Signed::sign(&manifest, &self.key);
        let json = env.to_json();
        vdb_format::write_atomic(&self.config.data_dir.join("manifest.json"), json.as_bytes())?;
        self.history.mark_published(serial, now)?;
        self.servable
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(servable);
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Current { json, manifest });
        self.metrics.serial(serial);
        Ok(Ok(serial))
    }

    /// Asks the peers to pull from us now.
    pub(crate) fn poke_peers(self: &Arc<Self>) {
        for p in &self.config.peers {
            let url = format!("{}/api/v1/replicate", p.url.trim_end_matches('/'));
            let http = self.http.clone();
            self.tasks.spawn(async move {
                if let Err(e) = http.post(&url).timeout(std::time::Duration::from_secs(3)).send().await {
                    tracing::debug!(%url, error = %e, "could not poke a peer (it will pull on its own schedule)");
                }
            });
        }
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
