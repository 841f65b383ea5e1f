//! `Info::parse` on arbitrary bytes. A manifest that parses, re-rendered with
//! `Info::unsigned_text`, must parse again to the same header (MD5 and signature become `X`)
//! and the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdb_format::{Header, Info};

fuzz_target!(|data: &[u8]| {
    let Ok(info) = Info::parse(data, "fuzz.info") else {
        return;
    };
    let _ = info.entries.first().map(|e| info.entry(&e.name));
    let text = Info::unsigned_text(&info.header, &info.entries);
    let again = Info::parse(text.as_bytes(), "fuzz.info").unwrap_or_else(|e| {
        panic!("re-rendered manifest does not parse: {e}\n--- text ---\n{text}")
    });
    assert_eq!(again.entries, info.entries, "entries do not round-trip");
    let expected_header = Header {
        md5: None,
        dsig: None,
        ..info.header.clone()
    };
    assert_eq!(again.header, expected_header, "header does not round-trip");
    assert_eq!(again.dsig, None);
});
