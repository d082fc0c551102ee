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
//!   restarted node remembers nothing, so it promises "nobody" for `E` after its start (unless
//!   its durable store shows it never granted anything: a first start).
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

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::Role;
use crate::election::{ElectionMsg, LeaderRef, LossReason, Output};
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
    /// Whether the node's term store survives a restart (a data directory). Then a node that
    /// starts with no term at all (`initial_term` and `proposal_floor` 0) provably granted and
    /// acknowledged nothing before (both persist a term first), so it skips the restart wait;
    /// with a store that forgets (`false`), every start waits `E`.
    pub durable: bool,
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
    pub acks: BTreeSet<NodeId>,
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
    /// It last could not propose for want of a majority: it elects as soon as one is back.
    pub waiting_for_reach: bool,
}

impl QuorumState {
    /// `fresh`: the node's durable store holds no term (a first start).
    pub(super) fn new(params: QuorumParams, now: Instant, fresh: bool) -> Self {
        QuorumState {
            params,
            promise: (!(fresh && params.durable)).then(|| Promise {
                node: None,
                term: Term(0),
                until: now + params.lease,
            }),
            lease_until: None,
            next_round: 1,
            rounds: std::collections::VecDeque::new(),
            renew_at: None,
            waiting_for_reach: false,
        }
    }
}

/// Renewal rounds kept waiting for acknowledgements (older ones cannot extend the lease).
const MAX_ROUNDS: usize = 64;

impl super::Engine {
    fn params(&self) -> Option<QuorumParams> {
        self.quorum.as_ref().map(|q| q.params)
    }

    /// Whether this node's promise lets it grant or acknowledge `node` at `now`.
    pub(super) fn may_grant(&self, node: NodeId, now: Instant) -> bool {
        match self.quorum.as_ref().and_then(|q| q.promise) {
            None => true,
            Some(p) => p.node == Some(node) || now >= p.until,
        }
    }

    /// Records the promise that goes with a grant or an acknowledgement to `node` for `term`.
    /// Only candidates vote: a worker's "grant" promises nothing.
    pub(super) fn promise_to(&mut self, node: NodeId, term: Term, now: Instant) {
        if !self.is_candidate(self.cfg.me) || node == self.cfg.me {
            return;
        }
        if let Some(q) = self.quorum.as_mut() {
            q.promise = Some(Promise {
                node: Some(node),
                term,
                until: now + q.params.lease,
            });
        }
    }

    /// Quorum mode: `Some(when)` if this node may not propose now, and when to look again.
    /// Three reasons: it reaches no majority (it says `NoQuorum`), its own promise to another
    /// node has not run out, or (stickiness) a connected voter still follows a live leader.
    pub(super) fn proposal_blocked(&mut self, now: Instant) -> Option<Instant> {
        let q = self.quorum.as_ref()?;
        let sticky = q.params.sticky;
        let promise = q.promise;
        let (reachable, needed) = self.reach();
        if let Some(q) = self.quorum.as_mut() {
            q.waiting_for_reach = reachable < needed;
        }
        if reachable < needed {
            return Some(now + self.jittered());
        }
        if let Some(p) = promise.filter(|p| now < p.until) {
            return Some(p.until);
        }
        if sticky && self.a_voter_follows_another() {
            return Some(now + self.jittered());
        }
        None
    }

    /// Whether a connected candidate says it follows a leader other than this node (one this
    /// node may not preempt), or has not said yet whom it follows (its `Status` is on the way:
    /// a node whose connections just came back must not propose before it hears it).
    fn a_voter_follows_another(&self) -> bool {
        let me = self.cfg.me;
        let preempts = |l: NodeId| self.cfg.preempt && me < l;
        self.connected
            .iter()
            .filter(|p| self.is_candidate(**p))
            .any(|p| match self.statuses.get(p) {
                None => true,
                Some(l) => l.is_some_and(|l| l.node != me && !preempts(l.node)),
            })
    }

    /// A peer's `Status` arrived: a node that was waiting for a majority elects at once if it
    /// now has one (rather than at its next retry, which would let lower priorities go first).
    pub(super) fn majority_back(&mut self, now: Instant) {
        let waiting = self.quorum.as_ref().is_some_and(|q| q.waiting_for_reach);
        if !waiting || self.role != Role::Waiting || self.leader.is_some() {
            return;
        }
        let (reachable, needed) = self.reach();
        if reachable >= needed {
            if let Some(q) = self.quorum.as_mut() {
                q.waiting_for_reach = false;
            }
            self.elect(now);
        }
    }

    /// Abandons the proposal in flight, if any (see [`Engine::release_grants`]).
    pub(super) fn release_proposal(&mut self) {
        if let Some(p) = self.proposal.take() {
            self.release_grants(p.term, &p.accepted);
        }
    }

