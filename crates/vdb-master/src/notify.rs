//! Release notifications and operator alerts: a JSON webhook and e-mail over SMTP.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use vdb_proto::ReleaseStatement;

use crate::config::SmtpConfig;
use crate::master::Master;

fn send(master: &Arc<Master>, body: serde_json::Value, subject: String, text: String) {
    if let Some(url) = master.config.webhook_url.clone() {
        let http = master.http.clone();
        let body = body.clone();
        master.tasks.spawn(async move {
            if let Err(e) = http
                .post(&url)
                .json(&body)
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                tracing::warn!(error = %e, "webhook failed");
            }
        });
    }
    if let Some(smtp) = master.config.smtp.clone() {
        master.tasks.spawn(async move {
            match tokio::time::timeout(Duration::from_secs(30), mail(&smtp, &subject, &text)).await
            {
                Ok(Ok(())) => tracing::info!(%subject, "notification mailed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "SMTP notification failed"),
                Err(_) => tracing::warn!("SMTP notification timed out"),
            }
        });
    }
}

/// Sends an operator alert.
pub(crate) fn alert(master: &Arc<Master>, kind: &str, message: &str) {
    send(
        master,
        serde_json::json!({"event": "alert", "kind": kind, "master": master.config.name, "message": message}),
        format!("[vdbnet {}] alert: {kind}", master.config.network),
        format!(
            "Master {} reports {kind}:\r\n\r\n{message}\r\n",
            master.config.name
        ),
    );
}

/// Announces an accepted release.
pub(crate) fn release(master: &Arc<Master>, st: &ReleaseStatement, id: &str) {
    send(
        master,
        serde_json::json!({"event": "release", "master": master.config.name, "release_id": id,
            "db": st.db, "version": st.version, "notes": st.notes}),
        format!(
            "[vdbnet {}] {} version {} released",
            master.config.network, st.db, st.version
        ),
        format!(
            "{} version {} is published (release {id}, via master {}).\r\n\r\n{}\r\n",
            st.db, st.version, master.config.name, st.notes
        ),
    );
}

async fn expect(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    code: &str,
) -> anyhow::Result<()> {
    loop {
        let mut line = String::new();
        anyhow::ensure!(
            r.read_line(&mut line).await? > 0,
            "SMTP server closed the connection"
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
    for line in text.replace("\r\n", "\n").lines() {
        // Dot-stuffing.
        if line.starts_with('.') {
            msg.push('.');
        }
        msg.push_str(line);
        msg.push_str("\r\n");
    }
    msg.push_str(".\r\n");
    wr.write_all(msg.as_bytes()).await?;
    expect(&mut rd, "250").await?;
    wr.write_all(b"QUIT\r\n").await?;
    Ok(())
}
