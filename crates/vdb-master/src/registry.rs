//! The mirror registry as the API, the join requests and the sync reports read and change it:
//! the records (in the release [`history`](crate::history)) and the registry's event log (in the
//! join database).

use vdb_proto::{ErrorCode, MirrorRecord};

use crate::gate::Refusal;
use crate::history::RegistryEntry;
use crate::store::Store;
use crate::tasks::blocking;

/// The registry entry of mirror `name`, removed or not.
pub(crate) async fn find(store: &Store, name: &str) -> Result<Option<RegistryEntry>, Refusal> {
    let (h, name) = (store.history().clone(), name.to_owned());
    blocking(move || h.mirror(&name))
        .await
        .map_err(Refusal::internal)
}

/// The registered (not removed) mirror `name`, or the API's `no_mirror` refusal.
pub(crate) async fn live(store: &Store, name: &str) -> Result<MirrorRecord, Refusal> {
    match find(store, name).await? {
        Some(e) if !e.deleted => Ok(e.record),
        _ => Err(Refusal::new(
            ErrorCode::NoMirror,
            format!("no mirror named {name:?}"),
        )),
    }
}

/// Writes a mirror's record (`deleted`: its tombstone), timed after the entry it replaces.
pub(crate) async fn write_mirror(
    store: &Store,
    record: MirrorRecord,
    deleted: bool,
) -> Result<(), Refusal> {
    let prev = find(store, &record.name).await?.map_or(0, |e| e.updated_at);
    let entry = RegistryEntry {
        record,
        // A peer's entry may carry any time: no overflow past the end of time.
        updated_at: store.now().max(prev.saturating_add(1)),
        deleted,
    };
    tracing::info!(mirror = %entry.record.name, deleted, "registry changed");
    let h = store.history().clone();
    blocking(move || h.put_mirror(&entry))
        .await
        .map_err(Refusal::internal)?;
    Ok(())
}

/// Appends a history event (errors are logged: the change itself is made).
pub(crate) async fn log(store: &Store, mirror: &str, action: &str, actor: &str, detail: String) {
    let db = store.join().clone();
    let (mirror, action, actor, now) = (
        mirror.to_owned(),
        action.to_owned(),
        actor.to_owned(),
        store.now(),
    );
    if let Err(e) = blocking(move || db.log(&mirror, now, &action, &actor, &detail)).await {
        tracing::error!(error = %e, "cannot record a registry event");
    }
}
