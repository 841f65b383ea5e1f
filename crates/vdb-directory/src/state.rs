//! The directory's shared state and the poll loop that keeps it current.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vdb_proto::{
    Clock, MANIFEST_PATH, Manifest, MirrorRecord, Signed, VerdictReport, VersionRecord,
};

use crate::config::Config;
use crate::geo::Geo;
use crate::membership::{self, Inputs};
use crate::metrics::Metrics;
use crate::zone::{Snapshot, ZoneParams};

/// Most bytes read from one registry or verdict answer.
const MAX_BODY: u64 = 16 << 20;

/// Most bytes read from one manifest.
const MAX_MANIFEST: u64 = 4 << 20;

/// A manifest's own record time is used as long as it is younger than this (seconds); older
/// (a rollout stuck for most of freshclam's 12 h limit), the directory stamps the time itself.
const MAX_MANIFEST_RECORD_AGE: i64 = 11 * 3600;

/// How many manifests are kept (besides those some mirror is known to serve).
const KEEP_MANIFESTS: usize = 32;

/// How many lagging mirrors are asked for their manifest at once.
const PROBE_CONCURRENCY: usize = 64;

/// A mirror that lags this long is asked only every `poll_secs` instead of every
/// `rollout_poll_ms`.
const FAST_PROBE_WINDOW: Duration = Duration::from_secs(30);

struct Mutable {
    inputs: Inputs,
    /// The highest manifest serial seen from the masters.
    newest: Option<u64>,
    txt_time: i64,
    /// Per monitor: its last report's `generated_at`, and when (directory clock) a report
    /// last moved it on. Verdicts expire `verdict_max_age_secs` after that.
    report_seen: Vec<Option<(i64, i64)>>,
    /// When the masters' registry was last read (directory clock).
    registry_at: Option<i64>,
    /// The bytes last written to the state file.
    saved: Vec<u8>,
}

/// The state file: the last known registry and each monitor's last report, by monitor URL.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    registry: Option<Vec<MirrorRecord>>,
    #[serde(default)]
    reports: BTreeMap<String, VerdictReport>,
    /// Known manifests by serial.
    #[serde(default)]
    manifests: BTreeMap<u64, Manifest>,
    /// Mirror → the highest serial the directory saw it serve.
    #[serde(default)]
    confirmed: BTreeMap<String, u64>,
    /// The highest serial seen from the masters.
    #[serde(default)]
    newest: Option<u64>,
}

