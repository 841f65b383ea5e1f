//! What the release store tells the other parts of a master: a release was accepted, a
//! manifest was signed, a mirror joined, an operator should know something. The pusher, the
//! notifier and the replicator each subscribe and act on their own state; the store knows none
//! of them.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use vdb_proto::{MirrorRecord, ReleaseStatement};

/// Where a release came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A publisher, over the API.
    Publisher,
    /// A peer master (base URL).
    Peer(String),
    /// The upstream follower.
    Upstream,
}

impl Origin {
    /// The history's and the logs' label.
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Publisher => "publisher".into(),
            Self::Peer(u) => format!("peer:{u}"),
            Self::Upstream => "upstream".into(),
        }
    }

    /// Whether this master took the release first (it announces it and pokes its peers;
    /// replicas stay quiet, so there is one announcement per release).
    pub(crate) fn is_first_hand(&self) -> bool {
        !matches!(self, Self::Peer(_))
    }
}

/// Something that happened.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// A release passed the gate and is in the history.
    ReleaseAccepted {
        /// The release id.
        id: String,
        /// Its statement.
        statement: Box<ReleaseStatement>,
        /// Where it came from.
        origin: Origin,
    },
    /// A manifest with this serial is signed and served (only once the master is ready).
    ManifestSigned {
        /// Its serial.
        serial: u64,
    },
    /// A mirror was registered and should sync at once.
    MirrorAdded {
        /// Its record.
        record: Box<MirrorRecord>,
        /// The serial to push.
        serial: u64,
    },
    /// An operator alert.
    Alert {
        /// A short machine kind (`forced_sync_skipped`, …).
        kind: &'static str,
        /// The details.
        message: String,
    },
}

/// The event bus: every subscriber gets every event, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Events {
    subscribers: Arc<Mutex<Vec<UnboundedSender<Event>>>>,
}

impl Events {
    /// A new subscription (events emitted from now on).
    pub(crate) fn subscribe(&self) -> UnboundedReceiver<Event> {
        let (tx, rx) = unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }

    /// Sends `event` to every live subscriber.
    pub(crate) fn emit(&self, event: Event) {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| s.send(event.clone()).is_ok());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_gets_every_event_in_order() {
        let bus = Events::default();
        let mut a = bus.subscribe();
        let mut b = bus.subscribe();
        bus.emit(Event::ManifestSigned { serial: 1 });
        bus.emit(Event::ManifestSigned { serial: 2 });
        for rx in [&mut a, &mut b] {
            for want in [1, 2] {
                assert!(
                    matches!(rx.recv().await, Some(Event::ManifestSigned { serial }) if serial == want)
                );
            }
        }
        drop(a);
        bus.emit(Event::ManifestSigned { serial: 3 });
        assert!(matches!(
            b.recv().await,
            Some(Event::ManifestSigned { serial: 3 })
        ));
        assert_eq!(bus.subscribers.lock().unwrap().len(), 1);
    }
}
