//! The other masters of the network as this master sees them: their manifests and the highest
//! serial any of them signed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vdb_fetch::Expect;
use vdb_proto::{Manifest, Signed};

use crate::config::PeerConfig;
use crate::tasks::Tasks;

/// The largest peer manifest read (as a mirror reads a master's).
const MAX_MANIFEST: u64 = 16 << 20;

/// The peers of a master.
#[derive(Debug)]
pub(crate) struct Peers {
    list: Vec<PeerConfig>,
    network: String,
    http: vdb_fetch::Client,
    serial: AtomicU64,
    /// When every peer last answered a replication pull (master clock seconds; 0 = never).
    answered_at: std::sync::atomic::AtomicI64,
    tasks: Tasks,
}

impl Peers {
    /// The peers of `list`, for manifests of `network`.
    pub(crate) fn new(
        list: Vec<PeerConfig>,
        network: String,
        http: vdb_fetch::Client,
        tasks: Tasks,
    ) -> Self {
        Self {
            list,
            network,
            http,
            serial: AtomicU64::new(0),
            answered_at: std::sync::atomic::AtomicI64::new(0),
            tasks,
        }
    }

    /// Raises the highest serial seen (a persisted manifest signed by an older key: the next
    /// manifest must be above it).
    pub(crate) fn observe(&self, serial: u64) {
        self.serial.fetch_max(serial, Ordering::SeqCst);
    }

    /// Records that every peer answered a replication pull at `now`.
    pub(crate) fn answered(&self, now: i64) {
        self.answered_at.fetch_max(now, Ordering::SeqCst);
    }

    /// When every peer last answered a replication pull (0 = never).
    pub(crate) fn answered_at(&self) -> i64 {
        self.answered_at.load(Ordering::SeqCst)
    }

    /// The configured peers.
    pub(crate) fn list(&self) -> &[PeerConfig] {
        &self.list
    }

    /// The highest serial seen from a peer.
    pub(crate) fn serial(&self) -> u64 {
        self.serial.load(Ordering::SeqCst)
    }

    /// Fetches and verifies a peer's manifest (and remembers its serial); `None` if the peer
    /// answers that it has none yet (a new master catching up).
    pub(crate) async fn manifest(&self, peer: &PeerConfig) -> anyhow::Result<Option<Manifest>> {
        let url = format!(
            "{}{}",
            peer.url.trim_end_matches('/'),
            vdb_proto::MANIFEST_PATH
        );
        let r = match self
            .http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if e.kind() == vdb_fetch::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let bytes = r.bytes(&Expect::at_most(MAX_MANIFEST)).await?;
        let env = Signed::<Manifest>::from_json(&bytes)?;
        let m = env.verify(&[peer.key])?;
        anyhow::ensure!(
            m.network == self.network,
            "manifest for network {:?}",
            m.network
        );
        self.serial.fetch_max(m.serial, Ordering::SeqCst);
        Ok(Some(m))
    }

    /// The newest version of each database any peer answering within two seconds holds.
    pub(crate) async fn newest_versions(&self) -> BTreeMap<String, u32> {
        let asks = self
            .list
            .iter()
            .map(|p| tokio::time::timeout(Duration::from_secs(2), self.manifest(p)));
        let mut newest: BTreeMap<String, u32> = BTreeMap::new();
        for m in futures_util::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(|r| r.ok()?.ok()?)
        {
            for (db, d) in m.databases {
                let v = newest.entry(db).or_default();
                *v = (*v).max(d.version);
            }
        }
        newest
    }

    /// Asks every peer to pull from this master now (in the background).
    pub(crate) fn poke_all(&self) {
        for p in &self.list {
            let url = format!("{}/api/v1/replicate", p.url.trim_end_matches('/'));
            let http = self.http.clone();
            self.tasks.spawn(async move {
                // Nothing of the answer is read.
                if let Err(e) = http.post(&url).timeout(Duration::from_secs(3)).send().await {
                    tracing::debug!(error = %e, "could not poke a peer (it will pull on its own schedule)");
                }
            });
        }
    }
}
