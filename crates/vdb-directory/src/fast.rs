//! The DNS fast path: every answer of the zone prepared in wire format when the snapshot
//! changes, so that a query costs a parse, a table look-up and a copy.
//!
//! An answer depends only on the question, the client's region and the snapshot. For each
//! name of the zone and each common type the table holds the reply made for the lowercase
//! question (ID 0, RD = CD = 0); [`wire::finish`] patches ID and flags in, copies the question
//! as asked and adds the OPT record. The address sets of `database.<zone>` and
//! `db.<region>.<zone>` are drawn per query as [`Snapshot::lookup`] does: at most
//! `max_records` mirrors, each next one picked with a probability proportional to its weight
//! among those left (the same distribution as the general path's weighted shuffle), from
//! records prepared per mirror. Anything else (other names and types, ANY, zone transfers,
//! NOTIFY, Client Subnet, odd flags, replies too long for UDP) takes the general path.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use prometheus_client::metrics::counter::Counter;

use crate::metrics::{Metrics, QueryLabels};
use crate::wire;
use crate::zone::{Part, Plan, Rng, Snapshot};

/// The types prepared for every name (answers or NODATA); the rest take the general path.
const TYPES: [RecordType; 14] = [
    RecordType::A,
    RecordType::NS,
    RecordType::CNAME,
    RecordType::SOA,
    RecordType::PTR,
    RecordType::MX,
    RecordType::TXT,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::DS,
    RecordType::DNSKEY,
    RecordType::HTTPS,
    RecordType::SVCB,
    RecordType::CAA,
];

/// How the reply is made.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// The whole reply as it is.
    Fixed(Box<[u8]>),
    /// `prefix` (header, question, fixed answers) and then the address records of at most
    /// `max` of `members`, drawn by weight.
    Addresses {
        prefix: Box<[u8]>,
        /// The owner's name in wire format, or `None`: the question's.
        owner: Option<Box<[u8]>>,
        rtype: u16,
        ttl: u32,
        max: usize,
        /// Weight and the RDATA of each address of one mirror.
        members: Vec<(u64, Vec<Box<[u8]>>)>,
    },
}

/// One prepared answer.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    body: Body,
    udp: Counter,
    tcp: Counter,
}

impl PartialEq for Prepared {
    fn eq(&self, other: &Self) -> bool {
        self.body == other.body
    }
}

/// Per-thread scratch space of the address draw.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    left: Vec<(u64, usize)>,
}

impl Prepared {
    /// Counts one answer sent over UDP (`udp`) or TCP.
    pub(crate) fn count(&self, udp: bool) {
        if udp { &self.udp } else { &self.tcp }.inc();
    }

    /// Writes the answer for the lowercase question into `out` (ID 0, RD = CD = 0; see
    /// [`wire::finish`]), drawing the address records from `rng`.
    pub(crate) fn write(&self, rng: &mut Rng, scratch: &mut Scratch, out: &mut Vec<u8>) {
        out.clear();
        match &self.body {
            Body::Fixed(bytes) => out.extend_from_slice(bytes),
            Body::Addresses {
                prefix,
                owner,
                rtype,
                ttl,
                max,
                members,
            } => {
                out.extend_from_slice(prefix);
                let question = wire::pointer(wire::HEADER).unwrap_or_default();
                let first_at = wire::pointer(prefix.len());
                let mut written = 0u16;
                let left = &mut scratch.left;
                left.clear();
                left.extend(members.iter().enumerate().map(|(i, m)| (m.0, i)));
                let mut total: u64 = left.iter().map(|l| l.0).sum();
                for _ in 0..(*max).min(members.len()) {
                    // The next mirror, with a probability proportional to its weight.
                    let r = ((u128::from(rng.next()) * u128::from(total)) >> 64) as u64;
                    let mut acc = 0u64;
                    let mut pick = left.len() - 1;
                    for (j, (w, _)) in left.iter().enumerate() {
                        acc += w;
                        if r < acc {
                            pick = j;
                            break;
                        }
                    }
                    let (w, i) = left.swap_remove(pick);
                    total -= w;
                    for rdata in &members[i].1 {
                        let own: &[u8] = match (owner, written, first_at.as_ref()) {
                            (None, _, _) => &question,
                            (Some(name), 0, _) | (Some(name), _, None) => name,
                            (Some(_), _, Some(p)) => p,
                        };
                        wire::push_record(out, own, *rtype, *ttl, rdata);
                        written += 1;
                    }
                }
                wire::add_count(out, 1, written);
            }
        }
    }
}

