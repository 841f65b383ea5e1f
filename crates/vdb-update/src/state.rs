//! `freshclam.dat`: freshclam's cool-down state file in the database directory (spec §4.7).
//!
//! It is a native dump of `{u32 version; char uuid[37]; time_t retry_after;}` after a 13-byte
//! magic, as written by freshclam on x86-64 Linux; 90 bytes in all:
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 13 | ASCII `FreshClamData` (no NUL) |
//! | 13 | 4 | u32 version = 1, little-endian |
//! | 17 | 37 | UUID text (36 characters) + NUL, sent in the User-Agent |
//! | 54 | 7 | padding (written as zeros; ignored when read) |
//! | 61 | 8 | i64 `retry_after`, little-endian Unix time, 0 = none |
//! | 69 | 21 | last `cf-ray` id (up to 20 characters) + NUL padding |
//!
//! A file with `retry_after > now` means: make no request, report success (exit 0).

use std::fmt;

/// Size of `freshclam.dat` in bytes.
pub const DAT_LEN: usize = 90;

/// The magic at the start of `freshclam.dat`.
pub const DAT_MAGIC: &[u8; 13] = b"FreshClamData";

/// The only layout version freshclam writes.
pub const DAT_VERSION: u32 = 1;

const VERSION_AT: usize = 13;
const UUID_AT: usize = 17;
const UUID_FIELD: usize = 37;
const UUID_LEN: usize = 36;
const PAD_AT: usize = 54;
const RETRY_AT: usize = 61;
const CF_RAY_AT: usize = 69;
const CF_RAY_FIELD: usize = 21;
/// Longest `cf-ray` id stored (the field keeps room for a NUL).
pub const CF_RAY_MAX: usize = CF_RAY_FIELD - 1;

/// The contents of `freshclam.dat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreshclamDat {
    /// The installation's UUID (36 characters, `8-4-4-4-12` hex), sent in the User-Agent.
    pub uuid: String,
    /// Unix time until which no request may be made (after a 429 or 403); 0 = none.
    pub retry_after: i64,
    /// The last `cf-ray` response header seen (at most [`CF_RAY_MAX`] bytes; may be empty).
    pub cf_ray: String,
}

/// Why a `freshclam.dat` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The file is not exactly [`DAT_LEN`] bytes.
    #[error("freshclam.dat is {len} bytes, expected {DAT_LEN}")]
    Size {
        /// The actual length.
        len: usize,
    },
    /// The file does not start with [`DAT_MAGIC`].
    #[error("freshclam.dat does not start with \"FreshClamData\"")]
    Magic,
    /// The layout version is not [`DAT_VERSION`].
    #[error("freshclam.dat has layout version {version}, expected {DAT_VERSION}")]
    Version {
        /// The version found.
        version: u32,
    },
    /// The UUID field is not 36 characters of `8-4-4-4-12` hex followed by a NUL.
    #[error("freshclam.dat UUID is malformed: {uuid:?}")]
    Uuid {
        /// The field's text up to the first NUL, lossily decoded.
        uuid: String,
    },
    /// The `cf-ray` field is not UTF-8 text terminated by a NUL.
    #[error("freshclam.dat cf-ray field is malformed")]
    CfRay,
}

impl FreshclamDat {
    /// A state with this UUID, no cool-down and no `cf-ray`, after checking the UUID.
    pub fn new(uuid: &str) -> Result<Self, StateError> {
        if !is_uuid(uuid.as_bytes()) {
            return Err(StateError::Uuid {
                uuid: uuid.to_owned(),
            });
        }
        Ok(Self {
            uuid: uuid.to_owned(),
            retry_after: 0,
            cf_ray: String::new(),
        })
    }

    /// Reads the 90-byte file (spec §4.7). Refuses a wrong size, magic or version, a
    /// malformed UUID and a non-UTF-8 or unterminated `cf-ray`; padding bytes are ignored.
    pub fn parse(bytes: &[u8]) -> Result<Self, StateError> {
        let bytes: &[u8; DAT_LEN] = bytes
            .try_into()
            .map_err(|_| StateError::Size { len: bytes.len() })?;
        if &bytes[..VERSION_AT] != DAT_MAGIC {
            return Err(StateError::Magic);
        }
        let version = u32::from_le_bytes(field(bytes, VERSION_AT));
        if version != DAT_VERSION {
            return Err(StateError::Version { version });
        }
        let uuid_field = &bytes[UUID_AT..UUID_AT + UUID_FIELD];
        let uuid_text = until_nul(uuid_field);
        if uuid_text.len() != UUID_LEN || !is_uuid(uuid_text) {
            return Err(StateError::Uuid {
                uuid: String::from_utf8_lossy(uuid_text).into_owned(),
            });
        }
        let retry_after = i64::from_le_bytes(field(bytes, RETRY_AT));
        let cf_field = &bytes[CF_RAY_AT..CF_RAY_AT + CF_RAY_FIELD];
        let cf_text = until_nul(cf_field);
        if cf_text.len() == CF_RAY_FIELD {
            return Err(StateError::CfRay);
        }
        let cf_ray = std::str::from_utf8(cf_text)
            .map_err(|_| StateError::CfRay)?
            .to_owned();
        Ok(Self {
            // Checked above: 36 ASCII hex digits and hyphens.
            uuid: String::from_utf8_lossy(uuid_text).into_owned(),
            retry_after,
            cf_ray,
        })
    }

