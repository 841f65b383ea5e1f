//! vdbnet mirror: atomic pull sync from the masters and a freshclam-compatible HTTP file server.
//!
//! A mirror pulls the masters' signed manifest (in order, with failover), verifies it against
//! the network's master keys, refuses rollbacks and expired manifests, downloads only the files
//! it lacks into a content-addressed object store, builds a complete snapshot directory of hard
//! links and switches a `current` symlink (and the in-memory pointer the server reads once per
//! request) to it, so clients see the old set or the new set, never a mix. Pushes signed by a
//! master trigger syncs; pushes during a sync collapse into exactly one more sync.
//!
//! The HTTP side serves the flat layout freshclam expects (`daily.cvd`, `daily-N.cdiff`,
//! `*.sign`, `timestamp`, `dns.txt`, …), the operator's `local_*` files, the signed manifest at
//! [`vdb_proto::MANIFEST_PATH`], pushes at [`vdb_proto::paths::PUSH`], `/local_stats/`,
//! `/metrics`, `/healthz` and [`STATUS_PATH`].

mod app;
mod config;
mod files;
mod hub;
pub mod join;
mod local;
mod metrics;
mod serve;
mod stats;
mod store;
mod sync;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vdb_proto::{Clock, ReplayGuard, SystemClock};

pub use app::{MirrorStatus, STATUS_PATH};
pub use config::{Config, Registration, UnknownHost};
pub use store::StoreError;
pub use sync::{Failures, MasterError, SyncError, SyncOutcome, SyncRequest};

use app::{App, Trigger};
use sync::Syncer;

/// A running mirror.
#[derive(Debug)]
pub struct Running {
    http: SocketAddr,
    https: Option<SocketAddr>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    app: Arc<App>,
    serve: Option<serve::ServeThreads>,
    syncer: Syncer,
    stats_flush: Arc<stats::Stats>,
}

impl Running {
    /// The plain HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The HTTPS address, when TLS is configured.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https
    }

    /// The serial of the served manifest.
    pub fn serial(&self) -> Option<u64> {
        self.app.snapshot().map(|s| s.manifest.serial)
    }

    /// Runs one sync now (waits for a running one to finish first).
    pub async fn sync_now(&self, req: SyncRequest) -> Result<SyncOutcome, SyncError> {
        self.syncer.sync(req).await
    }

    /// The status document (as served at [`STATUS_PATH`]).
    pub fn status(&self) -> MirrorStatus {
        let mut s = self
            .app
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        s.serial = self.serial();
        s
    }

    /// Stops accepting, finishes open requests (bounded), stops the sync loop, writes the
    /// statistics.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        if let Some(threads) = self.serve.take() {
            threads.join().await;
        }
        let st = self.stats_flush.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || st.flush()).await {
            tracing::warn!(error = %e, "cannot write the statistics");
        }
    }
}

fn syncer(
    config: &Config,
    clock: Arc<dyn Clock>,
    metrics: Arc<metrics::Metrics>,
) -> anyhow::Result<Syncer> {
    let store = store::Store::open(&config.data_dir)?;
    Ok(Syncer {
        store,
        network: config.network.clone(),
        masters: config.masters.clone(),
        hubs: config.hubs.clone(),
        delta: config.delta_transfer,
        keys: config.master_keys.clone(),
        token: config.pull_token.clone(),
        name: config.name.clone(),
        identity_file: config.identity_key_file(),
        identity: Arc::default(),
        client: sync::client(config.fetch_timeout_secs).context("cannot build the HTTP client")?,
        clock,
        current: Arc::default(),
        retired: Arc::default(),
        metrics,
    })
}

/// The mirror's listeners, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// Plain HTTP.
    pub http: std::net::TcpListener,
    /// HTTPS (needs `tls_cert_file` and `tls_key_file` in the configuration).
    pub https: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds the configuration's `listen` and `tls_listen`.
    pub fn bind(config: &Config) -> anyhow::Result<Self> {
        let bind = vdb_service::listener::bind_tcp;
        Ok(Self {
            http: bind(config.listen)?,
            https: config.tls_listen.map(bind).transpose()?,
        })
    }
}

fn tokio_listener(l: std::net::TcpListener) -> anyhow::Result<TcpListener> {
    l.set_nonblocking(true)?;
    Ok(TcpListener::from_std(l)?)
}

/// Starts a mirror on the addresses of its configuration (see [`start_on`]).
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let listeners = Listeners::bind(&config)?;
    start_on(config, listeners, clock).await
}

