//! A store of our own behind `Backend::External`: what it takes to add a second store (a
//! lease row in a database, as in Brooker's "Leader election in distributed systems") without
//! touching the node runtime. The store here is a lease table in memory shared by three nodes
//! in one process (one row per election: holder, revision, expiry), driven through the
//! public `gen_leader::backend` API only; the nodes run on 127.0.0.1:0 and the mesh carries
//! calls and broadcasts exactly as with etcd.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bind, settled_among, Recorder, TNode};
use futures::future::BoxFuture;
use gen_leader::backend::{
    ElectionEvent, ElectionIdentity, ExternalElection, LeaderValue, LeaseTiming, RunningElection,
    Started, StepDownReason, EVENT_CAPACITY,
};
use gen_leader::wire::handshake::ObserverConfig;
use gen_leader::{
    Backend, BoxError, Config, ConfigBuilder, ConfigError, Node, Observer, StartError,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

const TTL: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(50);

/// The table's one row: who holds the election, with which revision, until when.
#[derive(Debug, Clone)]
struct Row {
    holder: LeaderValue,
    rev: u64,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Table {
    row: Option<Row>,
    /// The last revision handed out: a new holder gets the next one (the fencing token).
    revision: u64,
}

/// The store: `INSERT … WHERE expired`, `UPDATE … SET expires` and `DELETE` on one row.
#[derive(Debug, Clone)]
struct MemStore {
    election: String,
    ttl: Duration,
    table: Arc<Mutex<Table>>,
    /// Makes `start` fail, as an unreachable database would.
    unreachable: bool,
}

impl MemStore {
    fn new(election: &str, table: &Arc<Mutex<Table>>) -> Self {
        MemStore {
            election: election.into(),
            ttl: TTL,
            table: table.clone(),
            unreachable: false,
        }
    }

    fn timing(&self) -> LeaseTiming {
        LeaseTiming::new(self.ttl, 10_000, Duration::from_millis(10))
    }

    /// Holder and revision of the row, if it has not expired.
    fn holder(&self) -> Option<(String, u64)> {
        let t = self.table.lock().unwrap();
        t.row
            .as_ref()
            .filter(|r| r.expires > Instant::now())
            .map(|r| (r.holder.name.clone(), r.rev))
    }
}

impl ExternalElection for MemStore {
    fn identity(&self) -> ElectionIdentity {
        ElectionIdentity::new("memory", self.election.clone(), self.timing())
    }

    fn validate(&self) -> Result<(), BoxError> {
        if self.ttl < Duration::from_millis(200) {
            return Err(format!("ttl {:?} is below 200 ms", self.ttl).into());
        }
        Ok(())
    }

    fn start(&self, me: LeaderValue, campaign: bool) -> Result<Started, BoxError> {
        if self.unreachable {
            return Err(Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "memory store unreachable",
            )));
        }
        let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(self.clone(), me, campaign, tx, stopped));
        Ok(Started::new(
            rx,
            Box::new(Running {
                stop,
                task: Some(task),
            }),
        ))
    }
}

