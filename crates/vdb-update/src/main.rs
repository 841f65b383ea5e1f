//! `vdb-update`: keeps a scanner's database directory current (freshclam-compatible).

use std::process::ExitCode;

use clap::Parser;

/// vdbnet client. Updating is not available in this release yet.
#[derive(Debug, Parser)]
#[command(name = "vdb-update", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _ = Cli::parse();
    eprintln!(
        "vdb-update: updating is not available in this release; only the `vdb db` tools are (see README.md)"
    );
    ExitCode::from(2)
}
