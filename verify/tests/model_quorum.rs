//! Model checking of the election engine in **quorum mode** with [stateright].
//!
//! Three candidates (ids 0, 1, 2) run the real [`Engine`] with
//! `quorum: Some(QuorumParams { .. })`; the model only plays the network, the clock, crashes
//! and the driver, as `verify/tests/model.rs` does for bully mode (same interning and memoized
//! transitions, a smaller configuration).
//!
//! **Start.** The engines are created at virtual time 0 and connected at [`E_MS`]: a started
//! node grants nothing for `E`, and starting the model once that is over saves the BFS a
//! depth of waiting. Every pair is then connected (`handle_peer_up` both ways) and the
//! `Status` messages are in flight. A second initial state is the first election reached from
//! there by the model's own actions (deliveries in FIFO order, the earliest timer when nothing
//! is in flight), so that the BFS spends its depth on faults and timers around a sitting
//! leader.
//!
//! **Network.** In-flight messages are a multiset of `(from, to, msg)`: no order at all (a
//! stronger adversary than the real transport's FIFO connections), and within a fault budget
//! a message can be lost (`Drop`; duplicates are left to `verify/tests/model.rs`, to spend the depth
//! on timers and crashes). A link can be cut (`Cut`): what is in flight on it is lost and so is what is sent over it;
//! each end notices on its own (`Detect`), and once both have, the pair may `Reconnect`.
//! A node can crash (`Crash`, a fault): it is gone, with what is in flight to and from it; its
//! peers notice (`Detect`); once they all have, it may `Restart` from what its store keeps
//! (its promised term, as `initial_term` and `proposal_floor`) at the current time, and it
//! remembers no promise: it grants nothing for `E`.
//!
//! **Time.** One global virtual clock (whole milliseconds); every `handle_*` call gets it.
//! There is no drift in the model (`verify/tests/sim_quorum.rs` covers clock rates): what is abstracted
//! is *when* things happen. `Timer(i)` fires node `i`'s timer: the clock moves to
//! `max(now, deadline)` and `handle_timeout` runs, so any node's timer may fire before or after
//! any delivery and before or after any other node's timer (a late timer is a slow process).
//! Timers fire only within [`HORIZON_MS`]. `Settle(schedule)` delivers everything in flight,
//! and what that sends, one message at a time in FIFO or LIFO order (a shortcut for a sequence
//! of `Deliver`s, so that the BFS reaches elected clusters early and spends its depth on faults
//! and timers).
//!
//! **Properties**, `always`, checked on every state (the histories they read are accumulated
//! at every engine transition, inside `Settle` too):
//! * *at most one leader per term*: every `(term, node)` that led (an `Elected { joined: None
//!   }`, or `is_leader()` after a step) is kept;
//! * *every term that led was granted by a majority of the candidates*: the grants of a term
//!   to a node are the `Accept`s sent for it plus the proposer's own proposal;
//! * *the majorities behind two different leaderships intersect*;
//! * *at most one node acts at any instant*, and *fencing tokens only increase*: after every
//!   engine transition, at most one running node has `is_acting(now)`, and a node that acts does
//!   so in a term at least the highest that acted (the same node, if equal);
//! * *every engine keeps its invariants* (`election::testing::NodeChecker`).
//!
//! And `sometimes` (coverage witnesses): a leader is elected; a second node leads after a
//! first; a lease is renewed; a leader's lease runs out while it still believes it leads (it
//! no longer acts); a node restarts after an election.
//!
//! **Bounds.** Breadth-first up to [`TARGET_STATES`] generated states (`MODEL_STATES` for a
//! longer run). The negative control runs the same model with one node misconfigured (it
//! believes it is the only candidate: a majority of one) and must find every safety property
//! above broken.

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gen_leader::election::testing::NodeChecker;
use gen_leader::election::{Engine, EngineConfig, QuorumParams, Role};
use gen_leader::{NodeId, Term};
use stateright::{Checker, Expectation, Model, Path, Property};

#[path = "model_quorum/engines.rs"]
mod engines;
#[path = "model_quorum/msg.rs"]
mod msg;
use engines::{Effects, Input, Store};
use msg::Msg;

