//! Retry classes: exponential back-off with full jitter, bounded in attempts and in time.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::Error;

/// How often and how patiently a request is tried again after a retryable error
/// ([`Error::is_retryable`]).
///
/// The wait before retry `n` (1-based) is drawn uniformly from `0..=min(max_delay, base_delay ×
/// 2^(n-1))` ("full jitter"), and is at least the server's `Retry-After`. The caller gives up
/// when the attempts are spent, when the next wait would end past `max_total` after the first
/// attempt, or when the server asks for a wait longer than `max_delay` (a cool-down is the
/// caller's business, not a retry's).
///
/// ```
/// use std::time::Duration;
/// use vdb_fetch::RetryPolicy;
///
/// let p = RetryPolicy { max_attempts: 5, base_delay: Duration::from_secs(1), ..RetryPolicy::default() };
/// assert_eq!(p.ceiling(1), Duration::from_secs(1));
/// assert_eq!(p.ceiling(3), Duration::from_secs(4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// The back-off ceiling of the first retry; it doubles with each further one.
    pub base_delay: Duration,
    /// The largest wait between two attempts.
    pub max_delay: Duration,
    /// No attempt starts later than this after the first.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 500 ms base, waits of at most 10 s, 60 s in all.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_total: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub const NEVER: Self = Self {
        max_attempts: 1,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        max_total: Duration::ZERO,
    };

    /// The back-off ceiling before retry `retry` (1-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max_delay)
    }

    /// A back-off with full jitter before retry `retry` (1-based): a uniform draw from
    /// `0..=ceiling(retry)`. For callers that schedule their own retries across runs (an
    /// upstream backed off between checks).
    pub fn backoff(&self, retry: u32) -> Duration {
        self.ceiling(retry).mul_f64(jitter())
    }

    /// The wait before the next attempt after attempt `attempt` (1-based) failed with `error`,
    /// `elapsed` after the first attempt began; `jitter` is a uniform draw from `[0, 1)`.
    /// `None`: give up and return `error`. A pure function, so schedules are testable
    /// without sleeping.
    pub fn next_delay(
        &self,
        attempt: u32,
        elapsed: Duration,
        error: &Error,
        jitter: f64,
    ) -> Option<Duration> {
        if !error.is_retryable() || attempt >= self.max_attempts {
            return None;
        }
        let asked = error.retry_after().unwrap_or(Duration::ZERO);
        if asked > self.max_delay {
            return None;
        }
        let drawn = self.ceiling(attempt).mul_f64(jitter.clamp(0.0, 1.0));
        let wait = drawn.max(asked);
        (elapsed.saturating_add(wait) <= self.max_total).then_some(wait)
    }

    /// [`RetryPolicy::next_delay`] with a fresh random draw: for callers that run their own
    /// loop (to stop on cancellation, or to count and record attempts).
    pub fn wait_before_retry(
        &self,
        attempt: u32,
        elapsed: Duration,
        error: &Error,
    ) -> Option<Duration> {
        self.next_delay(attempt, elapsed, error, jitter())
    }

    /// Runs `op(attempt)` (1-based) until it succeeds, fails for good or the policy gives up;
    /// the last error is returned.
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, Error>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            let error = match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Some(wait) = self.wait_before_retry(attempt, started.elapsed(), &error) else {
                return Err(error);
            };
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, error = %error, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// A uniform draw from `[0, 1)`.
fn jitter() -> f64 {
    use rand_core::RngCore as _;
    f64::from(rand_core::OsRng.next_u32()) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SafeUrl;

    fn status(code: u16, retry_after: Option<u64>) -> Error {
        Error::Status {
            url: SafeUrl::new("http://h/x"),
            status: reqwest::StatusCode::from_u16(code).unwrap(),
            retry_after: retry_after.map(Duration::from_secs),
            body: bytes::Bytes::new(),
        }
    }

    #[test]
    fn full_jitter_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_total: Duration::from_secs(1000),
        };
        let e = status(503, None);
        let d = |attempt, j| p.next_delay(attempt, Duration::ZERO, &e, j);
        assert_eq!(d(1, 0.0), Some(Duration::ZERO));
        assert_eq!(d(1, 0.5), Some(Duration::from_millis(500)));
        assert_eq!(d(2, 0.5), Some(Duration::from_secs(1)));
        assert_eq!(d(3, 0.999), Some(Duration::from_secs(4).mul_f64(0.999)));
        assert_eq!(d(5, 0.5), Some(Duration::from_secs(4)), "capped at 8 s");
        assert_eq!(d(40, 0.5), None, "attempts spent");
        assert_eq!(p.ceiling(200), Duration::from_secs(8), "no overflow");
    }

    #[test]
    fn gives_up_when_it_should() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            max_total: Duration::from_secs(20),
        };
        assert_eq!(
            p.next_delay(1, Duration::ZERO, &status(404, None), 0.5),
            None
        );
        assert_eq!(
            p.next_delay(1, Duration::ZERO, &status(403, None), 0.5),
            None
        );
        assert_eq!(
            p.next_delay(3, Duration::ZERO, &status(503, None), 0.5),
            None
        );
        // Retry-After is a floor, and one beyond max_delay is a cool-down, not a retry.
        assert_eq!(
            p.next_delay(1, Duration::ZERO, &status(429, Some(7)), 0.1),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            p.next_delay(1, Duration::ZERO, &status(429, Some(3600)), 0.1),
            None
        );
        // The total budget.
        assert_eq!(
            p.next_delay(1, Duration::from_secs(15), &status(503, Some(6)), 0.0),
            None
        );
        assert_eq!(
            RetryPolicy::NEVER.next_delay(1, Duration::ZERO, &status(503, None), 0.0),
            None
        );
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
