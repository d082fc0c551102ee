//! The lease clock: how long this node may act as leader on the strength of its lease in the
//! store that decides (etcd, or any `ExternalElection`).
//!
//! Why local, and why from the *send* time: etcd expires a lease `TTL` after the last renewal
//! *it processed*, on its own clock. This node cannot see that moment, but it knows it came
//! after it *sent* the renewal. So when etcd acknowledges a renewal with TTL `t`, the lease
//! surely lasts, in real time, until at least `send + t`; measured on a local clock whose
//! rate may be off by ρ against etcd's, `t·(1−ρ)/(1+ρ)` of local time is within that, and δ
//! is kept for scheduling. That is the rule quorum mode uses for its own lease (openraft's
//! `quorum_acked_send_time + lease`, TiKV's `send_ts + max_lease`). A reply with TTL ≤ 0 says
//! the lease is gone: it ends at once.
//!
//! Sans-IO: it is fed `now` and keep-alive replies, and says when the next keep-alive is due
//! and when the lease ends. etcd answers the keep-alives of one stream in order, one reply per
//! request, so each reply is matched with the oldest unanswered send time; if a reply were
//! missing, later replies would be matched with *earlier* send times, which only shortens the
//! lease. A broken stream's unanswered requests are forgotten with
//! [`LeaseClock::stream_reset`], since their replies will never come.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The most keep-alives that may wait for a reply; no more are sent until one is answered
/// (a stuck stream gains nothing from more requests, and the queue stays bounded).
pub const MAX_IN_FLIGHT: usize = 8;

/// The local lease one acknowledged renewal buys, from its send time:
/// `ttl·(1−ρ)/(1+ρ) − δ` (ρ in parts per million; zero if δ eats it all). The same formula as
/// quorum mode's `QuorumParams::leader_lease`.
pub fn local_lease(ttl: Duration, drift_ppm: u32, margin: Duration) -> Duration {
    let ppm = u128::from(drift_ppm.min(999_999));
    let scaled = ttl.as_nanos() * (1_000_000 - ppm) / (1_000_000 + ppm);
    let nanos = scaled.saturating_sub(margin.as_nanos());
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// What an acknowledgement did to the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// The lease now ends at this instant (it may be the same as before).
    Until(Instant),
    /// etcd says the lease is gone (TTL ≤ 0): it has ended.
    Ended,
    /// A reply with no request waiting for it: ignored (it cannot be dated).
    Unmatched,
}

/// One lease's local clock (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseClock {
    drift_ppm: u32,
    margin: Duration,
    renew_every: Duration,
    in_flight: VecDeque<Instant>,
    last_sent: Option<Instant>,
    acked_sent: Option<Instant>,
    until: Option<Instant>,
    ended: bool,
}

impl LeaseClock {
    /// A clock for a lease renewed every `renew_every` (a third of the TTL), with ρ in parts
    /// per million and the margin δ. It holds no lease until a first acknowledgement.
    pub fn new(drift_ppm: u32, margin: Duration, renew_every: Duration) -> Self {
        LeaseClock {
            drift_ppm,
            margin,
            renew_every,
            in_flight: VecDeque::new(),
            last_sent: None,
            acked_sent: None,
            until: None,
            ended: false,
        }
    }

