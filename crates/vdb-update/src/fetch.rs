//! HTTP as freshclam speaks it (spec §4.4, §4.5), over `vdb-fetch`: header probes with
//! `Range: bytes=0-511` and `If-Modified-Since`, whole-file downloads streamed to disk, and
//! the cool-downs freshclam derives from 403 and 429.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use vdb_fetch::{Client, ErrorKind, Expect, ProxyConfig, SafeUrl};
use vdb_format::{HEADER_LEN, Header};

use crate::config::Settings;
use crate::log::Log;

/// freshclam's cool-down after a 429 without `Retry-After` (4 hours).
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 4 * 3600;

/// freshclam's cool-down after a 403 (24 hours).
pub const FORBIDDEN_COOLDOWN_SECS: u64 = 24 * 3600;

/// Largest file accepted from a mirror (a daily.cvd is well below).
pub const MAX_DOWNLOAD: u64 = 2 << 30;

/// Largest cdiff accepted from a mirror.
pub const MAX_CDIFF: u64 = 256 << 20;

/// What was written to disk by [`Fetcher::download_to`].
pub type Written = vdb_fetch::Downloaded;

/// Why a request gave nothing usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The request failed; [`vdb_fetch::Error::kind`] says how.
    #[error("{}", http_message(.0))]
    Http(#[source] vdb_fetch::Error),
    /// A 0-byte body (`FC_EEMPTYFILE`).
    #[error("{url}: the server sent an empty file")]
    Empty {
        /// The URL.
        url: SafeUrl,
    },
    /// A probe's answer is not a CVD header.
    #[error("{url}: malformed CVD header ({reason})")]
    BadHeader {
        /// The URL.
        url: SafeUrl,
        /// What is wrong.
        reason: String,
    },
}

impl From<vdb_fetch::Error> for FetchError {
    fn from(e: vdb_fetch::Error) -> Self {
        Self::Http(e)
    }
}

/// freshclam's words for 403 and 429.
fn http_message(e: &vdb_fetch::Error) -> String {
    let url = e.url().map(ToString::to_string).unwrap_or_default();
    match e.kind() {
        ErrorKind::Forbidden if e.status().is_some_and(|s| s.as_u16() == 403) => {
            format!("{url}: received error code 403 (forbidden): cooling down for 24 hours")
        }
        ErrorKind::RateLimited { retry_after } => format!(
            "{url}: received error code 429 (too many requests): retry after {} s",
            retry_after.map_or(DEFAULT_RETRY_AFTER_SECS, |d| d.as_secs())
        ),
        _ => e.to_string(),
    }
}

impl FetchError {
    /// What kind of HTTP failure this is (`None` for an empty file or a bad header).
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Http(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// Whether the server answered 404 (or 410).
    pub fn is_not_found(&self) -> bool {
        self.kind() == Some(ErrorKind::NotFound)
    }

    /// freshclam's cool-down for this answer, in seconds: 24 h after a 403, the
    /// `Retry-After` (else 4 h) after a 429.
    pub fn cool_down_secs(&self) -> Option<u64> {
        let Self::Http(e) = self else { return None };
        match e.kind() {
            ErrorKind::Forbidden if e.status().is_some_and(|s| s.as_u16() == 403) => {
                Some(FORBIDDEN_COOLDOWN_SECS)
            }
            ErrorKind::RateLimited { retry_after } => {
                Some(retry_after.map_or(DEFAULT_RETRY_AFTER_SECS, |d| d.as_secs()))
            }
            _ => None,
        }
    }
}

/// Result of a header probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// 304: the local copy is current.
    NotModified,
    /// The remote header.
    Header(Header),
}

/// Result of a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Download<T> {
    /// 304.
    NotModified,
    /// The content (or a summary of what was written).
    Fetched(T),
}

/// An HTTP client configured like freshclam.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: Client,
}

/// The User-Agent freshclam would send, plus our product token.
pub fn user_agent(settings: &Settings, uuid: &str) -> String {
    if let Some(ua) = &settings.user_agent {
        return ua.clone();
    }
    format!(
        "ClamAV/{} (OS: {}, ARCH: {}, CPU: {}, UUID: {uuid}) vdb-update/{}",
        settings.engine_version,
        std::env::consts::OS,
        std::env::consts::ARCH,
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION")
    )
}

