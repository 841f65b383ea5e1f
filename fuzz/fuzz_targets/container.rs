//! `container::verify` on arbitrary bytes. The first byte picks the container kind, the rest is
//! the file. Limits are small so that gzip bombs cost little per execution.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use vdb_format::{KeySet, Kind, Limits, container};

static KEYS: LazyLock<KeySet> = LazyLock::new(KeySet::official);

const LIMITS: Limits = Limits {
    max_member_size: 4 << 20,
    max_body_size: 8 << 20,
    max_members: 64,
    max_info_size: 1 << 20,
    max_script_size: 1 << 20,
};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let kind = match selector % 3 {
        0 => Kind::Cvd,
        1 => Kind::Cld,
        _ => Kind::Cud,
    };
    let _ = container::verify(file, kind, &KEYS, &LIMITS);
});
