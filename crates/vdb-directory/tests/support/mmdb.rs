//! A tiny MaxMind DB writer for tests: an IPv4 search tree mapping a few networks to a country,
//! in either the GeoIP2-Country layout (`{country: {iso_code}}`) or the flat
//! `{country_code}` layout. Written from the format's public description: a binary search tree
//! of 24-bit record pairs, 16 zero bytes, a data section, then the metadata map after the
//! `\xAB\xCD\xEFMaxMind.com` marker.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::Ipv4Addr;

/// Which record layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `{"country": {"iso_code": "DE"}}`, database type `GeoIP2-Country`.
    GeoIp2Country,
    /// `{"country_code": "DE"}`, database type `geo-whois-asn-country`.
    CountryCode,
}

const EMPTY: u32 = u32::MAX;

fn ctrl(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (lo, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 29 + 256 {
        (29, vec![(size - 29) as u8])
    } else {
        let s = size - 285;
        (30, vec![(s >> 8) as u8, s as u8])
    };
    if kind <= 7 {
        out.push((kind << 5) | lo);
    } else {
        out.push(lo);
        out.push(kind - 7);
    }
    out.extend(extra);
}

fn string(out: &mut Vec<u8>, s: &str) {
    ctrl(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    ctrl(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn map_header(out: &mut Vec<u8>, pairs: usize) {
    ctrl(out, 7, pairs);
}

fn record(out: &mut Vec<u8>, schema: Schema, cc: &str) {
    match schema {
        Schema::GeoIp2Country => {
            map_header(out, 1);
            string(out, "country");
            map_header(out, 1);
            string(out, "iso_code");
            string(out, cc);
        }
        Schema::CountryCode => {
            map_header(out, 1);
            string(out, "country_code");
            string(out, cc);
        }
    }
}

/// Builds an IPv4 database mapping each `(network, prefix, country)` (non-overlapping).
pub fn build(schema: Schema, networks: &[(Ipv4Addr, u8, &str)]) -> Vec<u8> {
    // Tree: nodes of [left, right]; EMPTY or a node index, or data index + (1 << 31).
    let mut nodes: Vec<[u32; 2]> = vec![[EMPTY, EMPTY]];
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for (i, (net, prefix, cc)) in networks.iter().enumerate() {
        offsets.push(data.len());
        record(&mut data, schema, cc);
        let bits = u32::from(*net);
        let mut node = 0usize;
        for depth in 0..*prefix {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == *prefix {
                nodes[node][bit] = (1 << 31) | i as u32;
            } else {
                let next = nodes[node][bit];
                if next == EMPTY {
                    nodes.push([EMPTY, EMPTY]);
                    let idx = (nodes.len() - 1) as u32;
                    nodes[node][bit] = idx;
                    node = idx as usize;
                } else {
                    assert!(next & (1 << 31) == 0, "overlapping networks");
                    node = next as usize;
                }
            }
        }
    }
    let count = nodes.len() as u32;
    let resolve = |v: u32| -> u32 {
        if v == EMPTY {
            count
        } else if v & (1 << 31) != 0 {
            count + 16 + offsets[(v & !(1 << 31)) as usize] as u32
        } else {
            v
        }
    };
    let mut out = Vec::new();
    for n in &nodes {
        for side in n {
            let v = resolve(*side);
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let db_type = match schema {
        Schema::GeoIp2Country => "GeoIP2-Country",
        Schema::CountryCode => "geo-whois-asn-country",
    };
    map_header(&mut out, 9);
    string(&mut out, "binary_format_major_version");
    uint(&mut out, 5, 2);
    string(&mut out, "binary_format_minor_version");
    uint(&mut out, 5, 0);
    string(&mut out, "build_epoch");
    uint(&mut out, 9, 1_700_000_000);
    string(&mut out, "database_type");
    string(&mut out, db_type);
    string(&mut out, "description");
    map_header(&mut out, 1);
    string(&mut out, "en");
    string(&mut out, "vdbnet test database");
    string(&mut out, "ip_version");
    uint(&mut out, 5, 4);
    string(&mut out, "languages");
    ctrl(&mut out, 11, 1);
    string(&mut out, "en");
    string(&mut out, "node_count");
    uint(&mut out, 6, u64::from(count));
    string(&mut out, "record_size");
    uint(&mut out, 5, 24);
    out
}
