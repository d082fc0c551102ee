//! The behaviour trait: gen_leader's callbacks, in Rust.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Members;
use crate::election::{Engine, Role};
use crate::error::BoxError;
use crate::node::LeaderHandle;
use crate::types::{NodeId, NodeName, Term};

/// A type that can travel between nodes.
pub trait Wire: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Wire for T {}

/// The election as seen by this node, passed to every callback (gen_leader's `Election`
/// record). Unlike gen_leader's, it is accurate on every node, not only on the leader:
/// `alive` and `down` are this node's own view of its connections.
pub struct Election<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) members: &'a Members,
}

impl Election<'_> {
    /// This node.
    pub fn me(&self) -> &NodeName {
        self.members.name(self.engine.me())
    }

    /// The leader, if one is known (gen_leader's `leader_node/1`).
    pub fn leader(&self) -> Option<&NodeName> {
        self.engine.leader().map(|l| self.members.name(l.node))
    }

    /// Whether this node leads.
    pub fn is_leader(&self) -> bool {
        self.engine.is_leader()
    }

    /// The current term (the leader's, or the highest promised while there is none).
    pub fn term(&self) -> Term {
        self.engine.term()
    }

    /// Members this node is connected to, and itself (gen_leader's `alive/1`).
    pub fn alive(&self) -> Vec<&NodeName> {
        self.members
            .all()
            .iter()
            .enumerate()
            .filter(|(i, _)| self.engine.is_alive(NodeId(*i as u32)))
            .map(|(_, n)| n)
            .collect()
    }

    /// Members this node is not connected to (gen_leader's `down/1`).
    pub fn down(&self) -> Vec<&NodeName> {
        self.members
            .all()
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.engine.is_alive(NodeId(*i as u32)))
            .map(|(_, n)| n)
            .collect()
    }

    /// The nodes that follow this leader (empty on a non-leader).
    pub fn followers(&self) -> Vec<&NodeName> {
        self.engine
            .followers()
            .iter()
            .map(|&id| self.members.name(id))
            .collect()
    }

    /// Candidates, highest priority first (gen_leader's `candidates/1`).
    pub fn candidates(&self) -> &[NodeName] {
        self.members.candidates()
    }

    /// Workers (gen_leader's `workers/1`).
    pub fn workers(&self) -> &[NodeName] {
        self.members.workers()
    }

    /// What the election engine is doing.
    pub fn role(&self) -> Role {
        self.engine.role()
    }
}

/// Where a `leader_call` came from: pass it to [`LeaderHandle::reply`] to answer a call
/// deferred with [`LeaderReply::NoReply`] (gen_leader's `From` and `reply/2`). A call whose
/// deferred reply never comes fails with [`CallError::Timeout`](crate::CallError::Timeout) at the caller.
pub struct ReplyTo<R> {
    pub(crate) origin: Origin,
    pub(crate) _reply: PhantomData<fn() -> R>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Origin {
    /// A call made on this node, by id.
    Local(u64),
    /// A call forwarded by `peer` over connection `conn`, with that node's id for it.
    Remote { peer: NodeId, conn: u64, id: u64 },
}

impl<R> ReplyTo<R> {
    pub(crate) fn new(origin: Origin) -> Self {
        ReplyTo {
            origin,
            _reply: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.origin {
            Origin::Local(id) => write!(f, "ReplyTo(local call {id})"),
            Origin::Remote { peer, id, .. } => write!(f, "ReplyTo({peer}, call {id})"),
        }
    }
}

/// What `handle_leader_call` returns (gen_leader's `{reply, ..}` / `{noreply, ..}`).
#[derive(Debug)]
pub enum LeaderReply<R, B> {
    /// Reply to the caller (`{reply, Reply, S}`).
    Reply(R),
    /// Broadcast to every follower, then reply (`{reply, Reply, Broadcast, S}`). The caller's
    /// node receives the broadcast before the reply.
    ReplyAndBroadcast(R, B),
    /// Reply later with [`LeaderHandle::reply`] (`{noreply, S}`).
    NoReply,
}

/// Why a node stops (passed to [`Behaviour::terminate`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StopReason {
    /// [`LeaderHandle::shutdown`] was called.
    Shutdown,
    /// Every [`LeaderHandle`] was dropped (or the node actor ended some other way).
    ActorStopped,
    /// The node could not persist a term it needed (`<data_dir>/term`): it stopped rather
    /// than send messages that depend on that term, since a restart could reuse it.
    TermNotPersisted {
        /// The term that could not be persisted.
        term: Term,
        /// The I/O error.
        source: Arc<std::io::Error>,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Shutdown => f.write_str("shut down"),
            StopReason::ActorStopped => f.write_str("the node actor stopped"),
            StopReason::TermNotPersisted { term, source } => {
                write!(f, "cannot persist term {term}: {source}")
            }
        }
    }
}

