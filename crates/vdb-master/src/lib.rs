//! vdbnet master: the verification gate, release history, signed manifest, pushes,
//! replication, registry.
//!
//! A master takes releases from publishers (`PUT /api/v1/objects/<sha256>` for each file, then
//! `POST /api/v1/releases` with the signed statement), checks them with the [`gate`], keeps
//! them in a content-addressed object store with a SQLite [`history`], and serves a signed
//! manifest of everything mirrors must serve at [`vdb_proto::MANIFEST_PATH`]. It pushes signed
//! notices to the registered mirrors, re-signs every heartbeat, runs the forced sync only when
//! every peer agrees, replicates with its peers and can follow a ClamAV-style upstream.
//! [`client`] is the publishing and administration client (`vdb publish`, `vdb mirror`).
//!
//! HTTP API (errors are [`vdb_proto::ApiError`] JSON bodies):
//!
//! | method and path | who | what |
//! |---|---|---|
//! | `GET /.well-known/vdbnet/manifest.json` | anyone | the signed manifest envelope |
//! | `PUT /api/v1/objects/<sha256>` | publisher (`X-Vdb-Upload`: signed [`vdb_proto::UploadTicket`]) | upload one file |
//! | `GET`/`HEAD /api/v1/objects/<sha256>` | anyone, or `pull_tokens` bearer | a released object (Range supported) |
//! | `POST /api/v1/releases` | publisher | signed statement → [`vdb_proto::ReleaseAccepted`] |
//! | `GET /api/v1/releases?after=N&limit=M` | peers | accepted statements ([`ReleasePage`]) |
//! | `GET /api/v1/releases/<id>` | anyone | the release and its rollout ([`Timeline`]) |
//! | `GET /api/v1/history?limit=N` | anyone | recent verdicts, refusals included |
//! | `GET /api/v1/mirrors`, `GET /api/v1/mirrors/<name>` | anyone | the registry |
//! | `POST /api/v1/mirrors`, `PUT`/`DELETE /api/v1/mirrors/<name>`, `POST …/<name>/drain` | admin bearer | manage it |
//! | `GET /api/v1/registry` | peers | registry with tombstones and change times |
//! | `POST /api/v1/replicate` | peers | "pull from me now" |
//! | `GET /api/v1/status` | anyone | [`Status`] |
//! | `GET /healthz`, `GET /metrics` | anyone | liveness, Prometheus |

/// The clients of this API (re-exported from `vdb-client`).
pub use vdb_client as client;
pub mod config;
pub mod gate;
pub mod history;
mod master;
mod metrics;
mod notify;
pub mod objects;
mod push;
mod replicate;
mod server;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use vdb_proto::{Clock, SecretKey, SystemClock};

pub use config::Config;
pub use master::{DERIVED, next_serial};
pub use replicate::{ReleaseEntry, ReleasePage};
pub use server::{Drain, Status, Timeline, UPLOAD_HEADER};

use master::Master;

/// A running master.
#[derive(Debug)]
pub struct Running {
    master: Arc<Master>,
    http: SocketAddr,
    scheme: &'static str,
    server: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// The base URL (`http://…` or `https://…` with TLS).
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.http)
    }

    /// The master's manifest public key.
    pub fn public_key(&self) -> vdb_proto::PublicKey {
        self.master.key.public()
    }

    /// Whether the master has caught up with its peers (before that it takes no releases from
    /// publishers, and neither signs nor pushes).
    pub fn is_ready(&self) -> bool {
        self.master.ready.load(Ordering::SeqCst)
    }

    /// Runs one forced-sync round now (tests, operators); returns whether it ran.
    pub async fn forced_sync_now(&self) -> bool {
        push::forced_sync(&self.master).await
    }

    /// Stops every loop and the server, and waits for them.
    pub async fn shutdown(self) {
        self.master.cancel.cancel();
        self.master.tasks.wait().await;
        let _ = self.server.await;
    }
}

/// Reads a secret key file.
pub fn read_key(path: &std::path::Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key file {}", path.display()))?;
    SecretKey::from_text(&text).with_context(|| format!("in the key file {}", path.display()))
}

