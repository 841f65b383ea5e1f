//! The file handler: flat names of the current snapshot, `local_*` files and the manifest, with
//! HEAD, single ranges, conditional requests and caching headers.

use std::future::Future;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use vdb_proto::{ErrorCode, MANIFEST_PATH};

use crate::app::{App, api_error};
use crate::store::{CacheClass, Entry};

/// Chunk size for streaming large files. A connection holds at most one chunk being read, one
/// waiting and hyper's write buffer (`max_buf_size`), so a slow reader costs well under a
/// megabyte.
const CHUNK: usize = 256 * 1024;

/// Why a request path names nothing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BadPath {
    /// Malformed: encoded bytes, `..`, backslashes, control characters (400).
    Malformed,
    /// Not a served name (404).
    NotFound,
}

/// The flat file name a request path names.
pub(crate) fn file_name(path: &str) -> Result<&str, BadPath> {
    let rest = path.strip_prefix('/').ok_or(BadPath::Malformed)?;
    if rest.contains("..")
        || rest
            .bytes()
            .any(|b| b == b'%' || b == b'\\' || b.is_ascii_control() || b >= 0x7f)
    {
        return Err(BadPath::Malformed);
    }
    if rest.is_empty() || rest.contains('/') {
        return Err(BadPath::NotFound);
    }
    let ok = rest.len() <= 128
        && !rest.starts_with('.')
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(rest) } else { Err(BadPath::NotFound) }
}

/// A single byte range, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeAsk {
    /// No usable range: send the whole file (absent, multi-range, or not `bytes=`).
    Whole,
    /// One satisfiable range.
    Part(Span),
    /// 416.
    Unsatisfiable,
}

