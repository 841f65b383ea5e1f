//! The monitor's core: one check round (`check_all`), its state and its published verdicts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use vdb_proto::{Clock, Manifest, MirrorRecord, MirrorState, MirrorVerdict, Signed, VerdictReport};

use crate::alert;
use crate::charts;
use crate::config::{CheckMode, Config};
use crate::judge::{self, MirrorStatus, Outcome};
use crate::metrics::Metrics;
use crate::probe::Prober;
use crate::store::{CheckRow, Store};

/// What a round found, for the HTTP side.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    pub(crate) generated_at: i64,
    pub(crate) newest: BTreeMap<String, u32>,
    pub(crate) serial: Option<u64>,
    pub(crate) registry: Vec<MirrorRecord>,
    pub(crate) local: Vec<MirrorVerdict>,
    pub(crate) published: Vec<MirrorVerdict>,
    pub(crate) master_errors: Vec<String>,
    pub(crate) peer_errors: Vec<String>,
    pub(crate) pending_joins: Vec<String>,
    pub(crate) notes: BTreeMap<String, Vec<String>>,
    pub(crate) timestamp_age: BTreeMap<String, i64>,
    pub(crate) response_ms: BTreeMap<String, u64>,
}

/// What one [`Monitor::check_all`] round did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoundSummary {
    /// Mirrors checked.
    pub checked: usize,
    /// Whether the round was skipped as this monitor's own network trouble (no master and
    /// no mirror answered): nothing was judged.
    pub skipped_self_trouble: bool,
    /// Alerts queued this round.
    pub alerts_queued: usize,
    /// Alerts delivered this round.
    pub alerts_sent: usize,
}

/// The monitor: checks, judges, publishes, alerts. Shared by the scheduler and the HTTP side.
#[derive(Debug)]
pub struct Monitor {
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) prober: Prober,
    pub(crate) store: Mutex<Store>,
    pub(crate) snapshot: RwLock<Snapshot>,
    pub(crate) metrics: Metrics,
    /// Signs the published verdict report.
    pub(crate) key: vdb_proto::SecretKey,
    round: tokio::sync::Mutex<u64>,
    /// When each mirror last passed or failed a whole-file check (in memory: after a restart
    /// every mirror is due again, `deep_checks_per_round` at a time).
    last_deep: Mutex<HashMap<String, i64>>,
}

const REGISTRY_KEY: &str = "registry";
const MANIFEST_KEY: &str = "newest_manifest";

