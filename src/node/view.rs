//! The node's view of the cluster: one snapshot of the engine, published to every handle.
//!
//! `Election` (inside callbacks) and `ClusterView` (from handles) are both read from the same
//! engine, and the view is published before leadership callbacks run, so what a handle shows
//! is never older than what a callback has been told.

use tokio::sync::watch;

use crate::config::{Config, Members};
use crate::election::{Engine, Role};
use crate::types::{NodeId, NodeName, Term};

/// A snapshot of this node's view of the cluster, published on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterView {
    /// This node.
    pub me: NodeName,
    /// The leader, if known.
    pub leader: Option<NodeName>,
    /// The current term (the leader's, or the highest promised while there is none).
    pub term: Term,
    /// What the election engine is doing.
    pub role: Role,
    /// Members this node is connected to, and itself.
    pub alive: Vec<NodeName>,
    /// Members this node is not connected to.
    pub down: Vec<NodeName>,
}

impl ClusterView {
    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.leader.as_ref() == Some(&self.me)
    }

    /// The view of a node that has just started: no leader, everyone else down.
    pub(crate) fn starting(config: &Config) -> Self {
        ClusterView {
            me: config.me().clone(),
            leader: None,
            term: Term(0),
            role: Role::Starting,
            alive: vec![config.me().clone()],
            down: config
                .members()
                .all()
                .iter()
                .filter(|n| *n != config.me())
                .cloned()
                .collect(),
        }
    }
}

/// Publishes the engine's view if it differs from the last one published.
pub(crate) fn publish(tx: &watch::Sender<ClusterView>, engine: &Engine, members: &Members) {
    let leader = engine.leader().map(|l| members.name(l.node).clone());
    let term = engine.term();
    let role = engine.role();
    tx.send_if_modified(|v| {
        let alive_changed = members
            .all()
            .iter()
            .enumerate()
            .any(|(i, n)| engine.is_alive(NodeId(i as u32)) != v.alive.contains(n));
        if v.leader == leader && v.term == term && v.role == role && !alive_changed {
            return false;
        }
        v.leader = leader;
        v.term = term;
        v.role = role;
        v.alive.clear();
        v.down.clear();
        for (i, n) in members.all().iter().enumerate() {
            if engine.is_alive(NodeId(i as u32)) {
                v.alive.push(n.clone());
            } else {
                v.down.push(n.clone());
            }
        }
        true
    });
}
