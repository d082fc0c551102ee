//! The engine's state machine. See the module docs of [`crate::election`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

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
    /// The last term this node persisted (0 on a first start).
    pub initial_term: Term,
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
    rng: u64,
    out: VecDeque<Output>,
}

impl Engine {
    /// Creates the engine of a node that starts at `now`.
    pub fn new(cfg: EngineConfig, now: Instant) -> Self {
        let mut e = Engine {
            role: Role::Starting,
            deadline: Some(now + cfg.startup_timeout),
            announce_at: None,
            promised: cfg.initial_term,
            max_seen: cfg.initial_term,
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
            rng: cfg.seed ^ 0x9E37_79B9_7F4A_7C15,
            out: VecDeque::new(),
            cfg,
        };
        e.try_finish_start(now);
        e.announce_if_changed();
        e
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

    /// The next timer deadline: call [`Engine::handle_timeout`] when it has passed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.deadline, self.announce_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next output to act on.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    // ----- inputs --------------------------------------------------------------------------

    /// A connection to `peer` is up (handshake done).
    pub fn handle_peer_up(&mut self, _now: Instant, peer: NodeId) {
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

    /// A timer deadline may have passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_timeout_inner(now);
        self.announce_if_changed();
    }

    fn handle_timeout_inner(&mut self, now: Instant) {
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
            Role::Starting => self.decide_after_start(now),
            Role::Waiting => {
                if let Some(l) = self.known_live_leader() {
                    self.join(now, l);
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
        match msg {
            ElectionMsg::Status { promised, leader } => {
                self.see(promised);
                if let Some(l) = leader {
                    self.see(l.term);
                }
                self.statuses.insert(from, leader);
                self.on_status(now, from, promised, leader);
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
        }
    }

    // ----- handlers ------------------------------------------------------------------------

    fn on_status(&mut self, now: Instant, from: NodeId, promised: Term, leader: Option<LeaderRef>) {
        if self.role == Role::Starting {
            match leader.filter(|l| l.node == from) {
                Some(l) => self.follow_or_preempt(now, l.node),
                None => self.try_finish_start(now),
            }
            return;
        }
        if self.role == Role::Joining && self.joining == Some(from) {
            // We asked `from` to take us but it no longer leads.
            if leader.is_none_or(|l| l.node != from) {
                self.joining = None;
                self.elect(now);
                return;
            }
        }
        let me = self.cfg.me;
        if let Some(mine) = self.leader.filter(|m| m.node == from && m.node != me) {
            if leader != Some(mine) && leader.is_none_or(|l| l.node != from || l.term > mine.term) {
                // Our leader says it no longer leads (it was taken over, or re-elected
                // itself above a newer term without us): leave it.
                self.leader = None;
                self.out.push_back(Output::LeaderLost {
                    leader: from,
                    term: mine.term,
                    reason: LossReason::TakenOver,
                });
                self.elect(now);
                return;
            }
        }
        if self.is_leader() && self.proposal.is_none() && promised >= self.term() {
            // A current (not reordered or duplicated) Status from a peer about whom it follows.
            match leader {
                // It follows another leader: stop sending it broadcasts. ("No leader" is not
                // enough: a joiner says so just after its `Join`.)
                Some(l) if l.node != me => {
                    self.followers.remove(&from);
                }
                // It follows us in this term: make sure it gets the broadcasts.
                Some(l) if l.term == self.term() => {
                    self.followers.insert(from);
                }
                _ => {}
            }
        }
        // Only a node's own claim to lead is trusted: second-hand claims may be stale.
        let Some(l) = leader.filter(|l| l.node == from) else {
            return;
        };
        match self.leader {
            None => match self.role {
                Role::Waiting | Role::Starting => self.follow_or_preempt(now, l.node),
                Role::Proposing => {
                    let takeover = self.proposal.as_ref().is_some_and(|p| p.takeover);
                    if !((takeover || self.cfg.preempt) && self.cfg.me < l.node) {
                        self.join(now, l.node);
                    }
                }
                _ => {}
            },
            Some(mine) if mine.node == me => {
                // Two leaders meet: the higher priority takes over; the other waits for it.
                if me < l.node && self.proposal.is_none() {
                    self.propose(now, true);
                }
            }
            Some(mine) => {
                // A higher-priority leader with a newer term announces itself: ours would be
                // taken over anyway (and we may have missed its proposal). A lower-priority
                // one is ignored: it only leads where it cannot reach ours.
                if l.node == from
                    && l.term > mine.term
                    && l.node < mine.node
                    && self.role == Role::Follower
                {
                    self.leader = None;
                    self.out.push_back(Output::LeaderLost {
                        leader: mine.node,
                        term: mine.term,
                        reason: LossReason::NewerTerm,
                    });
                    self.join(now, l.node);
                }
            }
        }
    }

    fn on_propose(&mut self, now: Instant, from: NodeId, term: Term, takeover: bool) {
        self.see(term);
        if !self.is_candidate(from) || !self.owns(from, term) {
            return;
        }
        if self.captured_by == Some(LeaderRef { node: from, term }) {
            // A duplicate of the proposal we accepted: accept again (idempotent).
            self.send(from, ElectionMsg::Accept { term });
            return;
        }
        if term <= self.promised {
            self.send(
                from,
                ElectionMsg::Reject {
                    round: term,
                    promised: self.promised,
                    leader: self.live_leader(),
                },
            );
            return;
        }
        if let Some(l) = self.live_leader().filter(|l| l.node != from) {
            let allowed = (takeover || self.cfg.preempt) && from < l.node;
            if !allowed {
                self.send(
                    from,
                    ElectionMsg::Reject {
                        round: term,
                        promised: self.promised,
                        leader: Some(l),
                    },
                );
                return;
            }
        }
        if let Some(p) = self.proposal.as_ref() {
            if self.cfg.me < from && self.leader.is_none() {
                // Bully: a lower-priority candidate proposes while we do; we keep our round,
                // outbidding its term if needed.
                let outbid = p.term < term;
                let takeover = p.takeover;
                self.send(
                    from,
                    ElectionMsg::Reject {
                        round: term,
                        promised: self.promised,
                        leader: None,
                    },
                );
                if outbid {
                    self.propose(now, takeover);
                }
                return;
            }
        }
        // Accept.
        self.set_promised(term);
        if self.leader.is_some_and(|l| l.node == from) {
            // Our own leader re-elects itself above a newer term: calls stay valid.
            self.leader = None;
        } else {
            self.drop_leadership(LossReason::TakenOver);
        }
        self.proposal = None;
        self.joining = None;
        self.role = Role::Captured;
        self.captured_by = Some(LeaderRef { node: from, term });
        self.deadline = Some(now + self.cfg.election_timeout * 2);
        self.send(from, ElectionMsg::Accept { term });
    }

    fn on_reject(
        &mut self,
        now: Instant,
        from: NodeId,
        round: Term,
        promised: Term,
        leader: Option<LeaderRef>,
    ) {
        self.see(promised);
        if let Some(l) = leader {
            self.see(l.term);
        }
        let Some(p) = self.proposal.as_mut().filter(|p| p.term == round) else {
            return;
        };
        if p.accepted.contains(&from) {
            return; // a duplicate answer
        }
        p.pending.remove(&from);
        let takeover = p.takeover;
        let my_term = p.term;
        if let Some(l) = leader.filter(|l| l.node != self.cfg.me) {
            if self.is_reachable(l.node) {
                if (takeover || self.cfg.preempt) && self.cfg.me < l.node {
                    // Rejected only for a stale term: try again above it.
                    self.propose(now, true);
                } else {
                    self.join(now, l.node);
                }
                return;
            }
        } else if leader.is_none() && from < self.cfg.me {
            // A higher-priority candidate is electing: let it.
            self.proposal = None;
            if self.is_leader() {
                self.role = Role::Leader;
                self.deadline = None;
            } else {
                self.role = Role::Waiting;
                self.deadline = Some(now + self.jittered());
            }
            return;
        } else if leader.is_none() && promised >= my_term {
            // A lower-priority node has seen a newer term: outbid it.
            self.propose(now, takeover);
            return;
        }
        self.check_proposal(now);
    }

    fn on_join(&mut self, now: Instant, from: NodeId, promised: Term) {
        self.see(promised);
        if !self.is_leader() {
            self.send(
                from,
                ElectionMsg::Status {
                    promised: self.promised,
                    leader: self.live_leader(),
                },
            );
            return;
        }
        if self.proposal.is_some() {
            // A new round is under way; the joiner is connected and was sent its proposal.
            return;
        }
        if promised > self.term() {
            // Re-elect above the joiner's term so that its term never goes down.
            self.propose(now, true);
            return;
        }
        self.followers.insert(from);
        self.out.push_back(Output::Elected {
            term: self.term(),
            joined: Some(from),
        });
    }

    fn on_leader(&mut self, from: NodeId, term: Term, synch: Vec<u8>) {
        self.see(term);
        if !self.is_candidate(from) || !self.owns(from, term) {
            return;
        }
        let this = LeaderRef { node: from, term };
        let acceptable = match self.role {
            Role::Captured => self.captured_by == Some(this),
            Role::Joining => self.joining == Some(from) && term >= self.promised,
            Role::Follower => self.leader == Some(this),
            Role::Waiting | Role::Starting | Role::Proposing => {
                self.leader.is_none() && term >= self.promised
            }
            Role::Leader => false,
        };
        if !acceptable {
            return;
        }
        self.set_promised(term);
        self.leader = Some(this);
        self.role = Role::Follower;
        self.captured_by = None;
        self.joining = None;
        self.proposal = None;
        self.previous_leader = None;
        self.deadline = None;
        self.out.push_back(Output::Surrendered {
            leader: from,
            term,
            synch,
        });
    }

    // ----- election steps ------------------------------------------------------------------

    fn try_finish_start(&mut self, now: Instant) {
        if self.role != Role::Starting {
            return;
        }
        let all_heard = (0..self.cfg.n_nodes).map(NodeId).all(|p| {
            p == self.cfg.me || self.statuses.contains_key(&p) || self.unreachable.contains(&p)
        });
        if all_heard {
            self.decide_after_start(now);
        }
    }

    fn decide_after_start(&mut self, now: Instant) {
        self.deadline = None;
        match self.known_live_leader() {
            Some(l) => self.follow_or_preempt(now, l),
            None => self.elect(now),
        }
    }

    /// A sitting leader `l` is known: join it, or (with `preempt`) replace it.
    fn follow_or_preempt(&mut self, now: Instant, l: NodeId) {
        if self.cfg.preempt && self.is_candidate(self.cfg.me) && self.cfg.me < l {
            self.propose(now, true);
        } else {
            self.join(now, l);
        }
    }

    /// No leader: propose, or wait for a higher-priority candidate.
    fn elect(&mut self, now: Instant) {
        self.proposal = None;
        if let Some(l) = self.known_live_leader() {
            self.join(now, l);
            return;
        }
        if !self.is_candidate(self.cfg.me) {
            self.role = Role::Waiting;
            self.deadline = None;
            return;
        }
        let me = self.cfg.me;
        let higher_alive = self
            .connected
            .iter()
            .any(|&p| self.is_candidate(p) && p < me);
        if higher_alive {
            self.role = Role::Waiting;
            self.deadline = Some(now + self.jittered());
        } else {
            self.propose(now, false);
        }
    }

    fn propose(&mut self, now: Instant, takeover: bool) {
        let Some(term) = self.next_owned_term() else {
            // No term left to propose: never reuse one. Stay out of elections.
            self.proposal = None;
            if !self.is_leader() {
                self.role = Role::Waiting;
                self.deadline = None;
            }
            return;
        };
        self.set_promised(term);
        let pending = self.connected.clone();
        for &p in &pending {
            self.send(p, ElectionMsg::Propose { term, takeover });
        }
        self.proposal = Some(Proposal {
            term,
            takeover,
            pending,
            accepted: BTreeSet::new(),
        });
        self.role = Role::Proposing;
        self.captured_by = None;
        self.joining = None;
        self.deadline = Some(now + self.cfg.election_timeout);
        self.check_proposal(now);
    }

    fn check_proposal(&mut self, now: Instant) {
        if self.proposal.as_ref().is_some_and(|p| p.pending.is_empty()) {
            self.become_leader(now);
        }
    }

    fn become_leader(&mut self, now: Instant) {
        let Some(p) = self.proposal.take() else {
            return;
        };
        let me = self.cfg.me;
        self.leader = Some(LeaderRef {
            node: me,
            term: p.term,
        });
        self.role = Role::Leader;
        self.deadline = None;
        self.announce_at = Some(now + self.cfg.announce_interval);
        self.followers = p
            .accepted
            .into_iter()
            .filter(|f| self.connected.contains(f))
            .collect();
        self.out.push_back(Output::Elected {
            term: p.term,
            joined: None,
        });
        if let Some(old) = self.previous_leader.take() {
            if old != me && !self.connected.contains(&old) {
                self.out.push_back(Output::Down { node: old });
            }
        }
    }

    fn join(&mut self, now: Instant, l: NodeId) {
        self.drop_leadership(LossReason::TakenOver);
        self.proposal = None;
        self.captured_by = None;
        self.role = Role::Joining;
        self.joining = Some(l);
        self.deadline = Some(now + self.cfg.election_timeout);
        self.send(
            l,
            ElectionMsg::Join {
                promised: self.promised,
            },
        );
    }

    /// Stops leading or following (before accepting another leader).
    fn drop_leadership(&mut self, reason: LossReason) {
        let Some(l) = self.leader.take() else { return };
        if l.node == self.cfg.me {
            self.followers.clear();
            self.out.push_back(Output::LeadershipLost {
                term: l.term,
                reason,
            });
        } else {
            self.out.push_back(Output::LeaderLost {
                leader: l.node,
                term: l.term,
                reason,
            });
        }
    }

    // ----- helpers -------------------------------------------------------------------------

    fn valid_peer(&self, p: NodeId) -> bool {
        p != self.cfg.me && p.0 < self.cfg.n_nodes
    }

    fn is_reachable(&self, n: NodeId) -> bool {
        n == self.cfg.me || self.connected.contains(&n)
    }

    fn live_leader(&self) -> Option<LeaderRef> {
        self.leader.filter(|l| self.is_reachable(l.node))
    }

    /// A connected peer that says it leads (highest term first). Only first-hand claims
    /// count: a peer's report of whom it follows may be stale.
    fn known_live_leader(&self) -> Option<NodeId> {
        self.statuses
            .iter()
            .filter(|(p, l)| self.connected.contains(p) && l.is_some_and(|l| l.node == **p))
            .filter_map(|(_, l)| *l)
            .max_by_key(|l| (l.term, std::cmp::Reverse(l.node)))
            .map(|l| l.node)
    }

    /// Whether `from` may propose or lead term `t`: only its owner may, which is what keeps
    /// one leader per term. The hidden `__mutant_term_owner` feature (checker self-tests only,
    /// see `.ci/negative-control`) deliberately breaks this rule: every candidate owns every
    /// term.
    fn owns(&self, from: NodeId, t: Term) -> bool {
        cfg!(feature = "__mutant_term_owner") || self.owner(t) == from
    }

    fn owner(&self, t: Term) -> NodeId {
        NodeId((t.0 % u64::from(self.cfg.n_candidates.max(1))) as u32)
    }

    /// The smallest term above every term seen that this candidate owns; `None` once the
    /// term space is exhausted (only reachable from a corrupt term file: peers' terms above
    /// [`MAX_TERM`] are ignored).
    fn next_owned_term(&self) -> Option<Term> {
        let n = u64::from(self.cfg.n_candidates.max(1));
        let i = u64::from(self.cfg.me.0);
        let base = self.promised.max(self.max_seen).0.checked_add(1)?;
        let t = if cfg!(feature = "__mutant_term_owner") {
            base // the mutant proposes the next term, whoever owns it
        } else {
            base.checked_add((i + n - base % n) % n)?
        };
        (t <= MAX_TERM).then_some(Term(t))
    }

    fn see(&mut self, t: Term) {
        self.max_seen = self.max_seen.max(t);
    }

    fn set_promised(&mut self, t: Term) {
        self.see(t);
        if t > self.promised {
            self.promised = t;
            self.out.push_back(Output::PersistTerm(t));
        }
    }

    fn send(&mut self, to: NodeId, msg: ElectionMsg) {
        self.out.push_back(Output::Send { to, msg });
    }

    fn broadcast_status(&mut self) {
        let msg = ElectionMsg::Status {
            promised: self.promised,
            leader: self.leader,
        };
        let peers: Vec<NodeId> = self.connected.iter().copied().collect();
        for p in peers {
            self.send(p, msg.clone());
        }
    }

    /// Tells every peer when this node's leader changed (called at the end of every input).
    fn announce_if_changed(&mut self) {
        if self.announced != self.leader {
            self.announced = self.leader;
            self.broadcast_status();
        }
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

#[cfg(test)]
mod tests;
