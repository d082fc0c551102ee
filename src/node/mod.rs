//! The node runtime: one ractor actor per node owns the election engine, the behaviour and
//! the connections, and is the only place that reads the clock.

mod actor;
mod fastpath;
mod storage;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio::sync::{oneshot, watch, Mutex};
use tokio::task::JoinHandle;

use crate::behaviour::{Behaviour, ReplyTo};
use crate::config::{Config, Members};
use crate::election::Role;
use crate::error::{CallError, StartError};
use crate::transport::{Connector, Listener, TcpConnector, TcpListener};
use crate::types::{NodeName, Term};
use crate::wire::codec;

pub(crate) use actor::NodeMsg;
use actor::{encode_call_frame, CallReq, NodeActor, NodeArgs, ReplyBody, MAX_CALLS};
use fastpath::FastPath;

/// A snapshot of this node's view of the cluster, published on every change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// This node.
    pub me: NodeName,
    /// The leader, if known.
    pub leader: Option<NodeName>,
    /// The current term (the leader's, or the highest promised while there is none).
    pub term: Term,
    /// What the election engine is doing.
    pub role: Role,
    /// Members this node is connected to, and itself.
    pub alive: Vec<NodeName>,
    /// Members this node is not connected to.
    pub down: Vec<NodeName>,
}

impl ClusterView {
    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.leader.as_ref() == Some(&self.me)
    }
}

/// Counters of a running node, from [`LeaderHandle::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// `leader_call`s started on this node and not yet resolved.
    pub pending_calls: usize,
    /// Of those, the ones waiting for a leader to be known.
    pub waiting_calls: usize,
    /// `leader_cast`s held while no leader is known.
    pub held_casts: usize,
    /// Peers with a live connection.
    pub connected: usize,
    /// `leader_call`s this node has handled as leader (since it started).
    pub leader_calls_served: u64,
    /// Broadcasts this node has sent as leader (since it started).
    pub broadcasts_sent: u64,
    /// Inbound connections refused at the handshake (wrong cookie, version, configuration,
    /// unknown or duplicate name, garbage, timeout) since the node started.
    pub handshakes_refused: u64,
}

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Starts a node: binds its listener on the address in its name (or
    /// [`ConfigBuilder::listen`](crate::ConfigBuilder::listen)), connects to its peers and
    /// joins the election.
    pub async fn start<B: Behaviour>(
        config: Config,
        behaviour: B,
    ) -> Result<LeaderHandle<B>, StartError> {
        let addr = config.listen_addr();
        let l = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: addr.clone(),
                source,
            })?;
        Self::start_with(config, behaviour, TcpListener(l), TcpConnector).await
    }

    /// Starts a node on a listener bound by the caller (e.g. on `127.0.0.1:0`, to learn the
    /// port before naming the nodes).
    pub async fn start_with_listener<B: Behaviour>(
        config: Config,
        behaviour: B,
        listener: tokio::net::TcpListener,
    ) -> Result<LeaderHandle<B>, StartError> {
        Self::start_with(config, behaviour, TcpListener(listener), TcpConnector).await
    }

    /// Starts a node on any transport (a simulated network, a fault proxy, ...).
    pub async fn start_with<B, L, C>(
        config: Config,
        behaviour: B,
        listener: L,
        connector: C,
    ) -> Result<LeaderHandle<B>, StartError>
    where
        B: Behaviour,
        L: Listener,
        C: Connector,
    {
        let config = Arc::new(config);
        let (view_tx, view_rx) = watch::channel(ClusterView {
            me: config.me().clone(),
            leader: None,
            term: Term(0),
            role: Role::Starting,
            alive: vec![config.me().clone()],
            down: config
                .members()
                .all()
                .iter()
                .filter(|n| *n != config.me())
                .cloned()
                .collect(),
        });
        let local_addr = listener.local_addr();
        let call_ids = Arc::new(AtomicU64::new(1));
        let fast = Arc::new(FastPath::new(MAX_CALLS));
        let args = NodeArgs {
            call_ids: call_ids.clone(),
            fast: fast.clone(),
            config: config.clone(),
            behaviour,
            listener: Box::new(listener),
            connector: Arc::new(connector),
            view_tx,
        };
        let (actor, join) = Actor::spawn(None, NodeActor::<B>::new(), args)
            .await
            .map_err(|e| match e {
                ractor::SpawnErr::StartupFailed(inner) => {
                    let s = inner.to_string();
                    if let Some(rest) = s.strip_prefix("data directory: ") {
                        StartError::DataDir {
                            path: config
                                .data_dir()
                                .map(|p| p.display().to_string())
                                .unwrap_or_default(),
                            source: std::io::Error::other(rest.to_string()),
                        }
                    } else {
                        StartError::Init(s)
                    }
                }
                other => StartError::Spawn(other.to_string()),
            })?;
        Ok(LeaderHandle {
            inner: Arc::new(HandleInner {
                actor,
                view: view_rx,
                config,
                local_addr,
                call_ids,
                fast,
                join: Mutex::new(Some(join)),
            }),
        })
    }
}

