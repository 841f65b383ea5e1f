//! Bounded polls: wait on something observable, never a fixed sleep.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Polls `f` every 100 ms until it returns `Some`, for at most `secs` seconds; panics with
/// `what` on time-out.
pub fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out ({secs} s) waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`wait_for`] for async checks (the wait between polls does not block the runtime).
#[cfg(feature = "net")]
pub async fn wait_for_async<T, F>(what: &str, secs: u64, mut f: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out ({secs} s) waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The wall clock in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
