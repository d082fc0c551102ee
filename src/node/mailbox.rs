//! The node's bounded mailbox: one permit per message a handle sends to the node's actor.
//!
//! Why: ractor's own mailbox is unbounded, so the bound lives here, at the edge (as mini-redis
//! bounds its connections with a semaphore). A permit is released when the actor has handled
//! the message. Non-async sends fail with [`CallError::Overloaded`] when no permit is free;
//! async ones wait, up to their deadline.
//!
//! Why a waiter takes several permits: a sender that waits on a full mailbox is woken when the
//! actor frees room. Woken for every single freed permit, a sender that keeps the mailbox full
//! (a `leader_cast_wait` loop) and the actor would take turns, one message, one wake-up and one
//! timer each. So a waiter waits until a share of the mailbox ([`Mailbox::refill`] permits) is
//! free, keeps one and gives the rest back: the sends that follow find room at once, and one
//! wake-up serves that many messages. Free permits that a waiter is collecting are not
//! available to `try_permit` meanwhile: the mailbox counts as full until the share is free.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::error::CallError;

/// Largest share of the mailbox a waiter waits for.
const MAX_REFILL: usize = 256;

/// The node's bounded mailbox (cheap to clone: every handle holds one).
#[derive(Clone)]
pub(crate) struct Mailbox {
    sem: Arc<Semaphore>,
    refill: u32,
}

impl Mailbox {
    /// A mailbox of `n` messages (at least one).
    pub(crate) fn new(n: usize) -> Self {
        let n = n.max(1);
        Mailbox {
            sem: Arc::new(Semaphore::new(n)),
            refill: (n / 16).clamp(1, MAX_REFILL) as u32,
        }
    }

    /// How many free permits a waiter waits for (a sixteenth of the mailbox, 1 to 256).
    #[cfg(test)]
    pub(crate) fn refill(&self) -> u32 {
        self.refill
    }

    /// A permit now, or `Overloaded`.
    pub(crate) fn try_permit(&self) -> Result<OwnedSemaphorePermit, CallError> {
        self.sem.clone().try_acquire_owned().map_err(|e| match e {
            TryAcquireError::NoPermits => CallError::Overloaded,
            TryAcquireError::Closed => CallError::Stopped,
        })
    }

    /// A permit, waiting for room up to `deadline` (`Timeout`).
    pub(crate) async fn permit(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<OwnedSemaphorePermit, CallError> {
        // No timer unless the mailbox is full.
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            return Ok(p);
        }
        let share = self.sem.clone().acquire_many_owned(self.refill);
        match tokio::time::timeout_at(deadline, share).await {
            Ok(Ok(mut p)) => {
                // Keep one, give the rest back for the sends that follow.
                Ok(p.split(1).unwrap_or(p))
            }
            Ok(Err(_)) => Err(CallError::Stopped),
            Err(_) => Err(CallError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn refill_is_a_sixteenth_between_1_and_256() {
        assert_eq!(Mailbox::new(0).refill(), 1);
        assert_eq!(Mailbox::new(1).refill(), 1);
        assert_eq!(Mailbox::new(16).refill(), 1);
        assert_eq!(Mailbox::new(64).refill(), 4);
        assert_eq!(Mailbox::new(4096).refill(), 256);
        assert_eq!(Mailbox::new(1 << 20).refill(), 256);
    }

    #[test]
    fn full_mailbox_refuses_at_once() {
        let m = Mailbox::new(2);
        let _a = m.try_permit().unwrap();
        let _b = m.try_permit().unwrap();
        assert!(matches!(m.try_permit(), Err(CallError::Overloaded)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_wakes_for_a_share_and_keeps_one() {
        let m = Mailbox::new(64); // refill 4
        let mut held: Vec<_> = (0..64).map(|_| m.try_permit().unwrap()).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let waiter = {
            let m = m.clone();
            tokio::spawn(async move { m.permit(deadline).await })
        };
        tokio::task::yield_now().await;
        // Three freed: not yet a share; the freed permits wait for the waiter.
        held.truncate(61);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(matches!(m.try_permit(), Err(CallError::Overloaded)));
        // The fourth: the waiter gets one, three are free again for the next sends.
        held.truncate(60);
        let p = waiter.await.unwrap().unwrap();
        assert_eq!(p.num_permits(), 1);
        let next: Vec<_> = (0..3).map(|_| m.try_permit().unwrap()).collect();
        assert!(matches!(m.try_permit(), Err(CallError::Overloaded)));
        drop((p, next, held));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_at_its_deadline() {
        let m = Mailbox::new(16);
        let _held: Vec<_> = (0..16).map(|_| m.try_permit().unwrap()).collect();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(matches!(m.permit(deadline).await, Err(CallError::Timeout)));
    }
}
