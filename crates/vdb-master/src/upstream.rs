//! Following a ClamAV-style upstream (the private-mirror case): probe each database's CVD
//! header over HTTP, fetch a new CVD with the cdiffs from the held version, and publish them
//! as a release through the same gate as any publisher's; then make the network hold every
//! cdiff (and `.sign` file) the upstream still has within the retention (`keep_cdiffs`),
//! adding what is missing as a *supplement* of the held version ([`crate::supplement`]).
//!
//! Politeness: one `User-Agent` (configured, honest by default), no redirects unless
//! configured, every answer bounded in size and time. A `429` or `403` puts that upstream on
//! cool-down (its `Retry-After`, else `cooldown_secs`), a `5xx`, a timeout or a broken
//! connection on an exponential back-off with full jitter; either way it gets no request at
//! all until then, the next upstream in the list is asked instead, and the state survives
//! restarts (`<data_dir>/upstream-state.json`, written atomically).
//!
//! Nothing is dropped silently: every cdiff or `.sign` file that could not be fetched or was
//! refused is logged and counted (`vdb_master_upstream_events_total`), and a cdiff that failed
//! is asked for again on the next check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use vdb_fetch::{ErrorKind, Expect, RetryPolicy};
use vdb_format::Header;
use vdb_proto::{ErrorCode, FileRef, ReleaseStatement, SecretKey, Signed};

use crate::config::{Config, UpstreamConfig};
use crate::events::Origin;
use crate::gate::Refusal;
use crate::metrics::Metrics;
use crate::store::Store;

/// The largest `.sign` file taken from an upstream (ClamAV's are about 5 KiB).
const MAX_SIGN_FILE: u64 = 64 << 10;

/// The largest persisted state file read back.
const MAX_STATE_FILE: u64 = 1 << 20;

/// What the master knows of one upstream URL: shown in `GET /api/v1/status` and persisted in
/// `<data_dir>/upstream-state.json` so that a cool-down outlives a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpstreamHealth {
    /// The base URL.
    pub url: String,
    /// No request is sent to it before this time (Unix seconds; 0 = none).
    #[serde(default)]
    pub blocked_until: i64,
    /// Why it is blocked (`cooldown: …` after a 429/403, `backoff: …` after failures).
    #[serde(default)]
    pub blocked_reason: Option<String>,
    /// Failures in a row (5xx, timeouts, broken connections); 0 after a good check.
    #[serde(default)]
    pub failures: u32,
    /// The last error it gave.
    #[serde(default)]
    pub last_error: Option<String>,
    /// The last check it answered completely (Unix seconds).
    #[serde(default)]
    pub last_ok_at: Option<i64>,
}

/// The upstreams' health, shared with the status API.
#[derive(Debug, Default)]
pub(crate) struct Health {
    urls: Mutex<Vec<UpstreamHealth>>,
    path: Option<PathBuf>,
}

impl Health {
    /// The health of `urls`, with what `<data_dir>/upstream-state.json` remembers of them.
    pub(crate) fn open(config: &Config) -> Self {
        let Some(up) = &config.upstream else {
            return Self::default();
        };
        let path = config.data_dir.join("upstream-state.json");
        let saved: Vec<UpstreamHealth> = match std::fs::metadata(&path) {
            Ok(m) if m.len() <= MAX_STATE_FILE => std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_else(|| {
                    tracing::warn!(path = %path.display(), "unreadable upstream state; starting without cool-downs");
                    Vec::new()
                }),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "upstream state file too large; ignored");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        let urls = up
            .base_urls()
            .into_iter()
            .map(|url| {
                saved
                    .iter()
                    .find(|h| h.url == url)
                    .cloned()
                    .unwrap_or(UpstreamHealth {
                        url,
                        ..UpstreamHealth::default()
                    })
            })
            .collect();
        Self {
            urls: Mutex::new(urls),
            path: Some(path),
        }
    }

