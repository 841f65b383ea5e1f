//! `vdb-update`: keeps a scanner's database directory current (freshclam-compatible).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vdb_update::config::Settings;
use vdb_update::log::{Log, Verbosity};
use vdb_update::updater::{Code, RunOptions, run_once};

/// Updates ClamAV databases like freshclam, from freshclam.conf or a vdb-update TOML file.
#[derive(Debug, Parser)]
#[command(name = "vdb-update", version, about)]
struct Cli {
    /// freshclam.conf to read (default /etc/clamav/freshclam.conf).
    #[arg(long = "config-file", value_name = "FILE")]
    config_file: Option<PathBuf>,
    /// vdb-update's TOML configuration (instead of freshclam.conf).
    #[arg(long, value_name = "FILE", conflicts_with = "config_file")]
    config: Option<PathBuf>,
    /// Database directory (overrides DatabaseDirectory).
    #[arg(long, value_name = "DIR")]
    datadir: Option<PathBuf>,
    /// Only update these databases (repeatable; `custom` = DatabaseCustomURL); no pruning.
    #[arg(long = "update-db", value_name = "NAME")]
    update_db: Vec<String>,
    /// Do not use the DNS TXT record; probe headers over HTTP.
    #[arg(long)]
    no_dns: bool,
    /// Keep running: check `Checks` times a day (SIGUSR1 = check now). Stays in the
    /// foreground (run it under a service manager).
    #[arg(short = 'd', long)]
    daemon: bool,
    /// Checks per day in daemon mode (overrides Checks).
    #[arg(short = 'c', long, value_name = "N")]
    checks: Option<u32>,
    /// Accepted for freshclam compatibility (vdb-update never forks).
    #[arg(short = 'F', long)]
    foreground: bool,
    /// Write every message to stdout.
    #[arg(long)]
    stdout: bool,
    /// Only errors.
    #[arg(long, conflicts_with = "verbose")]
    quiet: bool,
    /// Every request and timings.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Also append messages to this file (overrides UpdateLogFile).
    #[arg(short = 'l', long = "log", value_name = "FILE")]
    log: Option<PathBuf>,
    /// Command after an update (overrides OnUpdateExecute).
    #[arg(long, value_name = "COMMAND")]
    on_update_execute: Option<String>,
    /// Command after a failure (overrides OnErrorExecute).
    #[arg(long, value_name = "COMMAND")]
    on_error_execute: Option<String>,
    /// Command when ClamAV is outdated (overrides OnOutdatedExecute).
    #[arg(long, value_name = "COMMAND")]
    on_outdated_execute: Option<String>,
    /// Tell clamd to reload after an update, reading this clamd.conf.
    #[arg(long, value_name = "CLAMD_CONF", num_args = 0..=1,
          default_missing_value = "/etc/clamav/clamd.conf", require_equals = true)]
    daemon_notify: Option<PathBuf>,
    /// Seconds between attempts on one mirror (freshclam: 5).
    #[arg(long, value_name = "SECS")]
    retry_delay: Option<u64>,
    /// DNS server for the TXT records and the mirrors' host names, ip:port (default: the
    /// system resolver).
    #[arg(long, value_name = "ADDR")]
    dns_server: Option<std::net::SocketAddr>,
    /// Test-load command for new databases; `{}` is the staged file (split on spaces).
    #[arg(long, value_name = "COMMAND")]
    test_command: Option<String>,
    /// Accepted for freshclam compatibility; ignored.
    #[arg(short = 'u', long, value_name = "USER")]
    user: Option<String>,
}

