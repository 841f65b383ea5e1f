//! ClamAV's TXT version records on arbitrary text: whatever parses must print back to a string
//! that parses to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdb_format::dnstxt::{CurrentRecord, DbRecord};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = CurrentRecord::parse(text)
        && !r.clamav_version.contains(':')
    {
        let again = CurrentRecord::parse(&r.to_string()).expect("re-rendered record parses");
        assert_eq!(again.daily, r.daily);
        assert_eq!(again.time, r.time);
        let _ = r.version_of("daily");
        let _ = r.is_fresh(i64::MAX);
        let _ = r.is_fresh(i64::MIN);
    }
    if let Ok(r) = DbRecord::parse(text) {
        assert_eq!(DbRecord::parse(&r.to_string()), Ok(r));
        let _ = r.is_fresh(i64::MIN);
    }
});
