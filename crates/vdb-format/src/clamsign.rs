//! ClamAV 1.5's external `.sign` files (spec §3): `<db>-<V>.cvd.sign` beside a CVD and
//! `<db>-<N>.cdiff.sign` beside a cdiff, each a list of detached PKCS#7 signatures over the whole
//! target file.
//!
//! ```text
//! #clamsign-1.0
//! 230::pkcs7-pem:<base64 of a DER PKCS#7 SignedData, one line>
//! ```
//!
//! Parsing ([`SignFile::parse`]) is always available and strict: the first line must be
//! `#clamsign-1.0`, every other line blank, a `#` comment or `min:max:pkcs7-pem:base64`, within
//! [`MAX_SIGN_FILE`] bytes and [`MAX_LINES`] signature lines. Verification ([`Certs`],
//! [`SignFile::verify`]) needs the `pkcs7` feature: it is OpenSSL's `PKCS7_verify` with the flags
//! ClamAV passes (`DETACHED|BINARY|NOCRL`) against a store made of every certificate of a
//! directory laid out like ClamAV's `certs/`, so that a file vdbnet accepts is one the real
//! ClamAV accepts, purpose checks and validity dates included.

use std::fmt;

use base64::Engine as _;

/// The first line of every `.sign` file.
pub const MAGIC: &str = "#clamsign-1.0";
/// Largest `.sign` file read (ClamAV's own are about 5 KiB a signature).
pub const MAX_SIGN_FILE: usize = 256 * 1024;
/// Most signature lines in one file.
pub const MAX_LINES: usize = 16;
/// The feature level of ClamAV 1.5.0, the first that reads `.sign` files.
pub const FIRST_SIGN_FLEVEL: u32 = 230;

/// Why a `.sign` file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Larger than [`MAX_SIGN_FILE`].
    #[error("the .sign file is larger than {MAX_SIGN_FILE} bytes")]
    TooLarge,
    /// Not text, or the first line is not `#clamsign-1.0`.
    #[error("not a .sign file: {0}")]
    NotSignFile(&'static str),
    /// A signature line that does not parse.
    #[error("line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: &'static str,
    },
    /// More than [`MAX_LINES`] signature lines, or none.
    #[error("a .sign file has 1 to {MAX_LINES} signature lines; this one has {0}")]
    LineCount(usize),
    /// The certificate directory cannot be used.
    #[error("certificate directory: {0}")]
    Certs(String),
    /// A signature that does not verify.
    #[error("line {line}: the PKCS#7 signature does not verify: {why}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// OpenSSL's reason.
        why: String,
    },
}

/// One signature line.
#[derive(Clone, PartialEq, Eq)]
pub struct SignLine {
    /// 1-based line number in the file.
    pub line: usize,
    /// Lowest feature level the line applies to.
    pub min_flevel: u32,
    /// Highest feature level it applies to (none: no upper bound).
    pub max_flevel: Option<u32>,
    /// The DER PKCS#7 SignedData.
    pub der: Vec<u8>,
}

impl fmt::Debug for SignLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignLine")
            .field("line", &self.line)
            .field("min_flevel", &self.min_flevel)
            .field("max_flevel", &self.max_flevel)
            .field("der_len", &self.der.len())
            .finish()
    }
}

impl SignLine {
    /// Whether an engine of feature level `flevel` reads this line.
    pub fn applies_to(&self, flevel: u32) -> bool {
        flevel >= self.min_flevel && self.max_flevel.is_none_or(|m| flevel <= m)
    }
}

/// A parsed `.sign` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignFile {
    /// The signature lines, in file order.
    pub lines: Vec<SignLine>,
}

fn flevel(s: &str, line: usize, what: &'static str) -> Result<u32, SignError> {
    if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignError::Line { line, why: what });
    }
    s.parse().map_err(|_| SignError::Line { line, why: what })
}

