//! The cluster of `datos` processes behind the fault proxy, their recorded JSON events, and
//! the offline checks of a scenario's history.

use super::*;

pub(crate) use testkit::datos::{
    agreement, datos_exe, datos_node, hold_ports, last_view, Observed, View,
};
use testkit::Proc;

/// One JSON event, when the test received it, and which node printed it.
#[derive(Debug, Clone)]
pub(crate) struct Ev {
    pub(crate) at: Instant,
    pub(crate) node: usize,
    pub(crate) v: Value,
}

impl Ev {
    pub(crate) fn event(&self) -> &str {
        self.v["event"].as_str().unwrap_or("")
    }
    pub(crate) fn str(&self, key: &str) -> Option<&str> {
        self.v[key].as_str()
    }
    pub(crate) fn term(&self) -> u64 {
        self.v["term"].as_u64().unwrap_or(0)
    }
    /// A view change, a won election or a surrender.
    pub(crate) fn is_leadership(&self) -> bool {
        match self.event() {
            "leader" | "surrendered" => true,
            "elected" => self.v["joined"].is_null(),
            _ => false,
        }
    }
}

pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) short: String,
    /// The real listen address (the one in the name).
    pub(crate) addr: SocketAddr,
    pub(crate) data_dir: PathBuf,
    pub(crate) log: PathBuf,
    /// The running child (testkit's `Proc`: killed on drop, even on panic).
    pub(crate) proc: Option<Proc>,
}

/// A cluster of `datos` processes behind the fault proxy.
pub(crate) struct Cluster {
    pub(crate) exe: PathBuf,
    pub(crate) candidates: String,
    pub(crate) procs: Vec<Node>,
    pub(crate) net: Net,
    pub(crate) t0: Instant,
    /// What the test did to the network, and when.
    pub(crate) faults: Vec<(Instant, String)>,
    /// Network changes, for invariant (d).
    pub(crate) fault_actions: u64,
    /// Extra `datos` flags for every node (e.g. `--mode quorum`).
    pub(crate) extra_args: Vec<String>,
    // Deleted after the children are killed (fields drop in declaration order).
    pub(crate) _dir: tempfile::TempDir,
}

impl Observed for Cluster {
    /// Node `i`'s view: the leader and term of its last `leader` (or `ready`) event.
    fn view(&self, i: usize) -> View {
        view_at(&self.events(i), None)
    }

    fn report(&self) -> String {
        self.history()
    }
}

