//! The etcd election backend (cargo feature `etcd`): etcd decides who leads.
//!
//! Why: most teams should not run their own consensus; if etcd is already there, a lease
//! and a campaign on it give an exclusive leader with a fencing token, and gen-leader keeps
//! everything else (calls, Synch, broadcasts) on its own TCP mesh.
//!
//! How, in one paragraph: each node runs a *campaigner* (`campaign.rs`) that grants an etcd
//! lease, keeps it alive *before and while* it campaigns, and on winning checks that its key
//! still exists with the revision the campaign returned ([`verify`]: etcd's campaign can
//! return success for a key that expired while it waited). The leader key's create revision
//! is the **fencing token**. The leader times its lease locally ([`lease_clock`]) from the
//! send time of the last acknowledged keep-alive, scaled by `(1−ρ)/(1+ρ)` and less a margin,
//! exactly as quorum mode does, so it stops acting before etcd's TTL can run out. Each node
//! also runs an *observer* (`observe.rs`) that follows etcd's `observe` stream to learn the
//! leader's name and address. Both feed one bounded channel of [`EtcdEvent`]s (the
//! store-neutral [`ElectionEvent`](crate::backend::ElectionEvent)). [`EtcdConfig`] implements
//! [`ExternalElection`](crate::backend::ExternalElection), the trait the node runtime speaks.
//!
//! Driving it from a runtime:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use gen_leader::etcd::{EtcdConfig, EtcdElection, EtcdEvent, LeaderValue};
//! use std::time::Duration;
//!
//! let config = EtcdConfig::new(["http://127.0.0.1:2379"], "gen-leader/my-cluster")
//!     .with_ttl(Duration::from_secs(5));
//! let me = LeaderValue::new("a@127.0.0.1:4001", "127.0.0.1:4001");
//! let (election, mut events) = EtcdElection::start(config, me)?;
//! while let Some(ev) = events.recv().await {
//!     match ev {
//!         // Act as leader with fencing token `rev`, never past `until`.
//!         EtcdEvent::Leading { rev, until, sent } => { /* run `elected`, set the guard */ }
//!         EtcdEvent::LeaseMoved { until, .. } => { /* extend the guard to `until` */ }
//!         EtcdEvent::SteppedDown { rev, reason } => { /* stop acting; guard lost */ }
//!         EtcdEvent::Following { leader, rev } => { /* dial leader.addr, route calls */ }
//!         EtcdEvent::NoLeader | EtcdEvent::ForeignLeader { .. } => { /* calls wait */ }
//!         EtcdEvent::Unavailable { op, kind } => { /* the view says why */ }
//!         _ => {}
//!     }
//! #   break;
//! }
//! election.shutdown().await; // resigns: the next leader need not wait for the TTL
//! # Ok(()) }
//! ```
//!
//! `until` is an instant on this process's monotonic clock (`Instant`, which does not count
//! time while the machine is suspended): `sent`, the send time of the keep-alive behind it,
//! lets a suspend-aware runtime move it onto its own lease clock (the suspended time known at
//! `sent` added). The runtime's guard must compare against it itself rather than wait for
//! `SteppedDown`.

mod campaign;
mod client;
pub mod config;
mod election;
pub mod error;
mod lease;
mod observe;
pub mod verify;

// The store-neutral parts live in `crate::backend`; here under the names etcd users know.
pub use crate::backend::{backoff, lease_clock, value};
pub use crate::backend::{
    Ack, ElectionEvent as EtcdEvent, FailureKind as ErrorKind, LeaderValue, LeaseClock,
    StepDownReason, StoreOp as EtcdOp, ValueError, EVENT_CAPACITY,
};
pub use campaign::ShutdownOutcome;
pub use config::{EtcdConfig, EtcdConfigError, MAX_TTL, MIN_TTL};
pub use election::EtcdElection;
pub use error::{EtcdError, EtcdStartError};
