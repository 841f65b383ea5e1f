//! Diff generation: a script that turns one set of files into another, as sigtool writes it.

use std::collections::BTreeMap;

use crate::error::{CdiffError, Error};
use crate::names::is_cdiff_file_name;
use crate::store::FileStore;

use super::*;

/// The prefix sigtool writes for DEL/XCHG: the old line's first ≤16 bytes, cut at the first
/// whitespace. `None` when that is empty (the line starts with whitespace or is empty).
pub(super) fn prefix_of(line: &str) -> Option<String> {
    let mut end = line.len().min(16);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let p = line[..end].split(char::is_whitespace).next().unwrap_or("");
    (!p.is_empty()).then(|| p.to_owned())
}

/// Generates a script that turns the files of `old` into the files of `new`
/// (every file name of both; names must be cdiff-safe).
pub fn diff(old: &dyn FileStore, new: &dyn FileStore) -> Result<Script, Error> {
    let io = |e: std::io::Error| Error::io("listing files for the diff", e);
    let old_names = old.names().map_err(io)?;
    let new_names = new.names().map_err(io)?;
    let mut names: Vec<String> = old_names.iter().chain(&new_names).cloned().collect();
    names.sort();
    names.dedup();
    // The manifest first, as sigtool does.
    names.sort_by_key(|n| !n.ends_with(".info"));
    let mut commands = Vec::new();
    for name in names {
        let read = |s: &dyn FileStore| {
            s.read(&name)
                .map_err(|e| Error::io(format!("reading {name}"), e))
        };
        let (a, b) = (read(old)?, read(new)?);
        if a == b {
            continue;
        }
        if !is_cdiff_file_name(&name) {
            return Err(CdiffError::Inexpressible(format!(
                "file name {name:?} is not allowed in a cdiff"
            ))
            .into());
        }
        match (a, b) {
            (Some(_), None) => commands.push(Command::Unlink(name)),
            (a, Some(b)) => commands.extend(diff_file(&name, a.as_deref(), &b)?),
            (None, None) => {}
        }
    }
    Ok(Script {
        commands: commands.into_iter().map(|c| (0, c)).collect(),
    })
}

pub(super) fn inexpressible(name: &str, why: &str) -> Error {
    CdiffError::Inexpressible(format!("{name}: {why}")).into()
}

pub(super) fn diff_file(name: &str, old: Option<&[u8]>, new: &[u8]) -> Result<Vec<Command>, Error> {
    let new_text = std::str::from_utf8(new)
        .map_err(|_| inexpressible(name, "new version is not UTF-8 text"))?;
    if !new_text.is_empty() && !new_text.ends_with('\n') {
        return Err(inexpressible(
            name,
            "new version does not end with a newline",
        ));
    }
    let new_lines = lines_of(new_text);
    if new_text.split('\n').any(|l| l.ends_with('\r')) {
        return Err(inexpressible(name, "new version has CRLF line endings"));
    }
    let Some(old) = old else {
        if new_lines.is_empty() {
            return Err(inexpressible(
                name,
                "a new empty file cannot be created by a cdiff",
            ));
        }
        return Ok(recreate(name, &new_lines, false));
    };
    let old_text = std::str::from_utf8(old)
        .map_err(|_| inexpressible(name, "old version is not UTF-8 text"))?;
    let old_lines = lines_of(old_text);
    let old_clean = old_text.is_empty() || (old_text.ends_with('\n') && !old_text.contains('\r'));

    let ops = similar::capture_diff_slices(similar::Algorithm::Myers, &old_lines, &new_lines);
    // (old index → replacement or deletion), appended lines.
    let mut edits: BTreeMap<usize, Option<&str>> = BTreeMap::new();
    let mut adds: Vec<&str> = Vec::new();
    let mut tail_from: Option<(usize, usize)> = None;
    for op in &ops {
        if tail_from.is_some() {
            break;
        }
        match *op {
            similar::DiffOp::Equal { .. } => {}
            similar::DiffOp::Delete {
                old_index, old_len, ..
            } => {
                for i in old_index..old_index + old_len {
                    edits.insert(i, None);
                }
            }
            similar::DiffOp::Insert {
                old_index,
                new_index,
                new_len,
            } => {
                if old_index == old_lines.len() {
                    adds.extend(&new_lines[new_index..new_index + new_len]);
                } else {
                    tail_from = Some((old_index, new_index));
                }
            }
            similar::DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => {
                let paired = old_len.min(new_len);
                for k in 0..paired {
                    edits.insert(old_index + k, Some(new_lines[new_index + k]));
                }
                for k in paired..old_len {
                    edits.insert(old_index + k, None);
                }
                if new_len > old_len {
                    if old_index + old_len == old_lines.len() {
                        adds.extend(&new_lines[new_index + paired..new_index + new_len]);
                    } else {
                        tail_from = Some((old_index + paired, new_index + paired));
                    }
                }
            }
        }
    }
    if let Some((o, n)) = tail_from {
        // An insertion in the middle: rewrite the rest of the file in place (XCHG), then
        // delete or append the difference. Order is preserved, which is all that matters.
        adds.clear();
        edits.retain(|&i, _| i < o);
        let (old_rest, new_rest) = (old_lines.len() - o, new_lines.len() - n);
        for k in 0..old_rest.min(new_rest) {
            if old_lines[o + k] != new_lines[n + k] {
                edits.insert(o + k, Some(new_lines[n + k]));
            }
        }
        for k in new_rest..old_rest {
            edits.insert(o + k, None);
        }
        adds.extend(&new_lines[n + old_rest.min(new_rest)..]);
    }
    if !old_clean && edits.is_empty() {
        // Appending to a file without a final newline (or with CRLF) would not give `new`:
        // force ClamAV to rewrite it by exchanging the last line with itself.
        if let Some(last) = old_lines.len().checked_sub(1) {
            edits.insert(last, Some(old_lines[last]));
        }
    }
    let mut commands = vec![Command::Open(name.to_owned())];
    for (&i, &new) in &edits {
        let prefix = prefix_of(old_lines[i]);
        match (new, prefix) {
            (None, Some(prefix)) => commands.push(Command::Del {
                line: i + 1,
                prefix,
            }),
            // A replacement starting with whitespace would lose it to the argument split.
            (Some(text), Some(prefix)) if !text.starts_with(char::is_whitespace) => {
                commands.push(Command::Xchg {
                    line: i + 1,
                    prefix,
                    text: text.to_owned(),
                });
            }
            // No usable prefix (empty line, leading whitespace): rewrite the whole file.
            _ if new_lines.is_empty() => {
                return Err(inexpressible(
                    name,
                    "cannot empty a file whose lines have no prefix",
                ));
            }
            _ => return Ok(recreate(name, &new_lines, true)),
        }
    }
    commands.extend(adds.iter().map(|l| Command::Add((*l).to_owned())));
    commands.push(Command::Close);
    if new_lines.is_empty() && commands.len() == 2 {
        return Ok(Vec::new());
    }
    Ok(commands)
}

pub(super) fn recreate(name: &str, lines: &[&str], unlink_first: bool) -> Vec<Command> {
    let mut commands = Vec::new();
    if unlink_first {
        commands.push(Command::Unlink(name.to_owned()));
    }
    commands.push(Command::Open(name.to_owned()));
    commands.extend(lines.iter().map(|l| Command::Add((*l).to_owned())));
    commands.push(Command::Close);
    commands
}
