//! The notifier: release announcements and operator alerts, as a JSON webhook and e-mail over
//! SMTP. The webhook URL may carry a token: it is never logged.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use vdb_proto::ReleaseStatement;

use crate::config::SmtpConfig;
use crate::events::Event;
use crate::tasks::Tasks;

/// The longest SMTP reply line read.
const MAX_SMTP_LINE: usize = 4096;

/// Announces releases and alerts.
#[derive(Debug)]
pub(crate) struct Notifier {
    name: String,
    network: String,
    webhook_url: Option<String>,
    smtp: Option<SmtpConfig>,
    http: reqwest::Client,
    tasks: Tasks,
}

impl Notifier {
    /// A notifier for master `name` of `network`.
    pub(crate) fn new(config: &crate::config::Config, http: reqwest::Client, tasks: Tasks) -> Self {
        Self {
            name: config.name.clone(),
            network: config.network.clone(),
            webhook_url: config.webhook_url.clone(),
            smtp: config.smtp.clone(),
            http,
            tasks,
        }
    }

    /// Announces first-hand releases and sends alerts, until cancelled.
    pub(crate) async fn run(self, mut events: UnboundedReceiver<Event>, cancel: CancellationToken) {
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                e = events.recv() => e,
            };
            match event {
                None => return,
                Some(Event::ReleaseAccepted {
                    id,
                    statement,
                    origin,
                }) if origin.is_first_hand() => self.release(&statement, &id),
                Some(Event::Alert { kind, message }) => self.alert(kind, &message),
                Some(_) => {}
            }
        }
    }

    fn send(&self, body: serde_json::Value, subject: String, text: String) {
        if let Some(url) = self.webhook_url.clone() {
            let http = self.http.clone();
            self.tasks.spawn(async move {
                let r = http
                    .post(&url)
                    .json(&body)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {}
                    // The error of a request names its URL; the webhook's may hold a token.
                    Ok(r) => {
                        tracing::warn!(status = %r.status(), "webhook refused the notification")
                    }
                    Err(e) => tracing::warn!(error = %e.without_url(), "webhook failed"),
                }
            });
        }
        if let Some(smtp) = self.smtp.clone() {
            self.tasks.spawn(async move {
                match tokio::time::timeout(Duration::from_secs(30), mail(&smtp, &subject, &text))
                    .await
                {
                    Ok(Ok(())) => tracing::info!(%subject, "notification mailed"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "SMTP notification failed"),
                    Err(_) => tracing::warn!("SMTP notification timed out"),
                }
            });
        }
    }

    /// Sends an operator alert.
    fn alert(&self, kind: &str, message: &str) {
        self.send(
            serde_json::json!({"event": "alert", "kind": kind, "master": self.name, "message": message}),
            format!("[vdbnet {}] alert: {kind}", self.network),
            format!("Master {} reports {kind}:\r\n\r\n{message}\r\n", self.name),
        );
    }

    /// Announces an accepted release.
    fn release(&self, st: &ReleaseStatement, id: &str) {
        self.send(
            serde_json::json!({"event": "release", "master": self.name, "release_id": id,
                "db": st.db, "version": st.version, "notes": st.notes}),
            format!(
                "[vdbnet {}] {} version {} released",
                self.network, st.db, st.version
            ),
            format!(
                "{} version {} is published (release {id}, via master {}).\r\n\r\n{}\r\n",
                st.db, st.version, self.name, st.notes
            ),
        );
    }
}

async fn expect(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: &str,
) -> anyhow::Result<()> {
    // A reply is a few lines; a server that talks on and on is not an SMTP server.
    for _ in 0..64 {
        let mut line = String::new();
        anyhow::ensure!(
            (&mut *r)
                .take(MAX_SMTP_LINE as u64)
                .read_line(&mut line)
                .await?
                > 0,
            "SMTP server closed the connection"
        );
        anyhow::ensure!(
            line.ends_with('\n'),
            "SMTP server sent a reply line over {MAX_SMTP_LINE} bytes"
        );
        anyhow::ensure!(
            line.starts_with(code),
            "SMTP server answered {:?}, expected {code}",
            line.trim_end()
        );
        // Multi-line replies continue with "<code>-".
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
    anyhow::bail!("SMTP server sent a reply of over 64 lines")
}

/// The message body on the wire: every line break (CR LF, a bare LF or a bare CR) becomes
/// CR LF, other control characters but tabs go, and lines starting with a dot are
/// dot-stuffed, so nothing in the text (release notes) can end the message or talk SMTP.
fn body_lines(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::new();
    for line in text.strip_suffix('\n').unwrap_or(&text).split('\n') {
        let line: String = line
            .chars()
            .filter(|c| *c == '\t' || !c.is_control())
            .collect();
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

/// A header value without line breaks (no header injection).
fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// Sends one plain-text message.
pub(crate) async fn mail(smtp: &SmtpConfig, subject: &str, text: &str) -> anyhow::Result<()> {
    let (rd, mut wr) = TcpStream::connect(&smtp.server).await?.into_split();
    let mut rd = BufReader::new(rd);
    expect(&mut rd, "220").await?;
    for line in [
        "EHLO vdbnet-master".to_owned(),
        format!("MAIL FROM:<{}>", clean(&smtp.from)),
    ] {
        wr.write_all(format!("{line}\r\n").as_bytes()).await?;
        expect(&mut rd, "250").await?;
    }
    for to in &smtp.to {
        wr.write_all(format!("RCPT TO:<{}>\r\n", clean(to)).as_bytes())
            .await?;
        expect(&mut rd, "250").await?;
    }
    wr.write_all(b"DATA\r\n").await?;
    expect(&mut rd, "354").await?;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut msg = format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {date}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
        clean(&smtp.from),
        smtp.to
            .iter()
            .map(|t| clean(t))
            .collect::<Vec<_>>()
            .join(", "),
        clean(subject)
    );
    msg.push_str(&body_lines(text));
    msg.push_str(".\r\n");
    wr.write_all(msg.as_bytes()).await?;
    expect(&mut rd, "250").await?;
    wr.write_all(b"QUIT\r\n").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::body_lines;

    #[test]
    fn no_line_break_of_the_text_reaches_smtp_bare() {
        let body = body_lines("notes\r.\r\nMAIL FROM:<x>\nend\u{0}\tok\r\n.");
        assert_eq!(body, "notes\r\n..\r\nMAIL FROM:<x>\r\nend\tok\r\n..\r\n");
        for (i, b) in body.bytes().enumerate() {
            if b == b'\r' {
                assert_eq!(body.as_bytes()[i + 1], b'\n');
            }
            if b == b'\n' {
                assert_eq!(body.as_bytes()[i - 1], b'\r');
            }
        }
        assert!(
            !body.contains("\r\n.\r\n"),
            "the text cannot end the message"
        );
    }
}
