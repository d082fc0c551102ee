//! One in-memory harness for every checker of the election engine.
//!
//! **Not part of the public API.** This module is `#[doc(hidden)]`, is not covered by semver
//! and may change in any release: it exists so that the engine unit tests, the simulator
//! (`verify/tests/sim.rs`), the model checker (`verify/tests/model.rs`), the property tests
//! (`verify/tests/props.rs`) and the `engine` fuzz target drive the engine the same way and check
//! the same invariants, instead of five copies that drift apart.
//!
//! Why it lives in the library: integration tests and the fuzz crate can only share code
//! through it. It is sans-IO like the engine (time is an argument, no clock reads, no RNG).
//!
//! * [`NodeChecker`]: the invariants of one engine, from its outputs and its state (terms
//!   never decrease, a term is persisted before any message that depends on it, workers never
//!   propose or lead, messages only go to valid peers; optionally, a node only proposes or
//!   leads terms it owns).
//! * [`LeaderLog`]: at most one leader per term, over a whole run.
//! * [`Cluster`]: engines with their configurations, crash and restart with what the node's
//!   store keeps (its on-disk term reservation, see [`STORE_RESERVATION`]), the driver's rules for draining outputs (`Elected` is answered with an empty
//!   Synch), the checks above after every step, and the "all agree on one leader" test.
//! * [`Network`]: a [`Cluster`] on a virtual clock with a FIFO message queue per link, links
//!   that can be cut and healed, and `pump`/`advance` to run it until quiet.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use super::{ElectionMsg, Engine, EngineConfig, LeaderRef, Output, Role};
use crate::types::{NodeId, Term};

/// How many terms the runtime's term store reserves on disk past the last term it stores
/// (`node::storage::TERM_RESERVATION`, which a unit test keeps equal): the harness models the
/// store so that a restart starts from what the real node would read.
pub const STORE_RESERVATION: u64 = 64;

/// A broken invariant, with the node where it was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The node whose output or state broke the invariant.
    pub node: NodeId,
    /// Which invariant, and how.
    pub kind: ViolationKind,
}

/// The invariants the harness checks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViolationKind {
    /// `node` leads `term`, which `first` already led.
    TwoLeaders {
        /// The term.
        term: Term,
        /// The node that led it first.
        first: NodeId,
    },
    /// `term()` went down (also across a restart).
    TermDecreased(Term, Term),
    /// `promised()` went down.
    PromisedDecreased(Term, Term),
    /// A `PersistTerm` not above the last persisted term.
    PersistNotIncreasing(Term, Term),
    /// `promised()` is above the last persisted term.
    PromisedNotPersisted(Term, Term),
    /// A message that depends on its term left before that term was persisted.
    SentBeforePersisted(ElectionMsg),
    /// A worker proposed, was elected, announced itself or leads.
    WorkerLeads(String),
    /// A node proposed, announced or leads a term it does not own, or surrendered to a node
    /// for a term that node does not own.
    UnownedTerm(String),
    /// A message to this node itself or to an id outside the cluster.
    InvalidPeer(NodeId),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.node.0;
        match &self.kind {
            ViolationKind::TwoLeaders { term, first } => {
                write!(f, "two leaders in term {term}: n{} and n{n}", first.0)
            }
            ViolationKind::TermDecreased(a, b) => write!(f, "term went down at n{n}: {a} -> {b}"),
            ViolationKind::PromisedDecreased(a, b) => {
                write!(f, "promised went down at n{n}: {a} -> {b}")
            }
            ViolationKind::PersistNotIncreasing(a, b) => {
                write!(f, "n{n} persisted {b}, not above {a}")
            }
            ViolationKind::PromisedNotPersisted(p, t) => {
                write!(f, "n{n} promised {p} above its persisted term {t}")
            }
            ViolationKind::SentBeforePersisted(m) => {
                write!(f, "n{n} sent {m:?} before its term was persisted")
            }
            ViolationKind::WorkerLeads(what) => write!(f, "worker n{n} leads: {what}"),
            ViolationKind::UnownedTerm(what) => write!(f, "n{n}: unowned term: {what}"),
            ViolationKind::InvalidPeer(to) => write!(f, "n{n} sent to invalid peer {to:?}"),
        }
    }
}

impl std::error::Error for Violation {}

/// The invariants of one engine, checked from its outputs (in order) and then its state.
#[derive(Clone, Debug)]
pub struct NodeChecker {
    me: NodeId,
    n_candidates: u32,
    n_nodes: u32,
    owned_terms: bool,
    last_term: Term,
    last_promised: Term,
    last_persisted: Term,
}

