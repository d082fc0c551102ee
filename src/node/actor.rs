//! The node's ractor actor: one per node, the only task that touches its state. Every message
//! is one input; [`NodeActor::handle`] applies it and then runs the drain
//! ([`NodeState::drive`]) — for a batch of frames from a peer, after each frame — so engine
//! outputs never wait for the next tick.
//!
//! Messages from handles (`UserMsg`) each hold a permit of the node's bounded mailbox (see
//! `handle`); the node's own messages (frames, dials, the timer) are bounded by their sources.

use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use rand::SeedableRng;
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::{info, warn};

use super::accept::accept_loop;
use super::backend::BackendState;
use super::broadcast::{Held, Sequencer, MAX_HELD_CASTS};
use super::calls::{CallReq, Calls, ReplySender};
use super::clock::LeaseClock;
use super::conns::Peer;
use super::dialing::{Connected, DialOutcome};
use super::handle::HandleParts;
use super::leader_state::{LeaderState, Losses};
use super::refusals::Refusals;
use super::state::{election, NodeState};
use super::storage::{AuditLog, TermStore};
use super::{ClusterView, LeaderHandle, NodeStats};
use crate::behaviour::{Behaviour, Origin, StopReason};
use crate::config::Config;
use crate::election::EngineConfig;
use crate::error::{BoxError, CallError};
use crate::transport::{Connector, Listener};
use crate::types::{NodeId, Term};
use crate::wire::handshake::{ConfigParts, HandshakeConfig, Refusal};
use crate::wire::Msg;

/// Calls held (waiting for a leader or a reply) per node.
pub(crate) const MAX_CALLS: usize = 1 << 20;

/// A message from a handle. Each holds a permit of the node's mailbox.
pub(crate) enum UserMsg<B: Behaviour> {
    LeaderCall {
        id: u64,
        request: CallReq<B::Call>,
        deadline: Instant,
        reply: ReplySender<B::Reply>,
    },
    LeaderCast(B::Cast),
    Call {
        request: B::Call,
        reply: oneshot::Sender<B::Reply>,
    },
    Cast(B::Cast),
    Info(B::Info),
    Stats(oneshot::Sender<NodeStats>),
}

