//! Telling people: the team (webhook and e-mail) about each new sample and each resolution, and
//! a submitter who left an address about the release that detects their sample.
//!
//! Sending never blocks a submission: each message goes out on a task of its own, bounded in
//! time, and a failure is logged.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use vdb_proto::sample::{Publication, SampleRecord, ScanResult};

use crate::config::{NotifyConfig, SmtpConfig};

/// The notification channels.
#[derive(Debug, Clone)]
pub(crate) struct Notifier {
    config: NotifyConfig,
    intake: String,
    public_url: Option<String>,
    http: reqwest::Client,
}

impl Notifier {
    pub(crate) fn new(config: NotifyConfig, intake: String, public_url: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            config,
            intake,
            public_url,
            http,
        }
    }

    /// A new sample, after triage.
    pub(crate) fn new_sample(&self, rec: &SampleRecord, scan: Option<&ScanResult>) {
        let first = rec.submissions.first();
        let verdict = match scan {
            Some(s) if s.outcome == "found" => {
                format!("already detected as {}", s.detail.as_deref().unwrap_or("?"))
            }
            Some(s) if s.outcome == "clean" => "not detected by the current databases".into(),
            Some(s) => format!(
                "not fully scanned ({}: {})",
                s.outcome,
                s.detail.as_deref().unwrap_or("")
            ),
            None => "not scanned (no scanner configured)".into(),
        };
        let body = serde_json::json!({
            "event": "sample",
            "intake": self.intake,
            "sha256": rec.sha256,
            "size": rec.size,
            "scan": scan,
            "claimed": first.and_then(|s| s.claimed.clone()),
            "file_name": first.and_then(|s| s.file_name.clone()),
        });
        let subject = format!(
            "[vdbnet intake] new sample {}: {verdict}",
            &rec.sha256[..16]
        );
        let text = format!(
            "A new sample arrived at intake {}.\n\nSHA-256: {}\nSize: {} bytes\nTriage: {verdict}\n\
             Claimed detection: {}\nFile name: {}\nNote: {}\n\nGet it (ZIP, password infected): vdb samples get {}\n",
            self.intake,
            rec.sha256,
            rec.size,
            first.and_then(|s| s.claimed.as_deref()).unwrap_or("-"),
            first.and_then(|s| s.file_name.as_deref()).unwrap_or("-"),
            first.map_or("", |s| s.note.as_str()),
            rec.sha256,
        );
        self.team(body, subject, text);
    }

    /// A sample resolved by a release: the team, and each submitter who left an address.
    pub(crate) fn resolved(&self, rec: &SampleRecord, p: &Publication) {
        let body = serde_json::json!({
            "event": "sample_resolved",
            "intake": self.intake,
            "sha256": rec.sha256,
            "published": p,
        });
        let detection = p.detection.as_deref().unwrap_or("a new signature");
        let line = format!("{} version {} detects it as {detection}", p.db, p.version);
        self.team(
            body,
            format!("[vdbnet intake] sample {} resolved", &rec.sha256[..16]),
            format!("Sample {}: {line}.\n", rec.sha256),
        );
        let Some(smtp) = self.config.smtp.clone() else {
            return;
        };
        let mut to: Vec<String> = rec
            .submissions
            .iter()
            .filter_map(|s| s.email.clone())
            .collect();
        to.sort();
        to.dedup();
        let text = format!(
            "Thank you for the sample you sent (SHA-256 {}).\n\n{line}.\n\n\
             Update your databases (freshclam or vdb-update) to get it.{}\n",
            rec.sha256,
            self.public_url
                .as_deref()
                .map(|u| format!(
                    "\nThe status of your submission stays at {u}/status/<your tracking id>."
                ))
                .unwrap_or_default(),
        );
        for addr in to {
            let smtp = smtp.clone();
            let subject = "Your sample is now detected".to_owned();
            let text = text.clone();
            tokio::spawn(async move { mail_logged(&smtp, &[addr], &subject, &text).await });
        }
    }

    fn team(&self, body: serde_json::Value, subject: String, text: String) {
        if let Some(url) = self.config.webhook_url.clone() {
            let http = self.http.clone();
            tokio::spawn(async move {
                if let Err(e) = webhook(&http, &url, &body).await {
                    tracing::warn!(error = %e, "webhook failed");
                }
            });
        }
        if let Some(smtp) = self.config.smtp.clone() {
            tokio::spawn(async move {
                let to = smtp.to.clone();
                mail_logged(&smtp, &to, &subject, &text).await;
            });
        }
    }
}

/// One JSON POST.
async fn webhook(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    http.post(url).json(body).send().await?.error_for_status()?;
    Ok(())
}

async fn mail_logged(smtp: &SmtpConfig, to: &[String], subject: &str, text: &str) {
    match tokio::time::timeout(Duration::from_secs(30), mail(smtp, to, subject, text)).await {
        Ok(Ok(())) => tracing::info!(%subject, "mail sent"),
        Ok(Err(e)) => tracing::warn!(error = %e, "SMTP failed"),
        Err(_) => tracing::warn!("SMTP timed out"),
    }
}

/// One plain-text message through the relay (addresses were checked by
/// `vdb_proto::sample::check_email`; the subject is stripped of control characters).
async fn mail(smtp: &SmtpConfig, to: &[String], subject: &str, text: &str) -> anyhow::Result<()> {
    let (rd, mut wr) = tokio::net::TcpStream::connect(&smtp.server)
        .await?
        .into_split();
    let mut rd = BufReader::new(rd).take(64 << 10);
    let mut expect = async |code: &str| -> anyhow::Result<()> {
        loop {
            let mut line = String::new();
            anyhow::ensure!(
                rd.read_line(&mut line).await? > 0,
                "SMTP server closed the connection"
            );
            anyhow::ensure!(
                line.starts_with(code),
                "SMTP server answered {:?}, expected {code}",
                line.trim_end()
            );
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    };
    expect("220").await?;
    let mut cmds = vec![
        "EHLO vdbnet-intake".to_owned(),
        format!("MAIL FROM:<{}>", smtp.from),
    ];
    cmds.extend(to.iter().map(|t| format!("RCPT TO:<{t}>")));
    for c in cmds {
        wr.write_all(format!("{c}\r\n").as_bytes()).await?;
        expect("250").await?;
    }
    wr.write_all(b"DATA\r\n").await?;
    expect("354").await?;
    let subject: String = subject.chars().filter(|c| !c.is_control()).collect();
    let mut msg = format!(
        "From: {}\r\nTo: {}\r\nSubject: {subject}\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        smtp.from,
        to.join(", "),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    );
    for line in text.lines() {
        if line.starts_with('.') {
            msg.push('.');
        }
        msg.push_str(line);
        msg.push_str("\r\n");
    }
    msg.push_str(".\r\n");
    wr.write_all(msg.as_bytes()).await?;
    expect("250").await?;
    wr.write_all(b"QUIT\r\n").await?;
    Ok(())
}
