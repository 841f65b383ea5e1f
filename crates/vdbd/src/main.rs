//! `vdbd`: the vdbnet servers. One binary, one role per subcommand; no publisher keys.
//!
//! Every role logs to stderr (text, or JSON with `--log-format json`) and, once it listens,
//! prints exactly one JSON line on stdout naming its endpoints, so that scripts and tests can
//! wait for readiness without sleeping.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod dev;

/// vdbnet servers: master, mirror, directory, monitor, or all of them at once (`dev`).
#[derive(Debug, Parser)]
#[command(name = "vdbd", version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// What every server role takes on its command line.
#[derive(Debug, clap::Args)]
struct RoleArgs {
    /// The role's TOML configuration.
    #[arg(long, short)]
    config: PathBuf,
    /// Only read and check the configuration, print `config ok`, exit (0 = it would start).
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// A master: the verification gate, release history, signed manifest, pushes.
    Master {
        #[command(flatten)]
        args: RoleArgs,
    },
    /// A mirror: pulls releases from the masters and serves them over HTTP.
    Mirror {
        #[command(flatten)]
        args: RoleArgs,
        #[command(subcommand)]
        action: Option<MirrorAction>,
    },
    /// The directory: authoritative DNS and the HTTP redirector.
    Directory {
        #[command(flatten)]
        args: RoleArgs,
    },
    /// The monitor: checks every mirror, decides who is in service, alerts, status page.
    Monitor {
        #[command(flatten)]
        args: RoleArgs,
    },
    /// The sample intake: a web form and API for undetected samples, quarantine, triage.
    Intake {
        #[command(flatten)]
        args: RoleArgs,
    },
    /// A whole network on loopback in one process, with a sample database chain.
    Dev(dev::DevArgs),
}

impl Role {
    /// `--check`: reads the role's configuration with the loader the role itself uses (parsing
    /// and every check that needs no network, key or certificate file), then says so on
    /// stdout. `None` when the role was not asked to check.
    fn check(&self) -> Option<anyhow::Result<()>> {
        type Load = fn(&Path) -> anyhow::Result<()>;
        let (role, args, load): (&str, &RoleArgs, Load) = match self {
            Self::Master { args } => ("master", args, |p| vdb_master::Config::load(p).map(drop)),
            Self::Mirror { args, .. } => {
                ("mirror", args, |p| vdb_mirror::Config::load(p).map(drop))
            }
            Self::Directory { args } => ("directory", args, |p| {
                vdb_directory::Config::load(p).map(drop)
            }),
            Self::Monitor { args } => ("monitor", args, |p| vdb_monitor::Config::load(p).map(drop)),
            Self::Intake { args } => ("intake", args, |p| vdb_intake::Config::load(p).map(drop)),
            Self::Dev(_) => return None,
        };
        args.check.then(|| {
            load(&args.config)?;
            println!("config ok: {role} {}", args.config.display());
            Ok(())
        })
    }
}

#[derive(Debug, Subcommand)]
enum MirrorAction {
    /// Synchronise with the masters.
    Sync {
        /// Run one locked sync and exit (the seed's ssh forced command).
        #[arg(long)]
        once: bool,
    },
}

fn init_logging(format: LogFormat, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("VDB_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal: a log written to a file or the journal stays plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `vdbd dev` runs every role in one terminal: only warnings unless VDB_LOG says otherwise.
    let default_level = if matches!(cli.role, Role::Dev(_)) {
        "warn"
    } else {
        "info"
    };
    init_logging(cli.log_format, default_level);
    if let Some(checked) = cli.role.check() {
        return report(checked);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vdbd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    report(runtime.block_on(async {
        match cli.role {
            Role::Master { args } => vdb_master::run_from_config(&args.config).await,
            Role::Mirror {
                args,
                action: Some(MirrorAction::Sync { once: true }),
            } => vdb_mirror::sync_once_from_config(&args.config).await,
            Role::Mirror { args, .. } => vdb_mirror::run_from_config(&args.config).await,
            Role::Directory { args } => vdb_directory::run_from_config(&args.config).await,
            Role::Monitor { args } => vdb_monitor::run_from_config(&args.config).await,
            Role::Intake { args } => vdb_intake::run_from_config(&args.config).await,
            Role::Dev(args) => dev::run(args).await,
        }
    }))
}

/// The exit status of a run, its error on stderr.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vdbd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
