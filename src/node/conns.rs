//! Connections to peers: the reader and writer tasks of each, its liveness, and the outbox —
//! the one policy for a full send queue.
//!
//! **The outbox policy.** Each connection's send queue is bounded. A frame that finds it full
//! waits for room for up to half the failure timeout (a burst paces this node to the peer's
//! speed instead of losing the peer); a peer that has not taken a frame for that long is
//! disconnected, as one that has not sent a frame for the failure timeout is. Heartbeats are
//! only sent on an empty queue (queued frames prove us alive), and the goodbye of a stopping
//! node is best effort. Direct calls (`fastpath`) are queued by their callers, who wait for
//! room up to their own deadline.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tracing::{info, warn};

use super::actor::NodeMsg;
use super::inbound::direct_replies;
use super::state::NodeState;
use crate::behaviour::Behaviour;
use crate::transport::liveness::{look_since, Liveness, Verdict};
use crate::transport::peers::PeerDial;
use crate::transport::{self, BoxStream};
use crate::types::{NodeId, NodeName};
use crate::wire::codec::{self, FrameCodec};
use crate::wire::Msg;

/// Batches (of up to `transport::READ_BATCH` frames) a connection's reader may have queued at
/// the actor before it stops reading (TCP back-pressure then slows the sender).
pub(super) const INBOUND_WINDOW: usize = 256;

/// A live connection to a peer.
pub(super) struct Conn {
    pub id: u64,
    pub incarnation: u64,
    pub tx: mpsc::Sender<Bytes>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    pub live: Liveness,
    /// Batches the reader has received (some never reach the actor: replies to direct calls).
    recv_count: Arc<AtomicU64>,
}

impl Conn {
    /// Closes the connection: the writer flushes what is queued (for at most a second), the
    /// reader stops at once.
    fn close(self) {
        self.reader.abort();
        drop(self.tx);
        let mut writer = self.writer;
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_secs(1), &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
        });
    }

    /// Credits what the reader received since the actor last looked (at `since`).
    pub(super) fn refresh(&mut self, since: Instant) {
        self.live
            .refresh(self.recv_count.load(Ordering::Relaxed), since.into_std());
    }
}

/// Everything the node holds for one peer.
pub(super) struct Peer {
    pub conn: Option<Conn>,
    /// An inbound handshake admitted and finishing: (conn id, incarnation).
    pub reserved: Option<(u64, u64)>,
    pub dialer: Option<JoinHandle<()>>,
    pub dial: PeerDial,
    /// The peer's name as text (`name@host:port`), made once: every dial and every dial
    /// failure uses it, and formatting a `NodeName` allocates.
    pub label: Arc<str>,
}

impl Peer {
    pub(super) fn new(me: NodeId, peer: NodeId, name: &NodeName, now: Instant) -> Self {
        Peer {
            conn: None,
            reserved: None,
            dialer: None,
            dial: PeerDial::new(me, peer, now.into_std()),
            label: name.to_string().into(),
        }
    }

    /// Aborts every task at once (the node is gone).
    pub(super) fn abort(&mut self) {
        if let Some(d) = self.dialer.take() {
            d.abort();
        }
        if let Some(c) = self.conn.take() {
            c.reader.abort();
            c.writer.abort();
        }
    }

    /// Closes the connection (flushing it) and stops dialing.
    pub(super) fn close(&mut self) {
        if let Some(d) = self.dialer.take() {
            d.abort();
        }
        self.dial.abandon();
        if let Some(c) = self.conn.take() {
            c.close();
        }
    }
}

impl<B: Behaviour> NodeState<B> {
    /// Starts the reader and writer of a new connection to `peer` and tells the engine.
    pub(super) fn install(
        &mut self,
        peer: NodeId,
        incarnation: u64,
        stream: BoxStream,
        read_buf: BytesMut,
    ) {
        let id = self.next_conn;
        self.next_conn += 1;
        let (rd, wr) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel::<Bytes>(self.cfg.send_queue);
        // The size of the last batch read on this connection: the writer's load signal.
        let inbound = Arc::new(AtomicUsize::new(0));
        let load = inbound.clone();
        let writer = tokio::spawn(async move {
            let _ = transport::write_loop_with_load(wr, rx, Some(load)).await;
        });
        let frames = FramedRead::new(rd, FrameCodec::new(self.cfg.max_frame_len));
        let actor = self.myself.clone();
        let window = Arc::new(Semaphore::new(INBOUND_WINDOW));
        let recv_count = Arc::new(AtomicU64::new(0));
        let fast = self.fast.clone();
        let counter = recv_count.clone();
        let reader = tokio::spawn(async move {
            let end = transport::read_loop(frames, read_buf, |msgs| {
                counter.fetch_add(1, Ordering::Relaxed);
                inbound.store(msgs.len(), Ordering::Relaxed);
                let msgs = direct_replies(msgs, &fast, &window, id);
                let actor = actor.clone();
                let window = window.clone();
                async move {
                    if msgs.is_empty() {
                        return true;
                    }
                    let Ok(permit) = window.acquire_owned().await else {
                        return false;
                    };
                    actor
                        .cast(NodeMsg::Inbound {
                            peer,
                            conn: id,
                            msgs,
                            _permit: permit,
                        })
                        .is_ok()
                }
            })
            .await;
            let _ = actor.cast(NodeMsg::ConnClosed {
                peer,
                conn: id,
                reason: end.to_string(),
            });
        });
        let now = Instant::now();
        self.peers[peer.index()].conn = Some(Conn {
            id,
            incarnation,
            tx,
            reader,
            writer,
            live: Liveness::new(now.into_std()),
            recv_count,
        });
        info!(node = %self.name(self.me()), peer = %self.name(peer), "connected");
        self.engine.handle_peer_up(now.into_std(), peer);
        self.dirty = true;
        self.note_peers();
    }

