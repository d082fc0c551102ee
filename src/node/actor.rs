//! The node actor: glue between the engine, the behaviour and the connections.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn};

use super::fastpath::{self, FastPath, Route};
use super::storage::{AuditEvent, AuditLog, TermStore};
use super::{ClusterView, LeaderHandle, NodeStats};
use crate::behaviour::{Behaviour, Election, LeaderReply, Origin, ReplyTo, StopReason};
use crate::config::Config;
use crate::election::{Engine, EngineConfig, LossReason, Output};
use crate::error::CallError;
use crate::transport::{self, BoxStream, Connector, Listener};
use crate::types::{NodeId, NodeName, Term};
use crate::wire::codec::{self, FrameCodec};
use crate::wire::handshake::{self, HandshakeConfig, HandshakeError, Refusal};
use crate::wire::{Msg, ReplyResult};

/// The [`Election`] view of a node state, borrowing only its engine and config (so that the
/// behaviour can be borrowed mutably at the same time).
macro_rules! election {
    ($state:expr) => {
        Election {
            engine: &$state.engine,
            members: $state.cfg.members(),
        }
    };
}

/// Batches (of up to `transport::READ_BATCH` frames) a connection's reader may have queued at
/// the actor before it stops reading.
const INBOUND_WINDOW: usize = 256;
/// Concurrent inbound handshakes; more connections wait in the accept backlog.
const MAX_HANDSHAKES: usize = 64;
/// Casts held while no leader is known.
const MAX_HELD_CASTS: usize = 4096;
/// Calls held (waiting for a leader or a reply) per node.
pub(crate) const MAX_CALLS: usize = 1 << 20;

/// Messages to the node actor.
pub(crate) enum NodeMsg<B: Behaviour> {
    LeaderCall {
        id: u64,
        request: CallReq<B::Call>,
        deadline: Instant,
        reply: oneshot::Sender<Result<ReplyBody<B::Reply>, CallError>>,
    },
    LeaderCast(B::Cast),
    Call {
        request: B::Call,
        reply: oneshot::Sender<B::Reply>,
    },
    Cast(B::Cast),
    Info(B::Info),
    Reply {
        to: Origin,
        reply: B::Reply,
    },
    Admit {
        peer: NodeId,
        incarnation: u64,
        reply: oneshot::Sender<Result<u64, Refusal>>,
    },
    Connected {
        peer: NodeId,
        conn: u64,
        incarnation: u64,
        stream: BoxStream,
        read_buf: BytesMut,
    },
    AdmitAborted {
        peer: NodeId,
        conn: u64,
    },
    DialDone {
        peer: NodeId,
        gen: u64,
        outcome: DialOutcome,
    },
    Inbound {
        peer: NodeId,
        conn: u64,
        msgs: Vec<Msg>,
        _permit: OwnedSemaphorePermit,
    },
    ConnClosed {
        peer: NodeId,
        conn: u64,
        reason: String,
    },
    Tick,
    Stats(oneshot::Sender<NodeStats>),
    Shutdown(oneshot::Sender<()>),
}

pub(crate) enum DialOutcome {
    /// Could not open a connection at all.
    Unreachable(String),
    /// The peer refused the handshake, or it failed.
    Failed(String),
    /// The peer asked us to wait for its dial (we are the larger id).
    CallBackRequested,
    /// Handshake done: the connection is ours.
    Connected {
        incarnation: u64,
        stream: BoxStream,
        read_buf: BytesMut,
    },
}

pub(crate) struct NodeArgs<B: Behaviour> {
    pub call_ids: Arc<AtomicU64>,
    pub fast: Arc<FastPath<B::Reply>>,
    pub config: Arc<Config>,
    pub behaviour: B,
    pub listener: Box<dyn Listener>,
    pub connector: Arc<dyn Connector>,
    pub view_tx: watch::Sender<ClusterView>,
}

pub(crate) struct NodeActor<B>(PhantomData<fn() -> B>);

impl<B> NodeActor<B> {
    pub(crate) fn new() -> Self {
        NodeActor(PhantomData)
    }
}

struct Conn {
    id: u64,
    incarnation: u64,
    tx: mpsc::Sender<Bytes>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    last_recv: Instant,
    last_sent: Instant,
    /// Batches the reader has received (some never reach the actor: replies to direct calls).
    recv_count: Arc<AtomicU64>,
    /// `recv_count` when the actor last looked.
    recv_seen: u64,
}

impl Conn {
    /// If the reader received anything since the actor last looked (at `since`), the peer
    /// was alive after `since`: moves `last_recv` there. (The earlier bound, not the time of
    /// this look: a frozen peer is then still declared DOWN within the failure timeout.)
    fn refresh(&mut self, since: Instant) {
        let n = self.recv_count.load(Ordering::Relaxed);
        if n != self.recv_seen {
            self.recv_seen = n;
            self.last_recv = self.last_recv.max(since);
        }
    }
}

impl Conn {
    /// Closes the connection: the writer flushes what is queued (for at most a second), the
    /// reader stops at once.
    fn close(self) {
        self.reader.abort();
        drop(self.tx);
        let mut writer = self.writer;
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_secs(1), &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
        });
    }
}

struct Peer {
    conn: Option<Conn>,
    /// An inbound handshake admitted and finishing: (conn id, incarnation).
    reserved: Option<(u64, u64)>,
    dialer: Option<JoinHandle<()>>,
    /// When the current dialer starts connecting (after its backoff).
    dial_at: Instant,
    attempt: u32,
    /// Dials refused in a row (connection refused / unreachable).
    refusals: u32,
    /// Generation of the current dialer: results of older dials are ignored.
    dial_gen: u64,
}

/// A `leader_call` request as the handle hands it over: the value (when this node leads, it
/// is served here), or the frame to send to the leader, encoded by the caller's task so that
/// the node's actor only forwards it (and keeps it to send again after `NotLeader`).
pub(crate) enum CallReq<C> {
    Value(C),
    Frame(Bytes),
}

/// A reply as the node hands it back: the value (served here), or the encoded reply from the
/// leader, decoded by the caller's task.
pub(crate) enum ReplyBody<R> {
    Value(R),
    Encoded(Vec<u8>),
    /// A direct call reached a node that no longer leads, which did not run it: the caller
    /// sends it again through the actor.
    Retry,
}

enum CallState {
    /// Waiting for a leader.
    Waiting,
    /// Sent to `leader` at `term`.
    Sent { leader: NodeId, term: Term },
    /// Being served by this node (it leads): a deferred reply is awaited.
    Local,
}

struct CallEntry<B: Behaviour> {
    req: Option<CallReq<B::Call>>,
    deadline: Instant,
    reply: oneshot::Sender<Result<ReplyBody<B::Reply>, CallError>>,
    state: CallState,
}