const N: u8 = 3;
const ELECTION_MS: u64 = 100;
const STARTUP_MS: u64 = 200;
const ANNOUNCE_MS: u64 = 1000;
/// `E`, the voters' promise.
const E_MS: u64 = 300;
const RENEW_MS: u64 = 150;
/// Fault budget: drops + link cuts + crashes.
const FAULTS: u8 = 2;
/// No timer fires past this point of virtual time.
const HORIZON_MS: u32 = 1500;
/// Generated states (with repeats) the BFS aims for.
const TARGET_STATES: usize = 1_000_000;
/// Unique states the BFS must have explored.
const MIN_UNIQUE_STATES: usize = 200_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Schedule {
    Fifo,
    Lifo,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    /// Interned engine of each node (its last one while it is down).
    nodes: [u32; N as usize],
    /// Crashed nodes: the promised term their store keeps.
    down: [Option<u16>; N as usize],
    now: u32,
    /// In-flight messages `(from, to, msg)`, a sorted multiset.
    net: Vec<(u8, u8, Msg)>,
    /// Cut links (also those of a crashed node): bit `pair_bit(a, b)`.
    cut: u8,
    faults_left: u8,
    /// Every `(term, node)` that ever led, sorted.
    led: Vec<(u16, u8)>,
    /// Every `(term, grantee, granter)`, sorted.
    grants: Vec<(u16, u8, u8)>,
    /// The highest `(term, node)` that acted.
    acted: Option<(u16, u8)>,
    /// Two nodes acted at one instant.
    overlap: bool,
    /// A node acted in a term below one that acted before.
    fencing: bool,
    renewed: bool,
    /// A node still led, but its lease had run out (it did not act).
    lapsed: bool,
    restarted_after_election: bool,
    /// The first invariant of one engine that a step broke.
    broken: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    Deliver(u8, u8, Msg),
    Drop(u8, u8, Msg),
    Timer(u8),
    Cut(u8, u8),
    Detect(u8, u8),
    Reconnect(u8, u8),
    Crash(u8),
    Restart(u8),
    Settle(Schedule),
}

fn pair_bit(a: u8, b: u8) -> u8 {
    // (0,1) (0,2) (1,2)
    1 << (a + b - 1)
}

fn insert_sorted<T: Ord>(v: &mut Vec<T>, x: T) {
    let i = v.partition_point(|y| *y <= x);
    v.insert(i, x);
}

fn insert_set<T: Ord>(v: &mut Vec<T>, x: T) {
    if let Err(i) = v.binary_search(&x) {
        v.insert(i, x);
    }
}

/// Whether two different nodes appear for the same term.
fn two_in_a_term(v: &[(u16, u8)]) -> bool {
    v.windows(2).any(|w| w[0].0 == w[1].0 && w[0].1 != w[1].1)
}

/// The candidates that granted `term` to `node`.
fn granters(s: &State, term: u16, node: u8) -> u8 {
    s.grants
        .iter()
        .filter(|g| g.0 == term && g.1 == node && g.2 < N)
        .fold(0, |m, g| m | 1 << g.2)
}

/// Every leadership was granted by a majority of the candidates.
fn majority_granted(s: &State) -> bool {
    s.led
        .iter()
        .all(|&(t, l)| granters(s, t, l).count_ones() > u32::from(N) / 2)
}

/// The grant sets of every two different leaderships share a candidate.
fn majorities_intersect(s: &State) -> bool {
    s.led.iter().enumerate().all(|(i, &(t1, l1))| {
        s.led[i + 1..]
            .iter()
            .all(|&(t2, l2)| granters(s, t1, l1) & granters(s, t2, l2) != 0)
    })
}

struct QuorumModel {
    t0: Instant,
    cfgs: [EngineConfig; N as usize],
    faults: u8,
    store: RwLock<Store>,
}

fn params() -> QuorumParams {
    QuorumParams {
        lease: Duration::from_millis(E_MS),
        drift_ppm: 10_000,
        margin: Duration::ZERO,
        renew_interval: Duration::from_millis(RENEW_MS),
        durable: true,
        sticky: true,
    }
}

