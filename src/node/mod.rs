//! The node runtime: what runs the election engine, the behaviour and the connections of one
//! named node.
//!
//! One ractor actor per node (`actor`) owns all of its state (`state`) and is the only place
//! that reads the clock. Everything that happens to a node is an *input* to that actor — a
//! call from a handle, a batch of frames from a peer, a finished dial, a tick of the timer —
//! and every input ends in one drain of the engine (`driver`), which applies its outputs,
//! runs the leadership callbacks, and publishes the view (`view`) and the direct-call route.
//!
//! The decisions are pure state fed `now`, unit-tested like the engine: the call table and the
//! mapping from a leader's answer to a call's outcome (`calls`), broadcast numbering and held
//! casts (`broadcast`), and, in `transport`, who dials whom and who is admitted (`peers`) and
//! heartbeats and failure detection (`liveness`). The async shell moves bytes and runs
//! callbacks: connections and the outbox policy (`conns`), dials and the accept loop
//! (`dialing`, `accept`), frames from peers (`inbound`), calls and casts to and from the leader
//! (`routing`), and follower calls that skip the actor (`fastpath`). `handle` is the public
//! [`LeaderHandle`]; `storage` the persisted term and the audit trail.
//!
//! Leadership as the user's code sees it: `leader_state` (the published [`LeaderState`]),
//! `lease` (whether this node may act as leader now), `clock` (the lease clock, which counts
//! suspend) and `guard` (the [`LeaderGuard`]). `metrics` records what a node does through the
//! `metrics` facade.
//!
//! Nodes never use ractor's global registry: several nodes run in one process.

mod accept;
mod actor;
mod backend;
mod broadcast;
mod calls;
mod clock;
mod conns;
mod dialing;
mod driver;
mod fastpath;
mod guard;
mod handle;
mod inbound;
mod leader_state;
mod lease;
mod mailbox;
mod metrics;
mod observe;
mod refusals;
mod routing;
mod state;
mod storage;
mod view;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ractor::Actor;
use tokio::sync::watch;

use crate::behaviour::Behaviour;
use crate::config::Config;
use crate::error::StartError;
use crate::transport::{Connector, Listener, TcpConnector, TcpListener};

use actor::{BackendFailed, InitFailed, NodeActor, NodeArgs, MAX_CALLS};
use clock::LeaseClock;
use fastpath::FastPath;
use guard::GuardParts;
pub use guard::LeaderGuard;
use handle::HandleParts;
pub use handle::{LeaderHandle, NodeStats};
pub use leader_state::LeaderState;
use mailbox::Mailbox;
pub use observe::{
    ModeStatus, NoQuorumStatus, NodeStatus, ObserveError, Observer, RefusedPeer, StateKind,
    StatusWatch,
};
use storage::{AuditLog, FileTermStore};
pub use view::ClusterView;

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Starts a node: binds its listener on the address in its name (or
    /// [`ConfigBuilder::listen`](crate::ConfigBuilder::listen)), connects to its peers and
    /// joins the election.
    pub async fn start<B: Behaviour>(
        config: Config,
        behaviour: B,
    ) -> Result<LeaderHandle<B>, StartError> {
        let addr = config.listen_addr();
        let l = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: addr.clone(),
                source,
            })?;
        Self::start_with(config, behaviour, TcpListener(l), TcpConnector).await
    }

    /// Starts a node on a listener bound by the caller (e.g. on `127.0.0.1:0`, to learn the
    /// port before naming the nodes).
    pub async fn start_with_listener<B: Behaviour>(
        config: Config,
        behaviour: B,
        listener: tokio::net::TcpListener,
    ) -> Result<LeaderHandle<B>, StartError> {
        Self::start_with(config, behaviour, TcpListener(listener), TcpConnector).await
    }

    /// Starts a node on any transport (a simulated network, a fault proxy, ...).
    pub async fn start_with<B, L, C>(
        config: Config,
        behaviour: B,
        listener: L,
        connector: C,
    ) -> Result<LeaderHandle<B>, StartError>
    where
        B: Behaviour,
        L: Listener,
        C: Connector,
    {
        let config = Arc::new(config);
        let (listener, connector) =
            crate::transport::tls::wrap(&config, Box::new(listener), Arc::new(connector));
        // Storage first, so that its errors keep their `io::ErrorKind`.
        let data_dir_error = |source| StartError::DataDir {
            path: config
                .data_dir()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
            source,
        };
        let (terms, initial_term) =
            FileTermStore::open(config.data_dir()).map_err(data_dir_error)?;
        let audit = AuditLog::open(config.data_dir()).map_err(data_dir_error)?;
        let (view_tx, view_rx) = watch::channel(ClusterView::starting(&config));
        let (state_tx, state_rx) = watch::channel(LeaderState::Electing);
        let (losses_tx, losses_rx) = watch::channel(leader_state::Losses::new());
        let clock = Arc::new(LeaseClock::new());
        let parts = HandleParts {
            view: view_rx,
            guards: GuardParts {
                state: state_rx,
                losses: losses_rx,
                clock: clock.clone(),
                quorum: config.quorum_params().is_some(),
            },
            config: config.clone(),
            local_addr: listener.local_addr(),
            call_ids: Arc::new(AtomicU64::new(1)),
            fast: Arc::new(FastPath::new(MAX_CALLS)),
            mailbox: Mailbox::new(config.mailbox),
            metrics: Arc::new(metrics::CallMetrics::new(config.me())),
        };
        let args = NodeArgs {
            parts: parts.clone(),
            config: config.clone(),
            behaviour,
            listener,
            connector,
            view_tx,
            state_tx,
            losses_tx,
            clock,
            terms: Box::new(terms),
            initial_term,
            audit,
        };
        let (actor, join) = Actor::spawn(None, NodeActor::<B>::new(), args)
            .await
            .map_err(|e| match e {
                ractor::SpawnErr::StartupFailed(inner) => match inner.downcast::<InitFailed>() {
                    Ok(init) => StartError::Init { source: init.0 },
                    Err(other) => match other.downcast::<BackendFailed>() {
                        Ok(b) => StartError::Backend { source: b.0 },
                        Err(other) => StartError::Spawn { source: other },
                    },
                },
                other => StartError::Spawn {
                    source: Box::new(other),
                },
            })?;
        Ok(LeaderHandle::new(actor, parts, Some(join)))
    }
}
