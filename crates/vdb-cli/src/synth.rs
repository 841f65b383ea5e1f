//! `vdb db synth`: a deterministic, realistic large database for benchmarks.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// `vdb db synth` arguments.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output directory (created if missing).
    #[arg(short, long, default_value = "synth")]
    pub output: PathBuf,
}

/// Runs `vdb db synth`.
pub fn run(args: &SynthArgs) -> Result<()> {
    anyhow::bail!("synth is not built yet ({})", args.output.display())
}
