//! `vdbd directory` as a process, and short forms of the test kit's doubles and `dig`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use vdb_proto::{MirrorRecord, MirrorState, MirrorVerdict};
use vdb_testkit::{Proc, dig};

/// A running `vdbd directory`.
pub(crate) struct Directory {
    pub(crate) dns: SocketAddr,
    pub(crate) http: String,
    _proc: Proc,
}

/// Starts `vdbd directory --config <config>` and waits for its ready line.
pub(crate) fn start_directory(config: &Path, log: &Path) -> Directory {
    let proc = Proc::start_role(env!("CARGO_BIN_EXE_vdbd"), "directory", config, log);
    assert_eq!(proc.ready().role(), "directory");
    Directory {
        dns: proc.ready().dns_addr(),
        http: proc.ready().http_url(),
        _proc: proc,
    }
}

pub(crate) fn mirror(name: &str, ip: &str, base_url: &str) -> MirrorRecord {
    vdb_testkit::mirror_record(name, ip, base_url)
}

pub(crate) fn verdict(name: &str, serving: &[(&str, u32)]) -> MirrorVerdict {
    vdb_testkit::verdict(name, MirrorState::InService, serving)
}

/// `dig +short`-like: the answer records' data, sorted.
pub(crate) async fn dig_short(server: SocketAddr, name: &str, qtype: &str) -> Vec<String> {
    dig::query(server, name, qtype).run_async().await.short()
}

/// Asks again until `ok`, for at most `secs` seconds; returns the good answer.
pub(crate) async fn dig_until(
    server: SocketAddr,
    name: &str,
    qtype: &str,
    secs: u64,
    ok: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    dig::query(server, name, qtype)
        .until_async(secs, |d| ok(&d.short()))
        .await
        .short()
}

pub(crate) fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

/// The body of `GET url` as text (empty if it fails).
pub(crate) async fn http_get(url: &str) -> String {
    String::from_utf8_lossy(
        &vdb_testkit::http::fetch_async(url)
            .await
            .unwrap_or_default(),
    )
    .into_owned()
}
