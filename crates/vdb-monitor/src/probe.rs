//! Checking one mirror over HTTP(S): its signed manifest, the bytes of its small files, the
//! headers of its databases, recent cdiffs, response time and TLS.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vdb_fetch::header::CONTENT_RANGE;
use vdb_fetch::{Certificate, Client, ClientBuilder, Expect, StatusCode};
use vdb_format::Header;
use vdb_proto::{
    MANIFEST_PATH, Manifest, ManifestError, MirrorRecord, PublicKey, Signed, paths, sha256_hex,
};

use crate::judge::Outcome;

/// Largest manifest or registry document read.
const MAX_DOC: u64 = 8 << 20;
/// How many newest cdiffs per database are fetched and hashed.
const RECENT_CDIFFS: u32 = 3;

/// The result of checking one mirror.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub(crate) outcome: Outcome,
    /// Slowest manifest response over the mirror's URLs.
    pub(crate) response_ms: Option<u64>,
    /// Age of the `timestamp` file's content, if it holds Unix seconds.
    pub(crate) timestamp_age: Option<i64>,
    /// Remarks that do not change the state (a missing recent cdiff, …).
    pub(crate) notes: Vec<String>,
}

/// Failure of one request.
#[derive(Debug)]
pub(crate) enum Fetch {
    /// Transport, TLS or HTTP status trouble.
    Failed(vdb_fetch::Error),
    /// The answer itself is wrong (too big, not what the manifest lists, …).
    Bad(String),
}

impl std::fmt::Display for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(e) => e.fmt(f),
            Self::Bad(why) => f.write_str(why),
        }
    }
}

/// The HTTP side of the monitor.
#[derive(Debug)]
pub(crate) struct Prober {
    client: Client,
    user_agent: String,
    timeout: Duration,
    roots: Vec<Certificate>,
    network: String,
    keys: Vec<PublicKey>,
    masters: Vec<String>,
    master_token: Option<String>,
    small_max: u64,
    /// sha256 → the first 512 bytes of that object on a master.
    headers: Mutex<HashMap<String, Vec<u8>>>,
}

fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

