//! Which names may appear in vdbnet documents.

/// A database name: 1–64 bytes of `[a-z0-9_-]`, starting with a letter or digit (`daily`,
/// `main`, `bytecode`, `safebrowsing`, `test`, `local-extra`).
pub fn is_safe_db_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A file name a mirror may serve: 1–128 bytes of `[A-Za-z0-9._-]`, not starting with a dot,
/// no `..`, and never a `local_*` name (those belong to the mirror operator, not to a release).
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && !name.contains("..")
        && !name.starts_with("local_")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_names() {
        for ok in ["daily", "main", "bytecode", "safebrowsing", "test", "x-1_b"] {
            assert!(is_safe_db_name(ok), "{ok}");
        }
        for bad in ["", "Daily", "-x", "a/b", "a.b", "..", &"a".repeat(65)] {
            assert!(!is_safe_db_name(bad), "{bad}");
        }
    }

    #[test]
    fn file_names() {
        for ok in [
            "daily.cvd",
            "daily-27543.cdiff",
            "main-62.cvd.sign",
            "x.ndb",
            "timestamp",
        ] {
            assert!(is_safe_file_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "../x",
            "a/b",
            "a\\b",
            "a..b",
            "local_logo.png",
            "a b",
            "é",
            "a\0",
        ] {
            assert!(!is_safe_file_name(bad), "{bad:?}");
        }
    }
}
