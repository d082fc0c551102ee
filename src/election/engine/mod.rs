//! The engine's state machine. See the module docs of [`crate::election`].
//!
//! This file holds the state, the queries and the inputs (each input is dispatched to a
//! handler, then `announce_if_changed` runs). The handlers and election steps live
//! in one submodule per concern, so that each rule can be read on its own:
//! `start` (deciding after a start or a loss), `propose` (proposals and their answers),
//! `join` (joining a sitting leader and following it), `status` (what peers say about
//! whom they follow) and `terms` (term ownership, the promise and its persistence).

mod external;
mod join;
mod propose;
mod quorum;
mod start;
mod status;
mod terms;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use quorum::QuorumState;
pub use quorum::{NoQuorum, QuorumParams};

use super::{ElectionMsg, LeaderRef, LossReason, Output};
use crate::types::{NodeId, Term};

/// The largest term the engine uses or accepts (2^62). Terms grow by at most a few per
/// election, so no honest cluster reaches it; a message carrying a larger term is dropped, so
/// a faulty peer cannot exhaust the term space.
pub const MAX_TERM: u64 = 1 << 62;

fn max_term_in(msg: &ElectionMsg) -> Term {
    match msg {
        ElectionMsg::Status { promised, leader } => {
            (*promised).max(leader.map_or(Term(0), |l| l.term))
        }
        ElectionMsg::Propose { term, .. }
        | ElectionMsg::Accept { term }
        | ElectionMsg::Leader { term, .. } => *term,
        ElectionMsg::Reject {
            round,
            promised,
            leader,
        } => (*round)
            .max(*promised)
            .max(leader.map_or(Term(0), |l| l.term)),
        ElectionMsg::Join { promised } => *promised,
        ElectionMsg::Renew { term, .. }
        | ElectionMsg::RenewAck { term, .. }
        | ElectionMsg::StepDown { term } => *term,
    }
}

/// The engine's configuration. All nodes of a cluster must agree on `n_candidates`,
/// `n_nodes` and `preempt`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EngineConfig {
    /// This node.
    pub me: NodeId,
    /// Number of candidates: ids `0..n_candidates` are candidates in priority order.
    pub n_candidates: u32,
    /// Number of members (candidates then workers): ids `n_candidates..n_nodes` are workers.
    pub n_nodes: u32,
    /// How long a proposal waits for answers, and the base of every election wait.
    pub election_timeout: Duration,
    /// How long a starting node waits to hear from its peers before it elects on its own.
    pub startup_timeout: Duration,
    /// Whether a higher-priority candidate replaces a sitting leader when it (re)joins.
    pub preempt: bool,
    /// How often a leader re-sends its `Status` to every connected node, so that two leaders
    /// always end up learning of each other even if a message was lost.
    pub announce_interval: Duration,
    /// Seed for the timer jitter.
    pub seed: u64,
    /// The term this node last promised (proposed or accepted), as persisted: 0 on a first
    /// start. It is what the node's `Status` and `Join` carry, so it must be the real promise:
    /// a restarted follower whose promise is its leader's term joins that leader with no new
    /// term (gen_leader's join rule).
    pub initial_term: Term,
    /// A term at least as high as every term this node may have proposed before (its on-disk
    /// reservation; 0 on a first start): it proposes only terms above it, so it never reuses
    /// one. Separate from [`EngineConfig::initial_term`] because a reservation is not a
    /// promise: claiming it as one made every restart force a re-election above it.
    pub proposal_floor: Term,
    /// Quorum mode's parameters; `None` is bully mode (gen_leader's contract).
    pub quorum: Option<QuorumParams>,
}

