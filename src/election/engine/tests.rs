//! Engine unit tests with exact expected outputs, plus multi-node scenarios on the shared
//! in-memory network ([`crate::election::testing::Network`]), which also checks every
//! invariant after every step.

use super::*;
use crate::election::testing::{Cluster, Network};
use crate::election::ElectionMsg::*;

const N: NodeId = NodeId(0);

fn cfg(me: u32, cands: u32, nodes: u32) -> EngineConfig {
    EngineConfig {
        me: NodeId(me),
        n_candidates: cands,
        n_nodes: nodes,
        election_timeout: Duration::from_millis(100),
        startup_timeout: Duration::from_millis(500),
        preempt: false,
        announce_interval: Duration::from_secs(1),
        seed: u64::from(me),
        initial_term: Term(0),
        proposal_floor: Term(0),
        quorum: None,
    }
}

fn drain(e: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn send(to: u32, msg: ElectionMsg) -> Output {
    Output::Send {
        to: NodeId(to),
        msg,
    }
}

fn status(promised: u64, leader: Option<(u32, u64)>) -> ElectionMsg {
    Status {
        promised: Term(promised),
        leader: leader.map(|(n, t)| LeaderRef {
            node: NodeId(n),
            term: Term(t),
        }),
    }
}

fn lref(n: u32, t: u64) -> LeaderRef {
    LeaderRef {
        node: NodeId(n),
        term: Term(t),
    }
}

#[test]
fn single_node_elects_itself_at_once() {
    let t0 = Instant::now();
    let mut e = Engine::new(cfg(0, 1, 1), t0);
    assert_eq!(
        drain(&mut e),
        vec![
            Output::PersistTerm(Term(1)),
            Output::Elected {
                term: Term(1),
                joined: None
            }
        ]
    );
    assert!(e.is_leader());
    assert_eq!(e.term(), Term(1));
    // The only timer left is the leader's periodic announcement.
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_secs(1)));
}

#[test]
fn cold_start_highest_candidate_proposes_and_wins() {
    let t0 = Instant::now();
    let mut e = Engine::new(cfg(0, 3, 3), t0);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.role(), Role::Starting);
    e.handle_peer_up(t0, NodeId(1));
    e.handle_peer_up(t0, NodeId(2));
    assert_eq!(
        drain(&mut e),
        vec![send(1, status(0, None)), send(2, status(0, None))]
    );
    e.handle_message(t0, NodeId(1), status(0, None));
    assert!(
        drain(&mut e).is_empty(),
        "still waiting to hear from node 2"
    );
    e.handle_message(t0, NodeId(2), status(0, None));
    // Term 3 is the first term > 0 that candidate 0 of 3 owns.
    let p = Propose {
        term: Term(3),
        takeover: false,
    };
    assert_eq!(
        drain(&mut e),
        vec![Output::PersistTerm(Term(3)), send(1, p.clone()), send(2, p)]
    );
    e.handle_message(t0, NodeId(1), Accept { term: Term(3) });
    assert!(drain(&mut e).is_empty());
    e.handle_message(t0, NodeId(2), Accept { term: Term(3) });
    assert_eq!(
        drain(&mut e),
        vec![
            Output::Elected {
                term: Term(3),
                joined: None
            },
            send(1, status(3, Some((0, 3)))),
            send(2, status(3, Some((0, 3)))),
        ]
    );
    e.provide_synch(None, b"s".to_vec());
    let l = Leader {
        term: Term(3),
        synch: b"s".to_vec(),
    };
    assert_eq!(drain(&mut e), vec![send(1, l.clone()), send(2, l)]);
    assert_eq!(e.followers().len(), 2);
}

