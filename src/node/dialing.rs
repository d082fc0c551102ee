//! Opening connections: the dial tasks this node runs to its peers, and the admission of
//! inbound connections (the accept loop itself is in `accept`). The rules (who dials, backoff,
//! when a peer is unreachable, who is admitted) are in `transport::peers`; this file only runs
//! them.

use std::time::Duration;

use bytes::BytesMut;
use rand::Rng;
use tokio::time::Instant;
use tracing::debug;

use super::actor::NodeMsg;
use super::state::NodeState;
use crate::behaviour::Behaviour;
use crate::transport::peers::{self, Admission, DialResult, Existing};
use crate::transport::BoxStream;
use crate::types::NodeId;
use crate::wire::handshake::{self, HandshakeError, Refusal};

/// How a dial task ended.
pub(crate) enum DialOutcome {
    /// Could not open a connection to `addr` at all.
    Unreachable {
        addr: String,
        source: std::io::Error,
    },
    /// The peer refused the handshake, we refused it, or it failed. (Boxed: this outcome
    /// travels in a node message, which every call also moves; see `NodeMsg`.)
    Failed(Box<HandshakeError>),
    /// The peer asked us to wait for its dial (we are the larger id).
    CallBackRequested,
    /// Handshake done: the connection is ours.
    Connected {
        incarnation: u64,
        stream: BoxStream,
        read_buf: BytesMut,
    },
}

/// Why a dial failed, kept typed until a line is needed.
enum Failure {
    Unreachable {
        addr: String,
        source: std::io::Error,
    },
    Refused(Box<HandshakeError>),
}

impl Failure {
    /// Whether the two nodes are configured apart (shown in the view as a refusal).
    fn is_misconfiguration(&self) -> bool {
        match self {
            Failure::Unreachable { .. } => false,
            Failure::Refused(e) => {
                e.refusal().is_some_and(Refusal::is_misconfiguration)
                    || crate::transport::tls::is_tls_failure(e)
            }
        }
    }

    /// The line an operator reads.
    fn line(&self, to: &str, parts: &handshake::ConfigParts) -> String {
        match self {
            Failure::Unreachable { addr, source } => {
                format!(
                    "cannot reach {to}: connecting to {addr} failed: {source} (will keep trying)"
                )
            }
            Failure::Refused(e) => e.explain(to, parts),
        }
    }
}

