//! Following a ClamAV-style upstream (the private-mirror case): probe each database's CVD
//! header over HTTP, fetch the new CVD and the cdiffs from the held version, and publish them
//! as a release through the same gate as any publisher's.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use vdb_format::Header;
use vdb_proto::{FileRef, ReleaseStatement, SecretKey, Signed};

use crate::config::UpstreamConfig;
use crate::master::{Master, Origin};

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

async fn get(master: &Master, url: &str, range: Option<&str>) -> anyhow::Result<reqwest::Response> {
    let mut req = master.http.get(url).header(
        "user-agent",
        "ClamAV/1.4.6 (OS: linux, ARCH: x86_64, CPU: x86_64) vdbnet-master",
    );
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let r = req.timeout(Duration::from_secs(60)).send().await?;
    anyhow::ensure!(r.status().is_success(), "HTTP {} from {url}", r.status());
    Ok(r)
}

/// Downloads `url` into the object store; returns its file reference named `name`.
async fn fetch(master: &Master, url: &str, name: &str) -> anyhow::Result<FileRef> {
    let r = get(master, url, None).await?;
    let mut up = master.objects.begin(master.policy.max_file_size())?;
    let mut data = Vec::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        up.write(&chunk)?;
        data.extend_from_slice(&chunk);
    }
    let sha = vdb_proto::sha256_hex(&data);
    let size = master.objects.finish(up, &sha)?;
    Ok(FileRef {
        name: name.to_owned(),
        size,
        sha256: sha,
    })
}

/// Checks one database once.
pub(crate) async fn check_db(
    master: &Arc<Master>,
    up: &UpstreamConfig,
    key: &SecretKey,
    db: &str,
) -> anyhow::Result<Followed> {
    let base = up.url.trim_end_matches('/');
    let held = master
        .held()
        .map_err(|r| anyhow::anyhow!("{r}"))?
        .get(db)
        .map_or(0, |h| h.version);
    let head = get(master, &format!("{base}/{db}.cvd"), Some("bytes=0-511"))
        .await?
        .bytes()
        .await?;
    let header = Header::parse(&head[..head.len().min(512)])
        .map_err(|e| anyhow::anyhow!("upstream {db}.cvd header: {e}"))?;
    if header.version <= held {
        return Ok(Followed::Current(held));
    }
    let mut files = vec![fetch(master, &format!("{base}/{db}.cvd"), &format!("{db}.cvd")).await?];
    if held > 0 {
        let mut cdiffs = Vec::new();
        for v in held + 1..=header.version {
            let name = format!("{db}-{v}.cdiff");
            match fetch(master, &format!("{base}/{name}"), &name).await {
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
        issued_at: master.clock.now(),
        files,
        notes: format!("followed from {base}"),
    };
    let env = Signed::sign(&st, key).to_json();
    match master.submit(env.as_bytes(), Origin::Upstream).await {
        Ok(a) => Ok(Followed::Published(a.version)),
        Err(r) => Ok(Followed::Refused(r.to_string())),
    }
}

/// The follower loop.
pub(crate) async fn run(master: Arc<Master>, up: UpstreamConfig, key: SecretKey) {
    let tick = Duration::from_millis(master.config.tick_ms);
    let mut next = master.clock.now();
    loop {
        if master.clock.now() >= next && master.ready.load(std::sync::atomic::Ordering::SeqCst) {
            next = master.clock.now() + up.interval_secs;
            for db in &up.databases {
                match check_db(&master, &up, &key, db).await {
                    Ok(Followed::Current(v)) => {
                        master.metrics.upstream("current");
                        tracing::debug!(db, version = v, "upstream has nothing newer");
                    }
                    Ok(Followed::Published(v)) => {
                        master.metrics.upstream("new");
                        tracing::info!(db, version = v, "followed a new upstream version");
                    }
                    Ok(Followed::Refused(why)) => {
                        master.metrics.upstream("refused");
                        tracing::warn!(db, reason = %why, "upstream files refused by the gate");
                    }
                    Err(e) => {
                        master.metrics.upstream("error");
                        tracing::warn!(db, error = %e, "upstream check failed");
                    }
                }
            }
        }
        tokio::select! {
            () = master.cancel.cancelled() => return,
            () = tokio::time::sleep(tick) => {}
        }
    }
}
