//! Replication between masters: each master pulls the others' releases, objects and registry,
//! and re-runs the full gate on every replicated release.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use vdb_proto::{ReleaseStatement, Signed};

use crate::config::PeerConfig;
use crate::history::RegistryEntry;
use crate::master::{Master, Origin, blocking};

/// One entry of `GET /api/v1/releases?after=N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseEntry {
    /// The peer's local sequence number (the cursor).
    pub seq: i64,
    /// The signed statement envelope, as JSON text.
    pub envelope: String,
}

/// The answer of `GET /api/v1/releases?after=N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleasePage {
    /// Accepted releases after the cursor, oldest first.
    pub releases: Vec<ReleaseEntry>,
}

const PAGE: i64 = 100;

/// Pulls from one peer. Returns how many releases were newly accepted.
pub(crate) async fn pull_peer(master: &Arc<Master>, peer: &PeerConfig) -> anyhow::Result<usize> {
    let base = peer.url.trim_end_matches('/').to_owned();
    let mut accepted = 0;
    loop {
        let cursor = blocking({
            let h = master.history.clone();
            let b = base.clone();
            move || h.cursor(&b)
        })
        .await?;
        let url = format!("{base}/api/v1/releases?after={cursor}&limit={PAGE}");
        let r = master
            .http
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "HTTP {} from {url}", r.status());
        let page: ReleasePage = serde_json::from_slice(&r.bytes().await?)?;
        let n = page.releases.len();
        for e in page.releases {
            if pull_release(master, peer, &base, &e.envelope).await? {
                accepted += 1;
            }
            let h = master.history.clone();
            let b = base.clone();
            blocking(move || h.set_cursor(&b, e.seq)).await?;
        }
        if (n as i64) < PAGE {
            break;
        }
    }
    crate::push::fetch_peer_manifest(master, &base, peer.key).await?;
    let url = format!("{base}/api/v1/registry");
    let r = master
        .http
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "HTTP {} from {url}", r.status());
    let entries: Vec<RegistryEntry> = serde_json::from_slice(&r.bytes().await?)?;
    let h = master.history.clone();
    blocking(move || -> anyhow::Result<()> {
        for e in entries {
            if vdb_proto::is_safe_db_name(&e.record.name) {
                h.put_mirror(&e)?;
            }
        }
        Ok(())
    })
    .await?;
    Ok(accepted)
}

/// Fetches a replicated release's missing objects and submits it through the gate.
async fn pull_release(
    master: &Arc<Master>,
    peer: &PeerConfig,
    base: &str,
    envelope: &str,
) -> anyhow::Result<bool> {
    let env = Signed::<ReleaseStatement>::from_json(envelope.as_bytes())?;
    let id = env.id();
    let h = master.history.clone();
    let id2 = id.clone();
    if blocking(move || h.accepted(&id2)).await?.is_some() {
        return Ok(false);
    }
    // Only a listed publisher's statement is worth fetching objects for; the gate refuses
    // (and records) anything else.
    if let Ok(st) = crate::gate::check_signature(&master.policy, &env) {
        for f in &st.files {
            if master.objects.size(&f.sha256) == Some(f.size)
                || f.size > master.policy.max_file_size()
            {
                continue;
            }
            fetch_object(master, peer, base, &f.sha256).await?;
        }
    }
    match master
        .submit(envelope.as_bytes(), Origin::Peer(base.to_owned()))
        .await
    {
        Ok(_) => Ok(true),
        Err(r) => {
            tracing::warn!(peer = %base, release = %id, code = r.code, reason = %r.message, "replicated release refused");
            Ok(false)
        }
    }
}

async fn fetch_object(
    master: &Master,
    peer: &PeerConfig,
    base: &str,
    sha: &str,
) -> anyhow::Result<()> {
    let url = format!("{base}{}/{sha}", vdb_proto::paths::OBJECTS);
    let mut req = master.http.get(&url);
    if let Some(t) = &peer.token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await?;
    anyhow::ensure!(r.status().is_success(), "HTTP {} from {url}", r.status());
    let mut up = master.objects.begin(master.policy.max_file_size())?;
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        up.write(&chunk?)?;
    }
    master.objects.finish(up, sha)?;
    Ok(())
}

/// Pulls from every peer; true if all answered.
pub(crate) async fn pull_all(master: &Arc<Master>) -> bool {
    let mut all = true;
    for p in &master.config.peers {
        match pull_peer(master, p).await {
            Ok(n) => {
                master.metrics.replication("ok");
                if n > 0 {
                    tracing::info!(peer = %p.url, accepted = n, "replicated releases from a peer");
                }
            }
            Err(e) => {
                all = false;
                master.metrics.replication("error");
                tracing::warn!(peer = %p.url, error = %e, "pull from a peer failed");
            }
        }
    }
    all
}

/// The replication loop: catch up first (the master is not ready to sign or push before), then
/// pull periodically and when poked.
pub(crate) async fn run(master: Arc<Master>) {
    let tick = Duration::from_millis(master.config.tick_ms);
    let start = master.clock.now();
    let serial_at_start = master.serial();
    if !master.config.peers.is_empty() {
        loop {
            let all = pull_all(&master).await;
            let timed_out = master.clock.now() - start >= master.config.catch_up_timeout_secs;
            if all || timed_out {
                if !all {
                    tracing::warn!(
                        "not every peer answered within catch_up_timeout_secs; going ahead"
                    );
                    crate::notify::alert(
                        &master,
                        "catch_up_timeout",
                        "a peer did not answer while this master caught up",
                    );
                }
                break;
            }
            tokio::select! {
                () = master.cancel.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
        }
        let behind = master.serial() < master.peer_serial.load(Ordering::SeqCst);
        master.ready.store(true, Ordering::SeqCst);
        tracing::info!(
            serial = master.serial(),
            peer_serial = master.peer_serial.load(Ordering::SeqCst),
            "caught up with the peers"
        );
        if behind || master.current().is_none() {
            let _g = master.publish_lock.lock().await;
            if let Err(e) = master.sign_and_push(false).await {
                tracing::error!(error = %e, "cannot sign the manifest");
            }
        } else if master.serial() != serial_at_start {
            // Releases caught up from the peers were signed but not pushed yet.
            crate::push::push_all(&master, master.serial(), false).await;
        }
    }
    if master.config.peers.is_empty() {
        return;
    }
    let mut last = master.clock.now();
    loop {
        tokio::select! {
            () = master.cancel.cancelled() => return,
            () = master.replicate_now.notified() => {}
            () = tokio::time::sleep(tick) => {
                if master.clock.now() - last < master.config.replicate_secs {
                    continue;
                }
            }
        }
        last = master.clock.now();
        pull_all(&master).await;
    }
}
