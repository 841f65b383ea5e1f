//! The ready line: the one JSON line every role prints on stdout once it listens.
//!
//! Scripts and tests wait for it instead of sleeping. Every role uses the same keys:
//!
//! ```json
//! {"event":"ready","role":"mirror","name":"m1","http":"http://127.0.0.1:8080","https":"https://127.0.0.1:8443"}
//! {"event":"ready","role":"directory","name":"vdbnet.test.","http":"http://127.0.0.1:8081","dns":"127.0.0.1:5353"}
//! {"event":"ready","role":"master","name":"a","http":"https://127.0.0.1:8443","key":"ed25519:…"}
//! ```
//!
//! `vdbd dev` prints the same line (`"role":"dev"`, `http` the directory's redirector, `dns` its
//! DNS listener) with the whole network it runs added at the top level ([`DevNetwork`]:
//! `masters`, `mirrors`, `directory`, `monitor`, `databases`, the files it wrote, …).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::PublicKey;

/// The value of the `event` key of a ready line.
pub const READY_EVENT: &str = "ready";

/// A role's ready line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Always [`READY_EVENT`].
    pub event: String,
    /// `master`, `mirror`, `directory`, `monitor`, …
    pub role: String,
    /// The role's configured name.
    pub name: String,
    /// The base URL of the role's main HTTP listener (`http://…`, or `https://…` when that
    /// listener speaks TLS).
    pub http: String,
    /// The base URL of an extra HTTPS listener (a mirror's `tls_listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<String>,
    /// The DNS listener (UDP and TCP), for the directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<SocketAddr>,
    /// The role's public key, where it has one (a master's manifest key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PublicKey>,
    /// `vdbd dev` only: the network it runs, its keys at the top level of the line.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<DevNetwork>,
}

/// What `vdbd dev`'s ready line adds: every endpoint of the network it runs and the files it
/// wrote for clients (scripts and the end-to-end suites read these keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevNetwork {
    /// The network's name (`network` in every role's configuration).
    pub network: String,
    /// The state directory.
    pub dir: PathBuf,
    /// The masters' base URLs.
    pub masters: Vec<String>,
    /// The mirrors' base URLs.
    pub mirrors: Vec<String>,
    /// With `--hubs`: each leaf mirror's base URL and its hub's (the masters push to the hubs,
    /// each hub relays to its leaves, and a leaf pulls from its hub first).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub hub_of: std::collections::BTreeMap<String, String>,
    /// The directory.
    pub directory: DevDirectory,
    /// The monitor's base URL.
    pub monitor: String,
    /// The monitor's status page.
    pub status_page: String,
    /// The databases published at start, and their versions.
    pub databases: Vec<DevDatabase>,
    /// The publisher's secret key file (for `vdb publish --key`).
    pub publisher_key: PathBuf,
    /// The file holding the network's admin token.
    pub admin_token_file: PathBuf,
    /// A `freshclam.conf` for the network.
    pub freshclam_conf: PathBuf,
    /// A `vdb-update` configuration for the network.
    pub vdb_update_conf: PathBuf,
    /// The roles' configuration files.
    pub configs: Vec<PathBuf>,
    /// The sample intake, once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake: Option<DevIntake>,
}

/// The directory of a `vdbd dev` network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevDirectory {
    /// The DNS listener (UDP and TCP).
    pub dns: SocketAddr,
    /// The redirector's base URL.
    pub http: String,
    /// The zone it is authoritative for.
    pub zone: String,
}

/// A database a `vdbd dev` network published at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevDatabase {
    /// Its name (`daily`, `test`, …).
    pub name: String,
    /// The version published.
    pub version: u32,
}

/// The sample intake of a `vdbd dev` network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevIntake {
    /// Its base URL.
    pub http: String,
    /// The submission form's URL.
    pub form: String,
    /// Its configuration file.
    pub config: PathBuf,
}

/// Why a line is not a ready line.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// Not JSON of the ready line's shape.
    #[error("not a ready line: {0}")]
    Malformed(#[from] serde_json::Error),
    /// JSON, but its `event` is not `ready`.
    #[error("event {0:?} is not {READY_EVENT:?}")]
    Event(String),
}

