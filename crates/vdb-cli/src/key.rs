//! `vdb key …`: Ed25519 publisher and master keys.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use vdb_proto::SecretKey;

/// `vdb key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate an Ed25519 key (publisher or master) into FILE (mode 0600); prints the public key.
    Gen {
        /// Where to write the secret key (must not exist).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print the public key of a secret key file.
    Pub {
        /// The secret key file.
        file: PathBuf,
    },
}

/// Runs a `vdb key` command.
pub fn run(cmd: KeyCommand) -> Result<ExitCode> {
    match cmd {
        KeyCommand::Gen { output } => {
            let key = SecretKey::generate();
            write_secret(&output, &key)?;
            println!("{}", key.public());
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::Pub { file } => {
            println!("{}", read_secret(&file)?.public());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads a secret key file.
pub fn read_secret(path: &Path) -> Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key file {}", path.display()))?;
    SecretKey::from_text(&text).with_context(|| format!("in the key file {}", path.display()))
}

/// Writes a new secret key file readable by its owner only; refuses to overwrite.
pub fn write_secret(path: &Path, key: &SecretKey) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if path.exists() {
        bail!("{} exists; refusing to overwrite a key", path.display());
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(key.to_text().as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn gen_writes_0600_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let k = SecretKey::generate();
        write_secret(&p, &k).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_secret(&p).unwrap().public(), k.public());
        assert!(write_secret(&p, &k).is_err(), "never overwrites");
    }
}
