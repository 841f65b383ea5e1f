//! HTTP as freshclam speaks it (spec §4.4, §4.5): header probes with `Range: bytes=0-511` and
//! `If-Modified-Since`, whole-file downloads streamed to disk, statuses mapped to freshclam's
//! outcomes.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, IF_MODIFIED_SINCE, RANGE, RETRY_AFTER};
use sha2::{Digest, Sha256};
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

/// Why a request gave nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No connection, or it broke (`FC_ECONNECTION`).
    #[error("cannot connect to {url}: {message}")]
    Connection {
        /// The URL.
        url: String,
        /// The cause.
        message: String,
    },
    /// 403: the server refuses this client; freshclam cools down for 24 h.
    #[error("{url}: received error code 403 (forbidden): cooling down for 24 hours")]
    Forbidden {
        /// The URL.
        url: String,
    },
    /// 429: rate limited; cool down for `secs`.
    #[error("{url}: received error code 429 (too many requests): retry after {secs} s")]
    RetryLater {
        /// The URL.
        url: String,
        /// Seconds to wait (`Retry-After`, else 4 h).
        secs: u64,
    },
    /// Any other unusable status (`FC_EFAILEDGET`).
    #[error("{url}: unexpected response code {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// A 0-byte body (`FC_EEMPTYFILE`).
    #[error("{url}: the server sent an empty file")]
    Empty {
        /// The URL.
        url: String,
    },
    /// A body too large, or a malformed CVD header on a probe.
    #[error("{url}: {message}")]
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// Writing the download failed (`FC_EFILE`).
    #[error("cannot write {what}: {message}")]
    Local {
        /// The file.
        what: String,
        /// The cause.
        message: String,
    },
}

impl FetchError {
    /// Whether the server answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
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

/// What was written to disk by [`Fetcher::download_to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Bytes written.
    pub size: u64,
    /// Their SHA-256 (lower-case hex).
    pub sha256: String,
}

/// An HTTP client configured like freshclam.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
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

fn http_date(secs: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    httpdate::fmt_http_date(t)
}

fn retry_after(headers: &HeaderMap) -> u64 {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.trim().parse::<u64>().ok().or_else(|| {
                let when = httpdate::parse_http_date(v.trim()).ok()?;
                Some(
                    when.duration_since(std::time::SystemTime::now())
                        .map_or(0, |d| d.as_secs()),
                )
            })
        })
        .unwrap_or(DEFAULT_RETRY_AFTER_SECS)
}

