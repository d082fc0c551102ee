//! [`StoreOp`] and [`FailureKind`]: what failed on the store and how, in a few classes.
//!
//! Why a kind rather than the store's error: the runtime and the view need a small, stable
//! answer to "why is there no leader?" (unreachable, timed out, lease gone, refused) whatever
//! the store; the store's own error, with its full chain, belongs in the backend's log.

use std::fmt;

/// The operation on the store that failed (each maps to one request of a lease store: etcd
/// names them the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreOp {
    /// Connecting to the endpoints.
    Connect,
    /// Granting the lease.
    Grant,
    /// Keeping the lease alive (the stream, or the lease clock running out unrenewed).
    KeepAlive,
    /// Campaigning on the election.
    Campaign,
    /// The phantom-leadership check after a campaign returned.
    Check,
    /// Watching this leader's own key.
    Watch,
    /// Learning the current leader (`leader`, `observe`).
    Observe,
    /// Resigning on shutdown.
    Resign,
    /// Revoking the lease.
    Revoke,
}

impl fmt::Display for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreOp::Connect => "connect",
            StoreOp::Grant => "lease grant",
            StoreOp::KeepAlive => "lease keep-alive",
            StoreOp::Campaign => "campaign",
            StoreOp::Check => "leadership check",
            StoreOp::Watch => "watch",
            StoreOp::Observe => "observe",
            StoreOp::Resign => "resign",
            StoreOp::Revoke => "lease revoke",
        })
    }
}

/// How an operation on the store failed, in the few classes the runtime acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// No connection to any endpoint (refused, reset, unreachable), or the store answered
    /// "unavailable" (etcd without a raft leader, a database in recovery).
    Unreachable,
    /// No answer within the request timeout (or the lease clock ran out while keep-alives
    /// went unanswered).
    Timeout,
    /// The lease does not exist any more (it expired or was revoked on the store).
    LeaseNotFound,
    /// A stream ended that should have stayed open.
    StreamEnded,
    /// The store refused the request (permissions, invalid arguments, anything else).
    Refused,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::Timeout => "timeout",
            FailureKind::LeaseNotFound => "lease not found",
            FailureKind::StreamEnded => "stream ended",
            FailureKind::Refused => "refused",
        })
    }
}
