//! Calls and casts to the leader, and what the leader does with them: a `leader_call` that
//! crosses the actor is taken into the call table (`calls`), dispatched to the leader (or
//! served here), and resolved by the leader's answer, the leader's loss or its deadline; the
//! leader runs `handle_leader_call`/`handle_leader_cast`, replies (a deferred reply carries the
//! term the call was served in), and broadcasts in order (`broadcast`).
//!
//! Follower calls normally skip this file: see `fastpath` for the direct path.

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::calls::{CallReq, Dispatch, Refused, ReplyBody, ReplySender};
use super::fastpath;
use super::state::{election, NodeState};
use crate::behaviour::{Behaviour, LeaderReply, Origin, ReplyTo};
use crate::error::CallError;
use crate::types::{NodeId, Term};
use crate::wire::codec::{self, CodecError};
use crate::wire::{Msg, ReplyResult};

impl<B: Behaviour> NodeState<B> {
    /// A `leader_call` made on this node that goes through the actor.
    pub(super) async fn leader_call(
        &mut self,
        id: u64,
        request: CallReq<B::Call>,
        deadline: Instant,
        reply: ReplySender<B::Reply>,
    ) {
        let now = Instant::now();
        // This node leads and may act, and no earlier call waits: serve it now, as the drain
        // would first thing, without a round through the call table.
        let request = match request {
            CallReq::Value(req)
                if self.calls.waiting() == 0 && deadline > now && self.calls.has_room() =>
            {
                match self.acting_leader() {
                    Some(l) if l.node == self.me() => {
                        self.serve_now(id, req, l.term, deadline, reply).await;
                        return;
                    }
                    _ => CallReq::Value(req),
                }
            }
            other => other,
        };
        if let Err((why, reply)) =
            self.calls
                .insert(id, request, deadline.into_std(), reply, now.into_std())
        {
            let _ = reply.send(Err(match why {
                Refused::TooMany => CallError::Overloaded,
                Refused::PastDeadline => CallError::NoLeader,
            }));
        }
        // Dispatched by the drain that ends this input, if a leader is known.
    }

    /// Serves this node's own call `id` as the leader of `term`. Only a deferred reply
    /// enters the call table (see `calls`).
    async fn serve_now(
        &mut self,
        id: u64,
        req: B::Call,
        term: Term,
        deadline: Instant,
        reply: ReplySender<B::Reply>,
    ) {
        self.counters.leader_calls_served += 1;
        let origin = Origin::Local(id);
        let election = election!(self);
        let r = self
            .behaviour
            .handle_leader_call(req, ReplyTo::new(origin), &election)
            .await;
        match r {
            LeaderReply::Reply(v) => {
                let _ = reply.send(Ok(ReplyBody::Value(v)));
            }
            LeaderReply::ReplyAndBroadcast(v, b) => {
                self.broadcast(b).await;
                let _ = reply.send(Ok(ReplyBody::Value(v)));
            }
            LeaderReply::NoReply => {
                self.calls.insert_served(id, deadline.into_std(), reply);
                self.calls.deferred(origin, term);
            }
        }
    }

    /// Dispatches the calls waiting for a leader and releases the held casts, if a leader is
    /// known (and, if it is this node, may act: see `lease`).
    pub(super) async fn flush_waiting(&mut self) {
        if self.acting_leader().is_none() {
            return;
        }
        for _ in 0..self.calls.waiting() {
            let Some(id) = self.calls.pop_waiting() else {
                break;
            };
            // Read again for each: a send that drops a connection can lose the leader, and a
            // callback can outlast the lease.
            match self.acting_leader() {
                Some(l) => self.dispatch(id, l.node, l.term).await,
                None => self.calls.requeue(id),
            }
        }
        if self.held.len() > 0 && self.acting_leader().is_some() {
            for c in self.held.release() {
                self.leader_cast(c).await;
            }
        }
    }

