//! Real OS processes: the `datos` example binary run as separate nodes, driven through its
//! stdin and observed through its `--json` stdout, with SIGKILL, SIGSTOP/SIGCONT and
//! restarts.
//!
//! Every wait is on an observed event with a generous deadline; nothing sleeps and hopes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use testkit::datos::{datos_exe, datos_node, free_names, last_view, Observed, View};
use testkit::{Event as Ev, Proc};

const COOKIE: &str = "multiprocess-test-cookie";
/// Heartbeat passed to every node; the failure timeout is the library default of 6
/// heartbeats (300 ms).
const HEARTBEAT_MS: u64 = 50;
/// Generous deadline for anything that is not being measured (a loaded 2-core CI box).
const WAIT: Duration = Duration::from_secs(15);

/// One node: its name and data directory, and a child process per incarnation (restarts
/// reuse the name and data directory); the last one may be running.
struct Node {
    name: String,
    short: String,
    data_dir: PathBuf,
    log: PathBuf,
    runs: Vec<Proc>,
}

impl Node {
    fn current(&self) -> Option<&Proc> {
        self.runs.last().filter(|p| p.is_running())
    }

    fn current_mut(&mut self) -> &mut Proc {
        let short = &self.short;
        self.runs
            .last_mut()
            .filter(|p| p.is_running())
            .unwrap_or_else(|| panic!("{short} is not running"))
    }
}

/// A cluster of `datos` processes; every child is killed on drop (testkit's `Proc`), even
/// on panic.
struct Cluster {
    exe: PathBuf,
    candidates: String,
    procs: Vec<Node>,
    // Deleted after the children are killed (fields drop in declaration order).
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `n` candidates `lider0..`, on ports picked by binding 127.0.0.1:0. Nothing runs yet.
    fn new(n: usize) -> Self {
        let names = free_names(n).expect("bind 127.0.0.1:0");
        let dir = tempfile::tempdir().expect("tempdir");
        let procs = names
            .iter()
            .enumerate()
            .map(|(i, name)| Node {
                name: name.clone(),
                short: format!("lider{i}"),
                data_dir: dir.path().join(format!("lider{i}")),
                log: dir.path().join(format!("lider{i}.stderr")),
                runs: Vec::new(),
            })
            .collect();
        Cluster {
            exe: datos_exe(),
            candidates: names.join(","),
            procs,
            _dir: dir,
        }
    }

    /// Starts `n` nodes one after the other, each once the previous one listens: the first
    /// finds nobody up and elects itself, the others join it, so lider0 leads
    /// deterministically. Returns the agreed leader and term.
    fn start(n: usize) -> (Self, String, u64) {
        let mut c = Cluster::new(n);
        for i in 0..n {
            c.spawn(i);
            c.wait_until(WAIT, &format!("{} ready", c.procs[i].short), |c| {
                c.has(i, |e| e.event() == "ready")
            });
        }
        let all: Vec<usize> = (0..n).collect();
        let (leader, term) = c.wait_agreed(WAIT, &all, "initial agreement", |_, _| true);
        assert_eq!(
            leader, c.procs[0].name,
            "the first candidate, started first, must lead"
        );
        (c, leader, term)
    }

    /// Starts (or restarts, with the same name and data directory) node `i`.
    fn spawn(&mut self, i: usize) {
        let p = &mut self.procs[i];
        assert!(p.current().is_none(), "{} is already running", p.short);
        let mut cmd = datos_node(&self.exe, &p.name, &self.candidates, &p.data_dir);
        cmd.args(["--cookie", COOKIE])
            .args(["--heartbeat-ms", &HEARTBEAT_MS.to_string()])
            .env("RUST_LOG", "warn,gen_leader=info");
        let label = format!("{}#{}", p.short, p.runs.len() + 1);
        // Only JSON may appear on stdout: anything else is recorded as a `not_json` event,
        // shows up in failure dumps and fails `assert_terms_monotonic`.
        p.runs
            .push(Proc::spawn(cmd, &label, &p.log).expect("spawn the datos example"));
    }

