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
//! dialer's MAC, ask for admission, then send `Welcome` (or `Refuse`). An observer opens
//! with `Observe` instead (see `observer.rs`): the same sequence with the observer's checks
//! and MAC labels, and `ObserverChallenge` for `Challenge`; only an acceptor made with
//! [`Acceptor::with_observers`] takes observers.

use super::super::codec::PROTOCOL_VERSION;
use super::config::HandshakeConfig;
use super::mac::{Transcript, ACCEPTOR_LABEL, DIALER_LABEL, OBSERVED_LABEL, OBSERVER_LABEL};
use super::machine::{unexpected, unusable_cookie, Core, Step};
use super::messages::{HandshakeMsg, PeerHello, Refusal};
use super::observer::{valid_observer_name, OBSERVER_VERSION};
use super::parts::{ConfigMismatch, ConfigParts};

/// Who opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Member,
    Observer,
}

#[derive(Debug)]
enum State {
    AwaitHello,
    AwaitAuth(Transcript, Role),
    Admission(PeerHello),
    Ended,
}

/// The observer hook of an acceptor that takes no observers.
pub(super) type NoObservers = fn(&str) -> bool;

/// The acceptor's handshake state machine. Drive it with [`poll`](Self::poll): write what it
/// asks to send, feed what the connection yields to [`receive`](Self::receive) /
/// [`receive_eof`](Self::receive_eof), answer [`Step::NeedsAdmission`] with
/// [`admit`](Self::admit), until it returns `Done`, `Refused` or `Failed`.
///
/// `is_member` says whether a dialer's claimed name is a cluster member; `on_observer` (see
/// [`with_observers`](Self::with_observers)) whether an observer that passed the checks made
/// before any MAC may go on. Public but hidden: for the crate's driver, tests and fuzzers.
#[doc(hidden)]
pub struct Acceptor<'a, F, O = NoObservers> {
    cfg: &'a HandshakeConfig,
    is_member: F,
    on_observer: Option<O>,
    nonce: [u8; 16],
    state: State,
    core: Core,
}

impl<F, O> std::fmt::Debug for Acceptor<'_, F, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("cfg", self.cfg)
            .field("observers", &self.on_observer.is_some())
            .field("state", &self.state)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl<'a, F: Fn(&str) -> bool> Acceptor<'a, F> {
    /// An acceptor of members only (an observer is refused) that will answer a valid `Hello`
    /// with a `Challenge` carrying `nonce` (which must be fresh and random for each
    /// connection).
    pub fn new(cfg: &'a HandshakeConfig, is_member: F, nonce: [u8; 16]) -> Self {
        Self {
            cfg,
            is_member,
            on_observer: None,
            nonce,
            state: State::AwaitHello,
            core: Core::new(),
        }
    }
}

