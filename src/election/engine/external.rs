//! External mode: another system (etcd, through the runtime) decides who leads; the engine
//! only carries the decision over the mesh.
//!
//! Why the engine and not a second runtime: calls, the Synch, broadcasts, guards, the view and
//! the audit trail are all driven by the engine's outputs. Fed the external decision, the same
//! outputs come out — `Elected { joined: None }` on the leader, `Join` → `Elected { joined }` →
//! `Leader { synch }` → `Surrendered` for each follower — so nothing downstream changes.
//!
//! Rules in this mode: the engine never proposes, never answers a proposal and never takes
//! over; a `Leader` announcement is accepted only from the node the external decision names,
//! for exactly its term (the decider's fencing token, e.g. etcd's create revision: strictly
//! increasing, so term ownership is not needed); a leader acts only while the external lease
//! it was given runs ([`Engine::is_acting`]).

use std::time::Instant;

use super::{Engine, Role, MAX_TERM};
use crate::election::{ElectionMsg, LeaderRef, LossReason, Output};
use crate::types::{NodeId, Term};

/// On the wire in external mode: the node named is the message's sender.
pub const WIRE_SENDER: NodeId = NodeId(u32::MAX);
/// On the wire in external mode: the node named is the message's receiver.
pub const WIRE_RECEIVER: NodeId = NodeId(u32::MAX - 1);
/// On the wire, and in the engine once read, in external mode: a node that is neither the
/// sender nor the receiver. Never a member id (those stay below
/// [`MAX_MEMBERS`](crate::config::MAX_MEMBERS)).
pub const WIRE_OTHER: NodeId = NodeId(u32::MAX - 2);

/// External mode: the node ids a message carries, rewritten relative to the connection
/// (`me` sends to `to`). Each node numbers the members it meets in its own order, so an id
/// means nothing to another node; "the sender", "you" and "someone else" is all a `Status`
/// is read for in this mode.
pub(super) fn to_wire(me: NodeId, to: NodeId, msg: ElectionMsg) -> ElectionMsg {
    map_refs(msg, |n| {
        if n == me {
            WIRE_SENDER
        } else if n == to {
            WIRE_RECEIVER
        } else {
            WIRE_OTHER
        }
    })
}

/// External mode: the ids of a message `me` received from `from`, back in `me`'s numbering
/// (a third node becomes [`WIRE_OTHER`], which matches no member).
pub(super) fn from_wire(me: NodeId, from: NodeId, msg: ElectionMsg) -> ElectionMsg {
    map_refs(msg, |n| match n {
        WIRE_SENDER => from,
        WIRE_RECEIVER => me,
        _ => WIRE_OTHER,
    })
}

fn map_refs(msg: ElectionMsg, f: impl Fn(NodeId) -> NodeId) -> ElectionMsg {
    let m = |l: Option<LeaderRef>| {
        l.map(|l| LeaderRef {
            node: f(l.node),
            term: l.term,
        })
    };
    match msg {
        ElectionMsg::Status { promised, leader } => ElectionMsg::Status {
            promised,
            leader: m(leader),
        },
        ElectionMsg::Reject {
            round,
            promised,
            leader,
        } => ElectionMsg::Reject {
            round,
            promised,
            leader: m(leader),
        },
        other => other,
    }
}

/// What the external decider said last.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(super) struct ExternalState {
    /// The leader it names (this node included), if any.
    pub leader: Option<LeaderRef>,
    /// This node's lease: the term it was given for and when it ends.
    pub lease: Option<(Term, Instant)>,
}

impl Engine {
    /// Creates the engine of a node whose leader is decided outside it (the etcd backend):
    /// it starts waiting, with no leader, and moves only on
    /// [`handle_external_leader`](Engine::handle_external_leader). `cfg.quorum` is ignored.
    pub fn new_external(mut cfg: super::EngineConfig, now: Instant) -> Self {
        cfg.quorum = None;
        let mut e = Engine::blank(cfg, now);
        e.role = Role::Waiting;
        e.deadline = None;
        e.external = Some(ExternalState::default());
        e
    }

    /// External mode: the member table grew to `n_nodes` (the runtime met new nodes); ids
    /// below it are now valid peers. Never shrinks; ignored outside external mode.
    pub fn add_external_nodes(&mut self, n_nodes: u32) {
        if self.external.is_some() && n_nodes > self.cfg.n_nodes {
            self.cfg.n_nodes = n_nodes.min(WIRE_OTHER.0);
        }
    }

    /// Whether the leader is decided outside the engine ([`Engine::new_external`]).
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    /// External mode: the decider names `leader` (this node or another; `None`: nobody).
    /// This node leads at once (`Elected { joined: None }`, preceded by `Lease` if one was
    /// given for that term); another node is joined over the mesh as soon as it is connected,
    /// after this node dropped its own leadership. A name with a lower term than the last one
    /// is stale (the decider's reports are not ordered) and ignored; `None` does not end this
    /// node's own leadership ([`handle_external_lost`](Engine::handle_external_lost) and the
    /// lease do).
    pub fn handle_external_leader(&mut self, now: Instant, leader: Option<LeaderRef>) {
        let Some(ext) = self.external.as_ref() else {
            return;
        };
        let leader = leader.filter(|l| l.node.0 < self.cfg.n_nodes && l.term.0 <= MAX_TERM);
        if let (Some(new), Some(old)) = (leader, ext.leader) {
            if new.term < old.term {
                return;
            }
        }
        match leader {
            Some(l) if l.node == self.cfg.me => self.lead_external(now, l),
            Some(l) => {
                self.set_external_leader(Some(l));
                self.see(l.term);
                if self.leader.is_some_and(|m| m != l) {
                    self.drop_leadership(LossReason::NewerTerm);
                }
                self.external_follow(now);
            }
            None => {
                if self.is_leader() {
                    return; // about a previous leader: this node's own lease governs it
                }
                self.set_external_leader(None);
                if let Some(l) = self.leader {
                    self.previous_leader = Some(l.node);
                    self.drop_leadership(LossReason::LeaderDown);
                }
                self.joining = None;
                self.role = Role::Waiting;
                self.deadline = None;
            }
        }
        self.announce_if_changed();
    }

