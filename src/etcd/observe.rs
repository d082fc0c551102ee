//! The observer: how every node learns who leads, from etcd's `observe` stream.
//!
//! Why three pieces: `observe` streams each new leader, but (a) its response only starts
//! once there *is* a leader, so a one-off `leader` request at each (re)start says "no leader"
//! or who it is, and tells an unreachable etcd from an empty election; (b) it never says
//! "the leader is gone and nobody else campaigns", so the leader's key is watched for its
//! deletion ([`EtcdEvent::NoLeader`]); (c) it ends when etcd restarts or the watch breaks, so
//! it is re-created with a bounded, jittered backoff. A new `observe` message replaces the
//! key watch, so a deletion is never reported after the leader that followed it.
//!
//! The observer does not report this node's own value (the campaigner speaks for it), and
//! reports only changes: a re-created stream (an etcd member died, etcd restarted) that finds
//! the same leader says nothing, whatever `Unavailable` events came in between.

use std::time::Duration;

use etcd_client::{Client, KeyValue, ObserveStream, WatchOptions, WatchStream};
use tokio::sync::{mpsc, watch};

use super::backoff::Backoff;
use super::campaign::wait_shutdown;
use super::client::{
    connect, deletes, jitter, next_watch, poll_stored, request, revision, Pending, RECONNECT_AFTER,
};
use super::config::EtcdConfig;
use super::error::{EtcdError, EtcdOp};
use super::value::LeaderValue;
use super::EtcdEvent;

/// The error etcd's `leader` request returns for an election nobody holds.
const NO_LEADER: &str = "election: no leader";

/// What the observer last told the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Told {
    /// Nothing yet.
    Nothing,
    /// This leader key (key, create revision, value).
    Leader(Vec<u8>, i64, Vec<u8>),
    /// That nobody leads.
    NoLeader,
}

enum End {
    Shutdown,
    Retry(Option<EtcdError>),
}

/// The observer task's state (see the module docs).
pub(super) struct Observer {
    cfg: EtcdConfig,
    me: Vec<u8>,
    events: mpsc::Sender<EtcdEvent>,
    shutdown: watch::Receiver<bool>,
    backoff: Backoff,
    told: Told,
    watch: Option<WatchStream>,
    client: Option<Client>,
    failures: u32,
}

