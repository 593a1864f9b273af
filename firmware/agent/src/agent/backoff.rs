//! Reconnection delays: exponential backoff with full jitter.

use rand_core::RngCore;

/// How long to wait before reconnecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Ceiling of the first delay.
    pub initial_ms: u32,
    /// Largest ceiling; delays never exceed it.
    pub max_ms: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial_ms: 1_000,
            max_ms: 60_000,
        }
    }
}

/// Attempt `n` (from 0) waits a uniformly random time in
/// `[0, min(max, initial · 2ⁿ)]` ("full jitter"), so a fleet that lost its
/// gateway at once does not reconnect at once.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    /// Starts over after a successful connection.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt, in milliseconds.
    pub(crate) fn next_delay(&mut self, rng: &mut impl RngCore) -> u64 {
        let ceiling = u64::from(self.config.initial_ms)
            .saturating_mul(1u64 << self.attempt.min(32))
            .min(u64::from(self.config.max_ms));
        self.attempt = self.attempt.saturating_add(1);
        rng.next_u64() % (ceiling + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the same number every time.
    struct Fixed(u64);

    impl RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            u32::try_from(self.0).unwrap_or(u32::MAX)
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(0);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(0);
            Ok(())
        }
    }

    fn backoff() -> Backoff {
        Backoff::new(BackoffConfig {
            initial_ms: 100,
            max_ms: 1_000,
        })
    }

    #[test]
    fn delays_reach_a_doubling_ceiling_up_to_the_cap() {
        let ceilings = [100, 200, 400, 800, 1_000, 1_000, 1_000];
        for (attempt, ceiling) in ceilings.into_iter().enumerate() {
            // The random number is taken modulo ceiling + 1: `ceiling` is
            // the largest delay, `ceiling + 1` wraps to no delay at all.
            for (random, expected) in [(ceiling, ceiling), (ceiling + 1, 0)] {
                let mut b = backoff();
                for _ in 0..attempt {
                    b.next_delay(&mut Fixed(0));
                }
                assert_eq!(
                    b.next_delay(&mut Fixed(random)),
                    expected,
                    "attempt {attempt}"
                );
            }
        }
    }

    #[test]
    fn reset_starts_over_and_many_failures_do_not_overflow() {
        let mut b = backoff();
        for _ in 0..200 {
            assert!(b.next_delay(&mut Fixed(u64::MAX)) <= 1_000);
        }
        b.reset();
        assert_eq!(b.next_delay(&mut Fixed(100)), 100);
        assert_eq!(b.next_delay(&mut Fixed(101)), 101);
    }
}
