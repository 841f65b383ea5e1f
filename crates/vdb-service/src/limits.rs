//! The limits every listener enforces: one `[limits]` section type for every role.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits and timeouts of a role's HTTP listeners (the `[limits]` section of its TOML).
///
/// ```toml
/// [limits]
/// header_read_timeout_secs = 10   # request line and headers within this (idle keep-alive too)
/// body_read_timeout_secs = 30     # a request body gets this long, plus 1 s per min_rate bytes
/// send_timeout_secs = 60          # a client must read min_rate bytes/s over every such window
/// min_rate_bytes_per_sec = 1024   # slowest accepted transfer (bodies in, responses out)
/// max_connections = 4096          # in all (lowered to fit the file-descriptor limit)
/// max_connections_per_ip = 128    # per client address (IPv6: per /64)
/// max_header_bytes = 65536        # request line and headers
/// drain_secs = 5                  # on shutdown, open requests get this long to finish
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// A client must send its request line and headers within this time, counted from the
    /// connection's start or the end of its previous request (so it is also the keep-alive
    /// idle timeout); it bounds a TLS handshake too.
    pub header_read_timeout_secs: u64,
    /// A request body may take this long, plus one second per `min_rate_bytes_per_sec` bytes
    /// received (so large uploads at a decent rate pass, a trickle does not).
    pub body_read_timeout_secs: u64,
    /// Slow readers: over every window of this many seconds that the server spends waiting for
    /// a client to take response bytes, the client must take `min_rate_bytes_per_sec` bytes
    /// per second of it (a client that stops reading is dropped after this time).
    pub send_timeout_secs: u64,
    /// The slowest transfer accepted, in bytes per second, for request bodies and responses.
    pub min_rate_bytes_per_sec: u64,
    /// Open connections in all; past it a connection is answered `503` with `Retry-After`
    /// (plain HTTP) or closed (TLS) at once. Lowered at start to fit the process's file
    /// descriptor limit.
    pub max_connections: usize,
    /// Open connections per client address (IPv6: per /64); past it the same refusal.
    pub max_connections_per_ip: usize,
    /// Largest request line plus headers, in bytes (the connection's read buffer).
    pub max_header_bytes: usize,
    /// On shutdown, requests in flight get this long to finish.
    pub drain_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            send_timeout_secs: 60,
            min_rate_bytes_per_sec: 1024,
            max_connections: 4096,
            max_connections_per_ip: 128,
            max_header_bytes: 64 * 1024,
            drain_secs: 5,
        }
    }
}

/// A `[limits]` value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `limits.{field}`: {rule}")]
pub struct LimitsError {
    /// The field.
    pub field: &'static str,
    /// What it must be.
    pub rule: &'static str,
}

/// File descriptors kept free for everything but client connections.
const FD_RESERVE: u64 = 64;

impl Limits {
    /// Checks the ranges.
    pub fn check(&self) -> Result<(), LimitsError> {
        let secs = |field, v: u64| {
            if (1..=86_400).contains(&v) {
                Ok(())
            } else {
                Err(LimitsError {
                    field,
                    rule: "1 to 86400 seconds",
                })
            }
        };
        secs("header_read_timeout_secs", self.header_read_timeout_secs)?;
        secs("body_read_timeout_secs", self.body_read_timeout_secs)?;
        secs("send_timeout_secs", self.send_timeout_secs)?;
        if self.drain_secs > 3600 {
            return Err(LimitsError {
                field: "drain_secs",
                rule: "at most 3600 seconds",
            });
        }
        if self.min_rate_bytes_per_sec == 0 {
            return Err(LimitsError {
                field: "min_rate_bytes_per_sec",
                rule: "at least 1",
            });
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err(LimitsError {
                field: "max_connections",
                rule: "max_connections and max_connections_per_ip: at least 1",
            });
        }
        if !(4096..=1 << 20).contains(&self.max_header_bytes) {
            return Err(LimitsError {
                field: "max_header_bytes",
                rule: "4096 to 1048576",
            });
        }
        Ok(())
    }

    /// `max_connections`, lowered so that two descriptors per connection (the socket and a
    /// file being sent) plus a reserve fit the process's file-descriptor limit: past the cap
    /// connections are refused cleanly instead of failing in `accept(2)`.
    pub fn effective_max_connections(&self) -> usize {
        let fds = crate::lifecycle::fd_limit().unwrap_or(u64::MAX);
        let fit = fds.saturating_sub(FD_RESERVE) / 2;
        self.max_connections
            .min(usize::try_from(fit).unwrap_or(usize::MAX))
            .max(1)
    }

    /// `header_read_timeout_secs` as a duration.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs)
    }

    /// `send_timeout_secs` as a duration.
    pub fn send_window(&self) -> Duration {
        Duration::from_secs(self.send_timeout_secs)
    }

    /// `drain_secs` as a duration.
    pub fn drain_duration(&self) -> Duration {
        Duration::from_secs(self.drain_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_check() {
        let l: Limits = toml_like("");
        assert_eq!(l, Limits::default());
        l.check().unwrap();
        assert!(l.effective_max_connections() >= 1);
        let bad = Limits {
            send_timeout_secs: 0,
            ..Limits::default()
        };
        assert_eq!(bad.check().unwrap_err().field, "send_timeout_secs");
        let bad = Limits {
            min_rate_bytes_per_sec: 0,
            ..Limits::default()
        };
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("limits.min_rate")
        );
    }

    fn toml_like(s: &str) -> Limits {
        serde_json::from_str(if s.is_empty() { "{}" } else { s }).unwrap()
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<Limits>(r#"{"max_conections": 1}"#).is_err());
        let l: Limits = serde_json::from_str(r#"{"max_connections": 7}"#).unwrap();
        assert_eq!(l.max_connections, 7);
        assert_eq!(l.effective_max_connections(), 7);
    }
}
