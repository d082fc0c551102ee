//! The metrics a node records through the `metrics` facade (issue 11, "Metrics"), read the
//! way Prometheus reads them: rendered by `metrics-exporter-prometheus`.
//!
//! In process: a Prometheus recorder installed globally before any node starts (every test of
//! this binary shares it; the `node` label keeps their nodes apart), around a 3-node cluster:
//! the values move with an election, calls, broadcasts, a failover and a wrong cookie. As
//! processes: three `datos` nodes with `--metrics-addr`, scraped over plain HTTP, before and
//! after the leader is SIGKILLed; and one, with 64 idle connections or out of file
//! descriptors, to show its endpoint bounded and not spinning.

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use gen_leader::{Mode, QuorumConfig};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use testkit::datos::{datos_exe, datos_node, free_names};
use testkit::Proc;

/// The process-wide Prometheus recorder (installed once, before the first node starts).
fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("install the Prometheus recorder")
    })
}

/// One sample of a rendered exposition: its labels and value.
type Sample = (HashMap<String, String>, f64);

/// The samples of metric `name` in a Prometheus text exposition.
fn samples(text: &str, name: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.trim_matches('"').to_string()))
                })
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// The sum of the samples of `name` for node `node` whose labels also pass `keep`.
fn sum(text: &str, name: &str, node: &str, keep: impl Fn(&HashMap<String, String>) -> bool) -> f64 {
    samples(text, name)
        .into_iter()
        .filter(|(l, _)| l.get("node").map(String::as_str) == Some(node) && keep(l))
        .map(|(_, v)| v)
        .sum()
}

/// The value of `name` for node `node` (0 if absent).
fn value(text: &str, name: &str, node: &str) -> f64 {
    sum(text, name, node, |_| true)
}

/// The value of `name{node, label=want}`.
fn labelled(text: &str, name: &str, node: &str, label: &str, want: &str) -> f64 {
    sum(text, name, node, |l| {
        l.get(label).map(String::as_str) == Some(want)
    })
}

fn changes(text: &str, node: &str, prefix: &str) -> f64 {
    sum(text, "gen_leader_leader_changes_total", node, |l| {
        l.get("reason").is_some_and(|r| r.starts_with(prefix))
    })
}

