//! Tests of the observer role: the exchange end to end, every refusal, and that no proof made
//! in one role is accepted in the other.

use std::cell::Cell;
use std::time::Duration;

use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

use super::super::driver::{accept, accept_with_observers, observe};
use super::super::mac::{Transcript, ACCEPTOR_LABEL, DIALER_LABEL, OBSERVED_LABEL};
use super::super::testkit::*;
use super::super::{Acceptor, HandshakeConfig, HandshakeError, ObserverConfig};
use super::*;

const NONCE_O: [u8; 16] = [0x0b; 16];

fn ocfg(cookie: &[u8]) -> ObserverConfig {
    ObserverConfig {
        cookie: cookie.to_vec(),
        name: "cli".into(),
        cluster: None,
        timeout: Duration::from_secs(5),
    }
}

fn observe_msg() -> HandshakeMsg {
    HandshakeMsg::Observe {
        observer_version: OBSERVER_VERSION,
        cluster: None,
        from: "cli".into(),
        to: B.into(),
        nonce: NONCE_O,
    }
}

/// The transcript of an observer "cli" of B (incarnation 22) under the pinned configuration.
fn transcript() -> Transcript {
    Transcript {
        cluster: "pin".into(),
        dialer: "cli".into(),
        acceptor: B.into(),
        dialer_incarnation: 0,
        acceptor_incarnation: 22,
        dialer_nonce: NONCE_O,
        acceptor_nonce: NONCE_A,
    }
}

fn yes(_: &str) -> bool {
    true
}

type Observed<'a> = Acceptor<'a, fn(&str) -> bool, fn(&str) -> bool>;

fn acceptor(c: &HandshakeConfig) -> Observed<'_> {
    Acceptor::with_observers(
        c,
        known as fn(&str) -> bool,
        yes as fn(&str) -> bool,
        NONCE_A,
    )
}

/// What an acceptor of observers answers `msg`.
fn answer(msg: &HandshakeMsg) -> Vec<S> {
    let c = cfg(B, 22);
    let mut a = acceptor(&c);
    a.receive(&frame(msg));
    drain(|| a.poll())
}

fn refuses(msg: HandshakeMsg, r: Refusal) {
    assert_eq!(
        answer(&msg),
        [S::SendRefusal(refuse_frame(r.clone())), rejected(r)],
        "{msg:?}"
    );
}

fn edited(edit: impl FnOnce(&mut HandshakeMsg)) -> HandshakeMsg {
    let mut m = observe_msg();
    edit(&mut m);
    m
}

/// The new variants come after every member message: the members' bytes keep their indices.
#[test]
fn observer_frames_are_pinned() {
    assert_eq!(
        hex(&frame(&observe_msg())),
        concat!(
            "0000002902", // length, protocol version 2 (unchanged)
            "05",         // Observe: variant 5, after Refuse
            "01",         // observer version 1
            "00",         // no cluster
            "03636c69",   // "cli"
            "1062403132372e302e302e313a34303032",
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
        )
    );
    let challenge = HandshakeMsg::ObserverChallenge {
        from: B.into(),
        cluster: "pin".into(),
        incarnation: 22,
        nonce: NONCE_A,
        mac: [0; 32],
    };
    assert_eq!(&hex(&frame(&challenge))[8..14], "020610"); // version 2, variant 6, B's name
}

#[test]
fn happy_path_exact_steps() {
    let c = cfg(B, 22);
    let mut a = acceptor(&c);
    a.receive(&frame(&observe_msg()));
    let mac = transcript().sign(b"pin cookie", OBSERVED_LABEL).unwrap();
    let challenge = HandshakeMsg::ObserverChallenge {
        from: B.into(),
        cluster: "pin".into(),
        incarnation: 22,
        nonce: NONCE_A,
        mac,
    };
    assert_eq!(
        drain(|| a.poll()),
        [S::Send(hex(&frame(&challenge))), S::Receive]
    );
    // The observer machine answers that challenge with the Auth the acceptor checks.
    let o = ocfg(b"pin cookie");
    let mut d = ObserverDialer::new(&o, B, NONCE_O);
    assert_eq!(
        drain(|| d.poll()),
        [S::Send(hex(&frame(&observe_msg()))), S::Receive]
    );
    d.receive(&frame(&challenge));
    let steps = drain(|| d.poll());
    let [S::Send(auth), S::Receive] = &steps[..] else {
        panic!("{steps:?}")
    };
    a.receive(&unhex(auth));
    assert_eq!(drain(|| a.poll()), [S::NeedsAdmission("cli".into(), 0)]);
    a.admit(Ok(()));
    assert_eq!(
        drain(|| a.poll()),
        [
            S::Send(WELCOME.into()),
            S::Done("cli".into(), 0, String::new())
        ]
    );
    d.receive(&unhex(WELCOME));
    assert_eq!(drain(|| d.poll()), [S::Done(B.into(), 22, String::new())]);
}

