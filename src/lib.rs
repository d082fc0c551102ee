#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! # gen_leader
//!
//! Erlang's `gen_leader` behaviour, rebuilt in Rust: named nodes (`name@host:port`) elect a
//! leader over authenticated TCP connections, route `leader_call`/`leader_cast` to it, and
//! receive its Synch snapshot and ordered broadcasts. Every leadership has a **term** (a
//! fencing token), hung nodes are detected in well under a second, two leaders that meet
//! after a partition reduce to one, and calls fail with typed errors instead of hanging.
//!
//! Two modes ([`Mode`]): **bully** (the default, gen_leader's contract: availability first,
//! each side of a partition may elect a leader) and **quorum** (a majority's grant and a
//! lease: two leaderships never overlap in time, given a bound on clock rate error). In
//! both, a [`LeaderGuard`] lets a leader's code check its leadership right before a side
//! effect, and its [`FencingToken`] lets the resource refuse a stale leader's writes.
//!
//! Implement [`Behaviour`] (gen_leader's callbacks), build a [`Config`] and start a
//! [`Node`]:
//!
//! ```no_run
//! use gen_leader::{Behaviour, Config, Election, LeaderReply, Node, NodeName, ReplyTo};
//!
//! #[derive(Default)]
//! struct Counter { n: u64 }
//!
//! impl Behaviour for Counter {
//!     type Call = u64;        // "add this much"
//!     type Reply = u64;       // the new total
//!     type Cast = ();
//!     type Synch = u64;       // the leader's total, sent to followers when elected
//!     type Broadcast = u64;   // every new total
//!     type Info = ();
//!
//!     async fn elected(&mut self, _: &Election<'_>, _joined: Option<&NodeName>) -> u64 {
//!         self.n
//!     }
//!     async fn surrendered(&mut self, synch: u64, _: &Election<'_>) {
//!         self.n = synch;
//!     }
//!     async fn handle_leader_call(&mut self, add: u64, _from: ReplyTo<u64>, _: &Election<'_>)
//!         -> LeaderReply<u64, u64> {
//!         self.n += add;
//!         LeaderReply::ReplyAndBroadcast(self.n, self.n)
//!     }
//!     async fn from_leader(&mut self, total: u64, _: &Election<'_>) {
//!         self.n = total;
//!     }
//!     async fn handle_call(&mut self, _: u64, _: &Election<'_>) -> u64 {
//!         self.n
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::builder("a@127.0.0.1:4001")
//!     .candidates(["a@127.0.0.1:4001", "b@127.0.0.1:4002"])
//!     .cookie("secret")
//!     .data_dir("/tmp/gen_leader-a")
//!     .build()?;
//! let node = Node::start(config, Counter::default()).await?;
//! let total = node.leader_call(5).await?;
//! println!("leader {:?} at term {} says {total}", node.leader(), node.term());
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The crate is layered so that the election itself can be tested without I/O:
//! [`election`] is a sans-IO state machine, [`wire`] the protocol and handshake,
//! [`transport`] the connection plumbing, and the node runtime a ractor actor that drives
//! them. See `docs/guide.md` for the concepts, the mapping from gen_leader and the guarantees.

pub mod backend;
pub mod behaviour;
pub mod config;
pub mod election;
pub mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
mod node;
pub mod transport;
pub mod types;
pub mod wire;

pub use behaviour::{Behaviour, Election, LeaderReply, ReplyTo, StopReason, Wire};
pub use config::{Backend, Config, ConfigBuilder, ElectionRole, Members, Mode, QuorumConfig};
#[cfg(feature = "tls")]
pub use config::{TlsConfig, TlsError};
pub use election::{LossReason, NoQuorum, Role};
pub use error::{
    BackendConfigError, BoxError, CallError, CodecFailure, ConfigError, GuardError, StartError,
};
pub use node::{ClusterView, LeaderGuard, LeaderHandle, LeaderState, Node, NodeStats};
pub use node::{
    ModeStatus, NoQuorumStatus, NodeStatus, ObserveError, Observer, RefusedPeer, StateKind,
    StatusWatch,
};
pub use types::{FencingToken, NodeId, NodeName, NodeNameError, Term};