impl Fetcher {
    /// A client with freshclam's network behaviour: connect timeout, receive timeout, at most
    /// 3 redirects, no compression, `Connection: close`, the proxy tunnelled with CONNECT.
    pub fn new(settings: &Settings, uuid: &str) -> Result<Self, String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
        let mut b = reqwest::Client::builder()
            .user_agent(user_agent(settings, uuid))
            .default_headers(headers)
            .connect_timeout(settings.connect_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .pool_max_idle_per_host(0)
            .http1_only()
            .no_proxy();
        if let Some(t) = settings.receive_timeout {
            b = b.read_timeout(t);
        }
        if let Some(p) = &settings.proxy {
            let mut proxy =
                reqwest::Proxy::all(p.url()).map_err(|e| format!("proxy {}: {e}", p.url()))?;
            if let Some((u, pw)) = &p.credentials {
                proxy = proxy.basic_auth(u, pw);
            }
            b = b.proxy(proxy);
        }
        if let Some(ca) = &settings.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("CA file {}: {e}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
            b = b.tls_certs_only(certs);
        }
        if let Some((cert, key)) = &settings.client_cert {
            let mut pem =
                std::fs::read(cert).map_err(|e| format!("client cert {}: {e}", cert.display()))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key).map_err(|e| format!("client key {}: {e}", key.display()))?,
            );
            let id = reqwest::Identity::from_pem(&pem)
                .map_err(|e| format!("client cert {}: {e}", cert.display()))?;
            b = b.identity(id);
        }
        let client = b.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { client })
    }

    async fn get(
        &self,
        url: &str,
        range: bool,
        ims: Option<i64>,
    ) -> Result<Option<reqwest::Response>, FetchError> {
        let mut req = self.client.get(url);
        if range {
            req = req.header(RANGE, "bytes=0-511");
        }
        if let Some(t) = ims {
            req = req.header(IF_MODIFIED_SINCE, http_date(t));
        }
        let resp = req.send().await.map_err(|e| FetchError::Connection {
            url: url.to_owned(),
            message: error_chain(&e),
        })?;
        let status = resp.status();
        let url = url.to_owned();
        match status {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(Some(resp)),
            StatusCode::NOT_MODIFIED => Ok(None),
            StatusCode::FORBIDDEN => Err(FetchError::Forbidden { url }),
            StatusCode::TOO_MANY_REQUESTS => Err(FetchError::RetryLater {
                secs: retry_after(resp.headers()),
                url,
            }),
            s => Err(FetchError::Status {
                url,
                status: s.as_u16(),
            }),
        }
    }

    /// The first 512 bytes of a container, as freshclam's `remote_cvdhead`: `Range:
    /// bytes=0-511`, `If-Modified-Since` = `ims` when a local copy exists. A server that
    /// ignores Range is fine (only 512 bytes are read).
    pub async fn probe(&self, url: &str, ims: Option<i64>) -> Result<Probe, FetchError> {
        let Some(mut resp) = self.get(url, true, ims).await? else {
            return Ok(Probe::NotModified);
        };
        let mut head = Vec::with_capacity(HEADER_LEN);
        while head.len() < HEADER_LEN {
            match resp.chunk().await {
                Ok(Some(c)) => head.extend_from_slice(&c),
                Ok(None) => break,
                Err(e) => {
                    return Err(FetchError::Connection {
                        url: url.to_owned(),
                        message: error_chain(&e),
                    });
                }
            }
        }
        let malformed = |message: String| FetchError::Malformed {
            url: url.to_owned(),
            message,
        };
        if head.len() < HEADER_LEN {
            return Err(malformed(format!(
                "malformed CVD header (too short: {} bytes)",
                head.len()
            )));
        }
        head.truncate(HEADER_LEN);
        if !head.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(malformed("malformed CVD header (not printable)".into()));
        }
        Header::parse(&head)
            .map(Probe::Header)
            .map_err(|e| malformed(format!("malformed CVD header: {e}")))
    }

    /// Downloads into memory (cdiffs, custom files), at most `limit` bytes.
    pub async fn download(
        &self,
        url: &str,
        ims: Option<i64>,
        limit: u64,
    ) -> Result<Download<Vec<u8>>, FetchError> {
        let Some(mut resp) = self.get(url, false, ims).await? else {
            return Ok(Download::NotModified);
        };
        let mut out = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    out.extend_from_slice(&c);
                    if out.len() as u64 > limit {
                        return Err(FetchError::Malformed {
                            url: url.to_owned(),
                            message: format!("file larger than {limit} bytes"),
                        });
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(FetchError::Connection {
                        url: url.to_owned(),
                        message: error_chain(&e),
                    });
                }
            }
        }
        if out.is_empty() {
            return Err(FetchError::Empty {
                url: url.to_owned(),
            });
        }
        Ok(Download::Fetched(out))
    }

    /// Downloads a whole file into `dest` (created), hashing it; a progress bar on a terminal.
    pub async fn download_to(
        &self,
        url: &str,
        ims: Option<i64>,
        dest: &Path,
        log: &Log,
    ) -> Result<Download<Written>, FetchError> {
        let Some(mut resp) = self.get(url, false, ims).await? else {
            return Ok(Download::NotModified);
        };
        let local = |e: std::io::Error| FetchError::Local {
            what: dest.display().to_string(),
            message: e.to_string(),
        };
        let file = std::fs::File::create(dest).map_err(local)?;
        let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
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
        let mut sha = Sha256::new();
        let mut size = 0u64;
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    size += c.len() as u64;
                    if size > MAX_DOWNLOAD {
                        return Err(FetchError::Malformed {
                            url: url.to_owned(),
                            message: format!("file larger than {MAX_DOWNLOAD} bytes"),
                        });
                    }
                    sha.update(&c);
                    file.write_all(&c).map_err(local)?;
                    if let Some(b) = &bar {
                        b.inc(c.len() as u64);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(FetchError::Connection {
                        url: url.to_owned(),
                        message: error_chain(&e),
                    });
                }
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let file = file.into_inner().map_err(|e| local(e.into_error()))?;
        file.sync_all().map_err(local)?;
        if size == 0 {
            return Err(FetchError::Empty {
                url: url.to_owned(),
            });
        }
        Ok(Download::Fetched(Written {
            size,
            sha256: vdb_proto::hex(&sha.finalize()),
        }))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}
