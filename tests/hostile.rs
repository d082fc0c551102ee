//! Hostile clients against a running cluster: garbage bytes, oversized length prefixes,
//! foreign protocol versions, well-formed handshakes with the wrong cookie, impostors of
//! connected members, idle clients and connection floods. For every attack the attacked node
//! must close the connection (possibly after a `Refuse` frame) and the cluster must carry on
//! exactly as before: same leader, same term, no connection between members dropped, and
//! `leader_call`s from followers still answered.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gen_leader::wire::codec::{decode_body, encode_frame, PROTOCOL_VERSION};
use gen_leader::wire::handshake::{
    self, ConfigMismatch, ConfigParts, HandshakeConfig, HandshakeError, Refusal,
    HANDSHAKE_MAX_FRAME_LEN,
};
use gen_leader::Term;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Handshake timeout of attacked nodes, so that idle attackers are dropped quickly.
const HS_TIMEOUT: Duration = Duration::from_millis(300);
/// How long a node may take to close a hostile connection.
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);
/// The cluster name `common::config` leaves at its default.
const CLUSTER: &str = "gen_leader";

// ----- captured logs --------------------------------------------------------------------------

/// Captures every INFO/WARN/ERROR line logged by any node of this test binary (to look for
/// refusals and errors, and to show the connection history when a check fails).
fn init_logs() {
    logs::capture(tracing::Level::INFO);
}

/// The captured log of every node, for failure messages.
fn history(nodes: &[TNode]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "log of {}:\n{}\n",
                n.name,
                logs::lines_of(&n.name).join("\n")
            )
        })
        .collect()
}

// ----- handshake frames, built with the crate's own types ------------------------------------

use gen_leader::wire::handshake::HandshakeMsg as HsMsg;

/// The node's configuration digest (`Config::members_digest`). The node's config is rebuilt
/// with `common::config`, which is how every node of this file is configured.
fn members_digest(node: &TNode) -> [u8; 32] {
    node_config(node).members_digest()
}

/// The node's configuration field by field, as its `Hello` carries it.
fn parts(node: &TNode) -> ConfigParts {
    ConfigParts::of(&node_config(node))
}

fn node_config(node: &TNode) -> gen_leader::Config {
    let names = |ns: &[gen_leader::NodeName]| ns.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    config(
        &node.name,
        &names(node.handle.candidates()),
        &names(node.handle.workers()),
    )
    .build()
    .expect("config")
}

fn hello(from: &str, to: &str, digest: [u8; 32]) -> HsMsg {
    HsMsg::Hello {
        version: PROTOCOL_VERSION,
        cluster: CLUSTER.into(),
        from: from.into(),
        to: to.into(),
        incarnation: 0x5eed,
        members_digest: digest,
        nonce: [9; 16],
        parts: ConfigParts::default(),
    }
}

fn frame(msg: &HsMsg) -> Vec<u8> {
    encode_frame(msg).expect("encode").to_vec()
}

/// A frame carrying `msg` but with another version byte.
fn frame_with_version(msg: &HsMsg, version: u8) -> Vec<u8> {
    let mut f = frame(msg);
    f[4] = version;
    f
}

/// Splits bytes received from a node into handshake messages; every frame must be complete,
/// of our protocol version and decodable.
fn parse_frames(mut bytes: &[u8]) -> Vec<HsMsg> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 5, "truncated frame header: {bytes:?}");
        let n = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        assert!(
            (1..=HANDSHAKE_MAX_FRAME_LEN).contains(&n),
            "bad frame length {n}"
        );
        assert!(bytes.len() >= 4 + n, "truncated frame: {bytes:?}");
        assert_eq!(bytes[4], PROTOCOL_VERSION);
        out.push(decode_body::<HsMsg>(&bytes[5..4 + n]).expect("node sent an undecodable frame"));
        bytes = &bytes[4 + n..];
    }
    out
}

// ----- raw connections -------------------------------------------------------------------------

fn addr(node: &TNode) -> SocketAddr {
    node.handle
        .local_addr()
        .expect("listener bound to a socket")
}

