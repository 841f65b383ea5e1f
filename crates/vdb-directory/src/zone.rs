//! The zone's contents at one moment, and how a query is answered from them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use vdb_format::dnstxt::{CurrentRecord, DbRecord};
use vdb_proto::VersionRecord;

use crate::config::{Config, GeoMode};
use crate::membership::{Member, Membership};

/// Static parameters of the zone, from the config.
#[derive(Debug, Clone)]
pub(crate) struct ZoneParams {
    pub(crate) origin: Name,
    pub(crate) hostmaster: Name,
    pub(crate) nameservers: Vec<(Name, Vec<IpAddr>)>,
    pub(crate) regions: BTreeSet<String>,
    pub(crate) dynamic_ttl: u32,
    pub(crate) static_ttl: u32,
    pub(crate) refresh: i32,
    pub(crate) retry: i32,
    pub(crate) expire: i32,
    pub(crate) max_records: usize,
    pub(crate) geo_mode: GeoMode,
}

fn absolute(name: &str) -> anyhow::Result<Name> {
    let mut n = Name::from_ascii(name)
        .map_err(|e| anyhow::anyhow!("{name:?} is not a DNS name: {e}"))?
        .to_lowercase();
    n.set_fqdn(true);
    Ok(n)
}

impl ZoneParams {
    /// Reads the zone's parameters from a checked config.
    pub(crate) fn from_config(c: &Config) -> anyhow::Result<Self> {
        let origin = absolute(&c.zone)?;
        let hostmaster = match &c.hostmaster {
            Some(h) => absolute(h)?,
            None => Name::from_ascii("hostmaster")?.append_domain(&origin)?,
        };
        let mut nameservers = Vec::new();
        for ns in &c.nameservers {
            nameservers.push((absolute(&ns.name)?, ns.addresses.clone()));
        }
        if nameservers.is_empty() {
            nameservers.push((Name::from_ascii("ns")?.append_domain(&origin)?, Vec::new()));
        }
        let mut regions: BTreeSet<String> = c.regions.iter().cloned().collect();
        regions.extend(c.country_regions.values().cloned());
        regions.extend(c.default_region.iter().cloned());
        Ok(Self {
            origin,
            hostmaster,
            nameservers,
            regions,
            dynamic_ttl: c.dynamic_ttl,
            static_ttl: c.static_ttl,
            refresh: c.soa_refresh,
            retry: c.soa_retry,
            expire: c.soa_expire,
            max_records: c.max_records,
            geo_mode: c.geo_mode,
        })
    }
}

/// The TXT version records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Txt {
    pub(crate) current: CurrentRecord,
    pub(crate) dbs: BTreeMap<String, DbRecord>,
}

/// Everything the DNS and HTTP servers answer from; replaced as a whole on every change.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) params: ZoneParams,
    pub(crate) serial: u32,
    pub(crate) membership: Membership,
    pub(crate) regions: BTreeSet<String>,
    pub(crate) txt: Option<Txt>,
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lookup {
    /// Records for the answer section (and glue for the additional section).
    Answer {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists but has no records of this type.
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
    /// Not our zone.
    Refused,
}

/// One part of an answer section.
#[derive(Debug, Clone)]
pub(crate) enum Part<'a> {
    /// A record as it is.
    Record(Record),
    /// The `rtype` (A or AAAA) records of handed-out mirrors for `owner`: at most
    /// `max_records` of `members` (never empty), in a weighted random order drawn per query.
    Addresses {
        owner: Name,
        rtype: RecordType,
        members: Vec<&'a Member>,
    },
}

/// How a question is answered, before the address sets are shuffled.
#[derive(Debug, Clone)]
pub(crate) enum Plan<'a> {
    /// Parts of the answer section (and glue for the additional section).
    Answer {
        answers: Vec<Part<'a>>,
        additionals: Vec<Record>,
    },
    /// The name exists but has no records of this type.
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
    /// Not our zone.
    Refused,
}

/// Which dynamic address set a name stands for.
enum Pool<'a> {
    Global,
    Region(&'a str),
}

/// A tiny non-cryptographic generator for shuffles (SplitMix64).
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator seeded from the process's hash randomness and a counter.
    pub(crate) fn new() -> Self {
        use std::hash::{BuildHasher as _, Hasher as _};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        Self(h.finish())
    }

    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A random message id.
    pub(crate) fn id(&mut self) -> u16 {
        (self.next() >> 48) as u16
    }

    /// A float in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// Orders `items` by a weighted random shuffle (each draw proportional to its weight).
pub(crate) fn weighted_shuffle<'a>(items: &[&'a Member], rng: &mut Rng) -> Vec<&'a Member> {
    let mut keyed: Vec<(f64, &Member)> = items
        .iter()
        .map(|m| (rng.unit().powf(1.0 / f64::from(m.weight.max(1))), *m))
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
    keyed.into_iter().map(|(_, m)| m).collect()
}

