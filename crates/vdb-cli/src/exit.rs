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

/// Prints an admin API error on stderr, with what to do when the token is missing or wrong,
/// and returns the failure exit code.
pub fn report_admin(err: &vdb_client::AdminError) -> ExitCode {
    eprintln!("error: {err}{}", token_hint(err));
    ExitCode::from(FAILED)
}

/// What to do about a missing or refused admin token.
pub fn token_hint(err: &vdb_client::AdminError) -> &'static str {
    use vdb_proto::ErrorCode;
    let vdb_client::AdminError::Api(api) = err else {
        return "";
    };
    match api.error_code() {
        Some(ErrorCode::NoToken) => {
            "\n  this needs the admin token: pass --token TOKEN or set VDB_ADMIN_TOKEN (the server's `admin_token`)"
        }
        Some(ErrorCode::BadToken) => {
            "\n  the server refused this token: compare --token or VDB_ADMIN_TOKEN with the server's `admin_token`"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use vdb_client::AdminError;
    use vdb_proto::{ApiError, ErrorCode};

    #[test]
    fn token_refusals_say_what_to_do() {
        let missing = AdminError::Api(ApiError::new(ErrorCode::NoToken, "send a token"));
        assert!(super::token_hint(&missing).contains("--token TOKEN or set VDB_ADMIN_TOKEN"));
        let wrong = AdminError::Api(ApiError::new(ErrorCode::BadToken, "wrong token"));
        assert!(super::token_hint(&wrong).contains("compare --token"));
        let other = AdminError::Transport("down".into());
        assert_eq!(super::token_hint(&other), "");
    }
}
