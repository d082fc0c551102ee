//! What the node's actor owns: the engine, the behaviour, the connections, the calls, the
//! broadcast sequencer, storage, and the channels it publishes on. The other files of this
//! module add behaviour to [`NodeState`], one concern each: `driver` (engine outputs),
//! `conns` (connections and the outbox), `dialing` (dials and admission), `inbound` (frames
//! from peers), `routing` (calls and casts to and from the leader).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ractor::ActorRef;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::info;

use super::actor::NodeMsg;
use super::broadcast::{Held, Sequencer};
use super::calls::Calls;
use super::clock::LeaseClock;
use super::conns::Peer;
use super::fastpath::FastPath;
use super::leader_state::{LeaderState, Losses};
use super::metrics::{Change, NodeMetrics};
use super::refusals::Refusals;
use super::storage::{AuditEvent, AuditLog, TermStore};
use super::{ClusterView, NodeStats};
use crate::behaviour::{Behaviour, StopReason};
use crate::config::Config;
use crate::election::Engine;
use crate::transport::Connector;
use crate::types::{NodeId, NodeName, Term};
use crate::wire::handshake::HandshakeConfig;

/// The [`Election`](crate::Election) view of a node state, borrowing only its engine and
/// config (so that the behaviour can be borrowed mutably at the same time).
macro_rules! election {
    ($state:expr) => {
        $crate::behaviour::Election {
            engine: &$state.engine,
            members: $state.cfg.members(),
        }
    };
}
pub(super) use election;

/// The node actor's state.
pub(crate) struct NodeState<B: Behaviour> {
    pub(super) behaviour: B,
    pub(super) engine: Engine,
    pub(super) cfg: Arc<Config>,
    pub(super) hs: Arc<HandshakeConfig>,
    pub(super) myself: ActorRef<NodeMsg<B>>,
    pub(super) connector: Arc<dyn Connector>,
    /// One slot per member (this node's own stays empty).
    pub(super) peers: Vec<Peer>,
    pub(super) next_conn: u64,
    pub(super) calls: Calls<B::Call, B::Reply>,
    /// Follower calls on the direct path (see `fastpath`), and the route last published there.
    pub(super) fast: Arc<FastPath<B::Reply>>,
    pub(super) route_key: Option<(NodeId, Term, u64)>,
    /// When the actor last looked at the readers' counts (see `Liveness::refresh`).
    pub(super) last_tick: Instant,
    pub(super) seq: Sequencer,
    pub(super) held: Held<B::Cast>,
    pub(super) view_tx: watch::Sender<ClusterView>,
    /// Which members the published view shows alive (see `view::publish`).
    pub(super) published_alive: Vec<bool>,
    /// This node's leadership, for `LeaderHandle::leader_state` and the guards.
    pub(super) state_tx: watch::Sender<LeaderState>,
    /// The leaderships this node lost last and why, for the guards.
    pub(super) losses_tx: watch::Sender<Losses>,
    /// The lease clock (counts suspend): every lease check is made on it.
    pub(super) clock: Arc<LeaseClock>,
    pub(super) timer_tx: watch::Sender<Option<Instant>>,
    /// The deadline last handed to the timer.
    pub(super) scheduled: Option<Instant>,
    pub(super) terms: Box<dyn TermStore>,
    pub(super) audit: AuditLog,
    pub(super) started: Instant,
    pub(super) tasks: Vec<JoinHandle<()>>,
    /// The external election backend (etcd), if one decides.
    pub(super) backend: super::backend::BackendState,
    pub(super) rng: rand::rngs::StdRng,
    pub(super) stopping: bool,
    /// When a drive last asked whether a leader's lease ended on the lease clock (at most once
    /// a millisecond: that check only makes a leader step down promptly after a suspend;
    /// safety comes from the check made right before each leader callback).
    pub(super) lease_checked: Option<Instant>,
    /// Whether this node leads on a lease (quorum mode, or an external backend's lease): the
    /// only case where a drive checks the lease clock.
    pub(super) lease_checks: bool,
    /// The followers a broadcast goes to, kept between broadcasts so that one costs no
    /// allocation.
    pub(super) bcast_to: Vec<NodeId>,
    /// Set when the node must stop (a term could not be persisted): the actor stops after the
    /// current input.
    pub(super) fatal: Option<StopReason>,
    /// The engine had an input since the last drain: the view and the route may have changed.
    pub(super) dirty: bool,
    pub(super) counters: NodeStats,
    pub(super) refused: Arc<AtomicU64>,
    /// Rate-limited warnings about refused and failed connections, and the view's list of
    /// refusals.
    pub(super) refusals: Arc<Refusals>,
    /// Opt-in spin mode: wakes the spinner after activity.
    pub(super) spin: Option<Arc<Notify>>,
    /// What this node records through the `metrics` facade.
    pub(super) metrics: NodeMetrics,
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
            p.abort();
        }
    }
}

impl<B: Behaviour> NodeState<B> {
    pub(super) fn name(&self, id: NodeId) -> &NodeName {
        self.cfg.members().name(id)
    }

    pub(super) fn me(&self) -> NodeId {
        self.cfg.my_id
    }

    /// Logs a leadership change and appends it to the audit trail.
    pub(super) fn record(&mut self, event: &str, term: Term, leader: Option<NodeId>, reason: &str) {
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

    pub(super) fn stats(&self) -> NodeStats {
        NodeStats {
            pending_calls: self.calls.len() + self.fast.len(),
            waiting_calls: self.calls.waiting(),
            held_casts: self.held.len(),
            connected: self.peers.iter().filter(|p| p.conn.is_some()).count(),
            handshakes_refused: self.refused.load(Ordering::Relaxed),
            ..self.counters
        }
    }

    /// Stops the node: peers are told (best effort), `terminate` runs with `reason`, every
    /// call fails with `Stopped`, every task ends.
    pub(super) async fn shutdown(&mut self, reason: StopReason) {
        if self.stopping {
            return;
        }
        match &reason {
            StopReason::Shutdown => info!(node = %self.name(self.me()), "node stopping"),
            r => tracing::error!(node = %self.name(self.me()), reason = %r, "node stopping"),
        }
        // No direct call may follow the Goodbye: close the route and fail those in flight.
        self.fast.fail_all();
        self.route_key = None;
        // Guards fail from here on: nothing this node does now is done as leader.
        self.state_tx.send_replace(LeaderState::Stopped);
        self.metrics.stopped();
        // Quorum mode: a leader stops acting and releases its voters (`StepDown`, sent by
        // `say_goodbye`), so that a new leader need not wait out the lease.
        let leading = self.engine.is_leader().then(|| self.engine.term());
        self.engine
            .handle_shutdown(tokio::time::Instant::now().into_std());
        if let Some(term) = leading.filter(|_| !self.engine.is_leader()) {
            self.record("stepped_down", term, None, "shutdown");
            self.metrics.change(Change::StoppedLeading);
        }
        // An external backend's leader resigns before the goodbye.
        self.stop_backend().await;
        self.say_goodbye();
        self.stopping = true;
        self.behaviour.terminate(reason).await;
        self.calls.stop();
        self.held.clear();
        for t in self.tasks.drain(..) {
            t.abort();
        }
        for p in &mut self.peers {
            p.close();
        }
    }
}