pub(crate) struct NodeState<B: Behaviour> {
    behaviour: B,
    engine: Engine,
    cfg: Arc<Config>,
    hs: Arc<HandshakeConfig>,
    myself: ActorRef<NodeMsg<B>>,
    connector: Arc<dyn Connector>,
    peers: Vec<Peer>,
    next_conn: u64,
    calls: HashMap<u64, CallEntry<B>>,
    /// Follower calls on the direct path (see `fastpath`), and the route last published there.
    fast: Arc<FastPath<B::Reply>>,
    route_key: Option<(NodeId, Term, u64)>,
    /// When the actor last looked at the readers' counts (see `Conn::refresh`).
    last_tick: Instant,
    waiting: VecDeque<u64>,
    next_sweep: Option<Instant>,
    held_casts: VecDeque<(Instant, B::Cast)>,
    bcast_seq: u64,
    last_seq: u64,
    view_tx: watch::Sender<ClusterView>,
    timer_tx: watch::Sender<Option<Instant>>,
    terms: TermStore,
    audit: AuditLog,
    started: Instant,
    tasks: Vec<JoinHandle<()>>,
    rng: rand::rngs::StdRng,
    stopping: bool,
    counters: NodeStats,
    refused: Arc<AtomicU64>,
    /// Opt-in spin mode: wakes the spinner after activity.
    spin: Option<Arc<tokio::sync::Notify>>,
}

impl<B: Behaviour> Drop for NodeState<B> {
    fn drop(&mut self) {
        // However the actor ended (even by a panic, where `post_stop` does not run), the
        // direct calls fail now with `Stopped` rather than at their deadline.
        self.fast.fail_all();
        for t in &self.tasks {
            t.abort();
        }
        for p in &mut self.peers {
            if let Some(d) = p.dialer.take() {
                d.abort();
            }
            if let Some(c) = p.conn.take() {
                c.reader.abort();
                c.writer.abort();
            }
        }
    }
}

impl<B: Behaviour> Actor for NodeActor<B> {
    type Msg = NodeMsg<B>;
    type State = NodeState<B>;
    type Arguments = NodeArgs<B>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: NodeArgs<B>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let NodeArgs {
            call_ids,
            fast,
            config,
            mut behaviour,
            mut listener,
            connector,
            view_tx,
        } = args;
        let (terms, initial_term) =
            TermStore::open(config.data_dir()).map_err(|e| format!("data directory: {e}"))?;
        let audit =
            AuditLog::open(config.data_dir()).map_err(|e| format!("data directory: {e}"))?;
        if config.data_dir().is_none() {
            warn!(node = %config.me(), "no data directory: terms are not persisted across restarts");
        }
        let incarnation: u64 = rand::random();
        let seed = config.seed.unwrap_or_else(rand::random);
        let hs = Arc::new(HandshakeConfig {
            cluster: config.cluster.clone(),
            cookie: config.cookie.clone(),
            me: config.me().to_string(),
            incarnation,
            members_digest: config.members_digest(),
            timeout: config.handshake_timeout,
        });

        let handle = LeaderHandle::from_parts(
            myself.clone(),
            view_tx.subscribe(),
            config.clone(),
            listener.local_addr(),
            call_ids,
            fast.clone(),
        );
        behaviour.init(handle).await.map_err(|e| e.to_string())?;

        let now = Instant::now();
        let engine = Engine::new(
            EngineConfig {
                me: config.my_id,
                n_candidates: config.members().n_candidates() as u32,
                n_nodes: config.members().len() as u32,
                election_timeout: config.election_timeout,
                startup_timeout: config.startup_timeout,
                announce_interval: config.heartbeat * 10,
                preempt: config.preempt,
                seed,
                initial_term,
            },
            now.into_std(),
        );