/// One node's campaigner and observer in one loop: every tick, take or renew the row (if it
/// campaigns), then say what changed.
async fn run(
    store: MemStore,
    me: LeaderValue,
    campaign: bool,
    tx: mpsc::Sender<ElectionEvent>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut leading: Option<u64> = None;
    let mut observed: Option<Option<(LeaderValue, u64)>> = None;
    loop {
        let sent = Instant::now();
        let (mine, other) = {
            let mut t = store.table.lock().unwrap();
            if t.row.as_ref().is_some_and(|r| r.expires <= sent) {
                t.row = None;
            }
            if campaign {
                match &mut t.row {
                    Some(r) if r.holder == me => r.expires = sent + store.ttl,
                    Some(_) => {}
                    None => {
                        t.revision += 1;
                        let rev = t.revision;
                        t.row = Some(Row {
                            holder: me.clone(),
                            rev,
                            expires: sent + store.ttl,
                        });
                    }
                }
            }
            let row = t.row.clone();
            let mine = row.as_ref().filter(|r| r.holder == me).map(|r| r.rev);
            let other = row.filter(|r| r.holder != me).map(|r| (r.holder, r.rev));
            (mine, other)
        };
        // The lease is timed from the send time of the renewal, drift and margin applied.
        let until = sent + store.timing().local_lease();
        match (leading, mine) {
            (Some(a), Some(b)) if a == b => {
                let _ = tx.try_send(ElectionEvent::LeaseMoved {
                    rev: a,
                    until,
                    sent,
                });
            }
            (Some(a), _) => {
                let _ = tx
                    .send(ElectionEvent::SteppedDown {
                        rev: a,
                        reason: StepDownReason::KeyDeleted,
                    })
                    .await;
            }
            _ => {}
        }
        if let (Some(rev), false) = (mine, leading == mine) {
            let _ = tx.send(ElectionEvent::Leading { rev, until, sent }).await;
        }
        leading = mine;
        if mine.is_none() && observed.as_ref() != Some(&other) {
            let ev = match &other {
                Some((leader, rev)) => ElectionEvent::Following {
                    leader: leader.clone(),
                    rev: *rev,
                },
                None => ElectionEvent::NoLeader,
            };
            let _ = tx.send(ev).await;
            observed = Some(other);
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stopped.changed() => break,
        }
    }
    // Shutdown: a leader says so, then deletes its row (the next one need not wait).
    if let Some(rev) = leading {
        let _ = tx
            .send(ElectionEvent::SteppedDown {
                rev,
                reason: StepDownReason::Shutdown,
            })
            .await;
        let mut t = store.table.lock().unwrap();
        if t.row.as_ref().is_some_and(|r| r.holder == me) {
            t.row = None;
        }
    }
}

