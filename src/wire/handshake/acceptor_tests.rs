//! The acceptor's byte-exact tests: the pinned exchange in any chunking, every refusal
//! before the MAC, bad input and the end of the stream.

use super::super::testkit::*;
use super::*;

type Machine<'a> = Acceptor<'a, fn(&str) -> bool>;

fn acceptor(c: &HandshakeConfig) -> Machine<'_> {
    Acceptor::new(c, known as fn(&str) -> bool, NONCE_A)
}

/// An acceptor that verified the pinned dialer and waits for admission.
fn at_admission(c: &HandshakeConfig) -> Machine<'_> {
    let mut a = acceptor(c);
    assert_eq!(drain(|| a.poll()), [S::Receive]);
    a.receive(&unhex(HELLO));
    assert_eq!(drain(|| a.poll()), [S::Send(CHALLENGE.into()), S::Receive]);
    a.receive(&unhex(AUTH));
    assert_eq!(drain(|| a.poll()), [S::NeedsAdmission(A.into(), 11)]);
    a
}

/// What the acceptor does with `input` as the dialer's first bytes.
fn first(input: &[u8]) -> Vec<S> {
    let c = cfg(B, 22);
    let mut a = acceptor(&c);
    a.receive(input);
    drain(|| a.poll())
}

fn refuses(input: &[u8], r: Refusal) {
    assert_eq!(
        first(input),
        [S::SendRefusal(refuse_frame(r.clone())), rejected(r)],
        "{input:?}"
    );
}

fn edited_hello(edit: impl FnOnce(&mut HandshakeMsg)) -> Vec<u8> {
    let mut h = hello();
    edit(&mut h);
    frame(&h).to_vec()
}

#[test]
fn happy_path_pinned_bytes() {
    let c = cfg(B, 22);
    let mut a = at_admission(&c);
    // Asking again gives the same question; nothing is read meanwhile.
    assert_eq!(drain(|| a.poll()), [S::NeedsAdmission(A.into(), 11)]);
    a.admit(Ok(()));
    assert_eq!(
        drain(|| a.poll()),
        [
            S::Send(WELCOME.into()),
            S::Done(A.into(), 11, String::new())
        ]
    );
    // A second decision after the end changes nothing.
    a.admit(Err(Refusal::CallBack));
    assert!(matches!(a.poll(), Step::Failed(_)));
}

#[test]
fn happy_path_byte_by_byte_and_kept_bytes() {
    let c = cfg(B, 22);
    let mut a = acceptor(&c);
    let hello = unhex(HELLO);
    for (i, b) in hello.iter().enumerate() {
        a.receive(std::slice::from_ref(b));
        let want = if i + 1 < hello.len() {
            vec![S::Receive]
        } else {
            vec![S::Send(CHALLENGE.into()), S::Receive]
        };
        assert_eq!(drain(|| a.poll()), want, "after byte {i}");
    }
    // Auth and the first bytes of what follows, byte by byte.
    let mut rest = unhex(AUTH);
    rest.extend_from_slice(b"early");
    for (i, b) in rest.iter().enumerate() {
        a.receive(std::slice::from_ref(b));
        let want = if i + 1 < unhex(AUTH).len() {
            S::Receive
        } else {
            S::NeedsAdmission(A.into(), 11)
        };
        assert_eq!(drain(|| a.poll()), [want], "after byte {i}");
    }
    a.admit(Ok(()));
    assert_eq!(
        drain(|| a.poll()),
        [
            S::Send(WELCOME.into()),
            S::Done(A.into(), 11, hex(b"early"))
        ]
    );
}

#[test]
fn pipelined_hello_and_auth() {
    let c = cfg(B, 22);
    let mut a = acceptor(&c);
    let mut input = unhex(HELLO);
    input.extend(unhex(AUTH));
    a.receive(&input);
    assert_eq!(
        drain(|| a.poll()),
        [S::Send(CHALLENGE.into()), S::NeedsAdmission(A.into(), 11)]
    );
}

