//! A hostile HTTP server for the clients' bounds: it answers every request with an endless
//! body, a body larger than announced, or a redirect, and counts the bytes it got out.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hostility {
    /// `200 OK` without a length, then zeros until the client hangs up.
    EndlessBody,
    /// `200 OK` announcing this many bytes of zeros, and sending them.
    Huge(u64),
    /// `302 Found` to this location.
    Redirect(String),
}

/// A running hostile server (std threads, one per connection); stops on drop.
#[derive(Debug)]
pub struct HostileServer {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl HostileServer {
    /// Starts on 127.0.0.1:0.
    pub fn start(how: Hostility) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let sent = Arc::new(AtomicU64::new(0));
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, r, st) = (sent.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, r, how) = (s.clone(), r.clone(), how.clone());
                std::thread::spawn(move || answer(conn, &how, &s, &r));
            }
        });
        Self {
            addr,
            sent,
            requests,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Body bytes written to clients so far (what a client had to take before it hung up).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// The request lines seen (`GET /path HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("server state").clone()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads a request's head from `conn` (10 s read time-out): its request line, or `None` if the
/// connection ends or stalls first. The body, if any, is left unread.
pub(crate) fn read_head(conn: &TcpStream) -> Option<String> {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => return None,
            Ok(_) if h == "\r\n" || h == "\n" => return Some(line),
            Ok(_) => {}
        }
    }
}

fn answer(mut conn: TcpStream, how: &Hostility, sent: &AtomicU64, requests: &Mutex<Vec<String>>) {
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    let Some(line) = read_head(&conn) else { return };
    requests
        .lock()
        .expect("server state")
        .push(line.trim().to_owned());
    let chunk = [0u8; 64 << 10];
    let (head, mut left) = match how {
        Hostility::EndlessBody => (
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_owned(),
            u64::MAX,
        ),
        Hostility::Huge(n) => (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"),
            *n,
        ),
        Hostility::Redirect(to) => (
            format!(
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
            0,
        ),
    };
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    while left > 0 {
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if conn.write_all(&chunk[..n]).is_err() {
            return;
        }
        sent.fetch_add(n as u64, Ordering::SeqCst);
        left -= n as u64;
    }
}
