//! Prometheus metrics of a mirror.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

type Labels = Vec<(&'static str, String)>;

/// The mirror's counters and gauges.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: vdb_service::metrics::Metrics,
    pub(crate) serial: Gauge,
    pub(crate) pulled_bytes: Counter,
    /// The part of `pulled_bytes` that came from hubs (the rest came from masters).
    pub(crate) pulled_hub_bytes: Counter,
    /// Bytes re-created locally by delta transfer instead of downloaded.
    pub(crate) delta_reused_bytes: Counter,
    pub(crate) served_bytes: Counter,
    responses: Family<Labels, Counter>,
    /// The common codes' counters, looked up without hashing or allocating.
    common: Vec<(u16, Counter)>,
    syncs: Family<Labels, Counter>,
    sync_seconds: Counter<f64>,
    pushes: Family<Labels, Counter>,
    thread_connections: Family<Labels, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut r = vdb_service::metrics::Metrics::new("vdb_mirror");
        let responses: Family<Labels, Counter> =
            r.family("http_responses", "HTTP responses by status code");
        let common = [200, 206, 304, 400, 404, 416]
            .into_iter()
            .map(|c| {
                (
                    c,
                    responses
                        .get_or_create(&vec![("code", c.to_string())])
                        .clone(),
                )
            })
            .collect();
        Self {
            serial: r.add("manifest_serial", "Serial of the served manifest"),
            pulled_bytes: r.add(
                "pulled_bytes",
                "Object bytes downloaded (from masters and hubs; see pulled_hub_bytes)",
            ),
            pulled_hub_bytes: r.add("pulled_hub_bytes", "Object bytes downloaded from hubs"),
            delta_reused_bytes: r.add(
                "delta_reused_bytes",
                "Bytes of objects re-created locally by delta transfer (from the held release \
                 and the cdiffs) instead of downloaded; what was fetched is in pulled_bytes",
            ),
            served_bytes: r.add("served_bytes", "Body bytes of file responses"),
            responses,
            common,
            syncs: r.family("syncs", "Syncs by outcome"),
            sync_seconds: r.add("sync_seconds", "Time spent syncing"),
            pushes: r.family("pushes", "Push notices by result"),
            thread_connections: r.family(
                "serve_thread_connections",
                "Connections handed to each serve thread",
            ),
            registry: r,
        }
    }

    pub(crate) fn response(&self, status: u16) {
        if let Some((_, c)) = self.common.iter().find(|(s, _)| *s == status) {
            c.inc();
            return;
        }
        self.responses
            .get_or_create(&vec![("code", status.to_string())])
            .inc();
    }

    pub(crate) fn sync(&self, outcome: &'static str, took: Duration) {
        self.syncs
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
        self.sync_seconds.inc_by(took.as_secs_f64());
    }

    pub(crate) fn push(&self, result: &str) {
        self.pushes
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    /// The connection counter of serve thread `i`.
    pub(crate) fn thread_connections(&self, i: usize) -> Counter {
        self.thread_connections
            .get_or_create(&vec![("thread", i.to_string())])
            .clone()
    }

    pub(crate) fn encode(&self) -> String {
        self.registry.encode()
    }
}
