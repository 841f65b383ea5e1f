//! What `vdbd dev` prints when the network is up: the ready line (the shared
//! [`vdb_proto::Ready`], `"role": "dev"`, with the network in [`vdb_proto::DevNetwork`]), the
//! client configurations it writes, and the summary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use vdb_proto::{DevDatabase, DevDirectory, DevNetwork, Ready};

use super::configs::write_text;
use super::{NETWORK, Network};

#[allow(clippy::too_many_arguments)] // one call site; the pieces come from different stages
/// Writes the clients' configurations and the admin token file; returns what the ready line
/// says of the network.
pub(super) fn network(
    dir: &Path,
    zone: &str,
    net: &mut Network,
    urls: &[String],
    monitor_url: &str,
    admin_token: &str,
    published: &[(String, u32)],
) -> Result<DevNetwork> {
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
    write_text(&dir.join("freshclam.conf"), &fc)?;

    // vdb-update's own config: the same mirrors, plus the signed manifest check.
    let ud = dir.join("vdb-update-db");
    std::fs::create_dir_all(&ud)?;
    let master_pub: Vec<String> = net
        .masters
        .iter()
        .map(|m| m.public_key().to_string())
        .collect();
    let mut vu = toml::Table::new();
    let strings =
        |v: Vec<String>| toml::Value::Array(v.into_iter().map(toml::Value::String).collect());
    vu.insert(
        "database_directory".into(),
        toml::Value::String(ud.display().to_string()),
    );
    vu.insert("network".into(), NETWORK.into());
    vu.insert("mirrors".into(), strings(mirror_urls.clone()));
    vu.insert("master_keys".into(), strings(master_pub));
    vu.insert(
        "databases".into(),
        strings(dbs.iter().map(|d| (*d).to_owned()).collect()),
    );
    vu.insert("dns".into(), false.into());
    vu.insert("retry_delay_secs".into(), 1.into());
    let key_set = dir.join("sample/synth.key.pub");
    if key_set.exists() {
        vu.insert(
            "key_set".into(),
            toml::Value::String(key_set.display().to_string()),
        );
    }
    let conf = dir.join("vdb-update.toml");
    write_text(
        &conf,
        &format!(
            "# vdb-update config for the vdbd dev network. Run:\n#   vdb-update --config {}\n{}",
            conf.display(),
            toml::to_string(&vu)?
        ),
    )?;

    let configs: Vec<PathBuf> = [
        "master-a.toml",
        "master-b.toml",
        "monitor.toml",
        "directory.toml",
    ]
    .iter()
    .map(|c| dir.join(c))
    .collect();
    let databases = published
        .iter()
        .map(|(d, v)| DevDatabase {
            name: d.clone(),
            version: *v,
        })
        .collect();
    let dev = DevNetwork {
        network: NETWORK.to_owned(),
        dir: dir.to_owned(),
        masters: urls.to_vec(),
        mirrors: mirror_urls,
        hub_of: net.hub_of.clone(),
        directory: DevDirectory {
            dns: net.directory.dns_addr(),
            http: redirector,
            zone: zone.to_owned(),
        },
        monitor: monitor_url.to_owned(),
        status_page: format!("{monitor_url}/"),
        databases,
        publisher_key: dir.join("keys/publisher.key"),
        admin_token_file: dir.join("keys/admin.token"),
        freshclam_conf: dir.join("freshclam.conf"),
        vdb_update_conf: dir.join("vdb-update.toml"),
        configs,
        intake: None,
    };
    vdb_format::write_private(
        &dir.join("keys/admin.token"),
        format!("{admin_token}\n").as_bytes(),
    )?;
    Ok(dev)
}

/// The ready line: the shared one, `"role": "dev"`, whose `http` is the redirector (where
/// clients start: freshclam's first mirror) and `dns` the directory's, with the network's keys.
pub(super) fn ready_line(dev: DevNetwork) -> Ready {
    let mut ready = Ready::new("dev", NETWORK, dev.directory.http.clone());
    ready.dns = Some(dev.directory.dns);
    ready.dev = Some(dev);
    ready
}

pub(super) fn summary(net: &DevNetwork) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "vdbd dev: the network is up (state in {})",
        net.dir.display()
    );
    for (i, m) in net.masters.iter().enumerate() {
        let _ = writeln!(s, "  master {}      {m}", ["a", "b"][i.min(1)]);
    }
    for m in &net.mirrors {
        let tier = match net.hub_of.get(m) {
            Some(hub) => format!(" (leaf of {hub})"),
            None if net.hub_of.values().any(|h| h == m) => " (hub)".to_owned(),
            None => String::new(),
        };
        let _ = writeln!(s, "  mirror        {m}{tier}");
    }
    let d = &net.directory;
    let _ = writeln!(
        s,
        "  directory     dns {} (zone {}), http {}",
        d.dns, d.zone, d.http
    );
    let _ = writeln!(s, "  monitor       {} (status page)", net.status_page);
    for db in &net.databases {
        let _ = writeln!(s, "  published     {} version {}", db.name, db.version);
    }
    let _ = writeln!(s, "try:");
    let _ = writeln!(
        s,
        "  dig @{} -p {} TXT current.cvd.{}",
        d.dns.ip(),
        d.dns.port(),
        d.zone
    );
    let _ = writeln!(s, "  vdb-update --config {}", net.vdb_update_conf.display());
    let _ = writeln!(
        s,
        "  freshclam --config-file={} (with --upstream: ClamAV-signed data)",
        net.freshclam_conf.display()
    );
    let _ = writeln!(
        s,
        "  vdb publish --master {} --key {} FILES…",
        net.masters.first().map_or("", String::as_str),
        net.publisher_key.display()
    );
    let _ = write!(s, "Ctrl-C stops everything.");
    s
}
