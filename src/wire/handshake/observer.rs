//! The observer role: a client that knows the cookie and asks a node for its status, without
//! ever being a member. Its handshake state machine ([`ObserverDialer`]) and the messages of
//! its session ([`ObserverRequest`], [`ObserverResponse`]).
//!
//! Why a role of its own rather than a member with a reserved name: a member connection feeds
//! the election engine (peer up, `Status`, liveness), an observer must never do so; keeping
//! the two apart from the first message means no code path can confuse them. The observer
//! opens with `Observe` (instead of `Hello`), the node answers `ObserverChallenge` (its proof,
//! nonce and cluster name), the observer `Auth`, the node `Welcome` or `Refuse` — the member
//! exchange with the same HMAC-SHA256 over the same transcript (the observer's label as the
//! dialer name, incarnation 0), under two labels of its own, so that no proof from one role
//! is accepted in the other.
//!
//! Versioning: members still speak protocol version 2 (the frame's version byte) and their
//! bytes are unchanged. The observer protocol has its own number, [`OBSERVER_VERSION`], in
//! `Observe`; a node that speaks another one refuses with [`Refusal::ObserverVersion`], a node
//! that predates observers cannot decode `Observe` and closes the connection.
//!
//! After `Welcome` the observer sends requests and the node answers, in ordinary frames; the
//! status travels as JSON (`NodeStatus`, with defaults for missing fields), so that an older
//! or newer client still reads the fields it knows during a rolling upgrade.

use serde::{Deserialize, Serialize};

use super::config::ObserverConfig;
use super::mac::{Transcript, OBSERVED_LABEL, OBSERVER_LABEL};
use super::machine::{unexpected, unusable_cookie, Core, Step};
use super::messages::{HandshakeMsg, PeerHello, Refusal};
use super::parts::ConfigMismatch;

/// The observer protocol version, sent in `Observe`. History: 1, the first (`Status`,
/// `Watch`).
pub const OBSERVER_VERSION: u8 = 1;

/// Whether `name` may label an observer: 1 to 64 characters, none of them a control
/// character (it ends up in the node's logs).
pub(super) fn valid_observer_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 64 && !name.chars().any(char::is_control)
}

/// What an observer asks, one frame each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ObserverRequest {
    /// The node's status, once: answered with one [`ObserverResponse::Status`].
    Status,
    /// The node's status now and after each leadership change, until the observer closes the
    /// connection: answered with a stream of [`ObserverResponse::Status`], and
    /// [`ObserverResponse::Heartbeat`] while nothing changes.
    Watch,
    /// Nothing: keeps the session (or a watch) from idling out; answered with a
    /// [`ObserverResponse::Heartbeat`] outside a watch.
    Ping,
}

/// What a node answers an observer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ObserverResponse {
    /// The node's status, as JSON (a `NodeStatus`).
    Status(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Nothing changed; the node is alive (sent during a watch).
    Heartbeat,
    /// The request could not be served (e.g. the node is stopping); the node closes the
    /// session after it.
    Error(String),
}

#[derive(Debug)]
enum State {
    AwaitChallenge,
    AwaitWelcome,
    Ended,
}

/// The observer's handshake state machine, the counterpart of the acceptor for `Observe`.
/// Drive it with [`poll`](Self::poll), [`receive`](Self::receive) and
/// [`receive_eof`](Self::receive_eof) until it returns `Done`, `Refused` or `Failed`.
///
/// Public but hidden: for the crate's driver, tests and fuzzers.
#[doc(hidden)]
#[derive(Debug)]
pub struct ObserverDialer<'a> {
    cfg: &'a ObserverConfig,
    node: String,
    nonce: [u8; 16],
    peer: Option<PeerHello>,
    state: State,
    core: Core,
}

