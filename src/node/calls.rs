//! The table of `leader_call`s that go through the node's actor, and the one mapping from a
//! leader's answer to a call's outcome (the direct path in `fastpath` uses it too).
//!
//! A call made on this node waits for a leader, is sent to leader L at term T, or is served
//! here (this node leads). Calls this node serves *as leader* whose reply the behaviour
//! deferred — its own and those forwarded by followers — are remembered with the term they were
//! served in, so that the deferred reply carries that term (not the term at reply time), and so
//! that losing leadership fails them at once. (A reply given at once needs no record: the term
//! cannot change while a callback runs.) Every entry leaves exactly once: with a reply, an
//! error, or at its deadline.
//!
//! Pure state fed `now` (no clock, no I/O): unit-tested with exact expectations.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::behaviour::Origin;
use crate::election::NoQuorum;
use crate::error::CallError;
use crate::types::{NodeId, NodeName, Term};
use crate::wire::ReplyResult;

/// A `leader_call` request as the handle hands it over: the value (when this node leads, it
/// is served here), or the frame to send to the leader, encoded by the caller's task so that
/// the node's actor only forwards it (and keeps it to send again after `NotLeader`).
pub(crate) enum CallReq<C> {
    Value(C),
    Frame(Bytes),
}

/// A reply as the node hands it back: the value (served here), or the encoded reply from the
/// leader, decoded by the caller's task.
pub(crate) enum ReplyBody<R> {
    Value(R),
    Encoded(Vec<u8>),
    /// A direct call reached a node that no longer leads, which did not run it: the caller
    /// sends it again through the actor.
    Retry,
}

/// Where a call's result goes.
pub(crate) type ReplySender<R> = oneshot::Sender<Result<ReplyBody<R>, CallError>>;

/// What a leader's answer means for the call it answers.
pub(crate) enum Outcome<R> {
    /// The call is over: hand this to the caller.
    Done(Result<ReplyBody<R>, CallError>),
    /// The node answering no longer leads and did not run the call: it may be sent again.
    NotExecuted,
}

/// The one mapping from a leader's answer to an outcome.
pub(crate) fn outcome<R>(result: ReplyResult) -> Outcome<R> {
    match result {
        ReplyResult::Ok(b) => Outcome::Done(Ok(ReplyBody::Encoded(b))),
        ReplyResult::Error(e) => Outcome::Done(Err(CallError::Remote(e))),
        ReplyResult::NotLeader => Outcome::NotExecuted,
    }
}

/// Where a call of this node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a leader.
    Waiting,
    /// Sent to `leader` at `term`.
    Sent { leader: NodeId, term: Term },
    /// Being served by this node as leader: a deferred reply is awaited.
    Local,
}

struct Entry<C, R> {
    req: Option<CallReq<C>>,
    deadline: Instant,
    reply: ReplySender<R>,
    state: State,
}

/// Why a call was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The table is full.
    TooMany,
    /// Its deadline has passed already (a direct call sent back after `NotLeader`): it must
    /// not be sent anywhere now.
    PastDeadline,
}

/// What to do with a call taken from the table for dispatch.
pub(crate) enum Dispatch<C> {
    /// Serve it here (this node leads).
    Serve(CallReq<C>),
    /// Send this frame to the leader.
    Send(CallReq<C>),
}

/// The call table.
pub(crate) struct Calls<C, R> {
    entries: HashMap<u64, Entry<C, R>>,
    waiting: VecDeque<u64>,
    /// Deferred calls served by this node as leader (its own and forwarded ones), with their
    /// term. At most `max`: past that, a deferred reply is not recorded (and is dropped).
    served: HashMap<Origin, Term>,
    next_sweep: Option<Instant>,
    max: usize,
}

