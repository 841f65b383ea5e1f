//! Prometheus metrics of a master.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

type Labels = Vec<(String, String)>;

/// The master's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: vdb_service::metrics::Metrics,
    releases: Family<Labels, Counter>,
    uploads: Family<Labels, Counter>,
    pushes: Family<Labels, Counter>,
    forced_sync: Family<Labels, Counter>,
    replication: Family<Labels, Counter>,
    upstream: Family<Labels, Counter>,
    upstream_events: Family<Labels, Counter>,
    upstream_requests: Family<Labels, Counter>,
    upstream_blocked_until: Family<Labels, Gauge>,
    unrecorded: Family<Labels, Counter>,
    signing_deferred: Counter,
    /// Body bytes of the objects served (`GET /api/v1/objects/<sha256>`, whole or ranges).
    pub(crate) served_bytes: Counter,
    serial: Gauge,
    expires_at: Gauge,
    checked_at: Gauge,
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = vdb_service::metrics::Metrics::new("vdb_master");
        Self {
            releases: r.family("releases", "Release verdicts by verdict and code"),
            uploads: r.family("uploads", "Object uploads by result"),
            pushes: r.family("pushes", "Push notices by result"),
            forced_sync: r.family("forced_sync", "Forced sync rounds by result"),
            replication: r.family("replication", "Pulls from peers by result"),
            upstream: r.family("upstream_checks", "Upstream checks by result"),
            upstream_events: r.family(
                "upstream_events",
                "What the upstream follower met, by event (cooldown, backoff, failover, backwards, cdiff_failed, cdiff_refused, sign_absent, sign_invalid, supplement, …)",
            ),
            upstream_requests: r.family(
                "upstream_requests",
                "Requests sent to each upstream (by its position in the config) and outcome (ok, not_found, rate_limited, forbidden, unavailable, timeout, network, too_large, other)",
            ),
            upstream_blocked_until: r.family(
                "upstream_blocked_until_seconds",
                "Until when each upstream gets no request (Unix seconds; cool-down or back-off; 0 = open)",
            ),
            unrecorded: r.family(
                "refusals_unrecorded",
                "Statements refused without a trace in the history (no publisher of this master signed them), by code",
            ),
            signing_deferred: r.add(
                "signing_deferred",
                "Manifests not signed because a peer held a newer database (catching up)",
            ),
            served_bytes: r.add(
                "served_bytes",
                "Body bytes of objects served to mirrors (whole files and ranges)",
            ),
            serial: r.add("manifest_serial", "Serial of the current manifest"),
            expires_at: r.add(
                "manifest_expires_at_seconds",
                "When the current manifest expires unless re-signed (Unix seconds)",
            ),
            checked_at: r.add(
                "heartbeat_checked_at_seconds",
                "When the heartbeat loop last looked at the master's clock (Unix seconds): it is alive",
            ),
            registry: r,
        }
    }
}

impl Metrics {
    /// Counts a release verdict (`code` is `ok` for accepted ones).
    pub(crate) fn release(&self, verdict: &str, code: &str) {
        self.releases
            .get_or_create(&l(&[("verdict", verdict), ("code", code)]))
            .inc();
    }

    /// Counts an upload (`ok` or the refusal code).
    pub(crate) fn upload(&self, result: &str) {
        self.uploads.get_or_create(&l(&[("result", result)])).inc();
    }

    /// Counts a push result (`acked`, `failed`).
    pub(crate) fn push(&self, result: &str) {
        self.pushes.get_or_create(&l(&[("result", result)])).inc();
    }

    /// Counts a forced sync round (`run`, `skipped`).
    pub(crate) fn forced_sync(&self, result: &str) {
        self.forced_sync
            .get_or_create(&l(&[("result", result)]))
            .inc();
    }

    /// Counts a pull from a peer (`ok`, `error`).
    pub(crate) fn replication(&self, result: &str) {
        self.replication
            .get_or_create(&l(&[("result", result)]))
            .inc();
    }

    /// Counts an upstream check (`new`, `current`, `error`, `refused`).
    pub(crate) fn upstream(&self, result: &str) {
        self.upstream.get_or_create(&l(&[("result", result)])).inc();
    }

    /// Counts an upstream event (`db` may be empty).
    pub(crate) fn upstream_event(&self, event: &str, db: &str) {
        self.upstream_events
            .get_or_create(&l(&[("event", event), ("db", db)]))
            .inc();
    }

    /// Counts a request to upstream number `index` by outcome.
    pub(crate) fn upstream_request(&self, index: usize, outcome: &str) {
        self.upstream_requests
            .get_or_create(&l(&[
                ("upstream", &index.to_string()),
                ("outcome", outcome),
            ]))
            .inc();
    }

    /// Sets until when upstream number `index` gets no request.
    pub(crate) fn upstream_blocked_until(&self, index: usize, until: i64) {
        self.upstream_blocked_until
            .get_or_create(&l(&[("upstream", &index.to_string())]))
            .set(until);
    }

    /// Counts a statement refused without being recorded (by code).
    pub(crate) fn unrecorded_refusal(&self, code: &str) {
        self.unrecorded.get_or_create(&l(&[("code", code)])).inc();
    }

    /// Counts a manifest not signed while a peer holds a newer database.
    pub(crate) fn signing_deferred(&self) {
        self.signing_deferred.inc();
    }

    /// Sets the current manifest's serial and expiry.
    pub(crate) fn manifest(&self, m: &vdb_proto::Manifest) {
        self.serial.set(i64::try_from(m.serial).unwrap_or(i64::MAX));
        self.expires_at.set(m.expires_at);
    }

    /// Sets when the heartbeat loop last looked at the clock.
    pub(crate) fn checked_at(&self, now: i64) {
        self.checked_at.set(now);
    }

    /// The text exposition.
    pub(crate) fn encode(&self) -> String {
        self.registry.encode()
    }
}