impl<'a> ObserverDialer<'a> {
    /// An observer of the node named `node`, opening with `Observe` carrying `nonce` (fresh
    /// and random for each connection).
    pub fn new(cfg: &'a ObserverConfig, node: &str, nonce: [u8; 16]) -> Self {
        let mut core = Core::new();
        core.send(&HandshakeMsg::Observe {
            observer_version: OBSERVER_VERSION,
            cluster: cfg.cluster.clone(),
            from: cfg.name.clone(),
            to: node.to_owned(),
            nonce,
        });
        Self {
            cfg,
            node: node.to_owned(),
            nonce,
            peer: None,
            state: State::AwaitChallenge,
            core,
        }
    }

    /// What the driver must do next.
    pub fn poll(&mut self) -> Step {
        self.core.poll().unwrap_or(Step::Receive)
    }

    /// Bytes received from the node, in any chunking.
    pub fn receive(&mut self, mut input: &[u8]) {
        while self.reading() {
            match self.core.next_msg(&mut input) {
                Some(msg) => self.on_msg(msg),
                None => return,
            }
        }
        if matches!(self.state, State::Ended) && self.peer.is_some() {
            self.core.keep(input);
        }
    }

    /// The node closed the connection.
    pub fn receive_eof(&mut self) {
        if self.reading() {
            self.core.eof();
            self.state = State::Ended;
        }
    }

    fn reading(&self) -> bool {
        self.core.running() && !matches!(self.state, State::Ended)
    }

    fn on_msg(&mut self, msg: HandshakeMsg) {
        match (&self.state, msg) {
            (
                State::AwaitChallenge,
                HandshakeMsg::ObserverChallenge {
                    from,
                    cluster,
                    incarnation,
                    nonce,
                    mac,
                },
            ) => self.on_challenge(from, cluster, incarnation, nonce, &mac),
            (State::AwaitWelcome, HandshakeMsg::Welcome) => {
                self.state = State::Ended;
                if let Some(peer) = self.peer.clone() {
                    self.core.done(peer);
                }
            }
            (_, HandshakeMsg::Refuse(r)) => {
                self.state = State::Ended;
                self.core.refused(r);
            }
            (state, other) => {
                let expected = match state {
                    State::AwaitChallenge => "ObserverChallenge",
                    _ => "Welcome",
                };
                self.state = State::Ended;
                self.core.fail(unexpected(expected, &other));
            }
        }
    }

    fn on_challenge(
        &mut self,
        from: String,
        cluster: String,
        incarnation: u64,
        nonce: [u8; 16],
        mac: &[u8; 32],
    ) {
        self.state = State::Ended;
        if from != self.node {
            self.core.reject(Refusal::WrongNode {
                expected: self.node.clone(),
                got: from,
            });
            return;
        }
        if let Some(ours) = self.cfg.cluster.as_deref().filter(|c| *c != cluster) {
            self.core
                .reject(Refusal::Config(ConfigMismatch::cluster(ours, &cluster)));
            return;
        }
        let transcript = Transcript {
            cluster,
            dialer: self.cfg.name.clone(),
            acceptor: from,
            dialer_incarnation: 0,
            acceptor_incarnation: incarnation,
            dialer_nonce: self.nonce,
            acceptor_nonce: nonce,
        };
        let cookie = &self.cfg.cookie;
        let auth = match transcript.verify(cookie, OBSERVED_LABEL, mac) {
            Ok(true) => transcript.sign(cookie, OBSERVER_LABEL),
            Ok(false) => {
                self.core.reject(Refusal::BadAuth);
                return;
            }
            Err(e) => Err(e),
        };
        match auth {
            Ok(mac) => {
                self.core.send(&HandshakeMsg::Auth { mac });
                self.peer = Some(PeerHello {
                    name: transcript.acceptor,
                    incarnation,
                });
                self.state = State::AwaitWelcome;
            }
            Err(_) => self.core.fail(unusable_cookie()),
        }
    }
}

#[cfg(test)]
#[path = "observer_tests.rs"]
mod tests;
