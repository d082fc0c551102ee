//! Proposals and their answers: proposing a term, accepting or rejecting another's, and
//! becoming leader once every connected node has answered. Kept together because the bully
//! rules (who may outbid whom, when a takeover is allowed) only make sense side by side.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Engine, Proposal, Role};
use crate::election::{ElectionMsg, LeaderRef, LossReason, Output};
use crate::types::{NodeId, Term};

impl Engine {
    pub(super) fn on_propose(&mut self, now: Instant, from: NodeId, term: Term, takeover: bool) {
        if self.external.is_some() {
            return; // the decider elects: proposals are not answered
        }
        self.see(term);
        if !self.is_candidate(from) || !self.owns(from, term) {
            return;
        }
        if self.captured_by == Some(LeaderRef { node: from, term }) {
            // A duplicate of the proposal we accepted: accept again (idempotent).
            self.send(from, ElectionMsg::Accept { term });
            return;
        }
        if term <= self.promised {
            self.send(
                from,
                ElectionMsg::Reject {
                    round: term,
                    promised: self.promised,
                    leader: self.live_leader(),
                },
            );
            return;
        }
        if self.quorum.is_some() && !self.grant_allowed(now, from, term) {
            return;
        }
        if let Some(l) = self
            .live_leader()
            .filter(|l| l.node != from && !self.votes_by_promise())
        {
            let allowed = (takeover || self.cfg.preempt) && from < l.node;
            if !allowed {
                self.send(
                    from,
                    ElectionMsg::Reject {
                        round: term,
                        promised: self.promised,
                        leader: Some(l),
                    },
                );
                return;
            }
        }
        if let Some(p) = self.proposal.as_ref() {
            if self.cfg.me < from && self.leader.is_none() {
                // Bully: a lower-priority candidate proposes while we do; we keep our round,
                // outbidding its term if needed.
                let outbid = p.term < term;
                let takeover = p.takeover;
                self.send(
                    from,
                    ElectionMsg::Reject {
                        round: term,
                        promised: self.promised,
                        leader: None,
                    },
                );
                if outbid {
                    self.propose(now, takeover);
                }
                return;
            }
        }
        // Accept.
        self.set_promised(term);
        self.promise_to(from, term, now);
        if self.leader.is_some_and(|l| l.node == from) {
            // Our own leader re-elects itself above a newer term: calls stay valid.
            self.leader = None;
        } else {
            self.drop_leadership(LossReason::TakenOver);
        }
        self.release_proposal();
        self.joining = None;
        self.role = Role::Captured;
        self.captured_by = Some(LeaderRef { node: from, term });
        self.deadline = Some(now + self.cfg.election_timeout * 2);
        self.send(from, ElectionMsg::Accept { term });
    }

    pub(super) fn on_reject(
        &mut self,
        now: Instant,
        from: NodeId,
        round: Term,
        promised: Term,
        leader: Option<LeaderRef>,
    ) {
        self.see(promised);
        if let Some(l) = leader {
            self.see(l.term);
        }
        let Some(p) = self.proposal.as_mut().filter(|p| p.term == round) else {
            return;
        };
        if p.accepted.contains(&from) {
            return; // a duplicate answer
        }
        p.pending.remove(&from);
        let takeover = p.takeover;
        let my_term = p.term;
        if self.quorum.is_some() {
            // Quorum mode: a rejection is a missing vote; no immediate retry or outbid (the
            // voter is promised elsewhere for a while). Join a live leader, or count the votes.
            match leader.filter(|l| l.node != self.cfg.me && self.is_reachable(l.node)) {
                Some(l) if !(self.cfg.preempt && self.cfg.me < l.node) => self.join(now, l.node),
                _ => self.check_proposal(now),
            }
            return;
        }
        if let Some(l) = leader.filter(|l| l.node != self.cfg.me) {
            if self.is_reachable(l.node) {
                if (takeover || self.cfg.preempt) && self.cfg.me < l.node {
                    // Rejected only for a stale term: try again above it.
                    self.propose(now, true);
                } else {
                    self.join(now, l.node);
                }
                return;
            }
        } else if leader.is_none() && from < self.cfg.me {
            // A higher-priority candidate is electing: let it.
            self.release_proposal();
            if self.is_leader() {
                self.role = Role::Leader;
                self.deadline = None;
            } else {
                self.role = Role::Waiting;
                self.deadline = Some(now + self.jittered());
            }
            return;
        } else if leader.is_none() && promised >= my_term {
            // A lower-priority node has seen a newer term: outbid it.
            self.propose(now, takeover);
            return;
        }
        self.check_proposal(now);
    }

    pub(super) fn propose(&mut self, now: Instant, takeover: bool) {
        if self.external.is_some() {
            return;
        }
        if let Some(retry) = self.proposal_blocked(now) {
            // Quorum mode: not now (no majority reachable, promised elsewhere, or a voter
            // still follows a live leader). A sitting leader keeps leading.
            self.release_proposal();
            if !self.is_leader() {
                self.role = Role::Waiting;
                self.deadline = Some(retry);
            }
            return;
        }
        let Some(term) = self.next_owned_term() else {
            // No term left to propose: never reuse one. Stay out of elections.
            self.release_proposal();
            if !self.is_leader() {
                self.role = Role::Waiting;
                self.deadline = None;
            }
            return;
        };
        self.set_promised(term);
        self.promise_to(self.cfg.me, term, now);
        let pending = self.connected.clone();
        for &p in &pending {
            self.send(p, ElectionMsg::Propose { term, takeover });
        }
        self.release_proposal();
        self.proposal = Some(Proposal {
            term,
            sent: now,
            takeover,
            pending,
            accepted: BTreeSet::new(),
        });
        self.role = Role::Proposing;
        self.captured_by = None;
        self.joining = None;
        self.deadline = Some(now + self.cfg.election_timeout);
        self.check_proposal(now);
    }

    pub(super) fn check_proposal(&mut self, now: Instant) {
        if self.proposal.as_ref().is_some_and(|p| p.pending.is_empty()) {
            self.become_leader(now);
        }
    }

    pub(super) fn become_leader(&mut self, now: Instant) {
        let Some(p) = self.proposal.take() else {
            return;
        };
        if self.quorum.is_some()
            && !(self.has_majority(&p.accepted) && self.start_lease(p.term, p.sent, now))
        {
            // Quorum mode: no majority granted the term (or its lease already ran out).
            self.release_grants(p.term, &p.accepted);
            if !self.is_leader() {
                self.role = Role::Waiting;
                self.deadline = Some(now + self.jittered());
            }
            return;
        }
        let me = self.cfg.me;
        self.leader = Some(LeaderRef {
            node: me,
            term: p.term,
        });
        self.role = Role::Leader;
        self.deadline = None;
        self.announce_at = Some(now + self.cfg.announce_interval);
        self.followers = p
            .accepted
            .into_iter()
            .filter(|f| self.connected.contains(f))
            .collect();
        self.out.push_back(Output::Elected {
            term: p.term,
            joined: None,
        });
        if let Some(old) = self.previous_leader.take() {
            if old != me && !self.connected.contains(&old) {
                self.out.push_back(Output::Down { node: old });
            }
        }
    }
}
