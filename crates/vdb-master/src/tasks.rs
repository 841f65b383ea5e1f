//! Background tasks that shutdown waits for, and blocking work off the async threads.

use std::sync::{Arc, Mutex, PoisonError};

/// Background tasks that shutdown waits for (cheap to clone; clones share the set).
#[derive(Debug, Clone, Default)]
pub(crate) struct Tasks(Arc<Mutex<tokio::task::JoinSet<()>>>);

impl Tasks {
    /// Spawns a task.
    pub(crate) fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap finished tasks so the set does not grow.
        while set.try_join_next().is_some() {}
        set.spawn(f);
    }

    /// Waits for every task (call after cancelling).
    pub(crate) async fn wait(&self) {
        loop {
            let mut set =
                std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
            if set.is_empty() {
                return;
            }
            while set.join_next().await.is_some() {}
        }
    }
}

/// Runs blocking work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
