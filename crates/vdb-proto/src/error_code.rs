//! The machine codes of the API error answers of every role (master, mirror, directory, monitor,
//! intake).
//!
//! On the wire a code is its snake_case string (`"replay"`, `"older_version"`), the same strings
//! the roles have always sent, so older clients keep working; in code it is [`ErrorCode`], on
//! the server side (`vdb_service::ApiError`) as on the client side
//! ([`ApiError::error_code`](crate::ApiError::error_code)), and the HTTP status of a master's
//! answer follows from its code.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($text:literal, $status:literal), )*) => {
        /// A machine code of a role's API (the `code` of an [`ApiError`](crate::ApiError)).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The code's wire form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }

            /// The HTTP status this code is answered with (by a master; the other roles answer
            /// with the same status, except the directory's `no_mirror`, a 503: no mirror in
            /// service right now).
            pub fn status(self) -> u16 {
                match self {
                    $(Self::$variant => $status,)*
                }
            }
        }
    };
}

error_codes! {
    /// The statement (or request body) is not a well-formed signed document.
    BadStatement = ("bad_statement", 400),
    /// The signing key is not a publisher of this master.
    UnknownKey = ("unknown_key", 403),
    /// The signature does not verify.
    BadSignature = ("bad_signature", 403),
    /// The publisher key may not publish this database.
    KeyNotAllowed = ("key_not_allowed", 403),
    /// A name outside the serving layout of the database (or an unsafe one).
    UnsafeName = ("unsafe_name", 400),
    /// A kind of file the database may not publish.
    FileNotAllowed = ("file_not_allowed", 400),
    /// Over a size limit.
    TooLarge = ("too_large", 413),
    /// A statement or ticket outside the time window, or an old statement sent again.
    Replay = ("replay", 409),
    /// A version below the held one.
    OlderVersion = ("older_version", 409),
    /// The held version with other content.
    Equivocation = ("equivocation", 409),
    /// A file of the statement was not uploaded.
    MissingObject = ("missing_object", 400),
    /// A file's size is not the stated one.
    SizeMismatch = ("size_mismatch", 400),
    /// A file's bytes do not hash to the stated SHA-256.
    HashMismatch = ("hash_mismatch", 400),
    /// A CVD/CLD/CUD that does not verify.
    BadContainer = ("bad_container", 422),
    /// A container whose header version is not the statement's.
    VersionMismatch = ("version_mismatch", 422),
    /// A container whose build time is not the statement's.
    BuiltAtMismatch = ("built_at_mismatch", 422),
    /// A release of a container database without its container.
    MissingContainer = ("missing_container", 422),
    /// A release that would change the kind of container the network serves (`.cvd` to `.cld`).
    ContainerKind = ("container_kind", 422),
    /// cdiffs without the container they lead to.
    CdiffWithoutContainer = ("cdiff_without_container", 422),
    /// cdiffs while no version is held to apply them to.
    CdiffWithoutBase = ("cdiff_without_base", 422),
    /// cdiffs that do not lead from the held version to the new one.
    CdiffChain = ("cdiff_chain", 422),
    /// A cdiff that does not verify or apply.
    BadCdiff = ("bad_cdiff", 422),
    /// cdiffs whose result is not the new container's content.
    CdiffMismatch = ("cdiff_mismatch", 422),
    /// A `.sign` file that does not parse, or whose PKCS#7 signature does not verify for the
    /// file it signs against the master's certificate directory (`cvd_certs_dir`).
    BadSign = ("bad_sign", 422),
    /// A `.sign` file that this master cannot verify: it has no usable certificate directory.
    SignUnverifiable = ("sign_unverifiable", 422),
    /// The master is catching up with its peers: try another one.
    CatchingUp = ("catching_up", 503),
    /// The master failed.
    Internal = ("internal", 500),
    /// An object address that is not a lower-case hex SHA-256.
    BadAddress = ("bad_address", 400),
    /// An upload without its signed ticket.
    NoTicket = ("no_ticket", 401),
    /// An upload ticket that does not parse or is for another object.
    BadTicket = ("bad_ticket", 400),
    /// A request body that could not be read.
    BadBody = ("bad_body", 400),
    /// No released object with this address.
    NoObject = ("no_object", 404),
    /// No accepted release with this id.
    NoRelease = ("no_release", 404),
    /// No mirror of this name in the registry.
    NoMirror = ("no_mirror", 404),
    /// The master has not signed a manifest yet.
    NoManifest = ("no_manifest", 404),
    /// A mirror record that makes no sense.
    BadRecord = ("bad_record", 400),
    /// The mirror is already registered.
    Exists = ("exists", 409),
    /// A request that makes no sense.
    BadRequest = ("bad_request", 400),
    /// The admin API is off.
    AdminDisabled = ("admin_disabled", 403),
    /// A wrong bearer token.
    BadToken = ("bad_token", 403),
    /// A bearer token is needed.
    NoToken = ("no_token", 401),
    /// No such endpoint.
    NotFound = ("not_found", 404),
    /// Too many join requests are waiting for the network's admin.
    TooManyPending = ("too_many_pending", 429),
    /// No join request of this name.
    NoRequest = ("no_request", 404),
    /// The pull signature does not verify (or its mirror has no key, or left).
    BadPullAuth = ("bad_pull_auth", 403),

    // The mirror's API (push notices, files, local statistics).
    /// A push notice that is not a well-formed signed document.
    Malformed = ("malformed", 400),
    /// A push notice outside the time window.
    Stale = ("stale", 400),
    /// A push notice for another network.
    WrongNetwork = ("wrong_network", 400),
    /// A push notice with a malformed nonce.
    BadNonce = ("bad_nonce", 400),
    /// A push notice naming a serial below the one the mirror holds (a rollback).
    OlderSerial = ("older_serial", 409),
    /// The mirror's local statistics are off.
    StatsDisabled = ("stats_disabled", 404),
    /// Credentials (HTTP Basic) are missing or wrong.
    Unauthorized = ("unauthorized", 401),
    /// The mirror's statistics database failed.
    StatsFailed = ("stats_failed", 500),
    /// The mirror cannot serve the file right now.
    Unavailable = ("unavailable", 503),
    /// Not with this method.
    MethodNotAllowed = ("method_not_allowed", 405),
    /// A host name the mirror does not serve.
    UnknownHost = ("unknown_host", 421),
    /// The mirror has not synced a manifest yet.
    NotSynced = ("not_synced", 503),
    /// A malformed file path.
    BadPath = ("bad_path", 400),

    // The directory's redirector and the monitor.
    /// Not a database file name.
    BadName = ("bad_name", 404),
    /// A mirror's base URL that cannot be sent in a header.
    BadMirrorUrl = ("bad_mirror_url", 503),
    /// A view of the verdicts that does not exist.
    BadView = ("bad_view", 400),

    // The sample intake.
    /// The quarantine is full.
    QuarantineFull = ("quarantine_full", 507),
    /// Not a database name.
    BadDbName = ("bad_db_name", 400),
    /// A database version below 1.
    BadVersion = ("bad_version", 400),
    /// No sample with this SHA-256.
    UnknownSample = ("unknown_sample", 404),
    /// Too many submissions from this address this hour.
    RateLimited = ("rate_limited", 429),
    /// This address already has uploads in progress.
    TooManyUploads = ("too_many_uploads", 429),
    /// The server is busy: retry later.
    Busy = ("busy", 503),
    /// The upload took too long.
    UploadTimeout = ("upload_timeout", 408),
    /// An unreadable multipart form.
    BadForm = ("bad_form", 400),
    /// More than one file in a submission.
    TwoFiles = ("two_files", 400),
    /// A form field that does not exist.
    UnknownField = ("unknown_field", 400),
    /// A submission without a file.
    NoFile = ("no_file", 400),
    /// An empty file.
    EmptyFile = ("empty_file", 400),
    /// No submission has this tracking id.
    UnknownTrackingId = ("unknown_tracking_id", 404),
    /// Not a SHA-256 (64 lower-case hex digits).
    BadSha256 = ("bad_sha256", 400),
    /// A submitted file name with a path in it.
    NameWithPath = ("name_with_path", 400),
    /// A submitted file name with control characters.
    NameWithControl = ("name_with_control", 400),
    /// A submitted file name that is too long.
    NameTooLong = ("name_too_long", 400),
    /// A detection name that breaks the rules.
    BadDetectionName = ("bad_detection_name", 400),
    /// A note that breaks the rules.
    BadNote = ("bad_note", 400),
    /// An e-mail address that breaks the rules.
    BadEmail = ("bad_email", 400),
    /// A malformed tracking id.
    BadTrackingId = ("bad_tracking_id", 400),
}

