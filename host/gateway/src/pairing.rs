//! Pairing windows: while one is open, devices with the claim certificate
//! may enroll. A window closes by itself when its time is up, and none
//! survives a restart: a gateway starts closed unless told otherwise
//! (`wasmbed gateway --open-pairing`).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::unix_ms;

/// How long a window stays open when no duration is given.
pub const DEFAULT_WINDOW: Duration =
    Duration::from_secs(wasmbed_gateway_api::pairing::DEFAULT_PAIRING_SECS);
/// The longest window that can be asked for.
pub const MAX_WINDOW: Duration =
    Duration::from_secs(wasmbed_gateway_api::pairing::MAX_PAIRING_SECS);

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    /// Open until `until` (monotonic), or until closed when `None`.
    Open {
        until: Option<Instant>,
    },
}

/// Whether devices may enroll now.
#[derive(Debug)]
pub struct Pairing {
    state: Mutex<State>,
}

/// The pairing state as the HTTP interface shows it.
pub use wasmbed_gateway_api::PairingStatus;

impl Default for Pairing {
    fn default() -> Self {
        Pairing {
            state: Mutex::new(State::Closed),
        }
    }
}

impl Pairing {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a window for `duration`, or until closed when `None`.
    pub fn open(&self, duration: Option<Duration>) {
        let until = duration.map(|d| Instant::now() + d);
        *self.lock() = State::Open { until };
    }

    pub fn close(&self) {
        *self.lock() = State::Closed;
    }

    pub fn is_open(&self) -> bool {
        self.status().open
    }

    pub fn status(&self) -> PairingStatus {
        let mut state = self.lock();
        let now = Instant::now();
        match *state {
            State::Open { until: Some(until) } if until <= now => {
                *state = State::Closed;
                PairingStatus {
                    open: false,
                    closes_at_ms: None,
                }
            }
            State::Open { until } => PairingStatus {
                open: true,
                closes_at_ms: until.map(|until| {
                    let left = u64::try_from((until - now).as_millis()).unwrap_or(u64::MAX);
                    unix_ms().saturating_add(left)
                }),
            },
            State::Closed => PairingStatus {
                open: false,
                closes_at_ms: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_window_closes_by_itself() {
        let pairing = Pairing::default();
        assert!(!pairing.is_open(), "closed at start");
        pairing.open(Some(Duration::from_secs(60)));
        let status = pairing.status();
        assert!(status.open);
        let closes_in = status.closes_at_ms.expect("a closing time") - unix_ms();
        assert!((59_000..=60_000).contains(&closes_in), "{closes_in}");
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(pairing.is_open());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!pairing.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_ended_window_stays_until_closed() {
        let pairing = Pairing::default();
        pairing.open(None);
        tokio::time::advance(Duration::from_secs(30 * 24 * 3600)).await;
        assert_eq!(
            pairing.status(),
            PairingStatus {
                open: true,
                closes_at_ms: None
            }
        );
        pairing.close();
        assert!(!pairing.is_open());
    }
}