#[test]
fn admission_refused() {
    let c = cfg(B, 22);
    let mut a = at_admission(&c);
    a.admit(Err(Refusal::Duplicate(A.into())));
    let r = Refusal::Duplicate(A.into());
    assert_eq!(
        drain(|| a.poll()),
        [S::SendRefusal(refuse_frame(r.clone())), rejected(r)]
    );
}

#[test]
fn pre_mac_refusals() {
    let ours = PROTOCOL_VERSION;
    refuses(
        &frame_with_version(&hello(), 1),
        Refusal::Version { ours, theirs: 1 },
    );
    // The version byte alone is enough.
    refuses(
        &frame_with_version(&hello(), 1)[..5],
        Refusal::Version { ours, theirs: 1 },
    );
    let set = |f: fn(&mut HandshakeMsg)| edited_hello(f);
    refuses(
        &set(|h| {
            if let HandshakeMsg::Hello { version, .. } = h {
                *version = 9;
            }
        }),
        Refusal::Version { ours, theirs: 9 },
    );
    refuses(
        &set(|h| {
            if let HandshakeMsg::Hello { cluster, .. } = h {
                *cluster = "other".into();
            }
        }),
        Refusal::Config(ConfigMismatch::cluster("pin", "other")),
    );
    refuses(
        &set(|h| {
            if let HandshakeMsg::Hello { members_digest, .. } = h {
                members_digest[0] ^= 1;
            }
        }),
        Refusal::Members,
    );
    // With the parts telling which field differs, the refusal names it.
    let theirs = ConfigParts::new(
        vec![B.into(), A.into()],
        vec![],
        false,
        std::time::Duration::from_millis(100),
        std::time::Duration::from_millis(600),
    );
    let want = parts().mismatch(&theirs).expect("differs");
    assert_eq!(want.field, super::super::ConfigField::Candidates);
    refuses(
        &edited_hello(|h| {
            if let HandshakeMsg::Hello {
                members_digest,
                parts,
                ..
            } = h
            {
                members_digest[0] ^= 1;
                *parts = theirs.clone();
            }
        }),
        Refusal::Config(want),
    );
    refuses(
        &set(|h| {
            if let HandshakeMsg::Hello { to, .. } = h {
                *to = C.into();
            }
        }),
        Refusal::WrongNode {
            expected: C.into(),
            got: B.into(),
        },
    );
    refuses(
        &set(|h| {
            if let HandshakeMsg::Hello { from, .. } = h {
                *from = B.into();
            }
        }),
        Refusal::Duplicate(B.into()),
    );
    refuses(
        &set(|h| {
            if let HandshakeMsg::Hello { from, .. } = h {
                *from = C.into();
            }
        }),
        Refusal::Unknown(C.into()),
    );
}

#[test]
fn the_first_failing_check_is_the_refusal() {
    // Wrong cluster and unknown name: the cluster is checked first.
    refuses(
        &edited_hello(|h| {
            if let HandshakeMsg::Hello { cluster, from, .. } = h {
                *cluster = "other".into();
                *from = C.into();
            }
        }),
        Refusal::Config(ConfigMismatch::cluster("pin", "other")),
    );
}

#[test]
fn bad_dialer_mac_is_refused() {
    let c = cfg(B, 22);
    let mut a = acceptor(&c);
    a.receive(&unhex(HELLO));
    let mut auth = unhex(AUTH);
    auth[10] ^= 0x80;
    a.receive(&auth);
    assert_eq!(
        drain(|| a.poll()),
        [
            S::Send(CHALLENGE.into()),
            S::SendRefusal(refuse_frame(Refusal::BadAuth)),
            rejected(Refusal::BadAuth)
        ]
    );
    // A MAC for another acceptor nonce (a replayed Auth) is refused too.
    let mut a = Acceptor::new(&c, known as fn(&str) -> bool, [0xa3; 16]);
    a.receive(&unhex(HELLO));
    a.receive(&unhex(AUTH));
    let steps = drain(|| a.poll());
    assert_eq!(steps.last(), Some(&rejected(Refusal::BadAuth)));
}

