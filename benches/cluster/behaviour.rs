//! The behaviour every bench node runs (`Bench`) and the broadcast bookkeeping it shares with
//! the node role (`Counter`). Apart from `child.rs` because the in-process sections
//! (`election`) start the same behaviour without a child process.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gen_leader::{Behaviour, Election, LeaderHandle, LeaderReply, NodeName, ReplyTo};

use crate::util::{lock, wall_ns};

/// Counts broadcasts on a follower and checks that they arrive in order, once each.
#[derive(Default)]
pub(crate) struct Counter {
    pub(crate) count: AtomicU64,
    pub(crate) last_seq: AtomicU64,
    pub(crate) anomalies: AtomicU64,
    pub(crate) target: AtomicU64,
    pub(crate) done_ts: AtomicU64,
    pub(crate) notify: tokio::sync::Notify,
    /// Bumped by every `expect`: an older waiter gives up silently.
    pub(crate) generation: AtomicU64,
    /// Set by `expect`: the next broadcast starts a new sequence check (a loss in an earlier
    /// run is not counted again; losses show up in the count).
    pub(crate) resync: AtomicBool,
    /// Next cast sequence number (on the caster).
    pub(crate) next_cast: AtomicU64,
    /// On the leader: the last sequence number each follower acknowledged.
    pub(crate) acks: Mutex<std::collections::HashMap<String, u64>>,
    pub(crate) ack_notify: tokio::sync::Notify,
}

impl Counter {
    fn record(&self, m: &[u8]) {
        let seq = m
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        let last = self.last_seq.swap(seq, Ordering::Relaxed);
        if !self.resync.swap(false, Ordering::SeqCst) && seq != last + 1 {
            self.anomalies.fetch_add(1, Ordering::Relaxed);
        }
        let c = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if c == self.target.load(Ordering::SeqCst) {
            self.done_ts.store(wall_ns(), Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    /// The lowest sequence number acknowledged by all of `followers` (at least `floor`).
    pub(crate) fn min_ack(&self, followers: &[String], floor: u64) -> u64 {
        let acks = lock(&self.acks);
        followers
            .iter()
            .map(|f| acks.get(f).copied().unwrap_or(0).max(floor))
            .min()
            .unwrap_or(floor)
    }
}

/// A follower acknowledges every this many broadcasts (with a `leader_cast`), for the paced
/// broadcast mode.
pub(crate) const ACK_EVERY: u64 = 256;
/// Paced broadcast: at most this many broadcasts sent but not acknowledged by every follower
/// (below the library's 4096-frame send queue).
pub(crate) const BCAST_WINDOW: u64 = 2048;

/// The bench behaviour: `leader_call` echoes its 64-byte payload; an empty request asks who
/// leads (`name|held calls`); `hold` is deferred forever (a call in flight for failover);
/// casts are broadcast as they are.
pub(crate) struct Bench {
    pub(crate) me: String,
    held: Vec<ReplyTo<Vec<u8>>>,
    pub(crate) counter: Arc<Counter>,
    handle: Option<LeaderHandle<Bench>>,
}

impl Bench {
    pub(crate) fn new(me: &str, counter: Arc<Counter>) -> Self {
        Bench {
            me: me.to_string(),
            held: Vec::new(),
            counter,
            handle: None,
        }
    }
}

impl Behaviour for Bench {
    type Call = Vec<u8>;
    type Reply = Vec<u8>;
    type Cast = Vec<u8>;
    type Synch = ();
    type Broadcast = Vec<u8>;
    type Info = ();

    async fn init(&mut self, handle: LeaderHandle<Self>) -> Result<(), gen_leader::BoxError> {
        self.handle = Some(handle);
        Ok(())
    }

    async fn elected(&mut self, _: &Election<'_>, _joined: Option<&NodeName>) {}

    async fn surrendered(&mut self, _synch: (), _: &Election<'_>) {}

    async fn handle_leader_call(
        &mut self,
        req: Vec<u8>,
        from: ReplyTo<Vec<u8>>,
        _: &Election<'_>,
    ) -> LeaderReply<Vec<u8>, Vec<u8>> {
        if req.is_empty() {
            LeaderReply::Reply(format!("{}|{}", self.me, self.held.len()).into_bytes())
        } else if req == b"hold" {
            self.held.push(from);
            LeaderReply::NoReply
        } else {
            LeaderReply::Reply(req)
        }
    }

    async fn handle_leader_cast(&mut self, m: Vec<u8>, _: &Election<'_>) -> Option<Vec<u8>> {
        if let Some(ack) = m.strip_prefix(b"ACK ") {
            // `ACK <follower> <seq>`: flow control of the paced broadcast, not broadcast.
            let s = String::from_utf8_lossy(ack);
            if let Some((who, seq)) = s.rsplit_once(' ') {
                let seq: u64 = seq.parse().unwrap_or(0);
                let mut acks = lock(&self.counter.acks);
                let e = acks.entry(who.to_string()).or_insert(0);
                *e = (*e).max(seq);
            }
            self.counter.ack_notify.notify_one();
            return None;
        }
        Some(m)
    }

    async fn from_leader(&mut self, m: Vec<u8>, _: &Election<'_>) {
        self.counter.record(&m);
        let seq = self.counter.last_seq.load(Ordering::Relaxed);
        if seq % ACK_EVERY == 0 {
            if let Some(h) = &self.handle {
                let _ = h.leader_cast(format!("ACK {} {seq}", self.me).into_bytes());
            }
        }
    }

    async fn handle_call(&mut self, req: Vec<u8>, _: &Election<'_>) -> Vec<u8> {
        req
    }
}