/// Messages to the node actor.
pub(crate) enum NodeMsg<B: Behaviour> {
    User(UserMsg<B>, OwnedSemaphorePermit),
    /// A deferred reply: bounded by the calls in flight, so it takes no mailbox permit (a
    /// callback replying to a deferred call must never be refused).
    Reply {
        to: Origin,
        reply: B::Reply,
    },
    Admit {
        peer: NodeId,
        incarnation: u64,
        reply: oneshot::Sender<Result<u64, Refusal>>,
    },
    Admitted {
        peer: NodeId,
        conn: u64,
        done: Option<Connected>,
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
    /// An event of the external election backend (`backend`), with its place in the
    /// backend's window (dropped once applied).
    Backend {
        ev: crate::backend::ElectionEvent,
        _permit: OwnedSemaphorePermit,
    },
    Shutdown(oneshot::Sender<()>),
    /// An observer session asks for a status (see `observe`).
    Observe(super::observe::Ask),
}

/// What a node starts with (storage is opened before the actor exists, so that its errors
/// stay typed).
pub(crate) struct NodeArgs<B: Behaviour> {
    pub parts: HandleParts<B::Reply>,
    pub config: Arc<Config>,
    pub behaviour: B,
    pub listener: Box<dyn Listener>,
    pub connector: Arc<dyn Connector>,
    pub view_tx: watch::Sender<ClusterView>,
    pub state_tx: watch::Sender<LeaderState>,
    pub losses_tx: watch::Sender<Losses>,
    pub clock: Arc<LeaseClock>,
    pub terms: Box<dyn TermStore>,
    /// The promise the store read (its reservation is `terms.proposal_floor()`).
    pub initial_term: Term,
    pub audit: AuditLog,
}

/// The behaviour's `init` failed (carried through ractor's startup error, then unwrapped).
#[derive(Debug, thiserror::Error)]
#[error("init failed")]
pub(crate) struct InitFailed(#[source] pub BoxError);

impl<B: Behaviour> From<(crate::backend::ElectionEvent, OwnedSemaphorePermit)> for NodeMsg<B> {
    fn from((ev, permit): (crate::backend::ElectionEvent, OwnedSemaphorePermit)) -> Self {
        NodeMsg::Backend {
            ev,
            _permit: permit,
        }
    }
}

/// The election backend's start failed (boxed into ractor's startup error, unboxed by
/// `Node::start`).
#[derive(Debug, thiserror::Error)]
#[error("the election backend could not start")]
pub(crate) struct BackendFailed(#[source] pub BoxError);

pub(crate) struct NodeActor<B>(PhantomData<fn() -> B>);

impl<B> NodeActor<B> {
    pub(crate) fn new() -> Self {
        NodeActor(PhantomData)
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
            parts,
            config,
            mut behaviour,
            listener,
            connector,
            view_tx,
            state_tx,
            losses_tx,
            clock,
            terms,
            initial_term,
            audit,
        } = args;
        if config.data_dir().is_none() {
            warn!(node = %config.me(), "no data directory: terms are not persisted across restarts");
        }
        let incarnation: u64 = rand::random();
        let seed = config.seed.unwrap_or_else(rand::random);
        let hs = Arc::new(HandshakeConfig {
            cluster: config.cluster.clone(),
            cookie: config.cookie().to_vec(),
            me: config.me().to_string(),
            incarnation,
            members_digest: config.members_digest(),
            parts: ConfigParts::of(&config),
            timeout: config.handshake_timeout,
        });

        let fast = parts.fast.clone();
        let handle = LeaderHandle::new(myself.clone(), parts, None);
        behaviour
            .init(handle)
            .await
            .map_err(|e| Box::new(InitFailed(e)) as ActorProcessingErr)?;

        let now = Instant::now();
        let engine = super::backend::new_engine(
            &config,
            EngineConfig {
                me: config.my_id,
                n_candidates: config.members().n_candidates() as u32,
                n_nodes: config.members().len() as u32,
                election_timeout: config.election_timeout,
                startup_timeout: config.startup_timeout,
                announce_interval: config.heartbeat * 10,
                preempt: config.preempt,
                seed,
                // What the store read: the promise (what Status and Join carry) and the
                // reservation (proposals start above it). See `storage`.
                initial_term,
                proposal_floor: terms.proposal_floor(),
                // Quorum mode renews the lease once per heartbeat; see `config::mode`.
                quorum: config.quorum_params(),
            },
            now.into_std(),
        );

        // Before any task: if the store cannot start, the node does not either (and the
        // behaviour, whose `init` ran, hears `terminate`).
        let backend = match BackendState::start(&config, &myself) {
            Ok(b) => b,
            Err(e) => {
                warn!(node = %config.me(), error = %e, "the election backend could not start");
                behaviour.terminate(StopReason::ActorStopped).await;
                return Err(Box::new(BackendFailed(e)));
            }
        };

        let (timer_tx, timer_rx) = watch::channel(None);
        let refused = Arc::new(AtomicU64::new(0));
        let refusals = Arc::new(Refusals::new(config.me().clone(), view_tx.clone()));
        let mut tasks = vec![
            tokio::spawn(timer_loop(myself.clone(), timer_rx, config.heartbeat / 2)),
            tokio::spawn(accept_loop(
                listener,
                myself.clone(),
                hs.clone(),
                config.clone(),
                refused.clone(),
                refusals.clone(),
            )),
        ];
        let spin = config.spin.map(|window| {
            let notify = Arc::new(tokio::sync::Notify::new());
            tasks.push(tokio::spawn(spin_loop(notify.clone(), window)));
            fast.set_spin(notify.clone());
            notify
        });

        let n = config.members().len();
        let me = config.my_id;
        let mut state = NodeState {
            behaviour,
            engine,
            cfg: config.clone(),
            hs,
            myself,
            connector,
            peers: (0..n)
                .map(|i| {
                    Peer::new(
                        me,
                        NodeId(i as u32),
                        config.members().name(NodeId(i as u32)),
                        now,
                    )
                })
                .collect(),
            next_conn: 1,
            calls: Calls::new(MAX_CALLS),
            fast,
            route_key: None,
            last_tick: now,
            seq: Sequencer::default(),
            held: Held::new(MAX_HELD_CASTS),
            view_tx,
            state_tx,
            losses_tx,
            clock,
            timer_tx,
            scheduled: None,
            terms,
            audit,
            started: now,
            tasks,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            stopping: false,
            lease_checked: None,
            lease_checks: config.quorum_params().is_some(),
            bcast_to: Vec::new(),
            fatal: None,
            dirty: true,
            published_alive: Vec::new(),
            counters: NodeStats::default(),
            refused,
            refusals,
            spin,
            backend,
            metrics: super::metrics::NodeMetrics::of(&config),
        };
        info!(node = %config.me(), term = %initial_term, mode = %config.mode(), "node starting");
        // The view shows the persisted term from the start, not 0.
        state.publish();
        for i in 0..n {
            let p = NodeId(i as u32);
            if p != me {
                state.dial(p, Duration::ZERO);
            }
        }
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.drive().await;
        stop_if_fatal(&myself, state).await;
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
            NodeMsg::Inbound {
                peer, conn, msgs, ..
            } => {
                // One clock read per batch: any frame proves the peer alive.
                if let Some(c) = state.peers[peer.index()]
                    .conn
                    .as_mut()
                    .filter(|c| c.id == conn)
                {
                    c.live.received(Instant::now().into_std());
                }
                for msg in msgs {
                    // Each frame is an input: drained before the next one is looked at (a
                    // broadcast right after a new leader's Synch runs after `surrendered`).
                    state.inbound(peer, conn, msg).await;
                    state.drive().await;
                    if state.fatal.is_some() || state.stopping {
                        break;
                    }
                }
            }
            NodeMsg::Shutdown(done) => {
                state.shutdown(StopReason::Shutdown).await;
                let _ = done.send(());
                myself.stop(None);
                return Ok(());
            }
            other => {
                state.on_msg(other).await;
                state.drive().await;
            }
        }
        stop_if_fatal(&myself, state).await;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if !state.stopping {
            state.shutdown(StopReason::ActorStopped).await;
        }
        Ok(())
    }
}

/// Stops the node if the drain found a fatal condition (a term it could not persist).
async fn stop_if_fatal<B: Behaviour>(myself: &ActorRef<NodeMsg<B>>, state: &mut NodeState<B>) {
    if let Some(reason) = state.fatal.take() {
        state.shutdown(reason).await;
        myself.stop(None);
    }
}

impl<B: Behaviour> NodeState<B> {
    /// Applies one message (other than a batch of frames or a shutdown).
    async fn on_msg(&mut self, msg: NodeMsg<B>) {
        match msg {
            NodeMsg::User(m, _permit) => self.on_user(m).await,
            NodeMsg::Reply { to, reply } => self.deliver_reply(to, reply).await,
            NodeMsg::Admit {
                peer,
                incarnation,
                reply,
            } => {
                let r = self.admit(peer, incarnation);
                let _ = reply.send(r);
            }
            NodeMsg::Admitted { peer, conn, done } => self.admitted(peer, conn, done),
            NodeMsg::DialDone { peer, gen, outcome } => self.dial_done(peer, gen, outcome),
            NodeMsg::ConnClosed { peer, conn, reason } => {
                if self.is_current(peer, conn) {
                    self.drop_conn(peer, &reason);
                }
            }
            NodeMsg::Tick => {
                let now = Instant::now();
                self.check_liveness(now).await;
                self.engine.handle_timeout(now.into_std());
                self.dirty = true;
                self.sweep(now);
            }
            NodeMsg::Backend { ev, _permit } => {
                self.on_backend(ev);
                drop(_permit);
            }
            NodeMsg::Observe(ask) => self.observe(ask),
            // Handled by the actor itself.
            NodeMsg::Inbound { .. } | NodeMsg::Shutdown(_) => {}
        }
    }

