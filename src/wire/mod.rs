//! The wire protocol: messages, the frame codec and the handshake.
//!
//! A frame is a 4-byte big-endian length, one protocol-version byte and a bincode-2 body;
//! [`codec`] is the only module that knows this format. A connection starts with the
//! [`handshake`] (version, cluster, node names, mutual HMAC-SHA256 over fresh nonces keyed by
//! the cluster cookie) and then carries [`Msg`]s.

pub mod codec;
pub mod handshake;

use serde::{Deserialize, Serialize};

use crate::election::ElectionMsg;
use crate::types::Term;

/// A message between two connected nodes.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Msg {
    /// An election message for the engine.
    Election(ElectionMsg),
    /// Liveness only: sent when a connection has been idle for a heartbeat interval.
    Heartbeat,
    /// A `leader_call` forwarded to the leader.
    LeaderCall {
        /// The caller node's id for this call.
        id: u64,
        /// The encoded request.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// The leader's answer to a [`Msg::LeaderCall`].
    Reply {
        /// The call's id.
        id: u64,
        /// The term of the leader that handled it.
        term: Term,
        /// The outcome.
        result: ReplyResult,
    },
    /// A `leader_cast` forwarded to the leader.
    LeaderCast {
        /// The encoded message.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// A broadcast from the leader of `term`, number `seq` of that term.
    Broadcast {
        /// The leader's term.
        term: Term,
        /// Sequence number within the term (starts at 1).
        seq: u64,
        /// The encoded broadcast.
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    },
    /// The sender is shutting down: treat the connection as closed now.
    Goodbye,
}

/// The outcome of a forwarded `leader_call`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReplyResult {
    /// The encoded reply.
    Ok(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The receiver does not lead: the call was not executed and may be retried.
    NotLeader,
    /// The leader could not handle the call (e.g. the request did not decode).
    Error(String),
}
