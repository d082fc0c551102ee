//! The etcd election backend against a real etcd (feature `etcd`; `testkit::etcd` starts
//! etcd on random ports and kills it on every exit path). No mock: the cases that matter are
//! etcd's own behaviour (a campaign returning after its lease expired, streams ending when a
//! member dies or etcd restarts).
//!
//! The tests run one at a time (a shared lock): two of them measure timings, and each starts
//! its own etcd.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gen_leader::etcd::{
    Ack, EtcdConfig, EtcdElection, EtcdEvent, LeaderValue, LeaseClock, StepDownReason,
};
use testkit::etcd::EtcdCluster;

/// The lease TTL of most tests: etcd's practical minimum, so failovers are quick.
const TTL: Duration = Duration::from_secs(2);

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs one test body alone (see the module docs) on a 2-worker runtime.
fn run<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
    // RUST_LOG=gen_leader=debug shows the backend's log.
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::ERROR)
        });
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .finish()
        .with(filter)
        .try_init();
    let _serial: MutexGuard<'static, ()> = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(body());
}

fn config(endpoints: Vec<String>, election: &str, ttl: Duration) -> EtcdConfig {
    EtcdConfig::new(endpoints, election)
        .with_ttl(ttl)
        .with_connect_timeout(Duration::from_secs(1))
        .with_request_timeout(Duration::from_millis(500))
}

type Log = Arc<Mutex<Vec<(Instant, EtcdEvent)>>>;

/// One campaigner under test: its handle and every event it sent, with the receipt time.
struct Node {
    name: String,
    election: Option<EtcdElection>,
    log: Log,
}

impl Node {
    fn start(cfg: &EtcdConfig, name: &str) -> Node {
        let value = LeaderValue::new(format!("{name}@127.0.0.1:4000"), "127.0.0.1:4000");
        let (election, mut rx) = EtcdElection::start(cfg.clone(), value).expect("start");
        let log: Log = Arc::default();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                sink.lock().unwrap().push((Instant::now(), ev));
            }
        });
        Node {
            name: name.to_string(),
            election: Some(election),
            log,
        }
    }

    fn events(&self) -> Vec<(Instant, EtcdEvent)> {
        self.log.lock().unwrap().clone()
    }

    /// `Some(rev)` while its last leadership event is `Leading` (not stepped down).
    fn leading(&self) -> Option<u64> {
        let mut state = None;
        for (_, ev) in self.events() {
            match ev {
                EtcdEvent::Leading { rev, .. } => state = Some(rev),
                EtcdEvent::SteppedDown { .. } => state = None,
                _ => {}
            }
        }
        state
    }

    /// Its last `Following` (or `None` after a later `NoLeader`).
    fn following(&self) -> Option<(String, u64)> {
        let mut state = None;
        for (_, ev) in self.events() {
            match ev {
                EtcdEvent::Following { leader, rev } => state = Some((leader.name, rev)),
                EtcdEvent::NoLeader => state = None,
                _ => {}
            }
        }
        state
    }

    fn value_name(&self) -> String {
        format!("{}@127.0.0.1:4000", self.name)
    }

    fn count(&self, pred: impl Fn(&EtcdEvent) -> bool) -> usize {
        self.events().iter().filter(|(_, e)| pred(e)).count()
    }

    async fn shutdown(&mut self) {
        if let Some(e) = self.election.take() {
            let o = e.shutdown().await;
            eprintln!("{} shut down: {o:?}", self.name);
        }
    }

    /// Drops the handle: the tasks are aborted, nothing is resigned (a crash).
    fn crash(&mut self) {
        self.election.take();
    }
}

