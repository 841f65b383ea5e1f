//! ClamAV 1.5 `.sign` files on arbitrary bytes: the parser never panics, bounds what it keeps,
//! and a file it accepts has 1 to MAX_LINES lines, each with a consistent feature-level range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdb_format::clamsign::{MAX_LINES, SignFile};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = SignFile::parse(data) {
        assert!(!f.lines.is_empty() && f.lines.len() <= MAX_LINES);
        for l in &f.lines {
            assert!(l.max_flevel.is_none_or(|m| m >= l.min_flevel));
            assert!(!l.der.is_empty() && l.der.len() < data.len());
            let _ = f.first_for(l.min_flevel);
        }
    }
});
