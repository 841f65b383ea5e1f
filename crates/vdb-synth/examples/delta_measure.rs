//! Measures segmented gzip and delta reconstruction on a synthetic database:
//!
//! ```text
//! cargo run --release -p vdb-synth --example delta_measure -- OUT_DIR [SIZE_MB] [SEED]
//! ```
//!
//! Writes `vdb db synth --size-mb SIZE_MB --cdiffs 1 --seed SEED` into OUT_DIR, then prints the
//! CVDs' sizes, the time to compute each segment map (what a master does once per release),
//! and what a mirror holding the base version re-creates and must fetch for the next one, with
//! the CPU time of that reconstruction.

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Instant;

use vdb_format::Limits;
use vdb_format::segment::{DeltaInputs, Expected, assemble, rebuild, segment_map};

fn cpu_secs() -> f64 {
    // utime + stime of this process, from /proc (Linux), in clock ticks of 1/100 s.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(
        args.next()
            .expect("usage: delta_measure OUT_DIR [SIZE_MB] [SEED]"),
    );
    let size_mb = args.next().map_or(Ok(60), |s| s.parse())?;
    let seed = args.next().map_or(Ok(1), |s| s.parse())?;
    let base = 27000;
    let spec = vdb_synth::Spec {
        output: out.clone(),
        size_mb,
        cdiffs: 1,
        version: base,
        seed,
        keys: None,
        cud: false,
    };
    let t = Instant::now();
    vdb_synth::write_chain(&spec)?;
    println!(
        "synth --size-mb {size_mb} --cdiffs 1 --seed {seed}: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let old = std::fs::read(out.join(format!("daily-{base}.cvd")))?;
    let new = std::fs::read(out.join(format!("daily-{}.cvd", base + 1)))?;
    let cdiff = std::fs::read(out.join(format!("daily-{}.cdiff", base + 1)))?;
    println!(
        "daily-{base}.cvd: {} bytes; daily-{}.cvd: {} bytes; cdiff {} bytes",
        old.len(),
        base + 1,
        new.len(),
        cdiff.len()
    );
    let limit = Limits::default().max_body_size;
    let (c0, t) = (cpu_secs(), Instant::now());
    let old_map = segment_map(&old, limit)?;
    println!(
        "segment map of daily-{base}.cvd: {} segments, framed {}, {} bytes of JSON, {:.2} s wall, {:.2} s CPU",
        old_map.segments.len(),
        old_map.framed,
        old_map.to_json().len(),
        t.elapsed().as_secs_f64(),
        cpu_secs() - c0
    );
    let new_map = segment_map(&new, limit)?;
    let new_json = new_map.to_json().len();
    let keys_text = std::fs::read_to_string(out.join("synth.key.pub"))?;
    let keys = vdb_format::KeySet::from_text(&keys_text)?;
    for (label, old_map, keys) in [
        ("with the old map, unverified cdiff", Some(&old_map), None),
        ("without the old map (re-compress), unverified", None, None),
        (
            "with the old map, cdiff and .info verified",
            Some(&old_map),
            Some(&keys),
        ),
    ] {
        let (c0, t) = (cpu_secs(), Instant::now());
        let inputs = DeltaInputs {
            db_name: "daily",
            cdiffs: &[&cdiff],
            old_map,
            new_map: &new_map,
            keys,
            limits: Limits::default(),
            spool_dir: None,
        };
        let mut file = Cursor::new(Vec::new());
        let rebuilt = rebuild(&mut Cursor::new(&old[..]), &inputs, &mut file)?;
        let fetched: Vec<_> = rebuilt
            .missing
            .iter()
            .map(|m| {
                (
                    *m,
                    new[m.offset as usize..(m.offset + m.len) as usize].to_vec(),
                )
            })
            .collect();
        let sha = vdb_format::sigenc::hex(&sha2_digest(&new));
        assemble(
            &mut file,
            &new_map,
            &rebuilt,
            &fetched,
            &Expected {
                size: new.len() as u64,
                sha256: &sha,
                verify: None,
            },
        )?;
        assert_eq!(file.into_inner(), new);
        let pulled = rebuilt.missing_bytes() + new_json as u64 + cdiff.len() as u64;
        println!(
            "rebuild {label}: missing {} bytes in {} ranges; copied {}, re-compressed {}; {:.2} s wall, {:.2} s CPU; \
             pulled = ranges + map {new_json} + cdiff = {pulled} bytes = {:.3} % of the CVD",
            rebuilt.missing_bytes(),
            rebuilt.missing.len(),
            rebuilt.copied,
            rebuilt.recompressed,
            t.elapsed().as_secs_f64(),
            cpu_secs() - c0,
            100.0 * pulled as f64 / new.len() as f64
        );
    }
    Ok(())
}

fn sha2_digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
