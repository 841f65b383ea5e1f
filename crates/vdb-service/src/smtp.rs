//! E-mail through an SMTP relay, with `lettre`: STARTTLS (opportunistic by default, or
//! required), AUTH, strict addresses, bounded replies and time, and no bare CR or LF from a
//! subject or body reaching the SMTP stream.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr as _;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes, header};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, Message};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Most bytes read from the relay in one session (its replies): a relay cannot make the
/// sender buffer without bound.
const MAX_READ: u64 = 256 * 1024;
/// Most time one message may take, connection to `QUIT`.
const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP (a local MTA on localhost).
    None,
    /// STARTTLS when the relay offers it (its certificate is then verified), plain otherwise.
    #[default]
    Opportunistic,
    /// STARTTLS required: nothing is sent (no credentials, no mail) without it.
    Starttls,
}

/// An SMTP relay and the recipients of a role's mail (the `[smtp]` section).
///
/// ```toml
/// [smtp]
/// server = "mail.example.net:587"
/// from = "vdbnet@example.net"
/// to = ["ops@example.net"]        # the monitor also reads `team = [...]`
/// tls = "starttls"                # none | opportunistic (default) | starttls
/// username = "vdbnet"             # AUTH (needs tls = "starttls")
/// password = "…"
/// # ca_file = "/etc/ssl/relay-ca.pem"   # trust this CA instead of the system's
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `host:port` of the relay.
    pub server: String,
    /// Envelope and header sender.
    pub from: String,
    /// Recipients of every message (a master's announcement list, a monitor's team).
    #[serde(default, alias = "team")]
    pub to: Vec<String>,
    /// STARTTLS policy.
    #[serde(default)]
    pub tls: SmtpTls,
    /// AUTH user name (with `password`; needs `tls = "starttls"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// AUTH password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A PEM CA certificate to verify the relay with (default: the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Most seconds one message may take (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// Why mail cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The configuration cannot work.
    #[error("SMTP configuration: {0}")]
    Config(String),
    /// An address is not a plain `local@domain` address.
    #[error("refusing to mail the address {0:?}")]
    Address(String),
    /// The relay cannot be reached.
    #[error("SMTP {server}: {source}")]
    Connect {
        /// The relay.
        server: String,
        /// Why.
        source: io::Error,
    },
    /// The SMTP exchange failed (including a refused STARTTLS or AUTH, or a reply too large).
    #[error("SMTP {server}: {source}")]
    Smtp {
        /// The relay.
        server: String,
        /// Why.
        source: lettre::transport::smtp::Error,
    },
    /// The relay does not offer STARTTLS but `tls = "starttls"`.
    #[error("SMTP {0}: STARTTLS is required but not offered; nothing was sent")]
    NoStarttls(String),
    /// The message cannot be built.
    #[error("SMTP message: {0}")]
    Message(#[from] lettre::error::Error),
    /// The exchange took longer than the timeout.
    #[error("SMTP {0}: timed out")]
    Timeout(String),
}

fn address(a: &str) -> Result<Address, SmtpError> {
    let t = a.trim_matches(' ');
    if t.is_empty() || t.len() > 254 || t.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(SmtpError::Address(a.to_owned()));
    }
    Address::from_str(t).map_err(|_| SmtpError::Address(a.to_owned()))
}

/// A header value on one line: control characters (CR and LF included) become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Body text with CRLF line ends only (a bare CR or LF is a line end) and no other control
/// characters but tabs.
fn body_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out
}

