//! Following a ClamAV-style upstream (the private-mirror case): probe each database's CVD
//! header over HTTP, fetch the new CVD and the cdiffs from the held version, and publish them
//! as a release through the same gate as any publisher's.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vdb_fetch::Expect;
use vdb_format::Header;
use vdb_proto::{FileRef, ReleaseStatement, SecretKey, Signed};

use crate::config::UpstreamConfig;
use crate::events::Origin;
use crate::metrics::Metrics;
use crate::store::Store;

/// Follows an upstream into the store, signing its releases with its own publisher key.
#[derive(Debug)]
pub(crate) struct Follower {
    store: Arc<Store>,
    http: vdb_fetch::Client,
    metrics: Arc<Metrics>,
    up: UpstreamConfig,
    key: SecretKey,
}

/// What one check of one database did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Followed {
    /// The upstream has nothing newer.
    Current(u32),
    /// A new version was published.
    Published(u32),
    /// The gate refused the upstream's files.
    Refused(String),
}

/// A GET to the upstream, as freshclam sends it (a CDN may answer clients by their agent).
fn get(http: &vdb_fetch::Client, url: &str) -> vdb_fetch::Request {
    http.get(url)
        .header(
            "user-agent",
            "ClamAV/1.4.6 (OS: linux, ARCH: x86_64, CPU: x86_64) vdbnet-master",
        )
        .timeout(Duration::from_secs(60))
}

/// Downloads `url` (at most the largest file a release may hold) into the object store;
/// returns its file reference named `name`.
async fn fetch(f: &Follower, url: &str, name: &str) -> anyhow::Result<FileRef> {
    let r = get(&f.http, url).send().await?;
    let objects = f.store.objects().clone();
    let max = f.store.policy().max_file_size();
    let mut up = objects.begin(max)?;
    r.for_each_chunk(&Expect::at_most(max), |chunk| {
        up.write(chunk).map_err(std::io::Error::other)
    })
    .await?;
    let (sha, size) = crate::tasks::blocking(move || objects.finish_any(up)).await?;
    Ok(FileRef {
        name: name.to_owned(),
        size,
        sha256: sha,
    })
}

/// Checks one database once.
async fn check_db(f: &Follower, db: &str) -> anyhow::Result<Followed> {
    let base = f.up.url.trim_end_matches('/');
    let held = f
        .store
        .held()
        .map_err(|r| anyhow::anyhow!("{r}"))?
        .get(db)
        .map_or(0, |h| h.version);
    // A CDN may ignore the range and send the whole file: only its first 512 bytes are read.
    let head = get(&f.http, &format!("{base}/{db}.cvd"))
        .range(0, Some(511))
        .send()
        .await?
        .prefix(512)
        .await?;
    let header =
        Header::parse(&head).map_err(|e| anyhow::anyhow!("upstream {db}.cvd header: {e}"))?;
    if header.version <= held {
        return Ok(Followed::Current(held));
    }
    let mut files = vec![fetch(f, &format!("{base}/{db}.cvd"), &format!("{db}.cvd")).await?];
    if held > 0 {
        let mut cdiffs = Vec::new();
        for v in held + 1..=header.version {
            let name = format!("{db}-{v}.cdiff");
            match fetch(f, &format!("{base}/{name}"), &name).await {
                Ok(f) => cdiffs.push(f),
                Err(e) => {
                    tracing::info!(%name, error = %e, "upstream cdiff missing; publishing the CVD alone");
                    cdiffs.clear();
                    break;
                }
            }
        }
        files.extend(cdiffs);
    }
    let st = ReleaseStatement {
        db: db.to_owned(),
        version: header.version,
        built_at: header
            .build_secs
            .and_then(|s| i64::try_from(s).ok())
            .unwrap_or(0),
        issued_at: f.store.now(),
        files,
        notes: format!("followed from {base}"),
    };
    let env = Signed::sign(&st, &f.key).to_json();
    match f.store.submit(env.as_bytes(), Origin::Upstream).await {
        Ok(a) => Ok(Followed::Published(a.version)),
        Err(r) => Ok(Followed::Refused(r.to_string())),
    }
}

impl Follower {
    /// A follower of `up` into `store`, signing with `key`.
    pub(crate) fn new(
        store: Arc<Store>,
        http: vdb_fetch::Client,
        metrics: Arc<Metrics>,
        up: UpstreamConfig,
        key: SecretKey,
    ) -> Self {
        Self {
            store,
            http,
            metrics,
            up,
            key,
        }
    }

    /// The follower loop.
    pub(crate) async fn run(self, cancel: CancellationToken) {
        let tick = Duration::from_millis(self.store.config().tick_ms);
        let mut next = self.store.now();
        loop {
            if self.store.now() >= next && self.store.is_ready() {
                next = self.store.now() + self.up.interval_secs;
                for db in &self.up.databases {
                    match check_db(&self, db).await {
                        Ok(Followed::Current(v)) => {
                            self.metrics.upstream("current");
                            tracing::debug!(db, version = v, "upstream has nothing newer");
                        }
                        Ok(Followed::Published(v)) => {
                            self.metrics.upstream("new");
                            tracing::info!(db, version = v, "followed a new upstream version");
                        }
                        Ok(Followed::Refused(why)) => {
                            self.metrics.upstream("refused");
                            tracing::warn!(db, reason = %why, "upstream files refused by the gate");
                        }
                        Err(e) => {
                            self.metrics.upstream("error");
                            tracing::warn!(db, error = %e, "upstream check failed");
                        }
                    }
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
        }
    }
}
