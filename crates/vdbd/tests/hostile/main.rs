//! Hostile clients against the real `vdbd` roles (issue 14, the servers' part): each role runs
//! under a file-descriptor limit of 256 and short `[limits]`; attackers from their own loopback
//! addresses open more connections than that limit and send headers or bodies a byte at a time,
//! or stop reading a large file. Fresh requests must keep being answered, every attacker must be
//! dropped within its timeout, and memory must stay bounded. Figures go to stderr
//! (`--nocapture`).

mod harness;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use harness::{Fate, NOFILE, Role};
use tokio::task::JoinSet;

/// Attacking connections per test: more than the role's file-descriptor limit.
const ATTACKERS: usize = 300;
/// Margin on top of a timeout for a loaded machine.
const MARGIN: Duration = Duration::from_secs(4);

fn attacker_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 2) as u8))
}

fn timeout(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// Fresh `GET /healthz` from 127.0.0.1 every 250 ms while `attack` runs; every one must be
/// answered 200. Returns the peak sockets and memory of the role seen meanwhile.
async fn fresh_requests_during<F: std::future::Future>(
    role: &Role,
    attack: F,
) -> (F::Output, usize, u64) {
    let addr = role.addr();
    tokio::pin!(attack);
    let (mut peak_sockets, mut peak_rss) = (0, 0);
    let mut answered = Vec::new();
    let out = loop {
        tokio::select! {
            out = &mut attack => break out,
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                answered.push(harness::fresh_get(addr, "/healthz", timeout(5)).await);
                peak_sockets = peak_sockets.max(role.sockets());
                peak_rss = peak_rss.max(role.rss_kib());
            }
        }
    };
    assert!(answered.len() >= 4, "too few fresh requests: {answered:?}");
    assert!(
        answered.iter().all(|a| *a == Some(200)),
        "fresh requests not all answered during the attack: {answered:?}"
    );
    (out, peak_sockets, peak_rss)
}

