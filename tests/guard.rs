//! `LeaderGuard`, `LeaderState` and the mode check, on real nodes in one process (127.0.0.1).
//!
//! Bully mode: the leader's guard holds and has no lease, a follower is told who leads, the
//! guard's `lost()` resolves when the leader is taken over or stopped (and `ensure` fails from
//! then on), and `watch_state` goes from `Electing` to `Leading`/`Following`. A bully node
//! and a quorum node refuse each other. Quorum mode: the leader's guard has a lease no longer
//! than the leader lease, a node alone among three has no quorum (and says so to its guard and
//! its calls), and a leader cut from its majority loses its guard by the end of its lease.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gen_leader::{
    CallError, FencingToken, GuardError, LeaderState, LossReason, Mode, NodeName, QuorumConfig,
    Term,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn name(s: &str) -> NodeName {
    s.parse().unwrap()
}

/// Waits until `node`'s leader state satisfies `pred`; returns it.
async fn state_of(node: &TNode, what: &str, pred: impl Fn(&LeaderState) -> bool) -> LeaderState {
    let mut rx = node.handle.watch_state();
    let found = match tokio::time::timeout(WAIT, rx.wait_for(|s| pred(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    found.unwrap_or_else(|| {
        panic!(
            "{}: timed out waiting for {what}; state {:?}",
            node.name,
            node.handle.leader_state()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bully_the_leader_holds_a_guard_a_follower_is_told_who_leads() {
    let nodes = cluster(3, 0).await;
    let leader = agreed(&all(&nodes)).await;
    let l = nodes.iter().find(|n| n.name == leader).unwrap();
    let term = l.handle.term();

    let g = l.handle.guard().expect("the leader gets a guard");
    assert_eq!(g.term(), FencingToken::from(term));
    assert_eq!(g.remaining(), None, "bully mode: no lease");
    assert_eq!(g.ensure(Duration::from_secs(3600)), Ok(()));
    assert_eq!(
        l.handle.leader_state(),
        LeaderState::Leading { term, until: None }
    );
    assert_eq!(l.handle.view().lease_until, None);

    for f in nodes.iter().filter(|n| n.name != leader) {
        assert_eq!(
            f.handle.guard().unwrap_err(),
            GuardError::NotLeader {
                leader: Some(name(&leader)),
                term
            }
        );
        assert_eq!(
            f.handle.leader_state(),
            LeaderState::Following {
                leader: name(&leader),
                term
            }
        );
    }
    for n in &nodes {
        n.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bully_a_guard_is_lost_when_taken_over_and_when_stopped() {
    // n1 leads alone first; n0 (higher priority, preempt on both) then takes over.
    let (mut ls, names) = bind(2).await;
    let l1 = ls.pop().unwrap();
    let l0 = ls.pop().unwrap();
    let n1 = start(config(&names[1], &names, &[]).preempt(true), l1).await;
    state_of(&n1, "n1 leading alone", |s| s.leading().is_some()).await;
    let g = n1.handle.guard().expect("n1 leads");
    let t1 = g.term();
    let lost = tokio::spawn({
        let g = g.clone();
        async move { g.lost().await }
    });
    tokio::time::sleep(ms(50)).await;
    assert!(!lost.is_finished(), "nothing happened yet");

    let n0 = start(config(&names[0], &names, &[]).preempt(true), l0).await;
    let why = tokio::time::timeout(WAIT, lost)
        .await
        .expect("lost() resolves")
        .unwrap();
    assert_eq!(
        why,
        GuardError::Lost {
            term: Term(t1.get()),
            reason: LossReason::TakenOver
        }
    );
    // Lost for good, on every clone.
    assert_eq!(g.ensure(ms(0)), Err(why.clone()));
    assert_eq!(g.clone().ensure(ms(0)), Err(why));
    assert_eq!(g.remaining(), None);
    let s = state_of(&n1, "n1 following n0", |s| {
        matches!(s, LeaderState::Following { .. })
    })
    .await;
    assert!(matches!(s, LeaderState::Following { leader, .. } if leader == name(&names[0])));

    // The new leader's guard has a greater token, and ends with the node.
    let g0 = n0.handle.guard().expect("n0 leads");
    assert!(g0.term() > t1, "{:?} <= {t1:?}", g0.term());
    let lost0 = tokio::spawn({
        let g0 = g0.clone();
        async move { g0.lost().await }
    });
    n0.handle.shutdown().await;
    assert_eq!(
        tokio::time::timeout(WAIT, lost0).await.unwrap().unwrap(),
        GuardError::Stopped
    );
    assert_eq!(g0.ensure(ms(0)), Err(GuardError::Stopped));
    assert_eq!(n0.handle.leader_state(), LeaderState::Stopped);
    assert_eq!(n0.handle.guard().unwrap_err(), GuardError::Stopped);
    n1.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bully_watch_state_goes_from_electing_to_leading_and_following() {
    let (mut ls, names) = bind(2).await;
    let l1 = ls.pop().unwrap();
    let l0 = ls.pop().unwrap();
    // n1's port is bound but nobody answers yet: n0 waits for it (the startup timeout).
    let n0 = start(config(&names[0], &names, &[]), l0).await;
    let mut rx = n0.handle.watch_state();
    assert_eq!(*rx.borrow_and_update(), LeaderState::Electing);
    let n1 = start(config(&names[1], &names, &[]), l1).await;
    let leader = agreed(&[&n0, &n1]).await;
    assert_eq!(leader, names[0]);
    let term = n0.handle.term();
    assert_eq!(
        *rx.borrow_and_update(),
        LeaderState::Leading { term, until: None }
    );
    state_of(&n1, "n1 following", |s| {
        *s == LeaderState::Following {
            leader: name(&names[0]),
            term,
        }
    })
    .await;
    n1.handle.shutdown().await;
    n0.handle.shutdown().await;
    assert_eq!(*rx.borrow_and_update(), LeaderState::Stopped);
}

fn refusal(node: &TNode, peer: &str) -> Option<String> {
    node.handle
        .view()
        .refused
        .iter()
        .find(|(n, _)| n.to_string() == peer)
        .map(|(_, r)| r.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bully_node_and_a_quorum_node_refuse_each_other() {
    let (mut ls, names) = bind(2).await;
    let l1 = ls.pop().unwrap();
    let l0 = ls.pop().unwrap();
    let bully = start(config(&names[0], &names, &[]), l0).await;
    let quorum = start(config(&names[1], &names, &[]).mode(Mode::quorum()), l1).await;
    eventually("both views show the refusal", || {
        refusal(&bully, &names[1]).is_some() && refusal(&quorum, &names[0]).is_some()
    })
    .await;
    let (rb, rq) = (
        refusal(&bully, &names[1]).unwrap(),
        refusal(&quorum, &names[0]).unwrap(),
    );
    let quorum_text = "quorum (lease 1s, max_drift 0.01, margin 10ms)";
    // Whichever side refused, each names the field with its own value first.
    assert!(
        rq.contains("mode differs") && rq.contains(&format!("ours {quorum_text}, theirs bully")),
        "{rq}"
    );
    assert!(
        rb.contains("mode differs") && rb.contains(&format!("ours bully, theirs {quorum_text}")),
        "{rb}"
    );
    assert!(bully.handle.view().alive.len() == 1 && quorum.handle.view().alive.len() == 1);
    bully.handle.shutdown().await;
    quorum.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_nodes_with_other_parameters_refuse_each_other() {
    let (mut ls, names) = bind(2).await;
    let l1 = ls.pop().unwrap();
    let l0 = ls.pop().unwrap();
    let q = QuorumConfig::default();
    let a = start(config(&names[0], &names, &[]).mode(Mode::Quorum(q)), l0).await;
    let b = start(
        config(&names[1], &names, &[]).mode(Mode::Quorum(q.max_drift(0.02))),
        l1,
    )
    .await;
    eventually("the refusal", || refusal(&b, &names[0]).is_some()).await;
    // Whichever side refused, b names the field with its own value first.
    let r = refusal(&b, &names[0]).unwrap();
    assert!(
        r.contains("mode differs")
            && r.contains("ours quorum (lease 1s, max_drift 0.02, margin 10ms), theirs quorum (lease 1s, max_drift 0.01, margin 10ms)"),
        "{r}"
    );
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

// ----- quorum mode ------------------------------------------------------------------------

/// A short lease so that the tests are quick: 600 ms · 0.99 / 1.01 − 10 ms ≈ 578 ms for the
/// leader, well above 2 heartbeats (50 ms).
fn quorum() -> QuorumConfig {
    QuorumConfig::default().lease(ms(600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_the_leader_guard_has_a_lease() {
    let (ls, names) = bind(3).await;
    let mut nodes = Vec::new();
    for (l, n) in ls.into_iter().zip(&names) {
        nodes.push(start(config(n, &names, &[]).mode(Mode::Quorum(quorum())), l).await);
    }
    let leader = agreed(&all(&nodes)).await;
    let l = nodes.iter().find(|n| n.name == leader).unwrap();
    let g = state_and_guard(l).await;
    let left = g.remaining().expect("quorum mode: a lease");
    assert!(
        left > Duration::ZERO && left <= quorum().leader_lease(),
        "{left:?} vs {:?}",
        quorum().leader_lease()
    );
    assert_eq!(g.ensure(ms(10)), Ok(()));
    assert!(matches!(
        g.ensure(Duration::from_secs(5)),
        Err(GuardError::LeaseEnding { needed, .. }) if needed == Duration::from_secs(5)
    ));
    // Renewals keep it alive well past one lease.
    tokio::time::sleep(quorum().leader_lease() * 2).await;
    assert_eq!(g.ensure(ms(10)), Ok(()), "{:?}", l.handle.leader_state());
    assert!(matches!(
        l.handle.leader_state(),
        LeaderState::Leading { until: Some(_), .. }
    ));
    assert!(l.handle.view().lease_until.is_some());
    for f in nodes.iter().filter(|n| n.name != leader) {
        assert!(matches!(
            f.handle.guard(),
            Err(GuardError::NotLeader { leader: Some(ref x), .. }) if x.to_string() == leader
        ));
    }
    for n in &nodes {
        n.handle.shutdown().await;
    }
}

/// The leader's guard, once its state shows a lease.
async fn state_and_guard(l: &TNode) -> gen_leader::LeaderGuard {
    state_of(l, "leading with a lease", |s| {
        matches!(s, LeaderState::Leading { until: Some(_), .. })
    })
    .await;
    l.handle.guard().expect("the leader gets a guard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_a_lone_node_has_no_quorum_and_says_so() {
    let (mut ls, names) = bind(3).await;
    let l0 = ls.remove(0);
    // The two others are bound but never started: connections to them go nowhere.
    let n0 = start(
        config(&names[0], &names, &[]).mode(Mode::Quorum(quorum())),
        l0,
    )
    .await;
    let s = state_of(&n0, "no quorum", |s| {
        matches!(s, LeaderState::NoQuorum { .. })
    })
    .await;
    assert_eq!(
        s,
        LeaderState::NoQuorum {
            reachable: 1,
            needed: 2
        }
    );
    assert_eq!(
        n0.handle.guard().unwrap_err(),
        GuardError::NoQuorum {
            reachable: 1,
            needed: 2
        }
    );
    // Still so once the startup wait is over (a bully node would lead alone by now).
    tokio::time::sleep(ms(2000)).await;
    assert_eq!(
        n0.handle.leader_state(),
        LeaderState::NoQuorum {
            reachable: 1,
            needed: 2
        }
    );
    let v = n0.handle.view();
    assert_eq!(v.leader, None);
    assert!(v.no_quorum.is_some());
    // A call waits for a leader within its deadline, then says why there is none.
    let t0 = Instant::now();
    let e = n0
        .handle
        .leader_call_timeout("x".into(), ms(400))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        CallError::NoQuorum {
            reachable: 1,
            needed: 2
        }
    );
    assert!(t0.elapsed() >= ms(390), "waited {:?}", t0.elapsed());
    assert!(e.to_string().contains("no quorum"), "{e}");
    assert!(format!("{e:?}").contains("NoQuorum"), "{e:?}");
    // It never led: no lease, no leadership.
    assert!(n0.events().iter().all(|e| !matches!(e, Ev::Elected { .. })));
    drop(ls);
    n0.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_a_leader_cut_from_its_majority_stops_by_the_end_of_its_lease() {
    let (ls, names) = bind(3).await;
    let mut nodes = Vec::new();
    for (l, n) in ls.into_iter().zip(&names) {
        nodes.push(start(config(n, &names, &[]).mode(Mode::Quorum(quorum())), l).await);
    }
    let leader = agreed(&all(&nodes)).await;
    let li = nodes.iter().position(|n| n.name == leader).unwrap();
    let l = nodes.remove(li);
    let g = state_and_guard(&l).await;
    let lost = tokio::spawn({
        let g = g.clone();
        async move { g.lost().await }
    });
    // The two others stop: no renewal can be acknowledged from now on.
    let cut = Instant::now();
    for n in &nodes {
        n.handle.shutdown().await;
    }
    let why = tokio::time::timeout(WAIT, lost)
        .await
        .expect("lost() resolves")
        .unwrap();
    let after = cut.elapsed();
    assert_eq!(
        why,
        GuardError::Lost {
            term: l.handle.term(),
            reason: LossReason::LeaseExpired
        }
    );
    // The lease ran at most one leader lease from the last acknowledged renewal, which was
    // sent before the cut; a little slack for the scheduler.
    assert!(
        after <= quorum().leader_lease() + ms(150),
        "the guard held {after:?} after the cut"
    );
    assert!(g.ensure(ms(0)).is_err());
    assert_eq!(g.remaining(), Some(Duration::ZERO));
    // The node steps down: no quorum, and no leader callback runs any more.
    state_of(&l, "no quorum after stepping down", |s| {
        matches!(s, LeaderState::NoQuorum { .. })
    })
    .await;
    let e = l
        .handle
        .leader_call_timeout("late".into(), ms(200))
        .await
        .unwrap_err();
    assert!(matches!(e, CallError::NoQuorum { .. }), "{e:?}");
    assert!(!l.events().contains(&Ev::LeaderCall("late".into())));
    l.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_a_leader_that_shuts_down_hands_over_without_waiting_out_its_lease() {
    // A long lease: waiting it out would take 2 s.
    let q = QuorumConfig::default().lease(ms(2000));
    let (ls, names) = bind(3).await;
    let mut nodes = Vec::new();
    for (l, n) in ls.into_iter().zip(&names) {
        nodes.push(start(config(n, &names, &[]).mode(Mode::Quorum(q)), l).await);
    }
    let leader = agreed(&all(&nodes)).await;
    let li = nodes.iter().position(|n| n.name == leader).unwrap();
    let l = nodes.remove(li);
    let g = state_and_guard(&l).await;
    let t0 = Instant::now();
    l.handle.shutdown().await;
    assert_eq!(g.ensure(ms(0)), Err(GuardError::Stopped));
    let next = agreed(&all(&nodes)).await;
    let took = t0.elapsed();
    assert_ne!(next, leader);
    assert!(
        took < ms(1500),
        "the new leader took {took:?}: the old one did not step down"
    );
    for n in &nodes {
        n.handle.shutdown().await;
    }
}
