//! Frames from peers: what each message does to the node. The connection's reader hands
//! frames over in batches; replies to direct calls at the head of a batch skip the actor
//! (`direct_replies`), everything else comes here, one message at a time, each followed by a
//! drain of the engine (see `driver`).

use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::conns::INBOUND_WINDOW;
use super::fastpath::FastPath;
use super::state::{election, NodeState};
use crate::behaviour::Behaviour;
use crate::types::NodeId;
use crate::wire::codec;
use crate::wire::Msg;

impl<B: Behaviour> NodeState<B> {
    /// One message from `peer` over connection `conn`.
    pub(super) async fn inbound(&mut self, peer: NodeId, conn: u64, msg: Msg) {
        // A message of a connection that has been replaced or closed meanwhile is dropped.
        if !self.is_current(peer, conn) {
            return;
        }
        match msg {
            Msg::Heartbeat => {}
            Msg::Election(m) => {
                self.engine
                    .handle_message(tokio::time::Instant::now().into_std(), peer, m);
                self.dirty = true;
            }
            Msg::LeaderCall { id, payload } => {
                self.remote_leader_call(peer, conn, id, payload).await
            }
            Msg::Reply { id, term, result } => self.on_reply(peer, conn, id, term, result),
            Msg::LeaderCast { payload } => {
                if !self.engine.is_leader() {
                    // Sent to us as leader, but we no longer lead: lost, as in gen_leader
                    // (forwarding again could bounce between two stale views).
                    debug!(node = %self.name(self.me()), peer = %self.name(peer), "leader_cast for a former leader dropped");
                    return;
                }
                match codec::decode_payload::<B::Cast>(&payload) {
                    Ok(m) => self.leader_cast(m).await,
                    Err(e) => {
                        warn!(node = %self.name(self.me()), peer = %self.name(peer), error = %e, "bad leader_cast")
                    }
                }
            }
            Msg::Broadcast { term, seq, payload } => {
                let leader = self.engine.leader().map(|l| (l.node, l.term));
                if !self.seq.accept(leader, peer, term, seq) {
                    debug!(node = %self.name(self.me()), peer = %self.name(peer), %term, seq, "stale broadcast dropped");
                    return;
                }
                match codec::decode_payload::<B::Broadcast>(&payload) {
                    Ok(b) => {
                        let election = election!(self);
                        self.behaviour.from_leader(b, &election).await;
                    }
                    Err(e) => warn!(node = %self.name(self.me()), error = %e, "bad broadcast"),
                }
            }
            Msg::Goodbye => self.drop_conn(peer, "peer shut down"),
        }
    }
}

/// Hands the replies to direct calls (see `fastpath`) in a batch read from connection `conn`
/// straight to their callers, and returns the rest for the actor. Only while nothing received
/// earlier on this connection waits at the actor (all of `window` is free) and up to the first
/// other message: a reply never overtakes a broadcast the leader sent before it.
pub(super) fn direct_replies<R>(
    mut msgs: Vec<Msg>,
    fast: &FastPath<R>,
    window: &Semaphore,
    conn: u64,
) -> Vec<Msg> {
    if window.available_permits() != INBOUND_WINDOW {
        return msgs;
    }
    let prefix = msgs
        .iter()
        .position(|m| !matches!(m, Msg::Reply { .. }))
        .unwrap_or(msgs.len());
    if prefix == 0 {
        return msgs;
    }
    let later = msgs.split_off(prefix);
    let replies = msgs
        .into_iter()
        .filter_map(|m| match m {
            Msg::Reply { id, term, result } => Some((id, term, result)),
            _ => None,
        })
        .collect();
    let mut rest: Vec<Msg> = fast
        .resolve_replies(conn, replies)
        .into_iter()
        .map(|(id, term, result)| Msg::Reply { id, term, result })
        .collect();
    rest.extend(later);
    rest
}