    fn sigkill(&mut self, i: usize) -> Instant {
        self.procs[i].current_mut().kill();
        Instant::now()
    }

    fn sigstop(&mut self, i: usize) -> Instant {
        assert!(self.procs[i].current_mut().signal("STOP"), "kill -STOP");
        Instant::now()
    }

    fn sigcont(&mut self, i: usize) -> Instant {
        assert!(self.procs[i].current_mut().signal("CONT"), "kill -CONT");
        Instant::now()
    }

    /// Types `line` on node `i`'s stdin (it becomes a `leader_call`).
    fn type_line(&mut self, i: usize, line: &str) {
        self.procs[i]
            .current_mut()
            .send_line(line)
            .expect("write to stdin");
    }

    /// The events of node `i`'s current incarnation.
    fn events(&self, i: usize) -> Vec<Ev> {
        self.procs[i]
            .runs
            .last()
            .map(Proc::events)
            .unwrap_or_default()
    }

    fn has(&self, i: usize, pred: impl Fn(&Ev) -> bool) -> bool {
        self.procs[i]
            .runs
            .last()
            .is_some_and(|p| p.with_events(|evs| evs.iter().any(pred)))
    }

    /// Every node's view, recent events and stderr tail, for failure messages.
    fn dump(&self) -> String {
        let mut s = String::new();
        for (i, p) in self.procs.iter().enumerate() {
            let run = p.current();
            s += &format!(
                "--- {} ({}, incarnation {}, running {}, stopped {}): view {:?}\n",
                p.short,
                p.name,
                p.runs.len(),
                run.is_some(),
                run.is_some_and(Proc::is_stopped),
                self.view(i)
            );
            let evs: Vec<(usize, Ev)> = p
                .runs
                .iter()
                .enumerate()
                .flat_map(|(k, r)| r.events().into_iter().map(move |e| (k + 1, e)))
                .collect();
            for (k, e) in evs.iter().rev().take(15).rev() {
                s += &format!("    #{k} {}\n", e.v);
            }
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            for l in &lines[lines.len().saturating_sub(15)..] {
                s += &format!("    stderr: {l}\n");
            }
        }
        s
    }

    /// Sends `line` from node `i` and waits for its reply; returns the reply text.
    fn call(&mut self, i: usize, line: &str) -> String {
        self.type_line(i, line);
        let mut reply = None;
        self.wait_until(WAIT, &format!("the reply to {line:?} on node {i}"), |c| {
            reply = c
                .events(i)
                .into_iter()
                .find(|e| matches!(e.event(), "reply" | "error") && e.str("request") == Some(line));
            reply.is_some()
        });
        let e = reply.unwrap();
        assert_eq!(
            e.event(),
            "reply",
            "leader_call {line:?} failed: {}\n{}",
            e.v,
            self.dump()
        );
        e.str("reply").unwrap().to_string()
    }

    /// The term reservation persisted in node `i`'s data directory.
    fn persisted_term(&self, i: usize) -> u64 {
        term_file(&self.procs[i].data_dir).0
    }

    /// Asserts that every node's reported terms never went down, across restarts, and that
    /// stdout carried only JSON events with the common fields.
    fn assert_terms_monotonic(&self) {
        for p in &self.procs {
            let evs: Vec<Ev> = p.runs.iter().flat_map(Proc::events).collect();
            for e in evs.iter() {
                assert!(
                    e.event() != "not_json"
                        && e.str("node") == Some(&p.name)
                        && e.v["term"].is_u64()
                        && e.v["t_ms"].is_number()
                        && (e.v["leader"].is_null() || e.v["leader"].is_string()),
                    "{}: malformed event {}",
                    p.short,
                    e.v
                );
            }
            // Skipped: the placeholder view a node publishes before its actor has loaded the
            // persisted term (no leader, term 0); `Node::start` returns with it, so a
            // restarted node's `ready` (and possibly its first `leader` event) reads term 0.
            let terms: Vec<u64> = evs
                .iter()
                .filter(|e| matches!(e.event(), "leader" | "ready"))
                .filter(|e| !(e.v["leader"].is_null() && e.term() == 0))
                .map(Ev::term)
                .collect();
            assert!(
                terms.windows(2).all(|w| w[0] <= w[1]),
                "{}'s term went down: {terms:?}",
                p.short
            );
        }
    }
}

