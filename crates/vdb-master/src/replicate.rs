//! Replication between masters: each master pulls the others' releases, objects and registry,
//! and re-runs the full gate on every replicated release.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use vdb_proto::{ReleaseStatement, Signed};

use crate::config::PeerConfig;
use crate::events::{Event, Events, Origin};
use crate::history::RegistryEntry;
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::store::Store;
use crate::tasks::blocking;

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

/// The largest release page or registry read from a peer.
const MAX_PAGE_BYTES: usize = 256 << 20;

/// Pulls from the peers.
#[derive(Debug)]
pub(crate) struct Replicator {
    store: Arc<Store>,
    peers: Arc<Peers>,
    http: reqwest::Client,
    events: Events,
    metrics: Arc<Metrics>,
    now: Notify,
}

impl Replicator {
    /// A replicator into `store` from `peers`.
    pub(crate) fn new(
        store: Arc<Store>,
        peers: Arc<Peers>,
        http: reqwest::Client,
        events: Events,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            peers,
            http,
            events,
            metrics,
            now: Notify::new(),
        }
    }

    /// Asks for a pull now (a peer's poke).
    pub(crate) fn poke(&self) {
        self.now.notify_one();
    }

    /// Pulls from one peer. Returns how many releases were newly accepted.
    async fn pull_peer(&self, peer: &PeerConfig) -> anyhow::Result<usize> {
        let base = peer.url.trim_end_matches('/').to_owned();
        let mut accepted = 0;
        loop {
            let cursor = blocking({
                let h = self.store.history().clone();
                let b = base.clone();
                move || h.cursor(&b)
            })
            .await?;
            let url = format!("{base}/api/v1/releases?after={cursor}&limit={PAGE}");
            let r = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(10))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "HTTP {} from {url}", r.status());
            let page: ReleasePage =
                serde_json::from_slice(&crate::http::read_capped(r, MAX_PAGE_BYTES).await?)?;
            let n = page.releases.len();
            for e in page.releases {
                if self.pull_release(peer, &base, &e.envelope).await? {
                    accepted += 1;
                }
                let h = self.store.history().clone();
                let b = base.clone();
                blocking(move || h.set_cursor(&b, e.seq)).await?;
            }
            // A peer's page is at most PAGE releases, fewer when its byte budget ends it; an
            // empty page is the end.
            if n == 0 {
                break;
            }
        }
        self.peers.manifest(peer).await?;
        let url = format!("{base}/api/v1/registry");
        let mut req = self.http.get(&url).timeout(Duration::from_secs(10));
        // The token shows the admins' contacts too.
        if let Some(t) = &peer.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        anyhow::ensure!(r.status().is_success(), "HTTP {} from {url}", r.status());
        let entries: Vec<RegistryEntry> =
            serde_json::from_slice(&crate::http::read_capped(r, MAX_PAGE_BYTES).await?)?;
        let h = self.store.history().clone();
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
        &self,
        peer: &PeerConfig,
        base: &str,
        envelope: &str,
    ) -> anyhow::Result<bool> {
        let env = Signed::<ReleaseStatement>::from_json(envelope.as_bytes())?;
        let id = env.id();
        let h = self.store.history().clone();
        let id2 = id.clone();
        if blocking(move || h.accepted(&id2)).await?.is_some() {
            return Ok(false);
        }
        // Only a listed publisher's statement is worth fetching objects for; the gate refuses
        // anything else.
        let policy = self.store.policy();
        if let Ok(st) = crate::gate::check_signature(policy, &env) {
            for f in &st.files {
                if self.store.objects().size(&f.sha256) == Some(f.size)
                    || f.size > policy.max_file_size()
                {
                    continue;
                }
                self.fetch_object(peer, base, &f.sha256).await?;
            }
        }
        match self
            .store
            .submit(envelope.as_bytes(), Origin::Peer(base.to_owned()))
            .await
        {
            Ok(_) => Ok(true),
            Err(r) => {
                tracing::warn!(peer = %base, release = %id, code = %r.code, reason = %r.message, "replicated release refused");
                Ok(false)
            }
        }
    }

    async fn fetch_object(&self, peer: &PeerConfig, base: &str, sha: &str) -> anyhow::Result<()> {
        let url = format!("{base}{}/{sha}", vdb_proto::paths::OBJECTS);
        let mut req = self.http.get(&url);
        if let Some(t) = &peer.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await?;
        anyhow::ensure!(r.status().is_success(), "HTTP {} from {url}", r.status());
        let objects = self.store.objects();
        let mut up = objects.begin(self.store.policy().max_file_size())?;
        let mut stream = r.bytes_stream();
        while let Some(chunk) = stream.next().await {
            up.write(&chunk?)?;
        }
        let objects = objects.clone();
        let sha = sha.to_owned();
        blocking(move || objects.finish(up, &sha)).await?;
        Ok(())
    }

    /// Pulls from every peer; true if all answered.
    async fn pull_all(&self) -> bool {
        let mut all = true;
        for p in self.peers.list() {
            match self.pull_peer(p).await {
                Ok(n) => {
                    self.metrics.replication("ok");
                    if n > 0 {
                        tracing::info!(peer = %p.url, accepted = n, "replicated releases from a peer");
                    }
                }
                Err(e) => {
                    all = false;
                    self.metrics.replication("error");
                    tracing::warn!(peer = %p.url, error = %e, "pull from a peer failed");
                }
            }
        }
        all
    }

    /// The replication loop: catch up first (the master is not ready to sign or push before),
    /// then pull periodically and when poked, and poke the peers after every release this
    /// master took first.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut events: UnboundedReceiver<Event>,
        cancel: CancellationToken,
    ) {
        if self.peers.list().is_empty() {
            return;
        }
        let config = self.store.config();
        let tick = Duration::from_millis(config.tick_ms);
        let start = self.store.now();
        let serial_at_start = self.store.serial();
        loop {
            let all = self.pull_all().await;
            let timed_out = self.store.now() - start >= config.catch_up_timeout_secs;
            if all || timed_out {
                if !all {
                    tracing::warn!(
                        "not every peer answered within catch_up_timeout_secs; going ahead"
                    );
                    self.events.emit(Event::Alert {
                        kind: "catch_up_timeout",
                        message: "a peer did not answer while this master caught up".into(),
                    });
                }
                break;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
        }
        let behind = self.store.serial() < self.peers.serial();
        self.store.set_ready();
        tracing::info!(
            serial = self.store.serial(),
            peer_serial = self.peers.serial(),
            "caught up with the peers"
        );
        if behind || self.store.current().is_none() {
            if let Err(e) = self.store.sign(false).await {
                tracing::error!(error = %e, "cannot sign the manifest");
            }
        } else if self.store.serial() != serial_at_start {
            // Releases caught up from the peers were signed but not pushed yet.
            self.events.emit(Event::ManifestSigned {
                serial: self.store.serial(),
            });
        }
        let mut last = self.store.now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.now.notified() => {}
                e = events.recv() => {
                    match e {
                        None => return,
                        Some(Event::ReleaseAccepted { origin, .. }) if origin.is_first_hand() => {
                            self.peers.poke_all();
                        }
                        Some(_) => {}
                    }
                    continue;
                }
                () = tokio::time::sleep(tick) => {
                    if self.store.now() - last < config.replicate_secs {
                        continue;
                    }
                }
            }
            last = self.store.now();
            self.pull_all().await;
        }
    }
}
