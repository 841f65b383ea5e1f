//! vdb-fetch against real local HTTP servers on 127.0.0.1:0: axum for well-behaved and
//! hostile answers, raw TCP for a truncated body and a forward proxy.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vdb_fetch::{Client, Downloaded, Error, ErrorKind, Expect, ProxyConfig, RetryPolicy};

const HELLO: &[u8] = b"hello, world\n";
const HELLO_SHA: &str = "853ff93762a06ddbf722c4ebe9ddd66d8f63ddaea97f521c3ecc20da7c976020";
const ETAG: &str = "\"v1\"";
const BIG: usize = 300 << 10;

fn big() -> Vec<u8> {
    (0..BIG).map(|i| (i % 251) as u8).collect()
}

/// More than two of `to_file`'s 4 MiB writes, and not a multiple of them.
const HUGE: usize = (9 << 20) + 7;

fn huge() -> Vec<u8> {
    (0..HUGE).map(|i| (i % 253) as u8).collect()
}

async fn serve(router: Router) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    addr
}

fn chunks(n: usize) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::repeat_with(move || Ok(Bytes::from(vec![b'x'; n])))
}

async fn server() -> (SocketAddr, Arc<AtomicU32>) {
    let flaky = Arc::new(AtomicU32::new(0));
    let f2 = flaky.clone();
    let lm = httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let router = Router::new()
        .route(
            "/hello",
            get(move |h: HeaderMap| {
                let lm = lm.clone();
                async move {
                    let inm = h.get(header::IF_NONE_MATCH).is_some_and(|v| v == ETAG);
                    let ims = h
                        .get(header::IF_MODIFIED_SINCE)
                        .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
                        .is_some_and(|t| t >= httpdate::parse_http_date(&lm).unwrap());
                    let mut r = if inm || ims {
                        StatusCode::NOT_MODIFIED.into_response()
                    } else {
                        HELLO.into_response()
                    };
                    r.headers_mut().insert(header::ETAG, ETAG.parse().unwrap());
                    r.headers_mut()
                        .insert(header::LAST_MODIFIED, lm.parse().unwrap());
                    r
                }
            }),
        )
        .route("/big", get(|| async { big() }))
        .route("/huge", get(|| async { huge() }))
        .route(
            // Announces no length and never ends.
            "/endless",
            get(|| async { Body::from_stream(chunks(64 << 10)) }),
        )
        .route(
            "/slow",
            get(|| async {
                let s = futures_util::stream::once(async {
                    Ok::<_, Infallible>(Bytes::from_static(b"first"))
                })
                .chain(futures_util::stream::pending());
                Body::from_stream(s)
            }),
        )
        .route(
            "/range",
            get(|h: HeaderMap| async move {
                let r = header_text(&h, header::RANGE, "none");
                (
                    StatusCode::PARTIAL_CONTENT,
                    format!("{r}{}", "-".repeat(1000)),
                )
            }),
        )
        .route(
            "/seconds",
            get(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "120")],
                    "slow down",
                )
            }),
        )
        .route(
            "/date",
            get(|| async {
                let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, when)],
                    "",
                )
            }),
        )
        .route(
            "/forbidden",
            get(|| async { (StatusCode::FORBIDDEN, "{\"code\":\"old_agent\"}") }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/down",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    "",
                )
            }),
        )
        .route(
            "/flaky",
            get(move || {
                let n = f2.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        StatusCode::BAD_GATEWAY.into_response()
                    } else {
                        HELLO.into_response()
                    }
                }
            }),
        )
        .route(
            "/redirect",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/hello")]) }),
        )
        .route(
            "/echo-agent",
            get(|h: HeaderMap| async move {
                let ua = header_text(&h, header::USER_AGENT, "");
                let conn = header_text(&h, header::CONNECTION, "");
                format!("{ua}|{conn}")
            }),
        );
    (serve(router).await, flaky)
}

fn client() -> Client {
    Client::builder("vdb-fetch-test/1")
        .read_timeout(Some(Duration::from_secs(20)))
        .build()
        .unwrap()
}

/// Reads the body of `GET url` with `c` as `want` expects; the request itself must succeed.
async fn fetch(c: &Client, url: &str, want: &Expect) -> Result<Vec<u8>, Error> {
    c.get(url).send().await.unwrap().bytes(want).await
}

/// Saves the body of `GET url` with `c` to `path` as `want` expects; the request itself must
/// succeed.
async fn fetch_to(c: &Client, url: &str, path: &Path, want: &Expect) -> Result<Downloaded, Error> {
    c.get(url).send().await.unwrap().to_file(path, want).await
}

/// An address on which nothing listens (any more).
fn closed_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A raw TCP server on 127.0.0.1:0 that hands each connection, one at a time, to `answer`.
async fn serve_raw<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            answer(s).await;
        }
    });
    addr
}

