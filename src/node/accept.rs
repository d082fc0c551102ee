//! The accept loop: every inbound connection runs the handshake in its own task, and an
//! authenticated one asks the node's actor to be admitted (`dialing::admit`).
//!
//! Why it never waits: the cluster port is reachable by anyone who can reach the host, so a
//! loop that stopped accepting while handshakes are pending would let a few hundred idle
//! connections keep the members out. Every connection is accepted at once; the pending
//! (unauthenticated) handshakes are capped per source host and in total, and when a cap is
//! exceeded the oldest pending one of the lowest class is shed (its task aborted, its socket
//! closed): the rules are in `accept/budget.rs`. A connection must also deliver its `Hello`
//! within a short deadline (`budget::hello_deadline`, 200 ms by default), far less than the
//! whole handshake's timeout.
//!
//! An observer (see `observe`) goes through the same loop and the same budget: until it has
//! proven the cookie it is in the lowest class, shed before any member's handshake. Once
//! authenticated it takes one of [`MAX_OBSERVERS`] session slots (or is refused with
//! `Refusal::ObserverLimit`), and its session runs in its handshake's task, aborted with the
//! pending handshakes when the node stops; it never reaches the actor's peer table.
//!
//! In etcd mode a node need not be listed: a `Hello` from a name this node has not met is
//! treated like an observer's until it proves the cookie (lowest class, nothing recorded);
//! then it is added to the member table (`Members::join`, refused with
//! `Refusal::MemberLimit` when the table is full) and admitted as any member.

mod budget;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use self::budget::{hello_deadline, host_of, Budget, Limits};
use super::actor::NodeMsg;
use super::dialing::Connected;
use super::metrics;
use super::observe::{self, MAX_OBSERVERS};
use super::refusals::Refusals;
use crate::behaviour::Behaviour;
use crate::config::{Config, Members};
use crate::transport::{BoxStream, Listener};
use crate::types::{NodeId, NodeName};
use crate::wire::handshake::{self, HandshakeConfig, HandshakeError, Refusal};

/// How often, at most, the loop reports (at WARN) that it sheds connections.
const SHED_REPORT_EVERY: Duration = Duration::from_secs(10);

/// The pending handshakes: the budget's bookkeeping and the tasks to abort when shed; and the
/// observer sessions, to abort when the node stops.
struct Pending {
    budget: Budget,
    tasks: HashMap<u64, AbortHandle>,
    sessions: HashMap<u64, AbortHandle>,
    /// Connections shed since the last report.
    shed: u64,
}

type Shared = Arc<Mutex<Pending>>;

impl Pending {
    /// Takes the tasks of the `ids` the budget shed (to abort once the lock is released).
    fn take(&mut self, ids: Vec<u64>) -> Vec<AbortHandle> {
        self.shed += ids.len() as u64;
        ids.into_iter()
            .filter_map(|id| self.tasks.remove(&id))
            .collect()
    }
}

fn lock(p: &Shared) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn abort(tasks: Vec<AbortHandle>) {
    for t in tasks {
        t.abort();
    }
}

/// Removes a handshake from the pending set when its task ends (or is aborted).
struct Leave(Shared, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        let mut p = lock(&self.0);
        p.budget.remove(self.1);
        p.tasks.remove(&self.1);
        p.sessions.remove(&self.1);
    }
}

/// Aborts every pending handshake when the accept loop ends (the node stops).
struct AbortAll(Shared);

impl Drop for AbortAll {
    fn drop(&mut self) {
        let mut p = lock(&self.0);
        let sessions: Vec<AbortHandle> = p.sessions.drain().map(|(_, t)| t).collect();
        let tasks: Vec<AbortHandle> = p.tasks.drain().map(|(_, t)| t).chain(sessions).collect();
        drop(p);
        abort(tasks);
    }
}

