//! The mirror registry's public records (the seed's mirror registration form).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::PublicKey;

/// A planned downtime: the mirror is drained from DNS and raises no alerts in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    /// Start (Unix seconds, inclusive).
    pub start: i64,
    /// End (Unix seconds, exclusive).
    pub end: i64,
    /// Why, for the status page.
    #[serde(default)]
    pub reason: String,
}

/// One registered mirror, as masters hold it and monitors and directories read it. Secrets
/// (the mirror's pull token, its stats login) are not part of this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorRecord {
    /// Unique short name (`[a-z0-9_-]`).
    pub name: String,
    /// Where masters POST push notices (`http://host:port/.well-known/vdbnet/push`).
    #[serde(default)]
    pub push_url: Option<String>,
    /// Public base URLs clients download from (`https://db.example.org`).
    #[serde(default)]
    pub base_urls: Vec<String>,
    /// Host names and aliases the mirror answers (virtual hosts).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Addresses the directory hands out for it (A and AAAA).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// ISO 3166 country code.
    #[serde(default)]
    pub country: Option<String>,
    /// Region name (`europe`, `america`, `asia`, `other`, or the network's own).
    #[serde(default)]
    pub region: Option<String>,
    /// Bandwidth in Mbit/s: the weight in DNS and redirects.
    #[serde(default = "default_bandwidth")]
    pub bandwidth_mbps: u32,
    /// The mirror admin's e-mail address, for alerts.
    #[serde(default)]
    pub admin_contact: Option<String>,
    /// The mirror's pinned identity key, if it has one.
    #[serde(default)]
    pub identity_key: Option<PublicKey>,
    /// Drained: registered but deliberately out of DNS.
    #[serde(default)]
    pub drained: bool,
    /// Planned maintenance windows.
    #[serde(default)]
    pub maintenance: Vec<MaintenanceWindow>,
}

fn default_bandwidth() -> u32 {
    100
}

impl MirrorRecord {
    /// A record with just a name and base URL; everything else empty or default.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            push_url: None,
            base_urls: vec![base_url.into()],
            hosts: Vec::new(),
            addresses: Vec::new(),
            country: None,
            region: None,
            bandwidth_mbps: default_bandwidth(),
            admin_contact: None,
            identity_key: None,
            drained: false,
            maintenance: Vec::new(),
        }
    }

    /// Whether `now` falls in one of the maintenance windows.
    pub fn in_maintenance(&self, now: i64) -> bool {
        self.maintenance
            .iter()
            .any(|w| w.start <= now && now < w.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_maintenance() {
        let r: MirrorRecord = serde_json::from_str(r#"{"name":"m1"}"#).unwrap();
        assert_eq!(r.bandwidth_mbps, 100);
        let mut r = MirrorRecord::new("m1", "http://127.0.0.1:1");
        r.maintenance.push(MaintenanceWindow {
            start: 10,
            end: 20,
            reason: String::new(),
        });
        assert!(!r.in_maintenance(9));
        assert!(r.in_maintenance(10));
        assert!(!r.in_maintenance(20));
    }
}

/// A registry entry with its replication metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// The record.
    pub record: MirrorRecord,
    /// Last change (Unix seconds): the newest change wins between masters.
    pub updated_at: i64,
    /// Removed (a tombstone, so removals replicate).
    pub deleted: bool,
}

/// A master's whole registry (tombstones and change times included) as its peers replicate it
/// (`GET /api/v1/registry`), signed with that master's key: a peer takes the entries only from
/// a master it knows by key, whatever the path or the token the answer came with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryExport {
    /// The network's name (an export of another network is refused).
    pub network: String,
    /// The master that made it.
    pub master: String,
    /// When (Unix seconds).
    pub issued_at: i64,
    /// Every entry.
    pub entries: Vec<RegistryEntry>,
    /// Join requests (pending and decided, until they expire); each carries the mirror's own
    /// signed request, which peers verify again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<crate::PendingJoin>,
    /// The registry's newest history events (peers keep the ones they lack).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<crate::RegistryEvent>,
}

impl crate::Document for RegistryExport {
    const KIND: crate::DocKind = crate::DocKind::Registry;
}
