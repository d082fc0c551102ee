//! The drain: every input to the node ends here, once (str0m's rule: every mutation is
//! followed by a full drain of the output).
//!
//! [`NodeState::drive`] applies every output of the engine in order — persisting a term
//! *before* the messages that depend on it leave, sending, running the leadership callbacks —
//! then publishes the view, the leader state and the direct-call route, dispatches calls and
//! casts that were waiting for a leader, and hands the timer its next deadline. Because it is the only place
//! outputs are applied, no handler can forget to, and nothing waits for the next tick.
//!
//! A term that cannot be persisted stops the node: the outputs still queued (the messages that
//! depend on it) are dropped, and the actor stops with [`StopReason::TermNotPersisted`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, info, warn};

use super::fastpath::Route;
use super::metrics::Change;
use super::state::{election, NodeState};
use crate::behaviour::{Behaviour, StopReason};
use crate::election::{LossReason, Output};
use crate::error::loss_reason_str;
use crate::wire::codec;

/// How often a drive checks a quorum-mode leader's lease on the lease clock (see
/// `NodeState::lease_checked`).
const LEASE_CHECK_EVERY: Duration = Duration::from_millis(1);
use crate::wire::Msg;

impl<B: Behaviour> NodeState<B> {
    /// Applies every engine output, then republishes the view and the route, dispatches
    /// what waited for a leader and reschedules the timer.
    ///
    /// The view is also published before the first leadership callback runs, so that what a
    /// handle shows is never older than what a callback has been told.
    pub(super) async fn drive(&mut self) {
        if self.stopping {
            return;
        }
        if self.lease_checks && self.engine.is_leader() {
            // The lease clock is authoritative: after a suspend the engine's own deadline may
            // lie far ahead, and followers would keep sending calls this node must refuse.
            // At most once a millisecond: a cast loop drives once per cast.
            let now = Instant::now();
            if self
                .lease_checked
                .is_none_or(|t| now >= t + LEASE_CHECK_EVERY)
            {
                self.lease_checked = Some(now);
                if !self.acting() {
                    self.engine.handle_lease_ended(now.into_std());
                }
            }
        }
        // Most inputs (a call served, a reply, a heartbeat) leave the engine nothing to do.
        if self.engine.has_output() {
            self.apply_outputs().await;
            if self.fatal.is_some() {
                return;
            }
        }
        if self.dirty {
            self.dirty = false;
            self.publish();
            self.update_route();
        }
        if self.calls.waiting() > 0 || self.held.len() > 0 {
            self.flush_waiting().await;
        }
        self.schedule();
    }

    /// Applies the engine's outputs in order, and those their callbacks cause. On a term that
    /// cannot be persisted, drops the rest (`self.fatal` says why).
    async fn apply_outputs(&mut self) {
        let mut published = false;
        let mut batch: VecDeque<Output> = VecDeque::new();
        loop {
            if batch.is_empty() {
                batch.extend(std::iter::from_fn(|| self.engine.poll_output()));
                // Losses first: whatever publishes the state below (even before the
                // `LeadershipLost` itself is applied) must find the reason recorded.
                for out in &batch {
                    if let Output::LeadershipLost { term, reason } = out {
                        self.note_loss(*term, *reason);
                    }
                }
            }
            let Some(out) = batch.pop_front() else { break };
            self.dirty = true;
            if !published
                && matches!(
                    out,
                    Output::Elected { .. } | Output::Surrendered { .. } | Output::Down { .. }
                )
            {
                self.publish();
                published = true;
            }
            self.apply(out).await;
            if self.fatal.is_some() {
                // Nothing that depends on the unpersisted term may leave.
                while self.engine.poll_output().is_some() {}
                return;
            }
        }
    }

