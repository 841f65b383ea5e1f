//! Prometheus metrics of the monitor.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
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
    registry: Mutex<Registry>,
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
        let mut registry = Registry::with_prefix("vdb_monitor");
        let m = Self {
            registry: Mutex::new(Registry::default()),
            state: Family::default(),
            lag: Family::default(),
            response_ms: Family::default(),
            checks: Family::default(),
            alerts: Family::default(),
            newest: Family::default(),
            rounds: Family::default(),
        };
        registry.register(
            "mirror_state",
            "1 for the published state of each mirror",
            m.state.clone(),
        );
        registry.register(
            "mirror_lag_seconds",
            "Seconds since the version a mirror serves was superseded",
            m.lag.clone(),
        );
        registry.register(
            "mirror_response_milliseconds",
            "Slowest manifest response of the last check",
            m.response_ms.clone(),
        );
        registry.register("checks", "Mirror checks by result", m.checks.clone());
        registry.register("alerts", "Alerts by kind and outcome", m.alerts.clone());
        registry.register(
            "newest_version",
            "Newest version of each database in the masters' manifest",
            m.newest.clone(),
        );
        registry.register("rounds", "Check rounds", m.rounds.clone());
        *m.registry.lock().expect("fresh mutex") = registry;
        m
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
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
        out
    }
}
