//! Transport: how bytes move between nodes.
//!
//! The node runtime only sees [`BoxStream`]s from a [`Connector`] (outbound) and a
//! [`Listener`] (inbound), so a simulated network or a fault-injecting proxy can stand in for
//! TCP. This module also has the per-connection reader and writer loops: the writer drains its
//! bounded queue into one buffer so that many frames share one write syscall.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::{Decoder, FramedRead};

use crate::wire::codec::{decode_body, CodecError, FrameCodec};

pub(crate) mod liveness;
pub(crate) mod peers;
pub(crate) mod ratelimit;
pub mod tls;
use crate::wire::Msg;

/// A byte stream between two nodes.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The stream as [`Any`](std::any::Any): how the TLS layer finds a connection's peer
    /// certificate behind a [`BoxStream`].
    #[doc(hidden)]
    fn as_any(&self) -> &dyn std::any::Any;
}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens outbound connections.
pub trait Connector: Send + Sync + 'static {
    /// Connects to `addr` (`host:port`).
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxStream>>;
}

/// Accepts inbound connections.
pub trait Listener: Send + 'static {
    /// The next inbound connection and a description of its origin (for logs).
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, String)>>;
    /// The bound address, if it is a socket.
    fn local_addr(&self) -> Option<SocketAddr>;
}

/// TCP connector (`TCP_NODELAY` set).
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxStream>> {
        Box::pin(async move {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as BoxStream)
        })
    }
}

/// TCP listener.
#[derive(Debug)]
pub struct TcpListener(pub tokio::net::TcpListener);

impl Listener for TcpListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, String)>> {
        Box::pin(async move {
            let (s, addr) = self.0.accept().await?;
            s.set_nodelay(true)?;
            Ok((Box::new(s) as BoxStream, addr.to_string()))
        })
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        self.0.local_addr().ok()
    }
}

#[doc(hidden)]
/// Exponential backoff with jitter for redials: `base * 2^attempt`, capped, then scaled by a
/// factor in `[0.75, 1.25)` drawn from `jitter` (a uniform number in `[0, 1)`).
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    exp.min(cap).mul_f64(0.75 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// Largest batch the writer gathers into one write.
const WRITE_BATCH: usize = 256 * 1024;

#[doc(hidden)]
/// Writes queued frames, gathering whatever is queued into one buffer per write. Ends when
/// the queue is closed (Ok) or on a write error.
pub async fn write_loop<W: AsyncWrite + Unpin>(w: W, rx: mpsc::Receiver<Bytes>) -> io::Result<()> {
    write_loop_with_load(w, rx, None).await
}

#[doc(hidden)]
/// [`write_loop`], told how many messages the last batch read from the same connection held
/// (`inbound`, kept by its reader): when 8 or more arrive at once, or a write carried 8 frames
/// or more, the connection is busy, and for its next 16 writes the writer lets the tasks that
/// are ready to run go first.
///
/// Why: a task woken by another on the same runtime worker runs right after it, so a writer
/// woken by each of many callers in turn would write their frames one syscall each. Yielding
/// once lets the callers that are ready queue theirs first, and one syscall carries them all
/// (on a 2-vCPU machine, 64 concurrent `leader_call`s went from about 215 k/s to about 300 k/s;
/// single-frame writes had been 86 % of a follower's writes).
/// With few requests in flight a frame is written at once: waiting would only add latency.
#[doc(hidden)]
pub async fn write_loop_with_load<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Bytes>,
    inbound: Option<Arc<AtomicUsize>>,
) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Frames the last write carried.
    let mut last = 0usize;
    // Writes left to yield before (each sign of load renews it).
    let mut busy_for = 0usize;
    while let Some(first) = rx.recv().await {
        let loaded = last >= BUSY_FRAMES
            || inbound
                .as_ref()
                .is_some_and(|n| n.load(Ordering::Relaxed) >= BUSY_INBOUND);
        if loaded {
            busy_for = BUSY_WRITES;
        }
        if busy_for > 0 {
            busy_for -= 1;
            // Under load, let the tasks that are ready to run go first (see above).
            tokio::task::yield_now().await;
        }
        match rx.try_recv() {
            Err(_) => {
                last = 1;
                w.write_all(&first).await?;
            }
            Ok(second) => {
                buf.clear();
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&second);
                last = 2;
                while buf.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(b) => {
                            buf.extend_from_slice(&b);
                            last += 1;
                        }
                        Err(_) => break,
                    }
                }
                w.write_all(&buf).await?;
            }
        }
        // A stream that buffers (TLS) may still hold part of the batch: nothing would write
        // it before the next frame, so flush before waiting for one. (A no-op on TCP, but one
        // more lock of the split stream: not paid while frames keep coming.)
        if rx.is_empty() {
            w.flush().await?;
        }
    }
    let _ = w.shutdown().await;
    Ok(())
}

