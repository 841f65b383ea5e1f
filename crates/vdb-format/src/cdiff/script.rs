//! The script language: commands and their parsing (spec §2.2).

use crate::error::{CdiffError, Error, ScriptError};
use crate::names::is_cdiff_file_name;

/// One script command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `OPEN <file>`
    Open(String),
    /// `ADD <text>`
    Add(String),
    /// `DEL <line> <prefix>`
    Del {
        /// 1-based line number at OPEN time.
        line: usize,
        /// The line must start with this.
        prefix: String,
    },
    /// `XCHG <line> <prefix> <text>`
    Xchg {
        /// 1-based line number at OPEN time.
        line: usize,
        /// The line must start with this.
        prefix: String,
        /// Replacement text.
        text: String,
    },
    /// `CLOSE`
    Close,
    /// `MOVE <src> <dst> <start> <start prefix> <end> <end prefix>`
    Move {
        /// Source file.
        src: String,
        /// Destination file (must exist).
        dst: String,
        /// First line moved.
        start: usize,
        /// Prefix of the first line.
        start_prefix: String,
        /// Last line moved.
        end: usize,
        /// Prefix of the last line.
        end_prefix: String,
    },
    /// `UNLINK <file>`
    Unlink(String),
}

/// A parsed script: commands with their 1-based line numbers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    /// `(line number, command)` in order.
    pub commands: Vec<(usize, Command)>,
}

pub(super) fn line_err(line: usize, kind: ScriptError) -> Error {
    Error::Cdiff(CdiffError::Line { line, kind })
}

pub(super) fn args(command: &'static str, reason: &str) -> ScriptError {
    ScriptError::Arguments {
        command,
        reason: reason.to_owned(),
    }
}

pub(super) fn file_name(name: &str) -> Result<String, ScriptError> {
    if is_cdiff_file_name(name) {
        Ok(name.to_owned())
    } else {
        Err(ScriptError::FileName(name.chars().take(64).collect()))
    }
}

pub(super) fn number(
    token: Option<&str>,
    command: &'static str,
    what: &str,
) -> Result<usize, ScriptError> {
    let t = token.ok_or_else(|| args(command, &format!("missing {what}")))?;
    if !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(args(command, &format!("{what} {t:?} is not a number")));
    }
    t.parse()
        .map_err(|_| args(command, &format!("{what} {t:?} is out of range")))
}

pub(super) fn token(
    token: Option<&str>,
    command: &'static str,
    what: &str,
) -> Result<String, ScriptError> {
    token
        .map(str::to_owned)
        .ok_or_else(|| args(command, &format!("missing {what}")))
}

impl Script {
    /// Parses script text.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut commands = Vec::new();
        if bytes.is_empty() {
            return Ok(Self { commands });
        }
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
            let n = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = std::str::from_utf8(raw).map_err(|_| line_err(n, ScriptError::NotText))?;
            if line.starts_with('#') {
                continue;
            }
            let command = parse_command(line).map_err(|k| line_err(n, k))?;
            commands.push((n, command));
        }
        Ok(Self { commands })
    }

    /// The script as text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (_, c) in &self.commands {
            match c {
                Command::Open(f) => out.push_str(&format!("OPEN {f}\n")),
                Command::Add(t) => out.push_str(&format!("ADD {t}\n")),
                Command::Del { line, prefix } => out.push_str(&format!("DEL {line} {prefix}\n")),
                Command::Xchg { line, prefix, text } => {
                    out.push_str(&format!("XCHG {line} {prefix} {text}\n"));
                }
                Command::Close => out.push_str("CLOSE\n"),
                Command::Move {
                    src,
                    dst,
                    start,
                    start_prefix,
                    end,
                    end_prefix,
                } => out.push_str(&format!(
                    "MOVE {src} {dst} {start} {start_prefix} {end} {end_prefix}\n"
                )),
                Command::Unlink(f) => out.push_str(&format!("UNLINK {f}\n")),
            }
        }
        out
    }
}

pub(super) fn parse_command(line: &str) -> Result<Command, ScriptError> {
    let (word, data) = match line.find(char::is_whitespace) {
        Some(i) => {
            let ws = line[i..].chars().next().map_or(1, char::len_utf8);
            (&line[..i], Some(&line[i + ws..]))
        }
        None => (line, None),
    };
    let need = |command: &'static str| data.ok_or_else(|| args(command, "missing arguments"));
    Ok(match word {
        "OPEN" => Command::Open(file_name(need("OPEN")?)?),
        "ADD" => Command::Add(need("ADD")?.to_owned()),
        "DEL" => {
            let mut t = need("DEL")?.split_whitespace();
            Command::Del {
                line: number(t.next(), "DEL", "line number")?,
                prefix: token(t.next(), "DEL", "line prefix")?,
            }
        }
        "XCHG" => {
            let mut t = need("XCHG")?.splitn(3, char::is_whitespace);
            Command::Xchg {
                line: number(t.next(), "XCHG", "line number")?,
                prefix: token(t.next(), "XCHG", "line prefix")?,
                text: token(t.next(), "XCHG", "new line")?,
            }
        }
        "CLOSE" => Command::Close,
        "MOVE" => {
            let mut t = need("MOVE")?.split_whitespace();
            let src = file_name(&token(t.next(), "MOVE", "source file")?)?;
            let dst = file_name(&token(t.next(), "MOVE", "destination file")?)?;
            Command::Move {
                src,
                dst,
                start: number(t.next(), "MOVE", "start line")?,
                start_prefix: token(t.next(), "MOVE", "start prefix")?,
                end: number(t.next(), "MOVE", "end line")?,
                end_prefix: token(t.next(), "MOVE", "end prefix")?,
            }
        }
        "UNLINK" => Command::Unlink(file_name(need("UNLINK")?.trim_end())?),
        other => {
            return Err(ScriptError::UnknownCommand(
                other.chars().take(32).collect(),
            ));
        }
    })
}