impl<C, R> Calls<C, R> {
    pub(crate) fn new(max: usize) -> Self {
        Calls {
            entries: HashMap::new(),
            waiting: VecDeque::new(),
            served: HashMap::new(),
            next_sweep: None,
            max,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The earliest deadline in the table, for the node's timer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Takes a new call, waiting for a leader.
    pub(crate) fn insert(
        &mut self,
        id: u64,
        req: CallReq<C>,
        deadline: Instant,
        reply: ReplySender<R>,
        now: Instant,
    ) -> Result<(), (Refused, ReplySender<R>)> {
        if self.entries.len() >= self.max {
            return Err((Refused::TooMany, reply));
        }
        if deadline <= now {
            return Err((Refused::PastDeadline, reply));
        }
        self.entries.insert(
            id,
            Entry {
                req: Some(req),
                deadline,
                reply,
                state: State::Waiting,
            },
        );
        self.waiting.push_back(id);
        if self.next_sweep.is_none_or(|s| deadline < s) {
            self.next_sweep = Some(deadline);
        }
        Ok(())
    }

    /// Whether one more call fits in the table.
    pub(crate) fn has_room(&self) -> bool {
        self.entries.len() < self.max
    }

    /// Records a call this node served at once as leader whose reply the behaviour deferred
    /// (a call served and answered at once never enters the table). The caller checked
    /// [`Calls::has_room`] before serving it.
    pub(crate) fn insert_served(&mut self, id: u64, deadline: Instant, reply: ReplySender<R>) {
        self.entries.insert(
            id,
            Entry {
                req: None,
                deadline,
                reply,
                state: State::Local,
            },
        );
        if self.next_sweep.is_none_or(|s| deadline < s) {
            self.next_sweep = Some(deadline);
        }
    }

    /// The oldest call waiting for a leader (it leaves the waiting queue).
    pub(crate) fn pop_waiting(&mut self) -> Option<u64> {
        self.waiting.pop_front()
    }

    /// The calls waiting for a leader, oldest first (they leave the waiting queue).
    #[cfg(test)]
    pub(crate) fn take_waiting(&mut self) -> Vec<u64> {
        self.waiting.drain(..).collect()
    }

    /// Puts call `id` back in the waiting queue (no leader to dispatch it to after all).
    pub(crate) fn requeue(&mut self, id: u64) {
        if self.entries.contains_key(&id) {
            self.waiting.push_back(id);
        }
    }

    /// Takes call `id`'s request to dispatch it to `leader` at `term`; `me` is this node.
    /// Marks it sent (or served here). `None` if the call is gone.
    pub(crate) fn dispatch(
        &mut self,
        id: u64,
        me: NodeId,
        leader: NodeId,
        term: Term,
    ) -> Option<Dispatch<C>> {
        let e = self.entries.get_mut(&id)?;
        let req = e.req.take()?;
        if leader == me {
            e.state = State::Local;
            Some(Dispatch::Serve(req))
        } else {
            e.state = State::Sent { leader, term };
            Some(Dispatch::Send(req))
        }
    }

    /// Keeps the frame of a call sent to the leader, to send it again after `NotLeader`.
    pub(crate) fn keep_frame(&mut self, id: u64, frame: Bytes) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.req = Some(CallReq::Frame(frame));
        }
    }

    /// Resolves call `id` (if still there).
    pub(crate) fn resolve(&mut self, id: u64, r: Result<ReplyBody<R>, CallError>) {
        if let Some(e) = self.entries.remove(&id) {
            let _ = e.reply.send(r);
        }
    }

