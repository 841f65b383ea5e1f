//! The apply engine: the interpreter that checks the command grammar, and the in-memory
//! target that plans a script's changes over a store without touching it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::error::{CdiffError, Error, ScriptError};
use crate::store::FileStore;

use super::*;

/// Changes buffered over a store so that a failing script changes nothing.
pub(super) struct Overlay<'a> {
    base: &'a dyn FileStore,
    changes: BTreeMap<String, Option<Vec<u8>>>,
}

impl Overlay<'_> {
    /// A file as the script sees it now; borrowed where the stores allow it.
    fn get(&self, name: &str) -> Result<Option<Cow<'_, [u8]>>, ScriptError> {
        match self.changes.get(name) {
            Some(v) => Ok(v.as_deref().map(Cow::Borrowed)),
            None => self
                .base
                .read_cow(name)
                .map_err(|e| ScriptError::Store(e.to_string())),
        }
    }
}

/// Splits file text into lines the way Rust's `BufRead::lines` does (what ClamAV uses):
/// on `\n`, dropping one trailing `\r`, with no empty last line after a final `\n`.
pub(super) fn lines_of(text: &str) -> Vec<&str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Vec::new();
    }
    body.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

pub(super) fn text_of(name: &str, bytes: &[u8]) -> Result<String, ScriptError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ScriptError::FileNotText(name.to_owned()))
}

/// The changes a script makes, computed without touching the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// New contents (`Some`) or deletion (`None`) per file name.
    pub files: BTreeMap<String, Option<Vec<u8>>>,
}

impl Changes {
    /// A file as it reads after the changes.
    pub fn read(&self, base: &dyn FileStore, name: &str) -> std::io::Result<Option<Vec<u8>>> {
        match self.files.get(name) {
            Some(v) => Ok(v.clone()),
            None => base.read(name),
        }
    }

    /// Every file name after the changes, sorted.
    pub fn names(&self, base: &dyn FileStore) -> std::io::Result<Vec<String>> {
        let mut names: Vec<String> = base
            .names()?
            .into_iter()
            .filter(|n| !matches!(self.files.get(n), Some(None)))
            .collect();
        names.extend(
            self.files
                .iter()
                .filter(|(n, v)| v.is_some() && !names.contains(n))
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
        );
        names.sort();
        Ok(names)
    }

    /// Writes the changes to `store`.
    pub fn commit(self, store: &mut dyn FileStore) -> Result<(), Error> {
        for (name, change) in self.files {
            let r = match change {
                Some(data) => store.write_owned(&name, data),
                None => store.remove(&name).map(drop),
            };
            r.map_err(|e| Error::io(format!("writing patched {name}"), e))?;
        }
        Ok(())
    }
}

/// Runs a script against a store and returns its changes; the store is not modified.
pub fn plan(script: &Script, store: &dyn FileStore) -> Result<Changes, Error> {
    let mut ov = Overlay {
        base: store,
        changes: BTreeMap::new(),
    };
    run(script, &mut ov)?;
    Ok(Changes { files: ov.changes })
}

/// Applies a script to a store. All-or-nothing: on error nothing in `store` changes.
/// (Across several files the final commit is a sequence of atomic writes; callers that need
/// crash atomicity apply to a staging copy, as freshclam does.)
pub fn apply(script: &Script, store: &mut dyn FileStore) -> Result<(), Error> {
    plan(script, &*store)?.commit(store)
}

/// The DEL/XCHG edits of one OPEN..CLOSE block: line number at OPEN → (prefix, replacement;
/// `None` deletes the line).
pub(crate) type Edits = BTreeMap<usize, (String, Option<String>)>;

/// One OPEN..CLOSE block as the interpreter hands it to a [`Target`] at CLOSE.
pub(crate) struct OpenFile {
    pub(crate) name: String,
    pub(crate) edits: Edits,
    pub(crate) adds: Vec<String>,
}

/// What a script runs against: the in-memory overlay here, or a recorder that plans a
/// streaming pass (`chain.rs`). The interpreter ([`run`]) checks the command grammar (one open
/// file at a time, nothing left open); a target does the file work.
pub(crate) trait Target {
    /// Whether `name` exists now (a recorder that cannot know yet answers `true` and checks
    /// later).
    fn exists(&mut self, name: &str) -> Result<bool, ScriptError>;
    /// CLOSE of a block; `line` is the script line of the CLOSE.
    fn close(&mut self, file: OpenFile, line: usize) -> Result<(), ScriptError>;
    /// UNLINK of an existing file.
    fn unlink(&mut self, name: &str, line: usize) -> Result<(), ScriptError>;
    /// MOVE of lines `start..=end` from `src` to the end of `dst`.
    fn move_lines(
        &mut self,
        src: &str,
        dst: &str,
        start: (usize, &String),
        end: (usize, &String),
    ) -> Result<(), ScriptError>;
}

impl Target for Overlay<'_> {
    fn exists(&mut self, name: &str) -> Result<bool, ScriptError> {
        Ok(self.get(name)?.is_some())
    }
    fn close(&mut self, file: OpenFile, _line: usize) -> Result<(), ScriptError> {
        close(self, file)
    }
    fn unlink(&mut self, name: &str, _line: usize) -> Result<(), ScriptError> {
        self.changes.insert(name.to_owned(), None);
        Ok(())
    }
    fn move_lines(
        &mut self,
        src: &str,
        dst: &str,
        start: (usize, &String),
        end: (usize, &String),
    ) -> Result<(), ScriptError> {
        move_lines(self, src, dst, start, end)
    }
}