        let (timer_tx, timer_rx) = watch::channel(None);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(timer_loop(
            myself.clone(),
            timer_rx,
            config.heartbeat / 2,
        )));
        // Inbound connections.
        let refused = Arc::new(AtomicU64::new(0));
        {
            let refused = refused.clone();
            let myself = myself.clone();
            let hs = hs.clone();
            let config = config.clone();
            tasks.push(tokio::spawn(async move {
                let sem = Arc::new(Semaphore::new(MAX_HANDSHAKES));
                loop {
                    let permit = match sem.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => return,
                    };
                    match listener.accept().await {
                        Ok((stream, from)) => {
                            let refused = refused.clone();
                            let myself = myself.clone();
                            let hs = hs.clone();
                            let config = config.clone();
                            tokio::spawn(async move {
                                accept_one(stream, from, myself, hs, config, refused).await;
                                drop(permit);
                            });
                        }
                        Err(e) => {
                            warn!(node = %config.me(), error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }));
        }

        let n = config.members().len();
        let mut state = NodeState {
            behaviour,
            engine,
            cfg: config.clone(),
            hs,
            myself,
            connector,
            peers: (0..n)
                .map(|_| Peer {
                    conn: None,
                    reserved: None,
                    dialer: None,
                    dial_at: now,
                    attempt: 0,
                    refusals: 0,
                    dial_gen: 0,
                })
                .collect(),
            next_conn: 1,
            calls: HashMap::new(),
            fast,
            route_key: None,
            last_tick: now,
            waiting: VecDeque::new(),
            next_sweep: None,
            held_casts: VecDeque::new(),
            bcast_seq: 0,
            last_seq: 0,
            view_tx,
            timer_tx,
            terms,
            audit,
            started: now,
            tasks,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            stopping: false,
            counters: NodeStats::default(),
            refused,
            spin: None,
        };
        if let Some(window) = config.spin {
            let notify = Arc::new(tokio::sync::Notify::new());
            state
                .tasks
                .push(tokio::spawn(spin_loop(notify.clone(), window)));
            state.fast.set_spin(notify.clone());
            state.spin = Some(notify);
        }
        info!(node = %config.me(), term = %initial_term, "node starting");
        // The view shows the persisted term from the start, not 0.
        state.publish_view();
        for i in 0..n {
            let p = NodeId(i as u32);
            if p != config.my_id {
                state.dial(p, Duration::ZERO);
            }
        }
        Ok(state)
    }

    async fn post_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.after_engine().await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if state.stopping {
            fail_stopped(msg);
            return Ok(());
        }
        if let Some(n) = &state.spin {
            n.notify_one();
        }
        match msg {
            NodeMsg::LeaderCall {
                id,
                request,
                deadline,
                reply,
            } => state.leader_call(id, request, deadline, reply).await,
            NodeMsg::LeaderCast(m) => state.leader_cast(m).await,
            NodeMsg::Call { request, reply } => {
                let election = election!(state);
                let r = state.behaviour.handle_call(request, &election).await;
                let _ = reply.send(r);
            }
            NodeMsg::Cast(m) => {
                let election = election!(state);
                state.behaviour.handle_cast(m, &election).await;
            }
            NodeMsg::Info(m) => {
                let election = election!(state);
                state.behaviour.handle_info(m, &election).await;
            }
            NodeMsg::Reply { to, reply } => state.deliver_reply(to, reply).await,
            NodeMsg::Admit {
                peer,
                incarnation,
                reply,
            } => {
                let r = state.admit(peer, incarnation);
                let _ = reply.send(r);
            }
            NodeMsg::Connected {
                peer,
                conn,
                incarnation,
                stream,
                read_buf,
            } => {
                if state.peers[peer.index()].reserved.map(|r| r.0) == Some(conn) {
                    state.peers[peer.index()].reserved = None;
                    state.install(peer, incarnation, stream, read_buf);
                    state.after_engine().await;
                }
            }
            NodeMsg::AdmitAborted { peer, conn } => {
                let p = &mut state.peers[peer.index()];
                if p.reserved.map(|r| r.0) == Some(conn) {
                    p.reserved = None;
                }
            }
            NodeMsg::DialDone { peer, gen, outcome } => {
                if state.peers[peer.index()].dial_gen != gen {
                    // A dial we abandoned finished anyway: ignore its result (dropping a
                    // connection it made closes it).
                    return Ok(());
                }
                state.dial_done(peer, outcome);
                state.after_engine().await;
            }
            NodeMsg::Inbound {
                peer, conn, msgs, ..
            } => {
                // One clock read per batch: any frame proves the peer alive.
                if let Some(c) = state.peers[peer.index()]
                    .conn
                    .as_mut()
                    .filter(|c| c.id == conn)
                {
                    c.last_recv = Instant::now();
                }
                for msg in msgs {
                    state.inbound(peer, conn, msg).await;
                }
            }
            NodeMsg::ConnClosed { peer, conn, reason } => {
                if state.peers[peer.index()]
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.id == conn)
                {
                    state.drop_conn(peer, &reason);
                    state.after_engine().await;
                }
            }
            NodeMsg::Tick => state.tick().await,
            NodeMsg::Stats(reply) => {
                let _ = reply.send(state.stats());
            }
            NodeMsg::Shutdown(done) => {
                state.shutdown(StopReason::Shutdown).await;
                let _ = done.send(());
                myself.stop(None);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if !state.stopping {
            state
                .shutdown(StopReason::Error("node actor stopped".into()))
                .await;
        }
        Ok(())
    }
}

/// Answers a message that arrives while the node is stopping.
fn fail_stopped<B: Behaviour>(msg: NodeMsg<B>) {
    match msg {
        NodeMsg::LeaderCall { reply, .. } => {
            let _ = reply.send(Err(CallError::Stopped));
        }
        NodeMsg::Admit { reply, .. } => {
            let _ = reply.send(Err(Refusal::ShuttingDown));
        }
        NodeMsg::Shutdown(done) => {
            let _ = done.send(());
        }
        _ => {}
    }
}

/// The opt-in spin mode: after each notification, keeps yielding (a yielded task runs again
/// only after its worker has polled the I/O driver, so this is a busy-poll of the sockets)
/// until `window` passes with no new notification; then parks until the next one.
async fn spin_loop(notify: Arc<tokio::sync::Notify>, window: Duration) {
    loop {
        notify.notified().await;
        let mut until = Instant::now() + window;
        loop {
            tokio::task::yield_now().await;
            // A notification during the spin (a permit is stored) extends it.
            if futures::FutureExt::now_or_never(notify.notified()).is_some() {
                until = Instant::now() + window;
            }
            if Instant::now() >= until {
                break;
            }
        }
    }
}

/// Wakes the actor at the requested deadline and every `period` (heartbeats).
async fn timer_loop<B: Behaviour>(
    actor: ActorRef<NodeMsg<B>>,
    mut rx: watch::Receiver<Option<Instant>>,
    period: Duration,
) {
    let mut next_periodic = Instant::now() + period;
    let mut fired: Option<Instant> = None;
    loop {
        let req = (*rx.borrow_and_update()).filter(|r| Some(*r) != fired);
        let wake = req.map_or(next_periodic, |r| r.min(next_periodic));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if now >= next_periodic {
                    next_periodic = now + period;
                }
                if req.is_some_and(|r| r <= now) {
                    fired = req;
                }
                if actor.cast(NodeMsg::Tick).is_err() {
                    return;
                }
            }
            r = rx.changed() => if r.is_err() { return },
        }
    }
}

async fn accept_one<B: Behaviour>(
    stream: BoxStream,
    from: String,
    myself: ActorRef<NodeMsg<B>>,
    hs: Arc<HandshakeConfig>,
    config: Arc<Config>,
    refused: Arc<AtomicU64>,
) {
    let members = config.members();
    let admitted: std::sync::Mutex<Option<(NodeId, u64)>> = std::sync::Mutex::new(None);
    let result = handshake::accept(
        stream,
        &hs,
        |name| members.id_of_str(name).is_some(),
        |hello| {
            let myself = myself.clone();
            let admitted = &admitted;
            async move {
                let Some(peer) = members.id_of_str(&hello.name) else {
                    return Err(Refusal::Unknown(hello.name));
                };
                let (tx, rx) = oneshot::channel();
                myself
                    .cast(NodeMsg::Admit {
                        peer,
                        incarnation: hello.incarnation,
                        reply: tx,
                    })
                    .map_err(|_| Refusal::ShuttingDown)?;
                let conn = rx.await.map_err(|_| Refusal::ShuttingDown)??;
                if let Ok(mut a) = admitted.lock() {
                    *a = Some((peer, conn));
                }
                Ok(())
            }
        },
    )
    .await;
    let admitted = admitted.lock().ok().and_then(|a| *a);
    match (result, admitted) {
        (Ok(ok), Some((peer, conn))) => {
            let _ = myself.cast(NodeMsg::Connected {
                peer,
                conn,
                incarnation: ok.peer.incarnation,
                stream: ok.stream,
                read_buf: ok.read_buf,
            });
        }
        (Ok(_), None) => {}
        (Err(e), admitted) => {
            if let Some((peer, conn)) = admitted {
                let _ = myself.cast(NodeMsg::AdmitAborted { peer, conn });
            }
            match &e {
                HandshakeError::Rejected(Refusal::CallBack) => {
                    debug!(node = %config.me(), %from, "peer asked us to dial it")
                }
                _ => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    warn!(node = %config.me(), %from, reason = %e, "inbound connection refused")
                }
            }
        }
    }
}

impl<B: Behaviour> NodeState<B> {
    fn name(&self, id: NodeId) -> &NodeName {
        self.cfg.members().name(id)
    }

    fn me(&self) -> NodeId {
        self.cfg.my_id
    }

    // ----- connections ---------------------------------------------------------------------