    /// Closes the connection to `peer`, fails the calls sent over it and tells the engine
    /// (whose outputs the caller's drain applies).
    pub(super) fn drop_conn(&mut self, peer: NodeId, reason: &str) {
        let Some(c) = self.peers[peer.index()].conn.take() else {
            return;
        };
        let conn = c.id;
        c.close();
        self.note_peers();
        info!(node = %self.name(self.me()), peer = %self.name(peer), %reason, "disconnected");
        let now = Instant::now();
        self.fail_calls_to(peer);
        self.calls.forget_connection(peer, conn);
        self.engine.handle_peer_down(now.into_std(), peer);
        self.dirty = true;
        if !self.stopping {
            // Lower ids redial at once; higher ids ask to be dialed back.
            let delay = self.peers[peer.index()].dial.lost();
            self.dial(peer, delay);
        }
    }

    /// Whether `conn` is the current connection to `peer`.
    pub(super) fn is_current(&self, peer: NodeId, conn: u64) -> bool {
        self.peers[peer.index()]
            .conn
            .as_ref()
            .is_some_and(|c| c.id == conn)
    }

    /// Encodes and sends `msg` to `to` (see [`NodeState::push`]).
    pub(super) async fn send(&mut self, to: NodeId, msg: &Msg) {
        match codec::encode_frame(msg) {
            Ok(frame) => self.push(to, frame).await,
            Err(e) => warn!(node = %self.name(self.me()), error = %e, "cannot encode a message"),
        }
    }

    /// Queues `frame` to `to` under the outbox policy: when the queue is full, waits for room
    /// up to half the failure timeout, then disconnects the peer. Dropped if not connected.
    pub(super) async fn push(&mut self, to: NodeId, frame: Bytes) {
        let Some(c) = self.peers[to.index()].conn.as_mut() else {
            return;
        };
        let frame = match c.tx.try_send(frame) {
            Ok(()) => {
                c.live.sent(Instant::now().into_std());
                return;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(frame)) => frame,
        };
        let (tx, id) = (c.tx.clone(), c.id);
        let wait = self.cfg.failure_timeout / 2;
        match tx.send_timeout(frame, wait).await {
            Ok(()) => {
                if let Some(c) = self.peers[to.index()].conn.as_mut().filter(|c| c.id == id) {
                    c.live.sent(Instant::now().into_std());
                }
            }
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                if self.is_current(to, id) {
                    let reason =
                        format!("send queue full for {} ms: peer too slow", wait.as_millis());
                    self.drop_conn(to, &reason);
                }
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => {}
        }
    }

    /// Best effort, without waiting for room: the engine's last messages (a quorum-mode
    /// leader's `StepDown`, so that its voters need not wait out its lease), then a goodbye to
    /// every peer. The engine's other outputs are dropped: no callback runs any more.
    pub(super) fn say_goodbye(&mut self) {
        while let Some(out) = self.engine.poll_output() {
            if let crate::election::Output::Send { to, msg } = out {
                let c = self.peers.get(to.index()).and_then(|p| p.conn.as_ref());
                if let (Some(c), Ok(f)) = (c, codec::encode_frame(&Msg::Election(msg))) {
                    let _ = c.tx.try_send(f);
                }
            }
        }
        let Ok(f) = codec::encode_frame(&Msg::Goodbye) else {
            return;
        };
        for p in &mut self.peers {
            if let Some(c) = &p.conn {
                let _ = c.tx.try_send(f.clone());
            }
        }
    }

    /// Heartbeats and failure detection at `now`: peers silent for the failure timeout are
    /// dropped, idle connections get a heartbeat.
    pub(super) async fn check_liveness(&mut self, now: Instant) {
        let since = look_since(
            self.last_tick.into_std(),
            now.into_std(),
            self.cfg.heartbeat,
        );
        self.last_tick = now;
        let (hb, ft) = (self.cfg.heartbeat, self.cfg.failure_timeout);
        let mut dead = Vec::new();
        let mut beat = Vec::new();
        for (i, p) in self.peers.iter_mut().enumerate() {
            let Some(c) = &mut p.conn else { continue };
            // Replies to direct calls never reach the actor: the reader counts them.
            c.live.refresh(c.recv_count.load(Ordering::Relaxed), since);
            let idle = c.tx.capacity() == c.tx.max_capacity();
            match c.live.verdict(now.into_std(), hb, ft, idle) {
                Verdict::Dead => dead.push(NodeId(i as u32)),
                Verdict::Beat => beat.push(NodeId(i as u32)),
                Verdict::Fine => {}
            }
        }
        if !beat.is_empty() {
            if let Ok(f) = codec::encode_frame(&Msg::Heartbeat) {
                for p in beat {
                    // On an empty queue: never waits.
                    self.push(p, f.clone()).await;
                }
            }
        }
        for p in dead {
            let reason = format!("no traffic for {} ms (failure timeout)", ft.as_millis());
            self.drop_conn(p, &reason);
        }
    }
}
