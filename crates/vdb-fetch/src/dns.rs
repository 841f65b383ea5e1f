//! TXT lookups for ClamAV's version records (spec §4.2), through the system resolver or a
//! configured server: the one TXT reader of `vdb-update` and of the master's upstream follower.

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
}
