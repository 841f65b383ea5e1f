//! Log lines for people and cron: stdout for progress, stderr for problems, optionally a log
//! file; a progress bar only on a terminal.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Mutex;

/// How much to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Errors only (`--quiet`).
    Quiet,
    /// Errors, warnings and what changed (default).
    #[default]
    Normal,
    /// Also every request and timing (`--verbose`).
    Verbose,
}

/// Where log lines go.
#[derive(Debug, Default)]
pub struct Log {
    verbosity: Verbosity,
    all_to_stdout: bool,
    file: Option<Mutex<File>>,
    progress: bool,
    lines: Option<Mutex<Vec<String>>>,
}

impl Log {
    /// A log with this verbosity; with `all_to_stdout` (freshclam's `--stdout`) warnings and
    /// errors go to stdout too.
    pub fn new(verbosity: Verbosity, all_to_stdout: bool) -> Self {
        Self {
            verbosity,
            all_to_stdout,
            file: None,
            progress: verbosity != Verbosity::Quiet && std::io::stderr().is_terminal(),
            lines: None,
        }
    }

    /// A log that keeps every line in memory (for tests) and prints nothing.
    pub fn capture() -> Self {
        Self {
            verbosity: Verbosity::Verbose,
            lines: Some(Mutex::new(Vec::new())),
            ..Self::default()
        }
    }

    /// The captured lines (empty unless made by [`Log::capture`]).
    pub fn captured(&self) -> Vec<String> {
        self.lines
            .as_ref()
            .map(|l| l.lock().map(|l| l.clone()).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Also appends every line to `path`.
    pub fn with_file(mut self, path: &Path) -> std::io::Result<Self> {
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        self.file = Some(Mutex::new(f));
        Ok(self)
    }

    /// Whether a progress bar may be drawn.
    pub fn progress(&self) -> bool {
        self.progress
    }

    fn emit(&self, level: &str, text: &str, to_stderr: bool, shown: bool) {
        if let Some(lines) = &self.lines {
            if let Ok(mut l) = lines.lock() {
                l.push(format!("{level}{text}"));
            }
            return;
        }
        if shown {
            if to_stderr && !self.all_to_stdout {
                eprintln!("{level}{text}");
            } else {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{level}{text}");
                let _ = out.flush();
            }
        }
        if let Some(f) = &self.file
            && let Ok(mut f) = f.lock()
        {
            let now = httpdate::fmt_http_date(std::time::SystemTime::now());
            let _ = writeln!(f, "{now} -> {level}{text}");
        }
    }

    /// A normal line.
    pub fn info(&self, text: impl AsRef<str>) {
        self.emit("", text.as_ref(), false, self.verbosity != Verbosity::Quiet);
    }

    /// A detail line, shown with `--verbose`.
    pub fn debug(&self, text: impl AsRef<str>) {
        self.emit(
            "",
            text.as_ref(),
            false,
            self.verbosity == Verbosity::Verbose,
        );
    }

    /// A warning.
    pub fn warn(&self, text: impl AsRef<str>) {
        self.emit(
            "WARNING: ",
            text.as_ref(),
            true,
            self.verbosity != Verbosity::Quiet,
        );
    }

    /// An error (always shown).
    pub fn error(&self, text: impl AsRef<str>) {
        self.emit("ERROR: ", text.as_ref(), true, true);
    }
}
