//! `preflate-bench`: what would exact reconstruction of an official (sigtool-built) CVD cost?
//!
//! Issue 18 measurement, not part of the vdbnet workspace. A CVD/CUD is a 512-byte header and a
//! gzip stream (zlib `gzopen("wb9f")`: 10-byte header, raw deflate, 8-byte trailer) of a tar in
//! sigtool's dialect. A mirror holding release N and the cdiff to N+1 knows N+1's members; to
//! re-create N+1's signed bytes it also needs the tar framing (derivable, see `tar`) and the exact
//! deflate stream, which preflate-rs re-creates from the plain text and a small correction blob.
//!
//! Subcommands (each prints one `key=value` line for bench/preflate.sh):
//! - `split CONTAINER OUTDIR`: preflate the deflate body; write OUTDIR/plain.tar and
//!   OUTDIR/correction.bin.
//! - `recreate CONTAINER MEMBERS_DIR CORRECTION`: rebuild the tar from the member files alone (in
//!   sigtool's order and dialect), re-create the deflate stream from it and the correction, add the
//!   fixed gzip header and computed trailer, take the 512-byte header from CONTAINER, and compare
//!   every byte with CONTAINER.
//! - `zlib CONTAINER MEMBERS_DIR`: the same as `recreate` without any correction data: the tar
//!   compressed by zlib-rs with sigtool's settings (level 9, `Z_FILTERED`, memLevel 8, 32 KiB
//!   window), compared byte for byte.
//! - `tar PLAIN`: list the tar headers (every field that is not name/size/checksum) and say
//!   whether sigtool's dialect rebuilt from the members gives the same bytes.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use preflate_rs::{PreflateConfig, preflate_whole_deflate_stream, recreate_whole_deflate_stream};

/// CVD header length.
const HEADER: usize = 512;
/// gzip header as zlib's gzopen writes it: no name, no mtime, XFL 2 (level 9), OS 3 (Unix).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
/// Extensions after COPYING and `<db>.info`, in sigtool's order (spec/clamav.md 1.2).
const SIGTOOL_ORDER: &[&str] = &[
    "cfg", "ign", "ign2", "ftm", "db", "hdb", "hdu", "hsb", "hsu", "mdb", "mdu", "msb", "msu",
    "ndb", "ndu", "ldb", "ldu", "sdb", "zmd", "rmd", "idb", "fp", "sfp", "gdb", "pdb", "wdb",
    "crb", "cdb", "imp",
];

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["split", c, out] => split(Path::new(c), Path::new(out)),
        ["recreate", c, m, corr] => recreate(Path::new(c), Path::new(m), Path::new(corr)),
        ["tar", p] => tar_report(Path::new(p)),
        ["zlib", c, m] => zlib(Path::new(c), Path::new(m)),
        _ => Err(
            "usage: preflate-bench split CONTAINER OUTDIR | recreate CONTAINER MEMBERS_DIR \
                  CORRECTION | tar PLAIN | zlib CONTAINER MEMBERS_DIR"
                .into(),
        ),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("preflate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read(p: &Path) -> Res<Vec<u8>> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn write(p: &Path, b: &[u8]) -> Res<()> {
    std::fs::write(p, b).map_err(|e| format!("{}: {e}", p.display()))
}

/// CPU seconds (user + system) of this process so far, from /proc/self/stat (USER_HZ = 100).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// The container's deflate body, after checking the gzip header is zlib's fixed one.
fn deflate_body(c: &[u8]) -> Res<&[u8]> {
    if c.len() < HEADER + GZIP_HEADER.len() + 8 {
        return Err("container too short".into());
    }
    let gz = &c[HEADER..];
    if gz[..GZIP_HEADER.len()] != GZIP_HEADER {
        return Err(format!(
            "gzip header {:02x?} is not zlib's fixed one",
            &gz[..10]
        ));
    }
    Ok(&gz[GZIP_HEADER.len()..gz.len() - 8])
}

