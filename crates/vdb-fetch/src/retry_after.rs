//! `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.

use std::time::{Duration, SystemTime};

/// Longest header value read; anything longer is not a `Retry-After` value.
const MAX_LEN: usize = 64;

/// Parses a `Retry-After` value: `120` (seconds) or an HTTP-date (`Wed, 21 Oct 2026 07:28:00
/// GMT`, also the obsolete RFC 850 and asctime forms), the date taken relative to `now` (a date
/// in the past means no wait). `None` for anything else, including negative or fractional
/// numbers and values longer than 64 bytes.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use vdb_fetch::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
/// assert_eq!(parse_retry_after(b"120", now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after(b"Wed, 21 Oct 2015 08:28:00 GMT", now),
///     Some(Duration::from_secs(3600))
/// );
/// assert_eq!(parse_retry_after(b"soon", now), None);
/// ```
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    if value.len() > MAX_LEN {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds: as long as can be.
        return Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn both_forms_and_refusals() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let p = |s: &str| parse_retry_after(s.as_bytes(), now);
        assert_eq!(p("0"), Some(Duration::ZERO));
        assert_eq!(p(" 3600\t"), Some(Duration::from_secs(3600)));
        assert_eq!(
            p("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            p("Wed, 21 Oct 2015 07:28:10 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            p("Wednesday, 21-Oct-15 07:28:10 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(p("Wed Oct 21 07:28:10 2015"), Some(Duration::from_secs(10)));
        assert_eq!(
            p("Tue, 20 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "past"
        );
        for bad in [
            "",
            " ",
            "-1",
            "1.5",
            "+5",
            "1e3",
            "tomorrow",
            "Wed, 32 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert_eq!(parse_retry_after(&[b'1'; 65], now), None);
        assert_eq!(parse_retry_after(&[0xff, b'1'], now), None);
    }
}
