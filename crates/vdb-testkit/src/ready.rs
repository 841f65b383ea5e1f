//! A role's JSON ready line, read in one place.
//!
//! Two shapes are accepted: the roles' own (`{"role":"mirror","http":"http://127.0.0.1:4123"}`)
//! and the shared typed line (`{"event":"ready","role":"mirror",…}`), with addresses given as
//! URLs or bare `ip:port`, at the top level or in one nested object. Every address a test needs
//! goes through [`Ready::addr`], so a change of shape is adapted here alone.

use std::net::SocketAddr;

use serde_json::Value;

/// A parsed ready line.
#[derive(Debug, Clone)]
pub struct Ready(Value);

impl Ready {
    /// Parses one line; `Err` with the reason if it is not a ready line.
    pub fn parse(line: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(line.trim()).map_err(|e| format!("{e}: {line:?}"))?;
        if !v.is_object() {
            return Err(format!("not a JSON object: {line:?}"));
        }
        if let Some(event) = v.get("event")
            && event != "ready"
        {
            return Err(format!("not a ready event: {line:?}"));
        }
        Ok(Self(v))
    }

    /// The whole line (for keys only one role prints, e.g. `vdbd dev`'s).
    pub fn json(&self) -> &Value {
        &self.0
    }

    /// `role` (empty if absent).
    pub fn role(&self) -> &str {
        self.0["role"].as_str().unwrap_or_default()
    }

    /// The listening address named `key` (`http`, `https`, `dns`), if the line has one.
    pub fn addr(&self, key: &str) -> Option<SocketAddr> {
        let found = self.0.get(key).or_else(|| {
            self.0
                .as_object()?
                .values()
                .filter_map(Value::as_object)
                .find_map(|o| o.get(key))
        })?;
        let text = found.as_str()?;
        let bare = text.split_once("://").map_or(text, |(_, rest)| rest);
        bare.trim_end_matches('/').parse().ok()
    }

    fn need(&self, key: &str) -> SocketAddr {
        self.addr(key)
            .unwrap_or_else(|| panic!("no {key} address in the ready line {}", self.0))
    }

    /// The plain HTTP listener (panics without one).
    pub fn http_addr(&self) -> SocketAddr {
        self.need("http")
    }

    /// `http://ip:port` of the plain HTTP listener.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr())
    }

    /// `https://ip:port` of the TLS listener (panics without one).
    pub fn https_url(&self) -> String {
        format!("https://{}", self.need("https"))
    }

    /// The DNS listener (UDP and TCP; panics without one).
    pub fn dns_addr(&self) -> SocketAddr {
        self.need("dns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes() {
        let old = Ready::parse(r#"{"role":"mirror","http":"http://127.0.0.1:41"}"#).unwrap();
        assert_eq!(old.role(), "mirror");
        assert_eq!(old.http_url(), "http://127.0.0.1:41");
        let new = Ready::parse(
            r#"{"event":"ready","role":"directory","listen":{"http":"127.0.0.1:42","dns":"127.0.0.1:53"}}"#,
        )
        .unwrap();
        assert_eq!(new.role(), "directory");
        assert_eq!(new.http_url(), "http://127.0.0.1:42");
        assert_eq!(new.dns_addr().port(), 53);
        assert!(new.addr("https").is_none());
        assert!(Ready::parse(r#"{"event":"stopping"}"#).is_err());
        assert!(Ready::parse("starting…").is_err());
    }
}
