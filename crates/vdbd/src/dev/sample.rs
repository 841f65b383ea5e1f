//! The sample data of `vdbd dev`: a generated, signed database chain published to master A
//! (or the upstream's releases), then the wait until the network serves it ([`super::converge`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use vdb_client::{Admin, Publisher, ReleaseFile, ReleaseInfo};
use vdb_proto::{PublicKey, SecretKey};

use super::{DevArgs, Network};

/// The sample chain, made when vdbd was built (`build.rs`): the server holds these signed
/// files, not the code that signs them.
pub(super) struct Sample {
    pub(super) dir: PathBuf,
    pub(super) keyset: PathBuf,
    pub(super) base: u32,
    pub(super) newest: u32,
}

include!(concat!(env!("OUT_DIR"), "/sample.rs"));

pub(super) fn make_sample(dir: &Path, args: &DevArgs) -> Result<Sample> {
    let base = SAMPLE_BASE;
    if args.sample_cdiffs > SAMPLE_NEWEST - base {
        bail!("--sample-cdiffs must be at most {}", SAMPLE_NEWEST - base);
    }
    let out = dir.join("sample");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for (name, bytes) in SAMPLE_FILES {
        let path = out.join(name);
        vdb_format::write_atomic(&path, bytes)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Sample {
        keyset: out.join("synth.key.pub"),
        dir: out,
        base,
        newest: base + args.sample_cdiffs,
    })
}

/// Publishes the sample chain (or waits for the upstream's releases), then waits until every
/// mirror serves the newest manifest. Returns the newest version of each database.
pub(super) async fn populate(
    zone: &str,
    net: &Network,
    urls: &[String],
    master_keys: &[SecretKey; 2],
    publisher: &SecretKey,
    sample: Option<&Sample>,
    deadline: Instant,
) -> Result<Vec<(String, u32)>> {
    let trusted: Vec<PublicKey> = master_keys.iter().map(SecretKey::public).collect();
    if let Some(s) = sample {
        // The whole chain goes to master A: with failover, a link could land on B before B has
        // replicated the previous one, and B would rightly refuse a cdiff from a version it
        // does not hold. A master still catching up at start answers 503; wait for it.
        let client = Publisher::new(vec![urls[0].clone()], publisher.clone());
        for v in s.base..=s.newest {
            let mut files = vec![ReleaseFile {
                name: "daily.cvd".into(),
                path: s.dir.join(format!("daily-{v}.cvd")),
            }];
            if v > s.base {
                files.push(ReleaseFile {
                    name: format!("daily-{v}.cdiff"),
                    path: s.dir.join(format!("daily-{v}.cdiff")),
                });
            }
            let info: ReleaseInfo = vdb_client::infer(&files, Some("daily"), Some(v))?;
            let (st, env) = client.statement(&info, &files, "vdbd dev sample release")?;
            loop {
                match client.publish(&files, &st, &env, &|_| {}).await {
                    Ok(_) => break,
                    Err(vdb_client::PublishError::Unreachable(_)) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) => return Err(e).with_context(|| format!("publishing daily {v}")),
                }
            }
        }
    }
    // The newest manifest of master A, once it has every database.
    let admin = Admin::new(&urls[0], None);
    let newest = loop {
        if let Ok(m) = admin.manifest(&trusted).await
            && !m.databases.is_empty()
            && sample.is_none_or(|s| {
                m.databases
                    .get("daily")
                    .is_some_and(|d| d.version == s.newest)
            })
        {
            break m;
        }
        if Instant::now() > deadline {
            bail!("master a did not publish the sample databases in time");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    super::converge::until_served(net, zone, &newest, &trusted, deadline).await?;
    Ok(newest
        .databases
        .iter()
        .map(|(db, s)| (db.clone(), s.version))
        .collect())
}