/// A checked [`SmtpConfig`] that sends messages.
#[derive(Clone)]
pub struct Mailer {
    server: String,
    from: Mailbox,
    to: Vec<Address>,
    tls: SmtpTls,
    tls_params: TlsParameters,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .field("from", &self.from)
            .field("tls", &self.tls)
            .field("auth", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// Checks `config` (addresses, TLS and AUTH settings, the CA file); `hello` is the name
    /// given in `EHLO` (reduced to a host name).
    pub fn new(config: &SmtpConfig, hello: &str) -> Result<Self, SmtpError> {
        let host = config
            .server
            .rsplit_once(':')
            .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                SmtpError::Config(format!("server {:?} is not host:port", config.server))
            })?;
        let from = Mailbox::new(None, address(&config.from)?);
        let to = config
            .to
            .iter()
            .map(|a| address(a))
            .collect::<Result<Vec<_>, _>>()?;
        let credentials = match (&config.username, &config.password) {
            (Some(u), Some(p)) => {
                if config.tls != SmtpTls::Starttls {
                    return Err(SmtpError::Config(
                        "username and password need tls = \"starttls\" (no credentials in clear)"
                            .into(),
                    ));
                }
                Some(Credentials::new(u.clone(), p.clone()))
            }
            (None, None) => None,
            _ => {
                return Err(SmtpError::Config(
                    "username and password go together".into(),
                ));
            }
        };
        let mut b = TlsParameters::builder(host.to_owned());
        if let Some(ca) = &config.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| SmtpError::Config(format!("ca_file {}: {e}", ca.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| SmtpError::Config(format!("ca_file {}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        let tls_params = b
            .build_rustls()
            .map_err(|e| SmtpError::Config(format!("TLS: {e}")))?;
        let hello: String = hello
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(63)
            .collect();
        let hello = if hello.is_empty() {
            ClientId::default()
        } else {
            ClientId::Domain(hello)
        };
        Ok(Self {
            server: config.server.clone(),
            from,
            to,
            tls: config.tls,
            tls_params,
            credentials,
            hello,
            timeout: Duration::from_secs(
                config.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS).max(1),
            ),
        })
    }

    /// Sends one plain-text message to the configured recipients.
    pub async fn send(&self, subject: &str, body: &str) -> Result<(), SmtpError> {
        let to = self.to.clone();
        self.send_to(to, subject, body).await
    }

    /// Sends one plain-text message to `to` (each checked as strictly as the configuration's).
    pub async fn send_to_addresses(
        &self,
        to: &[&str],
        subject: &str,
        body: &str,
    ) -> Result<(), SmtpError> {
        let to = to
            .iter()
            .map(|a| address(a))
            .collect::<Result<Vec<_>, _>>()?;
        self.send_to(to, subject, body).await
    }

    async fn send_to(&self, to: Vec<Address>, subject: &str, body: &str) -> Result<(), SmtpError> {
        if to.is_empty() {
            return Ok(());
        }
        let mut rcpt = Mailboxes::new();
        for a in &to {
            rcpt.push(Mailbox::new(None, a.clone()));
        }
        let msg = Message::builder()
            .from(self.from.clone())
            .mailbox(header::To::from(rcpt))
            .subject(one_line(subject))
            .header(ContentType::TEXT_PLAIN)
            .body(body_text(body))?;
        let envelope = msg.envelope().clone();
        let raw = msg.formatted();
        let exchange = async {
            let smtp = |source| SmtpError::Smtp {
                server: self.server.clone(),
                source,
            };
            let tcp =
                TcpStream::connect(&self.server)
                    .await
                    .map_err(|source| SmtpError::Connect {
                        server: self.server.clone(),
                        source,
                    })?;
            let stream = Capped {
                inner: tcp,
                left: MAX_READ,
            };
            let mut conn =
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                    .await
                    .map_err(smtp)?;
            let offered = conn.can_starttls();
            match self.tls {
                SmtpTls::None => {}
                SmtpTls::Opportunistic if !offered => {}
                SmtpTls::Starttls if !offered => {
                    conn.abort().await;
                    return Err(SmtpError::NoStarttls(self.server.clone()));
                }
                SmtpTls::Opportunistic | SmtpTls::Starttls => {
                    conn.starttls(self.tls_params.clone(), &self.hello)
                        .await
                        .map_err(smtp)?;
                }
            }
            if let Some(c) = &self.credentials {
                conn.auth(&[Mechanism::Plain, Mechanism::Login], c)
                    .await
                    .map_err(smtp)?;
            }
            conn.send(&envelope, &raw).await.map_err(smtp)?;
            let _ = conn.quit().await;
            Ok(())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SmtpError::Timeout(self.server.clone()))?
    }
}

/// A TCP stream that refuses to read once `left` bytes are read.
#[derive(Debug)]
struct Capped {
    inner: TcpStream,
    left: u64,
}

impl AsyncRead for Capped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(Err(io::Error::other("the SMTP relay sent too much")));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            // At most one read buffer past the cap: the bound holds.
            let n = (buf.filled().len() - before) as u64;
            this.left = this.left.saturating_sub(n);
        }
        r
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl lettre::transport::smtp::client::AsyncTokioStream for Capped {
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_strict() {
        for ok in ["a@example.org", " ops@mail.example.net "] {
            address(ok).unwrap();
        }
        for bad in [
            "",
            "a",
            "a@b>\r\nRCPT TO:<x@y",
            "a b@example.org",
            "<a@example.org>",
            "a@example.org\n",
            "Name <a@example.org>",
        ] {
            assert!(address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn no_bare_line_ends() {
        assert_eq!(one_line("a\r\nBcc: x\rb\nc"), "a  Bcc: x b c");
        assert_eq!(body_text("a\rb\nc\r\nd"), "a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(body_text("x\u{0}y\tz\r\n"), "x y\tz\r\n");
    }

    /// A relay that greets with an endless line: the sender gives up, it does not buffer it.
    #[tokio::test]
    async fn endless_replies_are_bounded() {
        use tokio::io::AsyncWriteExt as _;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = l.local_addr().unwrap().to_string();
        let relay = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(b"220 ").await;
            let chunk = vec![b'a'; 64 * 1024];
            let mut sent = 0usize;
            while s.write_all(&chunk).await.is_ok() {
                sent += chunk.len();
            }
            sent
        });
        let m = Mailer::new(
            &SmtpConfig {
                server,
                from: "a@example.org".into(),
                to: vec!["b@example.org".into()],
                timeout_secs: Some(20),
                ..SmtpConfig::default()
            },
            "t",
        )
        .unwrap();
        let t = std::time::Instant::now();
        let e = m.send("s", "b").await.unwrap_err();
        assert!(matches!(e, SmtpError::Smtp { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        let sent = relay.await.unwrap();
        assert!(
            sent < 64 << 20,
            "the sender stopped reading early ({sent} bytes)"
        );
    }

    #[test]
    fn config_rules() {
        let base = SmtpConfig {
            server: "127.0.0.1:25".into(),
            from: "a@example.org".into(),
            to: vec!["b@example.org".into()],
            ..SmtpConfig::default()
        };
        Mailer::new(&base, "vdbnet master").unwrap();
        let creds = SmtpConfig {
            username: Some("u".into()),
            password: Some("p".into()),
            ..base.clone()
        };
        assert!(matches!(
            Mailer::new(&creds, "m"),
            Err(SmtpError::Config(_))
        ));
        Mailer::new(
            &SmtpConfig {
                tls: SmtpTls::Starttls,
                ..creds
            },
            "m",
        )
        .unwrap();
        let bad_to = SmtpConfig {
            to: vec!["x@y\r\nDATA".into()],
            ..base.clone()
        };
        assert!(matches!(
            Mailer::new(&bad_to, "m"),
            Err(SmtpError::Address(_))
        ));
        let no_port = SmtpConfig {
            server: "relay".into(),
            ..base
        };
        assert!(matches!(
            Mailer::new(&no_port, "m"),
            Err(SmtpError::Config(_))
        ));
        let t: SmtpConfig =
            serde_json::from_str(r#"{"server":"h:25","from":"a@b.c","team":["t@b.c"]}"#).unwrap();
        assert_eq!(t.to, ["t@b.c"]);
        assert_eq!(t.tls, SmtpTls::Opportunistic);
    }
}
