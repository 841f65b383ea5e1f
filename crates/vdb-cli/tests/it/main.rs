//! Process-level tests of the `vdb` binary against ClamAV's signed fixtures and the real
//! ClamAV 1.4.6 tools (`sigtool`, `clamscan`), which must be installed.

mod support;

/// `vdb!(cwd, arg, …)`: runs the `vdb` binary; each argument is anything `AsRef<OsStr>`.
macro_rules! vdb {
    ($cwd:expr, $($arg:expr),+ $(,)?) => {
        support::vdb($cwd, &[$(std::ffi::OsStr::new(&$arg)),+])
    };
}

/// `sigtool!(cwd, arg, …)`: runs the real `sigtool`.
macro_rules! sigtool {
    ($cwd:expr, $($arg:expr),+ $(,)?) => {
        support::clamav("sigtool", $cwd, &[$(std::ffi::OsStr::new(&$arg)),+])
    };
}

mod dry_run;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use support::{
    assert_same_dir, clamscan, copy_dir, eicar, field, flip_byte, fx, known_viruses, names,
    repack_cud, snapshot,
};

/// Every container fixture: the six signed CVDs, the two freshclam-built CLDs, the CUD.
fn container_fixtures() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = (1..=6).map(|v| fx(&format!("test-{v}.cvd"))).collect();
    all.push(fx("derived/test-6.from-cdiffs.cld"));
    all.push(fx("derived/test-6.from-cdiffs.gz.cld"));
    all.push(fx("derived/test-100.unsigned.cud"));
    all
}

fn cdiff_fixtures() -> Vec<PathBuf> {
    (2..=6).map(|v| fx(&format!("test-{v}.cdiff"))).collect()
}

/// A small clean file to scan, in its own directory under `tmp`.
fn small_file(tmp: &Path) -> PathBuf {
    let dir = tmp.join("scan");
    fs::create_dir_all(&dir).unwrap();
    let f = dir.join("small.txt");
    fs::write(&f, b"nothing to see here\n").unwrap();
    f
}

fn json(out: &support::Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

#[test]
fn info_agrees_with_sigtool() {
    let tmp = TempDir::new().unwrap();
    for f in container_fixtures() {
        let ours = vdb!(tmp.path(), "db", "info", &f).ok();
        let theirs = sigtool!(tmp.path(), format!("--info={}", f.display())).ok();
        assert_eq!(
            ours.stdout,
            theirs.stdout,
            "`vdb db info` and `sigtool --info` differ for {}",
            f.display()
        );
        assert!(
            ours.stderr.contains("not covered"),
            "the note about unprotected fields is missing from stderr:\n{ours}"
        );
        assert!(
            !ours.stdout.contains("not covered"),
            "the note must go to stderr, not stdout:\n{ours}"
        );

        let j = vdb!(tmp.path(), "db", "info", "--json", &f).ok();
        let v = json(&j);
        assert_eq!(v["verified"], Value::Bool(true), "{j}");
        let version: u64 = field(&theirs.stdout, "Version").parse().unwrap();
        let sigs: u64 = field(&theirs.stdout, "Signatures").parse().unwrap();
        assert_eq!(v["version"].as_u64(), Some(version), "{j}");
        assert_eq!(v["signatures"].as_u64(), Some(sigs), "{j}");
        assert!(
            j.stderr.contains("not covered")
                || v["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("not covered")),
            "the JSON output must carry the unprotected-fields note:\n{j}"
        );
    }
    // Nothing was written into the working directory.
    assert!(snapshot(tmp.path()).is_empty());
}

#[test]
fn verify_exit_codes() {
    let tmp = TempDir::new().unwrap();
    let mut all = container_fixtures();
    all.extend(cdiff_fixtures());
    let mut args = vec![OsStr::new("db"), OsStr::new("verify")];
    args.extend(all.iter().map(|f| f.as_os_str()));
    let out = support::vdb(tmp.path(), &args).ok();
    assert_eq!(out.stdout.lines().count(), all.len(), "{out}");
    for f in &all {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{}:", f.display())))
            .unwrap_or_else(|| panic!("no line for {}:\n{out}", f.display()));
        vdb_testkit::assert_contains(line, "OK");
    }

    // Flip one byte in the middle of the CVD body (after the 512-byte header), then in the
    // middle of a cdiff (its gzip'd script).
    for (good, skip) in [(fx("test-6.cvd"), 512), (fx("test-6.cdiff"), 0)] {
        let bad = tmp.path().join(good.file_name().unwrap());
        fs::copy(&good, &bad).unwrap();
        let len = fs::metadata(&bad).unwrap().len() as usize;
        flip_byte(&bad, skip + (len - skip) / 2);
        let out = vdb!(tmp.path(), "db", "verify", &good, &bad).code(1);
        let bad_prefix = format!("{}:", bad.display());
        let good_prefix = format!("{}:", good.display());
        let failed: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains("FAILED"))
            .collect();
        assert_eq!(failed.len(), 1, "exactly one FAILED line expected:\n{out}");
        assert!(failed[0].starts_with(&bad_prefix), "{out}");
        let bad_lines = out
            .stdout
            .lines()
            .filter(|l| l.starts_with(&bad_prefix))
            .count();
        assert_eq!(bad_lines, 1, "exactly one line for the bad file:\n{out}");
        let good_line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&good_prefix))
            .unwrap_or_else(|| panic!("no line for the good file:\n{out}"));
        assert!(
            good_line.contains("OK") && !good_line.contains("FAILED"),
            "{out}"
        );
        // The tampered file alone also fails, and a single good one passes.
        vdb!(tmp.path(), "db", "verify", &bad).code(1);
        vdb!(tmp.path(), "db", "verify", &good).ok();
    }
}

