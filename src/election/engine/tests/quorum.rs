//! Quorum mode: exact outputs for the majority, lease, promise and stickiness rules, and
//! scenarios on the shared network (one clock here; drifting clocks are `verify/tests/sim_quorum.rs`).
//! Apart from the bully tests because every rule here is quorum mode's own.

use super::*;

const E: Duration = Duration::from_secs(1);
const RENEW: Duration = Duration::from_millis(100);

fn params() -> QuorumParams {
    QuorumParams {
        lease: E,
        drift_ppm: 10_000,
        margin: Duration::from_millis(10),
        renew_interval: RENEW,
        durable: false,
        sticky: true,
    }
}

fn qcfg(me: u32, cands: u32, nodes: u32) -> EngineConfig {
    EngineConfig {
        quorum: Some(params()),
        ..cfg(me, cands, nodes)
    }
}

fn lease() -> Duration {
    params().leader_lease()
}

fn qnet(n: u32, cands: u32) -> Network {
    Network::new(Cluster::with(n, |i| qcfg(i, cands, n)), Instant::now())
}

/// Node 0 of three candidates, connected to 1 and 2, which report no leader: it is past its
/// start and its restart promise, and has just proposed term 3 at `t`.
fn proposing() -> (Engine, Instant) {
    let t0 = Instant::now();
    let mut e = Engine::new(qcfg(0, 3, 3), t0);
    for p in [1, 2] {
        e.handle_peer_up(t0, NodeId(p));
        e.handle_message(t0, NodeId(p), status(0, None));
    }
    // A restarted node grants nothing (itself included) for E after its start.
    assert_eq!(e.role(), Role::Waiting);
    assert_eq!(e.poll_timeout(), Some(t0 + E));
    drain(&mut e);
    let t = t0 + E;
    e.handle_timeout(t);
    assert_eq!(
        drain(&mut e),
        vec![
            Output::PersistTerm(Term(3)),
            send(
                1,
                Propose {
                    term: Term(3),
                    takeover: false
                }
            ),
            send(
                2,
                Propose {
                    term: Term(3),
                    takeover: false
                }
            ),
        ]
    );
    (e, t)
}

#[test]
fn the_leader_lease_is_e_scaled_by_the_drift_bound_minus_the_margin() {
    // 1 s · 0.99 / 1.01 − 10 ms = 970.198 019 ms (rounded down to the nanosecond).
    assert_eq!(lease(), Duration::from_nanos(970_198_019));
    let no_drift = QuorumParams {
        drift_ppm: 0,
        margin: Duration::ZERO,
        ..params()
    };
    assert_eq!(no_drift.leader_lease(), E);
    let eaten = QuorumParams {
        margin: Duration::from_secs(2),
        ..params()
    };
    assert_eq!(eaten.leader_lease(), Duration::ZERO);
}

#[test]
fn a_majority_of_grants_elects_with_a_lease_from_the_proposal_send_time() {
    let (mut e, t) = proposing();
    let t1 = t + Duration::from_millis(5);
    e.handle_message(
        t1,
        NodeId(2),
        Reject {
            round: Term(3),
            promised: Term(0),
            leader: None,
        },
    );
    assert!(drain(&mut e).is_empty());
    e.handle_message(t1, NodeId(1), Accept { term: Term(3) });
    assert_eq!(
        drain(&mut e),
        vec![
            Output::Lease {
                term: Term(3),
                until: t + lease()
            },
            Output::Elected {
                term: Term(3),
                joined: None
            },
            send(1, status(3, Some((0, 3)))),
            send(2, status(3, Some((0, 3)))),
        ]
    );
    assert!(e.is_acting(t + lease() - Duration::from_nanos(1)));
    assert!(!e.is_acting(t + lease()));
    assert_eq!(e.lease_until(), Some(t + lease()));
}

