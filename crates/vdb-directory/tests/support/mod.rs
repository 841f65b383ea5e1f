//! Test doubles (a master registry and a monitor, as one small axum server) and a `dig` driver.

#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod mmdb;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use vdb_proto::{MirrorRecord, MirrorState, MirrorVerdict, VerdictReport};

/// What the doubles serve; tests change it while the directory runs.
#[derive(Debug, Default)]
pub struct Network {
    pub registry: Vec<MirrorRecord>,
    pub verdicts: Vec<MirrorVerdict>,
    pub master_down: bool,
    pub monitor_down: bool,
}

/// The doubles' server.
#[derive(Debug, Clone)]
pub struct Doubles {
    pub url: String,
    pub net: Arc<Mutex<Network>>,
}

async fn mirrors(State(net): State<Arc<Mutex<Network>>>) -> Response {
    let n = net.lock().unwrap();
    if n.master_down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(n.registry.clone()).into_response()
}

async fn verdicts(State(net): State<Arc<Mutex<Network>>>) -> Response {
    let n = net.lock().unwrap();
    if n.monitor_down {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    axum::Json(VerdictReport {
        monitor: "test-monitor".into(),
        generated_at: 0,
        newest: BTreeMap::new(),
        mirrors: n.verdicts.clone(),
    })
    .into_response()
}

impl Doubles {
    /// Starts the doubles on 127.0.0.1:0.
    pub async fn start(net: Network) -> Self {
        let net = Arc::new(Mutex::new(net));
        let app = Router::new()
            .route("/api/v1/mirrors", get(mirrors))
            .route("/api/v1/verdicts", get(verdicts))
            .with_state(net.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        Self { url, net }
    }

    /// Changes what is served.
    pub fn edit(&self, f: impl FnOnce(&mut Network)) {
        f(&mut self.net.lock().unwrap());
    }
}

/// A mirror record with one address and a region.
pub fn mirror(name: &str, ip: &str, region: Option<&str>, bw: u32) -> MirrorRecord {
    let mut r = MirrorRecord::new(name, format!("http://{ip}:8080"));
    r.addresses = vec![ip.parse().unwrap()];
    r.region = region.map(str::to_owned);
    r.bandwidth_mbps = bw;
    r
}

/// A verdict with the given daily/main versions.
pub fn verdict(name: &str, state: MirrorState, daily: u32, main: u32) -> MirrorVerdict {
    MirrorVerdict {
        name: name.into(),
        state,
        serving: [
            ("daily".to_owned(), daily),
            ("main".to_owned(), main),
            ("bytecode".to_owned(), 339),
        ]
        .into(),
        serial: None,
        lag_secs: 0,
        last_good: None,
        reason: String::new(),
    }
}

/// One resource record as dig prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// A parsed dig answer.
#[derive(Debug, Clone, Default)]
pub struct Dig {
    pub status: String,
    pub flags: Vec<String>,
    pub answer: Vec<Rr>,
    pub authority: Vec<Rr>,
    pub additional: Vec<Rr>,
    pub raw: String,
}

impl Dig {
    /// The data of the answer records of one type.
    pub fn data(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect();
        v.sort();
        v
    }

    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

/// Runs `dig @server -p port [-b src] name type args…` and parses it.
pub async fn dig(
    server: SocketAddr,
    src: Option<&str>,
    name: &str,
    qtype: &str,
    args: &[&str],
) -> Dig {
    let mut cmd = tokio::process::Command::new("dig");
    cmd.arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+norec", "+time=2", "+tries=2"]);
    if let Some(s) = src {
        cmd.args(["-b", s]);
    }
    cmd.args(args).arg(name).arg(qtype);
    let out = cmd.output().await.expect("dig runs (dnsutils installed?)");
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    parse(&raw)
}

fn parse(raw: &str) -> Dig {
    let mut d = Dig {
        raw: raw.to_owned(),
        ..Default::default()
    };
    let mut section = "";
    for line in raw.lines() {
        if let Some(i) = line.find("status: ") {
            d.status = line[i + 8..].split(',').next().unwrap_or("").to_owned();
        }
        if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or("");
            d.flags = flags.split_whitespace().map(str::to_owned).collect();
        }
        if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
            continue;
        }
        if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
            continue;
        }
        if line.starts_with(";; ADDITIONAL SECTION") {
            section = "additional";
            continue;
        }
        if line.trim().is_empty() || line.starts_with(';') {
            if line.trim().is_empty() {
                section = "";
            }
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        let rr = Rr {
            name: f[0].to_owned(),
            ttl: f[1].parse().unwrap_or(0),
            rtype: f[3].to_owned(),
            data: f[4..].join(" "),
        };
        match section {
            "answer" => d.answer.push(rr),
            "authority" => d.authority.push(rr),
            "additional" => d.additional.push(rr),
            _ => {}
        }
    }
    d
}

/// Asks dig again until `ok` holds for the answer, for at most `secs` seconds.
pub async fn dig_until(
    server: SocketAddr,
    src: Option<&str>,
    name: &str,
    qtype: &str,
    secs: u64,
    ok: impl Fn(&Dig) -> bool,
) -> Dig {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let d = dig(server, src, name, qtype, &[]).await;
        if ok(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "no good answer within {secs} s; last:\n{}",
            d.raw
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
