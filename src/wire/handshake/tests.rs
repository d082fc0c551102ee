//! End-to-end tests of [`dial`] and [`accept`] over in-memory and TCP streams.
//!
//! Why a file of its own: these run both drivers (or a driver against a scripted peer), so
//! they belong to no single machine; the machines' byte-exact tests sit next to each machine.

use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::super::codec::{
    decode_body, encode_frame, encode_frame_into, CodecError, DEFAULT_MAX_FRAME_LEN,
    PROTOCOL_VERSION,
};
use super::mac::{Transcript, ACCEPTOR_LABEL, DIALER_LABEL};
use super::*;

type Msg = HandshakeMsg;

const A: &str = "a@127.0.0.1:4001";
const B: &str = "b@127.0.0.1:4002";

fn cfg(me: &str, incarnation: u64) -> HandshakeConfig {
    HandshakeConfig {
        cluster: "test".into(),
        cookie: b"secret cookie".to_vec(),
        me: me.into(),
        incarnation,
        members_digest: [7; 32],
        parts: ConfigParts::new(
            vec![A.into(), B.into()],
            vec![],
            false,
            Duration::from_millis(100),
            Duration::from_millis(600),
        ),
        timeout: Duration::from_secs(5),
    }
}

fn known(name: &str) -> bool {
    name == A || name == B
}

async fn admit_all(_: PeerHello) -> Result<(), Refusal> {
    Ok(())
}

/// Runs `dial` (from `dcfg` towards `target`) against `accept` (`acfg`) over a duplex pipe.
async fn run(
    dcfg: &HandshakeConfig,
    target: &str,
    acfg: &HandshakeConfig,
) -> (
    Result<HandshakeOk<DuplexStream>, HandshakeError>,
    Result<HandshakeOk<DuplexStream>, HandshakeError>,
) {
    let (d, a) = duplex(64 * 1024);
    tokio::join!(dial(d, dcfg, target), accept(a, acfg, known, admit_all))
}

fn refused(r: &Result<HandshakeOk<DuplexStream>, HandshakeError>) -> Option<&Refusal> {
    match r {
        Err(HandshakeError::Refused(r)) => Some(r),
        _ => None,
    }
}

fn rejected(r: &Result<HandshakeOk<DuplexStream>, HandshakeError>) -> Option<&Refusal> {
    match r {
        Err(HandshakeError::Rejected(r)) => Some(r),
        _ => None,
    }
}

fn frame_with_version(msg: &Msg, version: u8) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_frame_into(msg, &mut buf).expect("encode");
    buf[4] = version;
    buf.to_vec()
}

/// Reads one frame from a raw stream and decodes it as a handshake message.
async fn read_msg(s: &mut DuplexStream) -> Msg {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.expect("read length");
    let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut rest).await.expect("read frame");
    assert_eq!(rest[0], PROTOCOL_VERSION);
    decode_body(&rest[1..]).expect("decode")
}

fn hello(c: &HandshakeConfig, to: &str) -> Msg {
    Msg::Hello {
        version: PROTOCOL_VERSION,
        cluster: c.cluster.clone(),
        from: c.me.clone(),
        to: to.into(),
        incarnation: c.incarnation,
        members_digest: c.members_digest,
        nonce: [1; 16],
        parts: c.parts.clone(),
    }
}

#[tokio::test]
async fn success_both_ways() {
    let (ca, cb) = (cfg(A, 11), cfg(B, 22));
    let (d, a) = run(&ca, B, &cb).await;
    let (d, a) = (d.expect("dial"), a.expect("accept"));
    assert_eq!(
        d.peer,
        PeerHello {
            name: B.into(),
            incarnation: 22
        }
    );
    assert_eq!(
        a.peer,
        PeerHello {
            name: A.into(),
            incarnation: 11
        }
    );

    let (d, a) = run(&cb, A, &ca).await;
    let (d, a) = (d.expect("dial"), a.expect("accept"));
    assert_eq!(
        d.peer,
        PeerHello {
            name: A.into(),
            incarnation: 11
        }
    );
    assert_eq!(
        a.peer,
        PeerHello {
            name: B.into(),
            incarnation: 22
        }
    );

    // The connection is usable afterwards with a bigger cap.
    let (mut df, _) = d.into_framed(DEFAULT_MAX_FRAME_LEN);
    let (mut af, _) = a.into_framed(DEFAULT_MAX_FRAME_LEN);
    let big = vec![9u8; 100_000];
    // Larger than the pipe buffer: send and receive concurrently.
    let (sent, body) = tokio::join!(df.send(encode_frame(&big).unwrap()), af.next());
    sent.unwrap();
    let body = body.unwrap().unwrap();
    assert_eq!(decode_body::<Vec<u8>>(&body).unwrap(), big);
}

