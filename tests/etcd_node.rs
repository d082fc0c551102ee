//! Nodes whose leader etcd decides (`Backend::Etcd`), against a real etcd (feature `etcd`;
//! `testkit::etcd` starts etcd on random ports and kills it on every exit path; without an
//! etcd binary the tests return early, as tests/etcd.rs does). Three nodes in one process on
//! 127.0.0.1:0: etcd elects, the mesh carries calls, the Synch and broadcasts.
#![cfg(feature = "etcd")]

mod common;

use std::time::{Duration, Instant};

use common::{bind, Ev, Recorder, TNode};
use gen_leader::config::Backend;
use gen_leader::etcd::EtcdConfig;
use gen_leader::{Config, Node};
use testkit::etcd::EtcdCluster;

const TTL: Duration = Duration::from_secs(2);

use common::run_serial as run;

async fn start(etcd: &EtcdCluster, election: &str) -> Vec<TNode> {
    let (ls, names) = bind(3).await;
    let mut nodes = Vec::new();
    for (l, name) in ls.into_iter().zip(&names) {
        let e = EtcdConfig::new(etcd.endpoints(), election)
            .with_ttl(TTL)
            .with_connect_timeout(Duration::from_secs(1))
            .with_request_timeout(Duration::from_millis(500));
        let cfg = Config::builder(name)
            .candidates(&names)
            .cookie("test-cookie")
            .backend(Backend::Etcd(e))
            .build()
            .expect("config");
        let (rec, events) = Recorder::new(name);
        let handle = Node::start_with_listener(cfg, rec, l).await.expect("start");
        nodes.push(TNode {
            name: name.clone(),
            handle,
            events,
        });
    }
    nodes
}

/// Every node not in `gone` agrees on a leader whose guard holds (`common::settled_among`).
async fn settled(nodes: &[TNode], gone: &[usize], within: Duration) -> (usize, u64) {
    let live: Vec<usize> = (0..nodes.len()).filter(|i| !gone.contains(i)).collect();
    common::settled_among(nodes, &live, within).await
}

#[test]
fn etcd_elects_the_mesh_serves_and_shutdown_fails_over_fast() {
    run(etcd_elects_body);
}

async fn etcd_elects_body() {
    let Some(etcd) = EtcdCluster::single() else {
        return;
    };
    let nodes = start(&etcd, "gl-node/elect").await;
    let (leader, term) = settled(&nodes, &[], Duration::from_secs(10)).await;
    eprintln!("{} leads, term (etcd revision) {term}", nodes[leader].name);
    let guard = nodes[leader].handle.guard().expect("leader's guard");
    assert_eq!(
        guard.term().get(),
        term,
        "the guard's token is the etcd revision"
    );
    assert!(
        guard.remaining().is_some_and(|r| r <= TTL),
        "a lease below the TTL"
    );
    for (i, n) in nodes.iter().enumerate() {
        if i != leader {
            assert!(n.handle.guard().is_err(), "only the leader holds a guard");
        }
    }
    // A leader_call from a follower is served by the leader; its broadcast reaches followers.
    let f = (leader + 1) % 3;
    let r = nodes[f]
        .handle
        .leader_call("hello".into())
        .await
        .expect("call");
    assert_eq!(r, format!("{}:hello", nodes[leader].name));
    let t0 = Instant::now();
    while (0..3)
        .filter(|&i| i != leader)
        .any(|i| !nodes[i].from_leader().contains(&"hello".to_string()))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "broadcast not delivered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(nodes[leader]
        .events()
        .contains(&Ev::LeaderCall("hello".into())));

    // Graceful shutdown of the leader: it resigns, a new leader comes well before the TTL.
    let t0 = Instant::now();
    nodes[leader].handle.shutdown().await;
    let (next, term2) = settled(&nodes, &[leader], Duration::from_secs(10)).await;
    let took = t0.elapsed();
    eprintln!(
        "failover after graceful shutdown: {took:?} ({} leads, term {term2})",
        nodes[next].name
    );
    assert_ne!(next, leader);
    assert!(term2 > term, "the new revision is higher: {term2} > {term}");
    assert!(took < TTL, "failover waited for the TTL: {took:?}");
    assert!(
        guard.ensure(Duration::ZERO).is_err(),
        "the old guard failed"
    );
    let other = (0..3).find(|&i| i != leader && i != next).unwrap();
    let r = nodes[other]
        .handle
        .leader_call("again".into())
        .await
        .expect("call to the new leader");
    assert_eq!(r, format!("{}:again", nodes[next].name));
    for (i, n) in nodes.iter().enumerate() {
        if i != leader {
            n.handle.shutdown().await;
        }
    }
}

#[test]
fn etcd_stopped_the_leader_stops_acting_before_the_ttl() {
    run(etcd_stopped_body);
}

async fn etcd_stopped_body() {
    let Some(mut etcd) = EtcdCluster::single() else {
        return;
    };
    let nodes = start(&etcd, "gl-node/pause").await;
    let (leader, term) = settled(&nodes, &[], Duration::from_secs(10)).await;
    let guard = nodes[leader].handle.guard().expect("guard");
    // SIGSTOP etcd: keep-alives go unanswered; the leader's guard must fail before the TTL
    // (counted from the pause, which is after the last keep-alive was sent).
    let paused = Instant::now();
    assert!(etcd.member(0).pause(), "SIGSTOP etcd");
    let failed_at = loop {
        if guard.ensure(Duration::ZERO).is_err() {
            break paused.elapsed();
        }
        for (i, n) in nodes.iter().enumerate() {
            if i != leader {
                assert!(n.handle.guard().is_err(), "two guards at once");
            }
        }
        assert!(paused.elapsed() < TTL * 2, "the guard still holds");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!("guard failed {failed_at:?} after etcd stopped (TTL {TTL:?})");
    assert!(failed_at < TTL, "the guard outlived the TTL: {failed_at:?}");
    assert!(
        nodes.iter().all(|n| n.handle.guard().is_err()),
        "nobody holds a guard while etcd is stopped"
    );
    // The view says why (once the backend has noticed).
    let t0 = Instant::now();
    while !nodes
        .iter()
        .any(|n| n.handle.view().backend_unavailable.is_some())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the view never said why"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // etcd back: a leader again, with a higher revision.
    assert!(etcd.member(0).resume(), "SIGCONT etcd");
    let (_, term2) = settled(&nodes, &[], Duration::from_secs(20)).await;
    assert!(term2 > term, "{term2} > {term}");
    for n in &nodes {
        n.handle.shutdown().await;
    }
}
