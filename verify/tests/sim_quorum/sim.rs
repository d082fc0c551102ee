//! The quorum simulator's machinery: engines on a seeded, faulty, timed network, each node on
//! its own drifting clock, and the invariants checked at every event in true time.
//!
//! Why apart from `verify/tests/sim_quorum.rs`: that file says *what* a run does (its phases and
//! bounds); this one is *how* the world is simulated: the event loop, timers, the clocks. Its
//! submodules are the adversary (`network.rs`: links and faults) and what is checked after
//! every single event (`checks.rs`: overlapping leases, fencing tokens, and the shared
//! harness's one leader per term and per-node invariants).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use gen_leader::election::testing::Cluster;
use gen_leader::election::{ElectionMsg, Engine, EngineConfig, Output, QuorumParams, Role};
use gen_leader::{NodeId, Term};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::clock::Clock;

#[path = "checks.rs"]
mod checks;
#[path = "network.rs"]
mod network;

pub const FAILURE_TIMEOUT: Duration = Duration::from_millis(600);
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(150);
pub const STARTUP_TIMEOUT: Duration = Duration::from_millis(500);
pub const ANNOUNCE: Duration = Duration::from_millis(1000);
pub const RECONNECT: Duration = Duration::from_millis(50);

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
/// `ρ`: every clock's rate is within `1 ± ρ` (1 %).
pub const RHO_PPM: i64 = 10_000;
/// How many log lines a failure report shows (the log keeps no more).
const LOG_TAIL: usize = 300;

/// How the nodes' clock rates are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clocks {
    /// Each node's rate uniform in `1 ± ρ`, fixed for the run.
    Uniform,
    /// Each node's rate `1 − ρ` or `1 + ρ`, fixed for the run.
    Extremes,
    /// The worst case, adapted as the run goes: every node that leads runs at `1 − ρ` (its
    /// lease ends as late as possible in true time), every other at `1 + ρ` (its promises
    /// end as early as possible); rates switch (without a jump) whenever leadership moves.
    Adversarial,
}

#[derive(Debug, Clone)]
pub enum Fault {
    Cut(NodeId, NodeId),
    CutOneWay(NodeId, NodeId),
    Heal(NodeId, NodeId),
    Partition(Vec<NodeId>),
    HealAll,
    Crash(NodeId),
    /// A graceful shutdown (`handle_shutdown`: a quorum-mode leader sends `StepDown`), then
    /// the process is gone as in a crash.
    Stop(NodeId),
    Restart(NodeId),
    Freeze(NodeId),
    Resume(NodeId),
}

#[derive(Debug, Clone)]
enum Ev {
    Deliver {
        from: NodeId,
        to: NodeId,
        epoch: u64,
        msg: ElectionMsg,
    },
    /// `node`'s timer, valid while its timer generation is `gen`.
    Timer {
        node: NodeId,
        gen: u64,
    },
    /// `node` notices that its connection to `peer` is gone (ignored if a new connection
    /// replaced it meanwhile).
    Detect {
        node: NodeId,
        peer: NodeId,
    },
    Reconnect,
    Fault(Fault),
}

/// What the simulator adds to a [`Cluster`] member: its clock, timer, freezing.
struct SimNode {
    clock: Clock,
    /// Bumped whenever the pending timer is replaced (new deadline, crash, rate change).
    gen: u64,
    frozen: bool,
    buffered: Vec<Ev>,
    /// The pending timer's deadline, on the node's clock.
    timer_at: Option<Instant>,
}

/// One interval during which a node was acting (`is_acting` on its own clock), in true time.
#[derive(Clone, Copy, Debug)]
pub struct Acting {
    pub node: usize,
    pub term: Term,
    pub start: Instant,
    /// The end: final once closed; while open, when the lease ends unless renewed.
    pub end: Instant,
    /// While open, the lease end on the node's clock.
    until_local: Instant,
    pub open: bool,
}

/// The cluster shape and protocol parameters of a run.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n_cands: usize,
    pub n_workers: usize,
    pub lossy: bool,
    pub clocks: Clocks,
    pub preempt: bool,
    pub quorum: QuorumParams,
}

