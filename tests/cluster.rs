//! In-process clusters of real nodes over TCP on 127.0.0.1:0.

mod common;

use std::time::Duration;

use common::*;
use gen_leader::CallError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_candidates_agree_on_the_first() {
    let nodes = cluster(3, 0).await;
    let leader = agreed(&all(&nodes)).await;
    assert_eq!(leader, nodes[0].name);
    assert!(nodes[0].handle.is_leader());
    // Every node's view is complete, not only the leader's (agreement on the leader can come
    // a moment before the last connection between two followers is up).
    for n in &nodes {
        let v = n
            .handle
            .wait_for(WAIT, |v| v.alive.len() == 3)
            .await
            .unwrap_or_else(|| n.handle.view());
        assert_eq!(v.alive.len(), 3, "{v:?}");
        assert!(v.down.is_empty());
        assert_eq!(n.handle.candidates().len(), 3);
    }
    eventually("the first's elected callback", || {
        nodes[0]
            .events()
            .iter()
            .any(|e| matches!(e, Ev::Elected { .. }))
    })
    .await;
    let elected: Vec<_> = nodes[0]
        .events()
        .into_iter()
        .filter(|e| matches!(e, Ev::Elected { joined: None, .. }))
        .collect();
    assert_eq!(elected.len(), 1, "{:?}", nodes[0].events());
    // A view is published just before its callback runs: wait for the callbacks.
    for n in &nodes[1..] {
        eventually("surrendered to the first", || {
            n.events()
                .iter()
                .any(|e| matches!(e, Ev::Surrendered { leader, .. } if *leader == nodes[0].name))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_call_from_follower_and_from_leader() {
    let nodes = cluster(3, 0).await;
    let leader = agreed(&all(&nodes)).await;
    let r = nodes[2].handle.leader_call("hola".into()).await.unwrap();
    assert_eq!(r, format!("{leader}:hola"));
    let r = nodes[0]
        .handle
        .leader_call("on-leader".into())
        .await
        .unwrap();
    assert_eq!(r, format!("{leader}:on-leader"));
    // The caller's node got the broadcast before the reply.
    assert_eq!(
        nodes[2].from_leader().first().map(String::as_str),
        Some("hola")
    );
    eventually("node 1 gets both broadcasts", || {
        nodes[1].from_leader().len() == 2
    })
    .await;
    assert_eq!(nodes[1].from_leader(), vec!["hola", "on-leader"]);
}

/// Read-your-writes on a follower: when its `leader_call` returns, the broadcast the leader
/// sent with the reply has already been applied there (`from_leader` ran), although the
/// reply itself skips the follower's actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_sees_its_broadcast_before_its_reply() {
    let nodes = cluster(3, 0).await;
    agreed(&all(&nodes)).await;
    for i in 0..300 {
        let req = format!("w{i}");
        nodes[2].handle.leader_call(req.clone()).await.unwrap();
        assert!(
            nodes[2].from_leader().last() == Some(&req),
            "call {i} returned before its broadcast was applied: {:?}",
            nodes[2].from_leader().last()
        );
    }
    assert_eq!(nodes[2].handle.stats().await.unwrap().pending_calls, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_cast_broadcasts_in_order_to_two_followers() {
    let nodes = cluster(3, 0).await;
    agreed(&all(&nodes)).await;
    let sent: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    for (i, m) in sent.iter().enumerate() {
        // Casts from both a follower and the leader.
        nodes[i % 2 + 1].handle.leader_cast(m.clone()).unwrap();
    }
    eventually("all casts reach the leader", || {
        nodes[0]
            .events()
            .iter()
            .filter(|e| matches!(e, Ev::LeaderCast(_)))
            .count()
            == 200
    })
    .await;
    let order: Vec<String> = nodes[0]
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::LeaderCast(m) => Some(m),
            _ => None,
        })
        .collect();
    for f in &nodes[1..] {
        eventually("followers get every broadcast", || {
            f.from_leader().len() == 200
        })
        .await;
        assert_eq!(f.from_leader(), order, "same order, once each");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_synch_before_later_broadcasts() {
    let (ls, names) = bind(3).await;
    let mut ls = ls.into_iter();
    let a = start(config(&names[0], &names, &[]), ls.next().unwrap()).await;
    let b = start(config(&names[1], &names, &[]), ls.next().unwrap()).await;
    agreed(&[&a, &b]).await;
    for i in 0..5 {
        b.handle.leader_call(format!("early{i}")).await.unwrap();
    }
    let c = start(config(&names[2], &names, &[]), ls.next().unwrap()).await;
    agreed(&[&a, &b, &c]).await;
    for i in 0..5 {
        b.handle.leader_call(format!("late{i}")).await.unwrap();
    }
    eventually("c gets the late broadcasts", || c.from_leader().len() == 5).await;
    let ev = c.events();
    let synch_at = ev
        .iter()
        .position(|e| matches!(e, Ev::Surrendered { .. }))
        .expect("c surrendered");
    let Ev::Surrendered { synch, .. } = &ev[synch_at] else {
        unreachable!()
    };
    assert_eq!(
        synch,
        &(0..5).map(|i| format!("early{i}")).collect::<Vec<_>>()
    );
    let first_bcast = ev
        .iter()
        .position(|e| matches!(e, Ev::FromLeader(_)))
        .unwrap();
    assert!(synch_at < first_bcast);
    assert_eq!(
        c.from_leader(),
        (0..5).map(|i| format!("late{i}")).collect::<Vec<_>>()
    );
    // The leader saw the join.
    assert!(a
        .events()
        .iter()
        .any(|e| matches!(e, Ev::Elected { joined: Some(j), .. } if *j == c.name)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_call_and_cast() {
    let nodes = cluster(2, 0).await;
    agreed(&all(&nodes)).await;
    let r = nodes[1].handle.call("x".into()).await.unwrap();
    assert_eq!(r, format!("local:{}:x", nodes[1].name));
    nodes[1].handle.cast("y".into()).unwrap();
    eventually("cast handled", || {
        nodes[1].events().contains(&Ev::Cast("y".into()))
    })
    .await;
    assert!(!nodes[0].events().contains(&Ev::Cast("y".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_shutdown_elects_next_and_runs_handle_down() {
    let nodes = cluster(3, 0).await;
    agreed(&all(&nodes)).await;
    let old_term = nodes[1].handle.term();
    nodes[0].handle.shutdown().await;
    assert!(nodes[0].events().contains(&Ev::Terminate));
    let leader = agreed(&[&nodes[1], &nodes[2]]).await;
    assert_eq!(leader, nodes[1].name);
    assert!(nodes[1].handle.term() > old_term);
    eventually("handle_down for the old leader", || {
        nodes[1].events().contains(&Ev::Down(nodes[0].name.clone()))
    })
    .await;
    let r = nodes[2].handle.leader_call("after".into()).await.unwrap();
    assert_eq!(r, format!("{}:after", nodes[1].name));
    assert_eq!(
        nodes[0].handle.leader_call("x".into()).await,
        Err(CallError::Stopped)
    );
}

/// A handle read inside `elected`/`surrendered` already shows the callback's leader and term,
/// at a cold start and after a failover (the view is published before the callbacks run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_view_is_current_inside_leadership_callbacks() {
    let nodes = cluster(3, 0).await;
    agreed(&all(&nodes)).await;
    nodes[0].handle.shutdown().await;
    agreed(&[&nodes[1], &nodes[2]]).await;
    eventually("handle_down for the old leader", || {
        nodes[1].events().contains(&Ev::Down(nodes[0].name.clone()))
    })
    .await;
    // The views are published before the callbacks run: wait for the last one.
    let count = || {
        nodes
            .iter()
            .flat_map(|n| n.events())
            .filter(|e| matches!(e, Ev::Elected { .. } | Ev::Surrendered { .. }))
            .count()
    };
    eventually("the failover's callbacks", || count() >= 5).await;
    let callbacks = count();
    for n in &nodes {
        for e in n.events() {
            assert!(!matches!(e, Ev::ViewLag(_)), "{}: {e:?}", n.name);
        }
    }
    // Cold start: 1 win + 2 surrenders; failover: 1 win + 1 surrender.
    let all_events: Vec<Vec<Ev>> = nodes.iter().map(|n| n.events()).collect();
    assert!(
        callbacks >= 5,
        "only {callbacks} leadership callbacks seen: {all_events:?}"
    );
}

/// A caller that gives up on its own (drops the `leader_call` future) leaves nothing behind
/// in the node's tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_calls_leave_no_entry() {
    let nodes = cluster(3, 0).await;
    agreed(&all(&nodes)).await;
    for n in &nodes {
        let r = tokio::time::timeout(
            Duration::from_millis(50),
            n.handle
                .leader_call_timeout("defer-abandoned".into(), Duration::from_secs(60)),
        )
        .await;
        assert!(r.is_err(), "the deferred call cannot have returned");
    }
    for n in &nodes[1..] {
        // The follower's direct-path entry goes with the dropped future, at once.
        assert_eq!(
            n.handle.stats().await.unwrap().pending_calls,
            0,
            "{}",
            n.name
        );
    }
}

/// Far more concurrent callers than the connection's send queue holds: the callers wait for
/// room, every call succeeds, and the leader is not disconnected for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_send_queue_is_served() {
    let (ls, names) = bind(3).await;
    let mut nodes = Vec::new();
    for (name, l) in names.iter().zip(ls) {
        nodes.push(start(config(name, &names, &[]).send_queue(16), l).await);
    }
    let leader = agreed(&all(&nodes)).await;
    let term = nodes[2].handle.term();
    let calls: Vec<_> = (0..2_000)
        .map(|i| {
            let h = nodes[2].handle.clone();
            tokio::spawn(async move { h.leader_call(format!("b{i}")).await })
        })
        .collect();
    for c in calls {
        let r = c.await.unwrap();
        assert!(r.as_ref().is_ok_and(|r| r.starts_with(&leader)), "{r:?}");
    }
    assert_eq!(nodes[2].handle.term(), term, "no new election");
    assert_eq!(
        nodes[2].handle.leader().map(|l| l.to_string()),
        Some(leader)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_in_flight_when_leader_dies_returns_leader_down_at_once() {
    let nodes = cluster(3, 0).await;
    agreed(&all(&nodes)).await;
    let h = nodes[2].handle.clone();
    let call = tokio::spawn(async move {
        let t = tokio::time::Instant::now();
        let r = h
            .leader_call_timeout("defer-me".into(), Duration::from_secs(30))
            .await;
        (r, t.elapsed())
    });
    eventually("the leader holds the call", || {
        nodes[0]
            .events()
            .contains(&Ev::LeaderCall("defer-me".into()))
    })
    .await;
    nodes[0].handle.shutdown().await;
    let (r, took) = call.await.unwrap();
    assert!(
        matches!(&r, Err(CallError::LeaderDown { leader, .. }) if leader.to_string() == nodes[0].name),
        "{r:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_reply_reaches_the_caller() {
    let nodes = cluster(2, 0).await;
    agreed(&all(&nodes)).await;
    let h = nodes[1].handle.clone();
    let call = tokio::spawn(async move { h.leader_call("defer-1".into()).await });
    eventually("the leader holds the call", || {
        nodes[0]
            .events()
            .contains(&Ev::LeaderCall("defer-1".into()))
    })
    .await;
    assert_eq!(
        nodes[0].handle.leader_call("release".into()).await.unwrap(),
        "ok"
    );
    assert_eq!(call.await.unwrap().unwrap(), "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_is_never_elected() {
    let nodes = cluster(1, 2).await;
    let leader = agreed(&all(&nodes)).await;
    assert_eq!(leader, nodes[0].name);
    let r = nodes[2].handle.leader_call("w".into()).await.unwrap();
    assert_eq!(r, format!("{leader}:w"));
    nodes[0].handle.shutdown().await;
    eventually("workers see the leader go", || {
        nodes[1..].iter().all(|n| n.handle.leader().is_none())
    })
    .await;
    let r = nodes[1]
        .handle
        .leader_call_timeout("w2".into(), Duration::from_millis(500))
        .await;
    assert_eq!(r, Err(CallError::NoLeader));
    for n in &nodes[1..] {
        assert!(!n.events().iter().any(|e| matches!(e, Ev::Elected { .. })));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_wait_for_an_election_instead_of_failing() {
    // Start only the lowest-priority node's caller first: its call waits until a leader
    // exists.
    let (ls, names) = bind(2).await;
    let mut ls = ls.into_iter();
    let l0 = ls.next().unwrap();
    let b = start(
        config(&names[1], &names, &[]).startup_timeout(Duration::from_secs(3)),
        ls.next().unwrap(),
    )
    .await;
    // Keep node 0's port bound but not accepting, so node 1 keeps waiting.
    let h = b.handle.clone();
    let call = tokio::spawn(async move { h.leader_call("early".into()).await });
    tokio::task::yield_now().await;
    let a = start(config(&names[0], &names, &[]), l0).await;
    agreed(&[&a, &b]).await;
    assert!(call.await.unwrap().unwrap().ends_with(":early"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_entry_is_leaked() {
    let nodes = cluster(3, 0).await;
    agreed(&all(&nodes)).await;
    let mut tasks = Vec::new();
    for i in 0..600 {
        let h = nodes[i % 3].handle.clone();
        tasks.push(tokio::spawn(
            async move { h.leader_call(format!("c{i}")).await },
        ));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // Deferred calls that are never answered time out, and leave nothing behind either.
    for n in &nodes {
        let r = n
            .handle
            .leader_call_timeout("defer-forever".into(), Duration::from_millis(200))
            .await;
        assert_eq!(r, Err(CallError::Timeout));
    }
    // Entries are removed at their deadline by the node (the caller may see its own timer
    // fire a moment earlier): within a second, the tables must be empty.
    for n in &nodes {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let s = n.handle.stats().await.unwrap();
            if s.pending_calls == 0 && s.waiting_calls == 0 {
                assert_eq!(s.connected, 2);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: leaked {s:?}",
                n.name
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let served = nodes[0].handle.stats().await.unwrap().leader_calls_served;
    assert_eq!(served, 603);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_mode_cluster_elects_and_serves_calls() {
    let (ls, names) = bind(3).await;
    let mut nodes = Vec::new();
    for (l, name) in ls.into_iter().zip(names.iter()) {
        nodes.push(start(config(name, &names, &[]).spin(Duration::from_micros(50)), l).await);
    }
    let leader = agreed(&all(&nodes)).await;
    for i in 0..50 {
        let r = nodes[2].handle.leader_call(format!("s{i}")).await.unwrap();
        assert_eq!(r, format!("{leader}:s{i}"));
    }
    eventually("broadcasts reach node 1", || {
        nodes[1].from_leader().len() == 50
    })
    .await;
}
