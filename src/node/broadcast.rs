//! Ordered broadcasts and held casts.
//!
//! A leader numbers its broadcasts within its term (1, 2, …) and encodes each once; a follower
//! runs `from_leader` only for a broadcast of the leader it follows, in that leader's term, with
//! a number above the last one it ran — so a broadcast is delivered at most once and in order,
//! and nothing from an older leader slips in after a newer Synch. A `leader_cast` made while no
//! leader is known is held (bounded, until the call timeout) and sent when one is.
//!
//! Pure state fed `now`: unit-tested with exact expectations.

use std::collections::VecDeque;
use std::time::Instant;

use crate::types::{NodeId, Term};

/// Casts held while no leader is known.
pub(crate) const MAX_HELD_CASTS: usize = 4096;

/// Broadcast numbering (as leader) and ordering (as follower).
#[derive(Debug, Default)]
pub(crate) struct Sequencer {
    /// The last number this node used as leader in its current term.
    sent: u64,
    /// The last number this node delivered as follower, of its current leader's term.
    delivered: u64,
}

impl Sequencer {
    /// This node was elected for a new term: numbering starts over.
    pub(crate) fn elected(&mut self) {
        self.sent = 0;
    }

    /// This node follows a new leader (or a new term): ordering starts over.
    pub(crate) fn surrendered(&mut self) {
        self.delivered = 0;
    }

    /// The number of the next broadcast (not used until [`Sequencer::used`]).
    pub(crate) fn next(&self) -> u64 {
        self.sent + 1
    }

    /// The number from [`Sequencer::next`] went out.
    pub(crate) fn used(&mut self) {
        self.sent += 1;
    }

    /// Whether to deliver broadcast `seq` of `term` from `from`, given the leader this node
    /// follows; if so, it counts as delivered.
    pub(crate) fn accept(
        &mut self,
        leader: Option<(NodeId, Term)>,
        from: NodeId,
        term: Term,
        seq: u64,
    ) -> bool {
        if leader != Some((from, term)) || seq <= self.delivered {
            return false;
        }
        self.delivered = seq;
        true
    }
}

/// `leader_cast`s held while no leader is known, each until its deadline.
#[derive(Debug)]
pub(crate) struct Held<C> {
    casts: VecDeque<(Instant, C)>,
    max: usize,
}

impl<C> Held<C> {
    pub(crate) fn new(max: usize) -> Self {
        Held {
            casts: VecDeque::new(),
            max,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.casts.len()
    }

    /// Holds `cast` until `deadline`; gives it back if too many are held.
    pub(crate) fn hold(&mut self, cast: C, deadline: Instant) -> Result<(), C> {
        if self.casts.len() >= self.max {
            return Err(cast);
        }
        self.casts.push_back((deadline, cast));
        Ok(())
    }

    /// The earliest deadline of a held cast.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.casts.front().map(|(d, _)| *d)
    }

    /// Drops the casts past their deadline at `now`; returns the next deadline.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<Instant> {
        self.casts.retain(|(d, _)| *d > now);
        self.casts.front().map(|(d, _)| *d)
    }

    /// The casts to send now that a leader is known, oldest first.
    pub(crate) fn release(&mut self) -> Vec<C> {
        self.casts.drain(..).map(|(_, c)| c).collect()
    }

    pub(crate) fn clear(&mut self) {
        self.casts.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_leader_numbers_its_broadcasts_per_term() {
        let mut s = Sequencer::default();
        assert_eq!(s.next(), 1);
        s.used();
        s.used();
        assert_eq!(s.next(), 3);
        s.elected();
        assert_eq!(s.next(), 1);
    }

    #[test]
    fn a_follower_delivers_each_broadcast_of_its_leader_once_in_order() {
        let mut s = Sequencer::default();
        let l = Some((NodeId(0), Term(4)));
        assert!(s.accept(l, NodeId(0), Term(4), 1));
        assert!(!s.accept(l, NodeId(0), Term(4), 1), "duplicate");
        assert!(s.accept(l, NodeId(0), Term(4), 3));
        assert!(!s.accept(l, NodeId(0), Term(4), 2), "late");
        assert!(!s.accept(l, NodeId(1), Term(4), 4), "not our leader");
        assert!(!s.accept(l, NodeId(0), Term(3), 4), "older term");
        assert!(!s.accept(None, NodeId(0), Term(4), 4), "no leader");
        // A new leader (or term): numbering starts over.
        s.surrendered();
        let l = Some((NodeId(1), Term(5)));
        assert!(s.accept(l, NodeId(1), Term(5), 1));
    }

    #[test]
    fn held_casts_are_bounded_and_expire() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut h = Held::new(2);
        assert!(h.hold("a", t0 + ms(10)).is_ok());
        assert!(h.hold("b", t0 + ms(20)).is_ok());
        assert_eq!(h.hold("c", t0 + ms(30)), Err("c"));
        assert_eq!(h.expire(t0 + ms(10)), Some(t0 + ms(20)));
        assert_eq!(h.len(), 1);
        assert_eq!(h.release(), vec!["b"]);
        assert_eq!(h.expire(t0), None);
    }
}