impl Monitor {
    pub(crate) fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let store = Store::open(&config.database)?;
        let prober = Prober::new(&config)?;
        let key_path = config.key_path();
        let (key, made) = vdb_proto::SecretKey::load_or_create(&key_path)
            .map_err(|e| anyhow::anyhow!("the verdict signing key {}: {e}", key_path.display()))?;
        tracing::info!(
            key = %key.public(),
            file = %key_path.display(),
            made,
            "verdict reports are signed with this key (directories: monitor_keys)"
        );
        let m = Self {
            key,
            prober,
            store: Mutex::new(store),
            snapshot: RwLock::new(Snapshot::default()),
            metrics: Metrics::new(),
            round: tokio::sync::Mutex::new(0),
            last_deep: Mutex::default(),
            config,
            clock,
        };
        m.restore()?;
        Ok(m)
    }

    /// The mirrors of `targets` whose whole-file check is due this round: never done or done
    /// `deep_check_secs` ago, the longest waiting first, at most `deep_checks_per_round`. A
    /// check that could not reach the mirror does not count as done.
    fn deep_due(&self, targets: &[&MirrorRecord], now: i64) -> BTreeSet<String> {
        if self.config.deep_check_secs == 0 {
            return BTreeSet::new();
        }
        let last = self.last_deep.lock().unwrap_or_else(|p| p.into_inner());
        let mut due: Vec<(Option<i64>, &str)> = targets
            .iter()
            .map(|r| (last.get(&r.name).copied(), r.name.as_str()))
            .filter(|(t, _)| t.is_none_or(|t| now.saturating_sub(t) >= self.config.deep_check_secs))
            .collect();
        due.sort();
        due.into_iter()
            .take(self.config.deep_checks_per_round)
            .map(|(_, n)| n.to_owned())
            .collect()
    }

    /// The registry's mirror names, in its order (as of the last round).
    pub(crate) fn registry_names(&self) -> Vec<String> {
        let snap = self.snapshot.read().unwrap_or_else(|p| p.into_inner());
        snap.registry.iter().map(|r| r.name.clone()).collect()
    }

    pub(crate) fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuilds the published snapshot from the database after a restart.
    fn restore(&self) -> anyhow::Result<()> {
        let store = self.store();
        let registry: Vec<MirrorRecord> = store
            .meta(REGISTRY_KEY)?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default();
        let newest = self.held_manifest(&store)?;
        let statuses = store.statuses()?;
        drop(store);
        let mut snap = Snapshot {
            generated_at: self.clock.now(),
            ..Snapshot::default()
        };
        if let Some(m) = &newest {
            snap.newest = m
                .databases
                .iter()
                .map(|(d, s)| (d.clone(), s.version))
                .collect();
            snap.serial = Some(m.serial);
        }
        for rec in &registry {
            if let Some(s) = statuses.get(&rec.name) {
                snap.local.push(verdict(&rec.name, s, s.state, &s.reason));
                snap.published
                    .push(verdict(&rec.name, s, s.published, &s.reason));
            }
        }
        snap.registry = registry;
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snap;
        Ok(())
    }

    fn held_manifest(&self, store: &Store) -> anyhow::Result<Option<Manifest>> {
        Ok(store.meta(MANIFEST_KEY)?.and_then(|j| {
            Signed::<Manifest>::from_json(j.as_bytes())
                .ok()?
                .verify(&self.config.master_keys)
                .ok()
        }))
    }

    /// The newest serial the last round judged against, and whether a mirror the last round
    /// published in service does not serve it yet.
    pub(crate) fn rollout_state(&self) -> (Option<u64>, bool) {
        let snap = self.snapshot.read().unwrap_or_else(|p| p.into_inner());
        let behind = snap.serial.is_some_and(|newest| {
            snap.published
                .iter()
                .any(|v| v.state.in_service() && v.serial.is_none_or(|s| s < newest))
        });
        (snap.serial, behind)
    }

    /// Watches the masters' manifest every `release_watch_ms`: a new serial runs a round at
    /// once, then follow-up rounds after 1, 2, 4, 8 and 16 s while a mirror in service does
    /// not serve it yet. Returns when cancelled.
    pub(crate) async fn watch_releases(&self, cancel: tokio_util::sync::CancellationToken) {
        let every = std::time::Duration::from_millis(self.config.release_watch_ms);
        let mut triggered: Option<u64> = None;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let fetched = tokio::select! {
                () = cancel.cancelled() => return,
                s = self.prober.newest_serial(self.clock.now()) => s,
            };
            let (judged, _) = self.rollout_state();
            let Some(serial) = fetched.filter(|s| Some(*s) > judged.max(triggered)) else {
                continue;
            };
            triggered = Some(serial);
            tracing::info!(
                serial,
                "new manifest from the masters: checking every mirror now"
            );
            for follow_up in [0u64, 1, 2, 4, 8, 16] {
                if follow_up > 0 {
                    if !self.rollout_state().1 {
                        break;
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(std::time::Duration::from_secs(follow_up)) => {}
                    }
                }
                let round = self.check_round(self.clock.now());
                tokio::select! {
                    () = cancel.cancelled() => return,
                    r = round => if let Err(e) = r {
                        tracing::error!(error = %format!("{e:#}"), "check round failed");
                    },
                }
            }
        }
    }

    /// The verdict report served at `GET /api/v1/verdicts` (`local`: this monitor's own
    /// judgement, before the quorum).
    pub fn verdicts(&self, local: bool) -> VerdictReport {
        let snap = self.snapshot.read().unwrap_or_else(|p| p.into_inner());
        VerdictReport {
            monitor: self.config.name.clone(),
            generated_at: snap.generated_at,
            newest: snap.newest.clone(),
            mirrors: if local {
                snap.local.clone()
            } else {
                snap.published.clone()
            },
        }
    }

    /// The published verdict report, signed with the monitor's key.
    pub fn signed_verdicts(&self) -> vdb_proto::Signed<VerdictReport> {
        vdb_proto::Signed::sign(&self.verdicts(false), &self.key)
    }

    /// One scheduled round: every mirror, or one at random (`check_mode`).
    pub async fn check_round(&self, now: i64) -> anyhow::Result<RoundSummary> {
        match self.config.check_mode {
            CheckMode::All => self.check_all(now).await,
            CheckMode::Random => {
                use std::hash::{BuildHasher as _, Hasher as _};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_i64(now);
                self.check(now, Some(h.finish())).await
            }
        }
    }

    /// Checks every registered mirror at `now`, judges, publishes and alerts. Rounds never
    /// overlap. Tests drive time through this with a `ManualClock`.
    pub async fn check_all(&self, now: i64) -> anyhow::Result<RoundSummary> {
        self.check(now, None).await
    }

    async fn check(&self, now: i64, pick: Option<u64>) -> anyhow::Result<RoundSummary> {
        let mut round = self.round.lock().await;
        *round += 1;
        let cfg = &self.config;
        let crate::probe::MastersView {
            manifest: fetched,
            registry,
            pending_joins,
            errors: master_errors,
        } = self.prober.masters(now).await;
        let masters_ok = fetched.is_some() || registry.is_some();
        // The newest manifest: never go back to a lower serial than held.
        let (newest, book, registry) = {
            let store = self.store();
            let held = self.held_manifest(&store)?;
            let newest = match (fetched, held) {
                (Some((env, m)), held) if held.as_ref().is_none_or(|h| m.serial >= h.serial) => {
                    store.set_meta(MANIFEST_KEY, &env.to_json())?;
                    Some(m)
                }
                (_, held) => held,
            };
            let newest_versions: BTreeMap<String, u32> = newest
                .as_ref()
                .map(|m| {
                    m.databases
                        .iter()
                        .map(|(d, s)| (d.clone(), s.version))
                        .collect()
                })
                .unwrap_or_default();
            let book = store.note_versions(&newest_versions, now)?;
            let registry = match registry {
                Some(r) => {
                    store.set_meta(REGISTRY_KEY, &serde_json::to_string(&r)?)?;
                    r
                }
                None => store
                    .meta(REGISTRY_KEY)?
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default(),
            };
            (newest, book, registry)
        };
        for (db, v) in &book.newest {
            self.metrics.newest(db, *v);
        }

        let targets: Vec<&MirrorRecord> = match pick {
            Some(r) if !registry.is_empty() => {
                vec![&registry[(r % registry.len() as u64) as usize]]
            }
            _ => registry.iter().collect(),
        };
        let deep = self.deep_due(&targets, now);
        let probes = {
            let futs = targets.iter().map(|rec| {
                let d = deep.contains(&rec.name);
                self.prober.probe(rec, newest.as_ref(), now, d)
            });
            join_all(futs).await
        };
        {
            let mut last = self.last_deep.lock().unwrap_or_else(|p| p.into_inner());
            for (rec, p) in targets.iter().zip(&probes) {
                if deep.contains(&rec.name) && !matches!(p.outcome, Outcome::Failed(_)) {
                    last.insert(rec.name.clone(), now);
                }
            }
        }
        let all_failed = !probes.is_empty()
            && probes
                .iter()
                .all(|p| matches!(p.outcome, Outcome::Failed(_)));
        if !masters_ok && all_failed {
            tracing::warn!(
                errors = ?master_errors,
                "no master and no mirror answered: assuming this monitor's own network trouble, judging nobody"
            );
            self.metrics.round("skipped");
            return Ok(RoundSummary {
                checked: 0,
                skipped_self_trouble: true,
                alerts_queued: 0,
                alerts_sent: 0,
            });
        }

        let mut statuses = self.store().statuses()?;
        let mut notes = BTreeMap::new();
        let mut ts_age = BTreeMap::new();
        let mut resp = BTreeMap::new();
        {
            let store = self.store();
            for (rec, probe) in targets.iter().zip(&probes) {
                let prev = statuses
                    .get(&rec.name)
                    .cloned()
                    .unwrap_or_else(|| MirrorStatus::new(now));
                let maint = rec.drained || rec.in_maintenance(now);
                let mut s = judge::judge(&prev, &probe.outcome, now, maint, &cfg.thresholds, &book);
                if maint {
                    s.reason = if rec.drained {
                        format!("drained by its admin; last check: {}", s.reason)
                    } else {
                        format!("maintenance window; last check: {}", s.reason)
                    };
                }
                let (result, serial) = match &probe.outcome {
                    Outcome::Good { serial, .. } => ("good", Some(*serial)),
                    Outcome::Failed(_) => ("failed", None),
                    Outcome::Bad(_) => ("bad", None),
                };
                let result = if s.bad { "bad" } else { result };
                store.add_check(
                    &rec.name,
                    &CheckRow {
                        at: now,
                        result: result.to_owned(),
                        state: state_name(s.state).to_owned(),
                        lag_secs: s.lag_secs,
                        serial,
                        response_ms: probe.response_ms,
                        detail: s.reason.clone(),
                    },
                )?;
                if matches!(probe.outcome, Outcome::Good { .. }) && !s.bad {
                    for (db, v) in &s.serving {
                        store.note_rollout(db, *v, &rec.name, now)?;
                    }
                }
                self.metrics.checked(&rec.name, result, probe.response_ms);
                let mut n = probe.notes.clone();
                if let Some(a) = probe.timestamp_age
                    && a >= cfg.thresholds.old_secs
                {
                    // Version-aware staleness ignores it, but the operator wants to know.
                    n.push(format!(
                        "its timestamp is {a} s old: it does not follow the masters' heartbeat"
                    ));
                }
                notes.insert(rec.name.clone(), n);
                if let Some(a) = probe.timestamp_age {
                    ts_age.insert(rec.name.clone(), a);
                }
                if let Some(ms) = probe.response_ms {
                    resp.insert(rec.name.clone(), ms);
                }
                statuses.insert(rec.name.clone(), s);
            }
            store.prune(now - 30 * 86400)?;
            store.prune_charts(now - cfg.history_days * 86400)?;
        }

        // Peers' own verdicts for the quorum.
        let mut peer_errors = Vec::new();
        let mut peer_out: BTreeMap<String, usize> = BTreeMap::new();
        if cfg.quorum > 1 {
            let reports = join_all(cfg.peers.iter().map(|u| self.prober.peer_verdicts(u))).await;
            for r in reports {
                match r {
                    Ok(rep) => {
                        for v in rep.mirrors {
                            if !v.state.in_service() && v.state != MirrorState::Maintenance {
                                *peer_out.entry(v.name).or_default() += 1;
                            }
                        }
                    }
                    Err(e) => peer_errors.push(e),
                }
            }
        }

        // Publish and plan alerts.
        let checked: BTreeSet<&str> = targets.iter().map(|r| r.name.as_str()).collect();
        let mut local = Vec::new();
        let mut published = Vec::new();
        let mut queued = 0;
        {
            let store = self.store();
            for rec in &registry {
                let Some(s) = statuses.get_mut(&rec.name) else {
                    continue;
                };
                let (p, why) = judge::with_quorum(
                    s,
                    peer_out.get(&rec.name).copied().unwrap_or(0),
                    cfg.quorum,
                );
                let reason = why.unwrap_or_else(|| s.reason.clone());
                local.push(verdict(&rec.name, s, s.state, &s.reason));
                published.push(verdict(&rec.name, s, p, &reason));
                s.published = p;
                let name = rec.name.clone();
                if let Some(a) = alert::plan(
                    &cfg.name,
                    rec,
                    s,
                    (p, &reason),
                    |inc| store.incident_alerted(&name, inc).unwrap_or(false),
                    now,
                    &cfg.alerts,
                ) {
                    for pa in alert::pending(&cfg.alerts, &a) {
                        if store.queue_alert(&pa, now)? {
                            queued += 1;
                        }
                    }
                }
                self.metrics.state(&rec.name, p, s.lag_secs);
                if checked.contains(rec.name.as_str()) {
                    let bucket = now - now.rem_euclid(cfg.history_bucket_secs);
                    store.note_timeline(&rec.name, bucket, charts::rank(p), s.lag_secs)?;
                }
                store.save_status(&rec.name, s)?;
            }
        }
        {
            let mut snap = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
            // In random mode, keep the notes of mirrors not checked this round.
            let mut all_notes = std::mem::take(&mut snap.notes);
            all_notes.extend(notes);
            let mut all_ts = std::mem::take(&mut snap.timestamp_age);
            all_ts.extend(ts_age);
            let mut all_resp = std::mem::take(&mut snap.response_ms);
            all_resp.extend(resp);
            *snap = Snapshot {
                generated_at: now,
                newest: book.newest.clone(),
                serial: newest.as_ref().map(|m| m.serial),
                registry: registry.clone(),
                local,
                published,
                master_errors,
                pending_joins: pending_joins.unwrap_or_default(),
                peer_errors,
                notes: all_notes,
                timestamp_age: all_ts,
                response_ms: all_resp,
            };
        }
        let sent = self.deliver(now).await?;
        self.metrics.round("done");
        Ok(RoundSummary {
            checked: targets.len(),
            skipped_self_trouble: false,
            alerts_queued: queued,
            alerts_sent: sent,
        })
    }

    /// Delivers queued alerts (retrying failed ones up to three times), within the hourly cap.
    async fn deliver(&self, now: i64) -> anyhow::Result<usize> {
        let cfg = &self.config.alerts;
        let pending = self.store().pending_alerts(3)?;
        let mut sent = 0;
        for pa in pending {
            if self.store().sent_since(now - 3600)? >= cfg.max_per_hour {
                self.store().mark_alert(&pa, Some("suppressed"), now)?;
                self.metrics.alert(&pa.kind, "suppressed");
                continue;
            }
            let result = match (pa.channel.as_str(), &cfg.webhook_url, &cfg.smtp) {
                ("webhook", Some(url), _) => self.prober.post_json(url, &pa.body).await,
                (c, _, Some(smtp)) if c.starts_with("mail:") => {
                    match serde_json::from_str::<alert::Alert>(&pa.body) {
                        Ok(a) => {
                            let (subject, body) = alert::mail_text(&a);
                            alert::send_mail(smtp, &self.config.name, &c[5..], &subject, &body)
                                .await
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                _ => Err("channel no longer configured".to_owned()),
            };
            match result {
                Ok(()) => {
                    self.store().mark_alert(&pa, Some("sent"), now)?;
                    self.metrics.alert(&pa.kind, "sent");
                    sent += 1;
                }
                Err(e) => {
                    tracing::warn!(mirror = %pa.mirror, channel = %pa.channel, error = %e, "alert not delivered");
                    self.store().mark_alert(&pa, None, now)?;
                    self.metrics.alert(&pa.kind, "failed");
                }
            }
        }
        Ok(sent)
    }

    /// The full status document (`GET /api/v1/status`, and the page).
    pub fn status(&self) -> anyhow::Result<StatusDoc> {
        let snap = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let store = self.store();
        let statuses = store.statuses()?;
        let mut mirrors = Vec::new();
        for rec in &snap.registry {
            let Some(v) = snap.published.iter().find(|v| v.name == rec.name) else {
                continue;
            };
            let local = snap.local.iter().find(|v| v.name == rec.name);
            mirrors.push(MirrorStatusDoc {
                name: rec.name.clone(),
                state: v.state,
                local_state: local.map_or(v.state, |l| l.state),
                lag_secs: v.lag_secs,
                last_good: v.last_good,
                last_check: statuses.get(&rec.name).and_then(|s| s.last_check),
                serving: v.serving.clone(),
                serial: v.serial,
                reason: v.reason.clone(),
                region: rec.region.clone(),
                country: rec.country.clone(),
                base_urls: rec.base_urls.clone(),
                response_ms: snap.response_ms.get(&rec.name).copied(),
                timestamp_age_secs: snap.timestamp_age.get(&rec.name).copied(),
                notes: snap.notes.get(&rec.name).cloned().unwrap_or_default(),
                hubs: rec.hubs.clone(),
                leaves: snap
                    .registry
                    .iter()
                    .filter(|l| l.hubs.contains(&rec.name))
                    .map(|l| l.name.clone())
                    .collect(),
                history: store.history(&rec.name, self.config.history_len)?,
            });
        }
        let releases = store
            .releases(3)?
            .into_iter()
            .map(|(db, version, first_seen, rollout)| ReleaseDoc {
                db,
                version,
                first_seen,
                rollout,
            })
            .collect();
        Ok(StatusDoc {
            monitor: self.config.name.clone(),
            network: self.config.network.clone(),
            generated_at: snap.generated_at,
            newest: snap.newest,
            serial: snap.serial,
            quorum: self.config.quorum,
            master_errors: snap.master_errors,
            pending_joins: snap.pending_joins,
            peer_errors: snap.peer_errors,
            mirrors,
            releases,
        })
    }
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusDoc {
    /// Monitor name.
    pub monitor: String,
    /// Network name.
    pub network: String,
    /// Time of the last round.
    pub generated_at: i64,
    /// Newest version of each database.
    pub newest: BTreeMap<String, u32>,
    /// Newest manifest serial.
    pub serial: Option<u64>,
    /// Monitors needed to take a mirror out.
    pub quorum: usize,
    /// Masters that failed in the last round.
    pub master_errors: Vec<String>,
    /// Join requests waiting for the network's admin (names only), as a master reports them.
    pub pending_joins: Vec<String>,
    /// Peers that failed in the last round.
    pub peer_errors: Vec<String>,
    /// Every registered mirror.
    pub mirrors: Vec<MirrorStatusDoc>,
    /// Recent releases (the newest three versions of each database) and their rollout.
    pub releases: Vec<ReleaseDoc>,
}

/// One mirror on the status page.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorStatusDoc {
    /// Registry name.
    pub name: String,
    /// Published state (after the quorum).
    pub state: MirrorState,
    /// This monitor's own judgement.
    pub local_state: MirrorState,
    /// Seconds since what it serves was superseded.
    pub lag_secs: i64,
    /// Last good check.
    pub last_good: Option<i64>,
    /// Last check.
    pub last_check: Option<i64>,
    /// Versions served.
    pub serving: BTreeMap<String, u32>,
    /// Manifest serial served.
    pub serial: Option<u64>,
    /// Why.
    pub reason: String,
    /// Region.
    pub region: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Base URLs checked.
    pub base_urls: Vec<String>,
    /// Slowest response in the last check (ms).
    pub response_ms: Option<u64>,
    /// Age of its `timestamp` content at the last check.
    pub timestamp_age_secs: Option<i64>,
    /// Remarks (missing recent cdiff, …).
    pub notes: Vec<String>,
    /// The hubs it pulls from (it is their leaf), from the registry.
    pub hubs: Vec<String>,
    /// The mirrors that name it as a hub (its leaves).
    pub leaves: Vec<String>,
    /// Recent checks, newest first.
    pub history: Vec<CheckRow>,
}

/// One release and when each mirror started serving it.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseDoc {
    /// Database.
    pub db: String,
    /// Version.
    pub version: u32,
    /// When the monitor first saw it in the masters' manifest.
    pub first_seen: i64,
    /// Mirror → first check that saw it serving this version or a newer one.
    pub rollout: BTreeMap<String, i64>,
}

/// The snake_case name of a state (as in JSON).
pub(crate) fn state_name(s: MirrorState) -> &'static str {
    match s {
        MirrorState::InService => "in_service",
        MirrorState::Lagging => "lagging",
        MirrorState::Old => "old",
        MirrorState::Out => "out",
        MirrorState::Maintenance => "maintenance",
    }
}

fn verdict(name: &str, s: &MirrorStatus, state: MirrorState, reason: &str) -> MirrorVerdict {
    MirrorVerdict {
        name: name.to_owned(),
        state,
        serving: s.serving.clone(),
        serial: s.serial,
        lag_secs: s.lag_secs,
        last_good: s.last_good,
        reason: reason.to_owned(),
    }
}

/// Runs futures concurrently on this task and collects their outputs in order.
async fn join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("all ready")).collect()
}