#[test]
fn pre_mac_refusals() {
    refuses(
        edited(|m| {
            if let HandshakeMsg::Observe {
                observer_version, ..
            } = m
            {
                *observer_version = 9;
            }
        }),
        Refusal::ObserverVersion { ours: 1, theirs: 9 },
    );
    refuses(
        edited(|m| {
            if let HandshakeMsg::Observe { cluster, .. } = m {
                *cluster = Some("other".into());
            }
        }),
        Refusal::Config(ConfigMismatch::cluster("pin", "other")),
    );
    refuses(
        edited(|m| {
            if let HandshakeMsg::Observe { to, .. } = m {
                *to = C.into();
            }
        }),
        Refusal::WrongNode {
            expected: C.into(),
            got: B.into(),
        },
    );
    for bad in ["", "a\nb", &"x".repeat(65)] {
        refuses(
            edited(|m| {
                if let HandshakeMsg::Observe { from, .. } = m {
                    *from = bad.into();
                }
            }),
            Refusal::Other("an observer's name must be 1 to 64 printable characters".into()),
        );
    }
    // The right cluster, named, is fine.
    let ok = answer(&edited(|m| {
        if let HandshakeMsg::Observe { cluster, .. } = m {
            *cluster = Some("pin".into());
        }
    }));
    assert!(matches!(&ok[..], [S::Send(_), S::Receive]), "{ok:?}");
}

#[test]
fn an_acceptor_of_members_only_refuses_observers() {
    let c = cfg(B, 22);
    let mut a = Acceptor::new(&c, known as fn(&str) -> bool, NONCE_A);
    a.receive(&frame(&observe_msg()));
    let r = Refusal::Other("this node does not accept observers".into());
    assert_eq!(
        drain(|| a.poll()),
        [S::SendRefusal(refuse_frame(r.clone())), rejected(r)]
    );
    // And the hook can refuse too; it is asked once, after the other checks.
    let asked = Cell::new(0);
    let mut a = Acceptor::with_observers(
        &c,
        known,
        |name: &str| {
            asked.set(asked.get() + 1);
            name != "cli"
        },
        NONCE_A,
    );
    a.receive(&frame(&observe_msg()));
    assert!(matches!(a.poll(), Step::SendRefusal(_)));
    assert_eq!(asked.get(), 1);
}

/// A proof made for one role is refused in the other, although the transcript is the same.
#[test]
fn no_proof_crosses_roles() {
    let t = transcript();
    let cookie = b"pin cookie";
    assert_ne!(
        t.sign(cookie, OBSERVED_LABEL).unwrap(),
        t.sign(cookie, ACCEPTOR_LABEL).unwrap()
    );
    // An observer that answers with a member's (dialer) proof is refused.
    let c = cfg(B, 22);
    let mut a = acceptor(&c);
    a.receive(&frame(&observe_msg()));
    drain(|| a.poll());
    let member_mac = t.sign(cookie, DIALER_LABEL).unwrap();
    a.receive(&frame(&HandshakeMsg::Auth { mac: member_mac }));
    assert_eq!(
        drain(|| a.poll()),
        [
            S::SendRefusal(refuse_frame(Refusal::BadAuth)),
            rejected(Refusal::BadAuth)
        ]
    );
    // An observer given a member's Challenge (with a valid member proof) does not go on.
    let o = ocfg(cookie);
    let mut d = ObserverDialer::new(&o, B, NONCE_O);
    d.poll();
    d.receive(&unhex(CHALLENGE));
    assert_eq!(
        drain(|| d.poll()),
        [S::Failed(
            r#"Protocol("expected ObserverChallenge, got Challenge")"#.into()
        )]
    );
}

