//! Every role's Prometheus registry: metrics registered in one call each, and the text
//! exposition served at `/metrics`.

use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Metric, Registry};

/// A registry of one role's metrics, all named `<prefix>_<name>`.
#[derive(Debug)]
pub struct Metrics(Registry);

impl Metrics {
    /// An empty registry whose metric names start with `prefix` (`vdb_master`).
    pub fn new(prefix: &str) -> Self {
        Self(Registry::with_prefix(prefix))
    }

    /// Registers a new (default) `metric` as `name` with its `help` text and returns it.
    pub fn add<M: Metric + Clone + Default>(&mut self, name: &str, help: &str) -> M {
        let metric = M::default();
        self.0.register(name, help, metric.clone());
        metric
    }

    /// Registers a new family of metrics labelled by `L` (see [`Metrics::add`]).
    pub fn family<L, M>(&mut self, name: &str, help: &str) -> Family<L, M>
    where
        Family<L, M>: Metric + Clone + Default,
    {
        self.add(name, help)
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0);
        out
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    #[test]
    fn registered_metrics_are_the_ones_encoded() {
        let mut m = super::Metrics::new("vdb_test");
        let c: Counter = m.add("things", "Things seen");
        let g: Gauge = m.add("level", "The level");
        let f = m.family::<Vec<(String, String)>, Counter>("events", "Events by kind");
        c.inc();
        g.set(7);
        f.get_or_create(&vec![("kind".into(), "a".into())])
            .inc_by(2);
        let text = m.encode();
        for line in [
            "vdb_test_things_total 1",
            "vdb_test_level 7",
            "vdb_test_events_total{kind=\"a\"} 2",
            "# HELP vdb_test_things Things seen.",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
