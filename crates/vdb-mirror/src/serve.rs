//! Accepting connections: HTTP/1.1 with keep-alive, header-read and send timeouts, optional TLS
//! with certificate reload.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
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
    let io = TokioIo::new(SendTimeout::new(io, t.send));
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        if routed(req.uri().path()) {
            futures_util::future::Either::Left(routes.router.clone().oneshot(req))
        } else {
            let app = routes.app.clone();
            futures_util::future::Either::Right(async move {
                Ok::<_, std::convert::Infallible>(crate::files::serve(app, req).await)
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

/// Accepts connections until `cancel`, then drains them (bounded).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    routes: Routes,
    tls: Option<tokio_rustls::TlsAcceptor>,
    t: Timeouts,
    cancel: CancellationToken,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            r = listener.accept() => {
                let (stream, _) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let routes = routes.clone();
                let cancel = cancel.clone();
                match &tls {
                    None => {
                        conns.spawn(serve_conn(stream, routes, t, cancel));
                    }
                    Some(acc) => {
                        let acc = acc.clone();
                        conns.spawn(async move {
                            match tokio::time::timeout(t.header, acc.accept(stream)).await {
                                Ok(Ok(s)) => serve_conn(s, routes, t, cancel).await,
                                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!("TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(6);
    while tokio::time::timeout_at(deadline, conns.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    conns.abort_all();
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
