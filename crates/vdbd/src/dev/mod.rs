//! `vdbd dev`: a whole network on loopback in one process.
//!
//! Two masters (peers of each other), `--mirrors` mirrors on their own loopback addresses
//! (127.0.0.11, .12, …) in different regions, the monitor and the directory, all started
//! in-process from real configuration files written under the state directory, so that the
//! files double as examples. Then it publishes a sample database chain that it builds and signs
//! itself (or, with `--upstream DIR`, has master A follow ClamAV's signed databases served
//! from DIR), waits until every mirror serves the newest release, prints one JSON line with
//! every endpoint on stdout and a summary on stderr, and runs until Ctrl-C or SIGTERM.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use vdb_client::Admin;
use vdb_proto::{Clock, MirrorRecord, PublicKey, SecretKey, SystemClock};

mod configs;
mod converge;
mod intake;
mod ready;
mod sample;
mod upstream;

/// Options of `vdbd dev`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// State directory (a fresh temporary directory, removed at exit, by default).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How many mirrors to start (at most 50).
    #[arg(long, default_value_t = 3)]
    mirrors: usize,
    /// How many of the mirrors are hubs (the first N; default none). Every other mirror is a
    /// leaf of one of them, in turn: registered with it (the masters push to the hubs, each hub
    /// relays to its leaves) and pulling from it before the masters.
    #[arg(long, default_value_t = 0)]
    hubs: usize,
    /// Follow ClamAV's signed databases in this directory (e.g. the test databases
    /// `test-1.cvd`, `test-2.cdiff`, …) instead of publishing a generated chain, so that the real
    /// freshclam can update from the network.
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// The masters' `cvd_certs_dir`: the certificates ClamAV 1.5 `.sign` files must chain to
    /// (default: `<upstream>/certs` when `--upstream` has one, as ClamAV's test fixtures do,
    /// else ClamAV's `/etc/clamav/certs`).
    #[arg(long)]
    cvd_certs_dir: Option<PathBuf>,
    /// How many links of the sample's cdiff chain to publish (at most 3; the sample, a 1 MiB
    /// daily-like database, is made when vdbd is built: `vdb db synth` makes larger ones).
    #[arg(long, default_value_t = 3)]
    sample_cdiffs: u32,
    /// The DNS zone the directory serves (`clamav.net` lets stock freshclam and cvdupdate use
    /// their hard-coded record names).
    #[arg(long, default_value = "vdbnet.test.")]
    zone: String,
    /// Where the directory's DNS listens (port 53 on a loopback address of its own lets clients
    /// that cannot take a port, such as cvdupdate, use it; needs root).
    #[arg(long, default_value = "127.0.0.1:0")]
    dns_listen: std::net::SocketAddr,
    /// How long to wait for the network to converge before giving up (seconds).
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

const NETWORK: &str = "dev";
const REGIONS: [(&str, &str); 3] = [("europe", "DE"), ("america", "US"), ("asia", "JP")];

/// Everything running, for shutdown, and the hub tree it was started as.
struct Network {
    masters: Vec<vdb_master::Running>,
    mirrors: Vec<vdb_mirror::Running>,
    /// Each leaf mirror's base URL and its hub's (with `--hubs`).
    hub_of: std::collections::BTreeMap<String, String>,
    monitor: vdb_monitor::Running,
    directory: vdb_directory::Running,
    upstream: Option<upstream::Server>,
}

impl Network {
    async fn shutdown(self) {
        self.directory.shutdown().await;
        self.monitor.shutdown().await;
        for m in self.mirrors {
            m.shutdown().await;
        }
        for m in self.masters {
            m.shutdown().await;
        }
        if let Some(u) = self.upstream {
            u.shutdown().await;
        }
    }
}