#[tokio::test]
async fn admit_sees_authenticated_peer() {
    let (ca, cb) = (cfg(A, 11), cfg(B, 22));
    let (d, a) = duplex(4096);
    let (dr, ar) = tokio::join!(
        dial(d, &ca, B),
        accept(a, &cb, known, |p: PeerHello| async move {
            assert_eq!(
                p,
                PeerHello {
                    name: A.into(),
                    incarnation: 11
                }
            );
            Ok(())
        })
    );
    assert!(dr.is_ok() && ar.is_ok());
}

#[tokio::test]
async fn over_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ca, cb) = (cfg(A, 1), cfg(B, 2));
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let ok = accept(sock, &cb, known, admit_all).await.unwrap();
        let (mut f, peer) = ok.into_framed(DEFAULT_MAX_FRAME_LEN);
        f.send(encode_frame(&String::from("hi")).unwrap())
            .await
            .unwrap();
        peer
    });
    let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let ok = dial(sock, &ca, B).await.unwrap();
    assert_eq!(
        ok.peer,
        PeerHello {
            name: B.into(),
            incarnation: 2
        }
    );
    let (mut f, _) = ok.into_framed(DEFAULT_MAX_FRAME_LEN);
    let body = f.next().await.unwrap().unwrap();
    assert_eq!(decode_body::<String>(&body).unwrap(), "hi");
    assert_eq!(
        server.await.unwrap(),
        PeerHello {
            name: A.into(),
            incarnation: 1
        }
    );
}

#[tokio::test]
async fn bytes_after_welcome_are_kept() {
    // A scripted acceptor writes Welcome and an application frame in one
    // write; the dialer must hand the second frame back in `read_buf`.
    let ca = cfg(A, 1);
    let cb = cfg(B, 2);
    let (d, mut a) = duplex(64 * 1024);
    let script = async {
        let Msg::Hello { nonce: nd, .. } = read_msg(&mut a).await else {
            panic!("expected Hello")
        };
        let na = [5u8; 16];
        let t = Transcript {
            cluster: cb.cluster.clone(),
            dialer: A.into(),
            acceptor: B.into(),
            dialer_incarnation: 1,
            acceptor_incarnation: 2,
            dialer_nonce: nd,
            acceptor_nonce: na,
        };
        let challenge = Msg::Challenge {
            from: B.into(),
            incarnation: 2,
            nonce: na,
            mac: t.sign(&cb.cookie, ACCEPTOR_LABEL).unwrap(),
        };
        a.write_all(&encode_frame(&challenge).unwrap())
            .await
            .unwrap();
        let Msg::Auth { mac } = read_msg(&mut a).await else {
            panic!("expected Auth")
        };
        assert!(t.verify(&cb.cookie, DIALER_LABEL, &mac).unwrap());
        let mut out = BytesMut::new();
        encode_frame_into(&Msg::Welcome, &mut out).unwrap();
        encode_frame_into(&String::from("after"), &mut out).unwrap();
        a.write_all(&out).await.unwrap();
        a
    };
    let (res, _a) = tokio::join!(dial(d, &ca, B), script);
    let ok = res.expect("dial");
    assert!(!ok.read_buf.is_empty());
    let (mut f, _) = ok.into_framed(DEFAULT_MAX_FRAME_LEN);
    let body = f.next().await.unwrap().unwrap();
    assert_eq!(decode_body::<String>(&body).unwrap(), "after");
}

