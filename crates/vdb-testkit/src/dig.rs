//! The real `dig` (dnsutils) against a server on any port, its answer parsed.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// One resource record as dig prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    /// Owner name.
    pub name: String,
    /// TTL in seconds.
    pub ttl: u32,
    /// Record type (`A`, `TXT`, …).
    pub rtype: String,
    /// The data, as dig prints it (TXT strings keep their quotes).
    pub data: String,
}

/// A parsed dig answer.
#[derive(Debug, Clone, Default)]
pub struct Dig {
    /// `NOERROR`, `NXDOMAIN`, …
    pub status: String,
    /// Header flags (`qr`, `aa`, …).
    pub flags: Vec<String>,
    /// The answer section.
    pub answer: Vec<Rr>,
    /// The authority section.
    pub authority: Vec<Rr>,
    /// The additional section.
    pub additional: Vec<Rr>,
    /// dig's whole output (for failure messages).
    pub raw: String,
}

impl Dig {
    /// The data of the answer records of one type, sorted.
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

    /// The data of every answer record, sorted (what `dig +short` prints).
    pub fn short(&self) -> Vec<String> {
        let mut v: Vec<String> = self.answer.iter().map(|r| r.data.clone()).collect();
        v.sort();
        v
    }

    /// Every record line of the output, in order (e.g. a zone transfer, SOA first and last).
    pub fn records(&self) -> Vec<&str> {
        self.raw
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .collect()
    }

    /// Whether the header has flag `f`.
    pub fn has_flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

/// A query: `dig @server -p port [-b src] [args…] name qtype`, without recursion.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    server: SocketAddr,
    name: &'a str,
    qtype: &'a str,
    src: Option<&'a str>,
    args: Vec<&'a str>,
}

/// A query for `name` `qtype` at `server`.
pub fn query<'a>(server: SocketAddr, name: &'a str, qtype: &'a str) -> Query<'a> {
    Query {
        server,
        name,
        qtype,
        src: None,
        args: Vec::new(),
    }
}

impl<'a> Query<'a> {
    /// From this source address (`-b`).
    pub fn from(mut self, src: Option<&'a str>) -> Self {
        self.src = src;
        self
    }

    /// Extra dig options (`+tcp`, `+subnet=…`).
    pub fn args(mut self, args: &[&'a str]) -> Self {
        self.args.extend_from_slice(args);
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("dig");
        cmd.arg(format!("@{}", self.server.ip()))
            .arg("-p")
            .arg(self.server.port().to_string())
            .args(["+norec", "+time=2", "+tries=2"]);
        if let Some(s) = self.src {
            cmd.args(["-b", s]);
        }
        cmd.args(&self.args).arg(self.name).arg(self.qtype);
        cmd
    }

    /// Runs dig (blocking) and parses its answer.
    pub fn run(&self) -> Dig {
        let out = self
            .command()
            .output()
            .expect("dig runs (dnsutils installed?)");
        parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// Runs dig without blocking the runtime.
    #[cfg(feature = "net")]
    pub async fn run_async(&self) -> Dig {
        let out = tokio::process::Command::from(self.command())
            .output()
            .await
            .expect("dig runs (dnsutils installed?)");
        parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// Asks again (blocking) until `ok` holds, for at most `secs` seconds; the good answer.
    pub fn until(&self, secs: u64, ok: impl Fn(&Dig) -> bool) -> Dig {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let d = self.run();
            if ok(&d) {
                return d;
            }
            self.check(deadline, secs, &d);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// [`Query::until`] without blocking the runtime.
    #[cfg(feature = "net")]
    pub async fn until_async(&self, secs: u64, ok: impl Fn(&Dig) -> bool) -> Dig {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let d = self.run_async().await;
            if ok(&d) {
                return d;
            }
            self.check(deadline, secs, &d);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn check(&self, deadline: Instant, secs: u64, last: &Dig) {
        assert!(
            Instant::now() < deadline,
            "{} {} @{}: no good answer within {secs} s; last:\n{}",
            self.name,
            self.qtype,
            self.server,
            last.raw
        );
    }
}

/// The version a ClamAV TXT record (`<version>:…`, e.g. `test.cvd.<zone>`) advertises.
pub fn txt_version(d: &Dig) -> Option<u32> {
    d.data("TXT")
        .first()
        .and_then(|s| s.trim_matches('"').split(':').next()?.parse().ok())
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
        for (head, name) in [
            (";; ANSWER SECTION", "answer"),
            (";; AUTHORITY SECTION", "authority"),
            (";; ADDITIONAL SECTION", "additional"),
        ] {
            if line.starts_with(head) {
                section = name;
            }
        }
        if line.trim().is_empty() {
            section = "";
            continue;
        }
        if line.starts_with(';') {
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

#[cfg(test)]
mod tests {
    #[test]
    fn parses_sections_and_flags() {
        let d = super::parse(
            ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n\
             ;; flags: qr aa; QUERY: 1, ANSWER: 1\n\n\
             ;; ANSWER SECTION:\n\
             test.cvd.vdb.test.\t60\tIN\tTXT\t\"6:0:0\"\n\n\
             ;; AUTHORITY SECTION:\n\
             vdb.test.\t60\tIN\tNS\tns1.vdb.test.\n",
        );
        assert_eq!(d.status, "NOERROR");
        assert!(d.has_flag("aa"));
        assert_eq!(d.data("TXT"), ["\"6:0:0\""]);
        assert_eq!(super::txt_version(&d), Some(6));
        assert_eq!(d.authority.len(), 1);
    }
}