    /// Whether call `id` is in the table (else its reply belongs to the direct path).
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.entries.contains_key(&id)
    }

    /// A leader's answer to call `id`, from `peer` at `term`. Stale answers (from another node
    /// than the one the call was sent to, or from an older term) are dropped: returns false.
    pub(crate) fn answer(
        &mut self,
        id: u64,
        peer: NodeId,
        term: Term,
        result: ReplyResult,
    ) -> bool {
        let Some(e) = self.entries.get_mut(&id) else {
            return false;
        };
        match e.state {
            State::Sent {
                leader,
                term: sent_term,
            } if leader == peer && term >= sent_term => {}
            _ => return false,
        }
        match outcome(result) {
            Outcome::Done(r) => self.resolve(id, r),
            Outcome::NotExecuted => {
                e.state = State::Waiting;
                self.waiting.push_back(id);
            }
        }
        true
    }

    /// `node` is gone or stopped leading: the calls sent to it fail with `LeaderDown` (their
    /// outcome is unknown). Returns how many.
    pub(crate) fn fail_sent_to(&mut self, node: NodeId, name: &NodeName) -> usize {
        let ids: Vec<(u64, Term)> = self
            .entries
            .iter()
            .filter_map(|(id, e)| match e.state {
                State::Sent { leader, term } if leader == node => Some((*id, term)),
                _ => None,
            })
            .collect();
        for &(id, term) in &ids {
            self.resolve(
                id,
                Err(CallError::LeaderDown {
                    leader: name.clone(),
                    term,
                }),
            );
        }
        ids.len()
    }

    /// The behaviour deferred its reply to a call it served as leader at `term`.
    pub(crate) fn deferred(&mut self, origin: Origin, term: Term) {
        if self.served.len() < self.max {
            self.served.insert(origin, term);
        }
    }

    /// A served call is answered: the term it was served in, or `None` if it no longer
    /// counts (leadership was lost since, and its caller has been told).
    pub(crate) fn served(&mut self, origin: Origin) -> Option<Term> {
        self.served.remove(&origin)
    }

    /// This node lost the leadership it held as `me` (`name`): the calls it was serving fail
    /// at once. Local callers get `LeaderDown` (the outcome is unknown: the behaviour may have
    /// acted on them); forwarded calls are forgotten (their callers fail them when they learn
    /// of the new leader) and a late deferred reply to them is dropped.
    pub(crate) fn leadership_lost(&mut self, name: &NodeName) {
        let served: Vec<(Origin, Term)> = self.served.drain().collect();
        for (origin, term) in served {
            if let Origin::Local(id) = origin {
                if let Some(e) = self.entries.remove(&id) {
                    let _ = e.reply.send(Err(CallError::LeaderDown {
                        leader: name.clone(),
                        term,
                    }));
                }
            }
        }
    }

    /// Forwarded calls that came over connection `conn` of `peer`, which is gone: forgotten.
    pub(crate) fn forget_connection(&mut self, peer: NodeId, conn: u64) {
        self.served.retain(|o, _| {
            !matches!(o, Origin::Remote { peer: p, conn: c, .. } if *p == peer && *c == conn)
        });
    }

    /// Fails the calls past their deadline at `now`: `NoLeader` if still waiting for one
    /// (`NoQuorum` if `no_quorum` says this node cannot elect one), else `Timeout`.
    pub(crate) fn sweep(&mut self, now: Instant, no_quorum: Option<NoQuorum>) {
        if self.next_sweep.is_none_or(|s| now < s) {
            return;
        }
        let mut next: Option<Instant> = None;
        let mut expired = Vec::new();
        for (id, e) in &self.entries {
            if e.deadline <= now {
                expired.push((*id, e.state == State::Waiting));
                if e.state == State::Local {
                    self.served.remove(&Origin::Local(*id));
                }
            } else {
                next = Some(next.map_or(e.deadline, |n: Instant| n.min(e.deadline)));
            }
        }
        for (id, waiting) in expired {
            let err = match (waiting, no_quorum) {
                (false, _) => CallError::Timeout,
                (true, None) => CallError::NoLeader,
                (true, Some(nq)) => CallError::NoQuorum {
                    reachable: nq.reachable,
                    needed: nq.needed,
                },
            };
            self.resolve(id, Err(err));
        }
        let entries = &self.entries;
        self.waiting.retain(|id| entries.contains_key(id));
        self.next_sweep = next;
    }

    /// The node stops: every call fails with `Stopped`.
    pub(crate) fn stop(&mut self) {
        for (_, e) in self.entries.drain() {
            let _ = e.reply.send(Err(CallError::Stopped));
        }
        self.waiting.clear();
        self.served.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    type T = Calls<&'static str, u8>;
    type Rx = oneshot::Receiver<Result<ReplyBody<u8>, CallError>>;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn name(s: &str) -> NodeName {
        format!("{s}@127.0.0.1:1").parse().unwrap()
    }

    fn add(t: &mut T, id: u64, deadline: Instant, now: Instant) -> Rx {
        let (tx, rx) = oneshot::channel();
        assert!(t
            .insert(id, CallReq::Value("req"), deadline, tx, now)
            .is_ok());
        rx
    }

    fn err(rx: &mut Rx) -> CallError {
        match rx.try_recv() {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => panic!("a reply"),
            Err(e) => panic!("not resolved: {e:?}"),
        }
    }

    #[test]
    fn a_full_table_and_a_past_deadline_are_refused() {
        let t0 = Instant::now();
        let mut t = T::new(1);
        let _rx = add(&mut t, 1, t0 + ms(10), t0);
        let (tx, _) = oneshot::channel();
        assert!(matches!(
            t.insert(2, CallReq::Value("x"), t0 + ms(10), tx, t0),
            Err((Refused::TooMany, _))
        ));
        let mut t = T::new(8);
        let (tx, _) = oneshot::channel();
        assert!(matches!(
            t.insert(2, CallReq::Value("x"), t0, tx, t0),
            Err((Refused::PastDeadline, _))
        ));
    }

    #[test]
    fn a_call_served_at_once_enters_only_when_deferred() {
        let t0 = Instant::now();
        let mut t = T::new(2);
        assert!(t.has_room());
        let (tx, mut rx) = oneshot::channel();
        t.insert_served(7, t0 + ms(10), tx);
        t.deferred(Origin::Local(7), Term(4));
        assert_eq!((t.len(), t.waiting()), (1, 0));
        assert_eq!(t.next_deadline(), Some(t0 + ms(10)));
        // The deferred reply carries the term it was served in and resolves the call.
        assert_eq!(t.served(Origin::Local(7)), Some(Term(4)));
        t.resolve(7, Ok(ReplyBody::Value(9)));
        assert!(matches!(rx.try_recv(), Ok(Ok(ReplyBody::Value(9)))));
        assert_eq!(t.len(), 0);
        // Unanswered, it times out at its deadline; losing the leadership fails it at once.
        let (tx, mut late) = oneshot::channel();
        t.insert_served(8, t0 + ms(10), tx);
        t.deferred(Origin::Local(8), Term(4));
        t.sweep(t0 + ms(10), None);
        assert_eq!(err(&mut late), CallError::Timeout);
        let (tx, mut lost) = oneshot::channel();
        t.insert_served(9, t0 + ms(30), tx);
        t.deferred(Origin::Local(9), Term(5));
        t.leadership_lost(&name("a"));
        assert_eq!(
            err(&mut lost),
            CallError::LeaderDown {
                leader: name("a"),
                term: Term(5)
            }
        );
        let _two = add(&mut t, 1, t0 + ms(40), t0);
        let _three = add(&mut t, 2, t0 + ms(40), t0);
        assert!(!t.has_room());
    }

    #[test]
    fn deadlines_give_no_leader_or_timeout() {
        let t0 = Instant::now();
        let mut t = T::new(8);
        let mut waiting = add(&mut t, 1, t0 + ms(10), t0);
        let mut sent = add(&mut t, 2, t0 + ms(20), t0);
        assert_eq!(t.next_deadline(), Some(t0 + ms(10)));
        assert_eq!(t.take_waiting(), vec![1, 2]);
        assert!(matches!(
            t.dispatch(2, NodeId(0), NodeId(1), Term(3)),
            Some(Dispatch::Send(_))
        ));
        t.sweep(t0 + ms(9), None);
        assert!(waiting.try_recv().is_err());
        t.sweep(t0 + ms(10), None);
        assert_eq!(err(&mut waiting), CallError::NoLeader);
        assert_eq!(t.next_deadline(), Some(t0 + ms(20)));
        t.sweep(t0 + ms(20), None);
        assert_eq!(err(&mut sent), CallError::Timeout);
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn without_a_quorum_a_waiting_call_fails_with_no_quorum() {
        let t0 = Instant::now();
        let mut t = T::new(8);
        let mut waiting = add(&mut t, 1, t0 + ms(10), t0);
        let mut sent = add(&mut t, 2, t0 + ms(10), t0);
        t.take_waiting();
        t.requeue(1);
        t.dispatch(2, NodeId(0), NodeId(1), Term(3));
        let nq = NoQuorum {
            reachable: 1,
            needed: 2,
        };
        t.sweep(t0 + ms(10), Some(nq));
        assert_eq!(
            err(&mut waiting),
            CallError::NoQuorum {
                reachable: 1,
                needed: 2
            }
        );
        // A call already sent to a leader timed out there: its outcome is unknown.
        assert_eq!(err(&mut sent), CallError::Timeout);
    }

    #[test]
    fn answers_map_to_outcomes_and_stale_ones_are_dropped() {
        let t0 = Instant::now();
        let mut t = T::new(8);
        let mut a = add(&mut t, 1, t0 + ms(100), t0);
        let mut b = add(&mut t, 2, t0 + ms(100), t0);
        t.take_waiting();
        t.dispatch(1, NodeId(0), NodeId(1), Term(5));
        t.dispatch(2, NodeId(0), NodeId(1), Term(5));
        // The runtime keeps the frame it sent, to send it again after `NotLeader`.
        t.keep_frame(2, Bytes::from_static(b"frame"));
        // From another node, or an older term: dropped.
        assert!(!t.answer(1, NodeId(2), Term(5), ReplyResult::Ok(vec![1])));
        assert!(!t.answer(1, NodeId(1), Term(4), ReplyResult::Ok(vec![1])));
        assert!(t.answer(1, NodeId(1), Term(5), ReplyResult::Ok(vec![1])));
        assert!(matches!(a.try_recv(), Ok(Ok(ReplyBody::Encoded(v))) if v == vec![1]));
        // NotLeader: not executed, back to waiting.
        assert!(t.answer(2, NodeId(1), Term(6), ReplyResult::NotLeader));
        assert!(b.try_recv().is_err());
        assert_eq!(t.take_waiting(), vec![2]);
        assert!(matches!(
            t.dispatch(2, NodeId(0), NodeId(1), Term(6)),
            Some(Dispatch::Send(CallReq::Frame(f))) if &f[..] == b"frame"
        ));
        assert!(t.answer(2, NodeId(1), Term(6), ReplyResult::Error("boom".into())));
        assert_eq!(err(&mut b), CallError::Remote("boom".into()));
    }

    #[test]
    fn a_lost_leader_fails_the_calls_sent_to_it() {
        let t0 = Instant::now();
        let mut t = T::new(8);
        let mut a = add(&mut t, 1, t0 + ms(100), t0);
        let mut b = add(&mut t, 2, t0 + ms(100), t0);
        t.take_waiting();
        t.dispatch(1, NodeId(0), NodeId(1), Term(5));
        t.dispatch(2, NodeId(0), NodeId(2), Term(5));
        assert_eq!(t.fail_sent_to(NodeId(1), &name("l")), 1);
        assert_eq!(
            err(&mut a),
            CallError::LeaderDown {
                leader: name("l"),
                term: Term(5)
            }
        );
        assert!(b.try_recv().is_err());
    }

    #[test]
    fn losing_leadership_fails_the_calls_being_served_with_their_term() {
        let t0 = Instant::now();
        let mut t = T::new(8);
        let mut local = add(&mut t, 1, t0 + ms(100), t0);
        t.take_waiting();
        assert!(matches!(
            t.dispatch(1, NodeId(0), NodeId(0), Term(7)),
            Some(Dispatch::Serve(_))
        ));
        let remote = Origin::Remote {
            peer: NodeId(1),
            conn: 3,
            id: 9,
        };
        t.deferred(Origin::Local(1), Term(7));
        t.deferred(remote, Term(7));
        t.leadership_lost(&name("me"));
        assert_eq!(
            err(&mut local),
            CallError::LeaderDown {
                leader: name("me"),
                term: Term(7)
            }
        );
        // A late deferred reply to either no longer counts.
        assert_eq!(t.served(remote), None);
        assert_eq!(t.served(Origin::Local(1)), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_deferred_reply_carries_the_term_it_was_served_in() {
        let mut t = T::new(8);
        let o = Origin::Remote {
            peer: NodeId(1),
            conn: 3,
            id: 9,
        };
        t.deferred(o, Term(7));
        assert_eq!(t.served(o), Some(Term(7)));
        assert_eq!(t.served(o), None, "answered once");
        t.deferred(o, Term(8));
        t.forget_connection(NodeId(1), 3);
        assert_eq!(t.served(o), None);
    }

    #[test]
    fn stop_fails_everything() {
        let t0 = Instant::now();
        let mut t = T::new(8);
        let mut a = add(&mut t, 1, t0 + ms(100), t0);
        t.stop();
        assert_eq!(err(&mut a), CallError::Stopped);
        assert_eq!(t.len(), 0);
        assert_eq!(t.waiting(), 0);
    }
}
