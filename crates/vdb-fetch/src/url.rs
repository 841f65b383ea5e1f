//! URLs that never show their secrets.

use std::fmt;

/// A URL as a request uses it, displayed without its secrets: user name and password, the
/// query (often a token) and, for URLs marked secret (webhooks), the path.
///
/// ```
/// use vdb_fetch::SafeUrl;
///
/// let u = SafeUrl::new("https://user:pw@example.net:8443/db/daily.cvd?token=abc");
/// assert_eq!(u.to_string(), "https://***@example.net:8443/db/daily.cvd?***");
/// let hook = SafeUrl::secret("https://hooks.example.net/services/T0/B0/XYZ");
/// assert_eq!(hook.to_string(), "https://hooks.example.net/***");
/// assert_eq!(hook.expose(), "https://hooks.example.net/services/T0/B0/XYZ");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafeUrl {
    raw: String,
    secret: bool,
}

impl SafeUrl {
    /// A URL whose path may be shown.
    pub fn new(raw: impl Into<String>) -> Self {
        Self {
            raw: raw.into(),
            secret: false,
        }
    }

    /// A URL whose path is a secret too (a webhook's): only scheme, host and port are shown.
    pub fn secret(raw: impl Into<String>) -> Self {
        Self {
            raw: raw.into(),
            secret: true,
        }
    }

    /// The URL itself, secrets included: for making the request, never for logs.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// Whether the path is hidden when displayed.
    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(u) = reqwest::Url::parse(&self.raw) else {
            return f.write_str("<invalid URL>");
        };
        write!(f, "{}://", u.scheme())?;
        if !u.username().is_empty() || u.password().is_some() {
            f.write_str("***@")?;
        }
        if let Some(h) = u.host_str() {
            f.write_str(h)?;
        }
        if let Some(p) = u.port() {
            write!(f, ":{p}")?;
        }
        if self.secret {
            return f.write_str("/***");
        }
        f.write_str(u.path())?;
        if u.query().is_some() {
            f.write_str("?***")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_displayed() {
        for (raw, shown) in [
            ("http://127.0.0.1:80/x", "http://127.0.0.1/x"),
            ("http://a:b@h/p?q=1#frag", "http://***@h/p?***"),
            ("http://a@h/", "http://***@h/"),
            ("http://[::1]:9/p", "http://[::1]:9/p"),
            ("not a url", "<invalid URL>"),
        ] {
            assert_eq!(SafeUrl::new(raw).to_string(), shown);
            assert!(!format!("{:?}", SafeUrl::new(raw)).contains("b@"));
        }
        assert_eq!(
            SafeUrl::secret("https://h:1/hook/s3cr3t?x=y").to_string(),
            "https://h:1/***"
        );
    }
}
