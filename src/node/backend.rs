//! The node's side of an external election backend (etcd, or any
//! [`ExternalElection`](crate::backend::ExternalElection)): start it, turn its events into
//! engine inputs, stop it (resigning) before the goodbye.
//!
//! Why a file of its own: the backend only *decides*; everything else (calls, Synch,
//! broadcasts, guards, view, audit) stays the runtime's, driven by the engine's outputs as in
//! the other modes. So this file is the whole adapter, and it names no store: the engine runs
//! in external mode (`Engine::new_external`), each
//! [`ElectionEvent`](crate::backend::ElectionEvent) becomes one engine input, and the normal
//! drive follows. The lease checks (`lease`, the guard) work unchanged: `Config::quorum_params`
//! gives them the store's lease timing with `leader_lease` equal to the backend's local lease,
//! so `lease_end` recovers the keep-alive's send time and moves the lease onto the
//! suspend-aware lease clock.
//!
//! The member lists are optional in this mode: a leader the store names that this node has not
//! met is added to its member table (`Members::join`, bounded by `max_members`) and dialed;
//! `sync_members` brings the peer slots and the engine up to the table, whoever added to it
//! (this file, or an accept task admitting a node that proved the cookie). A worker
//! (`ElectionRole::Worker`) only observes the election.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorRef;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::backend::{
    ElectionEvent, FailureKind, LeaderValue, RunningElection, Started, StepDownReason, StoreOp,
};
use crate::behaviour::Behaviour;
use crate::config::{Config, ElectionRole};
use crate::election::{Engine, EngineConfig, LeaderRef, LossReason};
use crate::error::BoxError;
use crate::types::{NodeId, NodeName, Term};

use super::conns::Peer;
use super::state::NodeState;
impl<B: Behaviour> NodeState<B> {
    /// Takes in the members met since the last look (etcd mode): a fresh snapshot of the
    /// table in `cfg`, a peer slot for each new id, and the engine's `n_nodes`. Call it
    /// before using an id from `Members::join`.
    pub(super) fn sync_members(&mut self) {
        let Some(members) = self.cfg.members().refreshed() else {
            return;
        };
        let mut cfg = (*self.cfg).clone();
        cfg.members = members;
        self.cfg = Arc::new(cfg);
        let n = self.cfg.members().len();
        let me = self.me();
        let now = tokio::time::Instant::now();
        while self.peers.len() < n {
            let id = NodeId(self.peers.len() as u32);
            let peer = Peer::new(me, id, self.cfg.members().name(id), now);
            self.peers.push(peer);
        }
        self.engine.add_external_nodes(n as u32);
        self.dirty = true;
    }

    /// Whether this node dials `peer` (else it asks `peer` to dial it): by id with the mesh
    /// backend, by name in etcd mode, where ids are local (see `transport::peers`).
    pub(super) fn order_peer(&mut self, peer: NodeId) -> bool {
        if self.cfg.members().is_growable() {
            let me = self.cfg.me().to_string();
            let them = self.name(peer).to_string();
            self.peers[peer.index()].dial.order_by_name(&me, &them);
        }
        self.peers[peer.index()].dial.we_dial()
    }
}

/// Creates the engine: in external mode if a backend decides, else as configured.
pub(super) fn new_engine(config: &Config, cfg: EngineConfig, now: Instant) -> Engine {
    if config.backend().is_external() {
        Engine::new_external(cfg, now)
    } else {
        Engine::new(cfg, now)
    }
}

/// The running backend, if any.
#[derive(Debug, Default)]
pub(crate) struct BackendState {
    running: Option<Box<dyn RunningElection>>,
    /// Forwards the backend's events to the actor.
    forward: Option<tokio::task::JoinHandle<()>>,
    /// The other node the store names as leader, kept dialed (see `PeerDial::set_persistent`).
    named: Option<NodeId>,
}

/// How many of the store's events may wait in the node's mailbox at once. The actor's
/// mailbox itself is unbounded, so the forwarder takes a permit per event and the actor drops
/// it once the event is applied: a store that floods events waits in its own bounded channel.
pub(super) const BACKEND_WINDOW: usize = 64;

