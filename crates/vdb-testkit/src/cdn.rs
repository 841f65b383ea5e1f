//! A ClamAV CDN double (`database.clamav.net` as a follower meets it): a flat directory of
//! files that can change while a client follows, every request recorded, and the CDN's
//! manners on demand: `429` + `Retry-After`, `403` for a user agent, bursts of `5xx`, slow,
//! truncated and endless bodies, `Range: bytes=0-511` → `206`, `If-Modified-Since` → `304`
//! (by the CVD's own build time, as ClamAV's mirrors answer), a window of cdiffs, and its own
//! version TXT records over UDP DNS on 127.0.0.1.
//!
//! ```no_run
//! # async fn f() {
//! let cdn = vdb_testkit::CdnDouble::start().await;
//! cdn.serve_fixtures("test", 6, 2); // test.cvd v6, test-2..6.cdiff and their .sign files
//! cdn.rate_limit(Some(Some(3600)));
//! // … a follower asks; then:
//! assert!(cdn.requests().iter().all(|r| r.status == 429));
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// One request the CDN received, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdnRequest {
    /// `GET`, `HEAD`, …
    pub method: String,
    /// The path (`/test.cvd`).
    pub path: String,
    /// Every header, names lower-case, in order.
    pub headers: Vec<(String, String)>,
    /// The status it answered.
    pub status: u16,
}

impl CdnRequest {
    /// The value of header `name` (lower-case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the body of a file is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// At once.
    Normal,
    /// Half of it, then the connection is cut (the length announced is the whole).
    Truncated,
    /// In 1 KiB pieces, one every `ms` milliseconds.
    Slow(u64),
    /// The file, then zeros forever (no length): a body that never ends.
    Endless,
}

#[derive(Debug, Default)]
struct Inner {
    files: BTreeMap<String, Vec<u8>>,
    delivery: BTreeMap<String, Delivery>,
    requests: Vec<CdnRequest>,
    rate_limit: Option<Option<u64>>,
    forbid_agent: Option<String>,
    failures: Vec<u16>,
    ignore_conditional: bool,
    txt: BTreeMap<String, String>,
    dns_queries: Vec<String>,
}

/// The CDN double; clones share it.
#[derive(Debug, Clone)]
pub struct CdnDouble {
    addr: SocketAddr,
    dns: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl CdnDouble {
    /// Starts an empty CDN on 127.0.0.1 (a free port).
    pub async fn start() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_on(any, any)
            .await
            .expect("bind 127.0.0.1:0 for the CDN double")
    }