#[test]
fn cold_start_lower_candidate_waits_then_accepts() {
    let t0 = Instant::now();
    let mut e = Engine::new(cfg(1, 3, 3), t0);
    e.handle_peer_up(t0, NodeId(0));
    e.handle_peer_unreachable(t0, NodeId(2));
    e.handle_message(t0, NodeId(0), status(0, None));
    assert_eq!(drain(&mut e), vec![send(0, status(0, None))]);
    assert_eq!(e.role(), Role::Waiting, "a higher candidate is alive");
    e.handle_message(
        t0,
        N,
        Propose {
            term: Term(3),
            takeover: false,
        },
    );
    assert_eq!(
        drain(&mut e),
        vec![
            Output::PersistTerm(Term(3)),
            send(0, Accept { term: Term(3) })
        ]
    );
    e.handle_message(
        t0,
        N,
        Leader {
            term: Term(3),
            synch: vec![7],
        },
    );
    assert_eq!(
        drain(&mut e),
        vec![
            Output::Surrendered {
                leader: N,
                term: Term(3),
                synch: vec![7]
            },
            send(0, status(3, Some((0, 3)))),
        ]
    );
    assert_eq!(e.leader(), Some(lref(0, 3)));
    assert_eq!(e.role(), Role::Follower);
}

#[test]
fn startup_timeout_elects_alone() {
    let t0 = Instant::now();
    let mut e = Engine::new(cfg(2, 3, 3), t0);
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_millis(500)));
    e.handle_timeout(t0 + Duration::from_millis(499));
    assert!(drain(&mut e).is_empty());
    e.handle_timeout(t0 + Duration::from_millis(500));
    // Term 2 is candidate 2's first term.
    assert_eq!(
        drain(&mut e),
        vec![
            Output::PersistTerm(Term(2)),
            Output::Elected {
                term: Term(2),
                joined: None
            }
        ]
    );
}

/// Node 1 follows node 0 at term 3, with node 2 also connected.
fn follower_of_0() -> (Engine, Instant) {
    let t0 = Instant::now();
    let mut e = Engine::new(cfg(1, 3, 3), t0);
    e.handle_peer_up(t0, NodeId(0));
    e.handle_peer_up(t0, NodeId(2));
    e.handle_message(t0, N, status(3, Some((0, 3))));
    e.handle_message(
        t0,
        N,
        Leader {
            term: Term(3),
            synch: vec![],
        },
    );
    drain(&mut e);
    assert_eq!(e.leader(), Some(lref(0, 3)));
    (e, t0)
}

#[test]
fn leader_death_elects_next_candidate_with_down_for_old_leader() {
    let (mut e, t0) = follower_of_0();
    e.handle_message(t0, NodeId(2), status(3, Some((0, 3))));
    assert!(drain(&mut e).is_empty());
    e.handle_peer_down(t0, N);
    // Term 4 is candidate 1's first term above 3.
    assert_eq!(
        drain(&mut e),
        vec![
            Output::LeaderLost {
                leader: N,
                term: Term(3),
                reason: LossReason::LeaderDown
            },
            Output::PersistTerm(Term(4)),
            send(
                2,
                Propose {
                    term: Term(4),
                    takeover: false
                }
            ),
            send(2, status(4, None)),
        ]
    );
    e.handle_message(t0, NodeId(2), Accept { term: Term(4) });
    assert_eq!(
        drain(&mut e),
        vec![
            Output::Elected {
                term: Term(4),
                joined: None
            },
            Output::Down { node: N },
            send(2, status(4, Some((1, 4)))),
        ]
    );
    assert_eq!(e.term(), Term(4));
}

#[test]
fn join_to_sitting_leader() {
    // The leader's side.
    let t0 = Instant::now();
    let mut l = Engine::new(cfg(0, 3, 3), t0);
    l.handle_peer_unreachable(t0, NodeId(1));
    l.handle_peer_unreachable(t0, NodeId(2));
    assert!(l.is_leader());
    drain(&mut l);
    l.handle_peer_up(t0, NodeId(2));
    assert_eq!(drain(&mut l), vec![send(2, status(3, Some((0, 3))))]);
    l.handle_message(t0, NodeId(2), status(0, None));
    assert!(drain(&mut l).is_empty());
    l.handle_message(t0, NodeId(2), Join { promised: Term(0) });
    assert_eq!(
        drain(&mut l),
        vec![Output::Elected {
            term: Term(3),
            joined: Some(NodeId(2))
        }]
    );
    l.provide_synch(Some(NodeId(2)), vec![1]);
    assert_eq!(
        drain(&mut l),
        vec![send(
            2,
            Leader {
                term: Term(3),
                synch: vec![1]
            }
        )]
    );

    // The joiner's side.
    let mut j = Engine::new(cfg(2, 3, 3), t0);
    j.handle_peer_up(t0, N);
    j.handle_message(t0, N, status(3, Some((0, 3))));
    assert_eq!(
        drain(&mut j),
        vec![
            send(0, status(0, None)),
            send(0, Join { promised: Term(0) })
        ]
    );
    j.handle_message(
        t0,
        N,
        Leader {
            term: Term(3),
            synch: vec![1],
        },
    );
    assert_eq!(
        drain(&mut j)[..2],
        [
            Output::PersistTerm(Term(3)),
            Output::Surrendered {
                leader: N,
                term: Term(3),
                synch: vec![1]
            }
        ]
    );
}