/// What a call's reply channel yields.
type CallResult<R> = Result<Result<ReplyBody<R>, CallError>, oneshot::error::RecvError>;

/// Removes a direct call from the table if its caller gives up (drops the future) first.
struct CancelOnDrop<'a, R> {
    fast: &'a FastPath<R>,
    id: u64,
    armed: bool,
}

impl<R> Drop for CancelOnDrop<'_, R> {
    fn drop(&mut self) {
        if self.armed {
            self.fast.cancel(self.id);
        }
    }
}

struct HandleInner<B: Behaviour> {
    actor: ActorRef<NodeMsg<B>>,
    view: watch::Receiver<ClusterView>,
    config: Arc<Config>,
    local_addr: Option<std::net::SocketAddr>,
    /// Ids of this node's `leader_call`s (shared by every handle of the node).
    call_ids: Arc<AtomicU64>,
    /// Where this node's calls to the leader go without crossing the node's actor.
    fast: Arc<FastPath<B::Reply>>,
    join: Mutex<Option<JoinHandle<()>>>,
}

/// A cloneable handle to a running node: calls to the leader, local calls, and the node's
/// view of the cluster (gen_leader's `leader_call`, `leader_cast`, `call`, `cast`, `alive`,
/// `down`, `candidates`, `workers`, `leader_node`).
pub struct LeaderHandle<B: Behaviour> {
    inner: Arc<HandleInner<B>>,
}

impl<B: Behaviour> Clone for LeaderHandle<B> {
    fn clone(&self) -> Self {
        LeaderHandle {
            inner: self.inner.clone(),
        }
    }
}

impl<B: Behaviour> std::fmt::Debug for LeaderHandle<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderHandle")
            .field("me", self.me())
            .finish_non_exhaustive()
    }
}

impl<B: Behaviour> LeaderHandle<B> {
    pub(crate) fn from_parts(
        actor: ActorRef<NodeMsg<B>>,
        view: watch::Receiver<ClusterView>,
        config: Arc<Config>,
        local_addr: Option<std::net::SocketAddr>,
        call_ids: Arc<AtomicU64>,
        fast: Arc<FastPath<B::Reply>>,
    ) -> Self {
        LeaderHandle {
            inner: Arc::new(HandleInner {
                actor,
                view,
                config,
                local_addr,
                call_ids,
                fast,
                join: Mutex::new(None),
            }),
        }
    }

    /// Sends `request` to the leader and waits for its reply, up to the configured call
    /// timeout (default 5 s). While an election runs the call waits for a leader.
    pub async fn leader_call(&self, request: B::Call) -> Result<B::Reply, CallError> {
        self.leader_call_timeout(request, self.inner.config.call_timeout)
            .await
    }

