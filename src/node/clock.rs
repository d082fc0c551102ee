//! The lease clock: the node's monotonic clock plus the time the machine has been suspended.
//!
//! Why a file of its own: `Instant` (and tokio's clock, which the election engine is fed)
//! does not advance while the machine is suspended on Linux (rust-lang/rust#87906). A leader
//! whose laptop or VM sleeps through its lease would wake up believing the lease still runs,
//! while the voters, whose clocks did run, have long elected someone else. Every lease check
//! (may this node act? how much of its guard is left?) is therefore made on this clock.
//!
//! On Linux and Android the suspended time is the growth of `CLOCK_BOOTTIME −
//! CLOCK_MONOTONIC` (the first counts suspend, the second does not) since the node started;
//! on other platforms it is taken as zero (macOS's and Windows' monotonic clocks are
//! documented to keep counting during sleep on current releases, and the others cannot tell).
//!
//! A lease end computed by the engine is on the engine's clock (tokio time), from the *send*
//! time of the round a majority acknowledged. [`LeaseClock::to_lease_clock`] moves it onto the
//! lease clock by adding the suspended time known *before* that send — a lower bound of the
//! suspended time at the send, so the converted end is never later than the true one: a
//! suspend between the send and its acknowledgements shortens the lease, as it must.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Suspension changes remembered (each one a suspend/resume the node noticed). Leases last
/// seconds and suspends are rare; an older change is dropped, which only makes a lease that
/// old look shorter (never longer).
const MAX_CHANGES: usize = 32;

/// Reads `boottime − monotonic`, in nanoseconds, as bounds `(low, high)`: the two clocks
/// cannot be read at the same instant.
type Source = Box<dyn Fn() -> (i128, i128) + Send + Sync>;

/// The node's lease clock. Shared by the actor and every handle and guard of the node.
pub(crate) struct LeaseClock {
    source: Source,
    /// `boottime − monotonic` when the node started.
    base: i128,
    /// The largest suspended time read so far, in ns: what [`LeaseClock::suspended`] returns
    /// never goes down (two readings of two clocks can jitter by a few ns).
    seen: AtomicU64,
    /// When (on the engine's clock) the suspended time was first seen at each new value,
    /// oldest first: `(at, suspended)`.
    changes: Mutex<VecDeque<(Instant, Duration)>>,
}

impl std::fmt::Debug for LeaseClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseClock")
            .field("suspended", &self.suspended())
            .finish_non_exhaustive()
    }
}

impl LeaseClock {
    /// The clock of a node starting now, on this platform's clocks.
    pub(crate) fn new() -> Self {
        Self::with_source(Box::new(boottime_minus_monotonic))
    }

    /// A clock that never sees a suspend (for tests that need exact arithmetic).
    #[cfg(test)]
    pub(crate) fn never_suspended() -> Self {
        Self::with_source(Box::new(|| (0, 0)))
    }

    fn with_source(source: Source) -> Self {
        // The suspended time is over-estimated rather than under-estimated (a lease measured
        // as shorter than it is, never longer): the start's low bound, later the high bound.
        let base = source().0;
        LeaseClock {
            source,
            base,
            seen: AtomicU64::new(0),
            changes: Mutex::new(VecDeque::new()),
        }
    }

    /// How long the machine has been suspended since the node started (zero where the
    /// platform cannot tell). Never decreases.
    pub(crate) fn suspended(&self) -> Duration {
        let now = ((self.source)().1 - self.base).clamp(0, i128::from(u64::MAX)) as u64;
        let before = self.seen.fetch_max(now, Ordering::AcqRel);
        let s = now.max(before);
        if now > before {
            self.note_change(Duration::from_nanos(s));
        }
        Duration::from_nanos(s)
    }

    /// Records that the suspended time was seen at `s`, at the engine clock's now.
    fn note_change(&self, s: Duration) {
        let at = tokio::time::Instant::now().into_std();
        let mut c = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        // A reading of a few ns of jitter is not a suspend: keep only real steps (but keep
        // the largest value in any case, so the lookups stay lower bounds).
        if let Some(last) = c.back_mut() {
            if s.saturating_sub(last.1) < Duration::from_millis(1) {
                return;
            }
        }
        c.push_back((at, s));
        if c.len() > MAX_CHANGES {
            c.pop_front();
        }
    }

    /// The lease clock's now: the engine clock's now plus the suspended time. Compare it with
    /// lease ends converted by [`LeaseClock::to_lease_clock`].
    pub(crate) fn lease_now(&self) -> Instant {
        tokio::time::Instant::now().into_std() + self.suspended()
    }

    /// A lower bound of the suspended time at `at` (on the engine's clock): the last value
    /// seen at or before `at`.
    pub(crate) fn suspended_at(&self, at: Instant) -> Duration {
        let c = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        c.iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .map_or(Duration::ZERO, |(_, s)| *s)
    }

    /// A lease end `until` computed by the engine from a round sent at `sent` (both on the
    /// engine's clock), on the lease clock: never later than the true end.
    pub(crate) fn to_lease_clock(&self, until: Instant, sent: Instant) -> Instant {
        // Make sure a suspend that happened before now is recorded before looking it up.
        self.suspended();
        until + self.suspended_at(sent)
    }
}

