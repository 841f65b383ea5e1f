//! `vdb`: database tools and publishing. The only binary that touches private keys.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vdb_cli::{db, exit};

/// vdbnet tools: inspect, verify, build and patch ClamAV databases.
#[derive(Debug, Parser)]
#[command(name = "vdb", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// ClamAV database tools.
    #[command(subcommand)]
    Db(db::DbCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Db(cmd) => db::run(cmd),
    };
    result.unwrap_or_else(|e| exit::report(&e))
}
