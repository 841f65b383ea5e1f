//! Real `vdbd` roles under a lowered file-descriptor limit, and the attackers: slow headers,
//! slow bodies, slow readers, idle keep-alive connections, from loopback addresses of their own.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use vdb_proto::SecretKey;
use vdb_testkit::{Proc, wait_for_async};

pub(crate) const NETWORK: &str = "hostile";

/// The limits every role runs with here: short timeouts, so that tests are quick.
pub(crate) fn limits() -> vdb_service::Limits {
    vdb_service::Limits {
        header_read_timeout_secs: 2,
        body_read_timeout_secs: 2,
        send_timeout_secs: 2,
        min_rate_bytes_per_sec: 64 * 1024,
        max_connections_per_ip: 40,
        ..vdb_service::Limits::default()
    }
}

/// The file-descriptor limit roles run under (the attacks open more connections than this).
pub(crate) const NOFILE: u64 = 256;

/// A role process (the test kit's [`Proc`]: killed on drop, its log tail printed if the test
/// failed), and its directory.
pub(crate) struct Role {
    proc: Proc,
    _dir: tempfile::TempDir,
}

impl Role {
    /// The role's name, from its ready line.
    pub(crate) fn name(&self) -> &str {
        self.proc.ready().role()
    }

    /// The HTTP listener's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.proc.ready().http_addr()
    }

    /// Resident memory in KiB (`VmRSS` in /proc).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Open sockets of the process (its connections, listeners included).
    pub(crate) fn sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.proc.pid()))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| {
                        std::fs::read_link(e.path())
                            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// Waits (bounded by `within`, rounded up to whole seconds) until the process holds at most
    /// `n` sockets; returns how long that took.
    pub(crate) async fn wait_sockets_at_most(&self, n: usize, within: Duration) -> Duration {
        let t = Instant::now();
        let secs = within.as_secs() + u64::from(within.subsec_nanos() > 0);
        let what = format!(
            "{} to hold at most {n} sockets (log: {})",
            self.name(),
            self.proc.log().display()
        );
        wait_for_async(&what, secs, || async {
            (self.sockets() <= n).then_some(())
        })
        .await;
        t.elapsed()
    }
}

/// Writes `config` to `<dir>/<role>.toml` and runs `vdbd <role>` on it under `prlimit
/// --nofile=NOFILE` with the test kit's [`Proc`] (a bounded wait for its ready line).
pub(crate) fn start<T: Serialize>(role: &str, dir: tempfile::TempDir, config: &T) -> Role {
    let path = dir.path().join(format!("{role}.toml"));
    std::fs::write(&path, toml::to_string(config).unwrap()).unwrap();
    let log = dir.path().join(format!("{role}.log"));
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_vdbd"))
        .arg(role)
        .arg("--config")
        .arg(&path)
        .stdin(Stdio::null());
    let proc = Proc::start(cmd, &log);
    assert_eq!(proc.ready().role(), role);
    Role { proc, _dir: dir }
}

fn key_file(dir: &Path) -> (PathBuf, vdb_proto::PublicKey) {
    let k = SecretKey::generate();
    let path = dir.join("role.key");
    std::fs::write(&path, k.to_text()).unwrap();
    (path, k.public())
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A master with no peers and no publishers.
pub(crate) fn master() -> Role {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = key_file(dir.path());
    let mut c = vdb_master::Config::new("m", NETWORK, dir.path().join("data"), key);
    c.listen = loopback();
    c.limits = limits();
    start("master", dir, &c)
}

/// A mirror (its masters unreachable) that serves `local_big.bin` (`big` bytes) from disk.
pub(crate) fn mirror(big: usize) -> Role {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = key_file(dir.path());
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("local")).unwrap();
    std::fs::write(data.join("local/local_big.bin"), vec![7u8; big]).unwrap();
    let mut c = vdb_mirror::Config::new(
        "m",
        NETWORK,
        vec!["http://127.0.0.1:9".into()],
        vec![key],
        data,
    );
    c.serve_threads = Some(2);
    c.limits = limits();
    start("mirror", dir, &c)
}

/// A directory with no masters.
pub(crate) fn directory() -> Role {
    let dir = tempfile::tempdir().unwrap();
    let mut c = vdb_directory::Config::new("hostile.test.");
    c.dns_listen = loopback();
    c.http_listen = loopback();
    c.state_file = Some(dir.path().join("state.json"));
    c.limits = limits();
    start("directory", dir, &c)
}

/// A monitor that runs no rounds.
pub(crate) fn monitor() -> Role {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = key_file(dir.path());
    let mut c = vdb_monitor::Config::new(NETWORK, vec!["http://127.0.0.1:9".into()], vec![key]);
    c.listen = loopback();
    c.database = dir.path().join("monitor.sqlite");
    c.check_interval_secs = 0;
    c.limits = limits();
    start("monitor", dir, &c)
}

