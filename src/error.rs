//! Typed errors of the public API.

use std::time::Duration;

use crate::types::{NodeName, NodeNameError, Term};

/// A boxed error from user code or a dependency, kept as the typed source of ours.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a `leader_call` (or a local `call`) did not return a reply. Every call resolves
/// exactly once: with the reply or with one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No leader was known before the call's deadline (an election may still be running).
    #[error("no leader was elected before the call's deadline")]
    NoLeader,
    /// The leader was known and the request sent, but no reply came before the deadline.
    /// The leader may or may not have executed it.
    #[error("the leader did not reply before the call's deadline (outcome unknown)")]
    Timeout,
    /// The leader died (or was replaced) with the call in flight. The outcome is unknown: the
    /// old leader may or may not have executed it.
    #[error("leader {leader} (term {term}) went down with the call in flight (outcome unknown)")]
    LeaderDown {
        /// The leader the call was sent to.
        leader: NodeName,
        /// Its term.
        term: Term,
    },
    /// The node is stopped (or stopping).
    #[error("the node is stopped")]
    Stopped,
    /// The node's mailbox is full (see
    /// [`ConfigBuilder::mailbox`](crate::ConfigBuilder::mailbox)): the message was not sent.
    /// Only non-async sends return it; async calls wait for room instead.
    #[error("the node is overloaded: its mailbox is full")]
    Overloaded,
    /// The request or reply could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// The leader failed to handle the request.
    #[error("the leader failed to handle the request: {0}")]
    Remote(String),
}

/// Why a configuration was refused by [`crate::ConfigBuilder::build`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A node name is malformed.
    #[error("bad node name: {0}")]
    NodeName(#[from] NodeNameError),
    /// The candidate list is empty.
    #[error("the candidate list is empty: at least one node must be able to lead")]
    NoCandidates,
    /// This node is neither a candidate nor a worker.
    #[error("this node ({0}) is neither in the candidates nor in the workers")]
    NotAMember(NodeName),
    /// A name appears twice (in candidates and/or workers).
    #[error("node {0} appears twice in the candidates/workers (names must be unique)")]
    DuplicateNode(String),
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// The heartbeat interval must be shorter than the failure timeout.
    #[error("the heartbeat ({heartbeat_ms} ms) must be shorter than the failure timeout ({failure_ms} ms)")]
    HeartbeatTooSlow {
        /// The heartbeat interval in ms.
        heartbeat_ms: u128,
        /// The failure timeout in ms.
        failure_ms: u128,
    },
    /// No cookie was given.
    #[error("the cluster cookie is empty: set one (e.g. --cookie or GEN_LEADER_COOKIE)")]
    EmptyCookie,
    /// The cluster name is empty.
    #[error("the cluster name is empty")]
    EmptyCluster,
    /// A size limit is out of range.
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
    /// Quorum mode: [`QuorumConfig::max_drift`](crate::QuorumConfig::max_drift) is not a
    /// finite number in `[0, 0.5)`.
    #[error("quorum mode: max_drift is {max_drift}, but it must be a finite number in [0, 0.5) (the bound on every clock's rate error: 0.01 is 1 %)")]
    BadDrift {
        /// The value given.
        max_drift: f64,
    },
    /// Quorum mode: the leader's lease `E·(1−ρ)/(1+ρ) − δ` does not exceed two heartbeats,
    /// so the leader could never renew it in time.
    #[error("quorum mode: the leader's lease E·(1−ρ)/(1+ρ) − δ is {leader_lease:?} (lease E = {lease:?}, max_drift ρ = {max_drift}, margin δ = {margin:?}), but it must exceed 2 × the heartbeat ({heartbeat:?}) = {:?}, or the leader could never renew it in time: raise the lease or lower the heartbeat", *heartbeat * 2)]
    LeaseTooShort {
        /// `E·(1−ρ)/(1+ρ) − δ`.
        leader_lease: Duration,
        /// `E`.
        lease: Duration,
        /// `ρ`.
        max_drift: f64,
        /// `δ`.
        margin: Duration,
        /// The heartbeat interval (the leader renews once per heartbeat).
        heartbeat: Duration,
    },
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data directory could not be used.
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The behaviour's `init` failed; the source is the behaviour's own error.
    #[error("init failed")]
    Init {
        /// What `init` returned.
        #[source]
        source: BoxError,
    },
    /// The node actor could not be spawned.
    #[error("cannot spawn the node actor")]
    Spawn {
        /// ractor's error.
        #[source]
        source: BoxError,
    },
}