    /// Starts an empty CDN with its HTTP server on `http` and its DNS server on `dns` (the
    /// benchmark puts the DNS on port 53 of a loopback address, where freshclam's resolver
    /// looks).
    pub async fn start_on(http: SocketAddr, dns: SocketAddr) -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new()
            .route("/{name}", axum::routing::any(answer))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind(http).await?;
        let addr = listener.local_addr()?;
        let udp = tokio::net::UdpSocket::bind(dns).await?;
        let dns = udp.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        tokio::spawn(dns_loop(udp, Arc::clone(&inner)));
        Ok(Self { addr, dns, inner })
    }

    /// The address of its DNS server (UDP), which answers the TXT records set with
    /// [`CdnDouble::set_txt`] and `NXDOMAIN` to anything else.
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns
    }

    /// Sets (or, with `None`, removes) the TXT record of `name` (`current.cvd.example`).
    pub fn set_txt(&self, name: &str, text: Option<&str>) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.with(|i| match text {
            Some(t) => i.txt.insert(name, t.to_owned()),
            None => i.txt.remove(&name),
        });
    }

    /// The names asked of its DNS server so far, in order.
    pub fn dns_queries(&self) -> Vec<String> {
        self.with(|i| i.dns_queries.clone())
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Its base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `data` as `name`.
    pub fn put(&self, name: &str, data: Vec<u8>) {
        self.with(|i| i.files.insert(name.to_owned(), data));
    }

    /// Stops serving `name` (404).
    pub fn remove(&self, name: &str) {
        self.with(|i| i.files.remove(name));
    }

    /// Serves ClamAV's fixture database `db` (`test`) as the CDN does at `version`:
    /// `<db>.cvd` = `<db>-<version>.cvd`, `<db>-<version>.cvd.sign`, and the cdiffs
    /// `first..=version` with their `.sign` files; every other file of `db` is removed (so
    /// cdiffs below `first` have left the window).
    pub fn serve_fixtures(&self, db: &str, version: u32, first: u32) {
        let read = |n: &str| std::fs::read(crate::fixtures::path(n)).ok();
        let mut files = BTreeMap::new();
        if let Some(d) = read(&format!("{db}-{version}.cvd")) {
            files.insert(format!("{db}.cvd"), d);
        }
        if let Some(d) = read(&format!("{db}-{version}.cvd.sign")) {
            files.insert(format!("{db}-{version}.cvd.sign"), d);
        }
        for n in first.max(2)..=version {
            for name in [format!("{db}-{n}.cdiff"), format!("{db}-{n}.cdiff.sign")] {
                if let Some(d) = read(&name) {
                    files.insert(name, d);
                }
            }
        }
        self.with(|i| {
            i.files.retain(|n, _| {
                !(n.starts_with(&format!("{db}.")) || n.starts_with(&format!("{db}-")))
            });
            i.files.extend(files);
        });
    }

    /// How `name` is delivered from now on.
    pub fn deliver(&self, name: &str, how: Delivery) {
        self.with(|i| i.delivery.insert(name.to_owned(), how));
    }

    /// Every request answers `429` (with `Retry-After: <secs>` if given); `None` ends it.
    pub fn rate_limit(&self, retry_after: Option<Option<u64>>) {
        self.with(|i| i.rate_limit = retry_after);
    }

    /// Answers `403` to user agents containing `needle` (`None`: nobody).
    pub fn forbid_agent(&self, needle: Option<&str>) {
        self.with(|i| i.forbid_agent = needle.map(str::to_owned));
    }

    /// The next requests answer these statuses, one each (a burst of `5xx`).
    pub fn fail_next(&self, statuses: &[u16]) {
        self.with(|i| i.failures.extend_from_slice(statuses));
    }

    /// Whether `If-Modified-Since` is ignored (every answer a `200`/`206`), as some mirrors do.
    pub fn ignore_if_modified_since(&self, ignore: bool) {
        self.with(|i| i.ignore_conditional = ignore);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<CdnRequest> {
        self.with(|i| i.requests.clone())
    }

    /// The paths requested so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.with(|i| i.requests.iter().map(|r| r.path.clone()).collect())
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        self.with(|i| i.requests.clear());
    }
}

/// The build time (field 9) of a ClamAV header, if `data` starts with one.
fn build_time(data: &[u8]) -> Option<u64> {
    let head = std::str::from_utf8(data.get(..512)?).ok()?;
    head.trim_end().split(':').nth(8)?.trim().parse().ok()
}

fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Parses an HTTP date back to Unix seconds.
fn parse_httpdate(s: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(s).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

async fn answer(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let mut g = inner.lock().unwrap_or_else(PoisonError::into_inner);
    let agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let record = |status: StatusCode, g: &mut Inner| {
        g.requests.push(CdnRequest {
            method: method.to_string(),
            path: format!("/{name}"),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            status: status.as_u16(),
        });
    };
    if let Some(ra) = g.rate_limit {
        record(StatusCode::TOO_MANY_REQUESTS, &mut g);
        let mut r = StatusCode::TOO_MANY_REQUESTS.into_response();
        if let Some(s) = ra {
            r.headers_mut().insert("retry-after", s.into());
        }
        return r;
    }
    if g.forbid_agent.as_deref().is_some_and(|n| agent.contains(n)) {
        record(StatusCode::FORBIDDEN, &mut g);
        return StatusCode::FORBIDDEN.into_response();
    }
    if !g.failures.is_empty() {
        let s = StatusCode::from_u16(g.failures.remove(0)).unwrap_or(StatusCode::BAD_GATEWAY);
        record(s, &mut g);
        return s.into_response();
    }
    if method != Method::GET {
        record(StatusCode::METHOD_NOT_ALLOWED, &mut g);
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let Some(data) = g.files.get(&name).cloned() else {
        record(StatusCode::NOT_FOUND, &mut g);
        return StatusCode::NOT_FOUND.into_response();
    };
    let stime = build_time(&data);
    if let (false, Some(t), Some(ims)) = (
        g.ignore_conditional,
        stime,
        headers
            .get("if-modified-since")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_httpdate),
    ) && t <= ims
    {
        record(StatusCode::NOT_MODIFIED, &mut g);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let ranged = headers.get("range").is_some_and(|r| r == "bytes=0-511") && data.len() >= 512;
    let status = if ranged {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    record(status, &mut g);
    let how = g.delivery.get(&name).copied().unwrap_or(Delivery::Normal);
    drop(g);
    let body = if ranged { data[..512].to_vec() } else { data };
    let mut resp = match how {
        Delivery::Normal => (status, body).into_response(),
        Delivery::Truncated => {
            let len = body.len();
            let half = body[..len / 2].to_vec();
            let stream = futures_stream(vec![Ok(half), Err(std::io::Error::other("cut"))], 0);
            let mut r = (status, Body::from_stream(stream)).into_response();
            r.headers_mut().insert("content-length", len.into());
            r
        }
        Delivery::Slow(ms) => {
            let chunks = body.chunks(1024).map(|c| Ok(c.to_vec())).collect();
            (status, Body::from_stream(futures_stream(chunks, ms))).into_response()
        }
        Delivery::Endless => {
            let stream = async_stream_endless(body);
            (status, Body::from_stream(stream)).into_response()
        }
    };
    if let Some(t) = stime {
        resp.headers_mut()
            .insert("last-modified", http_date(t).parse().unwrap());
    }
    resp
}

/// Answers DNS queries over UDP: the TXT records of `inner`, `NXDOMAIN` otherwise.
async fn dns_loop(udp: tokio::net::UdpSocket, inner: Arc<Mutex<Inner>>) {
    let mut buf = [0u8; 512];
    loop {
        let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
            return;
        };
        let Some((name, qtype, qend)) = question(&buf[..n]) else {
            continue;
        };
        let text = {
            let mut g = inner.lock().unwrap_or_else(PoisonError::into_inner);
            g.dns_queries.push(name.clone());
            g.txt.get(&name).cloned()
        };
        let q = &buf[..qend];
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&q[..2]);
        let rd = q[2] & 1;
        let found = text.is_some() && qtype == 16;
        out.push(0x84 | rd); // QR, AA, RD as asked
        out.push(if text.is_some() { 0 } else { 3 }); // NOERROR / NXDOMAIN
        out.extend_from_slice(&[0, 1, 0, u8::from(found), 0, 0, 0, 0]);
        out.extend_from_slice(&q[12..]);
        if let (true, Some(t)) = (found, text) {
            let t = &t.as_bytes()[..t.len().min(255)];
            out.extend_from_slice(&[0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 0]);
            out.extend_from_slice(&u16::try_from(t.len() + 1).unwrap_or(0).to_be_bytes());
            out.push(t.len() as u8);
            out.extend_from_slice(t);
        }
        let _ = udp.send_to(&out, peer).await;
    }
}

/// The question of a DNS query: (lower-case name without the final dot, qtype, end offset).
fn question(msg: &[u8]) -> Option<(String, u16, usize)> {
    if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]);
    msg.get(at + 3)?;
    Some((labels.join("."), qtype, at + 4))
}

type Chunk = Result<Vec<u8>, std::io::Error>;

/// A stream of `chunks`, `ms` milliseconds apart.
fn futures_stream(
    chunks: Vec<Chunk>,
    ms: u64,
) -> impl futures_util::Stream<Item = Chunk> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(1);
    tokio::spawn(async move {
        for c in chunks {
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if tx.send(c).await.is_err() {
                return;
            }
        }
    });
    Receiver(rx)
}

/// `first`, then zeros forever, 64 KiB at a time, until the client goes away.
fn async_stream_endless(
    first: Vec<u8>,
) -> impl futures_util::Stream<Item = Chunk> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(1);
    tokio::spawn(async move {
        if tx.send(Ok(first)).await.is_err() {
            return;
        }
        while tx.send(Ok(vec![0; 64 << 10])).await.is_ok() {}
    });
    Receiver(rx)
}

struct Receiver(tokio::sync::mpsc::Receiver<Chunk>);

impl futures_util::Stream for Receiver {
    type Item = Chunk;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for t in [0u64, 1_624_388_302, 1_700_000_000, 951_782_400] {
            assert_eq!(parse_httpdate(&http_date(t)), Some(t), "{}", http_date(t));
        }
        assert_eq!(http_date(1_624_388_302), "Tue, 22 Jun 2021 18:58:22 GMT");
    }
}
