//! The client: one builder for every setting, requests, and answers checked for their status.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::{Error, SafeUrl, parse_retry_after};

/// Most bytes of an error answer's body kept in [`Error::Status`].
const ERROR_BODY_MAX: usize = 64 << 10;

/// Reads PEM root certificates (one or more) from a file: a private CA.
pub fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::config(format!("CA file {}: {e}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(&e))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no certificate in it"));
    }
    Ok(certs)
}

/// Reads a client certificate chain and its private key (PEM files) for TLS client
/// authentication.
pub fn read_identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, Error> {
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| Error::config(format!("client certificate {}: {e}", p.display())))
    };
    let mut pem = read(cert)?;
    pem.push(b'\n');
    pem.extend(read(key)?);
    reqwest::Identity::from_pem(&pem)
        .map_err(|e| Error::config(format!("client certificate {}: {e}", cert.display())))
}

/// An HTTP proxy, with optional Basic credentials. Its `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    url: String,
    credentials: Option<(String, String)>,
}

impl ProxyConfig {
    /// A proxy at `url` (`http://host:port`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            credentials: None,
        }
    }

    /// Authenticates to the proxy with Basic credentials.
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("url", &SafeUrl::new(self.url.clone()))
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .finish()
    }
}

/// Settings of a [`Client`], with safe defaults: connect timeout 10 s, read stall 30 s, no
/// whole-request timeout, no redirects, no proxy (the environment's proxy variables are
/// ignored), `TCP_NODELAY`, no cookies, no compression, the system's root certificates.
#[derive(Debug, Clone)]
#[must_use]
pub struct ClientBuilder {
    user_agent: String,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    roots: Vec<reqwest::Certificate>,
    roots_only: bool,
    identity: Option<reqwest::Identity>,
    proxy: Option<ProxyConfig>,
    redirects: usize,
    headers: HeaderMap,
    keep_alive: bool,
    http1_only: bool,
    resolve: Vec<(String, SocketAddr)>,
    #[cfg(feature = "dns")]
    dns_server: Option<SocketAddr>,
}

impl ClientBuilder {
    /// Settings for a client that sends `user_agent`.
    pub fn new(user_agent: impl Into<String>) -> Self {
        Self {
            user_agent: user_agent.into(),
            connect_timeout: Duration::from_secs(10),
            timeout: None,
            read_timeout: Some(Duration::from_secs(30)),
            roots: Vec::new(),
            roots_only: false,
            identity: None,
            proxy: None,
            redirects: 0,
            headers: HeaderMap::new(),
            keep_alive: true,
            http1_only: false,
            resolve: Vec::new(),
            #[cfg(feature = "dns")]
            dns_server: None,
        }
    }

    /// Time allowed to connect (TCP and TLS).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Time allowed for a whole request, body included (none by default; see also
    /// [`Request::timeout`]).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Longest wait for the next bytes of an answer (a stalled server); `None` to wait forever.
    pub fn read_timeout(mut self, t: Option<Duration>) -> Self {
        self.read_timeout = t;
        self
    }

    /// Trusts these root certificates besides the system's.
    pub fn add_roots(mut self, certs: &[reqwest::Certificate]) -> Self {
        self.roots.extend(certs.iter().cloned());
        self
    }

    /// Trusts only these root certificates (freshclam's `CURLOPT_CAINFO`).
    pub fn only_roots(mut self, certs: &[reqwest::Certificate]) -> Self {
        self.roots = certs.to_vec();
        self.roots_only = true;
        self
    }

    /// Authenticates with a client certificate ([`read_identity`]).
    pub fn identity(mut self, id: reqwest::Identity) -> Self {
        self.identity = Some(id);
        self
    }

    /// Sends every request through this proxy.
    pub fn proxy(mut self, proxy: Option<ProxyConfig>) -> Self {
        self.proxy = proxy;
        self
    }

    /// Follows at most `n` redirects (0, the default: a redirect is an error).
    pub fn redirects(mut self, n: usize) -> Self {
        self.redirects = n;
        self
    }

    /// Sends this header with every request.
    pub fn default_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// One connection per request, closed after it (`Connection: close`, no pool), as freshclam.
    pub fn no_keep_alive(mut self) -> Self {
        self.keep_alive = false;
        self
    }

    /// HTTP/1.1 only (no HTTP/2 upgrade over TLS).
    pub fn http1_only(mut self) -> Self {
        self.http1_only = true;
        self
    }

    /// Connects to `addr` whenever a URL names `host` (checking one address of a mirror).
    pub fn resolve(mut self, host: &str, addr: SocketAddr) -> Self {
        self.resolve.push((host.to_owned(), addr));
        self
    }