fn cfg(me: u32) -> EngineConfig {
    EngineConfig {
        me: NodeId(me),
        n_candidates: u32::from(N),
        n_nodes: u32::from(N),
        election_timeout: Duration::from_millis(ELECTION_MS),
        startup_timeout: Duration::from_millis(STARTUP_MS),
        preempt: false,
        announce_interval: Duration::from_millis(ANNOUNCE_MS),
        seed: u64::from(me) * 7919 + 1,
        initial_term: Term(0),
        proposal_floor: Term(0),
        quorum: Some(params()),
    }
}

impl QuorumModel {
    fn new(cfgs: [EngineConfig; N as usize], faults: u8) -> Self {
        QuorumModel {
            t0: Instant::now(),
            cfgs,
            faults,
            store: RwLock::new(Store::default()),
        }
    }

    fn at(&self, ms: u32) -> Instant {
        self.t0 + Duration::from_millis(u64::from(ms))
    }

    fn ms(&self, t: Instant) -> u32 {
        let ns = t.duration_since(self.t0).as_nanos();
        u32::try_from(ns.div_ceil(1_000_000)).expect("virtual time stays small")
    }

    /// Records what a transition of node `i` led, granted and renewed, then checks the
    /// instant: at most one running node acting, fencing tokens never going back.
    fn record(&self, s: &mut State, i: u8, eff: &Effects) {
        for &t in &eff.elected {
            insert_set(&mut s.led, (t, i));
        }
        for &(t, to) in &eff.grants {
            insert_set(&mut s.grants, (t, to, i));
        }
        s.renewed |= eff.renewed;
        if let (None, Some(v)) = (&s.broken, &eff.broken) {
            s.broken = Some(format!("n{i}: {v}"));
        }
        let now = self.at(s.now);
        let mut acting = 0;
        for j in 0..N {
            if s.down[usize::from(j)].is_some() {
                continue;
            }
            let l = self.local(s.nodes[usize::from(j)]);
            if l.is_leader {
                insert_set(&mut s.led, (l.term, j));
            }
            s.lapsed |= l.is_leader && !l.engine.is_acting(now);
            if l.engine.is_acting(now) {
                acting += 1;
                match s.acted {
                    Some((t, n)) if l.term < t || (l.term == t && n != j) => s.fencing = true,
                    _ => s.acted = Some((l.term, j)),
                }
            }
        }
        s.overlap |= acting > 1;
    }

    /// Gives `input` to node `i`; returns the messages it sent (not yet in the network).
    fn apply(&self, s: &mut State, i: u8, input: Input) -> Arc<Effects> {
        let (next, eff) = self.step(s.nodes[usize::from(i)], s.now, input);
        s.nodes[usize::from(i)] = next;
        self.record(s, i, &eff);
        eff
    }

    /// `apply`, then the sent messages go into the (faulty) network.
    fn apply_net(&self, s: &mut State, i: u8, input: Input) {
        let eff = self.apply(s, i, input);
        for &(to, m) in &eff.sends {
            if s.cut & pair_bit(i, to) == 0 {
                insert_sorted(&mut s.net, (i, to, m));
            }
        }
    }

    fn connected(&self, s: &State, a: u8, b: u8) -> bool {
        s.down[usize::from(a)].is_none()
            && self.local(s.nodes[usize::from(a)]).connected & (1 << b) != 0
    }

    fn settle(&self, s: &mut State, order: Schedule) {
        let mut queue: std::collections::VecDeque<(u8, u8, Msg)> =
            std::mem::take(&mut s.net).into();
        for _ in 0..10_000 {
            let next = match order {
                Schedule::Fifo => queue.pop_front(),
                Schedule::Lifo => queue.pop_back(),
            };
            let Some((f, t, m)) = next else { break };
            let eff = self.apply(s, t, Input::Msg(f, m));
            for &(to, m) in &eff.sends {
                if s.cut & pair_bit(t, to) == 0 {
                    queue.push_back((t, to, m));
                }
            }
        }
        s.net = queue.into();
        s.net.sort_unstable();
    }

