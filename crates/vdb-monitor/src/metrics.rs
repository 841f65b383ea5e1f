//! Prometheus metrics of the monitor.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use vdb_proto::MirrorState;

use crate::monitor::state_name;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorLabel {
    mirror: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorStateLabel {
    mirror: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    mirror: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabel {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbLabel {
    db: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoundLabel {
    outcome: String,
}

/// The monitor's metric families.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: vdb_service::metrics::Metrics,
    state: Family<MirrorStateLabel, Gauge>,
    lag: Family<MirrorLabel, Gauge>,
    response_ms: Family<MirrorLabel, Gauge>,
    checks: Family<CheckLabel, Counter>,
    alerts: Family<AlertLabel, Counter>,
    newest: Family<DbLabel, Gauge>,
    rounds: Family<RoundLabel, Counter>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut r = vdb_service::metrics::Metrics::new("vdb_monitor");
        Self {
            state: r.family("mirror_state", "1 for the published state of each mirror"),
            lag: r.family(
                "mirror_lag_seconds",
                "Seconds since the version a mirror serves was superseded",
            ),
            response_ms: r.family(
                "mirror_response_milliseconds",
                "Slowest manifest response of the last check",
            ),
            checks: r.family("checks", "Mirror checks by result"),
            alerts: r.family("alerts", "Alerts by kind and outcome"),
            newest: r.family(
                "newest_version",
                "Newest version of each database in the masters' manifest",
            ),
            rounds: r.family("rounds", "Check rounds"),
            registry: r,
        }
    }

    pub(crate) fn state(&self, mirror: &str, s: MirrorState, lag: i64) {
        for st in [
            MirrorState::InService,
            MirrorState::Lagging,
            MirrorState::Old,
            MirrorState::Out,
            MirrorState::Maintenance,
        ] {
            self.state
                .get_or_create(&MirrorStateLabel {
                    mirror: mirror.to_owned(),
                    state: state_name(st).to_owned(),
                })
                .set(i64::from(st == s));
        }
        self.lag
            .get_or_create(&MirrorLabel {
                mirror: mirror.to_owned(),
            })
            .set(lag);
    }

    pub(crate) fn checked(&self, mirror: &str, result: &str, ms: Option<u64>) {
        self.checks
            .get_or_create(&CheckLabel {
                mirror: mirror.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        if let Some(ms) = ms {
            self.response_ms
                .get_or_create(&MirrorLabel {
                    mirror: mirror.to_owned(),
                })
                .set(i64::try_from(ms).unwrap_or(i64::MAX));
        }
    }

    pub(crate) fn alert(&self, kind: &str, outcome: &str) {
        self.alerts
            .get_or_create(&AlertLabel {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn newest(&self, db: &str, v: u32) {
        self.newest
            .get_or_create(&DbLabel { db: db.to_owned() })
            .set(i64::from(v));
    }

    pub(crate) fn round(&self, outcome: &str) {
        self.rounds
            .get_or_create(&RoundLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub(crate) fn encode(&self) -> String {
        self.registry.encode()
    }
}