/// Starts a mirror on bound listeners: loads the current snapshot, starts serving and the sync
/// loop (which syncs at once, then on pushes and every `poll_secs`).
pub async fn start_on(
    config: Config,
    listeners: Listeners,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    config.check()?;
    let metrics = Arc::new(metrics::Metrics::new());
    let syncer = syncer(&config, clock.clone(), metrics.clone())?;
    {
        // Crash leftovers, then the snapshot `current` names, fully re-hashed.
        let store = syncer.store.clone();
        tokio::task::spawn_blocking(move || {
            let _lock = store.lock()?;
            store.clean_tmp()
        })
        .await??;
        syncer.load_disk_current(true).await?;
    }
    let local_dir = config.local_dir();
    std::fs::create_dir_all(&local_dir)
        .with_context(|| format!("local_dir {}", local_dir.display()))?;
    let stats_path = config.data_dir.join("stats.sqlite");
    let stats = Arc::new(
        stats::Stats::open(&stats_path, &config.monitor_user_agent)
            .with_context(|| format!("statistics database {}", stats_path.display()))?,
    );
    let trigger = Arc::new(Trigger::default());
    let app = Arc::new(App {
        name: config.name.clone(),
        hosts: config.hosts.clone(),
        unknown_host: config.unknown_host,
        mutable_cache: http::HeaderValue::from_str(&format!(
            "public, max-age={}",
            config.mutable_max_age_secs
        ))?,
        current: syncer.current.clone(),
        local: std::sync::RwLock::new(Arc::new(local::scan(&local_dir, &Default::default()))),
        local_dir,
        stats: stats.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        keys: config.master_keys.clone(),
        guard: Mutex::new(ReplayGuard::new(
            config.network.clone(),
            config.push_window_secs,
            10_000,
        )),
        trigger: trigger.clone(),
        relay: hub::Pending::default(),
        stats_auth: config.stats_user.clone().zip(config.stats_password.clone()),
        status: Mutex::new(MirrorStatus {
            name: config.name.clone(),
            ..MirrorStatus::default()
        }),
    });
    let routes = serve::Routes {
        router: app::router(app.clone()),
        app: app.clone(),
    };
    let limits = config.limits;
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let listener = tokio_listener(listeners.http)?;
    let http = listener.local_addr()?;
    let (threads, dispatch) =
        serve::ServeThreads::start(config.serve_threads(), &routes, limits, &cancel)
            .context("cannot start the serve threads")?;
    // One admission for both listeners: the caps count a client's connections on either.
    let admission = vdb_service::Admission::new(&limits);
    tasks.spawn(serve::accept_loop(
        listener,
        dispatch.clone(),
        admission.clone(),
        None,
        cancel.clone(),
    ));
    let mut https = None;
    match (listeners.https, &config.tls_cert, &config.tls_key) {
        (Some(l), Some(cert), Some(key)) => {
            let tls = vdb_service::Tls::load(cert, key)?;
            let l = tokio_listener(l)?;
            https = Some(l.local_addr()?);
            tasks.spawn(serve::accept_loop(
                l,
                dispatch,
                admission,
                Some(tls.acceptor()),
                cancel.clone(),
            ));
            tasks.spawn(tls.watch(cancel.clone()));
        }
        (Some(_), _, _) => {
            anyhow::bail!("an HTTPS listener needs `tls_cert_file` and `tls_key_file`")
        }
        (None, _, _) => {}
    }
    tasks.spawn(sync_loop(
        syncer.clone(),
        app.clone(),
        Duration::from_secs(config.poll_secs),
        config.report_syncs,
        cancel.clone(),
    ));
    tasks.spawn(local_loop(
        app.clone(),
        Duration::from_secs(config.local_scan_secs.max(1)),
        cancel.clone(),
    ));
    tasks.spawn(flush_loop(
        stats.clone(),
        Duration::from_secs(config.stats_flush_secs.max(1)),
        cancel.clone(),
    ));
    trigger.request(None, false);
    Ok(Running {
        http,
        https,
        cancel,
        tasks,
        app,
        serve: Some(threads),
        syncer,
        stats_flush: stats,
    })
}

/// How often the sync loop looks for a snapshot switched by another process.
const WATCH: Duration = Duration::from_secs(1);

/// The waits before a failed sync is tried again (full jitter, doubling from 2 s, at most
/// 5 minutes or the poll interval): a push whose sync failed on a passing fault (a master
/// restarting, a connection reset) is caught up in seconds, not at the next poll.
fn retry_policy(poll: Duration) -> vdb_fetch::RetryPolicy {
    vdb_fetch::RetryPolicy {
        max_attempts: u32::MAX,
        base_delay: Duration::from_secs(2),
        max_delay: poll.min(Duration::from_secs(300)),
        max_total: Duration::MAX,
    }
}

