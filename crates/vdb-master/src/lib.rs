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
//! | `GET`/`HEAD /api/v1/objects/<sha256>` | anyone, or (with `pull_tokens` or `require_pull_auth`) a pull-token bearer or a joined mirror's `Vdb-Mirror` signature | a released object (Range supported) |
//! | `POST /api/v1/releases` | publisher | signed statement → [`vdb_proto::ReleaseAccepted`] |
//! | `GET /api/v1/releases?after=N&limit=M` | peers | accepted statements ([`ReleasePage`]) |
//! | `GET /api/v1/releases/<id>` | anyone | the release and its rollout ([`Timeline`]) |
//! | `GET /api/v1/history?limit=N&before=SEQ` | anyone | recent verdicts, refusals of publishers included (pages of at most 200 rows and 8 MiB; statements no publisher signed are only counted) |
//! | `GET /api/v1/mirrors`, `GET /api/v1/mirrors/<name>` | anyone (admins' contacts: admin or pull token) | the registry |
//! | `POST /api/v1/mirrors`, `PUT`/`DELETE /api/v1/mirrors/<name>`, `POST …/<name>/drain` | admin bearer | manage it |
//! | `GET /api/v1/registry` | peers (admins' contacts: admin or pull token) | the registry with tombstones and change times, signed by this master (`RegistryExport`) |
//! | `POST /api/v1/join` | a mirror (signed [`vdb_proto::MirrorRequest`], its identity key) | ask to join → [`vdb_proto::JoinStatus`] |
//! | `GET /api/v1/join/<name>` | anyone | where a join request stands |
//! | `GET /api/v1/join`, `POST /api/v1/join/<name>/approve`, `POST …/<name>/reject` | admin bearer | the pending requests ([`vdb_proto::JoinView`]) and the decisions |
//! | `POST /api/v1/mirrors/<name>/requests` | the mirror (signed by its pinned key) | update, maintenance, rotate-key, leave |
//! | `GET /api/v1/mirrors/<name>/history` | anyone | the registry's changes of that mirror ([`vdb_proto::RegistryEvent`]) |
//! | `POST /api/v1/replicate` | peers | "pull from me now" |
//! | `GET /api/v1/status` | anyone | [`Status`] |
//! | `GET /healthz`, `GET /metrics` | anyone | liveness, Prometheus |

/// The clients of this API (re-exported from `vdb-client`).
pub use vdb_client as client;
pub mod config;
mod events;
pub mod gate;
pub mod history;
mod join;
mod metrics;
mod notify;
pub mod objects;
mod parts;
mod peers;
mod push;
mod registry;
mod replicate;
mod server;
mod store;
mod tasks;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use vdb_proto::{Clock, SecretKey, SystemClock};

pub use config::Config;
pub use replicate::{ReleaseEntry, ReleasePage};
pub use server::{Drain, Status, Timeline, UPLOAD_HEADER};
pub use store::{DERIVED, next_serial};
pub use upstream::UpstreamHealth;

use events::Events;
use parts::Parts;
use push::Pusher;
use store::Store;
use tasks::Tasks;

/// A running master.
#[derive(Debug)]
pub struct Running {
    store: Arc<Store>,
    pusher: Arc<Pusher>,
    http: SocketAddr,
    scheme: &'static str,
    cancel: CancellationToken,
    tasks: Tasks,
    server: tokio::task::JoinHandle<vdb_service::listener::AdmissionStats>,
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
        self.store.public_key()
    }

    /// Whether the master has caught up with its peers (before that it takes no releases from
    /// publishers, and neither signs nor pushes).
    pub fn is_ready(&self) -> bool {
        self.store.is_ready()
    }

    /// Runs one forced-sync round now (tests, operators); returns whether it ran.
    pub async fn forced_sync_now(&self) -> bool {
        self.pusher.forced_sync().await
    }

    /// Stops every loop and the server, and waits for them.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tasks.wait().await;
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
    let (key, _) = SecretKey::load_or_create(&path)
        .with_context(|| format!("the upstream key file {}", path.display()))?;
    Ok(Some(key))
}

/// The sockets a master serves on, bound before it starts (tests bind port 0 and read the
/// address back; [`start`] binds the configuration's `listen`).
#[derive(Debug)]
pub struct Listeners {
    /// The HTTP (or, with `tls_cert_file`, HTTPS) API.
    pub http: std::net::TcpListener,
}

impl Listeners {
    /// Binds the configuration's `listen`.
    pub fn bind(config: &Config) -> anyhow::Result<Self> {
        let listen = config.listen;
        let http = std::net::TcpListener::bind(listen)
            .with_context(|| format!("binding the master's HTTP listener to {listen}"))?;
        Ok(Self { http })
    }
}