fn diagnose(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| {
            let evs: Vec<String> = n.events().iter().map(|(_, e)| format!("{e:?}")).collect();
            format!("--- {}:\n  {}", n.name, evs.join("\n  "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `f` every 10 ms until it returns a value; panics with the nodes' events after
/// `timeout`.
async fn wait<T>(
    what: &str,
    timeout: Duration,
    nodes: &[&Node],
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            diagnose(nodes)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The one node that leads, if exactly one does.
fn sole_leader(nodes: &[&Node]) -> Option<(usize, u64)> {
    let leading: Vec<(usize, u64)> = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.leading().map(|r| (i, r)))
        .collect();
    (leading.len() == 1).then(|| leading[0])
}

/// Waits until exactly one node leads and every other one follows it with its revision.
async fn settled(nodes: &[&Node], timeout: Duration) -> (usize, u64) {
    wait("one leader, followed by the others", timeout, nodes, || {
        let (i, rev) = sole_leader(nodes)?;
        let name = nodes[i].value_name();
        nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .all(|(_, n)| n.following() == Some((name.clone(), rev)))
            .then_some((i, rev))
    })
    .await
}

#[test]
fn lease_clock_exact_values_through_the_public_api() {
    // TTL 2 s, ρ = 1 %, δ = 100 ms: 2 s · 0.99/1.01 − 0.1 s = 1 860 396 039 ns.
    let cfg = EtcdConfig::new(["http://127.0.0.1:1"], "x").with_ttl(TTL);
    assert_eq!(cfg.local_lease(), Duration::from_nanos(1_860_396_039));
    let t0 = Instant::now();
    let mut c = LeaseClock::new(10_000, Duration::from_millis(100), TTL / 3);
    assert!(c.sent(t0));
    assert!(c.sent(t0 + Duration::from_millis(500)));
    assert_eq!(
        c.acknowledged(2),
        Ack::Until(t0 + Duration::from_nanos(1_860_396_039))
    );
    assert_eq!(
        c.acknowledged(2),
        Ack::Until(t0 + Duration::from_nanos(2_360_396_039))
    );
    assert_eq!(
        c.next_send(),
        Some(t0 + Duration::from_millis(500) + TTL / 3)
    );
    assert!(c.sent(t0 + Duration::from_millis(1000)));
    assert_eq!(c.acknowledged(0), Ack::Ended);
    assert_eq!(c.until(), None);
}

#[test]
fn three_campaigners_one_leader_and_tokens_increase() {
    run(three_campaigners_one_leader_and_tokens_increase_body);
}

async fn three_campaigners_one_leader_and_tokens_increase_body() {
    let Some(etcd) = EtcdCluster::single() else {
        return;
    };
    let cfg = config(etcd.endpoints(), "gl-test/three", TTL);
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node::start(&cfg, n))
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let (first, rev1) = settled(&refs, Duration::from_secs(10)).await;
    eprintln!("{} leads with fencing token {rev1}", nodes[first].name);

    // Graceful shutdown: the next leader does not wait for the TTL. (After a moment: etcd
    // serves a watch that starts in the past only after its next 100 ms sync.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    nodes[first].shutdown().await;
    let shut = t.elapsed();
    let rest: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first)
        .map(|(_, n)| n)
        .collect();
    let (second_in_rest, rev2) = settled(&rest, Duration::from_secs(10)).await;
    let took = t.elapsed();
    let led_at = rest[second_in_rest]
        .events()
        .iter()
        .find_map(|(at, e)| matches!(e, EtcdEvent::Leading { .. }).then_some(*at))
        .expect("Leading");
    eprintln!(
        "failover after resign: the next leader reported Leading {:?} after shutdown() was \
         called ({shut:?} for shutdown() to return), every node agreed after {took:?} (TTL \
         {TTL:?}); {} leads with {rev2}",
        led_at - t,
        rest[second_in_rest].name
    );
    assert!(
        rev2 > rev1,
        "fencing tokens must increase: {rev1} then {rev2}"
    );
    assert!(
        took < TTL / 2,
        "failover after a resign took {took:?}, not well before the TTL {TTL:?}"
    );
    // The old leader said it stepped down because of the shutdown, before anyone else led.
    let first_node = &nodes[first];
    assert_eq!(
        first_node.count(|e| matches!(
            e,
            EtcdEvent::SteppedDown { reason: StepDownReason::Shutdown, rev } if *rev == rev1
        )),
        1,
        "{}",
        diagnose(&[first_node])
    );

    // Once more, down to one node.
    let second = nodes
        .iter()
        .position(|n| n.name == rest[second_in_rest].name)
        .unwrap();
    nodes[second].shutdown().await;
    let last: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != first && *i != second)
        .map(|(_, n)| n)
        .collect();
    let (_, rev3) = settled(&last, Duration::from_secs(10)).await;
    assert!(
        rev3 > rev2,
        "fencing tokens must increase: {rev2} then {rev3}"
    );
    // Nobody ever reported a leadership it did not have: every Leading of every node has a
    // distinct revision, in increasing order of time.
    let mut all: Vec<(Instant, u64)> = nodes
        .iter()
        .flat_map(|n| n.events())
        .filter_map(|(t, e)| match e {
            EtcdEvent::Leading { rev, .. } => Some((t, rev)),
            _ => None,
        })
        .collect();
    all.sort();
    assert_eq!(
        all.len(),
        3,
        "{}",
        diagnose(&nodes.iter().collect::<Vec<_>>())
    );
    assert!(all.windows(2).all(|w| w[0].1 < w[1].1), "{all:?}");
    for n in &mut nodes {
        n.shutdown().await;
    }
}

#[test]
fn a_crashed_leader_is_replaced_within_the_ttl() {
    run(a_crashed_leader_is_replaced_within_the_ttl_body);
}

async fn a_crashed_leader_is_replaced_within_the_ttl_body() {
    let Some(etcd) = EtcdCluster::single() else {
        return;
    };
    let cfg = config(etcd.endpoints(), "gl-test/crash", TTL);
    let mut nodes: Vec<Node> = ["a", "b"].iter().map(|n| Node::start(&cfg, n)).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let (leader, rev1) = settled(&refs, Duration::from_secs(10)).await;
    let other = 1 - leader;
    // Let a keep-alive or two go by, so the crash is mid-lease.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let t = Instant::now();
    nodes[leader].crash();
    let rev2 = wait("the survivor to lead", TTL * 3, &[&nodes[other]], || {
        nodes[other].leading()
    })
    .await;
    let took = t.elapsed();
    eprintln!("failover after a crash (no resign): {took:?} (TTL {TTL:?})");
    assert!(rev2 > rev1);
    // etcd checks lease expiry every 500 ms; the campaign then has to notice.
    assert!(
        took <= TTL + Duration::from_millis(1500),
        "failover after a crash took {took:?}, more than TTL {TTL:?} + 1.5 s"
    );
    nodes[other].shutdown().await;
}

#[test]
fn stopped_etcd_leader_steps_down_before_the_ttl_then_recovers() {
    run(stopped_etcd_leader_steps_down_before_the_ttl_then_recovers_body);
}

async fn stopped_etcd_leader_steps_down_before_the_ttl_then_recovers_body() {
    let Some(mut etcd) = EtcdCluster::single() else {
        return;
    };
    let cfg = config(etcd.endpoints(), "gl-test/sigstop", TTL);
    let local_lease = cfg.local_lease();
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node::start(&cfg, n))
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let (leader, rev1) = settled(&refs, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    assert!(etcd.member(0).pause(), "SIGSTOP etcd");
    let stopped_at = Instant::now();
    let (stepped_at, reason) = wait(
        "the leader to step down",
        TTL * 3,
        &[&nodes[leader]],
        || {
            nodes[leader]
                .events()
                .into_iter()
                .find_map(|(t, e)| match e {
                    EtcdEvent::SteppedDown { rev, reason } if rev == rev1 => Some((t, reason)),
                    _ => None,
                })
        },
    )
    .await;
    assert_eq!(reason, StepDownReason::LeaseExpired);
    // The last lease end it announced before stepping down, and the send time of the
    // keep-alive behind it.
    let (until, acked_send) = nodes[leader]
        .events()
        .into_iter()
        .filter(|(t, _)| *t <= stepped_at)
        .filter_map(|(_, e)| match e {
            EtcdEvent::Leading { until, sent, .. } | EtcdEvent::LeaseMoved { until, sent, .. } => {
                Some((until, sent))
            }
            _ => None,
        })
        .next_back()
        .expect("a lease end was announced");
    // The lease runs from the send time for exactly ttl·(1−ρ)/(1+ρ) − δ.
    assert_eq!(until - acked_send, local_lease);
    let etcd_expiry = acked_send + TTL;
    eprintln!(
        "SIGSTOP etcd: stepped down {:?} after the stop, {:?} after the last acknowledged \
         keep-alive was sent, {:?} before etcd's TTL could run out (local lease end was {:?} \
         before the step-down report)",
        stepped_at - stopped_at,
        stepped_at - acked_send,
        etcd_expiry.saturating_duration_since(stepped_at),
        stepped_at.saturating_duration_since(until),
    );
    assert!(
        stepped_at < etcd_expiry,
        "stepped down after etcd's TTL could have run out"
    );
    assert!(
        stepped_at + Duration::from_millis(1) >= until,
        "stepped down before its lease end?"
    );
    // Nobody leads while etcd is stopped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        sole_leader(&refs_of(&nodes)).is_none(),
        "{}",
        diagnose(&refs_of(&nodes))
    );

    // SIGCONT: a leader again, followed by the others.
    assert!(etcd.member(0).resume(), "SIGCONT etcd");
    let t = Instant::now();
    let (_, rev2) = settled(&refs_of(&nodes), Duration::from_secs(15)).await;
    eprintln!(
        "after SIGCONT: a leader again in {:?} (rev {rev2})",
        t.elapsed()
    );
    assert!(rev2 > rev1);

    // Restart etcd: the observers' streams end; they re-create them and follow changes.
    let marks: Vec<usize> = nodes.iter().map(|n| n.events().len()).collect();
    tokio::task::block_in_place(|| etcd.member(0).restart()).expect("restart etcd");
    let (l3, rev3) = settled(&refs_of(&nodes), Duration::from_secs(15)).await;
    for (n, m) in nodes.iter().zip(&marks) {
        let unavailable = n.events()[*m..]
            .iter()
            .filter(|(_, e)| matches!(e, EtcdEvent::Unavailable { .. }))
            .count();
        eprintln!(
            "{}: {unavailable} Unavailable events across the restart",
            n.name
        );
    }
    // A change after the restart reaches the followers through the re-created streams.
    nodes[l3].shutdown().await;
    let rest: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != l3)
        .map(|(_, n)| n)
        .collect();
    let (_, rev4) = settled(&rest, Duration::from_secs(10)).await;
    assert!(rev4 > rev3 && rev3 >= rev2);
    for n in &mut nodes {
        n.shutdown().await;
    }
}

