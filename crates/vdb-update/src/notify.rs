//! After an update (spec §4.8): `RELOAD` to clamd over its socket, and the `On*Execute` hooks.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The legacy NUL-terminated command freshclam sends.
pub const RELOAD: &[u8] = b"RELOAD\0";

const CLAMD_TIMEOUT: Duration = Duration::from_secs(10);

/// Where clamd listens, from clamd.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdSocket {
    /// `LocalSocket`.
    Unix(std::path::PathBuf),
    /// `TCPSocket` on each `TCPAddr` (localhost when none).
    Tcp(Vec<String>),
}

/// Reads `LocalSocket`, `TCPSocket` and `TCPAddr` from clamd.conf text.
pub fn clamd_socket(conf: &str) -> Option<ClamdSocket> {
    let mut local = None;
    let mut port = None;
    let mut addrs = Vec::new();
    for line in conf.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once([' ', '\t']) else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k {
            "LocalSocket" if local.is_none() => local = Some(v.into()),
            "TCPSocket" if port.is_none() => port = v.parse::<u16>().ok(),
            "TCPAddr" => addrs.push(v.to_owned()),
            _ => {}
        }
    }
    if let Some(p) = local {
        return Some(ClamdSocket::Unix(p));
    }
    let port = port?;
    if addrs.is_empty() {
        addrs.push("127.0.0.1".into());
    }
    Some(ClamdSocket::Tcp(
        addrs
            .into_iter()
            .map(|a| {
                if a.contains(':') {
                    format!("[{a}]:{port}")
                } else {
                    format!("{a}:{port}")
                }
            })
            .collect(),
    ))
}

async fn talk<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
) -> std::io::Result<String> {
    s.write_all(RELOAD).await?;
    let mut buf = [0u8; 20];
    let mut n = 0;
    while n < buf.len() {
        let r = s.read(&mut buf[n..]).await?;
        if r == 0 {
            break;
        }
        n += r;
        if buf[..n].contains(&b'\n') {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Tells the clamd configured in `clamd_conf` to reload. Success iff it answers `RELOADING`.
pub async fn notify_clamd(clamd_conf: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(clamd_conf)
        .map_err(|e| format!("cannot read {}: {e}", clamd_conf.display()))?;
    let socket = clamd_socket(&text).ok_or_else(|| {
        format!(
            "{}: neither LocalSocket nor TCPSocket is set; clamd cannot be notified",
            clamd_conf.display()
        )
    })?;
    let reply = tokio::time::timeout(CLAMD_TIMEOUT, async {
        match &socket {
            ClamdSocket::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(|e| format!("cannot connect to clamd at {}: {e}", p.display()))?;
                talk(s).await.map_err(|e| e.to_string())
            }
            ClamdSocket::Tcp(addrs) => {
                let mut last = String::from("no address");
                for a in addrs {
                    match tokio::net::TcpStream::connect(a).await {
                        Ok(s) => return talk(s).await.map_err(|e| e.to_string()),
                        Err(e) => last = format!("cannot connect to clamd at {a}: {e}"),
                    }
                }
                Err(last)
            }
        }
    })
    .await
    .map_err(|_| "clamd did not answer in time".to_owned())??;
    if reply.contains("RELOADING") {
        Ok(())
    } else {
        Err(format!("clamd answered {reply:?} instead of RELOADING"))
    }
}

/// What a hook asks of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// The command ran (its status is logged by the caller).
    Ran(Option<i32>),
    /// `EXIT_<n>`: exit with this code (non-daemon mode).
    Exit(u8),
}

/// Runs a hook through `sh -c`, or interprets `EXIT_<n>` as freshclam does.
pub async fn run_hook(command: &str) -> std::io::Result<HookOutcome> {
    if let Some(n) = command
        .trim()
        .strip_prefix("EXIT_")
        .and_then(|n| n.parse::<u8>().ok())
    {
        return Ok(HookOutcome::Exit(n));
    }
    let status = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .status()
        .await?;
    Ok(HookOutcome::Ran(status.code()))
}

/// `OnOutdatedExecute` with `%v` replaced; `None` when the version is not digits and dots.
pub fn outdated_command(template: &str, version: &str) -> Option<String> {
    (!version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .then(|| template.replace("%v", version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamd_conf_sockets() {
        assert_eq!(
            clamd_socket("# x\nLocalSocket /run/clamd.ctl\nTCPSocket 3310\n"),
            Some(ClamdSocket::Unix("/run/clamd.ctl".into()))
        );
        assert_eq!(
            clamd_socket("TCPSocket 3310\nTCPAddr 127.0.0.1\nTCPAddr ::1\n"),
            Some(ClamdSocket::Tcp(vec![
                "127.0.0.1:3310".into(),
                "[::1]:3310".into()
            ]))
        );
        assert_eq!(clamd_socket("Foreground yes\n"), None);
    }

    #[test]
    fn outdated_version_must_be_digits_and_dots() {
        assert_eq!(
            outdated_command("echo %v", "1.4.3").as_deref(),
            Some("echo 1.4.3")
        );
        assert_eq!(outdated_command("echo %v", "1;rm -rf /"), None);
    }

    #[tokio::test]
    async fn reload_over_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("clamd.sock");
        let l = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = [0u8; 7];
            s.read_exact(&mut got).await.unwrap();
            s.write_all(b"RELOADING\n").await.unwrap();
            got
        });
        let conf = dir.path().join("clamd.conf");
        std::fs::write(&conf, format!("LocalSocket {}\n", sock.display())).unwrap();
        notify_clamd(&conf).await.unwrap();
        assert_eq!(&server.await.unwrap(), RELOAD);
    }

    #[tokio::test]
    async fn exit_hook() {
        assert_eq!(run_hook("EXIT_3").await.unwrap(), HookOutcome::Exit(3));
        assert_eq!(run_hook("exit 2").await.unwrap(), HookOutcome::Ran(Some(2)));
    }
}
