//! Typed errors of the etcd backend: what failed ([`EtcdOp`], the neutral
//! [`StoreOp`](crate::backend::StoreOp)), how ([`ErrorKind`], the neutral
//! [`FailureKind`](crate::backend::FailureKind)), and the client's error as the source.
//!
//! Why a kind next to the source: the runtime and the view need a small, stable answer to
//! "why is there no leader?" (etcd unreachable, timed out, lease gone, refused), while the
//! log wants the full chain. Events carry the kind; the log gets the error.

use std::time::Duration;

use super::config::EtcdConfigError;
use super::value::ValueError;
pub use crate::backend::{FailureKind as ErrorKind, StoreOp as EtcdOp};

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
