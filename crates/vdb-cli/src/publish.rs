//! `vdb publish`: sign a release statement and upload it to the first master that answers.
//! The work is in [`vdb_client`]; this module parses and prints.
//!
//! `vdb publish --dry-run` runs the masters' gate ([`vdb_gate`], the code every master runs)
//! on the files on disk and prints what a master would answer, uploading nothing.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use vdb_client::{Progress, PublishError, Publisher, files_from_paths, infer};
use vdb_gate::{DbRules, Held, MemObjects, Policy, SignCerts};

/// Exit code: no master could be reached.
pub const UNREACHABLE: u8 = 3;

/// `vdb publish` options.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Master base URL; repeat for failover, in order.
    #[arg(long = "master", required_unless_present = "dry_run")]
    pub masters: Vec<String>,
    /// The publisher's secret key file (`vdb key gen`).
    #[arg(long, required_unless_present = "dry_run")]
    pub key: Option<PathBuf>,
    /// Check the release with the masters' own gate here and print what a master would
    /// answer (the release it would accept, or the refusal's code and reason); uploads
    /// nothing and needs no master.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: the CVD/CLD the masters hold now for the database, so that the
    /// version order and the cdiffs (applied to it) are checked as a master checks them.
    #[arg(long, requires = "dry_run", value_name = "FILE")]
    pub held: Option<PathBuf>,
    /// With --dry-run: the database's ClamAV key set, as the master's `keyset_file`
    /// (`official` or the path of a public key set).
    #[arg(
        long,
        requires = "dry_run",
        value_name = "official|PATH",
        default_value = "official"
    )]
    pub keys: String,
    /// With --dry-run: the masters' `cvd_certs_dir`, which `.sign` files must verify against
    /// (default: ClamAV's /etc/clamav/certs, as on a master).
    #[arg(long, requires = "dry_run", value_name = "DIR")]
    pub cvd_certs_dir: Option<PathBuf>,
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

/// Runs `vdb publish`: 0 accepted, 1 refused, 2 usage, 3 no master reachable. With
/// `--dry-run`, [`dry_run`].
pub fn run(args: PublishArgs) -> Result<ExitCode> {
    if args.dry_run {
        return dry_run(&args);
    }
    let Some(key_file) = &args.key else {
        eprintln!("error: --key is needed to publish");
        return Ok(ExitCode::from(crate::exit::USAGE));
    };
    let key = crate::key::read_secret(key_file)?;
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

/// The held release of a dry run: `--held FILE`, verified with the database's key set, as
/// the `<db>.<ext>` a master holds; its bytes go to `objects` (cdiffs are applied to it).
fn held_release(
    path: &std::path::Path,
    db: &str,
    keys: &vdb_format::KeySet,
    objects: &mut MemObjects,
) -> std::result::Result<Held, String> {
    let data = std::fs::read(path).map_err(|e| format!("--held {}: {e}", path.display()))?;
    let kind = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(vdb_format::Kind::from_file_name)
        .ok_or_else(|| format!("--held {}: not a .cvd, .cld or .cud", path.display()))?;
    let verified =
        vdb_format::container::verify(&data[..], kind, keys, &vdb_format::Limits::default())
            .map_err(|e| {
                format!(
                    "--held {}: {e} (verified with key set {:?})",
                    path.display(),
                    keys.name
                )
            })?;
    let file = objects.add(&format!("{db}.{}", kind.extension()), data);
    Ok(Held {
        version: verified.header.version,
        release: format!("held file {}", path.display()),
        files: vec![file],
    })
}

/// `vdb publish --dry-run`: builds the statement `vdb publish` would sign, runs the masters'
/// gate on it and the files on disk ([`vdb_gate::check_shape`], [`vdb_gate::check_release`]:
/// the code a master runs), against `--held` when given, and prints the answer: exit 0 when a
/// master would accept it, 1 when it would refuse it, 2 on a usage error.
///
/// What only a master can know is left out: whether the publisher's key may publish the
/// database, the statement's age, and cdiff names it accepted before with other bytes.
pub fn dry_run(args: &PublishArgs) -> Result<ExitCode> {
    let usage = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(crate::exit::USAGE))
    };
    let (files, info) = match files_from_paths(&args.files)
        .and_then(|f| infer(&f, args.db.as_deref(), args.version).map(|i| (f, i)))
    {
        Ok(v) => v,
        Err(e) => return usage(&e),
    };
    let keys = match crate::db::load_public(&args.keys) {
        Ok(k) => k,
        Err(e) => return usage(&format!("--keys: {e:#}")),
    };
    let certs = match SignCerts::load(args.cvd_certs_dir.as_deref()) {
        Ok(c) => c,
        Err(e) => return usage(&format!("--cvd-certs-dir: {e}")),
    };
    // The statement `vdb publish` signs; the signer does not matter here.
    let key = match &args.key {
        Some(k) => crate::key::read_secret(k)?,
        None => vdb_proto::SecretKey::generate(),
    };
    let (st, _) = match Publisher::new(Vec::new(), key).statement(&info, &files, &args.notes) {
        Ok(v) => v,
        Err(e) => return usage(&e),
    };
    let mut objects = MemObjects::default();
    for f in &files {
        let data = std::fs::read(&f.path)?;
        objects.add(&f.name, data);
    }
    let held = match &args.held {
        Some(p) => match held_release(p, &st.db, &keys, &mut objects) {
            Ok(h) => Some(h),
            Err(e) => return usage(&e),
        },
        None => None,
    };
    let mut policy = Policy::new(vdb_gate::DEFAULT_MAX_FILE_SIZE, 0, certs);
    policy.database(&st.db, keys, DbRules::default());
    let verdict = vdb_gate::check_shape(&policy, &st).and_then(|()| {
        if let Some(h) = held
            .as_ref()
            .filter(|h| h.version == st.version && vdb_gate::same_files(&h.files, &st.files))
        {
            // A master answers a re-submission of what it holds with the release it holds.
            println!("note: this is the held release ({}) again", h.release);
            return Ok(vdb_gate::Accepted::default());
        }
        vdb_gate::check_release(&policy, held.as_ref(), &objects, &st, now(), false)
    });
    match verdict {
        Ok(accepted) => {
            println!(
                "accept: {} version {} (built at {}), {} file(s):",
                st.db,
                st.version,
                st.built_at,
                st.files.len()
            );
            for f in &st.files {
                println!("  {}  {} bytes  sha256 {}", f.name, f.size, f.sha256);
            }
            for w in &accepted.warnings {
                println!("warning: {w}");
            }
            println!(
                "dry run: nothing was uploaded (a master also checks that your key may publish {}, and the cdiffs it accepted before)",
                st.db
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(r) => {
            println!(
                "refuse: {} (HTTP {}): {}",
                r.code.as_str(),
                r.status(),
                r.message
            );
            Ok(ExitCode::from(crate::exit::FAILED))
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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
            key: Some(key.to_owned()),
            dry_run: false,
            held: None,
            keys: "official".into(),
            cvd_certs_dir: None,
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