#[test]
fn higher_priority_newcomer_joins_without_preempt() {
    let t0 = Instant::now();
    let mut e = Engine::new(cfg(0, 3, 3), t0);
    e.handle_peer_up(t0, NodeId(1));
    drain(&mut e);
    e.handle_message(t0, NodeId(1), status(4, Some((1, 4))));
    assert_eq!(drain(&mut e), vec![send(1, Join { promised: Term(0) })]);
    assert_eq!(e.role(), Role::Joining);
}

#[test]
fn higher_priority_newcomer_preempts_when_configured() {
    let t0 = Instant::now();
    let mut c = cfg(0, 3, 3);
    c.preempt = true;
    let mut e = Engine::new(c, t0);
    e.handle_peer_up(t0, NodeId(1));
    drain(&mut e);
    e.handle_message(t0, NodeId(1), status(4, Some((1, 4))));
    assert_eq!(
        drain(&mut e),
        vec![
            Output::PersistTerm(Term(6)),
            send(
                1,
                Propose {
                    term: Term(6),
                    takeover: true
                }
            )
        ]
    );
}

#[test]
fn two_leaders_meet_higher_priority_takes_over() {
    let t0 = Instant::now();
    // Node 0 leads alone at term 3.
    let mut a = Engine::new(cfg(0, 3, 3), t0);
    a.handle_peer_unreachable(t0, NodeId(1));
    a.handle_peer_unreachable(t0, NodeId(2));
    drain(&mut a);
    // Node 1 leads alone at term 1.
    let mut b = Engine::new(cfg(1, 3, 3), t0);
    b.handle_peer_unreachable(t0, N);
    b.handle_peer_unreachable(t0, NodeId(2));
    drain(&mut b);
    assert!(a.is_leader() && b.is_leader());

    // They meet.
    a.handle_peer_up(t0, NodeId(1));
    b.handle_peer_up(t0, N);
    drain(&mut a);
    drain(&mut b);
    b.handle_message(t0, N, status(3, Some((0, 3))));
    assert!(drain(&mut b).is_empty(), "the lower priority leader waits");
    a.handle_message(t0, NodeId(1), status(1, Some((1, 1))));
    let p = Propose {
        term: Term(6),
        takeover: true,
    };
    assert_eq!(
        drain(&mut a),
        vec![Output::PersistTerm(Term(6)), send(1, p.clone())]
    );
    b.handle_message(t0, N, p);
    assert_eq!(
        drain(&mut b),
        vec![
            Output::PersistTerm(Term(6)),
            Output::LeadershipLost {
                term: Term(1),
                reason: LossReason::TakenOver
            },
            send(0, Accept { term: Term(6) }),
            send(0, status(6, None)),
        ]
    );
    a.handle_message(t0, NodeId(1), Accept { term: Term(6) });
    assert_eq!(
        drain(&mut a),
        vec![
            Output::Elected {
                term: Term(6),
                joined: None
            },
            send(1, status(6, Some((0, 6))))
        ]
    );
    a.provide_synch(None, vec![9]);
    let l = Leader {
        term: Term(6),
        synch: vec![9],
    };
    assert_eq!(drain(&mut a), vec![send(1, l.clone())]);
    b.handle_message(t0, N, l);
    assert_eq!(
        drain(&mut b),
        vec![
            Output::Surrendered {
                leader: N,
                term: Term(6),
                synch: vec![9]
            },
            send(0, status(6, Some((0, 6))))
        ]
    );
    assert!(a.is_leader() && !b.is_leader());
}

