//! Bytes → the sans-IO acceptor state machine directly, in chunks chosen by the input: no
//! runtime, no pipe, no clock, so many more executions per second than `handshake`.
//!
//! Input layout: byte 0 picks the chunk size (1..=64) and whether a Hello that passes every
//! pre-MAC check is prepended (bit 7), the rest is what the dialer sends.
//!
//! Checks: no panic, the acceptor ends (no endless asking to read after end of stream), and
//! it never authenticates the fuzzer (which does not know the cookie).
#![no_main]

use std::time::Duration;

use gen_leader::wire::codec::{encode_frame, PROTOCOL_VERSION};
use gen_leader::wire::handshake::{Acceptor, HandshakeConfig, HandshakeMsg, Step};
use libfuzzer_sys::fuzz_target;

const A: &str = "a@127.0.0.1:4001";
const B: &str = "b@127.0.0.1:4002";
const CLUSTER: &str = "fuzz";
const DIGEST: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let chunk = usize::from(mode & 0x3f) + 1;
    let mut bytes = Vec::with_capacity(rest.len() + 128);
    if mode & 0x80 != 0 {
        let hello = HandshakeMsg::Hello {
            version: PROTOCOL_VERSION,
            cluster: CLUSTER.into(),
            from: A.into(),
            to: B.into(),
            incarnation: 1,
            members_digest: DIGEST,
            nonce: [3; 16],
            parts: gen_leader::wire::handshake::ConfigParts::default(),
        };
        bytes.extend_from_slice(&encode_frame(&hello).expect("encode"));
    }
    bytes.extend_from_slice(rest);

    let cfg = HandshakeConfig {
        cluster: CLUSTER.into(),
        cookie: b"fuzz-secret".to_vec(),
        me: B.into(),
        incarnation: 2,
        members_digest: DIGEST,
        parts: gen_leader::wire::handshake::ConfigParts::default(),
        timeout: Duration::from_secs(5),
    };
    let mut acceptor = Acceptor::new(&cfg, |n: &str| n == A || n == B, [9; 16]);
    let mut input = &bytes[..];
    let mut closed = false;
    // Every step either consumes input, ends the input, or drains one of at most three frames.
    for _ in 0..bytes.len() + 16 {
        match acceptor.poll() {
            Step::Receive if input.is_empty() => {
                assert!(!closed, "acceptor asked to read after the end of stream");
                closed = true;
                acceptor.receive_eof();
            }
            Step::Receive => {
                let n = chunk.min(input.len());
                acceptor.receive(&input[..n]);
                input = &input[n..];
            }
            Step::Send(_) | Step::SendRefusal(_) => {}
            Step::NeedsAdmission(peer) => panic!("authenticated without the cookie: {peer:?}"),
            Step::Done(peer, _) => panic!("handshake succeeded without the cookie: {peer:?}"),
            Step::Refused(_) | Step::Failed(_) => return,
        }
    }
    panic!("the acceptor did not end");
});
