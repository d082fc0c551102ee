//! The direct path of a follower's `leader_call`s: the caller's task writes the request
//! straight into the leader connection's send queue, and the connection's reader task hands the
//! reply straight back to the caller. The node actor, shared by every caller of the node, only
//! publishes the route (leader, term, connection) and fails the calls in flight when that
//! route dies; it no longer touches each call twice.
//!
//! Every call still resolves exactly once: whoever removes its entry from the table (the
//! reader with the reply, the caller at its deadline, the actor when the leader is lost or the
//! node stops) is the one that resolves it. The route and the table share one lock, so a call
//! cannot be registered on a route the actor has already torn down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

pub(crate) use super::calls::ReplySender;
use super::calls::{outcome, Outcome, ReplyBody};
use crate::error::CallError;
use crate::types::{NodeId, NodeName, Term};
use crate::wire::ReplyResult;

/// Where a follower's calls go: the leader and the connection to it.
pub(crate) struct Route {
    pub leader: NodeId,
    pub term: Term,
    pub conn: u64,
    pub tx: mpsc::Sender<Bytes>,
}

/// A call sent on the direct path, waiting for its reply.
pub(crate) struct Pending<R> {
    pub leader: NodeId,
    pub term: Term,
    pub conn: u64,
    pub reply: ReplySender<R>,
}

struct Inner<R> {
    route: Option<Route>,
    pending: HashMap<u64, Pending<R>>,
}

/// The route and the calls in flight on it, shared by the handles, the actor and the readers.
pub(crate) struct FastPath<R> {
    inner: Mutex<Inner<R>>,
    /// The spin mode's notifier, if it is on: the direct path is activity too.
    spin: OnceLock<Arc<Notify>>,
    max_pending: usize,
}

/// Why [`FastPath::send`] did not take a call: it goes through the actor instead.
pub(crate) struct NotTaken<R> {
    pub frame: Bytes,
    pub reply: ReplySender<R>,
}

impl<R> FastPath<R> {
    pub(crate) fn new(max_pending: usize) -> Self {
        FastPath {
            inner: Mutex::new(Inner {
                route: None,
                pending: HashMap::new(),
            }),
            spin: OnceLock::new(),
            max_pending,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<R>> {
        // The critical sections below cannot panic half-way; a poisoned lock still holds a
        // consistent table.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_spin(&self, n: Arc<Notify>) {
        let _ = self.spin.set(n);
    }

    /// Registers call `id` and queues its frame on the route. `Ok(Some(..))`: registered, but
    /// the connection's queue is full: the caller queues the frame itself when there is room
    /// (a burst of callers must not look like a peer that stopped reading). Without a route,
    /// or with too many calls in flight, hands the call back for the actor to handle.
    pub(crate) fn send(
        &self,
        id: u64,
        frame: Bytes,
        reply: ReplySender<R>,
    ) -> Result<Option<(mpsc::Sender<Bytes>, Bytes)>, NotTaken<R>> {
        let mut g = self.lock();
        let inner = &mut *g;
        let Some(route) = &inner.route else {
            return Err(NotTaken { frame, reply });
        };
        if inner.pending.len() >= self.max_pending {
            return Err(NotTaken { frame, reply });
        }
        let wait = match route.tx.try_send(frame) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(f)) => Some((route.tx.clone(), f)),
            // The connection is going; the actor learns it from the reader.
            Err(mpsc::error::TrySendError::Closed(frame)) => {
                return Err(NotTaken { frame, reply });
            }
        };
        inner.pending.insert(
            id,
            Pending {
                leader: route.leader,
                term: route.term,
                conn: route.conn,
                reply,
            },
        );
        drop(g);
        if let Some(n) = self.spin.get() {
            n.notify_one();
        }
        Ok(wait)
    }

    /// Takes call `id` if it was sent on connection `conn` at a term not newer than `term`
    /// (the term of the reply): the reply is for it.
    pub(crate) fn take_reply(&self, conn: u64, id: u64, term: Term) -> Option<Pending<R>> {
        let mut g = self.lock();
        Self::take(&mut g, conn, id, term)
    }

