//! The dialer's side of the handshake as a state machine: bytes in, frames out.
//!
//! Why sans-IO: every decision of the handshake (which name we reached, whether its MAC is
//! right, what a refusal means) is made here without sockets, timers or randomness (the
//! nonce comes from the caller), so it can be tested byte by byte and fuzzed directly, and
//! the async driver in `driver.rs` stays a thin loop.
//!
//! Sequence: send `Hello`; on `Challenge` check the acceptor's name and MAC, send `Auth`; on
//! `Welcome` finish. A `Refuse` from the acceptor ends in [`Step::Refused`].

use super::super::codec::PROTOCOL_VERSION;
use super::config::HandshakeConfig;
use super::mac::{Transcript, ACCEPTOR_LABEL, DIALER_LABEL};
use super::machine::{unexpected, unusable_cookie, Core, Step};
use super::messages::{HandshakeMsg, PeerHello, Refusal};

#[derive(Debug)]
enum State {
    AwaitChallenge,
    AwaitWelcome,
    Ended,
}

/// The dialer's handshake state machine. Drive it with [`poll`](Self::poll): write what it
/// asks to send, feed what the connection yields to [`receive`](Self::receive) /
/// [`receive_eof`](Self::receive_eof), until it returns `Done`, `Refused` or `Failed`.
///
/// Public but hidden: for the crate's driver, tests and fuzzers.
#[doc(hidden)]
#[derive(Debug)]
pub struct Dialer<'a> {
    cfg: &'a HandshakeConfig,
    expected_peer: String,
    nonce: [u8; 16],
    peer: Option<PeerHello>,
    state: State,
    core: Core,
}

impl<'a> Dialer<'a> {
    /// A dialer towards `expected_peer`, opening with `Hello` carrying `nonce` (which must be
    /// fresh and random for each connection).
    pub fn new(cfg: &'a HandshakeConfig, expected_peer: &str, nonce: [u8; 16]) -> Self {
        let mut core = Core::new();
        core.send(&HandshakeMsg::Hello {
            version: PROTOCOL_VERSION,
            cluster: cfg.cluster.clone(),
            from: cfg.me.clone(),
            to: expected_peer.to_owned(),
            incarnation: cfg.incarnation,
            members_digest: cfg.members_digest,
            nonce,
        });
        Self {
            cfg,
            expected_peer: expected_peer.to_owned(),
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

    /// Bytes received from the acceptor, in any chunking.
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

    /// The acceptor closed the connection.
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
                HandshakeMsg::Challenge {
                    from,
                    incarnation,
                    nonce,
                    mac,
                },
            ) => self.on_challenge(from, incarnation, nonce, &mac),
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
                    State::AwaitChallenge => "Challenge",
                    _ => "Welcome",
                };
                self.state = State::Ended;
                self.core.fail(unexpected(expected, &other));
            }
        }
    }

    fn on_challenge(&mut self, from: String, incarnation: u64, nonce: [u8; 16], mac: &[u8; 32]) {
        if from != self.expected_peer {
            self.state = State::Ended;
            self.core.reject(Refusal::WrongNode {
                expected: self.expected_peer.clone(),
                got: from,
            });
            return;
        }
        let transcript = Transcript {
            cluster: self.cfg.cluster.clone(),
            dialer: self.cfg.me.clone(),
            acceptor: from,
            dialer_incarnation: self.cfg.incarnation,
            acceptor_incarnation: incarnation,
            dialer_nonce: self.nonce,
            acceptor_nonce: nonce,
        };
        let cookie = &self.cfg.cookie;
        let auth = match transcript.verify(cookie, ACCEPTOR_LABEL, mac) {
            Ok(true) => transcript.sign(cookie, DIALER_LABEL),
            Ok(false) => {
                self.state = State::Ended;
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
            Err(_) => {
                self.state = State::Ended;
                self.core.fail(unusable_cookie());
            }
        }
    }
}
