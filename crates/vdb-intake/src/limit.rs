//! Per-client bounds on submissions: a fixed hourly window of attempts and a cap on uploads in
//! flight, per client address (IPv6 addresses count per /64, which one subscriber usually
//! holds), plus a cap on uploads in flight from everyone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::Limits;

/// The window of the hourly count (seconds).
const WINDOW: i64 = 3600;
/// Clients remembered before old windows are pruned.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Default)]
struct Client {
    window_start: i64,
    attempts: u32,
    in_flight: u32,
}

#[derive(Debug, Default)]
struct Inner {
    clients: HashMap<IpAddr, Client>,
    in_flight: u32,
}

/// The limiter.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    limits: Limits,
    inner: Arc<Mutex<Inner>>,
}

/// Why a submission may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Too many attempts from this client this hour; retry after this many seconds.
    Hourly(i64),
    /// This client already has its uploads in flight.
    Concurrent,
    /// The intake is busy with everyone's uploads.
    Busy,
}

/// An admitted upload; dropping it frees its slot.
#[derive(Debug)]
pub(crate) struct Permit {
    key: IpAddr,
    inner: Arc<Mutex<Inner>>,
}

/// The address a client is counted under.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
        v4 => v4,
    }
}

impl Limiter {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            inner: Arc::default(),
        }
    }

    /// Admits one submission attempt from `ip` at `now` (Unix seconds), or says why not.
    /// Every attempt counts, accepted or not, so a flood is cut off early.
    pub(crate) fn admit(&self, ip: IpAddr, now: i64) -> Result<Permit, Refused> {
        let key = client_key(ip);
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if g.clients.len() >= PRUNE_AT {
            g.clients
                .retain(|_, c| c.in_flight > 0 || now - c.window_start < WINDOW);
        }
        if g.in_flight >= self.limits.concurrent_uploads {
            return Err(Refused::Busy);
        }
        let c = g.clients.entry(key).or_insert_with(|| Client {
            window_start: now,
            ..Client::default()
        });
        if now - c.window_start >= WINDOW {
            c.window_start = now;
            c.attempts = 0;
        }
        if c.attempts >= self.limits.submissions_per_hour {
            return Err(Refused::Hourly((c.window_start + WINDOW - now).max(1)));
        }
        c.attempts += 1;
        if c.in_flight >= self.limits.concurrent_per_client {
            return Err(Refused::Concurrent);
        }
        c.in_flight += 1;
        g.in_flight += 1;
        Ok(Permit {
            key,
            inner: self.inner.clone(),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.in_flight = g.in_flight.saturating_sub(1);
        if let Some(c) = g.clients.get_mut(&self.key) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_hour: u32, per_client: u32, total: u32) -> Limits {
        Limits {
            submissions_per_hour: per_hour,
            concurrent_per_client: per_client,
            concurrent_uploads: total,
            ..Limits::default()
        }
    }

    #[test]
    fn hourly_window_per_client() {
        let l = Limiter::new(limits(3, 10, 100));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            drop(l.admit(a, 1000).unwrap());
        }
        assert_eq!(l.admit(a, 1000).unwrap_err(), Refused::Hourly(3600));
        assert_eq!(l.admit(a, 4000).unwrap_err(), Refused::Hourly(600));
        assert!(l.admit(b, 1000).is_ok(), "another client is not affected");
        assert!(l.admit(a, 4600).is_ok(), "a new window");
    }

    #[test]
    fn in_flight_caps() {
        let l = Limiter::new(limits(100, 1, 2));
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let a2: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let p = l.admit(a, 0).unwrap();
        assert_eq!(l.admit(a2, 0).unwrap_err(), Refused::Concurrent, "same /64");
        let q = l.admit("192.0.2.9".parse().unwrap(), 0).unwrap();
        assert_eq!(
            l.admit("192.0.2.10".parse().unwrap(), 0).unwrap_err(),
            Refused::Busy
        );
        drop((p, q));
        assert!(l.admit(a2, 0).is_ok());
        assert_eq!(
            client_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
