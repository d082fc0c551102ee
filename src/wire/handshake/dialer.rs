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
use super::messages::{HandshakeMsg, HelloRef, PeerHello, Refusal};

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
        core.send_frame(
            HelloRef::Hello {
                version: PROTOCOL_VERSION,
                cluster: &cfg.cluster,
                from: &cfg.me,
                to: expected_peer,
                incarnation: cfg.incarnation,
                members_digest: &cfg.members_digest,
                nonce: &nonce,
                parts: &cfg.parts,
            }
            .to_frame(),
        );
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

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::HandshakeError;
    use super::*;

    fn dialer(c: &HandshakeConfig) -> Dialer<'_> {
        Dialer::new(c, B, NONCE_D)
    }

    fn challenge_from(from: &str, mac: [u8; 32]) -> HandshakeMsg {
        HandshakeMsg::Challenge {
            from: from.into(),
            incarnation: 22,
            nonce: NONCE_A,
            mac,
        }
    }

    /// A dialer that got through to waiting for `Welcome`.
    fn past_challenge(c: &HandshakeConfig) -> Dialer<'_> {
        let mut d = dialer(c);
        assert_eq!(drain(|| d.poll()), [S::Send(HELLO.into()), S::Receive]);
        d.receive(&unhex(CHALLENGE));
        assert_eq!(drain(|| d.poll()), [S::Send(AUTH.into()), S::Receive]);
        d
    }

    #[test]
    fn happy_path_pinned_bytes() {
        let c = cfg(A, 11);
        let mut d = past_challenge(&c);
        let mut input = unhex(WELCOME);
        input.extend_from_slice(b"next frames");
        d.receive(&input);
        assert_eq!(
            drain(|| d.poll()),
            [S::Done(B.into(), 22, hex(b"next frames"))]
        );
        // Polling past the end is answered, not a panic.
        assert!(matches!(
            d.poll(),
            Step::Failed(HandshakeError::Protocol(_))
        ));
    }

    #[test]
    fn happy_path_byte_by_byte() {
        let c = cfg(A, 11);
        let mut d = dialer(&c);
        assert_eq!(drain(|| d.poll()), [S::Send(HELLO.into()), S::Receive]);
        let challenge = unhex(CHALLENGE);
        for (i, b) in challenge.iter().enumerate() {
            d.receive(std::slice::from_ref(b));
            let want = if i + 1 < challenge.len() {
                vec![S::Receive]
            } else {
                vec![S::Send(AUTH.into()), S::Receive]
            };
            assert_eq!(drain(|| d.poll()), want, "after byte {i}");
        }
        for b in unhex(WELCOME).iter().take(5) {
            d.receive(std::slice::from_ref(b));
            assert_eq!(drain(|| d.poll()), [S::Receive]);
        }
        d.receive(&unhex(WELCOME)[5..]);
        assert_eq!(drain(|| d.poll()), [S::Done(B.into(), 22, String::new())]);
    }

    #[test]
    fn everything_in_one_chunk() {
        // A peer may pipeline (a legitimate acceptor cannot, but the machine must not care):
        // the Auth is still output before the end.
        let c = cfg(A, 11);
        let mut d = dialer(&c);
        let mut input = unhex(CHALLENGE);
        input.extend(unhex(WELCOME));
        input.extend(unhex(WELCOME));
        d.receive(&input);
        assert_eq!(
            drain(|| d.poll()),
            [
                S::Send(HELLO.into()),
                S::Send(AUTH.into()),
                S::Done(B.into(), 22, WELCOME.into())
            ]
        );
    }

    #[test]
    fn challenge_from_another_node_is_refused() {
        let c = cfg(A, 11);
        let mut d = dialer(&c);
        d.poll();
        d.receive(&frame(&challenge_from(C, [0; 32])));
        let r = Refusal::WrongNode {
            expected: B.into(),
            got: C.into(),
        };
        assert_eq!(
            drain(|| d.poll()),
            [S::SendRefusal(refuse_frame(r.clone())), rejected(r)]
        );
    }

    #[test]
    fn bad_acceptor_mac_is_refused() {
        let c = cfg(A, 11);
        let mut d = dialer(&c);
        d.poll();
        let mut challenge = unhex(CHALLENGE);
        let last = challenge.len() - 1;
        challenge[last] ^= 1; // one bit of the MAC
        d.receive(&challenge);
        assert_eq!(
            drain(|| d.poll()),
            [
                S::SendRefusal(refuse_frame(Refusal::BadAuth)),
                rejected(Refusal::BadAuth)
            ]
        );
        // Another cookie: the pinned Challenge does not verify either.
        let mut other = cfg(A, 11);
        other.cookie = b"other".to_vec();
        let mut d = dialer(&other);
        d.poll();
        d.receive(&unhex(CHALLENGE));
        assert_eq!(
            S::from(d.poll()),
            S::SendRefusal(refuse_frame(Refusal::BadAuth))
        );
    }

    #[test]
    fn refusals_from_the_acceptor() {
        let c = cfg(A, 11);
        let mut d = dialer(&c);
        d.poll();
        d.receive(&frame(&HandshakeMsg::Refuse(Refusal::Members)));
        assert_eq!(drain(|| d.poll()), [S::Refused(Refusal::Members)]);

        let mut d = past_challenge(&c);
        d.receive(&frame(&HandshakeMsg::Refuse(Refusal::CallBack)));
        assert_eq!(drain(|| d.poll()), [S::Refused(Refusal::CallBack)]);
    }

    #[test]
    fn unexpected_messages() {
        let c = cfg(A, 11);
        let mut d = dialer(&c);
        d.poll();
        d.receive(&frame(&HandshakeMsg::Welcome));
        assert_eq!(
            drain(|| d.poll()),
            [S::Failed(
                r#"Protocol("expected Challenge, got Welcome")"#.into()
            )]
        );

        let mut d = past_challenge(&c);
        d.receive(&unhex(CHALLENGE));
        assert_eq!(
            drain(|| d.poll()),
            [S::Failed(
                r#"Protocol("expected Welcome, got Challenge")"#.into()
            )]
        );
    }

    #[test]
    fn foreign_version_is_refused_at_the_version_byte() {
        let c = cfg(A, 11);
        let mut d = dialer(&c);
        d.poll();
        let f = frame_with_version(&challenge_from(B, [0; 32]), 3);
        d.receive(&f[..5]); // the rest never needs to arrive
        let r = Refusal::Version {
            ours: PROTOCOL_VERSION,
            theirs: 3,
        };
        assert_eq!(
            drain(|| d.poll()),
            [S::SendRefusal(refuse_frame(r.clone())), rejected(r)]
        );
    }

    #[test]
    fn bad_input_fails() {
        let c = cfg(A, 11);
        let cases: [(&[u8], &str); 5] = [
            (
                &[0, 0, 0x10, 0x01],
                "Codec(FrameTooLarge { len: 4097, max: 4096 })",
            ),
            (
                &[0xff, 0xff, 0xff, 0xff, 1],
                "Codec(FrameTooLarge { len: 4294967295, max: 4096 })",
            ),
            (&[0, 0, 0, 0], "Codec(EmptyFrame)"),
            // A valid header and a body that is no handshake message.
            (&[0, 0, 0, 2, PROTOCOL_VERSION, 0x77], "Codec(Decode("),
            (
                &[0, 0, 0, 3, PROTOCOL_VERSION, 3, 0],
                "Codec(TrailingBytes)",
            ),
        ];
        for (input, want) in cases {
            let mut d = dialer(&c);
            d.poll();
            d.receive(input);
            let steps = drain(|| d.poll());
            assert!(
                matches!(&steps[..], [S::Failed(e)] if e.starts_with(want)),
                "{input:?}: {steps:?}"
            );
        }
    }

    #[test]
    fn end_of_stream() {
        let c = cfg(A, 11);
        let mut d = dialer(&c);
        d.poll();
        d.receive_eof();
        assert_eq!(drain(|| d.poll()), [S::Failed("Closed".into())]);

        let mut d = past_challenge(&c);
        d.receive(&unhex(WELCOME)[..3]);
        d.receive_eof();
        let steps = drain(|| d.poll());
        assert!(
            matches!(&steps[..], [S::Failed(e)] if e.contains("bytes remaining on stream")),
            "{steps:?}"
        );
    }
}
