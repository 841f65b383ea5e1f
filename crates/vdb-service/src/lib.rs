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
//! - [`ct_eq`]: constant-time comparison of secrets.

mod error;
pub mod lifecycle;
mod limits;
pub mod listener;
pub mod smtp;
pub mod tls;

pub use error::{ApiError, ErrorKind};
pub use limits::{Limits, LimitsError};
pub use listener::{Admission, Permit, serve};
pub use tls::{Tls, TlsError};

/// Constant-time equality of two secrets (the length is not protected; compare digests when it
/// must be).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ct_eq() {
        assert!(super::ct_eq(b"abc", b"abc"));
        assert!(!super::ct_eq(b"abc", b"abd"));
        assert!(!super::ct_eq(b"abc", b"ab"));
        assert!(super::ct_eq(b"", b""));
    }
}