/// Checks a CLD we wrote at `dir/test.cld` (alone in `dir`) with the real ClamAV tools and
/// against the freshclam-built reference.
fn check_our_cld(tmp: &Path, dir: &Path, reference: &Path, compressed: bool) {
    let cld = dir.join("test.cld");
    assert_eq!(
        names(&snapshot(dir)),
        ["test.cld"],
        "the CLD must be alone in its directory"
    );
    let info = sigtool!(dir, "--info=test.cld").ok();
    assert_eq!(field(&info.stdout, "Version"), "6", "{info}");
    assert!(info.stdout.contains("Verification OK."), "{info}");
    // Our `info` prints what sigtool prints for our own output too.
    let ours = vdb!(dir, "db", "info", "test.cld").ok();
    assert_eq!(ours.stdout, info.stdout);
    let j = json(&vdb!(dir, "db", "info", "--json", "test.cld").ok());
    assert_eq!(j["compressed"], Value::Bool(compressed), "{j}");
    assert_eq!(j["kind"], "cld", "{j}");

    // The freshclam-built reference, alone in its own directory under the name test.cld.
    let ref_dir = tmp.join(format!(
        "ref-{}",
        dir.file_name().unwrap().to_string_lossy()
    ));
    fs::create_dir(&ref_dir).unwrap();
    let ref_cld = ref_dir.join("test.cld");
    fs::copy(reference, &ref_cld).unwrap();

    let scan = small_file(tmp);
    let pua = clamscan(dir, &cld, &scan, true).code(0);
    assert_eq!(known_viruses(&pua), 14, "{pua}");
    let plain = clamscan(dir, &cld, &scan, false).code(0);
    let reference_plain = clamscan(&ref_dir, &ref_cld, &scan, false).code(0);
    assert_eq!(known_viruses(&plain), 10, "{plain}");
    assert_eq!(known_viruses(&plain), known_viruses(&reference_plain));
    let reference_pua = clamscan(&ref_dir, &ref_cld, &scan, true).code(0);
    assert_eq!(known_viruses(&pua), known_viruses(&reference_pua));

    // Same members, same bytes, as the reference (member order may differ, so compare the
    // unpacked directories rather than the CLD bytes).
    let ours_dir = tmp.join(format!(
        "unpacked-{}",
        dir.file_name().unwrap().to_string_lossy()
    ));
    let theirs_dir = tmp.join(format!(
        "unpacked-ref-{}",
        dir.file_name().unwrap().to_string_lossy()
    ));
    vdb!(tmp, "db", "unpack", &cld, &ours_dir).ok();
    vdb!(tmp, "db", "unpack", &ref_cld, &theirs_dir).ok();
    assert!(!snapshot(&ours_dir).is_empty());
    assert_same_dir(&ours_dir, &theirs_dir);
    fs::remove_dir_all(&ref_dir).unwrap();
}

