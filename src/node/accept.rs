//! The accept loop: every inbound connection runs the handshake in its own task, and an
//! authenticated one asks the node's actor to be admitted (`dialing::admit`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::{oneshot, Semaphore};
use tracing::{debug, warn};

use super::actor::NodeMsg;
use super::dialing::Connected;
use super::refusals::Refusals;
use crate::behaviour::Behaviour;
use crate::config::Config;
use crate::transport::{BoxStream, Listener};
use crate::types::NodeId;
use crate::wire::handshake::{self, HandshakeConfig, HandshakeError, Refusal};

/// Concurrent inbound handshakes; more connections wait in the accept backlog.
const MAX_HANDSHAKES: usize = 64;

/// The accept loop: at most [`MAX_HANDSHAKES`] inbound handshakes at once.
pub(super) async fn accept_loop<B: Behaviour>(
    mut listener: Box<dyn Listener>,
    myself: ActorRef<NodeMsg<B>>,
    hs: Arc<HandshakeConfig>,
    config: Arc<Config>,
    refused: Arc<AtomicU64>,
    refusals: Arc<Refusals>,
) {
    let sem = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = sem.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, from)) => {
                let refused = refused.clone();
                let myself = myself.clone();
                let hs = hs.clone();
                let config = config.clone();
                let refusals = refusals.clone();
                tokio::spawn(async move {
                    accept_one(stream, from, myself, hs, config, refused, refusals).await;
                    drop(permit);
                });
            }
            Err(e) => {
                warn!(node = %config.me(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn accept_one<B: Behaviour>(
    stream: BoxStream,
    from: String,
    myself: ActorRef<NodeMsg<B>>,
    hs: Arc<HandshakeConfig>,
    config: Arc<Config>,
    refused: Arc<AtomicU64>,
    refusals: Arc<Refusals>,
) {
    let members = config.members();
    let admitted: std::sync::Mutex<Option<(NodeId, u64)>> = std::sync::Mutex::new(None);
    // The member the dialer claims to be (unauthenticated until the MAC checks), for logs.
    let claimed: std::sync::Mutex<Option<NodeId>> = std::sync::Mutex::new(None);
    let result = handshake::accept(
        stream,
        &hs,
        |name| {
            let id = members.id_of_str(name);
            if let Ok(mut c) = claimed.lock() {
                *c = id;
            }
            id.is_some()
        },
        |hello| {
            let myself = myself.clone();
            let admitted = &admitted;
            async move {
                let Some(peer) = members.id_of_str(&hello.name) else {
                    return Err(Refusal::Unknown(hello.name));
                };
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
    )
    .await;
    let admitted = admitted.lock().ok().and_then(|a| *a);
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
                _ => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    let claimed = claimed.lock().ok().and_then(|c| *c);
                    let peer = claimed.map(|id| members.name(id));
                    // Named by the member it claims to be, else by its address without the
                    // port (which changes at every attempt, and would defeat the rate limit).
                    let who = match peer {
                        Some(p) => p.to_string(),
                        None => from
                            .rsplit_once(':')
                            .map_or(&*from, |(ip, _)| ip)
                            .to_owned(),
                    };
                    let line = e.explain(&who, &hs.parts);
                    refusals.warn(&who, &line);
                    // Shown in the view only for a member not connected otherwise: the claim
                    // is not authenticated, and must not hide a working connection.
                    if let Some(p) = peer {
                        if e.refusal().is_some_and(Refusal::is_misconfiguration)
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
