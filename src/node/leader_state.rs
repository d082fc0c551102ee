//! [`LeaderState`]: what this node's leadership is right now, as one value on a `watch`.
//!
//! Why a file of its own: the view ([`ClusterView`](crate::ClusterView)) answers "who leads
//! and who is connected"; this answers the one question a leader's side effects depend on —
//! "do *I* lead, for which term, and until when?" — and its changes are what a
//! [`LeaderGuard`](crate::LeaderGuard) waits on. The driver publishes it at the end of every
//! drive that changed it (and before leadership callbacks run, like the view), computed from
//! the engine's queries; the loss reasons come from `Output::LeadershipLost`.

use std::time::Instant;

use tokio::sync::watch;

use crate::config::Members;
use crate::election::{Engine, LossReason};
use crate::types::{NodeName, Term};

/// This node's leadership, as published on
/// [`LeaderHandle::watch_state`](crate::LeaderHandle::watch_state).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderState {
    /// This node leads `term`.
    Leading {
        /// The term led (its [`FencingToken`](crate::FencingToken)).
        term: Term,
        /// Quorum mode: when the lease ends unless a majority renews it; `None` in bully mode
        /// (no lease). On the node's *lease clock*: `std::time::Instant` (the runtime's clock)
        /// plus the time the machine has been suspended since the node started, which is
        /// zero unless it was (see [`LeaderGuard::remaining`](crate::LeaderGuard::remaining),
        /// which does the arithmetic). It may already be past: a leader whose lease ended
        /// stays `Leading` until it has stepped down, but no longer acts.
        until: Option<Instant>,
    },
    /// This node follows `leader`, elected for `term`.
    Following {
        /// The leader.
        leader: NodeName,
        /// Its term.
        term: Term,
    },
    /// No leader is known yet: the node is starting or an election runs.
    Electing,
    /// Quorum mode: this node reaches fewer candidates than a majority, so no leader can be
    /// elected on its side.
    NoQuorum {
        /// Candidates reached, this node included if it is one.
        reachable: u32,
        /// A majority of the candidates.
        needed: u32,
    },
    /// The node is stopped.
    Stopped,
}

impl LeaderState {
    /// The term this node leads, if it leads.
    pub fn leading(&self) -> Option<Term> {
        match self {
            LeaderState::Leading { term, .. } => Some(*term),
            _ => None,
        }
    }
}

/// Leaderships lost last (at most this many remembered).
const MAX_LOSSES: usize = 8;

/// The leaderships this node lost last, oldest first: their term and why. What a guard of
/// that term reports once it sees the leadership gone.
pub(crate) type Losses = std::collections::VecDeque<(Term, LossReason)>;

/// Records that the leadership of `term` ended for `reason` (once per term).
pub(crate) fn note_loss(tx: &watch::Sender<Losses>, term: Term, reason: LossReason) {
    tx.send_if_modified(|l| {
        if l.iter().any(|(t, _)| *t == term) {
            return false;
        }
        l.push_back((term, reason));
        if l.len() > MAX_LOSSES {
            l.pop_front();
        }
        true
    });
}

/// Why the leadership of `term` ended, as recorded; a newer term replaced it if nothing was.
pub(crate) fn loss_of(losses: &Losses, term: Term) -> LossReason {
    losses
        .iter()
        .find(|(t, _)| *t == term)
        .map_or(LossReason::NewerTerm, |(_, r)| *r)
}

/// The state of `engine` now; `lease_end` is the lease's end on the lease clock (quorum mode).
pub(crate) fn of(engine: &Engine, members: &Members, lease_end: Option<Instant>) -> LeaderState {
    if engine.is_leader() {
        LeaderState::Leading {
            term: engine.term(),
            until: lease_end,
        }
    } else if let Some(l) = engine.leader() {
        LeaderState::Following {
            leader: members.name(l.node).clone(),
            term: l.term,
        }
    } else if let Some(nq) = engine.no_quorum() {
        LeaderState::NoQuorum {
            reachable: nq.reachable,
            needed: nq.needed,
        }
    } else {
        LeaderState::Electing
    }
}

/// Publishes `state` if it differs from the last one published.
pub(crate) fn publish(tx: &watch::Sender<LeaderState>, state: LeaderState) {
    tx.send_if_modified(|v| {
        if *v == state {
            return false;
        }
        *v = state;
        true
    });
}
