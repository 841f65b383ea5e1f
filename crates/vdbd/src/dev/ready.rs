//! What `vdbd dev` prints when the network is up: the ready line (with `"event": "ready"` and
//! `"role": "dev"`, as every role's), the client configurations it writes, and the summary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;

use super::configs::write_text;
use super::{NETWORK, Network};

#[allow(clippy::too_many_arguments)] // one call site; the pieces come from different stages
pub(super) fn ready_line(
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
    let databases: Vec<serde_json::Value> = published
        .iter()
        .map(|(d, v)| json!({"name": d, "version": v}))
        .collect();
    Ok(json!({
        "event": vdb_proto::READY_EVENT,
        "role": "dev",
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
        vdb_format::write_private(
            &dir.join("keys/admin.token"),
            format!("{admin_token}\n").as_bytes(),
        )?;
        Ok(v)
    })
}

pub(super) fn summary(ready: &serde_json::Value) -> String {
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