impl Observed for Cluster {
    /// Node `i`'s current view: the leader and term of its last `leader` (or `ready`) event.
    fn view(&self, i: usize) -> View {
        let evs = self.events(i);
        last_view(evs.iter().map(|e| &e.v))
    }

    fn report(&self) -> String {
        self.dump()
    }
}

#[test]
fn sigkill_leader_elects_new_leader() {
    let (mut c, leader, term) = Cluster::start(3);
    eprintln!("initial leader {leader} term {term}");
    assert_eq!(c.call(2, "hola"), "ok hola");

    let killed_at = c.sigkill(0);
    let old = c.procs[0].name.clone();
    let second = c.procs[1].name.clone();
    let (new_leader, new_term) =
        c.wait_agreed(WAIT, &[1, 2], "a new leader after SIGKILL", |l, t| {
            l != old && t > term
        });
    eprintln!(
        "SIGKILL: survivors agreed on {new_leader} term {new_term} {} ms after the kill",
        killed_at.elapsed().as_millis()
    );
    assert_eq!(new_leader, second, "the second candidate takes over");
    // The new leader ran handle_down for the old one.
    c.wait_until(WAIT, "the new leader's DOWN of the old leader", |c| {
        c.has(1, |e| e.event() == "down" && e.str("down") == Some(&old))
    });

    assert_eq!(c.call(2, "adios"), "ok adios");
    let served = c.events(1);
    assert!(
        served
            .iter()
            .any(|e| e.event() == "leader_call" && e.str("request") == Some("adios")),
        "the new leader served the call"
    );
    // The new leader had the history from the old one: its Synch reached node 2 on surrender.
    assert!(
        c.has(2, |e| e.event() == "surrendered"
            && e.term() == new_term
            && e.v["synch"].as_array().is_some_and(|s| s
                .iter()
                .any(|m| m == "vuestro lider dice: hola"))),
        "the new leader's Synch carries the history\n{}",
        c.dump()
    );
    c.assert_terms_monotonic();
}

#[test]
fn sigstop_leader_elects_new_leader_within_failure_timeout() {
    let (mut c, _leader, term) = Cluster::start(3);
    let old = c.procs[0].name.clone();

    let stopped_at = c.sigstop(0);
    let (new_leader, new_term) = c.wait_agreed(
        Duration::from_secs(3),
        &[1, 2],
        "a new leader within 3 s of SIGSTOP",
        |l, t| l != old && t > term,
    );
    let failover = stopped_at.elapsed();
    // When each survivor first noticed (its first view change after the stop).
    let noticed: Vec<u128> = [1, 2]
        .iter()
        .filter_map(|&i| {
            c.events(i)
                .iter()
                .find(|e| e.event() == "leader" && e.at > stopped_at)
                .map(|e| (e.at - stopped_at).as_millis())
        })
        .collect();
    eprintln!(
        "SIGSTOP: survivors noticed after {noticed:?} ms and agreed on {new_leader} term \
         {new_term} after {} ms (heartbeat {HEARTBEAT_MS} ms, failure timeout {} ms)",
        failover.as_millis(),
        HEARTBEAT_MS * 6
    );
    assert_eq!(
        new_leader, c.procs[1].name,
        "the second candidate takes over"
    );
    assert!(c.call(2, "durante").starts_with("ok"));

    let resumed_at = c.sigcont(0);
    let (final_leader, final_term) = c.wait_agreed(
        Duration::from_secs(5),
        &[0, 1, 2],
        "one leader, agreed by all three, within 5 s of SIGCONT",
        |_, t| t >= new_term,
    );
    eprintln!(
        "SIGCONT: all three agree on {final_leader} term {final_term} {} ms after resuming ({})",
        resumed_at.elapsed().as_millis(),
        if final_leader == old {
            "the resumed first candidate took over again"
        } else {
            "the resumed node joined the new leader"
        }
    );
    assert!(final_term > term);
    // Exactly one node considers itself leader.
    let leaders: Vec<usize> = (0..3)
        .filter(|&i| c.view(i).and_then(|v| v.0) == Some(c.procs[i].name.clone()))
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one leader\n{}", c.dump());
    // The cluster still serves calls.
    assert!(c.call(0, "despues").starts_with("ok"));
    c.assert_terms_monotonic();
}

