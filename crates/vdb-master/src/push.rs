//! The pusher: signed push notices to the registered mirrors after every signed manifest,
//! the forced sync when every peer agrees, and the push outcomes in the history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use vdb_fetch::RetryPolicy;
use vdb_proto::{LeafTarget, Manifest, MirrorRecord};

use crate::events::Event;
use crate::history::PushOutcome;
use crate::parts::Parts;
use crate::tasks::{Tasks, blocking};

/// The most of a mirror's error answer kept in the history.
const MAX_ERROR_BODY: usize = 500;

/// Time allowed for one push (the mirror acknowledges before it syncs).
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Pushes to the mirrors.
#[derive(Debug)]
pub(crate) struct Pusher {
    parts: Parts,
    tasks: Tasks,
    cancel: CancellationToken,
}

impl Pusher {
    /// A pusher for the mirrors of the store's registry.
    pub(crate) fn new(parts: Parts, tasks: Tasks, cancel: CancellationToken) -> Self {
        Self {
            parts,
            tasks,
            cancel,
        }
    }

    /// Pushes on every signed manifest and to every new mirror, until cancelled.
    pub(crate) async fn run(self: Arc<Self>, mut events: UnboundedReceiver<Event>) {
        loop {
            let event = tokio::select! {
                () = self.cancel.cancelled() => return,
                e = events.recv() => e,
            };
            let this = Arc::clone(&self);
            match event {
                None => return,
                Some(Event::ManifestSigned { serial }) => self
                    .tasks
                    .spawn(async move { this.push_all(serial, false).await }),
                Some(Event::MirrorAdded { record, serial }) => self.tasks.spawn(async move {
                    this.push_to(vec![(*record, Vec::new())], serial, false)
                        .await
                }),
                Some(_) => {}
            }
        }
    }

