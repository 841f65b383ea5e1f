//! Sample intake (`vdbd intake`): the checks on what the public submits, the tracking id, the
//! records the team and the submitter see, and the reading of a scanner's verdict.
//!
//! Everything here is a pure function of its input (no I/O), so that the intake, its clients
//! and the fuzz target share one definition of what is acceptable.

use serde::{Deserialize, Serialize};

/// Paths of the intake's HTTP API.
pub mod paths {
    /// `POST` (multipart: `file`, optional `detection`, `note`, `email`): submit a sample;
    /// `GET` (admin token) lists samples.
    pub const SAMPLES: &str = "/api/v1/samples";
    /// `GET /api/v1/submissions/<tracking id>`: a submitter's status (JSON).
    pub const SUBMISSIONS: &str = "/api/v1/submissions";
    /// `GET /status/<tracking id>`: a submitter's status page (HTML).
    pub const STATUS_PAGE: &str = "/status";
    /// `POST`: the web form's target (HTML answer).
    pub const FORM: &str = "/submit";
}

/// The password of every quarantined sample's ZIP, as the industry exchanges samples.
pub const QUARANTINE_PASSWORD: &str = "infected";

/// Longest accepted submitted file name (bytes).
pub const MAX_FILE_NAME: usize = 255;
/// Longest accepted detection name (bytes).
pub const MAX_DETECTION_NAME: usize = 128;
/// Longest accepted note (bytes).
pub const MAX_NOTE: usize = 4000;
/// Longest accepted e-mail address (bytes).
pub const MAX_EMAIL: usize = 254;

/// Why a submission's field, or a tracking id, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SampleInputError {
    /// The file name names a directory (`/`, `\`, `.`, `..`).
    #[error("the file name may not contain a path (/ or \\) nor be . or ..")]
    NameWithPath,
    /// The file name holds control characters.
    #[error("the file name may not contain control characters")]
    NameWithControl,
    /// The file name is too long.
    #[error("the file name is longer than {MAX_FILE_NAME} bytes")]
    NameTooLong,
    /// The claimed detection name is not a signature name.
    #[error(
        "the detection name must be 1-{MAX_DETECTION_NAME} characters of A-Z a-z 0-9 . _ - : + !"
    )]
    DetectionName,
    /// The note is too long or holds control characters other than line breaks and tabs.
    #[error("the note must be at most {MAX_NOTE} bytes without control characters")]
    Note,
    /// The e-mail address is not one.
    #[error("the e-mail address is not a plain address (name@domain.example)")]
    Email,
    /// Not a tracking id (32 lower-case hex digits).
    #[error("not a tracking id")]
    TrackingId,
}

impl SampleInputError {
    /// The stable API error code.
    pub fn code(&self) -> crate::ErrorCode {
        use crate::ErrorCode as C;
        match self {
            Self::NameWithPath => C::NameWithPath,
            Self::NameWithControl => C::NameWithControl,
            Self::NameTooLong => C::NameTooLong,
            Self::DetectionName => C::BadDetectionName,
            Self::Note => C::BadNote,
            Self::Email => C::BadEmail,
            Self::TrackingId => C::BadTrackingId,
        }
    }
}

/// Checks a submitted file name (the submitter's own name for the file, kept for the team;
/// never used as a path).
pub fn check_file_name(name: &str) -> Result<(), SampleInputError> {
    if name.len() > MAX_FILE_NAME {
        return Err(SampleInputError::NameTooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(SampleInputError::NameWithControl);
    }
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(SampleInputError::NameWithPath);
    }
    Ok(())
}

/// Checks a detection name (claimed by a submitter, reported by a scanner, or given by the
/// team): ClamAV-style signature names such as `Win.Trojan.Agent-123-0`.
pub fn check_detection_name(name: &str) -> Result<(), SampleInputError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_DETECTION_NAME
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'+' | b'!')
        });
    if ok {
        Ok(())
    } else {
        Err(SampleInputError::DetectionName)
    }
}

/// Checks a free-text note: bounded, no control characters but line breaks and tabs.
pub fn check_note(note: &str) -> Result<(), SampleInputError> {
    let ok = note.len() <= MAX_NOTE
        && note
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    if ok {
        Ok(())
    } else {
        Err(SampleInputError::Note)
    }
}

