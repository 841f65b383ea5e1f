//! vdb-proto's sample-intake input checks on arbitrary bytes: the submitted file name, detection
//! name, note and e-mail checks, tracking ids, and the reading of a scanner's answer. Nothing may
//! panic; whatever is accepted keeps the promises the intake relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdb_proto::sample::{
    ScanReply, TrackingId, check_detection_name, check_email, check_file_name, check_note,
    parse_scan_reply,
};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if check_file_name(s).is_ok() {
        assert!(!s.contains(['/', '\\']) && !s.chars().any(char::is_control));
    }
    if check_detection_name(s).is_ok() {
        assert!(s.bytes().all(|b| b.is_ascii_graphic()));
    }
    if check_email(s).is_ok() {
        assert!(!s.contains(['\r', '\n', '<', '>', ',']));
    }
    let _ = check_note(s);
    if let Ok(id) = TrackingId::parse(s) {
        assert_eq!(id.as_str(), s);
        assert_eq!(TrackingId::parse(id.as_str()), Ok(id));
    }
    match parse_scan_reply(s) {
        Some(ScanReply::Found(n) | ScanReply::LimitExceeded(n)) => {
            assert!(check_detection_name(&n).is_ok());
        }
        Some(ScanReply::Error(m)) => assert!(!m.chars().any(char::is_control)),
        _ => {}
    }
});