#[test]
fn without_a_majority_it_does_not_lead_and_waits() {
    let (mut e, t) = proposing();
    let no = || Reject {
        round: Term(3),
        promised: Term(0),
        leader: None::<LeaderRef>,
    };
    e.handle_message(t, NodeId(1), no());
    e.handle_message(t, NodeId(2), no());
    let out = drain(&mut e);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Elected { .. } | Output::Lease { .. })),
        "{out:?}"
    );
    assert!(!e.is_leader());
    assert_eq!(e.role(), Role::Waiting);
    assert!(e.poll_timeout().is_some_and(|d| d > t));
}

#[test]
fn renewals_acknowledged_by_a_majority_move_the_lease_and_silence_ends_it() {
    let (mut e, t) = proposing();
    e.handle_message(t, NodeId(1), Accept { term: Term(3) });
    e.handle_message(t, NodeId(2), Accept { term: Term(3) });
    drain(&mut e);
    // The renewal timer and the lease end are both deadlines.
    assert_eq!(e.poll_timeout(), Some(t + RENEW));
    let r1 = t + RENEW;
    e.handle_timeout(r1);
    assert_eq!(
        drain(&mut e),
        vec![
            send(
                1,
                Renew {
                    term: Term(3),
                    round: 1
                }
            ),
            send(
                2,
                Renew {
                    term: Term(3),
                    round: 1
                }
            ),
        ]
    );
    // One acknowledgement (plus the leader itself) is a majority of three.
    e.handle_message(
        r1 + Duration::from_millis(3),
        NodeId(2),
        RenewAck {
            term: Term(3),
            round: 1,
        },
    );
    assert_eq!(
        drain(&mut e),
        vec![Output::Lease {
            term: Term(3),
            until: r1 + lease()
        }]
    );
    // A second one moves nothing; an unknown round or a stale term is ignored.
    e.handle_message(
        r1,
        NodeId(1),
        RenewAck {
            term: Term(3),
            round: 1,
        },
    );
    e.handle_message(
        r1,
        NodeId(1),
        RenewAck {
            term: Term(3),
            round: 9,
        },
    );
    e.handle_message(
        r1,
        NodeId(1),
        RenewAck {
            term: Term(2),
            round: 1,
        },
    );
    assert!(drain(&mut e).is_empty());
    // Nobody answers from now on: the renewals go out, and the lease ends exactly on time.
    let mut now = r1;
    while e.is_leader() {
        now = e.poll_timeout().expect("a leader always has a deadline");
        assert!(now <= r1 + lease());
        e.handle_timeout(now);
        let out = drain(&mut e);
        if now == r1 + lease() {
            assert_eq!(
                out[0],
                Output::LeadershipLost {
                    term: Term(3),
                    reason: LossReason::LeaseExpired
                }
            );
        }
    }
    assert_eq!(now, r1 + lease());
    assert_eq!(e.lease_until(), None);
}

#[test]
fn a_voter_grants_no_other_node_until_its_promise_runs_out() {
    let t0 = Instant::now();
    let mut v = Engine::new(qcfg(1, 3, 3), t0);
    for p in [0, 2] {
        v.handle_peer_up(t0, NodeId(p));
        v.handle_message(t0, NodeId(p), status(0, None));
    }
    drain(&mut v);
    let r = t0 + E;
    v.handle_message(
        r,
        N,
        Propose {
            term: Term(3),
            takeover: false,
        },
    );
    assert_eq!(
        drain(&mut v),
        vec![
            Output::PersistTerm(Term(3)),
            send(0, Accept { term: Term(3) })
        ]
    );
    // Node 2's newer term, just before r + E: refused, and node 1 keeps what it has.
    let before = r + E - Duration::from_nanos(1);
    v.handle_message(
        before,
        NodeId(2),
        Propose {
            term: Term(5),
            takeover: false,
        },
    );
    assert_eq!(
        drain(&mut v),
        vec![send(
            2,
            Reject {
                round: Term(5),
                promised: Term(3),
                leader: None
            }
        )]
    );
    assert_eq!(v.promised(), Term(3));
    // At r + E it may grant it.
    v.handle_message(
        r + E,
        NodeId(2),
        Propose {
            term: Term(5),
            takeover: false,
        },
    );
    assert_eq!(
        drain(&mut v),
        vec![
            Output::PersistTerm(Term(5)),
            send(2, Accept { term: Term(5) })
        ]
    );
}

