//! vdbnet monitor: version-aware freshness checks, service verdicts, alerts and a status page.
//!
//! The monitor reads the mirror registry (`GET /api/v1/mirrors`) and the newest signed
//! manifest from the masters, then checks every mirror over each of its base URLs: its signed
//! manifest (signature, network, expiry, serial), the SHA-256 of its small files (`timestamp`,
//! `dns.txt`, checksum lists, recent cdiffs) against that manifest, each database's CVD header
//! through `Range: bytes=0-511` against the manifest's version and the master's copy, and the
//! response time. TLS is verified by the HTTP client.
//!
//! Staleness is version-aware: the monitor records when it first saw each database version in
//! the masters' manifests; a mirror's lag is how long ago the version it serves was superseded
//! (0 while it serves the newest). States follow `vdb_proto::MirrorState`, with hysteresis on
//! the way back, an optional quorum of monitors before anyone is taken out, and maintenance.
//! Bad data (a bad signature, bytes that do not match the signed manifest, an expired manifest,
//! a rollback) takes a mirror out at once.
//!
//! HTTP: `/` (status page, with server-side SVG figures of each recent release's spread and
//! each mirror's state history, see `charts`), `GET /api/v1/charts/releases` and
//! `GET /api/v1/charts/mirrors` (the figures' data), `GET /api/v1/verdicts` (`VerdictReport`; `?view=local` for this
//! monitor's own judgement before the quorum, which peers read), `/api/v1/status`, `/metrics`,
//! `/healthz`. Everything is kept in SQLite (WAL).

mod alert;
mod charts;
mod config;
mod http;
mod judge;
mod metrics;
mod monitor;
mod probe;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vdb_proto::{Clock, SystemClock};

pub use alert::Alert;
pub use charts::{
    MAX_COLUMNS, MAX_MIRRORS, MAX_RELEASES, MirrorCharts, MirrorHistory, MirrorSpread,
    ReleaseCharts, ReleaseSpread, Span,
};
pub use config::{AlertConfig, CheckMode, Config, SmtpConfig, Thresholds};
pub use monitor::{MirrorStatusDoc, Monitor, ReleaseDoc, RoundSummary, StatusDoc};
pub use store::{CheckRow, StoreError};

/// A running monitor: its HTTP server and its scheduler.
#[derive(Debug)]
pub struct Running {
    monitor: Arc<Monitor>,
    http: SocketAddr,
    scheme: &'static str,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Its base URL (`https://` when it serves TLS).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.http)
    }

    /// The public key of its verdict signing key (a directory's `monitor_keys`).
    pub fn public_key(&self) -> vdb_proto::PublicKey {
        self.monitor.key.public()
    }

    /// The monitor itself (to run [`Monitor::check_all`] at a chosen time).
    pub fn monitor(&self) -> &Arc<Monitor> {
        &self.monitor
    }

    /// Stops the scheduler and the HTTP server and waits for both.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts the monitor on the address of its configuration (see [`start_on`]).
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let listener = vdb_service::listener::bind_tcp(config.listen)?;
    start_on(config, listener, clock).await
}

/// Starts the monitor on a bound listener: opens its database, serves HTTP, and (unless
/// `check_interval_secs` is 0) runs a check round at once and then every interval, and one
/// more at once whenever the masters' manifest moves (`release_watch_ms`).
pub async fn start_on(
    config: Config,
    listener: std::net::TcpListener,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    config.validate()?;
    let interval = config.check_interval_secs;
    let limits = config.limits;
    let monitor = Arc::new(Monitor::new(config, clock.clone())?);
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let http = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    let app = http::router(monitor.clone());
    let tls = match (&monitor.config.tls_cert_file, &monitor.config.tls_key_file) {
        (Some(c), Some(k)) => Some(vdb_service::Tls::load(c, k)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(t) = &tls {
        // A renewed certificate is picked up without a restart.
        tasks.push(tokio::spawn(t.clone().watch(cancel.clone())));
    }
    let c = cancel.clone();
    tasks.push(tokio::spawn(async move {
        vdb_service::serve(listener, app, tls, limits, c).await;
    }));
    if interval > 0 && monitor.config.release_watch_ms > 0 {
        let m = monitor.clone();
        let c = cancel.clone();
        tasks.push(tokio::spawn(async move { m.watch_releases(c).await }));
    }
    if interval > 0 {
        let m = monitor.clone();
        let c = cancel.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let round = m.check_round(clock.now());
                tokio::select! {
                    () = c.cancelled() => return,
                    r = round => if let Err(e) = r {
                        tracing::error!(error = %format!("{e:#}"), "check round failed");
                    },
                }
                tokio::select! {
                    () = c.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(interval)) => {}
                }
            }
        }));
    }
    tracing::info!(%http, scheme, "monitor listening");
    Ok(Running {
        monitor,
        http,
        scheme,
        cancel,
        tasks,
    })
}

/// Runs the monitor from its TOML configuration until SIGINT or SIGTERM.
pub async fn run_from_config(config: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    vdb_service::lifecycle::raise_fd_limit();
    let listener = vdb_service::listener::bind_tcp(config.listen)?;
    let name = config.name.clone();
    let running = start_on(config, listener, Arc::new(SystemClock)).await?;
    let ready = vdb_proto::Ready::new("monitor", &name, running.base_url());
    vdb_service::lifecycle::announce(&ready)?;
    vdb_service::lifecycle::shutdown_signal().await?;
    running.shutdown().await;
    Ok(())
}
