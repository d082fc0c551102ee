//! Bounded, jittered exponential backoff for reconnecting to the store (etcd…).
//!
//! Why: when etcd restarts, every node's campaigner and observer reconnect at once; without
//! jitter they retry in lock-step, and without a cap a long outage would push the retry far
//! past the moment etcd is back. Sans-IO: the caller passes the random draw, so the delays are
//! unit-tested exactly.

use std::time::Duration;

/// Exponential backoff from `base` doubling up to `max`, with "equal jitter": each delay is
/// half the step plus a random part of the other half.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff whose steps go `base, 2·base, 4·base, …` up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The next delay, given a uniform random `jitter` in `0.0 ..= 1.0` (clamped): within
    /// `step/2 ..= step` where `step = min(max, base·2^attempt)`.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let step = self
            .base
            .checked_mul(1u32 << self.attempt.min(20))
            .map_or(self.max, |s| s.min(self.max));
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        half + half.mul_f64(jitter)
    }

    /// Starts over from `base` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap_with_equal_jitter() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        assert_eq!(b.next_delay(0.0), 50 * MS);
        assert_eq!(b.next_delay(1.0), 200 * MS);
        assert_eq!(b.next_delay(0.5), 300 * MS);
        assert_eq!(b.next_delay(0.0), 400 * MS);
        assert_eq!(b.next_delay(0.0), 500 * MS, "capped at max");
        for _ in 0..100 {
            assert_eq!(b.next_delay(1.0), 1000 * MS);
        }
        b.reset();
        assert_eq!(b.next_delay(1.0), 100 * MS);
    }

    #[test]
    fn odd_jitter_values_are_clamped() {
        let mut b = Backoff::new(100 * MS, 100 * MS);
        assert_eq!(b.next_delay(7.0), 100 * MS);
        assert_eq!(b.next_delay(-3.0), 50 * MS);
        assert_eq!(b.next_delay(f64::NAN), 50 * MS);
    }
}