    /// Sends call `id` to `leader` at `term`, or serves it if this node leads.
    async fn dispatch(&mut self, id: u64, leader: NodeId, term: Term) {
        let me = self.me();
        match self.calls.dispatch(id, me, leader, term) {
            None => {}
            Some(Dispatch::Serve(req)) => {
                let req = match req {
                    CallReq::Value(v) => v,
                    CallReq::Frame(f) => match decode_call_frame::<B::Call>(&f) {
                        Ok(v) => v,
                        Err(e) => {
                            self.calls.resolve(id, Err(e.into()));
                            return;
                        }
                    },
                };
                self.counters.leader_calls_served += 1;
                let election = election!(self);
                let r = self
                    .behaviour
                    .handle_leader_call(req, ReplyTo::new(Origin::Local(id)), &election)
                    .await;
                self.finish_leader_call(Origin::Local(id), term, r).await;
            }
            Some(Dispatch::Send(req)) => {
                let frame = match req {
                    CallReq::Frame(f) => f,
                    CallReq::Value(v) => match encode_call_frame(id, &v) {
                        Ok(f) => f,
                        Err(e) => {
                            self.calls.resolve(id, Err(e.into()));
                            return;
                        }
                    },
                };
                self.calls.keep_frame(id, frame.clone());
                self.push(leader, frame).await;
            }
        }
    }

    /// What the behaviour answered to a call served at `term`.
    async fn finish_leader_call(
        &mut self,
        origin: Origin,
        term: Term,
        r: LeaderReply<B::Reply, B::Broadcast>,
    ) {
        match r {
            LeaderReply::Reply(r) => self.reply(origin, term, r).await,
            LeaderReply::ReplyAndBroadcast(r, b) => {
                self.broadcast(b).await;
                self.reply(origin, term, r).await;
            }
            LeaderReply::NoReply => self.calls.deferred(origin, term),
        }
    }

    /// A deferred reply (`LeaderHandle::reply`): sent with the term the call was served in. A
    /// reply to a call that no longer counts (leadership lost since, or its connection gone) is
    /// dropped: its caller has been told.
    pub(super) async fn deliver_reply(&mut self, to: Origin, reply: B::Reply) {
        let Some(term) = self.calls.served(to) else {
            debug!(node = %self.name(self.me()), ?to, "reply to a call that no longer counts dropped");
            return;
        };
        self.reply(to, term, reply).await;
    }

    /// Sends a reply to a call this node served as leader at `term`: to the local caller, or
    /// on the caller's connection.
    async fn reply(&mut self, to: Origin, term: Term, reply: B::Reply) {
        match to {
            Origin::Local(id) => self.calls.resolve(id, Ok(ReplyBody::Value(reply))),
            Origin::Remote { peer, conn, id } => {
                if !self.is_current(peer, conn) {
                    return;
                }
                let ok = Msg::Reply {
                    id,
                    term,
                    result: ReplyResult::Ok(Vec::new()),
                };
                match codec::encode_frame_with_payload(&ok, &reply) {
                    Ok(frame) => self.push(peer, frame).await,
                    Err(e) => {
                        let result = ReplyResult::Error(format!("cannot encode the reply: {e}"));
                        self.send(peer, &Msg::Reply { id, term, result }).await;
                    }
                }
            }
        }
    }

    /// A `leader_call` forwarded by `peer`.
    pub(super) async fn remote_leader_call(
        &mut self,
        peer: NodeId,
        conn: u64,
        id: u64,
        payload: Vec<u8>,
    ) {
        let term = self.engine.term();
        // A leader whose lease has ended answers as a node that does not lead: the caller
        // waits for the next leader (see `lease`).
        if !self.acting() {
            let result = ReplyResult::NotLeader;
            self.send(peer, &Msg::Reply { id, term, result }).await;
            return;
        }
        let req = match codec::decode_payload::<B::Call>(&payload) {
            Ok(r) => r,
            Err(e) => {
                let result = ReplyResult::Error(format!("cannot decode the request: {e}"));
                self.send(peer, &Msg::Reply { id, term, result }).await;
                return;
            }
        };
        let origin = Origin::Remote { peer, conn, id };
        self.counters.leader_calls_served += 1;
        let election = election!(self);
        let r = self
            .behaviour
            .handle_leader_call(req, ReplyTo::new(origin), &election)
            .await;
        self.finish_leader_call(origin, term, r).await;
    }

