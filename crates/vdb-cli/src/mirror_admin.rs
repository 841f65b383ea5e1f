//! `vdb mirror …`: manage a master's mirror registry through its admin API.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use vdb_client::Admin;
use vdb_proto::{MaintenanceWindow, MirrorRecord, PublicKey};

/// Where and how to reach the master.
#[derive(Debug, Args)]
pub struct Conn {
    /// The master's base URL.
    #[arg(long)]
    pub master: String,
    /// The admin token (or env VDB_ADMIN_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// PEM root certificates to trust for the master's HTTPS (a private CA).
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
}

impl Conn {
    fn admin(self) -> Result<Admin, vdb_client::AdminError> {
        let token = self.token.or_else(|| std::env::var("VDB_ADMIN_TOKEN").ok());
        let admin = Admin::new(&self.master, token);
        match &self.ca {
            Some(ca) => Ok(admin.with_ca(&vdb_client::read_ca(ca).map_err(usage)?)),
            None => Ok(admin),
        }
    }
}

/// Fields of a mirror record.
#[derive(Debug, Args)]
pub struct Fields {
    /// Where masters push notices (`http://host:port/.well-known/vdbnet/push`).
    #[arg(long)]
    pub push_url: Option<String>,
    /// Public base URL (repeatable).
    #[arg(long = "base-url")]
    pub base_urls: Vec<String>,
    /// Host name or alias it serves (repeatable).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Address handed out by DNS (repeatable).
    #[arg(long = "address")]
    pub addresses: Vec<IpAddr>,
    /// ISO country code.
    #[arg(long)]
    pub country: Option<String>,
    /// Region.
    #[arg(long)]
    pub region: Option<String>,
    /// Bandwidth in Mbit/s (the weight).
    #[arg(long)]
    pub bandwidth: Option<u32>,
    /// Admin contact e-mail.
    #[arg(long)]
    pub contact: Option<String>,
    /// Pinned identity key (`ed25519:…`).
    #[arg(long)]
    pub identity_key: Option<PublicKey>,
    /// Maintenance window `START-END[:reason]` in Unix seconds (repeatable; replaces all).
    #[arg(long = "maintenance")]
    pub maintenance: Vec<String>,
    /// A hub mirror it pulls from, by name, in order of preference (repeatable; replaces all).
    /// The masters push to its first registered hub, which relays to it.
    #[arg(long = "hub")]
    pub hubs: Vec<String>,
    /// Pull from the masters again (clears the hubs).
    #[arg(long, conflicts_with = "hubs")]
    pub no_hubs: bool,
}

