//! Whether this node may act as leader *now*, and what it publishes about its leadership.
//!
//! Why a file of its own: in quorum mode "the engine says I lead" is not enough to run a
//! leader callback — the lease must also still run, measured on the lease clock (`clock`),
//! which counts time the machine spent suspended. Every place that runs
//! `handle_leader_call`, `handle_leader_cast` or `handle_down` asks [`NodeState::acting`]
//! (through [`NodeState::acting_leader`] where a leader is looked up). A leader whose lease
//! has ended but whose engine has not stepped down yet is treated as "no leader yet": calls
//! made on it wait (within their deadline), calls forwarded to it are answered `NotLeader`,
//! casts are held; and the next drive makes the engine step down at once
//! (`Engine::handle_lease_ended`), so followers stop sending it calls. In bully mode acting
//! is leading.

use std::time::Instant;

use super::leader_state;
use super::state::NodeState;
use super::view;
use crate::behaviour::Behaviour;
use crate::election::{LeaderRef, LossReason};
use crate::types::Term;

impl<B: Behaviour> NodeState<B> {
    /// Quorum mode: when this leader's lease ends, on the lease clock (`None` unless it leads
    /// in quorum mode with a lease).
    pub(super) fn lease_end(&self) -> Option<Instant> {
        let until = self.engine.lease_until()?;
        let q = self.cfg.quorum_params()?;
        let sent = until.checked_sub(q.leader_lease()).unwrap_or(until);
        Some(self.clock.to_lease_clock(until, sent))
    }

    /// Whether this node may run leader callbacks now: it leads and, in quorum mode, its
    /// lease has not ended on the lease clock.
    pub(super) fn acting(&self) -> bool {
        // Bully mode: acting is leading; no clock read on the hot path of every call and cast.
        let Some(q) = self
            .lease_checks
            .then(|| self.cfg.quorum_params())
            .flatten()
        else {
            return self.engine.is_leader();
        };
        let now = tokio::time::Instant::now().into_std();
        if !self.engine.is_acting(now) {
            return false;
        }
        let Some(until) = self.engine.lease_until() else {
            return false;
        };
        // The hot path of every call on a quorum-mode leader: one reading of the suspended
        // time (it also records a suspend before the lookup below), not one per conversion.
        let suspended = self.clock.suspended();
        let sent = until.checked_sub(q.leader_lease()).unwrap_or(until);
        now + suspended < until + self.clock.suspended_at(sent)
    }

    /// The leader calls and casts go to: the engine's leader, unless that is this node and it
    /// may not act now (then none, as during an election).
    pub(super) fn acting_leader(&self) -> Option<LeaderRef> {
        let me = self.me();
        self.engine
            .leader()
            .filter(|l| l.node != me || self.acting())
    }

    /// Records that this node's leadership of `term` ended, and why: before anything else
    /// sees the leadership gone, so that its guards report the reason.
    pub(super) fn note_loss(&self, term: Term, reason: LossReason) {
        leader_state::note_loss(&self.losses_tx, term, reason);
    }

    /// Publishes the view and the leader state if they changed.
    pub(super) fn publish(&mut self) {
        let lease_end = self.lease_end();
        view::publish(
            &self.view_tx,
            &self.engine,
            self.cfg.members(),
            lease_end,
            &mut self.published_alive,
        );
        self.publish_state_with(lease_end);
    }

    /// Publishes the leader state if it changed.
    pub(super) fn publish_state(&self) {
        self.publish_state_with(self.lease_end());
    }

    fn publish_state_with(&self, lease_end: Option<Instant>) {
        let s = leader_state::of(&self.engine, self.cfg.members(), lease_end);
        self.metrics
            .leadership(&s, self.engine.term(), || self.clock.lease_now());
        leader_state::publish(&self.state_tx, s);
    }
}
