//! The etcd backend on real processes: three `datos --backend etcd` nodes against a real etcd
//! (`testkit::etcd`: random ports on 127.0.0.1, a temp data dir, killed on every exit path),
//! driven through their stdin and observed through their `--json` events. Without an `etcd`
//! binary the tests return early with a message, unless `GEN_LEADER_REQUIRE_ETCD` is set.
//!
//! The safety checks read the events' wall-clock times (`at_ms`; one machine, one clock): a
//! stopped leader's last announced lease end (`lease {until_ms}`) must not pass the new
//! leader's `elected`, and no leader-side effect of the old leadership (a served `leader_call`,
//! a broadcast a follower receives) may come after it.
//!
//! Every test prints its measured figures (`cargo test ... -- --nocapture`). The tests run one
//! at a time (a shared lock): they measure timings, and each starts its own etcd.
#![cfg(feature = "etcd")]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testkit::datos::{datos_exe, datos_node, free_names, last_view, Observed, View};
use testkit::etcd::EtcdCluster;
use testkit::{Event as Ev, Proc};

const COOKIE: &str = "etcd-process-test-cookie";
/// The etcd lease TTL of most tests: etcd's practical minimum, so failovers are quick.
const TTL_S: u64 = 2;
/// What a failover may take beyond the TTL: etcd revokes expired leases in a loop that runs
/// every 500 ms, then the next campaigner's campaign returns, its key is checked and it runs
/// `elected`; the rest is a loaded 2-core CI machine.
const SLACK_MS: f64 = 1_000.0;
/// Generous deadline for anything that is not being measured.
const WAIT: Duration = Duration::from_secs(20);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Now, in wall-clock Unix milliseconds (the unit of the events' `at_ms`).
fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

fn at_ms(e: &Ev) -> f64 {
    e.v["at_ms"].as_f64().expect("every event carries at_ms")
}

/// Whether the `datos` binary at `exe` has the etcd backend: asked for it without endpoints,
/// an etcd build names the missing flag, a build without the feature says so.
fn has_etcd(exe: &std::path::Path) -> bool {
    let out = std::process::Command::new(exe)
        .args(["--name", "a@127.0.0.1:1", "--candidates", "a@127.0.0.1:1"])
        .args(["--cookie", "x", "--backend", "etcd"])
        .output();
    out.is_ok_and(|o| String::from_utf8_lossy(&o.stderr).contains("needs --etcd-endpoints"))
}

/// The `datos` example built with the `etcd` feature. `target/<profile>/examples/datos` is
/// whichever feature set cargo linked last (a `cargo test` without the feature after one with
/// it leaves a datos without etcd there, and a later fresh build does not link it again), so
/// when it lacks etcd, the newest of cargo's hashed builds next to it that has etcd is used.
fn etcd_datos_exe() -> PathBuf {
    let exe = datos_exe();
    if has_etcd(&exe) {
        return exe;
    }
    let dir = exe.parent().expect("examples/").to_path_buf();
    let mut builds: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("datos-") && !n.contains('.'))
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    builds.sort_by_key(|b| std::cmp::Reverse(b.0));
    builds
        .into_iter()
        .map(|(_, p)| p)
        .find(|p| has_etcd(p))
        .unwrap_or_else(|| {
            panic!(
                "no datos example with the etcd feature in {}: cargo build --features etcd \
                 --example datos",
                dir.display()
            )
        })
}

/// Three `datos --backend etcd` processes on one election; every child is killed on drop.
struct Cluster {
    names: Vec<String>,
    procs: Vec<Proc>,
    // Deleted after the children are killed (fields drop in declaration order).
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts three nodes at once (etcd decides: no start order needed) on `election` with a
    /// TTL of `ttl_s`, and waits until they agree on a leader. Returns it and its term (the
    /// leader key's create revision).
    fn start(etcd: &EtcdCluster, election: &str, ttl_s: u64) -> (Cluster, String, u64) {
        Cluster::start_hb(etcd, election, ttl_s, 50)
    }

