//! `vdb publish`: sign a release statement and upload it to the first master that answers.
//! The work is in [`vdb_client`]; this module parses and prints.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use vdb_client::{Progress, PublishError, Publisher, files_from_paths, infer};

/// Exit code: no master could be reached.
pub const UNREACHABLE: u8 = 3;

/// `vdb publish` options.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Master base URL; repeat for failover, in order.
    #[arg(long = "master", required = true)]
    pub masters: Vec<String>,
    /// The publisher's secret key file (`vdb key gen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Database name (inferred from the CVD's file name when omitted).
    #[arg(long)]
    pub db: Option<String>,
    /// Version (inferred from the CVD header when omitted).
    #[arg(long)]
    pub version: Option<u32>,
    /// PEM root certificates to trust for the masters' HTTPS (a private CA).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Release notes for the announcement.
    #[arg(long, default_value = "")]
    pub notes: String,
    /// The release's files (CVD, cdiffs, .sign files, plain signature files).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `vdb publish`: 0 accepted, 1 refused, 2 usage, 3 no master reachable.
pub fn run(args: PublishArgs) -> Result<ExitCode> {
    let key = crate::key::read_secret(&args.key)?;
    let files = match files_from_paths(&args.files)
        .and_then(|f| infer(&f, args.db.as_deref(), args.version).map(|i| (f, i)))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(crate::exit::USAGE));
        }
    };
    let (files, info) = files;
    let mut publisher = Publisher::new(args.masters, key);
    if let Some(ca) = &args.ca {
        publisher = publisher.with_ca(&vdb_client::read_ca(ca)?);
    }
    let (st, env) = match publisher.statement(&info, &files, &args.notes) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(crate::exit::USAGE));
        }
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(st.files.iter().map(|f| f.size).sum());
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let progress = |p: Progress| {
        // A failover is said whether or not there is a progress bar: never silent.
        if let Progress::FailedOver(m, why) = &p {
            let line = format!("master {m} failed ({why}); trying the next master");
            match &bar {
                Some(b) => b.println(line),
                None => eprintln!("{line}"),
            }
            return;
        }
        if let Some(b) = &bar {
            match p {
                Progress::Master(m) => {
                    b.set_position(0);
                    b.set_message(m);
                }
                Progress::File(name, _) => b.set_message(name),
                Progress::Sent(n) => b.inc(n),
                Progress::FailedOver(..) => {}
            }
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(publisher.publish(&files, &st, &env, &progress));
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match result {
        Ok(a) => {
            println!(
                "published {} version {} accepted by master {} (serial {}): release {}",
                a.db, a.version, a.master, a.serial, a.release_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ PublishError::Refused { .. }) => {
            eprintln!("refused: {e}");
            Ok(ExitCode::from(crate::exit::FAILED))
        }
        Err(e @ PublishError::Unreachable(_)) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(UNREACHABLE))
        }
        Err(e @ PublishError::Usage(_)) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(crate::exit::USAGE))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::ExitCode;
    use std::sync::Arc;

    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/clamav"
    );

    fn args(masters: Vec<String>, key: &Path, files: &[&Path]) -> PublishArgs {
        PublishArgs {
            masters,
            key: key.to_owned(),
            db: None,
            version: None,
            ca: None,
            notes: String::new(),
            files: files.iter().map(|p| p.to_path_buf()).collect(),
        }
    }

    #[test]
    fn publish_exit_codes_against_a_real_master() {
        let dir = tempfile::tempdir().unwrap();
        let master_key = dir.path().join("master.key");
        let publisher = dir.path().join("pub.key");
        crate::key::write_secret(&master_key, &vdb_proto::SecretKey::generate()).unwrap();
        let pk = vdb_proto::SecretKey::generate();
        crate::key::write_secret(&publisher, &pk).unwrap();
        let mut c = vdb_master::Config::new("a", "net", dir.path().join("data"), master_key);
        c.publishers = vec![vdb_master::config::PublisherConfig {
            key: pk.public(),
            databases: vec!["test".into()],
        }];
        let rt = tokio::runtime::Runtime::new().unwrap();
        let running = rt
            .block_on(vdb_master::start(c, Arc::new(vdb_proto::SystemClock)))
            .unwrap();
        let url = running.base_url();
        let f = Path::new(FIXTURES);
        let cvd = dir.path().join("test.cvd");
        std::fs::copy(f.join("test-1.cvd"), &cvd).unwrap();
        // The first master is down: failover to the second.
        let dead = "http://127.0.0.1:9".to_owned();
        let ok = run(args(vec![dead.clone(), url.clone()], &publisher, &[&cvd])).unwrap();
        assert_eq!(ok, ExitCode::SUCCESS);
        // Refused (older version): 1.
        let refused = run(args(
            vec![url.clone()],
            &publisher,
            &[&f.join("test-1.cvd")],
        ));
        // test-1.cvd published again under another name is the same version with other files.
        assert_eq!(refused.unwrap(), ExitCode::from(crate::exit::FAILED));
        // Nothing to infer from: usage, 2.
        let sign = f.join("test-1.cvd.sign");
        let usage = run(args(vec![url.clone()], &publisher, &[&sign])).unwrap();
        assert_eq!(usage, ExitCode::from(crate::exit::USAGE));
        // No master reachable: 3.
        let down = run(args(vec![dead], &publisher, &[&cvd])).unwrap();
        assert_eq!(down, ExitCode::from(UNREACHABLE));
        rt.block_on(running.shutdown());
    }
}