    /// Records a request (the grant, or a keep-alive) sent at `now`. Returns `false`, and
    /// records nothing, if [`MAX_IN_FLIGHT`] requests already wait for a reply: do not send.
    pub fn sent(&mut self, now: Instant) -> bool {
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            return false;
        }
        self.in_flight.push_back(now);
        self.last_sent = Some(now);
        true
    }

    /// etcd acknowledged the oldest unanswered request with `ttl_secs` (its TTL field).
    pub fn acknowledged(&mut self, ttl_secs: i64) -> Ack {
        let Some(sent) = self.in_flight.pop_front() else {
            return Ack::Unmatched;
        };
        if ttl_secs <= 0 || self.ended {
            self.ended = true;
            self.until = None;
            self.in_flight.clear();
            return Ack::Ended;
        }
        let ttl = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(0));
        // The newest acknowledged renewal alone defines the expiry (etcd replaces the old
        // one), so this may also move the end *earlier* if etcd ever shortened the TTL. An
        // absurd TTL that overflows the clock extends nothing.
        let Some(until) = sent.checked_add(local_lease(ttl, self.drift_ppm, self.margin)) else {
            return Ack::Unmatched;
        };
        self.until = Some(until);
        self.acked_sent = Some(sent);
        Ack::Until(until)
    }

    /// The keep-alive stream broke: its unanswered requests will never be answered.
    pub fn stream_reset(&mut self) {
        self.in_flight.clear();
    }

    /// When the lease ends, if one is held (ended or never acknowledged: `None`).
    pub fn until(&self) -> Option<Instant> {
        if self.ended {
            None
        } else {
            self.until
        }
    }

    /// The send time of the request whose acknowledgement set [`LeaseClock::until`] (what a
    /// suspend-aware clock needs to move the lease end onto itself).
    pub fn acked_sent(&self) -> Option<Instant> {
        if self.ended {
            None
        } else {
            self.acked_sent
        }
    }

    /// Whether the lease still holds at `now`.
    pub fn holds(&self, now: Instant) -> bool {
        self.until().is_some_and(|u| now < u)
    }

    /// When the next keep-alive is due: `renew_every` after the last send, or `None` while
    /// [`MAX_IN_FLIGHT`] requests wait, before anything was sent, or once the lease ended.
    pub fn next_send(&self) -> Option<Instant> {
        if self.ended || self.in_flight.len() >= MAX_IN_FLIGHT {
            return None;
        }
        self.last_sent.and_then(|s| s.checked_add(self.renew_every))
    }

    /// How many requests wait for a reply.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// TTL 3 s, ρ = 1 %, δ = 100 ms: 3 s · 0.99/1.01 = 2 940 594 059 ns, minus 100 ms.
    const LEASE_3S: Duration = Duration::from_nanos(2_840_594_059);

    fn clock() -> LeaseClock {
        LeaseClock::new(10_000, 100 * MS, Duration::from_secs(1))
    }

    #[test]
    fn local_lease_exact() {
        assert_eq!(
            local_lease(Duration::from_secs(3), 10_000, 100 * MS),
            LEASE_3S
        );
        assert_eq!(
            local_lease(Duration::from_secs(2), 0, Duration::ZERO),
            Duration::from_secs(2)
        );
        // 2 s · 0.95/1.05 = 1 809 523 809 ns.
        assert_eq!(
            local_lease(Duration::from_secs(2), 50_000, Duration::ZERO),
            Duration::from_nanos(1_809_523_809)
        );
        assert_eq!(
            local_lease(Duration::from_secs(1), 0, Duration::from_secs(2)),
            Duration::ZERO
        );
    }

    #[test]
    fn lease_runs_from_the_send_time_of_the_acknowledged_request() {
        let t0 = Instant::now();
        let mut c = clock();
        assert_eq!(c.until(), None);
        assert!(!c.holds(t0));
        assert_eq!(c.next_send(), None, "nothing sent yet");
        assert!(c.sent(t0));
        // The reply comes 400 ms later: the lease still counts from t0.
        assert_eq!(c.acknowledged(3), Ack::Until(t0 + LEASE_3S));
        assert_eq!(c.until(), Some(t0 + LEASE_3S));
        assert_eq!(c.acked_sent(), Some(t0));
        assert!(c.holds(t0 + LEASE_3S - Duration::from_nanos(1)));
        assert!(!c.holds(t0 + LEASE_3S));
        assert_eq!(c.next_send(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn replies_match_the_oldest_unanswered_send() {
        let t0 = Instant::now();
        let mut c = clock();
        assert!(c.sent(t0));
        assert!(c.sent(t0 + 1000 * MS));
        assert!(c.sent(t0 + 2000 * MS));
        assert_eq!(c.in_flight(), 3);
        assert_eq!(c.next_send(), Some(t0 + 3000 * MS));
        assert_eq!(c.acknowledged(3), Ack::Until(t0 + LEASE_3S));
        assert_eq!(c.acknowledged(3), Ack::Until(t0 + 1000 * MS + LEASE_3S));
        // A shorter TTL moves the end earlier: the newest renewal alone counts.
        assert_eq!(
            c.acknowledged(2),
            Ack::Until(t0 + 2000 * MS + local_lease(Duration::from_secs(2), 10_000, 100 * MS))
        );
        assert_eq!(c.acknowledged(3), Ack::Unmatched);
        assert_eq!(
            c.until(),
            Some(t0 + 2000 * MS + Duration::from_nanos(1_860_396_039))
        );
    }

    #[test]
    fn ttl_zero_or_negative_ends_the_lease_at_once() {
        for ttl in [0, -1] {
            let t0 = Instant::now();
            let mut c = clock();
            assert!(c.sent(t0));
            assert_eq!(c.acknowledged(3), Ack::Until(t0 + LEASE_3S));
            assert!(c.sent(t0 + 1000 * MS));
            assert!(c.sent(t0 + 2000 * MS));
            assert_eq!(c.acknowledged(ttl), Ack::Ended);
            assert_eq!(c.until(), None);
            assert!(!c.holds(t0));
            assert_eq!(c.next_send(), None);
            // Nothing revives it: a later positive reply is for a dead lease.
            assert!(c.sent(t0 + 2500 * MS));
            assert_eq!(c.acknowledged(3), Ack::Ended);
            assert_eq!(c.until(), None);
        }
    }

    #[test]
    fn an_absurd_ttl_does_not_panic() {
        let t0 = Instant::now();
        let mut c = clock();
        assert!(c.sent(t0));
        assert_eq!(c.acknowledged(3), Ack::Until(t0 + LEASE_3S));
        assert!(c.sent(t0 + 1000 * MS));
        let r = c.acknowledged(i64::MAX);
        assert!(
            matches!(r, Ack::Unmatched | Ack::Until(_)),
            "either way, no panic: {r:?}"
        );
    }

    #[test]
    fn in_flight_is_bounded() {
        let t0 = Instant::now();
        let mut c = clock();
        for i in 0..MAX_IN_FLIGHT as u64 {
            assert!(c.sent(t0 + Duration::from_secs(i)));
        }
        assert!(!c.sent(t0 + 9000 * MS));
        assert_eq!(c.in_flight(), MAX_IN_FLIGHT);
        assert_eq!(c.next_send(), None);
        assert_eq!(c.acknowledged(3), Ack::Until(t0 + LEASE_3S));
        assert_eq!(c.next_send(), Some(t0 + 8000 * MS));
    }

    #[test]
    fn a_stream_reset_forgets_the_unanswered_requests() {
        let t0 = Instant::now();
        let mut c = clock();
        assert!(c.sent(t0));
        assert_eq!(c.acknowledged(3), Ack::Until(t0 + LEASE_3S));
        assert!(c.sent(t0 + 1000 * MS));
        c.stream_reset();
        assert_eq!(c.in_flight(), 0);
        // The lease acknowledged before the break still holds; the new stream's first
        // request is matched with its own send time, not the lost one.
        assert_eq!(c.until(), Some(t0 + LEASE_3S));
        assert!(c.sent(t0 + 1500 * MS));
        assert_eq!(c.acknowledged(3), Ack::Until(t0 + 1500 * MS + LEASE_3S));
    }
}
