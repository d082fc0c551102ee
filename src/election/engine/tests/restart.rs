//! A restart while a leader sits is gen_leader's join, not an election: exact outputs on
//! every node, with the node restarted from what its store keeps (the shared harness models
//! the runtime's promise and term reservation). Apart from the other engine tests because
//! this is the one rule that spans a crash.

use super::*;

/// Every output of `node` in `net`'s log from `mark` on.
fn outputs_of(net: &Network, mark: usize, node: u32) -> Vec<Output> {
    net.log[mark..]
        .iter()
        .filter(|(n, _)| n.0 == node)
        .map(|(_, o)| o.clone())
        .collect()
}

/// Crashes `x`, tells its peers, and restarts it from what its store keeps (the harness
/// models the runtime's term store: an on-disk reservation 64 terms ahead).
fn crash_and_restart(net: &mut Network, x: u32) -> usize {
    net.crash(x);
    for p in 0..net.cluster.len() as u32 {
        if p != x {
            net.input(p, |e, now| e.handle_peer_down(now, NodeId(x)));
        }
    }
    net.pump();
    let mark = net.log.len();
    net.restart(x);
    mark
}

/// gen_leader's join rule across a restart: the restarted follower joins the sitting leader
/// (`elected(.., Some(2))` there, `surrendered` at the joiner), the term stays, and the
/// bystander sees nothing but the joiner's status. Before the fix, the restarted node claimed
/// its on-disk reservation (64) as its promise and the leader re-elected itself above it.
#[test]
fn restarted_follower_joins_the_sitting_leader_with_no_new_term() {
    let mut net = net(3, 3);
    net.connect_all();
    assert_eq!(net.agreed(), Some(lref(0, 3)));
    let mark = crash_and_restart(&mut net, 2);
    assert_eq!(
        net.engine(2).promised(),
        Term(3),
        "its promise, not its reservation"
    );
    net.connect(1, 2);
    net.connect(0, 2);
    net.assert_ok();
    let leader_status = status(3, Some((0, 3)));
    let synch = Leader {
        term: Term(3),
        synch: vec![],
    };
    assert_eq!(
        outputs_of(&net, mark, 0),
        vec![
            send(2, leader_status.clone()),
            Output::Elected {
                term: Term(3),
                joined: Some(NodeId(2))
            },
            send(2, synch),
        ]
    );
    assert_eq!(
        outputs_of(&net, mark, 2),
        vec![
            send(1, status(3, None)),
            send(0, status(3, None)),
            send(0, Join { promised: Term(3) }),
            Output::Surrendered {
                leader: N,
                term: Term(3),
                synch: vec![]
            },
            send(0, leader_status.clone()),
            send(1, leader_status.clone()),
        ]
    );
    assert_eq!(outputs_of(&net, mark, 1), vec![send(2, leader_status)]);
    assert_eq!(net.agreed(), Some(lref(0, 3)));
    assert_eq!(net.cluster.agreement(), Ok(lref(0, 3)));
}

/// A former leader of higher priority restarted without `preempt` joins the leader that
/// replaced it: no new term, the bystander sees nothing.
#[test]
fn restarted_former_leader_joins_without_preempt_and_no_new_term() {
    let mut net = net(3, 3);
    net.connect_all();
    assert_eq!(net.agreed(), Some(lref(0, 3)));
    let mark = crash_and_restart(&mut net, 0);
    let failover = &net.log[..mark];
    assert!(failover.iter().any(|(n, o)| n.0 == 1
        && *o
            == Output::Elected {
                term: Term(4),
                joined: None
            }));
    assert_eq!(net.engine(0).promised(), Term(3));
    let mark = net.log.len();
    net.connect(0, 2);
    net.connect(0, 1);
    net.assert_ok();
    let leader_status = status(4, Some((1, 4)));
    assert_eq!(
        outputs_of(&net, mark, 1),
        vec![
            send(0, leader_status.clone()),
            Output::Elected {
                term: Term(4),
                joined: Some(N)
            },
            send(
                0,
                Leader {
                    term: Term(4),
                    synch: vec![]
                }
            ),
        ]
    );
    assert_eq!(
        outputs_of(&net, mark, 0),
        vec![
            send(2, status(3, None)),
            send(1, status(3, None)),
            send(1, Join { promised: Term(3) }),
            Output::PersistTerm(Term(4)),
            Output::Surrendered {
                leader: NodeId(1),
                term: Term(4),
                synch: vec![]
            },
            send(1, leader_status.clone()),
            send(2, leader_status.clone()),
        ]
    );
    assert_eq!(outputs_of(&net, mark, 2), vec![send(0, leader_status)]);
    assert_eq!(net.cluster.agreement(), Ok(lref(1, 4)));
}

/// The two values a restart starts from: the promise is what the node says (`Status`,
/// `Join`), the reservation is only where its proposals start, so no term it may have
/// proposed before is reused.
#[test]
fn a_restarted_node_claims_its_promise_and_proposes_above_its_reservation() {
    let t0 = Instant::now();
    let restarted = EngineConfig {
        initial_term: Term(3),
        proposal_floor: Term(64),
        ..cfg(0, 3, 3)
    };
    let mut j = Engine::new(restarted.clone(), t0);
    j.handle_peer_up(t0, NodeId(1));
    j.handle_message(t0, NodeId(1), status(4, Some((1, 4))));
    assert_eq!(
        drain(&mut j),
        vec![
            send(1, status(3, None)),
            send(1, Join { promised: Term(3) })
        ]
    );
    // Alone, it proposes 66: candidate 0's first term above the reservation, not 6.
    let mut p = Engine::new(restarted, t0);
    p.handle_peer_unreachable(t0, NodeId(1));
    p.handle_peer_unreachable(t0, NodeId(2));
    assert_eq!(
        drain(&mut p),
        vec![
            Output::PersistTerm(Term(66)),
            Output::Elected {
                term: Term(66),
                joined: None
            }
        ]
    );
}
