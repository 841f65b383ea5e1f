//! The file handler: flat names of the current snapshot, `local_*` files and the manifest, with
//! HEAD, single ranges, conditional requests and caching headers.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use vdb_proto::MANIFEST_PATH;

use crate::app::{App, api_error};
use crate::store::CacheClass;

/// Chunk size for streaming large files.
const CHUNK: usize = 512 * 1024;

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
fn not_modified(h: &HeaderMap, entry: &crate::store::Entry) -> bool {
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
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
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

/// The file handler (every path not routed elsewhere).
pub(crate) async fn serve<B>(app: Arc<App>, req: Request<B>) -> Response<Body> {
    let (req, _) = req.into_parts();
    let (status, bytes, name, resp) = respond(&app, &req).await;
    app.metrics.response(status);
    if let Some(name) = name {
        let ua = req
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        app.metrics.served_bytes.inc_by(bytes);
        app.stats.record(app.clock.now(), ua, &name, status, bytes);
    }
    resp
}

type Answer = (u16, u64, Option<String>, Response<Body>);

fn error(status: StatusCode, code: &str, msg: &str) -> Answer {
    (status.as_u16(), 0, None, api_error(status, code, msg))
}

/// Statistics name for any request of a file that is not served (one row, whatever the name,
/// so that random names cannot grow the statistics).
pub(crate) const NOT_FOUND_NAME: &str = "(not found)";

fn not_found() -> Answer {
    let (s, b, _, r) = error(StatusCode::NOT_FOUND, "not_found", "no such file");
    (s, b, Some(NOT_FOUND_NAME.to_owned()), r)
}

async fn respond(app: &App, req: &axum::http::request::Parts) -> Answer {
    let method = &req.method;
    if *method != Method::GET && *method != Method::HEAD {
        let (s, b, n, mut r) = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only GET and HEAD are served here",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return (s, b, n, r);
    }
    if !app.host_allowed(&req.headers) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "unknown_host",
            "this mirror does not serve that host name",
        );
    }
    let path = req.uri.path();
    let snap = app.snapshot();
    let (name, entry, owned);
    if path == MANIFEST_PATH {
        let Some(s) = &snap else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_synced",
                "this mirror has not synced yet",
            );
        };
        name = "manifest.json".to_owned();
        entry = &s.envelope;
    } else {
        let n = match file_name(path) {
            Ok(n) => n,
            Err(BadPath::Malformed) => {
                return error(StatusCode::BAD_REQUEST, "bad_path", "malformed file path");
            }
            Err(BadPath::NotFound) => return not_found(),
        };
        if n.starts_with("local_") {
            let local = app.local.read().unwrap_or_else(|e| e.into_inner()).clone();
            match local.get(n) {
                Some(e) => owned = e.clone(),
                None => return not_found(),
            }
            entry = &owned;
        } else {
            match snap.as_ref().and_then(|s| s.files.get(n)) {
                Some(e) => entry = e,
                None => return not_found(),
            }
        }
        name = n.to_owned();
    }
    let mut resp = Response::builder()
        .header(header::ETAG, entry.etag_value.clone())
        .header(header::LAST_MODIFIED, entry.modified_value.clone())
        .header(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"))
        .header(
            header::CACHE_CONTROL,
            match entry.cache {
                CacheClass::Immutable => {
                    HeaderValue::from_static("public, max-age=31536000, immutable")
                }
                CacheClass::Mutable => app.mutable_cache.clone(),
            },
        );
    let h = &req.headers;
    if not_modified(h, entry) {
        let r = resp
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default();
        return (304, 0, Some(name), r);
    }
    resp = resp.header(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&name)),
    );
    let ask = match h.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) if if_range_ok(h, &entry.etag, entry.modified) => parse_range(v, entry.size),
        _ => RangeAsk::Whole,
    };
    let (status, span) = match ask {
        RangeAsk::Whole => (StatusCode::OK, None),
        RangeAsk::Part(s) => (StatusCode::PARTIAL_CONTENT, Some(s)),
        RangeAsk::Unsatisfiable => {
            let r = resp
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{}", entry.size))
                .body(Body::empty())
                .unwrap_or_default();
            return (416, 0, Some(name), r);
        }
    };
    let (start, len) = match span {
        Some(s) => {
            resp = resp.header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", s.start, s.end, entry.size),
            );
            (s.start, s.end - s.start + 1)
        }
        None => (0, entry.size),
    };
    resp = resp.status(status).header(header::CONTENT_LENGTH, len);
    if *method == Method::HEAD {
        let r = resp.body(Body::empty()).unwrap_or_default();
        return (status.as_u16(), 0, Some(name), r);
    }
    let end = (start + len) as usize;
    let body = if let Some(d) = &entry.data {
        Body::from(d.slice(start as usize..end))
    } else if end <= entry.head.len() {
        Body::from(entry.head.slice(start as usize..end))
    } else {
        let mut opened = file_body(entry.path.clone(), start, len).await;
        if opened.is_err() && !name.starts_with("local_") {
            // A sync switched snapshots and removed this one between lookup and open: the
            // same content (same ETag) is in the new one.
            if let Some(e) = app
                .snapshot()
                .and_then(|s| {
                    s.files
                        .get(&name)
                        .map(|e| (e.etag == entry.etag, e.path.clone()))
                })
                .filter(|(same, _)| *same)
            {
                opened = file_body(e.1, start, len).await;
            }
        }
        match opened {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(file = %name, error = %e, "cannot open a served file");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the file is being replaced; retry",
                );
            }
        }
    };
    let r = resp.body(body).unwrap_or_default();
    (status.as_u16(), len, Some(name), r)
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
