//! The listener: accept, admit (connection caps), optional TLS, HTTP/1.1 with the [`Limits`],
//! graceful drain.
//!
//! [`serve`] runs an axum [`Router`] on the caller's runtime (master, directory, monitor). The
//! mirror, which spreads connections over serve threads of its own, uses the parts:
//! [`accept_loop`] on its main runtime and [`serve_connection`] on each serve thread.
//!
//! What each limit costs: admission takes one short lock per connection (not per request); the
//! slow-reader guard is a few integers and one timer per connection, touched only while a write
//! waits for the client; the body guard is allocated only for requests that go through
//! [`limit_body`] (the API paths; the mirror's file path has no body to guard).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::{Limits, Tls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The answer to a connection past a cap, written before closing it (plain HTTP only).
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\
Content-Type: application/json\r\nConnection: close\r\nContent-Length: 84\r\n\r\n\
{\"code\":\"too_many_connections\",\"message\":\"too many connections; retry in 5 seconds\"}";

/// Counts open connections, in all and per client address, against the caps.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    accepted: AtomicU64,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    key: IpAddr,
}

/// Connections as an [`Admission`] counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdmissionStats {
    /// Open now.
    pub open: usize,
    /// Admitted since start.
    pub accepted: u64,
    /// Refused (past a cap) since start.
    pub refused: u64,
}

/// The per-address key: the IPv4 address, or the /64 of an IPv6 address (one subscriber).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Admission {
    /// Caps from `limits` (the total lowered to fit the file-descriptor limit).
    pub fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            max_total: limits.effective_max_connections(),
            max_per_ip: limits.max_connections_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        })
    }

    /// Admits a connection from `ip`, or `None` past a cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Permit> {
        let key = client_key(ip);
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= self.max_per_ip || self.total.load(Ordering::Relaxed) >= self.max_total {
            if *n == 0 {
                map.remove(&key);
            }
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Permit {
            admission: self.clone(),
            key,
        })
    }

    /// The counts.
    pub fn stats(&self) -> AdmissionStats {
        AdmissionStats {
            open: self.total.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// The cap on open connections in force.
    pub fn max_connections(&self) -> usize {
        self.max_total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let a = &self.admission;
        a.total.fetch_sub(1, Ordering::Relaxed);
        let mut map = a.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Accepts connections until `cancel`; each admitted one goes to `hand_off` with its permit.
/// Past a cap a plain-HTTP connection gets a `503` with `Retry-After` (one non-blocking write)
/// and is closed; a TLS one (`plain == false`) is closed. Accept errors (such as running out of
/// file descriptors) pause the loop briefly instead of spinning.
pub async fn accept_loop<F>(
    listener: TcpListener,
    admission: Arc<Admission>,
    plain: bool,
    cancel: CancellationToken,
    mut hand_off: F,
) where
    F: FnMut(TcpStream, SocketAddr, Permit),
{
    loop {
        let r = tokio::select! {
            () = cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match r {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                continue;
            }
        };
        let Some(permit) = admission.admit(peer.ip()) else {
            if plain {
                let _ = stream.try_write(REFUSAL);
            }
            tracing::debug!(%peer, "connection refused: too many connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        hand_off(stream, peer, permit);
    }
}

/// Serves one connection (TLS first when `tls` is given) with `svc` under `limits`; on
/// `cancel` it finishes the request in flight (at most `drain_secs`) and closes.
pub async fn serve_connection<S>(
    stream: TcpStream,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    svc: S,
    limits: &Limits,
    cancel: &CancellationToken,
) where
    S: HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<BoxError>,
{
    let io = SlowReaderGuard::new(stream, limits);
    match tls {
        None => http1(io, svc, limits, cancel).await,
        Some(acc) => {
            let hs = tokio::time::timeout(limits.header_timeout(), acc.accept(io));
            let r = tokio::select! {
                () = cancel.cancelled() => return,
                r = hs => r,
            };
            match r {
                Ok(Ok(s)) => http1(s, svc, limits, cancel).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        }
    }
}

async fn http1<I, S>(io: I, svc: S, limits: &Limits, cancel: &CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin,
    S: HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<BoxError>,
{
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout())
        .keep_alive(true)
        .max_buf_size(limits.max_header_bytes);
    let conn = b.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended");
            }
        }
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.drain_duration(), conn).await;
        }
    }
}

/// Binds a TCP listener on `addr` (for a role's configured address); the error names the
/// address, so an operator sees which setting is taken.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves `router` on `listener` (TLS when `tls` is given) under `limits` until `cancel`, then
/// drains: open requests get `drain_secs` to finish. Handlers see the peer as
/// `ConnectInfo<SocketAddr>`; request bodies are under [`limit_body`]. Returns the admission
/// counters at the end.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Tls>,
    limits: Limits,
    cancel: CancellationToken,
) -> AdmissionStats {
    let admission = Admission::new(&limits);
    let acceptor = tls.as_ref().map(Tls::acceptor);
    let conns = TaskTracker::new();
    let plain = acceptor.is_none();
    accept_loop(
        listener,
        admission.clone(),
        plain,
        cancel.clone(),
        |stream, peer, permit| {
            let router = router.clone();
            let acceptor = acceptor.clone();
            let cancel = cancel.clone();
            conns.spawn(async move {
                let _permit = permit;
                let svc =
                    hyper::service::service_fn(move |req| call_router(&router, peer, &limits, req));
                serve_connection(stream, acceptor.as_ref(), svc, &limits, &cancel).await;
            });
        },
    )
    .await;
    drain(&conns, limits.drain_duration()).await;
    admission.stats()
}