    /// [`leader_call`](Self::leader_call) with an explicit timeout.
    pub async fn leader_call_timeout(
        &self,
        request: B::Call,
        timeout: Duration,
    ) -> Result<B::Reply, CallError> {
        let now = tokio::time::Instant::now();
        // (A timeout too large for the clock means: no deadline in practice.)
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        let id = self.inner.call_ids.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        // A follower encodes the call here, in the caller's task, and (when the route to the
        // leader is up) queues it on the leader's connection itself: the reply comes back from
        // the connection's reader without crossing the node's actor, which every caller of the
        // node shares. The leader serves its own calls in its actor.
        let (request, reply) = if self.is_leader() {
            (CallReq::Value(request), tx)
        } else {
            let frame = encode_call_frame(id, &request).map_err(CallError::Codec)?;
            match self.inner.fast.send(id, frame, tx) {
                Err(back) => (CallReq::Frame(back.frame), back.reply),
                Ok(wait) => {
                    let r = self.await_direct(id, wait, deadline, &mut rx).await?;
                    if !matches!(r, Ok(Ok(ReplyBody::Retry))) {
                        return Self::finish_call(r);
                    }
                    if tokio::time::Instant::now() >= deadline {
                        // Not executed, and no time left to find the next leader.
                        return Err(CallError::NoLeader);
                    }
                    // The node we sent it to no longer leads and did not run it: go through
                    // the actor, which waits for the next leader.
                    let (tx, again) = oneshot::channel();
                    rx = again;
                    (CallReq::Value(request), tx)
                }
            }
        };
        self.tell(NodeMsg::LeaderCall {
            id,
            request,
            deadline,
            reply,
        })?;
        // The node resolves the call at its deadline with the precise error; this timer is
        // only the backstop, a little later.
        let backstop = deadline
            .checked_add(Duration::from_millis(50))
            .unwrap_or(deadline);
        match tokio::time::timeout_at(backstop, rx).await {
            Ok(r) => Self::finish_call(r),
            Err(_) => Err(if self.leader().is_some() {
                CallError::Timeout
            } else {
                CallError::NoLeader
            }),
        }
    }

    /// Waits for a call on the direct path: queues its frame first if the connection's queue
    /// was full, then waits for the result, up to the deadline (`Timeout`). Dropping this
    /// future removes the call from the table.
    async fn await_direct(
        &self,
        id: u64,
        wait: Option<(tokio::sync::mpsc::Sender<bytes::Bytes>, bytes::Bytes)>,
        deadline: tokio::time::Instant,
        rx: &mut oneshot::Receiver<Result<ReplyBody<B::Reply>, CallError>>,
    ) -> Result<CallResult<B::Reply>, CallError> {
        let mut guard = CancelOnDrop {
            fast: &self.inner.fast,
            id,
            armed: true,
        };
        if let Some((queue, frame)) = wait {
            // The leader connection's queue is full: wait for room, up to the deadline. (If
            // the connection closes meanwhile, the node fails the call with `LeaderDown`.)
            let room = tokio::time::timeout_at(deadline, queue.send(frame)).await;
            if !matches!(room, Ok(Ok(()))) && self.inner.fast.cancel(id) {
                guard.armed = false;
                return Err(CallError::Timeout);
            }
        }
        let r = match tokio::time::timeout_at(deadline, &mut *rx).await {
            Ok(r) => r,
            Err(_) if self.inner.fast.cancel(id) => {
                guard.armed = false;
                return Err(CallError::Timeout);
            }
            // Resolved at the deadline by someone else: the result is on its way.
            Err(_) => rx.await,
        };
        // Whoever resolved it removed it.
        guard.armed = false;
        Ok(r)
    }

    /// Sends `msg` to this node's actor; `Stopped` if it is gone.
    fn tell(&self, msg: NodeMsg<B>) -> Result<(), CallError> {
        self.inner.actor.cast(msg).map_err(|_| CallError::Stopped)
    }