#[test]
fn a_restarted_voter_grants_and_acknowledges_nothing_for_e() {
    let t0 = Instant::now();
    let mut v = Engine::new(
        EngineConfig {
            initial_term: Term(3),
            ..qcfg(1, 3, 3)
        },
        t0,
    );
    v.handle_peer_up(t0, N);
    drain(&mut v);
    v.handle_message(
        t0,
        N,
        Propose {
            term: Term(6),
            takeover: false,
        },
    );
    assert_eq!(
        drain(&mut v),
        vec![send(
            0,
            Reject {
                round: Term(6),
                promised: Term(3),
                leader: None
            }
        )]
    );
    // It follows the leader it joins, but acknowledges its renewals only after E.
    v.handle_message(
        t0,
        N,
        Leader {
            term: Term(3),
            synch: vec![],
        },
    );
    drain(&mut v);
    assert_eq!(v.leader(), Some(lref(0, 3)));
    v.handle_message(
        t0 + E / 2,
        N,
        Renew {
            term: Term(3),
            round: 4,
        },
    );
    assert!(drain(&mut v).is_empty());
    v.handle_message(
        t0 + E,
        N,
        Renew {
            term: Term(3),
            round: 5,
        },
    );
    assert_eq!(
        drain(&mut v),
        vec![send(
            0,
            RenewAck {
                term: Term(3),
                round: 5
            }
        )]
    );
}

#[test]
fn a_node_reaching_no_majority_says_so_and_never_proposes() {
    let t0 = Instant::now();
    let mut e = Engine::new(qcfg(0, 3, 4), t0);
    e.handle_peer_unreachable(t0, NodeId(1));
    e.handle_peer_unreachable(t0, NodeId(2));
    e.handle_peer_up(t0, NodeId(3)); // a worker: it does not vote
    e.handle_message(t0, NodeId(3), status(0, None));
    assert_eq!(
        e.no_quorum(),
        Some(NoQuorum {
            reachable: 1,
            needed: 2
        })
    );
    let mut now = t0;
    for _ in 0..50 {
        now = e.poll_timeout().expect("it keeps looking");
        e.handle_timeout(now);
    }
    assert!(now > t0 + 3 * E);
    let out = drain(&mut e);
    assert!(
        !out.iter().any(|o| matches!(
            o,
            Output::Send {
                msg: Propose { .. },
                ..
            }
        )),
        "{out:?}"
    );
    assert_eq!(e.promised(), Term(0));
}

#[test]
fn a_candidate_does_not_propose_while_a_voter_follows_a_live_leader() {
    // Node 2 is cut from leader 0 but still reaches node 1, which follows 0.
    let t0 = Instant::now();
    let mut e = Engine::new(qcfg(2, 3, 3), t0);
    e.handle_peer_unreachable(t0, N);
    e.handle_peer_up(t0, NodeId(1));
    e.handle_message(t0, NodeId(1), status(3, Some((0, 3))));
    let mut now = t0;
    for _ in 0..30 {
        now = e.poll_timeout().expect("it keeps looking");
        e.handle_timeout(now);
    }
    assert!(now > t0 + 2 * E);
    let out = drain(&mut e);
    assert!(
        !out.iter().any(|o| matches!(
            o,
            Output::Send {
                msg: Propose { .. },
                ..
            }
        )),
        "{out:?}"
    );
    assert_eq!(
        e.no_quorum(),
        None,
        "it reaches a majority; it waits, it is not cut off"
    );
    // Once node 1 no longer follows anyone, node 2 proposes.
    e.handle_message(now, NodeId(1), status(3, None));
    let next = e.poll_timeout().unwrap();
    e.handle_timeout(next);
    assert!(drain(&mut e).iter().any(|o| matches!(
        o,
        Output::Send {
            msg: Propose { .. },
            ..
        }
    )));
}

// ----- scenarios on the shared network (one clock) -----------------------------------------

