//! `Retry-After` values on arbitrary bytes: never a panic; a delay parsed from seconds prints
//! back to the same delay, and one parsed from a date ends no earlier than the date.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use vdb_fetch::parse_retry_after;

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let Some(d) = parse_retry_after(data, now) else {
        return;
    };
    let text = std::str::from_utf8(data).expect("only text parses");
    if text.trim().bytes().all(|b| b.is_ascii_digit()) {
        let again = parse_retry_after(d.as_secs().to_string().as_bytes(), now);
        assert_eq!(again, Some(d));
    } else {
        let when = httpdate::parse_http_date(text.trim()).expect("a date parsed");
        assert!(now + d >= when);
    }
});
