use std::collections::BTreeMap;

use crate::error::{CdiffError, Error};

use super::*;

fn store(files: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(n, c)| ((*n).to_owned(), c.as_bytes().to_vec()))
        .collect()
}

fn run_script(files: &[(&str, &str)], script: &str) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let mut s = store(files);
    apply(&Script::parse(script.as_bytes())?, &mut s)?;
    Ok(s)
}

const X: &str = "l1 a\nl2 b\nl3 c\nl4 d\n";

fn text(s: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
    String::from_utf8(s[name].clone()).unwrap()
}

// Each case below was observed with the real sigtool 1.4.6 `--run-cdiff`.
#[test]
fn matches_clamav_146() {
    let s = run_script(
        &[("x.ndb", X)],
        "OPEN x.ndb\nXCHG 3 l3 NEW3\nXCHG 1 l1 NEW1\nCLOSE\n",
    )
    .unwrap();
    assert_eq!(text(&s, "x.ndb"), "NEW1\nl2 b\nNEW3\nl4 d\n");
    let s = run_script(&[("x.ndb", X)], "OPEN x.ndb\nDEL 3 l3\nDEL 1 l1\nCLOSE\n").unwrap();
    assert_eq!(text(&s, "x.ndb"), "l2 b\nl4 d\n");
    let s = run_script(
        &[("x.ndb", X)],
        "OPEN x.ndb\nDEL 2 l2\nXCHG 2 l2 foo\nCLOSE\n",
    )
    .unwrap();
    assert_eq!(text(&s, "x.ndb"), "l1 a\nfoo\nl3 c\nl4 d\n");
    let s = run_script(&[("x.ndb", X)], "OPEN x.ndb\nADD \nADD   spaced  \nCLOSE\n").unwrap();
    assert_eq!(text(&s, "x.ndb"), format!("{X}\n  spaced  \n"));
    let s = run_script(&[("x.ndb", X)], "OPEN y.ndb\nADD hello\nCLOSE\n").unwrap();
    assert_eq!(text(&s, "y.ndb"), "hello\n");
    let s = run_script(&[("x.ndb", X)], "UNLINK x.ndb\n").unwrap();
    assert!(s.is_empty());
    let s = run_script(
        &[("x.ndb", X), ("y.ndb", "z\n")],
        "MOVE x.ndb y.ndb 2 l2 3 l3\n",
    )
    .unwrap();
    assert_eq!(text(&s, "x.ndb"), "l1 a\nl4 d\n");
    assert_eq!(text(&s, "y.ndb"), "z\nl2 b\nl3 c\n");
}

#[test]
fn refusals_change_nothing() {
    for (script, want) in [
        ("MOVE x.ndb y.ndb 2 l2 3 l3\n", "does not exist"),
        ("OPEN x.ndb\nDEL 5 l5\nCLOSE\n", "beyond the end"),
        ("OPEN x.ndb\nDEL 2 zz\nCLOSE\n", "does not start with"),
        ("OPEN ../x.ndb\nCLOSE\n", "forbidden file name"),
        ("OPEN x.ndb\nOPEN x.ndb\n", "while x.ndb is open"),
        ("OPEN x.ndb\nADD y\n", "still open"),
        ("FOO x\n", "unknown command"),
        ("OPEN x.ndb\nXCHG 2 l2\nCLOSE\n", "missing new line"),
        ("\n", "unknown command"),
        ("OPEN ..\nCLOSE\n", "forbidden"),
        (
            "OPEN x.ndb\nXCHG 99999999999999999999999 l2 a\nCLOSE\n",
            "out of range",
        ),
    ] {
        let mut s = store(&[("x.ndb", X)]);
        let err = Script::parse(script.as_bytes())
            .and_then(|sc| apply(&sc, &mut s))
            .expect_err(script);
        assert!(err.to_string().contains(want), "{script:?}: {err}");
        assert_eq!(s, store(&[("x.ndb", X)]), "{script:?} changed the store");
    }
}

