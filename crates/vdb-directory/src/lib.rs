//! vdbnet directory: authoritative DNS with GeoIP regions and version records, and an HTTP redirector.

/// Runs the directory from its TOML configuration until SIGINT or SIGTERM.
pub async fn run_from_config(config: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!("vdbd directory is not available yet ({})", config.display())
}