impl BackendState {
    /// Starts the store's election (campaigning unless this node is a worker) if a store
    /// decides; its events come to `actor` as `NodeMsg::Backend`, each with its permit.
    pub(super) fn start<M>(config: &Config, actor: &ActorRef<M>) -> Result<Self, BoxError>
    where
        M: From<(ElectionEvent, OwnedSemaphorePermit)> + ractor::Message,
    {
        let Some(store) = config.backend().external() else {
            return Ok(BackendState::default());
        };
        let me = LeaderValue::new(config.me().to_string(), config.me().addr());
        let campaign = config.election_role() == ElectionRole::Candidate;
        let Started { events, running } = store.start(me, campaign)?;
        let actor = actor.clone();
        let window = Arc::new(Semaphore::new(BACKEND_WINDOW));
        let forward = tokio::spawn(forward(events, window, move |ev, permit| {
            actor.cast(M::from((ev, permit))).is_ok()
        }));
        Ok(BackendState {
            running: Some(running),
            forward: Some(forward),
            named: None,
        })
    }
}

/// Passes `events` on through `cast`, each with a permit of `window`: at most the window's
/// size are handed over and not yet applied (the permit's drop says applied). Ends when the
/// store closes its channel or `cast` fails (the actor is gone).
async fn forward(
    mut events: mpsc::Receiver<ElectionEvent>,
    window: Arc<Semaphore>,
    mut cast: impl FnMut(ElectionEvent, OwnedSemaphorePermit) -> bool,
) {
    while let Some(ev) = events.recv().await {
        let Ok(permit) = window.clone().acquire_owned().await else {
            return;
        };
        if !cast(ev, permit) {
            return;
        }
    }
}

impl Drop for BackendState {
    fn drop(&mut self) {
        if let Some(f) = self.forward.take() {
            f.abort();
        }
    }
}

fn loss(reason: StepDownReason) -> LossReason {
    match reason {
        StepDownReason::LeaseExpired | StepDownReason::LeaseRevoked => LossReason::LeaseExpired,
        _ => LossReason::TakenOver,
    }
}

impl<B: Behaviour> NodeState<B> {
    /// Stops the backend: a leader resigns (the next one need not wait for the TTL).
    pub(in crate::node) async fn stop_backend(&mut self) {
        if let Some(running) = self.backend.running.take() {
            running.shutdown().await;
            info!(node = %self.cfg.me(), "election backend stopped");
        }
    }

    /// Applies one backend event to the engine (the drive follows).
    pub(in crate::node) fn on_backend(&mut self, ev: ElectionEvent) {
        let now = tokio::time::Instant::now().into_std();
        let me = self.me();
        if let Some(unavailable) = unavailability(&ev) {
            self.view_tx.send_if_modified(|v| {
                let changed = v.backend_unavailable != unavailable;
                v.backend_unavailable = unavailable;
                changed
            });
        }
        match ev {
            ElectionEvent::Leading { rev, until, .. } => {
                self.engine.handle_external_lease(now, Term(rev), until);
                self.engine.handle_external_leader(
                    now,
                    Some(LeaderRef {
                        node: me,
                        term: Term(rev),
                    }),
                );
            }
            ElectionEvent::LeaseMoved { rev, until, .. } => {
                self.engine.handle_external_lease(now, Term(rev), until);
            }
            ElectionEvent::SteppedDown { rev, reason } => {
                self.engine
                    .handle_external_lost(now, Term(rev), loss(reason));
            }
            ElectionEvent::Following { leader, rev } => match self.meet(&leader.name) {
                Some(id) if id != me => {
                    self.keep_dialing(Some(id));
                    self.engine.handle_external_leader(
                        now,
                        Some(LeaderRef {
                            node: id,
                            term: Term(rev),
                        }),
                    );
                    self.dial(id, Duration::ZERO);
                }
                other => {
                    if other == Some(me) {
                        // Our name, not our campaign (which speaks for itself): an earlier
                        // run of this node whose claim has not expired yet.
                        warn!(node = %self.cfg.me(), rev,
                            "the store names this node's name but not its campaign: no leader");
                    }
                    self.keep_dialing(None);
                    self.engine.handle_external_leader(now, None);
                }
            },
            ElectionEvent::ForeignLeader { rev } => {
                self.keep_dialing(None);
                warn!(node = %self.cfg.me(), rev,
                    "the election is held by a foreign value: no leader");
                self.engine.handle_external_leader(now, None);
            }
            ElectionEvent::NoLeader => {
                self.keep_dialing(None);
                self.engine.handle_external_leader(now, None);
            }
            ElectionEvent::CampaignVoided { rev } => {
                warn!(node = %self.cfg.me(), rev,
                    "the campaign returned after the lease expired: not leading");
            }
            ElectionEvent::Unavailable { op, kind } => {
                tracing::debug!(node = %self.cfg.me(), %op, %kind, "election store unavailable");
            }
        }
        self.dirty = true;
    }