#[test]
fn worker_never_proposes_and_joins_a_leader() {
    let t0 = Instant::now();
    // Two candidates, one worker (id 2).
    let mut w = Engine::new(cfg(2, 2, 3), t0);
    w.handle_peer_unreachable(t0, N);
    w.handle_peer_unreachable(t0, NodeId(1));
    assert!(drain(&mut w).is_empty());
    assert_eq!(w.role(), Role::Waiting);
    assert_eq!(w.poll_timeout(), None);
    w.handle_peer_up(t0, NodeId(1));
    w.handle_message(t0, NodeId(1), status(1, Some((1, 1))));
    assert_eq!(
        drain(&mut w),
        vec![
            send(1, status(0, None)),
            send(1, Join { promised: Term(0) })
        ]
    );
    // A worker's proposal is never accepted.
    let mut c = Engine::new(cfg(0, 2, 3), t0);
    c.handle_peer_up(t0, NodeId(2));
    drain(&mut c);
    c.handle_message(
        t0,
        NodeId(2),
        Propose {
            term: Term(2),
            takeover: false,
        },
    );
    assert!(drain(&mut c).is_empty());
}

#[test]
fn stale_terms_are_rejected_or_dropped() {
    let (mut e, t0) = follower_of_0();
    // A proposal at or below the promised term is rejected with our leader.
    e.handle_message(
        t0,
        NodeId(2),
        Propose {
            term: Term(2),
            takeover: false,
        },
    );
    assert_eq!(
        drain(&mut e),
        vec![send(
            2,
            Reject {
                round: Term(2),
                promised: Term(3),
                leader: Some(lref(0, 3))
            }
        )]
    );
    // A fresh term from a lower candidate while our leader lives: rejected with a hint.
    e.handle_message(
        t0,
        NodeId(2),
        Propose {
            term: Term(5),
            takeover: false,
        },
    );
    assert_eq!(
        drain(&mut e),
        vec![send(
            2,
            Reject {
                round: Term(5),
                promised: Term(3),
                leader: Some(lref(0, 3))
            }
        )]
    );
    // A Leader announcement for an old term, or from a node that does not own the term.
    e.handle_message(
        t0,
        N,
        Leader {
            term: Term(0),
            synch: vec![],
        },
    );
    e.handle_message(
        t0,
        NodeId(2),
        Leader {
            term: Term(3),
            synch: vec![],
        },
    );
    // An Accept for a round we are not running.
    e.handle_message(t0, NodeId(2), Accept { term: Term(4) });
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.leader(), Some(lref(0, 3)));
    // Messages from a node that is not connected are ignored.
    e.handle_peer_down(t0, NodeId(2));
    drain(&mut e);
    e.handle_message(
        t0,
        NodeId(2),
        Propose {
            term: Term(8),
            takeover: true,
        },
    );
    assert!(drain(&mut e).is_empty());
}

#[test]
fn restarted_node_with_higher_term_makes_leader_re_elect_above_it() {
    let t0 = Instant::now();
    let mut l = Engine::new(cfg(0, 3, 3), t0);
    l.handle_peer_unreachable(t0, NodeId(1));
    l.handle_peer_unreachable(t0, NodeId(2));
    drain(&mut l);
    l.handle_peer_up(t0, NodeId(2));
    drain(&mut l);
    l.handle_message(t0, NodeId(2), Join { promised: Term(10) });
    // 12 is candidate 0's first term above 10.
    assert_eq!(
        drain(&mut l),
        vec![
            Output::PersistTerm(Term(12)),
            send(
                2,
                Propose {
                    term: Term(12),
                    takeover: true
                }
            )
        ]
    );
}