impl Ready {
    /// A ready line for `role` named `name` whose main listener is at the base URL `http`.
    pub fn new(role: &str, name: &str, http: String) -> Self {
        Self {
            event: READY_EVENT.to_owned(),
            role: role.to_owned(),
            name: name.to_owned(),
            http,
            https: None,
            dns: None,
            key: None,
            dev: None,
        }
    }

    /// The line (JSON, no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a ready line serialises")
    }

    /// Reads a ready line.
    pub fn parse(line: &str) -> Result<Self, ReadyError> {
        let r: Self = serde_json::from_str(line.trim())?;
        if r.event != READY_EVENT {
            return Err(ReadyError::Event(r.event));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_keys() {
        let mut r = Ready::new("directory", "z.", "http://127.0.0.1:1".into());
        r.dns = Some("127.0.0.1:2".parse().unwrap());
        let line = r.to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "ready");
        assert_eq!(v["role"], "directory");
        assert_eq!(v["http"], "http://127.0.0.1:1");
        assert_eq!(v["dns"], "127.0.0.1:2");
        assert!(v.get("key").is_none() && v.get("https").is_none());
        assert_eq!(Ready::parse(&line).unwrap(), r);
        assert!(matches!(
            Ready::parse(&line.replace("\"ready\"", "\"gone\"")),
            Err(ReadyError::Event(_))
        ));
        assert!(Ready::parse("{}").is_err());
    }

    #[test]
    fn dev_keys_at_the_top_level() {
        let mut r = Ready::new("dev", "dev", "http://127.0.0.1:3".into());
        r.dev = Some(DevNetwork {
            network: "dev".into(),
            dir: "/tmp/d".into(),
            masters: vec!["http://127.0.0.1:4".into()],
            mirrors: vec!["http://127.0.0.1:5".into()],
            hub_of: Default::default(),
            directory: DevDirectory {
                dns: "127.0.0.1:6".parse().unwrap(),
                http: "http://127.0.0.1:3".into(),
                zone: "z.".into(),
            },
            monitor: "http://127.0.0.1:7".into(),
            status_page: "http://127.0.0.1:7/".into(),
            databases: vec![DevDatabase {
                name: "daily".into(),
                version: 2,
            }],
            publisher_key: "/tmp/d/keys/publisher.key".into(),
            admin_token_file: "/tmp/d/keys/admin.token".into(),
            freshclam_conf: "/tmp/d/freshclam.conf".into(),
            vdb_update_conf: "/tmp/d/vdb-update.toml".into(),
            configs: vec!["/tmp/d/monitor.toml".into()],
            intake: Some(DevIntake {
                http: "http://127.0.0.1:8".into(),
                form: "http://127.0.0.1:8/".into(),
                config: "/tmp/d/intake.toml".into(),
            }),
        });
        let line = r.to_line();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "ready");
        assert_eq!(v["role"], "dev");
        assert_eq!(v["network"], "dev");
        assert_eq!(v["dir"], "/tmp/d");
        assert_eq!(v["masters"][0], "http://127.0.0.1:4");
        assert_eq!(v["directory"]["dns"], "127.0.0.1:6");
        assert_eq!(v["directory"]["zone"], "z.");
        assert_eq!(v["databases"][0]["name"], "daily");
        assert_eq!(v["databases"][0]["version"], 2);
        assert_eq!(v["intake"]["form"], "http://127.0.0.1:8/");
        assert!(v.get("dev").is_none(), "{v}");
        assert_eq!(Ready::parse(&line).unwrap(), r);
        // Any other role's line has none of these keys, and reads back without them.
        let plain = Ready::new("mirror", "m", "http://127.0.0.1:1".into());
        let v: serde_json::Value = serde_json::from_str(&plain.to_line()).unwrap();
        assert!(
            v.get("masters").is_none() && v.get("network").is_none(),
            "{v}"
        );
        assert_eq!(Ready::parse(&plain.to_line()).unwrap().dev, None);
    }
}