    /// Starts one dial attempt to `peer` after `delay`. Lower ids dial higher ids; a higher
    /// id's dial only asks the lower one to dial back (it answers `CallBack`).
    fn dial(&mut self, peer: NodeId, delay: Duration) {
        let p = &mut self.peers[peer.index()];
        if p.conn.is_some() || p.dialer.is_some() || self.stopping {
            return;
        }
        let myself = self.myself.clone();
        let connector = self.connector.clone();
        let hs = self.hs.clone();
        p.dial_at = Instant::now() + delay;
        p.dial_gen += 1;
        let gen = p.dial_gen;
        let name = self.cfg.members().name(peer).clone();
        let addr = self.cfg.dial_addr(peer);
        p.dialer = Some(tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let outcome = match connector.connect(addr).await {
                Err(e) => DialOutcome::Unreachable(e.to_string()),
                Ok(stream) => match handshake::dial(stream, &hs, &name.to_string()).await {
                    Ok(ok) => DialOutcome::Connected {
                        incarnation: ok.peer.incarnation,
                        stream: ok.stream,
                        read_buf: ok.read_buf,
                    },
                    Err(HandshakeError::Refused(Refusal::CallBack)) => {
                        DialOutcome::CallBackRequested
                    }
                    Err(e) => DialOutcome::Failed(e.to_string()),
                },
            };
            let _ = myself.cast(NodeMsg::DialDone { peer, gen, outcome });
        }));
    }

    fn dial_done(&mut self, peer: NodeId, outcome: DialOutcome) {
        let me = self.me();
        self.peers[peer.index()].dialer = None;
        let now = Instant::now();
        let refused = matches!(outcome, DialOutcome::Failed(_));
        match outcome {
            DialOutcome::Connected {
                incarnation,
                stream,
                read_buf,
            } => {
                if self.peers[peer.index()].conn.is_some() {
                    // Only lower ids dial, so this is a reconnect racing a close.
                    self.drop_conn(peer, "replaced by a new connection");
                }
                self.peers[peer.index()].attempt = 0;
                self.peers[peer.index()].refusals = 0;
                self.install(peer, incarnation, stream, read_buf);
            }
            DialOutcome::CallBackRequested => self.peers[peer.index()].refusals = 0,
            DialOutcome::Unreachable(e) | DialOutcome::Failed(e) => {
                let attempt = self.peers[peer.index()].attempt;
                if refused && attempt % 10 == 0 {
                    // The peer is up but refuses us (wrong cookie, version, configuration):
                    // say so loudly, but not at every retry.
                    warn!(node = %self.name(me), peer = %self.name(peer), reason = %e, "connection refused by peer");
                } else {
                    debug!(node = %self.name(me), peer = %self.name(peer), error = %e, "dial failed");
                }
                // A refused connection right at startup often means the peer is starting
                // too and not listening yet: only the second refusal in a row (tens of ms
                // later) makes it unreachable, so that simultaneous starts elect by priority.
                let p = &mut self.peers[peer.index()];
                p.refusals = p.refusals.saturating_add(1);
                if refused || p.refusals >= 2 {
                    self.engine.handle_peer_unreachable(now.into_std(), peer);
                } else if me > peer {
                    // We only ask lower ids to dial us: ask once more.
                    self.dial(peer, Duration::from_millis(25));
                }
                if me < peer {
                    let a = self.peers[peer.index()].attempt;
                    self.peers[peer.index()].attempt = a.saturating_add(1);
                    let d = transport::backoff(
                        a,
                        Duration::from_millis(20),
                        Duration::from_millis(500),
                        self.rng.random::<f64>(),
                    );
                    self.dial(peer, d);
                }
            }
        }
    }

    fn admit(&mut self, peer: NodeId, incarnation: u64) -> Result<u64, Refusal> {
        let me = self.me();
        if peer == me {
            return Err(Refusal::Duplicate(self.name(me).to_string()));
        }
        if peer > me {
            // We dial higher ids: dial now, and tell it to wait for us. If we hold a connection
            // from an earlier incarnation of that node, it restarted: that connection is dead.
            // (A request from the same incarnation raced with our own dial: ignore it.)
            match &self.peers[peer.index()].conn {
                Some(c) if c.incarnation != incarnation => {
                    self.drop_conn(peer, "peer restarted");
                }
                Some(_) => return Err(Refusal::CallBack),
                None => {}
            }
            let now = Instant::now();
            let p = &mut self.peers[peer.index()];
            if p.dial_at > now {
                // Sleeping in backoff: dial now instead.
                if let Some(d) = p.dialer.take() {
                    d.abort();
                }
            }
            p.attempt = 0;
            self.dial(peer, Duration::ZERO);
            return Err(Refusal::CallBack);
        }
        let now = Instant::now();
        let hb = self.cfg.heartbeat;
        let since = self.look_since(now);
        if let Some(c) = self.peers[peer.index()].conn.as_mut() {
            c.refresh(since);
        }
        let p = &self.peers[peer.index()];
        if p.reserved.is_some() {
            return Err(Refusal::Other(
                "a handshake with this node is in progress".into(),
            ));
        }
        if let Some(c) = &p.conn {
            let healthy = now.duration_since(c.last_recv) < hb;
            if c.incarnation != incarnation && healthy {
                return Err(Refusal::Duplicate(self.name(peer).to_string()));
            }
            // The peer restarted or redialed: its old connection is dead.
            self.drop_conn(peer, "peer reconnected");
        }
        let id = self.next_conn;
        self.next_conn += 1;
        self.peers[peer.index()].reserved = Some((id, incarnation));
        Ok(id)
    }

    fn install(&mut self, peer: NodeId, incarnation: u64, stream: BoxStream, read_buf: BytesMut) {
        let id = self.next_conn;
        self.next_conn += 1;
        let (rd, wr) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel::<Bytes>(self.cfg.send_queue);
        // The size of the last batch read on this connection: the writer's load signal.
        let inbound = Arc::new(AtomicUsize::new(0));
        let load = inbound.clone();
        let writer = tokio::spawn(async move {
            let _ = transport::write_loop_with_load(wr, rx, Some(load)).await;
        });
        let frames = FramedRead::new(rd, FrameCodec::new(self.cfg.max_frame_len));
        let actor = self.myself.clone();
        let window = Arc::new(Semaphore::new(INBOUND_WINDOW));
        let recv_count = Arc::new(AtomicU64::new(0));
        let fast = self.fast.clone();
        let counter = recv_count.clone();
        let reader = tokio::spawn(async move {
            let end = transport::read_loop(frames, read_buf, |msgs| {
                counter.fetch_add(1, Ordering::Relaxed);
                inbound.store(msgs.len(), Ordering::Relaxed);
                let msgs = direct_replies(msgs, &fast, &window, id);
                let actor = actor.clone();
                let window = window.clone();
                async move {
                    if msgs.is_empty() {
                        return true;
                    }
                    let Ok(permit) = window.acquire_owned().await else {
                        return false;
                    };
                    actor
                        .cast(NodeMsg::Inbound {
                            peer,
                            conn: id,
                            msgs,
                            _permit: permit,
                        })
                        .is_ok()
                }
            })
            .await;
            let _ = actor.cast(NodeMsg::ConnClosed {
                peer,
                conn: id,
                reason: end.to_string(),
            });
        });
        let now = Instant::now();
        self.peers[peer.index()].conn = Some(Conn {
            id,
            incarnation,
            tx,
            reader,
            writer,
            last_recv: now,
            last_sent: now,
            recv_count,
            recv_seen: 0,
        });
        info!(node = %self.name(self.me()), peer = %self.name(peer), "connected");
        self.engine.handle_peer_up(now.into_std(), peer);
    }

    /// Closes the connection to `peer` and tells the engine.
    fn drop_conn(&mut self, peer: NodeId, reason: &str) {
        let Some(c) = self.peers[peer.index()].conn.take() else {
            return;
        };
        c.close();
        info!(node = %self.name(self.me()), peer = %self.name(peer), %reason, "disconnected");
        let now = Instant::now();
        self.fail_calls_to(peer);
        self.engine.handle_peer_down(now.into_std(), peer);
        if !self.stopping {
            // Lower ids redial at once; higher ids ask to be dialed back.
            self.peers[peer.index()].attempt = 0;
            self.dial(peer, Duration::from_millis(5));
        }
    }

    fn send(&mut self, to: NodeId, msg: &Msg) {
        match codec::encode_frame(msg) {
            Ok(frame) => self.send_frame(to, frame),
            Err(e) => warn!(node = %self.name(self.me()), error = %e, "cannot encode a message"),
        }
    }

    fn send_frame(&mut self, to: NodeId, frame: Bytes) {
        let Some(c) = self.peers[to.index()].conn.as_mut() else {
            return;
        };
        match c.tx.try_send(frame) {
            Ok(()) => c.last_sent = Instant::now(),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.drop_conn(to, "send queue full: peer too slow");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Like [`Self::send_frame`], but when the peer's queue is full, waits for room (up to half
    /// the failure timeout) instead of disconnecting at once: a burst of broadcasts slows the
    /// leader down to its followers' pace rather than losing them. Only a follower that stays
    /// stuck that long is disconnected.
    async fn send_frame_or_wait(&mut self, to: NodeId, frame: Bytes) {
        let Some(c) = self.peers[to.index()].conn.as_mut() else {
            return;
        };
        let frame = match c.tx.try_send(frame) {
            Ok(()) => {
                c.last_sent = Instant::now();
                return;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(frame)) => frame,
        };
        let (tx, id) = (c.tx.clone(), c.id);
        let wait = self.cfg.failure_timeout / 2;
        match tx.send_timeout(frame, wait).await {
            Ok(()) => {
                if let Some(c) = self.peers[to.index()].conn.as_mut().filter(|c| c.id == id) {
                    c.last_sent = Instant::now();
                }
            }
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                if self.peers[to.index()]
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.id == id)
                {
                    let reason =
                        format!("send queue full for {} ms: peer too slow", wait.as_millis());
                    self.drop_conn(to, &reason);
                }
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => {}
        }
    }

    // ----- the engine ----------------------------------------------------------------------

    /// Acts on every engine output, then republishes the view and reschedules the timer.
    ///
    /// The view is also published before the first callback runs, so that what a handle shows
    /// is never older than what a callback has been told (`elected` sees `handle.term()` equal
    /// to its own term, and anything it prints is not followed by an older view).
    async fn after_engine(&mut self) {
        let mut leader_changed = false;
        let mut published = false;
        while let Some(out) = self.engine.poll_output() {
            if !published
                && matches!(
                    out,
                    Output::Elected { .. } | Output::Surrendered { .. } | Output::Down { .. }
                )
            {
                self.publish_view();
                published = true;
            }
            match out {
                Output::Send { to, msg } => self.send(to, &Msg::Election(msg)),
                Output::PersistTerm(t) => {
                    if let Err(e) = self.terms.store(t) {
                        tracing::error!(node = %self.name(self.me()), term = %t, error = %e,
                            "cannot persist the term: a restart may reuse it");
                    }
                }
                Output::Elected { term, joined } => {
                    leader_changed |= joined.is_none();
                    let joined_name = joined.map(|j| self.name(j).clone());
                    if joined.is_none() {
                        self.bcast_seq = 0;
                        self.record("elected", term, Some(self.me()), "won the election");
                    } else {
                        info!(node = %self.name(self.me()), %term,
                            joined = %joined_name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                            "node joined");
                    }
                    let election = election!(self);
                    let synch = self
                        .behaviour
                        .elected(&election, joined_name.as_ref())
                        .await;
                    match codec::encode_payload(&synch) {
                        Ok(bytes) => self.engine.provide_synch(joined, bytes),
                        Err(e) => tracing::error!(error = %e, "cannot encode the Synch"),
                    }
                }
                Output::Surrendered {
                    leader,
                    term,
                    synch,
                } => {
                    leader_changed = true;
                    self.last_seq = 0;
                    self.record("surrendered", term, Some(leader), "accepted a leader");
                    match codec::decode_payload::<B::Synch>(&synch) {
                        Ok(s) => {
                            let election = election!(self);
                            self.behaviour.surrendered(s, &election).await;
                        }
                        Err(e) => {
                            warn!(node = %self.name(self.me()), error = %e, "bad Synch from leader")
                        }
                    }
                }
                Output::LeadershipLost { term, reason } => {
                    leader_changed = true;
                    self.record("lost", term, None, reason_str(reason));
                }
                Output::LeaderLost {
                    leader,
                    term,
                    reason,
                } => {
                    leader_changed = true;
                    self.fail_calls_to(leader);
                    self.record("leader_lost", term, Some(leader), reason_str(reason));
                }
                Output::Down { node } => {
                    if self.engine.is_leader() {
                        let name = self.name(node).clone();
                        let election = election!(self);
                        if let Some(b) = self.behaviour.handle_down(&name, &election).await {
                            self.broadcast(b).await;
                        }
                    }
                }
            }
        }
        self.publish_view();
        self.update_route();
        if leader_changed || self.engine.leader().is_some() {
            self.flush_waiting().await;
        }
        self.schedule();
    }

    /// Publishes where direct calls go: the leader's connection, when this node follows.
    fn update_route(&mut self) {
        let me = self.me();
        let want = self.engine.leader().filter(|l| l.node != me).and_then(|l| {
            let c = self.peers[l.node.index()].conn.as_ref()?;
            Some((l.node, l.term, c.id, c.tx.clone()))
        });
        let key = want.as_ref().map(|w| (w.0, w.1, w.2));
        if key == self.route_key {
            return;
        }
        self.route_key = key;
        self.fast
            .set_route(want.map(|(leader, term, conn, tx)| Route {
                leader,
                term,
                conn,
                tx,
            }));
    }

    fn record(&mut self, event: &str, term: Term, leader: Option<NodeId>, reason: &str) {
        let node = self.name(self.me()).to_string();
        let leader = leader.map(|l| self.name(l).to_string());
        info!(node = %node, %term, leader = leader.as_deref().unwrap_or("none"), %reason, event, "leadership change");
        let mono_ms = self.started.elapsed().as_millis();
        self.audit.append(&AuditEvent {
            node: &node,
            event,
            term,
            leader: leader.as_deref(),
            reason,
            mono_ms,
        });
    }

    fn publish_view(&mut self) {
        let e = &self.engine;
        let m = self.cfg.members();
        let leader = e.leader().map(|l| m.name(l.node).clone());
        let term = e.term();
        let role = e.role();
        self.view_tx.send_if_modified(|v| {
            let alive_changed = m
                .all()
                .iter()
                .enumerate()
                .any(|(i, n)| e.is_alive(NodeId(i as u32)) != v.alive.contains(n));
            if v.leader == leader && v.term == term && v.role == role && !alive_changed {
                return false;
            }
            v.leader = leader;
            v.term = term;
            v.role = role;
            v.alive.clear();
            v.down.clear();
            for (i, n) in m.all().iter().enumerate() {
                if e.is_alive(NodeId(i as u32)) {
                    v.alive.push(n.clone());
                } else {
                    v.down.push(n.clone());
                }
            }
            true
        });
    }

    fn schedule(&mut self) {
        let engine = self.engine.poll_timeout().map(Instant::from_std);
        let want = match (engine, self.next_sweep) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.timer_tx.send_if_modified(|v| {
            if *v != want {
                *v = want;
                true
            } else {
                false
            }
        });
    }

    /// The earliest time the readers' counts may be credited to at `now`: the previous tick
    /// (when the actor last looked), but no earlier than half a heartbeat ago, so that a late
    /// tick (a busy actor) cannot make a live peer look silent.
    fn look_since(&self, now: Instant) -> Instant {
        let floor = now.checked_sub(self.cfg.heartbeat / 2).unwrap_or(now);
        self.last_tick.max(floor)
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        let since = self.look_since(now);
        self.last_tick = now;
        // Heartbeats and failure detection.
        let hb = self.cfg.heartbeat;
        let ft = self.cfg.failure_timeout;
        let mut dead = Vec::new();
        let mut beat = Vec::new();
        for (i, p) in self.peers.iter_mut().enumerate() {
            if let Some(c) = &mut p.conn {
                // Replies to direct calls never reach the actor: the reader counts them.
                c.refresh(since);
                if now.duration_since(c.last_recv) >= ft {
                    dead.push(NodeId(i as u32));
                } else if now.duration_since(c.last_sent) >= hb
                    && c.tx.capacity() == c.tx.max_capacity()
                {
                    // (Frames still queued will prove us alive: no heartbeat, and no
                    // disconnection of a peer whose queue the callers filled.)
                    beat.push(NodeId(i as u32));
                }
            }
        }
        if !beat.is_empty() {
            if let Ok(f) = codec::encode_frame(&Msg::Heartbeat) {
                for p in beat {
                    self.send_frame(p, f.clone());
                }
            }
        }
        for p in dead {
            let reason = format!("no traffic for {} ms (failure timeout)", ft.as_millis());
            self.drop_conn(p, &reason);
        }
        self.engine.handle_timeout(now.into_std());
        self.sweep_calls(now);
        self.after_engine().await;
    }

    // ----- inbound -------------------------------------------------------------------------

    async fn inbound(&mut self, peer: NodeId, conn: u64, msg: Msg) {
        // A message of a connection that has been replaced or closed meanwhile is dropped.
        if self.peers[peer.index()]
            .conn
            .as_ref()
            .is_none_or(|c| c.id != conn)
        {
            return;
        }
        match msg {
            Msg::Heartbeat => {}
            Msg::Election(m) => {
                self.engine
                    .handle_message(Instant::now().into_std(), peer, m);
                self.after_engine().await;
            }
            Msg::LeaderCall { id, payload } => {
                self.remote_leader_call(peer, conn, id, payload).await
            }
            Msg::Reply { id, term, result } => self.on_reply(peer, conn, id, term, result),
            Msg::LeaderCast { payload } => {
                if !self.engine.is_leader() {
                    // Sent to us as leader, but we no longer lead: lost, as in gen_leader
                    // (forwarding again could bounce between two stale views).
                    debug!(node = %self.name(self.me()), peer = %self.name(peer), "leader_cast for a former leader dropped");
                    return;
                }
                match codec::decode_payload::<B::Cast>(&payload) {
                    Ok(m) => self.leader_cast(m).await,
                    Err(e) => {
                        warn!(node = %self.name(self.me()), peer = %self.name(peer), error = %e, "bad leader_cast")
                    }
                }
            }
            Msg::Broadcast { term, seq, payload } => {
                let from_leader = self
                    .engine
                    .leader()
                    .is_some_and(|l| l.node == peer && l.term == term);
                if !from_leader || seq <= self.last_seq {
                    debug!(node = %self.name(self.me()), peer = %self.name(peer), %term, seq, "stale broadcast dropped");
                    return;
                }
                self.last_seq = seq;
                match codec::decode_payload::<B::Broadcast>(&payload) {
                    Ok(b) => {
                        let election = election!(self);
                        self.behaviour.from_leader(b, &election).await;
                    }
                    Err(e) => warn!(node = %self.name(self.me()), error = %e, "bad broadcast"),
                }
            }
            Msg::Goodbye => {
                self.drop_conn(peer, "peer shut down");
                self.after_engine().await;
            }
        }
    }

    // ----- calls ---------------------------------------------------------------------------

    async fn leader_call(
        &mut self,
        id: u64,
        request: CallReq<B::Call>,
        deadline: Instant,
        reply: oneshot::Sender<Result<ReplyBody<B::Reply>, CallError>>,
    ) {
        if self.calls.len() >= MAX_CALLS {
            let _ = reply.send(Err(CallError::Remote("too many calls in flight".into())));
            return;
        }
        if deadline <= Instant::now() {
            // Past its deadline already (a direct call sent back after `NotLeader`): it must
            // not be sent anywhere now.
            let _ = reply.send(Err(CallError::NoLeader));
            return;
        }
        self.calls.insert(
            id,
            CallEntry {
                req: Some(request),
                deadline,
                reply,
                state: CallState::Waiting,
            },
        );
        if self.next_sweep.is_none_or(|s| deadline < s) {
            self.next_sweep = Some(deadline);
            self.schedule();
        }
        if self.engine.leader().is_some() {
            self.dispatch(id).await;
        } else {
            self.waiting.push_back(id);
        }
    }

    /// Sends call `id` to the leader, or serves it if this node leads.
    async fn dispatch(&mut self, id: u64) {
        let Some(l) = self.engine.leader() else {
            self.waiting.push_back(id);
            return;
        };
        let me = self.me();
        let Some(entry) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(req) = entry.req.take() else { return };
        if l.node == me {
            let req = match req {
                CallReq::Value(v) => v,
                CallReq::Frame(f) => match decode_call_frame::<B::Call>(&f) {
                    Ok(v) => v,
                    Err(e) => {
                        self.resolve(id, Err(CallError::Codec(e)));
                        return;
                    }
                },
            };
            entry.state = CallState::Local;
            self.counters.leader_calls_served += 1;
            let election = election!(self);
            let r = self
                .behaviour
                .handle_leader_call(req, ReplyTo::new(Origin::Local(id)), &election)
                .await;
            self.finish_leader_call(Origin::Local(id), r).await;
        } else {
            let frame = match req {
                CallReq::Frame(f) => f,
                CallReq::Value(v) => match encode_call_frame(id, &v) {
                    Ok(f) => f,
                    Err(e) => {
                        self.resolve(id, Err(CallError::Codec(e)));
                        return;
                    }
                },
            };
            entry.req = Some(CallReq::Frame(frame.clone()));
            entry.state = CallState::Sent {
                leader: l.node,
                term: l.term,
            };
            self.send_frame(l.node, frame);
        }
    }

    async fn flush_waiting(&mut self) {
        if self.engine.leader().is_none() {
            return;
        }
        let ids: Vec<u64> = self.waiting.drain(..).collect();
        for id in ids {
            self.dispatch(id).await;
        }
        let casts: Vec<B::Cast> = self.held_casts.drain(..).map(|(_, c)| c).collect();
        for c in casts {
            self.leader_cast(c).await;
        }
    }

    async fn finish_leader_call(&mut self, origin: Origin, r: LeaderReply<B::Reply, B::Broadcast>) {
        match r {
            LeaderReply::Reply(r) => self.deliver_reply(origin, r).await,
            LeaderReply::ReplyAndBroadcast(r, b) => {
                self.broadcast(b).await;
                self.deliver_reply(origin, r).await;
            }
            LeaderReply::NoReply => {}
        }
    }

    /// Delivers a reply: to the local caller, or on the caller's connection (waiting for room
    /// in its queue, as broadcasts do: many callers must slow the leader down, not lose it).
    async fn deliver_reply(&mut self, to: Origin, reply: B::Reply) {
        match to {
            Origin::Local(id) => self.resolve(id, Ok(ReplyBody::Value(reply))),
            Origin::Remote { peer, conn, id } => {
                // The call came over a connection that is gone: its caller has already been
                // told `LeaderDown`, and the ids of a reconnected (maybe restarted) node are
                // not its ids.
                if self.peers[peer.index()]
                    .conn
                    .as_ref()
                    .is_none_or(|c| c.id != conn)
                {
                    debug!(node = %self.name(self.me()), peer = %self.name(peer), id, "reply for a closed connection dropped");
                    return;
                }
                let term = self.engine.term();
                let ok = Msg::Reply {
                    id,
                    term,
                    result: ReplyResult::Ok(Vec::new()),
                };
                match codec::encode_frame_with_payload(&ok, &reply) {
                    Ok(frame) => self.send_frame_or_wait(peer, frame).await,
                    Err(e) => {
                        let result = ReplyResult::Error(format!("cannot encode the reply: {e}"));
                        self.send(peer, &Msg::Reply { id, term, result });
                    }
                }
            }
        }
    }

    fn resolve(&mut self, id: u64, r: Result<ReplyBody<B::Reply>, CallError>) {
        if let Some(e) = self.calls.remove(&id) {
            let _ = e.reply.send(r);
        }
    }

    async fn remote_leader_call(&mut self, peer: NodeId, conn: u64, id: u64, payload: Vec<u8>) {
        if !self.engine.is_leader() {
            let term = self.engine.term();
            self.send(
                peer,
                &Msg::Reply {
                    id,
                    term,
                    result: ReplyResult::NotLeader,
                },
            );
            return;
        }
        let req = match codec::decode_payload::<B::Call>(&payload) {
            Ok(r) => r,
            Err(e) => {
                let term = self.engine.term();
                let result = ReplyResult::Error(format!("cannot decode the request: {e}"));
                self.send(peer, &Msg::Reply { id, term, result });
                return;
            }
        };
        let origin = Origin::Remote { peer, conn, id };
        self.counters.leader_calls_served += 1;
        let election = election!(self);
        let r = self
            .behaviour
            .handle_leader_call(req, ReplyTo::new(origin), &election)
            .await;
        self.finish_leader_call(origin, r).await;
    }

    fn on_reply(&mut self, peer: NodeId, conn: u64, id: u64, term: Term, result: ReplyResult) {
        let Some(entry) = self.calls.get_mut(&id) else {
            // A direct call whose reply came after a broadcast, in order, through the actor.
            if let Some(p) = self.fast.take_reply(conn, id, term) {
                fastpath::resolve(p, result);
            }
            return;
        };
        let CallState::Sent {
            leader,
            term: sent_term,
        } = entry.state
        else {
            return;
        };
        if leader != peer || term < sent_term {
            debug!(node = %self.name(self.me()), %term, "stale reply dropped");
            return;
        }
        match result {
            // Decoded by the caller's task.
            ReplyResult::Ok(b) => self.resolve(id, Ok(ReplyBody::Encoded(b))),
            ReplyResult::NotLeader => {
                // Not executed: safe to send again once a leader is known.
                entry.state = CallState::Waiting;
                self.waiting.push_back(id);
            }
            ReplyResult::Error(e) => self.resolve(id, Err(CallError::Remote(e))),
        }
    }

    /// The connection to `node` is gone or it stopped leading: calls in flight to it fail
    /// with `LeaderDown` now rather than at their deadline.
    fn fail_calls_to(&mut self, node: NodeId) {
        if self.route_key.is_some_and(|r| r.0 == node) {
            self.route_key = None;
        }
        self.fast.fail_leader(node, self.cfg.members().name(node));
        let ids: Vec<(u64, Term)> = self
            .calls
            .iter()
            .filter_map(|(id, e)| match e.state {
                CallState::Sent { leader, term } if leader == node => Some((*id, term)),
                _ => None,
            })
            .collect();
        if ids.is_empty() {
            return;
        }
        let name = self.name(node).clone();
        for (id, term) in ids {
            self.resolve(
                id,
                Err(CallError::LeaderDown {
                    leader: name.clone(),
                    term,
                }),
            );
        }
    }

    fn sweep_calls(&mut self, now: Instant) {
        if self.next_sweep.is_none_or(|s| now < s) {
            return;
        }
        let mut next: Option<Instant> = None;
        let mut expired = Vec::new();
        for (id, e) in &self.calls {
            if e.deadline <= now {
                expired.push((*id, matches!(e.state, CallState::Waiting)));
            } else {
                next = Some(next.map_or(e.deadline, |n| n.min(e.deadline)));
            }
        }
        for (id, waiting) in expired {
            let err = if waiting {
                CallError::NoLeader
            } else {
                CallError::Timeout
            };
            self.resolve(id, Err(err));
        }
        self.waiting.retain(|id| self.calls.contains_key(id));
        self.held_casts.retain(|(d, _)| *d > now);
        if let Some((d, _)) = self.held_casts.front() {
            next = Some(next.map_or(*d, |n| n.min(*d)));
        }
        self.next_sweep = next;
    }

    async fn leader_cast(&mut self, m: B::Cast) {
        match self.engine.leader() {
            Some(l) if l.node == self.me() => {
                let election = election!(self);
                if let Some(b) = self.behaviour.handle_leader_cast(m, &election).await {
                    self.broadcast(b).await;
                }
            }
            Some(l) => {
                let empty = Msg::LeaderCast {
                    payload: Vec::new(),
                };
                match codec::encode_frame_with_payload(&empty, &m) {
                    Ok(frame) => self.send_frame(l.node, frame),
                    Err(e) => warn!(error = %e, "cannot encode a leader_cast"),
                }
            }
            None => {
                if self.held_casts.len() >= MAX_HELD_CASTS {
                    warn!(node = %self.name(self.me()), "no leader and too many casts held: cast dropped");
                    return;
                }
                let d = Instant::now() + self.cfg.call_timeout;
                self.held_casts.push_back((d, m));
                if self.next_sweep.is_none_or(|s| d < s) {
                    self.next_sweep = Some(d);
                    self.schedule();
                }
            }
        }
    }

    /// Sends `b` to every follower: encoded once, in order, numbered within the term.
    async fn broadcast(&mut self, b: B::Broadcast) {
        if !self.engine.is_leader() {
            return;
        }
        let empty = Msg::Broadcast {
            term: self.engine.term(),
            seq: self.bcast_seq + 1,
            payload: Vec::new(),
        };
        let frame = match codec::encode_frame_with_payload(&empty, &b) {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "cannot encode a broadcast");
                return;
            }
        };
        self.bcast_seq += 1;
        self.counters.broadcasts_sent += 1;
        let followers: Vec<NodeId> = self.engine.followers().iter().copied().collect();
        for f in followers {
            self.send_frame_or_wait(f, frame.clone()).await;
        }
    }

    fn stats(&self) -> NodeStats {
        NodeStats {
            pending_calls: self.calls.len() + self.fast.len(),
            waiting_calls: self.waiting.len(),
            held_casts: self.held_casts.len(),
            connected: self.peers.iter().filter(|p| p.conn.is_some()).count(),
            handshakes_refused: self.refused.load(Ordering::Relaxed),
            ..self.counters
        }
    }

    // ----- stop ----------------------------------------------------------------------------

    async fn shutdown(&mut self, reason: StopReason) {
        if self.stopping {
            return;
        }
        info!(node = %self.name(self.me()), ?reason, "node stopping");
        // No direct call may follow the Goodbye: close the route and fail those in flight.
        self.fast.fail_all();
        self.route_key = None;
        if let Ok(f) = codec::encode_frame(&Msg::Goodbye) {
            for i in 0..self.peers.len() {
                self.send_frame(NodeId(i as u32), f.clone());
            }
        }
        self.stopping = true;
        self.behaviour.terminate(reason).await;
        for (_, e) in self.calls.drain() {
            let _ = e.reply.send(Err(CallError::Stopped));
        }
        self.waiting.clear();
        self.held_casts.clear();
        for t in self.tasks.drain(..) {
            t.abort();
        }
        for p in &mut self.peers {
            if let Some(d) = p.dialer.take() {
                d.abort();
            }
            if let Some(c) = p.conn.take() {
                c.close();
            }
        }
    }
}