/// What the engine is doing.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Just started: waiting to hear from every peer (or for the startup timeout).
    Starting,
    /// No leader: waiting for a higher-priority candidate to propose (a worker waits for any
    /// leader).
    Waiting,
    /// Proposing itself for a term and waiting for answers.
    Proposing,
    /// Accepted another node's proposal; waiting for its `Leader` announcement.
    Captured,
    /// Asked a sitting leader to take it.
    Joining,
    /// Following a leader.
    Follower,
    /// Leading.
    Leader,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Proposal {
    term: Term,
    /// When it was sent: a quorum-mode lease runs from here.
    sent: Instant,
    takeover: bool,
    pending: BTreeSet<NodeId>,
    accepted: BTreeSet<NodeId>,
}

/// The election state machine of one node. See the [module docs](crate::election).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Engine {
    cfg: EngineConfig,
    role: Role,
    deadline: Option<Instant>,
    announce_at: Option<Instant>,
    promised: Term,
    max_seen: Term,
    leader: Option<LeaderRef>,
    connected: BTreeSet<NodeId>,
    statuses: BTreeMap<NodeId, Option<LeaderRef>>,
    unreachable: BTreeSet<NodeId>,
    proposal: Option<Proposal>,
    captured_by: Option<LeaderRef>,
    joining: Option<NodeId>,
    followers: BTreeSet<NodeId>,
    previous_leader: Option<NodeId>,
    /// The leader last announced to the peers with a `Status`.
    announced: Option<LeaderRef>,
    /// Quorum mode's promise, lease and rounds; `None` in bully mode.
    quorum: Option<QuorumState>,
    /// External mode's decision and lease ([`Engine::new_external`]); `None` otherwise.
    external: Option<external::ExternalState>,
    rng: u64,
    out: VecDeque<Output>,
}

impl Engine {
    /// Creates the engine of a node that starts at `now`.
    pub fn new(cfg: EngineConfig, now: Instant) -> Self {
        let mut e = Engine::blank(cfg, now);
        e.try_finish_start(now);
        e.announce_if_changed();
        e
    }

    fn blank(cfg: EngineConfig, now: Instant) -> Self {
        Engine {
            role: Role::Starting,
            deadline: Some(now + cfg.startup_timeout),
            announce_at: None,
            promised: cfg.initial_term,
            max_seen: cfg.initial_term.max(cfg.proposal_floor),
            leader: None,
            connected: BTreeSet::new(),
            statuses: BTreeMap::new(),
            unreachable: BTreeSet::new(),
            proposal: None,
            captured_by: None,
            joining: None,
            followers: BTreeSet::new(),
            previous_leader: None,
            announced: None,
            quorum: cfg.quorum.map(|q| {
                let fresh = cfg.initial_term == Term(0) && cfg.proposal_floor == Term(0);
                QuorumState::new(q, now, fresh)
            }),
            external: None,
            rng: cfg.seed ^ 0x9E37_79B9_7F4A_7C15,
            out: VecDeque::new(),
            cfg,
        }
    }

    // ----- queries -------------------------------------------------------------------------

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.cfg.me
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// What the engine is doing.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this node follows (itself, if it leads), if any.
    pub fn leader(&self) -> Option<LeaderRef> {
        self.leader
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.leader.is_some_and(|l| l.node == self.cfg.me)
    }

    /// The current term: the leader's term if there is a leader, else the highest promised
    /// term. Never decreases.
    pub fn term(&self) -> Term {
        self.leader.map_or(self.promised, |l| l.term)
    }

    /// The highest term this node has proposed or accepted (what is persisted).
    pub fn promised(&self) -> Term {
        self.promised
    }

    /// Peers with a live connection.
    pub fn connected(&self) -> &BTreeSet<NodeId> {
        &self.connected
    }

    /// Whether `id` is connected (or is this node).
    pub fn is_alive(&self, id: NodeId) -> bool {
        id == self.cfg.me || self.connected.contains(&id)
    }

    /// The nodes that follow this leader (empty unless it leads).
    pub fn followers(&self) -> &BTreeSet<NodeId> {
        &self.followers
    }

