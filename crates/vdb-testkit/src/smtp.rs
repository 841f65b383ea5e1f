//! A mail relay double: accepts every message over plain SMTP and keeps its envelope
//! recipients and its DATA exactly as received (lines with their line ends).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// One message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The DATA (headers and body), every line as it came over the wire, line end included.
    pub data: String,
}

/// The running relay (it lives as long as the test's runtime).
#[derive(Debug, Clone)]
pub struct SmtpSink {
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    /// Starts on 127.0.0.1:0.
    pub async fn start() -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = l.local_addr().expect("bound address");
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let kept = Arc::clone(&mails);
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(session(s, Arc::clone(&kept)));
            }
        });
        Self { addr, mails }
    }

    /// The messages received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("sink state").clone()
    }

    /// Waits (up to 60 s, else panics naming `what`) until at least `n` messages have come,
    /// and returns them all.
    pub async fn wait(&self, n: usize, what: &str) -> Vec<Mail> {
        crate::wait_for_async(what, 60, || async {
            let got = self.mails();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

async fn session(s: tokio::net::TcpStream, mails: Arc<Mutex<Vec<Mail>>>) {
    let (rd, mut wr) = s.into_split();
    let mut rd = BufReader::new(rd);
    let _ = wr.write_all(b"220 sink ESMTP\r\n").await;
    let (mut to, mut data, mut in_data) = (Vec::new(), String::new(), false);
    let mut line = String::new();
    while rd.read_line(&mut line).await.unwrap_or(0) > 0 {
        if in_data {
            if line == ".\r\n" {
                in_data = false;
                mails.lock().expect("sink state").push(Mail {
                    to: std::mem::take(&mut to),
                    data: std::mem::take(&mut data),
                });
                let _ = wr.write_all(b"250 queued\r\n").await;
            } else {
                data.push_str(&line);
            }
            line.clear();
            continue;
        }
        let up = line.to_ascii_uppercase();
        let reply: &[u8] = if up.starts_with("EHLO") {
            b"250-sink\r\n250 8BITMIME\r\n"
        } else if up.starts_with("DATA") {
            in_data = true;
            b"354 go on\r\n"
        } else if up.starts_with("QUIT") {
            let _ = wr.write_all(b"221 bye\r\n").await;
            return;
        } else {
            if let Some(r) = up.strip_prefix("RCPT TO:") {
                let r = &line[line.len() - r.len()..];
                to.push(r.trim().trim_matches(['<', '>']).to_owned());
            }
            b"250 ok\r\n"
        };
        let _ = wr.write_all(reply).await;
        line.clear();
    }
}