async fn slow_headers_past_the_fd_limit(role: Role) {
    let addr = role.addr();
    let l = harness::limits();
    let idle_sockets = role.sockets();
    let rss_before = role.rss_kib();
    let attack = async {
        let mut set = JoinSet::new();
        for i in 0..ATTACKERS {
            set.spawn(harness::slow_headers(
                attacker_ip(i),
                addr,
                Duration::from_millis(500),
                timeout(30),
            ));
        }
        let idle = harness::idle_keep_alive(addr, timeout(30)).await;
        let mut fates = Vec::new();
        while let Some(f) = set.join_next().await {
            fates.push(f.unwrap());
        }
        (fates, idle)
    };
    let ((fates, idle), peak_sockets, peak_rss) = fresh_requests_during(&role, attack).await;
    let refused = fates.iter().filter(|f| **f == Fate::Refused).count();
    let dropped: Vec<Duration> = fates
        .iter()
        .filter_map(|f| match f {
            Fate::Dropped(d) => Some(*d),
            _ => None,
        })
        .collect();
    let slowest = dropped.iter().max().copied().unwrap_or_default();
    let settle = role.wait_sockets_at_most(idle_sockets, timeout(20)).await;
    let rss_after = role.rss_kib();
    eprintln!(
        "{}: {ATTACKERS} slow-header connections against nofile={NOFILE}: {} held at most \
         ({} open sockets at peak), {refused} refused with 503, {} dropped after at most \
         {slowest:?} (header timeout {} s); idle keep-alive: {idle:?}; sockets back to {idle_sockets} \
         {settle:?} later; VmRSS {rss_before} KiB before, {peak_rss} KiB at peak, {rss_after} KiB after",
        role.name(),
        dropped.len(),
        peak_sockets,
        dropped.len(),
        l.header_read_timeout_secs,
    );
    assert_eq!(
        refused + dropped.len(),
        ATTACKERS,
        "every attacker is refused or dropped: {fates:?}"
    );
    assert!(
        refused > 0,
        "more attackers than the caps allow: some refused"
    );
    assert!(
        dropped.len() <= 2 * l.max_connections_per_ip,
        "at most max_connections_per_ip per attacking address admitted"
    );
    assert!(
        slowest <= timeout(l.header_read_timeout_secs) + MARGIN,
        "attackers dropped within the header timeout: {slowest:?}"
    );
    match idle {
        Fate::Dropped(d) => assert!(d <= timeout(l.header_read_timeout_secs) + MARGIN, "{d:?}"),
        other => panic!("an idle keep-alive connection is closed: {other:?}"),
    }
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory bounded: {rss_before} KiB before, {rss_after} KiB after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_survives_slow_headers_past_its_fd_limit() {
    slow_headers_past_the_fd_limit(harness::master()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_survives_slow_headers_past_its_fd_limit() {
    slow_headers_past_the_fd_limit(harness::mirror(1024)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_survives_slow_headers_past_its_fd_limit() {
    slow_headers_past_the_fd_limit(harness::directory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_survives_slow_headers_past_its_fd_limit() {
    slow_headers_past_the_fd_limit(harness::monitor()).await;
}

/// Bodies sent a byte at a time to an endpoint that reads its body.
async fn slow_bodies_are_cut_off(role: Role, path: &'static str) {
    let addr = role.addr();
    let l = harness::limits();
    let idle_sockets = role.sockets();
    let attack = async {
        let mut set = JoinSet::new();
        for i in 0..2 * l.max_connections_per_ip {
            set.spawn(harness::slow_body(
                attacker_ip(i),
                addr,
                path,
                1000,
                Duration::from_millis(300),
                timeout(30),
            ));
        }
        let mut fates = Vec::new();
        while let Some(f) = set.join_next().await {
            fates.push(f.unwrap());
        }
        fates
    };
    let (fates, peak_sockets, _) = fresh_requests_during(&role, attack).await;
    let slowest = fates
        .iter()
        .map(|f| match f {
            Fate::Dropped(d) => *d,
            other => panic!("a slow body is cut off: {other:?}"),
        })
        .max()
        .unwrap_or_default();
    role.wait_sockets_at_most(idle_sockets, timeout(20)).await;
    eprintln!(
        "{}: {} slow bodies on {path} ({peak_sockets} sockets at peak) cut off after at most \
         {slowest:?} (body timeout {} s)",
        role.name(),
        fates.len(),
        l.body_read_timeout_secs
    );
    assert!(
        slowest <= timeout(l.body_read_timeout_secs) + MARGIN,
        "{slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_cuts_off_slow_release_bodies() {
    slow_bodies_are_cut_off(harness::master(), vdb_proto::paths::RELEASES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_cuts_off_slow_push_bodies() {
    slow_bodies_are_cut_off(harness::mirror(1024), vdb_proto::paths::PUSH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_drops_slow_readers_with_bounded_memory() {
    const BIG: usize = 16 << 20;
    let role = harness::mirror(BIG);
    let addr = role.addr();
    let l = harness::limits();
    let idle_sockets = role.sockets();
    let rss_before = role.rss_kib();
    let readers = 2 * l.max_connections_per_ip;
    let mut held = Vec::new();
    for i in 0..readers {
        held.push(
            harness::slow_reader(attacker_ip(i), addr, "/local_big.bin")
                .await
                .expect("a slow reader connects"),
        );
    }
    let (_, peak_sockets, peak_rss) =
        fresh_requests_during(&role, tokio::time::sleep(timeout(3))).await;
    let t = std::time::Instant::now();
    let settle = role
        .wait_sockets_at_most(idle_sockets, timeout(2 * l.send_timeout_secs) + 2 * MARGIN)
        .await;
    let rss_after = role.rss_kib();
    let mut got = Vec::new();
    for s in held {
        got.push(harness::drain(s, timeout(10)).await);
    }
    eprintln!(
        "mirror: {readers} slow readers of a {BIG}-byte file: {peak_sockets} sockets at peak, \
         all dropped {:?} after the 3 s attack window (send timeout {} s, min rate {} B/s); \
         VmRSS {rss_before} KiB before, {peak_rss} KiB at peak, {rss_after} KiB after; bytes each \
         got before the drop: {:?}",
        settle + (t.elapsed() - settle),
        l.send_timeout_secs,
        l.min_rate_bytes_per_sec,
        got.iter().take(3).collect::<Vec<_>>(),
    );
    for g in &got {
        let n = g.expect("the server closed the slow reader");
        assert!(
            n < BIG,
            "a slow reader was cut off, not served the whole file"
        );
    }
    // Each held reader costs about one read-ahead chunk in flight, one queued and hyper's write
    // buffer: well under 2 MiB, whatever the file's size.
    let per_reader = peak_rss.saturating_sub(rss_before) / readers as u64;
    assert!(
        per_reader < 2 * 1024,
        "memory bounded per slow reader: {rss_before} KiB before, {peak_rss} KiB at peak \
         ({per_reader} KiB per reader)"
    );
}