impl Cluster {
    /// `n` candidates `lider0..` on ports picked by binding 127.0.0.1:0, and the proxies.
    pub(crate) fn new(n: usize) -> Self {
        let listeners = hold_ports(n).expect("bind 127.0.0.1:0");
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        // The proxies bind while the nodes' ports are still held, so they cannot take them.
        let net = Net::new(&addrs);
        drop(listeners);
        let dir = tempfile::tempdir().expect("tempdir");
        let procs: Vec<Node> = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| Node {
                name: format!("lider{i}@{addr}"),
                short: format!("lider{i}"),
                addr: *addr,
                data_dir: dir.path().join(format!("lider{i}")),
                log: dir.path().join(format!("lider{i}.stderr")),
                proc: None,
            })
            .collect();
        Cluster {
            exe: datos_exe(),
            candidates: procs
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
                .join(","),
            procs,
            net,
            t0: Instant::now(),
            faults: Vec::new(),
            fault_actions: 0,
            extra_args: Vec::new(),
            _dir: dir,
        }
    }

    /// Starts `n` nodes one after the other, each once the previous one is ready: the first
    /// finds nobody up and elects itself, the others join it, so lider0 leads. Returns the
    /// agreed term.
    pub(crate) fn start(n: usize) -> (Self, u64) {
        Cluster::start_with(n, &[])
    }

    /// [`Cluster::start`] with extra `datos` flags for every node.
    pub(crate) fn start_with(n: usize, extra: &[&str]) -> (Self, u64) {
        let (c, leader, term) = Cluster::start_any(n, extra);
        assert_eq!(
            leader,
            0,
            "the first candidate, started first, must lead\n{}",
            c.history()
        );
        (c, term)
    }

    /// Starts `n` nodes as [`Cluster::start_with`] does, with no claim on who leads: quorum
    /// mode elects whichever candidate a majority grants first (a lone first node cannot
    /// elect itself). Returns the leader's index and the agreed term.
    pub(crate) fn start_any(n: usize, extra: &[&str]) -> (Self, usize, u64) {
        let mut c = Cluster::new(n);
        c.extra_args = extra.iter().map(|a| a.to_string()).collect();
        for i in 0..n {
            c.spawn(i);
            c.wait_until(WAIT, &format!("{} ready", c.procs[i].short), |c| {
                c.has(i, |e| e.event() == "ready")
            });
        }
        let all: Vec<usize> = (0..n).collect();
        let (leader, term) = c.wait_agreed(WAIT, &all, "initial agreement", |_, _| true);
        let l = c.index_of(&leader).expect("the leader is a member");
        c.note(format!("started: {} leads term {term}", c.procs[l].short));
        (c, l, term)
    }

    /// The index of the node called `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.procs.iter().position(|p| p.name == name)
    }

    pub(crate) fn spawn(&mut self, i: usize) {
        let dials: Vec<String> = (0..self.procs.len())
            .filter(|&j| j != i)
            .map(|j| format!("{}={}", self.procs[j].short, self.net.proxy_addr(i, j)))
            .collect();
        let p = &mut self.procs[i];
        assert!(p.proc.is_none(), "{} is already running", p.short);
        let mut cmd = datos_node(&self.exe, &p.name, &self.candidates, &p.data_dir);
        cmd.args(["--cookie", COOKIE])
            .args(["--heartbeat-ms", &HEARTBEAT_MS.to_string()])
            .args(["--listen", &p.addr.to_string()]);
        for d in &dials {
            cmd.args(["--dial", d]);
        }
        cmd.args(&self.extra_args);
        cmd.env("RUST_LOG", "warn,gen_leader=info");
        p.proc = Some(Proc::spawn(cmd, &p.short, &p.log).expect("spawn the datos example"));
    }

    // ----- faults ---------------------------------------------------------------------------

    pub(crate) fn note(&mut self, what: String) -> Instant {
        let at = Instant::now();
        self.faults.push((at, what));
        at
    }

    /// Closes the connections of link {a, b} and refuses new ones.
    pub(crate) fn cut(&mut self, a: usize, b: usize) {
        self.net.update(a, b, |p| p.cut = true);
    }

    /// Discards every byte flowing from `a` to `b`; b→a still flows.
    pub(crate) fn blackhole_one_way(&mut self, a: usize, b: usize) {
        self.net.update(a, b, |p| {
            if a < b {
                p.drop_up = true
            } else {
                p.drop_down = true
            }
        });
    }

    pub(crate) fn delay(&mut self, a: usize, b: usize, d: Duration) {
        self.net.update(a, b, |p| p.delay = d);
    }

    pub(crate) fn heal(&mut self, a: usize, b: usize) {
        self.net.update(a, b, |p| *p = Policy::default());
    }

    /// Counts one fault action and records it in the timeline.
    pub(crate) fn fault(&mut self, what: String) -> Instant {
        self.fault_actions += 1;
        self.note(what)
    }

    // ----- observing ------------------------------------------------------------------------

    pub(crate) fn events(&self, i: usize) -> Vec<Ev> {
        let Some(p) = &self.procs[i].proc else {
            return Vec::new();
        };
        p.with_events(|evs| {
            evs.iter()
                .map(|e| Ev {
                    at: e.at,
                    node: i,
                    v: e.v.clone(),
                })
                .collect()
        })
    }

    pub(crate) fn has(&self, i: usize, pred: impl Fn(&Ev) -> bool) -> bool {
        self.events(i).iter().any(pred)
    }

    pub(crate) fn type_line(&mut self, i: usize, line: &str) {
        let p = self.procs[i].proc.as_mut().expect("running");
        p.send_line(line).expect("write to stdin");
    }

    /// Types `line` on node `i`'s stdin (a `leader_call`) and waits for its reply.
    pub(crate) fn call(&mut self, i: usize, line: &str) -> String {
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
            "leader_call {line:?} on {} failed: {}\n{}",
            self.procs[i].short,
            e.v,
            self.history()
        );
        e.str("reply").unwrap().to_string()
    }

    pub(crate) fn short(&self, full: Option<&str>) -> String {
        match full {
            None => "none".into(),
            Some(f) => self
                .procs
                .iter()
                .find(|p| p.name == f)
                .map_or_else(|| f.to_string(), |p| p.short.clone()),
        }
    }

    pub(crate) fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.t0).as_secs_f64() * 1000.0
    }

    /// Every event of every node and every fault, in receive order, with the stderr tails.
    pub(crate) fn history(&self) -> String {
        let mut lines: Vec<(Instant, String)> = self
            .faults
            .iter()
            .map(|(at, what)| (*at, format!("** test: {what}")))
            .collect();
        for i in 0..self.procs.len() {
            for e in self.events(i) {
                lines.push((e.at, self.describe(&e)));
            }
        }
        lines.sort_by_key(|(at, _)| *at);
        let mut s = format!(
            "=== history (ms since the cluster was created; receive times) ===\n{}\n",
            self.net.stats.summary()
        );
        for (at, l) in &lines {
            let _ = writeln!(s, "{:>9.1}  {l}", self.ms(*at));
        }
        for p in &self.procs {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().collect();
            let _ = writeln!(s, "--- {} ({}) stderr tail:", p.short, p.name);
            for l in &tail[tail.len().saturating_sub(12)..] {
                let _ = writeln!(s, "    {l}");
            }
        }
        s
    }

    pub(crate) fn describe(&self, e: &Ev) -> String {
        let who = &self.procs[e.node].short;
        let leader = self.short(e.str("leader"));
        let mut s = format!(
            "{who:<7} {:<12} leader={leader:<7} term={:<3}",
            e.event(),
            e.term()
        );
        match e.event() {
            "elected" => {
                let _ = write!(s, " joined={}", self.short(e.str("joined")));
            }
            "down" => {
                let _ = write!(s, " down={}", self.short(e.str("down")));
            }
            "leader_call" | "reply" | "error" => {
                let _ = write!(
                    s,
                    " request={:?} {}",
                    e.str("request").unwrap_or(""),
                    e.str("reply").or(e.str("error")).unwrap_or("")
                );
            }
            "not_json" => {
                let _ = write!(s, " line={:?}", e.str("line").unwrap_or(""));
            }
            _ => {}
        }
        s
    }

    // ----- the offline checks ---------------------------------------------------------------

    /// Checks invariants (a)–(d) over the recorded history, the final heal having happened at
    /// `healed_at`. Returns the measured figures.
    pub(crate) fn check_history(&self, healed_at: Instant) -> Figures {
        let now = Instant::now();
        let n = self.procs.len();
        let evs: Vec<Vec<Ev>> = (0..n).map(|i| self.events(i)).collect();
        let fail = |msg: String| -> ! { panic!("INVARIANT VIOLATED: {msg}\n{}", self.history()) };

        // Well-formed output: only JSON events with the common fields.
        for (i, node_evs) in evs.iter().enumerate() {
            for e in node_evs {
                let ok = e.event() != "not_json"
                    && e.str("node") == Some(&self.procs[i].name)
                    && e.v["term"].is_u64()
                    && e.v["t_ms"].is_number()
                    && (e.v["leader"].is_null() || e.v["leader"].is_string());
                if !ok {
                    fail(format!("{}: malformed event {}", self.procs[i].short, e.v));
                }
            }
        }

        // (a) At most one leader per term.
        let mut claims: BTreeMap<u64, BTreeSet<usize>> = BTreeMap::new();
        for (i, node_evs) in evs.iter().enumerate() {
            for e in node_evs {
                let claims_it = match e.event() {
                    "elected" => e.v["joined"].is_null(),
                    "leader" => e.str("leader") == Some(&self.procs[i].name),
                    _ => false,
                };
                if claims_it {
                    claims.entry(e.term()).or_default().insert(i);
                }
            }
        }
        for (term, who) in &claims {
            if who.len() > 1 {
                let names: Vec<&str> = who.iter().map(|&i| self.procs[i].short.as_str()).collect();
                fail(format!("(a) two leaders for term {term}: {names:?}"));
            }
        }

        // (b) Terms never decrease at any node.
        for (i, node_evs) in evs.iter().enumerate() {
            for w in node_evs.windows(2) {
                if w[1].term() < w[0].term() {
                    fail(format!(
                        "(b) {}'s term went down: {} ({} ms) then {} ({} ms)",
                        self.procs[i].short,
                        self.describe(&w[0]),
                        self.ms(w[0].at),
                        self.describe(&w[1]),
                        self.ms(w[1].at)
                    ));
                }
            }
        }

        // (c) One agreed leader within CONVERGE of the heal, then QUIET with no leadership
        // event. Agreement is looked for from SETTLE after the heal, at every event time.
        let agreed_at = first_agreement(&evs, healed_at + SETTLE, now);
        let Some(agreed_at) = agreed_at else {
            fail(format!(
                "(c) the nodes never agreed on one leader after the heal at {:.1} ms",
                self.ms(healed_at)
            ))
        };
        let views: Vec<_> = evs
            .iter()
            .map(|node| view_at(node, Some(agreed_at)))
            .collect();
        let (leader, term) = agreement(&views).expect("agreement at agreed_at");
        if agreed_at - healed_at > CONVERGE {
            fail(format!(
                "(c) one agreed leader only {} ms after the heal (bound {} ms)",
                (agreed_at - healed_at).as_millis(),
                CONVERGE.as_millis()
            ));
        }
        if now - agreed_at < QUIET {
            fail(format!(
                "(c) the scenario watched only {} ms after agreement (needs {} ms)",
                (now - agreed_at).as_millis(),
                QUIET.as_millis()
            ));
        }
        // A `surrendered` to the agreed leader and term completes a join whose view event
        // (printed first: the view is published before the callback runs) made the agreement.
        let completes_join = |e: &Ev| {
            e.event() == "surrendered"
                && e.str("leader") == Some(leader.as_str())
                && e.term() == term
        };
        if let Some(e) = evs
            .iter()
            .flatten()
            .find(|e| e.at > agreed_at && e.is_leadership() && !completes_join(e))
        {
            fail(format!(
                "(c) leadership changed {} ms after all agreed on {} term {term} (no fault): {}",
                (e.at - agreed_at).as_millis(),
                self.short(Some(&leader)),
                self.describe(e)
            ));
        }
        // The last leadership event after the heal: when the cluster really settled.
        let last_change = evs
            .iter()
            .flatten()
            .filter(|e| e.at > healed_at && e.is_leadership())
            .map(|e| e.at)
            .max();

        // (d) Bounded leadership changes.
        let terms_won = claims.len() as u64;
        let bound = 1 + 2 * self.fault_actions;
        if terms_won > bound {
            fail(format!(
                "(d) {terms_won} leadership terms won ({:?}) for {} fault actions (bound {bound})",
                claims.keys().collect::<Vec<_>>(),
                self.fault_actions
            ));
        }
        // The simulator's count: `elected` (joined null) and `surrendered` callbacks per node.
        let changes: Vec<usize> = evs
            .iter()
            .map(|node| {
                node.iter()
                    .filter(|e| e.is_leadership() && e.event() != "leader")
                    .count()
            })
            .collect();
        Figures {
            leader,
            term,
            agreed_after: agreed_at - healed_at,
            settled_after: last_change.map_or(Duration::ZERO, |t| t - healed_at),
            terms_won,
            bound,
            changes,
        }
    }
}