    /// Looks host names up at this DNS server (UDP, then TCP on truncation) instead of through
    /// the system's resolver; [`ClientBuilder::resolve`] pins still win.
    #[cfg(feature = "dns")]
    pub fn dns_server(mut self, server: SocketAddr) -> Self {
        self.dns_server = Some(server);
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client, Error> {
        let mut headers = self.headers;
        if !self.keep_alive {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let policy = if self.redirects == 0 {
            reqwest::redirect::Policy::none()
        } else {
            reqwest::redirect::Policy::limited(self.redirects)
        };
        let mut b = reqwest::Client::builder()
            .user_agent(self.user_agent)
            .default_headers(headers)
            .connect_timeout(self.connect_timeout)
            .redirect(policy)
            .tcp_nodelay(true)
            .referer(false)
            .no_proxy();
        if let Some(t) = self.timeout {
            b = b.timeout(t);
        }
        if let Some(t) = self.read_timeout {
            b = b.read_timeout(t);
        }
        if self.roots_only {
            b = b.tls_certs_only(self.roots);
        } else if !self.roots.is_empty() {
            b = b.tls_certs_merge(self.roots);
        }
        if let Some(id) = self.identity {
            b = b.identity(id);
        }
        if let Some(p) = self.proxy {
            let bad = |e: reqwest::Error| {
                Error::config(format!("proxy {}: {e}", SafeUrl::new(p.url.clone())))
            };
            let mut proxy = reqwest::Proxy::all(&p.url).map_err(bad)?;
            if let Some((user, password)) = &p.credentials {
                proxy = proxy.basic_auth(user, password);
            }
            b = b.proxy(proxy);
        }
        if !self.keep_alive {
            b = b.pool_max_idle_per_host(0);
        }
        if self.http1_only {
            b = b.http1_only();
        }
        #[cfg(feature = "dns")]
        if let Some(server) = self.dns_server {
            let txt = crate::dns::Txt::new(Some(server)).map_err(Error::config)?;
            b = b.dns_resolver(txt.addresses());
        }
        for (host, addr) in &self.resolve {
            b = b.resolve(host, *addr);
        }
        let inner = b
            .build()
            .map_err(|e| Error::config(format!("HTTP client: {}", e.without_url())))?;
        Ok(Client { inner })
    }
}

/// An HTTP client of vdbnet: cheap to clone (connections are shared).
#[derive(Debug, Clone)]
pub struct Client {
    inner: reqwest::Client,
}

impl Client {
    /// Settings for a client that sends `user_agent`.
    pub fn builder(user_agent: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(user_agent)
    }

    /// A GET request.
    pub fn get(&self, url: &str) -> Request {
        self.request(Method::GET, url)
    }

    /// A POST request.
    pub fn post(&self, url: &str) -> Request {
        self.request(Method::POST, url)
    }

    /// A PUT request.
    pub fn put(&self, url: &str) -> Request {
        self.request(Method::PUT, url)
    }

    /// A request with any method.
    pub fn request(&self, method: Method, url: &str) -> Request {
        Request {
            url: SafeUrl::new(url),
            idempotent: matches!(method, Method::GET | Method::HEAD),
            builder: self.inner.request(method, url),
            conditional: false,
            ok: Vec::new(),
        }
    }
}

/// A request being prepared; [`Request::send`] sends it.
#[derive(Debug)]
#[must_use = "a request does nothing until sent"]
pub struct Request {
    url: SafeUrl,
    idempotent: bool,
    builder: reqwest::RequestBuilder,
    conditional: bool,
    ok: Vec<StatusCode>,
}

impl Request {
    /// Hides the URL's path in errors and logs too (a webhook's URL is its secret).
    pub fn secret_url(mut self) -> Self {
        self.url = SafeUrl::secret(self.url.expose());
        self
    }

    /// Adds a header (an invalid one fails the request with [`crate::ErrorKind::Config`]).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.builder = self.builder.header(name, value);
        self
    }

    /// `Authorization: Bearer <token>` when a token is given.
    pub fn bearer(mut self, token: Option<&str>) -> Self {
        if let Some(t) = token {
            self.builder = self.builder.bearer_auth(t);
        }
        self
    }

    /// `Range: bytes=<first>-<last>` (`last` inclusive; `None` to the end). A server may
    /// ignore it and answer 200 with the whole body: read with [`Response::prefix`].
    pub fn range(mut self, first: u64, last: Option<u64>) -> Self {
        let v = match last {
            Some(l) => format!("bytes={first}-{l}"),
            None => format!("bytes={first}-"),
        };
        self.builder = self.builder.header(header::RANGE, v);
        self
    }

    /// `If-Modified-Since`: a 304 answer is then a success ([`Response::not_modified`]).
    pub fn if_modified_since(mut self, t: SystemTime) -> Self {
        self.builder = self
            .builder
            .header(header::IF_MODIFIED_SINCE, httpdate::fmt_http_date(t));
        self.conditional = true;
        self
    }

    /// `If-None-Match` with an entity tag (quoted, as the server sent it): a 304 answer is
    /// then a success.
    pub fn if_none_match(mut self, etag: &str) -> Self {
        self.builder = self.builder.header(header::IF_NONE_MATCH, etag);
        self.conditional = true;
        self
    }

    /// A whole-request timeout for this request, body included.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.builder = self.builder.timeout(t);
        self
    }