#[test]
fn restarted_node_rejoins_with_higher_term() {
    let (mut c, leader, term) = Cluster::start(3);
    let first = c.procs[0].name.clone();
    let second = c.procs[1].name.clone();

    // A follower dies and comes back with the same name and data directory.
    c.sigkill(2);
    let (l, before) = c
        .agreed(&[0, 1])
        .expect("the survivors still agree after a follower died");
    assert_eq!((l.as_str(), before), (leader.as_str(), term));
    let persisted_before = c.persisted_term(2);
    assert!(
        persisted_before >= term,
        "the follower persisted the term it accepted ({persisted_before} < {term})"
    );
    c.spawn(2);
    let (l, after) = c.wait_agreed(
        WAIT,
        &[0, 1, 2],
        "the restarted follower rejoins",
        |_, t| t >= before,
    );
    assert_eq!(l, first, "a follower's restart does not change the leader");
    let persisted = c.persisted_term(2);
    eprintln!(
        "follower restart: cluster term {before} -> {after}, lider2's term file {persisted_before} \
         -> {persisted}"
    );
    assert!(persisted >= before, "persisted term {persisted} < {before}");
    assert_eq!(c.call(2, "de vuelta"), "ok de vuelta");

    // The leader dies; the second candidate takes over with a higher term.
    let killed_at = c.sigkill(0);
    let (l, t1) = c.wait_agreed(WAIT, &[1, 2], "a new leader after SIGKILL", |l, t| {
        l != first && t > after
    });
    eprintln!(
        "leader SIGKILL: {l} leads term {t1} after {} ms",
        killed_at.elapsed().as_millis()
    );
    assert_eq!(l, second);

    // The old leader restarts under its name: it joins the sitting leader (no preempt).
    let old_persisted = c.persisted_term(0);
    c.spawn(0);
    let (l, t2) = c.wait_agreed(WAIT, &[0, 1, 2], "the restarted leader rejoins", |_, t| {
        t >= t1
    });
    assert_eq!(
        l, second,
        "without preempt the restarted first candidate follows"
    );
    assert!(
        c.has(0, |e| e.event() == "surrendered"
            && e.str("leader") == Some(&second)),
        "the restarted node surrendered to the sitting leader\n{}",
        c.dump()
    );
    let persisted0 = c.persisted_term(0);
    eprintln!(
        "leader restart: rejoined as a follower of {l} at term {t2}; lider0's term file \
         {old_persisted} -> {persisted0}"
    );
    assert!(persisted0 >= t1 && persisted0 >= old_persisted);
    assert_eq!(c.call(0, "otra vez"), "ok otra vez");
    c.assert_terms_monotonic();
}

/// The elected/surrendered events of node `i`'s current incarnation, from event `from` on, as
/// `(event, leader, term, joined)`.
fn changes(c: &Cluster, i: usize, from: usize) -> Vec<(String, String, u64, Option<String>)> {
    c.events(i)
        .iter()
        .skip(from)
        .filter(|e| matches!(e.event(), "elected" | "surrendered"))
        .map(|e| {
            (
                e.event().to_string(),
                e.str("leader").unwrap_or("").to_string(),
                e.term(),
                e.str("joined").map(str::to_string),
            )
        })
        .collect()
}