impl Prober {
    pub(crate) fn new(config: &crate::Config) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(config.request_timeout_secs);
        let roots = match &config.tls_ca_file {
            None => Vec::new(),
            Some(p) => vdb_fetch::read_ca(p)
                .map_err(|e| anyhow::anyhow!("tls_ca_file {}: {e}", p.display()))?,
        };
        let client = Self::client_builder(&config.user_agent, timeout, &roots).build()?;
        Ok(Self {
            client,
            user_agent: config.user_agent.clone(),
            timeout,
            roots,
            network: config.network.clone(),
            keys: config.master_keys.clone(),
            masters: config.masters.clone(),
            master_token: config.master_token.clone(),
            small_max: config.small_file_max_bytes,
            headers: Mutex::new(HashMap::new()),
        })
    }

    fn client_builder(ua: &str, timeout: Duration, roots: &[Certificate]) -> ClientBuilder {
        Client::builder(ua)
            .add_roots(roots)
            .timeout(timeout)
            .connect_timeout(timeout)
    }

    /// Reads at most `max` bytes of a 2xx answer; with `head`, asks for the first `max` bytes
    /// only (`Range`), and a server that ignores the range is fine.
    async fn get(
        &self,
        client: &Client,
        url: &str,
        head: bool,
        auth: Option<&str>,
        max: u64,
    ) -> Result<(StatusCode, Option<String>, Vec<u8>), Fetch> {
        let mut req = client.get(url).bearer(auth);
        if head {
            req = req.range(0, Some(max.saturating_sub(1)));
        }
        let resp = req.send().await.map_err(Fetch::Failed)?;
        let status = resp.status();
        let content_range = resp.header(CONTENT_RANGE).map(str::to_owned);
        let body = if head {
            resp.prefix(usize::try_from(max).unwrap_or(usize::MAX))
                .await
        } else {
            resp.bytes(&Expect::at_most(max)).await
        };
        let body = body.map_err(|e| match e.kind() {
            vdb_fetch::ErrorKind::TooLarge => Fetch::Bad(e.to_string()),
            _ => Fetch::Failed(e),
        })?;
        Ok((status, content_range, body))
    }

    /// The newest valid manifest among the masters (highest serial), the registry and the
    /// names of the pending join requests from the first master that answers. Errors are
    /// returned as sentences.
    pub(crate) async fn masters(&self, now: i64) -> MastersView {
        let mut best: Option<(Signed<Manifest>, Manifest)> = None;
        let mut registry = None;
        let mut pending_joins = None;
        let mut errors = Vec::new();
        for base in &self.masters {
            match self.master_manifest(base, now).await {
                Ok((env, m)) => {
                    if best.as_ref().is_none_or(|(_, b)| m.serial > b.serial) {
                        best = Some((env, m));
                    }
                }
                Err(e) => errors.push(e),
            }
            if registry.is_none() {
                match self
                    .get(
                        &self.client,
                        &join(base, paths::MIRRORS),
                        false,
                        // A pull token also shows the mirror admins' contacts, for alerts.
                        self.master_token.as_deref(),
                        MAX_DOC,
                    )
                    .await
                {
                    Ok((_, _, body)) => match serde_json::from_slice::<Vec<MirrorRecord>>(&body) {
                        Ok(r) => registry = Some(r),
                        Err(e) => errors.push(format!("master {base}: bad registry: {e}")),
                    },
                    Err(e) => errors.push(format!("master {e}")),
                }
            }
            if pending_joins.is_none() {
                // The public status: the names only, never the requesters' contacts. A master
                // too old to know joins answers without the field: none pending.
                if let Ok((_, _, body)) = self
                    .get(
                        &self.client,
                        &join(base, paths::STATUS),
                        false,
                        None,
                        MAX_DOC,
                    )
                    .await
                {
                    pending_joins = serde_json::from_slice::<PendingJoins>(&body)
                        .ok()
                        .map(|p| p.pending_join_names);
                }
            }
        }
        MastersView {
            manifest: best,
            registry,
            pending_joins,
            errors,
        }
    }

    /// The manifest the master at `base` serves, read and checked; an error as a sentence.
    async fn master_manifest(
        &self,
        base: &str,
        now: i64,
    ) -> Result<(Signed<Manifest>, Manifest), String> {
        let url = join(base, MANIFEST_PATH);
        let (_, _, body) = self
            .get(&self.client, &url, false, None, MAX_DOC)
            .await
            .map_err(|e| format!("master {e}"))?;
        self.read_manifest(&body, now)
            .map_err(|e| format!("master {base}: {e}"))
    }

    /// The highest serial of a valid manifest any master serves (the release watch: one
    /// small request per master).
    pub(crate) async fn newest_serial(&self, now: i64) -> Option<u64> {
        let mut best = None;
        for base in &self.masters {
            if let Ok((_, m)) = self.master_manifest(base, now).await {
                best = best.max(Some(m.serial));
            }
        }
        best
    }

    fn read_manifest(&self, body: &[u8], now: i64) -> Result<(Signed<Manifest>, Manifest), String> {
        let env = Signed::<Manifest>::from_json(body).map_err(|e| e.to_string())?;
        let m = env.verify(&self.keys).map_err(|e| e.to_string())?;
        m.check(&self.network, now).map_err(|e| e.to_string())?;
        Ok((env, m))
    }

    /// The first 512 bytes of an object on a master, if some master gives them.
    async fn master_header(&self, sha256: &str) -> Option<Vec<u8>> {
        if let Some(h) = self.headers.lock().expect("header cache").get(sha256) {
            return Some(h.clone());
        }
        for base in &self.masters {
            let url = join(base, &format!("{}/{sha256}", paths::OBJECTS));
            if let Ok((_, _, body)) = self
                .get(&self.client, &url, true, self.master_token.as_deref(), 512)
                .await
                && body.len() == 512
            {
                let mut cache = self.headers.lock().expect("header cache");
                if cache.len() > 1024 {
                    cache.clear();
                }
                cache.insert(sha256.to_owned(), body.clone());
                return Some(body);
            }
        }
        None
    }

    /// Checks one mirror over each of its base URLs (and each registered address when a URL
    /// names a host).
    pub(crate) async fn probe(
        &self,
        rec: &MirrorRecord,
        newest: Option<&Manifest>,
        now: i64,
        deep: bool,
    ) -> Probe {
        let mut probe = Probe {
            outcome: Outcome::Failed("no base URL registered".into()),
            response_ms: None,
            timestamp_age: None,
            notes: Vec::new(),
        };
        let mut results = Vec::new();
        for base in &rec.base_urls {
            for (label, client) in self.targets(base, rec) {
                let t0 = Instant::now();
                let r = self
                    .probe_url(&client, base, newest, now, deep, &mut probe)
                    .await;
                let ms = t0.elapsed().as_millis() as u64;
                probe.response_ms = Some(probe.response_ms.map_or(ms, |m| m.max(ms)));
                results.push((label, r));
            }
        }
        let mut serving: Option<(BTreeMap<String, u32>, u64)> = None;
        let mut failed = Vec::new();
        for (label, r) in results {
            match r {
                Ok((s, serial)) => {
                    // Several URLs: judge by the worst of what they serve.
                    serving = Some(match serving {
                        None => (s, serial),
                        Some((mut acc, acc_serial)) => {
                            for (db, v) in s {
                                let e = acc.entry(db).or_insert(v);
                                *e = (*e).min(v);
                            }
                            (acc, acc_serial.min(serial))
                        }
                    });
                }
                Err(Fetch::Bad(why)) => {
                    probe.outcome = Outcome::Bad(format!("{label}: {why}"));
                    return probe;
                }
                Err(e @ Fetch::Failed(_)) => failed.push(format!("{label}: {e}")),
            }
        }
        probe.outcome = match (failed.is_empty(), serving) {
            (true, Some((serving, serial))) => Outcome::Good { serving, serial },
            (true, None) => Outcome::Failed("no base URL registered".into()),
            (false, _) => Outcome::Failed(failed.join("; ")),
        };
        probe
    }

    /// One client per way of reaching `base`: directly, or pinned to each registered address
    /// (IPv4 and IPv6) when the URL names a host.
    fn targets(&self, base: &str, rec: &MirrorRecord) -> Vec<(String, Client)> {
        let direct = vec![(base.to_owned(), self.client.clone())];
        let Ok(url) = vdb_fetch::Url::parse(base) else {
            return direct;
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return direct;
        };
        if rec.addresses.is_empty()
            || host.parse::<std::net::IpAddr>().is_ok()
            || host.starts_with('[')
        {
            return direct;
        }
        let mut out = Vec::new();
        for addr in &rec.addresses {
            let client = Self::client_builder(&self.user_agent, self.timeout, &self.roots)
                .resolve(host, SocketAddr::new(*addr, port))
                .build();
            match client {
                Ok(c) => out.push((format!("{base} via {addr}"), c)),
                Err(_) => return direct,
            }
        }
        out
    }

    async fn probe_url(
        &self,
        client: &Client,
        base: &str,
        newest: Option<&Manifest>,
        now: i64,
        deep: bool,
        probe: &mut Probe,
    ) -> Result<(BTreeMap<String, u32>, u64), Fetch> {
        let (_, _, body) = self
            .get(client, &join(base, MANIFEST_PATH), false, None, MAX_DOC)
            .await?;
        let env = Signed::<Manifest>::from_json(&body)
            .map_err(|e| Fetch::Bad(format!("its manifest is not a signed manifest: {e}")))?;
        let m = env
            .verify(&self.keys)
            .map_err(|e| Fetch::Bad(format!("its manifest fails verification: {e}")))?;
        m.check(&self.network, now).map_err(|e| match e {
            ManifestError::Expired { .. } => Fetch::Bad(format!("serves an expired manifest: {e}")),
            e => Fetch::Bad(format!("its manifest is refused: {e}")),
        })?;
        if let Some(n) = newest
            && let Err(ManifestError::Equivocation(s)) = m.freshness(n)
        {
            return Err(Fetch::Bad(format!(
                "its manifest serial {s} differs from the masters' manifest with that serial"
            )));
        }
        for f in &m.files {
            let url = join(base, &f.name);
            let lower = f.name.to_ascii_lowercase();
            let container = [".cvd", ".cld", ".cud"].iter().any(|e| lower.ends_with(e));
            let small = !container && f.size <= self.small_max && self.worth_hashing(&m, &f.name);
            if deep && !small {
                self.hash_whole(client, &url, f).await?;
            }
            if container {
                let (status, cr, head) = self.get(client, &url, true, None, 512).await?;
                if status == StatusCode::PARTIAL_CONTENT
                    && let Some(total) = cr.as_deref().and_then(|c| c.rsplit('/').next())
                    && total != f.size.to_string()
                {
                    return Err(Fetch::Bad(format!(
                        "{} is {total} bytes, its manifest says {}",
                        f.name, f.size
                    )));
                }
                let h = Header::parse(&head)
                    .map_err(|e| Fetch::Bad(format!("{}: bad CVD header: {e}", f.name)))?;
                let db = f.name.rsplit_once('.').map_or("", |(s, _)| s);
                if let Some(state) = m.databases.get(db)
                    && state.version != h.version
                {
                    return Err(Fetch::Bad(format!(
                        "{} header says version {}, its manifest says {}",
                        f.name, h.version, state.version
                    )));
                }
                if let Some(master) = self.master_header(&f.sha256).await
                    && master != head
                {
                    return Err(Fetch::Bad(format!(
                        "{} header differs from the master's copy of the file its manifest lists",
                        f.name
                    )));
                }
            } else if small {
                let (_, _, bytes) = self.get(client, &url, false, None, f.size).await?;
                if bytes.len() as u64 != f.size || sha256_hex(&bytes) != f.sha256 {
                    return Err(Fetch::Bad(format!(
                        "{} does not match its signed manifest (tampered or partly written)",
                        f.name
                    )));
                }
                if f.name == "timestamp"
                    && let Some(t) = std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.trim().parse::<i64>().ok())
                {
                    probe.timestamp_age = Some(now - t);
                }
            }
        }
        for (db, state) in &m.databases {
            let has_cdiffs = m
                .files
                .iter()
                .any(|f| f.name.starts_with(&format!("{db}-")) && f.name.ends_with(".cdiff"));
            if has_cdiffs && m.file(&format!("{db}-{}.cdiff", state.version)).is_none() {
                let note = format!("no cdiff for {db} {}", state.version);
                if !probe.notes.contains(&note) {
                    probe.notes.push(note);
                }
            }
        }
        let serving = m
            .databases
            .iter()
            .map(|(db, s)| (db.clone(), s.version))
            .collect();
        Ok((serving, m.serial))
    }

    /// Downloads `f` whole from `url` (streamed, never more than the manifest's size) and
    /// checks its size and SHA-256: the whole-file check.
    async fn hash_whole(
        &self,
        client: &Client,
        url: &str,
        f: &vdb_proto::FileRef,
    ) -> Result<(), Fetch> {
        // A whole CVD takes longer than one small request: allow 1 MiB/s at least.
        let timeout = self.timeout.max(Duration::from_secs(f.size >> 20));
        let resp = client
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(Fetch::Failed)?;
        match resp
            .for_each_chunk(&Expect::exactly(f.size, &f.sha256), |_| Ok(()))
            .await
        {
            Ok(_) => Ok(()),
            Err(
                vdb_fetch::Error::TooLarge { .. }
                | vdb_fetch::Error::Truncated { .. }
                | vdb_fetch::Error::DigestMismatch { .. },
            ) => Err(Fetch::Bad(format!(
                "{} does not match its signed manifest (whole-file check: tampered or partly written)",
                f.name
            ))),
            Err(e) => Err(Fetch::Failed(e)),
        }
    }

    /// Small files worth hashing each check: everything but old cdiffs and their `.sign`
    /// files (a CVD's `.sign` is always hashed: ClamAV 1.5 rejects the CVD if it is wrong).
    fn worth_hashing(&self, m: &Manifest, name: &str) -> bool {
        let name = name.strip_suffix(".sign").unwrap_or(name);
        let Some(stem) = name.strip_suffix(".cdiff") else {
            return true;
        };
        let Some((db, v)) = stem.rsplit_once('-') else {
            return true;
        };
        match (m.databases.get(db), v.parse::<u32>()) {
            (Some(s), Ok(v)) => v + RECENT_CDIFFS > s.version,
            _ => true,
        }
    }

    /// The other monitors' own verdicts (`?view=local`), for the quorum.
    pub(crate) async fn peer_verdicts(
        &self,
        url: &str,
    ) -> Result<vdb_proto::VerdictReport, String> {
        let sep = if url.contains('?') { '&' } else { '?' };
        let (_, _, body) = self
            .get(
                &self.client,
                &format!("{url}{sep}view=local"),
                false,
                None,
                MAX_DOC,
            )
            .await
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&body).map_err(|e| format!("{url}: bad verdict report: {e}"))
    }

    /// POSTs a JSON alert to a webhook. The webhook URL may carry a secret (in its path or
    /// query): it is marked secret, so errors and logs show only its host.
    pub(crate) async fn post_json(&self, url: &str, body: &str) -> Result<(), String> {
        self.client
            .post(url)
            .secret_url()
            .json_body(body)
            .send()
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// What one look at the masters found.
pub(crate) struct MastersView {
    /// The newest valid manifest (highest serial).
    pub(crate) manifest: Option<(Signed<Manifest>, Manifest)>,
    /// The registry, from the first master that answered.
    pub(crate) registry: Option<Vec<MirrorRecord>>,
    /// Names of the join requests waiting for the network's admin.
    pub(crate) pending_joins: Option<Vec<String>>,
    /// Each failure, as a sentence.
    pub(crate) errors: Vec<String>,
}

/// The part of a master's `GET /api/v1/status` the monitor shows.
#[derive(serde::Deserialize)]
struct PendingJoins {
    #[serde(default)]
    pending_join_names: Vec<String>,
}