    /// Quorum mode: a proposal for `term` that will never lead is abandoned; the voters that
    /// granted it are told (`StepDown`) so that they need not keep, for `E`, a promise to a
    /// term nobody acts in (with five candidates such promises could otherwise block every
    /// majority, round after round). Not while this node leads an older term: their promise
    /// backs that lease too.
    pub(super) fn release_grants(&mut self, term: Term, accepted: &BTreeSet<NodeId>) {
        if self.quorum.is_none() || self.is_leader() {
            return;
        }
        let voters: Vec<NodeId> = accepted
            .iter()
            .copied()
            .filter(|v| self.connected.contains(v))
            .collect();
        for v in voters {
            self.send(v, ElectionMsg::StepDown { term });
        }
    }

    /// Whether this node votes by its promise (a quorum-mode candidate): its promise, not
    /// whether it sees a live leader, decides what it grants.
    pub(super) fn votes_by_promise(&self) -> bool {
        self.quorum.is_some() && self.is_candidate(self.cfg.me)
    }

    /// Quorum mode, on a fresh proposal of `term` by its owner `from`: whether this node may
    /// grant it. If not, the `Reject` is sent here. A leader refuses (with `preempt`, it first
    /// hands over to a higher-priority candidate's takeover); a voter refuses while promised to
    /// another node; a worker never votes and keeps a live leader until a newer one announces
    /// itself.
    pub(super) fn grant_allowed(&mut self, now: Instant, from: NodeId, term: Term) -> bool {
        let me = self.cfg.me;
        if self.is_leader() && self.cfg.preempt && from < me && self.proposal.is_none() {
            self.hand_over(now);
        }
        let allowed = if !self.is_candidate(me) {
            self.live_leader().is_none_or(|l| l.node == from)
        } else {
            !self.is_leader() && self.may_grant(from, now)
        };
        if allowed {
            return true;
        }
        let sticky = self.quorum.as_ref().is_some_and(|q| q.params.sticky);
        if !sticky && self.is_candidate(me) {
            // Negative control only: without stickiness a voter abandons its leader for any
            // newer term (Raft without PreVote/CheckQuorum), which lets a healed node depose it.
            if let Some(l) = self.leader.filter(|l| l.node != from && l.node != me) {
                self.leader = None;
                self.out.push_back(Output::LeaderLost {
                    leader: l.node,
                    term: l.term,
                    reason: LossReason::NewerTerm,
                });
                self.role = Role::Waiting;
                self.deadline = self
                    .quorum
                    .as_ref()
                    .and_then(|q| q.promise)
                    .map(|p| p.until);
            }
        }
        self.send(
            from,
            ElectionMsg::Reject {
                round: term,
                promised: self.promised,
                leader: self.live_leader(),
            },
        );
        false
    }

    /// Whether the accepted grants plus this node's own make a majority of the candidates.
    pub(super) fn has_majority(&self, granted: &std::collections::BTreeSet<NodeId>) -> bool {
        let votes = granted.iter().filter(|n| self.is_candidate(**n)).count() as u32
            + u32::from(self.is_candidate(self.cfg.me));
        votes > self.cfg.n_candidates / 2
    }

    /// A new leader's lease, from the send time of its proposal. `false` if it already ended
    /// (the answers took longer than the lease): it must not lead on it.
    pub(super) fn start_lease(&mut self, term: Term, sent: Instant, now: Instant) -> bool {
        let Some(params) = self.params() else {
            return true;
        };
        let until = sent + params.leader_lease();
        if until <= now {
            return false;
        }
        let q = self.quorum.as_mut().expect("params came from it");
        // A leader re-electing itself above a newer term keeps the lease it holds.
        let until = q.lease_until.map_or(until, |u| u.max(until));
        q.lease_until = Some(until);
        q.rounds.clear();
        q.renew_at = Some(now + params.renew_interval);
        self.out.push_back(Output::Lease { term, until });
        true
    }

    /// Forgets the lease (this node no longer leads).
    pub(super) fn end_lease(&mut self) {
        if let Some(q) = self.quorum.as_mut() {
            q.lease_until = None;
            q.rounds.clear();
            q.renew_at = None;
        }
    }

    /// The leader's renewal round: one `Renew` to every connected candidate, and the round
    /// remembered with its send time. (A node never promises itself anything: it knows when it
    /// stops acting, and it grants no one while it leads or proposes.)
    pub(super) fn renew(&mut self, now: Instant) {
        let Some(l) = self.leader.filter(|l| l.node == self.cfg.me) else {
            return;
        };
        let Some(params) = self.params() else { return };
        let voters: Vec<NodeId> = self
            .connected
            .iter()
            .copied()
            .filter(|p| self.is_candidate(*p))
            .collect();
        let q = self.quorum.as_mut().expect("params came from it");
        let round = q.next_round;
        q.next_round += 1;
        q.renew_at = Some(now + params.renew_interval);
        let oldest = now.checked_sub(params.leader_lease());
        q.rounds.retain(|r| oldest.is_none_or(|o| r.sent > o));
        if q.rounds.len() == MAX_ROUNDS {
            q.rounds.pop_front();
        }
        q.rounds.push_back(Round {
            round,
            sent: now,
            acks: BTreeSet::new(),
        });
        for v in voters {
            self.send(
                v,
                ElectionMsg::Renew {
                    term: l.term,
                    round,
                },
            );
        }
        // A lone candidate is its own majority.
        self.count_round(round);
    }

