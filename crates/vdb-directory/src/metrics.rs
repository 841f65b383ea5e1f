//! Prometheus metrics of the directory.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a DNS answer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueryLabels {
    pub(crate) qtype: String,
    pub(crate) rcode: String,
    pub(crate) proto: String,
}

/// Labels of a poll failure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SourceLabels {
    pub(crate) source: String,
}

/// The directory's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) queries: Family<QueryLabels, Counter>,
    pub(crate) redirects: Counter,
    pub(crate) poll_errors: Family<SourceLabels, Counter>,
    pub(crate) serial: Gauge,
    pub(crate) handed_out: Gauge,
    pub(crate) fail_static: Gauge,
    pub(crate) notifies: Counter,
    pub(crate) verdicts_expired: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("vdb_directory");
        let queries = Family::<QueryLabels, Counter>::default();
        registry.register("dns_queries", "DNS answers sent", queries.clone());
        let redirects = Counter::default();
        registry.register("redirects", "HTTP redirects to mirrors", redirects.clone());
        let poll_errors = Family::<SourceLabels, Counter>::default();
        registry.register(
            "poll_errors",
            "failed polls of masters and monitors",
            poll_errors.clone(),
        );
        let serial = Gauge::default();
        registry.register("zone_serial", "the zone's SOA serial", serial.clone());
        let handed_out = Gauge::default();
        registry.register(
            "mirrors_handed_out",
            "mirrors in DNS answers and redirects",
            handed_out.clone(),
        );
        let verdicts_expired = Counter::default();
        registry.register(
            "verdicts_expired",
            "monitor reports dropped because they had not moved on for verdict_max_age_secs",
            verdicts_expired.clone(),
        );
        let fail_static = Gauge::default();
        registry.register(
            "fail_static",
            "1 while the fail-static rule hands out mirrors that are not in service",
            fail_static.clone(),
        );
        let notifies = Counter::default();
        registry.register(
            "notifies",
            "NOTIFY messages acknowledged by secondaries",
            notifies.clone(),
        );
        Self {
            registry,
            queries,
            redirects,
            poll_errors,
            serial,
            handed_out,
            fail_static,
            notifies,
            verdicts_expired,
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