/// `CLOCK_BOOTTIME − CLOCK_MONOTONIC` in ns (the time spent suspended since boot), as bounds:
/// the boot time is read between two monotonic readings. A thread preempted between them
/// would widen the bounds, so a wide reading is taken again (a few times at most).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn boottime_minus_monotonic() -> (i128, i128) {
    use rustix::time::{clock_gettime, ClockId, Timespec};
    let ns = |t: Timespec| i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec);
    let mut best = (0, i128::MAX);
    for _ in 0..4 {
        let mono1 = ns(clock_gettime(ClockId::Monotonic));
        let boot = ns(clock_gettime(ClockId::Boottime));
        let mono2 = ns(clock_gettime(ClockId::Monotonic));
        let (low, high) = (boot - mono2, boot - mono1);
        if high - low < best.1 - best.0 {
            best = (low, high);
        }
        if high - low < 100_000 {
            break;
        }
    }
    best
}

/// Other platforms: no way to tell (see the module docs), taken as zero.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn boottime_minus_monotonic() -> (i128, i128) {
    (0, 0)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI64;
    use std::sync::Arc;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A clock whose `boottime − monotonic` is whatever the test sets.
    fn fake() -> (LeaseClock, Arc<AtomicI64>) {
        let v = Arc::new(AtomicI64::new(5_000_000_000));
        let r = v.clone();
        let clock = LeaseClock::with_source(Box::new(move || {
            let v = i128::from(r.load(Ordering::SeqCst));
            (v, v)
        }));
        (clock, v)
    }

    #[test]
    fn the_real_clock_never_goes_back_and_starts_at_zero_suspension() {
        let (low, high) = boottime_minus_monotonic();
        assert!(low <= high, "{low} {high}");
        let c = LeaseClock::new();
        // The process was not suspended for a second between two lines.
        assert!(c.suspended() < Duration::from_secs(1));
        let mut last = c.lease_now();
        for _ in 0..10_000 {
            let now = c.lease_now();
            assert!(now >= last, "{now:?} < {last:?}");
            last = now;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn suspension_is_the_growth_since_start_and_never_decreases() {
        let (c, v) = fake();
        assert_eq!(c.suspended(), Duration::ZERO);
        let t0 = c.lease_now();
        // Jitter below the start reads as zero, not as a negative time.
        v.fetch_sub(30, Ordering::SeqCst);
        assert_eq!(c.suspended(), Duration::ZERO);
        // A 3 s suspend: the lease clock jumps, tokio's clock does not.
        v.store(5_000_000_000 + 3_000_000_000, Ordering::SeqCst);
        assert_eq!(c.suspended(), ms(3000));
        assert_eq!(c.lease_now() - t0, ms(3000));
        // A reading a few ns lower afterwards does not take it back.
        v.fetch_sub(40, Ordering::SeqCst);
        assert_eq!(c.suspended(), ms(3000));
        tokio::time::advance(ms(10)).await;
        assert_eq!(c.lease_now() - t0, ms(3010));
    }

    #[tokio::test(start_paused = true)]
    async fn a_suspend_after_the_send_shortens_the_lease_one_before_does_not() {
        let (c, v) = fake();
        let tokio_now = || tokio::time::Instant::now().into_std();
        let lease = ms(900);
        // Round 1 sent, then acknowledged 5 ms later: no suspend, the end is unchanged.
        let sent1 = tokio_now();
        tokio::time::advance(ms(5)).await;
        let until1 = sent1 + lease;
        assert_eq!(c.to_lease_clock(until1, sent1), until1);
        // The machine sleeps 2 s before the acknowledgement of round 2 is handled.
        let sent2 = tokio_now();
        v.fetch_add(2_000_000_000, Ordering::SeqCst);
        tokio::time::advance(ms(5)).await;
        let until2 = sent2 + lease;
        let end2 = c.to_lease_clock(until2, sent2);
        // The end is not moved (a lower bound at the send: no suspend known then) ...
        assert_eq!(end2, until2);
        // ... so on the lease clock, which counts the 2 s, it is already over.
        assert!(c.lease_now() > end2);
        // Round 3, sent after the resume: the suspend before it does not shorten it.
        tokio::time::advance(ms(1)).await;
        let sent3 = tokio_now();
        let until3 = sent3 + lease;
        let end3 = c.to_lease_clock(until3, sent3);
        assert_eq!(end3, until3 + ms(2000));
        assert_eq!(end3 - c.lease_now(), lease);
    }

    #[tokio::test(start_paused = true)]
    async fn old_changes_are_dropped_conservatively() {
        let (c, v) = fake();
        let start = tokio::time::Instant::now().into_std();
        for _ in 0..(MAX_CHANGES + 5) {
            tokio::time::advance(ms(1)).await;
            v.fetch_add(10_000_000, Ordering::SeqCst);
            c.suspended();
        }
        // A round sent before every remembered change: the lower bound is zero.
        assert_eq!(c.to_lease_clock(start + ms(900), start), start + ms(900));
        assert_eq!(c.changes.lock().unwrap().len(), MAX_CHANGES);
    }
}