/// Runs the network in steps of `step` for `d`.
fn run(net: &mut Network, d: Duration, step: Duration) {
    let end = net.now + d;
    while net.now < end {
        net.advance(step);
        net.assert_ok();
    }
}

fn acting(net: &Network) -> Vec<u32> {
    (0..net.cluster.len() as u32)
        .filter(|&i| {
            net.cluster
                .engine(NodeId(i))
                .is_some_and(|e| e.is_acting(net.now))
        })
        .collect()
}

#[test]
fn three_candidates_elect_one_leader_that_keeps_its_lease() {
    let mut net = qnet(3, 3);
    net.connect_all();
    run(&mut net, 2 * E, Duration::from_millis(10));
    let l = net.agreed().expect("one leader");
    assert_eq!(acting(&net), vec![l.node.0]);
    // It stays leader in the same term, with its lease renewed.
    run(&mut net, 5 * E, Duration::from_millis(10));
    assert_eq!(net.agreed(), Some(l));
    assert!(net.engine(l.node.0).lease_until().unwrap() > net.now + lease() - 2 * RENEW);
}

#[test]
fn a_cut_off_leader_stops_acting_before_a_new_one_starts() {
    let mut net = qnet(3, 3);
    net.connect_all();
    run(&mut net, 2 * E, Duration::from_millis(10));
    let old = net.agreed().unwrap();
    let o = old.node.0;
    for p in (0..3).filter(|&p| p != o) {
        net.cut(o, p);
        net.cut(p, o);
    }
    let cut_at = net.now;
    let mut stopped = None;
    let mut started = None;
    let step = Duration::from_millis(1);
    for ms in 1..=4000 {
        if ms == 600 {
            // The transport's failure timeout: both ends see the connections go down.
            for p in (0..3).filter(|&p| p != o) {
                net.disconnect(o, p);
            }
        }
        net.advance(step);
        net.assert_ok();
        let a = acting(&net);
        assert!(a.len() <= 1, "two leaders act at {:?}: {a:?}", net.now);
        if stopped.is_none() && !a.contains(&o) {
            stopped = Some(net.now);
        }
        if let Some(&n) = a.iter().find(|&&n| n != o) {
            started.get_or_insert((n, net.now));
        }
    }
    let (stopped, (new, started)) = (stopped.unwrap(), started.expect("a new leader"));
    assert!(
        stopped < started,
        "old stopped {stopped:?}, new started {started:?}"
    );
    // Within E and one election of the cut (the promises run from the last renewal).
    assert!(stopped - cut_at <= lease() + step, "{:?}", stopped - cut_at);
    assert!(
        started - cut_at <= E + Duration::from_millis(400),
        "{:?}",
        started - cut_at
    );
    assert!(net.engine(new).term() > old.term);
    assert_eq!(
        net.engine(o).no_quorum(),
        Some(NoQuorum {
            reachable: 1,
            needed: 2
        })
    );
}

#[test]
fn a_healed_voter_does_not_depose_the_leader() {
    let mut net = qnet(3, 3);
    net.connect_all();
    run(&mut net, 2 * E, Duration::from_millis(10));
    let l = net.agreed().unwrap();
    let x = (0..3).find(|&p| p != l.node.0).unwrap();
    for p in (0..3).filter(|&p| p != x) {
        net.disconnect(x, p);
    }
    run(&mut net, 3 * E, Duration::from_millis(10));
    assert_eq!(net.engine(l.node.0).leader(), Some(l));
    for p in (0..3).filter(|&p| p != x) {
        net.connect(x, p);
    }
    run(&mut net, 3 * E, Duration::from_millis(10));
    assert_eq!(net.agreed(), Some(l), "same leader, same term");
    assert_eq!(acting(&net), vec![l.node.0]);
}

