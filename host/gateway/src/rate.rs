//! Rate limits: a generic cell rate algorithm (a token bucket without
//! floating point), alone or one per key (a source address).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// `burst` events at once, then `per_second` a second on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_second: u32,
}

impl RateLimit {
    /// No limit in practice, for a simulated fleet whose devices all come
    /// from one address.
    pub const UNLIMITED: RateLimit = RateLimit {
        burst: u32::MAX,
        per_second: u32::MAX,
    };

    /// Time between two events at the sustained rate.
    fn spacing(self) -> Duration {
        Duration::from_secs(1) / self.per_second.max(1)
    }

    /// How far ahead of the sustained rate a burst may run.
    fn tolerance(self) -> Duration {
        self.spacing() * self.burst.max(1).saturating_sub(1)
    }
}

/// `5/s,20`: five a second, in bursts of up to twenty.
impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/s,{}", self.per_second, self.burst)
    }
}

/// Parses `N/s` (bursts of N) or `N/s,B` (bursts of B), N and B ≥ 1.
impl std::str::FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{text:?} is not a rate: write N/s or N/s,BURST (e.g. 5/s,20)");
        let (rate, burst) = match text.split_once(',') {
            Some((rate, burst)) => (rate, Some(burst)),
            None => (text, None),
        };
        let per_second: u32 = rate
            .trim()
            .strip_suffix("/s")
            .and_then(|n| n.trim().parse().ok())
            .filter(|n| *n > 0)
            .ok_or_else(invalid)?;
        let burst = match burst {
            Some(burst) => burst
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(invalid)?,
            None => per_second,
        };
        Ok(RateLimit { burst, per_second })
    }
}

/// One limited stream of events.
#[derive(Debug, Clone, Copy)]
struct Cell {
    /// When the next event is due at the sustained rate.
    due: Instant,
    /// Events refused since the last one allowed.
    refused: u64,
}

impl Cell {
    fn new(now: Instant) -> Cell {
        Cell {
            due: now,
            refused: 0,
        }
    }

    fn take(&mut self, limit: RateLimit, now: Instant) -> Decision {
        if now + limit.tolerance() < self.due {
            self.refused = self.refused.saturating_add(1);
            return Decision::Refused;
        }
        self.due = self.due.max(now) + limit.spacing();
        Decision::Allowed {
            refused_before: std::mem::take(&mut self.refused),
        }
    }

    /// Whether the cell is back to a full burst: forgetting it changes
    /// nothing but its count of refusals.
    fn is_idle(&self, now: Instant) -> bool {
        self.due <= now
    }
}

/// Whether an event may happen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead; `refused_before` events of the same stream were refused
    /// since the previous one allowed (for "N similar lines suppressed").
    Allowed {
        refused_before: u64,
    },
    Refused,
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }
}

/// One rate limit shared by every caller.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    cell: Mutex<Cell>,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit,
            cell: Mutex::new(Cell::new(Instant::now())),
        }
    }

    pub fn take(&self) -> Decision {
        let mut cell = self.cell.lock().unwrap_or_else(|e| e.into_inner());
        cell.take(self.limit, Instant::now())
    }
}

/// A rate limit per key (a source address), for at most `max_keys` keys
/// at once: a peer cannot make the map grow without bound. A new key
/// that finds the map full of busy keys is refused; idle keys are
/// forgotten when the map is full, at most once a second (a scan of the
/// whole map).
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    limit: RateLimit,
    max_keys: usize,
    cells: Mutex<Cells<K>>,
}

#[derive(Debug)]
struct Cells<K> {
    by_key: HashMap<K, Cell>,
    /// When idle keys were last forgotten.
    purged: Option<Instant>,
}

/// Least time between two scans for idle keys.
const PURGE_INTERVAL: Duration = Duration::from_secs(1);

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(limit: RateLimit, max_keys: usize) -> KeyedLimiter<K> {
        KeyedLimiter {
            limit,
            max_keys,
            cells: Mutex::new(Cells {
                by_key: HashMap::new(),
                purged: None,
            }),
        }
    }

    pub fn take(&self, key: &K) -> Decision {
        let now = Instant::now();
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cell) = cells.by_key.get_mut(key) {
            return cell.take(self.limit, now);
        }
        if cells.by_key.len() >= self.max_keys {
            if cells
                .purged
                .is_some_and(|at| now.duration_since(at) < PURGE_INTERVAL)
            {
                return Decision::Refused;
            }
            cells.purged = Some(now);
            cells.by_key.retain(|_, cell| !cell.is_idle(now));
            if cells.by_key.len() >= self.max_keys {
                return Decision::Refused;
            }
        }
        let mut cell = Cell::new(now);
        let decision = cell.take(self.limit, now);
        cells.by_key.insert(key.clone(), cell);
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        let rate: RateLimit = "5/s,20".parse().expect("a rate");
        assert_eq!(
            rate,
            RateLimit {
                burst: 20,
                per_second: 5
            }
        );
        assert_eq!(rate.to_string(), "5/s,20");
        assert_eq!("7/s".parse::<RateLimit>().map(|r| r.burst), Ok(7));
        for bad in ["", "5", "0/s", "5/m", "5/s,0", "5/s,x", "-1/s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?}");
        }
    }

    const LIMIT: RateLimit = RateLimit {
        burst: 3,
        per_second: 10,
    };

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_sustained_rate() {
        let limiter = Limiter::new(LIMIT);
        for _ in 0..3 {
            assert!(limiter.take().is_allowed());
        }
        assert_eq!(limiter.take(), Decision::Refused);
        assert_eq!(limiter.take(), Decision::Refused);
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(limiter.take(), Decision::Allowed { refused_before: 2 });
        assert_eq!(limiter.take(), Decision::Refused);
        // After a quiet second the whole burst is back, no more.
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..3 {
            assert!(limiter.take().is_allowed());
        }
        assert_eq!(limiter.take(), Decision::Refused);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_limited_apart_and_the_map_is_bounded() {
        let limiter = KeyedLimiter::new(LIMIT, 2);
        for _ in 0..3 {
            assert!(limiter.take(&1).is_allowed());
            assert!(limiter.take(&2).is_allowed());
        }
        assert_eq!(limiter.take(&1), Decision::Refused);
        // Two busy keys fill the map: a third is refused...
        assert_eq!(limiter.take(&3), Decision::Refused);
        // ...until the others are idle again and can be forgotten.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limiter.take(&3).is_allowed());
    }
}