impl NodeChecker {
    /// A checker for a new engine built from `cfg`, with every check on.
    pub fn new(cfg: &EngineConfig) -> Self {
        NodeChecker {
            me: cfg.me,
            n_candidates: cfg.n_candidates.max(1),
            n_nodes: cfg.n_nodes,
            owned_terms: true,
            last_term: cfg.initial_term,
            last_promised: cfg.initial_term,
            last_persisted: cfg.initial_term,
        }
    }

    /// A checker for `e` as it is now (its outputs drained): for checking one transition.
    pub fn at(e: &Engine) -> Self {
        NodeChecker {
            last_term: e.term(),
            last_promised: e.promised(),
            last_persisted: e.promised(),
            ..NodeChecker::new(e.config())
        }
    }

    /// Turns off the term-ownership checks ("only term `t`'s owner proposes or leads it"):
    /// the cluster harnesses check what that rule is for, one leader per term, instead.
    pub fn without_owned_terms(mut self) -> Self {
        self.owned_terms = false;
        self
    }

    /// The node restarted: terms and the persisted term must carry on from before.
    pub fn restart(&mut self, cfg: &EngineConfig) {
        self.me = cfg.me;
        self.last_persisted = cfg.initial_term;
    }

    /// The highest term persisted so far.
    pub fn persisted(&self) -> Term {
        self.last_persisted
    }

    fn is_worker(&self) -> bool {
        self.me.0 >= self.n_candidates
    }

    fn fail(&self, kind: ViolationKind) -> Result<(), Violation> {
        Err(Violation {
            node: self.me,
            kind,
        })
    }

    fn owns(&self, node: NodeId, term: Term) -> bool {
        !self.owned_terms || term.0 % u64::from(self.n_candidates) == u64::from(node.0)
    }