impl Snapshot {
    /// Builds the zone from a membership computation; the TXT records carry `record`'s fields
    /// and the record time `txt_time`.
    pub(crate) fn new(
        params: ZoneParams,
        membership: Membership,
        serial: u32,
        record: &VersionRecord,
        txt_time: i64,
    ) -> Self {
        let mut regions = params.regions.clone();
        regions.extend(
            membership
                .statuses
                .iter()
                .filter_map(|s| s.region.clone())
                .filter(|r| crate::config::is_label(r)),
        );
        let txt = (!membership.versions.is_empty()).then(|| Txt {
            current: record.current(&membership.versions, txt_time),
            dbs: membership
                .versions
                .iter()
                // `current.cvd` is the combined record; a database of that name cannot
                // have its own.
                .filter(|(db, _)| vdb_proto::is_safe_db_name(db) && *db != "current")
                .map(|(db, &version)| {
                    (
                        db.clone(),
                        DbRecord {
                            version,
                            time: txt_time,
                        },
                    )
                })
                .collect(),
        });
        Self {
            params,
            serial,
            membership,
            regions,
            txt,
        }
    }

    /// The zone's SOA record.
    pub(crate) fn soa(&self) -> Record {
        let p = &self.params;
        Record::from_rdata(
            p.origin.clone(),
            p.static_ttl,
            RData::SOA(SOA::new(
                p.nameservers[0].0.clone(),
                p.hostmaster.clone(),
                self.serial,
                p.refresh,
                p.retry,
                p.expire,
                p.dynamic_ttl,
            )),
        )
    }

    /// The SOA record as it goes into the authority section of a negative answer: its TTL is
    /// the negative-caching TTL (RFC 2308).
    pub(crate) fn negative_soa(&self) -> Record {
        let mut soa = self.soa();
        soa.ttl = self.params.dynamic_ttl.min(self.params.static_ttl);
        soa
    }

    fn name(&self, rel: &str) -> Name {
        Name::from_ascii(rel)
            .and_then(|n| n.append_domain(&self.params.origin))
            .unwrap_or_else(|_| self.params.origin.clone())
    }

    fn ns_records(&self) -> Vec<Record> {
        self.params
            .nameservers
            .iter()
            .map(|(n, _)| {
                Record::from_rdata(
                    self.params.origin.clone(),
                    self.params.static_ttl,
                    RData::NS(NS(n.clone())),
                )
            })
            .collect()
    }

    fn glue(&self, name: Option<&Name>) -> Vec<Record> {
        let mut out = Vec::new();
        for (n, addrs) in &self.params.nameservers {
            if !self.params.origin.zone_of(n) || name.is_some_and(|q| q != n) {
                continue;
            }
            for a in addrs {
                out.push(addr_record(n.clone(), self.params.static_ttl, *a));
            }
        }
        out
    }

    /// The handed-out mirrors of a pool (a region falls back to all when it has none).
    fn pool(&self, pool: &Pool<'_>) -> Vec<&Member> {
        let all: Vec<&Member> = self.membership.members.iter().collect();
        match pool {
            Pool::Global => all,
            Pool::Region(r) => {
                let in_region: Vec<&Member> = all
                    .iter()
                    .copied()
                    .filter(|m| m.region.as_deref() == Some(*r))
                    .collect();
                if in_region.is_empty() { all } else { in_region }
            }
        }
    }

    /// Whether `region` has handed-out mirrors of its own.
    pub(crate) fn region_has_members(&self, region: &str) -> bool {
        self.membership
            .members
            .iter()
            .any(|m| m.region.as_deref() == Some(region))
    }

    /// The handed-out mirrors of `pool` that have an address of `rtype`'s family (A: IPv4,
    /// AAAA: IPv6), unshuffled.
    fn family_members(&self, pool: &Pool<'_>, rtype: RecordType) -> Vec<&Member> {
        let want_v4 = rtype == RecordType::A;
        self.pool(pool)
            .into_iter()
            .filter(|m| m.addresses.iter().any(|a| a.is_ipv4() == want_v4))
            .collect()
    }

    /// The address records of `members` (in their order) for `owner`.
    pub(crate) fn member_records(
        &self,
        owner: &Name,
        rtype: RecordType,
        members: &[&Member],
    ) -> Vec<Record> {
        let want_v4 = rtype == RecordType::A;
        members
            .iter()
            .flat_map(|m| m.addresses.iter().filter(|a| a.is_ipv4() == want_v4))
            .map(|a| addr_record(owner.clone(), self.params.dynamic_ttl, *a))
            .collect()
    }

