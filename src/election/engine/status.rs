//! What peers say about whom they follow (`Status`), and this node's own announcements.
//! Only a node's first-hand claim to lead is trusted; second-hand reports may be stale. Kept
//! apart because this is how two leaders learn of each other and how stale followers leave.

use std::time::Instant;

use super::{Engine, Role};
use crate::election::{ElectionMsg, LeaderRef, LossReason, Output};
use crate::types::{NodeId, Term};

impl Engine {
    pub(super) fn on_status(
        &mut self,
        now: Instant,
        from: NodeId,
        promised: Term,
        leader: Option<LeaderRef>,
    ) {
        if self.external.is_some() {
            self.on_status_external(now, from, leader);
            return;
        }
        if self.role == Role::Starting {
            match leader.filter(|l| l.node == from) {
                Some(l) => self.follow_or_preempt(now, l.node),
                None => self.try_finish_start(now),
            }
            return;
        }
        if self.role == Role::Joining && self.joining == Some(from) {
            // We asked `from` to take us but it no longer leads.
            if leader.is_none_or(|l| l.node != from) {
                self.joining = None;
                self.elect(now);
                return;
            }
        }
        let me = self.cfg.me;
        if let Some(mine) = self.leader.filter(|m| m.node == from && m.node != me) {
            if leader != Some(mine) && leader.is_none_or(|l| l.node != from || l.term > mine.term) {
                // Our leader says it no longer leads (it was taken over, or re-elected
                // itself above a newer term without us): leave it.
                self.leader = None;
                self.out.push_back(Output::LeaderLost {
                    leader: from,
                    term: mine.term,
                    reason: LossReason::TakenOver,
                });
                self.elect(now);
                return;
            }
        }
        if self.is_leader() && self.proposal.is_none() && promised >= self.term() {
            // A current (not reordered or duplicated) Status from a peer about whom it follows.
            match leader {
                // It follows another leader: stop sending it broadcasts. ("No leader" is not
                // enough: a joiner says so just after its `Join`.)
                Some(l) if l.node != me => {
                    self.followers.remove(&from);
                }
                // It follows us in this term: make sure it gets the broadcasts.
                Some(l) if l.term == self.term() => {
                    self.followers.insert(from);
                }
                _ => {}
            }
        }
        // Only a node's own claim to lead is trusted: second-hand claims may be stale.
        let Some(l) = leader.filter(|l| l.node == from) else {
            return;
        };
        match self.leader {
            None => match self.role {
                Role::Waiting | Role::Starting => self.follow_or_preempt(now, l.node),
                Role::Proposing => {
                    let takeover = self.proposal.as_ref().is_some_and(|p| p.takeover);
                    if !((takeover || self.cfg.preempt) && self.cfg.me < l.node) {
                        self.join(now, l.node);
                    }
                }
                _ => {}
            },
            Some(mine) if mine.node == me && self.quorum.is_some() => {
                // Quorum mode: a newer term won a majority, so this lease has ended (its
                // timer may not have fired yet). An older one is stale and will end.
                if l.term > mine.term {
                    self.drop_leadership(LossReason::NewerTerm);
                    self.join(now, l.node);
                }
            }
            Some(mine) if mine.node == me => {
                // Two leaders meet: the higher priority takes over; the other waits for it.
                if me < l.node && self.proposal.is_none() {
                    self.propose(now, true);
                }
            }
            Some(mine) => {
                // A higher-priority leader with a newer term announces itself: ours would be
                // taken over anyway (and we may have missed its proposal). A lower-priority
                // one is ignored: it only leads where it cannot reach ours.
                if l.node == from
                    && l.term > mine.term
                    && (l.node < mine.node || self.quorum.is_some())
                    && self.role == Role::Follower
                {
                    self.leader = None;
                    self.out.push_back(Output::LeaderLost {
                        leader: mine.node,
                        term: mine.term,
                        reason: LossReason::NewerTerm,
                    });
                    self.join(now, l.node);
                }
            }
        }
    }

    pub(super) fn live_leader(&self) -> Option<LeaderRef> {
        self.leader.filter(|l| self.is_reachable(l.node))
    }

    /// A connected peer that says it leads (highest term first). Only first-hand claims
    /// count: a peer's report of whom it follows may be stale.
    pub(super) fn known_live_leader(&self) -> Option<NodeId> {
        self.statuses
            .iter()
            .filter(|(p, l)| self.connected.contains(p) && l.is_some_and(|l| l.node == **p))
            .filter_map(|(_, l)| *l)
            .max_by_key(|l| (l.term, std::cmp::Reverse(l.node)))
            .map(|l| l.node)
    }

    pub(super) fn broadcast_status(&mut self) {
        let msg = ElectionMsg::Status {
            promised: self.promised,
            leader: self.leader,
        };
        let peers: Vec<NodeId> = self.connected.iter().copied().collect();
        for p in peers {
            self.send(p, msg.clone());
        }
    }

    /// Tells every peer when this node's leader changed (called at the end of every input).
    pub(super) fn announce_if_changed(&mut self) {
        if self.announced != self.leader {
            self.announced = self.leader;
            self.broadcast_status();
        }
    }
}