/// Kills node `x` (SIGKILL), starts it again under its name with its data directory, and
/// checks gen_leader's join rule exactly: the sitting `leader` (node index `l`) keeps `term`
/// and prints one `elected` event with the joiner and nothing else, the joiner prints one
/// `surrendered` to that leader and term, the `bystander` prints nothing, and the joiner's
/// persisted promise is that term.
fn restart_and_check_join(c: &mut Cluster, x: usize, l: usize, bystander: usize, term: u64) {
    let leader = c.procs[l].name.clone();
    let joiner = c.procs[x].name.clone();
    if c.procs[x].current().is_some() {
        c.sigkill(x);
    }
    c.wait_until(WAIT, "the leader's DOWN of the killed node", |c| {
        c.has(l, |e| e.event() == "down" && e.str("down") == Some(&joiner))
    });
    let (ml, mb) = (c.events(l).len(), c.events(bystander).len());
    c.spawn(x);
    c.wait_until(WAIT, "the restarted node surrenders", |c| {
        c.has(x, |e| e.event() == "surrendered")
    });
    let (agreed, after) = c.wait_agreed(WAIT, &[0, 1, 2], "all three agree", |_, _| true);
    // A call from the restarted node goes through the leader: its events are in by then.
    assert_eq!(c.call(x, "de nuevo"), "ok de nuevo");
    let report = c.dump();
    assert_eq!(
        (agreed.as_str(), after),
        (leader.as_str(), term),
        "the restart changed the leader or the term\n{report}"
    );
    assert_eq!(
        changes(c, l, ml),
        vec![("elected".into(), leader.clone(), term, Some(joiner.clone()))],
        "the leader's only change is the join\n{report}"
    );
    assert_eq!(
        changes(c, x, 0),
        vec![("surrendered".into(), leader.clone(), term, None)],
        "the joiner surrenders once, to the sitting leader and term\n{report}"
    );
    assert_eq!(
        changes(c, bystander, mb),
        vec![],
        "the bystander sees nothing\n{report}"
    );
    assert_eq!(
        term_file(&c.procs[x].data_dir).1,
        Some(term),
        "the joiner's promise"
    );
}

/// `<data_dir>/term` as documented: the reservation on the first line, the promise at byte
/// 4096 (the file's second page).
fn term_file(data_dir: &std::path::Path) -> (u64, Option<u64>) {
    let path = data_dir.join("term");
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let num = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let t = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        t.parse::<u64>()
            .unwrap_or_else(|_| panic!("{}: not a term: {t:?}", path.display()))
    };
    let (head, tail) = b.split_at(b.len().min(4096));
    (num(head), (!tail.is_empty()).then(|| num(tail)))
}

/// gen_leader's join rule across a restart, with real processes: a follower killed with
/// SIGKILL and restarted under its name and data directory joins the sitting leader with no
/// new term; so does a former leader (no `preempt`) once another has replaced it.
#[test]
fn restart_joins_the_sitting_leader_with_no_new_term() {
    let (mut c, _leader, term) = Cluster::start(3);
    // The lowest-priority follower.
    restart_and_check_join(&mut c, 2, 0, 1, term);

    // The leader dies; the second candidate replaces it (a new term, expected); the former
    // leader restarts and joins it.
    let first = c.procs[0].name.clone();
    c.sigkill(0);
    let (l, t1) = c.wait_agreed(WAIT, &[1, 2], "a new leader after SIGKILL", |l, t| {
        l != first && t > term
    });
    assert_eq!(l, c.procs[1].name);
    restart_and_check_join(&mut c, 0, 1, 2, t1);
    c.assert_terms_monotonic();
}