#[tokio::test]
async fn wrong_cookie() {
    let ca = cfg(A, 1);
    let mut cb = cfg(B, 2);
    cb.cookie = b"another cookie".to_vec();
    let (d, a) = run(&ca, B, &cb).await;
    // The dialer notices first (the challenge MAC is wrong) and says so.
    assert_eq!(rejected(&d), Some(&Refusal::BadAuth), "{d:?}");
    assert_eq!(refused(&a), Some(&Refusal::BadAuth), "{a:?}");
    assert_eq!(
        a.unwrap_err().to_string(),
        "peer refused the handshake: wrong cookie (authentication failed)"
    );
}

#[tokio::test]
async fn forged_auth_rejected_by_acceptor() {
    // A dialer that skips checking the challenge and sends a bogus MAC.
    let ca = cfg(A, 1);
    let cb = cfg(B, 2);
    let (mut d, a) = duplex(4096);
    let script = async {
        d.write_all(&encode_frame(&hello(&ca, B)).unwrap())
            .await
            .unwrap();
        assert!(matches!(read_msg(&mut d).await, Msg::Challenge { .. }));
        d.write_all(&encode_frame(&Msg::Auth { mac: [0; 32] }).unwrap())
            .await
            .unwrap();
        read_msg(&mut d).await
    };
    let (reply, res) = tokio::join!(script, accept(a, &cb, known, admit_all));
    assert_eq!(reply, Msg::Refuse(Refusal::BadAuth));
    assert!(matches!(
        res,
        Err(HandshakeError::Rejected(Refusal::BadAuth))
    ));
}

/// B, sent `first` as the dialer's first bytes, answers `Refuse(expected)` and fails
/// with it.
async fn acceptor_refuses(first: &[u8], expected: Refusal) {
    let cb = cfg(B, 2);
    let (mut d, a) = duplex(4096);
    let script = async {
        d.write_all(first).await.unwrap();
        read_msg(&mut d).await
    };
    let (reply, res) = tokio::join!(script, accept(a, &cb, known, admit_all));
    assert_eq!(reply, Msg::Refuse(expected.clone()));
    assert!(matches!(res, Err(HandshakeError::Rejected(r)) if r == expected));
}

#[tokio::test]
async fn wrong_frame_version_from_dialer() {
    // A node of the previous release (protocol version 1) is refused with a version message,
    // whatever its Hello looks like.
    let ca = cfg(A, 1);
    let expected = Refusal::Version {
        ours: PROTOCOL_VERSION,
        theirs: 1,
    };
    acceptor_refuses(&frame_with_version(&hello(&ca, B), 1), expected).await;
}

#[tokio::test]
async fn wrong_hello_version_field() {
    let ca = cfg(A, 1);
    let Msg::Hello {
        cluster,
        from,
        to,
        incarnation,
        members_digest,
        nonce,
        parts,
        ..
    } = hello(&ca, B)
    else {
        unreachable!()
    };
    let h = Msg::Hello {
        version: 9,
        cluster,
        from,
        to,
        incarnation,
        members_digest,
        nonce,
        parts,
    };
    let expected = Refusal::Version {
        ours: PROTOCOL_VERSION,
        theirs: 9,
    };
    acceptor_refuses(&encode_frame(&h).unwrap(), expected).await;
}

#[tokio::test]
async fn wrong_frame_version_from_acceptor() {
    let ca = cfg(A, 1);
    let (d, mut a) = duplex(4096);
    let script = async {
        assert!(matches!(read_msg(&mut a).await, Msg::Hello { .. }));
        let c = Msg::Challenge {
            from: B.into(),
            incarnation: 2,
            nonce: [0; 16],
            mac: [0; 32],
        };
        a.write_all(&frame_with_version(&c, 3)).await.unwrap();
        read_msg(&mut a).await
    };
    let (res, reply) = tokio::join!(dial(d, &ca, B), script);
    let expected = Refusal::Version {
        ours: PROTOCOL_VERSION,
        theirs: 3,
    };
    assert_eq!(reply, Msg::Refuse(expected.clone()));
    assert!(matches!(res, Err(HandshakeError::Rejected(r)) if r == expected));
}