#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RunningElection for Running {
    fn shutdown(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        let _ = self.stop.send(true);
        let task = self.task.take();
        Box::pin(async move {
            if let Some(t) = task {
                let _ = t.await;
            }
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn builder(name: &str, store: &MemStore) -> ConfigBuilder {
    Config::builder(name)
        .cluster("ext-test")
        .cookie("test-cookie")
        .backend(Backend::External(Arc::new(store.clone())))
}

async fn start(n: usize, store: &MemStore) -> Vec<TNode> {
    let (ls, names) = bind(n).await;
    let mut nodes = Vec::new();
    for (l, name) in ls.into_iter().zip(&names) {
        // No member lists: each node learns the leader from the store.
        let cfg = builder(name, store).build().expect("config");
        let (rec, events) = Recorder::new(name);
        let handle = Node::start_with_listener(cfg, rec, l).await.expect("start");
        nodes.push(TNode {
            name: name.clone(),
            handle,
            events,
        });
    }
    nodes
}

#[test]
fn a_store_of_our_own_decides_and_the_mesh_serves() {
    common::run_serial(|| async {
        let table = Arc::new(Mutex::new(Table::default()));
        let store = MemStore::new("ours", &table);
        let nodes = start(3, &store).await;
        let all = [0, 1, 2];
        let (leader, term) = settled_among(&nodes, &all, Duration::from_secs(10)).await;
        // The leader is the row's holder, and the fencing token its revision.
        assert_eq!(
            store.holder(),
            Some((nodes[leader].name.clone(), term)),
            "the nodes follow the store"
        );
        let guard = nodes[leader].handle.guard().expect("leader's guard");
        assert_eq!(guard.term().get(), term);
        assert!(
            guard.remaining().is_some_and(|r| r < TTL),
            "a lease below the TTL"
        );

        // An operator's status names the store, its election and lease, and the leader.
        let mut o = Observer::connect(
            &nodes[leader].name.parse().unwrap(),
            &ObserverConfig::new("ext-test", "test-cookie"),
        )
        .await
        .expect("observer");
        let st = o.status().await.expect("status");
        assert_eq!(
            st.mode.to_string(),
            "memory (election \"ours\", lease 1000 ms, max drift 0.01, margin 10 ms)"
        );
        assert!(st.is_leader() && st.term == term, "{st:?}");
        assert_eq!(st.backend_unavailable, None);

        // A follower's leader_call is served by the leader over the mesh.
        let f = (leader + 1) % 3;
        let r = nodes[f]
            .handle
            .leader_call("hola".into())
            .await
            .expect("call");
        assert_eq!(r, format!("{}:hola", nodes[leader].name));

        // Graceful shutdown: the leader deletes its row, another takes it with the next
        // revision before the TTL could have run out; the old guard fails.
        let t0 = Instant::now();
        nodes[leader].handle.shutdown().await;
        let live: Vec<usize> = all.into_iter().filter(|&i| i != leader).collect();
        let (next, term2) = settled_among(&nodes, &live, Duration::from_secs(10)).await;
        let took = t0.elapsed();
        assert_ne!(next, leader);
        assert!(term2 > term, "the revision grows: {term2} > {term}");
        assert!(took < TTL, "failover waited for the TTL: {took:?}");
        assert!(
            guard.ensure(Duration::ZERO).is_err(),
            "the old guard failed"
        );
        assert_eq!(store.holder(), Some((nodes[next].name.clone(), term2)));
        let other = live.into_iter().find(|&i| i != next).unwrap();
        let r = nodes[other]
            .handle
            .leader_call("otra".into())
            .await
            .expect("call");
        assert_eq!(r, format!("{}:otra", nodes[next].name));
        for n in &nodes {
            n.handle.shutdown().await;
        }
    });
}

#[test]
fn a_worker_follows_the_store_and_never_leads() {
    common::run_serial(|| async {
        let table = Arc::new(Mutex::new(Table::default()));
        let store = MemStore::new("workers", &table);
        let (mut ls, names) = bind(2).await;
        let worker_l = ls.pop().unwrap();
        let cand = builder(&names[0], &store).build().unwrap();
        let worker = builder(&names[1], &store)
            .election_role(gen_leader::ElectionRole::Worker)
            .build()
            .unwrap();
        let (rec, events) = Recorder::new(&names[0]);
        let c = Node::start_with_listener(cand, rec, ls.pop().unwrap())
            .await
            .unwrap();
        let (rec, wevents) = Recorder::new(&names[1]);
        let w = Node::start_with_listener(worker, rec, worker_l)
            .await
            .unwrap();
        let nodes = vec![
            TNode {
                name: names[0].clone(),
                handle: c,
                events,
            },
            TNode {
                name: names[1].clone(),
                handle: w,
                events: wevents,
            },
        ];
        let (leader, _) = settled_among(&nodes, &[0, 1], Duration::from_secs(10)).await;
        assert_eq!(leader, 0, "only the candidate campaigns");
        // The candidate goes: the worker stays without a leader (it never campaigns).
        nodes[0].handle.shutdown().await;
        tokio::time::sleep(TTL * 2).await;
        assert_eq!(store.holder(), None);
        let v = nodes[1].handle.view();
        assert_eq!(v.leader, None, "{v:#?}");
        assert!(nodes[1].handle.guard().is_err());
        nodes[1].handle.shutdown().await;
    });
}

#[test]
fn a_store_that_cannot_start_fails_the_node_start() {
    common::run_serial(|| async {
        let table = Arc::new(Mutex::new(Table::default()));
        let mut store = MemStore::new("down", &table);
        store.unreachable = true;
        let (mut ls, names) = bind(1).await;
        let cfg = builder(&names[0], &store).build().unwrap();
        let (rec, events) = Recorder::new(&names[0]);
        match Node::start_with_listener(cfg, rec, ls.pop().unwrap()).await {
            Err(StartError::Backend { source }) => {
                let io = source
                    .downcast_ref::<std::io::Error>()
                    .expect("the store's own error as the source");
                assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("expected StartError::Backend, got {:?}", other.map(|_| ())),
        }
        // `init` ran, so `terminate` did too.
        assert!(events.lock().unwrap().contains(&common::Ev::Terminate));
    });
}

#[test]
fn a_store_refuses_its_bad_config_at_build() {
    let table = Arc::new(Mutex::new(Table::default()));
    let mut store = MemStore::new("bad", &table);
    store.ttl = Duration::from_millis(50);
    match builder("a@127.0.0.1:1", &store).build() {
        Err(ConfigError::Backend(e)) => {
            assert_eq!(e.to_string(), "ttl 50ms is below 200 ms");
        }
        other => panic!("expected ConfigError::Backend, got {other:?}"),
    }
}
