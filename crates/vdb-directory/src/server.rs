//! The DNS server's sockets: one UDP socket per core (`SO_REUSEPORT`), each served by its own
//! thread with batched receive and send (`recvmmsg`/`sendmmsg`), and a TCP listener on the
//! same port. Queries the fast path ([`crate::fast`]) answers are answered on the spot;
//! the rest go to the general path ([`crate::dns::general`]) on the async runtime.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd as _;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::net::xfer::Protocol;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::dns::{Handler, general};
use crate::fast::{Scratch, Table};
use crate::state::Shared;
use crate::wire;
use crate::zone::Rng;

/// Messages per `recvmmsg`/`sendmmsg` call.
const BATCH: usize = 32;

/// Bytes of one receive buffer: a larger query is cut short and dropped.
const RECV_BUF: usize = 4096;

/// How often a UDP thread that receives nothing looks at the cancellation token.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// Most queries on the general path at once (beyond: dropped, the client retries).
const GENERAL_SLOTS: usize = 1024;

/// Most TCP connections at once (beyond: closed at once).
const TCP_CONNECTIONS: usize = 256;

/// A TCP connection idle this long (or this slow to send one query) is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What every socket's loop shares.
pub(crate) struct Context {
    pub(crate) shared: Arc<Shared>,
    pub(crate) handler: Handler,
    general_slots: Arc<Semaphore>,
}

impl Context {
    pub(crate) fn new(shared: Arc<Shared>) -> Arc<Self> {
        Arc::new(Self {
            handler: Handler {
                shared: shared.clone(),
            },
            shared,
            general_slots: Arc::new(Semaphore::new(GENERAL_SLOTS)),
        })
    }
}

/// A thread's copy of the current fast-path table, refreshed when the snapshot changes.
struct Current {
    generation: u64,
    table: Arc<Table>,
}

impl Current {
    fn new(shared: &Shared) -> Self {
        let (generation, table) = shared.fast();
        Self { generation, table }
    }

    fn refresh(&mut self, shared: &Shared) {
        if shared.fast_generation() != self.generation {
            *self = Self::new(shared);
        }
    }
}