async fn connect(to: SocketAddr) -> TcpStream {
    tokio::time::timeout(CLOSE_DEADLINE, TcpStream::connect(to))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// Reads until the node closes the connection (EOF or reset); returns the bytes it sent
/// before. Panics if the connection is still open after [`CLOSE_DEADLINE`].
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(CLOSE_DEADLINE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => {
                    got.extend_from_slice(&buf[..k]);
                    assert!(got.len() <= 1 << 16, "node keeps sending data");
                }
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "node kept a hostile connection open for {CLOSE_DEADLINE:?} (received {got:?})"
    );
    got
}

/// Reads exactly one frame (the connection must stay open until it has arrived).
async fn read_one(s: &mut TcpStream) -> HsMsg {
    tokio::time::timeout(CLOSE_DEADLINE, async {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.expect("read frame length");
        let n = u32::from_be_bytes(len) as usize;
        assert!((1..=HANDSHAKE_MAX_FRAME_LEN).contains(&n), "length {n}");
        let mut rest = vec![0u8; n];
        s.read_exact(&mut rest).await.expect("read frame");
        assert_eq!(rest[0], PROTOCOL_VERSION);
        decode_body::<HsMsg>(&rest[1..]).expect("decode")
    })
    .await
    .expect("no frame within the deadline")
}

/// Sends `bytes` on a fresh connection and waits for the node to close it; returns what the
/// node sent. Write errors are fine (the node may close before reading everything).
async fn send_and_wait_close(to: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect(to).await;
    let (mut rd, mut wr) = s.split();
    let write = async {
        let _ = wr.write_all(bytes).await;
    };
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return got,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
        }
    };
    let r = tokio::time::timeout(CLOSE_DEADLINE, async { tokio::join!(write, read).1 }).await;
    r.unwrap_or_else(|_| panic!("node kept a hostile connection open for {CLOSE_DEADLINE:?}"))
}

/// Like [`send_and_wait_close`], and the node must have answered with exactly `refusal`.
async fn expect_refusal(to: SocketAddr, bytes: &[u8], refusal: Refusal) {
    let got = send_and_wait_close(to, bytes).await;
    assert_eq!(parse_frames(&got), vec![HsMsg::Refuse(refusal)]);
}

/// A handshake config that knows everything but the cookie.
fn intruder_config(me: &str, cookie: &[u8], digest: [u8; 32]) -> HandshakeConfig {
    HandshakeConfig {
        cluster: CLUSTER.into(),
        cookie: cookie.to_vec(),
        me: me.into(),
        incarnation: 0xbad,
        members_digest: digest,
        parts: ConfigParts::default(),
        timeout: Duration::from_secs(5),
    }
}

// ----- clusters ----------------------------------------------------------------------------------

/// Starts `n` candidates; the nodes in `fast` get a [`HS_TIMEOUT`] handshake timeout.
async fn start_cluster(n: usize, fast: &[usize]) -> Vec<TNode> {
    let (ls, names) = bind(n).await;
    let mut nodes = Vec::new();
    for (i, (l, name)) in ls.into_iter().zip(&names).enumerate() {
        let mut b = config(name, &names, &[]);
        if fast.contains(&i) {
            b = b.handshake_timeout(HS_TIMEOUT);
        }
        nodes.push(start(b, l).await);
    }
    nodes
}

fn downs(n: &TNode) -> usize {
    n.events()
        .iter()
        .filter(|e| matches!(e, Ev::Down(_)))
        .count()
}

/// The cluster's state once settled, and watchers that record any later change of leader,
/// term or connectivity on any node.
struct Baseline {
    leader: String,
    term: Term,
    downs: Vec<usize>,
    disturbances: Arc<Mutex<Vec<String>>>,
    watchers: Vec<JoinHandle<()>>,
}

impl Drop for Baseline {
    fn drop(&mut self) {
        for w in &self.watchers {
            w.abort();
        }
    }
}

