//! The 512-byte container header and the `.info` header line (spec §1.1).

use crate::error::HeaderError;
use crate::sigenc;

/// Length of the container header.
pub const HEADER_LEN: usize = 512;
const MAGIC: &str = "ClamAV-VDB";
/// Longest builder name sigtool accepts (`SIGNDUSER`).
pub(crate) const MAX_BUILDER_LEN: usize = 32;

/// A parsed ClamAV database header.
///
/// The same structure describes the 512-byte header of a CVD/CLD/CUD and the first line of
/// its `<db>.info` manifest (where MD5 and signature are `X`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Human-readable build time as written (`22 Jun 2021 21-34 -0400`). Not covered by any
    /// signature.
    pub build_time: String,
    /// Database version.
    pub version: u32,
    /// Signature count.
    pub signatures: u32,
    /// Minimum engine functionality level.
    pub flevel: u32,
    /// Lowercase hex MD5 of the body, or `None` for `X`.
    pub md5: Option<String>,
    /// Legacy RSA signature of the MD5 (ClamAV base-64), or `None` for `X`.
    pub dsig: Option<String>,
    /// Builder name. Not covered by any signature.
    pub builder: String,
    /// Build time in Unix seconds (`None` when the optional field is absent).
    pub build_secs: Option<u64>,
}

impl Header {
    /// The names of the nine `:`-separated fields, in order, as errors name them.
    pub const FIELD_NAMES: [&'static str; 9] = [
        "magic",
        "build time",
        "version",
        "signature count",
        "functionality level",
        "MD5",
        "signature",
        "builder",
        "build seconds",
    ];

    /// Parses a 512-byte container header. Every byte must be printable ASCII (as freshclam
    /// requires); trailing space padding is removed.
    pub fn parse(bytes: &[u8]) -> Result<Self, HeaderError> {
        if bytes.len() < HEADER_LEN {
            return Err(HeaderError::Truncated(bytes.len()));
        }
        let bytes = &bytes[..HEADER_LEN];
        if let Some(offset) = bytes.iter().position(|b| !(0x20..0x7f).contains(b)) {
            return Err(HeaderError::NonPrintable {
                offset,
                byte: bytes[offset],
            });
        }
        // All bytes are ASCII, so this cannot fail.
        let text = std::str::from_utf8(bytes).map_err(|_| HeaderError::NonPrintable {
            offset: 0,
            byte: bytes[0],
        })?;
        Self::parse_line(text.trim_end_matches(' '))
    }

    /// Parses a header line (the first line of a `.info`, or the text of a container header
    /// without its padding).
    pub fn parse_line(line: &str) -> Result<Self, HeaderError> {
        if let Some((offset, byte)) = line
            .bytes()
            .enumerate()
            .find(|(_, b)| !(0x20..0x7f).contains(b))
        {
            return Err(HeaderError::NonPrintable { offset, byte });
        }
        let fields: Vec<&str> = line.split(':').collect();
        if fields[0] != MAGIC {
            return Err(HeaderError::Magic(fields[0].chars().take(32).collect()));
        }
        if fields.len() != 9 && fields.len() != 8 {
            return Err(HeaderError::FieldCount(fields.len()));
        }
        for (i, f) in fields.iter().enumerate() {
            if f.is_empty() {
                return Err(HeaderError::EmptyField(i, Self::FIELD_NAMES[i]));
            }
        }
        let md5 = match fields[5] {
            "X" => None,
            m if m.len() == 32
                && m.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Some(m.to_owned())
            }
            m => return Err(HeaderError::Md5(m.to_owned())),
        };
        let dsig = match fields[6] {
            "X" => None,
            d if sigenc::is_alphabet(d) => Some(d.to_owned()),
            d => return Err(HeaderError::Dsig(d.chars().take(64).collect())),
        };
        let builder = fields[7].to_owned();
        if builder.len() > MAX_BUILDER_LEN {
            return Err(HeaderError::Text(
                7,
                "builder",
                "longer than 32 characters".into(),
            ));
        }
        Ok(Self {
            build_time: fields[1].to_owned(),
            version: number(&fields, 2)?,
            signatures: number(&fields, 3)?,
            flevel: number(&fields, 4)?,
            md5,
            dsig,
            builder,
            build_secs: fields.get(8).map(|_| number(&fields, 8)).transpose()?,
        })
    }

    /// The header as one line of text (no padding, no newline).
    pub fn to_line(&self) -> String {
        let mut line = format!(
            "{MAGIC}:{}:{}:{}:{}:{}:{}:{}",
            self.build_time,
            self.version,
            self.signatures,
            self.flevel,
            self.md5.as_deref().unwrap_or("X"),
            self.dsig.as_deref().unwrap_or("X"),
            self.builder
        );
        if let Some(secs) = self.build_secs {
            line.push_str(&format!(":{secs}"));
        }
        line
    }

    /// The header line as it appears in `.info` (MD5 and signature replaced by `X`).
    pub fn info_line(&self) -> String {
        Self {
            md5: None,
            dsig: None,
            ..self.clone()
        }
        .to_line()
    }

    /// Encodes the 512-byte header, padded with spaces. Checks the field rules first, so that
    /// nothing ClamAV would misparse is ever written.
    pub fn to_bytes(&self) -> Result<[u8; HEADER_LEN], HeaderError> {
        self.validate()?;
        let line = self.to_line();
        if line.len() > HEADER_LEN {
            return Err(HeaderError::TooLong(line.len()));
        }
        let mut out = [b' '; HEADER_LEN];
        out[..line.len()].copy_from_slice(line.as_bytes());
        Ok(out)
    }

    /// Checks the field rules of spec §1.1 on the text fields.
    pub fn validate(&self) -> Result<(), HeaderError> {
        Self::parse_line(&self.to_line()).map(|_| ())?;
        for (i, name, value) in [
            (1, "build time", &self.build_time),
            (7, "builder", &self.builder),
        ] {
            if value.contains(':') || value.trim() != value {
                return Err(HeaderError::Text(i, name, format!("{value:?}")));
            }
        }
        Ok(())
    }

    /// The build time the way `sigtool --info` shows it: the first `-` becomes `:`.
    pub fn display_build_time(&self) -> String {
        self.build_time.replacen('-', ":", 1)
    }
}

