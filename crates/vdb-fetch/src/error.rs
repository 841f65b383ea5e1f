//! Typed errors that say whose fault a failure is and whether to try again.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;

use crate::SafeUrl;

/// What kind of failure an [`Error`] is: the part callers act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The client settings or the URL are unusable (a CA file, a proxy URL, a malformed URL).
    Config,
    /// No connection could be made, or it broke before the answer was complete.
    Network,
    /// A connect, whole-request or read-stall timeout expired.
    Timeout,
    /// 404 or 410.
    NotFound,
    /// 401 or 403: the server refuses this client.
    Forbidden,
    /// 429, with the server's `Retry-After` if it gave one.
    RateLimited {
        /// How long the server asks to wait.
        retry_after: Option<Duration>,
    },
    /// 5xx (but 501 and 505): the server cannot answer now.
    Unavailable {
        /// How long the server asks to wait, if it said.
        retry_after: Option<Duration>,
    },
    /// Any other status the request did not expect (a redirect not followed, a 4xx, a 304 to
    /// an unconditional request).
    Rejected {
        /// The status.
        status: u16,
    },
    /// The body is larger than allowed or than expected.
    TooLarge,
    /// The body is complete but wrong: its digest differs, or it is not the expected JSON.
    Corrupt,
    /// The server broke HTTP (a malformed answer, too many redirects).
    Protocol,
    /// Writing what was received failed on this machine.
    Local,
}

/// Why a request gave nothing usable. Every variant but [`Error::Config`] carries the URL,
/// displayed without its secrets ([`SafeUrl`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client could not be built from its settings.
    #[error("invalid HTTP client settings: {what}")]
    Config {
        /// What is wrong, naming the setting or file.
        what: String,
    },
    /// The request could not be sent or no answer came (connect, TLS, timeout, protocol).
    #[error("{url}: {}", describe(source))]
    Send {
        /// The URL.
        url: SafeUrl,
        /// The cause, with the URL removed.
        source: reqwest::Error,
    },
    /// The server answered with a status the request did not expect.
    #[error("{url}: HTTP {status}{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    Status {
        /// The URL.
        url: SafeUrl,
        /// The status.
        status: StatusCode,
        /// The parsed `Retry-After` header, if any.
        retry_after: Option<Duration>,
        /// The first bytes of the answer's body (at most 64 KiB; an API's error document).
        body: bytes::Bytes,
    },
    /// The body broke off (connection lost, read stall, a body shorter than announced).
    #[error(
        "{url}: the body broke off after {received} bytes: {}",
        describe(source)
    )]
    Body {
        /// The URL.
        url: SafeUrl,
        /// Bytes received before.
        received: u64,
        /// The cause, with the URL removed.
        source: reqwest::Error,
    },
    /// The body ended before the expected size.
    #[error("{url}: the body ended after {received} of the {expected} bytes expected")]
    Truncated {
        /// The URL.
        url: SafeUrl,
        /// The expected size.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// The body is larger than the limit (announced or received; reading stopped there).
    #[error("{url}: larger than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: SafeUrl,
        /// The limit.
        limit: u64,
    },
    /// The body's SHA-256 is not the expected one.
    #[error("{url}: SHA-256 {actual}, expected {expected}")]
    DigestMismatch {
        /// The URL.
        url: SafeUrl,
        /// The expected digest (lower-case hex).
        expected: String,
        /// The received body's digest.
        actual: String,
    },
    /// The body is not the expected JSON document.
    #[error("{url}: not the expected JSON: {source}")]
    Decode {
        /// The URL.
        url: SafeUrl,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// Writing the body failed.
    #[error("{url}: cannot write {}: {source}", path.as_ref().map_or_else(|| "the download".to_owned(), |p| p.display().to_string()))]
    Write {
        /// The URL.
        url: SafeUrl,
        /// The file written, if a file.
        path: Option<PathBuf>,
        /// The cause.
        source: std::io::Error,
    },
}