    /// [`Cluster::start`] with a heartbeat of `heartbeat_ms` (the failure timeout is 6 of them).
    fn start_hb(
        etcd: &EtcdCluster,
        election: &str,
        ttl_s: u64,
        heartbeat_ms: u64,
    ) -> (Cluster, String, u64) {
        let exe = etcd_datos_exe();
        let names = free_names(3).expect("bind 127.0.0.1:0");
        let candidates = names.join(",");
        let dir = tempfile::tempdir().expect("tempdir");
        let endpoints = etcd.endpoints().join(",");
        let procs = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut cmd = datos_node(&exe, name, &candidates, &dir.path().join(i.to_string()));
                cmd.args(["--cookie", COOKIE])
                    .args(["--heartbeat-ms", &heartbeat_ms.to_string()])
                    .args(["--backend", "etcd", "--etcd-endpoints", &endpoints])
                    .args(["--etcd-election", election])
                    .args(["--etcd-ttl-s", &ttl_s.to_string()])
                    .env("RUST_LOG", "warn,gen_leader=info");
                let log: PathBuf = dir.path().join(format!("lider{i}.stderr"));
                Proc::spawn(cmd, &format!("lider{i}"), &log).expect("spawn the datos example")
            })
            .collect();
        let c = Cluster {
            names,
            procs,
            _dir: dir,
        };
        let (leader, term) = c.wait_agreed(WAIT, &[0, 1, 2], "initial agreement", |_, _| true);
        (c, leader, term)
    }

    fn index_of(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} is not a member"))
    }

    fn events(&self, i: usize) -> Vec<Ev> {
        self.procs[i].events()
    }

    fn type_line(&mut self, i: usize, line: &str) {
        self.procs[i].send_line(line).expect("write to stdin");
    }

    /// The first event of node `i` matching `pred`, waiting for it.
    fn wait_event(&self, i: usize, what: &str, pred: impl Fn(&Ev) -> bool) -> Ev {
        let mut found = None;
        self.wait_until(WAIT, what, |c| {
            found = c.events(i).into_iter().find(|e| pred(e));
            found.is_some()
        });
        found.expect("set when the wait succeeds")
    }

    /// The `reply` or `error` event of node `i` for `line`, waiting for it.
    fn outcome(&self, i: usize, line: &str) -> Ev {
        self.wait_event(i, &format!("the outcome of {line:?} on node {i}"), |e| {
            matches!(e.event(), "reply" | "error") && e.str("request") == Some(line)
        })
    }

    /// Sends `line` from node `i` and waits for its reply; returns the reply text.
    fn call(&mut self, i: usize, line: &str) -> String {
        self.type_line(i, line);
        let e = self.outcome(i, line);
        assert_eq!(
            e.event(),
            "reply",
            "leader_call {line:?} failed: {}\n{}",
            e.v,
            self.report()
        );
        e.str("reply").unwrap_or("").to_string()
    }

    /// Types `prefix-1`, `prefix-2`, ... on node `i` until one is answered with a reply (a
    /// call made while there is no leader fails at its deadline); how long it took.
    fn call_until_served(&mut self, i: usize, prefix: &str) -> Duration {
        let start = Instant::now();
        for k in 1.. {
            let line = format!("{prefix}-{k}");
            self.type_line(i, &line);
            if self.outcome(i, &line).event() == "reply" {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < WAIT,
                "no call served within {WAIT:?}\n{}",
                self.report()
            );
        }
        unreachable!()
    }

    /// Every `leader_call` served and `from_leader` received in `term`, after `after_ms`.
    fn side_effects_after(&self, term: u64, after_ms: f64) -> Vec<String> {
        (0..3)
            .flat_map(|i| {
                self.events(i)
                    .into_iter()
                    .filter(|e| matches!(e.event(), "leader_call" | "from_leader" | "elected"))
                    .filter(|e| e.term() == term && at_ms(e) > after_ms)
                    .map(move |e| format!("lider{i}: {}", e.v))
            })
            .collect()
    }

    /// The end of the last lease node `i` announced for `term` (`f64::MIN` if none).
    fn last_until(&self, i: usize, term: u64) -> f64 {
        self.events(i)
            .iter()
            .filter(|e| e.event() == "lease" && e.term() == term)
            .filter_map(|e| e.v["until_ms"].as_f64())
            .fold(f64::MIN, f64::max)
    }
}

impl Observed for Cluster {
    fn view(&self, i: usize) -> View {
        let evs = self.events(i);
        last_view(evs.iter().map(|e| &e.v))
    }

    fn report(&self) -> String {
        self.procs.iter().map(|p| p.diagnose(25, 20)).collect()
    }
}