#[test]
fn apply_chain_matches_freshclam() {
    let tmp = TempDir::new().unwrap();
    let base = fx("test-1.cvd");
    let reference = fx("derived/test-6.from-cdiffs.cld");
    let reference_gz = fx("derived/test-6.from-cdiffs.gz.cld");

    // CVD + five cdiffs → CLD.
    let chain = tmp.path().join("chain");
    fs::create_dir(&chain).unwrap();
    let mut args = vec![OsStr::new("db"), OsStr::new("apply"), base.as_os_str()];
    let cdiffs = cdiff_fixtures();
    args.extend(cdiffs.iter().map(|c| c.as_os_str()));
    args.extend([OsStr::new("-o"), OsStr::new("test.cld")]);
    support::vdb(&chain, &args).ok();
    check_our_cld(tmp.path(), &chain, &reference, false);

    // CVD + two cdiffs → CLD v3 (plain and compressed), then CLD v3 + three cdiffs → CLD v6.
    // Both directions are covered: plain output from the compressed base and vice versa.
    let step = tmp.path().join("step");
    fs::create_dir(&step).unwrap();
    vdb!(
        &step, "db", "apply", &base, &cdiffs[0], &cdiffs[1], "-o", "t3.cld"
    )
    .ok();
    vdb!(
        &step,
        "db",
        "apply",
        &base,
        &cdiffs[0],
        &cdiffs[1],
        "-o",
        "t3.gz.cld",
        "--compress"
    )
    .ok();
    for (name, compressed) in [("t3.cld", false), ("t3.gz.cld", true)] {
        let j = json(&vdb!(&step, "db", "info", "--json", name).ok());
        assert_eq!(j["version"], 3, "{j}");
        assert_eq!(j["verified"], true, "{j}");
        assert_eq!(j["compressed"], compressed, "{j}");
    }

    for (sub, t3, compress, reference) in [
        ("next", step.join("t3.gz.cld"), false, &reference),
        ("next-gz", step.join("t3.cld"), true, &reference_gz),
    ] {
        let dir = tmp.path().join(sub);
        fs::create_dir(&dir).unwrap();
        let mut args = vec![OsStr::new("db"), OsStr::new("apply"), t3.as_os_str()];
        args.extend(cdiffs[2..].iter().map(|c| c.as_os_str()));
        args.extend([OsStr::new("-o"), OsStr::new("test.cld")]);
        if compress {
            args.push(OsStr::new("--compress"));
        }
        support::vdb(&dir, &args).ok();
        check_our_cld(tmp.path(), &dir, reference, compress);
    }
}

