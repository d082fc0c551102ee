//! Joining a sitting leader and following it: the `Join` request, the leader's answer
//! (`elected(.., Some(node))`, or a re-election when the joiner promised more), and the
//! `Leader` announcement that makes a node follow. Kept apart because this is gen_leader's
//! join rule, the one a restarted node goes through.

use std::time::Instant;

use super::{Engine, Role};
use crate::election::{ElectionMsg, LeaderRef, LossReason, Output};
use crate::types::{NodeId, Term};

impl Engine {
    pub(super) fn on_join(&mut self, now: Instant, from: NodeId, promised: Term) {
        self.see(promised);
        if !self.is_leader() {
            self.send(
                from,
                ElectionMsg::Status {
                    promised: self.promised,
                    leader: self.live_leader(),
                },
            );
            return;
        }
        if self.proposal.is_some() {
            // A new round is under way; the joiner is connected and was sent its proposal.
            return;
        }
        if promised > self.term() && self.external.is_none() {
            // Re-elect above the joiner's term so that its term never goes down.
            self.propose(now, true);
            return;
        }
        self.followers.insert(from);
        self.out.push_back(Output::Elected {
            term: self.term(),
            joined: Some(from),
        });
    }

    pub(super) fn on_leader(&mut self, from: NodeId, term: Term, synch: Vec<u8>) {
        self.see(term);
        let this = LeaderRef { node: from, term };
        let named = if self.external.is_some() {
            // External mode: only the leader the decider named, for exactly its term.
            self.external_names(from, term) && self.leader.is_none_or(|l| l == this)
        } else {
            self.is_candidate(from) && self.owns(from, term)
        };
        if !named {
            return;
        }
        let acceptable = self.external.is_some()
            || match self.role {
                Role::Captured => self.captured_by == Some(this),
                Role::Joining => self.joining == Some(from) && term >= self.promised,
                Role::Follower => self.leader == Some(this),
                Role::Waiting | Role::Starting | Role::Proposing => {
                    self.leader.is_none() && term >= self.promised
                }
                Role::Leader => false,
            };
        if !acceptable {
            return;
        }
        self.set_promised(term);
        self.leader = Some(this);
        self.role = Role::Follower;
        self.captured_by = None;
        self.joining = None;
        self.release_proposal();
        self.previous_leader = None;
        self.deadline = None;
        self.out.push_back(Output::Surrendered {
            leader: from,
            term,
            synch,
        });
    }

    pub(super) fn join(&mut self, now: Instant, l: NodeId) {
        self.drop_leadership(LossReason::TakenOver);
        self.release_proposal();
        self.captured_by = None;
        self.role = Role::Joining;
        self.joining = Some(l);
        self.deadline = Some(now + self.cfg.election_timeout);
        self.send(
            l,
            ElectionMsg::Join {
                promised: self.promised,
            },
        );
    }

    /// Stops leading or following (before accepting another leader).
    pub(super) fn drop_leadership(&mut self, reason: LossReason) {
        let Some(l) = self.leader.take() else { return };
        if l.node == self.cfg.me {
            self.followers.clear();
            self.end_lease();
            self.out.push_back(Output::LeadershipLost {
                term: l.term,
                reason,
            });
        } else {
            self.out.push_back(Output::LeaderLost {
                leader: l.node,
                term: l.term,
                reason,
            });
        }
    }
}