/// Waits until `pred` holds on a fresh rendering; panics with the rendering after WAIT.
async fn until(what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = prometheus().render();
        if pred(&text) {
            return text;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_move_with_an_election_calls_and_a_failover() {
    prometheus();
    let mut nodes = cluster(3, 0).await;
    let leader = agreed(&all(&nodes)).await;
    let term = nodes[0].handle.view().term.get();
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();

    // The election: the leader's gauge is 1, the others' 0, everyone shows the term and two
    // connected peers; the leader counted `elected`, the followers `surrendered`.
    let text = until("the gauges show the election", |t| {
        names.iter().all(|n| {
            value(t, "gen_leader_is_leader", n) == if *n == leader { 1.0 } else { 0.0 }
                && value(t, "gen_leader_term", n) == term as f64
                && value(t, "gen_leader_peers_connected", n) == 2.0
        })
    })
    .await;
    assert!(changes(&text, &leader, "elected") >= 1.0, "{text}");
    for n in names.iter().filter(|n| **n != leader) {
        assert!(changes(&text, n, "surrendered") >= 1.0, "{n}\n{text}");
        assert_eq!(changes(&text, n, "elected"), 0.0, "{n}\n{text}");
    }
    // Bully mode: no lease gauge.
    let lease = samples(&text, "gen_leader_lease_remaining_seconds");
    assert!(
        !lease.iter().any(|(l, _)| names.contains(&l["node"])),
        "{text}"
    );

    // Calls from a follower (each one a broadcast on the leader), and one on the leader.
    let f = nodes.iter().position(|n| n.name != leader).unwrap();
    let l = nodes.iter().position(|n| n.name == leader).unwrap();
    let follower = names[f].clone();
    let ok_before = labelled(&text, "gen_leader_calls_total", &follower, "outcome", "ok");
    let seen_before = value(&text, "gen_leader_leader_call_seconds_count", &follower);
    let sent_before = value(&text, "gen_leader_broadcasts_total", &leader);
    for i in 0..3 {
        nodes[f].handle.leader_call(format!("c{i}")).await.unwrap();
    }
    nodes[l].handle.leader_call("own".into()).await.unwrap();
    let text = prometheus().render();
    assert_eq!(
        labelled(&text, "gen_leader_calls_total", &follower, "outcome", "ok"),
        ok_before + 3.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "gen_leader_leader_call_seconds_count", &follower),
        seen_before + 3.0,
        "{text}"
    );
    assert!(value(&text, "gen_leader_leader_call_seconds_sum", &follower) > 0.0);
    assert_eq!(
        labelled(&text, "gen_leader_calls_total", &leader, "outcome", "ok"),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "gen_leader_broadcasts_total", &leader),
        sent_before + 4.0,
        "{text}"
    );

    // A failover: the leader stops; a survivor leads a newer term, the old leader's gauge
    // drops to 0, and the survivors counted the lost leader.
    let old = nodes.remove(l);
    old.handle.shutdown().await;
    let new_leader = agreed(&all(&nodes)).await;
    assert_ne!(new_leader, leader);
    let survivors: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let text = until("the gauges show the failover", |t| {
        value(t, "gen_leader_is_leader", &leader) == 0.0
            && value(t, "gen_leader_is_leader", &new_leader) == 1.0
            && value(t, "gen_leader_term", &new_leader) > term as f64
            && survivors
                .iter()
                .all(|n| value(t, "gen_leader_peers_connected", n) == 1.0)
    })
    .await;
    for n in &survivors {
        assert!(changes(&text, n, "leader_lost_") >= 1.0, "{n}\n{text}");
    }
    assert!(changes(&text, &new_leader, "elected") >= 1.0, "{text}");
    for n in nodes {
        n.handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cookie_counts_a_refused_handshake() {
    prometheus();
    let (mut ls, names) = bind(2).await;
    let lb = ls.pop().unwrap();
    let la = ls.pop().unwrap();
    let a = start(config(&names[0], &names, &[]), la).await;
    let b = start(config(&names[1], &names, &[]).cookie("another-cookie"), lb).await;
    let text = until("a refused handshake labelled bad_cookie", |t| {
        names.iter().any(|n| {
            labelled(
                t,
                "gen_leader_handshakes_refused_total",
                n,
                "reason",
                "bad_cookie",
            ) >= 1.0
        })
    })
    .await;
    for n in &names {
        assert_eq!(value(&text, "gen_leader_peers_connected", n), 0.0, "{text}");
    }
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_mode_shows_the_leaders_lease() {
    prometheus();
    let lease = Duration::from_millis(600);
    let (ls, names) = bind(3).await;
    let mut nodes = Vec::new();
    for (l, n) in ls.into_iter().zip(&names) {
        let q = QuorumConfig::default().lease(lease);
        nodes.push(start(config(n, &names, &[]).mode(Mode::Quorum(q)), l).await);
    }
    let leader = agreed(&all(&nodes)).await;
    let max = lease.as_secs_f64();
    // Renewed once per heartbeat: the leader's gauge stays well above zero, at most the
    // lease; a follower's is 0.
    until("the leader's lease in the gauge", |t| {
        names.iter().all(|n| {
            let left = value(t, "gen_leader_lease_remaining_seconds", n);
            let has = samples(t, "gen_leader_lease_remaining_seconds")
                .iter()
                .any(|(l, _)| l.get("node") == Some(n));
            has && if *n == leader {
                left > max / 4.0 && left <= max
            } else {
                left == 0.0
            }
        })
    })
    .await;
    for n in nodes {
        n.handle.shutdown().await;
    }
    let text = prometheus().render();
    assert_eq!(
        value(&text, "gen_leader_lease_remaining_seconds", &leader),
        0.0,
        "a stopped node holds no lease\n{text}"
    );
}

/// `n` free ports on 127.0.0.1 below the ephemeral range (32768 and up on Linux), held until
/// the caller drops them: a port picked by binding port 0 can be taken meanwhile by one of the
/// nodes' outgoing connections (which take their local ports from that range), and the
/// exporter then cannot bind it.
fn low_ports(n: usize) -> Vec<std::net::TcpListener> {
    let mut p = 10_000 + (std::process::id() as usize * 7_919) % 20_000;
    let mut held = Vec::new();
    for _ in 0..20_000 {
        if held.len() == n {
            break;
        }
        p = if p + 1 >= 30_000 { 10_000 } else { p + 1 };
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", p as u16)) {
            held.push(l);
        }
    }
    assert_eq!(
        held.len(),
        n,
        "no free port on 127.0.0.1 from 10000 to 29999"
    );
    held
}

/// GETs `/metrics` from `addr` over plain HTTP/1.1; the body, or `None` if unreachable.
fn scrape(addr: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// A client whose request head arrives in pieces: the server must not answer before the
/// blank line. (It answered after its first read: the rest of the head then sat unread when
/// it closed, the kernel reset the connection, and the client lost the answer: a scrape that
/// failed now and then in CI.)
fn answers_only_after_the_whole_head(addr: &str) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the server answered a half-sent request head: {other:?}"),
    }
    write!(s, "Connection: close\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .expect("the answer, once the head is whole");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}

/// Polls `f` every 50 ms until it returns something; panics with `report()` after 20 s.
fn poll<T>(what: &str, report: impl Fn() -> String, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > Duration::from_secs(20) {
            panic!("timed out waiting for: {what}\n{}", report());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn datos_serves_metrics_that_follow_a_failover() {
    let exe = datos_exe();
    let dir = tempfile::tempdir().unwrap();
    let names = free_names(3).unwrap();
    let held_metrics = low_ports(3);
    let scrapes: Vec<String> = held_metrics
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    drop(held_metrics);
    let mut procs: Vec<Option<Proc>> = (0..3)
        .map(|i| {
            let mut cmd = datos_node(
                &exe,
                &names[i],
                &names.join(","),
                &dir.path().join(format!("d{i}")),
            );
            cmd.args(["--cookie", "metrics-test-cookie", "--heartbeat-ms", "50"])
                .args(["--metrics-addr", &scrapes[i]])
                .env("RUST_LOG", "warn");
            let log = dir.path().join(format!("lider{i}.stderr"));
            Some(Proc::spawn(cmd, &format!("lider{i}"), &log).expect("spawn datos"))
        })
        .collect();
    let report = |procs: &[Option<Proc>]| -> String {
        procs
            .iter()
            .flatten()
            .map(|p| p.diagnose(10, 10))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Reads every running node's is_leader and term: Some when exactly one leads and all
    // agree on its term.
    let leader_of = |procs: &[Option<Proc>], min_term: f64| -> Option<(usize, f64)> {
        let mut leaders = Vec::new();
        let mut terms = Vec::new();
        for (i, p) in procs.iter().enumerate() {
            if p.is_none() {
                continue;
            }
            let text = scrape(&scrapes[i])?;
            if value(&text, "gen_leader_is_leader", &names[i]) == 1.0 {
                leaders.push(i);
            }
            terms.push(value(&text, "gen_leader_term", &names[i]));
        }
        let t = terms[0];
        (leaders.len() == 1 && t > min_term && terms.iter().all(|x| *x == t))
            .then(|| (leaders[0], t))
    };
    let (first, term) = poll(
        "one leader in the scraped metrics",
        || report(&procs),
        || leader_of(&procs, 0.0),
    );
    let text = scrape(&scrapes[first]).unwrap();
    assert!(changes(&text, &names[first], "elected") >= 1.0, "{text}");
    answers_only_after_the_whole_head(&scrapes[first]);

    // SIGKILL the leader: another node's gauge goes to 1, in a newer term.
    procs[first].as_mut().unwrap().kill();
    procs[first] = None;
    let (second, term2) = poll(
        "a new leader in the scraped metrics",
        || report(&procs),
        || leader_of(&procs, term),
    );
    assert_ne!(second, first);
    assert!(term2 > term);
    for (i, _) in procs.iter().enumerate().filter(|(_, p)| p.is_some()) {
        let text = scrape(&scrapes[i]).unwrap();
        assert!(changes(&text, &names[i], "leader_lost_") >= 1.0, "{text}");
    }
}

/// One `datos` node (the only candidate) serving `/metrics` on a free port, started through
/// `sh -c "<shell_prefix> && exec datos …"` when a prefix (a `ulimit`) is given. Returns the process and the scrape address,
/// once a scrape answers.
fn lone_datos(dir: &std::path::Path, shell_prefix: Option<&str>) -> (Proc, String) {
    let exe = datos_exe();
    let name = free_names(1).unwrap().remove(0);
    let held = low_ports(1);
    let addr = held[0].local_addr().unwrap().to_string();
    drop(held);
    let node = datos_node(&exe, &name, &name, &dir.join("d"));
    let mut cmd = match shell_prefix {
        None => std::process::Command::new(node.get_program()),
        Some(prefix) => {
            let mut c = std::process::Command::new("sh");
            c.arg("-c")
                .arg(format!("{prefix} && exec \"$0\" \"$@\""))
                .arg(node.get_program());
            c
        }
    };
    cmd.args(node.get_args())
        .args(["--cookie", "metrics-test-cookie", "--metrics-addr", &addr])
        .env("RUST_LOG", "warn");
    let p = Proc::spawn(cmd, "lider", &dir.join("lider.stderr")).expect("spawn datos");
    // The endpoint is up before the node starts: wait for the node too (its `ready` event),
    // or a flood sent at once can take the descriptors its data directory needs.
    poll(
        "the metrics endpoint and the node",
        || p.diagnose(10, 10),
        || {
            p.find(0, |e| e["event"] == "ready")
                .and_then(|_| scrape(&addr))
        },
    );
    (p, addr)
}

/// CPU time (user + system) of process `pid`, in clock ticks (1/100 s), from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The endpoint reads at most 64 connections at once: with 64 idle ones open (each held until
/// its 2 s head timeout), a scrape waits in the listen backlog, and is answered once a slot
/// frees up. (It spawned a task per connection without limit: the scrape was answered at once
/// however many connections were held.)
#[test]
fn datos_metrics_endpoint_holds_a_bounded_number_of_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (_p, addr) = lone_datos(dir.path(), None);
    let idle: Vec<std::net::TcpStream> = (0..64)
        .map(|_| std::net::TcpStream::connect(&addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let body = scrape(&addr).expect("the scrape is answered once a slot frees up");
    let waited = start.elapsed();
    assert!(body.contains("gen_leader_term"), "{body}");
    assert!(
        waited >= Duration::from_secs(1),
        "answered after {waited:?} with 64 connections held: the endpoint is not bounded"
    );
    drop(idle);
}

/// Out of file descriptors, the endpoint's accept fails until one frees up: it retries after
/// a pause instead of at once (it spun a core at 100 % until then).
#[test]
fn datos_metrics_endpoint_does_not_spin_when_out_of_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let (p, addr) = lone_datos(dir.path(), Some("ulimit -n 48"));
    // More connections than descriptors left: accept fails with EMFILE while the ones it
    // took wait (up to 2 s) for their request heads.
    let idle: Vec<std::net::TcpStream> = (0..60)
        .map(|_| std::net::TcpStream::connect(&addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(p.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(p.pid()) - before;
    assert!(
        used < 30,
        "datos used {used} ticks (1/100 s) of CPU in 1 s while out of descriptors:\n{}",
        p.diagnose(10, 10)
    );
    drop(idle);
    // And it serves again once the descriptors are back.
    poll(
        "a scrape after the flood",
        || p.diagnose(10, 10),
        || scrape(&addr),
    );
}
