//! Triage: a new sample is scanned against the network's current databases by the real ClamAV,
//! `clamscan` (a process per scan) or `clamd` (`INSTREAM` over its socket).
//!
//! The intake itself never unpacks anything: the sample is decrypted from its quarantine ZIP
//! straight into the scanner's standard input or socket. ClamAV unpacks archives with its own
//! limits, which `clamscan` gets explicitly: `--max-filesize` and `--max-scansize` (the sample
//! cap, and four times it), `--max-files=1000`, `--max-recursion=10`,
//! `--max-scantime=<timeout>`, `--alert-exceeds-max=yes` (a sample that hits a limit is recorded
//! as not fully scanned, never as detected), and its own temporary directory. A scan that takes
//! longer than `scanner.timeout_secs` is killed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use vdb_proto::sample::{ScanReply, ScanResult, parse_scan_reply};

use crate::config::ScannerConfig;
use crate::quarantine::Quarantine;

/// The scanner, as configured.
#[derive(Debug)]
pub(crate) struct Triage {
    config: ScannerConfig,
    max_sample: u64,
    slots: tokio::sync::Semaphore,
}

/// Longest scanner answer read.
const MAX_REPLY: u64 = 64 << 10;

impl Triage {
    pub(crate) fn new(config: ScannerConfig, max_sample: u64) -> Self {
        let slots = tokio::sync::Semaphore::new(config.concurrency);
        Self {
            config,
            max_sample,
            slots,
        }
    }

    /// Whether a scanner is configured.
    pub(crate) fn enabled(&self) -> bool {
        self.config.clamd.is_some() || self.config.database.is_some()
    }

    /// Scans one quarantined sample; the result says what happened, errors included.
    pub(crate) async fn scan(&self, q: &Arc<Quarantine>, sha256: &str, now: i64) -> ScanResult {
        let _slot = self.slots.acquire().await;
        let (engine, reply) = if let Some(clamd) = &self.config.clamd {
            ("clamd", self.clamd(q, sha256, clamd).await)
        } else {
            ("clamscan", self.clamscan(q, sha256).await)
        };
        let (outcome, detail) = match reply {
            Ok(ScanReply::Clean) => ("clean", None),
            Ok(ScanReply::Found(n)) => ("found", Some(n)),
            Ok(ScanReply::LimitExceeded(n)) => ("limit_exceeded", Some(n)),
            Ok(ScanReply::Error(e)) => ("error", Some(e)),
            Ok(_) => ("error", Some("unknown scanner answer".into())),
            Err(e) => ("error", Some(e)),
        };
        if outcome == "error" {
            tracing::warn!(%sha256, engine, error = ?detail, "triage failed");
        } else {
            tracing::info!(%sha256, engine, outcome, detail = ?detail, "triage");
        }
        ScanResult {
            at: now,
            engine: engine.into(),
            outcome: outcome.into(),
            detail,
        }
    }

    /// Streams the decrypted sample, chunk by chunk, from a blocking reader.
    fn stream(&self, q: &Arc<Quarantine>, sha256: &str) -> tokio::sync::mpsc::Receiver<Bytes> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let q = q.clone();
        let sha = sha256.to_owned();
        let limit = self.max_sample;
        tokio::task::spawn_blocking(move || {
            let r = q.read_sample(&sha, limit, &mut |c| {
                tx.blocking_send(Bytes::copy_from_slice(c))
                    .map_err(|_| std::io::Error::other("scanner went away"))
            });
            if let Err(e) = r {
                tracing::warn!(%sha, error = %e, "cannot read a quarantined sample");
            }
        });
        rx
    }

    async fn clamscan(&self, q: &Arc<Quarantine>, sha256: &str) -> Result<ScanReply, String> {
        let Some(db) = &self.config.database else {
            return Err("no scanner database configured".into());
        };
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let mut child = tokio::process::Command::new(&self.config.clamscan)
            .arg("--no-summary")
            .arg("--stdout")
            .arg(format!("--database={}", db.display()))
            .arg(format!("--tempdir={}", q.scan_tmp_dir().display()))
            .arg(format!("--max-filesize={}", self.max_sample))
            .arg(format!(
                "--max-scansize={}",
                self.max_sample.saturating_mul(4)
            ))
            .arg("--max-files=1000")
            .arg("--max-recursion=10")
            .arg(format!("--max-scantime={}", timeout.as_millis()))
            .arg("--alert-exceeds-max=yes")
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.config.clamscan.display()))?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let mut rx = self.stream(q, sha256);
        let feed = async move {
            while let Some(c) = rx.recv().await {
                // clamscan may stop reading early (a limit); its verdict still counts.
                if stdin.write_all(&c).await.is_err() {
                    break;
                }
            }
            drop(stdin);
        };
        let mut stdout = child.stdout.take().ok_or("no stdout")?;
        let mut stderr = child.stderr.take().ok_or("no stderr")?;
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut stdout = (&mut stdout).take(MAX_REPLY);
            let mut stderr = (&mut stderr).take(MAX_REPLY);
            let (_, o, e) = tokio::join!(
                feed,
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err),
            );
            o.and(e).map_err(|e| e.to_string())?;
            let status = child.wait().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, out, err))
        };
        let (status, out, err) = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| format!("clamscan took longer than {} s", timeout.as_secs()))??;
        let text = String::from_utf8_lossy(&out);
        match (status.code(), parse_scan_reply(&text)) {
            (Some(0 | 1), Some(r)) => Ok(r),
            _ => {
                let err = String::from_utf8_lossy(&err);
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                Err(format!(
                    "clamscan failed ({status}): {}",
                    last.chars()
                        .filter(|c| !c.is_control())
                        .take(300)
                        .collect::<String>()
                ))
            }
        }
    }

    async fn clamd(
        &self,
        q: &Arc<Quarantine>,
        sha256: &str,
        addr: &str,
    ) -> Result<ScanReply, String> {
        let timeout = Duration::from_secs(self.config.timeout_secs);
        let rx = self.stream(q, sha256);
        let run = async {
            if addr.starts_with('/') {
                let s = tokio::net::UnixStream::connect(addr)
                    .await
                    .map_err(|e| format!("cannot connect to clamd at {addr}: {e}"))?;
                instream(s, rx).await
            } else {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("cannot connect to clamd at {addr}: {e}"))?;
                instream(s, rx).await
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| format!("clamd took longer than {} s", timeout.as_secs()))?
    }
}

/// clamd's `zINSTREAM`: length-prefixed chunks, a zero length, then one NUL-terminated answer.
async fn instream<S>(
    mut s: S,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> Result<ScanReply, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let io = |e: std::io::Error| format!("clamd: {e}");
    s.write_all(b"zINSTREAM\0").await.map_err(io)?;
    while let Some(c) = rx.recv().await {
        let len = u32::try_from(c.len()).map_err(|_| "chunk too large".to_owned())?;
        if s.write_all(&len.to_be_bytes()).await.is_err() || s.write_all(&c).await.is_err() {
            // clamd closes the stream when a limit is hit; read its answer.
            break;
        }
    }
    let _ = s.write_all(&0u32.to_be_bytes()).await;
    let mut reply = Vec::new();
    (&mut s)
        .take(MAX_REPLY)
        .read_to_end(&mut reply)
        .await
        .map_err(io)?;
    let text = String::from_utf8_lossy(&reply);
    parse_scan_reply(&text).ok_or_else(|| {
        format!(
            "clamd answered {:?}",
            text.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        )
    })
}
