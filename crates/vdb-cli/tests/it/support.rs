//! Helpers shared by the process-level tests: running `vdb` and the ClamAV tools, fixtures,
//! directory snapshots, and crafting hostile containers.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use md5::{Digest, Md5};

pub(crate) use vdb_testkit::copy_dir;
pub(crate) use vdb_testkit::fixtures::path as fx;

/// Finds a required external tool in PATH, or fails the test (never skips).
pub(crate) fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("required tool `{name}` not found in PATH; install ClamAV: apt-get install clamav");
}

/// The result of one process run.
#[derive(Debug)]
pub(crate) struct Out {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    what: String,
}

impl Out {
    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub(crate) fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "{} should succeed:\n{self}", self.what);
        self
    }

    /// Asserts the given exit code and returns self.
    #[track_caller]
    pub(crate) fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "{} should exit {code}:\n{self}",
            self.what
        );
        self
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

fn run(program: &Path, args: &[&OsStr], cwd: &Path) -> Out {
    let what = std::iter::once(program.as_os_str())
        .chain(args.iter().copied())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    Out {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        what: format!("(in {}) {what}", cwd.display()),
    }
}

/// Runs the `vdb` binary under test in `cwd`.
pub(crate) fn vdb<S: AsRef<OsStr>>(cwd: &Path, args: &[S]) -> Out {
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    run(Path::new(env!("CARGO_BIN_EXE_vdb")), &args, cwd)
}

/// Runs a ClamAV tool (which must be installed) in `cwd`.
pub(crate) fn clamav<S: AsRef<OsStr>>(name: &str, cwd: &Path, args: &[S]) -> Out {
    let args: Vec<&OsStr> = args.iter().map(AsRef::as_ref).collect();
    run(&tool(name), &args, cwd)
}

/// Path → `OsStr` shorthand for argument lists.
pub(crate) fn p(path: &Path) -> &OsStr {
    path.as_os_str()
}

/// `clamscan [--detect-pua=yes] -d DB FILE` run in `cwd`; returns the output (exit 0 or 1).
pub(crate) fn clamscan(cwd: &Path, db: &Path, file: &Path, pua: bool) -> Out {
    let mut args: Vec<&OsStr> = Vec::new();
    if pua {
        args.push(OsStr::new("--detect-pua=yes"));
    }
    args.extend([OsStr::new("-d"), p(db), p(file)]);
    let out = clamav("clamscan", cwd, &args);
    assert!(
        matches!(out.code, Some(0 | 1)),
        "clamscan failed to load {}:\n{out}",
        db.display()
    );
    out
}

/// The "Known viruses: N" count of a clamscan summary.
#[track_caller]
pub(crate) fn known_viruses(out: &Out) -> u64 {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Known viruses: "))
        .unwrap_or_else(|| panic!("no 'Known viruses' line in:\n{out}"))
        .trim()
        .parse()
        .expect("Known viruses count")
}

/// The value of a `Key: value` line in sigtool-style output.
#[track_caller]
pub(crate) fn field<'a>(text: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no '{key}:' line in:\n{text}"))
}

/// Every entry below `dir` (relative path → bytes; directories as `name/` with no bytes).
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(root, &path, out);
            } else if ty.is_symlink() {
                out.insert(format!("{rel}@"), Vec::new());
            } else {
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The sorted entry names of a snapshot (for readable assertion messages).
pub(crate) fn names(snap: &BTreeMap<String, Vec<u8>>) -> Vec<&str> {
    snap.keys().map(String::as_str).collect()
}

/// Asserts two directories hold exactly the same files with the same bytes.
#[track_caller]
pub(crate) fn assert_same_dir(a: &Path, b: &Path) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    assert_eq!(
        names(&sa),
        names(&sb),
        "{} and {} hold different files",
        a.display(),
        b.display()
    );
    for (name, bytes) in &sa {
        assert!(
            *bytes == sb[name],
            "{name} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// Inverts every bit of the byte at `offset`.
pub(crate) fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    assert!(
        offset < bytes.len(),
        "offset {offset} beyond {}",
        path.display()
    );
    bytes[offset] ^= 0xff;
    fs::write(path, bytes).unwrap();
}

/// The EICAR test string, assembled at run time so that no source or binary holds it whole.
pub(crate) fn eicar() -> Vec<u8> {
    let parts = [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-",
        "ANTIVIRUS-TEST-",
        "FILE!$H+H*",
    ];
    parts.concat().into_bytes()
}

/// One member of a ustar archive, with the original 512-byte header kept for its other fields.
#[derive(Clone, Debug)]
pub(crate) struct TarMember {
    pub(crate) name: String,
    pub(crate) data: Vec<u8>,
    header: [u8; 512],
}

fn parse_tar(tar: &[u8]) -> Vec<TarMember> {
    let mut members = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() && tar[at] != 0 {
        let mut header = [0u8; 512];
        header.copy_from_slice(&tar[at..at + 512]);
        let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8(header[..name_end].to_vec()).unwrap();
        let size_field = std::str::from_utf8(&header[124..136]).unwrap();
        let size =
            usize::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
                .unwrap();
        let data = tar[at + 512..at + 512 + size].to_vec();
        at += 512 + size.div_ceil(512) * 512;
        members.push(TarMember { name, data, header });
    }
    members
}

fn write_tar(members: &[TarMember]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut h = m.header;
        assert!(m.name.len() < 100);
        h[..100].fill(0);
        h[..m.name.len()].copy_from_slice(m.name.as_bytes());
        h[124..136].copy_from_slice(format!("{:011o}\0", m.data.len()).as_bytes());
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&m.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Re-packs an unsigned `.cud` after `edit` changed its tar members, with a correct header MD5
/// (a CUD has no signature, so anyone can produce such a file).
pub(crate) fn repack_cud(cud: &[u8], edit: impl FnOnce(&mut Vec<TarMember>)) -> Vec<u8> {
    let header = std::str::from_utf8(&cud[..512]).unwrap();
    let mut fields: Vec<String> = header.trim_end().split(':').map(str::to_owned).collect();
    assert_eq!(fields.len(), 9, "unexpected CUD header {header:?}");
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&cud[512..])
        .read_to_end(&mut tar)
        .expect("CUD body is gzip");
    let mut members = parse_tar(&tar);
    edit(&mut members);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&write_tar(&members)).unwrap();
    let body = gz.finish().unwrap();
    fields[5] = Md5::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = fields.join(":").into_bytes();
    assert!(out.len() <= 512);
    out.resize(512, b' ');
    out.extend_from_slice(&body);
    out
}
