//! The node's side of an external election backend (etcd): start it, turn its events into
//! engine inputs, stop it (resigning) before the goodbye.
//!
//! Why a file of its own: the backend only *decides*; everything else (calls, Synch,
//! broadcasts, guards, view, audit) stays the runtime's, driven by the engine's outputs as in
//! the other modes. So this file is the whole adapter: the engine runs in external mode
//! (`Engine::new_external`), each [`EtcdEvent`](crate::etcd::EtcdEvent) becomes one engine
//! input, and the normal drive follows. The lease checks (`lease`, the guard) work unchanged:
//! `Config::quorum_params` gives them the etcd lease with `leader_lease` equal to the
//! backend's local lease, so `lease_end` recovers the keep-alive's send time and moves the
//! lease onto the suspend-aware lease clock.
//!
//! A leader named by etcd must be a listed member (first version): another name is treated as
//! "no leader" and logged.

use std::time::Instant;

use crate::behaviour::Behaviour;
use crate::config::Config;
use crate::election::{Engine, EngineConfig};

use super::state::NodeState;

/// Creates the engine: in external mode if a backend decides, else as configured.
pub(super) fn new_engine(config: &Config, cfg: EngineConfig, now: Instant) -> Engine {
    if config.backend().is_external() {
        Engine::new_external(cfg, now)
    } else {
        Engine::new(cfg, now)
    }
}

#[cfg(not(feature = "etcd"))]
mod imp {
    use super::*;

    /// No external backend without the `etcd` feature.
    #[derive(Debug, Default)]
    pub(crate) struct BackendState;

    /// Uninhabited without a backend.
    #[derive(Debug)]
    pub(crate) enum BackendEvent {}

    impl<B: Behaviour> NodeState<B> {
        pub(in crate::node) fn start_backend(&mut self) {}
        pub(in crate::node) async fn stop_backend(&mut self) {
            let BackendState = self.backend;
        }
        pub(in crate::node) fn on_backend(&mut self, ev: BackendEvent) {
            match ev {}
        }
    }
}

#[cfg(feature = "etcd")]
mod imp {
    use tracing::{info, warn};

    use super::*;
    use crate::election::{LeaderRef, LossReason};
    use crate::etcd::{EtcdElection, EtcdEvent, LeaderValue, StepDownReason};
    use crate::node::actor::NodeMsg;
    use crate::types::Term;

    /// The running backend, if any.
    #[derive(Debug, Default)]
    pub(crate) struct BackendState {
        election: Option<EtcdElection>,
    }

    /// One event of the backend, for the actor.
    #[derive(Debug)]
    pub(crate) struct BackendEvent(pub EtcdEvent);

    fn loss(reason: StepDownReason) -> LossReason {
        match reason {
            StepDownReason::LeaseExpired | StepDownReason::LeaseRevoked => LossReason::LeaseExpired,
            _ => LossReason::TakenOver,
        }
    }

    impl<B: Behaviour> NodeState<B> {
        /// Starts campaigning and observing, if etcd decides; its events come to the actor
        /// as `NodeMsg::Backend`.
        pub(in crate::node) fn start_backend(&mut self) {
            let Some(cfg) = self.cfg.backend().etcd().cloned() else {
                return;
            };
            let me = LeaderValue::new(self.cfg.me().to_string(), self.cfg.me().addr());
            match EtcdElection::start(cfg, me) {
                Ok((election, mut events)) => {
                    let actor = self.myself.clone();
                    self.tasks.push(tokio::spawn(async move {
                        while let Some(ev) = events.recv().await {
                            if actor.cast(NodeMsg::Backend(BackendEvent(ev))).is_err() {
                                return;
                            }
                        }
                    }));
                    self.backend.election = Some(election);
                }
                // Validated by `ConfigBuilder::build`: only an unencodable name gets here.
                Err(e) => warn!(node = %self.cfg.me(), error = %e,
                    "cannot start the etcd backend: this node will never lead or follow"),
            }
        }

        /// Stops the backend: a leader resigns (the next one need not wait for the TTL).
        pub(in crate::node) async fn stop_backend(&mut self) {
            if let Some(e) = self.backend.election.take() {
                let outcome = e.shutdown().await;
                info!(node = %self.cfg.me(), ?outcome, "etcd backend stopped");
            }
        }

        /// Applies one backend event to the engine (the drive follows).
        pub(in crate::node) fn on_backend(&mut self, BackendEvent(ev): BackendEvent) {
            let now = tokio::time::Instant::now().into_std();
            let me = self.me();
            let unavailable = match &ev {
                EtcdEvent::Unavailable { op, kind } => Some((*op, *kind)),
                _ => None,
            };
            self.view_tx.send_if_modified(|v| {
                let changed = v.etcd_unavailable != unavailable;
                v.etcd_unavailable = unavailable;
                changed
            });
            match ev {
                EtcdEvent::Leading { rev, until, .. } => {
                    self.engine.handle_external_lease(now, Term(rev), until);
                    self.engine.handle_external_leader(
                        now,
                        Some(LeaderRef {
                            node: me,
                            term: Term(rev),
                        }),
                    );
                }
                EtcdEvent::LeaseMoved { rev, until, .. } => {
                    self.engine.handle_external_lease(now, Term(rev), until);
                }
                EtcdEvent::SteppedDown { rev, reason } => {
                    self.engine
                        .handle_external_lost(now, Term(rev), loss(reason));
                }
                EtcdEvent::Following { leader, rev } => {
                    match self.cfg.members().id_of_str(&leader.name) {
                        Some(id) if id != me => self.engine.handle_external_leader(
                            now,
                            Some(LeaderRef {
                                node: id,
                                term: Term(rev),
                            }),
                        ),
                        _ => {
                            warn!(node = %self.cfg.me(), leader = %leader.name, rev,
                                "etcd names a leader that is not a listed member: no leader");
                            self.engine.handle_external_leader(now, None);
                        }
                    }
                }
                EtcdEvent::ForeignLeader { rev } => {
                    warn!(node = %self.cfg.me(), rev,
                        "the etcd election is held by a foreign value: no leader");
                    self.engine.handle_external_leader(now, None);
                }
                EtcdEvent::NoLeader => self.engine.handle_external_leader(now, None),
                EtcdEvent::CampaignVoided { rev } => {
                    warn!(node = %self.cfg.me(), rev,
                        "etcd campaign returned after the lease expired: not leading");
                }
                EtcdEvent::Unavailable { op, kind } => {
                    tracing::debug!(node = %self.cfg.me(), %op, %kind, "etcd unavailable");
                }
            }
            self.dirty = true;
        }
    }
}

pub(super) use imp::{BackendEvent, BackendState};
