//! Publishing test releases through the publisher library (the code behind `vdb publish`).

use std::time::{Duration, Instant};

use vdb_client::{Progress, PublishError, Publisher, ReleaseFile};
use vdb_proto::{ReleaseAccepted, SecretKey};

/// Release `v` (1..=6) of ClamAV's test database as [`ReleaseFile`]s
/// ([`crate::fixtures::release_files`]).
pub fn test_release(v: u32) -> Vec<ReleaseFile> {
    crate::fixtures::release_files(v)
        .into_iter()
        .map(|(name, path)| ReleaseFile { name, path })
        .collect()
}

/// [`test_release`] with its `.sign` files ([`crate::fixtures::signed_release_files`]).
pub fn signed_test_release(v: u32) -> Vec<ReleaseFile> {
    crate::fixtures::signed_release_files(v)
        .into_iter()
        .map(|(name, path)| ReleaseFile { name, path })
        .collect()
}

/// Publishes `files` once to `masters` (failover in order), signed by `key`.
pub async fn publish_once(
    masters: &[String],
    key: &SecretKey,
    files: &[ReleaseFile],
) -> Result<ReleaseAccepted, PublishError> {
    let p = Publisher::new(masters.to_vec(), key.clone());
    let info = vdb_client::infer(files, None, None).expect("a release the publisher recognises");
    let (st, env) = p.statement(&info, files, "").expect("a release statement");
    p.publish(files, &st, &env, &|_: Progress| {}).await
}

/// Publishes, retrying for at most `secs` seconds while the masters are unreachable (a master
/// still catching up answers 503); panics on a refusal.
pub async fn publish(
    masters: &[String],
    key: &SecretKey,
    files: &[ReleaseFile],
    secs: u64,
) -> ReleaseAccepted {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match publish_once(masters, key, files).await {
            Ok(a) => return a,
            Err(PublishError::Unreachable(e)) if Instant::now() < deadline => {
                eprintln!("publish: {e:?}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publishing {files:?}: {e}"),
        }
    }
}
