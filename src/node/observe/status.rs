//! [`NodeStatus`]: one node's view of the cluster, as an observer receives it, and how the
//! node's actor takes it.
//!
//! Why a type of its own (not [`ClusterView`](crate::ClusterView) or
//! [`NodeStats`](crate::NodeStats)): it crosses the network to a tool that may be a release
//! older or newer than the node, so it is plain data (names as strings, durations in ms),
//! travels as JSON, and every field has a default: a client reads the fields it knows from
//! any node, which is what an operator needs during a rolling upgrade. It gathers in one
//! snapshot what is otherwise spread over the view, the leader state, the stats and the
//! configuration, taken by the actor between two inputs so that its fields agree.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::super::state::NodeState;
use crate::backend::ElectionIdentity;
use crate::behaviour::Behaviour;
use crate::config::Mode;
use crate::election::Role;
use crate::types::NodeId;

/// One node's status, as `gen-leader status` shows it (from
/// [`Observer::status`](crate::Observer::status)).
///
/// Every field has a default, so a status from another release of gen-leader decodes: fields
/// it lacks take their default, fields this release does not know are ignored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NodeStatus {
    /// The node (`name@host:port`).
    pub node: String,
    /// The cluster name.
    pub cluster: String,
    /// The gen-leader release the node runs.
    pub version: String,
    /// The node's incarnation (random at each start: a new value means it restarted).
    pub incarnation: u64,
    /// The election mode and its parameters.
    pub mode: ModeStatus,
    /// This node's leadership (as [`LeaderState`](crate::LeaderState)).
    pub state: StateKind,
    /// What the election engine is doing ([`Role`](crate::Role), in snake case: `starting`,
    /// `waiting`, `proposing`, `captured`, `joining`, `follower`, `leader`).
    pub role: String,
    /// The leader this node knows, if any.
    pub leader: Option<String>,
    /// The current term (the leader's, or the highest promised while there is none).
    pub term: u64,
    /// Quorum mode, on the leader: how long its lease still runs unless renewed.
    pub lease_remaining_ms: Option<u64>,
    /// Quorum mode, without a leader: the candidates reached and the majority needed.
    pub no_quorum: Option<NoQuorumStatus>,
    /// The candidates, highest priority first.
    pub candidates: Vec<String>,
    /// The workers.
    pub workers: Vec<String>,
    /// Members this node is connected to, and itself.
    pub alive: Vec<String>,
    /// Members this node is not connected to.
    pub down: Vec<String>,
    /// On the leader: the members that follow it.
    pub followers: Vec<String>,
    /// External backend: while the store cannot be reached, which operation failed and how
    /// (`lease keep-alive: unreachable`).
    pub backend_unavailable: Option<String>,
    /// Members whose connection was refused because the two are configured differently
    /// (cookie, version, member lists, mode...), and why.
    pub refused: Vec<RefusedPeer>,
    /// `leader_call`s started on this node and not yet resolved.
    pub pending_calls: u64,
    /// Of those, the ones waiting for a leader.
    pub waiting_calls: u64,
    /// `leader_cast`s held while no leader is known.
    pub held_casts: u64,
    /// `leader_call`s this node has handled as leader since it started.
    pub leader_calls_served: u64,
    /// Broadcasts this node has sent as leader since it started.
    pub broadcasts_sent: u64,
    /// Inbound connections refused at the handshake since the node started.
    pub handshakes_refused: u64,
    /// Time since the node started.
    pub uptime_ms: u64,
    /// When the status was taken: milliseconds since the Unix epoch, on the node's clock.
    pub at_ms: u64,
}

impl NodeStatus {
    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.state == StateKind::Leading
    }
}

/// A node's leadership, as in [`LeaderState`](crate::LeaderState), without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StateKind {
    /// The node leads.
    Leading,
    /// The node follows a leader.
    Following,
    /// No leader is known yet: the node is starting or an election runs.
    #[default]
    Electing,
    /// Quorum mode: the node reaches fewer candidates than a majority.
    NoQuorum,
    /// The node is stopping.
    Stopped,
    /// A state this release does not know (from a newer node).
    #[serde(other)]
    Unknown,
}

