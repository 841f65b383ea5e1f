//! Prometheus metrics of the directory.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Labels of a DNS answer.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueryLabels {
    pub(crate) qtype: String,
    pub(crate) rcode: String,
    pub(crate) proto: String,
}

/// A database's label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DbLabels {
    pub(crate) db: String,
}

/// Labels of a poll failure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SourceLabels {
    pub(crate) source: String,
}

/// The directory's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: vdb_service::metrics::Metrics,
    pub(crate) queries: Family<QueryLabels, Counter>,
    pub(crate) redirects: Counter,
    pub(crate) poll_errors: Family<SourceLabels, Counter>,
    pub(crate) serial: Gauge,
    pub(crate) handed_out: Gauge,
    pub(crate) fail_static: Gauge,
    pub(crate) notifies: Counter,
    pub(crate) verdicts_expired: Counter,
    pub(crate) txt_version: Family<DbLabels, Gauge>,
    pub(crate) txt_time: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut r = vdb_service::metrics::Metrics::new("vdb_directory");
        Self {
            queries: r.family("dns_queries", "DNS answers sent"),
            redirects: r.add("redirects", "HTTP redirects to mirrors"),
            poll_errors: r.family("poll_errors", "failed polls of masters and monitors"),
            serial: r.add("zone_serial", "the zone's SOA serial"),
            handed_out: r.add("mirrors_handed_out", "mirrors in DNS answers and redirects"),
            verdicts_expired: r.add(
                "verdicts_expired",
                "monitor reports dropped because they had not moved on for verdict_max_age_secs",
            ),
            fail_static: r.add(
                "fail_static",
                "1 while the fail-static rule hands out mirrors that are not in service",
            ),
            notifies: r.add("notifies", "NOTIFY messages acknowledged by secondaries"),
            txt_version: r.family(
                "txt_version",
                "The version each database's TXT record advertises (every handed-out mirror serves it)",
            ),
            txt_time: r.add(
                "txt_time_seconds",
                "The time in the TXT records (Unix seconds): clients distrust records older than 12 h",
            ),
            registry: r,
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn encode(&self) -> String {
        self.registry.encode()
    }
}