impl Observer {
    pub(super) fn new(
        cfg: EtcdConfig,
        me: Vec<u8>,
        events: mpsc::Sender<EtcdEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Observer {
            cfg,
            me,
            events,
            shutdown,
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(2)),
            told: Told::Nothing,
            watch: None,
            client: None,
            failures: 0,
        }
    }

    /// Runs until shutdown.
    pub(super) async fn run(mut self) {
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            match self.session().await {
                End::Shutdown => return,
                End::Retry(err) => {
                    self.watch = None;
                    if let Some(e) = err {
                        tracing::warn!(error = %e, kind = %e.kind(), "etcd observer: re-creating");
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
                        _ = wait_shutdown(&mut self.shutdown) => return,
                    }
                }
            }
        }
    }

    async fn emit(&mut self, ev: EtcdEvent) {
        tokio::select! {
            _ = self.events.send(ev) => {}
            _ = wait_shutdown(&mut self.shutdown) => {}
        }
    }

    /// One client and one `observe` stream, until it ends.
    async fn session(&mut self) -> End {
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
        if let Err(e) = self.ask_leader(&client).await {
            return End::Retry(Some(e));
        }
        let mut ec = client.election_client();
        let name = self.cfg.election.clone();
        let mut opening: Option<Pending<Result<ObserveStream, etcd_client::Error>>> =
            Some(Box::pin(async move { ec.observe(name).await }));
        let mut stream: Option<ObserveStream> = None;
        loop {
            tokio::select! {
                biased;
                _ = wait_shutdown(&mut self.shutdown) => return End::Shutdown,
                r = poll_stored(&mut opening) => {
                    opening = None;
                    match r {
                        Ok(s) => stream = Some(s),
                        Err(e) => return End::Retry(Some(EtcdError::client(EtcdOp::Observe, e))),
                    }
                }
                m = next_message(&mut stream) => match m {
                    Ok(Some(mut resp)) => {
                        self.backoff.reset();
                        self.failures = 0;
                        if let Some(kv) = resp.take_kv() {
                            let seen = kv.mod_revision();
                            self.leader(&client, kv, seen).await;
                        }
                    }
                    Ok(None) => {
                        tracing::debug!("etcd observer: the observe stream ended");
                        return End::Retry(None);
                    }
                    // A stream that worked and broke (a member died, etcd restarted) is
                    // re-created at once; only a failure to re-create it is reported.
                    Err(e) => {
                        tracing::debug!(error = %e, "etcd observer: the observe stream failed");
                        return End::Retry(None);
                    }
                },
                w = next_watch(&mut self.watch) => match w {
                    Ok(Some(resp)) if deletes(&resp) => {
                        // The leader's key is gone. Ask who leads now rather than wait for
                        // the observe stream, which etcd may deliver up to 100 ms later.
                        self.watch = None;
                        if let Err(e) = self.ask_leader(&client).await {
                            tracing::debug!(error = %e, "etcd observer: no answer after the leader's key went");
                            self.no_leader().await;
                        }
                    }
                    Ok(Some(resp)) if !resp.canceled() => {}
                    _ => self.watch = None,
                },
            }
        }
    }

    /// Asks etcd who leads now (the oldest key of the election) and reports it.
    async fn ask_leader(&mut self, client: &Client) -> Result<(), EtcdError> {
        let mut ec = client.election_client();
        let name = self.cfg.election.clone();
        match request(EtcdOp::Observe, self.cfg.request_timeout, ec.leader(name)).await {
            Ok(mut r) => match r.take_kv() {
                // A read: the key existed at the response's revision, so a watch from there
                // misses nothing (and, starting at the present, etcd serves it at once).
                Some(kv) => {
                    let seen = r
                        .header()
                        .map_or(0, |h| h.revision())
                        .max(kv.mod_revision());
                    self.leader(client, kv, seen).await
                }
                None => self.no_leader().await,
            },
            Err(EtcdError::Client {
                source: etcd_client::Error::GRpcStatus(s),
                ..
            }) if s.message().contains(NO_LEADER) => self.no_leader().await,
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// etcd named a leader, whose key existed at revision `seen`.
    async fn leader(&mut self, client: &Client, kv: KeyValue, seen: i64) {
        tracing::debug!(
            rev = kv.create_revision(),
            "etcd observer: etcd names a leader"
        );
        let (key, create, value) = (kv.key().to_vec(), kv.create_revision(), kv.value());
        let Some(rev) = revision(create) else {
            return;
        };
        let told = Told::Leader(key.clone(), create, value.to_vec());
        if told == self.told {
            if self.watch.is_none() && value != self.me.as_slice() {
                self.watch_key(client, &key, seen).await;
            }
            return;
        }
        self.told = told;
        if value == self.me.as_slice() {
            // This node's own key: the campaigner reports it (after its check) and notices
            // its deletion.
            self.watch = None;
            return;
        }
        let ev = match LeaderValue::decode(value) {
            Ok(leader) => EtcdEvent::Following { leader, rev },
            Err(e) => {
                tracing::warn!(error = %e, rev, "etcd: the election is held by a foreign value");
                EtcdEvent::ForeignLeader { rev }
            }
        };
        self.emit(ev).await;
        // From the revision seen on, so a deletion meanwhile is not missed.
        self.watch_key(client, &key, seen).await;
    }

    async fn no_leader(&mut self) {
        if self.told != Told::NoLeader {
            self.told = Told::NoLeader;
            self.emit(EtcdEvent::NoLeader).await;
        }
    }

    /// Watches `key` for its deletion after revision `seen`; without a watch, `NoLeader` is
    /// only learnt when the next leader appears (logged).
    async fn watch_key(&mut self, client: &Client, key: &[u8], seen: i64) {
        let mut wc = client.watch_client();
        let opts = WatchOptions::new().with_start_revision(seen.saturating_add(1));
        self.watch = match request(
            EtcdOp::Watch,
            self.cfg.request_timeout,
            wc.watch(key.to_vec(), Some(opts)),
        )
        .await
        {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::debug!(error = %e, "etcd observer: cannot watch the leader key");
                None
            }
        };
    }
}

async fn next_message(
    s: &mut Option<ObserveStream>,
) -> Result<Option<etcd_client::LeaderResponse>, etcd_client::Error> {
    match s.as_mut() {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}
