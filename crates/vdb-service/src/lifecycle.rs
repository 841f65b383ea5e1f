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

/// Prints the ready line on stdout (one line, flushed), and tells systemd (a `Type=notify`
/// unit: `NOTIFY_SOCKET` set) that the role is ready, with its status; when the unit sets
/// `WatchdogSec=`, pings the watchdog at half its period from the role's runtime, so that a
/// frozen runtime is restarted. Outside systemd only the line is printed.
pub fn announce(ready: &Ready) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", ready.to_line())?;
    out.flush()?;
    notify_systemd(ready);
    Ok(())
}

fn notify_systemd(ready: &Ready) {
    use sd_notify::NotifyState;
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let status = format!("{} ready", ready.role);
    if let Err(e) = sd_notify::notify(false, &[NotifyState::Ready, NotifyState::Status(&status)]) {
        tracing::warn!(error = %e, "cannot tell systemd that the role is ready (NOTIFY_SOCKET)");
        return;
    }
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("WatchdogSec is set but the role has no runtime to ping it from");
        return;
    };
    let period =
        std::time::Duration::from_micros(usec / 2).max(std::time::Duration::from_millis(10));
    handle.spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            if let Err(e) = sd_notify::notify(false, &[NotifyState::Watchdog]) {
                tracing::warn!(error = %e, "cannot ping the systemd watchdog");
                return;
            }
        }
    });
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
