//! `vdb db synth`: the arguments and the report of [`vdb_synth`], the generator.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use vdb_synth::{DB, Spec, VersionStats, mib};

/// `vdb db synth` arguments.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output directory (created if missing).
    #[arg(short, long, default_value = "synth")]
    pub output: PathBuf,
    /// Target size of the compressed CVD in MiB (about twice as much signature text is made).
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub size_mb: u32,
    /// Length of the cdiff chain: versions made after the base.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub cdiffs: u32,
    /// Version of the base CVD (`daily-N.cvd`).
    #[arg(long, value_name = "N", default_value_t = 27000)]
    pub version: u32,
    /// Seed of the content (and of the default key set and the signatures' salts).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Private key set from `vdb db keygen` that signs [default: a deterministic key set made
    /// from the seed, written to DIR/synth.key (mode 0600) and DIR/synth.key.pub].
    #[arg(long, value_name = "PATH")]
    pub keys: Option<PathBuf>,
    /// Also write DIR/daily.cud: the newest version unsigned, for comparison with sigtool.
    #[arg(long)]
    pub cud: bool,
}

impl SynthArgs {
    fn spec(&self) -> Spec {
        Spec {
            output: self.output.clone(),
            size_mb: self.size_mb,
            cdiffs: self.cdiffs,
            version: self.version,
            seed: self.seed,
            keys: self.keys.clone(),
            cud: self.cud,
        }
    }
}

/// Runs `vdb db synth`: writes the files, progress on stderr, a summary on stdout.
pub fn run(args: &SynthArgs) -> Result<()> {
    let t0 = Instant::now();
    let (stats, written) = vdb_synth::generate(&args.spec(), &mut |s| {
        eprintln!("{}", s.progress_line());
    })?;
    summary(
        &args.output,
        args,
        &stats,
        &written,
        t0.elapsed().as_secs_f64(),
    );
    Ok(())
}

fn summary(
    dir: &Path,
    args: &SynthArgs,
    stats: &[VersionStats],
    written: &[(String, usize)],
    secs: f64,
) {
    let (Some(base), Some(newest)) = (stats.first(), stats.last()) else {
        return;
    };
    println!(
        "synthesized {DB} versions {}..={} in {} ({secs:.1} s, seed {})",
        base.version,
        newest.version,
        dir.display(),
        args.seed
    );
    println!(
        "asked for a {} MiB CVD: base is {} ({} of signature text, {} signatures, {:.2}:1)",
        args.size_mb,
        mib(base.cvd_bytes as u64),
        mib(base.text_bytes),
        base.signatures,
        base.text_bytes as f64 / base.cvd_bytes as f64,
    );
    for (name, len) in written {
        println!("  {name:<22} {:>12} bytes  {}", len, mib(*len as u64));
    }
    match &args.keys {
        Some(k) => println!("signed with {}", k.display()),
        None => println!(
            "signed with the deterministic key set {} (verify with --keys {})",
            dir.join("synth.key").display(),
            dir.join("synth.key.pub").display()
        ),
    }
}