/// `vdb mirror` subcommands.
#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Register a mirror.
    Add {
        /// Mirror name.
        name: String,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
        /// Fields.
        #[command(flatten)]
        fields: Fields,
    },
    /// List the registry (JSON lines).
    List {
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one mirror (JSON).
    Show {
        /// Mirror name.
        name: String,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// Change fields of a mirror (fields given replace the held ones).
    Update {
        /// Mirror name.
        name: String,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
        /// Fields.
        #[command(flatten)]
        fields: Fields,
    },
    /// Remove a mirror.
    Remove {
        /// Mirror name.
        name: String,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// Drain a mirror out of DNS (or put it back with --undo).
    Drain {
        /// Mirror name.
        name: String,
        /// Put it back in service.
        #[arg(long)]
        undo: bool,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// List the mirrors' join requests (`vdbd mirror join`), pending first (JSON lines).
    Pending {
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// Approve a mirror's join request: it is registered with its identity key.
    Approve {
        /// Mirror name.
        name: String,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// Reject a mirror's join request.
    Reject {
        /// Mirror name.
        name: String,
        /// Why (the mirror's operator sees it).
        #[arg(long)]
        reason: String,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// The registry's history of a mirror, newest first (JSON lines).
    History {
        /// Mirror name.
        name: String,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
}

fn apply(r: &mut MirrorRecord, f: Fields) -> Result<()> {
    if !f.hubs.is_empty() {
        r.hubs = f.hubs;
    }
    if f.no_hubs {
        r.hubs.clear();
    }
    if f.push_url.is_some() {
        r.push_url = f.push_url;
    }
    if !f.base_urls.is_empty() {
        r.base_urls = f.base_urls;
    }
    if !f.hosts.is_empty() {
        r.hosts = f.hosts;
    }
    if !f.addresses.is_empty() {
        r.addresses = f.addresses;
    }
    if f.country.is_some() {
        r.country = f.country;
    }
    if f.region.is_some() {
        r.region = f.region;
    }
    if let Some(b) = f.bandwidth {
        r.bandwidth_mbps = b;
    }
    if f.contact.is_some() {
        r.admin_contact = f.contact;
    }
    if f.identity_key.is_some() {
        r.identity_key = f.identity_key;
    }
    if !f.maintenance.is_empty() {
        r.maintenance = f
            .maintenance
            .iter()
            .map(|w| parse_window(w))
            .collect::<Result<_>>()?;
    }
    Ok(())
}

fn parse_window(s: &str) -> Result<MaintenanceWindow> {
    let (range, reason) = s.split_once(':').unwrap_or((s, ""));
    let (a, b) = range
        .split_once('-')
        .with_context(|| format!("maintenance window {s:?}: expected START-END[:reason]"))?;
    Ok(MaintenanceWindow {
        start: a
            .trim()
            .parse()
            .with_context(|| format!("maintenance start {a:?}"))?,
        end: b
            .trim()
            .parse()
            .with_context(|| format!("maintenance end {b:?}"))?,
        reason: reason.to_owned(),
    })
}

fn print(r: &MirrorRecord) -> Result<()> {
    println!("{}", serde_json::to_string(r)?);
    Ok(())
}

/// Runs a `vdb mirror` command: 0 ok, 1 refused by the master.
pub fn run(cmd: MirrorCommand) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result: Result<(), vdb_client::AdminError> = rt.block_on(async {
        match cmd {
            MirrorCommand::Add { name, conn, fields } => {
                let mut r = MirrorRecord::new(name, String::new());
                r.base_urls.clear();
                apply(&mut r, fields).map_err(usage)?;
                let a = conn.admin()?;
                print(&a.add(&r).await?).map_err(usage)
            }
            MirrorCommand::List { conn } => {
                for r in conn.admin()?.list().await? {
                    print(&r).map_err(usage)?;
                }
                Ok(())
            }
            MirrorCommand::Show { name, conn } => {
                print(&conn.admin()?.show(&name).await?).map_err(usage)
            }
            MirrorCommand::Update { name, conn, fields } => {
                let a = conn.admin()?;
                let mut r = a.show(&name).await?;
                apply(&mut r, fields).map_err(usage)?;
                print(&a.update(&r).await?).map_err(usage)
            }
            MirrorCommand::Remove { name, conn } => {
                conn.admin()?.remove(&name).await?;
                println!("removed {name}");
                Ok(())
            }
            MirrorCommand::Drain { name, undo, conn } => {
                print(&conn.admin()?.drain(&name, !undo).await?).map_err(usage)
            }
            MirrorCommand::Pending { conn } => {
                for v in conn.admin()?.pending().await? {
                    println!("{}", serde_json::to_string(&v).map_err(usage)?);
                }
                Ok(())
            }
            MirrorCommand::Approve { name, conn } => {
                print(&conn.admin()?.approve(&name).await?).map_err(usage)
            }
            MirrorCommand::Reject { name, reason, conn } => {
                conn.admin()?.reject(&name, &reason).await?;
                println!("rejected {name}");
                Ok(())
            }
            MirrorCommand::History { name, limit, conn } => {
                for e in conn.admin()?.mirror_history(&name, limit).await? {
                    println!("{}", serde_json::to_string(&e).map_err(usage)?);
                }
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(crate::exit::report_admin(&e)),
    }
}

fn usage(e: impl std::fmt::Display) -> vdb_client::AdminError {
    vdb_client::AdminError::Transport(e.to_string())
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;
    use std::sync::Arc;

    use super::*;

    const TOKEN: &str = "admin-token-0123456789";

    fn conn(url: &str, token: Option<&str>) -> Conn {
        Conn {
            master: url.to_owned(),
            token: token.map(str::to_owned),
            ca: None,
        }
    }

    fn fields() -> Fields {
        Fields {
            push_url: None,
            base_urls: Vec::new(),
            hosts: Vec::new(),
            addresses: Vec::new(),
            country: None,
            region: None,
            bandwidth: None,
            contact: None,
            identity_key: None,
            maintenance: Vec::new(),
            hubs: Vec::new(),
            no_hubs: false,
        }
    }

    #[test]
    fn registry_round_trip_against_a_real_master() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("master.key");
        crate::key::write_secret(&key, &vdb_proto::SecretKey::generate()).unwrap();
        let mut c = vdb_master::Config::new("a", "net", dir.path().join("data"), key);
        c.admin_token = Some(TOKEN.into());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let running = rt
            .block_on(vdb_master::start(c, Arc::new(vdb_proto::SystemClock)))
            .unwrap();
        let url = running.base_url();
        let mut f = fields();
        f.base_urls = vec!["http://m1.example".into()];
        f.country = Some("JP".into());
        f.maintenance = vec!["10-20:disk swap".into()];
        let add = MirrorCommand::Add {
            name: "m1".into(),
            conn: conn(&url, Some(TOKEN)),
            fields: f,
        };
        assert_eq!(run(add).unwrap(), ExitCode::SUCCESS);
        let mut f = fields();
        f.bandwidth = Some(1000);
        let update = MirrorCommand::Update {
            name: "m1".into(),
            conn: conn(&url, Some(TOKEN)),
            fields: f,
        };
        assert_eq!(run(update).unwrap(), ExitCode::SUCCESS);
        let drain = MirrorCommand::Drain {
            name: "m1".into(),
            undo: false,
            conn: conn(&url, Some(TOKEN)),
        };
        assert_eq!(run(drain).unwrap(), ExitCode::SUCCESS);
        let admin = Admin::new(&url, None);
        let r = rt.block_on(admin.show("m1")).unwrap();
        assert_eq!(r.bandwidth_mbps, 1000);
        assert_eq!(r.country.as_deref(), Some("JP"));
        assert_eq!(r.maintenance[0].reason, "disk swap");
        assert!(r.drained);
        // `--hub` names a registered hub; `--no-hubs` clears them.
        let mut f = fields();
        f.push_url = Some("http://h1.example/.well-known/vdbnet/push".into());
        let add_hub = MirrorCommand::Add {
            name: "h1".into(),
            conn: conn(&url, Some(TOKEN)),
            fields: f,
        };
        assert_eq!(run(add_hub).unwrap(), ExitCode::SUCCESS);
        for (hubs, no_hubs, want) in [
            (vec!["h1".to_owned()], false, vec!["h1".to_owned()]),
            (Vec::new(), true, Vec::new()),
        ] {
            let mut f = fields();
            f.hubs = hubs;
            f.no_hubs = no_hubs;
            let update = MirrorCommand::Update {
                name: "m1".into(),
                conn: conn(&url, Some(TOKEN)),
                fields: f,
            };
            assert_eq!(run(update).unwrap(), ExitCode::SUCCESS);
            assert_eq!(rt.block_on(admin.show("m1")).unwrap().hubs, want);
        }
        let mut f = fields();
        f.hubs = vec!["nosuch".into()];
        let bad = MirrorCommand::Update {
            name: "m1".into(),
            conn: conn(&url, Some(TOKEN)),
            fields: f,
        };
        assert_ne!(run(bad).unwrap(), ExitCode::SUCCESS);
        let remove_hub = MirrorCommand::Remove {
            name: "h1".into(),
            conn: conn(&url, Some(TOKEN)),
        };
        assert_eq!(run(remove_hub).unwrap(), ExitCode::SUCCESS);
        let no_token = MirrorCommand::Remove {
            name: "m1".into(),
            conn: conn(&url, Some("wrong-token-wrong-token")),
        };
        assert_eq!(run(no_token).unwrap(), ExitCode::from(crate::exit::FAILED));
        let remove = MirrorCommand::Remove {
            name: "m1".into(),
            conn: conn(&url, Some(TOKEN)),
        };
        assert_eq!(run(remove).unwrap(), ExitCode::SUCCESS);
        assert!(rt.block_on(admin.list()).unwrap().is_empty());
        assert!(parse_window("x").is_err());
        rt.block_on(running.shutdown());
    }
}
