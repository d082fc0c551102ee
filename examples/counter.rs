//! The shortest tour: three nodes in one process share a counter. A call from a follower
//! reaches the leader, the leader broadcasts the new total, the leader stops and another one
//! takes over with the total it received. Run: `cargo run --example counter`.
use std::time::Duration;

use gen_leader::{Behaviour, Config, Election, LeaderHandle, LeaderReply, Node, NodeName, ReplyTo};

/// This node's copy of the total.
struct Counter(u64);
/// What `handle_leader_call` returns: a reply and a broadcast.
type Answer = LeaderReply<u64, u64>;

impl Behaviour for Counter {
    type Call = u64; // "add this much"
    type Reply = u64; // the new total
    type Cast = ();
    type Synch = u64; // the leader's total, for new followers
    type Broadcast = u64; // every new total
    type Info = ();

    async fn elected(&mut self, _: &Election<'_>, _: Option<&NodeName>) -> u64 {
        self.0
    }
    async fn surrendered(&mut self, total: u64, _: &Election<'_>) {
        self.0 = total;
    }
    async fn handle_leader_call(&mut self, add: u64, _: ReplyTo<u64>, _: &Election<'_>) -> Answer {
        self.0 += add;
        LeaderReply::ReplyAndBroadcast(self.0, self.0)
    }
    async fn from_leader(&mut self, total: u64, _: &Election<'_>) {
        self.0 = total;
    }
    async fn handle_call(&mut self, _: u64, _: &Election<'_>) -> u64 {
        self.0 // a local read of this node's copy
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Free ports first, so that the node names carry them.
    let (mut listeners, mut names) = (vec![], vec![]);
    for i in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
        names.push(format!("n{i}@{}", listeners[i].local_addr()?));
    }
    let mut nodes: Vec<LeaderHandle<Counter>> = Vec::new();
    for (name, listener) in names.iter().zip(listeners) {
        let config = Config::builder(name)
            .candidates(&names)
            .cookie("counter-demo")
            .build()?;
        nodes.push(Node::start_with_listener(config, Counter(0), listener).await?);
    }
    let leader = nodes[2]
        .wait_for(Duration::from_secs(5), |v| v.leader.is_some())
        .await
        .ok_or("no leader")?;
    println!("leader {} at term {}", leader.leader.unwrap(), leader.term);

    let total = nodes[2].leader_call(5).await?; // from a follower, served by the leader
                                                // Its broadcast reached n2 before the reply did (read-your-writes on the caller's node).
    println!(
        "n2 added 5: total {total}; n2's copy: {}",
        nodes[2].call(0).await?
    );
    nodes[0].shutdown().await; // the leader goes away
    let v = nodes[2]
        .wait_for(Duration::from_secs(5), |v| {
            v.leader.as_ref().is_some_and(|l| l.to_string() != names[0])
        })
        .await
        .ok_or("no new leader")?;
    println!("new leader {} at term {}", v.leader.unwrap(), v.term);
    println!("n2 added 1: total {}", nodes[2].leader_call(1).await?); // the total survived
    futures::future::join_all(nodes[1..].iter().map(|n| n.shutdown())).await;
    Ok(())
}