#[test]
fn with_preempt_the_first_candidate_takes_over_safely_when_it_returns() {
    let mut net = Network::new(
        Cluster::with(3, |i| EngineConfig {
            preempt: true,
            ..qcfg(i, 3, 3)
        }),
        Instant::now(),
    );
    net.connect(1, 2);
    net.input(1, |e, now| e.handle_peer_unreachable(now, N));
    net.input(2, |e, now| e.handle_peer_unreachable(now, N));
    run(&mut net, 2 * E, Duration::from_millis(10));
    assert_eq!(net.leaders(), vec![NodeId(1)]);
    net.connect(0, 1);
    net.connect(0, 2);
    let step = Duration::from_millis(1);
    for _ in 0..3000 {
        net.advance(step);
        net.assert_ok();
        assert!(acting(&net).len() <= 1, "two leaders act at {:?}", net.now);
    }
    assert_eq!(net.agreed().map(|l| l.node), Some(N));
    assert_eq!(acting(&net), vec![0]);
}

#[test]
fn a_leader_that_shuts_down_releases_its_voters_at_once() {
    let mut net = qnet(3, 3);
    net.connect_all();
    run(&mut net, 2 * E, Duration::from_millis(10));
    let old = net.agreed().unwrap();
    let o = old.node.0;
    let mark = net.log.len();
    net.input(o, |e, now| e.handle_shutdown(now));
    assert!(!net.engine(o).is_acting(net.now));
    let sent: Vec<_> = net.log[mark..].iter().map(|(_, out)| out.clone()).collect();
    let others: Vec<u32> = (0..3).filter(|&p| p != o).collect();
    assert_eq!(
        sent,
        others
            .iter()
            .map(|&p| send(p, StepDown { term: old.term }))
            .collect::<Vec<_>>()
    );
    net.pump();
    net.crash(o);
    for &p in &others {
        net.input(p, |e, now| e.handle_peer_down(now, NodeId(o)));
    }
    let down = net.now;
    // A new leader well before the old promises (E) would have run out.
    while acting(&net).is_empty() {
        net.advance(Duration::from_millis(5));
        net.assert_ok();
    }
    assert!(net.now - down < E / 2, "{:?}", net.now - down);
}

#[test]
fn a_first_start_on_a_durable_store_need_not_wait_out_a_restart_promise() {
    let t0 = Instant::now();
    let durable = |initial| EngineConfig {
        initial_term: Term(initial),
        quorum: Some(QuorumParams {
            durable: true,
            ..params()
        }),
        ..cfg(0, 3, 3)
    };
    // Nothing stored: it never granted anything, so it proposes at once.
    let mut e = Engine::new(durable(0), t0);
    for p in [1, 2] {
        e.handle_peer_up(t0, NodeId(p));
        e.handle_message(t0, NodeId(p), status(0, None));
    }
    assert!(drain(&mut e).iter().any(|o| matches!(
        o,
        Output::Send {
            msg: Propose { .. },
            ..
        }
    )));
    // A term stored: it may have granted one before its restart, so it waits E.
    let mut r = Engine::new(durable(3), t0);
    for p in [1, 2] {
        r.handle_peer_up(t0, NodeId(p));
        r.handle_message(t0, NodeId(p), status(3, None));
    }
    assert!(!drain(&mut r).iter().any(|o| matches!(
        o,
        Output::Send {
            msg: Propose { .. },
            ..
        }
    )));
    assert_eq!(r.poll_timeout(), Some(t0 + E));
}

#[test]
fn the_runtime_can_end_the_lease_before_the_engine_deadline() {
    let (mut e, t) = proposing();
    e.handle_message(t, NodeId(1), Accept { term: Term(3) });
    e.handle_message(t, NodeId(2), Accept { term: Term(3) });
    drain(&mut e);
    // Well before the engine's own deadline (a suspend the `now` arguments did not count).
    e.handle_lease_ended(t + RENEW / 2);
    let out = drain(&mut e);
    assert_eq!(
        out[0],
        Output::LeadershipLost {
            term: Term(3),
            reason: LossReason::LeaseExpired
        }
    );
    assert!(!e.is_leader());
    // Its peers learn it no longer leads (it may at once propose again: it still reaches a
    // majority).
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::Send {
                to: NodeId(1),
                msg: Status { leader: None, .. }
            }
        )),
        "{out:?}"
    );
}