    fn txt_record(&self, owner: Name, text: String) -> Record {
        Record::from_rdata(
            owner,
            self.params.dynamic_ttl,
            RData::TXT(TXT::new(vec![text])),
        )
    }

    /// Answers `qname`/`qtype` for a client in `region` (None: unknown region), the address
    /// records in a weighted random order drawn from `rng`.
    pub(crate) fn lookup(
        &self,
        qname: &Name,
        qtype: RecordType,
        region: Option<&str>,
        rng: &mut Rng,
    ) -> Lookup {
        match self.plan(qname, qtype, region) {
            Plan::Answer {
                answers,
                additionals,
            } => {
                let mut records = Vec::new();
                for part in answers {
                    match part {
                        Part::Record(r) => records.push(r),
                        Part::Addresses {
                            owner,
                            rtype,
                            members,
                        } => {
                            let mut m = weighted_shuffle(&members, rng);
                            m.truncate(self.params.max_records);
                            records.extend(self.member_records(&owner, rtype, &m));
                        }
                    }
                }
                Lookup::Answer {
                    answers: records,
                    additionals,
                }
            }
            Plan::NoData => Lookup::NoData,
            Plan::NxDomain => Lookup::NxDomain,
            Plan::Refused => Lookup::Refused,
        }
    }

    /// How `qname`/`qtype` is answered for a client in `region` (None: unknown region): the
    /// records, with the dynamic address sets still unshuffled. [`Snapshot::lookup`] draws
    /// their order per query; the DNS fast path prepares everything else in wire format.
    pub(crate) fn plan<'a>(
        &'a self,
        qname: &Name,
        qtype: RecordType,
        region: Option<&str>,
    ) -> Plan<'a> {
        let origin = &self.params.origin;
        let qname = qname.to_lowercase();
        if !origin.zone_of(&qname) {
            return Plan::Refused;
        }
        let depth = usize::from(qname.num_labels() - origin.num_labels());
        let labels: Vec<String> = qname
            .iter()
            .take(depth)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        let rel: Vec<&str> = labels.iter().map(String::as_str).collect();
        let any = qtype == RecordType::ANY;
        let answer = |answers: Vec<Part<'a>>, additionals: Vec<Record>| -> Plan<'a> {
            if answers.is_empty() {
                Plan::NoData
            } else {
                Plan::Answer {
                    answers,
                    additionals,
                }
            }
        };
        let records = |v: Vec<Record>| v.into_iter().map(Part::Record).collect::<Vec<_>>();
        let addresses = |owner: &Name, pool: Pool<'_>| {
            let mut v = Vec::new();
            for rtype in [RecordType::A, RecordType::AAAA] {
                if any || qtype == rtype {
                    let members = self.family_members(&pool, rtype);
                    if !members.is_empty() {
                        v.push(Part::Addresses {
                            owner: owner.clone(),
                            rtype,
                            members,
                        });
                    }
                }
            }
            v
        };
        match rel.as_slice() {
            [] => {
                let mut v = Vec::new();
                if any || qtype == RecordType::SOA {
                    v.push(self.soa());
                }
                let mut glue = Vec::new();
                if any || qtype == RecordType::NS {
                    v.extend(self.ns_records());
                    glue = self.glue(None);
                }
                answer(records(v), glue)
            }
            ["database"] => {
                let steer = region.filter(|r| self.region_has_members(r));
                match (steer, self.params.geo_mode) {
                    (Some(r), GeoMode::Cname) => {
                        let target = self.name(&format!("db.{r}"));
                        let mut v = vec![Part::Record(Record::from_rdata(
                            qname.clone(),
                            self.params.dynamic_ttl,
                            RData::CNAME(CNAME(target.clone())),
                        ))];
                        if matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::ANY) {
                            v.extend(addresses(&target, Pool::Region(r)));
                        }
                        answer(v, Vec::new())
                    }
                    (Some(r), GeoMode::Direct) => {
                        answer(addresses(&qname, Pool::Region(r)), Vec::new())
                    }
                    (None, _) => answer(addresses(&qname, Pool::Global), Vec::new()),
                }
            }
            ["db"] if !self.regions.is_empty() => Plan::NoData,
            ["db", r] if self.regions.contains(*r) => {
                answer(addresses(&qname, Pool::Region(r)), Vec::new())
            }
            ["cvd"] if self.txt.is_some() => Plan::NoData,
            ["current", "cvd"] => match &self.txt {
                Some(t) if any || qtype == RecordType::TXT => answer(
                    records(vec![self.txt_record(qname.clone(), t.current.to_string())]),
                    Vec::new(),
                ),
                Some(_) => Plan::NoData,
                // Once a release exists the name exists, even before the release reaches
                // every handed-out mirror (never NXDOMAIN, which resolvers would cache as
                // "no such name" and clients log as a broken record).
                None if self.membership.release_known => Plan::NoData,
                None => Plan::NxDomain,
            },
            [db, "cvd"] => match self.txt.as_ref().and_then(|t| t.dbs.get(*db)) {
                Some(rec) if any || qtype == RecordType::TXT => answer(
                    records(vec![self.txt_record(qname.clone(), rec.to_string())]),
                    Vec::new(),
                ),
                Some(_) => Plan::NoData,
                None => Plan::NxDomain,
            },
            _ => {
                let glue: Vec<Record> = self
                    .glue(Some(&qname))
                    .into_iter()
                    .filter(|r| any || r.record_type() == qtype)
                    .collect();
                let is_ns = self.params.nameservers.iter().any(|(n, _)| *n == qname);
                if is_ns {
                    answer(records(glue), Vec::new())
                } else {
                    Plan::NxDomain
                }
            }
        }
    }

    /// Every name of the zone (lowercase, absolute): the names the DNS fast path prepares.
    pub(crate) fn names(&self) -> Vec<Name> {
        let mut v = vec![self.params.origin.clone(), self.name("database")];
        if !self.regions.is_empty() {
            v.push(self.name("db"));
        }
        v.extend(self.regions.iter().map(|r| self.name(&format!("db.{r}"))));
        if let Some(t) = &self.txt {
            v.push(self.name("cvd"));
            v.extend(t.dbs.keys().map(|db| self.name(&format!("{db}.cvd"))));
        }
        v.push(self.name("current.cvd"));
        for (n, _) in &self.params.nameservers {
            if self.params.origin.zone_of(n) {
                v.push(n.clone());
            }
        }
        v.sort();
        v.dedup();
        v
    }

    /// Every record of the zone in transfer order (SOA first; the caller appends the final SOA).
    /// Dynamic names carry every handed-out mirror, unshuffled.
    pub(crate) fn records(&self) -> Vec<Record> {
        let mut v = vec![self.soa()];
        v.extend(self.ns_records());
        v.extend(self.glue(None));
        let db = self.name("database");
        for t in [RecordType::A, RecordType::AAAA] {
            v.extend(self.member_records(&db, t, &self.family_members(&Pool::Global, t)));
        }
        for r in &self.regions {
            let owner = self.name(&format!("db.{r}"));
            for t in [RecordType::A, RecordType::AAAA] {
                let members = self.family_members(&Pool::Region(r), t);
                v.extend(self.member_records(&owner, t, &members));
            }
        }
        if let Some(t) = &self.txt {
            v.push(self.txt_record(self.name("current.cvd"), t.current.to_string()));
            for (db, rec) in &t.dbs {
                v.push(self.txt_record(self.name(&format!("{db}.cvd")), rec.to_string()));
            }
        }
        v
    }

    /// A text form of every record but the SOA: equal fingerprints, equal answers.
    pub(crate) fn fingerprint(&self) -> String {
        let mut lines: Vec<String> = self
            .records()
            .iter()
            .skip(1)
            .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
            .collect();
        lines.sort();
        let members: Vec<String> = self
            .membership
            .members
            .iter()
            .map(|m| format!("{} {:?} {} {:?}", m.name, m.region, m.weight, m.base_url))
            .collect();
        lines.extend(members);
        lines.join("\n")
    }
}