/// The answers prepared for one name: per type, one for every client or one per region.
type Types = Vec<(u16, Vec<Prepared>)>;

/// Every prepared answer of one snapshot.
#[derive(Debug, Default)]
pub(crate) struct Table {
    /// Lowercase name (wire format) → type → answers: one for every client, or one per
    /// region index (see [`Table::region_index`]).
    names: HashMap<Box<[u8]>, Types>,
    /// The snapshot's regions, sorted.
    regions: Vec<String>,
}

impl Table {
    /// The answers prepared for `name` (lowercase wire format) and `qtype`.
    pub(crate) fn get(&self, name: &[u8], qtype: u16) -> Option<&[Prepared]> {
        let types = self.names.get(name)?;
        types
            .iter()
            .find(|(t, _)| *t == qtype)
            .map(|(_, p)| p.as_slice())
    }

    /// The index of a client's region in a per-region list of answers: 0 for none, `None` for
    /// a region the snapshot does not know (the general path answers then).
    pub(crate) fn region_index(&self, region: Option<&str>) -> Option<usize> {
        match region {
            None => Some(0),
            Some(r) => self
                .regions
                .binary_search_by(|x| x.as_str().cmp(r))
                .ok()
                .map(|i| i + 1),
        }
    }

    /// How many name/type pairs are prepared.
    pub(crate) fn len(&self) -> usize {
        self.names.values().map(Vec::len).sum()
    }

    /// Prepares every answer of `snap`; counters from `metrics`.
    pub(crate) fn build(snap: &Snapshot, metrics: &Metrics) -> Self {
        let regions: Vec<String> = snap.regions.iter().cloned().collect();
        let mut names = HashMap::new();
        for name in snap.names() {
            let Ok(key) = name_bytes(&name) else {
                continue;
            };
            let mut types = Vec::new();
            for qtype in TYPES {
                let mut per_region = Vec::new();
                for region in std::iter::once(None).chain(regions.iter().map(|r| Some(r.as_str())))
                {
                    match prepare(snap, &name, qtype, region, metrics) {
                        Some(p) => per_region.push(p),
                        None => break,
                    }
                }
                if per_region.len() != regions.len() + 1 {
                    continue;
                }
                if per_region.iter().all(|p| *p == per_region[0]) {
                    per_region.truncate(1);
                }
                types.push((u16::from(qtype), per_region));
            }
            names.insert(key.into_boxed_slice(), types);
        }
        Self { names, regions }
    }
}

/// `name` in lowercase wire format, uncompressed.
fn name_bytes(name: &Name) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    use hickory_proto::serialize::binary::BinEncodable as _;
    name.to_lowercase().to_bytes()
}

/// The reply header and question for `name`/`qtype`, with `answers`, `authorities` and
/// `additionals`.
fn message(
    name: &Name,
    qtype: RecordType,
    rcode: ResponseCode,
    [answers, authorities, additionals]: [Vec<Record>; 3],
) -> Option<Vec<u8>> {
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.metadata.response_code = rcode;
    m.add_query(Query::query(name.clone(), qtype));
    m.add_answers(answers);
    m.add_authorities(authorities);
    m.add_additionals(additionals);
    m.to_vec().ok()
}

fn counters(metrics: &Metrics, qtype: RecordType, rcode: ResponseCode) -> (Counter, Counter) {
    let get = |proto: &str| {
        metrics
            .queries
            .get_or_create(&QueryLabels {
                qtype: crate::dns::qtype_label(qtype),
                rcode: rcode.to_string(),
                proto: proto.to_owned(),
            })
            .clone()
    };
    (get("udp"), get("tcp"))
}

