//! Observers on real nodes over TCP on 127.0.0.1: what a status says, that an observer is
//! never counted as a member (whatever name it gives itself), that a wrong cookie is refused,
//! and that a flood of observers — unauthenticated or holding every session slot — does not
//! keep the members from electing and rejoining.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use gen_leader::wire::codec::encode_frame;
use gen_leader::wire::handshake::{
    HandshakeError, HandshakeMsg, ObserverConfig, Refusal, OBSERVER_VERSION,
};
use gen_leader::{Mode, NodeName, ObserveError, Observer, StateKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The observer sessions a node serves at once (`docs/operating.md`).
const MAX_OBSERVERS: usize = 16;

fn name(n: &TNode) -> NodeName {
    n.name.parse().unwrap()
}

fn cfg() -> ObserverConfig {
    ObserverConfig::new("observer-test", "test-cookie")
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Every node's leadership events, term, connection count and alive list.
async fn snapshot(nodes: &[TNode]) -> Vec<(Vec<Ev>, u64, usize, usize)> {
    let mut out = Vec::new();
    for n in nodes {
        let stats = n.handle.stats().await.unwrap();
        let v = n.handle.view();
        let events = n
            .events()
            .into_iter()
            .filter(|e| matches!(e, Ev::Elected { .. } | Ev::Surrendered { .. } | Ev::Down(_)))
            .collect();
        out.push((events, v.term.get(), stats.connected, v.alive.len()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_say_what_each_node_sees_and_observers_are_never_members() {
    let nodes = cluster(3, 0).await;
    let leader = agreed(&all(&nodes)).await;
    assert_eq!(leader, nodes[0].name);
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    // The reference state is the settled one: agreement can come before the two followers
    // have connected to each other (a snapshot taken then saw one peer, later two).
    let t0 = std::time::Instant::now();
    let before = loop {
        let s = snapshot(&nodes).await;
        if s.iter()
            .all(|(_, _, connected, alive)| *connected == 2 && *alive == 3)
        {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "never fully connected: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // The leader's status.
    let mut o0 = Observer::connect(&name(&nodes[0]), &cfg()).await.unwrap();
    let s = o0.status().await.unwrap();
    assert_eq!(s.node, names[0]);
    assert_eq!(s.state, StateKind::Leading);
    assert_eq!(s.role, "leader");
    assert_eq!(s.leader.as_deref(), Some(&*names[0]));
    assert_eq!(s.term, nodes[0].handle.term().get());
    assert_eq!(sorted(s.followers.clone()), sorted(names[1..].to_vec()));
    assert_eq!(sorted(s.alive.clone()), sorted(names.clone()));
    assert!(s.down.is_empty() && s.refused.is_empty(), "{s:?}");
    assert_eq!(s.candidates, names);
    assert_eq!(
        (s.mode.kind.as_str(), s.lease_remaining_ms),
        ("bully", None)
    );
    assert_eq!(s.cluster, "gen_leader");
    assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
    assert!(s.uptime_ms > 0 && s.at_ms > 0, "{s:?}");
    // A follower's.
    let mut o1 = Observer::connect(&name(&nodes[1]), &cfg()).await.unwrap();
    let s = o1.status().await.unwrap();
    assert_eq!(s.state, StateKind::Following);
    assert_eq!(s.role, "follower");
    assert_eq!(s.leader.as_deref(), Some(&*names[0]));
    assert!(s.followers.is_empty());
    assert_eq!(s.term, nodes[0].handle.term().get());

    // Observers calling themselves by members' names, watching, asking: nothing changes for
    // the members.
    let mut named = ObserverConfig::new(names[2].clone(), "test-cookie");
    let mut watch = Observer::connect(&name(&nodes[1]), &named)
        .await
        .unwrap()
        .watch()
        .await
        .unwrap();
    assert_eq!(
        watch.next().await.unwrap().leader.as_deref(),
        Some(&*names[0])
    );
    named.name = names[1].clone();
    let mut as_peer = Observer::connect(&name(&nodes[0]), &named).await.unwrap();
    for _ in 0..5 {
        as_peer.status().await.unwrap();
        o1.status().await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(
        snapshot(&nodes).await,
        before,
        "an observer changed the members' state"
    );

    // A member that is down stays down, even with an observer under its name connected.
    nodes[2].handle.shutdown().await;
    eventually("n0 and n1 see n2 down", || {
        nodes[..2].iter().all(|n| {
            n.handle
                .view()
                .down
                .iter()
                .any(|d| d.to_string() == names[2])
        })
    })
    .await;
    named.name = names[2].clone();
    let mut ghost = Observer::connect(&name(&nodes[0]), &named).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = ghost.status().await.unwrap();
    assert_eq!(s.down, [names[2].clone()]);
    assert_eq!(s.followers, [names[1].clone()]);
    assert!(nodes[0]
        .handle
        .view()
        .down
        .iter()
        .any(|d| d.to_string() == names[2]));
    assert_eq!(nodes[0].handle.stats().await.unwrap().connected, 1);

    // A wrong cookie is refused like a member's: the observer refuses the node's proof, and
    // the node counts the refusal.
    let refused = nodes[0].handle.stats().await.unwrap().handshakes_refused;
    let r = Observer::connect(&name(&nodes[0]), &ObserverConfig::new("x", "bad cookie")).await;
    assert!(
        matches!(
            r.as_ref().map_err(ObserveError::handshake),
            Err(Some(HandshakeError::Rejected(Refusal::BadAuth)))
        ),
        "{r:?}"
    );
    let deadline = Instant::now() + WAIT;
    while nodes[0].handle.stats().await.unwrap().handshakes_refused <= refused {
        assert!(
            Instant::now() < deadline,
            "the node did not count the refusal"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(watch);
    for n in &nodes[..2] {
        n.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_mode_statuses_show_the_lease_and_the_missing_quorum() {
    let (ls, names) = bind(3).await;
    let mut nodes = Vec::new();
    for (l, n) in ls.into_iter().zip(&names) {
        nodes.push(start(config(n, &names, &[]).mode(Mode::quorum()), l).await);
    }
    let leader = agreed(&all(&nodes)).await;
    let li = names.iter().position(|n| *n == leader).unwrap();
    let s = Observer::connect(&name(&nodes[li]), &cfg())
        .await
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(s.state, StateKind::Leading);
    assert_eq!(s.mode.kind, "quorum");
    assert_eq!(s.mode.lease_ms, Some(1000));
    let lease = s.mode.leader_lease_ms.unwrap();
    let left = s.lease_remaining_ms.expect("a quorum leader has a lease");
    assert!(left > 0 && left <= lease, "{left} ms left of {lease}");
    let fi = (li + 1) % 3;
    let s = Observer::connect(&name(&nodes[fi]), &cfg())
        .await
        .unwrap()
        .status()
        .await
        .unwrap();
    assert_eq!(
        (s.state, s.lease_remaining_ms),
        (StateKind::Following, None)
    );

    // Two of three stop: the last one has no quorum, and says how far it is from one.
    let last = (li + 2) % 3;
    for i in [li, fi] {
        nodes[i].handle.shutdown().await;
    }
    let deadline = Instant::now() + WAIT;
    let s = loop {
        let s = Observer::connect(&name(&nodes[last]), &cfg())
            .await
            .unwrap()
            .status()
            .await
            .unwrap();
        if s.state == StateKind::NoQuorum || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(s.state, StateKind::NoQuorum, "{s:?}");
    let nq = s.no_quorum.expect("the numbers");
    assert_eq!((nq.reachable, nq.needed), (1, 2));
    assert_eq!(s.leader, None);
    nodes[last].handle.shutdown().await;
}

/// One unauthenticated observer: sends a valid `Observe` (so it is past the `Hello`
/// deadline) and never proves the cookie; reconnects whenever the node drops it.
async fn stalled_observer(addr: String, node: String, stop: Arc<AtomicBool>) {
    let observe = encode_frame(&HandshakeMsg::Observe {
        observer_version: OBSERVER_VERSION,
        cluster: None,
        from: "flood".into(),
        to: node,
        nonce: [7; 16],
    })
    .unwrap();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        if s.write_all(&observe).await.is_err() {
            continue;
        }
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { break },
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    if stop.load(Ordering::Relaxed) { return }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_observers_cannot_starve_members() {
    let mut nodes = cluster(3, 0).await;
    agreed(&all(&nodes)).await;
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let addrs: Vec<String> = nodes.iter().map(|n| name(n).addr()).collect();

    // Every session slot of every node taken; one more is refused with the limit.
    let mut held = Vec::new();
    for n in &nodes {
        for _ in 0..MAX_OBSERVERS {
            let o = Observer::connect(&name(n), &cfg()).await.unwrap();
            held.push(o.watch().await.unwrap());
        }
        let r = Observer::connect(&name(n), &cfg()).await;
        assert!(
            matches!(
                r.as_ref().map_err(ObserveError::handshake),
                Err(Some(HandshakeError::Refused(Refusal::ObserverLimit {
                    limit: 16
                })))
            ),
            "{r:?}"
        );
    }
    // And 200 unauthenticated observers per node, kept open.
    let stop = Arc::new(AtomicBool::new(false));
    let mut flood = Vec::new();
    for (addr, node) in addrs.iter().zip(&names) {
        for _ in 0..200 {
            flood.push(tokio::spawn(stalled_observer(
                addr.clone(),
                node.clone(),
                stop.clone(),
            )));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A follower restarts under the flood: it rejoins, and a call is served.
    nodes[1].handle.shutdown().await;
    let listener = {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::net::TcpListener::bind(&addrs[1]).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < until => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot bind {} again: {e}", addrs[1]),
            }
        }
    };
    let t0 = Instant::now();
    nodes[1] = start(config(&names[1], &names, &[]), listener).await;
    let leader = agreed(&all(&nodes)).await;
    let rejoin = t0.elapsed();
    assert_eq!(leader, names[0]);
    assert!(
        rejoin < Duration::from_secs(5),
        "rejoin took {rejoin:?} under the flood"
    );
    eventually("all three connected", || {
        nodes.iter().all(|n| n.handle.view().alive.len() == 3)
    })
    .await;
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        nodes[1].handle.leader_call("x".into()),
    )
    .await;
    assert_eq!(r, Ok(Ok(format!("{}:x", names[0]))));
    // Closed sessions free their slots: without node 0's watches, a status is served there.
    held.retain(|w| w.node() != names[0]);
    let deadline = Instant::now() + WAIT;
    let s = loop {
        match Observer::connect(&name(&nodes[0]), &cfg()).await {
            Ok(mut o) => break o.status().await.unwrap(),
            Err(e) => assert!(Instant::now() < deadline, "no slot freed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(s.alive.len(), 3);
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.abort();
    }
    eprintln!("rejoin under an observer flood: {rejoin:?}");
    for n in &nodes {
        n.handle.shutdown().await;
    }
}
