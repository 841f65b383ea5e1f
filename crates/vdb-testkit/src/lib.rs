//! vdbnet's test kit (`publish = false`, a dev-dependency only): what the suites of every crate
//! share, so that each suite holds its scenarios and nothing else.
//!
//! - [`fixtures`]: ClamAV's signed test databases in `shared/fixtures/clamav`, and the release
//!   sets made of them.
//! - [`Proc`]: a real binary started with a bounded wait for its JSON ready line ([`Ready`]),
//!   its stderr in a log whose tail is in every failure message, killed and reaped on drop.
//! - [`wait_for`]: a bounded poll on something observable (a status, a metric, a file) instead
//!   of a fixed sleep before an exact assertion.
//! - [`keys`]: the test keys, signed manifests and (with the `sign` feature) ClamAV key sets.
//! - [`MasterDouble`]: a master that serves a signed manifest and objects, with a gate and
//!   delays; with the `net` feature, `RegistryDouble`: a master registry and a monitor's
//!   verdicts (what the directory reads), and `SmtpSink`: a mail relay that keeps every
//!   message as received.
//! - With the `net` feature, `CdnDouble`: ClamAV's CDN as a follower meets it (moving
//!   versions, 429/403/5xx, slow, truncated and endless bodies, a cdiff window, `.sign`
//!   files), every request recorded.
//! - [`HostileServer`]: endless bodies, bodies larger than allowed, redirects (the clients'
//!   bounds).
//! - [`dig`]: the real `dig`, parsed.
//! - [`http`]: a raw HTTP/1.1 GET and Prometheus text; [`checks`]: what a mirror serves and
//!   holds is exactly a signed release.
//! - With the `net` feature, `publish`: test releases through the publisher library.
//! - With the `pki` feature, `pki::TestPki`: a CA and leaf certificates (rcgen).
//!
//! ```no_run
//! use std::process::Command;
//! let log = std::env::temp_dir().join("mirror.log");
//! let mut cmd = Command::new("vdbd");
//! cmd.args(["mirror", "--config", "mirror.toml"]);
//! let proc = vdb_testkit::Proc::start(cmd, &log);
//! let addr = proc.ready().http_addr();
//! vdb_testkit::wait_for("the mirror's health check", 30, || {
//!     vdb_testkit::http::try_get(addr, "/healthz", &[]).ok()
//! });
//! ```

#[cfg(feature = "net")]
pub mod browser;
#[cfg(feature = "net")]
mod cdn;
pub mod checks;
pub mod dig;
pub mod fixtures;
mod hostile;
pub mod http;
pub mod keys;
mod knot;
mod master_double;
#[cfg(feature = "pki")]
pub mod pki;
mod process;
#[cfg(feature = "net")]
pub mod publish;
mod ready;
#[cfg(feature = "net")]
mod registry_double;
#[cfg(feature = "net")]
mod smtp;
mod wait;

#[cfg(feature = "net")]
pub use cdn::{CdnDouble, CdnRequest, Delivery};
pub use hostile::{HostileServer, Hostility};
pub use knot::KnotSecondary;
pub use master_double::MasterDouble;
pub use process::{
    Guard, Proc, ShowOnPanic, exe_beside, free_port, output_text, tail, waits_for_flock,
};
pub use ready::Ready;
#[cfg(feature = "net")]
pub use registry_double::{RegistryDouble, Served, mirror_record, verdict};
#[cfg(feature = "net")]
pub use smtp::{Mail, SmtpSink};
#[cfg(feature = "net")]
pub use wait::wait_for_async;
pub use wait::{now, wait_for};

/// A TCP listener on 127.0.0.1:0, for a role started on bound listeners (its address is
/// known before it starts; no port is guessed).
pub fn loopback() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port")
}

/// Serves `app` on 127.0.0.1:0 for as long as the test's runtime lives; returns its address.
#[cfg(feature = "net")]
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = l.local_addr().expect("bound address");
    tokio::spawn(async move { axum::serve(l, app).await });
    addr
}

/// Copies a directory tree (e.g. a role's state, as a "backup").
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let e = e.expect("a directory entry");
        let t = to.join(e.file_name());
        let ft = e.file_type().expect("a file type");
        if ft.is_dir() {
            copy_dir(&e.path(), &t);
        } else if ft.is_file() {
            std::fs::copy(e.path(), &t).unwrap_or_else(|err| panic!("{}: {err}", t.display()));
        }
    }
}

/// Asserts that `haystack` contains `needle`, showing the haystack if not.
#[track_caller]
pub fn assert_contains(haystack: &str, needle: &str) {
    assert!(haystack.contains(needle), "{needle:?} not in:\n{haystack}");
}
