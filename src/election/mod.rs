//! The election engine: a deterministic, sans-IO state machine.
//!
//! The engine never reads a clock, opens a socket or draws random numbers from the thread:
//! time comes in as the `now` argument of every `handle_*` call, outputs are drained with
//! [`Engine::poll_output`], the next timer deadline is read with [`Engine::poll_timeout`],
//! and jitter comes from the seed in [`EngineConfig`]. The same code therefore runs under the
//! real runtime, a deterministic simulator and a model checker.
//!
//! # The algorithm
//!
//! A bully election over a failure detector (the transport tells the engine when a peer is up
//! or down), with gen_leader's priority (position in the candidate list) and a **term**:
//!
//! * every node keeps `promised`, the highest term it has proposed or accepted; it is
//!   persisted ([`Output::PersistTerm`]) before any message depending on it leaves;
//! * term `t` belongs to candidate `t % n_candidates`: only that candidate may propose it, so
//!   at most one leader can ever exist per term;
//! * a candidate with no leader and no live higher-priority candidate proposes the next term
//!   it owns to every connected node; a node accepts a fresh term unless it follows a live
//!   leader (then it rejects with a hint, and the proposer joins that leader);
//! * a node that learns of a sitting leader joins it ([`ElectionMsg::Join`]); the leader runs
//!   `elected(.., Some(node))` and sends it the Synch;
//! * when two leaders learn of each other, the higher-priority one takes over with a fresh
//!   term that the other (and its followers) accept, so exactly one remains;
//! * every wait has a deadline, so no node stays in an election forever.

mod engine;
#[doc(hidden)]
pub mod testing;

pub use engine::{Engine, EngineConfig, NoQuorum, QuorumParams, Role, MAX_TERM};

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::types::{NodeId, Term};

/// A leader as the engine sees it: which node, for which term.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct LeaderRef {
    /// The leading node.
    pub node: NodeId,
    /// The term it leads.
    pub term: Term,
}

/// Messages the engines exchange. Every message carries a term.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ElectionMsg {
    /// Sent when a connection comes up and whenever the sender's leader changes: the sender's
    /// promised term and the leader it follows (itself, if it leads).
    Status {
        /// The sender's highest promised term.
        promised: Term,
        /// The leader the sender follows, if any.
        leader: Option<LeaderRef>,
    },
    /// "Accept me as leader for `term`" (gen_leader's `halt`/capture).
    Propose {
        /// The proposed term; owned by the sender.
        term: Term,
        /// Set when the proposer replaces a sitting leader of lower priority (two leaders
        /// met, or `preempt` is configured).
        takeover: bool,
    },
    /// The receiver accepts the sender's proposal for `term` (gen_leader's `ackLeader`).
    Accept {
        /// The accepted term.
        term: Term,
    },
    /// The receiver rejects the proposal for `round` (gen_leader's `hasLeader`).
    Reject {
        /// The proposal's term.
        round: Term,
        /// The rejecting node's promised term.
        promised: Term,
        /// The live leader the rejecting node follows, if any.
        leader: Option<LeaderRef>,
    },
    /// The sender asks a sitting leader to take it as a follower.
    Join {
        /// The joiner's promised term: a leader with a lower term re-elects itself above it.
        promised: Term,
    },
    /// The leader's announcement for `term`, with the Synch produced by `elected`.
    Leader {
        /// The leader's term.
        term: Term,
        /// The encoded Synch, opaque to the engine.
        #[serde(with = "serde_bytes")]
        synch: Vec<u8>,
    },
    /// Quorum mode: the leader's lease renewal round `round` for `term` (sent to every
    /// connected candidate once per renewal interval).
    Renew {
        /// The leader's term.
        term: Term,
        /// The round number (increasing within a term).
        round: u64,
    },
    /// Quorum mode: a voter acknowledges renewal `round` of `term`, and with it promises to
    /// acknowledge no other node for the lease time `E` from when it received it.
    RenewAck {
        /// The leader's term.
        term: Term,
        /// The acknowledged round.
        round: u64,
    },
    /// Quorum mode: the sender stopped acting as leader of `term` (it handed over to a
    /// higher-priority candidate): voters may release the promise they gave it for `term`.
    StepDown {
        /// The term it no longer leads.
        term: Term,
    },
}

/// Why this node stopped following or leading.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum LossReason {
    /// The connection to the leader was lost or timed out.
    LeaderDown,
    /// A higher-priority leader took over (partition healed, preemption).
    TakenOver,
    /// A leader with a newer term was accepted.
    NewerTerm,
    /// Quorum mode: the lease ran out without a renewal acknowledged by a majority.
    LeaseExpired,
}

/// What the engine asks its driver to do. Drain with [`Engine::poll_output`] after every
/// `handle_*` call and act on each output in order.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Output {
    /// Send `msg` to `to`.
    Send {
        /// Destination node.
        to: NodeId,
        /// The message.
        msg: ElectionMsg,
    },
    /// Durably store `term` as the node's last term before sending anything that follows.
    PersistTerm(Term),
    /// This node was elected (`joined: None`) or a node joined it while it leads
    /// (`joined: Some(node)`). The driver runs the `elected` callback and hands the Synch back
    /// with [`Engine::provide_synch`].
    Elected {
        /// The term led.
        term: Term,
        /// The node that joined a sitting leader, if that is what happened.
        joined: Option<NodeId>,
    },
    /// This node accepted `leader` for `term`: run `surrendered` with this Synch.
    Surrendered {
        /// The new leader.
        leader: NodeId,
        /// Its term.
        term: Term,
        /// The encoded Synch.
        synch: Vec<u8>,
    },
    /// This node no longer leads (it was taken over). Calls it was serving must fail.
    LeadershipLost {
        /// The term that ended.
        term: Term,
        /// Why.
        reason: LossReason,
    },
    /// The leader this node followed is gone (`reason`). Calls in flight to it must fail
    /// with `LeaderDown`.
    LeaderLost {
        /// The old leader.
        leader: NodeId,
        /// Its term.
        term: Term,
        /// Why.
        reason: LossReason,
    },
    /// Quorum mode: this leader's lease now ends at `until` (on the clock of the `now`
    /// arguments). Emitted when the lease starts (just before `Elected`) and whenever a
    /// renewal acknowledged by a majority moves its end.
    Lease {
        /// The term led.
        term: Term,
        /// When the lease ends unless renewed.
        until: Instant,
    },
    /// The leader's `handle_down` must run for `node` (a follower went down, or, right after
    /// an election, the previous leader).
    Down {
        /// The node that went down.
        node: NodeId,
    },
}
