//! The wait behind `vdbd dev`'s ready line: the line promises a network that is ready, so it
//! comes only when every mirror serves the newest release, the monitor has judged every mirror
//! in service at those versions, and the directory answers the version TXT record with them.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use vdb_proto::{Manifest, MirrorState, PublicKey, Signed};

use super::Network;

/// How often the conditions are looked at again.
const POLL: Duration = Duration::from_millis(100);

/// Waits until `done` holds, polling; past `deadline`, fails with what `waiting` says.
async fn until<F, Fut>(deadline: Instant, mut done: F, waiting: impl Fn() -> String) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if done().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} (waited until --timeout-secs)", waiting());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `held` serves every database of `newest` at its version. The same versions, not
/// merely a serial as high: master B signs serials of its own while it replicates, which a
/// mirror may take before A's newest.
fn serves(held: &std::collections::BTreeMap<String, u32>, newest: &Manifest) -> bool {
    newest
        .databases
        .iter()
        .all(|(db, st)| held.get(db) == Some(&st.version))
}

/// Every mirror serves `newest` (its signed manifest, read over HTTP), the monitor has judged
/// every mirror in service at those versions, and the directory answers each database's TXT
/// record (`<db>.cvd.<zone>`, over DNS) with its version.
pub(super) async fn until_served(
    net: &Network,
    zone: &str,
    newest: &Manifest,
    trusted: &[PublicKey],
    deadline: Instant,
) -> Result<()> {
    let http = vdb_fetch::Client::builder("vdbd-dev")
        .timeout(Duration::from_secs(5))
        .build()?;
    for m in &net.mirrors {
        let url = format!("http://{}{}", m.http_addr(), vdb_proto::MANIFEST_PATH);
        until(
            deadline,
            || async {
                manifest(&http, &url, trusted)
                    .await
                    .is_some_and(|held| serves(&held.versions(), newest))
            },
            || {
                format!(
                    "mirror {} did not sync the newest release (manifest serial {}) in time",
                    m.http_addr(),
                    newest.serial
                )
            },
        )
        .await?;
    }
    let monitor = net.monitor.monitor();
    let judged = || {
        let report = monitor.verdicts(false);
        net.mirrors.len() == report.mirrors.len()
            && report
                .mirrors
                .iter()
                .all(|v| v.state == MirrorState::InService && serves(&v.serving, newest))
    };
    until(deadline, || async { judged() }, || {
        let report = monitor.verdicts(false);
        let seen: Vec<String> = report
            .mirrors
            .iter()
            .map(|v| format!("{} {:?} {:?}", v.name, v.state, v.serving))
            .collect();
        format!(
            "the monitor did not judge every mirror in service at the newest release in time (it sees: {})",
            seen.join("; ")
        )
    })
    .await?;
    let dns =
        vdb_fetch::dns::Txt::new(Some(net.directory.dns_addr())).map_err(anyhow::Error::msg)?;
    for (db, st) in newest.databases.iter().filter(|(db, _)| *db != "current") {
        let name = format!("{db}.cvd.{zone}");
        let want = format!("{}:", st.version);
        until(
            deadline,
            || async {
                dns.first_string(&name)
                    .await
                    .is_ok_and(|txt| txt.starts_with(&want))
            },
            || {
                format!(
                    "the directory did not answer the TXT record {name} with version {} in time",
                    st.version
                )
            },
        )
        .await?;
    }
    Ok(())
}

/// A mirror's manifest, if it answers one that `trusted` signed.
async fn manifest(http: &vdb_fetch::Client, url: &str, trusted: &[PublicKey]) -> Option<Manifest> {
    let body = http
        .get(url)
        .send()
        .await
        .ok()?
        .bytes(&vdb_fetch::Expect::at_most(1 << 20))
        .await
        .ok()?;
    Signed::<Manifest>::from_json(&body)
        .ok()?
        .verify(trusted)
        .ok()
}
