//! [`LeaderGuard`]: "this node leads term T" as a value a task can hold, check right before
//! each side effect, and wait on.
//!
//! Why a file of its own: a guard is the user's side of the leadership contract, and its
//! meaning depends on the mode. In bully mode it reflects this node's *belief* only (another
//! node may believe the same during a partition). In quorum mode it is exclusive under the
//! clock-rate assumption: it holds only while the lease runs, measured on the lease clock
//! (`clock`), so two nodes' guards never hold at the same instant. In both modes a pause
//! between [`LeaderGuard::ensure`] and the write it protects can outlast the leadership: that
//! is what the [`FencingToken`] from [`LeaderGuard::term`] is for.
//!
//! A guard is a watch receiver of the node's [`LeaderState`] plus its term: cheap to clone,
//! `Send + Sync`, and once it has seen its leadership end it stays ended (all its clones
//! with it), even if the same node leads again later (that is another term, another guard).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use super::clock::LeaseClock;
use super::leader_state::{self, LeaderState, Losses};
use crate::election::LossReason;
use crate::error::GuardError;
use crate::types::{FencingToken, Term};

/// Longest sleep of [`LeaderGuard::lost`] between two looks at the lease clock: tokio's
/// timers do not count suspended time, so a sleep across a suspend would wake late.
const MAX_NAP: Duration = Duration::from_millis(100);

/// Proof, checked on use, that this node leads a term: see
/// [`LeaderHandle::guard`](crate::LeaderHandle::guard).
///
/// ```no_run
/// # use std::time::Duration;
/// # async fn work<B: gen_leader::Behaviour>(handle: gen_leader::LeaderHandle<B>) -> Result<(), Box<dyn std::error::Error>> {
/// let guard = handle.guard()?;             // Err(NotLeader { leader, term }) elsewhere
/// let token = guard.term();                // pass it to the store with every write
/// loop {
///     guard.ensure(Duration::from_millis(50))?; // Err once leadership (or its lease) ends
///     // ... write, fenced with `token` (see `FencingToken`) ...
/// #   break;
/// }
/// let why = guard.lost().await;            // resolves when the leadership of that term ends
/// # let _ = (token, why); Ok(()) }
/// ```
///
/// In bully mode the guard only says that *this node believes* it leads (during a partition
/// another node may believe the same); [`remaining`](LeaderGuard::remaining) is `None`. In
/// quorum mode it holds only while the lease runs, so no two nodes' guards hold at the same
/// instant, provided clock rates err by at most
/// [`QuorumConfig::max_drift`](crate::QuorumConfig::max_drift). In both modes, fence the
/// writes with [`term`](LeaderGuard::term): a pause between `ensure` and the write can
/// outlast the leadership.
#[derive(Clone)]
pub struct LeaderGuard {
    state: watch::Receiver<LeaderState>,
    losses: watch::Receiver<Losses>,
    clock: Arc<LeaseClock>,
    term: Term,
    quorum: bool,
    /// Set once the guard has seen its leadership end, shared by its clones.
    ended: Arc<OnceLock<GuardError>>,
}

impl std::fmt::Debug for LeaderGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderGuard")
            .field("term", &self.term)
            .field("quorum", &self.quorum)
            .field("ended", &self.ended.get())
            .finish_non_exhaustive()
    }
}

/// What a node's handles share to make guards.
#[derive(Clone)]
pub(crate) struct GuardParts {
    pub state: watch::Receiver<LeaderState>,
    pub losses: watch::Receiver<Losses>,
    pub clock: Arc<LeaseClock>,
    pub quorum: bool,
}

impl GuardParts {
    /// The node's leader state now (`Stopped` once the node is gone).
    pub(crate) fn state(&self) -> LeaderState {
        if self.state.has_changed().is_err() {
            return LeaderState::Stopped;
        }
        self.state.borrow().clone()
    }

    /// A guard of the term this node leads now; `term` is the node's current term (for the
    /// error when it does not lead).
    pub(crate) fn guard(&self, term: Term) -> Result<LeaderGuard, GuardError> {
        match self.state() {
            LeaderState::Leading { term, until } => {
                let live = !self.quorum || until.is_some_and(|u| self.clock.lease_now() < u);
                if !live {
                    // The lease ended; the node has not stepped down yet.
                    return Err(GuardError::NotLeader { leader: None, term });
                }
                Ok(LeaderGuard {
                    state: self.state.clone(),
                    losses: self.losses.clone(),
                    clock: self.clock.clone(),
                    term,
                    quorum: self.quorum,
                    ended: Arc::new(OnceLock::new()),
                })
            }
            LeaderState::Following { leader, term } => Err(GuardError::NotLeader {
                leader: Some(leader),
                term,
            }),
            LeaderState::NoQuorum { reachable, needed } => {
                Err(GuardError::NoQuorum { reachable, needed })
            }
            LeaderState::Stopped => Err(GuardError::Stopped),
            // `Electing` (and any later state): no leader known.
            _ => Err(GuardError::NotLeader { leader: None, term }),
        }
    }
}