    fn take(g: &mut Inner<R>, conn: u64, id: u64, term: Term) -> Option<Pending<R>> {
        match g.pending.get(&id) {
            Some(p) if p.conn == conn && p.term <= term => g.pending.remove(&id),
            _ => None,
        }
    }

    /// Hands the replies that are for direct calls of connection `conn` to their callers,
    /// under one lock for the whole batch; returns the others.
    pub(crate) fn resolve_replies(
        &self,
        conn: u64,
        replies: Vec<(u64, Term, ReplyResult)>,
    ) -> Vec<(u64, Term, ReplyResult)> {
        let mut rest = Vec::new();
        let mut done = Vec::with_capacity(replies.len());
        {
            let mut g = self.lock();
            if g.pending.is_empty() {
                return replies;
            }
            for (id, term, result) in replies {
                match Self::take(&mut g, conn, id, term) {
                    Some(p) => done.push((p, result)),
                    None => rest.push((id, term, result)),
                }
            }
        }
        for (p, result) in done {
            resolve(p, result);
        }
        rest
    }

    /// Removes call `id` (its caller gave up at the deadline). False if someone else already
    /// resolved it (or is about to: the caller then waits for that).
    pub(crate) fn cancel(&self, id: u64) -> bool {
        self.lock().pending.remove(&id).is_some()
    }

    /// The route as the actor last set it: (leader, term, connection).
    #[cfg(test)]
    pub(crate) fn route_key(&self) -> Option<(NodeId, Term, u64)> {
        self.lock()
            .route
            .as_ref()
            .map(|r| (r.leader, r.term, r.conn))
    }

    /// Sets (or clears) the route. Calls in flight on another connection to the same leader
    /// are not touched: the actor fails them when it drops that connection.
    pub(crate) fn set_route(&self, route: Option<Route>) {
        self.lock().route = route;
    }

    /// `node` is lost as leader (or as a peer): clears the route if it leads there and fails
    /// every call in flight to it with `LeaderDown`, in one critical section so that no call
    /// can be registered on the dead route afterwards.
    pub(crate) fn fail_leader(&self, node: NodeId, name: &NodeName) {
        let failed: Vec<Pending<R>> = {
            let mut g = self.lock();
            if g.route.as_ref().is_some_and(|r| r.leader == node) {
                g.route = None;
            }
            let ids: Vec<u64> = g
                .pending
                .iter()
                .filter(|(_, p)| p.leader == node)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| g.pending.remove(id)).collect()
        };
        for p in failed {
            let _ = p.reply.send(Err(CallError::LeaderDown {
                leader: name.clone(),
                term: p.term,
            }));
        }
    }

    /// The node stops: clears the route and fails every call in flight with `Stopped`.
    pub(crate) fn fail_all(&self) {
        let failed: Vec<Pending<R>> = {
            let mut g = self.lock();
            g.route = None;
            g.pending.drain().map(|(_, p)| p).collect()
        };
        for p in failed {
            let _ = p.reply.send(Err(CallError::Stopped));
        }
    }

    /// Calls in flight on the direct path.
    pub(crate) fn len(&self) -> usize {
        self.lock().pending.len()
    }
}

