//! Shared test harness: a behaviour that records every callback, and in-process clusters of
//! real nodes over TCP on 127.0.0.1:0.
#![allow(dead_code)]

pub mod logs;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gen_leader::{
    Behaviour, ClusterView, Config, ConfigBuilder, Election, LeaderHandle, LeaderReply, Node,
    NodeName, ReplyTo,
};

/// One recorded callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Elected {
        term: u64,
        joined: Option<String>,
    },
    Surrendered {
        leader: String,
        term: u64,
        synch: Vec<String>,
    },
    LeaderCall(String),
    LeaderCast(String),
    FromLeader(String),
    Down(String),
    Call(String),
    Cast(String),
    Terminate,
    /// In `elected`/`surrendered`, the handle's view did not yet show the callback's leader
    /// and term (the view must be published before leadership callbacks run).
    ViewLag(String),
}

/// Records callbacks; the Synch is the list of everything broadcast so far.
pub struct Recorder {
    pub me: String,
    pub events: Arc<Mutex<Vec<Ev>>>,
    pub history: Vec<String>,
    pub deferred: Vec<ReplyTo<String>>,
    pub handle: Option<LeaderHandle<Recorder>>,
}

impl Recorder {
    pub fn new(me: &str) -> (Self, Arc<Mutex<Vec<Ev>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        (
            Recorder {
                me: me.to_string(),
                events: events.clone(),
                history: Vec::new(),
                deferred: Vec::new(),
                handle: None,
            },
            events,
        )
    }
    fn push(&self, e: Ev) {
        self.events.lock().unwrap().push(e);
    }
    /// Records a `ViewLag` if the handle's view differs from the callback's `Election`.
    fn check_view(&self, cb: &str, e: &Election<'_>) {
        if let Some(h) = &self.handle {
            let v = h.view();
            if v.term != e.term() || v.leader.as_ref() != e.leader() {
                self.push(Ev::ViewLag(format!(
                    "{cb}: callback term {} leader {:?}, handle term {} leader {:?}",
                    e.term(),
                    e.leader().map(|l| l.to_string()),
                    v.term,
                    v.leader.map(|l| l.to_string())
                )));
            }
        }
    }
}

impl Behaviour for Recorder {
    type Call = String;
    type Reply = String;
    type Cast = String;
    type Synch = Vec<String>;
    type Broadcast = String;
    type Info = ();

    async fn init(
        &mut self,
        handle: LeaderHandle<Self>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.handle = Some(handle);
        Ok(())
    }

    async fn elected(&mut self, e: &Election<'_>, joined: Option<&NodeName>) -> Vec<String> {
        self.check_view("elected", e);
        self.push(Ev::Elected {
            term: e.term().get(),
            joined: joined.map(|j| j.to_string()),
        });
        self.history.clone()
    }

    async fn surrendered(&mut self, synch: Vec<String>, e: &Election<'_>) {
        self.check_view("surrendered", e);
        self.push(Ev::Surrendered {
            leader: e.leader().map(|l| l.to_string()).unwrap_or_default(),
            term: e.term().get(),
            synch: synch.clone(),
        });
        self.history = synch;
    }

    async fn handle_leader_call(
        &mut self,
        req: String,
        from: ReplyTo<String>,
        _e: &Election<'_>,
    ) -> LeaderReply<String, String> {
        self.push(Ev::LeaderCall(req.clone()));
        if req.starts_with("defer") {
            self.deferred.push(from);
            return LeaderReply::NoReply;
        }
        if req == "release" {
            let h = self.handle.clone().unwrap();
            for d in self.deferred.drain(..) {
                let _ = h.reply(d, "released".to_string());
            }
            return LeaderReply::Reply("ok".into());
        }
        self.history.push(req.clone());
        LeaderReply::ReplyAndBroadcast(format!("{}:{req}", self.me), req)
    }

    async fn handle_leader_cast(&mut self, msg: String, _e: &Election<'_>) -> Option<String> {
        self.push(Ev::LeaderCast(msg.clone()));
        self.history.push(msg.clone());
        Some(msg)
    }

    async fn from_leader(&mut self, msg: String, _e: &Election<'_>) {
        self.history.push(msg.clone());
        self.push(Ev::FromLeader(msg));
    }

    async fn handle_down(&mut self, node: &NodeName, _e: &Election<'_>) -> Option<String> {
        self.push(Ev::Down(node.to_string()));
        None
    }

    async fn handle_call(&mut self, req: String, _e: &Election<'_>) -> String {
        self.push(Ev::Call(req.clone()));
        format!("local:{}:{req}", self.me)
    }

    async fn handle_cast(&mut self, msg: String, _e: &Election<'_>) {
        self.push(Ev::Cast(msg));
    }

