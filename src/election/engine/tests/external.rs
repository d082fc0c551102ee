//! External mode ([`Engine::new_external`]): the decider's inputs and the exact outputs.

use super::*;

const S: Duration = Duration::from_secs(1);

// On the wire in external mode, a `Status` names its leader relative to the connection.
const SENDER: u32 = super::super::external::WIRE_SENDER.0;
const RECEIVER: u32 = super::super::external::WIRE_RECEIVER.0;
const OTHER: u32 = super::super::external::WIRE_OTHER.0;

fn ext(me: u32) -> Engine {
    let mut e = Engine::new_external(cfg(me, 3, 3), Instant::now());
    assert!(drain(&mut e).is_empty(), "an external engine starts silent");
    assert_eq!(e.role(), Role::Waiting);
    assert_eq!(e.poll_timeout(), None);
    e
}

fn up(e: &mut Engine, now: Instant, peer: u32) {
    e.handle_peer_up(now, NodeId(peer));
    let out = drain(e);
    assert!(
        matches!(
            out.first(),
            Some(Output::Send {
                msg: Status { .. },
                ..
            })
        ),
        "{out:?}"
    );
}

#[test]
fn named_leader_leads_at_once_with_its_lease_and_takes_joiners() {
    let t0 = Instant::now();
    let mut e = ext(0);
    up(&mut e, t0, 1);
    e.handle_external_lease(t0, Term(7), t0 + 2 * S);
    assert!(drain(&mut e).is_empty(), "no lease output before it leads");
    e.handle_external_leader(t0, Some(lref(0, 7)));
    assert_eq!(
        drain(&mut e),
        vec![
            Output::PersistTerm(Term(7)),
            Output::Lease {
                term: Term(7),
                until: t0 + 2 * S
            },
            Output::Elected {
                term: Term(7),
                joined: None
            },
            send(1, status(7, Some((SENDER, 7)))),
        ]
    );
    assert!(e.is_leader() && e.is_acting(t0 + S));
    assert!(!e.is_acting(t0 + 2 * S), "never past the lease");
    assert_eq!(e.lease_until(), Some(t0 + 2 * S));
    // Followers come by Join, as in the other modes.
    e.handle_message(t0, NodeId(1), Join { promised: Term(0) });
    assert_eq!(
        drain(&mut e),
        vec![Output::Elected {
            term: Term(7),
            joined: Some(NodeId(1))
        }]
    );
    e.provide_synch(Some(NodeId(1)), b"s".to_vec());
    assert_eq!(
        drain(&mut e),
        vec![send(
            1,
            Leader {
                term: Term(7),
                synch: b"s".to_vec()
            }
        )]
    );
    // Proposals are not answered, whatever their term.
    e.handle_message(
        t0,
        NodeId(1),
        Propose {
            term: Term(100),
            takeover: true,
        },
    );
    assert!(drain(&mut e).is_empty());
    assert!(e.is_leader());
    // A renewal moves the lease; one of an older term does not.
    e.handle_external_lease(t0 + S, Term(7), t0 + 3 * S);
    e.handle_external_lease(t0 + S, Term(6), t0 + 9 * S);
    assert_eq!(
        drain(&mut e),
        vec![Output::Lease {
            term: Term(7),
            until: t0 + 3 * S
        }]
    );
    // The lease ends: it steps down by itself at its deadline.
    assert!(e.poll_timeout().is_some_and(|t| t <= t0 + 3 * S));
    e.handle_timeout(t0 + 3 * S);
    assert_eq!(
        drain(&mut e),
        vec![
            Output::LeadershipLost {
                term: Term(7),
                reason: LossReason::LeaseExpired
            },
            send(1, status(7, None)),
        ]
    );
    assert!(!e.is_leader() && !e.is_acting(t0 + 3 * S));
    assert_eq!(e.role(), Role::Waiting);
}

#[test]
fn follower_joins_the_named_leader_and_accepts_only_its_announcement() {
    let t0 = Instant::now();
    let mut e = ext(1);
    // Named before it is connected: it waits for the connection.
    e.handle_external_leader(t0, Some(lref(0, 7)));
    assert!(drain(&mut e).is_empty());
    e.handle_peer_up(t0, NodeId(0));
    assert_eq!(
        drain(&mut e),
        vec![
            send(0, status(0, None)),
            send(0, Join { promised: Term(0) })
        ]
    );
    assert_eq!(e.role(), Role::Joining);
    up(&mut e, t0, 2);
    // An announcement from a node the decider did not name is ignored, even with a higher term.
    e.handle_message(
        t0,
        NodeId(2),
        Leader {
            term: Term(9),
            synch: vec![],
        },
    );
    assert!(drain(&mut e).is_empty());
    e.handle_message(
        t0,
        NodeId(0),
        Leader {
            term: Term(7),
            synch: b"s".to_vec(),
        },
    );
    assert_eq!(
        drain(&mut e),
        vec![
            Output::PersistTerm(Term(7)),
            Output::Surrendered {
                leader: NodeId(0),
                term: Term(7),
                synch: b"s".to_vec()
            },
            send(0, status(7, Some((RECEIVER, 7)))),
            send(2, status(7, Some((OTHER, 7)))),
        ]
    );
    assert_eq!(e.leader(), Some(lref(0, 7)));
    // A stale report (lower term) changes nothing.
    e.handle_external_leader(t0, Some(lref(2, 5)));
    assert!(drain(&mut e).is_empty());
    // The decider names node 2 with a newer term: leave 0, join 2.
    e.handle_external_leader(t0, Some(lref(2, 9)));
    assert_eq!(
        drain(&mut e),
        vec![
            Output::LeaderLost {
                leader: NodeId(0),
                term: Term(7),
                reason: LossReason::NewerTerm
            },
            send(2, Join { promised: Term(7) }),
            send(0, status(7, None)),
            send(2, status(7, None)),
        ]
    );
    // Nobody leads: nothing to follow, calls wait.
    e.handle_external_leader(t0, None);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.role(), Role::Waiting);
    assert_eq!(e.leader(), None);
}

