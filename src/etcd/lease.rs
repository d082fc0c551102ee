//! One etcd lease held by the campaigner: its keep-alive stream and its [`LeaseClock`].
//!
//! Why the keep-alive loop is ours: `etcd-client`'s `LeaseKeeper` sends one request per call
//! and leaves the timing to the caller, which is what the lease clock needs (it must know
//! each request's send time). A broken stream (the etcd member it went through died, etcd
//! restarted) does not end the lease: etcd still holds it until its TTL, so the stream is
//! re-opened, through any endpoint, while the clock keeps the lease end from the last
//! acknowledged renewal. Only the clock running out, or etcd saying the lease is gone, ends it.
//!
//! [`Lease::wake`] only waits (it is cancel-safe, for `select!`); [`Lease::handle`] acts on
//! what woke it, outside the `select!`.

use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveResponse, LeaseKeepAliveStream, LeaseKeeper};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::client::{poll_stored, request, sleep_until, Pending};
use super::error::{ErrorKind, EtcdError, EtcdOp};
use super::lease_clock::{Ack, LeaseClock};

type Opened = Result<(LeaseKeeper, LeaseKeepAliveStream), EtcdError>;

/// What woke [`Lease::wake`].
pub(super) enum Wake {
    /// A keep-alive is due.
    SendDue,
    /// The stream yielded.
    Reply(Result<Option<LeaseKeepAliveResponse>, etcd_client::Error>),
    /// Time to re-open the broken stream.
    ReopenDue,
    /// The re-opening (started at the instant given) finished.
    Reopened(std::time::Instant, Box<Opened>),
}

/// What [`Lease::handle`] found.
#[derive(Debug)]
pub(super) enum News {
    /// Nothing the loop needs to know.
    Quiet,
    /// The lease end moved to `until`, on the strength of a request sent at `sent`.
    Moved {
        until: std::time::Instant,
        sent: std::time::Instant,
    },
    /// etcd says the lease is gone.
    Gone,
}

/// A granted lease (see the module docs).
pub(super) struct Lease {
    pub id: i64,
    granted_ttl: i64,
    pub clock: LeaseClock,
    keeper: Option<LeaseKeeper>,
    replies: Option<LeaseKeepAliveStream>,
    reopening: Option<Pending<(std::time::Instant, Opened)>>,
    reopen_at: Option<Instant>,
    backoff: Backoff,
    timeout: Duration,
}

impl Lease {
    /// A lease etcd granted as `id` with `granted_ttl` (whole seconds); `clock` has the grant
    /// recorded and acknowledged.
    pub fn new(id: i64, granted_ttl: i64, clock: LeaseClock, timeout: Duration) -> Self {
        Lease {
            id,
            granted_ttl,
            clock,
            keeper: None,
            replies: None,
            reopening: None,
            reopen_at: None,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
            timeout,
        }
    }

    /// Opens the keep-alive stream (it sends the first keep-alive and waits for its reply).
    /// Called before campaigning, so the lease is renewed while the campaign waits.
    pub async fn open(&mut self, client: &Client) -> Result<News, EtcdError> {
        let sent = std::time::Instant::now();
        let mut lc = client.lease_client();
        match request(EtcdOp::KeepAlive, self.timeout, lc.keep_alive(self.id)).await {
            Err(e) if e.kind() != ErrorKind::LeaseNotFound => Err(e),
            r => Ok(self.opened(sent, r)),
        }
    }

    fn opened(&mut self, sent: std::time::Instant, r: Opened) -> News {
        self.clock.stream_reset();
        match r {
            Ok((keeper, replies)) => {
                self.keeper = Some(keeper);
                self.replies = Some(replies);
                self.backoff.reset();
                // `keep_alive` consumed the first reply and checked its TTL was positive; a
                // keep-alive renews a lease to its granted TTL.
                self.clock.sent(sent);
                self.ack(self.granted_ttl)
            }
            Err(e) if e.kind() == ErrorKind::LeaseNotFound => News::Gone,
            Err(e) => {
                tracing::debug!(error = %e, lease = self.id, "etcd: keep-alive stream not opened");
                self.reopen_at =
                    Some(Instant::now() + self.backoff.next_delay(super::client::jitter()));
                News::Quiet
            }
        }
    }

    fn ack(&mut self, ttl: i64) -> News {
        match self.clock.acknowledged(ttl) {
            Ack::Until(until) => News::Moved {
                until,
                sent: self.clock.acked_sent().unwrap_or(until),
            },
            Ack::Ended => News::Gone,
            Ack::Unmatched => News::Quiet,
        }
    }

    /// Waits for the next thing to do. Cancel-safe. With `paused` (a test hook) no keep-alive
    /// is sent.
    pub async fn wake(&mut self, paused: bool) -> Wake {
        let send_at = if paused || self.keeper.is_none() {
            None
        } else {
            self.clock.next_send().map(Instant::from_std)
        };
        let reopen_at = if self.keeper.is_none() && self.reopening.is_none() {
            self.reopen_at
        } else {
            None
        };
        tokio::select! {
            _ = sleep_until(send_at) => Wake::SendDue,
            r = next_reply(&mut self.replies) => Wake::Reply(r),
            _ = sleep_until(reopen_at) => Wake::ReopenDue,
            (sent, r) = poll_stored(&mut self.reopening) => Wake::Reopened(sent, Box::new(r)),
        }
    }

    /// Acts on what [`Lease::wake`] returned.
    pub async fn handle(&mut self, wake: Wake, client: &Client) -> News {
        match wake {
            Wake::SendDue => {
                let now = std::time::Instant::now();
                let Some(keeper) = self.keeper.as_mut() else {
                    return News::Quiet;
                };
                // The channel behind the keeper has room for 100 requests and at most
                // MAX_IN_FLIGHT wait, so this send does not block.
                if !self.clock.sent(now) {
                    return News::Quiet;
                }
                if let Err(e) = keeper.keep_alive().await {
                    tracing::debug!(error = %e, lease = self.id, "etcd: keep-alive send failed");
                    self.broken();
                }
                News::Quiet
            }
            Wake::Reply(Ok(Some(resp))) => self.ack(resp.ttl()),
            Wake::Reply(Ok(None)) => {
                tracing::debug!(lease = self.id, "etcd: keep-alive stream ended");
                self.broken();
                News::Quiet
            }
            Wake::Reply(Err(e)) => {
                tracing::debug!(error = %e, lease = self.id, "etcd: keep-alive stream failed");
                self.broken();
                News::Quiet
            }
            Wake::ReopenDue => {
                self.reopen_at = None;
                let mut lc = client.lease_client();
                let (id, timeout) = (self.id, self.timeout);
                let sent = std::time::Instant::now();
                self.reopening = Some(Box::pin(async move {
                    let r = request(EtcdOp::KeepAlive, timeout, lc.keep_alive(id)).await;
                    (sent, r)
                }));
                News::Quiet
            }
            Wake::Reopened(sent, r) => {
                self.reopening = None;
                self.opened(sent, *r)
            }
        }
    }

    fn broken(&mut self) {
        self.keeper = None;
        self.replies = None;
        self.clock.stream_reset();
        self.reopen_at = Some(Instant::now() + self.backoff.next_delay(super::client::jitter()));
    }
}

async fn next_reply(
    s: &mut Option<LeaseKeepAliveStream>,
) -> Result<Option<LeaseKeepAliveResponse>, etcd_client::Error> {
    match s.as_mut() {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}