/// Measured by [`Cluster::check_history`].
#[derive(Debug)]
pub(crate) struct Figures {
    pub(crate) leader: String,
    pub(crate) term: u64,
    /// From the heal to the first agreement looked for (from SETTLE on).
    pub(crate) agreed_after: Duration,
    /// From the heal to the last leadership event anywhere.
    pub(crate) settled_after: Duration,
    pub(crate) terms_won: u64,
    pub(crate) bound: u64,
    /// Per node: `elected` (joined null) + `surrendered` callbacks.
    pub(crate) changes: Vec<usize>,
}

impl Figures {
    pub(crate) fn report(&self, c: &Cluster, scenario: &str) {
        eprintln!(
            "[{scenario}] after the final heal: {} leads term {}; agreement checked {} ms after \
             the heal (last leadership event {} ms after it); terms won {} (bound {}); \
             elected+surrendered per node {:?}; {}",
            c.short(Some(&self.leader)),
            self.term,
            self.agreed_after.as_millis(),
            self.settled_after.as_millis(),
            self.terms_won,
            self.bound,
            self.changes,
            c.net.stats.summary()
        );
        if std::env::var_os("FAULTPROXY_HISTORY").is_some() {
            eprintln!("[{scenario}] {}", c.history());
        }
    }
}

