//! Makes the sample database `vdbd dev` publishes (a 1 MiB daily-like CVD and a chain of three
//! signed cdiffs) at build time, so that the server binary holds the signed files but no
//! publisher signing code. `$OUT_DIR/sample.rs` lists them for `include!`.

use std::fmt::Write as _;
use std::path::PathBuf;

/// The sample's base version and chain length.
const BASE: u32 = 27000;
const CDIFFS: u32 = 3;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let dir = out.join("sample");
    let written = vdb_synth::write_chain(&vdb_synth::Spec {
        output: dir.clone(),
        size_mb: 1,
        cdiffs: CDIFFS,
        version: BASE,
        seed: 1,
        keys: None,
        cud: false,
    })
    .expect("building the sample database");
    let mut rs = format!(
        "/// The sample chain's base version.\nconst SAMPLE_BASE: u32 = {BASE};\n\
         /// The sample chain's newest version.\nconst SAMPLE_NEWEST: u32 = {};\n\
         /// The sample's files (the public key set that verifies them included; the private\n\
         /// one stays in the build directory).\nconst SAMPLE_FILES: &[(&str, &[u8])] = &[\n",
        BASE + CDIFFS
    );
    let public = ["synth.key.pub".to_owned()];
    for name in written.iter().map(|(n, _)| n).chain(&public) {
        let _ = writeln!(
            rs,
            "    ({name:?}, include_bytes!({:?})),",
            dir.join(name).display().to_string()
        );
    }
    rs.push_str("];\n");
    std::fs::write(out.join("sample.rs"), rs).expect("writing sample.rs");
}