impl<'a, F: Fn(&str) -> bool, O: Fn(&str) -> bool> Acceptor<'a, F, O> {
    /// An acceptor of members and observers. `on_observer` is called with the observer's
    /// label once its `Observe` passed the checks made before any MAC (the caller learns that
    /// the opening is in); `false` refuses it.
    pub fn with_observers(
        cfg: &'a HandshakeConfig,
        is_member: F,
        on_observer: O,
        nonce: [u8; 16],
    ) -> Self {
        Self {
            cfg,
            is_member,
            on_observer: Some(on_observer),
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
        self.core.running() && matches!(self.state, State::AwaitHello | State::AwaitAuth(..))
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
                    parts,
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
                    parts,
                };
                self.on_hello(hello);
            }
            (
                State::AwaitHello,
                HandshakeMsg::Observe {
                    observer_version,
                    cluster,
                    from,
                    to,
                    nonce,
                },
            ) => self.on_observe(observer_version, cluster, from, to, nonce),
            (State::AwaitAuth(transcript, role), HandshakeMsg::Auth { mac }) => {
                self.on_auth(transcript, role, &mac);
            }
            (State::AwaitAuth(..), HandshakeMsg::Refuse(r)) => self.core.refused(r),
            (State::AwaitHello, other) => self.core.fail(unexpected("Hello", &other)),
            (_, other) => self.core.fail(unexpected("Auth", &other)),
        }
    }

    /// The checks made before any MAC, in this order; the first failing one is the refusal.
    fn refusal(&self, h: &Hello) -> Option<Refusal> {
        let cfg = self.cfg;
        // Asked first, so that the caller learns the claimed name (for its logs) whatever
        // the refusal.
        let member = (self.is_member)(&h.from);
        if h.version != PROTOCOL_VERSION {
            Some(Refusal::Version {
                ours: PROTOCOL_VERSION,
                theirs: h.version,
            })
        } else if h.cluster != cfg.cluster {
            Some(Refusal::Config(ConfigMismatch::cluster(
                &cfg.cluster,
                &h.cluster,
            )))
        } else if h.members_digest != cfg.members_digest {
            // Name the field when the parts tell (they may not: digests computed differently).
            Some(
                cfg.parts
                    .mismatch(&h.parts)
                    .map_or(Refusal::Members, Refusal::Config),
            )
        } else if h.to != cfg.me {
            Some(Refusal::WrongNode {
                expected: h.to.clone(),
                got: cfg.me.clone(),
            })
        } else if h.from == cfg.me {
            Some(Refusal::Duplicate(h.from.clone()))
        } else if !member {
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
                self.state = State::AwaitAuth(transcript, Role::Member);
            }
            Err(_) => self.core.fail(unusable_cookie()),
        }
    }

    /// An observer's opening: its checks before any MAC, in this order (the first failing one
    /// is the refusal), then the `ObserverChallenge`.
    fn on_observe(
        &mut self,
        version: u8,
        cluster: Option<String>,
        from: String,
        to: String,
        nonce: [u8; 16],
    ) {
        let cfg = self.cfg;
        let refusal = if version != OBSERVER_VERSION {
            Some(Refusal::ObserverVersion {
                ours: OBSERVER_VERSION,
                theirs: version,
            })
        } else if cluster.as_ref().is_some_and(|c| *c != cfg.cluster) {
            Some(Refusal::Config(ConfigMismatch::cluster(
                &cfg.cluster,
                cluster.as_deref().unwrap_or_default(),
            )))
        } else if to != cfg.me {
            Some(Refusal::WrongNode {
                expected: to,
                got: cfg.me.clone(),
            })
        } else if !valid_observer_name(&from) {
            Some(Refusal::Other(
                "an observer's name must be 1 to 64 printable characters".into(),
            ))
        } else if !self.on_observer.as_ref().is_some_and(|f| f(&from)) {
            Some(Refusal::Other("this node does not accept observers".into()))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.core.reject(refusal);
            return;
        }
        let transcript = Transcript {
            cluster: cfg.cluster.clone(),
            dialer: from,
            acceptor: cfg.me.clone(),
            dialer_incarnation: 0,
            acceptor_incarnation: cfg.incarnation,
            dialer_nonce: nonce,
            acceptor_nonce: self.nonce,
        };
        match transcript.sign(&cfg.cookie, OBSERVED_LABEL) {
            Ok(mac) => {
                self.core.send(&HandshakeMsg::ObserverChallenge {
                    from: cfg.me.clone(),
                    cluster: cfg.cluster.clone(),
                    incarnation: cfg.incarnation,
                    nonce: self.nonce,
                    mac,
                });
                self.state = State::AwaitAuth(transcript, Role::Observer);
            }
            Err(_) => self.core.fail(unusable_cookie()),
        }
    }

    fn on_auth(&mut self, transcript: Transcript, role: Role, mac: &[u8; 32]) {
        let label = match role {
            Role::Member => DIALER_LABEL,
            Role::Observer => OBSERVER_LABEL,
        };
        match transcript.verify(&self.cfg.cookie, label, mac) {
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
    parts: ConfigParts,
}

#[cfg(test)]
#[path = "acceptor_tests.rs"]
mod tests;