/// A node's view at `t` (or at the end): its last `leader` or `ready` event by then.
pub(crate) fn view_at(evs: &[Ev], t: Option<Instant>) -> View {
    last_view(
        evs.iter()
            .filter(|e| t.is_none_or(|t| e.at <= t))
            .map(|e| &e.v),
    )
}

/// The first instant in `[from, until]` at which every node's view names the same leader
/// and term (views only change at event times, so only those are tried).
pub(crate) fn first_agreement(evs: &[Vec<Ev>], from: Instant, until: Instant) -> Option<Instant> {
    let mut times: Vec<Instant> = evs
        .iter()
        .flatten()
        .map(|e| e.at)
        .filter(|&at| at > from && at <= until)
        .collect();
    times.push(from);
    times.sort();
    times.into_iter().find(|&t| {
        let views: Vec<_> = evs.iter().map(|node| view_at(node, Some(t))).collect();
        agreement(&views).is_some()
    })
}

/// Waits for agreement of all nodes from SETTLE after `healed_at` on, for QUIET after it,
/// types a `leader_call` on `caller` during the quiet window, and checks everything offline.
pub(crate) fn settle_and_check(
    c: &mut Cluster,
    healed_at: Instant,
    caller: usize,
    scenario: &str,
) -> Figures {
    let all: Vec<usize> = (0..c.procs.len()).collect();
    let until = healed_at + SETTLE;
    c.wait_until(WAIT, "a failure timeout after the heal", |_| {
        Instant::now() >= until
    });
    c.wait_agreed(
        WAIT,
        &all,
        "one leader agreed by all after the heal",
        |_, _| true,
    );
    let agreed = Instant::now();
    let line = format!("{scenario} despues");
    let reply = c.call(caller, &line);
    assert_eq!(reply, format!("ok {line}"), "{}", c.history());
    // The quiet window: a fixed phase, then the offline check of all of it.
    let rest =
        (agreed + QUIET + Duration::from_millis(50)).saturating_duration_since(Instant::now());
    std::thread::sleep(rest);
    let figures = c.check_history(healed_at);
    figures.report(c, scenario);
    figures
}