/// Answers `msg` from `src` on the fast path into `out`; false when the general path must.
#[allow(clippy::too_many_arguments)]
fn fast_answer(
    shared: &Shared,
    table: &Table,
    msg: &[u8],
    src: SocketAddr,
    udp: bool,
    rng: &mut Rng,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> bool {
    let Some(q) = wire::parse(msg) else {
        return false;
    };
    let mut name = [0u8; wire::MAX_NAME];
    let lname = wire::lower_name(msg, &q, &mut name);
    let Some(answers) = table.get(lname, q.qtype) else {
        return false;
    };
    let prepared = if answers.len() == 1 {
        &answers[0]
    } else {
        let region = shared.region_of(vdb_service::canonical_ip(src.ip()));
        match table
            .region_index(region.as_deref())
            .and_then(|i| answers.get(i))
        {
            Some(p) => p,
            None => return false,
        }
    };
    prepared.write(rng, scratch, out);
    let limit = if udp {
        q.udp_limit()
    } else {
        usize::from(u16::MAX)
    };
    if !wire::finish(out, msg, &q, limit) {
        return false;
    }
    prepared.count(udp);
    true
}

/// Binds `n - 1` more UDP sockets on `first`'s address with `SO_REUSEPORT` (the kernel then
/// spreads the clients over them); where that fails, the threads share `first`.
pub(crate) fn udp_sockets(first: UdpSocket, n: usize) -> std::io::Result<Vec<Arc<UdpSocket>>> {
    let addr = first.local_addr()?;
    let first = Arc::new(first);
    let mut v = vec![first.clone()];
    for _ in 1..n {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        let bound = s.set_reuse_port(true).and_then(|()| s.bind(&addr.into()));
        match bound {
            Ok(()) => v.push(Arc::new(s.into())),
            Err(e) => {
                tracing::debug!(error = %e, "no SO_REUSEPORT group; the DNS threads share one UDP socket");
                v.push(first.clone());
            }
        }
    }
    Ok(v)
}

/// Serves one UDP socket until `cancel`: receive a batch, answer what the fast path can,
/// send those answers as a batch, hand the rest to the general path on `rt`.
pub(crate) fn udp_thread(
    sock: Arc<UdpSocket>,
    ctx: Arc<Context>,
    rt: tokio::runtime::Handle,
    cancel: CancellationToken,
) {
    if let Err(e) = sock
        .set_nonblocking(false)
        .and_then(|()| sock.set_read_timeout(Some(RECV_TIMEOUT)))
    {
        tracing::error!(error = %e, "cannot set up a DNS UDP socket");
        return;
    }
    let fd = sock.as_raw_fd();
    let mut bufs = vec![vec![0u8; RECV_BUF]; BATCH];
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut got: Vec<(Option<SocketAddr>, usize)> = Vec::with_capacity(BATCH);
    let mut to: Vec<SocketAddrAny> = Vec::with_capacity(BATCH);
    let mut current = Current::new(&ctx.shared);
    let mut rng = Rng::new();
    let mut scratch = Scratch::default();
    while !cancel.is_cancelled() {
        got.clear();
        {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            match recvmmsg(
                fd,
                &mut recv_headers,
                iovs.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(msgs) => {
                    for m in msgs {
                        let src = m.address.and_then(|a: SockaddrStorage| to_std(&a));
                        let len = if m.flags.contains(MsgFlags::MSG_TRUNC) {
                            0
                        } else {
                            m.bytes
                        };
                        got.push((src, len));
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
                Err(e) => {
                    // ECONNREFUSED and the like (ICMP errors of earlier sends) are harmless;
                    // a broken socket (EBADF, ENOTSOCK) ends the thread.
                    if matches!(e, Errno::EBADF | Errno::ENOTSOCK | Errno::EINVAL) {
                        tracing::error!(error = %e, "DNS UDP socket failed");
                        return;
                    }
                    tracing::debug!(error = %e, "DNS UDP receive error");
                    continue;
                }
            }
        }
        current.refresh(&ctx.shared);
        to.clear();
        for (i, &(src, len)) in got.iter().enumerate() {
            let Some(src) = src.filter(|s| s.port() != 0 && !s.ip().is_unspecified()) else {
                continue;
            };
            if len < wire::HEADER {
                continue;
            }
            let msg = &bufs[i][..len];
            let slot = to.len();
            if fast_answer(
                &ctx.shared,
                &current.table,
                msg,
                src,
                true,
                &mut rng,
                &mut scratch,
                &mut outs[slot],
            ) {
                to.push(SocketAddrAny::from(src));
                continue;
            }
            let Ok(permit) = ctx.general_slots.clone().try_acquire_owned() else {
                tracing::debug!(%src, "DNS general path busy; query dropped");
                continue;
            };
            let (bytes, ctx, sock) = (msg.to_vec(), ctx.clone(), sock.clone());
            rt.spawn(async move {
                let _permit = permit;
                for reply in general(&ctx.handler, bytes, src, Protocol::Udp).await {
                    if let Err(e) = sock.send_to(&reply, src) {
                        tracing::debug!(%src, error = %e, "cannot send a DNS answer");
                    }
                }
            });
        }
        send_all(&sock, &outs[..to.len()], &to);
    }
}

/// Sends `outs[i]` to `to[i]` with as few `sendmmsg` calls as it takes (a message that fails
/// is skipped: at most one call per message).
fn send_all(sock: &UdpSocket, outs: &[Vec<u8>], to: &[SocketAddrAny]) {
    let slices: Vec<[IoSlice<'_>; 1]> = outs.iter().map(|o| [IoSlice::new(o)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = (0..outs.len())
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut headers: Vec<MMsgHdr<'_>> = to
        .iter()
        .zip(&slices)
        .zip(controls.iter_mut())
        .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    let mut start = 0;
    while start < headers.len() {
        match rustix::net::sendmmsg(sock, &mut headers[start..], SendFlags::empty()) {
            Ok(sent) => start += sent.max(1),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::debug!(error = %e, "cannot send a DNS answer");
                start += 1;
            }
        }
    }
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Accepts DNS-over-TCP connections until `cancel` (RFC 7766: several queries per connection,
/// each answered in turn).
pub(crate) async fn tcp_loop(
    listener: tokio::net::TcpListener,
    ctx: Arc<Context>,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(TCP_CONNECTIONS));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        while conns.try_join_next().is_some() {}
        let (stream, src) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "DNS TCP accept failed");
                // Out of file descriptors and the like: do not spin.
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%src, "too many DNS TCP connections; closed");
            continue;
        };
        let (ctx, cancel) = (ctx.clone(), cancel.clone());
        conns.spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tcp_connection(stream, src, &ctx) => {}
            }
        });
    }
    conns.shutdown().await;
}

async fn tcp_connection(mut stream: tokio::net::TcpStream, src: SocketAddr, ctx: &Context) {
    let _ = stream.set_nodelay(true);
    let mut rng = Rng::new();
    let mut scratch = Scratch::default();
    let mut out = Vec::with_capacity(512);
    let mut current = Current::new(&ctx.shared);
    loop {
        let mut len = [0u8; 2];
        let read = async {
            stream.read_exact(&mut len).await?;
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut msg).await?;
            Ok::<_, std::io::Error>(msg)
        };
        let Ok(Ok(msg)) = tokio::time::timeout(TCP_IDLE, read).await else {
            return;
        };
        current.refresh(&ctx.shared);
        let replies = if fast_answer(
            &ctx.shared,
            &current.table,
            &msg,
            src,
            false,
            &mut rng,
            &mut scratch,
            &mut out,
        ) {
            vec![std::mem::take(&mut out)]
        } else {
            general(&ctx.handler, msg, src, Protocol::Tcp).await
        };
        for reply in replies {
            let Ok(len) = u16::try_from(reply.len()) else {
                tracing::warn!(%src, bytes = reply.len(), "DNS answer too long for TCP; dropped");
                continue;
            };
            let mut framed = Vec::with_capacity(reply.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&reply);
            match tokio::time::timeout(TCP_IDLE, stream.write_all(&framed)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }
}
