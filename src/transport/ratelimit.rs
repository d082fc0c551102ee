//! Rate limit for repeated warnings: the first of a kind at once, then at most one summary
//! line with a count per window.
//!
//! Why: a misconfigured or unreachable peer is retried about twice a second, and an inbound
//! peer with the wrong cookie retries as often; logging each failure buries everything else
//! in the log, while logging one in N (as before) still repeats forever and hides how many
//! there were. Keyed by peer and reason, so a *new* reason is logged at once.
//!
//! Pure (no clock: `now` comes in as an argument) and bounded: at most [`MAX_KEYS`] keys are
//! remembered; the least recently seen one is forgotten first, which at worst logs a line
//! that would have been summarised.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long after a logged line the same warning is only counted.
pub(crate) const WINDOW: Duration = Duration::from_secs(30);

/// Most (peer, reason) pairs remembered at once.
pub(crate) const MAX_KEYS: usize = 256;

/// What to do with one occurrence of a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Log it. `suppressed` occurrences were counted (not logged) since the last logged one,
    /// over `over` (zero for the first one).
    Log { suppressed: u64, over: Duration },
    /// Count it, do not log it.
    Suppress,
}

#[derive(Debug, Clone)]
struct Entry {
    logged_at: Instant,
    seen_at: Instant,
    suppressed: u64,
}

/// Remembers recent warnings by key.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    window: Duration,
    entries: HashMap<(String, String), Entry>,
}

impl Default for WarnLimiter {
    fn default() -> Self {
        Self::new(WINDOW)
    }
}

impl WarnLimiter {
    pub(crate) fn new(window: Duration) -> Self {
        WarnLimiter {
            window,
            entries: HashMap::new(),
        }
    }

    /// One occurrence of warning `reason` about `peer` at `now`.
    pub(crate) fn check(&mut self, peer: &str, reason: &str, now: Instant) -> Verdict {
        let key = (peer.to_owned(), reason.to_owned());
        if let Some(e) = self.entries.get_mut(&key) {
            e.seen_at = now;
            let since = now.saturating_duration_since(e.logged_at);
            if since < self.window {
                e.suppressed = e.suppressed.saturating_add(1);
                return Verdict::Suppress;
            }
            let suppressed = std::mem::take(&mut e.suppressed);
            e.logged_at = now;
            return Verdict::Log {
                suppressed,
                over: since,
            };
        }
        if self.entries.len() >= MAX_KEYS {
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.seen_at)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            key,
            Entry {
                logged_at: now,
                seen_at: now,
                suppressed: 0,
            },
        );
        Verdict::Log {
            suppressed: 0,
            over: Duration::ZERO,
        }
    }

    /// Whether no line is being limited (then there is nothing to clear).
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every warning about `peer` (it connected): the next failure is news again.
    pub(crate) fn clear(&mut self, peer: &str) {
        self.entries.retain(|(p, _), _| p != peer);
    }
}

/// The summary appended to a logged line: empty for the first one, else e.g.
/// `" (and 57 more times in the last 30 s)"`.
pub(crate) fn summary(suppressed: u64, over: Duration) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(
            " (and {suppressed} more times in the last {} s)",
            over.as_secs().max(1)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn first_at_once_then_one_summary_per_window() {
        let t0 = Instant::now();
        let mut l = WarnLimiter::new(s(30));
        assert_eq!(
            l.check("b", "wrong cookie", t0),
            Verdict::Log {
                suppressed: 0,
                over: Duration::ZERO
            }
        );
        // Twice a second for 30 s: all counted, none logged.
        for i in 1..60 {
            let now = t0 + Duration::from_millis(500 * i);
            assert_eq!(l.check("b", "wrong cookie", now), Verdict::Suppress, "{i}");
        }
        assert_eq!(
            l.check("b", "wrong cookie", t0 + s(30)),
            Verdict::Log {
                suppressed: 59,
                over: s(30)
            }
        );
        assert_eq!(l.check("b", "wrong cookie", t0 + s(31)), Verdict::Suppress);
        // A quiet spell: the next one is logged with what was counted.
        assert_eq!(
            l.check("b", "wrong cookie", t0 + s(100)),
            Verdict::Log {
                suppressed: 1,
                over: s(70)
            }
        );
    }

    #[test]
    fn another_peer_or_reason_is_news() {
        let t0 = Instant::now();
        let mut l = WarnLimiter::new(s(30));
        assert!(matches!(l.check("b", "x", t0), Verdict::Log { .. }));
        assert!(matches!(l.check("c", "x", t0), Verdict::Log { .. }));
        assert!(matches!(l.check("b", "y", t0), Verdict::Log { .. }));
        assert_eq!(l.check("b", "x", t0 + s(1)), Verdict::Suppress);
        // Connected: forgotten, the next failure is logged at once.
        l.clear("b");
        assert!(matches!(l.check("b", "x", t0 + s(2)), Verdict::Log { .. }));
        assert_eq!(l.check("c", "x", t0 + s(2)), Verdict::Suppress);
    }

    #[test]
    fn bounded() {
        let t0 = Instant::now();
        let mut l = WarnLimiter::new(s(30));
        for i in 0..(MAX_KEYS as u64 + 50) {
            l.check(&format!("p{i}"), "r", t0 + Duration::from_millis(i));
        }
        assert_eq!(l.entries.len(), MAX_KEYS);
        // The most recent ones are kept, the oldest forgotten.
        assert_eq!(
            l.check(&format!("p{}", MAX_KEYS + 49), "r", t0 + s(1)),
            Verdict::Suppress
        );
        assert!(matches!(l.check("p0", "r", t0 + s(1)), Verdict::Log { .. }));
    }

    #[test]
    fn summaries_read_well() {
        assert_eq!(summary(0, Duration::ZERO), "");
        assert_eq!(summary(57, s(30)), " (and 57 more times in the last 30 s)");
    }
}
