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

/// The mirror's command line: `--config` may come before or after a subcommand
/// (`vdbd mirror --config m.toml sync --once`, `vdbd mirror join --config m.toml`).
#[derive(Debug, clap::Args)]
struct MirrorArgs {
    /// The mirror's TOML configuration.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Only read and check the configuration, print `config ok`, exit (0 = it would start).
    #[arg(long)]
    check: bool,
}

impl MirrorArgs {
    fn config(&self) -> anyhow::Result<&Path> {
        self.config
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("the mirror needs --config <mirror.toml>"))
    }
}

#[derive(Debug, Subcommand)]
enum Role {
    /// A master: the verification gate, release history, signed manifest, pushes.
    Master {
        #[command(flatten)]
        args: RoleArgs,
    },
    /// A mirror: pulls releases from the masters and serves them over HTTP; joins a network
    /// and manages its own registry record (`vdbd mirror join --config mirror.toml`).
    Mirror {
        #[command(flatten)]
        args: MirrorArgs,
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
                return args.check.then(|| {
                    let config = args.config()?;
                    vdb_mirror::Config::load(config)?;
                    println!("config ok: mirror {}", config.display());
                    Ok(())
                });
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
    /// Ask the network's masters to register this mirror: makes its identity key (if there is
    /// none), sends the signed request, waits for the network's admin to decide.
    Join {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        fields: Fields,
        /// Return once the request is sent (run `join` again later to wait for the answer).
        #[arg(long)]
        no_wait: bool,
        /// Ask again after the network's admin rejected the request.
        #[arg(long)]
        resubmit: bool,
        /// Give up waiting after this many seconds (the request stays pending).
        #[arg(long, default_value_t = 3600)]
        wait_secs: u64,
        /// Ask the masters for the answer this often (seconds).
        #[arg(long, default_value_t = 5)]
        poll_secs: u64,
    },
    /// Announce a planned downtime: out of DNS, no alerts, during the window.
    Maintenance {
        #[command(flatten)]
        target: Target,
        /// Start: Unix seconds, `now`, or `+N` with s, m, h or d.
        #[arg(long)]
        from: String,
        /// End (exclusive), in the same forms.
        #[arg(long)]
        until: String,
        /// Why (shown on the status page).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Change this mirror's addresses, URLs or contact (the fields given; with none, what the
    /// config's `[registration]` says).
    Update {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        fields: Fields,
    },
    /// Replace the identity key (the new key signed by the old; the old is refused at once).
    RotateKey {
        #[command(flatten)]
        target: Target,
    },
    /// Leave the network: removed from the registry, pulls refused from now on.
    Leave {
        #[command(flatten)]
        target: Target,
        /// Why (kept in the registry's history).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Which masters a mirror's request goes to.
#[derive(Debug, clap::Args)]
struct Target {
    /// A master's base URL (repeatable; default: the config's `masters`).
    #[arg(long = "master")]
    masters: Vec<String>,
}

/// A mirror's public details (override the config's `[registration]` section).
#[derive(Debug, clap::Args)]
struct Fields {
    /// Public base URL (repeatable).
    #[arg(long = "base-url")]
    base_urls: Vec<String>,
    /// Where masters push notices (default: the first base URL's push path).
    #[arg(long)]
    push_url: Option<String>,
    /// Host name or alias served (repeatable; default: the config's `hosts`).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Address the directory hands out (repeatable).
    #[arg(long = "address")]
    addresses: Vec<std::net::IpAddr>,
    /// ISO 3166 country code (`DE`).
    #[arg(long)]
    country: Option<String>,
    /// Region (`europe`, `america`, `asia`, `other`).
    #[arg(long)]
    region: Option<String>,
    /// Bandwidth in Mbit/s.
    #[arg(long)]
    bandwidth: Option<u32>,
    /// The mirror admin's e-mail address.
    #[arg(long)]
    contact: Option<String>,
}

impl From<Target> for vdb_mirror::join::Target {
    fn from(t: Target) -> Self {
        Self { masters: t.masters }
    }
}

impl From<Fields> for vdb_mirror::join::Fields {
    fn from(f: Fields) -> Self {
        Self {
            base_urls: f.base_urls,
            push_url: f.push_url,
            hosts: f.hosts,
            addresses: f.addresses,
            country: f.country,
            region: f.region,
            bandwidth_mbps: f.bandwidth,
            admin_contact: f.contact,
        }
    }
}

/// Runs `vdbd mirror [ACTION]`.
async fn mirror(args: MirrorArgs, action: Option<MirrorAction>) -> anyhow::Result<()> {
    use vdb_mirror::join;
    let config = args.config()?;
    match action {
        None | Some(MirrorAction::Sync { once: false }) => {
            vdb_mirror::run_from_config(config).await
        }
        Some(MirrorAction::Sync { once: true }) => vdb_mirror::sync_once_from_config(config).await,
        Some(MirrorAction::Join {
            target,
            fields,
            no_wait,
            resubmit,
            wait_secs,
            poll_secs,
        }) => {
            let wait = join::Wait {
                no_wait,
                resubmit,
                timeout: std::time::Duration::from_secs(wait_secs),
                every: std::time::Duration::from_secs(poll_secs.max(1)),
            };
            join::join(config, &target.into(), &fields.into(), &wait).await
        }
        Some(MirrorAction::Maintenance {
            target,
            from,
            until,
            reason,
        }) => join::maintenance(config, &target.into(), &from, &until, &reason).await,
        Some(MirrorAction::Update { target, fields }) => {
            join::update(config, &target.into(), &fields.into()).await
        }
        Some(MirrorAction::RotateKey { target }) => join::rotate_key(config, &target.into()).await,
        Some(MirrorAction::Leave { target, reason }) => {
            join::leave(config, &target.into(), &reason).await
        }
    }
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
            Role::Mirror { args, action } => mirror(args, action).await,
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
