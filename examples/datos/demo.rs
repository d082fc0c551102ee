//! `datos demo`: three child processes of this executable, narrated. Starting, reading and
//! killing the children is the dev-only `testkit` crate's `Proc` (each child is killed and
//! reaped when its `Proc` drops, on every exit path).

use super::*;
use std::sync::Mutex;
use testkit::{Event, Proc};

const WAIT: Duration = Duration::from_secs(15);

struct Child {
    name: String,
    short: String,
    proc: Proc,
    /// How many of its events have been narrated.
    seen: usize,
}

/// The temp dir, for the Ctrl-C/SIGTERM/SIGHUP handler: a signal would otherwise end the
/// demo without running any destructor.
static TMP: Mutex<Option<PathBuf>> = Mutex::new(None);

fn tmp_slot() -> std::sync::MutexGuard<'static, Option<PathBuf>> {
    TMP.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default, Clone)]
struct NodeState {
    leader: Option<String>,
    term: u64,
    events: Vec<Value>,
}

struct Demo {
    start: Instant,
    procs: Vec<Child>,
    state: Vec<NodeState>,
}

pub fn run() -> ExitCode {
    // On Ctrl-C, SIGTERM or SIGHUP: the children are killed, the temp dir removed, exit 130.
    testkit::kill_children_on_interrupt(|_| {
        if let Some(dir) = tmp_slot().take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        println!("\nInterrupted: the demo's nodes were stopped.");
    });
    match run_inner() {
        Ok(()) => {
            println!("\nDemo finished: every step happened as expected.");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            println!("\nDEMO FAILED: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// `n` ports on 127.0.0.1 that were free a moment ago.
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let ls = testkit::datos::hold_ports(n).map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    ls.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

fn run_inner() -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my executable: {e}"))?;
    let tmp = tempfile::Builder::new()
        .prefix("gen_leader-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let ports = free_ports(3)?;
    let names: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("lider{}@127.0.0.1:{p}", i + 1))
        .collect();
    let candidates = names.join(",");
    *tmp_slot() = Some(tmp.path().to_path_buf());

    println!("gen_leader demo: the tutorial's `datos` module on three local processes.");
    println!("Candidates, in priority order: {}", names.join(", "));
    println!("Data and logs: {}\n", tmp.path().display());

    let mut procs = Vec::new();
    let start = Instant::now();
    println!("1. Starting the three nodes...");
    for name in &names {
        let short = name.split('@').next().unwrap_or(name).to_string();
        let dir = tmp.path().join(&short);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cmd = testkit::datos::datos_node(&exe, name, &candidates, &dir);
        cmd.env("GEN_LEADER_COOKIE", "demo-cookie");
        let proc = Proc::spawn(cmd, &short, &dir.join("stderr.log"))
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        println!("   started {short} (pid {}) as {name}", proc.pid());
        procs.push(Child {
            name: name.clone(),
            short,
            proc,
            seen: 0,
        });
    }
    let mut d = Demo {
        start,
        procs,
        state: vec![NodeState::default(); 3],
    };
    let result = d.script();
    if result.is_err() {
        for p in &d.procs {
            println!("   (logs of {}: {})", p.short, p.proc.log().display());
        }
        // Keep the logs for inspection.
        *tmp_slot() = None;
        let _ = tmp.keep();
    }
    result
}

impl Demo {
    fn short(&self, full: Option<&str>) -> String {
        match full {
            None => "nobody".into(),
            Some(f) => self
                .procs
                .iter()
                .find(|p| p.name == f)
                .map_or_else(|| f.to_string(), |p| p.short.clone()),
        }
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.procs.len())
            .filter(|&i| self.procs[i].proc.is_running())
            .collect()
    }

    /// Narrates one child's event.
    fn narrate(&self, i: usize, v: &Value) {
        let who = &self.procs[i].short;
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let leader = self.short(v["leader"].as_str());
        let term = v["term"].as_u64().unwrap_or(0);
        let text = match v["event"].as_str().unwrap_or("") {
            "ready" => format!("{who} is up and listening"),
            "leader" if v["leader"].is_null() => {
                format!("{who} has no leader (term {term}): election running")
            }
            "leader" => format!("{who} now sees leader {leader}, term {term}"),
            "elected" if v["joined"].is_null() => {
                format!("{who}: no one elected? -> I am the leader, term {term}")
            }
            "elected" => format!(
                "{who}: elected node [{}] -> it joined me, term {term}",
                self.short(v["joined"].as_str())
            ),
            "surrendered" => format!(
                "{who}: surrendered ({}) -> follows {leader}, term {term}",
                v["synch"]
            ),
            "leader_call" => format!("{who}: leader_call ({leader}): {:?}", s("request")),
            "from_leader" => format!("{who}: from_leader ({leader}): {:?}", s("message")),
            "reply" => format!("{who}: reply: {}", s("reply")),
            "down" => format!("{who}: DOWN ({}): {leader}", self.short(v["down"].as_str())),
            "error" => format!("{who}: error: {}", s("error")),
            other => format!("{who}: {other}"),
        };
        println!("   [{:>6} ms] {text}", self.start.elapsed().as_millis());
    }

    /// Whether a child printed an event not narrated yet.
    fn has_new(&self) -> bool {
        self.procs.iter().any(|p| p.proc.mark() > p.seen)
    }

    /// Narrates the children's new events in the order they arrived and records the
    /// views; whether there were any.
    fn pump(&mut self) -> bool {
        let mut new: Vec<(usize, Event)> = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            let seen = p.seen;
            let evs = p.proc.with_events(|evs| evs[seen..].to_vec());
            p.seen += evs.len();
            new.extend(evs.into_iter().map(|e| (i, e)));
        }
        new.sort_by_key(|(_, e)| e.seq);
        // Lines that are not JSON (there should be none) are not narrated.
        for (i, e) in new.iter().filter(|(_, e)| e.event() != "not_json") {
            let v = &e.v;
            self.narrate(*i, v);
            let st = &mut self.state[*i];
            if matches!(v["event"].as_str(), Some("leader" | "ready")) {
                st.leader = v["leader"].as_str().map(str::to_string);
                st.term = v["term"].as_u64().unwrap_or(0);
            }
            st.events.push(v.clone());
        }
        !new.is_empty()
    }

    /// Pumps events until `cond` returns `Some`, or fails after `WAIT`.
    fn wait<T>(
        &mut self,
        what: &str,
        mut cond: impl FnMut(&Self) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(t) = cond(self) {
                return Ok(t);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("timed out after {WAIT:?} waiting for {what}"));
            }
            if self.pump() {
                continue;
            }
            if self.procs.iter().all(|p| p.proc.stdout_closed()) {
                return Err(format!("every node exited while waiting for {what}"));
            }
            testkit::wait_for(left, || self.has_new().then_some(()));
        }
    }

    /// The leader and term all of `nodes` agree on, if they do.
    fn agreement(&self, nodes: &[usize]) -> Option<(String, u64)> {
        let first = &self.state[nodes[0]];
        let l = first.leader.clone()?;
        nodes
            .iter()
            .all(|&i| {
                self.state[i].leader.as_deref() == Some(&l) && self.state[i].term == first.term
            })
            .then_some((l, first.term))
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.procs.iter().position(|p| p.name == name)
    }

    fn has_event(&self, i: usize, event: &str, key: &str, val: &str) -> bool {
        self.state[i]
            .events
            .iter()
            .any(|v| v["event"] == event && v[key] == val)
    }

    fn send_line(&mut self, i: usize, line: &str) -> Result<(), String> {
        let p = &mut self.procs[i];
        println!(
            "   [{:>6} ms] typing {line:?} on {}'s stdin",
            self.start.elapsed().as_millis(),
            p.short
        );
        p.proc
            .send_line(line)
            .map_err(|e| format!("cannot write to {}: {e}", p.short))
    }

    /// Sends `line` from node `from` and waits for its reply and every follower's
    /// broadcast.
    fn call(&mut self, from: usize, leader: usize, line: &str) -> Result<(), String> {
        self.send_line(from, line)?;
        let bcast = format!("vuestro lider dice: {line}");
        let followers: Vec<usize> = self.alive().into_iter().filter(|&i| i != leader).collect();
        self.wait(&format!("the reply to {line:?} and its broadcast"), |d| {
            let replied = d.state[from]
                .events
                .iter()
                .any(|v| (v["event"] == "reply" || v["event"] == "error") && v["request"] == line);
            let served = d.has_event(leader, "leader_call", "request", line);
            let spread = followers
                .iter()
                .all(|&f| d.has_event(f, "from_leader", "message", &bcast));
            (replied && served && spread).then_some(())
        })?;
        if let Some(err) = self.state[from]
            .events
            .iter()
            .find(|v| v["event"] == "error" && v["request"] == line)
        {
            return Err(format!("the call {line:?} failed: {}", err["error"]));
        }
        Ok(())
    }

    fn script(&mut self) -> Result<(), String> {
        let all = self.alive();
        let (leader, term) = self.wait("the three nodes to agree on a leader", |d| {
            d.agreement(&all)
        })?;
        let elected_ms = self.start.elapsed().as_millis();
        let li = self.index_of(&leader).ok_or("unknown leader")?;
        println!(
            "\n=> All three agree: the leader is {} ({leader}), term {term}, {elected_ms} ms \
             after the processes were started.\n",
            self.procs[li].short
        );
        if li != 0 {
            println!(
                "   ({} is not the first candidate: it was listening before the others, \
                 found nobody up and elected itself, and the others joined it. A sitting \
                 leader is not replaced by a higher-priority candidate that joins later \
                 unless `preempt` is configured.)\n",
                self.procs[li].short
            );
        }

        let followers: Vec<usize> = all.iter().copied().filter(|&i| i != li).collect();
        let caller = *followers.last().ok_or("no follower")?;
        println!(
            "2. leader_call from the follower {}: its stdin lines go to the leader, which \
             replies and broadcasts to every follower.",
            self.procs[caller].short
        );
        for line in ["hola", "¿qué tal?", "adiós"] {
            self.call(caller, li, line)?;
        }

        let old_short = self.procs[li].short.clone();
        println!("\n3. Killing the leader {old_short} with SIGKILL (no goodbye to its peers)...");
        let killed_at = Instant::now();
        self.procs[li].proc.kill();
        println!(
            "   [{:>6} ms] {old_short} killed",
            self.start.elapsed().as_millis()
        );
        let survivors = self.alive();
        let old = leader.clone();
        let (new_leader, new_term) = self.wait("the survivors to elect a new leader", |d| {
            d.agreement(&survivors)
                .filter(|(l, t)| *l != old && *t > term)
        })?;
        let failover_ms = killed_at.elapsed().as_millis();
        let ni = self.index_of(&new_leader).ok_or("unknown new leader")?;
        self.wait("the new leader's DOWN of the old leader", |d| {
            d.has_event(ni, "down", "down", &old).then_some(())
        })?;
        println!(
            "\n=> New leader: {} ({new_leader}), term {term} -> {new_term}, {failover_ms} ms \
             after the kill; it ran handle_down (DOWN) for {old_short}.",
            self.procs[ni].short
        );
        println!(
            "   (The OS closed the killed process's connections, so its peers noticed at \
             once; a hung leader would be declared DOWN after the failure timeout.)\n"
        );

        let remaining = *self
            .alive()
            .iter()
            .find(|&&i| i != ni)
            .ok_or("no follower left")?;
        println!(
            "4. leader_call from the remaining follower {}: the new leader serves it (its \
             Synch carried the history).",
            self.procs[remaining].short
        );
        self.call(remaining, ni, "sigo aquí")?;

        println!("\n5. Stopping the remaining nodes (SIGTERM: graceful shutdown).");
        for i in self.alive() {
            let p = &mut self.procs[i];
            p.proc.close_stdin();
            // SIGTERM (the node shuts down gracefully), or killed after 3 s.
            let how = if p.proc.terminate(Duration::from_secs(3)) {
                "graceful shutdown"
            } else {
                "killed"
            };
            println!("   stopped {} ({how})", p.short);
        }
        println!(
            "\nSummary: election {elected_ms} ms from start; failover {failover_ms} ms after \
             SIGKILL of the leader (default heartbeat 100 ms, failure timeout 600 ms)."
        );
        Ok(())
    }
}
