//! vdbnet directory: authoritative DNS with GeoIP regions and version records, and an HTTP redirector.
//!
//! The directory polls the masters' mirror registry and the monitors' verdicts, decides which
//! mirrors are handed out (in service, or the freshest ones when too few are: invariant 8), and
//! answers from that:
//!
//! - DNS (UDP and TCP on one port): `database.<zone>` (A/AAAA of handed-out mirrors, weighted
//!   shuffle, at most `max_records`; clients in a region get a CNAME to, or the records of,
//!   `db.<region>.<zone>`), `db.<region>.<zone>`, the ClamAV TXT records `current.cvd.<zone>`
//!   and `<db>.cvd.<zone>` (versions every handed-out mirror serves: invariant 9), SOA, NS,
//!   AXFR to allowed secondaries and NOTIFY on every serial change;
//! - HTTP: `GET /<file>` → 302 to the best mirror for the client with `Link: rel=duplicate`
//!   alternatives, `GET /api/v1/mirrors`, `/healthz`, `/metrics`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vdb_proto::{Clock, SystemClock};

mod config;
mod dns;
mod fast;
mod geo;
mod http;
mod membership;
mod metrics;
mod server;
mod state;
pub mod wire;
mod zone;

pub use config::{Config, GeoMode, NameServer};
pub use geo::{Geo, GeoError};
pub use membership::MirrorStatus;

/// A running directory.
pub struct Running {
    dns_addr: SocketAddr,
    http_addr: SocketAddr,
    cancel: CancellationToken,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    tasks: JoinSet<()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("dns_addr", &self.dns_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Where the DNS server listens (UDP and TCP).
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns_addr
    }