/// The value of header `name` in `h` as text, or `default`.
fn header_text(h: &HeaderMap, name: header::HeaderName, default: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(default)
        .to_owned()
}

#[tokio::test]
async fn downloads_check_size_and_digest_and_report_progress() {
    let (addr, _) = server().await;
    let c = client();
    let url = format!("http://{addr}/hello");
    let body = fetch(&c, &url, &Expect::exactly(13, HELLO_SHA))
        .await
        .unwrap();
    assert_eq!(body, HELLO);

    let data = big();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let want = Expect::exactly(BIG as u64, &vdb_proto::sha256_hex(&data))
        .on_progress(move |p| s2.lock().unwrap().push(p));
    let got = fetch(&c, &format!("http://{addr}/big"), &want)
        .await
        .unwrap();
    assert_eq!(got, data);
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.windows(2).all(|w| w[0].received < w[1].received),
        "progress only grows"
    );
    let last = seen.last().unwrap();
    assert_eq!((last.received, last.total), (BIG as u64, Some(BIG as u64)));
}

#[tokio::test]
async fn a_file_larger_than_the_write_buffer_arrives_whole_and_a_cut_after_a_write_leaves_nothing()
{
    let (addr, _) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let path = dir.path().join("huge.tmp");
    let data = huge();
    let want = Expect::exactly(HUGE as u64, &vdb_proto::sha256_hex(&data));
    let d = fetch_to(&c, &format!("http://{addr}/huge"), &path, &want)
        .await
        .unwrap();
    assert_eq!(d.size, HUGE as u64);
    assert!(
        std::fs::read(&path).unwrap() == data,
        "the file holds every byte, in order"
    );
    std::fs::remove_file(&path).unwrap();
    // Cut at 9 MiB: two 4 MiB writes had created and filled the file by then.
    let e = fetch_to(
        &c,
        &format!("http://{addr}/endless"),
        &path,
        &Expect::at_most(9 << 20),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_cap() {
    let (addr, _) = server().await;
    let t0 = Instant::now();
    let e = fetch(
        &client(),
        &format!("http://{addr}/endless"),
        &Expect::at_most(1 << 20),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert!(!e.is_retryable());
    assert!(t0.elapsed() < Duration::from_secs(60));
    // An announced length above the cap is refused before reading.
    let e = fetch(
        &client(),
        &format!("http://{addr}/big"),
        &Expect::at_most(1000),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
}

#[tokio::test]
async fn a_wrong_digest_or_size_is_refused_and_the_file_removed() {
    let (addr, _) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let url = format!("http://{addr}/hello");
    let path = dir.path().join("obj.tmp");
    let wrong = "0".repeat(64);
    for (want, kind) in [
        (Expect::exactly(13, &wrong), ErrorKind::Corrupt),
        (Expect::exactly(12, HELLO_SHA), ErrorKind::TooLarge),
        (Expect::at_most(100).size(20), ErrorKind::Network),
    ] {
        let e = fetch_to(&c, &url, &path, &want).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        assert!(!path.exists(), "{e}: the temp file is gone");
    }
    let e = fetch_to(
        &c,
        &format!("http://{addr}/endless"),
        &path,
        &Expect::at_most(1 << 20),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );

    let d = fetch_to(&c, &url, &path, &Expect::exactly(13, HELLO_SHA))
        .await
        .unwrap();
    assert_eq!((d.size, d.sha256.as_str()), (13, HELLO_SHA));
    assert_eq!(std::fs::read(&path).unwrap(), HELLO);
}

/// A server that announces 1000 bytes, sends 10 and closes.
#[tokio::test]
async fn a_truncated_body_is_a_retryable_network_error() {
    let addr = serve_raw(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
            .await;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tmp");
    let e = fetch_to(
        &client(),
        &format!("http://{addr}/x"),
        &path,
        &Expect::at_most(1 << 20),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert!(e.is_retryable());
    assert!(!path.exists());
}

#[tokio::test]
async fn a_stalled_body_times_out() {
    let (addr, _) = server().await;
    let c = Client::builder("t")
        .read_timeout(Some(Duration::from_millis(300)))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let e = fetch(
        &c,
        &format!("http://{addr}/slow"),
        &Expect::at_most(1 << 20),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_retryable());
    assert!(t0.elapsed() >= Duration::from_millis(300));
    // A whole-request timeout on the request does the same.
    let e = client()
        .get(&format!("http://{addr}/slow"))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap()
        .bytes(&Expect::at_most(1 << 20))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
}

#[tokio::test]
async fn statuses_are_typed_with_retry_after_in_both_forms() {
    let (addr, _) = server().await;
    let c = client();
    let get = |p: &str| c.get(&format!("http://{addr}{p}")).send();

    // (path, kind, whether to retry, the body kept with the error where one is checked)
    let statuses: [(&str, ErrorKind, bool, Option<&[u8]>); 4] = [
        (
            "/seconds",
            ErrorKind::RateLimited {
                retry_after: Some(Duration::from_secs(120)),
            },
            true,
            Some(b"slow down"),
        ),
        (
            "/forbidden",
            ErrorKind::Forbidden,
            false,
            Some(b"{\"code\":\"old_agent\"}"),
        ),
        ("/missing", ErrorKind::NotFound, false, None),
        (
            "/down",
            ErrorKind::Unavailable {
                retry_after: Some(Duration::from_secs(1)),
            },
            true,
            None,
        ),
    ];
    for (path, kind, retryable, body) in statuses {
        let e = get(path).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{path}");
        assert_eq!(e.is_retryable(), retryable, "{path}");
        if body.is_some() {
            assert_eq!(e.body(), body, "{path}");
        }
    }
    let e = get("/down").await.unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");

    let e = get("/date").await.unwrap_err();
    let ErrorKind::RateLimited {
        retry_after: Some(d),
    } = e.kind()
    else {
        panic!("{e:?}")
    };
    assert!(
        d > Duration::from_secs(3500) && d <= Duration::from_secs(3600),
        "{d:?}"
    );

    // Refused connection.
    let closed = closed_addr();
    let e = c
        .get(&format!("http://{closed}/"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert!(e.is_retryable());

    let e = c.get("not a url").send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn retries_follow_the_policy() {
    let (addr, flaky) = server().await;
    let c = client();
    let policy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_total: Duration::from_secs(30),
    };
    let url = format!("http://{addr}/flaky");
    let attempts = AtomicU32::new(0);
    let body = policy
        .run(|_| async {
            attempts.fetch_add(1, Ordering::SeqCst);
            c.get(&url).send().await?.bytes(&Expect::at_most(100)).await
        })
        .await
        .unwrap();
    assert_eq!(body, HELLO);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(flaky.load(Ordering::SeqCst), 3);

    // A 404 is not retried; a 429 asking for two minutes is a cool-down, not a retry.
    for path in ["/missing", "/seconds"] {
        let n = AtomicU32::new(0);
        let e = policy
            .run(|_| async {
                n.fetch_add(1, Ordering::SeqCst);
                c.get(&format!("http://{addr}{path}")).send().await
            })
            .await
            .unwrap_err();
        assert_eq!(n.load(Ordering::SeqCst), 1, "{e}");
    }
}

#[tokio::test]
async fn redirects_are_refused_unless_allowed() {
    let (addr, _) = server().await;
    let url = format!("http://{addr}/redirect");
    let e = client().get(&url).send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected { status: 302 }, "{e}");
    let c = Client::builder("t").redirects(2).build().unwrap();
    let body = fetch(&c, &url, &Expect::at_most(100)).await.unwrap();
    assert_eq!(body, HELLO);
}

#[tokio::test]
async fn conditional_and_range_requests() {
    let (addr, _) = server().await;
    let c = client();
    let url = format!("http://{addr}/hello");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.header(header::ETAG), Some(ETAG));
    let lm = r.last_modified().unwrap();
    let r = c.get(&url).if_none_match(ETAG).send().await.unwrap();
    assert!(r.not_modified());
    let r = c.get(&url).if_modified_since(lm).send().await.unwrap();
    assert!(r.not_modified());
    let r = c
        .get(&url)
        .if_modified_since(lm - Duration::from_secs(1))
        .send()
        .await
        .unwrap();
    assert!(!r.not_modified());
    // A 304 to a request that did not ask for one is an error.
    let e = c
        .get(&url)
        .header(header::IF_NONE_MATCH, ETAG)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected { status: 304 });
    let head = c
        .get(&format!("http://{addr}/range"))
        .range(0, Some(511))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::PARTIAL_CONTENT);
    let head = head.prefix(20).await.unwrap();
    assert_eq!(head, b"bytes=0-511---------");
}

#[tokio::test]
async fn user_agent_and_no_keep_alive() {
    let (addr, _) = server().await;
    let c = Client::builder("ClamAV/1.4.6 vdb-update/0")
        .no_keep_alive()
        .http1_only()
        .build()
        .unwrap();
    let body = fetch(
        &c,
        &format!("http://{addr}/echo-agent"),
        &Expect::at_most(200),
    )
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "ClamAV/1.4.6 vdb-update/0|close"
    );
}

/// Reads one request's head (to the blank line) from `s`; false when the peer closed first.
async fn read_head(s: &mut tokio::net::TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// The keep-alive race: the server closes a pooled connection (its idle timeout) just as the
/// client sends the next request on it. A GET is sent once more on a new connection and
/// succeeds; a POST is not (the server may have acted on it) and fails as a network error.
#[tokio::test]
async fn a_get_on_a_connection_closed_as_it_is_reused_is_sent_again() {
    let conns = Arc::new(AtomicU32::new(0));
    let c2 = conns.clone();
    let addr = serve_raw(move |mut s| {
        let first = c2.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            // Every connection answers its first request and keeps alive; the first one then
            // reads the next request and closes without a word.
            if !read_head(&mut s).await {
                return;
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            if first {
                let _ = read_head(&mut s).await;
            }
        }
    })
    .await;
    let c = client();
    let url = format!("http://{addr}/x");
    for _ in 0..2 {
        let body = fetch(&c, &url, &Expect::at_most(10)).await.unwrap();
        assert_eq!(body, b"ok");
    }
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "one new connection for the second GET"
    );

    // The same race for a POST: no second try.
    conns.store(0, Ordering::SeqCst);
    let c = client();
    let r = c.post(&url).body("a").send().await.unwrap();
    assert_eq!(r.bytes(&Expect::at_most(10)).await.unwrap(), b"ok");
    let e = c.post(&url).body("b").send().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Network, "{e}");
    assert_eq!(conns.load(Ordering::SeqCst), 1, "a POST is not sent twice");
}

/// A forward proxy that wants credentials and answers every request itself, recording it.
#[tokio::test]
async fn requests_go_through_the_proxy_with_credentials() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let proxy = serve_raw(move |mut s| {
        let s2 = s2.clone();
        async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf).to_string();
            let authorised = head
                .to_ascii_lowercase()
                .contains("proxy-authorization: basic dxnlcjpwqhnz");
            s2.lock()
                .unwrap()
                .push(head.lines().next().unwrap_or("").to_owned());
            let resp: &[u8] = if authorised {
                b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nproxied"
            } else {
                b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            };
            let _ = s.write_all(resp).await;
        }
    })
    .await;
    let with = Client::builder("t")
        .proxy(Some(
            ProxyConfig::new(format!("http://{proxy}")).with_credentials("user", "p@ss"),
        ))
        .build()
        .unwrap();
    let body = fetch(
        &with,
        "http://db.example.invalid/daily.cvd",
        &Expect::at_most(100),
    )
    .await
    .unwrap();
    assert_eq!(body, b"proxied");
    let without = Client::builder("t")
        .proxy(Some(ProxyConfig::new(format!("http://{proxy}"))))
        .build()
        .unwrap();
    let e = without
        .get("http://db.example.invalid/daily.cvd")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Rejected { status: 407 });
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET http://db.example.invalid/daily.cvd HTTP/1.1"; 2],
        "absolute-form requests to the proxy"
    );
    let dbg = format!(
        "{:?}",
        ProxyConfig::new("http://u:pw@h:1").with_credentials("user", "p@ss")
    );
    assert!(!dbg.contains("p@ss") && !dbg.contains("pw"), "{dbg}");
}