#[test]
fn a_join_refused_because_the_leader_did_not_know_yet_is_retried_on_its_claim() {
    let t0 = Instant::now();
    let mut e = ext(1);
    up(&mut e, t0, 0);
    e.handle_external_leader(t0, Some(lref(0, 7)));
    assert_eq!(drain(&mut e), vec![send(0, Join { promised: Term(0) })]);
    // Node 0 answers the Join with "no leader": etcd has not told it yet.
    e.handle_message(t0, NodeId(0), status(0, None));
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.role(), Role::Waiting);
    // Then it announces that it leads: join again at once.
    e.handle_message(t0, NodeId(0), status(7, Some((SENDER, 7))));
    assert_eq!(drain(&mut e), vec![send(0, Join { promised: Term(0) })]);
    // And without a claim, the deadline retries.
    e.handle_message(t0, NodeId(0), status(0, None));
    let d = e.poll_timeout().expect("a retry deadline");
    e.handle_timeout(d);
    assert_eq!(drain(&mut e), vec![send(0, Join { promised: Term(0) })]);
}

#[test]
fn following_leader_lost_by_the_decider_or_the_connection() {
    let t0 = Instant::now();
    let mut e = ext(2);
    up(&mut e, t0, 0);
    e.handle_external_leader(t0, Some(lref(0, 7)));
    drain(&mut e);
    e.handle_message(
        t0,
        NodeId(0),
        Leader {
            term: Term(7),
            synch: vec![],
        },
    );
    drain(&mut e);
    // The connection drops: the leader is lost; when it is back, it joins again.
    e.handle_peer_down(t0, NodeId(0));
    assert_eq!(
        drain(&mut e),
        vec![Output::LeaderLost {
            leader: NodeId(0),
            term: Term(7),
            reason: LossReason::LeaderDown
        }]
    );
    assert_eq!(e.role(), Role::Waiting);
    e.handle_peer_up(t0, NodeId(0));
    assert_eq!(
        drain(&mut e),
        vec![
            send(0, status(7, None)),
            send(0, Join { promised: Term(7) })
        ]
    );
    e.handle_message(
        t0,
        NodeId(0),
        Leader {
            term: Term(7),
            synch: vec![],
        },
    );
    drain(&mut e);
    // The decider says nobody leads.
    e.handle_external_leader(t0, None);
    assert_eq!(
        drain(&mut e),
        vec![
            Output::LeaderLost {
                leader: NodeId(0),
                term: Term(7),
                reason: LossReason::LeaderDown
            },
            send(0, status(7, None)),
        ]
    );
}

#[test]
fn leader_stops_on_loss_newer_leader_or_lease_end_but_not_on_a_stale_no_leader() {
    let t0 = Instant::now();
    let mut e = ext(0);
    up(&mut e, t0, 1);
    e.handle_external_lease(t0, Term(7), t0 + 2 * S);
    e.handle_external_leader(t0, Some(lref(0, 7)));
    drain(&mut e);
    // "No leader" about a previous leader, after this node's own election: ignored.
    e.handle_external_leader(t0, None);
    assert!(drain(&mut e).is_empty());
    assert!(e.is_acting(t0));
    // The decider reports the loss of another term: ignored; of this one: stepped down.
    e.handle_external_lost(t0, Term(6), LossReason::LeaseExpired);
    assert!(drain(&mut e).is_empty());
    e.handle_external_lost(t0, Term(7), LossReason::TakenOver);
    assert_eq!(
        drain(&mut e),
        vec![
            Output::LeadershipLost {
                term: Term(7),
                reason: LossReason::TakenOver
            },
            send(1, status(7, None)),
        ]
    );
    // Leads again (term 8), then the decider names node 1 with a newer term.
    e.handle_external_lease(t0, Term(8), t0 + 2 * S);
    e.handle_external_leader(t0, Some(lref(0, 8)));
    drain(&mut e);
    e.handle_external_leader(t0, Some(lref(1, 9)));
    assert_eq!(
        drain(&mut e),
        vec![
            Output::LeadershipLost {
                term: Term(8),
                reason: LossReason::NewerTerm
            },
            send(1, Join { promised: Term(8) }),
            send(1, status(8, None)),
        ]
    );
    assert!(!e.is_acting(t0));
    // Leads again (term 10); the runtime's lease clock says the lease ended.
    e.handle_external_lease(t0, Term(10), t0 + 2 * S);
    e.handle_external_leader(t0, Some(lref(0, 10)));
    drain(&mut e);
    e.handle_lease_ended(t0 + S);
    assert_eq!(
        drain(&mut e),
        vec![
            Output::LeadershipLost {
                term: Term(10),
                reason: LossReason::LeaseExpired
            },
            send(1, status(10, None)),
        ]
    );
}