/// Hands a reply to its caller (which decodes it).
pub(crate) fn resolve<R>(p: Pending<R>, result: ReplyResult) {
    let r = match outcome(result) {
        Outcome::Done(r) => r,
        // Not executed: the caller sends it again through the actor, which waits for a leader.
        Outcome::NotExecuted => Ok(ReplyBody::Retry),
    };
    let _ = p.reply.send(r);
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    fn route(tx: mpsc::Sender<Bytes>, conn: u64, term: u64) -> Route {
        Route {
            leader: NodeId(0),
            term: Term(term),
            conn,
            tx,
        }
    }

    fn call(fp: &FastPath<u8>, id: u64) -> oneshot::Receiver<Result<ReplyBody<u8>, CallError>> {
        let (tx, rx) = oneshot::channel();
        assert!(matches!(
            fp.send(id, Bytes::from_static(b"f"), tx),
            Ok(None)
        ));
        rx
    }

    #[tokio::test]
    async fn without_a_route_calls_go_through_the_actor() {
        let fp = FastPath::<u8>::new(10);
        let (tx, _rx) = oneshot::channel();
        assert!(fp.send(1, Bytes::from_static(b"f"), tx).is_err());
        assert_eq!(fp.len(), 0);
    }

    #[tokio::test]
    async fn a_reply_resolves_its_call_once_and_only_from_its_connection_and_term() {
        let fp = FastPath::<u8>::new(10);
        let (qtx, mut qrx) = mpsc::channel(8);
        fp.set_route(Some(route(qtx, 7, 5)));
        let _rx = call(&fp, 1);
        assert_eq!(qrx.recv().await.as_deref(), Some(&b"f"[..]));
        assert!(fp.take_reply(8, 1, Term(5)).is_none(), "other connection");
        assert!(fp.take_reply(7, 1, Term(4)).is_none(), "older term");
        assert!(fp.take_reply(7, 1, Term(6)).is_some());
        assert!(fp.take_reply(7, 1, Term(6)).is_none(), "taken once");
        assert!(!fp.cancel(1));
    }

    #[tokio::test]
    async fn a_batch_of_replies_resolves_ours_and_returns_the_rest() {
        let fp = FastPath::<u8>::new(10);
        let (qtx, _qrx) = mpsc::channel(8);
        fp.set_route(Some(route(qtx, 7, 5)));
        let a = call(&fp, 1);
        let b = call(&fp, 2);
        let rest = fp.resolve_replies(
            7,
            vec![
                (1, Term(5), ReplyResult::Ok(vec![1])),
                (9, Term(5), ReplyResult::Ok(vec![9])),
                (2, Term(5), ReplyResult::NotLeader),
            ],
        );
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].0, 9);
        assert!(matches!(a.await.unwrap(), Ok(ReplyBody::Encoded(v)) if v == vec![1]));
        assert!(matches!(b.await.unwrap(), Ok(ReplyBody::Retry)));
        assert_eq!(fp.len(), 0);
    }

    #[tokio::test]
    async fn losing_the_leader_fails_its_calls_and_closes_the_route() {
        let fp = FastPath::<u8>::new(10);
        let (qtx, _qrx) = mpsc::channel(8);
        fp.set_route(Some(route(qtx, 7, 5)));
        let rx = call(&fp, 1);
        fp.fail_leader(NodeId(0), &"a@h:1".parse().unwrap());
        assert!(matches!(
            rx.await.unwrap(),
            Err(CallError::LeaderDown { term: Term(5), .. })
        ));
        assert!(fp.route_key().is_none());
        let (tx, _rx) = oneshot::channel();
        assert!(fp.send(2, Bytes::from_static(b"f"), tx).is_err());
    }

    #[tokio::test]
    async fn a_full_queue_leaves_the_frame_to_the_caller_and_too_many_calls_go_back() {
        let fp = FastPath::<u8>::new(2);
        let (qtx, mut qrx) = mpsc::channel(1);
        fp.set_route(Some(route(qtx, 7, 5)));
        let _a = call(&fp, 1);
        let (tx, _rx) = oneshot::channel();
        let Ok(Some((q, frame))) = fp.send(2, Bytes::from_static(b"g"), tx) else {
            panic!("expected the frame back with the queue")
        };
        assert_eq!(fp.len(), 2, "registered all the same");
        assert_eq!(qrx.recv().await.as_deref(), Some(&b"f"[..]));
        q.send(frame).await.unwrap();
        assert_eq!(qrx.recv().await.as_deref(), Some(&b"g"[..]));
        let fp = FastPath::<u8>::new(1);
        let (qtx, _qrx) = mpsc::channel(8);
        fp.set_route(Some(route(qtx, 7, 5)));
        let _a = call(&fp, 1);
        let (tx, _rx) = oneshot::channel();
        assert!(fp.send(2, Bytes::from_static(b"f"), tx).is_err());
    }

    #[tokio::test]
    async fn stopping_fails_everything() {
        let fp = FastPath::<u8>::new(10);
        let (qtx, _qrx) = mpsc::channel(8);
        fp.set_route(Some(route(qtx, 7, 5)));
        let rx = call(&fp, 1);
        fp.fail_all();
        assert!(matches!(rx.await.unwrap(), Err(CallError::Stopped)));
        assert_eq!(fp.len(), 0);
    }
}
