//! Real binaries as test processes: started with a bounded wait for the ready line, stderr in a
//! log file whose tail goes into every failure message, killed and reaped on drop.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::Ready;

/// How long a process may take to print its ready line (a loaded machine is slow; only a
/// failing test waits this long).
const READY_SECS: u64 = 120;

/// A process that printed a ready line: SIGKILLed and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    ready: Ready,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` (stdout piped, stderr appended to `log`) and waits (bounded) for its ready
    /// line; panics with the log's tail if none comes.
    pub fn start(cmd: Command, log: &Path) -> Self {
        Self::try_start(cmd, log).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts `<bin> <role> --config <config>` (a `vdbd` role; logs at `info`) with
    /// [`Proc::start`].
    pub fn start_role(
        bin: impl AsRef<std::ffi::OsStr>,
        role: &str,
        config: &Path,
        log: &Path,
    ) -> Self {
        let mut cmd = Command::new(bin);
        cmd.args([role, "--config"])
            .arg(config)
            .env("VDB_LOG", "info,hickory_server=warn");
        Self::start(cmd, log)
    }

    /// [`Proc::start`], but `Err` (with the log's tail) instead of a panic when the process
    /// exits or times out without a ready line.
    pub fn try_start(mut cmd: Command, log: &Path) -> Result<Self, String> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            // Keep the pipe open and drained for the process's lifetime.
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(Duration::from_secs(READY_SECS))
            .unwrap_or_default();
        match Ready::parse(&line) {
            Ok(ready) => Ok(Self {
                child,
                ready,
                log: log.to_owned(),
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "{what} gave no ready line within {READY_SECS} s ({e})\n--- {}:\n{}",
                    log.display(),
                    tail(log)
                ))
            }
        }
    }

    /// The ready line.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file (the process's stderr).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// SIGKILL, and reaped.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits at most `secs` seconds: the exit status, or `None` if it still runs.
    pub fn terminate(&mut self, secs: u64) -> Option<ExitStatus> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Some(st);
        }
        signal(self.pid(), "TERM");
        self.wait_exit(secs)
    }

    /// SIGTERM (graceful, bounded to 15 s), then SIGKILL if it has not stopped.
    pub fn stop(&mut self) {
        if self.terminate(15).is_none() {
            self.sigkill();
        }
    }

    /// Waits at most `secs` seconds for the process to exit (killed from elsewhere, or told
    /// to stop): its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, secs: u64) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.sigkill();
        if std::thread::panicking() {
            eprintln!("--- {} (tail):\n{}", self.log.display(), tail(&self.log));
        }
    }
}

/// Prints the tail of a log file when dropped during a panic (a failing test), for processes
/// that are not [`Proc`]s (e.g. a third-party server under a [`Guard`]).
#[derive(Debug)]
pub struct ShowOnPanic(pub PathBuf);

impl Drop for ShowOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} (tail):\n{}", self.0.display(), tail(&self.0));
        }
    }
}

/// Sends `SIG<sig>` to `pid` (through `kill`, as the operator would).
pub(crate) fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A child process without a ready line (a one-shot command, a third-party server), killed and
/// reaped on drop.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Guard {
    /// SIGKILL, and reaped.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGKILL by pid from any thread (e.g. a proxy's trigger).
    pub fn kill_pid(pid: u32) {
        signal(pid, "KILL");
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port free on `ip` for both TCP and UDP (bound and released), for configs that must name
/// their port before the process starts (peers that list each other, Knot); roles that can
/// report the port they bound are started on port 0 instead.
///
/// The port is taken below the kernel's ephemeral range (`ip_local_port_range`), where neither
/// an outgoing connection nor a bind to port 0 can take it between this check and the
/// process's bind: a port from the ephemeral range was taken that way under the full suite's
/// load. Within a test process each call moves on to another port; test binaries run one at a
/// time.
pub fn free_port(ip: &str) -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_lo = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768)
        .clamp(4096, 65535);
    // Ports [lo / 2, lo): 16384..32768 by default.
    let (base, span) = (ephemeral_lo / 2, ephemeral_lo - ephemeral_lo / 2);
    // A random start, once per process (so that reruns do not meet ports left in TIME_WAIT),
    // then one port after another.
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        (std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            % 65536) as u32
    });
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(base + start.wrapping_add(n) % span).expect("below 65536");
        let tcp = std::net::TcpListener::bind((ip, port));
        if tcp.is_ok() && std::net::UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for TCP and UDP on {ip} below the ephemeral range");
}

/// Whether process `pid` is blocked waiting for a `flock` on `file` (Linux: a `->` line of
/// `/proc/locks`). A positive event for "it waits for the lock": poll it with
/// [`crate::wait_for`] rather than sleeping and checking that the process has not finished.
pub fn waits_for_flock(pid: u32, file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(ino) = std::fs::metadata(file).map(|m| m.ino()) else {
        return false;
    };
    let (pid, ino) = (pid.to_string(), format!(":{ino}"));
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .any(|f| {
            f.get(1) == Some(&"->")
                && f.get(2) == Some(&"FLOCK")
                && f.get(5) == Some(&pid.as_str())
                && f.get(6).is_some_and(|d| d.ends_with(&ino))
        })
}

/// The last 40 lines of a log, for failure messages.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A workspace binary in the same directory as `bin` (e.g. `vdb` beside
/// `env!("CARGO_BIN_EXE_vdbd")`; `cargo test --workspace` builds them all).
pub fn exe_beside(bin: &str, name: &str) -> PathBuf {
    let p = Path::new(bin).with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (or build that binary first)",
        p.display()
    );
    p
}

/// Status, stdout and stderr of a finished command, for failure messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `flock(1)` holds a lock; a second one waits for it, and is seen waiting.
    #[test]
    fn a_waiter_on_a_flock_is_seen() {
        let file = std::env::temp_dir().join(format!("vdb-testkit-flock-{}", std::process::id()));
        std::fs::write(&file, b"").unwrap();
        let flock = |args: &[&str]| {
            let mut cmd = Command::new("flock");
            cmd.arg(&file).args(args);
            Guard(cmd.spawn().expect("flock (util-linux)"))
        };
        let holder = flock(&["sleep", "60"]);
        crate::wait_for("the holder to take the lock", 30, || {
            let locks = std::fs::read_to_string("/proc/locks").ok()?;
            locks
                .contains(&format!(" {} ", holder.0.id()))
                .then_some(())
        });
        assert!(
            !waits_for_flock(holder.0.id(), &file),
            "the holder does not wait"
        );
        let waiter = flock(&["true"]);
        crate::wait_for("the second flock to wait", 30, || {
            waits_for_flock(waiter.0.id(), &file).then_some(())
        });
        drop((waiter, holder));
        let _ = std::fs::remove_file(&file);
    }
}