    /// A second initial state, reached from `s` by the model's own actions (`Settle(Fifo)`
    /// while messages are in flight, else the earliest timer) until a leader acts and every
    /// node follows it: the BFS then spends its whole depth on faults and timers from there.
    fn first_election(&self, s: &State) -> Option<State> {
        let mut s = s.clone();
        for _ in 0..50 {
            let roles: Vec<Role> = (0..N)
                .map(|i| self.local(s.nodes[usize::from(i)]).engine.role())
                .collect();
            let leads = (0..N).any(|i| {
                self.local(s.nodes[usize::from(i)])
                    .engine
                    .is_acting(self.at(s.now))
            });
            if s.net.is_empty()
                && leads
                && roles
                    .iter()
                    .all(|r| matches!(r, Role::Leader | Role::Follower))
            {
                return Some(s);
            }
            let action = if s.net.is_empty() {
                let (_, i) = (0..N)
                    .filter_map(|i| Some((self.local(s.nodes[usize::from(i)]).timeout?, i)))
                    .min()?;
                Action::Timer(i)
            } else {
                Action::Settle(Schedule::Fifo)
            };
            s = self.next_state(&s, action)?;
        }
        None
    }

    fn summary(&self, s: &State) -> String {
        let mut out = format!("t={}ms", s.now);
        for i in 0..N {
            let l = self.local(s.nodes[usize::from(i)]);
            let e = &l.engine;
            if s.down[usize::from(i)].is_some() {
                let _ = write!(out, " | n{i} DOWN");
            } else {
                let _ = write!(
                    out,
                    " | n{i} {:?} term {} leader {:?} acting {}",
                    e.role(),
                    l.term,
                    e.leader().map(|l| (l.node.0, l.term.0)),
                    e.is_acting(self.at(s.now))
                );
            }
        }
        let net: Vec<String> = s
            .net
            .iter()
            .map(|&(f, t, m)| format!("n{f}->n{t} {m:?}"))
            .collect();
        let _ = write!(
            out,
            " | in flight {net:?} | cut {:#05b} faults left {} led {:?} grants {:?}",
            s.cut, s.faults_left, s.led, s.grants
        );
        out
    }
}