#[test]
fn a_leader_named_without_a_lease_does_not_act() {
    let t0 = Instant::now();
    let mut e = ext(0);
    e.handle_external_leader(t0, Some(lref(0, 3)));
    assert!(e.is_leader());
    assert!(!e.is_acting(t0), "no lease yet");
    e.handle_external_lease(t0, Term(3), t0 + S);
    assert!(e.is_acting(t0));
    // An engine that is not external ignores the external inputs.
    let mut b = Engine::new(cfg(0, 3, 3), t0);
    drain(&mut b);
    b.handle_external_leader(t0, Some(lref(0, 3)));
    b.handle_external_lease(t0, Term(3), t0 + S);
    assert!(drain(&mut b).is_empty());
    assert!(!b.is_leader() && !b.is_external());
}

#[test]
fn ids_travel_relative_to_the_connection() {
    use super::super::external::{from_wire, to_wire};
    let (me, to) = (NodeId(4), NodeId(9));
    // Each node numbers the members it meets in its own order: an id means nothing to
    // another node, so a Status says "me", "you" or "someone else".
    for (named, wire) in [(4, SENDER), (9, RECEIVER), (2, OTHER), (0, OTHER)] {
        assert_eq!(
            to_wire(me, to, status(3, Some((named, 5)))),
            status(3, Some((wire, 5))),
            "{named}"
        );
    }
    assert_eq!(to_wire(me, to, status(3, None)), status(3, None));
    let reject = |l| Reject {
        round: Term(1),
        promised: Term(2),
        leader: Some(lref(l, 3)),
    };
    assert_eq!(to_wire(me, to, reject(4)), reject(SENDER));
    // Read back by the receiver (its own id 1, the sender's id there 6).
    let (rx, from) = (NodeId(1), NodeId(6));
    for (wire, named) in [(SENDER, 6), (RECEIVER, 1), (OTHER, OTHER), (3, OTHER)] {
        assert_eq!(
            from_wire(rx, from, status(3, Some((wire, 5)))),
            status(3, Some((named, 5))),
            "{wire}"
        );
    }
    let join = Join { promised: Term(7) };
    assert_eq!(from_wire(rx, from, join.clone()), join);
}

#[test]
fn two_nodes_numbering_each_other_differently_follow_and_serve() {
    // Leader L: itself 0, the follower 5. Follower F: itself 2, the leader 7 (a table that
    // grew at run time: n_nodes starts at 3 and F learns 7 later).
    let t0 = Instant::now();
    let mut l = Engine::new_external(cfg(0, 3, 8), t0);
    let mut f = Engine::new_external(cfg(2, 3, 3), t0);
    let (l_f, f_l) = (NodeId(5), NodeId(7));
    // An id beyond the table is not a peer yet...
    f.handle_external_leader(t0, Some(lref(7, 11)));
    assert_eq!(f.leader(), None);
    assert!(drain(&mut f).is_empty(), "id 7 is not a member yet");
    // ... until the table grows.
    f.add_external_nodes(8);
    f.handle_external_leader(t0, Some(lref(7, 11)));
    l.handle_external_leader(t0, Some(lref(0, 11)));
    drain(&mut l);
    l.handle_peer_up(t0, l_f);
    f.handle_peer_up(t0, f_l);
    // Deliver until quiet.
    let mut surrendered = false;
    for _ in 0..10 {
        for o in drain(&mut l) {
            if let Output::Send { to, msg } = o {
                assert_eq!(to, l_f);
                f.handle_message(t0, f_l, msg);
            } else if let Output::Elected {
                joined: Some(j), ..
            } = o
            {
                assert_eq!(j, l_f);
                l.provide_synch(Some(j), b"s".to_vec());
            }
        }
        for o in drain(&mut f) {
            if let Output::Send { to, msg } = o {
                assert_eq!(to, f_l);
                l.handle_message(t0, l_f, msg);
            } else if let Output::Surrendered { leader, term, .. } = o {
                assert_eq!((leader, term), (f_l, Term(11)));
                surrendered = true;
            }
        }
    }
    assert!(surrendered, "the follower took the leader's Synch");
    assert_eq!(f.leader(), Some(lref(7, 11)));
    assert_eq!(l.followers().iter().copied().collect::<Vec<_>>(), vec![l_f]);
    assert!(l.is_leader());
}