/// Checks the events every node printed: JSON only, `at_ms` on each, terms never down.
fn check_events(c: &Cluster) {
    for (i, p) in c.procs.iter().enumerate() {
        let evs = p.events();
        for e in &evs {
            assert!(
                e.event() != "not_json" && e.v["at_ms"].is_number() && e.v["term"].is_u64(),
                "lider{i}: malformed event {}",
                e.v
            );
            if matches!(e.event(), "ready" | "leader" | "refused" | "etcd") {
                assert!(
                    e.v.get("etcd_unavailable").is_some(),
                    "lider{i}: a view event without etcd_unavailable: {}",
                    e.v
                );
            }
        }
        let terms: Vec<u64> = evs
            .iter()
            .filter(|e| e.event() == "leader" && !e.v["leader"].is_null())
            .map(Ev::term)
            .collect();
        assert!(
            terms.windows(2).all(|w| w[0] <= w[1]),
            "lider{i}'s term went down: {terms:?}"
        );
    }
}

#[test]
fn etcd_sigkill_leader_new_leader_within_the_ttl() {
    let _serial = serial();
    let Some(etcd) = EtcdCluster::single() else {
        return;
    };
    let (mut c, leader, term) = Cluster::start(&etcd, "gl-process/kill", TTL_S);
    let li = c.index_of(&leader);
    let callers: Vec<usize> = (0..3).filter(|&i| i != li).collect();
    assert_eq!(c.call(callers[0], "antes"), "ok antes");
    assert!(
        c.wait_event(li, "the leader's lease", |e| e.event() == "lease")
            .v["until_ms"]
            .is_number(),
        "the etcd leader announces its lease"
    );

    let killed_ms = wall_ms();
    c.procs[li].kill();
    let (new_leader, new_term) = c.wait_agreed(WAIT, &callers, "the survivors elect", |l, t| {
        l != leader && t > term
    });
    let ni = c.index_of(&new_leader);
    let elected = c.wait_event(ni, "the new leader's elected", |e| {
        e.event() == "elected" && e.term() == new_term
    });
    let failover = at_ms(&elected) - killed_ms;
    let bound = TTL_S as f64 * 1000.0 + SLACK_MS;
    eprintln!(
        "[etcd kill] SIGKILL of the leader -> new leader elected after {failover:.0} ms \
         (TTL {TTL_S} s, bound {bound:.0} ms); revision {term} -> {new_term}"
    );
    assert!(
        failover <= bound,
        "failover took {failover:.0} ms, over TTL + {SLACK_MS} ms = {bound:.0} ms\n{}",
        c.report()
    );
    let other = *callers.iter().find(|&&i| i != ni).expect("a follower");
    assert_eq!(c.call(other, "después"), "ok después");
    check_events(&c);
}