/// Hands the replies to direct calls (see `fastpath`) in a batch read from connection `conn`
/// straight to their callers, and returns the rest for the actor. Only while nothing received
/// earlier on this connection waits at the actor (all of `window` is free) and up to the first
/// other message: a reply never overtakes a broadcast the leader sent before it.
fn direct_replies<R>(
    mut msgs: Vec<Msg>,
    fast: &FastPath<R>,
    window: &Semaphore,
    conn: u64,
) -> Vec<Msg> {
    if window.available_permits() != INBOUND_WINDOW {
        return msgs;
    }
    let prefix = msgs
        .iter()
        .position(|m| !matches!(m, Msg::Reply { .. }))
        .unwrap_or(msgs.len());
    if prefix == 0 {
        return msgs;
    }
    let later = msgs.split_off(prefix);
    let replies = msgs
        .into_iter()
        .filter_map(|m| match m {
            Msg::Reply { id, term, result } => Some((id, term, result)),
            _ => None,
        })
        .collect();
    let mut rest: Vec<Msg> = fast
        .resolve_replies(conn, replies)
        .into_iter()
        .map(|(id, term, result)| Msg::Reply { id, term, result })
        .collect();
    rest.extend(later);
    rest
}

fn reason_str(r: LossReason) -> &'static str {
    match r {
        LossReason::LeaderDown => "leader down",
        LossReason::TakenOver => "taken over by a higher-priority leader",
        LossReason::NewerTerm => "newer term",
    }
}

/// The frame of a forwarded `leader_call`: encoded once, by the caller's task.
pub(crate) fn encode_call_frame<C: serde::Serialize>(
    id: u64,
    request: &C,
) -> Result<Bytes, String> {
    let empty = Msg::LeaderCall {
        id,
        payload: Vec::new(),
    };
    codec::encode_frame_with_payload(&empty, request).map_err(|e| e.to_string())
}

/// The request inside a frame made by [`encode_call_frame`] (when this node became the leader
/// before it could forward the call).
fn decode_call_frame<C: serde::de::DeserializeOwned>(frame: &[u8]) -> Result<C, String> {
    let body = frame.get(5..).ok_or("short frame")?;
    match codec::decode_body::<Msg>(body).map_err(|e| e.to_string())? {
        Msg::LeaderCall { payload, .. } => {
            codec::decode_payload(&payload).map_err(|e| e.to_string())
        }
        _ => Err("not a leader_call frame".into()),
    }
}
