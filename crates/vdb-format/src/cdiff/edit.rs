//! The streaming line editor of one OPEN..CLOSE block (DEL/XCHG by line number).

use std::io::Write;

use crate::error::ScriptError;

use super::*;

/// Applies DEL/XCHG edits to a file held in memory: the streaming editor fed in one piece.
pub(super) fn apply_edits(name: &str, bytes: &[u8], edits: &Edits) -> Result<Vec<u8>, ScriptError> {
    let mut editor = EditStream::new(name, edits, Vec::with_capacity(bytes.len() + 64))?;
    editor.write(bytes).map_err(EditFail::into_script)?;
    editor.finish().map_err(EditFail::into_script)
}

/// Why a streamed edit stopped: the script does not fit the file, or the output failed.
#[derive(Debug)]
pub(crate) enum EditFail {
    /// The script does not fit the file.
    Script(ScriptError),
    /// Writing the output failed.
    Io(std::io::Error),
}

impl EditFail {
    fn into_script(self) -> ScriptError {
        match self {
            Self::Script(e) => e,
            Self::Io(e) => ScriptError::Store(e.to_string()),
        }
    }
}

impl From<std::io::Error> for EditFail {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// The line editor of ClamAV's OPEN..CLOSE block, streaming: applies DEL/XCHG edits (sorted by
/// line) to a file fed in chunks of any size and writes the result to `out`. The result is what
/// rewriting every line the ClamAV way gives ([`lines_of`], each line then `\n`-terminated: a
/// `\r` before a line end dropped, a missing final `\n` added); runs of lines between edits are
/// copied in bulk. Memory: the first bytes of the line being edited (its prefix), nothing else.
/// The whole input must be UTF-8 (checked across chunk boundaries).
pub(crate) struct EditStream<'e, W> {
    name: &'e str,
    edits: Vec<(usize, &'e str, Option<&'e str>)>,
    next: usize,
    /// Number of the line the next byte belongs to.
    line: usize,
    /// The next byte starts line `line`.
    at_start: bool,
    /// The current line is the next edit's line.
    editing: bool,
    /// The first bytes of the edited line (up to its prefix length + 1).
    head: Vec<u8>,
    line_len: usize,
    /// A `\r` ended the last chunk: dropped if a `\n` follows (or the input ends).
    pending_cr: bool,
    utf8: Utf8Check,
    out: W,
}

impl<'e, W: Write> EditStream<'e, W> {
    /// An editor for `edits` (as an OPEN..CLOSE block collects them) on file `name`.
    pub(crate) fn new(name: &'e str, edits: &'e Edits, out: W) -> Result<Self, ScriptError> {
        let edits: Vec<_> = edits
            .iter()
            .map(|(&at, (prefix, new))| (at, prefix.as_str(), new.as_deref()))
            .collect();
        if let Some(&(0, _, new)) = edits.first() {
            return Err(ScriptError::NoMatch {
                command: if new.is_some() { "XCHG" } else { "DEL" },
                file: name.to_owned(),
                line: 0,
                reason: "line numbers start at 1".into(),
            });
        }
        Ok(Self {
            name,
            edits,
            next: 0,
            line: 1,
            at_start: true,
            editing: false,
            head: Vec::new(),
            line_len: 0,
            pending_cr: false,
            utf8: Utf8Check::default(),
            out,
        })
    }

    /// Feeds the next chunk of the file.
    pub(crate) fn write(&mut self, mut buf: &[u8]) -> Result<(), EditFail> {
        if !self.utf8.feed(buf) {
            return Err(EditFail::Script(ScriptError::FileNotText(
                self.name.to_owned(),
            )));
        }
        while !buf.is_empty() {
            if self.at_start {
                self.at_start = false;
                self.editing = self.edits.get(self.next).is_some_and(|e| e.0 == self.line);
                self.head.clear();
                self.line_len = 0;
            }
            if self.editing {
                let prefix_len = self.edits[self.next].1.len();
                let end = memchr::memchr(b'\n', buf);
                let part = &buf[..end.unwrap_or(buf.len())];
                let room = (prefix_len + 1).saturating_sub(self.head.len());
                self.head.extend_from_slice(&part[..part.len().min(room)]);
                self.line_len += part.len();
                match end {
                    Some(i) => {
                        self.end_edited_line()?;
                        buf = &buf[i + 1..];
                    }
                    None => buf = &[],
                }
            } else {
                let n = match self.edits.get(self.next) {
                    None => buf.len(),
                    Some(&(at, ..)) => {
                        let mut want = at - self.line;
                        let mut end = buf.len();
                        for i in memchr::memchr_iter(b'\n', buf) {
                            self.line += 1;
                            want -= 1;
                            if want == 0 {
                                end = i + 1;
                                break;
                            }
                        }
                        end
                    }
                };
                let (run, rest) = buf.split_at(n);
                self.copy(run)?;
                self.at_start = run.last() == Some(&b'\n');
                buf = rest;
            }
        }
        Ok(())
    }

