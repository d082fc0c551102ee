//! The real node runtime and transport under turmoil's simulated TCP and clock.
//!
//! Each node is a turmoil host running `Node::start_with` on turmoil's listener and
//! connector. Scenarios: partition the leader and heal; freeze the leader's host (its links
//! hold every message) and release; crash and restart under the same name; a flapping link.
//! After every simulation step: at most one leader per term across the nodes' views, and no
//! node's term goes down. After the faults: exactly one leader, all agree; broadcasts reached
//! the followers that stayed connected once and in order; the loser of a merge ran
//! `surrendered` with the winner's Synch.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Ev, Recorder};
use gen_leader::transport::{BoxFuture, BoxStream, Connector, Listener};
use gen_leader::{Config, LeaderHandle, Node};

const PORT: u16 = 4000;

struct TConnector;

impl Connector for TConnector {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxStream>> {
        Box::pin(async move {
            let s = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}

struct TListener(turmoil::net::TcpListener);

impl Listener for TListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, String)>> {
        Box::pin(async move {
            let (s, a) = self.0.accept().await?;
            Ok((Box::new(s) as BoxStream, a.to_string()))
        })
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        self.0.local_addr().ok()
    }
}

type Slot = Option<(LeaderHandle<Recorder>, Arc<Mutex<Vec<Ev>>>)>;

struct World {
    names: Vec<String>,
    slots: Arc<Mutex<Vec<Slot>>>,
    /// Highest term seen per node (across restarts).
    last_term: Vec<u64>,
    leader_of_term: BTreeMap<u64, String>,
    _dirs: Vec<tempfile::TempDir>,
}

fn host(i: usize) -> String {
    format!("n{i}")
}

fn build(n: usize, seed: u64) -> (turmoil::Sim<'static>, World) {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .tick_duration(Duration::from_millis(1))
        .rng_seed(seed)
        .build();
    let names: Vec<String> = (0..n).map(|i| format!("n{i}@{}:{PORT}", host(i))).collect();
    let slots: Arc<Mutex<Vec<Slot>>> = Arc::new(Mutex::new(vec![None; n]));
    let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    for i in 0..n {
        let names = names.clone();
        let slots = slots.clone();
        let dir = dirs[i].path().to_path_buf();
        sim.host(host(i), move || {
            let names = names.clone();
            let slots = slots.clone();
            let dir = dir.clone();
            async move {
                let cfg = Config::builder(&names[i])
                    .candidates(&names)
                    .cookie("turmoil")
                    .data_dir(dir)
                    .seed(i as u64)
                    .build()
                    .unwrap();
                let l = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
                let (b, events) = Recorder::new(&names[i]);
                let h = Node::start_with(cfg, b, TListener(l), TConnector)
                    .await
                    .map_err(|e| e.to_string())?;
                slots.lock().unwrap()[i] = Some((h, events));
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    (
        sim,
        World {
            names,
            slots,
            last_term: vec![0; n],
            leader_of_term: BTreeMap::new(),
            _dirs: dirs,
        },
    )
}

impl World {
    fn handle(&self, i: usize) -> LeaderHandle<Recorder> {
        self.slots.lock().unwrap()[i].as_ref().unwrap().0.clone()
    }
    fn events(&self, i: usize) -> Vec<Ev> {
        self.slots.lock().unwrap()[i]
            .as_ref()
            .unwrap()
            .1
            .lock()
            .unwrap()
            .clone()
    }
    /// Safety invariants over the current views.
    fn check(&mut self, running: &[bool]) {
        let slots = self.slots.lock().unwrap();
        for (i, s) in slots.iter().enumerate() {
            let Some((h, _)) = s else { continue };
            if !running[i] {
                continue;
            }
            let v = h.view();
            let t = v.term.get();
            assert!(
                t >= self.last_term[i],
                "term went down at {}: {} -> {t}",
                self.names[i],
                self.last_term[i]
            );
            self.last_term[i] = t;
            if v.is_leader() {
                let me = self.names[i].clone();
                let prev = self.leader_of_term.entry(t).or_insert(me.clone());
                assert_eq!(*prev, me, "two leaders in term {t}");
            }
        }
    }
    /// `Some(leader index)` when all running nodes agree on one running leader.
    fn agreed(&self, running: &[bool]) -> Option<usize> {
        let slots = self.slots.lock().unwrap();
        let mut views = Vec::new();
        for (i, s) in slots.iter().enumerate() {
            if running[i] {
                views.push(s.as_ref()?.0.view());
            }
        }
        let l = views[0].leader.clone()?;
        let t = views[0].term;
        if views
            .iter()
            .all(|v| v.leader.as_ref() == Some(&l) && v.term == t)
        {
            let idx = self.names.iter().position(|n| *n == l.to_string())?;
            running[idx].then_some(idx)
        } else {
            None
        }
    }
}

/// Steps the simulation for `d` of simulated time, checking invariants after every step.
fn run_for(sim: &mut turmoil::Sim<'_>, w: &mut World, d: Duration, running: &[bool]) {
    let end = sim.elapsed() + d;
    while sim.elapsed() < end {
        sim.step().unwrap();
        w.check(running);
    }
}

/// Steps until all running nodes agree; returns the leader and how long it took.
fn until_agreed(
    sim: &mut turmoil::Sim<'_>,
    w: &mut World,
    bound: Duration,
    running: &[bool],
) -> (usize, Duration) {
    let start = sim.elapsed();
    loop {
        sim.step().unwrap();
        w.check(running);
        if let Some(l) = w.agreed(running) {
            return (l, sim.elapsed() - start);
        }
        assert!(
            sim.elapsed() - start < bound,
            "no agreement within {bound:?} of simulated time"
        );
    }
}

fn surrendered_to(events: &[Ev], leader: &str) -> Vec<Vec<String>> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Surrendered {
                leader: l, synch, ..
            } if l == leader => Some(synch.clone()),
            _ => None,
        })
        .collect()
}

/// Issues `leader_call`s from node `from` in a client host; returns the replies.
fn calls(
    sim: &mut turmoil::Sim<'_>,
    w: &mut World,
    from: usize,
    msgs: &[&str],
    running: &[bool],
) -> Vec<String> {
    let h = w.handle(from);
    let want = msgs.len();
    let msgs: Vec<String> = msgs.iter().map(|s| s.to_string()).collect();
    let out = Arc::new(Mutex::new(Vec::new()));
    let out2 = out.clone();
    sim.client(format!("client{}", sim.elapsed().as_micros()), async move {
        for m in msgs {
            let r = h.leader_call(m).await.map_err(|e| e.to_string());
            out2.lock().unwrap().push(r);
        }
        Ok(())
    });
    let start = sim.elapsed();
    while out.lock().unwrap().len() < want {
        assert!(
            sim.elapsed() - start < Duration::from_secs(10),
            "calls did not finish"
        );
        sim.step().unwrap();
        w.check(running);
    }
    let r = out.lock().unwrap().clone();
    r.into_iter().map(|r| r.expect("leader_call")).collect()
}

#[test]
fn partition_the_leader_and_heal() {
    let (mut sim, mut w) = build(3, 1);
    let all = [true; 3];
    let (l, took) = until_agreed(&mut sim, &mut w, Duration::from_secs(5), &all);
    assert_eq!(l, 0);
    eprintln!("cold start: agreement after {took:?} of simulated time");
    let before = calls(&mut sim, &mut w, 2, &["a", "b"], &all);
    assert_eq!(
        before,
        vec![format!("{}:a", w.names[0]), format!("{}:b", w.names[0])]
    );

    sim.partition(host(0), host(1));
    sim.partition(host(0), host(2));
    // The majority side elects n1; n0 stays leader of itself (bully mode allows it).
    let minority = [false, true, true];
    let (l, took) = until_agreed(&mut sim, &mut w, Duration::from_secs(5), &minority);
    assert_eq!(l, 1);
    eprintln!("partitioned leader replaced after {took:?}");
    assert!(w.handle(0).is_leader());
    let during = calls(&mut sim, &mut w, 2, &["c"], &minority);
    assert_eq!(during, vec![format!("{}:c", w.names[1])]);

    sim.repair(host(0), host(1));
    sim.repair(host(0), host(2));
    let (l, took) = until_agreed(&mut sim, &mut w, Duration::from_secs(5), &all);
    eprintln!("one leader {took:?} after the heal");
    assert_eq!(l, 0, "the higher-priority leader remains");
    // The loser ran surrendered with the winner's Synch (n0's history: a, b).
    let s = surrendered_to(&w.events(1), &w.names[0]);
    assert_eq!(s.last().unwrap(), &vec!["a".to_string(), "b".to_string()]);
    run_for(&mut sim, &mut w, Duration::from_secs(3), &all);
    assert_eq!(w.agreed(&all), Some(0), "no flapping after the heal");
    // Node 2 stayed connected to the leader of each term and saw each broadcast once, in
    // order.
    let got: Vec<String> = w
        .events(2)
        .into_iter()
        .filter_map(|e| match e {
            Ev::FromLeader(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec!["a", "b", "c"]);
}

#[test]
fn frozen_leader_host_is_replaced_and_one_leader_remains_after_release() {
    let (mut sim, mut w) = build(3, 2);
    let all = [true; 3];
    until_agreed(&mut sim, &mut w, Duration::from_secs(5), &all);
    let term0 = w.handle(1).term();
    sim.hold(host(0), host(1));
    sim.hold(host(0), host(2));
    let others = [false, true, true];
    let (l, took) = until_agreed(&mut sim, &mut w, Duration::from_secs(5), &others);
    assert_eq!(l, 1);
    assert!(w.handle(1).term() > term0);
    eprintln!("frozen leader replaced after {took:?} (failure timeout 600 ms)");
    run_for(&mut sim, &mut w, Duration::from_secs(1), &others);
    sim.release(host(0), host(1));
    sim.release(host(0), host(2));
    let (l, took) = until_agreed(&mut sim, &mut w, Duration::from_secs(5), &all);
    eprintln!("one leader ({l}) {took:?} after the release");
    run_for(&mut sim, &mut w, Duration::from_secs(3), &all);
    assert_eq!(w.agreed(&all), Some(l), "no flapping");
}

#[test]
fn crash_and_restart_under_the_same_name() {
    let (mut sim, mut w) = build(3, 3);
    let all = [true; 3];
    until_agreed(&mut sim, &mut w, Duration::from_secs(5), &all);
    let term_before = w.handle(1).term().get();
    sim.crash(host(0));
    let others = [false, true, true];
    let (l, _) = until_agreed(&mut sim, &mut w, Duration::from_secs(5), &others);
    assert_eq!(l, 1);
    let term_mid = w.handle(1).term().get();
    assert!(term_mid > term_before);
    w.slots.lock().unwrap()[0] = None;
    sim.bounce(host(0));
    let (l, took) = until_agreed(&mut sim, &mut w, Duration::from_secs(5), &all);
    eprintln!("restarted node rejoined after {took:?}");
    assert_eq!(
        l, 1,
        "no preemption: the restarted node joins the sitting leader"
    );
    assert!(w.handle(0).term().get() >= term_mid);
    assert!(w
        .events(0)
        .iter()
        .any(|e| matches!(e, Ev::Surrendered { leader, .. } if *leader == w.names[1])));
}

#[test]
fn flapping_link_settles_on_one_leader() {
    let (mut sim, mut w) = build(3, 4);
    let all = [true; 3];
    until_agreed(&mut sim, &mut w, Duration::from_secs(5), &all);
    for k in 0..12 {
        if k % 2 == 0 {
            sim.partition(host(0), host(1));
        } else {
            sim.repair(host(0), host(1));
        }
        run_for(&mut sim, &mut w, Duration::from_millis(400), &all);
    }
    sim.repair(host(0), host(1));
    let (l, took) = until_agreed(&mut sim, &mut w, Duration::from_secs(5), &all);
    eprintln!("one leader ({l}) {took:?} after the link settled");
    run_for(&mut sim, &mut w, Duration::from_secs(3), &all);
    assert_eq!(
        w.agreed(&all),
        Some(l),
        "no flapping once the link is stable"
    );
}

/// `leader_call`s issued continuously from every node through a partition, a heal and a crash:
/// each resolves exactly once (a future resolves once; the node's call table must also be
/// empty at the end) with the reply or a typed error, and never later than its deadline
/// (plus one simulation tick of slack for the resolving message).
#[test]
fn calls_during_faults_resolve_once_and_by_their_deadline() {
    let (mut sim, mut w) = build(3, 5);
    let all = [true; 3];
    until_agreed(&mut sim, &mut w, Duration::from_secs(5), &all);
    let timeout = Duration::from_millis(400);
    type Outcome = (Duration, Result<String, gen_leader::CallError>);
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::new(Mutex::new(Vec::new()));
    for from in 0..3 {
        let h = w.handle(from);
        let out = outcomes.clone();
        sim.client(format!("caller{from}"), async move {
            for k in 0..60 {
                let t = tokio::time::Instant::now();
                let r = h.leader_call_timeout(format!("c{from}-{k}"), timeout).await;
                out.lock().unwrap().push((t.elapsed(), r));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(())
        });
    }
    run_for(&mut sim, &mut w, Duration::from_millis(300), &all);
    sim.partition(host(0), host(1));
    sim.partition(host(0), host(2));
    run_for(
        &mut sim,
        &mut w,
        Duration::from_secs(1),
        &[false, true, true],
    );
    sim.repair(host(0), host(1));
    sim.repair(host(0), host(2));
    run_for(&mut sim, &mut w, Duration::from_secs(1), &all);
    let start = sim.elapsed();
    while outcomes.lock().unwrap().len() < 180 {
        assert!(
            sim.elapsed() - start < Duration::from_secs(60),
            "callers stuck"
        );
        sim.step().unwrap();
        w.check(&all);
    }
    let outcomes = outcomes.lock().unwrap().clone();
    let mut ok = 0;
    for (took, r) in &outcomes {
        // The node resolves at the deadline; the handle's backstop is 50 ms later.
        assert!(
            *took <= timeout + Duration::from_millis(60),
            "a call resolved after its deadline: {took:?} {r:?}"
        );
        match r {
            Ok(_) => ok += 1,
            Err(e) => assert!(
                matches!(
                    e,
                    gen_leader::CallError::LeaderDown { .. }
                        | gen_leader::CallError::Timeout
                        | gen_leader::CallError::NoLeader
                ),
                "unexpected error {e:?}"
            ),
        }
    }
    assert!(ok > 100, "most calls succeed: {ok} of 180");
    // Nothing left behind in any node's call table.
    for i in 0..3 {
        let h = w.handle(i);
        let stats = Arc::new(Mutex::new(None));
        let s2 = stats.clone();
        sim.client(format!("stats{i}"), async move {
            *s2.lock().unwrap() = Some(h.stats().await.map_err(|e| e.to_string())?);
            Ok(())
        });
        while stats.lock().unwrap().is_none() {
            sim.step().unwrap();
        }
        let s = stats.lock().unwrap().unwrap();
        assert_eq!((s.pending_calls, s.waiting_calls), (0, 0), "{s:?}");
    }
}