pub struct Sim {
    pub seed: u64,
    pub rng: StdRng,
    pub t0: Instant,
    /// True time.
    pub now: Instant,
    pub n: usize,
    pub n_cands: usize,
    pub shape: Shape,
    /// The engines, their persisted terms and the invariant checks (`election::testing`).
    pub cluster: Cluster,
    nodes: Vec<SimNode>,
    /// `link[a][b]`: messages from a reach b.
    link: Vec<Vec<bool>>,
    /// Connection epoch between a and b (symmetric), if connected.
    conn: Vec<Vec<Option<u64>>>,
    /// `fifo[a][b]`: when the last message sent from a to b arrives (links are FIFO).
    fifo: Vec<Vec<Instant>>,
    next_epoch: u64,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    events: Vec<Option<Ev>>,
    seq: u64,
    /// Drops, duplicates and long delays while `faults_on`.
    pub faults_on: bool,
    log: VecDeque<String>,
    /// Lines logged in total (the log keeps the last [`LOG_TAIL`]); with a hash of them all.
    pub logged: usize,
    pub log_hash: u64,
    verbose: bool,
    /// Every acting interval so far, and each node's open one.
    pub acting: Vec<Acting>,
    open: Vec<Option<usize>>,
    /// The highest term that acted so far, and its node (fencing tokens).
    max_acted: Option<(Term, usize)>,
    /// The first violation, with the report.
    pub failure: Option<String>,
}

impl Sim {
    pub fn new(seed: u64, shape: Shape) -> Sim {
        let n = shape.n_cands + shape.n_workers;
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(seed);
        let cluster = Cluster::with(n as u32, |i| EngineConfig {
            me: NodeId(i),
            n_candidates: shape.n_cands as u32,
            n_nodes: n as u32,
            election_timeout: ELECTION_TIMEOUT,
            startup_timeout: STARTUP_TIMEOUT,
            preempt: shape.preempt,
            announce_interval: ANNOUNCE,
            seed: 0, // drawn at every (re)start
            initial_term: Term(0),
            proposal_floor: Term(0),
            quorum: Some(shape.quorum),
        });
        let nodes = (0..n)
            .map(|_| {
                let offset = Duration::from_millis(rng.random_range(0..100_000));
                let ppm = match shape.clocks {
                    Clocks::Uniform => rng.random_range(-RHO_PPM..=RHO_PPM),
                    Clocks::Extremes if rng.random_bool(0.5) => -RHO_PPM,
                    Clocks::Extremes => RHO_PPM,
                    Clocks::Adversarial => RHO_PPM, // nobody leads yet
                };
                SimNode {
                    clock: Clock::new(offset, ppm),
                    gen: 0,
                    frozen: false,
                    buffered: Vec::new(),
                    timer_at: None,
                }
            })
            .collect();
        let mut sim = Sim {
            seed,
            rng,
            t0,
            now: t0,
            n,
            n_cands: shape.n_cands,
            shape,
            cluster,
            nodes,
            link: vec![vec![true; n]; n],
            conn: vec![vec![None; n]; n],
            fifo: vec![vec![t0; n]; n],
            next_epoch: 1,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            seq: 0,
            faults_on: true,
            log: VecDeque::new(),
            logged: 0,
            log_hash: 0,
            verbose: std::env::var("SIM_VERBOSE").is_ok(),
            acting: Vec::new(),
            open: vec![None; n],
            max_acted: None,
            failure: None,
        };
        for i in 0..n {
            // Staggered starts.
            let d = Duration::from_micros(sim.rng.random_range(0..300_000));
            sim.at(d, Ev::Fault(Fault::Restart(NodeId(i as u32))));
        }
        sim.at(RECONNECT, Ev::Reconnect);
        sim
    }

    pub fn ms(&self) -> f64 {
        self.now.duration_since(self.t0).as_secs_f64() * 1000.0
    }