impl Fetcher {
    /// A client with freshclam's network behaviour: connect timeout, receive timeout, at most
    /// 3 redirects, no compression, `Connection: close`, the configured proxy only.
    pub fn new(settings: &Settings, uuid: &str) -> Result<Self, vdb_fetch::Error> {
        let mut b = Client::builder(user_agent(settings, uuid))
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.receive_timeout)
            .redirects(3)
            .no_keep_alive()
            .http1_only()
            .proxy(settings.proxy.as_ref().map(|p| {
                let proxy = ProxyConfig::new(p.url());
                match &p.credentials {
                    Some((user, password)) => proxy.with_credentials(user, password),
                    None => proxy,
                }
            }));
        if let Some(server) = settings.dns_server {
            // Mirrors named in the network's zone (`database.<zone>`) are found there too.
            b = b.dns_server(server);
        }
        if let Some(ca) = &settings.ca_file {
            b = b.only_roots(&vdb_fetch::read_ca(ca)?);
        }
        if let Some((cert, key)) = &settings.client_cert {
            b = b.identity(vdb_fetch::read_identity(cert, key)?);
        }
        Ok(Self { client: b.build()? })
    }

    fn get(&self, url: &str, ims: Option<i64>) -> vdb_fetch::Request {
        let req = self.client.get(url);
        match ims {
            Some(t) => req.if_modified_since(UNIX_EPOCH + Duration::from_secs(t.max(0) as u64)),
            None => req,
        }
    }

    /// The first 512 bytes of a container, as freshclam's `remote_cvdhead`: `Range:
    /// bytes=0-511`, `If-Modified-Since` = `ims` when a local copy exists. A server that
    /// ignores Range is fine (only 512 bytes are read).
    pub async fn probe(&self, url: &str, ims: Option<i64>) -> Result<Probe, FetchError> {
        let resp = self
            .get(url, ims)
            .range(0, Some(HEADER_LEN as u64 - 1))
            .send()
            .await?;
        if resp.not_modified() {
            return Ok(Probe::NotModified);
        }
        let url = resp.url().clone();
        let head = resp.prefix(HEADER_LEN).await?;
        let bad = |reason: String| FetchError::BadHeader {
            url: url.clone(),
            reason,
        };
        if head.len() < HEADER_LEN {
            return Err(bad(format!("too short: {} bytes", head.len())));
        }
        if !head.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(bad("not printable".into()));
        }
        Header::parse(&head)
            .map(Probe::Header)
            .map_err(|e| bad(e.to_string()))
    }

    /// Downloads into memory (cdiffs, the manifest), at most `limit` bytes.
    pub async fn download(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        let resp = self.client.get(url).send().await?;
        let url = resp.url().clone();
        let out = resp.bytes(&Expect::at_most(limit)).await?;
        if out.is_empty() {
            return Err(FetchError::Empty { url });
        }
        Ok(out)
    }

    /// Downloads into memory (custom files) unless not modified since `ims`, at most `limit`
    /// bytes.
    pub async fn download_since(
        &self,
        url: &str,
        ims: Option<i64>,
        limit: u64,
    ) -> Result<Download<Vec<u8>>, FetchError> {
        let resp = self.get(url, ims).send().await?;
        if resp.not_modified() {
            return Ok(Download::NotModified);
        }
        let url = resp.url().clone();
        let out = resp.bytes(&Expect::at_most(limit)).await?;
        if out.is_empty() {
            return Err(FetchError::Empty { url });
        }
        Ok(Download::Fetched(out))
    }

    /// Downloads a whole file into `dest` (created, fsynced; removed on failure), hashing it;
    /// a progress bar on a terminal.
    pub async fn download_to(
        &self,
        url: &str,
        ims: Option<i64>,
        dest: &Path,
        log: &Log,
    ) -> Result<Download<Written>, FetchError> {
        let resp = self.get(url, ims).send().await?;
        if resp.not_modified() {
            return Ok(Download::NotModified);
        }
        let safe = resp.url().clone();
        let mut expect = Expect::at_most(MAX_DOWNLOAD);
        let bar = log.progress().then(|| {
            let bar = resp.content_length().map_or_else(
                indicatif::ProgressBar::no_length,
                indicatif::ProgressBar::new,
            );
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(url.rsplit('/').next().unwrap_or(url).to_owned());
            bar
        });
        if let Some(b) = bar.clone() {
            expect = expect.on_progress(move |p| b.set_position(p.received));
        }
        let written = resp.to_file(dest, &expect).await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let written = written?;
        if written.size == 0 {
            return Err(FetchError::Empty { url: safe });
        }
        Ok(Download::Fetched(written))
    }
}
