//! A quick throughput check of the file server, in process on a 2-worker runtime (the lead's
//! `bench/` compares against nginx). Run:
//! `cargo test --release -p vdb-mirror --test it bench -- --ignored --nocapture`

use std::process::Command;
use std::sync::Arc;

use crate::{NOW, config};
use vdb_testkit::MasterDouble;
use vdb_testkit::keys::master_key;

fn blob(n: usize) -> Vec<u8> {
    let mut x = 0x1234_5678_9abc_def1u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wrk(url: &str, header: Option<&str>) -> String {
    let mut c = Command::new("wrk");
    c.args(["-t2", "-c32", "-d4s", "--latency"]);
    if let Some(h) = header {
        c.args(["-H", h]);
    }
    let out = c.arg(url).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("Requests/sec") || l.contains(" 99%") || l.contains("Non-2xx"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" | ")
}

#[test]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
fn bench_file_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let master = MasterDouble::start();
    master.publish(
        &master_key(),
        1,
        NOW,
        &[],
        &[("big.cvd", blob(60 << 20)), ("small.cdiff", blob(2048))],
    );
    let cfg = config(&dir.path().join("data"), &[master.url()], "");
    let clock = Arc::new(vdb_proto::ManualClock::new(NOW));
    let m = rt.block_on(vdb_mirror::start(cfg, clock)).unwrap();
    rt.block_on(crate::wait_serial(&m, 1));
    let base = format!("http://{}", m.http_addr());
    let big = format!("{base}/big.cvd");
    let lm = curl(&["-sI", &big])
        .lines()
        .find_map(|l| l.strip_prefix("last-modified: "))
        .unwrap()
        .trim()
        .to_owned();
    let speeds: Vec<String> = (0..6)
        .map(|_| {
            let bps: f64 = curl(&["-s", "-o", "/dev/null", "-w", "%{speed_download}", &big])
                .trim()
                .parse()
                .unwrap();
            format!("{:.2}", bps / 1e9)
        })
        .collect();
    eprintln!("60 MB GET (curl), GB/s: {speeds:?}");
    eprintln!(
        "wrk 2 KiB GET: {}",
        wrk(&format!("{base}/small.cdiff"), None)
    );
    eprintln!(
        "wrk Range 0-511 of 60 MB: {}",
        wrk(&big, Some("Range: bytes=0-511"))
    );
    eprintln!(
        "wrk 304 (If-Modified-Since): {}",
        wrk(&big, Some(&format!("If-Modified-Since: {lm}")))
    );
    rt.block_on(m.shutdown());
}