    /// Counts the acknowledgements of `round`: with a majority, the lease runs from its send
    /// time (older rounds are then useless and dropped).
    fn count_round(&mut self, round: u64) {
        let Some(l) = self.leader.filter(|l| l.node == self.cfg.me) else {
            return;
        };
        let Some(params) = self.params() else { return };
        let Some(r) = self
            .quorum
            .as_ref()
            .and_then(|q| q.rounds.iter().find(|r| r.round == round))
        else {
            return;
        };
        if !self.has_majority(&r.acks) {
            return;
        }
        let until = r.sent + params.leader_lease();
        let q = self.quorum.as_mut().expect("params came from it");
        q.rounds.retain(|r| r.round > round);
        if q.lease_until.is_none_or(|u| until > u) {
            q.lease_until = Some(until);
            self.out.push_back(Output::Lease {
                term: l.term,
                until,
            });
        }
    }

    /// A voter receives the leader's renewal: it acknowledges a leader it follows in that
    /// term, if its promise allows (a restarted node acknowledges nobody for `E`).
    pub(super) fn on_renew(&mut self, now: Instant, from: NodeId, term: Term, round: u64) {
        self.see(term);
        if !self.is_candidate(self.cfg.me)
            || self.leader != Some(LeaderRef { node: from, term })
            || !self.may_grant(from, now)
        {
            return;
        }
        self.promise_to(from, term, now);
        self.send(from, ElectionMsg::RenewAck { term, round });
    }

    pub(super) fn on_renew_ack(&mut self, _now: Instant, from: NodeId, term: Term, round: u64) {
        if !self.is_candidate(from)
            || self.leader
                != Some(LeaderRef {
                    node: self.cfg.me,
                    term,
                })
        {
            return;
        }
        let Some(q) = self.quorum.as_mut() else {
            return;
        };
        let Some(r) = q.rounds.iter_mut().find(|r| r.round == round) else {
            return;
        };
        r.acks.insert(from);
        self.count_round(round);
    }

    /// The lease ended without a renewal a majority acknowledged: stop acting, and elect
    /// (this node may well win again if it still reaches a majority).
    pub(super) fn lease_expired(&mut self, now: Instant) {
        let Some(l) = self.leader.filter(|l| l.node == self.cfg.me) else {
            return;
        };
        self.end_lease();
        self.leader = None;
        self.followers.clear();
        self.role = Role::Waiting;
        self.out.push_back(Output::LeadershipLost {
            term: l.term,
            reason: LossReason::LeaseExpired,
        });
        self.elect(now);
    }

    /// With `preempt`, a quorum-mode leader hands over to a higher-priority candidate that
    /// proposes a takeover: it stops acting, tells the voters (who may then release the
    /// promise they gave it), and grants that candidate's proposal.
    pub(super) fn hand_over(&mut self, now: Instant) {
        let Some(l) = self.leader.filter(|l| l.node == self.cfg.me) else {
            return;
        };
        self.end_lease();
        if let Some(q) = self.quorum.as_mut() {
            q.promise = None;
        }
        self.leader = None;
        self.followers.clear();
        self.release_proposal();
        self.out.push_back(Output::LeadershipLost {
            term: l.term,
            reason: LossReason::TakenOver,
        });
        let peers: Vec<NodeId> = self.connected.iter().copied().collect();
        for p in peers {
            self.send(p, ElectionMsg::StepDown { term: l.term });
        }
        self.role = Role::Waiting;
        self.deadline = Some(now + self.jittered() * 2);
    }

    /// `from` stopped leading `term`, or abandoned its proposal for it: the promise given to
    /// it for that term is released, and a node that followed it or accepted it elects.
    pub(super) fn on_step_down(&mut self, now: Instant, from: NodeId, term: Term) {
        if let Some(q) = self.quorum.as_mut() {
            if q.promise
                .is_some_and(|p| p.node == Some(from) && p.term == term)
            {
                q.promise = None;
            }
        }
        if self.role == Role::Captured && self.captured_by == Some(LeaderRef { node: from, term }) {
            // The proposal we accepted was abandoned: it will never announce itself.
            self.captured_by = None;
            self.elect(now);
            return;
        }
        if self.leader == Some(LeaderRef { node: from, term }) {
            self.leader = None;
            self.previous_leader = Some(from);
            self.out.push_back(Output::LeaderLost {
                leader: from,
                term,
                reason: LossReason::TakenOver,
            });
            self.elect(now);
        }
    }
}