/// Waits for the connections of `conns` to finish after a cancellation (each finishes its
/// request in flight within `within`, then closes).
pub async fn drain(conns: &TaskTracker, within: Duration) {
    conns.close();
    // One more second than a connection's own drain, so that they close themselves.
    let _ = tokio::time::timeout(within + Duration::from_secs(1), conns.wait()).await;
}

/// Fails writes when the client takes response bytes too slowly: over every `send_timeout_secs`
/// of time spent waiting for the client, it must take `min_rate_bytes_per_sec` bytes per second.
/// Writes that complete at once cost a counter update.
struct SlowReaderGuard<T> {
    inner: T,
    window: Duration,
    min_bytes: u64,
    /// When the current wait for the client began.
    blocked_since: Option<Instant>,
    /// Time spent waiting in the current window (finished waits).
    window_blocked: Duration,
    /// Bytes the client took in the current window.
    window_bytes: u64,
    /// Wakes a write that waits past the window's end (made on the first wait, then reset).
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> SlowReaderGuard<T> {
    fn new(inner: T, limits: &Limits) -> Self {
        Self {
            inner,
            window: limits.send_window(),
            min_bytes: limits
                .min_rate_bytes_per_sec
                .saturating_mul(limits.send_timeout_secs),
            blocked_since: None,
            window_blocked: Duration::ZERO,
            window_bytes: 0,
            timer: None,
        }
    }

    /// A write made progress (`n` bytes).
    fn progressed(&mut self, n: usize) {
        self.window_bytes = self.window_bytes.saturating_add(n as u64);
        if let Some(since) = self.blocked_since.take() {
            self.window_blocked += since.elapsed();
            if self.window_blocked >= self.window {
                self.window_blocked = Duration::ZERO;
                self.window_bytes = 0;
            }
        }
    }

    /// A write must wait for the client: fails when the window is over and the client took
    /// too little of it, else arranges a wake-up at the window's end.
    fn poll_blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            let now = Instant::now();
            let since = *self.blocked_since.get_or_insert(now);
            let blocked = self.window_blocked + (now - since);
            if blocked >= self.window {
                if self.window_bytes < self.min_bytes {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "client reads too slowly",
                    ));
                }
                self.window_blocked = Duration::ZERO;
                self.window_bytes = 0;
                self.blocked_since = Some(now);
                continue;
            }
            let deadline = now + (self.window - blocked);
            let t = match &mut self.timer {
                Some(t) => {
                    t.as_mut().reset(deadline);
                    t
                }
                None => self
                    .timer
                    .insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            if t.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SlowReaderGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SlowReaderGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.progressed(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_blocked(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.progressed(n);
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_blocked(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Why a request body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("the request body arrives too slowly (at most {allowed:?} for {received} bytes)")]
pub struct SlowBody {
    /// Bytes received when it was cut off.
    pub received: u64,
    /// The time those bytes were allowed.
    pub allowed: Duration,
}

/// A request body under the limits: it may take `body_read_timeout_secs` plus one second per
/// `min_rate_bytes_per_sec` bytes received; past that it fails with [`SlowBody`] (the handler
/// sees a body error, and the connection is closed after its answer).
pub struct LimitedBody<B> {
    inner: B,
    start: Instant,
    grace: Duration,
    min_rate: u64,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

/// Puts a request body under `limits` (see [`LimitedBody`]).
pub fn limit_body<B>(inner: B, limits: &Limits) -> LimitedBody<B> {
    LimitedBody {
        inner,
        start: Instant::now(),
        grace: Duration::from_secs(limits.body_read_timeout_secs),
        min_rate: limits.min_rate_bytes_per_sec.max(1),
        received: 0,
        timer: None,
    }
}

impl<B> LimitedBody<B> {
    fn allowed(&self) -> Duration {
        self.grace + Duration::from_secs_f64(self.received as f64 / self.min_rate as f64)
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.received += d.len() as u64;
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let allowed = this.allowed();
                let deadline = this.start + allowed;
                let t = match &mut this.timer {
                    Some(t) => {
                        t.as_mut().reset(deadline);
                        t
                    }
                    None => this
                        .timer
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                ready!(t.as_mut().poll(cx));
                Poll::Ready(Some(Err(Box::new(SlowBody {
                    received: this.received,
                    allowed,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Hands a request to `router`, as [`serve`] does: the peer as `ConnectInfo<SocketAddr>`, the
/// body under [`limit_body`].
pub fn call_router(
    router: &Router,
    peer: SocketAddr,
    limits: &Limits,
    mut req: hyper::Request<Incoming>,
) -> tower::util::Oneshot<Router, hyper::Request<axum::body::Body>> {
    req.extensions_mut().insert(ConnectInfo(peer));
    let req = req.map(|b| axum::body::Body::new(limit_body(b, limits)));
    router.clone().oneshot(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_is_well_formed() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: vdb_proto::ApiError = serde_json::from_str(body).unwrap();
        assert_eq!(v.code, "too_many_connections");
    }

    #[test]
    fn per_address_and_total_caps() {
        let limits = Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..Limits::default()
        };
        let a = Admission::new(&limits);
        let ip1: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "2001:db8::1".parse().unwrap();
        let ip2b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let p1 = a.admit(ip1).unwrap();
        let _p2 = a.admit(ip1).unwrap();
        assert!(a.admit(ip1).is_none(), "third from one address");
        let _p3 = a.admit(ip2).unwrap();
        assert!(a.admit(ip2b).is_none(), "total cap");
        drop(p1);
        let _p4 = a.admit(ip2b).unwrap();
        let ip2c: IpAddr = "2001:db8::3".parse().unwrap();
        assert!(a.admit(ip2c).is_none(), "a third from the same /64");
        let s = a.stats();
        assert_eq!((s.open, s.accepted, s.refused), (3, 4, 3));
    }
}