    fn finish_call(r: CallResult<B::Reply>) -> Result<B::Reply, CallError> {
        match r {
            Ok(Ok(ReplyBody::Value(r))) => Ok(r),
            Ok(Ok(ReplyBody::Encoded(b))) => {
                codec::decode_payload(&b).map_err(|e| CallError::Codec(e.to_string()))
            }
            // Only the direct path asks for a retry, and it handles that itself.
            Ok(Ok(ReplyBody::Retry)) => Err(CallError::Remote(
                "internal: unexpected retry request".into(),
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(CallError::Stopped),
        }
    }

    /// Sends `message` to the leader without waiting (gen_leader's `leader_cast`). Held while
    /// no leader is known (up to the call timeout); lost if the leader dies with it in flight.
    pub fn leader_cast(&self, message: B::Cast) -> Result<(), CallError> {
        self.tell(NodeMsg::LeaderCast(message))
    }

    /// A call to this node's own `handle_call` (gen_leader's `call/2`).
    pub async fn call(&self, request: B::Call) -> Result<B::Reply, CallError> {
        let (tx, rx) = oneshot::channel();
        self.tell(NodeMsg::Call { request, reply: tx })?;
        match tokio::time::timeout(self.inner.config.call_timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(CallError::Stopped),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// A cast to this node's own `handle_cast` (gen_leader's `cast/2`).
    pub fn cast(&self, message: B::Cast) -> Result<(), CallError> {
        self.tell(NodeMsg::Cast(message))
    }

    /// Sends a local message to this node's `handle_info`.
    pub fn info(&self, message: B::Info) -> Result<(), CallError> {
        self.tell(NodeMsg::Info(message))
    }

    /// Answers a `leader_call` that `handle_leader_call` deferred with
    /// [`LeaderReply::NoReply`](crate::LeaderReply::NoReply) (gen_leader's `reply/2`).
    pub fn reply(&self, to: ReplyTo<B::Reply>, reply: B::Reply) -> Result<(), CallError> {
        self.tell(NodeMsg::Reply {
            to: to.origin,
            reply,
        })
    }

    /// This node's name.
    pub fn me(&self) -> &NodeName {
        self.inner.config.me()
    }

    /// The address the listener is bound to, if it is a socket.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.local_addr
    }

    /// The current view of the cluster.
    pub fn view(&self) -> ClusterView {
        self.inner.view.borrow().clone()
    }

    /// The leader, if known (gen_leader's `leader_node/1`).
    pub fn leader(&self) -> Option<NodeName> {
        self.inner.view.borrow().leader.clone()
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.inner.view.borrow().is_leader()
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.inner.view.borrow().term
    }

    /// Members connected to this node, and itself (gen_leader's `alive/1`).
    pub fn alive(&self) -> Vec<NodeName> {
        self.inner.view.borrow().alive.clone()
    }

    /// Members this node is not connected to (gen_leader's `down/1`).
    pub fn down(&self) -> Vec<NodeName> {
        self.inner.view.borrow().down.clone()
    }

    /// Candidates, highest priority first.
    pub fn candidates(&self) -> &[NodeName] {
        self.members().candidates()
    }

    /// Workers.
    pub fn workers(&self) -> &[NodeName] {
        self.members().workers()
    }

    fn members(&self) -> &Members {
        self.inner.config.members()
    }

    /// A receiver of every change of this node's [`ClusterView`] (leader, term, alive/down).
    pub fn changes(&self) -> watch::Receiver<ClusterView> {
        self.inner.view.clone()
    }

    /// Waits until `pred` holds for the view, or `timeout` passes; returns the view then.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&ClusterView) -> bool,
    ) -> Option<ClusterView> {
        let mut rx = self.inner.view.clone();
        let r = tokio::time::timeout(timeout, rx.wait_for(|v| pred(v))).await;
        match r {
            Ok(Ok(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// Counters: calls in flight, casts held, connections, work done as leader.
    pub async fn stats(&self) -> Result<NodeStats, CallError> {
        let (tx, rx) = oneshot::channel();
        self.tell(NodeMsg::Stats(tx))?;
        rx.await.map_err(|_| CallError::Stopped)
    }

    /// Stops the node gracefully: `terminate` runs, peers are told, pending calls fail with
    /// [`CallError::Stopped`]. Returns when the node has stopped.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.actor.cast(NodeMsg::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
        let join = self.inner.join.lock().await.take();
        if let Some(j) = join {
            let _ = j.await;
        }
    }
}
