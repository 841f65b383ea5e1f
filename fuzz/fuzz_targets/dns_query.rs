//! The directory's DNS fast-path query parser and reply patching on arbitrary bytes: never a
//! panic; a query it accepts lies within the input, and the reply made for it keeps the ID
//! and the question exactly as asked.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The module is std-only on purpose, so that it is fuzzed without the directory's network
// dependencies.
#[path = "../../crates/vdb-directory/src/wire.rs"]
#[allow(dead_code)]
mod wire;

fuzz_target!(|data: &[u8]| {
    let Some(q) = wire::parse(data) else {
        return;
    };
    let end = q.question_end();
    assert!(end <= data.len());
    let mut buf = [0u8; wire::MAX_NAME];
    assert_eq!(wire::lower_name(data, &q, &mut buf).len(), q.name_len);
    // A reply prepared for the same question in lowercase (ID 0, QR and AA set).
    let mut out = vec![0, 0, 0x84, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    out.extend_from_slice(&data[wire::HEADER..end]);
    out[wire::HEADER..].make_ascii_lowercase();
    assert!(wire::finish(&mut out, data, &q, usize::MAX));
    assert_eq!(&out[..2], &data[..2]);
    assert_eq!(&out[wire::HEADER..end], &data[wire::HEADER..end]);
    assert_eq!(out.len(), end + if q.edns.is_some() { wire::OPT_LEN } else { 0 });
});