#[test]
fn unsigned_build_loads_in_clamscan() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    let src = t.join("u6");
    vdb!(t, "db", "unpack", &fx("test-6.cvd"), &src).ok();
    let db = t.join("db");
    fs::create_dir(&db).unwrap();
    vdb!(
        &db,
        "db",
        "build",
        &src,
        "-o",
        "test.cud",
        "--unsigned",
        "--version",
        "7"
    )
    .ok();
    assert_eq!(names(&snapshot(&db)), ["test.cud"]);
    let cud = db.join("test.cud");

    let info = sigtool!(&db, "--info=test.cud").ok();
    assert!(
        info.stdout.contains("Verification: Unsigned container"),
        "{info}"
    );
    assert_eq!(field(&info.stdout, "Version"), "7", "{info}");
    assert_eq!(field(&info.stdout, "Signatures"), "14", "{info}");
    let ours = vdb!(&db, "db", "info", "test.cud").ok();
    assert_eq!(
        ours.stdout, info.stdout,
        "vdb db info disagrees with sigtool"
    );

    let scan = small_file(t);
    let loaded = clamscan(&db, &cud, &scan, true).code(0);
    assert_eq!(known_viruses(&loaded), 14, "{loaded}");

    let eicar_file = t.join("scan").join("eicar.com");
    fs::write(&eicar_file, eicar()).unwrap();
    let hit = clamscan(&db, &cud, &eicar_file, false).code(1);
    let line = hit
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{}: ", eicar_file.display())))
        .unwrap_or_else(|| panic!("no result line for the EICAR file:\n{hit}"));
    assert!(line.ends_with(".UNOFFICIAL FOUND"), "{hit}");
}

#[test]
fn signed_build_verifies_only_with_its_keys() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    vdb!(t, "db", "keygen", "-o", "k", "--name", "itest").ok();
    assert!(t.join("k").is_file() && t.join("k.pub").is_file());
    let src = t.join("u6");
    vdb!(t, "db", "unpack", &fx("test-6.cvd"), &src).ok();
    let out = t.join("out");
    fs::create_dir(&out).unwrap();
    vdb!(
        t,
        "db",
        "build",
        "u6",
        "-o",
        "out/test.cvd",
        "--keys",
        "k",
        "--version",
        "7"
    )
    .ok();

    let verified = vdb!(t, "db", "verify", "--keys", "k.pub", "out/test.cvd").ok();
    assert!(verified.stdout.contains("OK"), "{verified}");
    let official = vdb!(t, "db", "verify", "out/test.cvd").code(1);
    assert!(official.stdout.contains("FAILED"), "{official}");
    // The private key set also verifies (it contains the public half).
    vdb!(t, "db", "verify", "--keys", "k", "out/test.cvd").ok();

    // A second, unrelated key set does not verify it.
    vdb!(t, "db", "keygen", "-o", "other").ok();
    vdb!(t, "db", "verify", "--keys", "other.pub", "out/test.cvd").code(1);

    let sig = sigtool!(&out, "--info=test.cvd");
    assert!(!sig.stdout.contains("Verification OK."), "{sig}");
    assert_ne!(sig.code, Some(0), "{sig}");
}

/// Appends `line` to `dir/name`.
fn append_line(dir: &Path, name: &str, line: &str) {
    let path = dir.join(name);
    let mut text = fs::read_to_string(&path).unwrap();
    assert!(text.ends_with('\n'));
    text.push_str(line);
    text.push('\n');
    fs::write(path, text).unwrap();
}

/// In `t`: key set `K`, test-6 unpacked in `u6`, and a copy of it in `dir` with one extra
/// line in test.ndb.
fn keys_and_test_6_plus_a_line(t: &Path, dir: &str) {
    vdb!(t, "db", "keygen", "-o", "K").ok();
    vdb!(t, "db", "unpack", &fx("test-6.cvd"), "u6").ok();
    copy_dir(&t.join("u6"), &t.join(dir));
    append_line(
        &t.join(dir),
        "test.ndb",
        "Test.Vdbnet.Extra-1:0:*:00112233445566778899aabbccddeeff",
    );
}

/// In `t`: builds the unpacked database `dir` into `out` (making its folder) as `version`,
/// signed with key set `K`.
fn build_with_k(t: &Path, dir: &str, out: &str, version: &str) {
    fs::create_dir(t.join(out).parent().unwrap()).unwrap();
    vdb!(
        t,
        "db",
        "build",
        dir,
        "-o",
        out,
        "--keys",
        "K",
        "--version",
        version
    )
    .ok();
}

