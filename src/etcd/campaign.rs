//! The campaigner: the task that wins, holds and gives up leadership on etcd.
//!
//! Why one loop, in this order (each step is a lesson from etcd's own clients):
//!
//! 1. **Grant** a lease with the TTL and **open its keep-alive stream before campaigning**:
//!    a campaign can wait for a long time behind the current leader, and a lease that is not
//!    renewed meanwhile expires under it.
//! 2. **Campaign** in a `select!` against shutdown, the lease clock running out, and
//!    keep-alive events. A failed campaign request (e.g. the etcd member it went through died)
//!    is retried with the same lease, so this node keeps its place in the queue.
//! 3. When the campaign returns, run the **phantom-leadership check** ([`super::verify`])
//!    before anything else; a campaign whose key is gone yields
//!    [`EtcdEvent::CampaignVoided`], never leadership.
//! 4. **Lead**: report [`EtcdEvent::Leading`] with the fencing token (the key's create
//!    revision) and the lease end, keep the lease alive, report each move of its end, and
//!    step down when the lease clock runs out (before etcd's TTL can), when etcd says the
//!    lease is gone, or when the key is deleted. Then start over with a new lease.
//! 5. **Shutdown**: step down, resign (so the next leader need not wait for the TTL), revoke.
//!
//! Every wait is bounded by the lease clock or a request timeout; errors become
//! [`EtcdEvent::Unavailable`] and a jittered backoff before the next attempt. A dropped
//! `EtcdElection` aborts this task without resigning, as a crash would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{CampaignResponse, Client, LeaderKey, ResignOptions, WatchOptions, WatchStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::client::{
    connect, deletes, jitter, next_watch, poll_stored, request, revision, sleep_until, Pending,
    RECONNECT_AFTER,
};
use super::config::EtcdConfig;
use super::error::{EtcdError, EtcdOp};
use super::lease::{Lease, News};
use super::lease_clock::{Ack, LeaseClock};
use super::verify::leader_key_holds;
use super::{EtcdEvent, StepDownReason};

/// Test hooks, shared with the handle.
#[derive(Debug, Default)]
pub(super) struct Hooks {
    /// While set, the campaigner sends no keep-alives and does not consult its lease clock
    /// while it campaigns: a machine suspended past its TTL, whose monotonic clock did not
    /// count the suspension, looks like this from etcd's side.
    pub paused: AtomicBool,
}

/// What [`EtcdElection::shutdown`](super::EtcdElection::shutdown) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownOutcome {
    /// This node was leading when it was asked to stop.
    pub was_leading: bool,
    /// It resigned (etcd deleted its leader key at once).
    pub resigned: bool,
    /// Its lease was revoked.
    pub revoked: bool,
}

enum End {
    Shutdown(ShutdownOutcome),
    Retry(Option<EtcdError>),
}

type Campaign = Pending<Result<CampaignResponse, etcd_client::Error>>;

/// The campaigner task's state (see the module docs).
pub(super) struct Campaigner {
    cfg: EtcdConfig,
    value: Vec<u8>,
    events: mpsc::Sender<EtcdEvent>,
    shutdown: watch::Receiver<bool>,
    hooks: Arc<Hooks>,
    client: Option<Client>,
    failures: u32,
    backoff: Backoff,
}

/// Resolves once shutdown is asked for (or the handle is gone). Safe to call again.
pub(super) async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The lease end as a timer deadline: now if the lease has ended.
fn lease_deadline(clock: &LeaseClock) -> Instant {
    clock.until().map_or_else(Instant::now, Instant::from_std)
}