/// Checks an e-mail address for the answer: one plain `local@domain.tld`, nothing that could
/// change a mail header or add a recipient.
pub fn check_email(addr: &str) -> Result<(), SampleInputError> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| {
                b.is_ascii_graphic()
                    && !matches!(b, b'<' | b'>' | b',' | b';' | b'"' | b'(' | b')')
                    && !matches!(b, b'[' | b']' | b'\\' | b'@' | b':')
            })
    };
    let ok = addr.len() <= MAX_EMAIL
        && addr.split_once('@').is_some_and(|(local, domain)| {
            plain(local)
                && plain(domain)
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        });
    if ok {
        Ok(())
    } else {
        Err(SampleInputError::Email)
    }
}

/// A submitter's tracking id: 128 random bits as 32 lower-case hex digits. It is the only key
/// to a submission's status, so it is unguessable; it is never logged.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TrackingId(String);

impl TrackingId {
    /// A fresh id from the operating system's random source.
    pub fn generate() -> Self {
        use rand_core::RngCore as _;
        let mut b = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut b);
        Self(crate::hex(&b))
    }

    /// Parses an id as a submitter presents it (anything else is refused).
    pub fn parse(s: &str) -> Result<Self, SampleInputError> {
        if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(SampleInputError::TrackingId)
        }
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the id, the form the intake stores (a copy of the database does not
    /// reveal the ids, and a lookup compares no secret).
    pub fn digest(&self) -> String {
        crate::sha256_hex(self.0.as_bytes())
    }
}

impl std::fmt::Debug for TrackingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TrackingId(…)")
    }
}

/// A scanner's verdict on one sample, read from `clamscan` (`stdin: …`) or `clamd`
/// (`stream: …`) output.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScanReply {
    /// Nothing found.
    Clean,
    /// Found, as this signature name (checked by [`check_detection_name`]).
    Found(String),
    /// The scanner stopped at one of its limits (`Heuristics.Limits.Exceeded.*`): the sample
    /// was not fully scanned.
    LimitExceeded(String),
    /// The scanner reported an error.
    Error(String),
}

/// Reads a scanner's answer for one stream: the first line of the form `<label>: OK`,
/// `<label>: <name> FOUND` or `<label>: <message> ERROR`. `None` when no line has that form (or
/// the name is not a signature name).
pub fn parse_scan_reply(text: &str) -> Option<ScanReply> {
    for line in text.split(['\n', '\0']) {
        let line = line.trim_end_matches('\r');
        let Some((_, rest)) = line.split_once(": ") else {
            continue;
        };
        if rest == "OK" {
            return Some(ScanReply::Clean);
        }
        if let Some(name) = rest.strip_suffix(" FOUND") {
            check_detection_name(name).ok()?;
            return Some(if name.starts_with("Heuristics.Limits.Exceeded") {
                ScanReply::LimitExceeded(name.to_owned())
            } else {
                ScanReply::Found(name.to_owned())
            });
        }
        if let Some(msg) = rest.strip_suffix(" ERROR") {
            let msg: String = msg.chars().filter(|c| !c.is_control()).take(200).collect();
            return Some(ScanReply::Error(msg));
        }
    }
    None
}

/// Where a sample stands, as its submitters see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleState {
    /// Received and quarantined; not (yet) detected by the network's databases.
    Received,
    /// The network's databases already detected it when it arrived.
    AlreadyDetected,
    /// The team published a signature for it.
    SignaturePublished,
}

/// The release that added a sample's detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// Database name.
    pub db: String,
    /// The database version that detects it.
    pub version: u32,
    /// The signature's name, if the team gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<String>,
    /// When the team recorded it (Unix seconds).
    pub at: i64,
}

/// `POST /api/v1/samples/<sha256>/resolve` (admin): the release that detects the sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// Database name.
    pub db: String,
    /// The database version that detects it.
    pub version: u32,
    /// The signature's name.
    #[serde(default)]
    pub detection: Option<String>,
}

/// The outcome of triage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanResult {
    /// When (Unix seconds).
    pub at: i64,
    /// `clamscan` or `clamd`.
    pub engine: String,
    /// `clean`, `found`, `limit_exceeded` or `error`.
    pub outcome: String,
    /// The signature name (`found`, `limit_exceeded`) or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The answer to a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionReceipt {
    /// The submitter's key to the status page; shown once, stored only as a hash.
    pub tracking_id: String,
    /// SHA-256 of the submitted bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The same bytes were submitted before (this submission was added to that record).
    pub duplicate: bool,
    /// Path of the status page (`/status/<tracking id>`).
    pub status_path: String,
}