pub(crate) async fn run(args: DevArgs) -> Result<()> {
    if args.mirrors == 0 || args.mirrors > 50 {
        bail!("--mirrors must be between 1 and 50");
    }
    if args.hubs > 0 && args.hubs >= args.mirrors {
        bail!(
            "--hubs {} needs more mirrors than hubs (--mirrors {}): the rest are their leaves",
            args.hubs,
            args.mirrors
        );
    }
    let (dir, _temp) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (d.canonicalize()?, None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("vdbd-dev-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let (network, mut dev) = start(&dir, &args, deadline).await?;
    let (intake, named) = intake::start(&dir, args.upstream.is_some()).await?;
    let form = named.form.clone();
    dev.intake = Some(named);
    let summary = ready::summary(&dev);
    vdb_service::lifecycle::announce(&ready::ready_line(dev))?;
    eprintln!("{summary}");
    eprintln!("  intake        {form}");
    vdb_service::lifecycle::shutdown_signal().await?;
    eprintln!("vdbd dev: stopping");
    intake.shutdown().await;
    network.shutdown().await;
    Ok(())
}

/// Loads a secret key if the state directory already has one (a restarted `--dir`), else makes
/// and saves a new one.
fn key_at(path: &Path) -> Result<SecretKey> {
    let (key, _) =
        SecretKey::load_or_create(path).with_context(|| format!("{}", path.display()))?;
    Ok(key)
}

fn random_token() -> String {
    // The hex of a fresh public key: 32 random-looking bytes without another dependency.
    SecretKey::generate()
        .public()
        .to_string()
        .replace("ed25519:", "")
}

async fn start(
    dir: &Path,
    args: &DevArgs,
    deadline: Instant,
) -> Result<(Network, vdb_proto::DevNetwork)> {
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let master_keys = [
        key_at(&keys_dir.join("master-a.key"))?,
        key_at(&keys_dir.join("master-b.key"))?,
    ];
    let master_pub: Vec<PublicKey> = master_keys.iter().map(SecretKey::public).collect();
    let publisher = key_at(&keys_dir.join("publisher.key"))?;
    // Signs the statements of releases master A makes from the upstream; both masters accept it.
    let upstream_key = key_at(&keys_dir.join("upstream.key"))?;
    let admin_token = random_token();

    // The data: a generated chain signed with a network key set, or ClamAV's own files.
    let (sample, upstream) = match &args.upstream {
        None => (Some(sample::make_sample(dir, args)?), None),
        Some(up) => (None, Some(upstream::Server::start(up).await?)),
    };

    // Masters, peers of each other: their sockets are bound first, so that each knows the
    // other's URL before it starts.
    let mut listeners = Vec::new();
    for _ in 0..2 {
        listeners.push(TcpListener::bind("127.0.0.1:0")?);
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<std::io::Result<_>>()?;
    let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    let mut masters = Vec::new();
    for (i, (name, http)) in ["a", "b"].into_iter().zip(listeners).enumerate() {
        let other = 1 - i;
        let config = configs::master(configs::MasterPlan {
            name,
            listen: addrs[i],
            dir,
            admin_token: &admin_token,
            publishers: vec![publisher.public(), upstream_key.public()],
            peer: vdb_master::config::PeerConfig {
                url: urls[other].clone(),
                key: master_pub[other],
                token: None,
            },
            keyset: sample.as_ref().map(|s| s.keyset.clone()),
            cvd_certs_dir: args.cvd_certs_dir.clone().or_else(|| {
                let certs = args.upstream.as_ref()?.join("certs");
                certs.is_dir().then_some(certs)
            }),
            upstream: upstream
                .as_ref()
                .filter(|_| i == 0)
                .map(|u| (u.url(), u.databases().to_vec())),
        })?;
        masters.push(
            vdb_master::start_on(config, vdb_master::Listeners { http }, clock.clone())
                .await
                .with_context(|| format!("starting master {name}"))?,
        );
    }

    // Mirrors, each on its own loopback address; with --hubs, the hubs first, then each leaf
    // with its hub's URL.
    let mut mirrors: Vec<vdb_mirror::Running> = Vec::new();
    let mut records: Vec<MirrorRecord> = Vec::new();
    let mut hub_of = std::collections::BTreeMap::new();
    for i in 0..args.mirrors {
        let name = format!("mirror{}", i + 1);
        let ip = Ipv4Addr::new(127, 0, 0, u8::try_from(11 + i)?);
        // A leaf's hub: its name and base URL.
        let hub = (args.hubs > 0 && i >= args.hubs).then(|| {
            let h = &records[i % args.hubs];
            (h.name.clone(), h.base_urls[0].clone())
        });
        let config = configs::mirror(
            dir,
            &name,
            ip,
            &urls,
            &master_pub,
            &admin_token,
            hub.as_ref().map(|(_, url)| url.as_str()),
        )?;
        let running = vdb_mirror::start(config, clock.clone())
            .await
            .with_context(|| format!("starting {name}"))?;
        let base = format!("http://{}", running.http_addr());
        let (region, country) = REGIONS[i % REGIONS.len()];
        let mut r = MirrorRecord::new(&name, &base);
        r.push_url = Some(format!("{base}{}", vdb_proto::paths::PUSH));
        r.addresses = vec![IpAddr::V4(ip)];
        r.region = Some(region.to_owned());
        r.country = Some(country.to_owned());
        r.admin_contact = Some(format!("admin@{name}.invalid"));
        if let Some((hub_name, hub_url)) = hub {
            r.hubs = vec![hub_name];
            hub_of.insert(base.clone(), hub_url);
        }
        records.push(r);
        mirrors.push(running);
    }
    let admin = Admin::new(&urls[0], Some(admin_token.clone()));
    for r in &records {
        match admin.add(r).await {
            Ok(_) => {}
            // A restarted --dir already has it: bring it up to date.
            Err(_) => {
                admin
                    .update(r)
                    .await
                    .with_context(|| format!("registering {}", r.name))?;
            }
        }
    }

    // Monitor, then the directory that obeys it.
    let monitor = vdb_monitor::start(configs::monitor(dir, &urls, &master_pub)?, clock.clone())
        .await
        .context("starting the monitor")?;
    let monitor_url = monitor.base_url();
    let directory_cfg = configs::directory(
        dir,
        &args.zone,
        args.dns_listen,
        &urls,
        (&monitor_url, monitor.public_key()),
    )?;
    let directory = vdb_directory::start(directory_cfg, clock.clone())
        .await
        .context("starting the directory")?;

    let mut network = Network {
        masters,
        mirrors,
        hub_of,
        monitor,
        directory,
        upstream,
    };
    let result = sample::populate(
        &args.zone,
        &network,
        &urls,
        &master_keys,
        &publisher,
        sample.as_ref(),
        deadline,
    )
    .await;
    let published = match result {
        Ok(p) => p,
        Err(e) => {
            network.shutdown().await;
            return Err(e);
        }
    };
    let dev = ready::network(
        dir,
        &args.zone,
        &mut network,
        &urls,
        &monitor_url,
        &admin_token,
        &published,
    )?;
    Ok((network, dev))
}