    /// The request body.
    pub fn body(mut self, body: impl Into<reqwest::Body>) -> Self {
        self.builder = self.builder.body(body);
        self
    }

    /// A `multipart/form-data` body (a file upload with its fields).
    pub fn multipart(mut self, form: reqwest::multipart::Form) -> Self {
        self.builder = self.builder.multipart(form);
        self
    }

    /// A JSON request body (`Content-Type: application/json`).
    pub fn json_body(mut self, json: impl Into<String>) -> Self {
        self.builder = self
            .builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(json.into());
        self
    }

    /// Also accepts this status as an answer (besides 2xx, and 304 on a conditional request):
    /// a 404 a caller handles as "none", say.
    pub fn accept(mut self, status: StatusCode) -> Self {
        self.ok.push(status);
        self
    }

    /// Sends the request. A 2xx answer (and 304 to a conditional request, and any status
    /// given to [`Request::accept`]) is returned; any other is an [`Error::Status`] with the
    /// parsed `Retry-After` and the first 64 KiB of its body.
    ///
    /// A GET or HEAD whose connection closes before any answer is sent once more, on a new
    /// connection: a pooled connection that the server closes (its keep-alive idle timeout) as
    /// it is reused fails that way, and the request never reached the server's handler.
    pub async fn send(self) -> Result<Response, Error> {
        let url = self.url;
        let again = if self.idempotent {
            self.builder.try_clone()
        } else {
            None
        };
        let sent = match (self.builder.send().await, again) {
            (Err(e), Some(again)) if closed_before_answer(&e) => {
                tracing::debug!(url = %url, error = %crate::error::describe(&e), "connection closed before the answer: sending once more");
                again.send().await
            }
            (r, _) => r,
        };
        let resp = sent.map_err(|e| Error::Send {
            url: url.clone(),
            source: e.without_url(),
        })?;
        let status = resp.status();
        if status.is_success()
            || (self.conditional && status == StatusCode::NOT_MODIFIED)
            || self.ok.contains(&status)
        {
            return Ok(Response { url, inner: resp });
        }
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| parse_retry_after(v.as_bytes(), SystemTime::now()));
        let body = Response {
            url: url.clone(),
            inner: resp,
        }
        .prefix(ERROR_BODY_MAX)
        .await
        .unwrap_or_default();
        Err(Error::Status {
            url,
            status,
            retry_after,
            body: body.into(),
        })
    }
}

/// Whether `e` says the connection closed (or was reset) before any answer came: hyper's
/// "connection closed before message completed", or a reset or broken pipe on a reused one.
fn closed_before_answer(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        let hyper_incomplete = c
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message);
        let io_closed = c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            )
        });
        if hyper_incomplete || io_closed {
            return true;
        }
        cur = c.source();
    }
    false
}

/// A checked answer whose body is yet to be read, with a bound, by one of the reading methods.
#[derive(Debug)]
pub struct Response {
    url: SafeUrl,
    inner: reqwest::Response,
}

impl Response {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    /// Whether the answer is 304 Not Modified.
    pub fn not_modified(&self) -> bool {
        self.inner.status() == StatusCode::NOT_MODIFIED
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The announced body size, if announced.
    pub fn content_length(&self) -> Option<u64> {
        self.inner.content_length()
    }

    /// The `Last-Modified` time, if valid.
    pub fn last_modified(&self) -> Option<SystemTime> {
        httpdate::parse_http_date(self.header(header::LAST_MODIFIED)?).ok()
    }

    /// The URL requested.
    pub fn url(&self) -> &SafeUrl {
        &self.url
    }

    pub(crate) fn into_parts(self) -> (SafeUrl, reqwest::Response) {
        (self.url, self.inner)
    }
}