impl StateKind {
    /// The state in snake case, as in JSON: `leading`, `following`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Leading => "leading",
            StateKind::Following => "following",
            StateKind::Electing => "electing",
            StateKind::NoQuorum => "no_quorum",
            StateKind::Stopped => "stopped",
            StateKind::Unknown => "unknown",
        }
    }
}

/// The election mode and its parameters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ModeStatus {
    /// `bully`, `quorum`, or the kind of the store that decides (`etcd`).
    pub kind: String,
    /// External backend: the election's name in the store.
    pub election: Option<String>,
    /// Quorum mode: the voters' lease `E`; external backend: the store lease's TTL.
    pub lease_ms: Option<u64>,
    /// Quorum mode, external backend: the bound on clock rate error `ρ`.
    pub max_drift: Option<f64>,
    /// Quorum mode, external backend: the margin `δ`.
    pub margin_ms: Option<u64>,
    /// Quorum mode, external backend: the leader's lease from an acknowledged renewal.
    pub leader_lease_ms: Option<u64>,
}

impl std::fmt::Display for ModeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.kind)?;
        let lease = (self.lease_ms, self.max_drift, self.margin_ms);
        match (&self.election, lease) {
            (Some(el), (Some(e), Some(rho), Some(delta))) => write!(
                f,
                " (election {el:?}, lease {e} ms, max drift {rho}, margin {delta} ms)"
            )?,
            (None, (Some(e), Some(rho), Some(delta))) => {
                write!(f, " (lease {e} ms, max drift {rho}, margin {delta} ms)")?
            }
            _ => {}
        }
        Ok(())
    }
}

/// Quorum mode, without a leader: the candidates reached and the majority needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct NoQuorumStatus {
    /// Candidates reached, the node itself included if it is one.
    pub reachable: u32,
    /// A majority of the candidates.
    pub needed: u32,
}

/// A member whose connection was refused, and why (as the node logged it).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RefusedPeer {
    /// The member.
    pub peer: String,
    /// The refusal, as logged.
    pub reason: String,
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn role_str(r: Role) -> &'static str {
    match r {
        Role::Starting => "starting",
        Role::Waiting => "waiting",
        Role::Proposing => "proposing",
        Role::Captured => "captured",
        Role::Joining => "joining",
        Role::Follower => "follower",
        Role::Leader => "leader",
    }
}

/// The mode as the status shows it: the store's when one decides (`id`), else `mode`'s.
fn mode_status(mode: Mode, id: Option<ElectionIdentity>) -> ModeStatus {
    if let Some(id) = id {
        let lease = id.lease;
        return ModeStatus {
            kind: id.store,
            election: Some(id.election),
            lease_ms: Some(ms(lease.ttl)),
            max_drift: Some(f64::from(lease.drift_ppm) / 1e6),
            margin_ms: Some(ms(lease.margin)),
            leader_lease_ms: Some(ms(lease.local_lease())),
        };
    }
    match mode {
        Mode::Quorum(q) => ModeStatus {
            kind: "quorum".into(),
            lease_ms: Some(ms(q.get_lease())),
            max_drift: Some(q.get_max_drift()),
            margin_ms: Some(ms(q.get_margin())),
            leader_lease_ms: Some(ms(q.leader_lease())),
            election: None,
        },
        _ => ModeStatus {
            kind: "bully".into(),
            ..ModeStatus::default()
        },
    }
}

