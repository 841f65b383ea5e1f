//! freshclam's result codes and what happened to a database.

/// freshclam's result codes (`fc_error_t`, spec §4.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Code {
    /// Something changed.
    Success = 0,
    /// Nothing to do (exit 0).
    UpToDate = 1,
    /// Initialisation failed.
    Init = 2,
    /// The database directory is missing or unusable.
    Directory = 3,
    /// A local file could not be written.
    File = 4,
    /// No connection.
    Connection = 5,
    /// An empty file was served.
    EmptyFile = 6,
    /// Verification failed.
    BadCvd = 7,
    /// The test load failed.
    TestFail = 8,
    /// The configuration is unusable.
    Config = 9,
    /// The database directory cannot be read or written.
    DbDirAccess = 10,
    /// A download failed.
    FailedGet = 11,
    /// The mirror serves an older version than advertised.
    MirrorNotSync = 12,
    /// A bad command-line argument.
    Arg = 16,
    /// 403: the run stops, daemons exit.
    Forbidden = 17,
    /// 429: the run stops (exit 0).
    RetryLater = 18,
    /// Anything else.
    Error = 19,
}

impl Code {
    /// The process exit code freshclam uses for this outcome (0 for up-to-date and 429).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::UpToDate | Self::RetryLater => 0,
            c => c as u8,
        }
    }
}

/// A failed step, with freshclam's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UpdateError {
    /// The code.
    pub code: Code,
    /// What happened and, where possible, what to do.
    pub message: String,
    /// The server is out of sync with its own signed manifest: no attempt on it can help, the
    /// next server is tried at once.
    pub(crate) next_mirror: bool,
}

impl UpdateError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            next_mirror: false,
        }
    }

    /// A server whose answer contradicts the signed manifest it serves ([`Code::MirrorNotSync`]).
    pub(crate) fn out_of_sync(message: impl Into<String>) -> Self {
        Self {
            next_mirror: true,
            ..Self::new(Code::MirrorNotSync, message)
        }
    }

    /// Whether the server was out of sync with its own signed manifest (the run moved on to
    /// the next server).
    pub fn out_of_sync_mirror(&self) -> bool {
        self.next_mirror
    }
}

/// What happened to one database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbOutcome {
    /// Already current at this version.
    UpToDate(u32),
    /// A new file was installed.
    Updated {
        /// The installed file name.
        file: String,
        /// Its version.
        version: u32,
        /// Installed a version older than the advertised one (mirror not synchronised).
        behind: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_freshclam() {
        assert_eq!(Code::UpToDate.exit_code(), 0);
        assert_eq!(Code::RetryLater.exit_code(), 0);
        assert_eq!(Code::Forbidden.exit_code(), 17);
        assert_eq!(Code::FailedGet.exit_code(), 11);
        assert_eq!(Code::BadCvd.exit_code(), 7);
    }
}