    /// Sends a signed push notice for `serial` to every registered mirror with a push URL
    /// that pulls from the masters (the hubs' notices list their leaves, which the hubs relay
    /// to; a leaf none of whose hubs is usable is pushed to directly), concurrently (bounded),
    /// retrying with backoff, and records each outcome.
    pub(crate) async fn push_all(&self, serial: u64, forced: bool) {
        let h = self.parts.store.history().clone();
        let mirrors = match blocking(move || h.mirrors()).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the registry to push");
                return;
            }
        };
        self.push_to(fan_out(&mirrors), serial, forced).await;
    }

    /// The fan-out to the mirrors of `targets` that have a push URL. The history is written in
    /// batches (the start of every push in one transaction, outcomes as they come, each batch
    /// in one transaction), never between a mirror and its notice: with `synchronous = FULL`,
    /// one commit per push would cost a disk flush per mirror on the path of the publish.
    async fn push_to(
        &self,
        targets: Vec<(MirrorRecord, Vec<LeafTarget>)>,
        serial: u64,
        forced: bool,
    ) {
        let targets: Vec<(MirrorRecord, Vec<LeafTarget>)> = targets
            .into_iter()
            .filter(|(m, _)| m.push_url.is_some())
            .collect();
        if targets.is_empty() {
            return;
        }
        let names: Vec<String> = targets.iter().map(|(m, _)| m.name.clone()).collect();
        let now = self.parts.store.now();
        let h = self.parts.store.history().clone();
        let ids = match blocking(move || h.pushes_started(serial, &names, forced, now)).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(error = %e, "cannot record pushes");
                return;
            }
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = tokio::spawn(record_outcomes(self.parts.store.history().clone(), rx));
        futures_util::stream::iter(targets.into_iter().zip(ids))
            .map(|((m, leaves), id)| {
                let tx = tx.clone();
                async move {
                    let outcome = self.deliver(&m, &leaves, id, serial, forced).await;
                    let _ = tx.send(outcome);
                }
            })
            .buffer_unordered(self.parts.store.config().push_concurrency.max(1))
            .collect::<Vec<()>>()
            .await;
        drop(tx);
        if let Err(e) = writer.await {
            tracing::error!(error = %e, "push outcome writer failed");
        }
    }

    /// Sends one signed push notice, retrying retryable failures ([`vdb_fetch::Error::is_retryable`])
    /// with jittered back-off from `push_backoff_ms`; logs and counts the outcome. No redirect
    /// is followed and nothing of an answer is read but an error's first bytes.
    async fn deliver(
        &self,
        mirror: &MirrorRecord,
        leaves: &[LeafTarget],
        id: i64,
        serial: u64,
        forced: bool,
    ) -> PushOutcome {
        let store = &self.parts.store;
        let config = store.config();
        let url = mirror.push_url.clone().unwrap_or_default();
        let policy = RetryPolicy {
            max_attempts: config.push_attempts,
            base_delay: Duration::from_millis(config.push_backoff_ms),
            max_delay: Duration::from_secs(60),
            max_total: Duration::MAX,
        };
        let started = Instant::now();
        let mut attempts = 0;
        let mut last_error = None;
        let mut acked = None;
        while attempts < config.push_attempts {
            attempts += 1;
            let sent = self
                .parts
                .http
                .post(&url)
                .json_body(store.push_notice(serial, forced, leaves))
                .timeout(PUSH_TIMEOUT)
                .send()
                .await;
            let Err(error) = sent else {
                acked = Some(store.now());
                last_error = None;
                break;
            };
            last_error = Some(describe(&error));
            let Some(wait) = policy.wait_before_retry(attempts, started.elapsed(), &error) else {
                break;
            };
            tokio::select! {
                () = self.cancel.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        match (&acked, &last_error) {
            (Some(_), _) => {
                self.parts.metrics.push("acked");
                tracing::info!(mirror = %mirror.name, serial, forced, attempts, leaves = leaves.len(), "push acknowledged");
            }
            (None, e) => {
                self.parts.metrics.push("failed");
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

    /// Why a forced sync may not run now, or `None` if it may: every peer must answer with a
    /// valid manifest and none may hold a newer version of any database.
    async fn forced_sync_blocker(&self) -> Option<String> {
        if !self.parts.store.is_ready() {
            return Some("this master has not caught up with its peers yet".into());
        }
        let Some(own) = self.parts.store.current() else {
            return Some("this master has no manifest yet".into());
        };
        for p in self.parts.peers.list() {
            let m = match self.parts.peers.manifest(p).await {
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

    /// One forced-sync round: runs it, or skips it with a log line, a metric and an alert.
    pub(crate) async fn forced_sync(&self) -> bool {
        if let Some(reason) = self.forced_sync_blocker().await {
            self.parts.metrics.forced_sync("skipped");
            tracing::warn!(%reason, "forced sync skipped");
            self.parts.events.emit(Event::Alert {
                kind: "forced_sync_skipped",
                message: reason,
            });
            return false;
        }
        let serial = self.parts.store.serial();
        self.parts.metrics.forced_sync("run");
        tracing::info!(serial, "forced sync of every mirror");
        self.push_all(serial, true).await;
        true
    }
}

/// Who the masters push to, and the leaves each hub relays to: every mirror whose hubs are all
/// unusable (or that names none) is pushed to by the masters; every other one is a leaf of
/// its first usable hub ([`vdb_proto::relaying_hub`]).
pub(crate) fn fan_out(mirrors: &[MirrorRecord]) -> Vec<(MirrorRecord, Vec<LeafTarget>)> {
    let mut out: Vec<(MirrorRecord, Vec<LeafTarget>)> = mirrors
        .iter()
        .filter(|m| vdb_proto::relaying_hub(m, mirrors).is_none())
        .map(|m| (m.clone(), Vec::new()))
        .collect();
    for m in mirrors {
        let (Some(hub), Some(url)) = (vdb_proto::relaying_hub(m, mirrors), &m.push_url) else {
            continue;
        };
        if let Some((_, leaves)) = out.iter_mut().find(|(h, _)| h.name == hub.name) {
            leaves.push(LeafTarget {
                name: m.name.clone(),
                push_url: url.clone(),
            });
        }
    }
    out
}

/// The tree of hubs: each hub's name and its leaves' names (the status page shows it).
pub(crate) fn hub_tree(
    mirrors: &[MirrorRecord],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut tree = std::collections::BTreeMap::<String, Vec<String>>::new();
    for m in mirrors {
        if let Some(hub) = vdb_proto::relaying_hub(m, mirrors) {
            tree.entry(hub.name.clone())
                .or_default()
                .push(m.name.clone());
        }
    }
    tree
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

/// A failed push as the history keeps it: the error (its URL without secrets) and, for an
/// answer, the first printable bytes of the mirror's reason.
fn describe(e: &vdb_fetch::Error) -> String {
    let body = e.body().unwrap_or_default();
    let text: String = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)])
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if text.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, hubs: &[&str]) -> MirrorRecord {
        let mut r = MirrorRecord::new(name, "http://127.0.0.1:1");
        r.push_url = Some(format!("http://127.0.0.1:1/{name}"));
        r.hubs = hubs.iter().map(|h| (*h).to_owned()).collect();
        r
    }

    #[test]
    fn the_masters_push_to_hubs_with_their_leaves_and_to_orphaned_leaves_directly() {
        let all = vec![
            m("h1", &[]),
            m("h2", &[]),
            m("l1", &["h1"]),
            m("l2", &["gone", "h2"]),
            m("l3", &["gone"]),
            m("plain", &[]),
        ];
        let out: Vec<(String, Vec<String>)> = fan_out(&all)
            .into_iter()
            .map(|(r, leaves)| (r.name, leaves.into_iter().map(|l| l.name).collect()))
            .collect();
        assert_eq!(
            out,
            vec![
                ("h1".to_owned(), vec!["l1".to_owned()]),
                ("h2".to_owned(), vec!["l2".to_owned()]),
                ("l3".to_owned(), vec![]),
                ("plain".to_owned(), vec![]),
            ]
        );
        let tree = hub_tree(&all);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree["h2"], vec!["l2".to_owned()]);
    }
}