impl ErrorCode {
    /// Reads a code's wire form; `None` for a code this build does not know.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == text)
    }

    /// Whether the fault is the server's (an answer a client may take to another master or
    /// retry later), not the request's.
    pub fn is_retryable(self) -> bool {
        self.status() >= 500
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{c}\""));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), c);
            assert!((400..600).contains(&c.status()), "{c}");
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn wire_strings_and_statuses_are_the_old_ones() {
        assert_eq!(ErrorCode::Replay.as_str(), "replay");
        assert_eq!(ErrorCode::Replay.status(), 409);
        assert_eq!(ErrorCode::UnknownKey.status(), 403);
        assert_eq!(ErrorCode::TooLarge.status(), 413);
        assert!(ErrorCode::CatchingUp.is_retryable());
        assert!(!ErrorCode::OlderVersion.is_retryable());
        // The other roles' codes, as mirrors, directories, monitors and intakes have sent them.
        for (c, text) in [
            (ErrorCode::NotSynced, "not_synced"),
            (ErrorCode::OlderSerial, "older_serial"),
            (ErrorCode::BadMirrorUrl, "bad_mirror_url"),
            (ErrorCode::BadView, "bad_view"),
            (ErrorCode::UnknownSample, "unknown_sample"),
            (ErrorCode::BadDetectionName, "bad_detection_name"),
        ] {
            assert_eq!(c.as_str(), text);
            assert_eq!(ErrorCode::parse(text), Some(c));
        }
        assert!(ErrorCode::Busy.is_retryable() && ErrorCode::Unavailable.is_retryable());
        assert!(!ErrorCode::RateLimited.is_retryable());
    }
}