    /// Where the HTTP server listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Stops every server and loop and waits for them.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        // The UDP threads look at the token at least every 100 ms.
        let threads = std::mem::take(&mut self.udp_threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// The directory's sockets, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// DNS over UDP.
    pub dns_udp: std::net::UdpSocket,
    /// DNS over TCP (the same port as `dns_udp`).
    pub dns_tcp: std::net::TcpListener,
    /// The HTTP redirector.
    pub http: std::net::TcpListener,
}

impl Listeners {
    /// Binds the configuration's `dns_listen` (UDP and TCP on one port) and `http_listen`.
    pub fn bind(config: &Config) -> anyhow::Result<Self> {
        let (dns_udp, dns_tcp) = bind_dns(config.dns_listen)?;
        let http = std::net::TcpListener::bind(config.http_listen)
            .with_context(|| format!("binding HTTP on {}", config.http_listen))?;
        Ok(Self {
            dns_udp,
            dns_tcp,
            http,
        })
    }
}

/// Starts a directory on the addresses of its configuration (see [`start_on`]).
pub async fn start(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let listeners = Listeners::bind(&config)?;
    start_on(config, listeners, clock).await
}

/// Starts a directory on bound sockets: polls the masters and monitors once, and starts the
/// servers and the loops.
pub async fn start_on(
    config: Config,
    listeners: Listeners,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Running> {
    config.validate()?;
    let deprecated = config.deprecated_keys();
    if !deprecated.is_empty() {
        tracing::warn!(
            keys = ?deprecated,
            "deprecated directory settings are ignored: the version record's ClamAV version, warning flag and flevel are set once in the masters' config and signed into the manifest"
        );
    }
    let geo = match &config.geoip_db {
        Some(path) => Some(Geo::open(
            path,
            &config.country_regions,
            config.default_region.clone(),
        )?),
        None => None,
    };
    let client = state::client(&config)?;
    let shared = Arc::new(state::Shared::new(config, clock, geo)?);
    let cfg = &shared.config;

    for l in [&listeners.dns_tcp, &listeners.http] {
        l.set_nonblocking(true)?;
    }
    let dns_addr = listeners.dns_udp.local_addr()?;
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(MAX_UDP_THREADS);
    let udp = server::udp_sockets(listeners.dns_udp, threads)?;
    let tcp = tokio::net::TcpListener::from_std(listeners.dns_tcp)?;
    let http_listener = tokio::net::TcpListener::from_std(listeners.http)?;
    let http_addr = http_listener.local_addr()?;

    shared.load_state();
    shared.recompute();
    state::poll_once(&shared, &client).await;
    // The rollout as it stands: the masters' manifest and what each mirror serves, so the
    // first answers already carry the TXT records.
    state::rollout_once(&shared, &client, &mut state::ProbeSchedule::default()).await;

    let cancel = CancellationToken::new();
    let ctx = server::Context::new(shared.clone());
    let rt = tokio::runtime::Handle::current();
    let mut udp_threads = Vec::new();
    for (i, sock) in udp.into_iter().enumerate() {
        let (ctx, rt, token) = (ctx.clone(), rt.clone(), cancel.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("dns-udp-{i}"))
            .spawn(move || server::udp_thread(sock, ctx, rt, token));
        match spawned {
            Ok(t) => udp_threads.push(t),
            Err(e) => {
                cancel.cancel();
                return Err(anyhow::Error::new(e).context("starting a DNS thread"));
            }
        }
    }
    let mut tasks = JoinSet::new();
    tasks.spawn(server::tcp_loop(tcp, ctx, cancel.clone()));
    tasks.spawn(state::poll_loop(
        shared.clone(),
        client.clone(),
        cancel.clone(),
    ));
    if !shared.config.masters.is_empty() {
        tasks.spawn(state::rollout_loop(shared.clone(), client, cancel.clone()));
    }
    tasks.spawn(dns::notify_loop(shared.clone(), cancel.clone()));
    let app = http::router(shared.clone());
    let limits = cfg.limits;
    let http_cancel = cancel.clone();
    tasks.spawn(async move {
        vdb_service::serve(http_listener, app, None, limits, http_cancel).await;
    });
    // Secondaries learn the starting serial too.
    if !shared.config.notify.is_empty() {
        let s = shared.clone();
        let c = cancel.clone();
        tasks.spawn(async move {
            let snap = s.snapshot();
            let mut set = JoinSet::new();
            for &t in &s.config.notify {
                set.spawn(dns::notify_one(
                    snap.params.origin.clone(),
                    snap.soa(),
                    t,
                    5,
                ));
            }
            tokio::select! {
                () = c.cancelled() => set.abort_all(),
                _ = async { while set.join_next().await.is_some() {} } => {}
            }
        });
    }
    tracing::info!(dns = %dns_addr, http = %http_addr, zone = %shared.config.zone, "directory listening");
    Ok(Running {
        dns_addr,
        http_addr,
        cancel,
        udp_threads,
        tasks,
    })
}

/// Most UDP sockets (and threads) of the DNS server: one per core up to this.
const MAX_UDP_THREADS: usize = 16;

/// A UDP socket bound to `addr` with `SO_REUSEPORT`, so that the DNS server can bind one more
/// per core on the same address.
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Binds UDP and TCP on one port. With port 0 the port UDP got may be taken for TCP by
/// someone else: then it tries other ports.
fn bind_dns(addr: SocketAddr) -> anyhow::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = bind_udp(addr).with_context(|| format!("binding DNS (UDP) on {addr}"))?;
        let bound = udp.local_addr()?;
        match std::net::TcpListener::bind(bound) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some((bound, e)),
        }
    }
    let (bound, e) = last.expect("at least one attempt");
    Err(anyhow::Error::new(e).context(format!("binding DNS (TCP) on {bound}")))
}

/// Runs the directory from its TOML configuration until SIGINT or SIGTERM.
pub async fn run_from_config(config: &Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    vdb_service::lifecycle::raise_fd_limit();
    let listeners = Listeners::bind(&config)?;
    let zone = config.zone.clone();
    let running = start_on(config, listeners, Arc::new(SystemClock)).await?;
    let mut ready = vdb_proto::Ready::new(
        "directory",
        &zone,
        format!("http://{}", running.http_addr()),
    );
    ready.dns = Some(running.dns_addr());
    vdb_service::lifecycle::announce(&ready)?;
    vdb_service::lifecycle::shutdown_signal().await?;
    running.shutdown().await;
    Ok(())
}
