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

#[derive(Debug, Subcommand)]
enum Role {
    /// A master: the verification gate, release history, signed manifest, pushes.
    Master {
        /// The master's TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// Only read and check the configuration, print `config ok`, exit (0 = it would start).
        #[arg(long)]
        check: bool,
    },
    /// A mirror: pulls releases from the masters and serves them over HTTP.
    Mirror {
        /// The mirror's TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// Only read and check the configuration, print `config ok`, exit (0 = it would start).
        #[arg(long)]
        check: bool,
        #[command(subcommand)]
        action: Option<MirrorAction>,
    },
    /// The directory: authoritative DNS and the HTTP redirector.
    Directory {
        /// The directory's TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// Only read and check the configuration, print `config ok`, exit (0 = it would start).
        #[arg(long)]
        check: bool,
    },
    /// The monitor: checks every mirror, decides who is in service, alerts, status page.
    Monitor {
        /// The monitor's TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// Only read and check the configuration, print `config ok`, exit (0 = it would start).
        #[arg(long)]
        check: bool,
    },
    /// The sample intake: a web form and API for undetected samples, quarantine, triage.
    Intake {
        /// The intake's TOML configuration.
        #[arg(long, short)]
        config: PathBuf,
        /// Only read and check the configuration, print `config ok`, exit (0 = it would start).
        #[arg(long)]
        check: bool,
    },
    /// A whole network on loopback in one process, with a sample database chain.
    Dev(dev::DevArgs),
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

/// `--check`: reads the role's configuration with the loader the role itself uses (parsing and
/// every check that needs no network, key or certificate file), then says so on stdout.
fn check_config<T>(
    role: &str,
    config: &Path,
    load: fn(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<()> {
    load(config)?;
    println!("config ok: {role} {}", config.display());
    Ok(())
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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vdbd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.role {
            Role::Master {
                config,
                check: true,
            } => check_config("master", &config, vdb_master::Config::load),
            Role::Mirror {
                config,
                check: true,
                ..
            } => check_config("mirror", &config, vdb_mirror::Config::load),
            Role::Directory {
                config,
                check: true,
            } => check_config("directory", &config, vdb_directory::Config::load),
            Role::Monitor {
                config,
                check: true,
            } => check_config("monitor", &config, vdb_monitor::Config::load),
            Role::Intake {
                config,
                check: true,
            } => check_config("intake", &config, vdb_intake::Config::load),
            Role::Master { config, .. } => vdb_master::run_from_config(&config).await,
            Role::Mirror {
                config,
                action: Some(MirrorAction::Sync { once: true }),
                ..
            } => vdb_mirror::sync_once_from_config(&config).await,
            Role::Mirror { config, .. } => vdb_mirror::run_from_config(&config).await,
            Role::Directory { config, .. } => vdb_directory::run_from_config(&config).await,
            Role::Monitor { config, .. } => vdb_monitor::run_from_config(&config).await,
            Role::Intake { config, .. } => vdb_intake::run_from_config(&config).await,
            Role::Dev(args) => dev::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vdbd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