/// The index of the etcd member that is raft leader.
async fn raft_leader(endpoints: &[String]) -> usize {
    for (i, ep) in endpoints.iter().enumerate() {
        let mut c = etcd_client::Client::connect([ep], None)
            .await
            .expect("connect");
        let s = c.status().await.expect("status");
        if s.header().is_some_and(|h| h.member_id() == s.leader()) {
            return i;
        }
    }
    panic!("no etcd member says it is the raft leader");
}

fn refs_of(nodes: &[Node]) -> Vec<&Node> {
    nodes.iter().collect()
}

#[test]
fn one_etcd_member_killed_changes_nothing() {
    run(one_etcd_member_killed_changes_nothing_body);
}

async fn one_etcd_member_killed_changes_nothing_body() {
    let Some(mut etcd) = EtcdCluster::three() else {
        return;
    };
    // A longer TTL: etcd may have to elect a new raft leader (about a second) meanwhile.
    let ttl = Duration::from_secs(4);
    let cfg = config(etcd.endpoints(), "gl-test/members", ttl);
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|n| Node::start(&cfg, n))
        .collect();
    let (leader, rev) = settled(&refs_of(&nodes), Duration::from_secs(15)).await;
    let marks: Vec<usize> = nodes.iter().map(|n| n.events().len()).collect();
    // Kill etcd's raft leader, the harder case: the others must elect a new one, and every
    // request meanwhile waits or fails.
    let victim = raft_leader(&etcd.endpoints()).await;
    etcd.member(victim).kill();
    eprintln!("killed etcd member {victim}, etcd's raft leader");
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(
        sole_leader(&refs_of(&nodes)),
        Some((leader, rev)),
        "{}",
        diagnose(&refs_of(&nodes))
    );
    for (n, m) in nodes.iter().zip(&marks) {
        let changes: Vec<String> = n.events()[*m..]
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e,
                    EtcdEvent::Leading { .. }
                        | EtcdEvent::SteppedDown { .. }
                        | EtcdEvent::Following { .. }
                        | EtcdEvent::NoLeader
                        | EtcdEvent::CampaignVoided { .. }
                )
            })
            .map(|(_, e)| format!("{e:?}"))
            .collect();
        assert!(
            changes.is_empty(),
            "{} saw changes after a member was killed: {changes:?}\n{}",
            n.name,
            diagnose(&refs_of(&nodes))
        );
    }
    let name = nodes[leader].value_name();
    for (i, n) in nodes.iter().enumerate() {
        if i != leader {
            assert_eq!(n.following(), Some((name.clone(), rev)));
        }
    }
    for n in &mut nodes {
        n.shutdown().await;
    }
}

