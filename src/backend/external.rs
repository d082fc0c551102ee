//! [`ExternalElection`]: the seam between the node runtime and a store that decides who leads
//! (etcd, or a lease row in a SQL database, as in Brooker's "Leader election in distributed
//! systems").
//!
//! Why this shape: the runtime already runs an actor with inputs of its own, and every
//! decision it takes about leadership goes through the election engine's external mode. A
//! store therefore only has to *start* (campaign and/or observe), *send*
//! [`ElectionEvent`]s into a bounded channel, and *stop* (resigning). It never sees the
//! runtime's internals, and the runtime never names a store: `node/backend.rs` speaks only
//! this trait and the events. A second store is a new implementation of this trait, handed to
//! [`Backend::External`](crate::Backend::External); nothing in the node changes.
//!
//! What an implementation must guarantee (the runtime's safety rests on it):
//! - `Leading`/`LeaseMoved` carry `until`, an instant on this process's monotonic clock
//!   before which the store cannot have given the leadership to anyone else. Compute it from
//!   the *send* time of the renewal the store acknowledged ([`LeaseClock`] does this, with the
//!   drift and margin of [`LeaseTiming`]); never from the time the answer arrived.
//! - `rev` (the fencing token) strictly increases across the leaders of one election.
//! - A campaign that returns after the lease could have run out is checked before `Leading`
//!   is sent (etcd's "phantom leadership"); if the claim is gone, send `CampaignVoided`.
//! - Dropping the [`RunningElection`] stops every task at once without resigning (as a crash
//!   would); [`RunningElection::shutdown`] sends `SteppedDown { reason: Shutdown }` if it
//!   led, then resigns, within a bounded time.
//!
//! [`LeaseClock`]: super::LeaseClock

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::event::ElectionEvent;
use super::lease_clock::local_lease;
use super::value::LeaderValue;
use crate::error::BoxError;

/// Capacity the runtime expects of the event channel: a backend should create its channel
/// with it (or less). `LeaseMoved` may be dropped when it is full (an older `until` only ends
/// the lease earlier); other events should wait.
pub const EVENT_CAPACITY: usize = 64;

/// A store that decides which node leads. Implemented by
/// `etcd::EtcdConfig` (cargo feature `etcd`); see the module docs for
/// what an implementation must guarantee, and `tests/external_backend.rs` for a small one.
///
/// Its `Debug` output ends up in [`Config`](crate::Config)'s: it must not print credentials
/// (passwords, tokens, connection strings with a password).
pub trait ExternalElection: fmt::Debug + Send + Sync + 'static {
    /// What the nodes of one cluster must share: the store's kind, the election's name and
    /// the lease's timing. It goes into the handshake, so nodes that would follow different
    /// elections refuse each other (and the refusal names both).
    fn identity(&self) -> ElectionIdentity;

    /// Checks the configuration; called by [`ConfigBuilder::build`](crate::ConfigBuilder),
    /// so a bad one is refused before a node starts. The default accepts everything.
    fn validate(&self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Starts the election for this node, within its tokio runtime: observe it, and campaign
    /// as `me` if `campaign` (a worker only observes). Called once, while the node starts; an
    /// error fails [`Node::start`](crate::Node::start) with
    /// [`StartError::Backend`](crate::StartError::Backend).
    fn start(&self, me: LeaderValue, campaign: bool) -> Result<Started, BoxError>;
}

/// What [`ExternalElection::start`] returns: the events, and the handle that stops it.
pub struct Started {
    /// The events, in the order the backend produced them (see [`ElectionEvent`]).
    pub events: mpsc::Receiver<ElectionEvent>,
    /// Stops the election (resigning) or, dropped, aborts it.
    pub running: Box<dyn RunningElection>,
}

impl Started {
    /// Bundles an event receiver with its running election.
    pub fn new(events: mpsc::Receiver<ElectionEvent>, running: Box<dyn RunningElection>) -> Self {
        Started { events, running }
    }
}

impl fmt::Debug for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Started")
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

/// A started election. Dropping it aborts it without resigning (the store frees the
/// election when the lease's TTL runs out, as after a crash).
pub trait RunningElection: fmt::Debug + Send + 'static {
    /// Stops: if this node leads, sends `SteppedDown { reason: Shutdown }`, then resigns
    /// and releases its lease, each within a bounded time, so that the next leader need not
    /// wait for the TTL. The node awaits it before it says goodbye to its peers.
    fn shutdown(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// What the nodes of one cluster must share to follow one election (see
/// [`ExternalElection::identity`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ElectionIdentity {
    /// The store's kind, e.g. `"etcd"`: short, lowercase.
    pub store: String,
    /// The election's name in the store (etcd: the election's key prefix).
    pub election: String,
    /// The lease's timing.
    pub lease: LeaseTiming,
}

impl ElectionIdentity {
    /// An identity.
    pub fn new(store: impl Into<String>, election: impl Into<String>, lease: LeaseTiming) -> Self {
        ElectionIdentity {
            store: store.into(),
            election: election.into(),
            lease,
        }
    }
}

/// A store lease's timing, as the runtime's lease checks take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LeaseTiming {
    /// The lease's time to live on the store.
    pub ttl: Duration,
    /// The bound `ρ` on the clock rate difference between this node and the store, in parts
    /// per million.
    pub drift_ppm: u32,
    /// The margin `δ` kept for scheduling.
    pub margin: Duration,
}

impl LeaseTiming {
    /// A lease timing.
    pub fn new(ttl: Duration, drift_ppm: u32, margin: Duration) -> Self {
        LeaseTiming {
            ttl,
            drift_ppm,
            margin,
        }
    }

    /// The local lease one acknowledged renewal buys, from its send time:
    /// `ttl·(1−ρ)/(1+ρ) − δ` (see [`local_lease`]).
    pub fn local_lease(&self) -> Duration {
        local_lease(self.ttl, self.drift_ppm, self.margin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_lease_is_shorter_than_the_ttl_by_drift_and_margin() {
        let t = LeaseTiming::new(Duration::from_secs(2), 10_000, Duration::from_millis(10));
        // 2 s · 0.99/1.01 − 10 ms = 1.950 495 s (rounded down to the nanosecond).
        let l = t.local_lease();
        assert!(
            l < Duration::from_millis(1_951) && l > Duration::from_millis(1_950),
            "{l:?}"
        );
    }
}
