//! A real Knot DNS server (`knotd`, Debian package `knot`) as a secondary of a zone: it
//! transfers the zone from a primary by AXFR at start and follows its NOTIFYs, so a test can
//! compare a primary's answers with Knot's for the same zone, or check what a secondary sees.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Guard, ShowOnPanic};

/// A running `knotd`, secondary for one zone; stopped on drop (its log shown if the test fails).
pub struct KnotSecondary {
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    log: PathBuf,
    // Field order: the process stops before its log is shown.
    _knot: Guard,
    _show: ShowOnPanic,
}

impl KnotSecondary {
    /// Starts `knotd` in `dir` (created), listening on 127.0.0.1:`port` (a port the test picked
    /// beforehand, so that the primary can be told where to send NOTIFY), secondary for `zone`
    /// (without the trailing dot) from `primary`, which must allow it AXFR and may NOTIFY it.
    pub fn start(dir: &Path, zone: &str, primary: SocketAddr, port: u16) -> Self {
        std::fs::create_dir_all(dir).expect("Knot's directory");
        let conf = dir.join("knot.conf");
        std::fs::write(&conf, config(dir, zone, port, primary)).expect("knot.conf written");
        let log = dir.join("knot.log");
        let out = std::fs::File::create(&log).expect("knot.log created");
        let knot = Command::new("knotd")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("knotd runs (Debian package knot; scripts/test-deps.sh installs it)");
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _knot: Guard(knot),
            _show: ShowOnPanic(log.clone()),
            log,
        }
    }

    /// Knot's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn config(dir: &Path, zone: &str, port: u16, primary: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"server:
    rundir: "{d}"
    listen: 127.0.0.1@{port}
    pidfile: "{d}/knot.pid"
log:
  - target: stderr
    any: info
database:
    storage: "{d}"
remote:
  - id: primary
    address: {ip}@{pport}
acl:
  - id: from_primary
    address: {ip}
    action: notify
template:
  - id: default
    storage: "{d}"
    zonefile-load: none
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: {zone}
    master: primary
    acl: from_primary
"#,
        ip = primary.ip(),
        pport = primary.port(),
    )
}
