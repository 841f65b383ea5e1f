//! `.cdiff` files and scripts on arbitrary bytes.
//!
//! The input is parsed as a whole `.cdiff` file (1 MiB script cap) and, separately, as script
//! text that is planned against a small in-memory store of two files. Nothing may panic. The
//! decompressed script of a `.cdiff` that parses goes through the same script path.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use vdb_format::cdiff::{self, Cdiff, Script};

const MAX_SCRIPT: u64 = 1 << 20;

fn store() -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([
        (
            "a.ndb".to_owned(),
            b"Sig.A-1:0:*:41414141\nSig.A-2:0:*:42424242\n Indented.3\n\nlast line no newline"
                .to_vec(),
        ),
        (
            "b.hdb".to_owned(),
            b"d41d8cd98f00b204e9800998ecf8427e:0:Empty.File\r\nZm9v:3:Foo\r\n".to_vec(),
        ),
    ])
}

fn script(bytes: &[u8]) {
    let Ok(script) = Script::parse(bytes) else {
        return;
    };
    let base = store();
    if let Ok(changes) = cdiff::plan(&script, &base) {
        let _ = changes.names(&base);
        for name in changes.files.keys() {
            let _ = changes.read(&base, name);
        }
        let mut applied = base.clone();
        let _ = changes.commit(&mut applied);
    }
    // The re-rendered text may differ from the input (line numbers, comments, `\r`); it only
    // has to be handled without panicking.
    let text = script.to_text();
    if let Ok(again) = Script::parse(text.as_bytes()) {
        let _ = cdiff::plan(&again, &base);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = Cdiff::parse(data, MAX_SCRIPT) {
        assert!(parsed.script.len() as u64 <= MAX_SCRIPT);
        script(&parsed.script);
    }
    script(data);
});
