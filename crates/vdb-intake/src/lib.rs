//! vdbnet sample intake (`vdbd intake`): the seed's "send us the virus", done safely.
//!
//! The public sends files that the network's databases do not detect, through a web form that
//! works without JavaScript (`GET /`, `POST /submit`) or the API (`POST /api/v1/samples`,
//! multipart: `file`, optional `detection`, `note`, `email`). Each submission is bounded (size
//! capped while it streams, attempts and uploads in flight per client address, a time limit, a
//! quarantine quota; empty files, names with paths or control characters and malformed fields
//! are refused with a clear error, and nothing of a refused submission is kept).
//!
//! Accepted samples are stored by SHA-256 in the quarantine, encrypted at rest in the form the
//! industry exchanges samples in: a ZIP with the password `infected`. The same bytes sent again
//! add a submission to the existing record. Each new sample is scanned by the real ClamAV
//! (`clamscan` or `clamd`) against the network's current databases, and the team is told
//! (webhook, e-mail). The submitter gets an unguessable tracking id (128 random bits; only its
//! hash is stored) and a status page, `GET /status/<id>` (JSON: `GET /api/v1/submissions/<id>`),
//! that says received, already detected (as what) or signature published (in which database
//! version), and nothing about other samples or submitters.
//!
//! The team works through the admin API (`Authorization: Bearer <admin_token>`, i.e. `vdb
//! samples list|show|get|resolve`): `GET /api/v1/samples[?state=…&limit=…]`,
//! `GET /api/v1/samples/<sha256>`, `GET /api/v1/samples/<sha256>/quarantine` (the encrypted
//! ZIP, never the raw sample), `POST /api/v1/samples/<sha256>/resolve` (the release that detects
//! it; submitters who left an address are told by e-mail). `GET /api/v1/status` and `/healthz`
//! for operators.
//!
//! The intake runs apart from the masters: untrusted uploads never share a process with
//! signing keys.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! let config = vdb_intake::Config::new("/var/lib/vdbnet/intake");
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let running = vdb_intake::start_on(config, listener, Arc::new(vdb_proto::SystemClock)).await?;
//! println!("form at http://{}/", running.http_addr());
//! running.shutdown().await;
//! # Ok(()) }
//! ```

mod config;
mod http;
mod intake;
mod limit;
mod notify;
mod quarantine;
mod store;
mod triage;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use vdb_proto::{Clock, SystemClock};

pub use config::{Config, Limits, NotifyConfig, ScannerConfig, SmtpConfig};
pub use store::StoreError;

/// A running intake.
#[derive(Debug)]
pub struct Running {
    intake: Arc<intake::Intake>,
    http: SocketAddr,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The base URL (`http://addr`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Stops the HTTP server and waits for it and for the scans in progress.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.server.await;
        self.intake.tasks.close();
        self.intake.tasks.wait().await;
    }
}

/// Starts the intake on the address of its configuration (see [`start_on`]).
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let listener = vdb_service::listener::bind_tcp(config.listen)?;
    start_on(config, listener, clock).await
}

/// Starts the intake on a bound listener: opens the quarantine and the database, re-queues
/// samples whose triage a restart interrupted, and serves HTTP.
pub async fn start_on(
    config: Config,
    listener: std::net::TcpListener,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    config.validate()?;
    let intake = intake::Intake::open(config, clock)?;
    if intake.triage.enabled() {
        for sha in intake.store.unscanned()? {
            intake.spawn_triage(sha);
        }
    }
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let http = listener.local_addr()?;
    let cancel = CancellationToken::new();
    let app = http::router(intake.clone());
    let limits = intake.config.listener;
    let c = cancel.clone();
    let server = tokio::spawn(async move {
        vdb_service::serve(listener, app, None, limits, c).await;
    });
    tracing::info!(%http, "intake listening");
    Ok(Running {
        intake,
        http,
        cancel,
        server,
    })
}

/// Runs the intake from its TOML configuration until SIGINT or SIGTERM; prints the ready line
/// ([`vdb_proto::Ready`], role `intake`) on stdout once it listens.
pub async fn run_from_config(config: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    vdb_service::lifecycle::raise_fd_limit();
    let listener = vdb_service::listener::bind_tcp(config.listen)?;
    let name = config.name.clone();
    let running = start_on(config, listener, Arc::new(SystemClock)).await?;
    let ready = vdb_proto::Ready::new("intake", &name, running.base_url());
    vdb_service::lifecycle::announce(&ready)?;
    vdb_service::lifecycle::shutdown_signal().await?;
    running.shutdown().await;
    Ok(())
}