impl Model for QuorumModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let mut nodes = [0; N as usize];
        for (i, n) in nodes.iter_mut().enumerate() {
            let cfg = self.cfgs[i].clone();
            let chk = NodeChecker::new(&cfg).without_owned_terms();
            let mut e = Engine::new(cfg, self.at(0));
            let eff = self.drain(&mut e, chk);
            assert!(eff.sends.is_empty() && eff.broken.is_none());
            *n = self.intern(e);
        }
        let mut s = State {
            nodes,
            down: [None; N as usize],
            now: E_MS as u32,
            net: Vec::new(),
            cut: 0,
            faults_left: self.faults,
            led: Vec::new(),
            grants: Vec::new(),
            acted: None,
            overlap: false,
            fencing: false,
            renewed: false,
            lapsed: false,
            restarted_after_election: false,
            broken: None,
        };
        for i in 0..N {
            for j in 0..N {
                if i != j {
                    self.apply_net(&mut s, i, Input::Up(j));
                }
            }
        }
        // (None for a misconfigured cluster that never settles on one leader.)
        let elected = self.first_election(&s);
        std::iter::once(s).chain(elected).collect()
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let mut distinct = s.net.clone();
        distinct.dedup();
        for &(f, t, m) in &distinct {
            actions.push(Action::Deliver(f, t, m));
        }
        for i in 0..N {
            let up = s.down[usize::from(i)].is_none();
            let l = self.local(s.nodes[usize::from(i)]);
            if up && l.timeout.is_some_and(|d| d <= HORIZON_MS) {
                actions.push(Action::Timer(i));
            }
        }
        for a in 0..N {
            for b in a + 1..N {
                if s.cut & pair_bit(a, b) == 0 {
                    continue;
                }
                let a_knows = !self.connected(s, a, b);
                let b_knows = !self.connected(s, b, a);
                let a_up = s.down[usize::from(a)].is_none();
                let b_up = s.down[usize::from(b)].is_none();
                if !a_knows {
                    actions.push(Action::Detect(a, b));
                }
                if !b_knows {
                    actions.push(Action::Detect(b, a));
                }
                if a_knows && b_knows && a_up && b_up {
                    actions.push(Action::Reconnect(a, b));
                }
            }
        }
        for i in 0..N {
            let noticed = (0..N).all(|p| p == i || !self.connected(s, p, i));
            if s.down[usize::from(i)].is_some() && noticed {
                actions.push(Action::Restart(i));
            }
        }
        if s.faults_left > 0 {
            for &(f, t, m) in &distinct {
                actions.push(Action::Drop(f, t, m));
            }
            for a in 0..N {
                for b in a + 1..N {
                    if s.cut & pair_bit(a, b) == 0 {
                        actions.push(Action::Cut(a, b));
                    }
                }
                if s.down[usize::from(a)].is_none() {
                    actions.push(Action::Crash(a));
                }
            }
        }
        if !s.net.is_empty() {
            actions.push(Action::Settle(Schedule::Fifo));
            actions.push(Action::Settle(Schedule::Lifo));
        }
    }

    fn next_state(&self, prev: &State, action: Action) -> Option<State> {
        let mut s = prev.clone();
        let find = |s: &State, k: (u8, u8, Msg)| {
            s.net
                .binary_search(&k)
                .unwrap_or_else(|_| panic!("{k:?} is not in flight"))
        };
        match action {
            Action::Deliver(f, t, m) => {
                let i = find(&s, (f, t, m));
                s.net.remove(i);
                self.apply_net(&mut s, t, Input::Msg(f, m));
            }
            Action::Drop(f, t, m) => {
                let i = find(&s, (f, t, m));
                s.net.remove(i);
                s.faults_left -= 1;
            }
            Action::Timer(i) => {
                let d = self.local(s.nodes[usize::from(i)]).timeout?;
                s.now = s.now.max(d);
                self.apply_net(&mut s, i, Input::Timeout);
            }
            Action::Cut(a, b) => {
                s.faults_left -= 1;
                s.cut |= pair_bit(a, b);
                s.net.retain(|&(f, t, _)| pair_bit(f, t) != pair_bit(a, b));
            }
            Action::Detect(a, b) => self.apply_net(&mut s, a, Input::Down(b)),
            Action::Reconnect(a, b) => {
                s.cut &= !pair_bit(a, b);
                self.apply_net(&mut s, a, Input::Up(b));
                self.apply_net(&mut s, b, Input::Up(a));
            }
            Action::Crash(i) => {
                s.faults_left -= 1;
                s.down[usize::from(i)] = Some(self.local(s.nodes[usize::from(i)]).promised);
                s.net.retain(|&(f, t, _)| f != i && t != i);
                for p in (0..N).filter(|&p| p != i) {
                    s.cut |= pair_bit(i, p);
                }
                self.record(&mut s, i, &Effects::default());
            }
            Action::Restart(i) => {
                let promised = s.down[usize::from(i)].take()?;
                let mut cfg = self.cfgs[usize::from(i)].clone();
                cfg.initial_term = Term(promised.into());
                cfg.proposal_floor = Term(promised.into());
                let chk = NodeChecker::new(&cfg).without_owned_terms();
                let mut e = Engine::new(cfg, self.at(s.now));
                let eff = self.drain(&mut e, chk);
                s.nodes[usize::from(i)] = self.intern(e);
                s.restarted_after_election |= !s.led.is_empty();
                self.record(&mut s, i, &eff);
            }
            Action::Settle(order) => self.settle(&mut s, order),
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("at most one leader per term", |_, s: &State| {
                !two_in_a_term(&s.led)
            }),
            Property::always(
                "every term that led was granted by a majority of the candidates",
                |_, s: &State| majority_granted(s),
            ),
            Property::always(
                "the majorities behind two leaderships intersect",
                |_, s: &State| majorities_intersect(s),
            ),
            Property::always("at most one node acts at any instant", |_, s: &State| {
                !s.overlap
            }),
            Property::always("fencing tokens only increase", |_, s: &State| !s.fencing),
            Property::always(
                "every engine keeps its invariants (terms never decrease, persisted before use)",
                |_, s: &State| s.broken.is_none(),
            ),
            Property::sometimes("a leader is elected", |_, s: &State| !s.led.is_empty()),
            Property::sometimes("a second node leads after a first", |_, s: &State| {
                s.led.iter().any(|l| l.1 != s.led[0].1)
            }),
            Property::sometimes("a lease is renewed", |_, s: &State| s.renewed),
            Property::sometimes(
                "a leader's lease runs out before it learns it lost",
                |_, s: &State| s.lapsed,
            ),
            Property::sometimes("a node restarts after an election", |_, s: &State| {
                s.restarted_after_election
            }),
        ]
    }
}

