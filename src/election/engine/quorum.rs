//! Quorum mode: majority grants, the leader's lease and the voters' promises.
//!
//! Bully mode elects whoever every *reachable* node accepts, so two sides of a partition may
//! each have a leader. Quorum mode adds three rules, each one small, that together make
//! leadership intervals never overlap (the guide's "Choosing a mode" has the proof sketch):
//!
//! * **Majority.** A candidate leads only once a majority of the *candidates* (itself
//!   included) granted its term; workers follow but never vote.
//! * **Promise.** A voter that grants a term to node X, or acknowledges X's lease renewal, at
//!   its local time `r` promises to grant or acknowledge no other node until `r + E`. A
//!   restarted node remembers nothing, so it promises "nobody" for `E` after its start.
//! * **Lease.** The leader's lease runs from the *send* time of the newest round (the
//!   proposal, then each `Renew`) that a majority acknowledged, for
//!   `E·(1−ρ)/(1+ρ) − δ` on its own clock ([`QuorumParams::leader_lease`]). It stops acting
//!   when that ends. With clock *rates* within `1 ± ρ`, the lease ends in real time before any
//!   promise behind it does, and any two majorities share a voter.
//!
//! Plus **stickiness** (etcd raft's CheckQuorum/PreVote): a voter that follows a live leader
//! ignores other candidates' terms instead of abandoning its leader, and a candidate does not
//! propose while a connected voter reports following a live leader, so a healed or flapping
//! node cannot depose a healthy leader.

use std::time::{Duration, Instant};

use crate::types::{NodeId, Term};

/// Quorum mode's parameters, identical on every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuorumParams {
    /// `E`: how long a voter's promise lasts after it granted or acknowledged a leader.
    pub lease: Duration,
    /// `ρ`, in parts per million: the bound on every clock's *rate* error (10 000 = 1 %).
    pub drift_ppm: u32,
    /// `δ`: a margin taken off the leader's lease for processing and scheduling delays.
    pub margin: Duration,
    /// How often the leader sends a renewal round to every connected candidate.
    pub renew_interval: Duration,
    /// Stickiness (see the module docs). Always on in a real node; off only in the
    /// simulator's negative control, which must then catch a healed node deposing a leader.
    #[doc(hidden)]
    pub sticky: bool,
}

impl QuorumParams {
    /// The leader's lease from the send time of an acknowledged round:
    /// `E·(1−ρ)/(1+ρ) − δ` (zero if the margin eats it all).
    pub fn leader_lease(&self) -> Duration {
        let ppm = u128::from(self.drift_ppm.min(999_999));
        let e = self.lease.as_nanos();
        let scaled = e * (1_000_000 - ppm) / (1_000_000 + ppm);
        let nanos = scaled.saturating_sub(self.margin.as_nanos());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Why a quorum-mode node has no leader: it reaches fewer candidates than a majority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NoQuorum {
    /// Candidates this node reaches, itself included if it is one.
    pub reachable: u32,
    /// A majority of the candidates.
    pub needed: u32,
}

/// The promise a voter gave: to `node` (for `term`), until `until`. `node: None` is the
/// promise of a restarted node, which may have given one it no longer remembers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Promise {
    pub node: Option<NodeId>,
    pub term: Term,
    pub until: Instant,
}

/// A renewal round the leader sent and the voters that acknowledged it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Round {
    pub round: u64,
    pub sent: Instant,
    pub acks: std::collections::BTreeSet<NodeId>,
}

/// The quorum-mode state of one engine (absent in bully mode).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct QuorumState {
    pub params: QuorumParams,
    pub promise: Option<Promise>,
    pub lease_until: Option<Instant>,
    pub next_round: u64,
    pub rounds: std::collections::VecDeque<Round>,
    pub renew_at: Option<Instant>,
}

impl QuorumState {
    pub(super) fn new(params: QuorumParams, now: Instant) -> Self {
        QuorumState {
            params,
            promise: Some(Promise {
                node: None,
                term: Term(0),
                until: now + params.lease,
            }),
            lease_until: None,
            next_round: 1,
            rounds: std::collections::VecDeque::new(),
            renew_at: None,
        }
    }
}

impl super::Engine {
    pub(super) fn on_renew(&mut self, _now: Instant, _from: NodeId, _term: Term, _round: u64) {}

    pub(super) fn on_renew_ack(&mut self, _now: Instant, _from: NodeId, _term: Term, _round: u64) {
    }

    pub(super) fn on_step_down(&mut self, _from: NodeId, _term: Term) {}
}