/// State shared by the DNS server, the HTTP server and the poller.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) params: ZoneParams,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) geo: Option<Geo>,
    pub(crate) metrics: Metrics,
    snapshot: RwLock<Arc<Snapshot>>,
    /// The fast path's answers of the current snapshot, and their generation.
    fast: RwLock<(u64, Arc<crate::fast::Table>)>,
    fast_generation: std::sync::atomic::AtomicU64,
    mutable: Mutex<Mutable>,
    serial_tx: watch::Sender<u32>,
    /// URLs whose last poll failed (to log failures once, and recoveries).
    failing: Mutex<std::collections::BTreeSet<String>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("zone", &self.config.zone)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        clock: Arc<dyn Clock>,
        geo: Option<Geo>,
    ) -> anyhow::Result<Self> {
        let params = ZoneParams::from_config(&config)?;
        let now = clock.now();
        let serial = serial_from_time(now);
        let snapshot = Snapshot::new(
            params.clone(),
            Default::default(),
            serial,
            &VersionRecord::default(),
            now,
        );
        let metrics = Metrics::new();
        metrics.serial.set(i64::from(serial));
        let table = crate::fast::Table::build(&snapshot, &metrics);
        let (serial_tx, _) = watch::channel(serial);
        Ok(Self {
            mutable: Mutex::new(Mutable {
                inputs: Inputs {
                    registry: None,
                    reports: vec![None; config.monitors.len()],
                    manifests: BTreeMap::new(),
                    confirmed: BTreeMap::new(),
                },
                newest: None,
                txt_time: now,
                report_seen: vec![None; config.monitors.len()],
                registry_at: None,
                saved: Vec::new(),
            }),
            config,
            params,
            clock,
            geo,
            metrics,
            snapshot: RwLock::new(Arc::new(snapshot)),
            fast: RwLock::new((0, Arc::new(table))),
            fast_generation: std::sync::atomic::AtomicU64::new(0),
            serial_tx,
            failing: Mutex::new(Default::default()),
        })
    }

    /// The current zone.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the current zone, and the fast path's answers with those of the new zone.
    fn store(&self, snap: Snapshot) {
        let started = Instant::now();
        let table = crate::fast::Table::build(&snap, &self.metrics);
        let prepared = table.len();
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snap);
        let mut fast = self.fast.write().unwrap_or_else(|p| p.into_inner());
        let generation = fast.0 + 1;
        *fast = (generation, Arc::new(table));
        self.fast_generation
            .store(generation, std::sync::atomic::Ordering::Release);
        tracing::debug!(
            prepared,
            took_us = started.elapsed().as_micros() as u64,
            "DNS answers prepared"
        );
    }

    /// The fast path's answers of the current zone, with their generation.
    pub(crate) fn fast(&self) -> (u64, Arc<crate::fast::Table>) {
        let f = self.fast.read().unwrap_or_else(|p| p.into_inner());
        (f.0, f.1.clone())
    }

    /// The generation of the fast path's answers (it moves on whenever they are replaced).
    pub(crate) fn fast_generation(&self) -> u64 {
        self.fast_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Follows serial changes (for NOTIFY).
    pub(crate) fn serial_changes(&self) -> watch::Receiver<u32> {
        self.serial_tx.subscribe()
    }

    /// The region of a client address, if GeoIP is configured and knows it.
    pub(crate) fn region_of(&self, ip: std::net::IpAddr) -> Option<String> {
        self.geo.as_ref()?.region(ip)
    }

    /// Recomputes the zone from the inputs at the clock's time; bumps the serial when any
    /// answer changes. Returns whether it changed.
    pub(crate) fn recompute(&self) -> bool {
        let now = self.clock.now();
        let mut m = self.mutable.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = self.expire_verdicts(&mut m, now);
        let membership = membership::compute(
            &m.inputs,
            self.config.monitor_quorum,
            self.config.min_in_service,
            now,
        );
        let prev = self.snapshot();
        let refresh = i64::try_from(self.config.txt_refresh_secs).unwrap_or(3600);
        // The TXT records are the `dns.txt` of the manifest every handed-out mirror serves,
        // byte for byte (its fields and its signing time); without one, the fields of the
        // newest known manifest (or the defaults) and a time stamped here.
        let exact = membership
            .txt_serial
            .and_then(|s| m.inputs.manifests.get(&s))
            .and_then(|man| Some((man.version_record.clone()?, man.issued_at)))
            .filter(|(_, t)| now.saturating_sub(*t) <= MAX_MANIFEST_RECORD_AGE && *t <= now + 300);
        let record = match &exact {
            Some((r, t)) => {
                m.txt_time = *t;
                r.clone()
            }
            None => {
                if membership.versions != prev.membership.versions
                    || now - m.txt_time >= refresh
                    || now < m.txt_time
                {
                    m.txt_time = stamp;
                }
                m.inputs
                    .manifests
                    .values()
                    .rev()
                    .find_map(|man| man.version_record.clone())
                    .unwrap_or_default()
            }
        };
        let candidate = Snapshot::new(
            self.params.clone(),
            membership,
            prev.serial,
            &record,
            m.txt_time,
        );
        self.metrics
            .handed_out
            .set(candidate.membership.members.len() as i64);
        self.metrics
            .fail_static
            .set(i64::from(candidate.membership.fail_static));
        for (db, v) in &candidate.membership.versions {
            self.metrics
                .txt_version
                .get_or_create(&crate::metrics::DbLabels { db: db.clone() })
                .set(i64::from(*v));
        }
        self.metrics.txt_time.set(m.txt_time);
        if candidate.fingerprint() == prev.fingerprint() {
            // The same answers, but what the status API shows may have moved (a mirror
            // serves a newer serial that the TXT records cannot follow yet).
            if candidate.membership.statuses != prev.membership.statuses
                || candidate.membership.txt_serial != prev.membership.txt_serial
            {
                let same = Snapshot {
                    serial: prev.serial,
                    ..candidate
                };
                self.store(same);
            }
            return false;
        }
        let serial = prev.serial.wrapping_add(1).max(serial_from_time(now));
        let next = Snapshot {
            serial,
            ..candidate
        };
        tracing::info!(
            serial,
            handed_out = next.membership.members.len(),
            fail_static = next.membership.fail_static,
            txt_serial = ?next.membership.txt_serial,
            txt = ?next.txt.as_ref().map(|t| t.current.to_string()),
            "zone changed"
        );
        self.store(next);
        self.metrics.serial.set(i64::from(serial));
        self.serial_tx.send_replace(serial);
        true
    }

    /// Loads the state file, if configured and present. A missing file is normal; an
    /// unreadable or malformed one is logged and ignored (the polls will refill the state).
    pub(crate) fn load_state(&self) {
        let Some(path) = &self.config.state_file else {
            return;
        };
        let bytes = match std::fs::metadata(path) {
            Ok(m) if m.len() > MAX_BODY * 4 => {
                tracing::warn!(path = %path.display(), "state file too large; ignored");
                return;
            }
            Ok(_) => match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the state file; ignored");
                    return;
                }
            },
            Err(_) => return,
        };
        let saved: Saved = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "malformed state file; ignored");
                return;
            }
        };
        let mut m = self.mutable.lock().unwrap_or_else(|p| p.into_inner());
        m.inputs.registry = saved.registry;
        let now = self.clock.now();
        for (i, url) in self.config.monitors.iter().enumerate() {
            m.inputs.reports[i] = saved.reports.get(url).cloned();
            // Loaded verdicts live one `verdict_max_age_secs` from the start unless a new
            // report moves them on.
            m.report_seen[i] = m.inputs.reports[i].as_ref().map(|r| (r.generated_at, now));
        }
        m.inputs.manifests = saved.manifests;
        m.inputs.confirmed = saved.confirmed;
        m.newest = saved.newest;
        m.saved = bytes;
        tracing::info!(path = %path.display(), "last known registry and verdicts loaded");
    }

    /// Writes the state file (atomically) when the inputs changed since the last write.
    async fn save_state(&self) {
        let Some(path) = self.config.state_file.clone() else {
            return;
        };
        let bytes = {
            let m = self.mutable.lock().unwrap_or_else(|p| p.into_inner());
            let saved = Saved {
                registry: m.inputs.registry.clone(),
                reports: self
                    .config
                    .monitors
                    .iter()
                    .zip(&m.inputs.reports)
                    .filter_map(|(u, r)| Some((u.clone(), r.clone()?)))
                    .collect(),
                manifests: m.inputs.manifests.clone(),
                confirmed: m.inputs.confirmed.clone(),
                newest: m.newest,
            };
            let Ok(bytes) = serde_json::to_vec(&saved) else {
                return;
            };
            if bytes == m.saved {
                return;
            }
            bytes
        };
        let data = bytes.clone();
        let p = path.clone();
        match tokio::task::spawn_blocking(move || vdb_format::write_atomic(&p, &data)).await {
            Ok(Ok(())) => {
                self.mutable.lock().unwrap_or_else(|p| p.into_inner()).saved = bytes;
            }
            Ok(Err(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the state file");
            }
            Err(_) => {}
        }
    }

    /// Logs a poll failure once per outage (later ones at debug level) and counts it.
    fn poll_failed(&self, source: &str, url: &str, e: PollError) {
        self.metrics
            .poll_errors
            .get_or_create(&crate::metrics::SourceLabels {
                source: source.into(),
            })
            .inc();
        let first = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_owned());
        if first {
            tracing::warn!(source, %url, error = %e, "poll failed; keeping the last known data");
        } else {
            tracing::debug!(source, error = %e, "poll still failing");
        }
    }

    fn poll_ok(&self, source: &str, url: &str) {
        if self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(url)
        {
            tracing::info!(source, url, "poll works again");
        }
    }

    fn set_registry(&self, registry: Vec<MirrorRecord>) {
        let now = self.clock.now();
        let mut m = self.mutable.lock().unwrap_or_else(|p| p.into_inner());
        m.inputs.registry = Some(registry);
        m.registry_at = Some(now);
    }

    /// Reads a manifest envelope: signed by one of `master_keys` when those are configured.
    fn read_manifest(&self, body: &[u8]) -> Result<Manifest, String> {
        let env = Signed::<Manifest>::from_json(body).map_err(|e| e.to_string())?;
        let keys = if self.config.master_keys.is_empty() {
            vec![env.signer()]
        } else {
            self.config.master_keys.clone()
        };
        env.verify(&keys).map_err(|e| e.to_string())
    }

    /// Takes the masters' manifest; returns whether it is a newer serial.
    fn note_master_manifest(&self, man: Manifest) -> bool {
        let mut m = self.mutable.lock().unwrap_or_else(|p| p.into_inner());
        if m.newest.is_some_and(|n| n >= man.serial) {
            return false;
        }
        tracing::info!(serial = man.serial, "new manifest from the masters");
        m.newest = Some(man.serial);
        m.inputs.manifests.insert(man.serial, man);
        prune_manifests(&mut m.inputs);
        true
    }

    /// Takes what a mirror serves; returns whether anything changed. A mirror's manifest
    /// counts only up to the masters' newest serial and only when it is the masters' document
    /// for that serial (or one the directory has not seen, below the newest).
    fn note_mirror_manifest(&self, name: &str, man: Manifest) -> bool {
        let mut m = self.mutable.lock().unwrap_or_else(|p| p.into_inner());
        if m.newest.is_none_or(|n| man.serial > n) {
            return false;
        }
        match m.inputs.manifests.get(&man.serial) {
            Some(known)
                if known.databases != man.databases
                    || known.files != man.files
                    || known.version_record != man.version_record =>
            {
                tracing::warn!(
                    mirror = name,
                    serial = man.serial,
                    "a mirror serves a manifest that differs from the masters' for its serial; ignored"
                );
                return false;
            }
            Some(_) => {}
            None => {
                m.inputs.manifests.insert(man.serial, man.clone());
            }
        }
        let held = m.inputs.confirmed.get(name).copied();
        if held.is_some_and(|h| h >= man.serial) {
            return false;
        }
        tracing::info!(mirror = name, serial = man.serial, "mirror serves it");
        m.inputs.confirmed.insert(name.to_owned(), man.serial);
        prune_manifests(&mut m.inputs);
        true
    }

    /// Registered mirrors that may be handed out and are not known to serve the masters'
    /// newest serial, with the manifest URL to ask and whether it is handed out now.
    fn lagging(&self) -> Vec<(String, String, bool)> {
        let now = self.clock.now();
        let m = self.mutable.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(newest), Some(registry)) = (m.newest, &m.inputs.registry) else {
            return Vec::new();
        };
        let handed: std::collections::BTreeSet<String> = self
            .snapshot()
            .membership
            .members
            .iter()
            .map(|x| x.name.clone())
            .collect();
        let mut out = Vec::new();
        for rec in registry {
            if rec.drained || rec.in_maintenance(now) {
                continue;
            }
            if m.inputs
                .confirmed
                .get(&rec.name)
                .is_some_and(|&s| s >= newest)
            {
                continue;
            }
            let Some(base) = rec.base_urls.iter().find(|u| {
                (u.starts_with("http://") || u.starts_with("https://")) && u.len() <= 2048
            }) else {
                continue;
            };
            out.push((
                rec.name.clone(),
                join(base, MANIFEST_PATH),
                handed.contains(&rec.name),
            ));
        }
        out
    }

    fn set_report(&self, i: usize, report: VerdictReport) {
        let now = self.clock.now();
        let mut m = self.mutable.lock().unwrap_or_else(|p| p.into_inner());
        let Some(seen) = m.report_seen.get_mut(i) else {
            return;
        };
        // A report older than the one held is a replay (or a monitor whose clock went back):
        // the newer verdicts stay.
        if let Some((generated, _)) = *seen
            && report.generated_at < generated
        {
            tracing::warn!(
                monitor = %self.config.monitors[i],
                generated_at = report.generated_at,
                held = generated,
                "a verdict report older than the one held is ignored"
            );
            return;
        }
        let advanced = match *seen {
            Some((generated, at)) if report.generated_at <= generated => at,
            _ => now,
        };
        *seen = Some((report.generated_at, advanced));
        m.inputs.reports[i] = Some(report);
    }

    /// Drops the verdicts of monitors whose report has not moved on for
    /// `verdict_max_age_secs`; returns the time the directory may stamp on a TXT record it
    /// makes itself: now, but never later than its freshest input (the newest moving monitor
    /// report, or without monitors the last registry read).
    fn expire_verdicts(&self, m: &mut Mutable, now: i64) -> i64 {
        let max_age = i64::try_from(self.config.verdict_max_age_secs).unwrap_or(i64::MAX);
        for (i, seen) in m.report_seen.iter().enumerate() {
            if let Some((_, at)) = seen
                && now.saturating_sub(*at) > max_age
                && m.inputs.reports[i].is_some()
            {
                tracing::warn!(
                    monitor = %self.config.monitors[i],
                    since = at,
                    "the monitor's verdicts have not moved on for verdict_max_age_secs: they no longer count"
                );
                m.inputs.reports[i] = None;
                self.metrics.verdicts_expired.inc();
            }
        }
        let freshest = if self.config.monitors.is_empty() {
            m.registry_at
        } else {
            m.report_seen.iter().flatten().map(|(_, at)| *at).max()
        };
        freshest.map_or(now, |t| t.min(now))
    }
}