    /// What is known of every upstream, in the configured order.
    pub(crate) fn snapshot(&self) -> Vec<UpstreamHealth> {
        self.urls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn get(&self, i: usize) -> UpstreamHealth {
        self.snapshot().get(i).cloned().unwrap_or_default()
    }

    /// Changes upstream `i`; persists the state when `persist`.
    fn update(&self, i: usize, persist: bool, f: impl FnOnce(&mut UpstreamHealth)) {
        let all = {
            let mut urls = self.urls.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(h) = urls.get_mut(i) {
                f(h);
            }
            urls.clone()
        };
        if persist && let Some(path) = &self.path {
            let json = serde_json::to_vec_pretty(&all).unwrap_or_default();
            if let Err(e) = vdb_format::write_atomic(path, &json) {
                tracing::error!(path = %path.display(), error = %e, "could not persist the upstream state");
            }
        }
    }
}

/// Follows an upstream into the store, signing its releases with its own publisher key.
#[derive(Debug)]
pub(crate) struct Follower {
    store: Arc<Store>,
    http: vdb_fetch::Client,
    metrics: Arc<Metrics>,
    up: UpstreamConfig,
    urls: Vec<String>,
    key: SecretKey,
    health: Arc<Health>,
    /// Per database: the highest cdiff version the upstream answered 404 for (its window
    /// ends there, so nothing at or below it is asked for again).
    gone: BTreeMap<String, u32>,
    /// `.sign` files the upstream answered 404 for (asked again after a restart).
    sign_absent: BTreeSet<String>,
    /// Files the gate refused, by name and SHA-256 (the same bytes are not offered again).
    refused: BTreeSet<(String, String)>,
    /// The peers (a standby follows only while they are silent).
    peers: Arc<crate::peers::Peers>,
    /// When the follower started (master clock seconds).
    started: i64,
    /// `.sign` downloads that failed (not 404) since the start.
    sign_failures: u64,
    /// The TXT reader, when `dns_txt` is set.
    txt: Option<vdb_fetch::dns::Txt>,
    /// Databases whose files may be incomplete (a fetch failed; every database after a
    /// start): the TXT record saying "nothing changed" does not spare them a check.
    pending: BTreeSet<String>,
}

/// What one check of one database did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Followed {
    /// The upstream has nothing newer (and nothing was missing).
    Current(u32),
    /// A new version was published.
    Published(u32),
    /// Files of the held version were added (cdiffs, `.sign` files), without a new version.
    Supplemented(usize),
    /// The upstream holds an older version than the network: nothing is changed.
    Backwards { upstream: u32, held: u32 },
    /// The gate refused the upstream's files.
    Refused(String),
}

/// Why a check stopped.
#[derive(Debug)]
enum Fail {
    /// An upstream request failed (the upstream's health follows from its kind).
    Upstream(vdb_fetch::Error),
    /// Anything else (an unreadable header, the local store).
    Other(anyhow::Error),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Upstream(e) => write!(f, "{e}"),
            Self::Other(e) => write!(f, "{e:#}"),
        }
    }
}

fn other(e: impl Into<anyhow::Error>) -> Fail {
    Fail::Other(e.into())
}

/// Whether an error stops every request to that upstream at once (cool-down).
fn is_refusal(e: &vdb_fetch::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::RateLimited { .. } | ErrorKind::Forbidden
    )
}

/// The metric label of a request's outcome.
fn outcome(e: &vdb_fetch::Error) -> &'static str {
    match e.kind() {
        ErrorKind::NotFound => "not_found",
        ErrorKind::RateLimited { .. } => "rate_limited",
        ErrorKind::Forbidden => "forbidden",
        ErrorKind::Unavailable { .. } => "unavailable",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Network => "network",
        ErrorKind::TooLarge => "too_large",
        _ => "other",
    }
}

/// The HTTP client of the follower: its own `User-Agent`, proxy, redirects and time-outs.
fn client(config: &Config, up: &UpstreamConfig) -> anyhow::Result<vdb_fetch::Client> {
    let mut b = vdb_fetch::Client::builder(up.user_agent())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(up.timeout_secs))
        .read_timeout(Some(Duration::from_secs(30)))
        .redirects(up.max_redirects);
    if let Some(ca) = &config.tls_ca_file {
        b = b.add_roots(&vdb_fetch::read_ca(ca)?);
    }
    if let Some(url) = &up.proxy {
        let mut p = vdb_fetch::ProxyConfig::new(url.clone());
        if let (Some(user), Some(file)) = (&up.proxy_user, &up.proxy_password_file) {
            let pw = std::fs::read_to_string(file).map_err(|e| {
                anyhow::anyhow!(
                    "reading upstream.proxy_password_file {}: {e}",
                    file.display()
                )
            })?;
            p = p.with_credentials(user.clone(), pw.lines().next().unwrap_or("").to_owned());
        }
        b = b.proxy(Some(p));
    }
    Ok(b.build()?)
}