#[test]
fn diff_then_apply_roundtrip_signed() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    // v7: test-6 plus one extra line in test.ndb.
    keys_and_test_6_plus_a_line(t, "d7");
    // v8: one line changed and one deleted.
    copy_dir(&t.join("d7"), &t.join("d8"));
    let ndb = t.join("d8/test.ndb");
    let text = fs::read_to_string(&ndb).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4, "{text}");
    let changed = lines[1].replacen(':', "-changed:", 1);
    lines[1] = &changed;
    lines.remove(2);
    fs::write(&ndb, format!("{}\n", lines.join("\n"))).unwrap();

    for (dir, out, version) in [("d7", "v7/test.cvd", "7"), ("d8", "v8/test.cvd", "8")] {
        build_with_k(t, dir, out, version);
    }
    let d = vdb!(
        t,
        "db",
        "diff",
        "v7/test.cvd",
        "v8/test.cvd",
        "-o",
        "test-8.cdiff",
        "--keys",
        "K"
    )
    .ok();
    assert!(d.stdout.contains("version 8"), "{d}");
    vdb!(t, "db", "verify", "--keys", "K.pub", "test-8.cdiff").ok();
    let info = json(&vdb!(t, "db", "info", "--json", "--keys", "K.pub", "test-8.cdiff").ok());
    assert_eq!(info["version"], 8, "{info}");

    vdb!(
        t,
        "db",
        "apply",
        "v7/test.cvd",
        "test-8.cdiff",
        "-o",
        "out.cld",
        "--keys",
        "K.pub"
    )
    .ok();
    let v = vdb!(t, "db", "verify", "--keys", "K.pub", "out.cld").ok();
    assert!(v.stdout.contains("out.cld: OK"), "{v}");
    vdb!(t, "db", "unpack", "--keys", "K.pub", "out.cld", "got").ok();
    vdb!(t, "db", "unpack", "--keys", "K.pub", "v8/test.cvd", "want").ok();
    assert_same_dir(&t.join("got"), &t.join("want"));
    // The data files are the ones we edited (the .info is regenerated by the build).
    assert_eq!(
        fs::read(t.join("got/test.ndb")).unwrap(),
        fs::read(&ndb).unwrap()
    );

    // Official keys: the base built with K fails first…
    let o = vdb!(
        t,
        "db",
        "apply",
        "v7/test.cvd",
        "test-8.cdiff",
        "-o",
        "o1.cld"
    )
    .code(1);
    assert!(!t.join("o1.cld").exists(), "{o}");
    // …and with an officially signed base, our cdiff is refused for its signature. (The cdiff
    // turns the official test-6 into our v7; only its signature is foreign.)
    vdb!(
        t,
        "db",
        "diff",
        &fx("test-6.cvd"),
        "v7/test.cvd",
        "-o",
        "test-7.cdiff",
        "--keys",
        "K"
    )
    .code(1); // OLD is verified with K's public half: the official test-6 does not pass.
    vdb!(
        t,
        "db",
        "diff",
        "u6",
        "v7/test.cvd",
        "-o",
        "test-7.cdiff",
        "--keys",
        "K"
    )
    .ok();
    let o = vdb!(
        t,
        "db",
        "apply",
        &fx("test-6.cvd"),
        "test-7.cdiff",
        "-o",
        "o2.cld"
    )
    .code(1);
    assert!(o.stderr.contains("cdiff signature"), "{o}");
    assert!(!t.join("o2.cld").exists(), "{o}");
    // Same for the v7→v8 cdiff on the official base.
    let o = vdb!(
        t,
        "db",
        "apply",
        &fx("test-6.cvd"),
        "test-8.cdiff",
        "-o",
        "o3.cld"
    )
    .code(1);
    assert!(o.stderr.contains("cdiff signature"), "{o}");
    vdb!(t, "db", "verify", "test-8.cdiff").code(1);
}