#[tokio::test]
async fn wrong_cluster() {
    let ca = cfg(A, 1);
    let mut cb = cfg(B, 2);
    cb.cluster = "other".into();
    let (d, a) = run(&ca, B, &cb).await;
    let expected = Refusal::Config(ConfigMismatch::cluster("other", "test"));
    assert_eq!(refused(&d), Some(&expected), "{d:?}");
    assert_eq!(rejected(&a), Some(&expected), "{a:?}");
    assert_eq!(
        expected.describe(false, &ca.parts),
        "our cluster name differs from its: ours \"test\", theirs \"other\""
    );
}

#[tokio::test]
async fn members_mismatch() {
    let ca = cfg(A, 1);
    let mut cb = cfg(B, 2);
    cb.members_digest = [8; 32];
    // The parts agree: the acceptor cannot say which field differs.
    let (d, a) = run(&ca, B, &cb).await;
    assert_eq!(refused(&d), Some(&Refusal::Members), "{d:?}");
    assert_eq!(rejected(&a), Some(&Refusal::Members), "{a:?}");
}

/// The refusal names the field that differs and both values, and each side describes it
/// from its own point of view.
#[tokio::test]
async fn field_mismatch_is_named_on_both_sides() {
    let ca = cfg(A, 1);
    let mut cb = cfg(B, 2);
    cb.members_digest = [8; 32];
    cb.parts = ConfigParts::new(
        vec![A.into(), B.into()],
        vec![],
        false,
        Duration::from_millis(250),
        Duration::from_millis(600),
    );
    let (d, a) = run(&ca, B, &cb).await;
    let Some(Refusal::Config(m)) = rejected(&a) else {
        panic!("{a:?}")
    };
    assert_eq!(m.field, ConfigField::Heartbeat);
    assert_eq!(refused(&d), Some(&Refusal::Config(m.clone())), "{d:?}");
    let e = a.unwrap_err();
    assert_eq!(
        e.explain(A, &cb.parts),
        format!("refused {A}: its heartbeat interval differs: ours 250ms, theirs 100ms")
    );
    let e = d.unwrap_err();
    assert_eq!(
        e.explain(B, &ca.parts),
        format!("{B} refused our connection: our heartbeat interval differs from its: ours 100ms, theirs 250ms")
    );
}

#[tokio::test]
async fn unknown_name() {
    let cx = cfg("x@127.0.0.1:9", 1);
    let cb = cfg(B, 2);
    let (d, a) = run(&cx, B, &cb).await;
    let expected = Refusal::Unknown("x@127.0.0.1:9".into());
    assert_eq!(refused(&d), Some(&expected), "{d:?}");
    assert_eq!(rejected(&a), Some(&expected), "{a:?}");
}

#[tokio::test]
async fn wrong_node() {
    let ca = cfg(A, 1);
    let cb = cfg(B, 2);
    let (d, a) = run(&ca, "c@127.0.0.1:4003", &cb).await;
    let expected = Refusal::WrongNode {
        expected: "c@127.0.0.1:4003".into(),
        got: B.into(),
    };
    assert_eq!(refused(&d), Some(&expected), "{d:?}");
    assert_eq!(rejected(&a), Some(&expected), "{a:?}");
}

#[tokio::test]
async fn dialer_claiming_our_name() {
    let impostor = cfg(B, 1);
    let cb = cfg(B, 2);
    let (d, a) = run(&impostor, B, &cb).await;
    assert_eq!(refused(&d), Some(&Refusal::Duplicate(B.into())), "{d:?}");
    assert_eq!(rejected(&a), Some(&Refusal::Duplicate(B.into())), "{a:?}");
}

#[tokio::test]
async fn admission_refused() {
    let ca = cfg(A, 1);
    let cb = cfg(B, 2);
    let (d, a) = duplex(4096);
    let (dr, ar) = tokio::join!(
        dial(d, &ca, B),
        accept(a, &cb, known, |p: PeerHello| async move {
            Err(Refusal::Duplicate(p.name))
        })
    );
    assert_eq!(refused(&dr), Some(&Refusal::Duplicate(A.into())), "{dr:?}");
    assert_eq!(rejected(&ar), Some(&Refusal::Duplicate(A.into())), "{ar:?}");
}

