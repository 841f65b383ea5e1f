//! Short forms of the test kit's registry double and `dig` for this suite, and a GeoIP file
//! writer.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod mmdb;

use std::net::SocketAddr;

use vdb_proto::{MirrorRecord, MirrorState, MirrorVerdict};
pub use vdb_testkit::dig::Dig;
pub use vdb_testkit::{RegistryDouble as Doubles, Served as Network};

/// A mirror record with one address and a region.
pub fn mirror(name: &str, ip: &str, region: Option<&str>, bw: u32) -> MirrorRecord {
    let mut r = vdb_testkit::mirror_record(name, ip, &format!("http://{ip}:8080"));
    r.region = region.map(str::to_owned);
    r.bandwidth_mbps = bw;
    r
}

/// A verdict with the given daily/main versions.
pub fn verdict(name: &str, state: MirrorState, daily: u32, main: u32) -> MirrorVerdict {
    vdb_testkit::verdict(
        name,
        state,
        &[("daily", daily), ("main", main), ("bytecode", 339)],
    )
}

/// Runs `dig @server -p port [-b src] name type args…` and parses it.
pub async fn dig(
    server: SocketAddr,
    src: Option<&str>,
    name: &str,
    qtype: &str,
    args: &[&str],
) -> Dig {
    let q = vdb_testkit::dig::query(server, name, qtype)
        .from(src)
        .args(args);
    q.run_async().await
}

/// Asks dig again until `ok` holds for the answer, for at most `secs` seconds.
pub async fn dig_until(
    server: SocketAddr,
    src: Option<&str>,
    name: &str,
    qtype: &str,
    secs: u64,
    ok: impl Fn(&Dig) -> bool,
) -> Dig {
    let q = vdb_testkit::dig::query(server, name, qtype).from(src);
    q.until_async(secs, ok).await
}

/// eu1 and eu2 (IPv4 and IPv6) in Europe, us1 in America; eu1 in service with the newest
/// daily, eu2 in service one behind, us1 lagging.
pub fn three_mirrors() -> Network {
    let mut eu2 = mirror("eu2", "192.0.2.2", Some("europe"), 100);
    eu2.addresses.push("2001:db8::2".parse().unwrap());
    Network {
        registry: vec![
            mirror("eu1", "192.0.2.1", Some("europe"), 100),
            eu2,
            mirror("us1", "198.51.100.1", Some("america"), 100),
        ],
        verdicts: vec![
            verdict("eu1", MirrorState::InService, 27001, 62),
            verdict("eu2", MirrorState::InService, 27000, 62),
            verdict("us1", MirrorState::Lagging, 27001, 62),
        ],
        ..Default::default()
    }
}

/// A directory for zone `vdb.test` on loopback (port 0 for DNS and HTTP) that reads `doubles`
/// as its master and its monitor every second.
pub fn loopback_config(doubles: &Doubles) -> vdb_directory::Config {
    let mut c = vdb_directory::Config::new("vdb.test");
    c.dns_listen = "127.0.0.1:0".parse().unwrap();
    c.http_listen = "127.0.0.1:0".parse().unwrap();
    c.masters = vec![doubles.url.clone()];
    c.monitors = vec![doubles.url.clone()];
    c.poll_secs = 1;
    c.http_timeout_secs = 2;
    c
}
