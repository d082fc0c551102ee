//! Typed errors of the etcd backend: what failed ([`EtcdOp`]), how ([`ErrorKind`]), and the
//! client's error as the source.
//!
//! Why a kind next to the source: the runtime and the view need a small, stable answer to
//! "why is there no leader?" (etcd unreachable, timed out, lease gone, refused), while the
//! log wants the full chain. Events carry the kind; the log gets the error.

use std::fmt;
use std::time::Duration;

use super::config::EtcdConfigError;
use super::value::ValueError;

/// The etcd operation that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EtcdOp {
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

impl fmt::Display for EtcdOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EtcdOp::Connect => "connect",
            EtcdOp::Grant => "lease grant",
            EtcdOp::KeepAlive => "lease keep-alive",
            EtcdOp::Campaign => "campaign",
            EtcdOp::Check => "leadership check",
            EtcdOp::Watch => "watch",
            EtcdOp::Observe => "observe",
            EtcdOp::Resign => "resign",
            EtcdOp::Revoke => "lease revoke",
        })
    }
}

/// How an etcd operation failed, in the few classes the runtime acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No connection to any endpoint (refused, reset, unreachable), or etcd answered
    /// "unavailable" (e.g. it has no raft leader).
    Unreachable,
    /// No answer within the request timeout (or the lease clock ran out while keep-alives
    /// went unanswered).
    Timeout,
    /// The lease does not exist any more (it expired or was revoked on etcd).
    LeaseNotFound,
    /// A stream ended that should have stayed open.
    StreamEnded,
    /// etcd refused the request (permissions, invalid arguments, anything else).
    Refused,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::LeaseNotFound => "lease not found",
            ErrorKind::StreamEnded => "stream ended",
            ErrorKind::Refused => "refused",
        })
    }
}

/// An etcd operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// The client returned an error.
    #[error("etcd {op} failed ({kind})", kind = classify(.source))]
    Client {
        /// What was being done.
        op: EtcdOp,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// No answer in time.
    #[error("etcd {op}: no answer within {after:?}")]
    Timeout {
        /// What was being done.
        op: EtcdOp,
        /// The timeout.
        after: Duration,
    },
    /// A stream ended.
    #[error("etcd {op}: the stream ended")]
    StreamEnded {
        /// Which stream.
        op: EtcdOp,
    },
    /// The lease is gone (a keep-alive reply with TTL ≤ 0, or a grant with none).
    #[error("etcd {op}: the lease is gone")]
    LeaseGone {
        /// What noticed it.
        op: EtcdOp,
    },
}

impl EtcdError {
    pub(crate) fn client(op: EtcdOp, source: etcd_client::Error) -> Self {
        EtcdError::Client { op, source }
    }

    /// The operation that failed.
    pub fn op(&self) -> EtcdOp {
        match self {
            EtcdError::Client { op, .. }
            | EtcdError::Timeout { op, .. }
            | EtcdError::StreamEnded { op }
            | EtcdError::LeaseGone { op } => *op,
        }
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EtcdError::Client { source, .. } => classify(source),
            EtcdError::Timeout { .. } => ErrorKind::Timeout,
            EtcdError::StreamEnded { .. } => ErrorKind::StreamEnded,
            EtcdError::LeaseGone { .. } => ErrorKind::LeaseNotFound,
        }
    }
}

/// The class of an `etcd-client` error.
fn classify(e: &etcd_client::Error) -> ErrorKind {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) => ErrorKind::Unreachable,
        E::GRpcStatus(s) => {
            let msg = s.message();
            if msg.contains("lease not found") {
                return ErrorKind::LeaseNotFound;
            }
            // gRPC's standard status codes (stable numbers), so that the transport crate
            // need not be named.
            match s.code() as i32 {
                GRPC_UNAVAILABLE => ErrorKind::Unreachable,
                // "Unknown" with a transport error behind it: the connection broke.
                GRPC_UNKNOWN if std::error::Error::source(s).is_some() => ErrorKind::Unreachable,
                GRPC_DEADLINE_EXCEEDED => ErrorKind::Timeout,
                GRPC_CANCELLED => ErrorKind::StreamEnded,
                _ => ErrorKind::Refused,
            }
        }
        E::LeaseKeepAliveError(m) if m.contains("not found") => ErrorKind::LeaseNotFound,
        E::LeaseKeepAliveError(_) | E::WatchError(_) => ErrorKind::StreamEnded,
        _ => ErrorKind::Refused,
    }
}

const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_UNAVAILABLE: i32 = 14;

/// Why [`EtcdElection::start`](super::EtcdElection::start) refused to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdStartError {
    /// The configuration is invalid.
    #[error("invalid etcd configuration")]
    Config(#[from] EtcdConfigError),
    /// This node's election value cannot be encoded.
    #[error("invalid election value")]
    Value(#[from] ValueError),
}