/// Runs `vdb db unpack FILE out` in `t` and asserts exit 1 with `out` left empty and nothing
/// else created in `t`.
#[track_caller]
fn assert_unpack_refused(t: &Path, file: &str, expect_in_stderr: &str) {
    let before = snapshot(t);
    let out = t.join("out");
    let existed = out.exists();
    let r = vdb!(t, "db", "unpack", file, "out").code(1);
    eprintln!("{r}");
    assert!(r.stderr.contains(expect_in_stderr), "{r}");
    assert!(r.stderr.contains("nothing was unpacked"), "{r}");
    if existed || out.exists() {
        let left = snapshot(&out);
        assert!(
            left.is_empty(),
            "unpack left {:?} in the target",
            names(&left)
        );
    }
    let mut after = snapshot(t);
    if !existed {
        after.remove("out/");
    }
    assert_eq!(
        names(&after),
        names(&before),
        "unpack wrote outside its target"
    );
    assert!(after == before, "unpack modified files outside its target");
}

/// An edit of a container's tar members.
type Edit = fn(&mut Vec<support::TarMember>);

#[test]
fn unpack_refuses_hostile_and_writes_nothing() {
    // 1. A signed CVD with one flipped body byte, into an existing empty directory and into a
    //    directory that does not exist yet.
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    fs::copy(fx("test-6.cvd"), t.join("test.cvd")).unwrap();
    let len = fs::metadata(t.join("test.cvd")).unwrap().len() as usize;
    flip_byte(&t.join("test.cvd"), 512 + (len - 512) / 2);
    fs::create_dir(t.join("out")).unwrap();
    assert_unpack_refused(t, "test.cvd", "MD5");
    fs::remove_dir(t.join("out")).unwrap();
    assert_unpack_refused(t, "test.cvd", "MD5");

    // 2. Unsigned CUDs with a correct header MD5 but hostile contents. Several members are
    //    streamed into the staging area before the bad one is reached: all must vanish.
    let cud = fs::read(fx("derived/test-100.unsigned.cud")).unwrap();
    let cases: [(&str, Edit, &str); 4] = [
        (
            "last member's bytes differ from .info",
            |m| {
                let last = m.last_mut().unwrap();
                let i = last.data.len() / 2;
                last.data[i] ^= 0x20;
            },
            "SHA",
        ),
        (
            "path traversal in a member name",
            |m| {
                let last = m.last_mut().unwrap();
                last.name = format!("../{}", last.name);
            },
            "../",
        ),
        (
            "member not listed in .info",
            |m| {
                let mut extra = m.last().unwrap().clone();
                extra.name = "test.evil.ndb".to_owned();
                m.push(extra);
            },
            "test.evil.ndb",
        ),
        (
            "member listed in .info is missing",
            |m| {
                m.pop();
            },
            "missing",
        ),
    ];
    // Control: an untouched re-pack unpacks fine, so the failures below are the tampering's.
    {
        let tmp = TempDir::new().unwrap();
        let t = tmp.path();
        fs::write(t.join("test.cud"), repack_cud(&cud, |_| {})).unwrap();
        vdb!(t, "db", "unpack", "test.cud", "out").ok();
        vdb!(
            t,
            "db",
            "unpack",
            &fx("derived/test-100.unsigned.cud"),
            "ref"
        )
        .ok();
        assert_same_dir(&t.join("out"), &t.join("ref"));
    }
    for (what, edit, expect) in cases {
        let tmp = TempDir::new().unwrap();
        let t = tmp.path();
        fs::write(t.join("test.cud"), repack_cud(&cud, edit)).unwrap();
        fs::create_dir(t.join("out")).unwrap();
        eprintln!("case: {what}");
        assert_unpack_refused(t, "test.cud", expect);
    }
}

#[test]
fn diff_script_applies_in_real_sigtool() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    vdb!(t, "db", "unpack", &fx("test-5.cvd"), "u5").ok();
    vdb!(t, "db", "unpack", &fx("test-6.cvd"), "u6").ok();
    fs::create_dir(t.join("scripts")).unwrap();
    let d = vdb!(t, "db", "diff", "u5", "u6", "-o", "scripts/test-6.script").ok();
    assert!(d.stdout.contains("unsigned script"), "{d}");
    let script = t.join("scripts/test-6.script");
    let text = fs::read_to_string(&script).expect("a plain-text script");
    assert!(text.starts_with("OPEN "), "{text}");

    let work = t.join("work");
    copy_dir(&t.join("u5"), &work);
    let r = sigtool!(&work, format!("--run-cdiff={}", script.display()));
    assert_eq!(r.code, Some(0), "sigtool --run-cdiff failed:\n{r}");
    assert!(!r.stderr.contains("ERROR"), "{r}");
    assert_same_dir(&work, &t.join("u6"));
}

