//! Network faults between real OS processes: the `datos` example binary run as separate
//! nodes, every link going through a TCP fault proxy that runs inside this test process.
//!
//! For every ordered pair (A, B) a proxy P(A→B) listens on 127.0.0.1:0 and forwards to B's
//! real listen address; node A is started with `--dial B=127.0.0.1:P(A→B)`, and every node
//! with `--listen` on its real address (the one in its name). Per unordered link {A, B}
//! (both directed proxies of the pair) the proxy can:
//!
//! * `cut`: close the connections in flight and close every new one at once;
//! * `blackhole_one_way(A→B)`: keep the connections open but silently discard every byte that
//!   flows from A to B — the client-to-server direction of a connection A dialed, the
//!   server-to-client direction of one B dialed — and hide A's closes from B;
//! * `delay(d)`: deliver every byte d after it reached the proxy, in order;
//! * `heal`: forward everything again.
//!
//! Every node's JSON event stream is recorded with its receive time and checked OFFLINE at
//! the end of each scenario, with the engine simulator's invariants (`tests/sim.rs`):
//!
//! * (a) at most one leader per term: no two nodes emit `elected` with `joined: null`, or a
//!   `leader` event naming themselves, for the same term;
//! * (b) every node's term never decreases over its event stream;
//! * (c) after the final heal, within [`CONVERGE`] exactly one leader, every node agrees on it
//!   (same leader and term in their last `leader` events), and then no leadership event
//!   (`leader`, `elected` with `joined: null`, `surrendered`) anywhere for [`QUIET`];
//! * (d) at most `1 + 2 × fault actions` leadership terms are won over a scenario (a fault
//!   action is one change of the network: a partition, a heal, one cut or heal of a
//!   flapping link): the initial election, then at most one election by a side that lost
//!   its leader and one takeover per change.
//!
//! `FAULTPROXY_HISTORY=1 cargo test --test faultproxy -- --nocapture` prints every
//! scenario's full history (events in receive order, faults, stderr tails).
//!
//! Failure detection is short (`--heartbeat-ms 50`, failure timeout 6 heartbeats = 300 ms).
//! Every wait is on an observed event with a deadline; the only fixed waits are the phases of
//! a scenario (how long a fault lasts, the quiet window).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const COOKIE: &str = "faultproxy-test-cookie";
/// Heartbeat passed to every node; the failure timeout is the default 6 heartbeats.
const HEARTBEAT_MS: u64 = 50;
const FAILURE_TIMEOUT: Duration = Duration::from_millis(6 * HEARTBEAT_MS);
/// Generous deadline for anything that is not an asserted bound (a loaded 2-core box).
const WAIT: Duration = Duration::from_secs(15);
/// Bound from the final heal to "one leader, every node agrees" (invariant c).
const CONVERGE: Duration = Duration::from_secs(3);
/// After agreement, no leadership event for this long (invariant c).
const QUIET: Duration = Duration::from_secs(2);
/// Agreement is looked for from this long after the heal on: a connection broken just
/// before the heal may still be detected up to a failure timeout later (as in the simulator).
const SETTLE: Duration = Duration::from_millis(6 * HEARTBEAT_MS + 50); // FAILURE_TIMEOUT + 50 ms
/// Seed of the flapping link's cut/heal durations.
const FLAP_SEED: u64 = 0x5eed_f1a9;
/// Bound from a partition of the leader to the majority agreeing on a new leader.
const FAILOVER: Duration = Duration::from_secs(3);

// ----- the fault proxy ----------------------------------------------------------------------

mod proxy {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{mpsc, watch};
    use tokio::time::Instant;

