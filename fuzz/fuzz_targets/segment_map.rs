//! `SegmentMap::from_json` on arbitrary bytes: a map that parses is valid (contiguous,
//! bounded) and round-trips through `to_json`; `segment_map` on arbitrary bytes as a
//! container never panics and returns a valid map or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdb_format::segment::{SegmentMap, segment_map};

fuzz_target!(|data: &[u8]| {
    if let Ok(map) = SegmentMap::from_json(data) {
        map.validate().expect("a parsed map validates");
        let again = SegmentMap::from_json(&map.to_json()).expect("a map round-trips");
        assert_eq!(again, map);
        assert!(map.framing() <= map.size);
    }
    if let Ok(map) = segment_map(data, 1 << 24) {
        map.validate().expect("a computed map validates");
        assert_eq!(map.size, data.len() as u64);
    }
});