fn config() -> PreflateConfig {
    PreflateConfig {
        // zlib level 9 uses max_chain 4096 (the default); plain text up to 1 GiB.
        plain_text_limit: 1 << 30,
        // We check the round trip ourselves, timed separately.
        verify_compression: false,
        ..PreflateConfig::default()
    }
}

fn split(container: &Path, out: &Path) -> Res<()> {
    let c = read(container)?;
    let body = deflate_body(&c)?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let (res, plain) =
        preflate_whole_deflate_stream(body, &config()).map_err(|e| format!("preflate: {e:?}"))?;
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    if res.compressed_size != body.len() {
        return Err(format!(
            "deflate stream ends at {} of {} body bytes",
            res.compressed_size,
            body.len()
        ));
    }
    let plain = plain.text();
    let trailer = &c[c.len() - 8..];
    let crc_ok = trailer[..4] == crc32fast::hash(plain).to_le_bytes()
        && trailer[4..] == (plain.len() as u32).to_le_bytes();
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    write(&out.join("plain.tar"), plain)?;
    write(&out.join("correction.bin"), &res.corrections)?;
    let p = res.parameters.as_ref();
    println!(
        "split file={} container={} deflate={} plain={} correction={} trailer_derivable={} \
         cpu_s={cpu:.2} wall_s={wall:.2} params={}",
        container.display(),
        c.len(),
        body.len(),
        plain.len(),
        res.corrections.len(),
        crc_ok,
        p.map_or("?".into(), |p| format!("{p:?}").replace(' ', "")),
    );
    Ok(())
}

/// One tar member as sigtool writes it (common/tar.c `tar_addfile`): name, size `%o`, checksum
/// `%06o`, every other header byte zero, data padded to 512.
fn sigtool_member(tar: &mut Vec<u8>, name: &str, data: &[u8]) -> Res<()> {
    if name.len() > 99 {
        return Err(format!("member name too long: {name}"));
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let size = format!("{:o}", data.len());
    h[124..124 + size.len()].copy_from_slice(size.as_bytes());
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum::<u32>() + 8 * u32::from(b' ');
    let sum = format!("{sum:06o}");
    h[148..148 + sum.len()].copy_from_slice(sum.as_bytes());
    tar.extend_from_slice(&h);
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    Ok(())
}

/// The tar sigtool would write for the member files in `dir` (no end-of-archive blocks).
fn sigtool_tar(dir: &Path) -> Res<Vec<u8>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
        .collect();
    let info = names
        .iter()
        .find(|n| n.ends_with(".info"))
        .cloned()
        .ok_or("no <db>.info among the members")?;
    let db = info.trim_end_matches(".info").to_string();
    let mut order = vec!["COPYING".to_string(), info];
    order.extend(SIGTOOL_ORDER.iter().map(|e| format!("{db}.{e}")));
    let mut tar = Vec::new();
    for name in &order {
        if let Some(i) = names.iter().position(|n| n == name) {
            names.swap_remove(i);
            sigtool_member(&mut tar, name, &read(&dir.join(name))?)?;
        }
    }
    if !names.is_empty() {
        return Err(format!("members outside sigtool's order: {names:?}"));
    }
    Ok(tar)
}

fn recreate(container: &Path, members: &Path, correction: &Path) -> Res<()> {
    let want = read(container)?;
    let corr = read(correction)?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let tar = sigtool_tar(members)?;
    let deflate =
        recreate_whole_deflate_stream(&tar, &corr).map_err(|e| format!("recreate: {e:?}"))?;
    let out = assemble(&want, &deflate, &tar);
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    if compare("recreate", container, &out, &want, cpu, wall) {
        Ok(())
    } else {
        Err("re-created container differs".into())
    }
}