    async fn on_user(&mut self, msg: UserMsg<B>) {
        match msg {
            UserMsg::LeaderCall {
                id,
                request,
                deadline,
                reply,
            } => self.leader_call(id, request, deadline, reply).await,
            UserMsg::LeaderCast(m) => self.leader_cast(m).await,
            UserMsg::Call { request, reply } => {
                let election = election!(self);
                let r = self.behaviour.handle_call(request, &election).await;
                let _ = reply.send(r);
            }
            UserMsg::Cast(m) => {
                let election = election!(self);
                self.behaviour.handle_cast(m, &election).await;
            }
            UserMsg::Info(m) => {
                let election = election!(self);
                self.behaviour.handle_info(m, &election).await;
            }
            UserMsg::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
        }
    }
}

/// Answers a message that arrives while the node is stopping.
fn fail_stopped<B: Behaviour>(msg: NodeMsg<B>) {
    match msg {
        NodeMsg::User(UserMsg::LeaderCall { reply, .. }, _) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Election, LeaderReply, NodeName, ReplyTo};

    struct Small;
    impl Behaviour for Small {
        type Call = u64;
        type Reply = u64;
        type Cast = u64;
        type Broadcast = u64;
        type Synch = u64;
        type Info = ();
        async fn elected(&mut self, _: &Election<'_>, _: Option<&NodeName>) -> u64 {
            0
        }
        async fn surrendered(&mut self, _: u64, _: &Election<'_>) {}
        async fn handle_leader_call(
            &mut self,
            r: u64,
            _: ReplyTo<u64>,
            _: &Election<'_>,
        ) -> LeaderReply<u64, u64> {
            LeaderReply::Reply(r)
        }
        async fn handle_call(&mut self, r: u64, _: &Election<'_>) -> u64 {
            r
        }
    }

    /// Every call moves its message several times between the handle and the handler; past
    /// 128 bytes each move is a `memcpy` call (about 4 % of the instructions of a call served
    /// on the leader). The rare, large variants (a dial's outcome) are boxed so that the
    /// message stays the size of a call's.
    #[test]
    fn a_node_message_is_no_larger_than_a_call() {
        let call =
            std::mem::size_of::<UserMsg<Small>>() + std::mem::size_of::<OwnedSemaphorePermit>();
        let msg = std::mem::size_of::<NodeMsg<Small>>();
        assert!(msg <= call + 8, "NodeMsg is {msg} bytes, a call {call}");
        assert!(msg <= 128, "NodeMsg is {msg} bytes");
    }
}