impl Follower {
    /// A follower of `up` into `store`, signing with `key`, reporting to `health`.
    pub(crate) fn new(
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        up: UpstreamConfig,
        key: SecretKey,
        health: Arc<Health>,
        peers: Arc<crate::peers::Peers>,
    ) -> anyhow::Result<Self> {
        let started = store.now();
        let http = client(store.config(), &up)?;
        let urls = up.base_urls();
        let txt = match &up.dns_txt {
            Some(_) => Some(
                vdb_fetch::dns::Txt::new(up.dns_server)
                    .map_err(|e| anyhow::anyhow!("[upstream] dns_txt: {e}"))?,
            ),
            None => None,
        };
        let pending = up.databases.iter().cloned().collect();
        for (i, h) in health.snapshot().iter().enumerate() {
            metrics.upstream_blocked_until(i, h.blocked_until);
        }
        Ok(Self {
            store,
            http,
            metrics,
            up,
            urls,
            key,
            health,
            gone: BTreeMap::new(),
            sign_absent: BTreeSet::new(),
            refused: BTreeSet::new(),
            peers,
            started,
            sign_failures: 0,
            txt,
            pending,
        })
    }

    /// The versions the TXT record advertises this round (`None`: no DNS, or the record is
    /// missing, broken or stale: header probes then).
    async fn advertised(&self) -> Option<BTreeMap<String, u32>> {
        let (txt, name) = (self.txt.as_ref()?, self.up.dns_txt.as_deref()?);
        let now = self.store.now();
        let zone = name.split_once('.').map_or(name, |(_, z)| z);
        let mut out = BTreeMap::new();
        let mut current = None;
        for db in &self.up.databases {
            let got = if vdb_format::dnstxt::current_field(db).is_some() {
                if current.is_none() {
                    current = Some(self.lookup(txt, name).await.and_then(|t| {
                        vdb_format::dnstxt::CurrentRecord::parse(&t)
                            .map_err(|e| format!("{name}: {e}"))
                            .and_then(|r| {
                                if r.is_fresh(now) {
                                    Ok(r)
                                } else {
                                    Err(format!("{name} is older than 12 hours ({})", r.time))
                                }
                            })
                    }));
                }
                match current.as_ref()? {
                    Ok(r) => r.version_of(db).ok_or_else(|| format!("no field for {db}")),
                    Err(e) => Err(e.clone()),
                }
            } else {
                let n = format!("{db}.{zone}");
                self.lookup(txt, &n).await.and_then(|t| {
                    vdb_format::dnstxt::DbRecord::parse(&t)
                        .map_err(|e| format!("{n}: {e}"))
                        .and_then(|r| {
                            if r.is_fresh(now) {
                                Ok(r.version)
                            } else {
                                Err(format!("{n} is older than 12 hours ({})", r.time))
                            }
                        })
                })
            };
            match got {
                Ok(v) => {
                    out.insert(db.clone(), v);
                }
                Err(e) => {
                    self.metrics.upstream_event("dns_fallback", db);
                    tracing::info!(db, error = %e, "no usable version TXT record; probing the CVD header");
                }
            }
        }
        Some(out)
    }

    async fn lookup(&self, txt: &vdb_fetch::dns::Txt, name: &str) -> Result<String, String> {
        self.metrics.upstream_event("dns_query", "");
        txt.first_string(name).await
    }