/// The hosts of the members' addresses (their connections get a budget of their own). Only
/// addresses are compared, names are not resolved: a member configured by host name counts
/// as any other host.
fn member_hosts(config: &Config) -> Vec<String> {
    let m = config.members();
    m.all()
        .iter()
        .filter(|n| *n != config.me())
        .filter_map(|n| m.id(n))
        .map(|id| host_of(&config.dial_addr(id)).to_string())
        .collect()
}

/// The id of the member called `name`, once it has proven the cookie: in etcd mode a node met
/// for the first time is added to the member table (the actor takes it in on `Admit`), or
/// refused when the table is full.
fn join(members: &Members, name: &str) -> Result<Option<NodeId>, Refusal> {
    let Ok(name) = name.parse::<NodeName>() else {
        return Ok(None);
    };
    members
        .join(&name)
        .map_err(|e| Refusal::MemberLimit { limit: e.limit })
}

/// The accept loop: takes every connection at once and runs its handshake in a task; sheds
/// pending handshakes beyond the budget (see the module doc).
pub(super) async fn accept_loop<B: Behaviour>(
    mut listener: Box<dyn Listener>,
    myself: ActorRef<NodeMsg<B>>,
    hs: Arc<HandshakeConfig>,
    config: Arc<Config>,
    refused: Arc<AtomicU64>,
    refusals: Arc<Refusals>,
) {
    let pending: Shared = Arc::new(Mutex::new(Pending {
        budget: Budget::new(Limits::DEFAULT, member_hosts(&config)),
        tasks: HashMap::new(),
        sessions: HashMap::new(),
        shed: 0,
    }));
    let _abort_all = AbortAll(pending.clone());
    let hello = hello_deadline(config.heartbeat(), hs.timeout);
    let ctx = Arc::new(Ctx {
        myself,
        hs: hs.clone(),
        config: config.clone(),
        refused: refused.clone(),
        refusals,
        observers: Arc::new(Semaphore::new(MAX_OBSERVERS)),
    });
    let mut next_id = 0u64;
    let mut last_report: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                next_id += 1;
                let id = next_id;
                let now = Instant::now();
                let shed = {
                    let mut p = lock(&pending);
                    let ids = p.budget.arrived(id, &from, now.into_std());
                    p.take(ids)
                };
                abort(shed);
                // Boxed: the handshake's future is about 4 KiB, which spawning would
                // otherwise copy several times over.
                let task = tokio::spawn(Box::pin(accept_one(
                    stream,
                    from,
                    Admission {
                        id,
                        pending: pending.clone(),
                        hello,
                    },
                    ctx.clone(),
                )));
                let mut p = lock(&pending);
                // Unless it already ended (or was shed), it can be shed from now on.
                if p.budget.contains(id) {
                    p.tasks.insert(id, task.abort_handle());
                }
                if p.shed > 0 && last_report.is_none_or(|t| now - t >= SHED_REPORT_EVERY) {
                    refused.fetch_add(p.shed, Ordering::Relaxed);
                    metrics::handshakes_refused(config.me(), "shed", p.shed);
                    warn!(
                        node = %config.me(),
                        shed = p.shed,
                        pending = p.budget.len(),
                        "too many unauthenticated inbound connections: shed the oldest \
                         (is the cluster port exposed? see the guide, \"Operating\")"
                    );
                    p.shed = 0;
                    last_report = Some(now);
                }
            }
            Err(e) => {
                // Out of file descriptors, most likely: free one by shedding the oldest pending
                // handshake, and let the others progress a little.
                let shed = {
                    let mut p = lock(&pending);
                    let ids = p.budget.shed_one().into_iter().collect();
                    p.take(ids)
                };
                abort(shed);
                warn!(node = %config.me(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A handshake's place in the pending set.
struct Admission {
    id: u64,
    pending: Shared,
    hello: Duration,
}

/// What every handshake task of a node shares.
struct Ctx<B: Behaviour> {
    myself: ActorRef<NodeMsg<B>>,
    hs: Arc<HandshakeConfig>,
    config: Arc<Config>,
    refused: Arc<AtomicU64>,
    refusals: Arc<Refusals>,
    /// One permit per observer session.
    observers: Arc<Semaphore>,
}

async fn accept_one<B: Behaviour>(
    stream: BoxStream,
    from: String,
    slot: Admission,
    ctx: Arc<Ctx<B>>,
) {
    let Ctx {
        myself,
        hs,
        config,
        refused,
        refusals,
        observers,
    } = &*ctx;
    let _leave = Leave(slot.pending.clone(), slot.id);
    let members = config.members();
    let admitted: std::sync::Mutex<Option<(NodeId, u64)>> = std::sync::Mutex::new(None);
    // Set when the dialer's `Hello` passed the checks made before any MAC and named a member.
    let hello_in = AtomicBool::new(false);
    // The member the dialer claims to be (unauthenticated until the MAC checks), for logs.
    let claimed: std::sync::Mutex<Option<NodeId>> = std::sync::Mutex::new(None);
    // Set when the opening was an observer's (with its label): it is never a member.
    let observer: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let session: std::sync::Mutex<Option<OwnedSemaphorePermit>> = std::sync::Mutex::new(None);
    // Its TLS certificate (when TLS is on), checked against the name it proves.
    let tls_peer = crate::transport::tls::peer_of(&*stream);
    let handshake = handshake::accept_with_observers(
        stream,
        hs,
        |name| {
            let id = members.id_of_str(name);
            if let Ok(mut c) = claimed.lock() {
                *c = id;
            }
            // etcd mode: any well-formed name may be a member (one that proves the cookie is
            // added to the table below, not before). It stays in the lowest class until then.
            if id.is_none() && members.is_growable() {
                let ok = name.parse::<NodeName>().is_ok();
                if ok {
                    // As for a member: the rest of its exchange has the whole handshake
                    // timeout (it stays in the lowest class: it is not named to the budget).
                    hello_in.store(true, Ordering::Release);
                }
                return ok;
            }
            let member = id.is_some();
            if member && !hello_in.swap(true, Ordering::AcqRel) {
                let shed = {
                    let mut p = lock(&slot.pending);
                    let ids = p.budget.named(slot.id, name);
                    p.take(ids)
                };
                abort(shed);
            }
            member
        },
        |label| {
            // Past the checks made before any MAC: the rest of its exchange has the whole
            // handshake timeout, as a member's has. It stays in the lowest class.
            hello_in.store(true, Ordering::Release);
            if let Ok(mut o) = observer.lock() {
                *o = Some(label.to_owned());
            }
            true
        },
        |hello| {
            let myself = myself.clone();
            let admitted = &admitted;
            let pending = &slot.pending;
            let is_observer = observer.lock().ok().is_some_and(|o| o.is_some());
            let session = &session;
            let tls_peer = &tls_peer;
            async move {
                if is_observer {
                    let permit = observers.clone().try_acquire_owned().map_err(|_| {
                        Refusal::ObserverLimit {
                            limit: MAX_OBSERVERS as u32,
                        }
                    })?;
                    let mut p = lock(pending);
                    if !p.budget.authenticated(slot.id) {
                        return Err(Refusal::Other("too many pending connections".into()));
                    }
                    // From now on a session: never shed, aborted when the node stops.
                    if let Some(t) = p.tasks.remove(&slot.id) {
                        p.sessions.insert(slot.id, t);
                    }
                    if let Ok(mut s) = session.lock() {
                        *s = Some(permit);
                    }
                    return Ok(());
                }
                let Some(peer) = join(members, &hello.name)? else {
                    return Err(Refusal::Unknown(hello.name));
                };
                if let Some(r) = crate::transport::tls::refuse_claim(tls_peer.as_ref(), &hello.name)
                {
                    return Err(r);
                }
                // It proved the cookie: it is no longer shed, unless it already was.
                let still_pending = {
                    let mut p = lock(pending);
                    p.tasks.remove(&slot.id);
                    p.budget.authenticated(slot.id)
                };
                if !still_pending {
                    return Err(Refusal::Other("too many pending connections".into()));
                }
                let (tx, rx) = oneshot::channel();
                myself
                    .cast(NodeMsg::Admit {
                        peer,
                        incarnation: hello.incarnation,
                        reply: tx,
                    })
                    .map_err(|_| Refusal::ShuttingDown)?;
                let conn = rx.await.map_err(|_| Refusal::ShuttingDown)??;
                if let Ok(mut a) = admitted.lock() {
                    *a = Some((peer, conn));
                }
                Ok(())
            }
        },
    );
    // The `Hello` must be in within `slot.hello`; the rest of the exchange has the whole
    // handshake timeout.
    let hello_timer = async {
        tokio::time::sleep(slot.hello).await;
        if hello_in.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        r = handshake => r,
        () = hello_timer => Err(HandshakeError::Timeout),
    };
    let admitted = admitted.lock().ok().and_then(|a| *a);
    let observer = observer.lock().ok().and_then(|mut o| o.take());
    let ip = from.rsplit_once(':').map_or(&*from, |(ip, _)| ip);
    let permit = session.lock().ok().and_then(|mut s| s.take());
    if let (Some(label), Some(permit)) = (&observer, permit) {
        // An admitted observer: its session runs here, holding its slot.
        let who = format!("observer {label:?} at {ip}");
        match result {
            Ok(ok) => observe::run(ok, myself.clone(), &config.me().to_string(), &who).await,
            Err(e) => debug!(node = %config.me(), observer = %who, reason = %e,
                "observer handshake failed after admission"),
        }
        drop(permit);
        return;
    }
    match (result, admitted) {
        (Ok(ok), Some((peer, conn))) => {
            let _ = myself.cast(NodeMsg::Admitted {
                peer,
                conn,
                done: Some(Connected {
                    incarnation: ok.peer.incarnation,
                    stream: ok.stream,
                    read_buf: ok.read_buf,
                }),
            });
        }
        (Ok(_), None) => {}
        (Err(e), admitted) => {
            if let Some((peer, conn)) = admitted {
                let _ = myself.cast(NodeMsg::Admitted {
                    peer,
                    conn,
                    done: None,
                });
            }
            match &e {
                HandshakeError::Rejected(Refusal::CallBack) => {
                    debug!(node = %config.me(), %from, "peer asked us to dial it")
                }
                // What a flood (or a port scanner) produces: silence, garbage, a close. Not
                // worth a line each.
                HandshakeError::Timeout
                | HandshakeError::Closed
                | HandshakeError::Io(_)
                | HandshakeError::Codec(_)
                | HandshakeError::Protocol(_)
                    if admitted.is_none() && !crate::transport::tls::is_tls_failure(&e) =>
                {
                    refused.fetch_add(1, Ordering::Relaxed);
                    metrics::handshakes_refused(config.me(), metrics::refusal_label(&e), 1);
                    debug!(node = %config.me(), %from, reason = %e, "inbound connection dropped")
                }
                _ => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    metrics::handshakes_refused(config.me(), metrics::refusal_label(&e), 1);
                    let claimed = claimed.lock().ok().and_then(|c| *c);
                    let peer = claimed.map(|id| members.name(id));
                    // Named by the member it claims to be, else by its address without the
                    // port (which changes at every attempt, and would defeat the rate limit).
                    let who = match (peer, &observer) {
                        (Some(p), _) => p.to_string(),
                        (None, Some(label)) => format!("observer {label:?} at {ip}"),
                        (None, None) => ip.to_owned(),
                    };
                    let line = e.explain(&who, &hs.parts);
                    refusals.warn(&who, &line);
                    // Shown in the view only for a member not connected otherwise: the claim
                    // is not authenticated, and must not hide a working connection.
                    if let Some(p) = peer {
                        if (e.refusal().is_some_and(Refusal::is_misconfiguration)
                            || crate::transport::tls::is_tls_failure(&e))
                            && !refusals.is_alive(p)
                        {
                            refusals.refused(p, &line);
                        }
                    }
                }
            }
        }
    }
}