/// The prepared answer to `name`/`qtype` from `region`, if the fast path gives it.
fn prepare(
    snap: &Snapshot,
    name: &Name,
    qtype: RecordType,
    region: Option<&str>,
    metrics: &Metrics,
) -> Option<Prepared> {
    let (rcode, body) = match snap.plan(name, qtype, region) {
        Plan::Refused => return None,
        Plan::NoData => (
            ResponseCode::NoError,
            Body::Fixed(
                message(
                    name,
                    qtype,
                    ResponseCode::NoError,
                    [vec![], vec![snap.negative_soa()], vec![]],
                )?
                .into(),
            ),
        ),
        Plan::NxDomain => (
            ResponseCode::NXDomain,
            Body::Fixed(
                message(
                    name,
                    qtype,
                    ResponseCode::NXDomain,
                    [vec![], vec![snap.negative_soa()], vec![]],
                )?
                .into(),
            ),
        ),
        Plan::Answer {
            answers,
            additionals,
        } => {
            let mut fixed = Vec::new();
            let mut dynamic = None;
            for part in answers {
                match part {
                    // Records after an address set, or two sets (ANY): general path.
                    _ if dynamic.is_some() => return None,
                    Part::Record(r) => fixed.push(r),
                    Part::Addresses {
                        owner,
                        rtype,
                        members,
                    } => dynamic = Some((owner, rtype, members)),
                }
            }
            let body = match dynamic {
                None => Body::Fixed(
                    message(
                        name,
                        qtype,
                        ResponseCode::NoError,
                        [fixed, vec![], additionals],
                    )?
                    .into(),
                ),
                Some(_) if !additionals.is_empty() => return None,
                Some((owner, rtype, members)) => {
                    let prefix =
                        message(name, qtype, ResponseCode::NoError, [fixed, vec![], vec![]])?;
                    let owner = if owner == *name {
                        None
                    } else {
                        Some(name_bytes(&owner).ok()?.into_boxed_slice())
                    };
                    let want_v4 = rtype == RecordType::A;
                    let members = members
                        .iter()
                        .map(|m| {
                            let rdata = m
                                .addresses
                                .iter()
                                .filter(|a| a.is_ipv4() == want_v4)
                                .map(|a| match a {
                                    IpAddr::V4(v4) => Box::from(v4.octets().as_slice()),
                                    IpAddr::V6(v6) => Box::from(v6.octets().as_slice()),
                                })
                                .collect();
                            (u64::from(m.weight.max(1)), rdata)
                        })
                        .collect();
                    Body::Addresses {
                        prefix: prefix.into(),
                        owner,
                        rtype: u16::from(rtype),
                        ttl: snap.params.dynamic_ttl,
                        max: snap.params.max_records,
                        members,
                    }
                }
            };
            (ResponseCode::NoError, body)
        }
    };
    let (udp, tcp) = counters(metrics, qtype, rcode);
    Some(Prepared { body, udp, tcp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_draw_follows_the_weights() {
        let members = vec![
            (900, vec![Box::from(&[192u8, 0, 2, 1][..])]),
            (100, vec![Box::from(&[192u8, 0, 2, 2][..])]),
            (100, vec![Box::from(&[192u8, 0, 2, 3][..])]),
        ];
        let mut prefix = vec![0u8; wire::HEADER];
        prefix.extend_from_slice(b"\x08database\x03vdb\x04test\x00\x00\x01\x00\x01");
        let p = Prepared {
            body: Body::Addresses {
                prefix: prefix.clone().into(),
                owner: None,
                rtype: 1,
                ttl: 60,
                max: 2,
                members,
            },
            udp: Counter::default(),
            tcp: Counter::default(),
        };
        let (mut rng, mut scratch, mut out) = (Rng::new(), Scratch::default(), Vec::new());
        let n = 5000;
        let mut first = [0usize; 3];
        for _ in 0..n {
            p.write(&mut rng, &mut scratch, &mut out);
            assert_eq!(wire::count(&out, 1), 2);
            assert_eq!(out.len(), prefix.len() + 2 * 16);
            let a = out[prefix.len() + 15];
            let b = out[prefix.len() + 31];
            assert_ne!(a, b, "a mirror twice");
            first[usize::from(a - 1)] += 1;
        }
        // First pick: 900/1100 = 0.818 for the heavy one (the general path's shuffle gives
        // the same), the others about 0.09 each.
        assert!((3900..4300).contains(&first[0]), "{first:?}");
        assert!((300..620).contains(&first[1]), "{first:?}");
        // Every record points at the question's name.
        assert_eq!(&out[prefix.len()..prefix.len() + 2], &[0xC0, 12]);
    }
}