    /// Ends the input: checks that every edited line existed and returns the output.
    pub(crate) fn finish(mut self) -> Result<W, EditFail> {
        if !self.at_start {
            if self.editing {
                self.end_edited_line()?;
            } else {
                self.pending_cr = false;
                self.out.write_all(b"\n")?;
            }
        }
        if let Some(&(at, _, new)) = self.edits.get(self.next) {
            return Err(EditFail::Script(ScriptError::NoMatch {
                command: if new.is_some() { "XCHG" } else { "DEL" },
                file: self.name.to_owned(),
                line: at,
                reason: "beyond the end of the file".into(),
            }));
        }
        if !self.utf8.complete() {
            return Err(EditFail::Script(ScriptError::FileNotText(
                self.name.to_owned(),
            )));
        }
        Ok(self.out)
    }

    fn end_edited_line(&mut self) -> Result<(), EditFail> {
        let (at, prefix, new) = self.edits[self.next];
        // The whole line is in `head` when it is short; then its final `\r` is not part of it.
        let view = if self.line_len <= prefix.len() + 1 {
            self.head.strip_suffix(b"\r").unwrap_or(&self.head)
        } else {
            &self.head[..]
        };
        if !view.starts_with(prefix.as_bytes()) {
            return Err(EditFail::Script(ScriptError::NoMatch {
                command: if new.is_some() { "XCHG" } else { "DEL" },
                file: self.name.to_owned(),
                line: at,
                reason: format!("line does not start with {prefix:?}"),
            }));
        }
        if let Some(new) = new {
            self.out.write_all(new.as_bytes())?;
            self.out.write_all(b"\n")?;
        }
        self.next += 1;
        self.line += 1;
        self.at_start = true;
        Ok(())
    }

    /// Copies unedited bytes, dropping each `\r` that ends a line.
    fn copy(&mut self, mut run: &[u8]) -> Result<(), EditFail> {
        if std::mem::take(&mut self.pending_cr) && run.first() != Some(&b'\n') {
            self.out.write_all(b"\r")?;
        }
        while let Some(i) = memchr::memchr(b'\r', run) {
            if i + 1 == run.len() {
                self.out.write_all(&run[..i])?;
                self.pending_cr = true;
                return Ok(());
            }
            let keep = if run[i + 1] == b'\n' { i } else { i + 1 };
            self.out.write_all(&run[..keep])?;
            run = &run[i + 1..];
        }
        self.out.write_all(run)?;
        Ok(())
    }
}

/// UTF-8 validation of a byte stream fed in pieces (a character may span two pieces).
#[derive(Default)]
pub(super) struct Utf8Check {
    carry: [u8; 4],
    len: usize,
}

impl Utf8Check {
    /// Whether everything fed so far is UTF-8 or a prefix of it.
    fn feed(&mut self, mut buf: &[u8]) -> bool {
        if self.len > 0 {
            let need = match self.carry[0] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let take = (need - self.len).min(buf.len());
            self.carry[self.len..self.len + take].copy_from_slice(&buf[..take]);
            self.len += take;
            buf = &buf[take..];
            match std::str::from_utf8(&self.carry[..self.len]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() && self.len < need => return true,
                Err(_) => return false,
            }
        }
        match std::str::from_utf8(buf) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let tail = &buf[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.len = tail.len();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the stream ended on a character boundary.
    fn complete(&self) -> bool {
        self.len == 0
    }
}