impl Campaigner {
    pub(super) fn new(
        cfg: EtcdConfig,
        value: Vec<u8>,
        events: mpsc::Sender<EtcdEvent>,
        shutdown: watch::Receiver<bool>,
        hooks: Arc<Hooks>,
    ) -> Self {
        Campaigner {
            cfg,
            value,
            events,
            shutdown,
            hooks,
            client: None,
            failures: 0,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(2)),
        }
    }

    /// Runs until shutdown.
    pub(super) async fn run(mut self) -> ShutdownOutcome {
        loop {
            if *self.shutdown.borrow() {
                return ShutdownOutcome::default();
            }
            match self.attempt().await {
                End::Shutdown(o) => return o,
                End::Retry(err) => {
                    if let Some(e) = err {
                        tracing::warn!(error = %e, kind = %e.kind(), "etcd campaigner: starting over");
                        self.failures += 1;
                        if self.failures >= RECONNECT_AFTER {
                            self.failures = 0;
                            self.client = None;
                        }
                        self.emit(EtcdEvent::Unavailable {
                            op: e.op(),
                            kind: e.kind(),
                        })
                        .await;
                    }
                    let d = self.backoff.next_delay(jitter());
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = wait_shutdown(&mut self.shutdown) => return ShutdownOutcome::default(),
                    }
                }
            }
        }
    }

    /// Sends an event, unless shutdown comes first (a runtime that is shutting down may no
    /// longer drain the channel).
    async fn emit(&mut self, ev: EtcdEvent) {
        tokio::select! {
            _ = self.events.send(ev) => {}
            _ = wait_shutdown(&mut self.shutdown) => {}
        }
    }

    /// One lease: grant, keep alive, campaign, lead.
    async fn attempt(&mut self) -> End {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => match connect(&self.cfg).await {
                Ok(c) => {
                    self.client = Some(c.clone());
                    c
                }
                Err(e) => return End::Retry(Some(e)),
            },
        };
        let mut clock = LeaseClock::new(self.cfg.drift_ppm(), self.cfg.margin, self.cfg.ttl / 3);
        clock.sent(std::time::Instant::now());
        let mut lc = client.lease_client();
        let grant = match request(
            EtcdOp::Grant,
            self.cfg.request_timeout,
            lc.grant(self.cfg.ttl_secs(), None),
        )
        .await
        {
            Ok(g) => g,
            Err(e) => return End::Retry(Some(e)),
        };
        let (id, granted) = (grant.id(), grant.ttl());
        if !matches!(clock.acknowledged(granted), Ack::Until(_)) {
            return End::Retry(Some(EtcdError::LeaseGone { op: EtcdOp::Grant }));
        }
        tracing::debug!(lease = id, ttl = granted, "etcd: lease granted");
        let mut lease = Lease::new(id, granted, clock, self.cfg.request_timeout);
        // Keep-alives start before the campaign.
        match lease.open(&client).await {
            Ok(News::Gone) => {
                return End::Retry(Some(EtcdError::LeaseGone {
                    op: EtcdOp::KeepAlive,
                }))
            }
            Ok(_) => {}
            Err(e) => {
                revoke_later(&client, id, self.cfg.request_timeout);
                return End::Retry(Some(e));
            }
        }
        self.backoff.reset();
        self.failures = 0;
        let end = self.campaign(&client, &mut lease).await;
        if let End::Retry(_) = end {
            revoke_later(&client, id, self.cfg.request_timeout);
        }
        end
    }

    fn start_campaign(&self, client: &Client, lease: i64) -> Campaign {
        let mut ec = client.election_client();
        let (name, value) = (self.cfg.election.clone(), self.value.clone());
        Box::pin(async move { ec.campaign(name, value, lease).await })
    }

    /// Campaigns with `lease` until the campaign returns, then checks and leads.
    async fn campaign(&mut self, client: &Client, lease: &mut Lease) -> End {
        let mut campaign = Some(self.start_campaign(client, lease.id));
        let mut retry_at: Option<Instant> = None;
        let mut retry = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let mut failures = 0u32;
        let mut resp = loop {
            let paused = self.hooks.paused.load(Ordering::SeqCst);
            let lease_end = (!paused).then(|| lease_deadline(&lease.clock));
            tokio::select! {
                biased;
                _ = wait_shutdown(&mut self.shutdown) => {
                    let revoked = revoke(client, lease.id, self.cfg.request_timeout).await;
                    return End::Shutdown(ShutdownOutcome { revoked, ..Default::default() });
                }
                _ = sleep_until(lease_end) => {
                    // Keep-alives went unacknowledged for a whole local lease.
                    return End::Retry(Some(EtcdError::Timeout {
                        op: EtcdOp::KeepAlive,
                        after: self.cfg.local_lease(),
                    }));
                }
                w = lease.wake(paused) => {
                    if let News::Gone = lease.handle(w, client).await {
                        return End::Retry(Some(EtcdError::LeaseGone { op: EtcdOp::KeepAlive }));
                    }
                }
                r = poll_stored(&mut campaign) => {
                    campaign = None;
                    match r {
                        Ok(resp) => break resp,
                        Err(e) => {
                            let e = EtcdError::client(EtcdOp::Campaign, e);
                            tracing::debug!(error = %e, "etcd: campaign failed; retrying with the same lease");
                            // One failure is usual when an etcd member dies under the request;
                            // say so from the second one in a row.
                            failures += 1;
                            if failures > 1 {
                                self.emit(EtcdEvent::Unavailable { op: e.op(), kind: e.kind() }).await;
                            }
                            retry_at = Some(Instant::now() + retry.next_delay(jitter()));
                        }
                    }
                }
                _ = sleep_until(retry_at) => {
                    retry_at = None;
                    campaign = Some(self.start_campaign(client, lease.id));
                }
            }
        };
        tracing::debug!("etcd: the campaign returned");
        let Some(leader) = resp.take_leader() else {
            tracing::warn!("etcd: campaign returned no leader key");
            return End::Retry(None);
        };
        let Some(rev) = revision(leader.rev()) else {
            tracing::warn!(rev = leader.rev(), "etcd: campaign returned a bad revision");
            return End::Retry(None);
        };
        self.check_and_lead(client, lease, leader, rev).await
    }

    /// The phantom-leadership check, then leadership.
    async fn check_and_lead(
        &mut self,
        client: &Client,
        lease: &mut Lease,
        leader: LeaderKey,
        rev: u64,
    ) -> End {
        let timeout = self.cfg.request_timeout;
        let holds = if leader.lease() == lease.id {
            match leader_key_holds(client, leader.key(), leader.rev(), timeout).await {
                Ok(h) => h,
                Err(e) => return End::Retry(Some(e)),
            }
        } else {
            None
        };
        let Some(checked_at) = holds else {
            tracing::warn!(
                rev,
                "etcd: the campaign returned, but its key is gone (the lease expired while it \
                 waited): not leading"
            );
            self.emit(EtcdEvent::CampaignVoided { rev }).await;
            return End::Retry(None);
        };
        let now = std::time::Instant::now();
        // The paused hook plays a suspended machine, whose monotonic clock did not count the
        // pause: the lease clock is not consulted, so the check above is all that stands
        // between an expired key and leadership.
        let paused = self.hooks.paused.load(Ordering::SeqCst);
        let until = match lease.clock.until() {
            Some(u) if now < u || paused => u,
            None if paused => now,
            _ => {
                return End::Retry(Some(EtcdError::Timeout {
                    op: EtcdOp::KeepAlive,
                    after: self.cfg.local_lease(),
                }))
            }
        };
        tracing::info!(rev, "etcd: leading");
        let sent = lease.clock.acked_sent().unwrap_or(now);
        self.emit(EtcdEvent::Leading { rev, until, sent }).await;
        // Watch the key from the check on, so that a deletion by anyone ends leadership. Set
        // up inside the loop, which keeps watching the lease clock meanwhile.
        let mut wc = client.watch_client();
        let (key, timeout) = (leader.key().to_vec(), self.cfg.request_timeout);
        let opts = WatchOptions::new().with_start_revision(checked_at.saturating_add(1));
        let watching: Pending<Result<WatchStream, EtcdError>> =
            Box::pin(
                async move { request(EtcdOp::Watch, timeout, wc.watch(key, Some(opts))).await },
            );
        self.lead(client, lease, leader, rev, watching).await
    }

    /// Holds leadership until the lease ends, the key goes, or shutdown.
    async fn lead(
        &mut self,
        client: &Client,
        lease: &mut Lease,
        leader: LeaderKey,
        rev: u64,
        watching: Pending<Result<WatchStream, EtcdError>>,
    ) -> End {
        let mut reported = lease.clock.until();
        let mut watching = Some(watching);
        let mut watch: Option<WatchStream> = None;
        loop {
            let end = lease_deadline(&lease.clock);
            tokio::select! {
                biased;
                _ = wait_shutdown(&mut self.shutdown) => {
                    // Stop acting first; only then let the next leader in.
                    let _ = self.events.try_send(EtcdEvent::SteppedDown {
                        rev,
                        reason: StepDownReason::Shutdown,
                    });
                    let resigned = resign(client, leader, self.cfg.request_timeout).await;
                    let revoked = revoke(client, lease.id, self.cfg.request_timeout).await;
                    return End::Shutdown(ShutdownOutcome { was_leading: true, resigned, revoked });
                }
                _ = tokio::time::sleep_until(end) => {
                    self.step_down(rev, StepDownReason::LeaseExpired).await;
                    return End::Retry(None);
                }
                w = lease.wake(false) => match lease.handle(w, client).await {
                    News::Gone => {
                        self.step_down(rev, StepDownReason::LeaseRevoked).await;
                        return End::Retry(None);
                    }
                    News::Moved { until, sent } if Some(until) != reported => {
                        reported = Some(until);
                        // Dropped if full: an older lease end is only more cautious.
                        let _ = self.events.try_send(EtcdEvent::LeaseMoved { rev, until, sent });
                    }
                    News::Moved { .. } | News::Quiet => {}
                },
                r = poll_stored(&mut watching) => {
                    watching = None;
                    match r {
                        Ok(w) => watch = Some(w),
                        Err(e) => tracing::debug!(error = %e, "etcd: cannot watch the leader key; leading without"),
                    }
                }
                r = next_watch(&mut watch) => match r {
                    Ok(Some(resp)) if deletes(&resp) => {
                        self.step_down(rev, StepDownReason::KeyDeleted).await;
                        return End::Retry(None);
                    }
                    Ok(Some(resp)) if !resp.canceled() => {}
                    other => {
                        tracing::debug!(?other, "etcd: the leader key's watch ended");
                        watch = None;
                    }
                },
            }
        }
    }

    async fn step_down(&mut self, rev: u64, reason: StepDownReason) {
        tracing::warn!(rev, %reason, "etcd: stepped down");
        self.emit(EtcdEvent::SteppedDown { rev, reason }).await;
    }
}

/// Resigns `leader`; whether etcd confirmed it.
async fn resign(client: &Client, leader: LeaderKey, timeout: Duration) -> bool {
    let mut ec = client.election_client();
    let r = request(
        EtcdOp::Resign,
        timeout,
        ec.resign(Some(ResignOptions::new().with_leader(leader))),
    )
    .await;
    if let Err(e) = &r {
        tracing::warn!(error = %e, "etcd: resign failed; the next leader waits for the TTL");
    }
    r.is_ok()
}

/// Revokes lease `id`; whether etcd confirmed it.
async fn revoke(client: &Client, id: i64, timeout: Duration) -> bool {
    let mut lc = client.lease_client();
    let r = request(EtcdOp::Revoke, timeout, lc.revoke(id)).await;
    if let Err(e) = &r {
        tracing::debug!(error = %e, lease = id, "etcd: revoke failed");
    }
    r.is_ok()
}

/// Revokes lease `id` in the background (a lease given up need not hold anyone up; if etcd
/// is unreachable it expires by itself).
fn revoke_later(client: &Client, id: i64, timeout: Duration) {
    let client = client.clone();
    tokio::spawn(async move {
        revoke(&client, id, timeout).await;
    });
}
