//! Deciding what to do when no leader is known: after the start-up wait, or after losing
//! one. Separate from proposing because a node may join, wait for a higher-priority
//! candidate, or propose, and this is where that choice is made.

use std::time::Instant;

use super::{Engine, Role};
use crate::types::NodeId;

impl Engine {
    pub(super) fn try_finish_start(&mut self, now: Instant) {
        if self.role != Role::Starting {
            return;
        }
        let all_heard = (0..self.cfg.n_nodes).map(NodeId).all(|p| {
            p == self.cfg.me || self.statuses.contains_key(&p) || self.unreachable.contains(&p)
        });
        if all_heard {
            self.decide_after_start(now);
        }
    }

    pub(super) fn decide_after_start(&mut self, now: Instant) {
        self.deadline = None;
        match self.known_live_leader() {
            Some(l) => self.follow_or_preempt(now, l),
            None => self.elect(now),
        }
    }

    /// A sitting leader `l` is known: join it, or (with `preempt`) replace it.
    pub(super) fn follow_or_preempt(&mut self, now: Instant, l: NodeId) {
        if self.cfg.preempt && self.is_candidate(self.cfg.me) && self.cfg.me < l {
            self.propose(now, true);
        } else {
            self.join(now, l);
        }
    }

    /// No leader: propose, or wait for a higher-priority candidate.
    pub(super) fn elect(&mut self, now: Instant) {
        if self.external.is_some() {
            // The decider elects; this node only follows what it named.
            self.external_follow(now);
            return;
        }
        self.release_proposal();
        if let Some(l) = self.known_live_leader() {
            self.join(now, l);
            return;
        }
        if !self.is_candidate(self.cfg.me) {
            self.role = Role::Waiting;
            self.deadline = None;
            return;
        }
        let me = self.cfg.me;
        let higher_alive = self
            .connected
            .iter()
            .any(|&p| self.is_candidate(p) && p < me);
        if higher_alive {
            self.role = Role::Waiting;
            self.deadline = Some(now + self.jittered());
        } else {
            self.propose(now, false);
        }
    }
}
