//! etcd mode without member lists (issue 10: "the mesh admits nodes the election names"),
//! against a real etcd (feature `etcd`; `testkit::etcd` starts etcd on random ports and kills
//! it on every exit path; without an etcd binary the tests return early). Every node knows
//! only etcd: it learns the leader from the election value, dials it, and the leader admits it
//! once the handshake (cookie, cluster, election) checks out.
#![cfg(feature = "etcd")]

mod common;

use std::time::{Duration, Instant};

use common::{bind, Ev, TNode};
use gen_leader::config::{Backend, ElectionRole};
use gen_leader::etcd::EtcdConfig;
use gen_leader::{Config, ConfigBuilder, NodeName};
use testkit::etcd::EtcdCluster;

const TTL: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(15);

use common::run_serial as run;

/// A node that knows nothing but etcd (no candidate or worker list).
fn bare(etcd: &EtcdCluster, election: &str, name: &str) -> ConfigBuilder {
    let e = EtcdConfig::new(etcd.endpoints(), election)
        .with_ttl(TTL)
        .with_connect_timeout(Duration::from_secs(1))
        .with_request_timeout(Duration::from_millis(500));
    Config::builder(name)
        .cookie("test-cookie")
        .backend(Backend::Etcd(e))
}

/// See `common::settled_among`.
async fn settled(nodes: &[TNode], live: &[usize]) -> (usize, u64) {
    common::settled_among(nodes, live, WAIT).await
}

async fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !pred() {
        assert!(t0.elapsed() < WAIT, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `leader_call` from `from` is served by `leader`, and its broadcast reaches every other node
/// of `live`.
async fn call_and_broadcast(nodes: &[TNode], live: &[usize], leader: usize, from: usize, m: &str) {
    let r = nodes[from]
        .handle
        .leader_call(m.to_string())
        .await
        .unwrap_or_else(|e| panic!("call from {}: {e}", nodes[from].name));
    assert_eq!(r, format!("{}:{m}", nodes[leader].name));
    assert!(nodes[leader].events().contains(&Ev::LeaderCall(m.into())));
    for &i in live.iter().filter(|&&i| i != leader) {
        eventually(&format!("{m} broadcast to {}", nodes[i].name), || {
            nodes[i].from_leader().contains(&m.to_string())
        })
        .await;
    }
}

fn refused_by(n: &TNode, peer: &str, what: &str) -> bool {
    n.handle
        .view()
        .refused
        .iter()
        .any(|(p, line)| p.to_string() == peer && line.contains(what))
}

#[test]
fn unlisted_nodes_elect_serve_and_fail_over() {
    run(unlisted_body);
}

async fn unlisted_body() {
    let Some(etcd) = EtcdCluster::single() else {
        return;
    };
    // Three candidates and a worker, none of which lists anyone.
    let (ls, names) = bind(4).await;
    let mut nodes = Vec::new();
    for (i, (l, name)) in ls.into_iter().zip(&names).enumerate() {
        let mut b = bare(&etcd, "gl-dyn/elect", name);
        if i == 3 {
            b = b.election_role(ElectionRole::Worker);
        }
        nodes.push(common::start(b, l).await);
    }
    let all = [0, 1, 2, 3];
    let (leader, term) = settled(&nodes, &all).await;
    eprintln!("{} leads (revision {term})", nodes[leader].name);
    assert_ne!(leader, 3, "the worker never campaigns");
    // The leader met every follower at run time: they are in its view.
    let v = nodes[leader].handle.view();
    for (i, n) in names.iter().enumerate() {
        let n: NodeName = n.parse().unwrap();
        assert!(
            v.alive.contains(&n),
            "{i} not alive in the leader's view: {v:#?}"
        );
    }
    for f in (0..4).filter(|&i| i != leader) {
        call_and_broadcast(&nodes, &all, leader, f, &format!("m{f}")).await;
    }

    // The leader shuts down: an unlisted candidate wins, the others (worker included) follow
    // it, and calls and broadcasts reach it.
    let t0 = Instant::now();
    nodes[leader].handle.shutdown().await;
    let live: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let (next, term2) = settled(&nodes, &live).await;
    eprintln!(
        "failover after graceful shutdown: {:?} ({} leads, revision {term2})",
        t0.elapsed(),
        nodes[next].name
    );
    assert!(next != leader && next != 3);
    assert!(term2 > term, "{term2} > {term}");
    for f in live.iter().copied().filter(|&i| i != next) {
        call_and_broadcast(&nodes, &live, next, f, &format!("again{f}")).await;
    }
    // The new leader's Synch carried what was broadcast before.
    let synched = nodes[3].events().into_iter().any(|e| {
        matches!(e, Ev::Surrendered { leader, synch, .. }
            if leader == nodes[next].name && synch.contains(&"m3".to_string()))
    });
    assert!(
        synched,
        "the worker's Synch from the new leader: {:?}",
        nodes[3].events()
    );
    for &i in &live {
        nodes[i].handle.shutdown().await;
    }
}

#[test]
fn a_wrong_cookie_another_election_and_a_full_table_are_refused() {
    run(refused_body);
}

async fn refused_body() {
    let Some(etcd) = EtcdCluster::single() else {
        return;
    };
    let (ls, names) = bind(5).await;
    let mut ls = ls.into_iter();
    // The leader holds at most 2 members: itself and one more.
    let a = common::start(
        bare(&etcd, "gl-dyn/refuse", &names[0]).max_members(2),
        ls.next().unwrap(),
    )
    .await;
    let nodes = vec![a];
    let (leader, _) = settled(&nodes, &[0]).await;
    assert_eq!(leader, 0);
    let mut nodes = nodes;
    // A worker with another cookie learns the leader from etcd, dials it, and is refused.
    nodes.push(
        common::start(
            bare(&etcd, "gl-dyn/refuse", &names[1])
                .election_role(ElectionRole::Worker)
                .cookie("wrong-cookie"),
            ls.next().unwrap(),
        )
        .await,
    );
    eventually("the wrong cookie refused", || {
        refused_by(&nodes[1], &names[0], "wrong cookie")
    })
    .await;
    // A node on another election that lists the leader as a hint dials it and is refused,
    // naming both elections.
    nodes.push(
        common::start(
            bare(&etcd, "gl-dyn/other", &names[2]).candidates([&names[0]]),
            ls.next().unwrap(),
        )
        .await,
    );
    eventually("the other election refused", || {
        refused_by(&nodes[2], &names[0], "election \"gl-dyn/refuse\"")
            && refused_by(&nodes[2], &names[0], "election \"gl-dyn/other\"")
    })
    .await;
    // A good worker joins (the table's second member)...
    nodes.push(
        common::start(
            bare(&etcd, "gl-dyn/refuse", &names[3]).election_role(ElectionRole::Worker),
            ls.next().unwrap(),
        )
        .await,
    );
    let (l, _) = settled(&nodes, &[0, 3]).await;
    assert_eq!(l, 0);
    call_and_broadcast(&nodes, &[0, 3], 0, 3, "in").await;
    // ... and a third is refused: the table is full.
    nodes.push(
        common::start(
            bare(&etcd, "gl-dyn/refuse", &names[4]).election_role(ElectionRole::Worker),
            ls.next().unwrap(),
        )
        .await,
    );
    eventually("the full table refused", || {
        refused_by(&nodes[4], &names[0], "member table full")
    })
    .await;
    // None of the refused ever followed the leader, and the leader never let them in.
    let v = nodes[0].handle.view();
    let a: NodeName = names[0].parse().unwrap();
    for i in [1, 2, 4] {
        assert_ne!(nodes[i].handle.view().leader, Some(a.clone()), "{i}");
        let n: NodeName = names[i].parse().unwrap();
        assert!(
            !v.alive.contains(&n) && !v.down.contains(&n),
            "{i} in {v:#?}"
        );
    }
    for n in &nodes {
        n.handle.shutdown().await;
    }
}