/// Connects to `to` from the loopback address `from` (127.0.0.0/8 is all loopback), with a
/// small receive buffer when `rcvbuf` is given.
pub(crate) async fn connect_from(
    from: IpAddr,
    to: SocketAddr,
    rcvbuf: Option<u32>,
) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    if let Some(n) = rcvbuf {
        s.set_recv_buffer_size(n)?;
    }
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

/// One fresh request from 127.0.0.1: `GET path`, `Connection: close`; the status, or `None`
/// without a complete answer within `within`.
pub(crate) async fn fresh_get(to: SocketAddr, path: &str, within: Duration) -> Option<u16> {
    let exchange = async {
        let mut s = TcpStream::connect(to).await.ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let head = String::from_utf8_lossy(&buf[..buf.len().min(12)]).into_owned();
        head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    };
    tokio::time::timeout(within, exchange).await.ok().flatten()
}

/// What happened to one attacking connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Answered `503` at once (past a cap).
    Refused,
    /// Closed by the server after this long.
    Dropped(Duration),
    /// Still open when the attacker gave up.
    Held,
    /// Could not connect.
    NoConnect,
}

/// Reads until the server closes; `true` if the answer was a 503.
async fn wait_closed(s: &mut TcpStream) -> bool {
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if first.len() < 16 {
                    first.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
    first.starts_with(b"HTTP/1.1 503")
}

/// Slow headers: a request line, then one header byte every `every`, for at most `give_up`.
pub(crate) async fn slow_headers(
    from: IpAddr,
    to: SocketAddr,
    every: Duration,
    give_up: Duration,
) -> Fate {
    let head = b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Slow: ";
    trickle(from, to, head, b"a", every, give_up, true).await
}

/// Slow body: `POST path` announcing `len` bytes, then one byte every `every`.
pub(crate) async fn slow_body(
    from: IpAddr,
    to: SocketAddr,
    path: &str,
    len: usize,
    every: Duration,
    give_up: Duration,
) -> Fate {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n{{"
    );
    trickle(from, to, head.as_bytes(), b" ", every, give_up, false).await
}

/// A slow client: connects from `from`, sends `head`, then `byte` every `every` until the
/// server closes the connection (Dropped, or Refused when `refusals` and its answer was a 503)
/// or `give_up` passes (Held). Once the server stops reading, it waits for the close.
async fn trickle(
    from: IpAddr,
    to: SocketAddr,
    head: &[u8],
    byte: &[u8],
    every: Duration,
    give_up: Duration,
    refusals: bool,
) -> Fate {
    let Ok(mut s) = connect_from(from, to, None).await else {
        return Fate::NoConnect;
    };
    let t = Instant::now();
    let _ = s.write_all(head).await;
    let (mut r, mut w) = s.split();
    let trickle = async {
        loop {
            tokio::time::sleep(every).await;
            if w.write_all(byte).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let closed = async {
        let mut buf = [0u8; 4096];
        let mut first = Vec::new();
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return refusals && first.starts_with(b"HTTP/1.1 503"),
                Ok(n) if first.len() < 64 => first.extend_from_slice(&buf[..n]),
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        refused = closed => if refused { Fate::Refused } else { Fate::Dropped(t.elapsed()) },
        () = trickle => unreachable!(),
        () = tokio::time::sleep(give_up) => Fate::Held,
    }
}

/// Idle keep-alive: one complete request, its answer, then nothing.
pub(crate) async fn idle_keep_alive(to: SocketAddr, give_up: Duration) -> Fate {
    let Ok(mut s) = TcpStream::connect(to).await else {
        return Fate::NoConnect;
    };
    let _ = s
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
        .await;
    let t = Instant::now();
    match tokio::time::timeout(give_up, wait_closed(&mut s)).await {
        Ok(_) => Fate::Dropped(t.elapsed()),
        Err(_) => Fate::Held,
    }
}

/// A slow reader: `GET path` with a tiny receive buffer, and nothing read.
pub(crate) async fn slow_reader(from: IpAddr, to: SocketAddr, path: &str) -> Option<TcpStream> {
    let mut s = connect_from(from, to, Some(4096)).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
        .await
        .ok()?;
    Some(s)
}

/// Drains `s` (bounded); the bytes received before the server closed it.
pub(crate) async fn drain(mut s: TcpStream, within: Duration) -> Option<usize> {
    let mut n = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let r = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => n += k,
            }
        }
    })
    .await;
    r.ok().map(|()| n)
}
