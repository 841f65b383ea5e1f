//! Exit codes shared by the binaries.

use std::process::ExitCode;

/// Everything worked.
pub const OK: u8 = 0;
/// The operation ran and found a problem (a database failed verification).
pub const FAILED: u8 = 1;
/// Usage, configuration or environment error.
pub const USAGE: u8 = 2;

/// Prints an error chain on stderr and returns the failure exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err:#}");
    ExitCode::from(FAILED)
}
