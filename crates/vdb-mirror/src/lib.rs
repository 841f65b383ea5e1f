//! vdbnet mirror: atomic pull sync from the masters and a freshclam-compatible HTTP file server.

/// Runs the mirror from its TOML configuration until SIGINT or SIGTERM.
pub async fn run_from_config(config: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!("vdbd mirror is not available yet ({})", config.display())
}

/// One locked sync from the masters, then exit.
pub async fn sync_once_from_config(config: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!(
        "vdbd mirror sync is not available yet ({})",
        config.display()
    )
}