#[test]
fn phantom_leadership_is_refused() {
    run(phantom_leadership_is_refused_body);
}

async fn phantom_leadership_is_refused_body() {
    let Some(etcd) = EtcdCluster::single() else {
        return;
    };
    let election = "gl-test/phantom";
    let cfg = config(etcd.endpoints(), election, TTL);
    let mut a = Node::start(&cfg, "a");
    let rev_a = wait("a to lead", Duration::from_secs(10), &[&a], || a.leading()).await;
    let mut b = Node::start(&cfg, "b");
    let mut raw = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .expect("raw client");
    let prefix = format!("{election}/");
    let keys = |raw: &mut etcd_client::Client| {
        let mut raw = raw.clone();
        let prefix = prefix.clone();
        async move {
            let r = raw
                .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
                .await
                .expect("get");
            r.kvs()
                .iter()
                .map(|kv| (kv.create_revision(), kv.lease()))
                .collect::<Vec<_>>()
        }
    };
    // b campaigns behind a: its key exists, after a's.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rev_b = loop {
        let ks = keys(&mut raw).await;
        if ks.len() == 2 {
            break ks[1].0;
        }
        assert!(Instant::now() < deadline, "b's key never appeared: {ks:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(b.following(), Some((a.value_name(), rev_a)));

    // b's process "pauses": no keep-alives, and it does not look at its clock. etcd expires
    // its lease and deletes its key, while b's campaign still waits behind a.
    b.election.as_ref().unwrap().pause_lease_for_test(true);
    let deadline = Instant::now() + TTL * 3;
    loop {
        let ks = keys(&mut raw).await;
        if ks.len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "b's lease never expired: {ks:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("b's key (rev {rev_b}) expired while its campaign waited");

    // a resigns: etcd's campaign for b returns success with b's old revision.
    a.shutdown().await;
    let rev_b64 = rev_b as u64;
    wait(
        "b's campaign to return",
        Duration::from_secs(5),
        &[&b],
        || {
            let returned = b.count(|e| {
                matches!(e, EtcdEvent::CampaignVoided { .. })
                    || matches!(e, EtcdEvent::Leading { rev, .. } if *rev == rev_b64)
            });
            (returned > 0).then_some(())
        },
    )
    .await;
    b.election.as_ref().unwrap().pause_lease_for_test(false);
    // The check refused it: b never reported leading with that revision...
    assert_eq!(
        b.count(|e| matches!(e, EtcdEvent::Leading { rev, .. } if *rev == rev_b64)),
        0,
        "phantom leadership: b reported leading with a key that had expired\n{}",
        diagnose(&[&b])
    );
    // ...although the campaign itself returned Ok, with exactly the revision b campaigned
    // with (the campaigner reports what the campaign returned).
    assert_eq!(
        b.count(|e| matches!(e, EtcdEvent::CampaignVoided { rev } if *rev == rev_b64)),
        1,
        "{}",
        diagnose(&[&b])
    );
    // b starts over with a new lease and leads for real, with a newer token.
    let rev_b2 = wait("b to lead for real", Duration::from_secs(10), &[&b], || {
        b.leading()
    })
    .await;
    assert!(rev_b2 > rev_b64);
    b.shutdown().await;
}
