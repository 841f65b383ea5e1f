//! `Header::parse` on arbitrary bytes. When a header parses and passes `validate()`, encoding
//! it again must give bytes that parse back to the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdb_format::Header;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = Header::parse(data) else {
        return;
    };
    // Exercise the text helpers too: they must never panic.
    let _ = header.to_line();
    let _ = header.info_line();
    let _ = header.display_build_time();
    if header.validate().is_err() {
        return;
    }
    let bytes = header
        .to_bytes()
        .unwrap_or_else(|e| panic!("validate() passed but to_bytes() failed: {e}\n{header:?}"));
    let again = Header::parse(&bytes)
        .unwrap_or_else(|e| panic!("to_bytes() output does not parse: {e}\n{header:?}"));
    assert_eq!(
        again, header,
        "header does not round-trip through to_bytes()"
    );
});