impl<B: Behaviour> NodeState<B> {
    /// This node's status now.
    pub(in crate::node) fn status(&self) -> NodeStatus {
        let members = self.cfg.members();
        let names = |ids: &mut dyn Iterator<Item = NodeId>| -> Vec<String> {
            ids.map(|id| members.name(id).to_string()).collect()
        };
        let view = self.view_tx.borrow().clone();
        let stats = self.stats();
        let state = if self.stopping {
            StateKind::Stopped
        } else if self.engine.is_leader() {
            StateKind::Leading
        } else if self.engine.leader().is_some() {
            StateKind::Following
        } else if self.engine.no_quorum().is_some() {
            StateKind::NoQuorum
        } else {
            StateKind::Electing
        };
        let lease_remaining_ms = self
            .lease_end()
            .filter(|_| self.engine.is_leader())
            .map(|end| ms(end.saturating_duration_since(self.clock.lease_now())));
        let followers = if self.engine.is_leader() {
            names(&mut self.engine.followers().iter().copied())
        } else {
            Vec::new()
        };
        let all = members.all().len();
        NodeStatus {
            node: self.cfg.me().to_string(),
            cluster: self.cfg.cluster().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            incarnation: self.hs.incarnation,
            mode: mode_status(self.cfg.mode(), self.cfg.backend().identity()),
            backend_unavailable: self
                .view_tx
                .borrow()
                .backend_unavailable
                .map(|(op, kind)| format!("{op}: {kind}")),
            state,
            role: role_str(self.engine.role()).to_string(),
            leader: self
                .engine
                .leader()
                .map(|l| members.name(l.node).to_string()),
            term: self.engine.term().get(),
            lease_remaining_ms,
            no_quorum: self.engine.no_quorum().map(|nq| NoQuorumStatus {
                reachable: nq.reachable,
                needed: nq.needed,
            }),
            candidates: members.candidates().iter().map(|n| n.to_string()).collect(),
            workers: members.workers().iter().map(|n| n.to_string()).collect(),
            alive: names(
                &mut (0..all as u32)
                    .map(NodeId)
                    .filter(|&id| self.engine.is_alive(id)),
            ),
            down: names(
                &mut (0..all as u32)
                    .map(NodeId)
                    .filter(|&id| !self.engine.is_alive(id)),
            ),
            followers,
            refused: view
                .refused
                .iter()
                .map(|(peer, reason)| RefusedPeer {
                    peer: peer.to_string(),
                    reason: reason.clone(),
                })
                .collect(),
            pending_calls: stats.pending_calls as u64,
            waiting_calls: stats.waiting_calls as u64,
            held_casts: stats.held_casts as u64,
            leader_calls_served: stats.leader_calls_served,
            broadcasts_sent: stats.broadcasts_sent,
            handshakes_refused: stats.handshakes_refused,
            uptime_ms: ms(self.started.elapsed()),
            at_ms: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LeaseTiming;

    /// A status from another release decodes: missing fields take defaults, unknown fields
    /// and states are ignored.
    #[test]
    fn statuses_of_other_releases_decode() {
        let old: NodeStatus =
            serde_json::from_str(r#"{"node":"a@h:1","term":3,"state":"leading"}"#).unwrap();
        assert_eq!(old.node, "a@h:1");
        assert_eq!(old.term, 3);
        assert!(old.is_leader());
        assert!(old.alive.is_empty());
        let newer: NodeStatus =
            serde_json::from_str(r#"{"node":"a@h:1","state":"sleeping","colour":"blue"}"#).unwrap();
        assert_eq!(newer.state, StateKind::Unknown);
    }

    #[test]
    fn a_status_round_trips_as_json() {
        let s = NodeStatus {
            node: "a@h:1".into(),
            mode: mode_status(Mode::quorum(), None),
            state: StateKind::NoQuorum,
            no_quorum: Some(NoQuorumStatus {
                reachable: 1,
                needed: 2,
            }),
            refused: vec![RefusedPeer {
                peer: "b@h:2".into(),
                reason: "wrong cookie".into(),
            }],
            ..NodeStatus::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""state":"no_quorum""#), "{json}");
        assert_eq!(serde_json::from_str::<NodeStatus>(&json).unwrap(), s);
        assert_eq!(
            s.mode.to_string(),
            "quorum (lease 1000 ms, max drift 0.01, margin 10 ms)"
        );
        assert_eq!(mode_status(Mode::Bully, None).to_string(), "bully");
        let etcd = ElectionIdentity::new(
            "etcd",
            "gen-leader/x",
            LeaseTiming::new(
                std::time::Duration::from_secs(2),
                10_000,
                std::time::Duration::from_millis(10),
            ),
        );
        let m = mode_status(Mode::Bully, Some(etcd));
        assert_eq!(
            m.to_string(),
            "etcd (election \"gen-leader/x\", lease 2000 ms, max drift 0.01, margin 10 ms)"
        );
        assert_eq!(m.leader_lease_ms, Some(1950));
    }
}