/// Interprets a script against a target.
pub(crate) fn run(script: &Script, target: &mut dyn Target) -> Result<(), Error> {
    let mut open: Option<OpenFile> = None;
    for (n, command) in &script.commands {
        let n = *n;
        let fail = |kind| line_err(n, kind);
        match command {
            Command::Open(name) => {
                if let Some(o) = &open {
                    return Err(fail(ScriptError::FileOpen {
                        command: "OPEN",
                        open: o.name.clone(),
                    }));
                }
                open = Some(OpenFile {
                    name: name.clone(),
                    edits: BTreeMap::new(),
                    adds: Vec::new(),
                });
            }
            Command::Add(text) => {
                let o = open
                    .as_mut()
                    .ok_or_else(|| fail(ScriptError::NoOpenFile("ADD")))?;
                o.adds.push(text.clone());
            }
            Command::Del { line, prefix } => {
                let o = open
                    .as_mut()
                    .ok_or_else(|| fail(ScriptError::NoOpenFile("DEL")))?;
                o.edits.insert(*line, (prefix.clone(), None));
            }
            Command::Xchg { line, prefix, text } => {
                let o = open
                    .as_mut()
                    .ok_or_else(|| fail(ScriptError::NoOpenFile("XCHG")))?;
                o.edits.insert(*line, (prefix.clone(), Some(text.clone())));
            }
            Command::Close => {
                let o = open
                    .take()
                    .ok_or_else(|| fail(ScriptError::NoOpenFile("CLOSE")))?;
                target.close(o, n).map_err(fail)?;
            }
            Command::Move {
                src,
                dst,
                start,
                start_prefix,
                end,
                end_prefix,
            } => {
                if let Some(o) = &open {
                    return Err(fail(ScriptError::FileOpen {
                        command: "MOVE",
                        open: o.name.clone(),
                    }));
                }
                target
                    .move_lines(src, dst, (*start, start_prefix), (*end, end_prefix))
                    .map_err(fail)?;
            }
            Command::Unlink(name) => {
                if let Some(o) = &open {
                    return Err(fail(ScriptError::FileOpen {
                        command: "UNLINK",
                        open: o.name.clone(),
                    }));
                }
                if !target.exists(name).map_err(fail)? {
                    return Err(fail(ScriptError::NoSuchFile {
                        command: "UNLINK",
                        file: name.clone(),
                    }));
                }
                target.unlink(name, n).map_err(fail)?;
            }
        }
    }
    if let Some(o) = open {
        return Err(CdiffError::Unclosed(o.name).into());
    }
    Ok(())
}

pub(super) fn close(ov: &mut Overlay<'_>, o: OpenFile) -> Result<(), ScriptError> {
    if o.edits.is_empty() && o.adds.is_empty() {
        return Ok(());
    }
    let mut data = match (o.edits.is_empty(), ov.get(&o.name)?) {
        (true, current) => current.map(Cow::into_owned),
        (false, None) => {
            return Err(ScriptError::NoSuchFile {
                command: "CLOSE",
                file: o.name,
            });
        }
        (false, Some(bytes)) => Some(apply_edits(&o.name, &bytes, &o.edits)?),
    };
    if !o.adds.is_empty() {
        let bytes = data.get_or_insert_with(Vec::new);
        for add in &o.adds {
            bytes.extend_from_slice(add.as_bytes());
            bytes.push(b'\n');
        }
    }
    if let Some(data) = data {
        ov.changes.insert(o.name, Some(data));
    }
    Ok(())
}

pub(super) fn move_lines(
    ov: &mut Overlay<'_>,
    src: &str,
    dst: &str,
    (start, start_prefix): (usize, &String),
    (end, end_prefix): (usize, &String),
) -> Result<(), ScriptError> {
    let no_match = |line, reason: String| ScriptError::NoMatch {
        command: "MOVE",
        file: src.to_owned(),
        line,
        reason,
    };
    if src == dst {
        return Err(no_match(
            start,
            "source and destination are the same file".into(),
        ));
    }
    if start == 0 {
        return Err(no_match(start, "line numbers start at 1".into()));
    }
    if end <= start {
        return Err(no_match(
            end,
            "end line must come after the start line".into(),
        ));
    }
    let missing = |file: &str| ScriptError::NoSuchFile {
        command: "MOVE",
        file: file.to_owned(),
    };
    let src_bytes = ov.get(src)?.ok_or_else(|| missing(src))?.into_owned();
    let mut dst_bytes = ov.get(dst)?.ok_or_else(|| missing(dst))?.into_owned();
    let text = text_of(src, &src_bytes)?;
    let lines = lines_of(&text);
    if end > lines.len() {
        return Err(no_match(end, "beyond the end of the file".into()));
    }
    if !lines[start - 1].starts_with(start_prefix.as_str()) {
        return Err(no_match(
            start,
            format!("line does not start with {start_prefix:?}"),
        ));
    }
    if !lines[end - 1].starts_with(end_prefix.as_str()) {
        return Err(no_match(
            end,
            format!("line does not start with {end_prefix:?}"),
        ));
    }
    let mut kept = String::new();
    for (i, line) in lines.iter().enumerate() {
        let target = if (start - 1..end).contains(&i) {
            dst_bytes.extend_from_slice(line.as_bytes());
            dst_bytes.push(b'\n');
            continue;
        } else {
            &mut kept
        };
        target.push_str(line);
        target.push('\n');
    }
    ov.changes.insert(src.to_owned(), Some(kept.into_bytes()));
    ov.changes.insert(dst.to_owned(), Some(dst_bytes));
    Ok(())
}
