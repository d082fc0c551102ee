//! The quorum simulator's network and faults: FIFO connections that delay, lose (with the
//! connection) and duplicate messages, links cut both ways or one way, partitions, crashes,
//! graceful stops, restarts, freezes.
//!
//! Why apart from `sim.rs`: this is the adversary (what can go wrong between and inside
//! nodes), while `sim.rs` is the event loop and the clocks; each reads on its own.

use std::time::Duration;

use gen_leader::election::ElectionMsg;
use gen_leader::NodeId;
use rand::rngs::StdRng;
use rand::Rng;

use super::{ms, Ev, Fault, Sim, FAILURE_TIMEOUT};

impl Sim {
    /// Sends over the a-b connection, FIFO like the TCP connection it models: a message
    /// delayed (lossy links: up to `E`) holds back those behind it. Lossy links also lose
    /// a message with its connection (2 %) and duplicate one (2 %: the copy right behind the
    /// original) while faults are on.
    pub(super) fn send(&mut self, from: NodeId, to: NodeId, msg: ElectionMsg) {
        let (f, t) = (from.index(), to.index());
        let Some(epoch) = self.conn[f][t] else {
            return;
        };
        if !self.link[f][t] {
            return;
        }
        let mut copies = 1;
        let mut latency = Duration::from_micros(self.rng.random_range(50..2_000));
        if self.shape.lossy && self.faults_on {
            let r: f64 = self.rng.random();
            if r < 0.02 {
                // A real connection loses a message only with the connection (TCP, or the
                // transport closing a connection whose send queue is full): this one and
                // every message in flight on it are lost, both ends notice, it reconnects.
                let l = format!(
                    "{:9.3} drop n{}->n{} {msg:?}, and the connection",
                    self.ms(),
                    from.0,
                    to.0
                );
                self.note(l);
                let (df, dt) = (self.timeout_detect(), self.timeout_detect());
                self.break_conn(f, t, df, dt);
                return;
            } else if r < 0.04 {
                copies = 2;
            } else if r < 0.08 {
                // Delays up to the lease time E.
                let e = self.shape.quorum.lease.as_micros() as u64;
                latency += Duration::from_micros(self.rng.random_range(5_000..=e));
            }
        }
        let at = (self.now + latency).max(self.fifo[f][t]);
        self.fifo[f][t] = at;
        for _ in 0..copies {
            self.at(
                at - self.now,
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
    pub(super) fn reconnect(&mut self) {
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
            Fault::Stop(x) => {
                let i = x.index();
                if !self.alive(i) {
                    return;
                }
                let now = self.local(i);
                if let Some(e) = self.engine_mut(i) {
                    e.handle_shutdown(now);
                }
                self.drain(i);
                // Then it handles nothing more; what it sent (its `StepDown`) is on the wire
                // ahead of the connection's close, which comes 5 ms later.
                self.nodes[i].frozen = true;
                self.at(ms(5), Ev::Fault(Fault::Crash(x)));
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
        match rng.random_range(0..11) {
            0 => Fault::Cut(a, b),
            1 => Fault::CutOneWay(a, b),
            2 => Fault::Heal(a, b),
            3 => {
                let side: Vec<NodeId> = (0..n)
                    .filter(|_| rng.random_bool(0.5))
                    .map(NodeId)
                    .collect();
                Fault::Partition(side)
            }
            4 => Fault::HealAll,
            5 => Fault::Crash(a),
            6 => Fault::Restart(a),
            7 => Fault::Freeze(a),
            8 => Fault::Resume(a),
            9 => Fault::Stop(a),
            _ => Fault::HealAll,
        }
    }
}
