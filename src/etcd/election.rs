//! [`EtcdElection`]: the handle the node runtime holds; starts the campaigner and the
//! observer and stops them.
//!
//! Why a handle plus a channel of events: the runtime already runs an actor with its own
//! inputs; the backend only has to feed it [`EtcdEvent`]s, so it needs no access to the
//! runtime's internals. [`EtcdConfig`] implements [`ExternalElection`] (the trait the node
//! runtime speaks) with it, and [`EtcdElection`] is its [`RunningElection`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::campaign::{Campaigner, Hooks, ShutdownOutcome};
use super::config::EtcdConfig;
use super::error::EtcdStartError;
use super::observe::Observer;
use super::value::LeaderValue;
use super::EtcdEvent;
use super::EVENT_CAPACITY;
use crate::backend::{ElectionIdentity, ExternalElection, LeaseTiming, RunningElection, Started};
use crate::error::BoxError;

/// A running etcd election for one node: a campaigner and an observer task.
///
/// [`EtcdElection::shutdown`] resigns and revokes (failover without waiting for the TTL).
/// Dropping the handle instead aborts both tasks without resigning, as a crash would: etcd
/// then frees the election when the lease's TTL runs out.
#[derive(Debug)]
pub struct EtcdElection {
    shutdown: watch::Sender<bool>,
    campaigner: Option<JoinHandle<ShutdownOutcome>>,
    observer: Option<JoinHandle<()>>,
    hooks: Arc<Hooks>,
}

impl EtcdElection {
    /// Validates `config`, then starts campaigning as `me` and observing the election. Must be
    /// called within a tokio runtime. Events arrive on the returned receiver.
    pub fn start(
        config: EtcdConfig,
        me: LeaderValue,
    ) -> Result<(EtcdElection, mpsc::Receiver<EtcdEvent>), EtcdStartError> {
        Self::launch(config, me, true)
    }

    /// Like [`EtcdElection::start`] but never campaigns: only observes the election (a
    /// worker, which follows the leader etcd names and never leads).
    pub fn observe(
        config: EtcdConfig,
        me: LeaderValue,
    ) -> Result<(EtcdElection, mpsc::Receiver<EtcdEvent>), EtcdStartError> {
        Self::launch(config, me, false)
    }

    /// Starts the observer, and the campaigner if `campaign`.
    fn launch(
        config: EtcdConfig,
        me: LeaderValue,
        campaign: bool,
    ) -> Result<(EtcdElection, mpsc::Receiver<EtcdEvent>), EtcdStartError> {
        config.validate()?;
        let value = me.encode()?;
        let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
        let (stop_tx, stop_rx) = watch::channel(false);
        let hooks = Arc::new(Hooks::default());
        let campaigner = campaign.then(|| {
            let c = Campaigner::new(
                config.clone(),
                value.clone(),
                tx.clone(),
                stop_rx.clone(),
                hooks.clone(),
            );
            tokio::spawn(c.run())
        });
        let observer = Observer::new(config, value, tx, stop_rx);
        Ok((
            EtcdElection {
                shutdown: stop_tx,
                campaigner,
                observer: Some(tokio::spawn(observer.run())),
                hooks,
            },
            rx,
        ))
    }

    /// Stops: a leader reports [`EtcdEvent::SteppedDown`] with
    /// [`StepDownReason::Shutdown`](super::StepDownReason::Shutdown), then resigns and
    /// revokes its lease, each within the request timeout. Returns what it did.
    pub async fn shutdown(mut self) -> ShutdownOutcome {
        let _ = self.shutdown.send(true);
        let outcome = match self.campaigner.take() {
            Some(h) => h.await.unwrap_or_default(),
            None => ShutdownOutcome::default(),
        };
        if let Some(h) = self.observer.take() {
            let _ = h.await;
        }
        outcome
    }

    /// Test hook: while `on`, the campaigner sends no keep-alives and does not consult its
    /// lease clock while it campaigns, as if the machine were suspended (a monotonic clock
    /// does not count a suspension): its lease expires on etcd while its campaign waits.
    /// Used to show that the phantom-leadership check alone refuses the campaign's success.
    /// Never use it otherwise.
    #[doc(hidden)]
    pub fn pause_lease_for_test(&self, on: bool) {
        self.hooks.paused.store(on, Ordering::SeqCst);
    }
}

impl RunningElection for EtcdElection {
    fn shutdown(self: Box<Self>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            let outcome = EtcdElection::shutdown(*self).await;
            tracing::info!(?outcome, "etcd backend stopped");
        })
    }
}

/// etcd as the store that decides: what the node runtime uses with
/// [`Backend::Etcd`](crate::Backend::Etcd).
impl ExternalElection for EtcdConfig {
    fn identity(&self) -> ElectionIdentity {
        ElectionIdentity::new(
            "etcd",
            self.election.clone(),
            LeaseTiming::new(self.ttl, self.drift_ppm(), self.margin),
        )
    }

    fn validate(&self) -> Result<(), BoxError> {
        EtcdConfig::validate(self).map_err(Into::into)
    }

    fn start(&self, me: LeaderValue, campaign: bool) -> Result<Started, BoxError> {
        let (election, events) = EtcdElection::launch(self.clone(), me, campaign)?;
        Ok(Started::new(events, Box::new(election)))
    }
}

impl Drop for EtcdElection {
    fn drop(&mut self) {
        if let Some(h) = self.campaigner.take() {
            h.abort();
        }
        if let Some(h) = self.observer.take() {
            h.abort();
        }
    }
}