#[tokio::test(start_paused = true)]
async fn silent_dialer_times_out() {
    let cb = cfg(B, 2);
    let (_d, a) = duplex(4096); // keep the client end open, send nothing
    let res = accept(a, &cb, known, admit_all).await;
    assert!(matches!(res, Err(HandshakeError::Timeout)), "{res:?}");
}

#[tokio::test(start_paused = true)]
async fn silent_acceptor_times_out() {
    let ca = cfg(A, 1);
    let (d, _a) = duplex(4096);
    let res = dial(d, &ca, B).await;
    assert!(matches!(res, Err(HandshakeError::Timeout)), "{res:?}");
}

#[tokio::test(start_paused = true)]
async fn slow_admission_times_out() {
    let ca = cfg(A, 1);
    let cb = cfg(B, 2);
    let (d, a) = duplex(4096);
    let (dr, ar) = tokio::join!(
        dial(d, &ca, B),
        accept(a, &cb, known, |_| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        })
    );
    assert!(matches!(ar, Err(HandshakeError::Timeout)), "{ar:?}");
    assert!(dr.is_err());
}

#[tokio::test]
async fn closed_early() {
    let cb = cfg(B, 2);
    let (d, a) = duplex(4096);
    drop(d);
    let res = accept(a, &cb, known, admit_all).await;
    assert!(matches!(res, Err(HandshakeError::Closed)), "{res:?}");
}

#[tokio::test]
async fn unexpected_first_message() {
    let cb = cfg(B, 2);
    let (mut d, a) = duplex(4096);
    d.write_all(&encode_frame(&Msg::Welcome).unwrap())
        .await
        .unwrap();
    let res = accept(a, &cb, known, admit_all).await;
    assert!(matches!(res, Err(HandshakeError::Protocol(_))), "{res:?}");
}

#[tokio::test]
async fn random_bytes_to_acceptor() {
    let cb = cfg(B, 2);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for round in 0..500 {
        let len = rng.random_range(0..300usize);
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        if round % 2 == 0 && len > 5 {
            // plausible header, garbage body
            let n = u32::try_from(len - 4).unwrap();
            bytes[..4].copy_from_slice(&n.to_be_bytes());
            bytes[4] = PROTOCOL_VERSION;
        }
        let (mut d, a) = duplex(1024);
        let client = async move {
            let _ = d.write_all(&bytes).await;
            // dropping `d` closes the stream: the acceptor must not wait forever
        };
        let (_, res) = tokio::join!(client, accept(a, &cb, known, admit_all));
        assert!(res.is_err(), "round {round} unexpectedly succeeded");
    }
}

#[tokio::test]
async fn huge_length_prefix() {
    let cb = cfg(B, 2);
    let (mut d, a) = duplex(4096);
    d.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, PROTOCOL_VERSION])
        .await
        .unwrap();
    // `d` stays open: the error must come from the length check, not EOF.
    let res = accept(a, &cb, known, admit_all).await;
    assert!(
        matches!(
            res,
            Err(HandshakeError::Codec(CodecError::FrameTooLarge {
                len: 0xFFFF_FFFF,
                max: HANDSHAKE_MAX_FRAME_LEN
            }))
        ),
        "{res:?}"
    );
}

// ----- the two machines wired to each other, no I/O ---------------------------------------

mod machines {
    use super::super::testkit::{self, hex, NONCE_A, NONCE_D};
    use super::super::{Acceptor, Dialer, Step};
    use super::{A, B};
    use rand::{Rng, SeedableRng};

