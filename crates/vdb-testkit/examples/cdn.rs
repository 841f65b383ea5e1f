//! The CDN double as a process, for `bench/follow.sh`: serves ClamAV's fixture database the way
//! `database.clamav.net` does, with its version TXT record, and counts what it is asked.
//!
//! ```text
//! cargo run --release --locked -p vdb-testkit --features net --example cdn -- [HTTP_ADDR [DNS_ADDR]]
//! ```
//!
//! Prints one JSON line `{"event":"ready","http":URL,"dns":ADDR}`, then reads commands from
//! stdin, one per line, answering each with one JSON line:
//! - `serve DB VERSION FIRST`: serve `DB` at `VERSION` with cdiffs `FIRST..=VERSION`;
//! - `txt NAME TEXT` (or `txt NAME` to remove it): the TXT record `NAME`;
//! - `count`: `{"http":N,"dns":N,"names":[…],"paths":[…],"statuses":[…]}` since the last
//!   `clear`;
//! - `clear`: forget the requests and queries so far.
//!
//! It stops at the end of stdin.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use vdb_testkit::CdnDouble;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let http: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:0").parse()?;
    let dns: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:0").parse()?;
    let cdn = CdnDouble::start_on(http, dns).await?;
    let ready = serde_json::json!({"event": "ready", "http": cdn.url(), "dns": cdn.dns_addr()});
    println!("{ready}");
    // Queries counted since the last `clear` (the double keeps every one).
    let mut dns_seen = 0;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["serve", db, version, first] => {
                cdn.serve_fixtures(db, version.parse()?, first.parse()?);
                serde_json::json!({"ok": true})
            }
            ["txt", name, text] => {
                cdn.set_txt(name, Some(text));
                serde_json::json!({"ok": true})
            }
            ["txt", name] => {
                cdn.set_txt(name, None);
                serde_json::json!({"ok": true})
            }
            ["count"] => {
                let reqs = cdn.requests();
                let queries = cdn.dns_queries();
                serde_json::json!({
                    "http": reqs.len(),
                    "dns": queries.len() - dns_seen,
                    "names": queries.get(dns_seen..).unwrap_or_default(),
                    "paths": reqs.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
                    "statuses": reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
                })
            }
            ["clear"] => {
                cdn.clear_requests();
                dns_seen = cdn.dns_queries().len();
                serde_json::json!({"ok": true})
            }
            _ => serde_json::json!({"ok": false, "error": format!("unknown command: {line}")}),
        };
        println!("{answer}");
    }
    Ok(())
}