/// The one HTTP client of a master's outgoing requests (pushes, replication, peers, the
/// upstream, webhooks): time-outs, the configured CA, no redirects; every call reads its answer
/// under an explicit size cap.
fn outbound_client(config: &Config) -> anyhow::Result<vdb_fetch::Client> {
    let mut b = vdb_fetch::Client::builder(concat!("vdbnet-master/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(60))
        .read_timeout(Some(Duration::from_secs(20)));
    if let Some(ca) = &config.tls_ca_file {
        b = b.add_roots(&vdb_fetch::read_ca(ca)?);
    }
    Ok(b.build()?)
}

/// Starts a master on bound listeners: opens its state and starts its parts: the release
/// store, the pusher, the notifier, the replicator and the upstream follower, which hear of
/// accepted releases and signed manifests through events.
pub async fn start_on(
    config: Config,
    listeners: Listeners,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    config.validate()?;
    for w in custom_keyset_warnings(&config) {
        tracing::warn!("{w}");
    }
    let key = read_key(&config.key_file)?;
    let mut policy = gate::policy(&config)?;
    let up_key = upstream_key(&config)?;
    if let (Some(k), Some(up)) = (&up_key, &config.upstream) {
        policy.allow(k.public(), up.databases.clone());
    }
    let config = Arc::new(config);
    let cancel = CancellationToken::new();
    let tasks = Tasks::default();
    let events = Events::default();
    let metrics = Arc::new(metrics::Metrics::default());
    let client = outbound_client(&config)?;
    let peers = Arc::new(peers::Peers::new(
        config.peers.clone(),
        config.network.clone(),
        client.clone(),
        tasks.clone(),
    ));
    let health = Arc::new(upstream::Health::open(&config));
    let store = Arc::new(Store::open(
        Arc::clone(&config),
        clock,
        key,
        policy,
        Arc::clone(&metrics),
        Arc::clone(&peers),
        events.clone(),
    )?);
    let parts = Parts {
        store: Arc::clone(&store),
        peers: Arc::clone(&peers),
        http: client.clone(),
        events: events.clone(),
        metrics: Arc::clone(&metrics),
        upstream: Arc::clone(&health),
    };
    let pusher = Arc::new(Pusher::new(parts.clone(), tasks.clone(), cancel.clone()));
    let replicator = Arc::new(replicate::Replicator::new(parts.clone()));
    let notifier = notify::Notifier::new(&config, client.clone(), tasks.clone())?;
    // Every part subscribes before anything can happen.
    tasks.spawn(Arc::clone(&pusher).run(events.subscribe()));
    tasks.spawn(notifier.run(events.subscribe(), cancel.clone()));
    let replicator_events = events.subscribe();

    listeners.http.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listeners.http)?;
    let http = listener.local_addr()?;
    let app = server::router(Arc::new(server::App::new(parts, Arc::clone(&replicator))));
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(c), Some(k)) => Some(vdb_service::Tls::load(c, k)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(t) = &tls {
        // A renewed certificate is picked up without a restart.
        tasks.spawn(t.clone().watch(cancel.clone()));
    }
    let server = tokio::spawn(vdb_service::serve(
        listener,
        app,
        tls,
        config.limits,
        cancel.clone(),
    ));
    if store.is_ready() && store.current().is_none() {
        store.sign(false).await?;
    }
    tasks.spawn(replicator.run(replicator_events, cancel.clone()));
    tasks.spawn(heartbeat(
        Arc::clone(&store),
        Arc::clone(&pusher),
        Arc::clone(&metrics),
        cancel.clone(),
    ));
    if let (Some(k), Some(up)) = (up_key, config.upstream.clone()) {
        let follower = upstream::Follower::new(
            Arc::clone(&store),
            Arc::clone(&metrics),
            up,
            k,
            health,
            Arc::clone(&peers),
        )?;
        tasks.spawn(follower.run(cancel.clone()));
    }
    tracing::info!(name = %config.name, %http, key = %store.public_key(), "master listening");
    Ok(Running {
        store,
        pusher,
        http,
        scheme,
        cancel,
        tasks,
        server,
    })
}

/// Starts a master on the configuration's `listen` address ([`Listeners::bind`], then
/// [`start_on`]).
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    config.validate()?;
    let listeners = Listeners::bind(&config)?;
    start_on(config, listeners, clock).await
}

/// Stock ClamAV clients check `daily`, `main` and `bytecode` against ClamAV's own key: a
/// network's own key set for one of them is accepted by the gate and refused by every stock
/// `freshclam` and `clamscan`. One warning per such database, said at start.
fn custom_keyset_warnings(config: &Config) -> Vec<String> {
    config
        .databases
        .iter()
        .filter(|(name, db)| {
            ["daily", "main", "bytecode"].contains(&name.as_str()) && db.keyset_file.is_some()
        })
        .map(|(name, _)| {
            format!(
                "[databases.{name}] keyset_file: stock freshclam and clamscan check {name}.cvd \
                 against ClamAV's own key and will refuse one signed with this key set; only \
                 clients given the key set (vdb-update's key_set) can use it. Give the network's \
                 own databases names of their own."
            )
        })
        .collect()
}

/// The heartbeat (re-sign with a fresh timestamp, prune unreferenced uploads) and the
/// forced-sync schedule.
async fn heartbeat(
    store: Arc<Store>,
    pusher: Arc<Pusher>,
    metrics: Arc<metrics::Metrics>,
    cancel: CancellationToken,
) {
    let config = store.config();
    let tick = Duration::from_millis(config.tick_ms);
    let mut next_forced = store.now() + config.forced_sync_secs;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
        let now = store.now();
        if !store.is_ready() {
            continue;
        }
        let due = store
            .current()
            .is_none_or(|c| now >= c.manifest.issued_at + config.heartbeat_secs);
        if due {
            if let Err(e) = store.sign(true).await {
                tracing::error!(error = %e, "heartbeat: cannot sign the manifest");
            }
            store.prune_uploads().await;
        }
        if now >= next_forced {
            next_forced = now + config.forced_sync_secs;
            pusher.forced_sync().await;
        }
        metrics.checked_at(now);
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
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_custom_key_set_for_an_official_database_name_is_warned_about() {
        let config: Config = toml::from_str(
            "name = \"a\"\nnetwork = \"n\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"/tmp/x\"\n\
             key_file = \"/tmp/k\"\n\
             [databases.daily]\nkeyset_file = \"keys.txt\"\n\
             [databases.ourdb]\nkeyset_file = \"keys.txt\"\n\
             [databases.main]\nallow_plain = true\n",
        )
        .unwrap();
        let w = custom_keyset_warnings(&config);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("[databases.daily] keyset_file: stock freshclam"));
        assert!(w[0].contains("will refuse"));
    }
}