/// A reqwest error's causes on one line (reqwest's own top line adds nothing once the URL is
/// gone).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        let t = c.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = c.source();
    }
    if parts.len() > 1 {
        parts.remove(0);
    }
    let mut out = parts.join(": ");
    if e.is_timeout() && !out.contains("timed out") {
        out.push_str(" (timed out)");
    }
    out
}

fn transport_kind(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_builder() {
        ErrorKind::Config
    } else if e.is_redirect() || e.is_decode() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Network
    }
}

/// The kind an unexpected status stands for.
pub(crate) fn status_kind(status: StatusCode, retry_after: Option<Duration>) -> ErrorKind {
    match status.as_u16() {
        404 | 410 => ErrorKind::NotFound,
        401 | 403 => ErrorKind::Forbidden,
        408 => ErrorKind::Timeout,
        429 => ErrorKind::RateLimited { retry_after },
        501 | 505 => ErrorKind::Rejected {
            status: status.as_u16(),
        },
        500..=599 => ErrorKind::Unavailable { retry_after },
        s => ErrorKind::Rejected { status: s },
    }
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config { .. } => ErrorKind::Config,
            Self::Send { source, .. } => transport_kind(source),
            // No content coding is negotiated, so a body that fails to read (reqwest calls
            // it a decode error) broke off: the connection's fault.
            Self::Body { source, .. } if source.is_timeout() => ErrorKind::Timeout,
            Self::Body { .. } => ErrorKind::Network,
            Self::Status {
                status,
                retry_after,
                ..
            } => status_kind(*status, *retry_after),
            Self::Truncated { .. } => ErrorKind::Network,
            Self::TooLarge { .. } => ErrorKind::TooLarge,
            Self::DigestMismatch { .. } | Self::Decode { .. } => ErrorKind::Corrupt,
            Self::Write { .. } => ErrorKind::Local,
        }
    }

    /// Whether the same request may succeed later: network trouble, timeouts, 5xx and 429
    /// (after its `Retry-After`). Never for a refusal, a wrong body or a local failure.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Network
                | ErrorKind::Timeout
                | ErrorKind::Unavailable { .. }
                | ErrorKind::RateLimited { .. }
        )
    }

    /// The server's `Retry-After`, if it sent one with this answer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, if the server answered with an unexpected one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The first bytes of an unexpected answer's body (an API's error document), if any.
    pub fn body(&self) -> Option<&[u8]> {
        match self {
            Self::Status { body, .. } => Some(body),
            _ => None,
        }
    }

    /// The URL concerned (displayed without secrets); `None` for [`Error::Config`].
    pub fn url(&self) -> Option<&SafeUrl> {
        match self {
            Self::Config { .. } => None,
            Self::Send { url, .. }
            | Self::Status { url, .. }
            | Self::Body { url, .. }
            | Self::Truncated { url, .. }
            | Self::TooLarge { url, .. }
            | Self::DigestMismatch { url, .. }
            | Self::Decode { url, .. }
            | Self::Write { url, .. } => Some(url),
        }
    }

    pub(crate) fn config(what: impl Into<String>) -> Self {
        Self::Config { what: what.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let k = |s: u16| status_kind(StatusCode::from_u16(s).unwrap(), None);
        assert_eq!(k(404), ErrorKind::NotFound);
        assert_eq!(k(410), ErrorKind::NotFound);
        assert_eq!(k(403), ErrorKind::Forbidden);
        assert_eq!(k(429), ErrorKind::RateLimited { retry_after: None });
        assert_eq!(k(503), ErrorKind::Unavailable { retry_after: None });
        assert_eq!(k(501), ErrorKind::Rejected { status: 501 });
        assert_eq!(k(302), ErrorKind::Rejected { status: 302 });
        assert_eq!(k(409), ErrorKind::Rejected { status: 409 });
    }
}