    /// The follower loop.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let tick = Duration::from_millis(self.store.config().tick_ms);
        let mut next = self.store.now();
        loop {
            if self.store.now() >= next && self.store.is_ready() {
                next = self.store.now() + self.up.interval_secs;
                if self.standing_by() {
                    self.metrics.upstream("standby");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(tick) => {}
                    }
                    continue;
                }
                let advertised = self.advertised().await.unwrap_or_default();
                for db in self.up.databases.clone() {
                    if let Some(&v) = advertised.get(&db)
                        && self.unchanged(&db, v)
                    {
                        continue;
                    }
                    self.check(&db).await;
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// Whether this master is a standby whose peers answered recently (it does not follow).
    fn standing_by(&self) -> bool {
        let Some(after) = self.up.standby_after_secs else {
            return false;
        };
        let heard = self.peers.answered_at().max(self.started);
        let silent = self.store.now().saturating_sub(heard);
        if silent < after {
            tracing::debug!(
                silent,
                after,
                "standby: the peers answer, so they follow the upstream"
            );
            return true;
        }
        tracing::info!(
            silent,
            "standby: no peer answered for {silent} s; following the upstream"
        );
        false
    }

    /// Whether the TXT record's `advertised` version means nothing to do for `db`: the network
    /// holds it (or newer) and nothing of it is known to be missing. No HTTP request then.
    fn unchanged(&self, db: &str, advertised: u32) -> bool {
        let held = self
            .store
            .held()
            .ok()
            .and_then(|h| h.get(db).map(|h| h.version))
            .unwrap_or(0);
        if advertised > held || self.pending.contains(db) {
            return false;
        }
        self.metrics.upstream("current");
        self.metrics.upstream_event("dns_current", db);
        tracing::debug!(
            db,
            advertised,
            held,
            "the TXT record says nothing changed: no request"
        );
        true
    }

    /// Checks `db` on the first upstream that is not blocked, failing over down the list.
    async fn check(&mut self, db: &str) {
        let now = self.store.now();
        let mut asked = false;
        for i in 0..self.urls.len() {
            let h = self.health.get(i);
            if h.blocked_until > now {
                self.metrics.upstream_event("skipped_blocked", db);
                tracing::debug!(db, upstream = %h.url, until = h.blocked_until, reason = ?h.blocked_reason, "upstream blocked: no request");
                continue;
            }
            if asked {
                self.metrics.upstream_event("failover", db);
                tracing::info!(db, upstream = %h.url, "failing over to the next upstream");
            }
            asked = true;
            let base = self.urls[i].clone();
            match self.check_db(i, &base, db).await {
                Ok(followed) => {
                    self.report(db, &followed);
                    let clear = h.failures > 0 || h.blocked_until != 0;
                    self.health.update(i, clear, |h| {
                        h.failures = 0;
                        h.blocked_until = 0;
                        h.blocked_reason = None;
                        h.last_ok_at = Some(now);
                    });
                    if clear {
                        self.metrics.upstream_blocked_until(i, 0);
                    }
                    return;
                }
                Err(Fail::Upstream(e)) => {
                    self.metrics.upstream("error");
                    tracing::warn!(db, upstream = %base, error = %e, "upstream check failed");
                    self.penalize(i, &e);
                }
                Err(Fail::Other(e)) => {
                    self.metrics.upstream("error");
                    tracing::warn!(db, upstream = %base, error = %format!("{e:#}"), "upstream check failed");
                    self.health
                        .update(i, false, |h| h.last_error = Some(format!("{e:#}")));
                }
            }
        }
        if !asked {
            self.metrics.upstream("blocked");
        }
    }

    fn report(&self, db: &str, followed: &Followed) {
        match followed {
            Followed::Current(v) => {
                self.metrics.upstream("current");
                tracing::debug!(db, version = v, "upstream has nothing newer");
            }
            Followed::Published(v) => {
                self.metrics.upstream("new");
                tracing::info!(db, version = v, "followed a new upstream version");
            }
            Followed::Supplemented(n) => {
                self.metrics.upstream("supplemented");
                tracing::info!(
                    db,
                    files = n,
                    "added missing upstream files to the held version"
                );
            }
            Followed::Backwards { upstream, held } => {
                self.metrics.upstream("backwards");
                self.metrics.upstream_event("backwards", db);
                tracing::warn!(
                    db,
                    upstream,
                    held,
                    "the upstream holds an older version than the network; nothing changed"
                );
            }
            Followed::Refused(why) => {
                self.metrics.upstream("refused");
                tracing::warn!(db, reason = %why, "upstream files refused by the gate");
            }
        }
    }

    /// Blocks upstream `i` after `e`: a cool-down after a 429/403, a back-off after
    /// unavailability; persisted.
    fn penalize(&self, i: usize, e: &vdb_fetch::Error) {
        let now = self.store.now();
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let cooldown = |asked: Option<Duration>| {
            let wait = asked
                .unwrap_or(Duration::from_secs(self.up.cooldown_secs))
                .min(Duration::from_secs(self.up.cooldown_max_secs));
            (
                now.saturating_add(secs(wait)),
                format!("cooldown: {e}"),
                "cooldown",
            )
        };
        let (until, reason, event) = match e.kind() {
            ErrorKind::RateLimited { retry_after } => cooldown(retry_after),
            ErrorKind::Forbidden => cooldown(e.retry_after()),
            // A 503 with a Retry-After is the server asking for a pause too.
            ErrorKind::Unavailable {
                retry_after: Some(d),
            } if !d.is_zero() => cooldown(Some(d)),
            ErrorKind::Unavailable { .. } | ErrorKind::Timeout | ErrorKind::Network => {
                let failures = self.health.get(i).failures.saturating_add(1);
                let policy = RetryPolicy {
                    max_attempts: u32::MAX,
                    base_delay: Duration::from_secs(self.up.backoff_base_secs),
                    max_delay: Duration::from_secs(self.up.backoff_max_secs),
                    max_total: Duration::MAX,
                };
                let wait = policy.backoff(failures);
                (
                    now.saturating_add(secs(wait).max(1)),
                    format!("backoff: {e} (failure {failures} in a row)"),
                    "backoff",
                )
            }
            _ => {
                self.health
                    .update(i, false, |h| h.last_error = Some(e.to_string()));
                return;
            }
        };
        self.metrics.upstream_event(event, "");
        self.metrics.upstream_blocked_until(i, until);
        tracing::warn!(upstream = %self.urls[i], until, reason = %reason, "upstream blocked: no request to it until then");
        self.health.update(i, true, |h| {
            h.blocked_until = until;
            h.blocked_reason = Some(reason);
            if event == "backoff" {
                h.failures = h.failures.saturating_add(1);
            }
            h.last_error = Some(e.to_string());
        });
    }

    /// Counts the outcome of a request to upstream `i`.
    fn count<T>(&self, i: usize, r: &Result<T, vdb_fetch::Error>) {
        self.metrics.upstream_request(
            i,
            match r {
                Ok(_) => "ok",
                Err(e) => outcome(e),
            },
        );
    }

    /// Reads the upstream's `<db>.cvd` header (`Range: bytes=0-511`, `If-Modified-Since` the
    /// held build time); `None` when it answers 304.
    async fn probe(
        &self,
        i: usize,
        base: &str,
        db: &str,
        built_at: Option<i64>,
    ) -> Result<Option<Header>, Fail> {
        let mut req = self
            .http
            .get(&format!("{base}/{db}.cvd"))
            .range(0, Some(511));
        if let Some(t) = built_at.filter(|t| *t > 0) {
            req = req
                .if_modified_since(SystemTime::UNIX_EPOCH + Duration::from_secs(t.unsigned_abs()));
        }
        let r = async {
            let resp = req.send().await?;
            if resp.not_modified() {
                return Ok(None);
            }
            // A CDN may ignore the range and send the whole file: only 512 bytes are read.
            resp.prefix(512).await.map(Some)
        }
        .await;
        self.count(i, &r);
        match r.map_err(Fail::Upstream)? {
            None => Ok(None),
            Some(head) => Header::parse(&head)
                .map(Some)
                .map_err(|e| other(anyhow::anyhow!("upstream {base}/{db}.cvd header: {e}"))),
        }
    }

    /// Downloads `<base>/<name>` (at most the largest file a release may hold) into the
    /// object store.
    async fn fetch(&self, i: usize, base: &str, name: &str) -> Result<FileRef, Fail> {
        let objects = self.store.objects().clone();
        let max = self.store.policy().max_file_size();
        let mut up = objects.begin(max).map_err(other)?;
        let r = async {
            self.http
                .get(&format!("{base}/{name}"))
                .send()
                .await?
                .for_each_chunk(&Expect::at_most(max), |chunk| {
                    up.write(chunk).map_err(std::io::Error::other)
                })
                .await
        }
        .await;
        self.count(i, &r);
        r.map_err(Fail::Upstream)?;
        let (sha, size) = crate::tasks::blocking(move || objects.finish_any(up))
            .await
            .map_err(other)?;
        Ok(FileRef {
            name: name.to_owned(),
            size,
            sha256: sha,
            segments: None,
        })
    }

    /// Fetches the `.sign` file `name` byte for byte if the upstream has it: `None` for a 404
    /// (silently, as freshclam), for one known absent (no request), and for a failure or a
    /// file that is not a `.sign` file (logged and counted; asked again next time). A
    /// cool-down stops the check.
    async fn fetch_sign(
        &mut self,
        i: usize,
        base: &str,
        db: &str,
        name: &str,
    ) -> Result<Option<FileRef>, Fail> {
        if self.sign_absent.contains(name) {
            return Ok(None);
        }
        let r = async {
            self.http
                .get(&format!("{base}/{name}"))
                .send()
                .await?
                .bytes(&Expect::at_most(MAX_SIGN_FILE))
                .await
        }
        .await;
        self.count(i, &r);
        let data = match r {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::debug!(name, "the upstream has no such .sign file");
                self.sign_absent.insert(name.to_owned());
                return Ok(None);
            }
            Err(e) if is_refusal(&e) => return Err(Fail::Upstream(e)),
            Err(e) => {
                self.sign_failures += 1;
                self.metrics.upstream_event("sign_failed", db);
                tracing::warn!(name, error = %e, "could not fetch a .sign file; asked again next check");
                return Ok(None);
            }
        };
        if let Err(e) = vdb_format::clamsign::SignFile::parse(&data) {
            self.metrics.upstream_event("sign_invalid", db);
            tracing::warn!(name, error = %e, "the upstream's .sign file is not one; not published");
            return Ok(None);
        }
        let sha = self.store.objects().put(&data).map_err(other)?;
        Ok(Some(FileRef {
            name: name.to_owned(),
            size: data.len() as u64,
            sha256: sha,
            segments: None,
        }))
    }

    /// The build time of the held release of `db` (from its statement).
    fn held_built_at(&self, release: &str) -> Option<i64> {
        let row = self.store.history().accepted(release).ok()??;
        crate::store::parse_statement(&row.envelope)
            .ok()
            .map(|s| s.built_at)
    }

    /// Signs and submits a statement of `files` for `db` at `version`.
    async fn submit(
        &self,
        db: &str,
        version: u32,
        built_at: i64,
        base: &str,
        files: &[FileRef],
    ) -> Result<u32, Refusal> {
        let mut seen = BTreeSet::new();
        let files: Vec<FileRef> = files
            .iter()
            .filter(|f| seen.insert(f.name.clone()))
            .cloned()
            .collect();
        let st = ReleaseStatement {
            db: db.to_owned(),
            version,
            built_at,
            issued_at: self.store.now(),
            files,
            notes: format!("followed from {base}"),
        };
        let env = Signed::sign(&st, &self.key).to_json();
        self.store
            .submit(env.as_bytes(), Origin::Upstream)
            .await
            .map(|a| a.version)
    }

    /// Checks one database once on upstream `i`.
    async fn check_db(&mut self, i: usize, base: &str, db: &str) -> Result<Followed, Fail> {
        let held = self
            .store
            .held()
            .map_err(|r| other(anyhow::anyhow!("{r}")))?
            .get(db)
            .cloned();
        let h = held.as_ref().map_or(0, |h| h.version);
        let built_at = held.as_ref().and_then(|h| self.held_built_at(&h.release));
        let Some(header) = self.probe(i, base, db, built_at).await? else {
            // 304: nothing newer; the held version's files may still be incomplete.
            return self.complete(i, base, db, h, Followed::Current(h)).await;
        };
        let u = header.version;
        if u < h {
            return Ok(Followed::Backwards {
                upstream: u,
                held: h,
            });
        }
        let mut done = Followed::Current(h);
        if u > h {
            done = self.publish_new(i, base, db, h, &header).await?;
            if matches!(done, Followed::Refused(_)) {
                return Ok(done);
            }
        }
        self.complete(i, base, db, u, done).await
    }

    /// Publishes version `header.version` of `db` (held: `h`): the CVD, its `.sign`, and the
    /// cdiffs from `h` when every one came. Falls back to fewer files when the gate refuses
    /// the cdiffs or the `.sign` (the rest is offered again as a supplement).
    async fn publish_new(
        &mut self,
        i: usize,
        base: &str,
        db: &str,
        h: u32,
        header: &Header,
    ) -> Result<Followed, Fail> {
        let u = header.version;
        let built_at = header
            .build_secs
            .and_then(|s| i64::try_from(s).ok())
            .unwrap_or(0);
        let cvd = self.fetch(i, base, &format!("{db}.cvd")).await?;
        let sign = self
            .fetch_sign(i, base, db, &format!("{db}-{u}.cvd.sign"))
            .await?;
        let mut chain = Vec::new();
        if h > 0 {
            for v in h + 1..=u {
                let name = format!("{db}-{v}.cdiff");
                match self.fetch(i, base, &name).await {
                    Ok(f) => {
                        chain.push(f);
                        chain.extend(
                            self.fetch_sign(i, base, db, &format!("{name}.sign"))
                                .await?,
                        );
                    }
                    Err(Fail::Upstream(e)) if is_refusal(&e) => return Err(Fail::Upstream(e)),
                    Err(e) => {
                        self.metrics.upstream_event("cdiff_failed", db);
                        tracing::warn!(%name, error = %e, "upstream cdiff not fetched; publishing the CVD now, the cdiffs follow as a supplement");
                        chain.clear();
                        break;
                    }
                }
            }
        }
        let mut attempts: Vec<Vec<FileRef>> = Vec::new();
        let mut full = vec![cvd.clone()];
        full.extend(sign.clone());
        full.extend(chain.iter().cloned());
        attempts.push(full);
        if !chain.is_empty() {
            let mut no_chain = vec![cvd.clone()];
            no_chain.extend(sign.clone());
            attempts.push(no_chain);
        }
        if sign.is_some() {
            attempts.push(vec![cvd]);
        }
        let mut last = None;
        for files in attempts {
            match self.submit(db, u, built_at, base, &files).await {
                Ok(v) => return Ok(Followed::Published(v)),
                Err(r) => {
                    if files.len() > 1 {
                        self.metrics.upstream_event("fallback", db);
                        tracing::warn!(db, version = u, reason = %r, "the gate refused the release with its cdiffs or .sign; trying the CVD with fewer files");
                    }
                    last = Some(r);
                }
            }
        }
        Ok(Followed::Refused(
            last.map(|r| r.to_string()).unwrap_or_default(),
        ))
    }

    /// Makes the held version `u` of `db` complete: every cdiff the upstream still has within
    /// the retention (walking down from `u` until a 404), with `.sign` files, added as a
    /// supplement. Returns `done`, or [`Followed::Supplemented`] when it added files to a
    /// current database.
    async fn complete(
        &mut self,
        i: usize,
        base: &str,
        db: &str,
        u: u32,
        done: Followed,
    ) -> Result<Followed, Fail> {
        let Some(held) = self
            .store
            .held()
            .map_err(|r| other(anyhow::anyhow!("{r}")))?
            .get(db)
            .cloned()
            .filter(|h| h.version == u)
        else {
            return Ok(done);
        };
        let known = self.store.accepted_cdiffs(db).map_err(other)?;
        let keep = u32::try_from(self.store.config().keep_cdiffs).unwrap_or(u32::MAX);
        let low = u
            .saturating_sub(keep)
            .saturating_add(1)
            .max(2)
            .max(self.gone.get(db).map_or(0, |g| g.saturating_add(1)));
        // Units: a cdiff with its .sign (either may be known already).
        let mut units: Vec<Vec<FileRef>> = Vec::new();
        let mut stop = None;
        let mut failed = false;
        let sign_failures = self.sign_failures;
        for n in (low..=u).rev() {
            let name = format!("{db}-{n}.cdiff");
            let sign_name = format!("{name}.sign");
            if let Some(c) = known.get(&name) {
                if !known.contains_key(&sign_name) {
                    match self.fetch_sign(i, base, db, &sign_name).await {
                        Ok(Some(s)) => units.push(vec![c.clone(), s]),
                        Ok(None) => {}
                        Err(e) => {
                            stop = Some(e);
                            break;
                        }
                    }
                }
                continue;
            }
            if self.refused.iter().any(|(r, _)| *r == name) {
                continue;
            }
            match self.fetch(i, base, &name).await {
                Ok(f) => {
                    let mut unit = vec![f];
                    match self.fetch_sign(i, base, db, &sign_name).await {
                        Ok(s) => unit.extend(s),
                        Err(e) => stop = Some(e),
                    }
                    units.push(unit);
                    if stop.is_some() {
                        break;
                    }
                }
                Err(Fail::Upstream(e)) if e.kind() == ErrorKind::NotFound => {
                    tracing::debug!(%name, "the upstream's cdiff window ends here");
                    self.gone.insert(db.to_owned(), n);
                    break;
                }
                Err(Fail::Upstream(e)) if is_refusal(&e) => {
                    stop = Some(Fail::Upstream(e));
                    break;
                }
                Err(e) => {
                    failed = true;
                    self.metrics.upstream_event("cdiff_failed", db);
                    tracing::warn!(%name, error = %e, "upstream cdiff not fetched; asked again on the next check");
                }
            }
        }
        let units: Vec<Vec<FileRef>> = units
            .into_iter()
            .filter(|u| {
                !u.iter()
                    .any(|f| self.refused.contains(&(f.name.clone(), f.sha256.clone())))
            })
            .collect();
        let added = self.supplement(db, base, held, units).await;
        if let Some(e) = stop {
            return Err(e);
        }
        if failed || self.sign_failures != sign_failures {
            self.pending.insert(db.to_owned());
        } else {
            self.pending.remove(db);
        }
        Ok(match done {
            Followed::Current(_) if added > 0 => Followed::Supplemented(added),
            d => d,
        })
    }

    /// Adds `units` to the held version of `db`: all together, else (when the gate refuses)
    /// one by one, so one bad file keeps out only itself. Returns the number of files added.
    async fn supplement(
        &mut self,
        db: &str,
        base: &str,
        held: crate::gate::Held,
        units: Vec<Vec<FileRef>>,
    ) -> usize {
        if units.is_empty() {
            return 0;
        }
        let built_at = self.held_built_at(&held.release).unwrap_or(0);
        let all: Vec<FileRef> = held
            .files
            .iter()
            .cloned()
            .chain(units.iter().flatten().cloned())
            .collect();
        let count = |fs: &[FileRef]| {
            fs.iter()
                .filter(|f| !held.files.iter().any(|h| h.name == f.name))
                .map(|f| f.name.clone())
                .collect::<BTreeSet<_>>()
                .len()
        };
        match self.submit(db, held.version, built_at, base, &all).await {
            Ok(_) => {
                let n = count(&all);
                self.metrics.upstream_event("supplement", db);
                tracing::info!(
                    db,
                    version = held.version,
                    files = n,
                    "supplement accepted: upstream files added to the held version"
                );
                return n;
            }
            Err(r) if units.len() == 1 => {
                self.refuse_unit(db, &units[0], &r);
                return 0;
            }
            Err(r) => {
                tracing::info!(db, reason = %r, "supplement refused; offering its files one by one");
            }
        }
        let mut added = 0;
        for unit in units {
            let Some(held) = self.store.held().ok().and_then(|h| h.get(db).cloned()) else {
                return added;
            };
            let files: Vec<FileRef> = held.files.iter().cloned().chain(unit.clone()).collect();
            match self.submit(db, held.version, built_at, base, &files).await {
                Ok(_) => {
                    self.metrics.upstream_event("supplement", db);
                    added += unit.len();
                }
                // A `.sign` the gate cannot accept must not cost the cdiff it signs: 1.4
                // clients and 1.5 clients outside FIPS mode use the cdiff alone.
                Err(r)
                    if matches!(r.code, ErrorCode::BadSign | ErrorCode::SignUnverifiable)
                        && unit.iter().any(|f| !f.name.ends_with(".sign")) =>
                {
                    let (signs, plain): (Vec<FileRef>, Vec<FileRef>) = unit
                        .iter()
                        .cloned()
                        .partition(|f| f.name.ends_with(".sign"));
                    self.refuse_unit(db, &signs, &r);
                    let files: Vec<FileRef> =
                        held.files.iter().cloned().chain(plain.clone()).collect();
                    match self.submit(db, held.version, built_at, base, &files).await {
                        Ok(_) => {
                            self.metrics.upstream_event("supplement", db);
                            added += plain.len();
                        }
                        Err(r) => self.refuse_unit(db, &plain, &r),
                    }
                }
                Err(r) => self.refuse_unit(db, &unit, &r),
            }
        }
        added
    }

    fn refuse_unit(&mut self, db: &str, unit: &[FileRef], r: &Refusal) {
        self.metrics.upstream_event("file_refused", db);
        let names: Vec<&str> = unit.iter().map(|f| f.name.as_str()).collect();
        tracing::warn!(db, files = ?names, reason = %r, "the gate refused upstream files; they are not served");
        for f in unit {
            self.refused.insert((f.name.clone(), f.sha256.clone()));
            if f.name.ends_with(".sign") {
                self.sign_absent.insert(f.name.clone());
            }
        }
    }
}
