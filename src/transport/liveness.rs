//! Liveness of one connection: when it last carried a frame each way, and what that means at
//! `now` — the peer is DOWN (silent for the failure timeout), it is owed a heartbeat (we have
//! sent nothing for a heartbeat interval), or all is well.
//!
//! Pure bookkeeping fed `now` (no clock reads), so the rules are unit-tested with exact
//! instants. Why application heartbeats at all: TCP alone does not notice a frozen peer, and a
//! node whose runtime hangs (a stuck callback) must look DOWN too, so the node's own actor
//! sends them.

use std::time::{Duration, Instant};

/// What a connection's liveness says at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing received for the failure timeout: the peer is DOWN.
    Dead,
    /// Nothing sent for a heartbeat interval and nothing queued: send a heartbeat.
    Beat,
    /// Nothing to do.
    Fine,
}

/// The liveness record of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    last_recv: Instant,
    last_sent: Instant,
    /// The reader's batch count when the node last looked (replies on the direct path never
    /// reach the node's actor: the reader counts them).
    recv_seen: u64,
}

impl Liveness {
    pub(crate) fn new(now: Instant) -> Self {
        Liveness {
            last_recv: now,
            last_sent: now,
            recv_seen: 0,
        }
    }

    /// A frame was handed to the node at `now`.
    pub(crate) fn received(&mut self, now: Instant) {
        self.last_recv = self.last_recv.max(now);
    }

    /// A frame was queued to the peer at `now`.
    pub(crate) fn sent(&mut self, now: Instant) {
        self.last_sent = self.last_sent.max(now);
    }

    /// If the reader's batch count moved since the node last looked (at `since`), the peer
    /// was alive after `since`: credits it there — the earlier bound, not the time of this
    /// look, so a peer that froze just after is still DOWN within the failure timeout.
    pub(crate) fn refresh(&mut self, recv_count: u64, since: Instant) {
        if recv_count != self.recv_seen {
            self.recv_seen = recv_count;
            self.last_recv = self.last_recv.max(since);
        }
    }

    /// Whether the peer was heard from within `window` of `now` (a duplicate claiming its
    /// name is refused while it is).
    pub(crate) fn heard_within(&self, now: Instant, window: Duration) -> bool {
        now.saturating_duration_since(self.last_recv) < window
    }

    /// The verdict at `now`. `queue_idle`: nothing is queued to the peer (queued frames will
    /// prove us alive, so no heartbeat is owed, and a queue the callers filled is not a
    /// reason to disconnect).
    pub(crate) fn verdict(
        &self,
        now: Instant,
        heartbeat: Duration,
        failure_timeout: Duration,
        queue_idle: bool,
    ) -> Verdict {
        if now.saturating_duration_since(self.last_recv) >= failure_timeout {
            Verdict::Dead
        } else if queue_idle && now.saturating_duration_since(self.last_sent) >= heartbeat {
            Verdict::Beat
        } else {
            Verdict::Fine
        }
    }
}

/// The earliest time the readers' counts may be credited to at `now`: the previous look,
/// but no earlier than half a heartbeat ago, so that a late look (a busy node) cannot make a
/// live peer look silent.
pub(crate) fn look_since(last_look: Instant, now: Instant, heartbeat: Duration) -> Instant {
    let floor = now.checked_sub(heartbeat / 2).unwrap_or(now);
    last_look.max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_millis(100);
    const FT: Duration = Duration::from_millis(600);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_silent_peer_is_dead_at_the_failure_timeout_exactly() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        l.sent(t0 + ms(550));
        assert_eq!(l.verdict(t0 + ms(599), HB, FT, true), Verdict::Fine);
        assert_eq!(l.verdict(t0 + ms(600), HB, FT, true), Verdict::Dead);
        l.received(t0 + ms(300));
        assert_eq!(l.verdict(t0 + ms(899), HB, FT, false), Verdict::Fine);
        assert_eq!(l.verdict(t0 + ms(900), HB, FT, false), Verdict::Dead);
    }

    #[test]
    fn a_heartbeat_is_owed_only_on_an_idle_queue() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        l.received(t0 + ms(150));
        assert_eq!(l.verdict(t0 + ms(99), HB, FT, true), Verdict::Fine);
        assert_eq!(l.verdict(t0 + ms(100), HB, FT, true), Verdict::Beat);
        assert_eq!(l.verdict(t0 + ms(100), HB, FT, false), Verdict::Fine);
        l.sent(t0 + ms(100));
        assert_eq!(l.verdict(t0 + ms(199), HB, FT, true), Verdict::Fine);
        // Time never goes back: an older send does not undo a newer one.
        l.sent(t0 + ms(10));
        assert_eq!(l.verdict(t0 + ms(199), HB, FT, true), Verdict::Fine);
    }

    #[test]
    fn reader_counts_are_credited_to_the_previous_look() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        // The reader saw 3 batches; the node looked at t0+400 for the first time since t0+200.
        l.refresh(3, t0 + ms(200));
        assert_eq!(l.verdict(t0 + ms(799), HB, FT, false), Verdict::Fine);
        assert_eq!(l.verdict(t0 + ms(800), HB, FT, false), Verdict::Dead);
        // No new batch: no credit.
        l.refresh(3, t0 + ms(700));
        assert_eq!(l.verdict(t0 + ms(800), HB, FT, false), Verdict::Dead);
    }

    #[test]
    fn look_since_is_floored_at_half_a_heartbeat() {
        let t0 = Instant::now();
        assert_eq!(look_since(t0, t0 + ms(30), HB), t0);
        assert_eq!(look_since(t0, t0 + ms(500), HB), t0 + ms(450));
    }

    #[test]
    fn heard_within() {
        let t0 = Instant::now();
        let l = Liveness::new(t0);
        assert!(l.heard_within(t0 + ms(99), HB));
        assert!(!l.heard_within(t0 + ms(100), HB));
    }
}