/// Assembles a container: CONTAINER's 512-byte header, zlib's gzip header, `deflate`, trailer.
fn assemble(header: &[u8], deflate: &[u8], tar: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + deflate.len() + 18);
    out.extend_from_slice(&header[..HEADER.min(header.len())]);
    out.extend_from_slice(&GZIP_HEADER);
    out.extend_from_slice(deflate);
    out.extend_from_slice(&crc32fast::hash(tar).to_le_bytes());
    out.extend_from_slice(&(tar.len() as u32).to_le_bytes());
    out
}

/// Prints the comparison line of `recreate`/`zlib`; true when the bytes are identical.
fn compare(what: &str, container: &Path, out: &[u8], want: &[u8], cpu: f64, wall: f64) -> bool {
    let identical = out == want;
    let first_diff = out.iter().zip(want).position(|(a, b)| a != b);
    println!(
        "{what} file={} bytes={} identical={identical} first_diff={first_diff:?} cpu_s={cpu:.2} \
         wall_s={wall:.2}",
        container.display(),
        out.len()
    );
    identical
}

fn zlib(container: &Path, members: &Path) -> Res<()> {
    let want = read(container)?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let tar = sigtool_tar(members)?;
    let config = zlib_rs::DeflateConfig {
        level: 9,
        method: zlib_rs::Method::Deflated,
        window_bits: -15,
        mem_level: 8,
        strategy: zlib_rs::Strategy::Filtered,
    };
    let mut buf = vec![0u8; zlib_rs::compress_bound(tar.len()) + 64];
    let (deflate, rc) = zlib_rs::compress_slice(&mut buf, &tar, config);
    if rc != zlib_rs::ReturnCode::Ok {
        return Err(format!("zlib-rs: {rc:?}"));
    }
    let out = assemble(&want, deflate, &tar);
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    // Not an error when it differs: the line says so (the encoder is not C zlib).
    compare("zlib", container, &out, &want, cpu, wall);
    Ok(())
}

/// Parses an octal tar field (NUL/space terminated).
fn octal(f: &[u8]) -> u64 {
    f.iter()
        .take_while(|b| (b'0'..=b'7').contains(b))
        .fold(0, |a, b| a * 8 + u64::from(b - b'0'))
}

fn tar_report(plain: &Path) -> Res<()> {
    let t = read(plain)?;
    let mut pos = 0;
    let mut rebuilt = Vec::new();
    let mut lines = String::new();
    while pos + 512 <= t.len() && t[pos] != 0 {
        let h = &t[pos..pos + 512];
        let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
        let name = String::from_utf8_lossy(&h[..name_end]).into_owned();
        let size = octal(&h[124..136]) as usize;
        // Every header byte outside name, size and checksum that is not zero.
        let other: usize = h
            .iter()
            .enumerate()
            .filter(|&(i, _)| !(i < 100 || (124..136).contains(&i) || (148..156).contains(&i)))
            .filter(|&(_, &b)| b != 0)
            .count();
        let _ = writeln!(
            lines,
            "member name={name} size={size} mode={:?} uid={:?} gid={:?} mtime={:?} type={} \
             magic={:?} other_nonzero_bytes={other}",
            String::from_utf8_lossy(&h[100..108]).trim_end_matches('\0'),
            String::from_utf8_lossy(&h[108..116]).trim_end_matches('\0'),
            String::from_utf8_lossy(&h[116..124]).trim_end_matches('\0'),
            String::from_utf8_lossy(&h[136..148]).trim_end_matches('\0'),
            h[156],
            String::from_utf8_lossy(&h[257..265]).trim_end_matches('\0'),
        );
        let data = t
            .get(pos + 512..pos + 512 + size)
            .ok_or_else(|| format!("member {name} truncated"))?;
        sigtool_member(&mut rebuilt, &name, data)?;
        pos += 512 + size.div_ceil(512) * 512;
    }
    print!("{lines}");
    let trailing = t.len() - pos.min(t.len());
    println!(
        "tar file={} bytes={} trailing_after_members={trailing} sigtool_dialect_rebuild_identical={}",
        plain.display(),
        t.len(),
        rebuilt[..] == t[..pos.min(t.len())]
    );
    Ok(())
}
