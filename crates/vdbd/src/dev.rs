//! `vdbd dev`: a whole network on loopback in one process.
//!
//! Two masters (peers of each other), `--mirrors` mirrors on their own loopback addresses
//! (127.0.0.11, .12, …) in different regions, the monitor and the directory, all started
//! in-process from real configuration files written under the state directory, so that the
//! files double as examples. Then it publishes a sample database chain that it builds and signs
//! itself (or, with `--upstream DIR`, has master A follow ClamAV's signed databases served
//! from DIR), waits until every mirror serves the newest release, prints one JSON line with
//! every endpoint on stdout and a summary on stderr, and runs until Ctrl-C or SIGTERM.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use vdb_client::{Admin, Publisher, ReleaseFile, ReleaseInfo};
use vdb_proto::{Clock, Manifest, MirrorRecord, PublicKey, SecretKey, Signed, SystemClock};

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
    /// Follow ClamAV's signed databases in this directory (e.g. the test databases
    /// `test-1.cvd`, `test-2.cdiff`, …) instead of publishing a generated chain, so that the real
    /// freshclam can update from the network.
    #[arg(long)]
    upstream: Option<PathBuf>,
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

/// Everything running, for shutdown.
struct Network {
    masters: Vec<vdb_master::Running>,
    mirrors: Vec<vdb_mirror::Running>,
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
    let (network, ready) = start(&dir, &args, deadline).await?;
    println!("{}", serde_json::to_string(&ready)?);
    eprintln!("{}", summary(&ready));
    wait_for_signal().await;
    eprintln!("vdbd dev: stopping");
    network.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// A free TCP port on 127.0.0.1 (for the masters, which must know each other's URL before
/// they start).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn write_secret(path: &Path, key: &SecretKey) -> Result<()> {
    vdb_format::write_private(path, key.to_text().as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Loads a secret key if the state directory already has one (a restarted `--dir`), else makes
/// and saves a new one.
fn key_at(path: &Path) -> Result<SecretKey> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return SecretKey::from_text(&text).with_context(|| format!("{}", path.display()));
    }
    let key = SecretKey::generate();
    write_secret(path, &key)?;
    Ok(key)
}

fn random_token() -> String {
    // The hex of a fresh public key: 32 random-looking bytes without another dependency.
    SecretKey::generate()
        .public()
        .to_string()
        .replace("ed25519:", "")
}

