//! A role's life: the file-descriptor limit, the ready line, SIGINT/SIGTERM.

use std::io::Write as _;

use vdb_proto::Ready;

/// The process's file-descriptor limit (the soft one), if it has one.
pub fn fd_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raises the soft file-descriptor limit to the hard one (as servers do at start), so that the
/// connection caps rather than `accept(2)` decide when connections are refused. Returns the
/// limit in force afterwards.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            tracing::debug!(error = %e, "cannot raise the file-descriptor limit");
        }
    }
    fd_limit()
}

/// Prints the ready line on stdout (one line, flushed).
pub fn announce(ready: &Ready) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", ready.to_line())?;
    out.flush()
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    Ok(())
}
