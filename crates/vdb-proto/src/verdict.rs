//! The monitor's verdicts, which the directory obeys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A mirror's service state (DESIGN.md §2: in service, lagging, old, out, maintenance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorState {
    /// Serving the newest release (or within the lag allowance).
    InService,
    /// Behind, but not yet old; still handed out.
    Lagging,
    /// Stale past the "old" threshold (the seed: a day); the team is warned. Not handed out.
    Old,
    /// Stale or unreachable past the "out" threshold (the seed: two days), or serving bad data.
    Out,
    /// In a maintenance window or drained by its admin.
    Maintenance,
}

impl MirrorState {
    /// Whether the directory may hand this mirror out.
    pub fn in_service(self) -> bool {
        matches!(self, Self::InService | Self::Lagging)
    }
}

/// The monitor's judgement of one mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorVerdict {
    /// The mirror's registry name.
    pub name: String,
    /// Its state.
    pub state: MirrorState,
    /// The database versions it serves, as last seen.
    #[serde(default)]
    pub serving: BTreeMap<String, u32>,
    /// The manifest serial it serves, as last seen.
    #[serde(default)]
    pub serial: Option<u64>,
    /// Seconds since the version it serves was superseded (0 while it serves the newest).
    #[serde(default)]
    pub lag_secs: i64,
    /// Last good check (Unix seconds).
    #[serde(default)]
    pub last_good: Option<i64>,
    /// Why it is in this state, for people.
    #[serde(default)]
    pub reason: String,
}

/// Everything one monitor currently thinks (`GET /api/v1/verdicts` on the monitor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictReport {
    /// The monitor's name.
    pub monitor: String,
    /// When the report was made (Unix seconds).
    pub generated_at: i64,
    /// The newest version of each database the monitor knows of (from the masters' manifest).
    #[serde(default)]
    pub newest: BTreeMap<String, u32>,
    /// One verdict per registered mirror.
    pub mirrors: Vec<MirrorVerdict>,
}

/// A monitor signs its report (`GET /api/v1/verdicts/signed`), so that a directory trusts only
/// the monitors whose keys it is given, whatever the path the report took.
impl crate::Document for VerdictReport {
    const KIND: crate::DocKind = crate::DocKind::Verdicts;
}
