//! The directory's shared state and the poll loop that keeps it current.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vdb_proto::{Clock, MirrorRecord, VerdictReport};

use crate::config::Config;
use crate::geo::Geo;
use crate::membership::{self, Inputs};
use crate::metrics::Metrics;
use crate::zone::{Snapshot, ZoneParams};

/// Most bytes read from one registry or verdict answer.
const MAX_BODY: u64 = 16 << 20;

struct Mutable {
    inputs: Inputs,
    txt_time: i64,
    /// The bytes last written to the state file.
    saved: Vec<u8>,
}

/// The state file: the last known registry and each monitor's last report, by monitor URL.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    registry: Option<Vec<MirrorRecord>>,
    #[serde(default)]
    reports: std::collections::BTreeMap<String, VerdictReport>,
}

/// State shared by the DNS server, the HTTP server and the poller.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) params: ZoneParams,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) geo: Option<Geo>,
    pub(crate) metrics: Metrics,
    snapshot: RwLock<Arc<Snapshot>>,
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
        let snapshot = Snapshot::new(params.clone(), Default::default(), serial, now);
        let metrics = Metrics::new();
        metrics.serial.set(i64::from(serial));
        let (serial_tx, _) = watch::channel(serial);
        Ok(Self {
            mutable: Mutex::new(Mutable {
                inputs: Inputs {
                    registry: None,
                    reports: vec![None; config.monitors.len()],
                },
                txt_time: now,
                saved: Vec::new(),
            }),
            config,
            params,
            clock,
            geo,
            metrics,
            snapshot: RwLock::new(Arc::new(snapshot)),
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
        let membership = membership::compute(
            &m.inputs,
            self.config.monitor_quorum,
            self.config.min_in_service,
            now,
        );
        let prev = self.snapshot();
        let refresh = i64::try_from(self.config.txt_refresh_secs).unwrap_or(3600);
        if membership.versions != prev.membership.versions
            || now - m.txt_time >= refresh
            || now < m.txt_time
        {
            m.txt_time = now;
        }
        let candidate = Snapshot::new(self.params.clone(), membership, prev.serial, m.txt_time);
        self.metrics
            .handed_out
            .set(candidate.membership.members.len() as i64);
        self.metrics
            .fail_static
            .set(i64::from(candidate.membership.fail_static));
        if candidate.fingerprint() == prev.fingerprint() {
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
            "zone changed"
        );
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
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
        for (i, url) in self.config.monitors.iter().enumerate() {
            m.inputs.reports[i] = saved.reports.get(url).cloned();
        }
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
    fn poll_failed(&self, source: &str, url: &str, e: vdb_fetch::Error) {
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
            tracing::warn!(source, error = %e, kind = ?e.kind(), "poll failed; keeping the last known data");
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
        let mut m = self.mutable.lock().unwrap_or_else(|p| p.into_inner());
        m.inputs.registry = Some(registry);
    }

    fn set_report(&self, i: usize, report: VerdictReport) {
        let mut m = self.mutable.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = m.inputs.reports.get_mut(i) {
            *slot = Some(report);
        }
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
            Err(e) => shared.poll_failed("master", &url, e),
        }
    }
    if !got_registry && !shared.config.masters.is_empty() {
        tracing::debug!("no master answered; keeping the last known registry");
    }
    let fetches = shared.config.monitors.iter().map(|m| {
        let url = join(m, "/api/v1/verdicts");
        let client = client.clone();
        async move { get_json::<VerdictReport>(&client, url).await }
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
    shared.save_state().await;
    shared.recompute()
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
    vdb_fetch::Client::builder(concat!("vdbnet-directory/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(config.http_timeout_secs))
        .connect_timeout(Duration::from_secs(config.http_timeout_secs))
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
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = poll_once(&shared, &client) => {}
        }
    }
}