fn load(cli: &Cli, log: &Log) -> Result<Settings, String> {
    let mut s = if let Some(p) = &cli.config {
        Settings::load_toml(p).map_err(|e| e.to_string())?
    } else {
        let p = cli
            .config_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("/etc/clamav/freshclam.conf"));
        let (s, warnings) = Settings::load_freshclam(&p).map_err(|e| e.to_string())?;
        for w in warnings {
            log.warn(format!("{}: {w}", p.display()));
        }
        s
    };
    if let Some(d) = &cli.datadir {
        s.database_directory.clone_from(d);
    }
    if let Some(c) = cli.checks {
        s.checks = c;
    }
    if cli.on_update_execute.is_some() {
        s.on_update_execute.clone_from(&cli.on_update_execute);
    }
    if cli.on_error_execute.is_some() {
        s.on_error_execute.clone_from(&cli.on_error_execute);
    }
    if cli.on_outdated_execute.is_some() {
        s.on_outdated_execute.clone_from(&cli.on_outdated_execute);
    }
    if cli.daemon_notify.is_some() {
        s.notify_clamd.clone_from(&cli.daemon_notify);
    }
    if let Some(r) = cli.retry_delay {
        s.retry_delay = Duration::from_secs(r);
    }
    if cli.dns_server.is_some() {
        s.dns_server = cli.dns_server;
    }
    if let Some(t) = &cli.test_command {
        s.test_command = Some(t.split_whitespace().map(str::to_owned).collect());
    }
    if cli.log.is_some() {
        s.update_log_file.clone_from(&cli.log);
    }
    if cli.daemon && s.dns_domain.is_none() && s.checks > 50 {
        return Err(format!(
            "Checks {} is too many without DNS (at most 50 a day)",
            s.checks
        ));
    }
    if cli.daemon && s.checks == 0 {
        return Err("Checks must be at least 1 in daemon mode".into());
    }
    Ok(s)
}

/// Seconds until the next check: 86400/checks, ±10% jitter.
fn next_delay(checks: u32) -> Duration {
    use rand_core::RngCore;
    let base = 86_400 / u64::from(checks.max(1));
    let spread = base / 10;
    let jitter = if spread == 0 {
        0
    } else {
        rand_core::OsRng.next_u64() % (2 * spread + 1)
    };
    Duration::from_secs(base - spread + jitter)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = if cli.quiet {
        Verbosity::Quiet
    } else if cli.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    let bootstrap = Log::new(verbosity, cli.stdout);
    let settings = match load(&cli, &bootstrap) {
        Ok(s) => s,
        Err(e) => {
            bootstrap.error(e);
            return ExitCode::from(Code::Config.exit_code());
        }
    };
    let log = match &settings.update_log_file {
        Some(p) => match Log::new(verbosity, cli.stdout).with_file(p) {
            Ok(l) => l,
            Err(e) => {
                bootstrap.error(format!("cannot open log file {}: {e}", p.display()));
                return ExitCode::from(13);
            }
        },
        None => bootstrap,
    };
    let options = RunOptions {
        update_db: cli.update_db.clone(),
        no_dns: cli.no_dns,
        daemon: cli.daemon,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log.error(format!("cannot start the runtime: {e}"));
            return ExitCode::from(Code::Init.exit_code());
        }
    };
    rt.block_on(async {
        if !cli.daemon {
            let report = run_once(&settings, &options, &log).await;
            return ExitCode::from(report.exit_code);
        }
        let mut usr1 =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
                Ok(s) => s,
                Err(e) => {
                    log.error(format!("cannot handle SIGUSR1: {e}"));
                    return ExitCode::from(Code::Init.exit_code());
                }
            };
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    log.error(format!("cannot handle SIGTERM: {e}"));
                    return ExitCode::from(Code::Init.exit_code());
                }
            };
        loop {
            let report = run_once(&settings, &options, &log).await;
            if report.code == Code::Forbidden {
                log.error("received 403: the daemon stops (as freshclam does)");
                return ExitCode::from(report.exit_code);
            }
            let delay = next_delay(settings.checks);
            log.info(format!(
                "next check in {} s (SIGUSR1 checks now)",
                delay.as_secs()
            ));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = usr1.recv() => log.info("Received signal: wake up"),
                _ = term.recv() => {
                    log.info("terminating");
                    return ExitCode::SUCCESS;
                }
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_delay_is_a_day_over_checks_with_ten_percent_jitter() {
        for _ in 0..100 {
            let d = next_delay(12).as_secs();
            assert!((6480..=7920).contains(&d), "{d}");
        }
        assert!(next_delay(0).as_secs() >= 77_760);
    }

    #[test]
    fn cli_accepts_freshclam_options() {
        let cli = Cli::try_parse_from([
            "vdb-update",
            "--config-file=/etc/clamav/freshclam.conf",
            "--datadir=/tmp/db",
            "--update-db=daily",
            "--update-db=main",
            "--no-dns",
            "-d",
            "--checks=24",
            "--foreground",
            "--stdout",
            "--verbose",
            "--on-update-execute=true",
            "--daemon-notify",
        ])
        .unwrap();
        assert_eq!(cli.update_db, ["daily", "main"]);
        assert_eq!(
            cli.daemon_notify.as_deref(),
            Some(std::path::Path::new("/etc/clamav/clamd.conf"))
        );
        assert!(cli.daemon && cli.no_dns && cli.stdout && cli.verbose);
    }
}
