//! Pushes to mirrors, the forced sync, and notifications.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;
use vdb_proto::{Manifest, MirrorRecord, PushNotice, Signed};

use crate::history::PushOutcome;
use crate::notify::alert;

use crate::master::{Master, blocking};

/// Sends a signed push notice for `serial` to every registered mirror with a push URL,
/// concurrently (bounded), retrying with backoff, and records each outcome.
pub(crate) async fn push_all(master: &Arc<Master>, serial: u64, forced: bool) {
    let mirrors = match blocking({
        let h = master.history.clone();
        move || h.mirrors()
    })
    .await
    {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the registry to push");
            return;
        }
    };
    push_to(master, mirrors, serial, forced).await;
}

/// Pushes `serial` to one mirror (retried, recorded).
pub(crate) async fn push_one(
    master: &Arc<Master>,
    mirror: MirrorRecord,
    serial: u64,
    forced: bool,
) {
    push_to(master, vec![mirror], serial, forced).await;
}

/// The fan-out to the mirrors of `targets` that have a push URL. The history is written in batches (the start of every push in one
/// transaction, outcomes as they come, each batch in one transaction), never between a
/// mirror and its notice: with `synchronous = FULL`, one commit per push would cost a
/// disk flush per mirror on the path of the publish.
async fn push_to(master: &Arc<Master>, targets: Vec<MirrorRecord>, serial: u64, forced: bool) {
    let targets: Vec<MirrorRecord> = targets
        .into_iter()
        .filter(|m| m.push_url.is_some())
        .collect();
    if targets.is_empty() {
        return;
    }
    let names: Vec<String> = targets.iter().map(|m| m.name.clone()).collect();
    let now = master.clock.now();
    let h = master.history.clone();
    let ids = match blocking(move || h.pushes_started(serial, &names, forced, now)).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "cannot record pushes");
            return;
        }
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = tokio::spawn(record_outcomes(master.history.clone(), rx));
    futures_util::stream::iter(targets.into_iter().zip(ids))
        .map(|(m, id)| {
            let tx = tx.clone();
            async move {
                let outcome = deliver(master, &m, id, serial, forced).await;
                let _ = tx.send(outcome);
            }
        })
        .buffer_unordered(master.config.push_concurrency.max(1))
        .collect::<Vec<()>>()
        .await;
    drop(tx);
    if let Err(e) = writer.await {
        tracing::error!(error = %e, "push outcome writer failed");
    }
}

/// Writes push outcomes as they arrive, whatever has queued up in one transaction.
async fn record_outcomes(
    history: crate::history::History,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<PushOutcome>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(o) = rx.try_recv() {
            batch.push(o);
        }
        let h = history.clone();
        if let Err(e) = blocking(move || h.pushes_finished(&batch)).await {
            tracing::error!(error = %e, "cannot record push outcomes");
        }
    }
}