    /// Checks one output, in the order the engine produced it.
    pub fn output(&mut self, out: &Output) -> Result<(), Violation> {
        let me = self.me;
        match out {
            Output::PersistTerm(t) => {
                if *t <= self.last_persisted {
                    return self.fail(ViolationKind::PersistNotIncreasing(self.last_persisted, *t));
                }
                self.last_persisted = *t;
            }
            Output::Send { to, msg } => {
                if *to == me || to.0 >= self.n_nodes {
                    return self.fail(ViolationKind::InvalidPeer(*to));
                }
                match msg {
                    ElectionMsg::Propose { term, .. } | ElectionMsg::Leader { term, .. } => {
                        if self.is_worker() {
                            return self.fail(ViolationKind::WorkerLeads(format!("{msg:?}")));
                        }
                        if !self.owns(me, *term) {
                            return self.fail(ViolationKind::UnownedTerm(format!("{msg:?}")));
                        }
                    }
                    _ => {}
                }
                if let ElectionMsg::Propose { term, .. } | ElectionMsg::Accept { term } = msg {
                    if *term > self.last_persisted {
                        return self.fail(ViolationKind::SentBeforePersisted(msg.clone()));
                    }
                }
            }
            Output::Elected { term, .. } => {
                if self.is_worker() {
                    return self.fail(ViolationKind::WorkerLeads(format!("{out:?}")));
                }
                if !self.owns(me, *term) {
                    return self.fail(ViolationKind::UnownedTerm(format!("{out:?}")));
                }
            }
            Output::Surrendered { leader, term, .. }
                if *leader == me || leader.0 >= self.n_candidates || !self.owns(*leader, *term) =>
            {
                return self.fail(ViolationKind::UnownedTerm(format!("{out:?}")));
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks the engine's state once its outputs were drained and checked.
    pub fn state(&mut self, e: &Engine) -> Result<(), Violation> {
        let (term, promised) = (e.term(), e.promised());
        if term < self.last_term {
            return self.fail(ViolationKind::TermDecreased(self.last_term, term));
        }
        if promised < self.last_promised {
            return self.fail(ViolationKind::PromisedDecreased(
                self.last_promised,
                promised,
            ));
        }
        if promised > self.last_persisted {
            return self.fail(ViolationKind::PromisedNotPersisted(
                promised,
                self.last_persisted,
            ));
        }
        self.last_term = term;
        self.last_promised = promised;
        if e.is_leader() {
            if self.is_worker() {
                return self.fail(ViolationKind::WorkerLeads(format!("term {term}")));
            }
            if !self.owns(self.me, term) {
                return self.fail(ViolationKind::UnownedTerm(format!("leads term {term}")));
            }
        }
        Ok(())
    }

    /// Drains `e`'s outputs, checking each and then the state; returns them.
    pub fn drain(&mut self, e: &mut Engine) -> Result<Vec<Output>, Violation> {
        let outs: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
        for o in &outs {
            self.output(o)?;
        }
        self.state(e)?;
        Ok(outs)
    }
}

/// Every `(term, leader)` of a run: at most one leader per term.
#[derive(Clone, Debug, Default)]
pub struct LeaderLog {
    leaders: BTreeMap<Term, NodeId>,
}

impl LeaderLog {
    /// Records that `node` leads `term`.
    pub fn record(&mut self, term: Term, node: NodeId) -> Result<(), Violation> {
        match self.leaders.insert(term, node) {
            Some(first) if first != node => {
                self.leaders.insert(term, first);
                Err(Violation {
                    node,
                    kind: ViolationKind::TwoLeaders { term, first },
                })
            }
            _ => Ok(()),
        }
    }

    /// Every term led so far and its leader.
    pub fn terms(&self) -> &BTreeMap<Term, NodeId> {
        &self.leaders
    }
}

/// One member of a [`Cluster`].
#[derive(Clone, Debug)]
pub struct Member {
    /// Its configuration (`initial_term` is updated on every restart).
    pub cfg: EngineConfig,
    /// The engine, unless crashed.
    pub engine: Option<Engine>,
    /// Its invariants, kept across restarts.
    pub checker: NodeChecker,
    /// `Elected { joined: None }` and `Surrendered` outputs so far (leadership changes).
    pub changes: u64,
    /// The term reservation on its disk, as the runtime's store keeps it: raised to
    /// `t + STORE_RESERVATION` by a `PersistTerm(t)` above it, and by `STORE_RESERVATION` at
    /// every start (the store reserves again when it opens).
    pub reserved: Term,
}

/// Engines with their configurations, driven as the real driver does, checked after every
/// step. A violation is kept (the first one) for the caller to report: see
/// [`Cluster::violation`].
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The members, by id.
    pub members: Vec<Member>,
    /// At most one leader per term.
    pub leaders: LeaderLog,
    violation: Option<Violation>,
}

impl Cluster {
    /// Members from their configurations; none is started yet (see [`Cluster::start`]).
    pub fn new(cfgs: Vec<EngineConfig>) -> Self {
        let members = cfgs
            .into_iter()
            .map(|cfg| Member {
                checker: NodeChecker::new(&cfg).without_owned_terms(),
                cfg,
                engine: None,
                changes: 0,
                reserved: Term(0),
            })
            .collect();
        Cluster {
            members,
            leaders: LeaderLog::default(),
            violation: None,
        }
    }

    /// `n_nodes` members (the first `n_candidates` are candidates) configured by `cfg(id)`.
    pub fn with(n_nodes: u32, cfg: impl Fn(u32) -> EngineConfig) -> Self {
        Cluster::new((0..n_nodes).map(cfg).collect())
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The engine of `i`, if it runs.
    pub fn engine(&self, i: NodeId) -> Option<&Engine> {
        self.members[i.index()].engine.as_ref()
    }

    /// The engine of `i`, if it runs.
    pub fn engine_mut(&mut self, i: NodeId) -> Option<&mut Engine> {
        self.members[i.index()].engine.as_mut()
    }

    /// The first violation seen, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// (Re)starts `i` at `now` from what its store holds, as the runtime does, and drains
    /// it; returns the outputs. `seed` replaces the configured jitter seed if given.
    pub fn start(&mut self, i: NodeId, now: Instant, seed: Option<u64>) -> Vec<Output> {
        let m = &mut self.members[i.index()];
        // The store's two values: the reservation (proposals start above it) and the promise
        // (every `PersistTerm` is written through, so it is the last one).
        let floor = m.reserved;
        m.reserved = reserve(floor);
        m.cfg.initial_term = m.checker.persisted();
        m.cfg.proposal_floor = floor;
        if let Some(s) = seed {
            m.cfg.seed = s;
        }
        m.checker.restart(&m.cfg);
        m.engine = Some(Engine::new(m.cfg.clone(), now));
        self.drain(i)
    }

    /// Crashes `i`: its engine is gone, its persisted term stays.
    pub fn crash(&mut self, i: NodeId) {
        self.members[i.index()].engine = None;
    }

    /// Gives `input` to `i` (if it runs) and drains it; returns the outputs.
    pub fn with_engine(&mut self, i: NodeId, input: impl FnOnce(&mut Engine)) -> Vec<Output> {
        match self.engine_mut(i) {
            Some(e) => input(e),
            None => return Vec::new(),
        }
        self.drain(i)
    }

    /// Acts on `i`'s outputs as the real driver does (`Elected` is answered at once with
    /// an empty Synch, whose `Leader` messages are drained too), checks every output and the
    /// state, and returns the outputs in order.
    pub fn drain(&mut self, i: NodeId) -> Vec<Output> {
        let mut all = Vec::new();
        let m = &mut self.members[i.index()];
        let Some(e) = m.engine.as_mut() else {
            return all;
        };
        while let Some(out) = e.poll_output() {
            if let Err(v) = m.checker.output(&out) {
                self.violation.get_or_insert(v);
            }
            match &out {
                Output::PersistTerm(t) if *t > m.reserved => m.reserved = reserve(*t),
                Output::Elected { joined, term } => {
                    if joined.is_none() {
                        m.changes += 1;
                        if let Err(v) = self.leaders.record(*term, i) {
                            self.violation.get_or_insert(v);
                        }
                    }
                    e.provide_synch(*joined, Vec::new());
                }
                Output::Surrendered { .. } => m.changes += 1,
                _ => {}
            }
            all.push(out);
        }
        if let Err(v) = m.checker.state(e) {
            self.violation.get_or_insert(v);
        }
        if e.is_leader() {
            if let Err(v) = self.leaders.record(e.term(), i) {
                self.violation.get_or_insert(v);
            }
        }
        all
    }

    /// The leader every member agrees on: all run, all are `Leader` or `Follower` of the
    /// same leader and term, exactly that node leads, and it has every other member as a
    /// follower (its broadcasts reach everyone).
    pub fn agreement(&self) -> Result<LeaderRef, String> {
        let mut agreed: Option<LeaderRef> = None;
        for (i, m) in self.members.iter().enumerate() {
            let e = m.engine.as_ref().ok_or(format!("n{i} down"))?;
            if !matches!(e.role(), Role::Leader | Role::Follower) {
                return Err(format!("n{i} still electing: {:?}", e.role()));
            }
            let l = e.leader().ok_or(format!("n{i} has no leader"))?;
            match agreed {
                None => agreed = Some(l),
                Some(x) if x != l => return Err(format!("n{i} follows {l:?}, others {x:?}")),
                _ => {}
            }
        }
        let l = agreed.ok_or("no members")?;
        let leaders: Vec<usize> = (0..self.len())
            .filter(|&i| self.engine(NodeId(i as u32)).is_some_and(|e| e.is_leader()))
            .collect();
        if leaders != [l.node.index()] {
            return Err(format!("leaders {leaders:?}, all follow {l:?}"));
        }
        let followers = self.engine(l.node).map(|e| e.followers().len());
        if followers != Some(self.len() - 1) {
            return Err(format!("leader n{} has {followers:?} followers", l.node.0));
        }
        Ok(l)
    }
}

/// The reservation the store writes to cover `t`.
fn reserve(t: Term) -> Term {
    Term(t.0.saturating_add(STORE_RESERVATION).min(super::MAX_TERM))
}

/// A [`Cluster`] on a virtual clock, with a FIFO queue of messages per directed link.
/// Connections are explicit ([`Network::connect`], [`Network::disconnect`]); a cut link
/// ([`Network::cut`]) loses what is queued on it and what is sent over it until healed.
#[derive(Clone, Debug)]
pub struct Network {
    /// The engines, their checks and history.
    pub cluster: Cluster,
    /// The virtual time.
    pub now: Instant,
    /// Per directed link, the queued messages with their send sequence number.
    queues: BTreeMap<(NodeId, NodeId), VecDeque<(u64, ElectionMsg)>>,
    sent: u64,
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Every output, by node, in order.
    pub log: Vec<(NodeId, Output)>,
}

impl Network {
    /// Starts every member of `cluster` at `now` (nothing is connected yet).
    pub fn new(cluster: Cluster, now: Instant) -> Self {
        let mut net = Network {
            cluster,
            now,
            queues: BTreeMap::new(),
            sent: 0,
            cut: BTreeSet::new(),
            log: Vec::new(),
        };
        for i in 0..net.cluster.len() {
            let outs = net.cluster.start(NodeId(i as u32), now, None);
            net.route(NodeId(i as u32), outs);
        }
        net
    }

    /// The engine of `i`; panics if it is crashed.
    pub fn engine(&self, i: u32) -> &Engine {
        self.cluster.engine(NodeId(i)).expect("the node runs")
    }

    /// Panics with the first violation, if any.
    pub fn assert_ok(&self) {
        if let Some(v) = self.cluster.violation() {
            panic!("{v}\n--- outputs ---\n{:#?}", self.log);
        }
    }

    fn route(&mut self, from: NodeId, outs: Vec<Output>) {
        for o in outs {
            if let Output::Send { to, msg } = &o {
                if !self.cut.contains(&(from, *to)) {
                    self.sent += 1;
                    self.queues
                        .entry((from, *to))
                        .or_default()
                        .push_back((self.sent, msg.clone()));
                }
            }
            self.log.push((from, o));
        }
    }

    /// Gives `input` to `i` at the current time, then routes its outputs (not delivered yet).
    pub fn input(&mut self, i: u32, input: impl FnOnce(&mut Engine, Instant)) {
        let now = self.now;
        let outs = self.cluster.with_engine(NodeId(i), |e| input(e, now));
        self.route(NodeId(i), outs);
    }

    /// Delivers the oldest message queued on the link `from -> to`, if any.
    pub fn deliver(&mut self, from: u32, to: u32) -> bool {
        let (from, to) = (NodeId(from), NodeId(to));
        let Some((_, msg)) = self
            .queues
            .get_mut(&(from, to))
            .and_then(VecDeque::pop_front)
        else {
            return false;
        };
        self.input(to.0, |e, now| e.handle_message(now, from, msg));
        true
    }

    /// Delivers queued messages, oldest first over all links (one global FIFO order), until
    /// none is left.
    pub fn pump(&mut self) {
        while let Some((f, t)) = self
            .queues
            .iter()
            .filter_map(|(k, q)| q.front().map(|(seq, _)| (*seq, *k)))
            .min()
            .map(|(_, k)| k)
        {
            self.deliver(f.0, t.0);
        }
    }

    /// Both ends see the connection come up; then [`Network::pump`].
    pub fn connect(&mut self, a: u32, b: u32) {
        self.input(a, |e, now| e.handle_peer_up(now, NodeId(b)));
        self.input(b, |e, now| e.handle_peer_up(now, NodeId(a)));
        self.pump();
    }

    /// Connects every pair, in order.
    pub fn connect_all(&mut self) {
        let n = self.cluster.len() as u32;
        for a in 0..n {
            for b in a + 1..n {
                self.connect(a, b);
            }
        }
    }

    /// Both ends see the connection go down; then [`Network::pump`].
    pub fn disconnect(&mut self, a: u32, b: u32) {
        self.input(a, |e, now| e.handle_peer_down(now, NodeId(b)));
        self.input(b, |e, now| e.handle_peer_down(now, NodeId(a)));
        self.pump();
    }

    /// Cuts the link `a -> b` (one way): queued messages are lost, and so are later sends
    /// until [`Network::heal`]. The engines are not told (see [`Network::disconnect`]).
    pub fn cut(&mut self, a: u32, b: u32) {
        self.cut.insert((NodeId(a), NodeId(b)));
        self.queues.remove(&(NodeId(a), NodeId(b)));
    }

    /// Heals the link `a -> b`.
    pub fn heal(&mut self, a: u32, b: u32) {
        self.cut.remove(&(NodeId(a), NodeId(b)));
    }

    /// Crashes `i`: what is queued to or from it is lost.
    pub fn crash(&mut self, i: u32) {
        self.cluster.crash(NodeId(i));
        self.queues.retain(|(f, t), _| f.0 != i && t.0 != i);
    }

    /// Restarts `i` with its persisted term (not connected to anyone).
    pub fn restart(&mut self, i: u32) {
        let outs = self.cluster.start(NodeId(i), self.now, None);
        self.route(NodeId(i), outs);
    }

    /// Moves the clock forward by `d`, fires every due timer, then [`Network::pump`].
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        for i in 0..self.cluster.len() as u32 {
            self.input(i, |e, now| e.handle_timeout(now));
        }
        self.pump();
    }

    /// The nodes that lead, in id order.
    pub fn leaders(&self) -> Vec<NodeId> {
        (0..self.cluster.len() as u32)
            .map(NodeId)
            .filter(|&i| self.cluster.engine(i).is_some_and(|e| e.is_leader()))
            .collect()
    }

    /// The leader every running engine follows (or is), if they all agree.
    pub fn agreed(&self) -> Option<LeaderRef> {
        let mut engines = self
            .cluster
            .members
            .iter()
            .filter_map(|m| m.engine.as_ref());
        let l = engines.next()?.leader()?;
        engines.all(|e| e.leader() == Some(l)).then_some(l)
    }
}

#[cfg(test)]
mod tests;
