//! External election backends: a store (etcd, a database lease…) decides who leads, and the
//! node runtime does the rest (calls, Synch, broadcasts, guards, view, audit) over its mesh.
//!
//! Why a module of its own, without a cargo feature: the runtime speaks only what is here —
//! the [`ExternalElection`] trait, the [`ElectionEvent`]s a backend sends and the values they
//! carry — so a store is added by implementing the trait ([`crate::Backend::External`]),
//! never by touching the node. The store-neutral helpers a backend needs to get the lease
//! right live here too: the [`LeaseClock`] (the local lease end from the *send* time of the
//! last acknowledged renewal, drift and margin applied), a jittered [`backoff`] for
//! reconnecting, and the election value [`LeaderValue`] (a node's name and address).
//! The etcd backend (`gen_leader::etcd`, cargo feature `etcd`) is the one shipped.

pub mod backoff;
mod event;
mod external;
mod failure;
pub mod lease_clock;
pub mod value;

pub use event::{ElectionEvent, StepDownReason};
pub use external::{
    ElectionIdentity, ExternalElection, LeaseTiming, RunningElection, Started, EVENT_CAPACITY,
};
pub use failure::{FailureKind, StoreOp};
pub use lease_clock::{Ack, LeaseClock};
pub use value::{LeaderValue, ValueError};
