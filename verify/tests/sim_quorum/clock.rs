//! Per-node clocks for the quorum simulator: a node's local time runs at its own rate, within
//! `1 ± ρ` of true time, and that rate may change (at an event) as long as it stays in bounds.
//!
//! Why a file of its own: every engine is fed its *local* time while the invariants are
//! checked in *true* time, so the two conversions (local at a true instant, and the first
//! true instant at which a local deadline has passed) must be exact and in one place.

use std::time::{Duration, Instant};

/// One ppm is a millionth.
const MILLION: i128 = 1_000_000;

/// A piecewise-linear clock: since `anchor_true` (true nanoseconds after the simulation's
/// `t0`) it reads `anchor_local + elapsed × (1 + ppm / 10^6)` (local nanoseconds after `t0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    anchor_true: i128,
    anchor_local: i128,
    ppm: i64,
}

impl Clock {
    /// A clock that reads `offset` at true time 0 and runs at `1 + ppm / 10^6`.
    pub fn new(offset: Duration, ppm: i64) -> Clock {
        Clock {
            anchor_true: 0,
            anchor_local: offset.as_nanos() as i128,
            ppm,
        }
    }

    /// The rate error in ppm.
    pub fn ppm(&self) -> i64 {
        self.ppm
    }

    fn rate(&self) -> i128 {
        MILLION + i128::from(self.ppm)
    }

    /// Local nanoseconds at true nanoseconds `t` (rounded down).
    fn local_ns(&self, t: i128) -> i128 {
        self.anchor_local + (t - self.anchor_true) * self.rate() / MILLION
    }

    /// The first true nanosecond at which the clock reads at least `local` (extrapolated
    /// at the current rate before the anchor: only used for instants after it).
    fn true_ns(&self, local: i128) -> i128 {
        let d = local - self.anchor_local;
        let mut t = self.anchor_true + (d * MILLION).div_euclid(self.rate());
        while self.local_ns(t) < local {
            t += 1;
        }
        while self.local_ns(t - 1) >= local {
            t -= 1;
        }
        t
    }

    /// The local reading at true instant `now` (`t0` is the simulation's origin for both).
    pub fn local(&self, t0: Instant, now: Instant) -> Instant {
        let t = now.duration_since(t0).as_nanos() as i128;
        t0 + Duration::from_nanos(u64::try_from(self.local_ns(t)).expect("local time >= t0"))
    }

    /// The first true instant at which the clock reads at least `local`.
    pub fn true_at(&self, t0: Instant, local: Instant) -> Instant {
        let l = local.duration_since(t0).as_nanos() as i128;
        let t = self.true_ns(l).max(0);
        t0 + Duration::from_nanos(u64::try_from(t).expect("fits"))
    }

    /// From true instant `now` on, the clock runs at `1 + ppm / 10^6` (it does not jump).
    pub fn set_ppm(&mut self, t0: Instant, now: Instant, ppm: i64) {
        let t = now.duration_since(t0).as_nanos() as i128;
        self.anchor_local = self.local_ns(t);
        self.anchor_true = t;
        self.ppm = ppm;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_are_exact_and_monotonic() {
        let t0 = Instant::now();
        for ppm in [-10_000, -1, 0, 7, 10_000] {
            let mut c = Clock::new(Duration::from_secs(3), ppm);
            let mut last = t0;
            for ms in [0u64, 1, 999, 12_345, 60_000] {
                let now = t0 + Duration::from_millis(ms) + Duration::from_nanos(ms * 7 % 1000);
                let l = c.local(t0, now);
                assert!(l >= last);
                last = l;
                // The first true instant at which `l` is read is at most `now`, and the
                // reading just before it is below `l`.
                let back = c.true_at(t0, l);
                assert!(back <= now && c.local(t0, back) >= l);
                if back > t0 {
                    assert!(c.local(t0, back - Duration::from_nanos(1)) < l);
                }
            }
            // A rate change does not make the clock jump.
            let now = t0 + Duration::from_secs(5);
            let before = c.local(t0, now);
            c.set_ppm(t0, now, -ppm);
            assert_eq!(c.local(t0, now), before);
            let later = c.local(t0, now + Duration::from_secs(1));
            let want =
                Duration::from_secs(1).as_nanos() as i128 * (MILLION - i128::from(ppm)) / MILLION;
            assert_eq!(later.duration_since(before).as_nanos() as i128, want);
        }
    }
}
