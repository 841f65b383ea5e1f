//! DNS through the system resolver or a configured server: TXT lookups for ClamAV's version
//! records (spec §4.2), the one TXT reader of `vdb-update` and of the master's upstream
//! follower; and, for a configured server, the addresses of the hosts an HTTP client connects to
//! ([`crate::ClientBuilder::dns_server`]), so that a mirror named
//! `database.<zone>` is found through the directory that answers the zone.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

/// A TXT resolver.
#[derive(Clone)]
pub struct Txt {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Txt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Txt")
    }
}

impl Txt {
    /// Uses `server` (UDP, then TCP on truncation) or else the system configuration.
    pub fn new(server: Option<SocketAddr>) -> Result<Self, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    provider,
                )
            }
            None => TokioResolver::builder(provider)
                .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?,
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        opts.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(Self { resolver })
    }

    /// The first character-string of the first TXT record of `name`, as freshclam reads it.
    pub async fn first_string(&self, name: &str) -> Result<String, String> {
        let fqdn = if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.")
        };
        let lookup = self
            .resolver
            .txt_lookup(fqdn.as_str())
            .await
            .map_err(|e| format!("TXT lookup of {name} failed: {e}"))?;
        for record in lookup.answers() {
            if let RData::TXT(txt) = &record.data {
                let first = txt.txt_data.first().ok_or("empty TXT record")?;
                return String::from_utf8(first.to_vec())
                    .map_err(|_| format!("TXT record of {name} is not text"));
            }
        }
        Err(format!("no TXT record for {name}"))
    }

    /// The same server as the address resolver of an HTTP client
    /// ([`crate::ClientBuilder::dns_server`]): A and AAAA lookups of the host names in URLs.
    pub fn addresses(&self) -> Addresses {
        Addresses {
            resolver: self.resolver.clone(),
        }
    }
}

/// Host-name resolution for an HTTP client through a [`Txt`]'s server.
#[derive(Clone)]
pub struct Addresses {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Addresses")
    }
}

impl reqwest::dns::Resolve for Addresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.resolver.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let fqdn = if host.ends_with('.') {
                host.clone()
            } else {
                format!("{host}.")
            };
            let lookup = resolver
                .lookup_ip(fqdn.as_str())
                .await
                .map_err(|e| format!("address lookup of {host} failed: {e}"))?;
            // The port is the URL's: reqwest replaces this 0.
            let addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            if addrs.is_empty() {
                return Err(format!("no address for {host}").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}