fn addr_record(owner: Name, ttl: u32, a: IpAddr) -> Record {
    match a {
        IpAddr::V4(v4) => Record::from_rdata(owner, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(owner, ttl, RData::AAAA(AAAA(v6))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, weight: u32) -> Member {
        Member {
            name: name.into(),
            region: None,
            weight,
            addresses: vec![],
            base_url: None,
        }
    }

    #[test]
    fn weighted_shuffle_follows_bandwidth() {
        let heavy = member("heavy", 900);
        let light = member("light", 100);
        let items = [&heavy, &light];
        let mut rng = Rng::new();
        let n = 4000;
        let first = (0..n)
            .filter(|_| weighted_shuffle(&items, &mut rng)[0].name == "heavy")
            .count();
        // Expected share 0.9; allow generous noise.
        assert!((3400..3800).contains(&first), "heavy first {first} of {n}");
        // Equal weights: about half each.
        let a = member("a", 100);
        let b = member("b", 100);
        let first_a = (0..n)
            .filter(|_| weighted_shuffle(&[&a, &b], &mut rng)[0].name == "a")
            .count();
        assert!((1700..2300).contains(&first_a), "a first {first_a} of {n}");
        // Everyone stays in the list.
        assert_eq!(weighted_shuffle(&items, &mut rng).len(), 2);
    }
}