/// Waits until every node agrees on the leader and term and is connected to every other.
async fn settle(nodes: &[TNode]) -> Baseline {
    let leader = agreed(&all(nodes)).await;
    for n in nodes {
        let v = n
            .handle
            .wait_for(WAIT, |v| {
                v.alive.len() == nodes.len()
                    && v.leader.as_ref().map(|l| l.to_string()).as_deref() == Some(&leader)
            })
            .await;
        assert!(
            v.is_some(),
            "{} never fully connected: {:?}",
            n.name,
            n.handle.view()
        );
    }
    assert_eq!(agreed(&all(nodes)).await, leader);
    let term = nodes[0].handle.term();
    let disturbances = Arc::new(Mutex::new(Vec::new()));
    let watchers = nodes
        .iter()
        .map(|n| {
            let mut rx = n.handle.changes();
            rx.mark_unchanged();
            let d = disturbances.clone();
            let (name, leader, len) = (n.name.clone(), leader.clone(), nodes.len());
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let v = rx.borrow_and_update().clone();
                    let l = v.leader.as_ref().map(|l| l.to_string());
                    if l.as_deref() != Some(&leader) || v.term != term || v.alive.len() != len {
                        d.lock().unwrap().push(format!("{name}: {v:?}"));
                    }
                }
            })
        })
        .collect();
    Baseline {
        leader,
        term,
        downs: nodes.iter().map(downs).collect(),
        disturbances,
        watchers,
    }
}

/// The cluster is exactly as at `base`: same leader and term everywhere, every member still
/// connected (no connection was dropped in between, not even briefly), `leader_call` from
/// every follower answered by the leader, and every node's actor answers a local call.
async fn assert_healthy(nodes: &[TNode], base: &Baseline, tag: &str) {
    assert_undisturbed(nodes, base, tag);
    for n in nodes.iter().filter(|n| n.name != base.leader) {
        let req = format!("{tag}/from/{}", n.name);
        let r = n.handle.leader_call_timeout(req.clone(), WAIT).await;
        assert_eq!(r, Ok(format!("{}:{req}", base.leader)), "{tag}");
    }
    for n in nodes {
        let r = tokio::time::timeout(WAIT, n.handle.call("ping".into())).await;
        assert_eq!(
            r.expect("local call timed out"),
            Ok(format!("local:{}:ping", n.name)),
            "{tag}"
        );
        let v = n.handle.view();
        assert_eq!(
            v.leader.as_ref().map(|l| l.to_string()).as_deref(),
            Some(base.leader.as_str()),
            "{tag}: leader changed at {}: {v:?}",
            n.name
        );
        assert_eq!(v.term, base.term, "{tag}: term changed at {}", n.name);
        assert_eq!(
            v.alive.len(),
            nodes.len(),
            "{tag}: {} lost a peer: {v:?}",
            n.name
        );
        assert!(
            !n.events().contains(&Ev::Terminate),
            "{tag}: {} stopped",
            n.name
        );
    }
    for (n, &d) in nodes.iter().zip(&base.downs) {
        assert_eq!(
            downs(n),
            d,
            "{tag}: {} ran handle_down: {:?}",
            n.name,
            n.events()
        );
    }
    assert_undisturbed(nodes, base, tag);
}

/// No node's view changed leader, term or connectivity since `base`.
fn assert_undisturbed(nodes: &[TNode], base: &Baseline, tag: &str) {
    let seen = base.disturbances.lock().unwrap().clone();
    assert!(
        seen.is_empty(),
        "{tag}: the cluster was disturbed: {seen:#?}\n{}",
        history(nodes)
    );
}

/// Stops the leader; the next candidate takes over with a higher term and answers calls.
async fn assert_failover(nodes: &[TNode], base: Baseline) {
    let (leader, term) = (base.leader.clone(), base.term);
    drop(base);
    let old = nodes.iter().find(|n| n.name == leader).expect("leader");
    old.handle.shutdown().await;
    let rest: Vec<&TNode> = nodes.iter().filter(|n| n.name != leader).collect();
    for n in &rest {
        let v = n
            .handle
            .wait_for(WAIT, |v| {
                v.leader.as_ref().is_some_and(|l| l.to_string() != leader)
            })
            .await;
        assert!(
            v.is_some(),
            "{} never got a new leader: {:?}",
            n.name,
            n.handle.view()
        );
    }
    let next = agreed(&rest).await;
    assert_eq!(
        next, rest[0].name,
        "the next candidate in priority order leads"
    );
    assert!(rest[0].handle.term() > term);
    let caller = rest[rest.len() - 1];
    let r = caller
        .handle
        .leader_call_timeout("after-failover".into(), WAIT)
        .await;
    assert_eq!(r, Ok(format!("{next}:after-failover")));
}

