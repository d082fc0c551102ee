//! Observers: clients that know the cookie and read a node's status (the `gen-leader`
//! command), never members.
//!
//! Why apart from the members' connections: an observer must have no effect on the election
//! — no peer up, no `Status`, no liveness, no place in the view — and it must not be able to
//! take anything from the members (the accept budget sheds unauthenticated observers first,
//! the sessions are capped). So an observer's connection never reaches the node's peer table:
//! after its handshake (`accept`, `wire::handshake::observer`) it is served in its own task
//! (`session`), which asks the actor for one snapshot at a time (`status`). `client` is the
//! other end, for tools.

mod client;
mod session;
mod status;

use ractor::ActorRef;
use tracing::debug;

use super::actor::NodeMsg;
use super::state::NodeState;
use crate::behaviour::Behaviour;
use crate::transport::BoxStream;
use crate::wire::handshake::HandshakeOk;

pub use client::{ObserveError, Observer, StatusWatch};
pub(crate) use session::{Ask, MAX_OBSERVERS};
use session::{Snapshot, Source};
pub use status::{ModeStatus, NoQuorumStatus, NodeStatus, RefusedPeer, StateKind};

impl<B: Behaviour> NodeState<B> {
    /// Answers an observer session's request for a snapshot.
    pub(super) fn observe(&self, ask: Ask) {
        let changes = ask.subscribe.then(|| self.view_tx.subscribe());
        let _ = ask.reply.send(Snapshot {
            status: self.status(),
            changes,
        });
    }
}

/// The node's actor as a session's source of statuses.
struct Actor<B: Behaviour>(ActorRef<NodeMsg<B>>);

impl<B: Behaviour> Source for Actor<B> {
    fn ask(&self, ask: Ask) {
        // If the actor is gone the request is dropped, and with it the reply: the session
        // tells the observer that the node is stopping.
        let _ = self.0.cast(NodeMsg::Observe(ask));
    }
}

/// Serves an authenticated observer (`who`, for the log) until its session ends.
pub(super) async fn run<B: Behaviour>(
    ok: HandshakeOk<BoxStream>,
    myself: ActorRef<NodeMsg<B>>,
    me: &str,
    who: &str,
) {
    debug!(node = %me, observer = %who, "observer session started");
    let end = session::serve(ok.stream, ok.read_buf, &Actor(myself)).await;
    debug!(node = %me, observer = %who, end = ?end, "observer session ended");
}
