//! The acceptor's side of the handshake as a state machine: bytes in, frames out.
//!
//! Why sans-IO: the acceptor faces unauthenticated peers, so every check it makes (version,
//! cluster, configuration digest, names, MAC) lives here without sockets, timers or
//! randomness (the nonce comes from the caller) and can be tested byte by byte and fuzzed
//! directly. The caller's admission decision (duplicate or simultaneous connections), which
//! may need to ask the node, is a pause: the machine yields [`Step::NeedsAdmission`] and is
//! resumed with [`Acceptor::admit`].
//!
//! Sequence: on `Hello` run the pre-MAC checks and answer `Challenge`; on `Auth` check the
//! dialer's MAC, ask for admission, then send `Welcome` (or `Refuse`).

use super::super::codec::PROTOCOL_VERSION;
use super::config::HandshakeConfig;
use super::mac::{Transcript, ACCEPTOR_LABEL, DIALER_LABEL};
use super::machine::{unexpected, unusable_cookie, Core, Step};
use super::messages::{HandshakeMsg, PeerHello, Refusal};

#[derive(Debug)]
enum State {
    AwaitHello,
    AwaitAuth(Transcript),
    Admission(PeerHello),
    Ended,
}

/// The acceptor's handshake state machine. Drive it with [`poll`](Self::poll): write what it
/// asks to send, feed what the connection yields to [`receive`](Self::receive) /
/// [`receive_eof`](Self::receive_eof), answer [`Step::NeedsAdmission`] with
/// [`admit`](Self::admit), until it returns `Done`, `Refused` or `Failed`.
///
/// `is_member` says whether a dialer's claimed name is a cluster member. Public but hidden:
/// for the crate's driver, tests and fuzzers.
#[doc(hidden)]
pub struct Acceptor<'a, F> {
    cfg: &'a HandshakeConfig,
    is_member: F,
    nonce: [u8; 16],
    state: State,
    core: Core,
}

