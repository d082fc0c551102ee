//! The quorum simulator's machinery: engines on a seeded, faulty, timed network, each node on
//! its own drifting clock, and the invariants checked at every event in true time.
//!
//! Why apart from `tests/sim_quorum.rs`: that file says *what* a run does (its phases and
//! bounds); this one is *how* the world is simulated (events, links, clocks) and what is
//! checked after every single event (overlapping leases, fencing tokens, and the shared
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

pub const FAILURE_TIMEOUT: Duration = Duration::from_millis(600);
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(150);
pub const STARTUP_TIMEOUT: Duration = Duration::from_millis(500);
pub const ANNOUNCE: Duration = Duration::from_millis(1000);
pub const RECONNECT: Duration = Duration::from_millis(50);
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
            preempt: false,
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
                    let l = format!("{:9.3} n{i} elected term {term} joined {joined:?}", self.ms());
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

    /// The checks at this instant (after any event): the shared cluster's invariants, and
    /// on every node's own clock, at most one node acting; acting intervals in true time;
    /// fencing tokens.
    fn check(&mut self) {
        if self.failure.is_some() {
            return;
        }
        if let Some(v) = self.cluster.violation() {
            let v = v.to_string();
            self.fail(&v);
            return;
        }
        let now = self.now;
        let mut acting_now = Vec::new();
        for i in 0..self.n {
            let local = self.local(i);
            let clock = self.nodes[i].clock;
            let state = self
                .engine(i)
                .filter(|e| e.is_acting(local))
                .map(|e| (e.term(), e.lease_until()));
            let state = match state {
                Some((term, Some(until))) => Some((term, until)),
                Some((term, None)) => {
                    self.fail(&format!("n{i} acts in term {term} without a lease"));
                    return;
                }
                None => None,
            };
            if let Some(k) = self.open[i] {
                let iv = &mut self.acting[k];
                let lapsed = clock.true_at(self.t0, iv.until_local);
                match state {
                    _ if lapsed <= now => {
                        // The lease ran out between two events, unrenewed.
                        iv.end = lapsed;
                        iv.open = false;
                        self.open[i] = None;
                    }
                    Some((term, until)) if term == iv.term => {
                        iv.until_local = until;
                        iv.end = clock.true_at(self.t0, until);
                    }
                    _ => {
                        // It stopped acting at this event (lost, stepped down, crashed).
                        iv.end = now;
                        iv.open = false;
                        self.open[i] = None;
                    }
                }
            }
            if let Some((term, until)) = state {
                acting_now.push((i, term));
                if self.open[i].is_none() {
                    if let Err(e) = self.fencing(i, term) {
                        self.fail(&e);
                        return;
                    }
                    self.open[i] = Some(self.acting.len());
                    self.acting.push(Acting {
                        node: i,
                        term,
                        start: now,
                        end: clock.true_at(self.t0, until),
                        until_local: until,
                        open: true,
                    });
                    let l = format!("{:9.3} n{i} ACTS term {term}", self.ms());
                    self.note(l);
                }
            }
        }
        if acting_now.len() > 1 {
            self.fail(&format!(
                "two nodes acting at once (overlapping leases): {acting_now:?}"
            ));
        }
    }

    /// A new acting interval of `i` in `term`: its fencing token must be above every token
    /// that acted before (or the same leadership resuming: same node, same highest term).
    fn fencing(&mut self, i: usize, term: Term) -> Result<(), String> {
        match self.max_acted {
            Some((t, n)) if term < t || (term == t && n != i) => Err(format!(
                "fencing token did not increase: n{i} acts in term {term} after n{n} acted in \
                 term {t}"
            )),
            _ => {
                self.max_acted = Some((term, i));
                Ok(())
            }
        }
    }

    /// Every two acting intervals of different nodes are disjoint (open ones end now at the
    /// latest): the pairwise form of the instant check, over the whole run.
    pub fn check_intervals(&mut self) -> Result<(), String> {
        let end = |a: &Acting| if a.open { a.end.min(self.now) } else { a.end };
        for (x, a) in self.acting.iter().enumerate() {
            for b in &self.acting[x + 1..] {
                if a.node != b.node && a.start < end(b) && b.start < end(a) {
                    let msg = format!("acting intervals overlap: {a:?} and {b:?}");
                    return Err(self.fail(&msg));
                }
            }
        }
        Ok(())
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: ElectionMsg) {
        let Some(epoch) = self.conn[from.index()][to.index()] else {
            return;
        };
        if !self.link[from.index()][to.index()] {
            return;
        }
        let mut copies = 1;
        let mut latency = Duration::from_micros(self.rng.random_range(50..2_000));
        if self.shape.lossy && self.faults_on {
            let r: f64 = self.rng.random();
            if r < 0.02 {
                let l = format!("{:9.3} drop n{}->n{} {msg:?}", self.ms(), from.0, to.0);
                self.note(l);
                return;
            } else if r < 0.04 {
                copies = 2;
            } else if r < 0.08 {
                // Delays up to the lease time E.
                let e = self.shape.quorum.lease.as_micros() as u64;
                latency += Duration::from_micros(self.rng.random_range(5_000..=e));
            }
        }
        for c in 0..copies {
            let extra = Duration::from_micros(c * self.rng.random_range(0..5_000));
            self.at(
                latency + extra,
                Ev::Deliver {
                    from,
                    to,
                    epoch,
                    msg: msg.clone(),
                },
            );
        }
    }

    /// Establishes missing connections where both ends are up and both links work.
    fn reconnect(&mut self) {
        for a in 0..self.n {
            for b in a + 1..self.n {
                if self.conn[a][b].is_some()
                    || !self.alive(a)
                    || !self.alive(b)
                    || !self.link[a][b]
                    || !self.link[b][a]
                {
                    continue;
                }
                let epoch = self.next_epoch;
                self.next_epoch += 1;
                self.conn[a][b] = Some(epoch);
                self.conn[b][a] = Some(epoch);
                for (x, y) in [(a, b), (b, a)] {
                    let now = self.local(x);
                    let e = self.engine_mut(x).unwrap();
                    if e.connected().contains(&NodeId(y as u32)) {
                        // The old connection is replaced: down, then up.
                        e.handle_peer_down(now, NodeId(y as u32));
                    }
                    e.handle_peer_up(now, NodeId(y as u32));
                }
                self.drain(a);
                self.drain(b);
            }
        }
    }

    /// Breaks the a-b connection; each live end notices after its delay.
    fn break_conn(&mut self, a: usize, b: usize, detect_a: Duration, detect_b: Duration) {
        if self.conn[a][b].take().is_none() {
            return;
        }
        self.conn[b][a] = None;
        for (x, y, d) in [(a, b, detect_a), (b, a, detect_b)] {
            if self.cluster.members[x].engine.is_some() {
                self.at(
                    d,
                    Ev::Detect {
                        node: NodeId(x as u32),
                        peer: NodeId(y as u32),
                    },
                );
            }
        }
    }

    fn timeout_detect(&mut self) -> Duration {
        FAILURE_TIMEOUT.mul_f64(self.rng.random_range(0.5..1.0))
    }

    pub fn fault(&mut self, f: Fault) {
        let l = format!("{:9.3} FAULT {f:?}", self.ms());
        self.note(l);
        match f {
            Fault::Cut(a, b) => {
                self.link[a.index()][b.index()] = false;
                self.link[b.index()][a.index()] = false;
                let (da, db) = (self.timeout_detect(), self.timeout_detect());
                self.break_conn(a.index(), b.index(), da, db);
            }
            Fault::CutOneWay(a, b) => {
                self.link[a.index()][b.index()] = false;
                // b stops hearing a (timeout); a then sees b close the connection.
                let db = self.timeout_detect();
                self.break_conn(a.index(), b.index(), db + Duration::from_millis(1), db);
            }
            Fault::Heal(a, b) => {
                self.link[a.index()][b.index()] = true;
                self.link[b.index()][a.index()] = true;
            }
            Fault::Partition(side) => {
                for a in 0..self.n {
                    for b in a + 1..self.n {
                        let ia = side.contains(&NodeId(a as u32));
                        let ib = side.contains(&NodeId(b as u32));
                        if ia != ib {
                            self.link[a][b] = false;
                            self.link[b][a] = false;
                            let (da, db) = (self.timeout_detect(), self.timeout_detect());
                            self.break_conn(a, b, da, db);
                        }
                    }
                }
            }
            Fault::HealAll => {
                for row in &mut self.link {
                    row.fill(true);
                }
            }
            Fault::Crash(x) => {
                let i = x.index();
                if self.cluster.members[i].engine.is_none() {
                    return;
                }
                for p in 0..self.n {
                    if p != i {
                        // Peers see the connection close at once (RST).
                        let d = Duration::from_micros(self.rng.random_range(10..1_000));
                        self.break_conn(p, i, d, d);
                    }
                }
                self.cluster.crash(x);
                let n = &mut self.nodes[i];
                n.frozen = false;
                n.buffered.clear();
                n.gen += 1;
                n.timer_at = None;
                self.check();
            }
            Fault::Restart(x) => {
                let i = x.index();
                if self.cluster.members[i].engine.is_some() {
                    return;
                }
                // From what its store keeps; its clock kept running (the same machine).
                let seed = self.rng.random();
                let now = self.local(i);
                self.cluster.start(x, now, Some(seed));
                self.drain(i);
                // Peers that are alive but not connected learn it is unreachable or not.
                for p in 0..self.n {
                    if p != i && (!self.alive(p) || !self.link[i][p] || !self.link[p][i]) {
                        let now = self.local(i);
                        self.engine_mut(i)
                            .unwrap()
                            .handle_peer_unreachable(now, NodeId(p as u32));
                    }
                }
                self.drain(i);
                self.reconnect();
            }
            Fault::Freeze(x) => {
                let i = x.index();
                if !self.alive(i) {
                    return;
                }
                // Receives nothing, its timers do not fire; its clock keeps running.
                self.nodes[i].frozen = true;
                for p in 0..self.n {
                    if p != i {
                        // Peers time out; the frozen node notices when it resumes.
                        let d = self.timeout_detect();
                        self.break_conn(p, i, d, Duration::ZERO);
                    }
                }
            }
            Fault::Resume(x) => {
                let i = x.index();
                if !self.nodes[i].frozen {
                    return;
                }
                self.nodes[i].frozen = false;
                let buffered = std::mem::take(&mut self.nodes[i].buffered);
                for ev in buffered {
                    self.step(ev);
                }
                // Its own timer fires late.
                self.nodes[i].timer_at = None;
                self.arm(i);
                let gen = self.nodes[i].gen;
                self.at(Duration::ZERO, Ev::Timer { node: x, gen });
            }
        }
    }

    pub fn random_fault(rng: &mut StdRng, n: usize) -> Fault {
        let n = n as u32;
        let a = NodeId(rng.random_range(0..n));
        let mut b = NodeId(rng.random_range(0..n));
        if b == a {
            b = NodeId((a.0 + 1) % n);
        }
        match rng.random_range(0..10) {
            0 => Fault::Cut(a, b),
            1 => Fault::CutOneWay(a, b),
            2 => Fault::Heal(a, b),
            3 => {
                let side: Vec<NodeId> = (0..n).filter(|_| rng.random_bool(0.5)).map(NodeId).collect();
                Fault::Partition(side)
            }
            4 => Fault::HealAll,
            5 => Fault::Crash(a),
            6 => Fault::Restart(a),
            7 => Fault::Freeze(a),
            8 => Fault::Resume(a),
            _ => Fault::HealAll,
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
