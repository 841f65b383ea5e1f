//! `vdbd dev`'s sample intake: started from a real `intake.toml` in the state directory, with
//! the network's admin token, and named in the ready line (`"intake": {"http", "form",
//! "config"}`, [`vdb_proto::DevIntake`]).
//!
//! Triage needs databases the real `clamscan` accepts: with `--upstream` (ClamAV's signed
//! files) the intake scans against what the first mirror serves; the generated chain is signed
//! with the dev network's own keys, which stock ClamAV refuses, so without `--upstream` samples
//! are quarantined but not triaged.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};

/// Starts the intake; returns it and what the ready line says of it.
pub(crate) async fn start(
    dir: &Path,
    upstream: bool,
) -> Result<(vdb_intake::Running, vdb_proto::DevIntake)> {
    let token_file = dir.join("keys/admin.token");
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading {}", token_file.display()))?;
    let mut cfg = toml::Table::new();
    cfg.insert("name".into(), "intake".into());
    cfg.insert("listen".into(), "127.0.0.1:0".into());
    cfg.insert(
        "data_dir".into(),
        dir.join("intake").display().to_string().into(),
    );
    cfg.insert("admin_token".into(), token.trim().into());
    if upstream {
        let mut scanner = toml::Table::new();
        scanner.insert(
            "database".into(),
            dir.join("mirror1/current").display().to_string().into(),
        );
        cfg.insert("scanner".into(), scanner.into());
    }
    let path = dir.join("intake.toml");
    super::configs::write_toml(&path, &cfg)?;
    let config = vdb_intake::Config::load(&path)?;
    let running = vdb_intake::start(config, Arc::new(vdb_proto::SystemClock))
        .await
        .context("starting the intake")?;
    let url = running.base_url();
    let named = vdb_proto::DevIntake {
        form: format!("{url}/"),
        http: url,
        config: path,
    };
    Ok((running, named))
}