// ----- the attacks -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_are_dropped() {
    init_logs();
    let nodes = start_cluster(3, &[0]).await;
    let base = settle(&nodes).await;
    let target = addr(&nodes[0]); // the leader
    for seed in 0..8u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut bytes = vec![0u8; 64 * 1024];
        rng.fill(&mut bytes[..]);
        if seed % 2 == 1 {
            // A plausible header (in-cap length, our version) before a garbage body, so the
            // bytes reach the body decoder instead of failing the length check.
            bytes[..4].copy_from_slice(&4000u32.to_be_bytes());
            bytes[4] = PROTOCOL_VERSION;
        }
        let got = send_and_wait_close(target, &bytes).await;
        // At most a refusal (e.g. for a foreign version byte), never a Challenge.
        if !got.is_empty() {
            let frames = parse_frames(&got);
            assert!(
                matches!(frames[..], [HsMsg::Refuse(_)]),
                "seed {seed}: {frames:?}"
            );
        }
        assert_healthy(&nodes, &base, &format!("random/{seed}")).await;
    }
    assert_failover(&nodes, base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_length_prefixes_are_rejected_without_allocating() {
    init_logs();
    let nodes = start_cluster(3, &[0]).await;
    let base = settle(&nodes).await;
    let target = addr(&nodes[0]);
    let lengths: [u32; 4] = [
        0xFFFF_FFFF,
        0x8000_0000,
        8 * 1024 * 1024, // the post-handshake cap: still far above the handshake cap
        0,               // no room for the version byte
    ];
    for len in lengths {
        // 32 at once: a node that reserved the announced length would run out of memory.
        let attacks = (0..32).map(|_| async move {
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.push(PROTOCOL_VERSION);
            bytes.extend_from_slice(&[0xAB; 16]);
            let got = send_and_wait_close(target, &bytes).await;
            assert!(got.is_empty(), "length {len:#x}: node answered {got:?}");
        });
        futures::future::join_all(attacks).await;
        assert_healthy(&nodes, &base, &format!("length/{len:#x}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_with_mirrored_digest_is_challenged() {
    // Guards the mirror used by the other tests: a correct Hello gets a Challenge from the
    // node, signed by it; we then abandon the connection.
    init_logs();
    let nodes = start_cluster(2, &[0]).await;
    let base = settle(&nodes).await;
    let mut s = connect(addr(&nodes[0])).await;
    s.write_all(&frame(&hello(
        &nodes[1].name,
        &nodes[0].name,
        members_digest(&nodes[0]),
    )))
    .await
    .unwrap();
    match read_one(&mut s).await {
        HsMsg::Challenge { from, .. } => assert_eq!(from, nodes[0].name),
        other => panic!("expected a Challenge, got {other:?}"),
    }
    // Never answering: the node drops us after its handshake timeout.
    read_until_closed(&mut s).await;
    assert_healthy(&nodes, &base, "mirror").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_formed_hellos_without_the_cookie_are_refused() {
    init_logs();
    let nodes = start_cluster(3, &[0]).await;
    let base = settle(&nodes).await;
    let (me, peer) = (&nodes[0].name, &nodes[1].name);
    let target = addr(&nodes[0]);
    let digest = members_digest(&nodes[0]);

    // The library's own dialer, knowing everything but the cookie: it sees that the node's
    // Challenge is not signed with its cookie and gives up.
    let cfg = intruder_config(peer, b"not-the-cookie", digest);
    let mut s = connect(target).await;
    let r = handshake::dial(&mut s, &cfg, me).await;
    assert!(
        matches!(r, Err(HandshakeError::Rejected(Refusal::BadAuth))),
        "{r:?}"
    );
    read_until_closed(&mut s).await;

    // A hand-made dialer that ignores the Challenge's MAC and sends a forged Auth.
    let mut s = connect(target).await;
    s.write_all(&frame(&hello(peer, me, digest))).await.unwrap();
    assert!(matches!(read_one(&mut s).await, HsMsg::Challenge { .. }));
    s.write_all(&frame(&HsMsg::Auth { mac: [0x42; 32] }))
        .await
        .unwrap();
    let got = read_until_closed(&mut s).await;
    assert_eq!(parse_frames(&got), vec![HsMsg::Refuse(Refusal::BadAuth)]);

    // Hellos refused before any MAC is computed.
    let mut other_cluster = hello(peer, me, digest);
    if let HsMsg::Hello { cluster, .. } = &mut other_cluster {
        *cluster = "another-cluster".into();
    }
    // A wrong digest: the parts say which field differs (here every one: the intruder sent
    // empty parts), or, when they agree, only that something does.
    let ours = parts(&nodes[0]);
    let mut same_parts = hello(peer, me, [0; 32]);
    if let HsMsg::Hello { parts, .. } = &mut same_parts {
        *parts = ours.clone();
    }
    let cases = [
        (
            hello(peer, me, [0; 32]),
            Refusal::Config(
                ours.mismatch(&ConfigParts::default())
                    .expect("parts differ"),
            ),
        ),
        (same_parts, Refusal::Members),
        (
            other_cluster,
            Refusal::Config(ConfigMismatch::cluster(CLUSTER, "another-cluster")),
        ),
        (
            hello("x@127.0.0.1:1", me, digest),
            Refusal::Unknown("x@127.0.0.1:1".into()),
        ),
        (
            hello(peer, &nodes[2].name, digest),
            Refusal::WrongNode {
                expected: nodes[2].name.clone(),
                got: me.clone(),
            },
        ),
        (hello(me, me, digest), Refusal::Duplicate(me.clone())),
    ];
    for (msg, refusal) in cases {
        expect_refusal(target, &frame(&msg), refusal).await;
    }
    // A well-formed but out-of-order first message: closed without a refusal.
    let got = send_and_wait_close(target, &frame(&HsMsg::Welcome)).await;
    assert!(got.is_empty(), "{got:?}");

    assert_healthy(&nodes, &base, "hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_protocol_versions_are_refused() {
    init_logs();
    let nodes = start_cluster(3, &[0]).await;
    let base = settle(&nodes).await;
    let target = addr(&nodes[0]);
    let h = hello(&nodes[1].name, &nodes[0].name, members_digest(&nodes[0]));
    let v99 = Refusal::Version {
        ours: PROTOCOL_VERSION,
        theirs: 99,
    };
    // Frame version byte 99 on a valid Hello.
    expect_refusal(target, &frame_with_version(&h, 99), v99.clone()).await;
    // A frame holding nothing but the version byte.
    expect_refusal(target, &[0, 0, 0, 1, 99], v99.clone()).await;
    // Version 0.
    expect_refusal(
        target,
        &frame_with_version(&h, 0),
        Refusal::Version {
            ours: PROTOCOL_VERSION,
            theirs: 0,
        },
    )
    .await;
    // Right frame version, but the Hello claims version 99.
    let mut h99 = h.clone();
    if let HsMsg::Hello { version, .. } = &mut h99 {
        *version = 99;
    }
    expect_refusal(target, &frame(&h99), v99).await;
    assert_healthy(&nodes, &base, "version").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_dropped_after_the_handshake_timeout() {
    init_logs();
    let nodes = start_cluster(3, &[0]).await;
    let base = settle(&nodes).await;
    let target = addr(&nodes[0]);

    // Connects and sends nothing.
    let mut s = connect(target).await;
    let t = tokio::time::Instant::now();
    let got = read_until_closed(&mut s).await;
    let took = t.elapsed();
    assert!(got.is_empty(), "{got:?}");
    // A silent client has 2 heartbeats, at least 200 ms (at most the handshake timeout), to
    // send its Hello: here 200 ms, not the 2 s default handshake timeout.
    assert!(
        took >= Duration::from_millis(150),
        "closed after {took:?}, before the Hello deadline"
    );
    assert!(took < Duration::from_millis(1900), "took {took:?}");

    // Announces an in-cap frame, sends a few bytes of it, then stalls.
    let mut s = connect(target).await;
    let mut partial = (HANDSHAKE_MAX_FRAME_LEN as u32).to_be_bytes().to_vec();
    partial.push(PROTOCOL_VERSION);
    partial.extend_from_slice(&[0; 10]);
    s.write_all(&partial).await.unwrap();
    assert!(read_until_closed(&mut s).await.is_empty());

    // Sends a valid Hello and then never answers the Challenge.
    let mut s = connect(target).await;
    s.write_all(&frame(&hello(
        &nodes[2].name,
        &nodes[0].name,
        members_digest(&nodes[0]),
    )))
    .await
    .unwrap();
    assert!(matches!(read_one(&mut s).await, HsMsg::Challenge { .. }));
    read_until_closed(&mut s).await;

    // Many idle clients at once: every one of them is still dropped.
    let idle = (0..80).map(|_| async move {
        let mut s = connect(target).await;
        read_until_closed(&mut s).await
    });
    for got in futures::future::join_all(idle).await {
        assert!(got.is_empty(), "{got:?}");
    }
    assert_healthy(&nodes, &base, "idle").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impostor_of_a_connected_member_does_not_disturb_it() {
    init_logs();
    let nodes = start_cluster(3, &[0, 1, 2]).await;
    let base = settle(&nodes).await;
    let digest = members_digest(&nodes[0]);
    // (claimed identity, attacked node): a lower id dialing a higher one is how members
    // really connect (the real connection would be replaced if the impostor were admitted);
    // a higher id dialing a lower one would be asked to call back.
    let pairs = [(0, 1), (0, 2), (1, 2), (1, 0), (2, 0)];
    for (claim, victim) in pairs {
        let (claimed, victim_name) = (&nodes[claim].name, &nodes[victim].name);
        let target = addr(&nodes[victim]);
        let tag = format!("impostor {claimed} -> {victim_name}");

        // Through the library's dialer with a wrong cookie.
        let cfg = intruder_config(claimed, b"guessed-cookie", digest);
        let mut s = connect(target).await;
        let r = handshake::dial(&mut s, &cfg, victim_name).await;
        assert!(
            matches!(r, Err(HandshakeError::Rejected(Refusal::BadAuth))),
            "{tag}: {r:?}"
        );
        read_until_closed(&mut s).await;

        // By hand, forging the Auth.
        let mut s = connect(target).await;
        s.write_all(&frame(&hello(claimed, victim_name, digest)))
            .await
            .unwrap();
        match read_one(&mut s).await {
            HsMsg::Challenge { from, .. } => assert_eq!(&from, victim_name),
            other => panic!("{tag}: expected a Challenge, got {other:?}"),
        }
        s.write_all(&frame(&HsMsg::Auth { mac: [7; 32] }))
            .await
            .unwrap();
        let got = read_until_closed(&mut s).await;
        assert_eq!(
            parse_frames(&got),
            vec![HsMsg::Refuse(Refusal::BadAuth)],
            "{tag}"
        );

        assert_healthy(&nodes, &base, &tag).await;
    }
    assert_failover(&nodes, base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_floods_leave_the_node_responsive() {
    init_logs();
    let nodes = start_cluster(3, &[0]).await;
    let base = settle(&nodes).await;
    let target = addr(&nodes[0]);

    // 200 connections opened at once and dropped at once.
    let flood: Vec<TcpStream> = futures::future::join_all((0..200).map(|_| connect(target))).await;
    drop(flood);
    assert_healthy(&nodes, &base, "flood/dropped").await;

    // 200 connections opened at once and held idle: calls between members still work while
    // they are held, and the node eventually closes every one of them.
    let held: Vec<TcpStream> = futures::future::join_all((0..200).map(|_| connect(target))).await;
    let r = nodes[2]
        .handle
        .leader_call_timeout("during-flood".into(), WAIT)
        .await;
    assert_eq!(r, Ok(format!("{}:during-flood", base.leader)));
    let closes = held.into_iter().map(|mut s| async move {
        read_until_closed(&mut s).await;
    });
    futures::future::join_all(closes).await;
    assert_healthy(&nodes, &base, "flood/held").await;
    assert_failover(&nodes, base).await;
}

// ----- members with the wrong cookie -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_different_cookies_never_connect() {
    init_logs();
    let (ls, names) = bind(2).await;
    let mut ls = ls.into_iter();
    let a = start(
        config(&names[0], &names, &[]).cookie("cookie-a"),
        ls.next().unwrap(),
    )
    .await;
    let b = start(
        config(&names[1], &names, &[]).cookie("cookie-b"),
        ls.next().unwrap(),
    )
    .await;

    // Each elects itself, alone.
    for n in [&a, &b] {
        let v = n
            .handle
            .wait_for(WAIT, |v| v.is_leader() && v.alive.len() == 1)
            .await;
        assert!(
            v.is_some(),
            "{} did not elect itself: {:?}",
            n.name,
            n.handle.view()
        );
    }
    // a (the lower id) dials b; b's Challenge is not signed with a's cookie, so a refuses it,
    // and b logs that a refused it for a bad cookie.
    eventually("b logs a's refusal for a wrong cookie", || {
        logs::lines_of(&b.name)
            .iter()
            .any(|l| l.contains("wrong cookie"))
    })
    .await;
    // The same, shown directly: each node's cookie fails against the other node.
    for (from, to, cookie) in [(&a, &b, "cookie-a"), (&b, &a, "cookie-b")] {
        let cfg = intruder_config(&from.name, cookie.as_bytes(), members_digest(to));
        let mut s = connect(addr(to)).await;
        let r = handshake::dial(&mut s, &cfg, &to.name).await;
        assert!(
            matches!(r, Err(HandshakeError::Rejected(Refusal::BadAuth))),
            "{r:?}"
        );
        read_until_closed(&mut s).await;
    }
    // Over the next redial attempts (the dialer backs off to at most ~1 s), neither ever
    // sees the other.
    let watch = |n: &TNode| {
        let h = n.handle.clone();
        async move {
            h.wait_for(Duration::from_millis(1500), |v| {
                !v.is_leader() || v.alive.len() != 1
            })
            .await
        }
    };
    let (va, vb) = tokio::join!(watch(&a), watch(&b));
    assert_eq!(va, None, "a's view changed");
    assert_eq!(vb, None, "b's view changed");

    for n in [&a, &b] {
        let r = n.handle.leader_call_timeout("x".into(), WAIT).await;
        assert_eq!(r, Ok(format!("{}:x", n.name)), "each serves its own calls");
        assert!(
            !n.events().iter().any(|e| matches!(
                e,
                Ev::Surrendered { .. }
                    | Ev::Elected {
                        joined: Some(_),
                        ..
                    }
                    | Ev::Terminate
            )),
            "{}: {:?}",
            n.name,
            n.events()
        );
        let fatal: Vec<String> = logs::lines_of(&n.name)
            .into_iter()
            .filter(|l| l.contains("ERROR"))
            .collect();
        assert!(fatal.is_empty(), "{}: {fatal:#?}", n.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_with_the_wrong_cookie_is_kept_out() {
    init_logs();
    let (ls, names) = bind(3).await;
    let mut ls = ls.into_iter();
    let mut nodes = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut b = config(name, &names, &[]);
        if i == 2 {
            b = b.cookie("stolen-name-wrong-cookie");
        }
        nodes.push(start(b, ls.next().unwrap()).await);
    }
    let good = [&nodes[0], &nodes[1]];
    let leader = agreed(&good).await;
    assert_eq!(leader, nodes[0].name);
    for n in good {
        let v = n.handle.wait_for(WAIT, |v| v.alive.len() == 2).await;
        assert!(v.is_some(), "{:?}", n.handle.view());
    }
    let v = nodes[2]
        .handle
        .wait_for(WAIT, |v| v.is_leader() && v.alive.len() == 1)
        .await;
    assert!(v.is_some(), "{:?}", nodes[2].handle.view());
    // Both sides log the refusals: the members dial the outsider and reject its Challenge
    // (and the outsider logs that), and the outsider's own dial to node 0 fails the same way.
    for who in [&nodes[2], &nodes[0]] {
        eventually("a wrong-cookie refusal is logged", || {
            logs::lines_of(&who.name)
                .iter()
                .any(|l| l.contains("wrong cookie"))
        })
        .await;
    }
    let term = nodes[0].handle.term();
    let watch = |n: &TNode, len: usize| {
        let h = n.handle.clone();
        async move {
            h.wait_for(Duration::from_millis(1500), |v| v.alive.len() != len)
                .await
        }
    };
    let (v0, v1, v2) = tokio::join!(
        watch(&nodes[0], 2),
        watch(&nodes[1], 2),
        watch(&nodes[2], 1)
    );
    assert_eq!(
        (v0, v1, v2),
        (None, None, None),
        "someone let the outsider in"
    );
    let r = nodes[1].handle.leader_call_timeout("in".into(), WAIT).await;
    assert_eq!(r, Ok(format!("{leader}:in")));
    assert_eq!(nodes[0].handle.term(), term);
    assert_eq!(nodes[1].handle.term(), term);
    for n in &nodes {
        let fatal: Vec<String> = logs::lines_of(&n.name)
            .into_iter()
            .filter(|l| l.contains("ERROR"))
            .collect();
        assert!(fatal.is_empty(), "{}: {fatal:#?}", n.name);
    }
}
