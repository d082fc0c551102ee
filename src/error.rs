//! Typed errors of the public API.

use std::sync::Arc;
use std::time::Duration;

use crate::election::LossReason;
use crate::types::{NodeName, NodeNameError, Term};
use crate::wire::codec::CodecError;

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
    /// Quorum mode: at the call's deadline this node still reached fewer candidates than a
    /// majority, so no leader could be elected on its side (it waited for one first, like
    /// [`CallError::NoLeader`]).
    #[error("no quorum: this node reaches {reachable} candidate(s) (itself included), a majority is {needed}; no leader can be elected on its side")]
    NoQuorum {
        /// Candidates this node reached, itself included if it is one.
        reachable: u32,
        /// A majority of the candidates.
        needed: u32,
    },
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
    /// The request or reply could not be encoded or decoded (the typed cause is its
    /// [`source`](std::error::Error::source)).
    #[error("the request or reply could not be encoded or decoded")]
    Codec(#[source] CodecFailure),
    /// The leader failed to handle the request.
    #[error("the leader failed to handle the request: {0}")]
    Remote(String),
}

/// The codec error behind [`CallError::Codec`], shared so that a `CallError` stays `Clone`.
/// Two are equal when they say the same thing.
#[derive(Debug, Clone)]
pub struct CodecFailure(Arc<CodecError>);

impl CodecFailure {
    /// The codec error.
    pub fn error(&self) -> &CodecError {
        &self.0
    }
}

impl From<CodecError> for CodecFailure {
    fn from(e: CodecError) -> Self {
        CodecFailure(Arc::new(e))
    }
}

impl std::fmt::Display for CodecFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for CodecFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl PartialEq for CodecFailure {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for CodecFailure {}

impl From<CodecError> for CallError {
    fn from(e: CodecError) -> Self {
        CallError::Codec(e.into())
    }
}

/// An external backend's own reason to refuse its configuration, shared so that
/// [`ConfigError`] stays `Clone`; two are equal only if they are the same error.
#[derive(Debug, Clone)]
pub struct BackendConfigError(std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>);

impl BackendConfigError {
    pub(crate) fn new(e: BoxError) -> Self {
        BackendConfigError(e.into())
    }

    /// The backend's error.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for BackendConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BackendConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for BackendConfigError {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Why a configuration was refused by [`crate::ConfigBuilder::build`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The etcd backend's configuration is invalid.
    #[cfg(feature = "etcd")]
    #[error("etcd backend: {0}")]
    Etcd(#[from] crate::etcd::EtcdConfigError),
    /// The external backend refused its configuration
    /// ([`ExternalElection::validate`](crate::backend::ExternalElection::validate)).
    #[error("external backend: {0}")]
    Backend(#[source] BackendConfigError),
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

/// Why a [`LeaderGuard`](crate::LeaderGuard) could not be taken or no longer holds. See
/// [`LeaderHandle::guard`](crate::LeaderHandle::guard).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// This node does not lead: `leader` does (if one is known), at `term`. Also what a
    /// quorum-mode leader whose lease has ended says until it has stepped down.
    #[error("this node does not lead (leader: {}, term {term})", leader.as_ref().map_or_else(|| "none known".to_string(), ToString::to_string))]
    NotLeader {
        /// The leader this node follows, if any.
        leader: Option<NodeName>,
        /// The current term.
        term: Term,
    },
    /// Quorum mode: this node reaches fewer candidates than a majority, so it has no leader.
    #[error("no quorum: this node reaches {reachable} candidate(s) (itself included), a majority is {needed}")]
    NoQuorum {
        /// Candidates this node reaches, itself included if it is one.
        reachable: u32,
        /// A majority of the candidates.
        needed: u32,
    },
    /// Quorum mode: the lease has less left than asked for
    /// ([`LeaderGuard::ensure`](crate::LeaderGuard::ensure)): do not start the side effect.
    #[error("the lease has {left:?} left, {needed:?} needed")]
    LeaseEnding {
        /// What is left of the lease.
        left: Duration,
        /// What the caller asked for.
        needed: Duration,
    },
    /// The leadership of `term` ended: this guard no longer holds, and never will again.
    #[error("the leadership of term {term} ended: {}", loss_reason_str(*reason))]
    Lost {
        /// The term that was led.
        term: Term,
        /// Why it ended ([`LossReason::LeaseExpired`] in quorum mode when no majority renewed
        /// the lease in time, [`LossReason::TakenOver`], [`LossReason::NewerTerm`], ...).
        reason: LossReason,
    },
    /// The node is stopped (or stopping).
    #[error("the node is stopped")]
    Stopped,
}

/// A few words on why a leadership ended, for logs, the audit trail and error messages.
pub(crate) fn loss_reason_str(r: LossReason) -> &'static str {
    match r {
        LossReason::LeaderDown => "leader down",
        LossReason::TakenOver => "taken over by a higher-priority leader",
        LossReason::NewerTerm => "newer term",
        LossReason::LeaseExpired => "lease expired",
    }
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
    /// The external election backend could not start
    /// ([`ExternalElection::start`](crate::backend::ExternalElection::start)).
    #[error("the election backend could not start")]
    Backend {
        /// The backend's error.
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