fn number<T: std::str::FromStr>(fields: &[&str], index: usize) -> Result<T, HeaderError> {
    let value = fields[index];
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError::Number {
            index,
            name: Header::FIELD_NAMES[index],
            value: value.to_owned(),
        });
    }
    value.parse().map_err(|_| HeaderError::Number {
        index,
        name: Header::FIELD_NAMES[index],
        value: value.to_owned(),
    })
}

/// Formats Unix seconds the way sigtool writes the human build time
/// (`%d %b %Y %H-%M %z`, C locale), in UTC.
pub fn format_build_time(unix_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix_secs / 86_400) as i64;
    let secs_of_day = unix_secs % 86_400;
    // Civil-from-days (proleptic Gregorian), after H. Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{:02} {} {} {:02}-{:02} +0000",
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs_of_day / 3600,
        (secs_of_day % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST6: &str = "ClamAV-VDB:22 Jun 2021 21-34 -0400:6:14:81:3e249e00076b0b15bb54ced37be880c7:Dou6ICRT5HwLTtLNYToHsMoLnt8tdcQOEECp/INsusRs9Rz4JGWU27W76btwjszaKIHnfgfyFjHzlsYJxTFZoeYFLyaC1nd+SNSWaMyKeNvzcTrtxKbc5WKs04ORp923pFkqymRhFNrRupa8tVyrp9XN9WbdxVJKZNHzB6npPPj:micasnyd:1624412045";

    #[test]
    fn round_trip() {
        let h = Header::parse_line(TEST6).unwrap();
        assert_eq!(h.version, 6);
        assert_eq!(h.signatures, 14);
        assert_eq!(h.flevel, 81);
        assert_eq!(h.builder, "micasnyd");
        assert_eq!(h.build_secs, Some(1_624_412_045));
        assert_eq!(h.display_build_time(), "22 Jun 2021 21:34 -0400");
        let bytes = h.to_bytes().unwrap();
        assert_eq!(&bytes[..TEST6.len()], TEST6.as_bytes());
        assert!(bytes[TEST6.len()..].iter().all(|&b| b == b' '));
        assert_eq!(Header::parse(&bytes).unwrap(), h);
        assert_eq!(
            h.info_line(),
            "ClamAV-VDB:22 Jun 2021 21-34 -0400:6:14:81:X:X:micasnyd:1624412045"
        );
    }

    #[test]
    fn rejects_hostile_headers() {
        let mut nul = [b' '; 512];
        nul[..TEST6.len()].copy_from_slice(TEST6.as_bytes());
        nul[511] = 0;
        assert!(matches!(
            Header::parse(&nul),
            Err(HeaderError::NonPrintable {
                offset: 511,
                byte: 0
            })
        ));
        assert_eq!(Header::parse(&nul[..100]), Err(HeaderError::Truncated(100)));
        assert!(matches!(
            Header::parse_line("ClamAV-VDX:a:1:1:1:X:X:b:1"),
            Err(HeaderError::Magic(_))
        ));
        assert!(matches!(
            Header::parse_line("ClamAV-VDB:a:1::1:X:X:b:1"),
            Err(HeaderError::EmptyField(3, _))
        ));
        assert!(matches!(
            Header::parse_line("ClamAV-VDB:a:-1:1:1:X:X:b:1"),
            Err(HeaderError::Number { index: 2, .. })
        ));
        assert!(matches!(
            Header::parse_line("ClamAV-VDB:a:1:1:1:ABC:X:b:1"),
            Err(HeaderError::Md5(_))
        ));
        assert!(matches!(
            Header::parse_line("ClamAV-VDB:a:99999999999:1:1:X:X:b:1"),
            Err(HeaderError::Number { index: 2, .. })
        ));
    }

    #[test]
    fn build_time_format() {
        assert_eq!(format_build_time(1_624_412_045), "23 Jun 2021 01-34 +0000");
        assert_eq!(format_build_time(0), "01 Jan 1970 00-00 +0000");
    }
}
