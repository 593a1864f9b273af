//! The gateway's monotonic clock for session timing.
//!
//! Sessions count their deadlines (first message, liveness, heartbeat
//! pacing) on this clock, never on the wall clock: a step of the system
//! time (NTP, an operator) must neither fire nor stall timeouts across the
//! fleet. It is tokio's clock, so tests can pause and advance time.

use std::time::Duration;

use tokio::time::Instant;
use wasmbed_protocol::Millis;

/// Milliseconds since the gateway started, on a monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Now, in milliseconds since the clock started.
    pub(crate) fn now(&self) -> Millis {
        Millis(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The instant `at` (a time of [`Clock::now`]) stands for.
    pub(crate) fn instant(&self, at: Millis) -> Instant {
        self.start + Duration::from_millis(at.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time_not_the_wall_clock() {
        let clock = Clock::new();
        assert_eq!(clock.now(), Millis(0));
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(clock.now(), Millis(1_500));
        assert_eq!(clock.instant(Millis(1_500)), Instant::now());
    }
}
