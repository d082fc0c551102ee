//! The handle of a running node: `leader_call` and friends, local calls and casts, the view.
//!
//! Every message a handle sends to the node's actor (other than a deferred reply and the
//! shutdown) holds a permit of the node's **mailbox**, a semaphore of
//! [`ConfigBuilder::mailbox`](crate::ConfigBuilder::mailbox) permits released when the actor
//! has handled the message: async calls wait for a permit (up to their deadline), non-async
//! sends fail with [`CallError::Overloaded`] — ractor's own mailbox is unbounded, so this is
//! where the bound is. A follower's `leader_call` normally takes the direct path instead (see
//! `fastpath`): it never enters the mailbox.
//!
//! Dropping every `LeaderHandle` does **not** stop the node (the behaviour may hold one, and
//! the node keeps serving its peers): call [`LeaderHandle::shutdown`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::{oneshot, watch, Mutex};
use tokio::task::JoinHandle;

use super::actor::{NodeMsg, UserMsg};
use super::calls::{CallReq, ReplyBody};
use super::fastpath::FastPath;
use super::guard::{GuardParts, LeaderGuard};
use super::leader_state::LeaderState;
use super::mailbox::Mailbox;
use super::metrics::CallMetrics;
use super::routing::encode_call_frame;
use super::ClusterView;
use crate::behaviour::{Behaviour, ReplyTo};
use crate::config::{Config, Members};
use crate::error::{CallError, GuardError};
use crate::types::{NodeName, Term};
use crate::wire::codec;

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

/// What every handle of a node shares, made once when the node starts.
pub(crate) struct HandleParts<R> {
    pub view: watch::Receiver<ClusterView>,
    /// The leader state, the losses and the lease clock: what guards are made of.
    pub guards: GuardParts,
    pub config: Arc<Config>,
    pub local_addr: Option<std::net::SocketAddr>,
    /// Ids of this node's `leader_call`s.
    pub call_ids: Arc<AtomicU64>,
    /// Where this node's calls to the leader go without crossing the node's actor.
    pub fast: Arc<FastPath<R>>,
    pub mailbox: Mailbox,
    /// The node's call metrics (see `metrics`).
    pub metrics: Arc<CallMetrics>,
}