fn upstream_key(config: &Config) -> anyhow::Result<Option<SecretKey>> {
    let Some(up) = &config.upstream else {
        return Ok(None);
    };
    let path = up
        .key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("upstream.key"));
    if path.exists() {
        return read_key(&path).map(Some);
    }
    let key = SecretKey::generate();
    std::fs::create_dir_all(&config.data_dir)?;
    vdb_format::write_atomic(&path, key.to_text().as_bytes())?;
    Ok(Some(key))
}

/// Starts a master: opens its state, binds the HTTP listener, starts the loops.
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    config.validate()?;
    let key = read_key(&config.key_file)?;
    let mut policy = gate::Policy::from_config(&config)?;
    let up_key = upstream_key(&config)?;
    if let (Some(k), Some(up)) = (&up_key, &config.upstream) {
        policy.allow(k.public(), up.databases.clone());
    }
    let listen = config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the master's HTTP listener to {listen}"))?;
    let master = Arc::new(Master::new(config, clock, key, policy)?);
    let http = listener.local_addr()?;
    let app = server::router(Arc::clone(&master));
    let cancel = master.cancel.clone();
    let tls = match (&master.config.tls_cert_file, &master.config.tls_key_file) {
        (Some(c), Some(k)) => Some(vdb_service::Tls::load(c, k)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(t) = &tls {
        master.tasks.spawn(t.clone().watch(cancel.clone()));
    }
    let limits = master.config.limits;
    let server = tokio::spawn(async move {
        vdb_service::serve(listener, app, tls, limits, cancel).await;
    });
    if master.ready.load(Ordering::SeqCst) && master.current().is_none() {
        let _g = master.publish_lock.lock().await;
        master.sign_and_push(false).await?;
    }
    master.tasks.spawn(replicate::run(Arc::clone(&master)));
    master.tasks.spawn(heartbeat(Arc::clone(&master)));
    if let (Some(k), Some(up)) = (up_key, master.config.upstream.clone()) {
        master
            .tasks
            .spawn(upstream::run(Arc::clone(&master), up, k));
    }
    tracing::info!(name = %master.config.name, %http, key = %master.key.public(), "master listening");
    Ok(Running {
        master,
        http,
        scheme,
        server,
    })
}

/// The heartbeat (re-sign with a fresh timestamp) and forced-sync schedule.
async fn heartbeat(master: Arc<Master>) {
    let tick = Duration::from_millis(master.config.tick_ms);
    let mut next_forced = master.clock.now() + master.config.forced_sync_secs;
    loop {
        tokio::select! {
            () = master.cancel.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
        if !master.ready.load(Ordering::SeqCst) {
            continue;
        }
        let now = master.clock.now();
        let due = master
            .current()
            .is_none_or(|c| now >= c.manifest.issued_at + master.config.heartbeat_secs);
        if due {
            let _g = master.publish_lock.lock().await;
            if let Err(e) = master.sign_and_push(true).await {
                tracing::error!(error = %e, "heartbeat: cannot sign the manifest");
            }
        }
        if due {
            let _g = master.publish_lock.lock().await;
            let m = Arc::clone(&master);
            let pruned = master::blocking(move || {
                m.objects.prune(
                    |sha| m.is_servable(sha),
                    Duration::from_secs(m.config.orphan_ttl_secs),
                )
            })
            .await;
            match pruned {
                Ok(0) => {}
                Ok(n) => tracing::info!(objects = n, "deleted unreferenced uploads"),
                Err(e) => tracing::warn!(error = %e, "pruning unreferenced uploads failed"),
            }
        }
        if now >= next_forced {
            next_forced = now + master.config.forced_sync_secs;
            push::forced_sync(&master).await;
        }
    }
}

/// Runs the master from its TOML configuration until SIGINT or SIGTERM.
pub async fn run_from_config(config: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    vdb_service::lifecycle::raise_fd_limit();
    let name = config.name.clone();
    let running = start(config, Arc::new(SystemClock)).await?;
    let mut ready = vdb_proto::Ready::new("master", &name, running.base_url());
    ready.key = Some(running.public_key());
    vdb_service::lifecycle::announce(&ready)?;
    vdb_service::lifecycle::shutdown_signal().await?;
    running.shutdown().await;
    Ok(())
}