impl LeaderGuard {
    /// The fencing token of this leadership: its term. Strictly greater than that of every
    /// earlier leadership in the cluster. See [`FencingToken`].
    pub fn term(&self) -> FencingToken {
        FencingToken::from(self.term)
    }

    /// What is left of the lease: `None` in bully mode (no lease); in quorum mode the time
    /// until the lease ends unless renewed (renewals move it), zero once it has ended or the
    /// leadership is lost. Measured on the node's lease clock, which counts suspend.
    pub fn remaining(&self) -> Option<Duration> {
        match self.check() {
            Ok(left) => left,
            Err(_) => self.quorum.then_some(Duration::ZERO),
        }
    }

    /// Checks, right before a side effect, that this node still leads the guard's term and,
    /// in quorum mode, that at least `min` of its lease is left (choose `min` to cover the
    /// side effect, or at least its start). `Err` otherwise:
    /// [`GuardError::LeaseEnding`] when only the time is short (a renewal may still come),
    /// [`GuardError::Lost`] or [`GuardError::Stopped`] once the leadership has ended (and from
    /// then on, always).
    pub fn ensure(&self, min: Duration) -> Result<(), GuardError> {
        match self.check()? {
            Some(left) if left < min => Err(GuardError::LeaseEnding { left, needed: min }),
            _ => Ok(()),
        }
    }

    /// Resolves when the leadership of this guard's term ends, with why:
    /// [`GuardError::Lost`] (taken over, newer term, lease expired in quorum mode — as soon
    /// as the lease clock passes its end, even before the node has stepped down) or
    /// [`GuardError::Stopped`].
    pub async fn lost(&self) -> GuardError {
        let mut rx = self.state.clone();
        loop {
            rx.borrow_and_update();
            let left = match self.check() {
                Err(e) => return e,
                Ok(left) => left,
            };
            match left {
                // Bully mode: only a change can end it.
                None => {
                    let _ = rx.changed().await;
                }
                Some(left) => {
                    let nap = left.min(MAX_NAP);
                    tokio::select! {
                        _ = rx.changed() => {}
                        _ = tokio::time::sleep(nap) => {}
                    }
                }
            }
        }
    }