#[test]
fn etcd_sigstop_leader_replaced_and_on_sigcont_stops_acting_at_once() {
    let _serial = serial();
    let Some(etcd) = EtcdCluster::single() else {
        return;
    };
    let (mut c, leader, term) = Cluster::start(&etcd, "gl-process/stop", TTL_S);
    let li = c.index_of(&leader);
    let followers: Vec<usize> = (0..3).filter(|&i| i != li).collect();
    // Calls typed on the leader itself: it serves them and broadcasts to the followers.
    for line in ["uno", "dos"] {
        assert_eq!(c.call(li, line), format!("ok {line}"));
    }
    c.wait_event(li, "the leader's lease", |e| e.event() == "lease");

    let stopped_ms = wall_ms();
    assert!(c.procs[li].signal("STOP"), "kill -STOP");
    // Typed right after the stop (a stop can take a few ms to land on a loaded machine: the
    // old leader may still serve this one, before its successor exists).
    c.type_line(li, "congelado");
    let (new_leader, new_term) = c.wait_agreed(WAIT, &followers, "the followers elect", |l, t| {
        l != leader && t > term
    });
    let ni = c.index_of(&new_leader);
    let elected = c.wait_event(ni, "the new leader's elected", |e| {
        e.event() == "elected" && e.term() == new_term
    });
    let replaced = at_ms(&elected) - stopped_ms;
    let bound = TTL_S as f64 * 1000.0 + SLACK_MS;
    assert!(
        replaced <= bound,
        "the frozen leader was replaced after {replaced:.0} ms, over {bound:.0} ms\n{}",
        c.report()
    );
    // The new leader serves a follower's call while the old one is still frozen.
    let caller = *followers.iter().find(|&&i| i != ni).expect("a follower");
    assert_eq!(c.call(caller, "nuevo"), "ok nuevo");
    // Typed while it is frozen, after its successor started: read (and called) the moment it
    // resumes, when its old lease is long over.
    c.type_line(li, "dormido");

    let resumed_ms = wall_ms();
    assert!(c.procs[li].signal("CONT"), "kill -CONT");
    c.type_line(li, "despierto");
    let down = c.wait_event(li, "the old leader's stepped_down", |e| {
        e.event() == "stepped_down" && e.term() == term
    });
    let outcomes: Vec<String> = ["congelado", "dormido", "despierto"]
        .iter()
        .map(|line| {
            let o = c.outcome(li, line);
            let text = o.v["reply"].as_str().or(o.str("error")).unwrap_or("?");
            format!("{line:?} -> {text}")
        })
        .collect();
    let last_until = c.last_until(li, term);
    eprintln!(
        "[etcd stop] SIGSTOP of the leader -> new leader elected after {replaced:.0} ms (TTL \
         {TTL_S} s); the old lease ended {:.0} ms before that; on SIGCONT its stepped_down \
         ({}) came after {:.0} ms; calls typed on it: {}",
        at_ms(&elected) - last_until,
        down.str("reason").unwrap_or("?"),
        at_ms(&down) - resumed_ms,
        outcomes.join(", "),
    );
    assert!(
        last_until <= at_ms(&elected),
        "the old leader's lease ran until {last_until} ms, past the new leader's elected at {} \
         ms\n{}",
        at_ms(&elected),
        c.report()
    );
    // "At once": what the resumed process does first is notice its lease is over.
    assert!(
        at_ms(&down) - resumed_ms <= 1_000.0,
        "the resumed leader's stepped_down came {:.0} ms after SIGCONT\n{}",
        at_ms(&down) - resumed_ms,
        c.report()
    );
    let late = c.side_effects_after(term, at_ms(&elected));
    assert!(
        late.is_empty(),
        "side effects of the old leadership (revision {term}) after the new leader started \
         at {} ms: {late:#?}\n{}",
        at_ms(&elected),
        c.report()
    );
    // The lines typed on the old leader after its successor started were served, if at
    // all, by the new leader (in its term): the frozen one stopped acting at once.
    for line in ["dormido", "despierto"] {
        if c.outcome(li, line).event() == "reply" {
            let served: Vec<(usize, u64)> = (0..3)
                .flat_map(|i| {
                    c.events(i)
                        .into_iter()
                        .filter(|e| e.event() == "leader_call" && e.str("request") == Some(line))
                        .map(move |e| (i, e.term()))
                })
                .collect();
            assert_eq!(
                served,
                vec![(ni, new_term)],
                "{line:?} must be served once, by the new leader\n{}",
                c.report()
            );
        }
    }
    check_events(&c);
}

#[test]
fn etcd_restarted_the_cluster_recovers() {
    let _serial = serial();
    let Some(mut etcd) = EtcdCluster::single() else {
        return;
    };
    let (mut c, leader, term) = Cluster::start(&etcd, "gl-process/restart", TTL_S);
    let li = c.index_of(&leader);
    let follower = (0..3).rev().find(|&i| i != li).expect("a follower");
    assert_eq!(c.call(follower, "antes"), "ok antes");

    let killed_ms = wall_ms();
    etcd.member(0).kill();
    // The leader cannot renew: it stops acting before the TTL runs out on etcd.
    let down = c.wait_event(li, "the leader steps down while etcd is down", |e| {
        e.event() == "stepped_down" && e.term() == term
    });
    let stepped = at_ms(&down) - killed_ms;
    // The view events say why.
    let unavailable = c.wait_event(li, "an etcd event naming the outage", |e| {
        e.event() == "etcd" && e.v["etcd_unavailable"].is_object()
    });
    assert!(
        stepped < TTL_S as f64 * 1000.0,
        "the leader stepped down {stepped:.0} ms after etcd was killed: not before the TTL\n{}",
        c.report()
    );

    etcd.member(0)
        .restart()
        .expect("etcd restarts on its data dir");
    let back_ms = wall_ms();
    let served = c.call_until_served(follower, "después");
    let (l2, t2) = c.wait_agreed(WAIT, &[0, 1, 2], "one leader again", |_, _| true);
    let reachable = c.wait_event(li, "an etcd event saying it is reachable again", |e| {
        e.event() == "etcd" && e.v["etcd_unavailable"].is_null() && at_ms(e) > back_ms
    });
    eprintln!(
        "[etcd restart] etcd killed: the leader stepped down after {stepped:.0} ms (TTL \
         {TTL_S} s), view said {}; etcd back: a follower's call served after {} ms, 'etcd \
         reachable' after {:.0} ms; leader {} (revision {term}) -> {} (revision {t2})",
        unavailable.v["etcd_unavailable"],
        served.as_millis(),
        at_ms(&reachable) - back_ms,
        c.procs[li].label(),
        c.procs[c.index_of(&l2)].label(),
    );
    assert!(t2 >= term, "the revision went down: {term} -> {t2}");
    check_events(&c);
}

