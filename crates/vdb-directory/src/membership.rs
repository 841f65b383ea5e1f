//! Who is handed out: the registry, the monitors' verdicts, the fail-static rule (invariant 8)
//! and the versions every handed-out mirror serves (invariant 9).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Serialize;
use vdb_proto::{Manifest, MirrorRecord, MirrorState, VerdictReport};

/// What the directory knows, from its last successful polls.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inputs {
    /// The registry from the masters (none: never fetched).
    pub(crate) registry: Option<Vec<MirrorRecord>>,
    /// The last report of each monitor, by configured position.
    pub(crate) reports: Vec<Option<VerdictReport>>,
    /// Manifests seen (from the masters, and from mirrors serving them), by serial.
    pub(crate) manifests: BTreeMap<u64, Manifest>,
    /// Mirror → the highest manifest serial the directory saw it serve.
    pub(crate) confirmed: BTreeMap<String, u64>,
}

/// One mirror the directory hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) region: Option<String>,
    pub(crate) weight: u32,
    pub(crate) addresses: Vec<IpAddr>,
    pub(crate) base_url: Option<String>,
}

/// A registered mirror as `GET /api/v1/mirrors` on the directory shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorStatus {
    /// Registry name.
    pub name: String,
    /// Region (`db.<region>.<zone>`).
    pub region: Option<String>,
    /// ISO country code.
    pub country: Option<String>,
    /// Public base URLs.
    pub base_urls: Vec<String>,
    /// Addresses in DNS answers.
    pub addresses: Vec<IpAddr>,
    /// Weight in answers and redirects.
    pub bandwidth_mbps: u32,
    /// In service by the rules (registered, not drained, not in maintenance, judged in
    /// service by enough monitors).
    pub in_service: bool,
    /// Handed out in answers (in service, or kept by the fail-static rule).
    pub handed_out: bool,
    /// The monitors' states for it, in the order of the config's `monitors`.
    pub states: Vec<Option<MirrorState>>,
    /// Versions it serves: those of the manifest serial it serves when the directory knows
    /// that manifest, else as the monitors last saw them (the lowest across monitors).
    pub serving: BTreeMap<String, u32>,
    /// The manifest serial it serves: the higher of what the directory saw it serve and what
    /// the monitors last saw.
    pub serial: Option<u64>,
    /// Why it is (not) handed out.
    pub reason: String,
}

/// The outcome of one membership computation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Membership {
    pub(crate) members: Vec<Member>,
    pub(crate) statuses: Vec<MirrorStatus>,
    /// Database → the highest version every handed-out mirror serves. Empty when no
    /// handed-out mirror has a known version list.
    pub(crate) versions: BTreeMap<String, u32>,
    /// Whether the fail-static rule added mirrors that are not in service.
    pub(crate) fail_static: bool,
    /// The lowest manifest serial the handed-out mirrors serve, when every one of them serves
    /// a known manifest: the TXT records are that manifest's (`dns.txt`, byte for byte).
    pub(crate) txt_serial: Option<u64>,
    /// Whether the directory knows of a release (a manifest from the masters or a mirror).
    pub(crate) release_known: bool,
}

/// Whether an address from the registry may go into answers (never unspecified, multicast
/// or broadcast addresses).
fn usable_address(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// Whether a base URL from the registry may go into a redirect.
fn usable_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.len() <= 2048
        && !u.bytes().any(|b| b.is_ascii_control() || b == b' ')
}

fn state_rank(state: Option<MirrorState>) -> u8 {
    match state {
        Some(MirrorState::InService) => 0,
        Some(MirrorState::Lagging) => 1,
        Some(MirrorState::Old) => 2,
        None => 3,
        Some(MirrorState::Out) => 4,
        Some(MirrorState::Maintenance) => 5,
    }
}

