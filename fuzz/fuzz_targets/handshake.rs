//! Bytes → `handshake::accept` over an in-memory duplex stream, on a current-thread runtime
//! with a paused clock (timeouts cost no real time).
//!
//! Input layout: byte 0 picks what the fake dialer does (see below), the rest is written to
//! the acceptor. To reach the later handshake stages without a seed corpus, bit 2 of byte 0
//! prefixes the input with a Hello that passes every pre-MAC check.
//!
//! Checks: no panic, no hang past the handshake timeout, and never a successful handshake
//! (the fuzzer does not know the cookie and the acceptor's nonce is fresh).
#![no_main]

use std::time::Duration;

use gen_leader::wire::codec::{encode_frame, PROTOCOL_VERSION};
use gen_leader::wire::handshake::{accept, HandshakeConfig, PeerHello};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const A: &str = "a@127.0.0.1:4001";
const B: &str = "b@127.0.0.1:4002";
const CLUSTER: &str = "fuzz";
const DIGEST: [u8; 32] = [7; 32];
const TIMEOUT: Duration = Duration::from_secs(5);

use gen_leader::wire::handshake::HandshakeMsg as HsMsg;

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let mut bytes = Vec::with_capacity(rest.len() + 128);
    if mode & 0b100 != 0 {
        let hello = HsMsg::Hello {
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
    let pipe = match (mode >> 3) & 3 {
        0 => 1,
        1 => 16,
        2 => 1024,
        _ => 64 * 1024,
    };
    let after = mode & 3;

    let cfg = HandshakeConfig {
        cluster: CLUSTER.into(),
        cookie: b"fuzz-secret".to_vec(),
        me: B.into(),
        incarnation: 2,
        members_digest: DIGEST,
        parts: gen_leader::wire::handshake::ConfigParts::default(),
        timeout: TIMEOUT,
    };

    let outcome = RT.with(|rt| {
        rt.block_on(async {
            let (mut d, a) = tokio::io::duplex(pipe);
            let dialer = async move {
                let _ = d.write_all(&bytes).await;
                match after {
                    // Close at once.
                    0 => drop(d),
                    // Read everything until the acceptor closes.
                    1 => {
                        let mut sink = Vec::new();
                        let _ = d.read_to_end(&mut sink).await;
                    }
                    // Half-close (shutdown) but keep reading.
                    2 => {
                        let _ = d.shutdown().await;
                        let mut sink = Vec::new();
                        let _ = d.read_to_end(&mut sink).await;
                    }
                    // Stall without reading, past the handshake timeout.
                    _ => {
                        tokio::time::sleep(TIMEOUT * 2).await;
                        drop(d);
                    }
                }
            };
            let acceptor = accept(
                a,
                &cfg,
                |n: &str| n == A || n == B,
                |_p: PeerHello| async { Ok(()) },
            );
            tokio::time::timeout(TIMEOUT * 3, async {
                let (_, res) = tokio::join!(dialer, acceptor);
                res.map(|ok| ok.peer)
            })
            .await
        })
    });
    match outcome {
        Err(_) => panic!("acceptor hung past its timeout"),
        Ok(Ok(peer)) => panic!("handshake succeeded without the cookie: {peer:?}"),
        Ok(Err(_)) => {}
    }
});
