//! vdbnet monitor: version-aware freshness checks, service verdicts, alerts and a status page.

/// Runs the monitor from its TOML configuration until SIGINT or SIGTERM.
pub async fn run_from_config(config: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!("vdbd monitor is not available yet ({})", config.display())
}