fn print_path(m: &QuorumModel, name: &str, path: Path<State, Action>) -> String {
    let mut out = format!("counterexample for {name:?}:\n");
    for (state, action) in path.into_vec() {
        let _ = writeln!(out, "  {}", m.summary(&state));
        if let Some(a) = action {
            let _ = writeln!(out, "    -> {a:?}");
        }
    }
    out
}

/// Runs the BFS; returns the checker's discoveries by property, with the model.
fn check(
    model: QuorumModel,
    target: usize,
    stop_at: Option<&'static str>,
) -> (impl Checker<QuorumModel>, std::time::Duration) {
    let start = Instant::now();
    let mut builder = model.checker().threads(2).target_state_count(target);
    if let Some(p) = stop_at {
        builder = builder.finish_when(stateright::HasDiscoveries::AnyOf([p].into()));
    }
    let checker = builder.spawn_bfs().join();
    (checker, start.elapsed())
}

#[test]
fn quorum_model() {
    let target = std::env::var("MODEL_STATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TARGET_STATES);
    let model = QuorumModel::new([0, 1, 2].map(cfg), FAULTS);
    assert_eq!(
        model.init_states().len(),
        2,
        "no first election to start from"
    );
    let (checker, took) = check(model, target, None);
    let model = checker.model();
    let unique = checker.unique_state_count();
    {
        let st = model.store.read().unwrap();
        eprintln!(
            "quorum model (faults {FAULTS}, horizon {HORIZON_MS} ms): {unique} unique states, \
             {} generated, BFS depth {}, {took:.1?}; {} distinct engine states, {} engine \
             transitions",
            checker.state_count(),
            checker.max_depth(),
            st.locals.len(),
            st.memo.len()
        );
    }
    let mut failures = String::new();
    for p in model.properties() {
        match (p.expectation, checker.discovery(p.name)) {
            (Expectation::Sometimes, None) => {
                let _ = writeln!(failures, "no example for sometimes {:?}", p.name);
            }
            (Expectation::Sometimes, Some(path)) => {
                eprintln!(
                    "sometimes {:?}: example in {} steps",
                    p.name,
                    path.into_actions().len()
                );
            }
            (_, Some(path)) => failures.push_str(&print_path(model, p.name, path)),
            (e, None) => eprintln!("{e:?} {:?}: no counterexample", p.name),
        }
    }
    assert!(failures.is_empty(), "{failures}");
    assert!(
        unique >= MIN_UNIQUE_STATES,
        "explored only {unique} unique states (at least {MIN_UNIQUE_STATES} expected)"
    );
}

/// Negative control: **the safety properties can fail on the real engine.** Node 0 is
/// misconfigured to believe it is the only candidate (`n_candidates: 1`: a majority of one,
/// and every term its own), everything else as in `quorum_model` (the real node's handshake
/// refuses such a peer). The BFS must find each of: one leader per term, majority grants,
/// intersecting majorities, one node acting at a time.
#[test]
fn control_model_with_a_node_that_counts_itself_a_majority() {
    let mut cfgs = [0, 1, 2].map(cfg);
    cfgs[0].n_candidates = 1;
    let model = QuorumModel::new(cfgs, 0);
    let (checker, took) = check(model, 200_000, None);
    let model = checker.model();
    eprintln!(
        "misconfigured model: {} unique states, BFS depth {}, {took:.1?}",
        checker.unique_state_count(),
        checker.max_depth()
    );
    for name in [
        "at most one leader per term",
        "every term that led was granted by a majority of the candidates",
        "the majorities behind two leaderships intersect",
        "at most one node acts at any instant",
    ] {
        let path = checker
            .discovery(name)
            .unwrap_or_else(|| panic!("the model did not catch {name:?}: it cannot fail"));
        eprintln!(
            "caught {name:?} in {} steps",
            path.clone().into_actions().len()
        );
        if name == "at most one node acts at any instant" {
            eprintln!("{}", print_path(model, name, path));
        }
    }
}