    /// What a link {lo, hi} (lo < hi) does to its traffic.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Policy {
        pub cut: bool,
        /// Discard the bytes flowing lo → hi.
        pub drop_up: bool,
        /// Discard the bytes flowing hi → lo.
        pub drop_down: bool,
        pub delay: Duration,
    }

    impl Policy {
        /// Whether bytes flowing `from` → `to` are discarded.
        pub fn drops(&self, from: usize, to: usize) -> bool {
            if from < to {
                self.drop_up
            } else {
                self.drop_down
            }
        }
    }

    /// Counters over every proxy, for the report.
    #[derive(Debug, Default)]
    pub struct Stats {
        pub accepted: AtomicU64,
        pub refused: AtomicU64,
        pub closed_by_cut: AtomicU64,
        pub bytes_forwarded: AtomicU64,
        pub bytes_dropped: AtomicU64,
    }

    impl Stats {
        pub fn summary(&self) -> String {
            let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
            format!(
                "proxied connections {} (closed by a cut {}), refused {}, bytes forwarded {}, \
                 discarded {}",
                g(&self.accepted),
                g(&self.closed_by_cut),
                g(&self.refused),
                g(&self.bytes_forwarded),
                g(&self.bytes_dropped)
            )
        }
    }

    /// Every directed proxy P(a→b), on its own tokio runtime; dropping it stops them all.
    pub struct Net {
        rt: Option<tokio::runtime::Runtime>,
        links: BTreeMap<(usize, usize), watch::Sender<Policy>>,
        /// `addrs[a][b]`: where node a dials to reach node b.
        addrs: Vec<Vec<Option<SocketAddr>>>,
        pub stats: Arc<Stats>,
    }

    impl Drop for Net {
        fn drop(&mut self) {
            if let Some(rt) = self.rt.take() {
                rt.shutdown_background();
            }
        }
    }

    impl Net {
        /// One proxy per ordered pair of `targets` (the nodes' real listen addresses).
        pub fn new(targets: &[SocketAddr]) -> Net {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("faultproxy")
                .enable_all()
                .build()
                .expect("build the proxy runtime");
            let n = targets.len();
            let stats = Arc::new(Stats::default());
            let mut links = BTreeMap::new();
            for a in 0..n {
                for b in a + 1..n {
                    links.insert((a, b), watch::channel(Policy::default()).0);
                }
            }
            let mut addrs = vec![vec![None; n]; n];
            for a in 0..n {
                for b in 0..n {
                    if a == b {
                        continue;
                    }
                    let listener = rt
                        .block_on(TcpListener::bind("127.0.0.1:0"))
                        .expect("bind a proxy on 127.0.0.1:0");
                    addrs[a][b] = Some(listener.local_addr().expect("proxy address"));
                    let policy = links[&(a.min(b), a.max(b))].subscribe();
                    rt.spawn(accept_loop(
                        listener,
                        a,
                        b,
                        targets[b],
                        policy,
                        stats.clone(),
                    ));
                }
            }
            Net {
                rt: Some(rt),
                links,
                addrs,
                stats,
            }
        }

        /// Where node `a` dials to reach node `b`: P(a→b).
        pub fn proxy_addr(&self, a: usize, b: usize) -> SocketAddr {
            self.addrs[a][b].expect("no proxy from a node to itself")
        }

        /// Changes the policy of link {a, b} (both directed proxies of the pair).
        pub fn update(&self, a: usize, b: usize, f: impl FnOnce(&mut Policy)) {
            self.links[&(a.min(b), a.max(b))].send_modify(f);
        }

        /// Every link back to normal.
        pub fn heal_all(&self) {
            for tx in self.links.values() {
                tx.send_replace(Policy::default());
            }
        }
    }

    async fn accept_loop(
        listener: TcpListener,
        client: usize,
        server: usize,
        target: SocketAddr,
        policy: watch::Receiver<Policy>,
        stats: Arc<Stats>,
    ) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(connection(
                        stream,
                        client,
                        server,
                        target,
                        policy.clone(),
                        stats.clone(),
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// One proxied connection: `client` dialed `server` through P(client→server).
    async fn connection(
        inbound: TcpStream,
        client: usize,
        server: usize,
        target: SocketAddr,
        mut policy: watch::Receiver<Policy>,
        stats: Arc<Stats>,
    ) {
        if policy.borrow().cut {
            // Dropping the accepted stream closes it: the dialer sees the connection die.
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let outbound =
            match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await {
                Ok(Ok(s)) => s,
                _ => return,
            };
        if policy.borrow().cut {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (client_rd, client_wr) = inbound.into_split();
        let (server_rd, server_wr) = outbound.into_split();
        let (done_tx, mut done_rx) = mpsc::channel::<()>(2);
        let pumps = [
            tokio::spawn(pump(
                client_rd,
                server_wr,
                client,
                server,
                policy.clone(),
                done_tx.clone(),
                stats.clone(),
            )),
            tokio::spawn(pump(
                server_rd,
                client_wr,
                server,
                client,
                policy.clone(),
                done_tx,
                stats.clone(),
            )),
        ];
        tokio::select! {
            r = policy.wait_for(|p| p.cut) => {
                if r.is_ok() {
                    stats.closed_by_cut.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = done_rx.recv() => {}
        }
        // Aborting the pumps drops every half of both sockets: both are closed.
        for p in pumps {
            p.abort();
        }
    }

    enum Item {
        Data(Instant, Vec<u8>),
        Eof(Instant),
    }

    /// Copies `from`'s bytes to `to` under the link's policy; signals `done` when the whole
    /// connection must close (an end `from` or `to` caused that the other side may see).
    async fn pump(
        mut rd: OwnedReadHalf,
        mut wr: OwnedWriteHalf,
        from: usize,
        to: usize,
        policy: watch::Receiver<Policy>,
        done: mpsc::Sender<()>,
        stats: Arc<Stats>,
    ) {
        let (q_tx, mut q_rx) = mpsc::unbounded_channel::<Item>();
        let reader = {
            let policy = policy.clone();
            let stats = stats.clone();
            async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    let n = match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => 0,
                        Ok(n) => n,
                    };
                    let p = *policy.borrow();
                    let at = Instant::now() + p.delay;
                    if n == 0 {
                        let _ = q_tx.send(Item::Eof(at));
                        return;
                    }
                    if p.drops(from, to) {
                        stats.bytes_dropped.fetch_add(n as u64, Ordering::Relaxed);
                        continue;
                    }
                    if q_tx.send(Item::Data(at, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        };
        let writer = async move {
            // Which way the news of a closed socket would travel: `from`'s end reaches `to`
            // unless from→to is blackholed, and `to`'s end reaches `from` unless to→from is.
            let (src, dst) = loop {
                match q_rx.recv().await {
                    Some(Item::Data(at, bytes)) => {
                        tokio::time::sleep_until(at).await;
                        if wr.write_all(&bytes).await.is_err() {
                            break (to, from);
                        }
                        stats
                            .bytes_forwarded
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                    Some(Item::Eof(at)) => {
                        tokio::time::sleep_until(at).await;
                        break (from, to);
                    }
                    None => break (from, to),
                }
            };
            let mut policy = policy;
            // While blackholed, the close stays hidden: the other side times out on its own.
            let _ = policy.wait_for(|p| !p.drops(src, dst)).await;
            let _ = done.send(()).await;
        };
        tokio::join!(reader, writer);
    }
}

use proxy::{Net, Policy};

// ----- the cluster of datos processes -------------------------------------------------------

use testkit::datos::{agreement, datos_exe, datos_node, hold_ports, last_view, Observed, View};
use testkit::Proc;

/// One JSON event, when the test received it, and which node printed it.
#[derive(Debug, Clone)]
struct Ev {
    at: Instant,
    node: usize,
    v: Value,
}

impl Ev {
    fn event(&self) -> &str {
        self.v["event"].as_str().unwrap_or("")
    }
    fn str(&self, key: &str) -> Option<&str> {
        self.v[key].as_str()
    }
    fn term(&self) -> u64 {
        self.v["term"].as_u64().unwrap_or(0)
    }
    /// A view change, a won election or a surrender.
    fn is_leadership(&self) -> bool {
        match self.event() {
            "leader" | "surrendered" => true,
            "elected" => self.v["joined"].is_null(),
            _ => false,
        }
    }
}

struct Node {
    name: String,
    short: String,
    /// The real listen address (the one in the name).
    addr: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
    /// The running child (testkit's `Proc`: killed on drop, even on panic).
    proc: Option<Proc>,
}

/// A cluster of `datos` processes behind the fault proxy.
struct Cluster {
    exe: PathBuf,
    candidates: String,
    procs: Vec<Node>,
    net: Net,
    t0: Instant,
    /// What the test did to the network, and when.
    faults: Vec<(Instant, String)>,
    /// Network changes, for invariant (d).
    fault_actions: u64,
    // Deleted after the children are killed (fields drop in declaration order).
    _dir: tempfile::TempDir,
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
    fn new(n: usize) -> Self {
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
            _dir: dir,
        }
    }

    /// Starts `n` nodes one after the other, each once the previous one is ready: the first
    /// finds nobody up and elects itself, the others join it, so lider0 leads. Returns the
    /// agreed term.
    fn start(n: usize) -> (Self, u64) {
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
            leader,
            c.procs[0].name,
            "the first candidate, started first, must lead\n{}",
            c.history()
        );
        c.note(format!("started: lider0 leads term {term}"));
        (c, term)
    }

    fn spawn(&mut self, i: usize) {
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
        cmd.env("RUST_LOG", "warn,gen_leader=info");
        p.proc = Some(Proc::spawn(cmd, &p.short, &p.log).expect("spawn the datos example"));
    }

    // ----- faults ---------------------------------------------------------------------------

    fn note(&mut self, what: String) -> Instant {
        let at = Instant::now();
        self.faults.push((at, what));
        at
    }

    /// Closes the connections of link {a, b} and refuses new ones.
    fn cut(&mut self, a: usize, b: usize) {
        self.net.update(a, b, |p| p.cut = true);
    }

    /// Discards every byte flowing from `a` to `b`; b→a still flows.
    fn blackhole_one_way(&mut self, a: usize, b: usize) {
        self.net.update(a, b, |p| {
            if a < b {
                p.drop_up = true
            } else {
                p.drop_down = true
            }
        });
    }

    fn delay(&mut self, a: usize, b: usize, d: Duration) {
        self.net.update(a, b, |p| p.delay = d);
    }

    fn heal(&mut self, a: usize, b: usize) {
        self.net.update(a, b, |p| *p = Policy::default());
    }

    /// Counts one fault action and records it in the timeline.
    fn fault(&mut self, what: String) -> Instant {
        self.fault_actions += 1;
        self.note(what)
    }

    // ----- observing ------------------------------------------------------------------------

    fn events(&self, i: usize) -> Vec<Ev> {
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

    fn has(&self, i: usize, pred: impl Fn(&Ev) -> bool) -> bool {
        self.events(i).iter().any(pred)
    }

    fn type_line(&mut self, i: usize, line: &str) {
        let p = self.procs[i].proc.as_mut().expect("running");
        p.send_line(line).expect("write to stdin");
    }

    /// Types `line` on node `i`'s stdin (a `leader_call`) and waits for its reply.
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
            "leader_call {line:?} on {} failed: {}\n{}",
            self.procs[i].short,
            e.v,
            self.history()
        );
        e.str("reply").unwrap().to_string()
    }

    fn short(&self, full: Option<&str>) -> String {
        match full {
            None => "none".into(),
            Some(f) => self
                .procs
                .iter()
                .find(|p| p.name == f)
                .map_or_else(|| f.to_string(), |p| p.short.clone()),
        }
    }

    fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.t0).as_secs_f64() * 1000.0
    }

    /// Every event of every node and every fault, in receive order, with the stderr tails.
    fn history(&self) -> String {
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

    fn describe(&self, e: &Ev) -> String {
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
    fn check_history(&self, healed_at: Instant) -> Figures {
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
        if let Some(e) = evs
            .iter()
            .flatten()
            .find(|e| e.at > agreed_at && e.is_leadership())
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
struct Figures {
    leader: String,
    term: u64,
    /// From the heal to the first agreement looked for (from SETTLE on).
    agreed_after: Duration,
    /// From the heal to the last leadership event anywhere.
    settled_after: Duration,
    terms_won: u64,
    bound: u64,
    /// Per node: `elected` (joined null) + `surrendered` callbacks.
    changes: Vec<usize>,
}

impl Figures {
    fn report(&self, c: &Cluster, scenario: &str) {
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
fn view_at(evs: &[Ev], t: Option<Instant>) -> View {
    last_view(
        evs.iter()
            .filter(|e| t.is_none_or(|t| e.at <= t))
            .map(|e| &e.v),
    )
}

/// The first instant in `[from, until]` at which every node's view names the same leader
/// and term (views only change at event times, so only those are tried).
fn first_agreement(evs: &[Vec<Ev>], from: Instant, until: Instant) -> Option<Instant> {
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
fn settle_and_check(c: &mut Cluster, healed_at: Instant, caller: usize, scenario: &str) -> Figures {
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

// ----- scenarios ----------------------------------------------------------------------------

#[test]
fn partition_leader_from_majority_then_heal() {
    let (mut c, term) = Cluster::start(3);
    assert_eq!(c.call(2, "antes"), "ok antes");
    let (l0, l1) = (c.procs[0].name.clone(), c.procs[1].name.clone());

    c.cut(0, 1);
    c.cut(0, 2);
    let cut_at = c.fault("partition: cut {lider0,lider1} and {lider0,lider2}".into());
    let (leader, new_term) = c.wait_agreed(WAIT, &[1, 2], "the majority elects lider1", |l, t| {
        l == l1 && t > term
    });
    let failover = cut_at.elapsed();
    eprintln!(
        "[partition] the majority agreed on {} term {new_term} {} ms after the cut",
        c.short(Some(&leader)),
        failover.as_millis()
    );
    assert!(
        failover <= FAILOVER,
        "the majority took {} ms to elect (bound {} ms)\n{}",
        failover.as_millis(),
        FAILOVER.as_millis(),
        c.history()
    );
    // The majority serves calls while lider0 is cut off.
    assert_eq!(c.call(2, "durante"), "ok durante");
    assert!(
        c.has(1, |e| e.event() == "leader_call"
            && e.str("request") == Some("durante")),
        "lider1 served the call made during the partition\n{}",
        c.history()
    );

    c.heal(0, 1);
    c.heal(0, 2);
    let healed_at = c.fault("heal all".into());
    let f = settle_and_check(&mut c, healed_at, 1, "partition");
    // Bully: the reachable first candidate takes over from the lower-priority leader.
    assert_eq!(
        f.leader,
        l0,
        "lider0, the highest priority, leads after the heal\n{}",
        c.history()
    );
    assert!(f.term > new_term, "the takeover used a fresh term");
}

#[test]
fn asymmetric_blackhole_leader_to_follower() {
    let (mut c, term) = Cluster::start(3);
    let l0 = c.procs[0].name.clone();

    c.blackhole_one_way(0, 1);
    let cut_at = c.fault("blackhole lider0 -> lider1 (lider1 -> lider0 still flows)".into());
    // lider1 hears nothing from its leader: it must notice within a failure timeout or so.
    c.wait_until(
        WAIT,
        "lider1 to stop following lider0 at the first term",
        |c| c.view(1) != Some((Some(l0.clone()), term)),
    );
    eprintln!(
        "[asymmetric] lider1 left lider0 {} ms after the blackhole (failure timeout {} ms)",
        cut_at.elapsed().as_millis(),
        FAILURE_TIMEOUT.as_millis()
    );
    // The fault lasts 2.5 s (a fixed phase): long enough for every timer to fire a few times.
    std::thread::sleep(Duration::from_millis(2500));
    let views: Vec<String> = (0..3)
        .map(|i| {
            let v = c.view(i).unwrap_or((None, 0));
            format!(
                "{}: {} term {}",
                c.procs[i].short,
                c.short(v.0.as_deref()),
                v.1
            )
        })
        .collect();
    eprintln!("[asymmetric] views before the heal: {views:?}");
    let l1_terms: BTreeSet<u64> = c
        .events(1)
        .iter()
        .filter(|e| e.event() == "elected" && e.v["joined"].is_null())
        .map(Ev::term)
        .collect();
    eprintln!("[asymmetric] terms lider1 won during the blackhole: {l1_terms:?}");

    c.heal(0, 1);
    let healed_at = c.fault("heal all".into());
    let f = settle_and_check(&mut c, healed_at, 1, "asymmetric");
    assert_eq!(
        f.leader,
        l0,
        "lider0, the highest priority and reachable by all, leads after the heal\n{}",
        c.history()
    );
}

#[test]
fn flapping_link_between_leader_and_follower() {
    let (mut c, _term) = Cluster::start(3);
    let l0 = c.procs[0].name.clone();
    let mut rng = StdRng::seed_from_u64(FLAP_SEED);
    let start = Instant::now();
    let mut cycles = 0;
    // Cut and heal {lider0, lider2} for 10 s, ending with a heal: the final heal.
    let healed_at = loop {
        c.cut(0, 2);
        c.fault("cut {lider0,lider2}".into());
        std::thread::sleep(Duration::from_millis(rng.random_range(300..=700)));
        c.heal(0, 2);
        let healed_at = c.fault("heal {lider0,lider2}".into());
        cycles += 1;
        if start.elapsed() >= Duration::from_secs(10) {
            break healed_at;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(300..=700)));
    };
    c.net.heal_all();
    eprintln!("[flapping] {cycles} cut/heal cycles of {{lider0,lider2}} in 10 s");
    // lider1 kept following lider0 the whole time? (reported, not asserted)
    let lider1_changes = c
        .events(1)
        .iter()
        .filter(|e| e.is_leadership() && e.at > start)
        .count();
    eprintln!(
        "[flapping] leadership events at lider1 (never cut) while flapping: {lider1_changes}"
    );
    let f = settle_and_check(&mut c, healed_at, 2, "flapping");
    // Per flap: how long after each heal all three agreed again, if they did before the
    // next cut (reported).
    let evs: Vec<Vec<Ev>> = (0..3).map(|i| c.events(i)).collect();
    let rejoin: Vec<String> = c
        .faults
        .iter()
        .enumerate()
        .filter(|(_, (_, what))| what.starts_with("heal"))
        .map(|(k, (h, _))| {
            let next_cut = c.faults[k + 1..]
                .iter()
                .find(|(_, what)| what.starts_with("cut"))
                .map_or_else(Instant::now, |(at, _)| *at);
            first_agreement(&evs, *h, next_cut).map_or_else(
                || format!("none in {} ms", (next_cut - *h).as_millis()),
                |t| format!("{}", (t - *h).as_millis()),
            )
        })
        .collect();
    eprintln!(
        "[flapping] ms from each heal to all three agreeing (before the next cut): {rejoin:?}"
    );
    assert_eq!(
        f.leader,
        l0,
        "lider0 kept the majority and leads after the heal\n{}",
        c.history()
    );
}

/// Delay below the failure timeout on every link of the leader: nothing may change.
#[test]
fn delayed_links_keep_the_leader() {
    let (mut c, term) = Cluster::start(3);
    let l0 = c.procs[0].name.clone();
    let d = Duration::from_millis(100);
    c.delay(0, 1, d);
    c.delay(0, 2, d);
    let delayed_at = c.fault(format!(
        "delay {d:?} on {{lider0,lider1}} and {{lider0,lider2}}"
    ));
    let t0 = Instant::now();
    assert_eq!(c.call(2, "lento"), "ok lento");
    let rtt = t0.elapsed();
    eprintln!(
        "[delay] a leader_call from lider2 took {} ms with {} ms each way",
        rtt.as_millis(),
        d.as_millis()
    );
    assert!(rtt >= 2 * d, "the proxy delays both ways ({rtt:?})");
    // The delay lasts 1.5 s (a fixed phase).
    std::thread::sleep(Duration::from_millis(1500));
    c.heal(0, 1);
    c.heal(0, 2);
    let healed_at = c.fault("heal all".into());
    let f = settle_and_check(&mut c, healed_at, 1, "delay");
    assert_eq!((f.leader.as_str(), f.term), (l0.as_str(), term));
    if let Some(e) = (0..3)
        .flat_map(|i| c.events(i))
        .find(|e| e.at > delayed_at && e.is_leadership())
    {
        panic!(
            "a delay below the failure timeout changed the leadership: {}\n{}",
            c.describe(&e),
            c.history()
        );
    }
}

/// `--listen` and `--dial` refuse malformed values with a clear error (exit status 2).
#[test]
fn datos_rejects_malformed_listen_and_dial() {
    let exe = datos_exe();
    let base = [
        "--name",
        "a@127.0.0.1:1",
        "--candidates",
        "a@127.0.0.1:1,b@127.0.0.1:2",
        "--cookie",
        "c",
    ];
    for (flag, value, expected) in [
        ("--listen", "127.0.0.1", "no ':' before the port"),
        ("--listen", ":4000", "the host is empty"),
        (
            "--listen",
            "127.0.0.1:http",
            "is not a number from 1 to 65535",
        ),
        ("--listen", "::1:4000", "must be in brackets"),
        ("--dial", "b", "expected NAME=HOST:PORT"),
        (
            "--dial",
            "=127.0.0.1:9",
            "the member name before '=' is empty",
        ),
        ("--dial", "zz=127.0.0.1:9", "zz is not a member"),
        ("--dial", "b=127.0.0.1:0", "is not a number from 1 to 65535"),
        (
            "--dial",
            "b=127.0.0.1:9,b@127.0.0.1:2=127.0.0.1:8",
            "given more than once",
        ),
        (
            "--dial",
            "b@nowhere=127.0.0.1:9",
            "expected HOST:PORT after '@'",
        ),
    ] {
        let out = Command::new(&exe)
            .args(base)
            .args([flag, value])
            .stdin(Stdio::null())
            .output()
            .expect("run datos");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(expected) && stderr.contains(flag),
            "{flag} {value}: expected {expected:?} in {stderr:?}"
        );
    }
}