fn write_config(path: &Path, text: &str) -> Result<()> {
    vdb_format::write_atomic(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn p(path: &Path) -> String {
    toml_str(&path.display().to_string())
}

async fn start(
    dir: &Path,
    args: &DevArgs,
    deadline: Instant,
) -> Result<(Network, serde_json::Value)> {
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let master_keys = [
        key_at(&keys_dir.join("master-a.key"))?,
        key_at(&keys_dir.join("master-b.key"))?,
    ];
    let publisher = key_at(&keys_dir.join("publisher.key"))?;
    // Signs the statements of releases master A makes from the upstream; both masters accept it.
    let upstream_key = key_at(&keys_dir.join("upstream.key"))?;
    let admin_token = random_token();

    // The data: a generated chain signed with a network key set, or ClamAV's own files.
    let (sample, upstream) = match &args.upstream {
        None => (Some(make_sample(dir, args)?), None),
        Some(up) => (None, Some(upstream::Server::start(up).await?)),
    };

    // Masters, peers of each other.
    let ports = [free_port()?, free_port()?];
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut masters = Vec::new();
    for (i, name) in ["a", "b"].iter().enumerate() {
        let other = 1 - i;
        let mut cfg = format!(
            "name = {name:?}\nnetwork = {NETWORK:?}\nlisten = \"127.0.0.1:{port}\"\n\
             data_dir = {data}\nkey_file = {key}\nadmin_token = {token}\n\
             replicate_secs = 2\ntick_ms = 200\npush_backoff_ms = 200\ncatch_up_timeout_secs = 10\n\n\
             [[publishers]]\nkey = \"{publisher}\"\ndatabases = [\"*\"]\n\n\
             [[publishers]]\nkey = \"{upstream}\"\ndatabases = [\"*\"]\n\n\
             [[peers]]\nurl = {peer_url}\nkey = \"{peer_key}\"\n",
            port = ports[i],
            data = p(&dir.join(format!("master-{name}"))),
            key = p(&keys_dir.join(format!("master-{name}.key"))),
            token = toml_str(&admin_token),
            publisher = publisher.public(),
            upstream = upstream_key.public(),
            peer_url = toml_str(&urls[other]),
            peer_key = master_keys[other].public(),
        );
        if let Some(s) = &sample {
            let _ = write!(cfg, "\n[databases.daily]\nkeyset_file = {}\n", p(&s.keyset));
        }
        if let (Some(u), 0) = (&upstream, i) {
            let _ = write!(
                cfg,
                "\n[upstream]\nurl = {}\ndatabases = {}\ninterval_secs = 30\nkey_file = {}\n",
                toml_str(&u.url()),
                toml::Value::Array(
                    u.databases()
                        .iter()
                        .map(|d| toml::Value::String(d.clone()))
                        .collect()
                ),
                p(&keys_dir.join("upstream.key")),
            );
        }
        let path = dir.join(format!("master-{name}.toml"));
        write_config(&path, &cfg)?;
        let config = vdb_master::Config::load(&path)?;
        masters.push(
            vdb_master::start(config, clock.clone())
                .await
                .with_context(|| format!("starting master {name}"))?,
        );
    }
    let master_list = toml::Value::Array(
        urls.iter()
            .map(|u| toml::Value::String(u.clone()))
            .collect(),
    );
    let master_key_list = toml::Value::Array(
        master_keys
            .iter()
            .map(|k| toml::Value::String(k.public().to_string()))
            .collect(),
    );

    // Mirrors, each on its own loopback address.
    let mut mirrors = Vec::new();
    let mut records = Vec::new();
    for i in 0..args.mirrors {
        let name = format!("mirror{}", i + 1);
        let ip = Ipv4Addr::new(127, 0, 0, u8::try_from(11 + i)?);
        let cfg = format!(
            "name = {name:?}\nnetwork = {NETWORK:?}\nmasters = {master_list}\nmaster_keys = {master_key_list}\n\
             data_dir = {data}\nlisten = \"{ip}:0\"\npoll_secs = 60\n\
             stats_user = \"admin\"\nstats_password = {token}\n",
            data = p(&dir.join(&name)),
            token = toml_str(&admin_token),
        );
        let path = dir.join(format!("{name}.toml"));
        write_config(&path, &cfg)?;
        let config = vdb_mirror::Config::load(&path)?;
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
    let monitor_cfg = format!(
        "name = \"monitor\"\nnetwork = {NETWORK:?}\nmasters = {master_list}\nmaster_keys = {master_key_list}\n\
         listen = \"127.0.0.1:0\"\ndatabase = {db}\ncheck_interval_secs = 5\n",
        db = p(&dir.join("monitor.sqlite")),
    );
    let path = dir.join("monitor.toml");
    write_config(&path, &monitor_cfg)?;
    let monitor = vdb_monitor::start(vdb_monitor::Config::load(&path)?, clock.clone())
        .await
        .context("starting the monitor")?;
    let monitor_url = format!("http://{}", monitor.http_addr());

    let mut regions = String::new();
    for (r, c) in REGIONS {
        let _ = writeln!(regions, "{c} = {r:?}");
    }
    let directory_cfg = format!(
        "zone = {zone}\ndns_listen = \"{dns_listen}\"\nhttp_listen = \"127.0.0.1:0\"\n\
         masters = {master_list}\nmonitors = [{monitor}]\npoll_secs = 1\n\
         regions = [\"europe\", \"america\", \"asia\"]\n\n[country_regions]\n{regions}",
        monitor = toml_str(&monitor_url),
        zone = toml_str(&args.zone),
        dns_listen = args.dns_listen,
    );
    let path = dir.join("directory.toml");
    write_config(&path, &directory_cfg)?;
    let directory = vdb_directory::start(vdb_directory::Config::load(&path)?, clock.clone())
        .await
        .context("starting the directory")?;

    let mut network = Network {
        masters,
        mirrors,
        monitor,
        directory,
        upstream,
    };
    let result = populate(
        dir,
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
    let ready = ready_line(
        dir,
        &args.zone,
        &mut network,
        &urls,
        &monitor_url,
        &admin_token,
        &published,
    )?;
    Ok((network, ready))
}

/// The sample chain, made when vdbd was built (`build.rs`): the server holds these signed
/// files, not the code that signs them.
struct Sample {
    dir: PathBuf,
    keyset: PathBuf,
    base: u32,
    newest: u32,
}

include!(concat!(env!("OUT_DIR"), "/sample.rs"));

fn make_sample(dir: &Path, args: &DevArgs) -> Result<Sample> {
    let base = SAMPLE_BASE;
    if args.sample_cdiffs > SAMPLE_NEWEST - base {
        bail!("--sample-cdiffs must be at most {}", SAMPLE_NEWEST - base);
    }
    let out = dir.join("sample");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (name, bytes) in SAMPLE_FILES {
        let path = out.join(name);
        vdb_format::write_atomic(&path, bytes)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Sample {
        keyset: out.join("synth.key.pub"),
        dir: out,
        base,
        newest: base + args.sample_cdiffs,
    })
}

/// Publishes the sample chain (or waits for the upstream's releases), then waits until every
/// mirror serves the newest manifest. Returns the newest version of each database.
async fn populate(
    _dir: &Path,
    net: &Network,
    urls: &[String],
    master_keys: &[SecretKey; 2],
    publisher: &SecretKey,
    sample: Option<&Sample>,
    deadline: Instant,
) -> Result<Vec<(String, u32)>> {
    let trusted: Vec<PublicKey> = master_keys.iter().map(SecretKey::public).collect();
    if let Some(s) = sample {
        // The whole chain goes to master A: with failover, a link could land on B before B has
        // replicated the previous one, and B would rightly refuse a cdiff from a version it
        // does not hold. A master still catching up at start answers 503; wait for it.
        let client = Publisher::new(vec![urls[0].clone()], publisher.clone());
        for v in s.base..=s.newest {
            let mut files = vec![ReleaseFile {
                name: "daily.cvd".into(),
                path: s.dir.join(format!("daily-{v}.cvd")),
            }];
            if v > s.base {
                files.push(ReleaseFile {
                    name: format!("daily-{v}.cdiff"),
                    path: s.dir.join(format!("daily-{v}.cdiff")),
                });
            }
            let info: ReleaseInfo = vdb_client::infer(&files, Some("daily"), Some(v))?;
            let (st, env) = client.statement(&info, &files, "vdbd dev sample release")?;
            loop {
                match client.publish(&files, &st, &env, &|_| {}).await {
                    Ok(_) => break,
                    Err(vdb_client::PublishError::Unreachable(_)) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => return Err(e).with_context(|| format!("publishing daily {v}")),
                }
            }
        }
    }
    // The newest manifest of master A, once it has every database.
    let admin = Admin::new(&urls[0], None);
    let newest = loop {
        if let Ok(m) = admin.manifest(&trusted).await
            && !m.databases.is_empty()
            && sample.is_none_or(|s| {
                m.databases
                    .get("daily")
                    .is_some_and(|d| d.version == s.newest)
            })
        {
            break m;
        }
        if Instant::now() > deadline {
            bail!("master a did not publish the sample databases in time");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every mirror serves it.
    let http = reqwest::Client::new();
    for m in &net.mirrors {
        let url = format!("http://{}{}", m.http_addr(), vdb_proto::MANIFEST_PATH);
        loop {
            // The same versions, not merely a serial as high: master B signs serials of its own
            // while it replicates, which a mirror may take before A's newest.
            if let Some(held) = fetch_manifest(&http, &url, &trusted).await
                && newest.databases.iter().all(|(db, st)| {
                    held.databases
                        .get(db)
                        .is_some_and(|h| h.version == st.version)
                })
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "mirror {} did not sync the newest release (manifest serial {}) in time",
                    m.http_addr(),
                    newest.serial
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(newest
        .databases
        .iter()
        .map(|(db, s)| (db.clone(), s.version))
        .collect())
}

async fn fetch_manifest(
    http: &reqwest::Client,
    url: &str,
    trusted: &[PublicKey],
) -> Option<Manifest> {
    let body = http
        .get(url)
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?
        .bytes()
        .await
        .ok()?;
    Signed::<Manifest>::from_json(&body)
        .ok()?
        .verify(trusted)
        .ok()
}

#[allow(clippy::too_many_arguments)] // one call site; the pieces come from different stages
fn ready_line(
    dir: &Path,
    zone: &str,
    net: &mut Network,
    urls: &[String],
    monitor_url: &str,
    admin_token: &str,
    published: &[(String, u32)],
) -> Result<serde_json::Value> {
    let mirror_urls: Vec<String> = net
        .mirrors
        .iter()
        .map(|m| format!("http://{}", m.http_addr()))
        .collect();
    let redirector = format!("http://{}", net.directory.http_addr());
    let dbs: Vec<&str> = published.iter().map(|(d, _)| d.as_str()).collect();

    // freshclam.conf: the redirector first (freshclam follows its 302), then each mirror.
    let fc_db = dir.join("freshclam-db");
    std::fs::create_dir_all(&fc_db)?;
    let mut fc = format!(
        "# freshclam.conf for the vdbd dev network. Run:\n#   freshclam --config-file={conf} --no-dns --update-db={db}\n\
         DatabaseDirectory {fc_db}\nDatabaseOwner root\nDNSDatabaseInfo no\nScriptedUpdates yes\n\
         MaxAttempts 2\nConnectTimeout 5\nReceiveTimeout 30\nTestDatabases yes\nBytecode no\n\
         DatabaseMirror {redirector}\n",
        conf = dir.join("freshclam.conf").display(),
        db = dbs.first().copied().unwrap_or("daily"),
        fc_db = fc_db.display(),
    );
    for u in &mirror_urls {
        let _ = writeln!(fc, "DatabaseMirror {u}");
    }
    write_config(&dir.join("freshclam.conf"), &fc)?;

    // vdb-update's own config: the same mirrors, plus the signed manifest check.
    let ud = dir.join("vdb-update-db");
    std::fs::create_dir_all(&ud)?;
    let master_pub: Vec<String> = net
        .masters
        .iter()
        .map(|m| m.public_key().to_string())
        .collect();
    let mut vu = format!(
        "# vdb-update config for the vdbd dev network. Run:\n#   vdb-update --config {conf}\n\
         database_directory = {ud}\nnetwork = {NETWORK:?}\nmirrors = {mirrors}\nmaster_keys = {keys}\ndatabases = {dbs}\ndns = false\nretry_delay_secs = 1\n",
        conf = dir.join("vdb-update.toml").display(),
        ud = p(&ud),
        mirrors = toml::Value::Array(
            mirror_urls
                .iter()
                .map(|u| toml::Value::String(u.clone()))
                .collect()
        ),
        keys = toml::Value::Array(
            master_pub
                .iter()
                .map(|k| toml::Value::String(k.clone()))
                .collect()
        ),
        dbs = toml::Value::Array(
            dbs.iter()
                .map(|d| toml::Value::String((*d).to_owned()))
                .collect()
        ),
    );
    if dir.join("sample/synth.key.pub").exists() {
        let _ = writeln!(vu, "key_set = {}", p(&dir.join("sample/synth.key.pub")));
    }
    write_config(&dir.join("vdb-update.toml"), &vu)?;

    let configs: Vec<PathBuf> = [
        "master-a.toml",
        "master-b.toml",
        "monitor.toml",
        "directory.toml",
    ]
    .iter()
    .map(|c| dir.join(c))
    .collect();
    let databases: Vec<serde_json::Value> = published
        .iter()
        .map(|(d, v)| json!({"name": d, "version": v}))
        .collect();
    Ok(json!({
        "network": NETWORK,
        "dir": dir,
        "masters": urls,
        "mirrors": mirror_urls,
        "directory": {
            "dns": net.directory.dns_addr().to_string(),
            "http": redirector,
            "zone": zone,
        },
        "monitor": monitor_url,
        "status_page": format!("{monitor_url}/"),
        "databases": databases,
        "publisher_key": dir.join("keys/publisher.key"),
        "admin_token_file": dir.join("keys/admin.token"),
        "freshclam_conf": dir.join("freshclam.conf"),
        "vdb_update_conf": dir.join("vdb-update.toml"),
        "configs": configs,
    }))
    .and_then(|v| {
        std::fs::write(dir.join("keys/admin.token"), format!("{admin_token}\n"))?;
        Ok(v)
    })
}

fn summary(ready: &serde_json::Value) -> String {
    let get = |k: &str| ready[k].as_str().unwrap_or_default().to_owned();
    let mut s = String::new();
    let _ = writeln!(s, "vdbd dev: the network is up (state in {})", get("dir"));
    for (i, m) in ready["masters"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let _ = writeln!(
            s,
            "  master {}      {}",
            ["a", "b"][i.min(1)],
            m.as_str().unwrap_or_default()
        );
    }
    for m in ready["mirrors"].as_array().into_iter().flatten() {
        let _ = writeln!(s, "  mirror        {}", m.as_str().unwrap_or_default());
    }
    let _ = writeln!(
        s,
        "  directory     dns {} (zone {}), http {}",
        ready["directory"]["dns"].as_str().unwrap_or_default(),
        ready["directory"]["zone"].as_str().unwrap_or_default(),
        ready["directory"]["http"].as_str().unwrap_or_default()
    );
    let _ = writeln!(s, "  monitor       {} (status page)", get("status_page"));
    for d in ready["databases"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "  published     {} version {}",
            d["name"].as_str().unwrap_or_default(),
            d["version"]
        );
    }
    let dns = ready["directory"]["dns"].as_str().unwrap_or_default();
    let (dns_ip, dns_port) = dns.rsplit_once(':').unwrap_or((dns, ""));
    let _ = writeln!(s, "try:");
    let _ = writeln!(
        s,
        "  dig @{} -p {} TXT current.cvd.{}",
        dns_ip,
        dns_port,
        ready["directory"]["zone"].as_str().unwrap_or_default()
    );
    let _ = writeln!(s, "  vdb-update --config {}", get("vdb_update_conf"));
    let _ = writeln!(
        s,
        "  freshclam --config-file={} (with --upstream: ClamAV-signed data)",
        get("freshclam_conf")
    );
    let _ = writeln!(
        s,
        "  vdb publish --master {} --key {} FILES…",
        ready["masters"][0].as_str().unwrap_or_default(),
        get("publisher_key")
    );
    let _ = write!(s, "Ctrl-C stops everything.");
    s
}