    /// Runs the pinned exchange, moving each side's output to the other in chunks chosen by
    /// `cut` (a chunk size for each delivery). Returns every frame in order (`>` dialer to
    /// acceptor, `<` back) and both results.
    fn exchange(mut cut: impl FnMut(usize) -> usize) -> (Vec<String>, String, String) {
        let (ca, cb) = (testkit::cfg(A, 11), testkit::cfg(B, 22));
        let mut d = Dialer::new(&ca, B, NONCE_D);
        let mut a = Acceptor::new(&cb, testkit::known, NONCE_A);
        let (mut to_a, mut to_d) = (Vec::<u8>::new(), Vec::<u8>::new());
        let mut frames = Vec::new();
        let (mut d_end, mut a_end) = (None, None);
        for _ in 0..10_000 {
            if d_end.is_none() {
                match d.poll() {
                    Step::Send(f) => {
                        frames.push(format!("> {}", hex(&f)));
                        to_a.extend_from_slice(&f);
                    }
                    Step::Receive if !to_d.is_empty() => {
                        let n = cut(to_d.len()).clamp(1, to_d.len());
                        d.receive(&to_d.drain(..n).collect::<Vec<_>>());
                    }
                    Step::Receive => {}
                    other => d_end = Some(format!("{other:?}")),
                }
            }
            if a_end.is_none() {
                match a.poll() {
                    Step::Send(f) => {
                        frames.push(format!("< {}", hex(&f)));
                        to_d.extend_from_slice(&f);
                    }
                    Step::Receive if !to_a.is_empty() => {
                        let n = cut(to_a.len()).clamp(1, to_a.len());
                        a.receive(&to_a.drain(..n).collect::<Vec<_>>());
                    }
                    Step::Receive => {}
                    Step::NeedsAdmission(_) => a.admit(Ok(())),
                    other => a_end = Some(format!("{other:?}")),
                }
            }
            if d_end.is_some() && a_end.is_some() {
                break;
            }
        }
        (frames, d_end.unwrap_or_default(), a_end.unwrap_or_default())
    }

    /// The exchange between the new machines is byte for byte the one the pre-refactor
    /// implementation produced (so old and new nodes interoperate), for any chunking.
    #[test]
    fn pinned_exchange_in_any_chunking() {
        let want = vec![
            format!("> {}", testkit::HELLO),
            format!("< {}", testkit::CHALLENGE),
            format!("> {}", testkit::AUTH),
            format!("< {}", testkit::WELCOME),
        ];
        let done = |name: &str, inc: u64| {
            format!("Done(PeerHello {{ name: {name:?}, incarnation: {inc} }}, b\"\")")
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let cuts: Vec<Box<dyn FnMut(usize) -> usize>> = vec![
            Box::new(|n| n),
            Box::new(|_| 1),
            Box::new(|_| 7),
            Box::new(move |n| rng.random_range(1..=n)),
        ];
        for cut in cuts {
            let (frames, d, a) = exchange(cut);
            assert_eq!(frames, want);
            assert_eq!(d, done(B, 22));
            assert_eq!(a, done(A, 11));
        }
    }

    /// Random bytes in random chunks: the acceptor never succeeds, never panics and always
    /// ends once the input is closed.
    #[test]
    fn acceptor_on_random_chunks() {
        let cb = testkit::cfg(B, 22);
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for round in 0..2000 {
            let mut a = Acceptor::new(&cb, testkit::known, NONCE_A);
            let mut bytes = vec![0u8; rng.random_range(0..600usize)];
            rng.fill(&mut bytes[..]);
            if round % 2 == 0 {
                // Start with the real Hello so the later states are reached too.
                let mut real = testkit::unhex(testkit::HELLO);
                real.extend_from_slice(&bytes);
                bytes = real;
            }
            let mut rest = &bytes[..];
            let mut closed = false;
            loop {
                match a.poll() {
                    Step::Send(_) | Step::SendRefusal(_) => {}
                    Step::Receive if rest.is_empty() => {
                        assert!(!closed, "round {round}: asked to read after the end");
                        closed = true;
                        a.receive_eof();
                    }
                    Step::Receive => {
                        let n = rng.random_range(1..=rest.len());
                        a.receive(&rest[..n]);
                        rest = &rest[n..];
                    }
                    Step::NeedsAdmission(p) => panic!("round {round}: authenticated {p:?}"),
                    Step::Done(p, _) => panic!("round {round}: handshake succeeded: {p:?}"),
                    Step::Refused(_) | Step::Failed(_) => break,
                }
            }
        }
    }
}