    /// Whether `id` is a candidate (may lead).
    pub fn is_candidate(&self, id: NodeId) -> bool {
        id.0 < self.cfg.n_candidates
    }

    /// Quorum mode: when this leader's lease ends (on the clock of the `now` arguments);
    /// `None` unless it leads in quorum mode.
    pub fn lease_until(&self) -> Option<Instant> {
        if self.external.is_some() {
            return self.external_lease();
        }
        self.quorum
            .as_ref()
            .and_then(|q| q.lease_until)
            .filter(|_| self.is_leader())
    }

    /// Whether this node may act as leader at `now`: it leads and, in quorum mode, its lease
    /// has not ended. The runtime asks this right before running a leader callback.
    pub fn is_acting(&self, now: Instant) -> bool {
        if self.external.is_some() {
            return self.external_lease().is_some_and(|u| now < u);
        }
        self.is_leader()
            && match &self.quorum {
                None => true,
                Some(q) => q.lease_until.is_some_and(|u| now < u),
            }
    }

    /// Quorum mode: `Some` when this node has no leader and reaches fewer candidates than a
    /// majority (it cannot elect one and says so); `None` otherwise and in bully mode.
    pub fn no_quorum(&self) -> Option<NoQuorum> {
        self.quorum.as_ref()?;
        if self.leader.is_some() {
            return None;
        }
        let (reachable, needed) = self.reach();
        (reachable < needed).then_some(NoQuorum { reachable, needed })
    }

    /// Candidates reachable (itself included if it is one) and a majority of the candidates.
    fn reach(&self) -> (u32, u32) {
        let connected = self
            .connected
            .iter()
            .filter(|p| self.is_candidate(**p))
            .count() as u32;
        let me = u32::from(self.is_candidate(self.cfg.me));
        (connected + me, self.cfg.n_candidates / 2 + 1)
    }