#[test]
fn refusal_and_unexpected_messages() {
    let c = cfg(B, 22);
    let mut a = acceptor(&c);
    a.receive(&unhex(HELLO));
    a.receive(&frame(&HandshakeMsg::Refuse(Refusal::BadAuth)));
    assert_eq!(
        drain(|| a.poll()),
        [S::Send(CHALLENGE.into()), S::Refused(Refusal::BadAuth)]
    );

    assert_eq!(
        first(&frame(&HandshakeMsg::Refuse(Refusal::Cluster))),
        [S::Failed(
            r#"Protocol("expected Hello, got Refuse")"#.into()
        )]
    );
    assert_eq!(
        first(&frame(&HandshakeMsg::Welcome)),
        [S::Failed(
            r#"Protocol("expected Hello, got Welcome")"#.into()
        )]
    );
    let mut a = acceptor(&c);
    a.receive(&unhex(HELLO));
    a.receive(&unhex(HELLO));
    assert_eq!(
        drain(|| a.poll()),
        [
            S::Send(CHALLENGE.into()),
            S::Failed(r#"Protocol("expected Auth, got Hello")"#.into())
        ]
    );
}

#[test]
fn bad_input_fails() {
    let cases: [(&[u8], &str); 5] = [
        (
            &[0, 0, 0x10, 0x01],
            "Codec(FrameTooLarge { len: 4097, max: 4096 })",
        ),
        (
            &[0xff, 0xff, 0xff, 0xff],
            "Codec(FrameTooLarge { len: 4294967295, max: 4096 })",
        ),
        (&[0, 0, 0, 0, 1, 2, 3], "Codec(EmptyFrame)"),
        (&[0, 0, 0, 3, PROTOCOL_VERSION, 0x80, 0x80], "Codec(Decode("),
        (
            &[0, 0, 0, 3, PROTOCOL_VERSION, 3, 0],
            "Codec(TrailingBytes)",
        ),
    ];
    for (input, want) in cases {
        let steps = first(input);
        assert!(
            matches!(&steps[..], [S::Failed(e)] if e.starts_with(want)),
            "{input:?}: {steps:?}"
        );
    }
    // The largest allowed frame is read to the end (and is then no valid message).
    let mut max = vec![0, 0, 0x10, 0x00, PROTOCOL_VERSION];
    max.resize(4 + 4096, 0xEE);
    let steps = first(&max);
    assert!(
        matches!(&steps[..], [S::Failed(e)] if e.starts_with("Codec(Decode(")),
        "{steps:?}"
    );
}

#[test]
fn end_of_stream() {
    let c = cfg(B, 22);
    let mut a = acceptor(&c);
    a.receive_eof();
    assert_eq!(drain(|| a.poll()), [S::Failed("Closed".into())]);

    let mut a = acceptor(&c);
    a.receive(&unhex(HELLO)[..40]);
    a.receive_eof();
    let steps = drain(|| a.poll());
    assert!(
        matches!(&steps[..], [S::Failed(e)] if e.contains("bytes remaining on stream")),
        "{steps:?}"
    );

    // While waiting for admission the connection is not read: EOF changes nothing.
    let mut a = at_admission(&c);
    a.receive_eof();
    assert_eq!(drain(|| a.poll()), [S::NeedsAdmission(A.into(), 11)]);
}

#[test]
fn takes_only_the_current_frame_from_a_big_chunk() {
    // After a refusal the rest of a huge chunk is neither parsed nor kept.
    let c = cfg(B, 22);
    let mut a = acceptor(&c);
    let mut input = frame_with_version(&hello(), 1);
    input.resize(input.len() + 1_000_000, 0xFF);
    a.receive(&input);
    assert!(format!("{:?}", a.core).len() < 2_000, "input kept");
}