/// Computes who is handed out at `now`.
pub(crate) fn compute(
    inputs: &Inputs,
    quorum: usize,
    min_in_service: usize,
    now: i64,
) -> Membership {
    let Some(registry) = &inputs.registry else {
        return Membership {
            release_known: inputs.manifests.values().any(|m| !m.databases.is_empty()),
            ..Membership::default()
        };
    };
    let monitors = inputs.reports.len();
    let quorum = quorum.clamp(1, monitors.max(1));
    struct Cand<'a> {
        rec: &'a MirrorRecord,
        status: MirrorStatus,
        best_state: Option<MirrorState>,
        lag: i64,
        known: bool,
    }
    let mut cands = Vec::new();
    let mut seen = BTreeSet::new();
    for rec in registry {
        if !seen.insert(rec.name.clone()) {
            continue; // a duplicate name: the first record wins
        }
        let verdicts: Vec<_> = inputs
            .reports
            .iter()
            .map(|r| {
                r.as_ref()
                    .and_then(|r| r.mirrors.iter().find(|v| v.name == rec.name))
            })
            .collect();
        let states: Vec<Option<MirrorState>> =
            verdicts.iter().map(|v| v.map(|v| v.state)).collect();
        let agreeing = states.iter().flatten().filter(|s| s.in_service()).count();
        let judged_in = monitors == 0 || agreeing >= quorum;
        let mut serving: BTreeMap<String, u32> = BTreeMap::new();
        let mut known = false;
        // A mirror never goes back to a lower serial, so the highest sighting is what it serves.
        let serial = verdicts
            .iter()
            .flatten()
            .filter_map(|v| v.serial)
            .chain(inputs.confirmed.get(&rec.name).copied())
            .max();
        let manifest = serial.and_then(|s| inputs.manifests.get(&s));
        if let Some(m) = manifest {
            serving = m.versions();
            known = true;
        }
        for v in verdicts.iter().flatten().filter(|_| manifest.is_none()) {
            if v.serving.is_empty() {
                continue;
            }
            known = true;
            for (db, ver) in &v.serving {
                serving
                    .entry(db.clone())
                    .and_modify(|x| *x = (*x).min(*ver))
                    .or_insert(*ver);
            }
        }
        let lag = verdicts
            .iter()
            .flatten()
            .map(|v| v.lag_secs)
            .max()
            .unwrap_or(i64::MAX);
        let best_state = states
            .iter()
            .flatten()
            .copied()
            .min_by_key(|s| state_rank(Some(*s)));
        let (in_service, reason) = if rec.drained {
            (false, "drained by its admin".to_owned())
        } else if rec.in_maintenance(now) {
            (false, "in a maintenance window".to_owned())
        } else if !judged_in {
            (
                false,
                format!("judged in service by {agreeing} of {monitors} monitors, {quorum} needed"),
            )
        } else {
            (true, "in service".to_owned())
        };
        cands.push(Cand {
            rec,
            status: MirrorStatus {
                name: rec.name.clone(),
                region: rec.region.clone(),
                country: rec.country.clone(),
                base_urls: rec.base_urls.clone(),
                addresses: rec.addresses.clone(),
                bandwidth_mbps: rec.bandwidth_mbps,
                in_service,
                handed_out: in_service,
                states,
                serving,
                serial,
                reason,
            },
            best_state,
            lag,
            known,
        });
    }
    let in_service = cands.iter().filter(|c| c.status.in_service).count();
    let mut fail_static = false;
    if in_service < min_in_service {
        // Invariant 8: rather than answer with too few (or nothing), keep the freshest others.
        // Drained mirrors and mirrors in maintenance are down on purpose and stay out.
        let mut others: Vec<usize> = (0..cands.len())
            .filter(|&i| {
                let c = &cands[i];
                !c.status.in_service && !c.rec.drained && !c.rec.in_maintenance(now)
            })
            .collect();
        others.sort_by_key(|&i| {
            let c = &cands[i];
            let total: u64 = c.status.serving.values().map(|&v| u64::from(v)).sum();
            (
                state_rank(c.best_state),
                !c.known,
                c.lag,
                std::cmp::Reverse(total),
                c.rec.name.clone(),
            )
        });
        for i in others.into_iter().take(min_in_service - in_service) {
            let s = &mut cands[i].status;
            s.handed_out = true;
            s.reason = format!("{}; handed out by the fail-static rule", s.reason);
            fail_static = true;
        }
    }
    let handed: Vec<&Cand<'_>> = cands.iter().filter(|c| c.status.handed_out).collect();
    let mut versions = BTreeMap::new();
    if !handed.is_empty() && handed.iter().all(|c| c.known) {
        // Invariant 9: a version is advertised only when every handed-out mirror serves it.
        let dbs: BTreeSet<&String> = handed
            .iter()
            .flat_map(|c| c.status.serving.keys())
            .collect();
        for db in dbs {
            let v = handed
                .iter()
                .map(|c| c.status.serving.get(db).copied().unwrap_or(0))
                .min()
                .unwrap_or(0);
            versions.insert(db.clone(), v);
        }
    }
    // The TXT records are one manifest's when every handed-out mirror serves a known one:
    // the lowest such serial (serials and versions only go up, so its versions are the
    // per-database minimums above).
    let serials: Option<Vec<u64>> = handed
        .iter()
        .map(|c| c.status.serial.filter(|s| inputs.manifests.contains_key(s)))
        .collect();
    let txt_serial = serials
        .and_then(|v| v.into_iter().min())
        .filter(|_| !versions.is_empty());
    let members = handed
        .iter()
        .map(|c| Member {
            name: c.rec.name.clone(),
            region: c.rec.region.clone(),
            weight: c.rec.bandwidth_mbps.max(1),
            addresses: c
                .rec
                .addresses
                .iter()
                .copied()
                .filter(|a| usable_address(*a))
                .collect(),
            base_url: c.rec.base_urls.iter().find(|u| usable_url(u)).cloned(),
        })
        .collect();
    Membership {
        members,
        statuses: cands.into_iter().map(|c| c.status).collect(),
        versions,
        fail_static,
        txt_serial,
        release_known: inputs.manifests.values().any(|m| !m.databases.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdb_proto::{MaintenanceWindow, MirrorVerdict};

    fn rec(name: &str) -> MirrorRecord {
        let mut r = MirrorRecord::new(name, format!("http://{name}.example"));
        r.addresses = vec!["192.0.2.1".parse().unwrap()];
        r
    }

    fn verdict(name: &str, state: MirrorState, daily: u32, lag: i64) -> MirrorVerdict {
        MirrorVerdict {
            name: name.into(),
            state,
            serving: [("daily".to_owned(), daily), ("main".to_owned(), 62)].into(),
            serial: None,
            lag_secs: lag,
            last_good: None,
            reason: String::new(),
        }
    }

    fn report(mirrors: Vec<MirrorVerdict>) -> Option<VerdictReport> {
        Some(VerdictReport {
            monitor: "m".into(),
            generated_at: 0,
            newest: BTreeMap::new(),
            mirrors,
        })
    }

    fn names(m: &Membership) -> Vec<&str> {
        m.members.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn in_service_rules_and_versions() {
        let mut drained = rec("d");
        drained.drained = true;
        let mut maint = rec("w");
        maint.maintenance.push(MaintenanceWindow {
            start: 100,
            end: 200,
            reason: String::new(),
        });
        let inputs = Inputs {
            manifests: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            registry: Some(vec![rec("a"), rec("b"), rec("c"), drained, maint]),
            reports: vec![report(vec![
                verdict("a", MirrorState::InService, 10, 0),
                verdict("b", MirrorState::Lagging, 9, 60),
                verdict("c", MirrorState::Old, 5, 90000),
                verdict("d", MirrorState::InService, 10, 0),
                verdict("w", MirrorState::InService, 10, 0),
            ])],
        };
        let m = compute(&inputs, 1, 1, 150);
        assert_eq!(names(&m), ["a", "b"]);
        assert!(!m.fail_static);
        // Never ahead of a handed-out mirror: b serves daily 9.
        assert_eq!(m.versions["daily"], 9);
        assert_eq!(m.versions["main"], 62);
        // Outside the window, w is back.
        let m = compute(&inputs, 1, 1, 250);
        assert_eq!(names(&m), ["a", "b", "w"]);
    }

    #[test]
    fn quorum_of_monitors() {
        let inputs = Inputs {
            manifests: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            registry: Some(vec![rec("a"), rec("b")]),
            reports: vec![
                report(vec![
                    verdict("a", MirrorState::InService, 10, 0),
                    verdict("b", MirrorState::InService, 10, 0),
                ]),
                report(vec![
                    verdict("a", MirrorState::InService, 10, 0),
                    verdict("b", MirrorState::Out, 10, 0),
                ]),
            ],
        };
        assert_eq!(names(&compute(&inputs, 2, 1, 0)), ["a"]);
        assert_eq!(names(&compute(&inputs, 1, 1, 0)), ["a", "b"]);
        // A quorum above the number of monitors means all of them.
        assert_eq!(names(&compute(&inputs, 5, 1, 0)), ["a"]);
    }

    #[test]
    fn fail_static_keeps_the_freshest() {
        let mut drained = rec("d");
        drained.drained = true;
        let inputs = Inputs {
            manifests: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            registry: Some(vec![rec("stale"), rec("fresher"), rec("gone"), drained]),
            reports: vec![report(vec![
                verdict("stale", MirrorState::Old, 5, 200_000),
                verdict("fresher", MirrorState::Old, 8, 90_000),
                verdict("gone", MirrorState::Out, 9, 10),
                verdict("d", MirrorState::InService, 10, 0),
            ])],
        };
        let m = compute(&inputs, 1, 1, 0);
        assert!(m.fail_static);
        assert_eq!(names(&m), ["fresher"]);
        assert_eq!(m.versions["daily"], 8);
        let m = compute(&inputs, 1, 2, 0);
        assert_eq!(names(&m), ["stale", "fresher"]);
        assert_eq!(m.versions["daily"], 5);
        let m = compute(&inputs, 1, 0, 0);
        assert!(m.members.is_empty());
        assert!(m.versions.is_empty());
    }

    #[test]
    fn unusable_addresses_and_urls_are_dropped() {
        let mut r = rec("a");
        r.addresses = [
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "ff02::1",
            "192.0.2.9",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        r.base_urls = vec![
            "javascript:alert(1)".into(),
            "http://x\r\nSet-Cookie: a".into(),
        ];
        let inputs = Inputs {
            manifests: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            registry: Some(vec![r]),
            reports: vec![],
        };
        let m = compute(&inputs, 1, 1, 0);
        assert_eq!(
            m.members[0].addresses,
            ["192.0.2.9".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(m.members[0].base_url, None);
    }

    fn manifest(serial: u64, daily: u32) -> Manifest {
        Manifest {
            network: "n".into(),
            serial,
            master: "a".into(),
            issued_at: 100 + serial as i64,
            expires_at: 1_000_000,
            databases: [(
                "daily".to_owned(),
                vdb_proto::DatabaseState {
                    version: daily,
                    built_at: 1,
                    release: "r".into(),
                },
            )]
            .into(),
            files: Vec::new(),
            version_record: Some(vdb_proto::VersionRecord::default()),
            inline: Default::default(),
        }
    }

    #[test]
    fn txt_follows_what_every_in_service_mirror_serves() {
        let v = |name: &str, state: MirrorState| {
            let mut v = verdict(name, state, 10, 0);
            v.serving.remove("main");
            v.serial = Some(5);
            v
        };
        let mut inputs = Inputs {
            registry: Some(vec![rec("a"), rec("b")]),
            reports: vec![report(vec![
                v("a", MirrorState::InService),
                v("b", MirrorState::InService),
            ])],
            manifests: [(5, manifest(5, 10)), (6, manifest(6, 11))].into(),
            confirmed: [("a".to_owned(), 6)].into(),
        };
        // a serves serial 6 (daily 11), b has not acknowledged it: the TXT stays at 5.
        let m = compute(&inputs, 1, 1, 0);
        assert_eq!((m.txt_serial, m.versions["daily"]), (Some(5), 10));
        assert_eq!(m.statuses[0].serial, Some(6));
        assert_eq!(m.statuses[0].serving["daily"], 11);
        // b serves it too: the TXT moves.
        inputs.confirmed.insert("b".into(), 6);
        let m = compute(&inputs, 1, 1, 0);
        assert_eq!((m.txt_serial, m.versions["daily"]), (Some(6), 11));
        // b stuck at 5 but taken out by the monitor: it no longer holds the TXT back.
        inputs.confirmed.insert("b".into(), 5);
        inputs.reports[0].as_mut().unwrap().mirrors[1].state = MirrorState::Out;
        let m = compute(&inputs, 1, 1, 0);
        assert_eq!(names(&m), ["a"]);
        assert_eq!((m.txt_serial, m.versions["daily"]), (Some(6), 11));
        // A serial the directory has no manifest for: per-database minimums, no exact record.
        inputs.reports[0].as_mut().unwrap().mirrors[1].state = MirrorState::InService;
        inputs.confirmed.insert("b".into(), 4);
        inputs.reports[0].as_mut().unwrap().mirrors[1].serial = Some(4);
        let m = compute(&inputs, 1, 1, 0);
        assert_eq!((m.txt_serial, m.versions["daily"]), (None, 10));
    }

    #[test]
    fn no_verdict_no_txt_versions() {
        let inputs = Inputs {
            manifests: BTreeMap::new(),
            confirmed: BTreeMap::new(),
            registry: Some(vec![rec("a")]),
            reports: vec![],
        };
        let m = compute(&inputs, 1, 1, 0);
        assert_eq!(names(&m), ["a"]);
        assert!(m.versions.is_empty());
        assert!(compute(&Inputs::default(), 1, 1, 0).members.is_empty());
    }
}