    fn ms_of(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.t0).as_secs_f64() * 1000.0
    }

    fn note(&mut self, line: String) {
        // FNV-1a over every line, so that two runs of a seed can be compared exactly.
        let mut h = self.log_hash ^ 0xcbf2_9ce4_8422_2325;
        for b in line.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.log_hash = h;
        self.logged += 1;
        if self.log.len() == LOG_TAIL {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    fn at(&mut self, after: Duration, ev: Ev) {
        self.seq += 1;
        self.events.push(Some(ev));
        self.queue
            .push(Reverse((self.now + after, self.seq, self.events.len() - 1)));
    }

    /// Schedules a fault `after` from now.
    pub fn fault_at(&mut self, after: Duration, f: Fault) {
        self.at(after, Ev::Fault(f));
    }

    /// Node `i`'s clock reading now.
    pub fn local(&self, i: usize) -> Instant {
        self.nodes[i].clock.local(self.t0, self.now)
    }

    pub fn engine(&self, i: usize) -> Option<&Engine> {
        self.cluster.engine(NodeId(i as u32))
    }

    fn engine_mut(&mut self, i: usize) -> Option<&mut Engine> {
        self.cluster.engine_mut(NodeId(i as u32))
    }

    fn alive(&self, i: usize) -> bool {
        self.cluster.members[i].engine.is_some() && !self.nodes[i].frozen
    }

    /// Whether node `i` acts as leader now (on its own clock).
    pub fn is_acting(&self, i: usize) -> bool {
        let local = self.local(i);
        self.engine(i).is_some_and(|e| e.is_acting(local))
    }

    /// Runs until `until` (true time), or until the first violation.
    pub fn run_until(&mut self, until: Instant) -> Result<(), String> {
        while let Some(Reverse((t, _, idx))) = self.queue.peek().copied() {
            if t > until || self.failure.is_some() {
                break;
            }
            self.queue.pop();
            self.now = t;
            let ev = self.events[idx].take().expect("event once");
            self.step(ev);
        }
        if self.failure.is_none() {
            self.now = until;
        }
        self.result()
    }

    pub fn result(&self) -> Result<(), String> {
        match &self.failure {
            Some(f) => Err(f.clone()),
            None => Ok(()),
        }
    }

    /// Runs in steps of 10 ms until `done` holds (returns when) or `deadline` passes.
    pub fn wait_for(
        &mut self,
        deadline: Instant,
        what: &str,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<Instant, String> {
        loop {
            if done(self) {
                return Ok(self.now);
            }
            if self.now >= deadline {
                return Err(self.fail(what));
            }
            let next = (self.now + Duration::from_millis(10)).min(deadline);
            self.run_until(next)?;
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Reconnect => {
                self.reconnect();
                let j = Duration::from_micros(self.rng.random_range(0..20_000));
                self.at(RECONNECT + j, Ev::Reconnect);
            }
            Ev::Fault(f) => self.fault(f),
            Ev::Deliver { to, .. } | Ev::Timer { node: to, .. } | Ev::Detect { node: to, .. }
                if self.nodes[to.index()].frozen =>
            {
                self.nodes[to.index()].buffered.push(ev);
            }
            Ev::Deliver {
                from,
                to,
                epoch,
                msg,
            } => {
                if self.conn[from.index()][to.index()] != Some(epoch) {
                    return; // the connection it travelled on is gone
                }
                let now = self.local(to.index());
                if let Some(e) = self.engine_mut(to.index()) {
                    e.handle_message(now, from, msg);
                }
                self.drain(to.index());
            }
            Ev::Timer { node, gen } => {
                let i = node.index();
                if self.nodes[i].gen != gen {
                    return;
                }
                self.nodes[i].timer_at = None;
                let now = self.local(i);
                if let Some(e) = self.engine_mut(i) {
                    e.handle_timeout(now);
                }
                self.drain(i);
            }
            Ev::Detect { node, peer } => {
                let i = node.index();
                // Only if no newer connection replaced it meanwhile.
                let stale = self.conn[i][peer.index()].is_some();
                let now = self.local(i);
                if let Some(e) = self.engine_mut(i) {
                    if !stale {
                        e.handle_peer_down(now, peer);
                    }
                }
                self.drain(i);
            }
        }
    }

    /// Drains node `i` through the cluster (which answers `Elected` and checks one leader per
    /// term and every engine's invariants), sends its messages, checks the leases and fencing
    /// tokens at this instant, adapts adversarial clocks, and re-arms timers.
    fn drain(&mut self, i: usize) {
        let outs = self.cluster.drain(NodeId(i as u32));
        for out in outs {
            match out {
                Output::Send { to, msg } => {
                    if self.verbose {
                        let l = format!("{:9.3} n{i} -> n{} {msg:?}", self.ms(), to.0);
                        self.note(l);
                    }
                    self.send(NodeId(i as u32), to, msg);
                }
                Output::PersistTerm(_) => {}
                Output::Lease { term, until } if !self.verbose => {
                    let _ = (term, until);
                }
                Output::Lease { term, until } => {
                    let end = self.nodes[i].clock.true_at(self.t0, until);
                    let l = format!(
                        "{:9.3} n{i} lease term {term} until {:.3} (true)",
                        self.ms(),
                        self.ms_of(end)
                    );
                    self.note(l);
                }
                Output::Elected { joined, term } => {
                    let l = format!(
                        "{:9.3} n{i} elected term {term} joined {joined:?}",
                        self.ms()
                    );
                    self.note(l);
                }
                Output::Surrendered { leader, term, .. } => {
                    let l = format!(
                        "{:9.3} n{i} surrendered to n{} term {term}",
                        self.ms(),
                        leader.0
                    );
                    self.note(l);
                }
                other => {
                    let l = format!("{:9.3} n{i} {other:?}", self.ms());
                    self.note(l);
                }
            }
        }
        self.check();
        self.adapt_clocks();
        self.arm(i);
    }

    /// (Re)arms node `i`'s timer for the engine's next deadline, converted to true time.
    fn arm(&mut self, i: usize) {
        let want = self.engine(i).and_then(|e| e.poll_timeout());
        if self.nodes[i].timer_at == want {
            return;
        }
        self.nodes[i].gen += 1;
        self.nodes[i].timer_at = want;
        if let Some(w) = want {
            let at = self.nodes[i].clock.true_at(self.t0, w).max(self.now);
            let gen = self.nodes[i].gen;
            self.at(
                at - self.now,
                Ev::Timer {
                    node: NodeId(i as u32),
                    gen,
                },
            );
        }
    }

    /// Adversarial clocks: leaders slow, everyone else fast (no jump at a change).
    fn adapt_clocks(&mut self) {
        if self.shape.clocks != Clocks::Adversarial {
            return;
        }
        for i in 0..self.n {
            let leads = self.engine(i).is_some_and(|e| e.is_leader());
            let ppm = if leads { -RHO_PPM } else { RHO_PPM };
            if self.nodes[i].clock.ppm() != ppm {
                let (t0, now) = (self.t0, self.now);
                self.nodes[i].clock.set_ppm(t0, now, ppm);
                // The pending deadline now falls at another true instant.
                self.nodes[i].timer_at = None;
                self.arm(i);
            }
        }
    }

    /// All running nodes among `group` follow one leader in `group` (which leads, acts on its
    /// clock and has every other node of `group` as a follower), and none is electing.
    pub fn group_agreement(&self, group: &[usize]) -> Option<(usize, Term)> {
        let first = self.engine(*group.first()?)?.leader()?;
        let l = first.node.index();
        for &i in group {
            let e = self.engine(i)?;
            if e.leader() != Some(first) || !matches!(e.role(), Role::Leader | Role::Follower) {
                return None;
            }
        }
        let le = self.engine(l).filter(|_| group.contains(&l))?;
        let followers: Vec<usize> = le.followers().iter().map(|f| f.index()).collect();
        let others: Vec<usize> = group.iter().copied().filter(|&i| i != l).collect();
        let all_follow = others.iter().all(|o| followers.contains(o));
        (le.is_leader() && self.is_acting(l) && all_follow).then_some((l, first.term))
    }

    /// Every node agrees on one acting leader (which has every other node as a follower).
    pub fn agreement(&self) -> Option<(usize, Term)> {
        let all: Vec<usize> = (0..self.n).collect();
        self.cluster.agreement().ok()?;
        self.group_agreement(&all)
    }

    /// The index of `i`'s open acting interval, if it acts.
    pub fn open_interval(&self, i: usize) -> Option<usize> {
        self.open[i]
    }

    /// Records the first violation with the report (seed, last events, node states,
    /// acting intervals, how to replay) and returns it.
    pub fn fail(&mut self, what: &str) -> String {
        if let Some(f) = &self.failure {
            return f.clone();
        }
        let mut s = format!(
            "seed {} ({:?}): {what}\n--- last events (true ms) ---\n",
            self.seed, self.shape
        );
        for l in &self.log {
            s.push_str(l);
            s.push('\n');
        }
        for i in 0..self.n {
            let local = self.local(i);
            let st = self.engine(i).map(|e| {
                (
                    e.role(),
                    e.leader(),
                    e.term(),
                    e.is_acting(local),
                    e.no_quorum(),
                )
            });
            let _ = writeln!(
                s,
                "n{i}: clock {:+} ppm, frozen={} (role, leader, term, acting, no_quorum)={st:?}",
                self.nodes[i].clock.ppm(),
                self.nodes[i].frozen
            );
        }
        s.push_str("--- acting intervals (true ms) ---\n");
        for a in &self.acting {
            let _ = writeln!(
                s,
                "n{} term {} [{:.3}, {:.3}){}",
                a.node,
                a.term,
                self.ms_of(a.start),
                self.ms_of(a.end),
                if a.open { " open" } else { "" }
            );
        }
        self.failure = Some(s.clone());
        s
    }
}