#[test]
fn diff_handles_middle_inserts_and_odd_lines() {
    for (a, b) in [
        ("a\nb\nc\n", "a\nx\nb\nc\n"),
        ("a\nb\nc\n", "c\nb\na\n"),
        ("a\nb", "a\nb\nc\n"),
        ("a\r\nb\r\n", "a\nb\nc\n"),
        (" lead\nb\n", "b\n"),
        ("a\n\nb\n", "a\nb\n"),
        ("a\n", ""),
        ("a\nb\n", " x\nb\n"),
    ] {
        let old = store(&[("f.ndb", a)]);
        let new = store(&[("f.ndb", b)]);
        let script = diff(&old, &new).unwrap();
        let mut patched = old.clone();
        let text = script.to_text();
        apply(&Script::parse(text.as_bytes()).unwrap(), &mut patched).unwrap();
        assert_eq!(patched, new, "{a:?} -> {b:?} via\n{text}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A signature-file-like line: a token, then fields, sometimes with spaces,
    /// sometimes empty or starting with whitespace, sometimes non-ASCII.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => "[A-Za-z][A-Za-z0-9.]{0,12}(:[0-9a-f*]{0,20}){0,4}",
            2 => "[A-Za-z0-9]{1,20}( [a-z]{0,6}){0,3}",
            1 => Just(String::new()),
            1 => " {1,3}[a-z]{0,5}",
            1 => "#[ -~]{0,20}",
            1 => "[a-zé]{1,18}",
        ]
    }

    fn file() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(line(), 0..25)
    }

    fn text(lines: &[String]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    /// Derives a new version of a file: deletions, changes, insertions anywhere.
    fn mutate(old: Vec<String>, edits: Vec<(usize, u8, String)>) -> Vec<String> {
        let mut new = old;
        for (at, op, l) in edits {
            let at = if new.is_empty() {
                0
            } else {
                at % (new.len() + 1)
            };
            match op % 3 {
                0 if at < new.len() => {
                    new.remove(at);
                }
                1 if at < new.len() => new[at] = l,
                _ => new.insert(at, l),
            }
        }
        new
    }

    /// The plain definition of applying edits: split into lines the ClamAV way, rewrite
    /// every line. `apply_edits` must give the same bytes and the same verdict.
    fn apply_edits_reference(
        bytes: &[u8],
        edits: &BTreeMap<usize, (String, Option<String>)>,
    ) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let lines = lines_of(text);
        let mut out = Vec::new();
        for (at, (prefix, _)) in edits {
            if *at == 0 || *at > lines.len() || !lines[at - 1].starts_with(prefix.as_str()) {
                return None;
            }
        }
        for (i, line) in lines.iter().enumerate() {
            match edits.get(&(i + 1)) {
                Some((_, None)) => {}
                Some((_, Some(new))) => {
                    out.extend_from_slice(new.as_bytes());
                    out.push(b'\n');
                }
                None => {
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'\n');
                }
            }
        }
        Some(out)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn apply_edits_matches_the_reference(
            raw in "([a-c]{0,3}(\r|\n|\r\n)?){0,12}",
            edits in proptest::collection::btree_map(0usize..14, ("[a-c]{0,2}", proptest::option::of("[x-z]{0,3}")), 0..5),
        ) {
            let fast = apply_edits("f", raw.as_bytes(), &edits).ok();
            let slow = apply_edits_reference(raw.as_bytes(), &edits);
            prop_assert_eq!(fast, slow, "input {:?} edits {:?}", raw, edits);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Fed in pieces of any size (a line, a `\r\n` or a character split between two),
        /// the streaming editor gives the same bytes and verdict as the reference.
        #[test]
        fn edit_stream_in_pieces_matches_the_reference(
            raw in "([a-cé]{0,3}(\r|\n|\r\n)?){0,12}",
            edits in proptest::collection::btree_map(0usize..14, ("[a-c]{0,2}", proptest::option::of("[x-z]{0,3}")), 0..5),
            cuts in proptest::collection::vec(1usize..5, 0..30),
        ) {
            let bytes = raw.as_bytes();
            let streamed = (|| {
                let mut e = EditStream::new("f", &edits, Vec::new()).ok()?;
                let mut rest = bytes;
                for n in cuts {
                    let (piece, tail) = rest.split_at(n.min(rest.len()));
                    e.write(piece).ok()?;
                    rest = tail;
                }
                e.write(rest).ok()?;
                e.finish().ok()
            })();
            prop_assert_eq!(streamed, apply_edits_reference(bytes, &edits), "input {:?} edits {:?}", raw, edits);
        }
    }

    #[test]
    fn edit_stream_rejects_split_invalid_utf8() {
        let edits = Edits::new();
        let mut e = EditStream::new("f", &edits, Vec::new()).unwrap();
        e.write(b"a\xc3").unwrap();
        assert!(e.write(b"(\n").is_err());
        let mut e = EditStream::new("f", &edits, Vec::new()).unwrap();
        e.write(b"a\xc3").unwrap();
        e.write(b"\xa9\n").unwrap();
        assert_eq!(e.finish().unwrap(), "aé\n".as_bytes());
        let mut e = EditStream::new("f", &edits, Vec::new()).unwrap();
        e.write(b"a\xe2\x82").unwrap();
        assert!(e.finish().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn apply_diff_is_identity(
            a in file(),
            b in file(),
            c in file(),
            edits in proptest::collection::vec((0usize..40, any::<u8>(), line()), 0..12),
            drop_c in any::<bool>(),
        ) {
            let old: BTreeMap<String, Vec<u8>> = [
                ("x.info".to_owned(), text(&a)),
                ("x.ndb".to_owned(), text(&b)),
                ("x.hdb".to_owned(), text(&c)),
            ].into_iter().collect();
            let mut new = old.clone();
            new.insert("x.ndb".into(), text(&mutate(b.clone(), edits.clone())));
            new.insert("x.info".into(), text(&mutate(a.clone(), edits)));
            if drop_c {
                new.remove("x.hdb");
            }
            if !a.is_empty() {
                new.insert("x.ldb".into(), text(&a));
            }
            match diff(&old, &new) {
                Ok(script) => {
                    let text = script.to_text();
                    let mut patched = old.clone();
                    apply(&Script::parse(text.as_bytes()).unwrap(), &mut patched)
                        .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                    prop_assert_eq!(patched, new, "script:\n{}", text);
                }
                // Only a handful of differences are truly inexpressible.
                Err(Error::Cdiff(CdiffError::Inexpressible(why))) => {
                    prop_assert!(why.contains("prefix") || why.contains("empty"), "{}", why);
                }
                Err(e) => return Err(TestCaseError::fail(e.to_string())),
            }
        }
    }
}
