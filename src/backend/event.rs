//! [`ElectionEvent`]: what an external election backend tells the node runtime.
//!
//! Why events with deadlines rather than a "leader?" flag: a flag read late is wrong, a
//! deadline is not. [`ElectionEvent::Leading`] and [`ElectionEvent::LeaseMoved`] carry
//! `until`, the instant (on this process's monotonic clock) after which this node must not act
//! as leader unless a later `LeaseMoved` extended it. The runtime's guard checks `until`
//! itself; a [`ElectionEvent::SteppedDown`] that arrives late (a busy runtime, a full channel)
//! therefore never lets it act past its lease.
//!
//! A backend usually runs two tasks: a *campaigner* (`Leading`, `LeaseMoved`, `SteppedDown`,
//! `CampaignVoided`, `Unavailable`) and an *observer* (`Following`, `ForeignLeader`,
//! `NoLeader`, `Unavailable`). The observer never reports this node's own value: while this
//! node leads, the campaigner alone speaks for it.
//!
//! How the runtime combines them: its own leadership is `Leading` … `SteppedDown` (bounded by
//! `until`); `Following`/`NoLeader`/`ForeignLeader` say who *else* leads, for routing calls
//! while it does not. The two tasks are not ordered with each other, so a `NoLeader` about the
//! previous leader may arrive just after this node's `Leading`: while leading, the runtime
//! ignores `NoLeader`, but treats a `Following` with a revision *above* its own as the end of
//! its leadership (the store has a newer leader, so its own claim is gone; its own
//! `SteppedDown` follows).

use std::time::Instant;

use super::failure::{FailureKind, StoreOp};
use super::value::LeaderValue;

/// One change the runtime must apply. `rev` is always the leadership's revision in the store
/// (etcd: the leader key's create revision): the fencing token, strictly increasing across
/// leaders of one election.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ElectionEvent {
    /// This node leads, with fencing token `rev`, until `until` at the latest. Sent only after
    /// the campaign returned *and* the phantom-leadership check found the key still there.
    Leading {
        /// The fencing token.
        rev: u64,
        /// The lease end on this process's monotonic clock.
        until: Instant,
        /// When the keep-alive (or grant) behind `until` was sent, on the same clock: a
        /// suspend-aware runtime moves `until` onto its clock with the suspended time known
        /// at `sent`.
        sent: Instant,
    },
    /// The leader's lease end moved (a keep-alive was acknowledged). Sent at most once per
    /// keep-alive; may be dropped if the channel is full (an older `until` only ends the
    /// lease earlier, which is safe).
    LeaseMoved {
        /// The fencing token.
        rev: u64,
        /// The new lease end.
        until: Instant,
        /// When the keep-alive behind it was sent.
        sent: Instant,
    },
    /// This node stopped leading (always before the store's TTL could run out, except for
    /// [`StepDownReason::KeyDeleted`], where someone else deleted the key). The campaigner
    /// starts over with a new lease unless the reason is `Shutdown`.
    SteppedDown {
        /// The fencing token of the leadership that ended.
        rev: u64,
        /// Why.
        reason: StepDownReason,
    },
    /// The store's campaign returned success with `rev`, but the claim was gone: the lease expired
    /// while the campaign waited ("phantom leadership"). This node did **not** lead; it starts
    /// over with a new lease.
    CampaignVoided {
        /// The revision the campaign returned.
        rev: u64,
    },
    /// Another node leads: route calls to `leader`.
    Following {
        /// The leader's name and address.
        leader: LeaderValue,
        /// Its fencing token.
        rev: u64,
    },
    /// The election is held by a key whose value is not a gen-leader value (another program,
    /// or a newer encoding). No node of this cluster can lead until it goes.
    ForeignLeader {
        /// Its create revision.
        rev: u64,
    },
    /// The leader's key is gone and no other campaigner holds the election yet.
    NoLeader,
    /// The store could not be reached (or refused) for `op`. Informational, for the view: it
    /// changes no state (a leader's lease end still governs its leadership; a follower's last
    /// `Following` stands until the store says otherwise, and may be stale meanwhile). Repeated
    /// while it lasts.
    Unavailable {
        /// What failed.
        op: StoreOp,
        /// How.
        kind: FailureKind,
    },
}

/// Why a leader stepped down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StepDownReason {
    /// The local lease clock ran out: keep-alives went unacknowledged (the store unreachable,
    /// slow or stopped).
    LeaseExpired,
    /// The store answered a keep-alive with TTL ≤ 0: the lease was revoked or expired there.
    LeaseRevoked,
    /// The leader key was deleted (by an operator or another client).
    KeyDeleted,
    /// The backend was shut down (the node stops): this node resigns.
    Shutdown,
}

impl std::fmt::Display for StepDownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StepDownReason::LeaseExpired => "lease expired (keep-alives unacknowledged)",
            StepDownReason::LeaseRevoked => "lease revoked on the store",
            StepDownReason::KeyDeleted => "leader key deleted",
            StepDownReason::Shutdown => "shutdown",
        })
    }
}