impl SignFile {
    /// Parses a `.sign` file (strictly: one accepted encoding of each line).
    pub fn parse(bytes: &[u8]) -> Result<Self, SignError> {
        if bytes.len() > MAX_SIGN_FILE {
            return Err(SignError::TooLarge);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| SignError::NotSignFile("not UTF-8"))?;
        if !text.is_ascii() {
            return Err(SignError::NotSignFile("not ASCII"));
        }
        let mut raw = text.split('\n');
        let first = raw.next().unwrap_or_default().trim_end_matches('\r');
        if first != MAGIC {
            return Err(SignError::NotSignFile(
                "the first line is not #clamsign-1.0",
            ));
        }
        let mut lines = Vec::new();
        for (i, l) in raw.enumerate() {
            let n = i + 2;
            let l = l.trim_end_matches('\r');
            if l.trim().is_empty() || l.starts_with('#') {
                continue;
            }
            let mut f = l.splitn(4, ':');
            let (Some(min), Some(max), Some(format), Some(data)) =
                (f.next(), f.next(), f.next(), f.next())
            else {
                return Err(SignError::Line {
                    line: n,
                    why: "not min:max:format:data",
                });
            };
            if format != "pkcs7-pem" {
                return Err(SignError::Line {
                    line: n,
                    why: "the only signature format is pkcs7-pem",
                });
            }
            let min_flevel = flevel(min, n, "the minimum feature level is not a number")?;
            let max_flevel = if max.is_empty() {
                None
            } else {
                Some(flevel(max, n, "the maximum feature level is not a number")?)
            };
            if max_flevel.is_some_and(|m| m < min_flevel) {
                return Err(SignError::Line {
                    line: n,
                    why: "the maximum feature level is below the minimum",
                });
            }
            let der = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| SignError::Line {
                    line: n,
                    why: "the signature is not canonical base64",
                })?;
            if der.is_empty() {
                return Err(SignError::Line {
                    line: n,
                    why: "empty signature",
                });
            }
            lines.push(SignLine {
                line: n,
                min_flevel,
                max_flevel,
                der,
            });
            if lines.len() > MAX_LINES {
                return Err(SignError::LineCount(lines.len()));
            }
        }
        if lines.is_empty() {
            return Err(SignError::LineCount(0));
        }
        Ok(Self { lines })
    }

    /// The line an engine of feature level `flevel` reads first (ClamAV tries lines in order and
    /// the first applicable one decides).
    pub fn first_for(&self, flevel: u32) -> Option<&SignLine> {
        self.lines.iter().find(|l| l.applies_to(flevel))
    }

    /// The lines that decide for at least one engine that reads `.sign` files (feature level
    /// [`FIRST_SIGN_FLEVEL`] or later), each with one such feature level: a line no engine
    /// reads (its range ends before 1.5, or earlier lines cover it) is left out.
    pub fn deciding_lines(&self) -> Vec<(&SignLine, u32)> {
        let mut out = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            let earlier = &self.lines[..i];
            // The feature levels not covered by earlier lines start at the line's own start or
            // right after an earlier line's end: one of these reads the line, if any does.
            let candidates = std::iter::once(line.min_flevel.max(FIRST_SIGN_FLEVEL)).chain(
                earlier
                    .iter()
                    .filter_map(|e| e.max_flevel.and_then(|m| m.checked_add(1))),
            );
            let reader = candidates
                .filter(|&f| f >= FIRST_SIGN_FLEVEL && line.applies_to(f))
                .find(|&f| !earlier.iter().any(|e| e.applies_to(f)));
            if let Some(f) = reader {
                out.push((line, f));
            }
        }
        out
    }
}

#[cfg(feature = "pkcs7")]
pub use verify::{Certs, Verdict};

#[cfg(feature = "pkcs7")]
mod verify {
    use std::path::Path;

    use openssl::nid::Nid;
    use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
    use openssl::stack::Stack;
    use openssl::x509::store::{X509Store, X509StoreBuilder};
    use openssl::x509::{X509, X509Ref};

    use super::{SignError, SignFile, SignLine};

    /// Most certificate files read from a directory, and most bytes of one.
    const MAX_CERT_FILES: usize = 64;
    const MAX_CERT_FILE: u64 = 1 << 20;

    /// The trust anchors of `.sign` verification: every certificate in every `*.pem` and `*.crt`
    /// file of a directory (not recursive), as ClamAV loads its `certs/` (spec §3.3).
    pub struct Certs {
        store: X509Store,
        names: Vec<String>,
    }

