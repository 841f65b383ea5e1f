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
    /// The hub mirrors this mirror pulls from, by name, in order of preference (issue 18).
    /// Empty: the masters push to it and it pulls from them. A mirror named here is a hub: the
    /// masters push to it with this mirror in the notice's leaves, and it relays the notice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hubs: Vec<String>,
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
            hubs: Vec::new(),
        }
    }

    /// Whether `now` falls in one of the maintenance windows.
    pub fn in_maintenance(&self, now: i64) -> bool {
        self.maintenance
            .iter()
            .any(|w| w.start <= now && now < w.end)
    }
}

/// Why a record's `hubs` are refused ([`check_hubs`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HubError {
    /// A mirror cannot pull from itself.
    #[error("mirror {0:?} cannot be its own hub")]
    OwnHub(String),
    /// The hub is not a registered mirror.
    #[error("hub {0:?} is not a registered mirror (register it first)")]
    Unknown(String),
    /// The hub pulls from hubs itself: the tree has two tiers at most.
    #[error(
        "hub {hub:?} pulls from hubs itself ({hubs:?}): hubs pull from the masters (two tiers at most)"
    )]
    HubHasHubs {
        /// The hub.
        hub: String,
        /// Its own hubs.
        hubs: Vec<String>,
    },
    /// This mirror is a hub for others, so it cannot pull from a hub.
    #[error(
        "mirror {name:?} is the hub of {leaves:?}: a hub pulls from the masters (two tiers at most)"
    )]
    IsHub {
        /// The mirror.
        name: String,
        /// Its leaves.
        leaves: Vec<String>,
    },
    /// The same hub twice.
    #[error("hub {0:?} is named twice")]
    Duplicate(String),
    /// No push URL: a hub must be pushed to.
    #[error("hub {0:?} has no push URL: the masters could not push to it")]
    NoPushUrl(String),
}

/// Checks `record.hubs` against the other live records `all` (the record itself may be among
/// them, its old version): every hub is registered, has a push URL and pulls from the masters;
/// the record is no hub of another mirror if it names hubs; no hub twice; not itself.
pub fn check_hubs(record: &MirrorRecord, all: &[MirrorRecord]) -> Result<(), HubError> {
    if record.hubs.is_empty() {
        return Ok(());
    }
    let leaves: Vec<String> = all
        .iter()
        .filter(|r| r.name != record.name && r.hubs.contains(&record.name))
        .map(|r| r.name.clone())
        .collect();
    if !leaves.is_empty() {
        return Err(HubError::IsHub {
            name: record.name.clone(),
            leaves,
        });
    }
    for (i, h) in record.hubs.iter().enumerate() {
        if *h == record.name {
            return Err(HubError::OwnHub(h.clone()));
        }
        if record.hubs[..i].contains(h) {
            return Err(HubError::Duplicate(h.clone()));
        }
        let Some(hub) = all.iter().find(|r| r.name == *h) else {
            return Err(HubError::Unknown(h.clone()));
        };
        if !hub.hubs.is_empty() {
            return Err(HubError::HubHasHubs {
                hub: h.clone(),
                hubs: hub.hubs.clone(),
            });
        }
        if hub.push_url.is_none() {
            return Err(HubError::NoPushUrl(h.clone()));
        }
    }
    Ok(())
}

/// The hub that relays pushes to `record`: its first hub that is live in `all` with a push
/// URL and pulls from the masters itself; `None` (the masters push to it directly) when it
/// names no hub or none of its hubs is usable (removed since, say).
pub fn relaying_hub<'a>(
    record: &MirrorRecord,
    all: &'a [MirrorRecord],
) -> Option<&'a MirrorRecord> {
    record.hubs.iter().find_map(|h| {
        all.iter()
            .find(|r| r.name == *h && r.name != record.name)
            .filter(|r| r.hubs.is_empty() && r.push_url.is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hubbed(name: &str, hubs: &[&str]) -> MirrorRecord {
        let mut r = MirrorRecord::new(name, "http://127.0.0.1:1");
        r.push_url = Some(format!("http://127.0.0.1:1/{name}"));
        r.hubs = hubs.iter().map(|h| (*h).to_owned()).collect();
        r
    }

    #[test]
    fn hubs_are_checked_and_stay_two_tiers() {
        let all = vec![hubbed("h1", &[]), hubbed("h2", &[]), hubbed("l1", &["h1"])];
        assert_eq!(check_hubs(&hubbed("l2", &["h1", "h2"]), &all), Ok(()));
        assert_eq!(check_hubs(&hubbed("l2", &[]), &all), Ok(()));
        assert_eq!(
            check_hubs(&hubbed("l2", &["l2"]), &all),
            Err(HubError::OwnHub("l2".into()))
        );
        assert_eq!(
            check_hubs(&hubbed("l2", &["nope"]), &all),
            Err(HubError::Unknown("nope".into()))
        );
        assert_eq!(
            check_hubs(&hubbed("l2", &["h1", "h1"]), &all),
            Err(HubError::Duplicate("h1".into()))
        );
        assert!(matches!(
            check_hubs(&hubbed("l2", &["l1"]), &all),
            Err(HubError::HubHasHubs { .. })
        ));
        // h1 is l1's hub: it cannot take a hub itself (a cycle h1 -> h2 -> … or a third tier).
        assert!(matches!(
            check_hubs(&hubbed("h1", &["h2"]), &all),
            Err(HubError::IsHub { .. })
        ));
        let mut no_push = hubbed("h3", &[]);
        no_push.push_url = None;
        let mut all2 = all.clone();
        all2.push(no_push);
        assert_eq!(
            check_hubs(&hubbed("l2", &["h3"]), &all2),
            Err(HubError::NoPushUrl("h3".into()))
        );
        // The relaying hub is the first usable one.
        assert_eq!(
            relaying_hub(&hubbed("l2", &["gone", "h2"]), &all).map(|r| r.name.as_str()),
            Some("h2")
        );
        assert_eq!(relaying_hub(&hubbed("l2", &["gone"]), &all), None);
        assert_eq!(relaying_hub(&hubbed("l2", &["l1"]), &all), None);
        // Old records (no `hubs`) read and write as before.
        let r: MirrorRecord = serde_json::from_str(r#"{"name":"m1"}"#).unwrap();
        assert!(r.hubs.is_empty());
        assert!(!serde_json::to_string(&r).unwrap().contains("hubs"));
    }

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