    /// The leader's answer to one of this node's calls, through the actor.
    pub(super) fn on_reply(
        &mut self,
        peer: NodeId,
        conn: u64,
        id: u64,
        term: Term,
        result: ReplyResult,
    ) {
        if !self.calls.contains(id) {
            // A direct call whose reply came after a broadcast, in order, through the actor.
            if let Some(p) = self.fast.take_reply(conn, id, term) {
                fastpath::resolve(p, result);
            }
            return;
        }
        if !self.calls.answer(id, peer, term, result) {
            debug!(node = %self.name(self.me()), %term, "stale reply dropped");
        }
    }

    /// The connection to `node` is gone or it stopped leading: calls in flight to it fail
    /// with `LeaderDown` now rather than at their deadline.
    pub(super) fn fail_calls_to(&mut self, node: NodeId) {
        if self.route_key.is_some_and(|r| r.0 == node) {
            self.route_key = None;
        }
        let name = self.cfg.members().name(node).clone();
        self.fast.fail_leader(node, &name);
        self.calls.fail_sent_to(node, &name);
    }

    /// A `leader_cast`: handled here if this node leads (and may act), sent to the leader, or
    /// held until one is known.
    pub(super) async fn leader_cast(&mut self, m: B::Cast) {
        match self.acting_leader() {
            Some(l) if l.node == self.me() => {
                let election = election!(self);
                if let Some(b) = self.behaviour.handle_leader_cast(m, &election).await {
                    self.broadcast(b).await;
                }
            }
            Some(l) => {
                let empty = Msg::LeaderCast {
                    payload: Vec::new(),
                };
                match codec::encode_frame_with_payload(&empty, &m) {
                    Ok(frame) => self.push(l.node, frame).await,
                    Err(e) => warn!(error = %e, "cannot encode a leader_cast"),
                }
            }
            None => {
                let d = Instant::now() + self.cfg.call_timeout;
                if self.held.hold(m, d.into_std()).is_err() {
                    warn!(node = %self.name(self.me()), "no leader and too many casts held: cast dropped");
                }
            }
        }
    }

    /// Sends `b` to every follower: encoded once, in order, numbered within the term.
    pub(super) async fn broadcast(&mut self, b: B::Broadcast) {
        if !self.engine.is_leader() {
            return;
        }
        let empty = Msg::Broadcast {
            term: self.engine.term(),
            seq: self.seq.next(),
            payload: Vec::new(),
        };
        let frame = match codec::encode_frame_with_payload(&empty, &b) {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %e, "cannot encode a broadcast");
                return;
            }
        };
        self.seq.used();
        self.counters.broadcasts_sent += 1;
        self.metrics.broadcast();
        let mut to = std::mem::take(&mut self.bcast_to);
        to.clear();
        to.extend(self.engine.followers().iter().copied());
        for &f in &to {
            self.push(f, frame.clone()).await;
        }
        self.bcast_to = to;
    }

    /// Fails the calls and held casts past their deadline at `now` (a call still waiting for
    /// a leader on a quorum-mode node without a majority fails with `NoQuorum`).
    pub(super) fn sweep(&mut self, now: Instant) {
        self.calls.sweep(now.into_std(), self.engine.no_quorum());
        self.held.expire(now.into_std());
    }
}

/// The frame of a forwarded `leader_call`: encoded once, by the caller's task.
pub(crate) fn encode_call_frame<C: serde::Serialize>(
    id: u64,
    request: &C,
) -> Result<Bytes, CodecError> {
    let empty = Msg::LeaderCall {
        id,
        payload: Vec::new(),
    };
    codec::encode_frame_with_payload(&empty, request)
}

/// The request inside a frame made by [`encode_call_frame`] (when this node became the leader
/// before it could forward the call).
fn decode_call_frame<C: serde::de::DeserializeOwned>(frame: &[u8]) -> Result<C, CodecError> {
    let body = frame.get(5..).ok_or(CodecError::UnexpectedMessage)?;
    match codec::decode_body::<Msg>(body)? {
        Msg::LeaderCall { payload, .. } => codec::decode_payload(&payload),
        _ => Err(CodecError::UnexpectedMessage),
    }
}
