//! vdbnet's service layer: what every role's server side shares.
//!
//! - [`Limits`]: the `[limits]` section of every role's configuration (timeouts, connection
//!   caps, minimum transfer rate), with safe defaults;
//! - [`listener`]: the accept loop with those limits (a refusal past the connection caps, header
//!   and body read timeouts, keep-alive idle timeout, slow readers dropped, bounded buffers per
//!   connection), plain or TLS, with graceful drain;
//! - [`tls`]: loading a PEM certificate and key, reloaded when the files change or on SIGHUP;
//! - [`lifecycle`]: SIGINT/SIGTERM and the [`vdb_proto::Ready`] line;
//! - [`ApiError`]: the API's error answers, with [`vdb_proto::ApiError`] JSON bodies;
//! - [`smtp`]: e-mail through an SMTP relay (STARTTLS, AUTH, strict addresses);
//! - [`metrics`]: every role's Prometheus registry and its text exposition;
//! - [`ct_eq`]: constant-time comparison of secrets.

mod error;
pub mod lifecycle;
mod limits;
pub mod listener;
pub mod metrics;
pub mod smtp;
pub mod tls;

pub use error::{ApiError, ErrorKind};
pub use limits::{Limits, LimitsError};
pub use listener::{Admission, Permit, serve};
pub use tls::{Tls, TlsError};

/// The client's address: the peer's, or when the peer is one of the `trusted` proxies, the
/// last (rightmost, the one that proxy saw) `X-Forwarded-For` entry. IPv4-mapped IPv6
/// addresses are read as IPv4, so one client has one address whatever the socket's family.
pub fn client_ip(
    peer: std::net::SocketAddr,
    headers: &http::HeaderMap,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    let peer_ip = canonical_ip(peer.ip());
    if !trusted.contains(&peer_ip) {
        return peer_ip;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|a| a.trim().parse().ok())
        .map_or(peer_ip, canonical_ip)
}

/// `ip`, or the IPv4 address an IPv4-mapped IPv6 address stands for.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// Constant-time equality of two secrets (the length is not protected; compare digests when it
/// must be).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_ip() {
        let mut h = http::HeaderMap::new();
        h.append(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().unwrap(),
        );
        let proxy: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: std::net::SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap();
        let other: std::net::SocketAddr = "127.0.0.2:80".parse().unwrap();
        // A trusted proxy (seen through an IPv4-mapped socket): its last entry.
        assert_eq!(
            super::client_ip(mapped, &h, &[proxy]).to_string(),
            "198.51.100.7"
        );
        // Anyone else: the peer, the header ignored.
        assert_eq!(
            super::client_ip(other, &h, &[proxy]).to_string(),
            "127.0.0.2"
        );
        assert_eq!(super::client_ip(mapped, &h, &[]).to_string(), "127.0.0.1");
        // A broken header: the proxy itself.
        let mut bad = http::HeaderMap::new();
        bad.append("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(
            super::client_ip(mapped, &bad, &[proxy]).to_string(),
            "127.0.0.1"
        );
    }

    #[test]
    fn ct_eq() {
        assert!(super::ct_eq(b"abc", b"abc"));
        assert!(!super::ct_eq(b"abc", b"abd"));
        assert!(!super::ct_eq(b"abc", b"ab"));
        assert!(super::ct_eq(b"", b""));
    }
}