    /// Applies one engine output.
    async fn apply(&mut self, out: Output) {
        match out {
            Output::Send { to, msg } => self.send(to, &Msg::Election(msg)).await,
            Output::PersistTerm(t) => {
                if let Err(e) = self.terms.store(t) {
                    error!(node = %self.name(self.me()), term = %t, error = %e,
                        "cannot persist the term: stopping rather than risk reusing it");
                    self.fatal = Some(StopReason::TermNotPersisted {
                        term: t,
                        source: Arc::new(e),
                    });
                }
            }
            Output::Elected { term, joined } => {
                let joined_name = joined.map(|j| self.name(j).clone());
                if joined.is_none() {
                    self.seq.elected();
                    self.record("elected", term, Some(self.me()), "won the election");
                    self.metrics.change(Change::Elected);
                } else {
                    info!(node = %self.name(self.me()), %term,
                        joined = %joined_name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                        "node joined");
                }
                let election = election!(self);
                let synch = self
                    .behaviour
                    .elected(&election, joined_name.as_ref())
                    .await;
                match codec::encode_payload(&synch) {
                    Ok(bytes) => self.engine.provide_synch(joined, bytes),
                    Err(e) => {
                        error!(node = %self.name(self.me()), error = %e, "cannot encode the Synch")
                    }
                }
            }
            Output::Surrendered {
                leader,
                term,
                synch,
            } => {
                self.seq.surrendered();
                self.record("surrendered", term, Some(leader), "accepted a leader");
                self.metrics.change(Change::Surrendered);
                match codec::decode_payload::<B::Synch>(&synch) {
                    Ok(s) => {
                        let election = election!(self);
                        self.behaviour.surrendered(s, &election).await;
                    }
                    Err(e) => {
                        warn!(node = %self.name(self.me()), error = %e, "bad Synch from leader")
                    }
                }
            }
            Output::LeadershipLost { term, reason } => {
                // Guards of this term fail from here on (before any message that lets another
                // node lead leaves).
                self.publish_state();
                if reason == LossReason::LeaseExpired {
                    warn!(node = %self.name(self.me()), %term,
                        "lease expired without a renewal from a majority: stepped down");
                    self.record("stepped_down", term, None, loss_reason_str(reason));
                } else {
                    self.record("lost", term, None, loss_reason_str(reason));
                }
                self.metrics.change(Change::LeadershipLost(reason));
                let me = self.name(self.me()).clone();
                self.calls.leadership_lost(&me);
            }
            Output::LeaderLost {
                leader,
                term,
                reason,
            } => {
                self.fail_calls_to(leader);
                self.record("leader_lost", term, Some(leader), loss_reason_str(reason));
                self.metrics.change(Change::LeaderLost(reason));
            }
            Output::Lease { .. } => {}
            Output::Down { node } => {
                // A leader callback: not run by a quorum-mode leader whose lease has ended.
                if self.acting() {
                    let name = self.name(node).clone();
                    let election = election!(self);
                    if let Some(b) = self.behaviour.handle_down(&name, &election).await {
                        self.broadcast(b).await;
                    }
                }
            }
        }
    }

    /// Publishes where direct calls go: the leader's connection, when this node follows.
    fn update_route(&mut self) {
        let me = self.me();
        let want = self.engine.leader().filter(|l| l.node != me).and_then(|l| {
            let c = self.peers[l.node.index()].conn.as_ref()?;
            Some((l.node, l.term, c.id, c.tx.clone()))
        });
        let key = want.as_ref().map(|w| (w.0, w.1, w.2));
        if key == self.route_key {
            return;
        }
        self.route_key = key;
        self.fast
            .set_route(want.map(|(leader, term, conn, tx)| Route {
                leader,
                term,
                conn,
                tx,
            }));
    }

    /// Hands the timer the earliest deadline: the engine's, a call's or a held cast's.
    fn schedule(&mut self) {
        let engine = self
            .engine
            .poll_timeout()
            .map(tokio::time::Instant::from_std);
        let calls = self
            .calls
            .next_deadline()
            .map(tokio::time::Instant::from_std);
        let held = self
            .held
            .next_deadline()
            .map(tokio::time::Instant::from_std);
        let want = [engine, calls, held].into_iter().flatten().min();
        if want == self.scheduled {
            return;
        }
        self.scheduled = want;
        self.timer_tx.send_if_modified(|v| {
            if *v != want {
                *v = want;
                true
            } else {
                false
            }
        });
    }
}