/// `vdb db diff` writes cdiffs that no client can apply, without complaint.
#[test]
fn diff_refuses_unusable_cdiffs() {
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    keys_and_test_6_plus_a_line(t, "dn");
    for (dir, version) in [("u6", "6"), ("dn", "7"), ("dn", "8")] {
        build_with_k(t, dir, &format!("v{version}/test.cvd"), version);
    }
    let mut problems = Vec::new();
    // 6 → 8 in one cdiff: `vdb db apply` (like freshclam; `sigtool --diff` refuses to make
    // one) requires version N-1 → N, so this cdiff can never be applied.
    let skip = vdb!(
        t,
        "db",
        "diff",
        "v6/test.cvd",
        "v8/test.cvd",
        "-o",
        "test-8.cdiff",
        "--keys",
        "K"
    );
    let applied = vdb!(
        t,
        "db",
        "apply",
        "--keys",
        "K.pub",
        "v6/test.cvd",
        "test-8.cdiff",
        "-o",
        "x.cld"
    );
    if skip.code == Some(0) && applied.code != Some(0) {
        problems.push(format!(
            "diff wrote a 6 → 8 cdiff that apply refuses:\n{skip}\n{applied}"
        ));
    }
    // 6 → 7, but written as test-9.cdiff: `vdb db verify` rejects the file diff just wrote.
    let misnamed = vdb!(
        t,
        "db",
        "diff",
        "v6/test.cvd",
        "v7/test.cvd",
        "-o",
        "test-9.cdiff",
        "--keys",
        "K"
    );
    let verified = vdb!(t, "db", "verify", "--keys", "K.pub", "test-9.cdiff");
    if misnamed.code == Some(0) && verified.code != Some(0) {
        problems.push(format!(
            "diff wrote a misnamed cdiff that verify refuses:\n{misnamed}\n{verified}"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Whether `msg` ends with the same text twice, as in `A: B: A: B` (an error whose Display
/// already includes its source, printed again by the `{:#}` chain).
fn repeats_itself(msg: &str) -> bool {
    msg.match_indices(": ").any(|(i, _)| {
        let (head, tail) = (&msg[..i], &msg[i + 2..]);
        !tail.is_empty() && head.ends_with(tail)
    })
}

#[test]
fn error_messages_do_not_repeat() {
    assert!(repeats_itself("x: a: b: a: b"));
    assert!(!repeats_itself(
        "applying x: cdiff signature: does not verify"
    ));
    let tmp = TempDir::new().unwrap();
    let t = tmp.path();
    fs::copy(fx("test-6.cdiff"), t.join("test-6.cdiff")).unwrap();
    let len = fs::metadata(t.join("test-6.cdiff")).unwrap().len() as usize;
    flip_byte(&t.join("test-6.cdiff"), len / 2);
    let corrupt = vdb!(t, "db", "verify", "test-6.cdiff").code(1);
    let wrong_base = vdb!(
        t,
        "db",
        "apply",
        fx("test-1.cvd"),
        fx("test-3.cdiff"),
        "-o",
        "x.cld"
    )
    .code(1);
    fs::write(t.join("short.cvd"), b"ClamAV-VDB:").unwrap();
    let short = vdb!(t, "db", "verify", "short.cvd").code(1);
    for out in [corrupt, wrong_base, short] {
        for line in out.stdout.lines().chain(out.stderr.lines()) {
            assert!(
                !repeats_itself(line),
                "message repeats itself: {line}\n{out}"
            );
        }
    }
}
