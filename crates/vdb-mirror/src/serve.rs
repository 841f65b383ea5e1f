//! Accepting connections: HTTP/1.1 with keep-alive, header-read and send timeouts, optional TLS
//! with certificate reload.

use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::files::Reply;

/// Timeouts applied to every connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) header: Duration,
    pub(crate) send: Duration,
}

/// Fails writes that make no progress for `limit` (a client that stops reading).
struct SendTimeout<T> {
    inner: T,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<T> SendTimeout<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: None,
        }
    }

    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let t = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match t.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SendTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SendTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => match this.poll_stalled(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => match this.poll_stalled(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
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

/// What answers requests: file paths go straight to the file handler (the hot path, no router);
/// the few API paths go through the axum router.
#[derive(Clone)]
pub(crate) struct Routes {
    pub(crate) router: Router,
    pub(crate) app: Arc<crate::app::App>,
}

fn routed(path: &str) -> bool {
    matches!(
        path,
        vdb_proto::paths::HEALTH
            | vdb_proto::paths::METRICS
            | vdb_proto::paths::PUSH
            | crate::app::STATUS_PATH
            | "/local_stats"
            | "/local_stats/"
    )
}

async fn serve_conn<I>(io: I, routes: Routes, t: Timeouts, cancel: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::FutureExt as _;
    use futures_util::future::{Either, ready};
    let io = TokioIo::new(SendTimeout::new(io, t.send));
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        if routed(req.uri().path()) {
            Either::Left(
                routes
                    .router
                    .clone()
                    .oneshot(req)
                    .map(|r| r.map(|resp| resp.map(http_body_util::Either::Right))),
            )
        } else {
            // Answers from memory are complete here: no task-local future state, no clone of
            // the shared `App`.
            Either::Right(match crate::files::serve(&routes.app, req) {
                Reply::Ready(r) => Either::Left(ready(Ok::<_, Infallible>(r))),
                Reply::Open(f) => Either::Right(f.map(Ok::<_, Infallible>)),
            })
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(t.header)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended");
            }
        }
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// An accepted connection on its way to a serve thread.
struct Job {
    stream: std::net::TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// One serve thread as the acceptors see it.
#[derive(Debug)]
struct Worker {
    tx: tokio::sync::mpsc::UnboundedSender<Job>,
    /// Connections it serves now.
    live: Arc<AtomicUsize>,
    /// Connections it has been given since start (a metric).
    total: prometheus_client::metrics::counter::Counter,
}

/// Hands accepted connections to the serve thread with the fewest open connections.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    workers: Arc<[Worker]>,
    next: Arc<AtomicUsize>,
}

impl Dispatch {
    fn send(&self, job: Job) {
        let n = self.workers.len();
        // Ties go round-robin, so that a burst of new connections spreads evenly.
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let w = (0..n)
            .map(|i| &self.workers[(first + i) % n])
            .min_by_key(|w| w.live.load(Ordering::Relaxed))
            .unwrap_or(&self.workers[0]);
        w.live.fetch_add(1, Ordering::Relaxed);
        w.total.inc();
        if w.tx.send(job).is_err() {
            // The thread has stopped (shutdown): the connection is closed.
            w.live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The serve threads: each runs a current-thread tokio runtime and serves the connections it is
/// given on that thread (thread per core, as nginx's worker processes: no work stealing, no
/// cross-thread wake-ups on the hot path). Syncs, pushes' verification and the statistics
/// writer stay on the caller's runtime.
#[derive(Debug)]
pub(crate) struct ServeThreads {
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Decrements a serve thread's open connections when a connection ends.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ServeThreads {
    /// Starts `n` serve threads; they stop when `cancel` fires (after draining their
    /// connections, bounded) or when every [`Dispatch`] is gone.
    pub(crate) fn start(
        n: usize,
        routes: &Routes,
        t: Timeouts,
        cancel: &CancellationToken,
    ) -> io::Result<(Self, Dispatch)> {
        let mut workers = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("vdb-serve-{i}"))
                .build()?;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let live = Arc::new(AtomicUsize::new(0));
            workers.push(Worker {
                tx,
                live: live.clone(),
                total: routes.app.metrics.thread_connections(i),
            });
            let routes = routes.clone();
            let stop = cancel.child_token();
            let th = std::thread::Builder::new()
                .name(format!("vdb-serve-{i}"))
                .spawn(move || rt.block_on(serve_thread(rx, routes, t, stop, live)))?;
            threads.push(th);
        }
        let dispatch = Dispatch {
            workers: workers.into(),
            next: Arc::default(),
        };
        Ok((Self { threads }, dispatch))
    }

    /// Waits until every serve thread has drained and stopped.
    pub(crate) async fn join(self) {
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

async fn serve_thread(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Job>,
    routes: Routes,
    t: Timeouts,
    stop: CancellationToken,
    live: Arc<AtomicUsize>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            job = rx.recv() => {
                let Some(Job { stream, tls }) = job else {
                    // Every acceptor is gone (the mirror was dropped without a shutdown).
                    stop.cancel();
                    break;
                };
                let guard = Live(live.clone());
                let routes = routes.clone();
                let cancel = stop.clone();
                conns.spawn(async move {
                    let _guard = guard;
                    let stream = match tokio::net::TcpStream::from_std(stream) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot register a connection");
                            return;
                        }
                    };
                    match tls {
                        None => serve_conn(stream, routes, t, cancel).await,
                        Some(acc) => match tokio::time::timeout(t.header, acc.accept(stream)).await {
                            Ok(Ok(s)) => serve_conn(s, routes, t, cancel).await,
                            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => tracing::debug!("TLS handshake timed out"),
                        },
                    }
                });
            }
        }
    }
    rx.close();
    // Connections see `stop` too: they finish their current response and close (bounded).
    let deadline = Instant::now() + Duration::from_secs(6);
    while tokio::time::timeout_at(deadline, conns.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Accepts connections until `cancel` and hands them to the serve threads.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    dispatch: Dispatch,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cancel: CancellationToken,
) {
    loop {
        let r = tokio::select! {
            () = cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        let stream = match r {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match stream.into_std() {
            Ok(stream) => dispatch.send(Job {
                stream,
                tls: tls.clone(),
            }),
            Err(e) => tracing::warn!(error = %e, "cannot hand a connection over"),
        }
    }
}

/// A certificate resolver that reloads its PEM files when they change.
#[derive(Debug)]
pub(crate) struct CertReloader {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: Mutex<Option<(SystemTime, SystemTime)>>,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn load_cert(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    use anyhow::Context as _;
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("tls_cert {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("tls_cert {}: not PEM", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "tls_cert {}: no certificate in it",
        cert.display()
    );
    let k = rustls_pemfile::private_key(&mut io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("tls_key {}", key.display()))?,
    ))
    .with_context(|| format!("tls_key {}: not PEM", key.display()))?
    .with_context(|| format!("tls_key {}: no private key in it", key.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(certs, k, &provider)
        .with_context(|| format!("tls_key {} does not fit tls_cert", key.display()))
}

impl CertReloader {
    pub(crate) fn new(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let ck = load_cert(cert, key)?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(ck)),
            stamp: Mutex::new(mtime(cert).zip(mtime(key))),
        })
    }

    /// Reloads when the files changed (or always, with `force`); keeps the old pair on error.
    pub(crate) fn reload(&self, force: bool) {
        let now = mtime(&self.cert).zip(mtime(&self.key));
        let mut stamp = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if !force && now == *stamp {
            return;
        }
        match load_cert(&self.cert, &self.key) {
            Ok(ck) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
                *stamp = now;
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "TLS certificate reload failed; keeping the old one")
            }
        }
    }

    pub(crate) fn acceptor(self: &Arc<Self>) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}
