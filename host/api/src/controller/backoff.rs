//! How long a failing gateway is left alone: the wait doubles at each
//! failure, from a minimum to a maximum, and ends at the first success.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

/// The backoff of every gateway that failed, by gateway name.
#[derive(Debug, Clone)]
pub(crate) struct Backoffs {
    min: Duration,
    max: Duration,
    failing: HashMap<String, Failing>,
}

#[derive(Debug, Clone, Copy)]
struct Failing {
    failures: u32,
    until: Instant,
}

impl Backoffs {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoffs {
            min,
            max,
            failing: HashMap::new(),
        }
    }

    /// Whether `gateway` may be called at `now`: it has not failed, or its
    /// wait is over.
    pub(crate) fn available(&self, gateway: &str, now: Instant) -> bool {
        self.failing.get(gateway).is_none_or(|f| now >= f.until)
    }

    /// How long `gateway` still waits at `now` (zero when it may be called).
    pub(crate) fn remaining(&self, gateway: &str, now: Instant) -> Duration {
        self.failing
            .get(gateway)
            .map_or(Duration::ZERO, |f| f.until.saturating_duration_since(now))
    }

    /// `gateway` failed at `now`: it waits twice as long as last time.
    pub(crate) fn failed(&mut self, gateway: &str, now: Instant) {
        let entry = self.failing.entry(gateway.to_owned()).or_insert(Failing {
            failures: 0,
            until: now,
        });
        let factor = 1u32 << entry.failures.min(16);
        let delay = self.min.saturating_mul(factor).min(self.max);
        entry.failures = entry.failures.saturating_add(1);
        entry.until = now + delay;
        debug!(gateway, ?delay, "backing off");
    }

    /// `gateway` answered: no more wait.
    pub(crate) fn succeeded(&mut self, gateway: &str) {
        self.failing.remove(gateway);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(2);

    #[test]
    fn a_failing_gateway_is_not_retried_before_its_wait_ends_and_waits_double() {
        let mut backoffs = Backoffs::new(MIN, MAX);
        let t0 = Instant::now();
        assert!(backoffs.available("gw", t0));
        backoffs.failed("gw", t0);
        assert!(!backoffs.available("gw", t0 + MIN - Duration::from_millis(1)));
        assert!(backoffs.available("gw", t0 + MIN));
        assert_eq!(backoffs.remaining("gw", t0 + MIN / 5), MIN * 4 / 5);
        assert_eq!(backoffs.remaining("gw", t0 + MIN), Duration::ZERO);
        assert_eq!(backoffs.remaining("other", t0), Duration::ZERO);
        assert!(
            backoffs.available("other", t0),
            "only the failing gateway waits"
        );
        // The second failure waits twice as long, the next ones at most MAX.
        let t1 = t0 + MIN;
        backoffs.failed("gw", t1);
        assert!(!backoffs.available("gw", t1 + 2 * MIN - Duration::from_millis(1)));
        assert!(backoffs.available("gw", t1 + 2 * MIN));
        for _ in 0..10 {
            backoffs.failed("gw", t1);
        }
        assert!(backoffs.available("gw", t1 + MAX));
    }

    #[test]
    fn a_success_ends_the_wait() {
        let mut backoffs = Backoffs::new(MIN, MAX);
        let t0 = Instant::now();
        backoffs.failed("gw", t0);
        backoffs.succeeded("gw");
        assert!(backoffs.available("gw", t0));
    }
}