pub(crate) fn parse_range(value: &str, size: u64) -> RangeAsk {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    if a.is_empty() {
        let Some(n) = num(b) else {
            return RangeAsk::Whole;
        };
        if n == 0 || size == 0 {
            return RangeAsk::Unsatisfiable;
        }
        let n = n.min(size);
        return RangeAsk::Part(Span {
            start: size - n,
            end: size - 1,
        });
    }
    let Some(start) = num(a) else {
        return RangeAsk::Whole;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match num(b) {
            Some(e) if e >= start => e,
            _ => return RangeAsk::Whole,
        }
    };
    if start >= size {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part(Span {
        start,
        end: end.min(size - 1),
    })
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

fn parse_date(v: &HeaderValue) -> Option<u64> {
    let t = httpdate::parse_http_date(v.to_str().ok()?).ok()?;
    Some(crate::store::secs(t))
}

/// Whether the client's copy is current (304).
fn not_modified(h: &HeaderMap, entry: &Entry) -> bool {
    if let Some(inm) = h.get(header::IF_NONE_MATCH) {
        return inm.to_str().is_ok_and(|v| etag_matches(v, &entry.etag));
    }
    h.get(header::IF_MODIFIED_SINCE).is_some_and(|ims| {
        // The common case (the client echoes our Last-Modified) needs no date parsing.
        ims.as_bytes() == entry.modified_value.as_bytes()
            || parse_date(ims).is_some_and(|t| entry.modified <= t)
    })
}

/// Whether `If-Range` (if any) lets the range apply.
fn if_range_ok(h: &HeaderMap, etag: &str, modified: u64) -> bool {
    let Some(v) = h.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(s) = v.to_str() else { return false };
    let s = s.trim();
    if s.starts_with('"') {
        s == etag
    } else if s.starts_with("W/") {
        false
    } else {
        parse_date(v) == Some(modified)
    }
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".json") {
        "application/json"
    } else if name == "timestamp" || name.ends_with(".txt") || name.ends_with("SUMS") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// Streams `len` bytes of `path` from `start`.
async fn file_body(path: PathBuf, start: u64, len: u64) -> std::io::Result<Body> {
    let mut f = tokio::fs::File::open(&path).await?;
    if start > 0 {
        f.seek(SeekFrom::Start(start)).await?;
    }
    let mut left = len;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    tokio::spawn(async move {
        let mut f = f;
        while left > 0 {
            let want = (CHUNK as u64).min(left) as usize;
            let mut buf = bytes::BytesMut::with_capacity(want);
            let r = (&mut f).take(want as u64).read_buf(&mut buf).await;
            let item = match r {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while serving",
                )),
                Ok(n) => {
                    left -= n as u64;
                    Ok(buf.freeze())
                }
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    Ok(Body::from_stream(tokio_stream_from(rx)))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A file response body: bytes held in memory (no allocation for the body itself), or a
/// stream from disk / an error body.
pub(crate) type FileBody = http_body_util::Either<Full<Bytes>, Body>;

fn memory(b: Bytes) -> FileBody {
    http_body_util::Either::Left(Full::new(b))
}

fn empty() -> FileBody {
    memory(Bytes::new())
}

fn boxed(r: Response<Body>) -> Response<FileBody> {
    r.map(http_body_util::Either::Right)
}

/// What the file handler answers: at once (everything served from memory, all errors), or
/// after opening a file on disk.
pub(crate) enum Reply {
    /// The response, statistics already counted.
    Ready(Response<FileBody>),
    /// A response still to stream from disk.
    Open(Pin<Box<dyn Future<Output = Response<FileBody>> + Send>>),
}

impl Reply {
    /// The response (opening the file if needed).
    pub(crate) async fn response(self) -> Response<FileBody> {
        match self {
            Self::Ready(r) => r,
            Self::Open(f) => f.await,
        }
    }
}

/// The file handler (every path not routed elsewhere). Memory answers are built without
/// awaiting, cloning the `App` or allocating the file name.
pub(crate) fn serve<B>(app: &Arc<App>, req: Request<B>) -> Reply {
    let (req, _) = req.into_parts();
    let a = respond(app, &req);
    match a.out {
        Out::Ready(resp) => {
            count(app, &req.headers, a.status, a.bytes, a.name);
            Reply::Ready(resp)
        }
        Out::Disk(disk) => {
            let app = app.clone();
            let name = a.name.unwrap_or_default().to_owned();
            Reply::Open(Box::pin(async move {
                let (status, bytes, resp) = disk.open(&app, &name).await;
                let name = (status != 503).then_some(name.as_str());
                count(&app, &req.headers, status, bytes, name);
                resp
            }))
        }
    }
}

/// Metrics and statistics of one response.
fn count(app: &App, h: &HeaderMap, status: u16, bytes: u64, name: Option<&str>) {
    app.metrics.response(status);
    if let Some(name) = name {
        let ua = h
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        app.metrics.served_bytes.inc_by(bytes);
        app.stats.record(app.clock.now(), ua, name, status, bytes);
    }
}

/// A response whose body is still to be opened on disk.
struct Disk {
    head: Response<()>,
    status: u16,
    path: PathBuf,
    local: bool,
    etag: String,
    start: u64,
    len: u64,
}

impl Disk {
    async fn open(self, app: &App, name: &str) -> (u16, u64, Response<FileBody>) {
        let (start, len) = (self.start, self.len);
        let mut opened = file_body(self.path, start, len).await;
        if opened.is_err() && !self.local {
            // A sync switched snapshots and removed this one between lookup and open: the
            // same content (same ETag) is in the new one.
            let again = app.snapshot().and_then(|s| {
                s.files
                    .get(name)
                    .filter(|e| e.etag == self.etag)
                    .map(|e| e.path.clone())
            });
            if let Some(p) = again {
                opened = file_body(p, start, len).await;
            }
        }
        match opened {
            Ok(b) => (
                self.status,
                len,
                self.head.map(|()| http_body_util::Either::Right(b)),
            ),
            Err(e) => {
                tracing::error!(file = %name, error = %e, "cannot open a served file");
                let a = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "the file is being replaced; retry",
                );
                let Out::Ready(r) = a.out else {
                    unreachable!("errors are ready")
                };
                (a.status, 0, r)
            }
        }
    }
}

enum Out {
    Ready(Response<FileBody>),
    Disk(Disk),
}

/// Status, body bytes, the statistics name (none: not counted), and the response.
struct Answer<'r> {
    status: u16,
    bytes: u64,
    name: Option<&'r str>,
    out: Out,
}

fn error(status: StatusCode, code: ErrorCode, msg: &str) -> Answer<'static> {
    Answer {
        status: status.as_u16(),
        bytes: 0,
        name: None,
        out: Out::Ready(boxed(api_error(status, code, msg))),
    }
}

/// Statistics name for any request of a file that is not served (one row, whatever the name,
/// so that random names cannot grow the statistics).
pub(crate) const NOT_FOUND_NAME: &str = "(not found)";

/// Statistics name of the objects a hub serves its leaves by hash.
pub(crate) const HUB_OBJECTS_NAME: &str = "(hub objects)";

fn not_found() -> Answer<'static> {
    Answer {
        name: Some(NOT_FOUND_NAME),
        ..error(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such file")
    }
}

fn respond<'r>(app: &App, req: &'r axum::http::request::Parts) -> Answer<'r> {
    let method = &req.method;
    if *method != Method::GET && *method != Method::HEAD {
        let mut a = error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "only GET and HEAD are served here",
        );
        if let Out::Ready(r) = &mut a.out {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        return a;
    }
    if !app.host_allowed(&req.headers) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::UnknownHost,
            "this mirror does not serve that host name",
        );
    }
    let path = req.uri.path();
    // The lookups hold the read locks while the (I/O-free) answer is built: no reference
    // count of a shared snapshot or entry is touched per request.
    if path == MANIFEST_PATH {
        let current = app.current.read().unwrap_or_else(|e| e.into_inner());
        return match current.as_ref() {
            Some(s) => answer(app, req, "manifest.json", &s.envelope, false),
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NotSynced,
                "this mirror has not synced yet",
            ),
        };
    }
    if let Some(sha) = path
        .strip_prefix(vdb_proto::paths::OBJECTS)
        .and_then(|r| r.strip_prefix('/'))
    {
        // A hub serves its leaves the objects of the snapshot it serves, by hash, as the
        // masters do (with ranges), without credentials: the same bytes are public under
        // their file names, and every leaf checks them against the master-signed manifest.
        // Segment maps too (their hashes are in that manifest).
        let current = app.current.read().unwrap_or_else(|e| e.into_inner());
        let entry = current.as_ref().and_then(|s| {
            s.manifest
                .files
                .iter()
                .find(|f| f.sha256 == sha)
                .and_then(|f| s.files.get(&f.name))
                .or_else(|| s.maps.get(sha))
        });
        return match entry {
            Some(e) => answer(app, req, HUB_OBJECTS_NAME, e, false),
            None => not_found(),
        };
    }
    let n = match file_name(path) {
        Ok(n) => n,
        Err(BadPath::Malformed) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadPath,
                "malformed file path",
            );
        }
        Err(BadPath::NotFound) => return not_found(),
    };
    if n.starts_with("local_") {
        let local = app.local.read().unwrap_or_else(|e| e.into_inner());
        match local.get(n) {
            Some(e) => answer(app, req, n, e, true),
            None => not_found(),
        }
    } else {
        let current = app.current.read().unwrap_or_else(|e| e.into_inner());
        match current.as_ref().and_then(|s| s.files.get(n)) {
            Some(e) => answer(app, req, n, e, false),
            None => not_found(),
        }
    }
}

