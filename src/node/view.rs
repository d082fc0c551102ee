//! The node's view of the cluster: one snapshot of the engine, published to every handle.
//!
//! `Election` (inside callbacks) and `ClusterView` (from handles) are both read from the same
//! engine, and the view is published before leadership callbacks run, so what a handle shows
//! is never older than what a callback has been told.

use std::time::Instant;

use tokio::sync::watch;

use crate::config::{Config, Members};
use crate::election::{Engine, NoQuorum, Role};
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
    /// Members whose connection was refused, by them or by this node, because the two are
    /// configured differently (cookie, protocol version, cluster name, member lists,
    /// `preempt`, heartbeat, failure timeout or mode), with the reason as logged; e.g.
    /// `(n2, "n2@h:2 refused our connection: wrong cookie (authentication failed): ...")`.
    /// A member leaves this list when it connects. A node that is alone while this list is
    /// not empty is alone because of a misconfiguration, not because the others are down.
    pub refused: Vec<(NodeName, String)>,
    /// Quorum mode, on the leader: when its lease ends unless renewed (as in
    /// [`LeaderState::Leading`](crate::LeaderState::Leading), on the node's lease clock).
    /// `None` elsewhere and in bully mode.
    pub lease_until: Option<Instant>,
    /// Quorum mode: `Some` while this node has no leader and reaches fewer candidates than a
    /// majority (calls made on it fail with
    /// [`CallError::NoQuorum`](crate::CallError::NoQuorum) at their deadline).
    pub no_quorum: Option<NoQuorum>,
    /// External backend (etcd): `Some((what failed, how))` while the store cannot be reached;
    /// calls made while there is no leader fail with
    /// [`CallError::NoLeader`](crate::CallError::NoLeader) at their deadline.
    pub backend_unavailable: Option<(crate::backend::StoreOp, crate::backend::FailureKind)>,
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
            refused: Vec::new(),
            lease_until: None,
            no_quorum: None,
            backend_unavailable: None,
        }
    }
}

/// Publishes the engine's view if it differs from the last one published; `lease_until` is
/// the lease's end on the lease clock (quorum mode). `last_alive` is the node's copy of which
/// members the published view shows alive (empty before the first publication): comparing
/// flags keeps a publication with no membership change free of name comparisons and
/// allocations (it runs after every input that changed anything, and comparing names showed
/// in profiles of a 33-node start-up).
pub(crate) fn publish(
    tx: &watch::Sender<ClusterView>,
    engine: &Engine,
    members: &Members,
    lease_until: Option<Instant>,
    last_alive: &mut Vec<bool>,
) {
    let leader = engine.leader().map(|l| members.name(l.node).clone());
    let term = engine.term();
    let role = engine.role();
    let no_quorum = engine.no_quorum();
    let n = members.all().len();
    let alive = |i: usize| engine.is_alive(NodeId(i as u32));
    let alive_changed = last_alive.len() != n || (0..n).any(|i| last_alive[i] != alive(i));
    if alive_changed {
        last_alive.clear();
        last_alive.extend((0..n).map(alive));
    }
    let flags: &[bool] = last_alive;
    tx.send_if_modified(|v| {
        if v.leader == leader
            && v.term == term
            && v.role == role
            && v.lease_until == lease_until
            && v.no_quorum == no_quorum
            && !alive_changed
        {
            return false;
        }
        v.leader = leader;
        v.term = term;
        v.role = role;
        v.lease_until = lease_until;
        v.no_quorum = no_quorum;
        if alive_changed {
            split(&mut v.alive, &mut v.down, members.all(), flags);
        }
        true
    });
}

/// Rebuilds `alive` and `down` from `members` split by `alive_flags`, in `members`' order.
/// The names already in the two lists (each in `members`' order, as this leaves them) are
/// moved, not cloned.
fn split(
    alive: &mut Vec<NodeName>,
    down: &mut Vec<NodeName>,
    members: &[NodeName],
    alive_flags: &[bool],
) {
    let mut old_alive = std::mem::take(alive).into_iter().peekable();
    let mut old_down = std::mem::take(down).into_iter().peekable();
    for (n, &up) in members.iter().zip(alive_flags) {
        let name = if old_alive.peek() == Some(n) {
            old_alive.next()
        } else if old_down.peek() == Some(n) {
            old_down.next()
        } else {
            None
        };
        let name = name.unwrap_or_else(|| n.clone());
        if up {
            alive.push(name);
        } else {
            down.push(name);
        }
    }
}

/// Sets (`Some`) or clears (`None`) the refusal shown for `peer`.
pub(crate) fn set_refused(tx: &watch::Sender<ClusterView>, peer: &NodeName, reason: Option<&str>) {
    tx.send_if_modified(|v| {
        let i = v.refused.iter().position(|(n, _)| n == peer);
        match (i, reason) {
            (Some(i), Some(r)) if v.refused[i].1 == r => false,
            (Some(i), Some(r)) => {
                v.refused[i].1 = r.to_owned();
                true
            }
            (Some(i), None) => {
                v.refused.remove(i);
                true
            }
            (None, Some(r)) => {
                v.refused.push((peer.clone(), r.to_owned()));
                v.refused.sort_by(|a, b| a.0.cmp(&b.0));
                true
            }
            (None, None) => false,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_set_replaced_and_cleared() {
        let cfg = Config::builder("a@127.0.0.1:1")
            .candidates(["a@127.0.0.1:1", "b@127.0.0.1:2", "c@127.0.0.1:3"])
            .cookie("c")
            .build()
            .expect("config");
        let (tx, rx) = watch::channel(ClusterView::starting(&cfg));
        let (b, c) = (
            cfg.members().candidates()[1].clone(),
            cfg.members().candidates()[2].clone(),
        );
        assert!(rx.borrow().refused.is_empty());
        set_refused(&tx, &c, Some("x"));
        set_refused(&tx, &b, Some("y"));
        assert_eq!(
            rx.borrow().refused,
            vec![(b.clone(), "y".into()), (c.clone(), "x".into())]
        );
        set_refused(&tx, &c, Some("z"));
        set_refused(&tx, &b, None);
        assert_eq!(rx.borrow().refused, vec![(c, "z".into())]);
    }

    fn names(n: usize) -> Vec<NodeName> {
        (0..n)
            .map(|i| {
                format!("n{i}@127.0.0.1:{}", 1000 + i)
                    .parse()
                    .expect("name")
            })
            .collect()
    }

    #[test]
    fn the_split_follows_the_members_order_and_moves_names() {
        let m = names(5);
        let (mut alive, mut down) = (vec![m[2].clone()], vec![m[0].clone(), m[4].clone()]);
        let up = [true, false, true, false, true];
        split(&mut alive, &mut down, &m, &up);
        assert_eq!(alive, vec![m[0].clone(), m[2].clone(), m[4].clone()]);
        assert_eq!(down, vec![m[1].clone(), m[3].clone()]);
        // One member changes side.
        let up = [true, false, false, false, true];
        split(&mut alive, &mut down, &m, &up);
        assert_eq!(alive, vec![m[0].clone(), m[4].clone()]);
        assert_eq!(down, vec![m[1].clone(), m[2].clone(), m[3].clone()]);
        // Lists in another order (never produced here) still give the right split.
        let (mut alive, mut down) = (vec![m[4].clone(), m[0].clone()], vec![]);
        let up = [true, false, true, false, true];
        split(&mut alive, &mut down, &m, &up);
        assert_eq!(alive, vec![m[0].clone(), m[2].clone(), m[4].clone()]);
        assert_eq!(down, vec![m[1].clone(), m[3].clone()]);
    }
}