#[doc(hidden)]
/// Why a connection's reader stopped.
#[doc(hidden)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadEnd {
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Eof,
    /// A bad frame or body (hostile or corrupt input).
    #[error("bad input: {0}")]
    Codec(#[from] CodecError),
    /// The receiver of decoded messages is gone.
    #[error("node stopped")]
    Stopped,
}

/// A write of at least this many frames means the connection is busy: the writer then yields
/// once before its next write so that more frames share it.
const BUSY_FRAMES: usize = 8;

/// Writes a sign of load keeps the writer yielding for.
const BUSY_WRITES: usize = 16;

/// Messages read at once from which a connection counts as busy.
const BUSY_INBOUND: usize = 8;

#[doc(hidden)]
/// Most messages handed to the sink at once.
pub const READ_BATCH: usize = 64;

#[doc(hidden)]
/// Reads frames, decodes them into [`Msg`]s and hands them to `sink` in batches (every frame
/// already received, up to [`READ_BATCH`], so that a busy connection costs one hand-off per
/// batch, not per message); `sink` returns `false` to stop. `pending` holds bytes already read
/// from the stream (what the handshake read past its last message): its frames are delivered
/// first, without waiting for the stream to become readable again. Returns why it stopped.
#[doc(hidden)]
pub async fn read_loop<R, F, Fut>(
    mut frames: FramedRead<R, FrameCodec>,
    mut pending: BytesMut,
    mut sink: F,
) -> ReadEnd
where
    R: AsyncRead + Unpin,
    F: FnMut(Vec<Msg>) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut codec = *frames.decoder();
    let mut first = Vec::new();
    loop {
        match codec.decode(&mut pending) {
            Ok(Some(body)) => match decode_body::<Msg>(&body) {
                Ok(msg) => first.push(msg),
                Err(e) => return ReadEnd::Codec(e),
            },
            Ok(None) => break,
            Err(e) => return ReadEnd::Codec(e),
        }
    }
    if !first.is_empty() && !sink(first).await {
        return ReadEnd::Stopped;
    }
    // A partial frame, if any, is completed by the next reads.
    frames.read_buffer_mut().extend_from_slice(&pending);
    loop {
        let mut end = None;
        let msgs = next_batch(&mut frames, &mut end).await;
        // Deliver what decoded before a bad frame or the end of the stream, then stop.
        if !msgs.is_empty() && !sink(msgs).await {
            return ReadEnd::Stopped;
        }
        if let Some(e) = end {
            return e;
        }
    }
}