/// The index of the etcd member that is raft leader (asked through etcd's client).
fn raft_leader(endpoints: &[String]) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for (i, ep) in endpoints.iter().enumerate() {
            let Ok(mut client) = etcd_client::Client::connect([ep], None).await else {
                continue;
            };
            let Ok(s) = client.status().await else {
                continue;
            };
            if s.header().is_some_and(|h| h.member_id() == s.leader()) {
                return i;
            }
        }
        panic!("no etcd member says it is the raft leader");
    })
}

/// Kills etcd member `victim`, waits a TTL and a second, and checks that the gen-leader leader and its
/// term did not change anywhere and that a follower's call is served.
fn kill_member_and_check(
    c: &mut Cluster,
    etcd: &mut EtcdCluster,
    victim: usize,
    what: &str,
    (leader, term): (&str, u64),
    ttl: Duration,
) {
    let li = c.index_of(leader);
    let follower = (0..3).rev().find(|&i| i != li).expect("a follower");
    let marks: Vec<usize> = c.procs.iter().map(Proc::mark).collect();
    let killed = Instant::now();
    etcd.member(victim).kill();
    let watched = ttl + Duration::from_secs(1);
    c.wait_until(WAIT, "a TTL and a second", |_| killed.elapsed() >= watched);
    let line = format!("tras-{what}");
    let t = Instant::now();
    assert_eq!(c.call(follower, &line), format!("ok {line}"));
    let call_ms = t.elapsed().as_secs_f64() * 1e3;
    let changes: Vec<String> = (0..3)
        .flat_map(|i| {
            c.events(i)
                .into_iter()
                .skip(marks[i])
                .filter(|e| {
                    matches!(
                        e.event(),
                        "leader" | "elected" | "surrendered" | "stepped_down"
                    )
                })
                .map(move |e| format!("lider{i}: {}", e.v))
        })
        .collect();
    let views: Vec<View> = (0..3).map(|i| c.view(i)).collect();
    eprintln!(
        "[etcd 3 members] {what} (member {victim}) killed: {} leadership change(s) in {watched:?}, \
         a follower's call then took {call_ms:.1} ms; views {views:?}",
        changes.len()
    );
    assert!(
        changes.is_empty(),
        "killing {what} changed the leadership: {changes:#?}\n{}\n{}",
        c.report(),
        etcd.diagnose(10)
    );
    assert_eq!(
        c.agreed(&[0, 1, 2]),
        Some((leader.to_string(), term)),
        "{}",
        c.report()
    );
}

#[test]
fn etcd_three_members_one_killed_changes_nothing() {
    let _serial = serial();
    let Some(mut etcd) = EtcdCluster::three() else {
        return;
    };
    // A longer TTL: when the raft leader dies, etcd elects another (about a second, with the
    // harness's 1 s election timeout; several on a loaded machine: with 4 s, one run in six
    // of the suite saw the leader's lease end meanwhile) and keep-alives wait meanwhile.
    let ttl_s = 6;
    let ttl = Duration::from_secs(ttl_s);
    let (mut c, leader, term) = Cluster::start_hb(&etcd, "gl-process/members", ttl_s, 100);
    let li = c.index_of(&leader);
    let follower = (0..3).rev().find(|&i| i != li).expect("a follower");
    assert_eq!(c.call(follower, "antes"), "ok antes");

    // A member that is not etcd's raft leader.
    let raft = raft_leader(&etcd.endpoints());
    let victim = (0..3).find(|&m| m != raft).expect("a follower member");
    kill_member_and_check(
        &mut c,
        &mut etcd,
        victim,
        "a raft follower",
        (&leader, term),
        ttl,
    );
    etcd.member(victim)
        .restart()
        .expect("the member restarts on its data dir");

    // Then the raft leader (the three are up again: killing it leaves a majority).
    let raft = raft_leader(&etcd.endpoints());
    kill_member_and_check(
        &mut c,
        &mut etcd,
        raft,
        "the raft leader",
        (&leader, term),
        ttl,
    );
    check_events(&c);
}
