//! The one jittered exponential backoff: retry `n` waits a random time below a ceiling of
//! `base · 2^(n-1)`, capped at `max`. Each caller keeps its own base, cap and jitter; what
//! they share is the arithmetic (saturating: no attempt number overflows it) and its tests.
//!
//! A 40-line helper rather than the `backoff` crate: that crate drives the retry loop itself
//! (and is unmaintained), while every caller here only needs "how long before retry n" — a
//! reconciler's requeue, a contended write, a Lease acquisition.

use std::time::Duration;

use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;

/// How the webhook's and the controller's watches retry after an error: client-go's backoff
/// (0.8 s doubling, jittered, reset after 2 min without error) but at most 5 s apart instead of
/// 30 s, so that they resume within seconds of an API server's return (with 30 s, a
/// ServiceAccount annotated just after a 20 s outage reached the webhook 38 to 64 s later).
/// They are a few replicas; the agent, one per node, keeps kube-runtime's default, kinder to a
/// recovering API server.
pub fn watch() -> ResetTimerBackoff<ExponentialBackoff> {
    let builder = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(800))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(builder.into(), Duration::from_secs(120))
}

/// Where in `[0, ceiling]`-ish the delay falls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// Uniform in `[0, ceiling]` ("full jitter"): spreads competing writers apart the most.
    Full,
    /// Uniform in `[ceiling / 2, ceiling]` ("equal jitter"): never much sooner than planned.
    Equal,
    /// Uniform in `[ceiling, ceiling · (1 + f)]`: client-go's `JitterUntil`, a period that
    /// only ever grows (leader election must not retry faster than its period).
    Over(f64),
}

/// Retry `n` (from 1) waits within `base · 2^(n-1)` capped at `max`, jittered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The ceiling of the first retry.
    pub base: Duration,
    /// No ceiling is larger (`base` with `max == base` is a constant period).
    pub max: Duration,
    pub jitter: Jitter,
}

impl Backoff {
    /// The ceiling of retry `attempt` (1 is the first retry; 0 counts as 1).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // 2^31 · any base already saturates Duration's range of interest; the clamp keeps the
        // shift in range for any attempt number.
        let doublings = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// A random delay for retry `attempt`.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_at(attempt, rand::random::<f64>())
    }

    /// The delay at position `unit` (in `[0, 1]`) of retry `attempt`'s jitter range.
    fn delay_at(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt).as_secs_f64();
        let (low, high) = match self.jitter {
            Jitter::Full => (0.0, 1.0),
            Jitter::Equal => (0.5, 1.0),
            Jitter::Over(f) => (1.0, 1.0 + f),
        };
        let factor = low + (high - low) * unit.clamp(0.0, 1.0);
        // Out of range only for a ceiling near Duration::MAX stretched by `Over`.
        Duration::try_from_secs_f64(ceiling * factor).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn backoff(jitter: Jitter) -> Backoff {
        Backoff {
            base: S,
            max: 300 * S,
            jitter,
        }
    }

    #[test]
    fn the_ceiling_doubles_from_base_up_to_the_cap() {
        let b = backoff(Jitter::Full);
        let ceilings: Vec<u64> = (0..=10).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(ceilings, [1, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert_eq!(b.ceiling(11), 300 * S);
    }

    #[test]
    fn large_attempt_numbers_neither_overflow_nor_exceed_the_cap() {
        for max in [300 * S, Duration::MAX] {
            let b = Backoff {
                max,
                ..backoff(Jitter::Over(0.2))
            };
            for n in [32, 33, 64, 1000, u32::MAX] {
                assert_eq!(b.ceiling(n), b.base.saturating_mul(1 << 31).min(max), "{n}");
                assert!(b.delay(n) >= b.ceiling(n), "{n}");
            }
        }
        let huge = Backoff {
            base: Duration::MAX,
            max: Duration::MAX,
            jitter: Jitter::Over(0.2),
        };
        assert_eq!(huge.delay_at(u32::MAX, 1.0), Duration::MAX);
    }

    #[test]
    fn each_jitter_stays_in_its_range() {
        let ceiling = 8 * S;
        for (jitter, low, high) in [
            (Jitter::Full, Duration::ZERO, ceiling),
            (Jitter::Equal, ceiling / 2, ceiling),
            (Jitter::Over(0.2), ceiling, ceiling.mul_f64(1.2)),
        ] {
            let b = backoff(jitter);
            assert_eq!(b.delay_at(4, 0.0), low, "{jitter:?}");
            assert_eq!(b.delay_at(4, 1.0), high, "{jitter:?}");
            for _ in 0..200 {
                let d = b.delay(4);
                assert!(low <= d && d <= high, "{jitter:?}: {d:?}");
            }
        }
    }

    #[test]
    fn delays_are_spread_not_constant() {
        let b = backoff(Jitter::Full);
        let distinct: std::collections::BTreeSet<Duration> = (0..50).map(|_| b.delay(5)).collect();
        assert!(distinct.len() > 10, "{distinct:?}");
    }
}
