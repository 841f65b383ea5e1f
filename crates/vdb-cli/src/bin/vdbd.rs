//! `vdbd`: the vdbnet servers (master, mirror, directory, monitor, dev).

use std::process::ExitCode;

use clap::Parser;

/// vdbnet servers. No server role is implemented in this release yet.
#[derive(Debug, Parser)]
#[command(name = "vdbd", version, about)]
struct Cli {
    /// The server role to run.
    role: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    eprintln!(
        "vdbd: role {:?} is not available in this release; only the `vdb db` tools are (see README.md)",
        cli.role.as_deref().unwrap_or("")
    );
    ExitCode::from(vdb_cli::exit::USAGE)
}