    /// The 90 bytes freshclam writes. The UUID is cut to 36 bytes and the `cf-ray` to
    /// [`CF_RAY_MAX`] bytes (at a character boundary); both stop at an embedded NUL.
    /// Padding is zero.
    pub fn to_bytes(&self) -> [u8; DAT_LEN] {
        let mut out = [0u8; DAT_LEN];
        out[..VERSION_AT].copy_from_slice(DAT_MAGIC);
        out[VERSION_AT..UUID_AT].copy_from_slice(&DAT_VERSION.to_le_bytes());
        let uuid = truncate(&self.uuid, UUID_LEN);
        out[UUID_AT..UUID_AT + uuid.len()].copy_from_slice(uuid.as_bytes());
        out[RETRY_AT..CF_RAY_AT].copy_from_slice(&self.retry_after.to_le_bytes());
        let cf_ray = truncate(&self.cf_ray, CF_RAY_MAX);
        out[CF_RAY_AT..CF_RAY_AT + cf_ray.len()].copy_from_slice(cf_ray.as_bytes());
        debug_assert!(out[PAD_AT..RETRY_AT].iter().all(|&b| b == 0));
        out
    }

    /// True while a cool-down is running: `retry_after` is later than `now` (Unix seconds).
    pub fn on_cooldown(&self, now: i64) -> bool {
        self.retry_after > now
    }
}

impl fmt::Display for FreshclamDat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uuid {} retry_after {}", self.uuid, self.retry_after)?;
        if !self.cf_ray.is_empty() {
            write!(f, " cf-ray {}", self.cf_ray)?;
        }
        Ok(())
    }
}

fn field<const N: usize>(bytes: &[u8; DAT_LEN], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    bytes
        .iter()
        .position(|&b| b == 0)
        .map_or(bytes, |end| &bytes[..end])
}