/// A submitter's view of their submission: nothing about other submitters or samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionStatus {
    /// SHA-256 of the submitted bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// When this submission arrived (Unix seconds).
    pub received_at: i64,
    /// Where it stands.
    pub state: SampleState,
    /// Triage has run.
    pub scanned: bool,
    /// The detection the network's databases already had, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_as: Option<String>,
    /// The release that added the detection, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<Publication>,
}

/// One submission of a sample (the team's view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// When (Unix seconds).
    pub at: i64,
    /// The client's address.
    pub client: String,
    /// The submitter's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The detection name the submitter claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<String>,
    /// The submitter's note.
    #[serde(default)]
    pub note: String,
    /// Where to send the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A quarantined sample (the team's view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleRecord {
    /// SHA-256 of the sample.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// First submission (Unix seconds).
    pub first_seen: i64,
    /// Where it stands.
    pub state: SampleState,
    /// Triage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanResult>,
    /// The release that added the detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<Publication>,
    /// How many times it was submitted.
    pub submission_count: u32,
    /// The submissions (in `show`; empty in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub submissions: Vec<Submission>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        for ok in ["sample.exe", "invoice (2).pdf.exe", "проба.doc", "", "a..b"] {
            assert_eq!(check_file_name(ok), Ok(()), "{ok:?}");
        }
        for (bad, e) in [
            ("../etc/passwd", SampleInputError::NameWithPath),
            ("C:\\x.exe", SampleInputError::NameWithPath),
            ("..", SampleInputError::NameWithPath),
            ("a\nb", SampleInputError::NameWithControl),
            ("a\u{1b}[31m", SampleInputError::NameWithControl),
            ("a\u{85}", SampleInputError::NameWithControl),
        ] {
            assert_eq!(check_file_name(bad), Err(e), "{bad:?}");
        }
        assert_eq!(
            check_file_name(&"a".repeat(256)),
            Err(SampleInputError::NameTooLong)
        );
    }

    #[test]
    fn detection_names_notes_and_addresses() {
        assert!(check_detection_name("Win.Trojan.Agent-123-0").is_ok());
        assert!(check_detection_name("Eicar-Test-Signature").is_ok());
        for bad in ["", "a b", "<script>", "x\n", &"a".repeat(129)] {
            assert!(check_detection_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_note("line one\nline two\ttab").is_ok());
        assert!(check_note("bell\u{7}").is_err());
        assert!(check_note(&"n".repeat(4001)).is_err());
        assert!(check_email("who@example.org").is_ok());
        for bad in [
            "",
            "who",
            "who@",
            "@example.org",
            "who@localhost",
            "a@b@c.org",
            "who@example.org\r\nBcc: x@y.z",
            "who <w@example.org>",
            "w,x@example.org",
            "who@.org",
            "who@example..org",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tracking_ids() {
        let a = TrackingId::generate();
        let b = TrackingId::generate();
        assert_ne!(a, b);
        assert_eq!(TrackingId::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(format!("{a:?}"), "TrackingId(…)");
        assert_eq!(a.digest().len(), 64);
        for bad in [
            "",
            "0123456789abcdef0123456789ABCDEF",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "../../../../etc/passwd/aaaaaaaaa",
            "0123456789abcdef0123456789abcdeg",
        ] {
            assert_eq!(TrackingId::parse(bad), Err(SampleInputError::TrackingId));
        }
    }

    #[test]
    fn scan_replies() {
        assert_eq!(parse_scan_reply("stdin: OK\n"), Some(ScanReply::Clean));
        assert_eq!(
            parse_scan_reply("stdin: Eicar-Test-Signature FOUND\n"),
            Some(ScanReply::Found("Eicar-Test-Signature".into()))
        );
        assert_eq!(
            parse_scan_reply("stream: Win.Test.X-1 FOUND\0"),
            Some(ScanReply::Found("Win.Test.X-1".into()))
        );
        assert_eq!(
            parse_scan_reply("stdin: Heuristics.Limits.Exceeded.MaxFileSize FOUND"),
            Some(ScanReply::LimitExceeded(
                "Heuristics.Limits.Exceeded.MaxFileSize".into()
            ))
        );
        assert_eq!(
            parse_scan_reply("INSTREAM size limit exceeded. ERROR\0"),
            None,
            "no label: not a per-stream verdict"
        );
        assert_eq!(
            parse_scan_reply("stream: Can't allocate memory ERROR\0"),
            Some(ScanReply::Error("Can't allocate memory".into()))
        );
        assert_eq!(parse_scan_reply("stdin: <b>x</b> FOUND"), None);
        assert_eq!(parse_scan_reply(""), None);
    }
}