/// Sends one signed push notice, retrying with backoff; logs and counts the outcome.
async fn deliver(
    master: &Arc<Master>,
    mirror: &MirrorRecord,
    id: i64,
    serial: u64,
    forced: bool,
) -> PushOutcome {
    let url = mirror.push_url.clone().unwrap_or_default();
    let mut delay = Duration::from_millis(master.config.push_backoff_ms);
    let mut attempts = 0;
    let mut last_error = None;
    let mut acked = None;
    while attempts < master.config.push_attempts {
        attempts += 1;
        let notice = PushNotice::new(
            &master.config.network,
            &master.config.name,
            serial,
            master.clock.now(),
            forced,
        );
        let body = Signed::sign(&notice, &master.key).to_json();
        let res = master
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let retry = match res {
            Ok(r) if r.status().is_success() => {
                acked = Some(master.clock.now());
                last_error = None;
                break;
            }
            Ok(r) => {
                let status = r.status();
                let text: String = r
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(500)
                    .collect();
                last_error = Some(format!("HTTP {status}: {text}"));
                status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408
            }
            Err(e) => {
                last_error = Some(e.to_string());
                true
            }
        };
        if !retry || attempts >= master.config.push_attempts {
            break;
        }
        tokio::select! {
            () = master.cancel.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
    match (&acked, &last_error) {
        (Some(_), _) => {
            master.metrics.push("acked");
            tracing::info!(mirror = %mirror.name, serial, forced, attempts, "push acknowledged");
        }
        (None, e) => {
            master.metrics.push("failed");
            tracing::warn!(mirror = %mirror.name, serial, forced, attempts, error = ?e, "push failed");
        }
    }
    PushOutcome {
        id,
        attempts,
        acked_at: acked,
        error: last_error,
    }
}

/// Why a forced sync may not run now, or `None` if it may: every peer must answer with a valid
/// manifest and none may hold a newer version of any database.
pub(crate) async fn forced_sync_blocker(master: &Arc<Master>) -> Option<String> {
    if !master.ready.load(Ordering::SeqCst) {
        return Some("this master has not caught up with its peers yet".into());
    }
    let Some(own) = master.current() else {
        return Some("this master has no manifest yet".into());
    };
    for p in &master.config.peers {
        let m = match fetch_peer_manifest(master, &p.url, p.key).await {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                return Some(format!(
                    "peer {} is unreachable or answers badly: {e}",
                    p.url
                ));
            }
        };
        for (db, s) in &m.databases {
            let mine = own.manifest.databases.get(db).map_or(0, |d| d.version);
            if s.version == mine && db_files(&m, db) != db_files(&own.manifest, db) {
                return Some(format!(
                    "peer {} serves other files for {db} version {mine}: split brain, resolve before syncing",
                    p.url
                ));
            }
            if s.version > mine {
                return Some(format!(
                    "peer {} holds {db} version {}, newer than ours ({mine})",
                    p.url, s.version
                ));
            }
        }
    }
    None
}

/// The files of database `db` in a manifest (derived files excluded).
fn db_files<'a>(m: &'a Manifest, db: &str) -> Vec<&'a vdb_proto::FileRef> {
    m.files
        .iter()
        .filter(|f| {
            f.name
                .strip_prefix(db)
                .is_some_and(|r| r.starts_with('.') || r.starts_with('-'))
        })
        .collect()
}

/// Fetches and verifies a peer's manifest (and remembers its serial); `None` if the peer
/// answers that it has none yet (a new master catching up).
pub(crate) async fn fetch_peer_manifest(
    master: &Master,
    base: &str,
    key: vdb_proto::PublicKey,
) -> anyhow::Result<Option<Manifest>> {
    let url = format!("{}{}", base.trim_end_matches('/'), vdb_proto::MANIFEST_PATH);
    let r = master
        .http
        .get(&url)
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    anyhow::ensure!(r.status().is_success(), "HTTP {} from {url}", r.status());
    let bytes = r.bytes().await?;
    anyhow::ensure!(bytes.len() < 64 << 20, "manifest too large");
    let env = Signed::<Manifest>::from_json(&bytes)?;
    let m = env.verify(&[key])?;
    anyhow::ensure!(
        m.network == master.config.network,
        "manifest for network {:?}",
        m.network
    );
    master.peer_serial.fetch_max(m.serial, Ordering::SeqCst);
    Ok(Some(m))
}

/// One forced-sync round: runs it, or skips it with a log line, a metric and an alert.
pub(crate) async fn forced_sync(master: &Arc<Master>) -> bool {
    if let Some(reason) = forced_sync_blocker(master).await {
        master.metrics.forced_sync("skipped");
        tracing::warn!(%reason, "forced sync skipped");
        alert(master, "forced_sync_skipped", &reason);
        return false;
    }
    let serial = master.serial();
    master.metrics.forced_sync("run");
    tracing::info!(serial, "forced sync of every mirror");
    push_all(master, serial, true).await;
    true
}