#[test]
fn the_observer_checks_the_node() {
    let o = ocfg(b"pin cookie");
    let mac = transcript().sign(b"pin cookie", OBSERVED_LABEL).unwrap();
    let challenge = |from: &str, cluster: &str, mac: [u8; 32]| HandshakeMsg::ObserverChallenge {
        from: from.into(),
        cluster: cluster.into(),
        incarnation: 22,
        nonce: NONCE_A,
        mac,
    };
    let run = |o: &ObserverConfig, msg: HandshakeMsg| {
        let mut d = ObserverDialer::new(o, B, NONCE_O);
        d.poll();
        d.receive(&frame(&msg));
        drain(|| d.poll())
    };
    let wrong = Refusal::WrongNode {
        expected: B.into(),
        got: C.into(),
    };
    assert_eq!(
        run(&o, challenge(C, "pin", mac)),
        [S::SendRefusal(refuse_frame(wrong.clone())), rejected(wrong)]
    );
    // Another cookie: the node's proof does not verify.
    let other = ocfg(b"other cookie");
    assert_eq!(
        run(&other, challenge(B, "pin", mac)),
        [
            S::SendRefusal(refuse_frame(Refusal::BadAuth)),
            rejected(Refusal::BadAuth)
        ]
    );
    // A cluster other than the one asked for.
    let mut named = ocfg(b"pin cookie");
    named.cluster = Some("prod".into());
    let r = Refusal::Config(ConfigMismatch::cluster("prod", "pin"));
    assert_eq!(
        run(&named, challenge(B, "pin", mac)),
        [S::SendRefusal(refuse_frame(r.clone())), rejected(r)]
    );
    // Refusals from the node end the machine.
    assert_eq!(
        run(&o, HandshakeMsg::Refuse(Refusal::BadAuth)),
        [S::Refused(Refusal::BadAuth)]
    );
}

#[tokio::test]
async fn end_to_end_over_a_pipe() {
    let acfg = HandshakeConfig {
        cookie: b"secret".to_vec(),
        ..cfg(B, 22)
    };
    // Admitted.
    let (o, a) = duplex(64 * 1024);
    let observer = ocfg(b"secret");
    let seen = std::sync::Mutex::new(Vec::new());
    let (o, a) = tokio::join!(
        observe(o, &observer, B),
        accept_with_observers(
            a,
            &acfg,
            known,
            |n| {
                seen.lock().unwrap().push(n.to_string());
                true
            },
            |_| async { Ok(()) }
        )
    );
    let (o, a) = (o.expect("observe"), a.expect("accept"));
    assert_eq!((o.peer.name.as_str(), o.peer.incarnation), (B, 22));
    assert_eq!((a.peer.name.as_str(), a.peer.incarnation), ("cli", 0));
    assert_eq!(*seen.lock().unwrap(), ["cli"]);

    // A wrong cookie: the observer refuses the node's proof, the node learns why.
    let (o, a) = duplex(64 * 1024);
    let wrong = ocfg(b"wrong");
    let (o, a) = tokio::join!(
        observe(o, &wrong, B),
        accept_with_observers(a, &acfg, known, yes, |_| async { Ok(()) })
    );
    assert!(
        matches!(o, Err(HandshakeError::Rejected(Refusal::BadAuth))),
        "{o:?}"
    );
    assert!(
        matches!(a, Err(HandshakeError::Refused(Refusal::BadAuth))),
        "{a:?}"
    );

    // Refused at admission (too many observers).
    let (o, a) = duplex(64 * 1024);
    let limit = Refusal::ObserverLimit { limit: 2 };
    let (o, _) = tokio::join!(
        observe(o, &observer, B),
        accept_with_observers(a, &acfg, known, yes, |_| async {
            Err(Refusal::ObserverLimit { limit: 2 })
        })
    );
    assert!(
        matches!(&o, Err(HandshakeError::Refused(r)) if *r == limit),
        "{o:?}"
    );

    // A members-only acceptor.
    let (o, a) = duplex(64 * 1024);
    let (o, _) = tokio::join!(
        observe(o, &observer, B),
        accept(a, &acfg, known, |_| async { Ok(()) })
    );
    assert!(
        matches!(&o, Err(HandshakeError::Refused(Refusal::Other(_)))),
        "{o:?}"
    );
}

/// A node that predates observers cannot decode `Observe` and closes: the observer says the
/// connection closed during the handshake.
#[tokio::test]
async fn a_node_without_observers_closes() {
    let (o, mut old) = duplex(64 * 1024);
    let observer = ocfg(b"secret");
    let (r, _) = tokio::join!(observe(o, &observer, B), async move {
        let mut buf = [0u8; 256];
        let _ = old.read(&mut buf).await;
        let _ = old.shutdown().await;
        drop(old);
    });
    assert!(matches!(r, Err(HandshakeError::Closed)), "{r:?}");
}

#[test]
fn observer_names() {
    assert!(valid_observer_name("gen-leader-cli"));
    assert!(valid_observer_name(&"é".repeat(64)));
    assert!(!valid_observer_name(""));
    assert!(!valid_observer_name(&"é".repeat(65)));
    assert!(!valid_observer_name("a\u{7}"));
}