async fn sync_loop(
    syncer: Syncer,
    app: Arc<App>,
    poll: Duration,
    report: bool,
    cancel: CancellationToken,
) {
    let mut next_poll = tokio::time::Instant::now() + poll;
    let retry = retry_policy(poll);
    // Failed syncs in a row, and when the next try is due.
    let (mut failures, mut retry_at) = (0u32, None::<tokio::time::Instant>);
    loop {
        while let Some(req) = app.trigger.take() {
            let started = std::time::Instant::now();
            let (r, facts) = tokio::select! {
                () = cancel.cancelled() => return,
                r = syncer.sync_with_facts(req) => r,
            };
            let took = started.elapsed();
            if r.is_ok() {
                (failures, retry_at) = (0, None);
            } else {
                failures = failures.saturating_add(1);
                let wait = retry.backoff(failures);
                tracing::info!(
                    failures,
                    wait_ms = wait.as_millis() as u64,
                    "sync to be tried again"
                );
                retry_at = Some(tokio::time::Instant::now() + wait);
            }
            {
                let mut s = app.status.lock().unwrap_or_else(|e| e.into_inner());
                s.syncs += 1;
                match &r {
                    Ok(_) => s.last_error = None,
                    Err(e) => {
                        s.failed_syncs += 1;
                        s.last_error = Some(e.to_string());
                    }
                }
            }
            // A hub relays the masters' notice once it serves its serial (or once no further
            // sync is coming: its leaves then fall back to the masters). Relays and reports
            // run beside the loop: a slow leaf or master never holds up the next sync.
            let updated = matches!(r, Ok(SyncOutcome::Updated { .. }));
            let held = app.snapshot().map(|s| s.manifest.serial);
            let relay = app.relay.take_ready(held, app.trigger.has_pending());
            // Report what a push asked for, every update, and every relay (not the quiet
            // polls that change nothing).
            let outcome = r.ok().filter(|o| {
                report
                    && (req.want_serial.is_some()
                        || matches!(o, SyncOutcome::Updated { .. })
                        || relay.is_some())
            });
            if relay.is_some() || outcome.is_some() {
                let (syncer, cancel) = (syncer.clone(), cancel.clone());
                tokio::spawn(async move {
                    let work = async {
                        let relays = match &relay {
                            Some(x) => hub::relay(&syncer, x).await,
                            None => Vec::new(),
                        };
                        if let Some(o) = &outcome {
                            hub::report(&syncer, o, &facts, took, relays).await;
                        }
                    };
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = work => {}
                    }
                });
            }
            if updated {
                syncer.collect_garbage().await;
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = app.trigger.notify.notified() => {}
            () = sleep_until_some(retry_at) => {
                retry_at = None;
                app.trigger.request(None, false);
            }
            () = tokio::time::sleep_until(next_poll) => {
                next_poll = tokio::time::Instant::now() + poll;
                app.trigger.request(None, false);
            }
            // `vdbd mirror sync --once` may have switched `current` under us: serve it.
            () = tokio::time::sleep(WATCH) => {
                if let Err(e) = syncer.load_disk_current(false).await {
                    tracing::warn!(error = %e, "cannot read the current snapshot");
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever when it is `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn local_loop(app: Arc<App>, every: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let a = app.clone();
        let _ = tokio::task::spawn_blocking(move || local::refresh(&a.local_dir, &a.local)).await;
    }
}

async fn flush_loop(stats: Arc<stats::Stats>, every: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let st = stats.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || st.flush()).await {
            tracing::warn!(error = %e, "cannot write the statistics");
        }
    }
}

/// Runs the mirror from its TOML configuration until SIGINT or SIGTERM.
pub async fn run_from_config(config: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    vdb_service::lifecycle::raise_fd_limit();
    let listeners = Listeners::bind(&cfg)?;
    let mut ready = vdb_proto::Ready::new("mirror", &cfg.name, String::new());
    let running = start_on(cfg, listeners, Arc::new(SystemClock)).await?;
    ready.http = format!("http://{}", running.http_addr());
    ready.https = running.https_addr().map(|a| format!("https://{a}"));
    vdb_service::lifecycle::announce(&ready)?;
    vdb_service::lifecycle::shutdown_signal().await?;
    running.shutdown().await;
    Ok(())
}

/// One locked sync from the masters, then exit (prints the outcome as one JSON line).
pub async fn sync_once_from_config(config: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(config)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let s = syncer(&cfg, Arc::new(SystemClock), metrics)?;
    let outcome = s.sync(SyncRequest::default()).await?;
    let line = match outcome {
        SyncOutcome::Updated {
            serial,
            downloaded,
            bytes,
        } => {
            serde_json::json!({"outcome": "updated", "serial": serial, "downloaded": downloaded, "bytes": bytes})
        }
        SyncOutcome::UpToDate { serial } => {
            serde_json::json!({"outcome": "up_to_date", "serial": serial})
        }
    };
    println!("{line}");
    Ok(())
}