    /// `Ok(left)` while the guard holds (`left`: `None` in bully mode, what is left of the
    /// lease in quorum mode); the reason it ended otherwise (then remembered).
    fn check(&self) -> Result<Option<Duration>, GuardError> {
        if let Some(e) = self.ended.get() {
            return Err(e.clone());
        }
        let closed = self.state.has_changed().is_err();
        let state = if closed {
            LeaderState::Stopped
        } else {
            self.state.borrow().clone()
        };
        let end = match state {
            LeaderState::Leading { term, until } if term == self.term => {
                if !self.quorum {
                    return Ok(None);
                }
                let now = self.clock.lease_now();
                match until {
                    Some(u) if now < u => return Ok(Some(u - now)),
                    _ => GuardError::Lost {
                        term: self.term,
                        reason: LossReason::LeaseExpired,
                    },
                }
            }
            LeaderState::Stopped => GuardError::Stopped,
            _ => GuardError::Lost {
                term: self.term,
                reason: leader_state::loss_of(&self.losses.borrow(), self.term),
            },
        };
        Err(self.ended.get_or_init(|| end).clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::types::NodeName;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    struct Node {
        state: watch::Sender<LeaderState>,
        losses: watch::Sender<Losses>,
        parts: GuardParts,
    }

    fn node(quorum: bool, initial: LeaderState) -> Node {
        let (state, srx) = watch::channel(initial);
        let (losses, lrx) = watch::channel(Losses::new());
        Node {
            state,
            losses,
            parts: GuardParts {
                state: srx,
                losses: lrx,
                clock: Arc::new(LeaseClock::never_suspended()),
                quorum,
            },
        }
    }

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn leading(term: u64, until: Option<Instant>) -> LeaderState {
        LeaderState::Leading {
            term: Term(term),
            until,
        }
    }

    #[test]
    fn only_a_leader_gets_a_guard() {
        let b: NodeName = "b@127.0.0.1:2".parse().unwrap();
        let n = node(
            false,
            LeaderState::Following {
                leader: b.clone(),
                term: Term(4),
            },
        );
        assert_eq!(
            n.parts.guard(Term(4)).unwrap_err(),
            GuardError::NotLeader {
                leader: Some(b),
                term: Term(4)
            }
        );
        n.state.send_replace(LeaderState::Electing);
        assert_eq!(
            n.parts.guard(Term(5)).unwrap_err(),
            GuardError::NotLeader {
                leader: None,
                term: Term(5)
            }
        );
        n.state.send_replace(LeaderState::NoQuorum {
            reachable: 1,
            needed: 2,
        });
        assert_eq!(
            n.parts.guard(Term(5)).unwrap_err(),
            GuardError::NoQuorum {
                reachable: 1,
                needed: 2
            }
        );
        n.state.send_replace(leading(6, None));
        let g = n.parts.guard(Term(6)).unwrap();
        assert_eq!(g.term(), FencingToken::new(6));
        assert_eq!(g.remaining(), None);
        assert_eq!(g.ensure(Duration::from_secs(3600)), Ok(()));
        drop(n.state);
        assert_eq!(g.ensure(ms(0)), Err(GuardError::Stopped));
        assert_eq!(n.parts.guard(Term(6)).unwrap_err(), GuardError::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quorum_guard_holds_while_the_lease_runs() {
        let n = node(true, leading(3, Some(now() + ms(500))));
        let g = n.parts.guard(Term(3)).unwrap();
        assert_eq!(g.remaining(), Some(ms(500)));
        assert_eq!(g.ensure(ms(500)), Ok(()));
        assert_eq!(
            g.ensure(ms(501)),
            Err(GuardError::LeaseEnding {
                left: ms(500),
                needed: ms(501)
            })
        );
        // A renewal moves the end.
        tokio::time::advance(ms(300)).await;
        n.state.send_replace(leading(3, Some(now() + ms(500))));
        assert_eq!(g.remaining(), Some(ms(500)));
        // No renewal: at the end the guard is lost, for good, even if a renewal came late.
        let lost = tokio::spawn({
            let g = g.clone();
            async move { g.lost().await }
        });
        tokio::time::advance(ms(500)).await;
        let expired = GuardError::Lost {
            term: Term(3),
            reason: LossReason::LeaseExpired,
        };
        assert_eq!(lost.await.unwrap(), expired);
        assert_eq!(g.remaining(), Some(Duration::ZERO));
        n.state.send_replace(leading(3, Some(now() + ms(500))));
        assert_eq!(g.ensure(ms(0)), Err(expired.clone()));
        // A fresh guard of a running lease works; one on an ended lease is refused.
        assert!(n.parts.guard(Term(3)).is_ok());
        n.state.send_replace(leading(3, Some(now())));
        assert_eq!(
            n.parts.guard(Term(3)).unwrap_err(),
            GuardError::NotLeader {
                leader: None,
                term: Term(3)
            }
        );
        // Quorum mode without a lease end: not acting.
        n.state.send_replace(leading(3, None));
        assert!(n.parts.guard(Term(3)).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn lost_reports_the_recorded_reason() {
        let n = node(false, leading(7, None));
        let g = n.parts.guard(Term(7)).unwrap();
        let lost = tokio::spawn({
            let g = g.clone();
            async move { g.lost().await }
        });
        tokio::task::yield_now().await;
        leader_state::note_loss(&n.losses, Term(7), LossReason::TakenOver);
        n.state.send_replace(LeaderState::Electing);
        let taken = GuardError::Lost {
            term: Term(7),
            reason: LossReason::TakenOver,
        };
        assert_eq!(lost.await.unwrap(), taken);
        assert_eq!(g.ensure(ms(0)), Err(taken));
        // The same node leading a newer term (no loss recorded for the guard's): NewerTerm.
        n.state.send_replace(leading(8, None));
        let g8 = n.parts.guard(Term(8)).unwrap();
        n.state.send_replace(leading(9, None));
        assert_eq!(
            g8.lost().await,
            GuardError::Lost {
                term: Term(8),
                reason: LossReason::NewerTerm
            }
        );
        // Stopping ends every guard.
        let g9 = n.parts.guard(Term(9)).unwrap();
        n.state.send_replace(LeaderState::Stopped);
        assert_eq!(g9.lost().await, GuardError::Stopped);
    }

    #[test]
    fn guards_are_send_sync_and_cheap_to_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<LeaderGuard>();
    }
}