impl<F> std::fmt::Debug for Acceptor<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("cfg", self.cfg)
            .field("state", &self.state)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl<'a, F: Fn(&str) -> bool> Acceptor<'a, F> {
    /// An acceptor that will answer a valid `Hello` with a `Challenge` carrying `nonce`
    /// (which must be fresh and random for each connection).
    pub fn new(cfg: &'a HandshakeConfig, is_member: F, nonce: [u8; 16]) -> Self {
        Self {
            cfg,
            is_member,
            nonce,
            state: State::AwaitHello,
            core: Core::new(),
        }
    }

    /// What the driver must do next.
    pub fn poll(&mut self) -> Step {
        if let Some(step) = self.core.poll() {
            return step;
        }
        match &self.state {
            State::Admission(peer) => Step::NeedsAdmission(peer.clone()),
            _ => Step::Receive,
        }
    }

    /// Bytes received from the dialer, in any chunking. Bytes that arrive while the machine
    /// waits for admission are kept, and handed back with `Done`.
    pub fn receive(&mut self, mut input: &[u8]) {
        while self.reading() {
            match self.core.next_msg(&mut input) {
                Some(msg) => self.on_msg(msg),
                None => return,
            }
        }
        if matches!(self.state, State::Admission(_)) {
            self.core.keep(input);
        }
    }

    /// The dialer closed the connection. Ignored while waiting for admission (as the
    /// connection is not read then); the `Welcome` write will tell.
    pub fn receive_eof(&mut self) {
        if self.reading() {
            self.core.eof();
            self.state = State::Ended;
        }
    }

    /// Resumes after [`Step::NeedsAdmission`]: `Ok` sends `Welcome` and finishes, `Err` sends
    /// the refusal. Ignored in any other state.
    pub fn admit(&mut self, decision: Result<(), Refusal>) {
        if !self.core.running() {
            return;
        }
        let State::Admission(peer) = std::mem::replace(&mut self.state, State::Ended) else {
            return;
        };
        match decision {
            Ok(()) => {
                self.core.send(&HandshakeMsg::Welcome);
                self.core.done(peer);
            }
            Err(refusal) => self.core.reject(refusal),
        }
    }

    fn reading(&self) -> bool {
        self.core.running() && matches!(self.state, State::AwaitHello | State::AwaitAuth(_))
    }

    fn on_msg(&mut self, msg: HandshakeMsg) {
        match (std::mem::replace(&mut self.state, State::Ended), msg) {
            (
                State::AwaitHello,
                HandshakeMsg::Hello {
                    version,
                    cluster,
                    from,
                    to,
                    incarnation,
                    members_digest,
                    nonce,
                },
            ) => {
                let hello = Hello {
                    version,
                    cluster,
                    from,
                    to,
                    incarnation,
                    members_digest,
                    nonce,
                };
                self.on_hello(hello);
            }
            (State::AwaitAuth(transcript), HandshakeMsg::Auth { mac }) => {
                self.on_auth(transcript, &mac);
            }
            (State::AwaitAuth(_), HandshakeMsg::Refuse(r)) => self.core.refused(r),
            (State::AwaitHello, other) => self.core.fail(unexpected("Hello", &other)),
            (_, other) => self.core.fail(unexpected("Auth", &other)),
        }
    }

    /// The checks made before any MAC, in this order; the first failing one is the refusal.
    fn refusal(&self, h: &Hello) -> Option<Refusal> {
        let cfg = self.cfg;
        if h.version != PROTOCOL_VERSION {
            Some(Refusal::Version {
                ours: PROTOCOL_VERSION,
                theirs: h.version,
            })
        } else if h.cluster != cfg.cluster {
            Some(Refusal::Cluster)
        } else if h.members_digest != cfg.members_digest {
            Some(Refusal::Members)
        } else if h.to != cfg.me {
            Some(Refusal::WrongNode {
                expected: h.to.clone(),
                got: cfg.me.clone(),
            })
        } else if h.from == cfg.me {
            Some(Refusal::Duplicate(h.from.clone()))
        } else if !(self.is_member)(&h.from) {
            Some(Refusal::Unknown(h.from.clone()))
        } else {
            None
        }
    }

    fn on_hello(&mut self, h: Hello) {
        if let Some(refusal) = self.refusal(&h) {
            self.core.reject(refusal);
            return;
        }
        let transcript = Transcript {
            cluster: self.cfg.cluster.clone(),
            dialer: h.from,
            acceptor: self.cfg.me.clone(),
            dialer_incarnation: h.incarnation,
            acceptor_incarnation: self.cfg.incarnation,
            dialer_nonce: h.nonce,
            acceptor_nonce: self.nonce,
        };
        match transcript.sign(&self.cfg.cookie, ACCEPTOR_LABEL) {
            Ok(mac) => {
                self.core.send(&HandshakeMsg::Challenge {
                    from: self.cfg.me.clone(),
                    incarnation: self.cfg.incarnation,
                    nonce: self.nonce,
                    mac,
                });
                self.state = State::AwaitAuth(transcript);
            }
            Err(_) => self.core.fail(unusable_cookie()),
        }
    }

    fn on_auth(&mut self, transcript: Transcript, mac: &[u8; 32]) {
        match transcript.verify(&self.cfg.cookie, DIALER_LABEL, mac) {
            Ok(true) => {
                self.state = State::Admission(PeerHello {
                    name: transcript.dialer,
                    incarnation: transcript.dialer_incarnation,
                });
            }
            Ok(false) => self.core.reject(Refusal::BadAuth),
            Err(_) => self.core.fail(unusable_cookie()),
        }
    }
}

/// The fields of a `Hello`.
struct Hello {
    version: u8,
    cluster: String,
    from: String,
    to: String,
    incarnation: u64,
    members_digest: [u8; 32],
    nonce: [u8; 16],
}
