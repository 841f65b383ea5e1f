//! `vdb samples …`: the signature team's side of the sample intake (`vdbd intake`), with the
//! admin token; plus `submit` and `status`, a submitter's side, for tools.
//!
//! `get` writes the quarantined form (a ZIP encrypted with the password `infected`) to a file;
//! the raw sample never goes to standard output.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use vdb_client::AdminError;
use vdb_client::samples::{Samples, SubmitInfo};
use vdb_proto::sample::{Resolve, SampleState};

/// Where and how to reach the intake.
#[derive(Debug, Args)]
pub struct Conn {
    /// The intake's base URL.
    #[arg(long)]
    pub intake: String,
    /// The admin token (or env VDB_ADMIN_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// PEM root certificates to trust for the intake's HTTPS (a private CA).
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

impl Conn {
    fn client(self) -> Result<Samples, AdminError> {
        let token = self.token.or_else(|| std::env::var("VDB_ADMIN_TOKEN").ok());
        let c = Samples::new(&self.intake, token);
        match &self.ca {
            Some(ca) => Ok(c.with_ca(&vdb_client::read_ca(ca).map_err(usage)?)),
            None => Ok(c),
        }
    }
}

/// A sample's state, on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    /// Received, not detected.
    Received,
    /// Detected by the databases when it arrived.
    AlreadyDetected,
    /// A release detects it.
    SignaturePublished,
}

impl From<StateArg> for SampleState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Received => Self::Received,
            StateArg::AlreadyDetected => Self::AlreadyDetected,
            StateArg::SignaturePublished => Self::SignaturePublished,
        }
    }
}

/// `vdb samples` subcommands.
#[derive(Debug, Subcommand)]
pub enum SamplesCommand {
    /// List samples, newest first (JSON lines).
    List {
        /// Only samples in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// Show one sample with its submissions (JSON).
    Show {
        /// The sample's SHA-256.
        sha256: String,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// Download a sample in its quarantined form: a ZIP encrypted with the password `infected`.
    Get {
        /// The sample's SHA-256.
        sha256: String,
        /// Where to write the ZIP (default `<sha256>.zip` in the current directory).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// Record the release that detects a sample; its submitters' status pages show it.
    Resolve {
        /// The sample's SHA-256.
        sha256: String,
        /// The database the detection was published in.
        #[arg(long)]
        db: String,
        /// The database version that detects it.
        #[arg(long)]
        version: u32,
        /// The signature's name.
        #[arg(long)]
        detection: Option<String>,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// Submit a sample through the API, as a submitter (no token needed).
    Submit {
        /// The file.
        file: PathBuf,
        /// The detection name another scanner gave it.
        #[arg(long)]
        detection: Option<String>,
        /// Where it came from.
        #[arg(long, default_value = "")]
        note: String,
        /// Where to send the answer.
        #[arg(long)]
        email: Option<String>,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
    /// A submission's status, by tracking id (JSON).
    Status {
        /// The tracking id the submission returned.
        tracking_id: String,
        /// Connection.
        #[command(flatten)]
        conn: Conn,
    },
}

fn print<T: serde::Serialize>(v: &T) -> Result<(), AdminError> {
    println!("{}", serde_json::to_string(v).map_err(usage)?);
    Ok(())
}

/// Runs a `vdb samples` command: 0 ok, 1 refused or unreachable.
pub fn run(cmd: SamplesCommand) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result: Result<(), AdminError> = rt.block_on(async {
        match cmd {
            SamplesCommand::List { state, limit, conn } => {
                for r in conn.client()?.list(state.map(Into::into), limit).await? {
                    print(&r)?;
                }
                Ok(())
            }
            SamplesCommand::Show { sha256, conn } => print(&conn.client()?.show(&sha256).await?),
            SamplesCommand::Get {
                sha256,
                output,
                conn,
            } => {
                if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(usage("not a SHA-256"));
                }
                let dst = output.unwrap_or_else(|| PathBuf::from(format!("{sha256}.zip")));
                let n = conn.client()?.download(&sha256, &dst).await?;
                eprintln!(
                    "wrote {} ({n} bytes): a ZIP encrypted with the password `infected`",
                    dst.display()
                );
                Ok(())
            }
            SamplesCommand::Resolve {
                sha256,
                db,
                version,
                detection,
                conn,
            } => {
                let r = Resolve {
                    db,
                    version,
                    detection,
                };
                print(&conn.client()?.resolve(&sha256, &r).await?)
            }
            SamplesCommand::Submit {
                file,
                detection,
                note,
                email,
                conn,
            } => {
                let info = SubmitInfo {
                    detection,
                    note,
                    email,
                };
                print(&conn.client()?.submit(&file, &info).await?)
            }
            SamplesCommand::Status { tracking_id, conn } => {
                print(&conn.client()?.status(&tracking_id).await?)
            }
        }
    });
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(crate::exit::report_admin(&e)),
    }
}

fn usage(e: impl std::fmt::Display) -> AdminError {
    AdminError::Transport(e.to_string())
}
