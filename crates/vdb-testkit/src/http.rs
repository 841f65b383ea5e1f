//! HTTP from tests: a raw HTTP/1.1 GET (exact status and headers, no client library between),
//! a blocking GET for synchronous suites, and Prometheus text.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A raw `GET path` with `headers` over a fresh connection: (status, head, body). Panics on an
/// I/O error or a response without a header end.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    try_get(addr, path, headers).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// [`get`], with the I/O error instead of a panic.
pub fn try_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
    Ok((status, head, out[split + 4..].to_vec()))
}

/// The value of one series (`name` or `name{labels}`) in Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[cfg(feature = "net")]
thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime");
    // No pooled connections: servers are killed and restarted under the same address.
    static CLIENT: reqwest::Client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .expect("a test HTTP client");
}

/// Runs a future on this thread's runtime (synchronous suites only: not inside a runtime).
#[cfg(feature = "net")]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RT.with(|rt| rt.block_on(f))
}

/// The body of a 2xx answer to `GET url` (5 s time-out), else `None`; blocking.
#[cfg(feature = "net")]
pub fn fetch(url: &str) -> Option<Vec<u8>> {
    let client = CLIENT.with(Clone::clone);
    block_on(async {
        let r = client.get(url).send().await.ok()?.error_for_status().ok()?;
        Some(r.bytes().await.ok()?.to_vec())
    })
}

/// [`fetch`] for async tests.
#[cfg(feature = "net")]
pub async fn fetch_async(url: &str) -> Option<Vec<u8>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let r = client.get(url).send().await.ok()?.error_for_status().ok()?;
    Some(r.bytes().await.ok()?.to_vec())
}

/// `method url` with `headers` and an optional body: (status, body text), whatever the status;
/// panics if no answer comes (5 s time-out).
#[cfg(feature = "net")]
pub async fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut req = reqwest::Client::new()
        .request(method.clone(), url)
        .timeout(Duration::from_secs(5));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let text = r
        .text()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    (status, text)
}

/// POSTs the multipart `form` to `url`: the status and the JSON body (`Null` when the body is
/// not JSON), whatever the status; panics if no answer comes.
#[cfg(feature = "net")]
pub async fn post_form(url: &str, form: reqwest::multipart::Form) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(url)
        .multipart(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The body of `GET url` as text, whatever the status; panics if the request fails.
#[cfg(feature = "net")]
pub async fn get_text(url: &str) -> String {
    let r = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    r.text().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// A series at `base/metrics` (0 if absent or unreachable); blocking.
#[cfg(feature = "net")]
pub fn scrape(base: &str, series: &str) -> f64 {
    let body = fetch(&format!("{base}/metrics")).unwrap_or_default();
    metric(&String::from_utf8_lossy(&body), series).unwrap_or(0.0)
}
