//! `vdb`: database tools and publishing. The only binary that touches private keys.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vdb_cli::{db, exit, key, mirror_admin, publish, samples};

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
    /// Ed25519 keys for publishers and masters.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Sign a release and upload it to the first master that answers.
    Publish(publish::PublishArgs),
    /// Manage a master's mirror registry.
    #[command(subcommand)]
    Mirror(mirror_admin::MirrorCommand),
    /// Work with the samples an intake received (the signature team's side).
    #[command(subcommand)]
    Samples(samples::SamplesCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Db(cmd) => db::run(cmd),
        Command::Key(cmd) => key::run(cmd),
        Command::Publish(args) => publish::run(args),
        Command::Mirror(cmd) => mirror_admin::run(cmd),
        Command::Samples(cmd) => samples::run(cmd),
    };
    result.unwrap_or_else(|e| exit::report(&e))
}
