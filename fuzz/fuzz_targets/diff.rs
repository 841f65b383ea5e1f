//! Round trip of the cdiff generator: for two versions of `f.ndb`, a script produced by
//! `cdiff::diff`, rendered as text, parsed and applied to the old version must give the new
//! version exactly.
//!
//! Input: one control byte, then the old and the new file as the two halves of the rest.
//! Control bit 0 (bit 1): an empty old (new) half means the file does not exist at all in the
//! old (new) version, so creation and deletion are covered too.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use vdb_format::cdiff::{self, Script};

const NAME: &str = "f.ndb";

fn version(bytes: &[u8], absent_if_empty: bool) -> BTreeMap<String, Vec<u8>> {
    let mut store = BTreeMap::new();
    if !(bytes.is_empty() && absent_if_empty) {
        store.insert(NAME.to_owned(), bytes.to_vec());
    }
    store
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let (old_bytes, new_bytes) = rest.split_at(rest.len() / 2);
    let old = version(old_bytes, control & 1 != 0);
    let new = version(new_bytes, control & 2 != 0);

    let Ok(script) = cdiff::diff(&old, &new) else {
        return;
    };
    let text = script.to_text();
    let parsed = Script::parse(text.as_bytes())
        .unwrap_or_else(|e| panic!("generated script does not parse: {e}\n--- script ---\n{text}"));
    let (old_text, new_text) = (
        String::from_utf8_lossy(old_bytes),
        String::from_utf8_lossy(new_bytes),
    );
    let mut patched = old.clone();
    if let Err(e) = cdiff::apply(&parsed, &mut patched) {
        panic!(
            "generated script does not apply: {e}\nold: {old_text:?}\nnew: {new_text:?}\n--- script ---\n{text}"
        );
    }
    assert_eq!(
        patched, new,
        "applying the generated script does not give the new version\nold: {old_text:?}\nnew: {new_text:?}\n--- script ---\n{text}"
    );
});
