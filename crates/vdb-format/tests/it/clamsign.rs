//! ClamAV 1.5 `.sign` files: ClamAV's own fixtures verify against its test CA, and nothing else
//! does (another root, another file, one changed byte, a relabelled line).

use std::path::Path;

use vdb_format::clamsign::{Certs, SignError, SignFile, Verdict};

use crate::fixtures::{fixture, fixture_dir};

const FLEVEL_1_5: u32 = 233;
const SIGNER: &str = "ClamAV TEST CVD Signing Cert";

fn test_ca() -> Certs {
    Certs::load_dir(&fixture_dir().join("certs")).unwrap()
}

/// A directory holding only ClamAV's official root (what a client trusts by default).
fn official_only() -> (tempfile::TempDir, Certs) {
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_dir().join("certs/clamav-official-root.crt"),
        d.path().join("clamav.crt"),
    )
    .unwrap();
    let c = Certs::load_dir(d.path()).unwrap();
    (d, c)
}

fn targets() -> Vec<String> {
    (1..=6)
        .map(|v| format!("test-{v}.cvd"))
        .chain((2..=6).map(|v| format!("test-{v}.cdiff")))
        .collect()
}

#[test]
fn every_fixture_sign_file_verifies_against_the_test_ca_only() {
    let certs = test_ca();
    let (_d, official) = official_only();
    for t in targets() {
        let sign = SignFile::parse(&fixture(&format!("{t}.sign"))).unwrap();
        let bytes = fixture(&t);
        assert_eq!(
            sign.verify(&bytes, &certs, FLEVEL_1_5).unwrap(),
            Verdict::Accepted(SIGNER.into()),
            "{t}"
        );
        assert_eq!(sign.verify_all(&bytes, &certs).unwrap(), [SIGNER]);
        // An engine older than 1.5 reads no line: the legacy check decides.
        assert_eq!(
            sign.verify(&bytes, &certs, 229).unwrap(),
            Verdict::NotApplicable
        );
        // The official root alone does not trust the test CA: refused, no fallback.
        assert!(
            matches!(
                sign.verify(&bytes, &official, FLEVEL_1_5),
                Err(SignError::Invalid { line: 2, .. })
            ),
            "{t}"
        );
    }
}

#[test]
fn a_sign_file_covers_its_own_file_byte_for_byte() {
    let certs = test_ca();
    let sign = SignFile::parse(&fixture("test-3.cvd.sign")).unwrap();
    // Another file of the same database.
    assert!(
        sign.verify(&fixture("test-4.cvd"), &certs, FLEVEL_1_5)
            .is_err()
    );
    // One changed byte anywhere: header, body, end.
    let bytes = fixture("test-3.cvd");
    for off in [0, 100, 511, 512, bytes.len() / 2, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[off] ^= 1;
        assert!(
            sign.verify(&b, &certs, FLEVEL_1_5).is_err(),
            "flip at {off} accepted"
        );
    }
    // Bytes appended after the file.
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(sign.verify(&longer, &certs, FLEVEL_1_5).is_err());
    // A damaged signature.
    let mut der = sign.clone();
    let n = der.lines[0].der.len();
    der.lines[0].der[n - 10] ^= 1;
    assert!(der.verify(&bytes, &certs, FLEVEL_1_5).is_err());
}

#[test]
fn the_first_applicable_line_decides() {
    let certs = test_ca();
    let text = String::from_utf8(fixture("test-2.cdiff.sign")).unwrap();
    let line = text.lines().nth(1).unwrap().to_owned();
    let data = line.split_once("pkcs7-pem:").unwrap().1;
    let target = fixture("test-2.cdiff");
    // A line for later engines only: skipped; the valid one after it decides.
    let later = format!("#clamsign-1.0\n250::pkcs7-pem:{data}\n{line}\n");
    let s = SignFile::parse(later.as_bytes()).unwrap();
    assert_eq!(
        s.verify(&target, &certs, FLEVEL_1_5).unwrap(),
        Verdict::Accepted(SIGNER.into())
    );
    // A failing applicable line first: refused although a valid line follows.
    let other = String::from_utf8(fixture("test-3.cdiff.sign")).unwrap();
    let bad_first = format!("#clamsign-1.0\n{}\n{line}\n", other.lines().nth(1).unwrap());
    let s = SignFile::parse(bad_first.as_bytes()).unwrap();
    assert!(s.verify(&target, &certs, FLEVEL_1_5).is_err());
    assert!(s.verify_all(&target, &certs).is_err());
}

#[test]
fn certificate_directories_as_clamav_reads_them() {
    let missing = Certs::load_dir(Path::new("/nonexistent/vdbnet-certs")).unwrap_err();
    assert!(matches!(missing, SignError::Certs(_)), "{missing}");
    let empty = tempfile::tempdir().unwrap();
    assert!(Certs::load_dir(empty.path()).is_err(), "no certificate");
    // The same certificate twice (same common name): an error, as in ClamAV.
    let d = tempfile::tempdir().unwrap();
    for n in ["a.crt", "b.pem"] {
        std::fs::copy(
            fixture_dir().join("certs/clamav-test.crt"),
            d.path().join(n),
        )
        .unwrap();
    }
    let e = Certs::load_dir(d.path()).unwrap_err().to_string();
    assert!(e.contains("two certificates"), "{e}");
    assert_eq!(test_ca().names().len(), 4);
}
