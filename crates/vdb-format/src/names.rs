//! File-name rules shared by the tar reader, the `.info` parser and the cdiff interpreter.

/// Whether `name` is safe as a member / file name inside a database directory: 1–99 bytes
/// of ASCII letters, digits, `.`, `_`, `-`; not starting with `.`; no path separators.
pub fn is_safe_member_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Whether `name` is acceptable to a cdiff `OPEN`/`UNLINK`/`MOVE`: ClamAV allows only
/// alphanumerics and `.`; we also refuse names made only of dots and non-ASCII letters.
pub fn is_cdiff_file_name(name: &str) -> bool {
    is_safe_member_name(name) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

/// The extensions sigtool packs, in the order it packs them (spec §1.2).
pub(crate) const SIGTOOL_EXT_ORDER: [&str; 29] = [
    "cfg", "ign", "ign2", "ftm", "db", "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu",
    "ndb", "ndu", "ldb", "ldu", "sdb", "zmd", "rmd", "idb", "fp", "sfp", "gdb", "pdb", "wdb",
    "crb", "cdb", "imp",
];

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn safe_names_never_escape(name in "\\PC{0,40}") {
            if is_safe_member_name(&name) {
                prop_assert!(!name.contains('/') && !name.contains('\\'));
                prop_assert!(!name.starts_with('.'));
                let p = std::path::Path::new(&name);
                prop_assert_eq!(p.components().count(), 1);
                prop_assert!(matches!(p.components().next(), Some(std::path::Component::Normal(_))));
            }
        }
    }

    #[test]
    fn examples() {
        assert!(is_safe_member_name("daily.ndb"));
        assert!(is_safe_member_name("COPYING"));
        assert!(!is_safe_member_name(".."));
        assert!(!is_safe_member_name("../x"));
        assert!(!is_safe_member_name("a/b"));
        assert!(!is_cdiff_file_name("a-b.ndb"));
        assert!(is_cdiff_file_name("daily.ndb"));
    }
}