impl<B: Behaviour> NodeState<B> {
    /// Starts one dial of `peer` after `delay`, unless connected or dialing already. Lower ids
    /// dial higher ids; a higher id's dial only asks the lower one to dial back.
    pub(super) fn dial(&mut self, peer: NodeId, delay: Duration) {
        if self.stopping {
            return;
        }
        self.order_peer(peer);
        let p = &mut self.peers[peer.index()];
        if p.conn.is_some() || p.dial.dialing() {
            return;
        }
        let gen = p.dial.start(Instant::now().into_std(), delay);
        let myself = self.myself.clone();
        let connector = self.connector.clone();
        let hs = self.hs.clone();
        let name = p.label.clone();
        let addr = self.cfg.dial_addr(peer);
        // Boxed, as the accept loop's handshakes are: the future is about 1.6 KiB.
        p.dialer = Some(tokio::spawn(Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let outcome = match connector.connect(addr.clone()).await {
                Err(source) => DialOutcome::Unreachable { addr, source },
                Ok(stream) => match handshake::dial(stream, &hs, &name)
                    .await
                    .and_then(|ok| crate::transport::tls::verified(ok, &name))
                {
                    Ok(ok) => DialOutcome::Connected {
                        incarnation: ok.peer.incarnation,
                        stream: ok.stream,
                        read_buf: ok.read_buf,
                    },
                    Err(HandshakeError::Refused(Refusal::CallBack)) => {
                        DialOutcome::CallBackRequested
                    }
                    Err(e) => DialOutcome::Failed(Box::new(e)),
                },
            };
            let _ = myself.cast(NodeMsg::DialDone { peer, gen, outcome });
        })));
    }

    /// A dial of `peer` (generation `gen`) ended.
    pub(super) fn dial_done(&mut self, peer: NodeId, gen: u64, outcome: DialOutcome) {
        if !self.peers[peer.index()].dial.is_current(gen) {
            // A dial we abandoned finished anyway: ignore its result (dropping a connection
            // it made closes it).
            return;
        }
        self.peers[peer.index()].dialer = None;
        let (result, failure) = match outcome {
            DialOutcome::Connected {
                incarnation,
                stream,
                read_buf,
            } => {
                if self.peers[peer.index()].conn.is_some() {
                    // Only lower ids dial, so this is a reconnect racing a close.
                    self.drop_conn(peer, "replaced by a new connection");
                }
                self.peers[peer.index()]
                    .dial
                    .finished(DialResult::Connected, 0.0);
                self.refusals.connected(self.cfg.members().name(peer));
                self.install(peer, incarnation, stream, read_buf);
                return;
            }
            DialOutcome::CallBackRequested => (DialResult::CallBack, None),
            DialOutcome::Unreachable { addr, source } => (
                DialResult::Unreachable,
                Some(Failure::Unreachable { addr, source }),
            ),
            DialOutcome::Failed(e) => (DialResult::Refused, Some(Failure::Refused(e))),
        };
        let jitter = self.rng.random::<f64>();
        let after = self.peers[peer.index()].dial.finished(result, jitter);
        if let Some(failure) = failure {
            // The line is made only when it is shown: a peer that is down is dialed again
            // and again, and each failure would otherwise format it for nothing.
            let to = self.peers[peer.index()].label.clone();
            let misconfigured = failure.is_misconfiguration();
            if after.warn || misconfigured {
                let line = failure.line(&to, &self.hs.parts);
                if after.warn {
                    // Loudly, but once: then a count at most every 30 s.
                    self.refusals.warn(&to, &line);
                } else {
                    debug!(node = %self.name(self.me()), peer = %to, "dial failed: {line}");
                }
                if misconfigured {
                    self.refusals.refused(self.cfg.members().name(peer), &line);
                }
            } else {
                debug!(node = %self.name(self.me()), peer = %to, "dial failed: {}",
                    failure.line(&to, &self.hs.parts));
            }
        }
        if after.unreachable {
            self.engine
                .handle_peer_unreachable(Instant::now().into_std(), peer);
            self.dirty = true;
        }
        if let Some(d) = after.redial {
            self.dial(peer, d);
        }
    }

    /// An authenticated inbound handshake from `peer` asks to be admitted: the connection id
    /// to use, or why not.
    pub(super) fn admit(&mut self, peer: NodeId, incarnation: u64) -> Result<u64, Refusal> {
        // etcd mode: `peer` may have just been added to the member table by the accept task.
        self.sync_members();
        if peer.index() >= self.peers.len() {
            return Err(Refusal::Other("not a member".into()));
        }
        let we_dial = self.order_peer(peer);
        let now = Instant::now();
        let since = crate::transport::liveness::look_since(
            self.last_tick.into_std(),
            now.into_std(),
            self.cfg.heartbeat,
        );
        let hb = self.cfg.heartbeat;
        let me = self.me();
        let p = &mut self.peers[peer.index()];
        let existing = p.conn.as_mut().map(|c| {
            c.refresh(tokio::time::Instant::from_std(since));
            Existing {
                incarnation: c.incarnation,
                healthy: c.live.heard_within(now.into_std(), hb),
            }
        });
        match peers::admit(
            me,
            peer,
            we_dial,
            incarnation,
            existing,
            p.reserved.is_some(),
        ) {
            Admission::RefuseSelf => Err(Refusal::Duplicate(self.name(self.me()).to_string())),
            Admission::RefuseDuplicate => Err(Refusal::Duplicate(self.name(peer).to_string())),
            Admission::RefuseBusy => Err(Refusal::Other(
                "a handshake with this node is in progress".into(),
            )),
            Admission::CallBack {
                drop_existing,
                dial,
            } => {
                if drop_existing {
                    // It restarted: the connection we hold is dead.
                    self.drop_conn(peer, "peer restarted");
                }
                if dial {
                    let p = &mut self.peers[peer.index()];
                    if p.dial.asked_to_dial(now.into_std()) {
                        // Asleep in its backoff: dial now instead.
                        if let Some(d) = p.dialer.take() {
                            d.abort();
                        }
                        p.dial.abandon();
                    }
                    self.dial(peer, Duration::ZERO);
                }
                Err(Refusal::CallBack)
            }
            Admission::Admit { drop_existing } => {
                if drop_existing {
                    // The peer restarted or redialed: its old connection is dead.
                    self.drop_conn(peer, "peer reconnected");
                }
                let id = self.next_conn;
                self.next_conn += 1;
                self.peers[peer.index()].reserved = Some((id, incarnation));
                Ok(id)
            }
        }
    }

    /// An admitted inbound handshake completed (`Some`) or failed (`None`).
    pub(super) fn admitted(&mut self, peer: NodeId, conn: u64, done: Option<Connected>) {
        let p = &mut self.peers[peer.index()];
        if p.reserved.map(|r| r.0) != Some(conn) {
            return;
        }
        p.reserved = None;
        if let Some(c) = done {
            self.refusals.connected(self.cfg.members().name(peer));
            self.install(peer, c.incarnation, c.stream, c.read_buf);
        }
    }
}

/// A completed inbound handshake.
pub(crate) struct Connected {
    pub incarnation: u64,
    pub stream: BoxStream,
    pub read_buf: BytesMut,
}
