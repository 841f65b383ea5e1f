//! Serving connections on the serve threads: accepted and admitted by `vdb-service`'s
//! listener (connection caps), served by its `serve_connection` (HTTP/1.1 keep-alive, header and
//! body timeouts, slow readers dropped, optional TLS with certificate reload).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vdb_service::Limits;
use vdb_service::listener::{Admission, Permit};

use crate::files::Reply;

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

async fn serve_conn(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    routes: Routes,
    limits: Limits,
    cancel: &CancellationToken,
) {
    use futures_util::FutureExt as _;
    use futures_util::future::{Either, ready};
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        if routed(req.uri().path()) {
            Either::Left(
                vdb_service::listener::call_router(&routes.router, peer, &limits, req)
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
    vdb_service::listener::serve_connection(stream, tls, svc, &limits, cancel).await;
}

/// An accepted connection on its way to a serve thread.
struct Job {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// Its place under the connection caps, freed when the connection ends.
    permit: Permit,
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
        limits: Limits,
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
                .spawn(move || rt.block_on(serve_thread(rx, routes, limits, stop, live)))?;
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
    limits: Limits,
    stop: CancellationToken,
    live: Arc<AtomicUsize>,
) {
    let conns = TaskTracker::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            job = rx.recv() => {
                let Some(Job { stream, peer, tls, permit }) = job else {
                    // Every acceptor is gone (the mirror was dropped without a shutdown).
                    stop.cancel();
                    break;
                };
                let guard = Live(live.clone());
                let routes = routes.clone();
                let cancel = stop.clone();
                conns.spawn(async move {
                    let _guard = guard;
                    let _permit = permit;
                    match tokio::net::TcpStream::from_std(stream) {
                        Ok(s) => serve_conn(s, peer, tls.as_ref(), routes, limits, &cancel).await,
                        Err(e) => tracing::warn!(error = %e, "cannot register a connection"),
                    }
                });
            }
        }
    }
    rx.close();
    // Connections see `stop` too: they finish their current response and close (bounded).
    vdb_service::listener::drain(&conns, limits.drain_duration()).await;
}

/// Accepts and admits connections until `cancel` and hands them to the serve threads.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    dispatch: Dispatch,
    admission: Arc<Admission>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    cancel: CancellationToken,
) {
    let plain = tls.is_none();
    vdb_service::listener::accept_loop(
        listener,
        admission,
        plain,
        cancel,
        |stream, peer, permit| match stream.into_std() {
            Ok(stream) => dispatch.send(Job {
                stream,
                peer,
                tls: tls.clone(),
                permit,
            }),
            Err(e) => tracing::warn!(error = %e, "cannot hand a connection over"),
        },
    )
    .await;
}
