//! What the parts of a master share, built once at start and handed to the pusher, the
//! replicator and the HTTP API. It depends on the parts it holds, never on its users.

use std::sync::Arc;

use crate::events::Events;
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::store::Store;
use crate::upstream::Health;

/// What the parts of a master share (cheap to clone): the release store, the peers, the
/// outbound HTTP client, the event bus, the metrics and the upstream's health.
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    pub(crate) store: Arc<Store>,
    pub(crate) peers: Arc<Peers>,
    pub(crate) http: vdb_fetch::Client,
    pub(crate) events: Events,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) upstream: Arc<Health>,
}
