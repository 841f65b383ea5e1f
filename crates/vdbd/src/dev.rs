//! `vdbd dev`: a whole network on loopback in one process.

use std::path::PathBuf;

/// Options of `vdbd dev`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// State directory (a fresh temporary directory by default).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How many mirrors to start.
    #[arg(long, default_value_t = 3)]
    mirrors: usize,
    /// Follow ClamAV's signed databases from this directory instead of a generated chain.
    #[arg(long)]
    upstream: Option<PathBuf>,
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    anyhow::bail!("vdbd dev is not available yet ({args:?})")
}