    /// The next timer deadline: call [`Engine::handle_timeout`] when it has passed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Asked after every input the runtime gets: plain comparisons, no iterator chain.
        let mut t = earliest(self.deadline, self.announce_at);
        t = earliest(t, self.external_lease());
        if let Some(q) = self.quorum.as_ref().filter(|_| self.is_leader()) {
            t = earliest(t, earliest(q.renew_at, q.lease_until));
        }
        t
    }

    /// The next output to act on.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Whether [`Engine::poll_output`] has anything to return.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    // ----- inputs --------------------------------------------------------------------------

    /// A connection to `peer` is up (handshake done).
    pub fn handle_peer_up(&mut self, now: Instant, peer: NodeId) {
        if !self.valid_peer(peer) || !self.connected.insert(peer) {
            return;
        }
        self.unreachable.remove(&peer);
        self.send(
            peer,
            ElectionMsg::Status {
                promised: self.promised,
                leader: self.leader,
            },
        );
        if let Some(p) = self.proposal.as_mut() {
            p.pending.insert(peer);
            let msg = ElectionMsg::Propose {
                term: p.term,
                takeover: p.takeover,
            };
            self.send(peer, msg);
        }
        if self.external.is_some() && self.leader.is_none() && self.role != Role::Joining {
            // External mode: the named leader may just have become reachable.
            self.external_follow(now);
        }
    }

    /// The connection to `peer` was lost or timed out.
    pub fn handle_peer_down(&mut self, now: Instant, peer: NodeId) {
        self.handle_peer_down_inner(now, peer);
        self.announce_if_changed();
    }

    fn handle_peer_down_inner(&mut self, now: Instant, peer: NodeId) {
        if !self.connected.remove(&peer) {
            return;
        }
        self.statuses.remove(&peer);
        if let Some(p) = self.proposal.as_mut() {
            p.pending.remove(&peer);
            p.accepted.remove(&peer);
        }
        if self.is_leader() {
            self.followers.remove(&peer);
            self.out.push_back(Output::Down { node: peer });
        }
        if let Some(l) = self.leader.filter(|l| l.node == peer) {
            self.leader = None;
            self.previous_leader = Some(peer);
            self.out.push_back(Output::LeaderLost {
                leader: peer,
                term: l.term,
                reason: LossReason::LeaderDown,
            });
            self.elect(now);
            return;
        }
        match self.role {
            Role::Captured if self.captured_by.is_some_and(|c| c.node == peer) => self.elect(now),
            Role::Joining if self.joining == Some(peer) => self.elect(now),
            Role::Starting => self.try_finish_start(now),
            Role::Proposing => self.check_proposal(now),
            _ => {}
        }
    }

    /// A dial to `peer` failed: during startup the node stops waiting for it.
    pub fn handle_peer_unreachable(&mut self, now: Instant, peer: NodeId) {
        self.handle_peer_unreachable_inner(now, peer);
        self.announce_if_changed();
    }

    fn handle_peer_unreachable_inner(&mut self, now: Instant, peer: NodeId) {
        if !self.valid_peer(peer) || self.connected.contains(&peer) {
            return;
        }
        self.unreachable.insert(peer);
        if self.role == Role::Starting {
            self.try_finish_start(now);
        }
    }

    /// This node is stopping (graceful shutdown). In quorum mode a leader stops acting and
    /// tells its peers (`StepDown`), so the voters release their promises and elect a new
    /// leader without waiting out the lease; a crashed leader gives no such notice. Nothing
    /// happens in bully mode (the peers see the connection close).
    pub fn handle_shutdown(&mut self, _now: Instant) {
        let Some(l) = self.leader.filter(|l| l.node == self.cfg.me) else {
            return;
        };
        if self.quorum.is_none() {
            return;
        }
        self.end_lease();
        self.leader = None;
        self.announced = None;
        self.followers.clear();
        self.release_proposal();
        self.deadline = None;
        self.role = Role::Waiting;
        let peers: Vec<NodeId> = self.connected.iter().copied().collect();
        for p in peers {
            self.send(p, ElectionMsg::StepDown { term: l.term });
        }
    }

    /// Quorum mode: the runtime's lease clock, which counts time the machine spent suspended
    /// (the `now` arguments do not), says this leader's lease has ended: it steps down now
    /// rather than at its own deadline, which may lie up to a lease ahead after a suspend.
    pub fn handle_lease_ended(&mut self, now: Instant) {
        if self.external.is_some() && self.is_leader() {
            self.external_step_down(now, LossReason::LeaseExpired);
        } else if self.quorum.is_some() && self.is_leader() {
            self.lease_expired(now);
        }
        self.announce_if_changed();
    }

    /// A timer deadline may have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_timeout_inner(now);
        self.announce_if_changed();
    }

    fn handle_timeout_inner(&mut self, now: Instant) {
        if self.is_leader() && self.external.is_some() && !self.is_acting(now) {
            self.external_step_down(now, LossReason::LeaseExpired);
        }
        if self.is_leader() {
            if let Some(q) = self.quorum.as_ref() {
                let (renew_at, until) = (q.renew_at, q.lease_until);
                if until.is_none_or(|u| now >= u) {
                    self.lease_expired(now);
                } else if renew_at.is_some_and(|r| now >= r) {
                    self.renew(now);
                }
            }
        }
        if self.announce_at.is_some_and(|a| now >= a) {
            if self.is_leader() {
                self.broadcast_status();
                self.announce_at = Some(now + self.cfg.announce_interval);
            } else {
                self.announce_at = None;
            }
        }
        match self.deadline {
            Some(d) if now >= d => {}
            _ => return,
        }
        self.deadline = None;
        match self.role {
            _ if self.external.is_some() => self.external_follow(now),
            Role::Starting => self.decide_after_start(now),
            Role::Waiting => {
                if let Some(l) = self.known_live_leader() {
                    if self.quorum.is_some() {
                        // A preempting candidate was waiting out a promise or stickiness.
                        self.follow_or_preempt(now, l);
                    } else {
                        self.join(now, l);
                    }
                } else if self.is_candidate(self.cfg.me) {
                    self.propose(now, false);
                }
            }
            Role::Proposing => self.become_leader(now),
            Role::Captured | Role::Joining => {
                self.captured_by = None;
                self.joining = None;
                self.elect(now);
            }
            Role::Follower | Role::Leader => {}
        }
    }

    /// The Synch for an [`Output::Elected`]: sends the `Leader` announcement to every follower
    /// (`joined: None`) or to the joiner.
    pub fn provide_synch(&mut self, joined: Option<NodeId>, synch: Vec<u8>) {
        let Some(l) = self.leader.filter(|l| l.node == self.cfg.me) else {
            return;
        };
        let targets: Vec<NodeId> = match joined {
            None => self.followers.iter().copied().collect(),
            Some(j) if self.followers.contains(&j) => vec![j],
            Some(_) => Vec::new(),
        };
        for t in targets {
            self.send(
                t,
                ElectionMsg::Leader {
                    term: l.term,
                    synch: synch.clone(),
                },
            );
        }
    }

    /// A message from `from` (over a live connection).
    pub fn handle_message(&mut self, now: Instant, from: NodeId, msg: ElectionMsg) {
        self.handle_message_inner(now, from, msg);
        self.announce_if_changed();
    }

    fn handle_message_inner(&mut self, now: Instant, from: NodeId, msg: ElectionMsg) {
        if max_term_in(&msg) > Term(MAX_TERM) {
            // No honest node gets anywhere near: a corrupt or hostile peer.
            return;
        }
        if !self.connected.contains(&from) {
            return;
        }
        let msg = match self.external {
            Some(_) => external::from_wire(self.cfg.me, from, msg),
            None => msg,
        };
        match msg {
            ElectionMsg::Status { promised, leader } => {
                self.see(promised);
                if let Some(l) = leader {
                    self.see(l.term);
                }
                self.statuses.insert(from, leader);
                self.on_status(now, from, promised, leader);
                self.majority_back(now);
            }
            ElectionMsg::Propose { term, takeover } => self.on_propose(now, from, term, takeover),
            ElectionMsg::Accept { term } => {
                if let Some(p) = self.proposal.as_mut().filter(|p| p.term == term) {
                    p.pending.remove(&from);
                    p.accepted.insert(from);
                    self.check_proposal(now);
                }
            }
            ElectionMsg::Reject {
                round,
                promised,
                leader,
            } => self.on_reject(now, from, round, promised, leader),
            ElectionMsg::Join { promised } => self.on_join(now, from, promised),
            ElectionMsg::Leader { term, synch } => self.on_leader(from, term, synch),
            ElectionMsg::Renew { term, round } => self.on_renew(now, from, term, round),
            ElectionMsg::RenewAck { term, round } => self.on_renew_ack(now, from, term, round),
            ElectionMsg::StepDown { term } => self.on_step_down(now, from, term),
        }
    }

    // ----- helpers (the handlers and election steps are in the submodules) ------------------

    fn valid_peer(&self, p: NodeId) -> bool {
        p != self.cfg.me && p.0 < self.cfg.n_nodes
    }

    fn is_reachable(&self, n: NodeId) -> bool {
        n == self.cfg.me || self.connected.contains(&n)
    }

    fn send(&mut self, to: NodeId, msg: ElectionMsg) {
        let msg = match self.external {
            Some(_) => external::to_wire(self.cfg.me, to, msg),
            None => msg,
        };
        self.out.push_back(Output::Send { to, msg });
    }

    fn jittered(&mut self) -> Duration {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let base = self.cfg.election_timeout;
        base + base.mul_f64((z % 1000) as f64 / 2000.0)
    }
}

/// The earlier of two optional instants (`None` = never).
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests;