impl<R> Clone for HandleParts<R> {
    fn clone(&self) -> Self {
        HandleParts {
            view: self.view.clone(),
            guards: self.guards.clone(),
            config: self.config.clone(),
            local_addr: self.local_addr,
            call_ids: self.call_ids.clone(),
            fast: self.fast.clone(),
            mailbox: self.mailbox.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

struct HandleInner<B: Behaviour> {
    actor: ActorRef<NodeMsg<B>>,
    parts: HandleParts<B::Reply>,
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
    /// A handle on the node whose actor is `actor`; `join` ends with the actor (only the
    /// handle returned by `Node::start*` holds it).
    pub(crate) fn new(
        actor: ActorRef<NodeMsg<B>>,
        parts: HandleParts<B::Reply>,
        join: Option<JoinHandle<()>>,
    ) -> Self {
        LeaderHandle {
            inner: Arc::new(HandleInner {
                actor,
                parts,
                join: Mutex::new(join),
            }),
        }
    }

    /// Sends `request` to the leader and waits for its reply, up to the configured call
    /// timeout (default 5 s). While an election runs the call waits for a leader.
    pub async fn leader_call(&self, request: B::Call) -> Result<B::Reply, CallError> {
        self.leader_call_timeout(request, self.inner.parts.config.call_timeout)
            .await
    }

    /// [`leader_call`](Self::leader_call) with an explicit timeout.
    pub async fn leader_call_timeout(
        &self,
        request: B::Call,
        timeout: Duration,
    ) -> Result<B::Reply, CallError> {
        let now = tokio::time::Instant::now();
        let r = self.leader_call_from(request, timeout, now).await;
        self.inner.parts.metrics.call(&r, now);
        r
    }

    /// [`leader_call_timeout`](Self::leader_call_timeout), started at `now`.
    async fn leader_call_from(
        &self,
        request: B::Call,
        timeout: Duration,
        now: tokio::time::Instant,
    ) -> Result<B::Reply, CallError> {
        // (A timeout too large for the clock means: no deadline in practice.)
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
        let id = self.inner.parts.call_ids.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = oneshot::channel();
        // A follower encodes the call here, in the caller's task, and (when the route to the
        // leader is up) queues it on the leader's connection itself: the reply comes back from
        // the connection's reader without crossing the node's actor, which every caller of the
        // node shares. The leader serves its own calls in its actor.
        let (request, reply) = if self.is_leader() {
            (CallReq::Value(request), tx)
        } else {
            let frame = encode_call_frame(id, &request)?;
            match self.inner.parts.fast.send(id, frame, tx) {
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
        let permit = self.inner.parts.mailbox.permit(deadline).await?;
        self.tell(NodeMsg::User(
            UserMsg::LeaderCall {
                id,
                request,
                deadline,
                reply,
            },
            permit,
        ))?;
        // The node resolves the call at its deadline with the precise error; this timer is
        // only the backstop, a little later.
        let backstop = deadline
            .checked_add(Duration::from_millis(50))
            .unwrap_or(deadline);
        match tokio::time::timeout_at(backstop, rx).await {
            Ok(r) => Self::finish_call(r),
            Err(_) => {
                let v = self.inner.parts.view.borrow();
                Err(match (&v.leader, v.no_quorum) {
                    (Some(_), _) => CallError::Timeout,
                    (None, Some(nq)) => CallError::NoQuorum {
                        reachable: nq.reachable,
                        needed: nq.needed,
                    },
                    (None, None) => CallError::NoLeader,
                })
            }
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
            fast: &self.inner.parts.fast,
            id,
            armed: true,
        };
        if let Some((queue, frame)) = wait {
            // The leader connection's queue is full: wait for room, up to the deadline. (If
            // the connection closes meanwhile, the node fails the call with `LeaderDown`.)
            let room = tokio::time::timeout_at(deadline, queue.send(frame)).await;
            if !matches!(room, Ok(Ok(()))) && self.inner.parts.fast.cancel(id) {
                guard.armed = false;
                return Err(CallError::Timeout);
            }
        }
        let r = match tokio::time::timeout_at(deadline, &mut *rx).await {
            Ok(r) => r,
            Err(_) if self.inner.parts.fast.cancel(id) => {
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

    /// Sends `msg` to this node's actor if its mailbox has room now.
    fn try_tell(&self, msg: UserMsg<B>) -> Result<(), CallError> {
        if self.is_stopped() {
            return Err(CallError::Stopped);
        }
        let permit = self.inner.parts.mailbox.try_permit()?;
        self.tell(NodeMsg::User(msg, permit))
    }

    /// Sends `msg` to this node's actor, waiting for room in its mailbox up to `deadline`.
    async fn tell_waiting(
        &self,
        msg: UserMsg<B>,
        deadline: tokio::time::Instant,
    ) -> Result<(), CallError> {
        if self.is_stopped() {
            return Err(CallError::Stopped);
        }
        let permit = self.inner.parts.mailbox.permit(deadline).await?;
        self.tell(NodeMsg::User(msg, permit))
    }

    /// Whether the node's actor has stopped.
    fn is_stopped(&self) -> bool {
        matches!(
            self.inner.actor.get_status(),
            ractor::ActorStatus::Stopping | ractor::ActorStatus::Stopped
        )
    }

    fn finish_call(r: CallResult<B::Reply>) -> Result<B::Reply, CallError> {
        match r {
            Ok(Ok(ReplyBody::Value(r))) => Ok(r),
            Ok(Ok(ReplyBody::Encoded(b))) => codec::decode_payload(&b).map_err(CallError::from),
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
    /// [`CallError::Overloaded`] if the node's mailbox is full.
    pub fn leader_cast(&self, message: B::Cast) -> Result<(), CallError> {
        self.try_tell(UserMsg::LeaderCast(message))
    }

    /// A call to this node's own `handle_call` (gen_leader's `call/2`).
    pub async fn call(&self, request: B::Call) -> Result<B::Reply, CallError> {
        let (tx, rx) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + self.inner.parts.config.call_timeout;
        self.tell_waiting(UserMsg::Call { request, reply: tx }, deadline)
            .await?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(CallError::Stopped),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// [`leader_cast`](Self::leader_cast), but waits for room in the node's mailbox (up to the
    /// call timeout: then [`CallError::Timeout`]) instead of failing with
    /// [`CallError::Overloaded`]: for producers that should be paced by the node.
    pub async fn leader_cast_wait(&self, message: B::Cast) -> Result<(), CallError> {
        let deadline = tokio::time::Instant::now() + self.inner.parts.config.call_timeout;
        self.tell_waiting(UserMsg::LeaderCast(message), deadline)
            .await
    }

    /// A cast to this node's own `handle_cast` (gen_leader's `cast/2`).
    /// [`CallError::Overloaded`] if the node's mailbox is full.
    pub fn cast(&self, message: B::Cast) -> Result<(), CallError> {
        self.try_tell(UserMsg::Cast(message))
    }

    /// Sends a local message to this node's `handle_info`.
    /// [`CallError::Overloaded`] if the node's mailbox is full.
    pub fn info(&self, message: B::Info) -> Result<(), CallError> {
        self.try_tell(UserMsg::Info(message))
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
        self.inner.parts.config.me()
    }

    /// The address the listener is bound to, if it is a socket.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.parts.local_addr
    }

    /// The current view of the cluster.
    pub fn view(&self) -> ClusterView {
        self.inner.parts.view.borrow().clone()
    }

    /// The leader, if known (gen_leader's `leader_node/1`).
    pub fn leader(&self) -> Option<NodeName> {
        self.inner.parts.view.borrow().leader.clone()
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.inner.parts.view.borrow().is_leader()
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.inner.parts.view.borrow().term
    }

    /// Members connected to this node, and itself (gen_leader's `alive/1`).
    pub fn alive(&self) -> Vec<NodeName> {
        self.inner.parts.view.borrow().alive.clone()
    }

    /// Members this node is not connected to (gen_leader's `down/1`).
    pub fn down(&self) -> Vec<NodeName> {
        self.inner.parts.view.borrow().down.clone()
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
        self.inner.parts.config.members()
    }

    /// This node's leadership now: leading (with the lease end in quorum mode), following,
    /// electing, without a quorum, or stopped.
    pub fn leader_state(&self) -> LeaderState {
        self.inner.parts.guards.state()
    }

    /// A receiver of every change of this node's [`LeaderState`] (published at the end of
    /// each input that changed it; in quorum mode also whenever a renewal moves the lease
    /// end). The sender is dropped when the node's actor ends.
    pub fn watch_state(&self) -> watch::Receiver<LeaderState> {
        self.inner.parts.guards.state.clone()
    }

    /// A [`LeaderGuard`] of the term this node leads: check it right before each side effect
    /// ([`LeaderGuard::ensure`]), fence the writes with its [`term`](LeaderGuard::term), wait
    /// on [`lost`](LeaderGuard::lost). Errors: [`GuardError::NotLeader`] (with the leader, if
    /// known; also a quorum-mode leader whose lease has just ended), [`GuardError::NoQuorum`],
    /// [`GuardError::Stopped`].
    ///
    /// In bully mode the guard reflects this node's belief only; in quorum mode it is
    /// exclusive while its lease runs. See `docs/guide.md`, "LeaderGuard and fencing".
    pub fn guard(&self) -> Result<LeaderGuard, GuardError> {
        self.inner.parts.guards.guard(self.term())
    }

    /// A receiver of every change of this node's [`ClusterView`] (leader, term, alive/down).
    pub fn changes(&self) -> watch::Receiver<ClusterView> {
        self.inner.parts.view.clone()
    }

    /// Waits until `pred` holds for the view, or `timeout` passes; returns the view then.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&ClusterView) -> bool,
    ) -> Option<ClusterView> {
        let mut rx = self.inner.parts.view.clone();
        let r = tokio::time::timeout(timeout, rx.wait_for(|v| pred(v))).await;
        match r {
            Ok(Ok(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// Counters: calls in flight, casts held, connections, work done as leader.
    pub async fn stats(&self) -> Result<NodeStats, CallError> {
        let (tx, rx) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + self.inner.parts.config.call_timeout;
        self.tell_waiting(UserMsg::Stats(tx), deadline).await?;
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