    /// External mode: this node's lease for `term` now ends at `until` (on the clock of the
    /// `now` arguments). Emits `Lease` if it leads that term. A lease of an older term is
    /// ignored.
    pub fn handle_external_lease(&mut self, _now: Instant, term: Term, until: Instant) {
        let Some(ext) = self.external.as_mut() else {
            return;
        };
        if ext.lease.is_some_and(|(t, _)| t > term) {
            return;
        }
        ext.lease = Some((term, until));
        if self.leader
            == Some(LeaderRef {
                node: self.cfg.me,
                term,
            })
        {
            self.out.push_back(Output::Lease { term, until });
        }
    }

    /// External mode: this node's leadership of `term` ended (`reason`): it stops leading
    /// (`LeadershipLost`) and waits for the decider to name a leader.
    pub fn handle_external_lost(&mut self, now: Instant, term: Term, reason: LossReason) {
        if self.external.is_none()
            || self.leader
                != Some(LeaderRef {
                    node: self.cfg.me,
                    term,
                })
        {
            return;
        }
        self.external_step_down(now, reason);
        self.announce_if_changed();
    }

    /// Stops leading: the lease is forgotten and so is this node's own name as leader.
    pub(super) fn external_step_down(&mut self, _now: Instant, reason: LossReason) {
        self.drop_leadership(reason);
        if let Some(ext) = self.external.as_mut() {
            ext.lease = None;
            if ext.leader.is_some_and(|l| l.node == self.cfg.me) {
                ext.leader = None;
            }
        }
        self.announce_at = None;
        self.role = Role::Waiting;
        self.deadline = None;
    }

    /// The external lease of the term this node leads, if any.
    pub(super) fn external_lease(&self) -> Option<Instant> {
        let (t, until) = self.external.as_ref()?.lease?;
        self.leader
            .filter(|l| l.node == self.cfg.me && l.term == t)
            .map(|_| until)
    }

    /// Whether the decider names `from` as leader of `term` (a `Leader` announcement is
    /// accepted only then).
    pub(super) fn external_names(&self, from: NodeId, term: Term) -> bool {
        self.external
            .as_ref()
            .is_some_and(|e| e.leader == Some(LeaderRef { node: from, term }))
    }

    /// No leader is followed: join the one the decider names, if it is another connected
    /// node; otherwise wait (a connection coming up, or the decider, moves it on).
    pub(super) fn external_follow(&mut self, now: Instant) {
        self.release_proposal();
        self.captured_by = None;
        let named = self.external.as_ref().and_then(|e| e.leader);
        match named {
            Some(l) if l.node == self.cfg.me || self.leader == Some(l) => {}
            Some(l) if self.connected.contains(&l.node) => self.join(now, l.node),
            _ => {
                self.joining = None;
                if self.leader.is_none() {
                    self.role = Role::Waiting;
                }
                self.deadline = None;
            }
        }
    }

    /// A `Status` in external mode: keeps the follower list current, notices a refused
    /// `Join` (the named leader did not lead yet) and joins the named leader when it says it
    /// leads. Nothing here elects.
    pub(super) fn on_status_external(
        &mut self,
        now: Instant,
        from: NodeId,
        leader: Option<LeaderRef>,
    ) {
        let me = self.cfg.me;
        if self.is_leader() {
            match leader {
                Some(l) if l.node != me => {
                    self.followers.remove(&from);
                }
                Some(l) if Some(l) == self.leader => {
                    self.followers.insert(from);
                }
                _ => {}
            }
            return;
        }
        let claims = leader.filter(|l| l.node == from);
        if self.role == Role::Joining && self.joining == Some(from) && claims.is_none() {
            // It answered our Join with "not leading (yet)": wait for its claim or the
            // deadline, which retries.
            self.role = Role::Waiting;
            self.joining = None;
            self.deadline = Some(now + self.cfg.election_timeout);
            return;
        }
        if let Some(l) = claims {
            if self.external_names(l.node, l.term)
                && self.leader != Some(l)
                && self.role != Role::Joining
            {
                self.join(now, from);
            }
        }
    }

    fn set_external_leader(&mut self, l: Option<LeaderRef>) {
        if let Some(ext) = self.external.as_mut() {
            ext.leader = l;
        }
    }

    fn lead_external(&mut self, now: Instant, l: LeaderRef) {
        if self.leader == Some(l) {
            return;
        }
        self.set_external_leader(Some(l));
        self.drop_leadership(LossReason::NewerTerm);
        self.joining = None;
        self.captured_by = None;
        self.release_proposal();
        self.set_promised(l.term);
        self.leader = Some(l);
        self.role = Role::Leader;
        self.deadline = None;
        self.announce_at = Some(now + self.cfg.announce_interval);
        self.followers.clear();
        if let Some(until) = self.external_lease() {
            self.out.push_back(Output::Lease {
                term: l.term,
                until,
            });
        }
        self.out.push_back(Output::Elected {
            term: l.term,
            joined: None,
        });
        if let Some(old) = self.previous_leader.take() {
            if old != self.cfg.me && !self.connected.contains(&old) {
                self.out.push_back(Output::Down { node: old });
            }
        }
    }
}
