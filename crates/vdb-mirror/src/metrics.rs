//! Prometheus metrics of a mirror.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The mirror's counters and gauges.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) serial: Gauge,
    pub(crate) pulled_bytes: Counter,
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
        let mut registry = Registry::with_prefix("vdb_mirror");
        let serial = Gauge::default();
        let pulled_bytes = Counter::default();
        let served_bytes = Counter::default();
        let responses = Family::<Labels, Counter>::default();
        let syncs = Family::<Labels, Counter>::default();
        let sync_seconds = Counter::<f64>::default();
        let pushes = Family::<Labels, Counter>::default();
        let thread_connections = Family::<Labels, Counter>::default();
        registry.register(
            "manifest_serial",
            "Serial of the served manifest",
            serial.clone(),
        );
        registry.register(
            "pulled_bytes",
            "Bytes downloaded from masters",
            pulled_bytes.clone(),
        );
        registry.register(
            "served_bytes",
            "Body bytes of file responses",
            served_bytes.clone(),
        );
        registry.register(
            "http_responses",
            "HTTP responses by status code",
            responses.clone(),
        );
        registry.register("syncs", "Syncs by outcome", syncs.clone());
        registry.register("sync_seconds", "Time spent syncing", sync_seconds.clone());
        registry.register("pushes", "Push notices by result", pushes.clone());
        registry.register(
            "serve_thread_connections",
            "Connections handed to each serve thread",
            thread_connections.clone(),
        );
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
            common,
            registry,
            serial,
            pulled_bytes,
            served_bytes,
            responses,
            syncs,
            sync_seconds,
            pushes,
            thread_connections,
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
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
