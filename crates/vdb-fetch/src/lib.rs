//! `vdb-fetch`: vdbnet's one HTTP client. Every role and `vdb-update` make their outbound
//! requests through it, so that timeouts, size caps, digests, retries, proxies, CA roots and
//! redirects are decided in one place.
//!
//! - **One client builder** ([`ClientBuilder`]): connect, whole-request and read-stall
//!   timeouts, User-Agent, extra or replacement CA roots ([`read_ca`], the workspace's one CA
//!   reader), a proxy with credentials, a redirect policy (none unless configured),
//!   `TCP_NODELAY`, no cookie store, no compression, the environment's proxy variables ignored.
//! - **One bounded download** ([`Response::for_each_chunk`] and the helpers over it): a size
//!   cap enforced while streaming (nothing past it is buffered), an optional expected size and
//!   SHA-256 checked as the bytes arrive, a progress hook, to memory ([`Response::bytes`],
//!   [`Response::json`], [`Response::prefix`]) or to a file the caller renames
//!   ([`Response::to_file`], fsynced, removed on failure). Conditional requests
//!   (`If-Modified-Since`, `If-None-Match`) and `Range` are request options.
//! - **Typed errors** ([`Error`]): each carries its URL, displayed without credentials, query
//!   or (for webhooks) path ([`SafeUrl`]); [`Error::kind`] says what happened and
//!   [`Error::is_retryable`] whether to try again; `Retry-After` is parsed in both forms
//!   ([`parse_retry_after`]).
//! - With the `dns` feature, **TXT lookups** ([`dns::Txt`], hickory): ClamAV's version records
//!   through the system resolver or a given server (`vdb-update` and the master's follower).
//! - **Retry classes** ([`RetryPolicy`]): exponential back-off with full jitter, bounded in
//!   attempts and total time, as a pure function of the attempt (testable without sleeping)
//!   and as a runner.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vdb_fetch::Error> {
//! use std::time::Duration;
//! use vdb_fetch::{Client, ErrorKind, Expect, RetryPolicy};
//!
//! let client = Client::builder("vdbnet-example/1")
//!     .connect_timeout(Duration::from_secs(3))
//!     .read_timeout(Some(Duration::from_secs(20)))
//!     .build()?;
//! let url = "http://127.0.0.1:8080/objects/ab12…";
//! let want = Expect::exactly(1234, "ab12…").on_progress(|p| eprintln!("{}", p.received));
//! let got = RetryPolicy::default()
//!     .run(|_| async { client.get(url).send().await?.to_file("obj.tmp".as_ref(), &want).await })
//!     .await;
//! match got {
//!     Ok(d) => println!("{} bytes, sha256 {}", d.size, d.sha256),
//!     Err(e) if e.kind() == ErrorKind::NotFound => println!("{e}: not there"),
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```

mod body;
mod client;
mod error;
mod retry;
mod retry_after;
mod url;

#[cfg(feature = "dns")]
pub mod dns;

pub use body::{Downloaded, Expect, Progress};
pub use client::{Client, ClientBuilder, ProxyConfig, Request, Response, read_ca, read_identity};
pub use error::{Error, ErrorKind};
pub use retry::RetryPolicy;
pub use retry_after::parse_retry_after;
pub use url::SafeUrl;

/// The types of the HTTP crate underneath that appear in this API.
pub use reqwest::{Body, Certificate, Identity, Method, StatusCode, Url, header, multipart};