/// `bytes A-B/SIZE` (or `bytes */SIZE`) without a heap-allocated intermediate string.
fn content_range(span: Option<Span>, size: u64) -> HeaderValue {
    use std::io::Write as _;
    let mut buf = [0u8; 80];
    let mut w = &mut buf[..];
    let _ = match span {
        Some(s) => write!(w, "bytes {}-{}/{}", s.start, s.end, size),
        None => write!(w, "bytes */{size}"),
    };
    let n = 80 - w.len();
    HeaderValue::from_bytes(&buf[..n]).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

fn answer<'r>(
    app: &App,
    req: &axum::http::request::Parts,
    name: &'r str,
    entry: &Entry,
    local: bool,
) -> Answer<'r> {
    let h = &req.headers;
    let mut hm = HeaderMap::with_capacity(8);
    hm.insert(header::ETAG, entry.etag_value.clone());
    hm.insert(header::LAST_MODIFIED, entry.modified_value.clone());
    hm.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    hm.insert(
        header::CACHE_CONTROL,
        match entry.cache {
            CacheClass::Immutable => {
                HeaderValue::from_static("public, max-age=31536000, immutable")
            }
            CacheClass::Mutable => app.mutable_cache.clone(),
        },
    );
    let ready = |status: StatusCode, bytes: u64, hm: HeaderMap, body: FileBody| {
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = hm;
        Answer {
            status: status.as_u16(),
            bytes,
            name: Some(name),
            out: Out::Ready(r),
        }
    };
    if not_modified(h, entry) {
        return ready(StatusCode::NOT_MODIFIED, 0, hm, empty());
    }
    hm.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    let ask = match h.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) if if_range_ok(h, &entry.etag, entry.modified) => parse_range(v, entry.size),
        _ => RangeAsk::Whole,
    };
    let (status, start, len) = match ask {
        RangeAsk::Whole => {
            hm.insert(header::CONTENT_LENGTH, entry.size_value.clone());
            (StatusCode::OK, 0, entry.size)
        }
        RangeAsk::Part(s) => {
            let len = s.end - s.start + 1;
            hm.insert(header::CONTENT_RANGE, content_range(Some(s), entry.size));
            hm.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            (StatusCode::PARTIAL_CONTENT, s.start, len)
        }
        RangeAsk::Unsatisfiable => {
            hm.insert(header::CONTENT_RANGE, content_range(None, entry.size));
            return ready(StatusCode::RANGE_NOT_SATISFIABLE, 0, hm, empty());
        }
    };
    if req.method == Method::HEAD {
        return ready(status, 0, hm, empty());
    }
    let end = (start + len) as usize;
    if let Some(d) = &entry.data {
        return ready(status, len, hm, memory(d.slice(start as usize..end)));
    }
    if end <= entry.head.len() {
        return ready(
            status,
            len,
            hm,
            memory(entry.head.slice(start as usize..end)),
        );
    }
    let mut head = Response::new(());
    *head.status_mut() = status;
    *head.headers_mut() = hm;
    Answer {
        status: status.as_u16(),
        bytes: len,
        name: Some(name),
        out: Out::Disk(Disk {
            head,
            status: status.as_u16(),
            path: entry.path.clone(),
            local,
            etag: entry.etag.clone(),
            start,
            len,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_name("/daily.cvd"), Ok("daily.cvd"));
        assert_eq!(file_name("/local_logo.png"), Ok("local_logo.png"));
        assert_eq!(file_name("/"), Err(BadPath::NotFound));
        assert_eq!(file_name("/a/b"), Err(BadPath::NotFound));
        assert_eq!(file_name("/.hidden"), Err(BadPath::NotFound));
        for bad in [
            "/..",
            "/../etc/passwd",
            "/a%2fb",
            "/a%00",
            "/a\\b",
            "/%2e%2e",
        ] {
            assert_eq!(file_name(bad), Err(BadPath::Malformed), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        let p = |s, e| RangeAsk::Part(Span { start: s, end: e });
        assert_eq!(parse_range("bytes=0-511", 1000), p(0, 511));
        assert_eq!(parse_range("bytes=0-511", 100), p(0, 99));
        assert_eq!(parse_range("bytes=990-", 1000), p(990, 999));
        assert_eq!(parse_range("bytes=-5", 1000), p(995, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), p(0, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=5-1", 1000), RangeAsk::Whole);
        assert_eq!(parse_range("items=0-1", 1000), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=x-1", 1000), RangeAsk::Whole);
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"a\"", "\"a\""));
        assert!(etag_matches("W/\"a\", \"b\"", "\"a\""));
        assert!(etag_matches("*", "\"a\""));
        assert!(!etag_matches("\"b\"", "\"a\""));
    }
}