#[test]
fn no_candidate_stays_stuck_when_the_higher_one_never_proposes() {
    let t0 = Instant::now();
    let mut e = Engine::new(cfg(1, 3, 3), t0);
    e.handle_peer_up(t0, N);
    e.handle_peer_unreachable(t0, NodeId(2));
    e.handle_message(t0, N, status(0, None));
    drain(&mut e);
    assert_eq!(e.role(), Role::Waiting);
    let d = e.poll_timeout().expect("waiting has a deadline");
    assert!(d >= t0 + Duration::from_millis(100) && d < t0 + Duration::from_millis(150));
    e.handle_timeout(d);
    assert_eq!(
        drain(&mut e),
        vec![
            Output::PersistTerm(Term(1)),
            send(
                0,
                Propose {
                    term: Term(1),
                    takeover: false
                }
            )
        ]
    );
    // Node 0 never answers: the proposal deadline makes us leader anyway.
    let d = e.poll_timeout().unwrap();
    e.handle_timeout(d);
    assert_eq!(
        drain(&mut e),
        vec![
            Output::Elected {
                term: Term(1),
                joined: None
            },
            send(0, status(1, Some((1, 1))))
        ]
    );
}

// ----- multi-engine scenarios on the shared in-memory network ------------------------------

/// `n` engines (`cands` candidates) configured by [`cfg`], started, not yet connected.
fn net(n: u32, cands: u32) -> Network {
    Network::new(Cluster::with(n, |i| cfg(i, cands, n)), Instant::now())
}

#[test]
fn full_mesh_cold_start_converges_on_first_candidate() {
    let mut net = net(5, 4);
    net.connect_all();
    assert_eq!(net.leaders(), vec![N]);
    assert_eq!(net.agreed(), Some(lref(0, 4)));
    // No election timer is left: followers have none, the leader only its announcement.
    assert!((1..5).all(|i| net.engine(i).poll_timeout().is_none()));
    assert_eq!(
        net.engine(0).poll_timeout(),
        Some(net.now + Duration::from_secs(1))
    );
    net.assert_ok();
}

#[test]
fn staggered_start_keeps_the_sitting_leader() {
    let mut net = net(3, 3);
    // Node 2 starts alone and elects itself; then 1 and 0 arrive.
    net.input(2, |e, now| e.handle_peer_unreachable(now, N));
    net.input(2, |e, now| e.handle_peer_unreachable(now, NodeId(1)));
    net.pump();
    net.connect(1, 2);
    net.connect(0, 2);
    net.connect(0, 1);
    assert_eq!(net.leaders(), vec![NodeId(2)]);
    assert_eq!(net.agreed(), Some(lref(2, 2)));
    net.assert_ok();
}

#[test]
fn partition_heal_leaves_one_leader_and_its_followers() {
    let mut net = net(4, 4);
    net.connect_all();
    assert_eq!(net.agreed(), Some(lref(0, 4)));
    // Cut {0,1} from {2,3}.
    for a in 0..2 {
        for b in 2..4 {
            net.disconnect(a, b);
        }
    }
    net.advance(Duration::from_secs(1));
    assert_eq!(net.leaders(), vec![N, NodeId(2)]);
    // Heal.
    for a in 0..2 {
        for b in 2..4 {
            net.connect(a, b);
        }
    }
    net.advance(Duration::from_secs(1));
    assert_eq!(net.leaders(), vec![N]);
    let l = net.agreed().expect("all agree");
    assert_eq!(l.node, N);
    assert!(l.term > Term(6));
    let surrendered_2 = net.log.iter().any(|(n, o)| {
        *n == NodeId(2) && matches!(o, Output::Surrendered { leader, .. } if *leader == N)
    });
    assert!(surrendered_2, "the losing leader ran surrendered");
    net.assert_ok();
}

#[test]
fn partial_partition_keeps_followers_with_a_healthy_link_to_the_leader() {
    let mut net = net(3, 3);
    net.connect_all();
    assert_eq!(net.agreed(), Some(lref(0, 3)));
    // Only the link 0-2 is cut: node 1 still reaches node 0.
    net.disconnect(0, 2);
    net.advance(Duration::from_secs(1));
    net.advance(Duration::from_secs(1));
    assert_eq!(
        net.engine(1).leader(),
        Some(lref(0, 3)),
        "node 1 must keep following node 0: {:#?}",
        net.log
    );
    assert!(net.engine(0).is_leader());
    net.assert_ok();
}

mod external;
mod quorum;
mod restart;
