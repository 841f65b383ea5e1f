//! Replication between masters: each master pulls the others' releases, objects and registry,
//! and re-runs the full gate on every replicated release.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use vdb_fetch::Expect;
use vdb_proto::{FileRef, ReleaseStatement, Signed};

use crate::config::PeerConfig;
use crate::events::{Event, Origin};
use crate::history::RegistryEntry;
use crate::parts::Parts;
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

/// The largest release page or registry read from a peer: a page holds at most
/// [`crate::history::PAGE_BYTES`] of envelopes and one more (a statement is at most the API's
/// 1 MiB body), each escaped once as a JSON string.
const MAX_PAGE_BYTES: u64 = 32 << 20;

/// Time allowed for one page, the registry or a poke.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// Pulls from the peers.
#[derive(Debug)]
pub(crate) struct Replicator {
    parts: Parts,
    now: Notify,
}

impl Replicator {
    /// A replicator into the store from the peers.
    pub(crate) fn new(parts: Parts) -> Self {
        Self {
            parts,
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
                let h = self.parts.store.history().clone();
                let b = base.clone();
                move || h.cursor(&b)
            })
            .await?;
            let url = format!("{base}/api/v1/releases?after={cursor}&limit={PAGE}");
            let page: ReleasePage = self.get_json(&url, peer).await?;
            let n = page.releases.len();
            for e in page.releases {
                if self.pull_release(peer, &base, &e.envelope).await? {
                    accepted += 1;
                }
                let h = self.parts.store.history().clone();
                let b = base.clone();
                blocking(move || h.set_cursor(&b, e.seq)).await?;
            }
            // A peer's page is at most PAGE releases, fewer when its byte budget ends it; an
            // empty page is the end.
            if n == 0 {
                break;
            }
        }
        self.parts.peers.manifest(peer).await?;
        // The token shows the admins' contacts too. The export is signed by the peer's key:
        // a registry that came any other way (a forged answer, another network) changes nothing.
        let body = self
            .parts
            .http
            .get(&format!("{base}/api/v1/registry"))
            .bearer(peer.token.as_deref())
            .timeout(PEER_TIMEOUT)
            .send()
            .await?
            .bytes(&Expect::at_most(MAX_PAGE_BYTES))
            .await?;
        let export = Signed::<vdb_proto::RegistryExport>::from_json(&body)
            .and_then(|env| env.verify(&[peer.key]))
            .with_context(|| format!("the registry of peer {base}"))?;
        anyhow::ensure!(
            export.network == self.parts.store.config().network,
            "the registry of peer {base} is of network {:?}",
            export.network
        );
        let entries: Vec<RegistryEntry> = export.entries;
        let (pending, log) = (export.pending, export.log);
        // The newest change wins: one dated further ahead than the statement window is a
        // broken clock (or a peer claiming a record forever), not a change.
        let (now, window) = (self.parts.store.now(), self.parts.store.policy().window());
        let h = self.parts.store.history().clone();
        let peer_url = base.clone();
        blocking(move || -> anyhow::Result<()> {
            for e in entries {
                if !vdb_proto::is_safe_db_name(&e.record.name) {
                    continue;
                }
                if e.updated_at > now && e.updated_at.abs_diff(now) > window {
                    tracing::warn!(peer = %peer_url, mirror = %e.record.name, updated_at = e.updated_at, now, "registry entry dated in the future ignored");
                    continue;
                }
                h.put_mirror(&e)?;
            }
            Ok(())
        })
        .await?;
        // Join requests (each verified again by its own signature) and history events.
        let db = self.parts.store.join().clone();
        let network = self.parts.store.config().network.clone();
        let max = self.parts.store.config().join_max_pending;
        blocking(move || crate::join::merge_from_peer(&db, &network, max, pending, log, now))
            .await
            .with_context(|| format!("the join requests of peer {base}"))?;
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
        let h = self.parts.store.history().clone();
        let id2 = id.clone();
        if blocking(move || h.accepted(&id2)).await?.is_some() {
            return Ok(false);
        }
        // Only a listed publisher's statement is worth fetching objects for; the gate refuses
        // anything else.
        let policy = self.parts.store.policy();
        if let Ok(st) = crate::gate::check_signature(policy, &env) {
            for f in &st.files {
                if self.parts.store.objects().size(&f.sha256) == Some(f.size)
                    || f.size > policy.max_file_size()
                {
                    continue;
                }
                self.fetch_object(peer, base, f).await?;
            }
        }
        match self
            .parts
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

    /// A peer's JSON answer (with its token, under [`MAX_PAGE_BYTES`]).
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        peer: &PeerConfig,
    ) -> Result<T, vdb_fetch::Error> {
        self.parts
            .http
            .get(url)
            .bearer(peer.token.as_deref())
            .timeout(PEER_TIMEOUT)
            .send()
            .await?
            .json(MAX_PAGE_BYTES)
            .await
    }

    /// Fetches one object of a replicated release: exactly the stated size and SHA-256,
    /// streamed into the object store.
    async fn fetch_object(&self, peer: &PeerConfig, base: &str, f: &FileRef) -> anyhow::Result<()> {
        let url = format!("{base}{}/{}", vdb_proto::paths::OBJECTS, f.sha256);
        let r = self
            .parts
            .http
            .get(&url)
            .bearer(peer.token.as_deref())
            .send()
            .await?;
        let objects = self.parts.store.objects();
        let mut up = objects.begin(f.size)?;
        r.for_each_chunk(&Expect::exactly(f.size, &f.sha256), |chunk| {
            up.write(chunk).map_err(std::io::Error::other)
        })
        .await?;
        let objects = objects.clone();
        let sha = f.sha256.clone();
        blocking(move || objects.finish(up, &sha)).await?;
        Ok(())
    }

    /// Pulls from every peer; true if all answered.
    async fn pull_all(&self) -> bool {
        let mut all = true;
        for p in self.parts.peers.list() {
            match self.pull_peer(p).await {
                Ok(n) => {
                    self.parts.metrics.replication("ok");
                    if n > 0 {
                        tracing::info!(peer = %p.url, accepted = n, "replicated releases from a peer");
                    }
                }
                Err(e) => {
                    all = false;
                    self.parts.metrics.replication("error");
                    tracing::warn!(peer = %p.url, error = %e, "pull from a peer failed");
                }
            }
        }
        if all && !self.parts.peers.list().is_empty() {
            self.parts.peers.answered(self.parts.store.now());
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
        if self.parts.peers.list().is_empty() {
            return;
        }
        let config = self.parts.store.config();
        let tick = Duration::from_millis(config.tick_ms);
        let start = self.parts.store.now();
        let serial_at_start = self.parts.store.serial();
        loop {
            let all = self.pull_all().await;
            let timed_out = self.parts.store.now() - start >= config.catch_up_timeout_secs;
            if all || timed_out {
                if !all {
                    tracing::warn!(
                        "not every peer answered within catch_up_timeout_secs; going ahead"
                    );
                    self.parts.events.emit(Event::Alert {
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
        let behind = self.parts.store.serial() < self.parts.peers.serial();
        self.parts.store.set_ready();
        tracing::info!(
            serial = self.parts.store.serial(),
            peer_serial = self.parts.peers.serial(),
            "caught up with the peers"
        );
        if behind || self.parts.store.current().is_none() {
            if let Err(e) = self.parts.store.sign(false).await {
                tracing::error!(error = %e, "cannot sign the manifest");
            }
        } else if self.parts.store.serial() != serial_at_start {
            // Releases caught up from the peers were signed but not pushed yet.
            self.parts.events.emit(Event::ManifestSigned {
                serial: self.parts.store.serial(),
            });
        }
        let mut last = self.parts.store.now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.now.notified() => {}
                e = events.recv() => {
                    match e {
                        None => return,
                        Some(Event::ReleaseAccepted { origin, .. }) if origin.is_first_hand() => {
                            self.parts.peers.poke_all();
                        }
                        Some(_) => {}
                    }
                    continue;
                }
                () = tokio::time::sleep(tick) => {
                    if self.parts.store.now() - last < config.replicate_secs {
                        continue;
                    }
                }
            }
            last = self.parts.store.now();
            self.pull_all().await;
        }
    }
}
