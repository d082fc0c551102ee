//! Shared helpers for the state machines' unit tests: the pinned exchange and a step
//! collector.
//!
//! Why a file of its own: the dialer's, the acceptor's and the end-to-end tests all check the
//! same known exchange (fixed names, incarnations, cookie and nonces) against the bytes the
//! pre-refactor implementation produced, so those constants live in one place.

use std::time::Duration;

use bytes::Bytes;

use super::super::codec::PROTOCOL_VERSION;
use super::{ConfigParts, HandshakeConfig, HandshakeMsg, Refusal, Step};

pub(super) const A: &str = "a@127.0.0.1:4001";
pub(super) const B: &str = "b@127.0.0.1:4002";
pub(super) const C: &str = "c@127.0.0.1:4003";
pub(super) const NONCE_D: [u8; 16] = [0xd1; 16];
pub(super) const NONCE_A: [u8; 16] = [0xa2; 16];

/// The frames of the pinned exchange (A, incarnation 11, dials B, incarnation 22; cluster
/// "pin", cookie "pin cookie", digest `[0x5d; 32]`, nonces `NONCE_D` / `NONCE_A`), as written
/// by the implementation before the sans-IO refactor, then with protocol version 2 (`Hello`
/// carries [`parts`]; the other frames only changed their version byte), then with the mode
/// at the end of the parts (one byte for bully).
pub(super) const HELLO: &str = concat!(
    "000000ca0200020370696e",
    "1061403132372e302e302e313a34303031",
    "1062403132372e302e302e313a34303032",
    "0b",
    "5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d5d",
    "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1",
    // parts: two candidates, their digest, no workers, their digest, preempt false,
    // heartbeat 100 000 µs, failure timeout 600 000 µs, mode bully.
    "02",
    "1061403132372e302e302e313a34303031",
    "1062403132372e302e302e313a34303032",
    "3a4678dcde501713f2de249a1cd974e90a84f9d049447ea908a756bd2056b594",
    "00",
    "919f80fe7e8d981279f39dcad55bb7eada954d42382a3d199fb587376e9162c7",
    "00",
    "fca0860100",
    "fcc0270900",
    "00",
);
pub(super) const CHALLENGE: &str = concat!(
    "000000440201",
    "1062403132372e302e302e313a34303032",
    "16",
    "a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2",
    "307598f05ce74bfb96982cd60386618082db381e65e4e12a78474b0219d84aa2",
);
pub(super) const AUTH: &str =
    "000000220202fbce32a06195d0b53fbe88f8fb0e8b92d5badb7dd92e8260c9d3f5b2000f1425";
pub(super) const WELCOME: &str = "000000020203";

pub(super) fn cfg(me: &str, incarnation: u64) -> HandshakeConfig {
    HandshakeConfig {
        cluster: "pin".into(),
        cookie: b"pin cookie".to_vec(),
        me: me.into(),
        incarnation,
        members_digest: [0x5d; 32],
        parts: parts(),
        timeout: Duration::from_secs(5),
    }
}

/// The pinned configuration's parts: candidates A and B, defaults otherwise.
pub(super) fn parts() -> ConfigParts {
    ConfigParts::new(
        vec![A.into(), B.into()],
        vec![],
        false,
        Duration::from_millis(100),
        Duration::from_millis(600),
    )
}

pub(super) fn known(name: &str) -> bool {
    name == A || name == B
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub(super) fn frame(msg: &HandshakeMsg) -> Bytes {
    msg.to_frame().expect("encode")
}

pub(super) fn frame_with_version(msg: &HandshakeMsg, version: u8) -> Vec<u8> {
    let mut f = frame(msg).to_vec();
    f[4] = version;
    f
}

pub(super) fn refuse_frame(r: Refusal) -> String {
    hex(&frame(&HandshakeMsg::Refuse(r)))
}

/// The pinned dialer's Hello, with its fields editable.
pub(super) fn hello() -> HandshakeMsg {
    HandshakeMsg::Hello {
        version: PROTOCOL_VERSION,
        cluster: "pin".into(),
        from: A.into(),
        to: B.into(),
        incarnation: 11,
        members_digest: [0x5d; 32],
        nonce: NONCE_D,
        parts: parts(),
    }
}

/// A step rendered for exact comparison: frames in hex, errors by their `Debug`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum S {
    Send(String),
    SendRefusal(String),
    Receive,
    NeedsAdmission(String, u64),
    Done(String, u64, String),
    Refused(Refusal),
    Failed(String),
}

impl From<Step> for S {
    fn from(step: Step) -> Self {
        match step {
            Step::Send(b) => S::Send(hex(&b)),
            Step::SendRefusal(b) => S::SendRefusal(hex(&b)),
            Step::Receive => S::Receive,
            Step::NeedsAdmission(p) => S::NeedsAdmission(p.name, p.incarnation),
            Step::Done(p, rest) => S::Done(p.name, p.incarnation, hex(&rest)),
            Step::Refused(r) => S::Refused(r),
            Step::Failed(e) => S::Failed(format!("{e:?}")),
        }
    }
}

/// Polls until the machine waits (`Receive`, `NeedsAdmission`) or ends; returns every step.
pub(super) fn drain(mut poll: impl FnMut() -> Step) -> Vec<S> {
    let mut out = Vec::new();
    for _ in 0..10 {
        let s = S::from(poll());
        let stop = !matches!(s, S::Send(_) | S::SendRefusal(_));
        out.push(s);
        if stop {
            break;
        }
    }
    out
}

/// `Failed(Rejected(r))` as rendered by [`S`].
pub(super) fn rejected(r: Refusal) -> S {
    S::Failed(format!("{:?}", super::HandshakeError::Rejected(r)))
}
