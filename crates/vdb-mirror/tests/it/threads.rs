//! The serve threads: connections spread over every thread, and a shutdown lets an open
//! response finish before the threads stop.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::{config, setup, url};

/// Reads one response (headers and a `Content-Length` body) from a keep-alive connection.
fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut byte).unwrap(),
            1,
            "connection closed in the head"
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (head, body)
}

fn thread_connections(metrics: &str, i: usize) -> u64 {
    let key = format!("vdb_mirror_serve_thread_connections_total{{thread=\"{i}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in {metrics}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_served_on_every_thread_and_shutdown_drains_them() {
    let s = setup();
    let local = s.data.join("local");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::write(local.join("local_small.txt"), b"hello").unwrap();
    // Larger than what is held in memory: streamed from disk.
    let big: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(local.join("local_big.bin"), &big).unwrap();
    let cfg = config(&s.data, &[s.master.url()], "serve_threads = 3\n");
    assert_eq!(cfg.serve_threads(), 3);
    let m = vdb_mirror::start(cfg, Arc::new(s.clock.clone()))
        .await
        .unwrap();
    let addr = m.http_addr();

    // Six keep-alive connections, each answered (so each is open when the next is made): the
    // fewest-connections hand-over gives every thread two.
    let conns = tokio::task::spawn_blocking(move || {
        (0..6)
            .map(|_| {
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                c.write_all(b"GET /local_small.txt HTTP/1.1\r\nHost: m\r\n\r\n")
                    .unwrap();
                let (head, body) = read_response(&mut c);
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                assert_eq!(body, b"hello");
                c
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let metrics = vdb_testkit::http::get_text(&url(&m, "/metrics")).await;
    for i in 0..3 {
        assert!(
            thread_connections(&metrics, i) >= 2,
            "thread {i}: {metrics}"
        );
    }
    assert!(!metrics.contains("thread=\"3\""), "{metrics}");

    // A large response in flight when the shutdown starts still arrives whole; the connection
    // then closes, and the mirror accepts nothing more.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /local_big.bin HTTP/1.1\r\nHost: m\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    slow.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let shutdown = tokio::spawn(m.shutdown());
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = Vec::new();
        slow.read_to_end(&mut rest).unwrap();
        rest
    })
    .await
    .unwrap();
    let split = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(
        rest.len() - split,
        big.len(),
        "the whole body, then the close"
    );
    assert!(rest[split..] == big[..]);
    tokio::time::timeout(Duration::from_secs(20), shutdown)
        .await
        .expect("shutdown is bounded")
        .unwrap();
    // The idle keep-alive connections were closed by the shutdown.
    for mut c in conns {
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).unwrap_or(0), 0);
    }
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens any more"
    );
}