/// The longest prefix of `s` that has at most `max` bytes, no NUL, and ends on a character
/// boundary.
fn truncate(s: &str, max: usize) -> &str {
    let s = s.split('\0').next().unwrap_or("");
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `8-4-4-4-12` hex digits (either case).
fn is_uuid(text: &[u8]) -> bool {
    text.len() == UUID_LEN
        && text.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "2c00be7f-a4dc-42ba-9c4e-2fd22e5d6ffc";

    /// freshclam.dat built byte by byte from the layout table of spec §4.7.
    fn golden() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"FreshClamData"); // 0, 13
        b.extend_from_slice(&[1, 0, 0, 0]); // 13, 4: version 1 LE
        b.extend_from_slice(UUID.as_bytes()); // 17, 36
        b.push(0); // 53: UUID NUL
        b.extend_from_slice(&[0; 7]); // 54, 7: padding
        // 61, 8: retry_after = 1_700_000_000 = 0x6553_F100, little-endian
        b.extend_from_slice(&[0x00, 0xF1, 0x53, 0x65, 0, 0, 0, 0]);
        b.extend_from_slice(b"8f2a1b3c4d5e6f70-AMS"); // 69, 20
        b.push(0); // 89: cf-ray NUL
        assert_eq!(b.len(), 90);
        b
    }

    fn golden_value() -> FreshclamDat {
        FreshclamDat {
            uuid: UUID.into(),
            retry_after: 1_700_000_000,
            cf_ray: "8f2a1b3c4d5e6f70-AMS".into(),
        }
    }

    #[test]
    fn golden_file_parses_and_encodes() {
        assert_eq!(FreshclamDat::parse(&golden()).unwrap(), golden_value());
        assert_eq!(golden_value().to_bytes().as_slice(), golden().as_slice());
    }

    #[test]
    fn round_trip() {
        for dat in [
            golden_value(),
            FreshclamDat::new(UUID).unwrap(),
            FreshclamDat {
                uuid: UUID.to_uppercase(),
                retry_after: -1,
                cf_ray: "x".into(),
            },
            FreshclamDat {
                uuid: UUID.into(),
                retry_after: i64::MAX,
                cf_ray: String::new(),
            },
        ] {
            assert_eq!(FreshclamDat::parse(&dat.to_bytes()).unwrap(), dat);
        }
    }

    #[test]
    fn fresh_state_has_no_cooldown_and_zero_fields() {
        let dat = FreshclamDat::new(UUID).unwrap();
        let bytes = dat.to_bytes();
        assert_eq!(&bytes[61..69], &[0; 8]);
        assert_eq!(&bytes[69..90], &[0; 21]);
        assert!(!dat.on_cooldown(0));
    }

    #[test]
    fn cooldown_is_strictly_before_retry_after() {
        let dat = golden_value();
        assert!(dat.on_cooldown(1_699_999_999));
        assert!(!dat.on_cooldown(1_700_000_000));
        assert!(!dat.on_cooldown(1_700_000_001));
    }

    #[test]
    fn wrong_size_is_refused() {
        let g = golden();
        assert_eq!(
            FreshclamDat::parse(&g[..89]),
            Err(StateError::Size { len: 89 })
        );
        let mut longer = g.clone();
        longer.push(0);
        assert_eq!(
            FreshclamDat::parse(&longer),
            Err(StateError::Size { len: 91 })
        );
        assert_eq!(FreshclamDat::parse(&[]), Err(StateError::Size { len: 0 }));
    }

    #[test]
    fn wrong_magic_or_version_is_refused() {
        let mut b = golden();
        b[0] = b'f';
        assert_eq!(FreshclamDat::parse(&b), Err(StateError::Magic));
        let mut b = golden();
        b[13] = 2;
        assert_eq!(
            FreshclamDat::parse(&b),
            Err(StateError::Version { version: 2 })
        );
        let mut b = golden();
        b[16] = 1; // big-endian 1 reads as 0x0100_0001
        assert_eq!(
            FreshclamDat::parse(&b),
            Err(StateError::Version {
                version: 0x0100_0001
            })
        );
    }

    #[test]
    fn malformed_uuid_is_refused() {
        // Not hex.
        let mut b = golden();
        b[17] = b'g';
        assert!(matches!(
            FreshclamDat::parse(&b),
            Err(StateError::Uuid { .. })
        ));
        // Hyphen in the wrong place.
        let mut b = golden();
        b.swap(17 + 8, 17 + 9);
        assert!(matches!(
            FreshclamDat::parse(&b),
            Err(StateError::Uuid { .. })
        ));
        // Too short (NUL inside).
        let mut b = golden();
        b[17 + 35] = 0;
        assert!(matches!(
            FreshclamDat::parse(&b),
            Err(StateError::Uuid { .. })
        ));
        // Not NUL-terminated.
        let mut b = golden();
        b[53] = b'a';
        assert!(matches!(
            FreshclamDat::parse(&b),
            Err(StateError::Uuid { .. })
        ));
        // Not UTF-8.
        let mut b = golden();
        b[20] = 0xff;
        assert_eq!(
            FreshclamDat::parse(&b),
            Err(StateError::Uuid {
                uuid: "2c0\u{fffd}be7f-a4dc-42ba-9c4e-2fd22e5d6ffc".into()
            })
        );
        assert!(FreshclamDat::new("not-a-uuid").is_err());
    }

    #[test]
    fn malformed_cf_ray_is_refused() {
        let mut b = golden();
        b[70] = 0xc3; // a lone UTF-8 lead byte
        assert_eq!(FreshclamDat::parse(&b), Err(StateError::CfRay));
        let mut b = golden();
        b[89] = b'X'; // 21 characters, no NUL
        assert_eq!(FreshclamDat::parse(&b), Err(StateError::CfRay));
    }

    #[test]
    fn padding_is_ignored_when_read() {
        let mut b = golden();
        b[54..61].copy_from_slice(&[0xAA; 7]);
        assert_eq!(FreshclamDat::parse(&b).unwrap(), golden_value());
    }

    #[test]
    fn long_fields_are_cut_when_written() {
        let dat = FreshclamDat {
            uuid: format!("{UUID}-extra"),
            retry_after: 5,
            cf_ray: "é".repeat(15), // 30 bytes; cut to 20 = 10 characters
        };
        let back = FreshclamDat::parse(&dat.to_bytes()).unwrap();
        assert_eq!(back.uuid, UUID);
        assert_eq!(back.cf_ray, "é".repeat(10));
        assert_eq!(back.retry_after, 5);
    }
}
