//! `.cdiff` incremental updates: the file layout, the script language, applying and
//! generating scripts (spec §2).
//!
//! Semantics follow ClamAV 1.4.6 as observed with `sigtool --run-cdiff`: DEL/XCHG line numbers
//! refer to the file as it was at OPEN and are applied in line order at CLOSE (a later edit of
//! the same line replaces an earlier one); ADD text is everything after `ADD ` verbatim and is
//! appended at CLOSE, creating the file if needed; a file that is edited is rewritten as
//! `\n`-terminated lines; MOVE needs both files to exist; UNLINK takes a file name and needs no
//! open file. Where ClamAV would crash or silently drop work (an empty line, a script ending
//! with a file open, MOVE onto itself), we refuse the script instead.

mod apply;
mod diff;
mod edit;
mod file;
mod script;
#[cfg(test)]
mod tests;

// The public surface (unchanged by the split), then every module's items for its siblings.
pub use apply::{Changes, apply, plan};
pub(crate) use apply::{Edits, OpenFile, Target, run};
pub use diff::diff;
pub(crate) use edit::{EditFail, EditStream};
pub use file::Cdiff;
pub use script::{Command, Script};
#[allow(unused_imports)]
use {apply::*, diff::*, edit::*, file::*, script::*};