    async fn terminate(&mut self, _reason: gen_leader::StopReason) {
        self.push(Ev::Terminate);
    }
}

/// A running test node.
pub struct TNode {
    pub name: String,
    pub handle: LeaderHandle<Recorder>,
    pub events: Arc<Mutex<Vec<Ev>>>,
}

impl TNode {
    pub fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }
    #[allow(clippy::wrong_self_convention)]
    pub fn from_leader(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::FromLeader(m) => Some(m),
                _ => None,
            })
            .collect()
    }
}

/// Names for a cluster: `n` listeners bound on 127.0.0.1:0, and their node names.
pub async fn bind(n: usize) -> (Vec<tokio::net::TcpListener>, Vec<String>) {
    let mut ls = Vec::new();
    let mut names = Vec::new();
    for i in 0..n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        names.push(format!("n{i}@127.0.0.1:{}", l.local_addr().unwrap().port()));
        ls.push(l);
    }
    (ls, names)
}

/// Test timings: fast, but with room for a loaded 2-core CI machine.
pub fn config(me: &str, candidates: &[String], workers: &[String]) -> ConfigBuilder {
    Config::builder(me)
        .candidates(candidates)
        .workers(workers)
        .cookie("test-cookie")
        .heartbeat(Duration::from_millis(50))
        .failure_timeout(Duration::from_millis(1000))
        .election_timeout(Duration::from_millis(100))
        // Long enough that a loaded CI machine still hears from every started peer.
        .startup_timeout(Duration::from_millis(1500))
}

pub async fn start(builder: ConfigBuilder, listener: tokio::net::TcpListener) -> TNode {
    let cfg = builder.build().unwrap();
    let name = cfg.me().to_string();
    let (b, events) = Recorder::new(&name);
    let handle = Node::start_with_listener(cfg, b, listener).await.unwrap();
    TNode {
        name,
        handle,
        events,
    }
}

/// Starts `cands` candidates and `workers` workers.
pub async fn cluster(cands: usize, workers: usize) -> Vec<TNode> {
    let (ls, names) = bind(cands + workers).await;
    let (c, w) = names.split_at(cands);
    let mut nodes = Vec::new();
    for (l, name) in ls.into_iter().zip(names.iter()) {
        nodes.push(start(config(name, c, w), l).await);
    }
    nodes
}

pub const WAIT: Duration = Duration::from_secs(10);

/// Waits until every node agrees on one leader (one of them) and term; returns the
/// leader's name.
pub async fn agreed(nodes: &[&TNode]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let views: Vec<ClusterView> = nodes.iter().map(|n| n.handle.view()).collect();
        if let Some(l) = &views[0].leader {
            if views
                .iter()
                .all(|v| v.leader.as_ref() == Some(l) && v.term == views[0].term)
                && nodes.iter().any(|n| n.name == l.to_string())
            {
                return l.to_string();
            }
        }
        if tokio::time::Instant::now() > deadline {
            panic!("no agreement within {WAIT:?}: {views:#?}");
        }
        // Wake on the first node's next change (or re-check shortly).
        let mut rx = nodes[0].handle.changes();
        let _ = tokio::time::timeout(Duration::from_millis(20), rx.changed()).await;
    }
}

/// Waits until `pred` holds, polling a cheap predicate on state changes.
pub async fn eventually(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !pred() {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn all(nodes: &[TNode]) -> Vec<&TNode> {
    nodes.iter().collect()
}

/// Runs `body` on a runtime of two workers, one such test of the binary at a time (tests that
/// start real servers or time a failover), logging to the test's output.
pub fn run_serial<F: std::future::Future<Output = ()>>(body: impl FnOnce() -> F) {
    static SERIAL: Mutex<()> = Mutex::new(());
    logs::to_test_output();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(body());
}

/// Waits until every node of `live` (indices into `nodes`) names one leader among them with
/// one term, and that leader's guard holds; returns (leader index, term). Fails the test
/// after `within`.
pub async fn settled_among(nodes: &[TNode], live: &[usize], within: Duration) -> (usize, u64) {
    let t0 = std::time::Instant::now();
    loop {
        let views: Vec<_> = live.iter().map(|&i| nodes[i].handle.view()).collect();
        let first = &views[0];
        if let Some(l) = &first.leader {
            if views
                .iter()
                .all(|v| v.leader.as_ref() == Some(l) && v.term == first.term)
            {
                if let Some(&i) = live.iter().find(|&&i| nodes[i].name == l.to_string()) {
                    if nodes[i].handle.guard().is_ok() {
                        return (i, first.term.get());
                    }
                }
            }
        }
        assert!(
            t0.elapsed() < within,
            "no agreed leader within {within:?}: {views:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