    impl std::fmt::Debug for Certs {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Certs").field("names", &self.names).finish()
        }
    }

    /// How a `.sign` file judges its target for one engine.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Verdict {
        /// The first applicable line verifies; the signer's common name.
        Accepted(String),
        /// No line applies to this feature level: the engine falls back to the legacy check.
        NotApplicable,
    }

    fn common_name(cert: &X509Ref) -> String {
        cert.subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok())
            .unwrap_or_default()
    }

    impl Certs {
        /// Loads a certificate directory. As in ClamAV 1.5, the directory must exist, and two
        /// certificates with the same common name are an error.
        pub fn load_dir(dir: &Path) -> Result<Self, SignError> {
            let err = |what: String| SignError::Certs(format!("{}: {what}", dir.display()));
            let entries = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
            let mut paths = Vec::new();
            for e in entries {
                let p = e.map_err(|e| err(e.to_string()))?.path();
                let ext = p.extension().and_then(|x| x.to_str()).unwrap_or_default();
                if (ext == "pem" || ext == "crt") && p.is_file() {
                    paths.push(p);
                }
            }
            paths.sort();
            if paths.len() > MAX_CERT_FILES {
                return Err(err(format!("more than {MAX_CERT_FILES} certificate files")));
            }
            let mut builder = X509StoreBuilder::new().map_err(|e| err(e.to_string()))?;
            let mut names = Vec::new();
            for p in &paths {
                let len = std::fs::metadata(p).map_err(|e| err(e.to_string()))?.len();
                if len > MAX_CERT_FILE {
                    return Err(err(format!("{} is larger than 1 MiB", p.display())));
                }
                let pem = std::fs::read(p).map_err(|e| err(e.to_string()))?;
                let certs =
                    X509::stack_from_pem(&pem).map_err(|e| err(format!("{}: {e}", p.display())))?;
                for c in certs {
                    let cn = common_name(&c);
                    if names.contains(&cn) {
                        return Err(err(format!("two certificates are named {cn:?}")));
                    }
                    names.push(cn);
                    builder.add_cert(c).map_err(|e| err(e.to_string()))?;
                }
            }
            if names.is_empty() {
                return Err(err("no certificate (*.pem, *.crt)".into()));
            }
            Ok(Self {
                store: builder.build(),
                names,
            })
        }

        /// The common names of the trust anchors.
        pub fn names(&self) -> &[String] {
            &self.names
        }

        fn verify_line(&self, line: &SignLine, target: &[u8]) -> Result<String, SignError> {
            let invalid = |why: String| SignError::Invalid {
                line: line.line,
                why,
            };
            let p7 = Pkcs7::from_der(&line.der).map_err(|e| invalid(e.to_string()))?;
            let flags = Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY | Pkcs7Flags::NOCRL;
            let none: Stack<X509> = Stack::new().map_err(|e| invalid(e.to_string()))?;
            p7.verify(&none, &self.store, Some(target), None, flags)
                .map_err(|e| invalid(e.to_string()))?;
            let signer = p7
                .signers(&none, flags)
                .ok()
                .and_then(|s| s.iter().next().map(common_name))
                .unwrap_or_default();
            Ok(signer)
        }
    }

    impl SignFile {
        /// What an engine of feature level `flevel` makes of this file for `target` (spec §3.4):
        /// the first applicable line decides; a line that fails is a rejection (no fallback).
        pub fn verify(
            &self,
            target: &[u8],
            certs: &Certs,
            flevel: u32,
        ) -> Result<Verdict, SignError> {
            match self.first_for(flevel) {
                None => Ok(Verdict::NotApplicable),
                Some(line) => certs.verify_line(line, target).map(Verdict::Accepted),
            }
        }

        /// Verifies every line (a publisher's file must hold for every engine that reads it);
        /// returns the signers' common names in line order.
        pub fn verify_all(&self, target: &[u8], certs: &Certs) -> Result<Vec<String>, SignError> {
            self.lines
                .iter()
                .map(|l| certs.verify_line(l, target))
                .collect()
        }

        /// Verifies every line that decides for some engine ([`SignFile::deciding_lines`]): what
        /// a file must pass to be safe for every ClamAV that reads it. Returns the signers'
        /// common names in line order; empty when no engine reads any line (every engine then
        /// falls back to the legacy signature).
        pub fn verify_for_every_engine(
            &self,
            target: &[u8],
            certs: &Certs,
        ) -> Result<Vec<String>, SignError> {
            self.deciding_lines()
                .into_iter()
                .map(|(l, _)| certs.verify_line(l, target))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(min: &str, max: &str, data: &str) -> String {
        format!("{MAGIC}\n{min}:{max}:pkcs7-pem:{data}\n")
    }

    #[test]
    fn strict_parse() {
        let ok = SignFile::parse(line("230", "", "AAEC").as_bytes()).unwrap();
        assert_eq!(ok.lines.len(), 1);
        assert_eq!(ok.lines[0].der, [0, 1, 2]);
        assert!(ok.lines[0].applies_to(230) && !ok.lines[0].applies_to(229));
        assert!(ok.first_for(255).is_some());
        let bounded = SignFile::parse(line("230", "240", "AAEC").as_bytes()).unwrap();
        assert!(bounded.first_for(241).is_none());
        for (bad, why) in [
            (String::new(), "empty"),
            ("#clamsign-2.0\n230::pkcs7-pem:AAEC\n".into(), "version"),
            (format!("{MAGIC}\n"), "no line"),
            (line("230", "", "AA=C"), "bad base64"),
            (line("230", "", "AAE"), "unpadded base64"),
            (line("+230", "", "AAEC"), "signed number"),
            (line("230", "200", "AAEC"), "max below min"),
            (format!("{MAGIC}\n230::pkcs7-der:AAEC\n"), "format"),
            (format!("{MAGIC}\n230:pkcs7-pem\n"), "fields"),
            (format!("{MAGIC}\n230::pkcs7-pem:AAEC\u{e9}\n"), "not ASCII"),
        ] {
            assert!(SignFile::parse(bad.as_bytes()).is_err(), "{why}");
        }
        let many: String = std::iter::once(format!("{MAGIC}\n"))
            .chain((0..=MAX_LINES).map(|_| "230::pkcs7-pem:AAEC\n".to_owned()))
            .collect();
        assert_eq!(
            SignFile::parse(many.as_bytes()),
            Err(SignError::LineCount(MAX_LINES + 1))
        );
        assert_eq!(
            SignFile::parse(&vec![b'#'; MAX_SIGN_FILE + 1]),
            Err(SignError::TooLarge)
        );
        // Which lines decide for some engine of 1.5 or later.
        let deciding = |text: &str| -> Vec<(usize, u32)> {
            SignFile::parse(text.as_bytes())
                .unwrap()
                .deciding_lines()
                .into_iter()
                .map(|(l, f)| (l.line, f))
                .collect()
        };
        assert_eq!(deciding(&line("230", "", "AAEC")), [(2, 230)]);
        assert_eq!(deciding(&line("0", "", "AAEC")), [(2, 230)]);
        assert_eq!(
            deciding(&line("100", "229", "AAEC")),
            Vec::<(usize, u32)>::new()
        );
        let two = |a: &str, b: &str| format!("{MAGIC}\n{a}:pkcs7-pem:AAEC\n{b}:pkcs7-pem:AAEC\n");
        assert_eq!(deciding(&two("230:", "240:")), [(2, 230)], "shadowed");
        assert_eq!(deciding(&two("230:239", "230:")), [(2, 230), (3, 240)]);
        assert_eq!(deciding(&two("250:", "0:")), [(2, 250), (3, 230)]);
        assert_eq!(deciding(&two("0:229", "231:")), [(3, 231)]);
        // Comments, blank lines and CRLF are read as ClamAV reads them.
        let c = format!("{MAGIC}\r\n# a comment\r\n\r\n230::pkcs7-pem:AAEC\r\n");
        assert_eq!(SignFile::parse(c.as_bytes()).unwrap().lines.len(), 1);
    }
}
