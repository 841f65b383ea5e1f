//! The ready line: the one JSON line every role prints on stdout once it listens.
//!
//! Scripts and tests wait for it instead of sleeping. Every role uses the same keys:
//!
//! ```json
//! {"event":"ready","role":"mirror","name":"m1","http":"http://127.0.0.1:8080","https":"https://127.0.0.1:8443"}
//! {"event":"ready","role":"directory","name":"vdbnet.test.","http":"http://127.0.0.1:8081","dns":"127.0.0.1:5353"}
//! {"event":"ready","role":"master","name":"a","http":"https://127.0.0.1:8443","key":"ed25519:…"}
//! ```

use std::net::SocketAddr;

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
}
