//! vdbnet master: the verification gate, release history, signed manifest, pushes, replication, registry.

/// Runs the master from its TOML configuration until SIGINT or SIGTERM.
pub async fn run_from_config(config: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!("vdbd master is not available yet ({})", config.display())
}
