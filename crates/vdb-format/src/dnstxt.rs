//! ClamAV's DNS TXT version records (`../shared/spec/clamav.md` §4.2).
//!
//! `current.cvd.<zone>` holds one `:`-separated string: ClamAV release, main, daily, record
//! time, version-warning flag, flevel, safebrowsing, bytecode. `<db>.cvd.<zone>` holds
//! `version:recordtime` for any other database. freshclam discards either when the record time
//! is more than 12 hours old.

use std::fmt;

/// freshclam discards a record older than this (seconds).
pub const MAX_RECORD_AGE: i64 = 12 * 3600;

/// The `current.cvd` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentRecord {
    /// Newest ClamAV release (`1.4.3`).
    pub clamav_version: String,
    /// `main` version.
    pub main: u32,
    /// `daily` version.
    pub daily: u32,
    /// When the record was made (Unix seconds).
    pub time: i64,
    /// Whether clients older than `clamav_version` should warn ("OUTDATED").
    pub version_warning: bool,
    /// Recommended functionality level.
    pub flevel: u32,
    /// `safebrowsing` version (0 when not distributed).
    pub safebrowsing: u32,
    /// `bytecode` version.
    pub bytecode: u32,
}

/// Why a TXT string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broken database version in TXT record {0:?}")]
pub struct TxtError(pub String);

/// The field of `current.cvd` that carries `db`'s version, as freshclam numbers them.
pub fn current_field(db: &str) -> Option<usize> {
    match db {
        "main" => Some(1),
        "daily" => Some(2),
        "safebrowsing" => Some(6),
        "bytecode" => Some(7),
        _ => None,
    }
}

impl CurrentRecord {
    /// Parses the first character-string of the TXT record.
    pub fn parse(text: &str) -> Result<Self, TxtError> {
        let err = || TxtError(text.to_owned());
        let f: Vec<&str> = text.trim().split(':').collect();
        if f.len() < 8 {
            return Err(err());
        }
        let num = |i: usize| f[i].trim().parse::<u32>().map_err(|_| err());
        Ok(Self {
            clamav_version: f[0].to_owned(),
            main: num(1)?,
            daily: num(2)?,
            time: f[3].trim().parse().map_err(|_| err())?,
            version_warning: f[4].trim() != "0",
            flevel: num(5)?,
            safebrowsing: num(6)?,
            bytecode: num(7)?,
        })
    }

    /// The version this record gives for `db`, if it has a field for it.
    pub fn version_of(&self, db: &str) -> Option<u32> {
        Some(match current_field(db)? {
            1 => self.main,
            2 => self.daily,
            6 => self.safebrowsing,
            _ => self.bytecode,
        })
    }

    /// Whether freshclam would still use this record at `now`.
    pub fn is_fresh(&self, now: i64) -> bool {
        now.saturating_sub(self.time) <= MAX_RECORD_AGE
    }
}

impl fmt::Display for CurrentRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}:{}:{}:{}:{}",
            self.clamav_version,
            self.main,
            self.daily,
            self.time,
            u8::from(self.version_warning),
            self.flevel,
            self.safebrowsing,
            self.bytecode
        )
    }
}

/// A `<db>.cvd.<zone>` record: `version:recordtime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbRecord {
    /// The database version.
    pub version: u32,
    /// When the record was made (Unix seconds).
    pub time: i64,
}

impl DbRecord {
    /// Parses `version:recordtime[:…]`.
    pub fn parse(text: &str) -> Result<Self, TxtError> {
        let err = || TxtError(text.to_owned());
        let mut f = text.trim().split(':');
        let version = f.next().and_then(|v| v.parse().ok()).ok_or_else(err)?;
        let time = f.next().and_then(|v| v.parse().ok()).ok_or_else(err)?;
        Ok(Self { version, time })
    }

    /// Whether freshclam would still use this record at `now`.
    pub fn is_fresh(&self, now: i64) -> bool {
        now.saturating_sub(self.time) <= MAX_RECORD_AGE
    }
}

impl fmt::Display for DbRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.version, self.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_round_trip() {
        let s = "1.4.3:62:27543:1763900000:1:90:49192:339";
        let r = CurrentRecord::parse(s).unwrap();
        assert_eq!(r.daily, 27543);
        assert_eq!(r.version_of("main"), Some(62));
        assert_eq!(r.version_of("bytecode"), Some(339));
        assert_eq!(r.version_of("test"), None);
        assert_eq!(r.to_string(), s);
        assert!(r.is_fresh(1763900000 + MAX_RECORD_AGE));
        assert!(!r.is_fresh(1763900000 + MAX_RECORD_AGE + 1));
        for bad in [
            "",
            "1.4.3:62",
            "1.4.3:x:1:1:1:1:1:1",
            "1.4.3:62:-1:1:1:1:1:1",
        ] {
            assert!(CurrentRecord::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn db_record() {
        let r = DbRecord::parse("6:1700000000").unwrap();
        assert_eq!(
            r,
            DbRecord {
                version: 6,
                time: 1700000000
            }
        );
        assert_eq!(r.to_string(), "6:1700000000");
        assert!(DbRecord::parse("x:1").is_err());
        assert!(DbRecord::parse("6").is_err());
        // A hostile record time cannot overflow the age computation (found by fuzzing).
        let hostile = DbRecord::parse("6:-9223372036854775808").unwrap();
        assert!(!hostile.is_fresh(1_700_000_000));
        assert!(
            DbRecord::parse("6:9223372036854775807")
                .unwrap()
                .is_fresh(i64::MIN)
        );
    }
}