    /// The id of the node the store names, adding it to the member table if this node has not
    /// met it; `None` (logged) for a name that does not parse or a full table.
    fn meet(&mut self, name: &str) -> Option<NodeId> {
        let parsed = match name.parse::<NodeName>() {
            Ok(n) => n,
            Err(e) => {
                warn!(node = %self.cfg.me(), leader = %name, error = %e,
                    "the store names a leader whose name does not parse: no leader");
                return None;
            }
        };
        match self.cfg.members().join(&parsed) {
            Ok(Some(id)) => {
                self.sync_members();
                Some(id)
            }
            Ok(None) => {
                warn!(node = %self.cfg.me(), leader = %name,
                    "the store names a leader that is not a member: no leader");
                None
            }
            Err(e) => {
                warn!(node = %self.cfg.me(), leader = %name, error = %e,
                    "the store names a leader this node has no room for: no leader");
                None
            }
        }
    }

    /// Keeps dialing `named` (the leader the store names) however often it fails: it may not
    /// know this node, so it would never dial it. The previous one is dialed as usual.
    fn keep_dialing(&mut self, named: Option<NodeId>) {
        if self.backend.named == named {
            return;
        }
        if let Some(old) = self.backend.named.take() {
            self.peers[old.index()].dial.set_persistent(false);
        }
        if let Some(id) = named {
            self.peers[id.index()].dial.set_persistent(true);
        }
        self.backend.named = named;
    }
}

/// What an event says about the store's reachability, for the view: `Some(Some(..))` when it
/// failed, `Some(None)` when the store answered, `None` when the event does not say (a leader
/// that steps down because its keep-alives fail has not heard from the store).
fn unavailability(ev: &ElectionEvent) -> Option<Option<(StoreOp, FailureKind)>> {
    use ElectionEvent as E;
    match ev {
        E::Unavailable { op, kind } => Some(Some((*op, *kind))),
        E::SteppedDown { .. } | E::CampaignVoided { .. } => None,
        E::Leading { .. }
        | E::LeaseMoved { .. }
        | E::Following { .. }
        | E::ForeignLeader { .. }
        | E::NoLeader => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::{forward, unavailability};
    use std::sync::{Arc, Mutex};
    use tokio::sync::{mpsc, Semaphore};

    /// The events the "actor" has been handed and not applied yet, with their permits.
    type Held = Arc<
        Mutex<
            Vec<(
                crate::backend::ElectionEvent,
                tokio::sync::OwnedSemaphorePermit,
            )>,
        >,
    >;

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_flood_of_events_waits_for_the_actor_to_apply_them() {
        let (tx, rx) = mpsc::channel(crate::backend::EVENT_CAPACITY);
        let held: Held = Arc::default();
        let h = held.clone();
        let task = tokio::spawn(forward(rx, Arc::new(Semaphore::new(3)), move |ev, p| {
            h.lock().unwrap().push((ev, p));
            true
        }));
        for _ in 0..10 {
            tx.send(crate::backend::ElectionEvent::NoLeader)
                .await
                .unwrap();
        }
        settle().await;
        assert_eq!(
            held.lock().unwrap().len(),
            3,
            "no more than the window handed over"
        );
        // The actor applies two (their permits drop): two more come.
        held.lock().unwrap().drain(..2);
        settle().await;
        assert_eq!(held.lock().unwrap().len(), 3);
        // All applied as they come: the rest (10 − 3 − 2 = 5) follow, then the store closes.
        for _ in 0..10 {
            held.lock().unwrap().clear();
            settle().await;
        }
        drop(tx);
        settle().await;
        assert!(
            task.is_finished(),
            "the forwarder ends with the store's channel"
        );
    }
    use crate::backend::{
        ElectionEvent as EtcdEvent, FailureKind as ErrorKind, StepDownReason, StoreOp as EtcdOp,
    };

    #[test]
    fn a_step_down_does_not_say_the_store_is_back() {
        let down = EtcdEvent::Unavailable {
            op: EtcdOp::KeepAlive,
            kind: ErrorKind::Unreachable,
        };
        assert_eq!(
            unavailability(&down),
            Some(Some((EtcdOp::KeepAlive, ErrorKind::Unreachable)))
        );
        let stepped = EtcdEvent::SteppedDown {
            rev: 7,
            reason: StepDownReason::LeaseExpired,
        };
        assert_eq!(unavailability(&stepped), None);
        assert_eq!(unavailability(&EtcdEvent::CampaignVoided { rev: 8 }), None);
        assert_eq!(unavailability(&EtcdEvent::NoLeader), Some(None));
    }
}
