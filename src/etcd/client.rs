//! Connecting to etcd, and the small async helpers the campaigner and the observer share.
//!
//! Why no client-wide request timeout: `etcd-client` can put one timeout on every request,
//! but a campaign is a request that *should* wait while another node leads, and the observe
//! stream only answers once there is a leader. So the client has none, and each ordinary
//! request is wrapped in [`request`] with the configured timeout instead. HTTP/2 pings find
//! a dead connection that no request is using; they are sent only while a stream is open
//! and no more often than etcd's default enforcement (5 s) permits.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, WatchResponse, WatchStream};
use tokio::time::Instant;

use super::config::EtcdConfig;
use super::error::{EtcdError, EtcdOp};

/// How often HTTP/2 pings check an open connection (etcd's server refuses pings more often
/// than every 5 s by default).
pub(super) const HTTP2_PING_INTERVAL: Duration = Duration::from_secs(10);

/// Consecutive failed attempts after which a task drops its client and connects afresh. A
/// client is otherwise kept: its balancer learns which endpoints are down, and it reconnects
/// to a restarted etcd by itself.
pub(super) const RECONNECT_AFTER: u32 = 3;

/// A boxed future the loops keep across `select!` iterations.
pub(super) type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A client for `cfg`'s endpoints. Connections are made lazily, by the first request.
pub(super) async fn connect(cfg: &EtcdConfig) -> Result<Client, EtcdError> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(cfg.connect_timeout)
        .with_keep_alive(HTTP2_PING_INTERVAL, cfg.request_timeout)
        .with_keep_alive_while_idle(false);
    match tokio::time::timeout(
        cfg.connect_timeout,
        Client::connect(&cfg.endpoints, Some(opts)),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(EtcdError::client(EtcdOp::Connect, e)),
        Err(_) => Err(EtcdError::Timeout {
            op: EtcdOp::Connect,
            after: cfg.connect_timeout,
        }),
    }
}

/// Runs one request with a timeout, mapping both failures to [`EtcdError`].
pub(super) async fn request<T>(
    op: EtcdOp,
    after: Duration,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, EtcdError> {
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(EtcdError::client(op, e)),
        Err(_) => Err(EtcdError::Timeout { op, after }),
    }
}

/// Sleeps until `at`, or forever if `None` (for an optional `select!` branch).
pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Awaits the stored future if there is one, else never resolves. The future stays stored
/// (and keeps its progress) when another `select!` branch wins; the caller clears it once
/// this resolves.
pub(super) async fn poll_stored<T>(fut: &mut Option<Pending<T>>) -> T {
    match fut.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// A uniform random number in `0.0 .. 1.0` for backoff jitter.
pub(super) fn jitter() -> f64 {
    rand::random::<f64>()
}

/// Converts an etcd revision to the fencing token's type (revisions are positive; anything
/// else is refused).
pub(super) fn revision(rev: i64) -> Option<u64> {
    u64::try_from(rev).ok().filter(|r| *r > 0)
}

/// The next message of an optional watch stream (never resolves without one).
pub(super) async fn next_watch(
    w: &mut Option<WatchStream>,
) -> Result<Option<WatchResponse>, etcd_client::Error> {
    match w.as_mut() {
        Some(w) => w.message().await,
        None => std::future::pending().await,
    }
}

/// Whether a watch response reports a deletion.
pub(super) fn deletes(resp: &WatchResponse) -> bool {
    resp.events()
        .iter()
        .any(|e| e.event_type() == EventType::Delete)
}
