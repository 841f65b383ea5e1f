//! The master's one HTTP client (pushes, replication, the upstream, webhooks): time-outs, the
//! configured CA, no redirects, and bodies read with a size cap.

use std::time::Duration;

use futures_util::StreamExt as _;

use crate::config::Config;

/// The client every outgoing request of a master goes through. It follows no redirect: a peer,
/// a mirror or an upstream that answers 3xx gets that answer treated as a failure.
pub(crate) fn client(config: &Config) -> anyhow::Result<reqwest::Client> {
    let mut http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &config.tls_ca_file {
        for cert in crate::client::read_ca(ca)? {
            http = http.add_root_certificate(cert);
        }
    }
    Ok(http.build()?)
}

/// A body over its cap.
#[derive(Debug, thiserror::Error)]
#[error("the answer from {url} is larger than {max} bytes")]
pub(crate) struct TooLarge {
    url: String,
    max: usize,
}

/// Reads a whole body of at most `max` bytes.
pub(crate) async fn read_capped(r: reqwest::Response, max: usize) -> anyhow::Result<Vec<u8>> {
    let url = r.url().to_string();
    if r.content_length().is_some_and(|n| n > max as u64) {
        return Err(TooLarge { url, max }.into());
    }
    let mut data = Vec::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if data.len() + chunk.len() > max {
            return Err(TooLarge { url, max }.into());
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// Reads at most the first `max` bytes of a body and drops the rest (a header probe against a
/// server that ignores `Range`).
pub(crate) async fn read_prefix(r: reqwest::Response, max: usize) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut stream = r.bytes_stream();
    while data.len() < max {
        let Some(chunk) = stream.next().await else {
            break;
        };
        let chunk = chunk?;
        data.extend_from_slice(&chunk[..chunk.len().min(max - data.len())]);
    }
    Ok(data)
}

/// A short, printable excerpt of an error body (never a large input echoed into logs).
pub(crate) async fn excerpt(r: reqwest::Response, max: usize) -> String {
    let data = read_prefix(r, max).await.unwrap_or_default();
    String::from_utf8_lossy(&data)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}
