//! The roles' configuration files of `vdbd dev`: each built as the role's own `Config` type,
//! written as TOML (so that the files double as examples) and loaded back as the role would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::Serialize;
use vdb_master::config::{DbConfig, PeerConfig, PublisherConfig, UpstreamConfig};
use vdb_proto::PublicKey;

use super::{NETWORK, REGIONS};

/// Writes `text` to `path` atomically.
pub(super) fn write_text(path: &Path, text: &str) -> Result<()> {
    vdb_format::write_atomic(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes `config` as TOML to `path`, readable by its owner only: a role's configuration
/// carries its admin token or the statistics password.
pub(super) fn write_toml<T: Serialize>(path: &Path, config: &T) -> Result<()> {
    let text = toml::to_string(config)
        .with_context(|| format!("cannot write {} as TOML", path.display()))?;
    vdb_format::write_private(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// What a master of the dev network needs to know.
pub(super) struct MasterPlan<'a> {
    pub(super) name: &'a str,
    pub(super) listen: SocketAddr,
    pub(super) dir: &'a Path,
    pub(super) admin_token: &'a str,
    /// Keys that may publish every database.
    pub(super) publishers: Vec<PublicKey>,
    pub(super) peer: PeerConfig,
    /// The key set of the generated sample's `daily`.
    pub(super) keyset: Option<PathBuf>,
    /// An upstream to follow: base URL and databases.
    pub(super) upstream: Option<(String, Vec<String>)>,
    /// The certificates `.sign` files must chain to (`None`: the master's default).
    pub(super) cvd_certs_dir: Option<PathBuf>,
}

/// A master's configuration, written to `<dir>/master-<name>.toml` and loaded back.
pub(super) fn master(plan: MasterPlan<'_>) -> Result<vdb_master::Config> {
    let dir = plan.dir;
    let keys = dir.join("keys");
    let mut c = vdb_master::Config::new(
        plan.name,
        NETWORK,
        dir.join(format!("master-{}", plan.name)),
        keys.join(format!("master-{}.key", plan.name)),
    );
    c.listen = plan.listen;
    c.admin_token = Some(plan.admin_token.to_owned());
    c.replicate_secs = 2;
    c.tick_ms = 200;
    c.push_backoff_ms = 200;
    c.catch_up_timeout_secs = 10;
    c.publishers = plan
        .publishers
        .into_iter()
        .map(|key| PublisherConfig {
            key,
            databases: vec!["*".to_owned()],
        })
        .collect();
    c.peers = vec![plan.peer];
    c.cvd_certs_dir = plan.cvd_certs_dir;
    if let Some(keyset) = plan.keyset {
        c.databases.insert(
            "daily".to_owned(),
            DbConfig {
                keyset_file: Some(keyset),
                ..DbConfig::default()
            },
        );
    }
    if let Some((url, databases)) = plan.upstream {
        c.upstream = Some(UpstreamConfig {
            url,
            databases,
            interval_secs: 30,
            key_file: Some(keys.join("upstream.key")),
            ..UpstreamConfig::default()
        });
    }
    let path = dir.join(format!("master-{}.toml", plan.name));
    write_toml(&path, &c)?;
    vdb_master::Config::load(&path)
}

/// A mirror's configuration (listening on `ip`; a leaf of the hub at `hub`, if given),
/// written to `<dir>/<name>.toml` and loaded back.
pub(super) fn mirror(
    dir: &Path,
    name: &str,
    ip: std::net::Ipv4Addr,
    masters: &[String],
    master_keys: &[PublicKey],
    admin_token: &str,
    hub: Option<&str>,
) -> Result<vdb_mirror::Config> {
    let mut c = vdb_mirror::Config::new(
        name,
        NETWORK,
        masters.to_vec(),
        master_keys.to_vec(),
        dir.join(name),
    );
    c.listen = SocketAddr::from((ip, 0));
    c.poll_secs = 60;
    c.stats_user = Some("admin".to_owned());
    c.stats_password = Some(admin_token.to_owned());
    c.hubs = hub.map(str::to_owned).into_iter().collect();
    let path = dir.join(format!("{name}.toml"));
    write_toml(&path, &c)?;
    vdb_mirror::Config::load(&path)
}

/// The monitor's configuration, written to `<dir>/monitor.toml` and loaded back.
pub(super) fn monitor(
    dir: &Path,
    masters: &[String],
    master_keys: &[PublicKey],
) -> Result<vdb_monitor::Config> {
    let mut c = vdb_monitor::Config::new(NETWORK, masters.to_vec(), master_keys.to_vec());
    c.name = "monitor".to_owned();
    c.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.database = dir.join("monitor.sqlite");
    c.check_interval_secs = 5;
    let path = dir.join("monitor.toml");
    write_toml(&path, &c)?;
    vdb_monitor::Config::load(&path)
}

/// The directory's configuration, written to `<dir>/directory.toml` and loaded back.
pub(super) fn directory(
    dir: &Path,
    zone: &str,
    dns_listen: SocketAddr,
    masters: &[String],
    monitor: (&str, vdb_proto::PublicKey),
) -> Result<vdb_directory::Config> {
    let mut c = vdb_directory::Config::new(zone);
    c.dns_listen = dns_listen;
    c.http_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.masters = masters.to_vec();
    c.monitors = vec![monitor.0.to_owned()];
    // Only reports signed by the monitor's key count.
    c.monitor_keys = vec![monitor.1];
    c.poll_secs = 1;
    c.regions = REGIONS.iter().map(|(r, _)| (*r).to_owned()).collect();
    c.country_regions = REGIONS
        .iter()
        .map(|(r, c)| ((*c).to_owned(), (*r).to_owned()))
        .collect();
    let path = dir.join("directory.toml");
    write_toml(&path, &c)?;
    vdb_directory::Config::load(&path)
}