/// A serial derived from the time, so that a restarted directory does not go backwards.
fn serial_from_time(now: i64) -> u32 {
    u32::try_from(now.clamp(1, i64::from(u32::MAX))).unwrap_or(1)
}

async fn get_json<T: DeserializeOwned>(
    client: &vdb_fetch::Client,
    url: String,
) -> Result<T, vdb_fetch::Error> {
    client.get(&url).send().await?.json(MAX_BODY).await
}

fn join(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// Polls the masters (in order, the first good answer wins) and every monitor once, keeping
/// the last known data of any that fail, then recomputes the zone.
pub(crate) async fn poll_once(shared: &Shared, client: &vdb_fetch::Client) -> bool {
    let mut got_registry = false;
    for master in &shared.config.masters {
        let url = join(master, vdb_proto::paths::MIRRORS);
        match get_json::<Vec<MirrorRecord>>(client, url.clone()).await {
            Ok(reg) => {
                shared.poll_ok("master", &url);
                shared.set_registry(reg);
                got_registry = true;
                break;
            }
            Err(e) => shared.poll_failed("master", &url, e.into()),
        }
    }
    if !got_registry && !shared.config.masters.is_empty() {
        tracing::debug!("no master answered; keeping the last known registry");
    }
    poll_monitors(shared, client).await;
    shared.save_state().await;
    shared.recompute()
}

/// Why a poll brought nothing new.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PollError {
    /// The request or its answer.
    #[error("{0} ({kind:?})", kind = .0.kind())]
    Fetch(#[from] vdb_fetch::Error),
    /// A monitor's report not signed by one of `monitor_keys` (or not a signed report).
    #[error("verdict report refused: {0}")]
    Verdicts(#[from] vdb_proto::VerifyError),
}

/// Reads every monitor's verdicts once, keeping the last known report of any that fail. With
/// `monitor_keys`, only signed reports count, and only if one of those keys signed them.
async fn poll_monitors(shared: &Shared, client: &vdb_fetch::Client) {
    let keys = shared.config.monitor_keys.clone();
    let fetches = shared.config.monitors.iter().map(|m| {
        let client = client.clone();
        let keys = keys.clone();
        let m = m.clone();
        async move {
            if keys.is_empty() {
                return Ok(get_json::<VerdictReport>(&client, join(&m, "/api/v1/verdicts")).await?);
            }
            let url = join(&m, "/api/v1/verdicts/signed");
            let body = client
                .get(&url)
                .send()
                .await?
                .bytes(&vdb_fetch::Expect::at_most(MAX_BODY))
                .await?;
            Ok(vdb_proto::Signed::<VerdictReport>::from_json(&body)?.verify(&keys)?)
        }
    });
    let results = futures_join_all(fetches).await;
    for ((i, r), url) in results.into_iter().enumerate().zip(&shared.config.monitors) {
        let Some(r) = r else { continue };
        match r {
            Ok(report) => {
                shared.poll_ok("monitor", url);
                shared.set_report(i, report);
            }
            Err(e) => shared.poll_failed("monitor", url, e),
        }
    }
}

/// Runs a set of futures concurrently and collects their outputs in order (None: it panicked).
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<Option<F::Output>>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut n = 0;
    for (i, f) in futs.enumerate() {
        set.spawn(async move { (i, f.await) });
        n += 1;
    }
    let mut out: Vec<Option<F::Output>> = (0..n).map(|_| None).collect();
    while let Some(Ok((i, v))) = set.join_next().await {
        out[i] = Some(v);
    }
    out
}

/// The HTTP client for polls.
pub(crate) fn client(config: &Config) -> Result<vdb_fetch::Client, vdb_fetch::Error> {
    let roots = match &config.tls_ca_file {
        Some(path) => vdb_fetch::read_ca(path)?,
        None => Vec::new(),
    };
    vdb_fetch::Client::builder(concat!("vdbnet-directory/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(config.http_timeout_secs))
        .connect_timeout(Duration::from_secs(config.http_timeout_secs))
        .add_roots(&roots)
        .build()
}

/// Polls every `poll_secs` until cancelled.
pub(crate) async fn poll_loop(
    shared: Arc<Shared>,
    client: vdb_fetch::Client,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(shared.config.poll_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await; // the first tick is immediate; start() already polled once
    while cancel.run_until_cancelled(tick.tick()).await.is_some()
        && cancel
            .run_until_cancelled(poll_once(&shared, &client))
            .await
            .is_some()
    {}
}

/// Drops old manifests: keeps the newest [`KEEP_MANIFESTS`] and every one a mirror is known
/// to serve (by the directory or a monitor).
fn prune_manifests(inputs: &mut Inputs) {
    if inputs.manifests.len() <= KEEP_MANIFESTS {
        return;
    }
    let mut keep: std::collections::BTreeSet<u64> = inputs
        .manifests
        .keys()
        .rev()
        .take(KEEP_MANIFESTS)
        .copied()
        .collect();
    keep.extend(inputs.confirmed.values().copied());
    keep.extend(
        inputs
            .reports
            .iter()
            .flatten()
            .flat_map(|r| r.mirrors.iter().filter_map(|v| v.serial)),
    );
    inputs.manifests.retain(|s, _| keep.contains(s));
}

/// When each lagging mirror was first seen lagging, and when it may be asked next.
#[derive(Debug, Default)]
pub(crate) struct ProbeSchedule {
    lagging_since: HashMap<String, Instant>,
    next: HashMap<String, Instant>,
}

/// One look at the rollout: the masters' manifest, then every mirror that does not serve the
/// newest serial yet (and, while a handed-out mirror lags, the monitors' verdicts, so that a
/// mirror the monitor took out stops holding the TXT record back). Returns whether the zone
/// changed.
pub(crate) async fn rollout_once(
    shared: &Shared,
    client: &vdb_fetch::Client,
    schedule: &mut ProbeSchedule,
) -> bool {
    let mut changed = false;
    for master in &shared.config.masters {
        let url = join(master, MANIFEST_PATH);
        let got = match client.get(&url).send().await {
            Ok(r) => r.bytes(&vdb_fetch::Expect::at_most(MAX_MANIFEST)).await,
            Err(e) => Err(e),
        };
        match got {
            Ok(body) => match shared.read_manifest(&body) {
                Ok(man) => {
                    shared.poll_ok("master_manifest", &url);
                    changed |= shared.note_master_manifest(man);
                    break;
                }
                Err(e) => {
                    tracing::debug!(url, error = %e, "unusable manifest from a master");
                }
            },
            Err(e) => shared.poll_failed("master_manifest", &url, e.into()),
        }
    }
    let lagging = shared.lagging();
    let now = Instant::now();
    let lagging_names: std::collections::HashSet<&String> =
        lagging.iter().map(|(n, _, _)| n).collect();
    schedule
        .lagging_since
        .retain(|n, _| lagging_names.contains(n));
    schedule.next.retain(|n, _| lagging_names.contains(n));
    let slow = Duration::from_secs(shared.config.poll_secs);
    // While a handed-out mirror has lagged only briefly (a release rolling out), the
    // monitors' verdicts are read at this pace too.
    let handed_lagging = lagging.iter().any(|(n, _, handed)| {
        *handed
            && schedule
                .lagging_since
                .get(n)
                .is_none_or(|t| now.duration_since(*t) <= FAST_PROBE_WINDOW)
    });
    let due: Vec<(String, String)> = lagging
        .into_iter()
        .filter(|(n, _, _)| schedule.next.get(n).is_none_or(|t| *t <= now))
        .take(PROBE_CONCURRENCY)
        .map(|(n, u, _)| (n, u))
        .collect();
    for (n, _) in &due {
        let since = *schedule.lagging_since.entry(n.clone()).or_insert(now);
        if now.duration_since(since) > FAST_PROBE_WINDOW {
            schedule.next.insert(n.clone(), now + slow);
        }
    }
    let probes = due.into_iter().map(|(name, url)| {
        let client = client.clone();
        async move {
            let r = match client.get(&url).send().await {
                Ok(r) => r.bytes(&vdb_fetch::Expect::at_most(MAX_MANIFEST)).await,
                Err(e) => Err(e),
            };
            (name, url, r)
        }
    });
    for (name, url, r) in futures_join_all(probes).await.into_iter().flatten() {
        match r {
            Ok(body) => match shared.read_manifest(&body) {
                Ok(man) => changed |= shared.note_mirror_manifest(&name, man),
                Err(e) => {
                    tracing::debug!(mirror = %name, error = %e, "unusable manifest from a mirror")
                }
            },
            Err(e) => {
                tracing::debug!(mirror = %name, url, error = %e, "cannot read a mirror's manifest")
            }
        }
    }
    if handed_lagging {
        poll_monitors(shared, client).await;
    }
    if changed {
        shared.save_state().await;
    }
    shared.recompute()
}

/// Follows the rollout every `rollout_poll_ms` until cancelled.
pub(crate) async fn rollout_loop(
    shared: Arc<Shared>,
    client: vdb_fetch::Client,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(shared.config.rollout_poll_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut schedule = ProbeSchedule::default();
    while cancel.run_until_cancelled(tick.tick()).await.is_some()
        && cancel
            .run_until_cancelled(rollout_once(&shared, &client, &mut schedule))
            .await
            .is_some()
    {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdb_proto::{DatabaseState, ManualClock};

    fn manifest(serial: u64, test: u32, issued_at: i64) -> Manifest {
        Manifest {
            network: "n".into(),
            serial,
            master: "a".into(),
            issued_at,
            expires_at: issued_at + 86_400,
            databases: [(
                "test".to_owned(),
                DatabaseState {
                    version: test,
                    built_at: 1,
                    release: "r".into(),
                },
            )]
            .into(),
            files: Vec::new(),
            version_record: Some(VersionRecord {
                clamav_version: "1.4.3".into(),
                version_warning: false,
                flevel: 212,
            }),
            inline: Default::default(),
        }
    }

    fn shared(now: i64) -> Shared {
        let mut c = Config::new("vdb.test");
        c.monitors = vec!["http://monitor.invalid".into()];
        let s = Shared::new(c, Arc::new(ManualClock::new(now)), None).unwrap();
        let mut rec = MirrorRecord::new("m1", "http://192.0.2.1");
        rec.addresses = vec!["192.0.2.1".parse().unwrap()];
        s.set_registry(vec![rec]);
        s.set_report(
            0,
            VerdictReport {
                monitor: "m".into(),
                generated_at: 0,
                newest: BTreeMap::new(),
                mirrors: vec![vdb_proto::MirrorVerdict {
                    name: "m1".into(),
                    state: vdb_proto::MirrorState::InService,
                    serving: BTreeMap::new(),
                    serial: None,
                    lag_secs: 0,
                    last_good: None,
                    reason: String::new(),
                }],
            },
        );
        s
    }

    #[test]
    fn mirror_manifests_count_only_up_to_the_masters_newest_and_only_as_signed() {
        let s = shared(1_000);
        // Nothing from the masters yet: a mirror's word alone does not count.
        assert!(!s.note_mirror_manifest("m1", manifest(5, 5, 900)));
        assert!(s.note_master_manifest(manifest(5, 5, 900)));
        assert!(!s.note_master_manifest(manifest(4, 4, 800)), "never back");
        // Above the masters' newest: not (yet) believed.
        assert!(!s.note_mirror_manifest("m1", manifest(6, 6, 950)));
        // Same serial, other content (equivocation): ignored.
        let mut other = manifest(5, 5, 900);
        other.databases.get_mut("test").unwrap().version = 7;
        assert!(!s.note_mirror_manifest("m1", other));
        assert!(s.note_mirror_manifest("m1", manifest(5, 5, 900)));
        assert!(
            !s.note_mirror_manifest("m1", manifest(5, 5, 900)),
            "no change"
        );
        s.recompute();
        let snap = s.snapshot();
        // The record is the manifest's dns.txt: its fields and its signing time.
        let txt = snap.txt.as_ref().unwrap();
        assert_eq!(txt.current.to_string(), "1.4.3:0:0:900:0:212:0:0");
        assert_eq!(txt.dbs["test"].to_string(), "5:900");
        assert_eq!(snap.membership.txt_serial, Some(5));
    }

    #[test]
    fn a_record_too_old_for_freshclam_is_stamped_anew() {
        let s = shared(900 + MAX_MANIFEST_RECORD_AGE + 1);
        assert!(s.note_master_manifest(manifest(5, 5, 900)));
        assert!(s.note_mirror_manifest("m1", manifest(5, 5, 900)));
        s.recompute();
        let snap = s.snapshot();
        let txt = snap.txt.as_ref().unwrap();
        assert_eq!(txt.current.time, 900 + MAX_MANIFEST_RECORD_AGE + 1);
        assert_eq!(txt.current.clamav_version, "1.4.3");
    }

    #[test]
    fn verdicts_that_stop_moving_expire_and_the_txt_time_shows_the_age_of_the_data() {
        // A release signed long ago (older than freshclam accepts: the directory stamps the
        // TXT time itself), which m1 is confirmed to serve.
        const B: i64 = 900 + MAX_MANIFEST_RECORD_AGE + 1_000;
        let clock = ManualClock::new(B);
        let mut c = Config::new("vdb.test");
        c.monitors = vec!["http://monitor.invalid".into()];
        c.verdict_max_age_secs = 600;
        let s = Shared::new(c, Arc::new(clock.clone()), None).unwrap();
        let mut rec = MirrorRecord::new("m1", "http://192.0.2.1");
        rec.addresses = vec!["192.0.2.1".parse().unwrap()];
        s.set_registry(vec![rec]);
        assert!(s.note_master_manifest(manifest(5, 5, 900)));
        assert!(s.note_mirror_manifest("m1", manifest(5, 5, 900)));
        let report = |generated_at| VerdictReport {
            monitor: "m".into(),
            generated_at,
            newest: BTreeMap::new(),
            mirrors: vec![vdb_proto::MirrorVerdict {
                name: "m1".into(),
                state: vdb_proto::MirrorState::InService,
                serving: BTreeMap::new(),
                serial: Some(5),
                lag_secs: 0,
                last_good: None,
                reason: String::new(),
            }],
        };
        s.set_report(0, report(B - 10));
        s.recompute();
        let in_service = |s: &Shared| s.snapshot().membership.statuses[0].in_service;
        let txt_time = |s: &Shared| s.snapshot().txt.as_ref().unwrap().current.time;
        assert!(in_service(&s));
        assert_eq!(txt_time(&s), B);
        // The monitor keeps answering, but the same report: frozen. Within the age, it counts.
        clock.set(B + 500);
        s.set_report(0, report(B - 10));
        s.recompute();
        assert!(in_service(&s));
        // Past it, its verdicts count for nothing (fail-static still hands m1 out), and the
        // TXT time the directory stamps is that of its freshest input, not now.
        clock.set(B + 601 + 3_600);
        s.set_report(0, report(B - 10));
        s.recompute();
        let snap = s.snapshot();
        assert!(!snap.membership.statuses[0].in_service);
        assert!(snap.membership.fail_static);
        assert_eq!(txt_time(&s), B);
        assert_eq!(s.metrics.verdicts_expired.get(), 1);
        // A report that moves on counts again, and the time is now.
        let now = B + 601 + 3_600 + 10;
        clock.set(now);
        s.set_report(0, report(now));
        s.recompute();
        assert!(in_service(&s));
        assert_eq!(txt_time(&s), now);
    }
}