/// gen_leader's callback module. The implementing struct is the state; every callback is
/// async and gets `&mut self`.
///
/// Required: [`elected`](Behaviour::elected), [`surrendered`](Behaviour::surrendered),
/// [`handle_leader_call`](Behaviour::handle_leader_call) and
/// [`handle_call`](Behaviour::handle_call). The others default to doing nothing.
///
/// Do not `await` calls to this node's own [`LeaderHandle`] (`leader_call`, `call`) from
/// inside a callback: the node runs one callback at a time, so it would wait for itself.
/// Casts and [`LeaderHandle::reply`] are fine.
pub trait Behaviour: Send + Sized + 'static {
    /// Requests sent with `leader_call` and local `call`.
    type Call: Wire;
    /// Replies to `Call`s.
    type Reply: Wire;
    /// Messages sent with `leader_cast` and local `cast`.
    type Cast: Wire;
    /// The snapshot the leader sends to its followers (from `elected` to `surrendered`).
    type Synch: Wire;
    /// What the leader broadcasts to its followers (`from_leader`).
    type Broadcast: Wire;
    /// Local, non-serialized messages sent with [`LeaderHandle::info`] (`handle_info`).
    type Info: Send + 'static;

    /// Runs once when the node starts, before it joins any election (gen_leader's `init/1`).
    /// Keep the handle to reply to deferred calls or to cast to the leader later.
    fn init(
        &mut self,
        handle: LeaderHandle<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = handle;
        async { Ok(()) }
    }

    /// This node was elected (`joined: None`), or `joined` joined it while it leads. Returns
    /// the Synch sent to every follower (or to the joiner).
    fn elected(
        &mut self,
        election: &Election<'_>,
        joined: Option<&NodeName>,
    ) -> impl Future<Output = Self::Synch> + Send;

    /// A leader was accepted: on every non-leader, once per new leader or join.
    fn surrendered(
        &mut self,
        synch: Self::Synch,
        election: &Election<'_>,
    ) -> impl Future<Output = ()> + Send;

    /// A `leader_call`, on the leader.
    fn handle_leader_call(
        &mut self,
        request: Self::Call,
        from: ReplyTo<Self::Reply>,
        election: &Election<'_>,
    ) -> impl Future<Output = LeaderReply<Self::Reply, Self::Broadcast>> + Send;

    /// A `leader_cast`, on the leader. May return a broadcast.
    fn handle_leader_cast(
        &mut self,
        message: Self::Cast,
        election: &Election<'_>,
    ) -> impl Future<Output = Option<Self::Broadcast>> + Send {
        let _ = (message, election);
        async { None }
    }

    /// A broadcast from the leader, on every non-leader, in order.
    #[allow(clippy::wrong_self_convention)] // gen_leader's name
    fn from_leader(
        &mut self,
        message: Self::Broadcast,
        election: &Election<'_>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (message, election);
        async {}
    }

    /// On the leader: `node` went down (also runs right after an election for the previous
    /// leader). May return a broadcast.
    fn handle_down(
        &mut self,
        node: &NodeName,
        election: &Election<'_>,
    ) -> impl Future<Output = Option<Self::Broadcast>> + Send {
        let _ = (node, election);
        async { None }
    }

    /// A local `call` to this node.
    fn handle_call(
        &mut self,
        request: Self::Call,
        election: &Election<'_>,
    ) -> impl Future<Output = Self::Reply> + Send;

    /// A local `cast` to this node.
    fn handle_cast(
        &mut self,
        message: Self::Cast,
        election: &Election<'_>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (message, election);
        async {}
    }

    /// A local message sent with [`LeaderHandle::info`].
    fn handle_info(
        &mut self,
        message: Self::Info,
        election: &Election<'_>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (message, election);
        async {}
    }

    /// The node is stopping.
    fn terminate(&mut self, reason: StopReason) -> impl Future<Output = ()> + Send {
        let _ = reason;
        async {}
    }
}