/// Waits for at least one frame, then decodes every frame already received, up to
/// [`READ_BATCH`]. Stops early at a bad frame or the end of the stream, and says so in `end`.
///
/// (`StreamExt::ready_chunks` did this before, but allocated room for `READ_BATCH` raw frames
/// for every batch, 2–4 KiB past the allocator's per-thread cache, twice per call's round
/// trip.)
async fn next_batch<R: AsyncRead + Unpin>(
    frames: &mut FramedRead<R, FrameCodec>,
    end: &mut Option<ReadEnd>,
) -> Vec<Msg> {
    std::future::poll_fn(|cx| {
        let mut msgs = Vec::new();
        while msgs.len() < READ_BATCH {
            match frames.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(body))) => match decode_body::<Msg>(&body) {
                    Ok(m) => msgs.push(m),
                    Err(e) => {
                        *end = Some(ReadEnd::Codec(e));
                        break;
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    *end = Some(ReadEnd::Codec(e));
                    break;
                }
                Poll::Ready(None) => {
                    *end = Some(ReadEnd::Eof);
                    break;
                }
                Poll::Pending if msgs.is_empty() => return Poll::Pending,
                Poll::Pending => break,
            }
        }
        Poll::Ready(msgs)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Duration::from_millis(10);
        let cap = Duration::from_secs(1);
        assert_eq!(backoff(0, b, cap, 0.5), b);
        assert_eq!(backoff(3, b, cap, 0.5), b * 8);
        assert_eq!(backoff(30, b, cap, 0.5), cap);
        assert!(backoff(30, b, cap, 0.0) >= cap.mul_f64(0.75));
        assert!(backoff(30, b, cap, 0.999) < cap.mul_f64(1.25));
    }

    #[tokio::test]
    async fn bytes_read_by_the_handshake_are_delivered_at_once() {
        let (_keep_open, b) = tokio::io::duplex(1024);
        let f1 = crate::wire::codec::encode_frame(&Msg::Heartbeat).unwrap();
        let f2 = crate::wire::codec::encode_frame(&Msg::Goodbye).unwrap();
        let mut pending = BytesMut::new();
        pending.extend_from_slice(&f1);
        pending.extend_from_slice(&f2);
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(
            FramedRead::new(b, FrameCodec::new(1 << 20)),
            pending,
            move |ms: Vec<Msg>| {
                for m in ms {
                    let _ = tx.send(m);
                }
                async { true }
            },
        ));
        // Nothing more ever arrives on the stream: both frames come from `pending`.
        let t = Duration::from_secs(5);
        assert_eq!(
            tokio::time::timeout(t, rx.recv()).await.unwrap(),
            Some(Msg::Heartbeat)
        );
        assert_eq!(
            tokio::time::timeout(t, rx.recv()).await.unwrap(),
            Some(Msg::Goodbye)
        );
    }

    #[tokio::test]
    async fn writer_batches_and_reader_decodes_in_order() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (tx, rx) = mpsc::channel(64);
        for id in 0..50u64 {
            let f = crate::wire::codec::encode_frame(&Msg::LeaderCall {
                id,
                payload: vec![1, 2, 3],
            })
            .unwrap();
            tx.send(f).await.unwrap();
        }
        drop(tx);
        let w = tokio::spawn(write_loop(a, rx));
        let mut seen = Vec::new();
        let end = read_loop(
            FramedRead::new(b, FrameCodec::new(1 << 20)),
            BytesMut::new(),
            |ms: Vec<Msg>| {
                for m in ms {
                    if let Msg::LeaderCall { id, .. } = m {
                        seen.push(id);
                    }
                }
                async { true }
            },
        )
        .await;
        assert!(matches!(end, ReadEnd::Eof));
        w.await.unwrap().unwrap();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }

    /// A busy writer (it yields before writing) still writes every frame, in each producer's
    /// order, and stops when the queue closes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_writer_loses_and_reorders_nothing() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (tx, rx) = mpsc::channel(64);
        let load = Arc::new(AtomicUsize::new(usize::MAX));
        let w = tokio::spawn(write_loop_with_load(a, rx, Some(load)));
        let producers: Vec<_> = (0..8u64)
            .map(|p| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..2_000u64 {
                        let f = crate::wire::codec::encode_frame(&Msg::LeaderCall {
                            id: p << 32 | i,
                            payload: vec![7; 40],
                        })
                        .unwrap();
                        tx.send(f).await.unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let mut next = [0u64; 8];
        let end = read_loop(
            FramedRead::new(b, FrameCodec::new(1 << 20)),
            BytesMut::new(),
            |ms: Vec<Msg>| {
                for m in ms {
                    let Msg::LeaderCall { id, .. } = m else {
                        panic!("unexpected {m:?}")
                    };
                    let (p, i) = ((id >> 32) as usize, id & 0xffff_ffff);
                    assert_eq!(i, next[p], "producer {p} out of order");
                    next[p] += 1;
                }
                async { true }
            },
        )
        .await;
        for p in producers {
            p.await.unwrap();
        }
        assert!(matches!(end, ReadEnd::Eof));
        w.await.unwrap().unwrap();
        assert_eq!(next, [2_000; 8]);
    }

    /// Frames already received go to the sink together, at most `READ_BATCH` at a time; the
    /// frames before a bad one are delivered, then the reader stops with the codec's error.
    #[tokio::test]
    async fn frames_already_received_share_a_batch_and_a_bad_frame_ends_it() {
        use tokio::io::AsyncWriteExt as _;
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let n = READ_BATCH + 6;
        for id in 0..n as u64 {
            let f = crate::wire::codec::encode_frame(&Msg::LeaderCall {
                id,
                payload: vec![9],
            })
            .unwrap();
            a.write_all(&f).await.unwrap();
        }
        // A frame whose body is not a message.
        a.write_all(&[0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
        let mut batches = Vec::new();
        let end = read_loop(
            FramedRead::new(b, FrameCodec::new(1 << 20)),
            BytesMut::new(),
            |ms: Vec<Msg>| {
                batches.push(ms.len());
                async { true }
            },
        )
        .await;
        assert_eq!(batches, [READ_BATCH, 6]);
        assert!(matches!(end, ReadEnd::Codec(_)), "{end:?}");
        drop(a);
    }
}