#[tokio::test]
async fn errors_never_show_secrets() {
    let (addr, _) = server().await;
    let c = client();
    let e = c
        .get(&format!("http://user:hunter2@{addr}/missing?token=s3cr3t"))
        .send()
        .await
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cr3t"),
        "{shown}"
    );
    let e = c
        .post(&format!("http://{addr}/hooks/T0/s3cr3t"))
        .secret_url()
        .json_body("{}")
        .send()
        .await
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains(&addr.to_string()), "{shown}");
    // Also for transport errors, which reqwest would print with the URL.
    let closed = closed_addr();
    let e = c
        .post(&format!("http://{closed}/hooks/s3cr3t?k=s3cr3t"))
        .secret_url()
        .send()
        .await
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
}

#[test]
fn ca_files_are_read_once_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let e = vdb_fetch::read_ca(&dir.path().join("none.pem")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("none.pem"), "{e}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    assert_eq!(
        vdb_fetch::read_ca(&empty).unwrap_err().kind(),
        ErrorKind::Config
    );
}

/// Downloads run in spawned tasks: every reading future is `Send`.
#[tokio::test]
async fn downloads_run_in_spawned_tasks() {
    let (addr, _) = server().await;
    let c = client();
    let url = format!("http://{addr}/hello");
    let task = tokio::spawn(async move {
        let mut n = 0;
        c.get(&url)
            .send()
            .await?
            .for_each_chunk(&Expect::at_most(100), |chunk| {
                n += chunk.len();
                Ok(())
            })
            .await
            .map(|d| (d.size, n))
    });
    assert_eq!(task.await.unwrap().unwrap(), (13, 13));
}
