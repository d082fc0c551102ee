//! Mutual authentication of a new connection between two cluster nodes.
//!
//! The node that opened the connection (the *dialer*) and the node that
//! accepted it (the *acceptor*) prove to each other that they know the
//! cluster cookie, without sending it, in four messages:
//!
//! 1. dialer → acceptor: `Hello { version, cluster, from, to, incarnation, members_digest, nonce_d, parts }`
//! 2. acceptor → dialer: `Challenge { from, incarnation, nonce_a, mac_a }`, or `Refuse(Refusal)`
//! 3. dialer → acceptor: `Auth { mac_d }`, or `Refuse(BadAuth)` if `mac_a` is wrong
//! 4. acceptor → dialer: `Welcome`, or `Refuse(Refusal)`
//!
//! with `mac_x = HMAC-SHA256(cookie, label_x ‖ lp(cluster) ‖ lp(dialer) ‖
//! lp(acceptor) ‖ dialer_incarnation ‖ acceptor_incarnation ‖ nonce_d ‖
//! nonce_a)`, where `label_a = "gen_leader/acceptor"`, `label_d =
//! "gen_leader/dialer"`, `lp(s)` is `s` prefixed by its length as a big-endian
//! `u64`, and incarnations are big-endian `u64`. Both nonces are 16 fresh bytes
//! from the operating system's random number generator, so a recorded
//! exchange cannot be replayed and the distinct labels stop a MAC from being
//! reflected back to its sender. MACs are checked in constant time.
//!
//! Before any MAC is computed the acceptor checks the protocol version (frame
//! version byte and `Hello.version`), cluster name, member-list digest, that
//! `to` is its own name, that `from` is not its own name and that `from` is a
//! known member; a mismatch is answered with a [`Refusal`] before closing. `Hello` also
//! carries the dialer's configuration field by field ([`ConfigParts`]: both member lists or
//! their digests, `preempt`, heartbeat, failure timeout, mode; never the cookie), so that a
//! mismatch is refused with [`Refusal::Config`] naming the field and both values.
//! After authentication the acceptor asks the caller's admission closure
//! (e.g. to detect duplicate or simultaneous connections).
//!
//! An *observer* (a client such as the `gen-leader` command, never a member) opens with
//! `Observe` instead of `Hello` and gets `ObserverChallenge` instead of `Challenge`: the same
//! proofs under labels of its own, then a read-only session of [`ObserverRequest`]s and
//! [`ObserverResponse`]s; see [`observe`] and `observer.rs`.
//!
//! Frames during the handshake are capped at [`HANDSHAKE_MAX_FRAME_LEN`].
//! On success both sides get a [`HandshakeOk`] holding the raw stream plus any
//! bytes already read past the handshake, to continue with a larger cap.
//! The cookie is never sent, logged or shown in `Debug` output.
//!
//! Layout: the decisions are made by two sans-IO state machines (`dialer.rs`,
//! `acceptor.rs`: bytes in, frames out, the nonce passed in); [`dial`] and
//! [`accept`] (`driver.rs`) only move bytes between them and the stream, draw
//! the nonces and enforce the timeout.

mod acceptor;
mod config;
mod dialer;
mod driver;
mod error;
mod mac;
mod machine;
mod messages;
mod observer;
mod parts;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

#[doc(hidden)]
pub use acceptor::Acceptor;
pub use config::{HandshakeConfig, ObserverConfig};
#[doc(hidden)]
pub use dialer::Dialer;
#[doc(hidden)]
pub use driver::accept_with_observers;
pub use driver::{accept, dial, observe, HandshakeOk};
pub use error::HandshakeError;
#[doc(hidden)]
pub use machine::Step;
#[doc(hidden)]
pub use messages::HandshakeMsg;
pub use messages::{PeerHello, Refusal};
#[doc(hidden)]
pub use observer::ObserverDialer;
pub use observer::{ObserverRequest, ObserverResponse, OBSERVER_VERSION};
pub use parts::{
    ConfigField, ConfigMismatch, ConfigParts, ListDifference, ModeParts, MAX_LIST_BYTES,
};

/// Cap on frame length while the handshake runs (peers are not yet trusted).
pub const HANDSHAKE_MAX_FRAME_LEN: usize = 4096;
