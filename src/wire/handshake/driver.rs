//! The async side of the handshake: [`dial`] and [`accept`] move bytes between a stream and
//! a state machine.
//!
//! Why a file of its own: this is all the handshake does that needs tokio — reading, writing,
//! the operating system's random nonce, the caller's async admission decision and the overall
//! timeout. Every protocol decision is in `dialer.rs` / `acceptor.rs`, so this loop has nothing
//! to decide beyond "write this", "read", "ask the caller" and "stop".

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::TryRngCore;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Framed, FramedParts};

use super::super::codec::FrameCodec;
use super::acceptor::Acceptor;
use super::config::{HandshakeConfig, ObserverConfig};
use super::dialer::Dialer;
use super::error::HandshakeError;
use super::machine::Step;
use super::messages::{PeerHello, Refusal};
use super::observer::ObserverDialer;

/// How much the driver reads from the stream at once: handshake messages are small (the largest,
/// a `Hello`, carries the member lists), and a larger one only takes more reads.
/// The buffer is not zeroed; an 8 KiB zeroed one per handshake showed in start-up profiles.
const READ_CHUNK: usize = 4 * 1024;

/// A successfully authenticated connection.
#[derive(Debug)]
pub struct HandshakeOk<S> {
    /// The underlying stream.
    pub stream: S,
    /// Bytes already read from `stream` beyond the handshake (the start of the
    /// peer's next frames). Must be kept when continuing on the stream.
    pub read_buf: BytesMut,
    /// Who the peer is.
    pub peer: PeerHello,
}

impl<S: AsyncRead + AsyncWrite> HandshakeOk<S> {
    /// Continues on the connection with a [`FrameCodec`] capped at
    /// `max_frame_len`, keeping the already-read bytes. Returns the peer too.
    #[doc(hidden)]
    pub fn into_framed(self, max_frame_len: usize) -> (Framed<S, FrameCodec>, PeerHello) {
        let mut parts = FramedParts::new::<Bytes>(self.stream, FrameCodec::new(max_frame_len));
        parts.read_buf = self.read_buf;
        (Framed::from_parts(parts), self.peer)
    }
}

/// Authenticates an outgoing connection to the node named `expected_peer`.
///
/// Returns the peer's identity once both sides have proven knowledge of the
/// cookie and the acceptor admitted us. Fails with
/// [`HandshakeError::Refused`] if the acceptor refused us, with
/// [`HandshakeError::Rejected`] if we refused the acceptor (wrong cookie,
/// wrong node name, foreign version), and with [`HandshakeError::Timeout`] if
/// the whole exchange takes longer than `cfg.timeout`.
pub async fn dial<S>(
    stream: S,
    cfg: &HandshakeConfig,
    expected_peer: &str,
) -> Result<HandshakeOk<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let result = with_timeout(cfg.timeout, dial_inner(stream, cfg, expected_peer)).await;
    match &result {
        Ok(ok) => tracing::debug!(
            peer = ?ok.peer.name,
            incarnation = ok.peer.incarnation,
            "outgoing handshake complete"
        ),
        Err(e) => tracing::debug!(peer = ?expected_peer, error = %e, "outgoing handshake failed"),
    }
    result
}

async fn dial_inner<S>(
    mut stream: S,
    cfg: &HandshakeConfig,
    expected_peer: &str,
) -> Result<HandshakeOk<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut machine = Dialer::new(cfg, expected_peer, fresh_nonce()?);
    let (peer, read_buf) = drive(&mut stream, &mut machine, no_admission).await?;
    Ok(HandshakeOk {
        stream,
        read_buf,
        peer,
    })
}

/// Authenticates an incoming connection.
///
/// `check_name` says whether the dialer's claimed name is a cluster member.
/// Once the dialer has proven knowledge of the cookie, `admit` is called with
/// its identity; an `Err(refusal)` is sent to the dialer and the handshake
/// fails with [`HandshakeError::Rejected`].
///
/// `cfg.timeout` bounds the whole exchange, including `admit`. Note that the
/// handshake can still fail after `admit` returned `Ok` (the final `Welcome`
/// cannot be delivered, or time runs out); a caller that reserves state in
/// `admit` must release it when this function returns an error.
pub async fn accept<S, F, Fut>(
    stream: S,
    cfg: &HandshakeConfig,
    check_name: impl Fn(&str) -> bool,
    admit: F,
) -> Result<HandshakeOk<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    F: FnOnce(PeerHello) -> Fut,
    Fut: Future<Output = Result<(), Refusal>>,
{
    let result = with_timeout(cfg.timeout, accept_inner(stream, cfg, check_name, admit)).await;
    match &result {
        Ok(ok) => tracing::debug!(
            peer = ?ok.peer.name,
            incarnation = ok.peer.incarnation,
            "incoming handshake complete"
        ),
        Err(e) => tracing::debug!(error = %e, "incoming handshake failed"),
    }
    result
}

async fn accept_inner<S, F, Fut>(
    mut stream: S,
    cfg: &HandshakeConfig,
    check_name: impl Fn(&str) -> bool,
    admit: F,
) -> Result<HandshakeOk<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    F: FnOnce(PeerHello) -> Fut,
    Fut: Future<Output = Result<(), Refusal>>,
{
    let mut machine = Acceptor::new(cfg, check_name, fresh_nonce()?);
    let (peer, read_buf) = drive(&mut stream, &mut machine, admit).await?;
    Ok(HandshakeOk {
        stream,
        read_buf,
        peer,
    })
}

/// Authenticates an incoming connection from a member or an observer: [`accept`], except
/// that an observer's `Observe` is answered too. `on_observer` is called with the observer's
/// label once its opening passed the checks made before any MAC (`false` refuses it); the
/// caller can tell an observer's admission by that call having been made. An observer's
/// [`PeerHello`] carries its label and incarnation 0.
#[doc(hidden)]
pub async fn accept_with_observers<S, F, Fut>(
    stream: S,
    cfg: &HandshakeConfig,
    check_name: impl Fn(&str) -> bool,
    on_observer: impl Fn(&str) -> bool,
    admit: F,
) -> Result<HandshakeOk<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    F: FnOnce(PeerHello) -> Fut,
    Fut: Future<Output = Result<(), Refusal>>,
{
    let inner = async {
        let mut stream = stream;
        let mut machine = Acceptor::with_observers(cfg, check_name, on_observer, fresh_nonce()?);
        let (peer, read_buf) = drive(&mut stream, &mut machine, admit).await?;
        Ok(HandshakeOk {
            stream,
            read_buf,
            peer,
        })
    };
    let result = with_timeout(cfg.timeout, inner).await;
    match &result {
        Ok(ok) => tracing::debug!(peer = ?ok.peer.name, "incoming handshake complete"),
        Err(e) => tracing::debug!(error = %e, "incoming handshake failed"),
    }
    result
}

/// Authenticates an outgoing observer connection to the node named `node` (see
/// `observer.rs`): the node proves the cookie, then the observer. The errors are
/// [`dial`]'s: [`HandshakeError::Refused`] if the node refused us, [`HandshakeError::Rejected`]
/// if we refused it (its proof does not match our cookie: [`Refusal::BadAuth`]; another
/// node answered: [`Refusal::WrongNode`]), [`HandshakeError::Timeout`] past `cfg.timeout`.
pub async fn observe<S>(
    stream: S,
    cfg: &ObserverConfig,
    node: &str,
) -> Result<HandshakeOk<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let inner = async {
        let mut stream = stream;
        let mut machine = ObserverDialer::new(cfg, node, fresh_nonce()?);
        let (peer, read_buf) = drive(&mut stream, &mut machine, no_admission).await?;
        Ok(HandshakeOk {
            stream,
            read_buf,
            peer,
        })
    };
    with_timeout(cfg.timeout, inner).await
}

/// The operations the driver needs from either machine.
trait Machine {
    fn poll(&mut self) -> Step;
    fn receive(&mut self, input: &[u8]);
    fn receive_eof(&mut self);
    fn admit(&mut self, decision: Result<(), Refusal>);
}

impl Machine for Dialer<'_> {
    fn poll(&mut self) -> Step {
        Dialer::poll(self)
    }
    fn receive(&mut self, input: &[u8]) {
        Dialer::receive(self, input);
    }
    fn receive_eof(&mut self) {
        Dialer::receive_eof(self);
    }
    fn admit(&mut self, _: Result<(), Refusal>) {}
}

impl Machine for ObserverDialer<'_> {
    fn poll(&mut self) -> Step {
        ObserverDialer::poll(self)
    }
    fn receive(&mut self, input: &[u8]) {
        ObserverDialer::receive(self, input);
    }
    fn receive_eof(&mut self) {
        ObserverDialer::receive_eof(self);
    }
    fn admit(&mut self, _: Result<(), Refusal>) {}
}

impl<F: Fn(&str) -> bool, O: Fn(&str) -> bool> Machine for Acceptor<'_, F, O> {
    fn poll(&mut self) -> Step {
        Acceptor::poll(self)
    }
    fn receive(&mut self, input: &[u8]) {
        Acceptor::receive(self, input);
    }
    fn receive_eof(&mut self) {
        Acceptor::receive_eof(self);
    }
    fn admit(&mut self, decision: Result<(), Refusal>) {
        Acceptor::admit(self, decision);
    }
}

/// The dialer's admission "decision": never asked for.
async fn no_admission(_: PeerHello) -> Result<(), Refusal> {
    Err(Refusal::Other("a dialer does not admit peers".into()))
}

/// Runs `machine` on `stream` until it ends.
async fn drive<S, M, F, Fut>(
    stream: &mut S,
    machine: &mut M,
    admit: F,
) -> Result<(PeerHello, BytesMut), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    M: Machine,
    F: FnOnce(PeerHello) -> Fut,
    Fut: Future<Output = Result<(), Refusal>>,
{
    let mut admit = Some(admit);
    let mut chunk = BytesMut::with_capacity(READ_CHUNK);
    loop {
        match machine.poll() {
            Step::Send(frame) => {
                stream.write_all(&frame).await?;
                stream.flush().await?;
            }
            Step::SendRefusal(frame) => {
                let sent = async {
                    stream.write_all(&frame).await?;
                    stream.flush().await
                };
                if let Err(e) = sent.await {
                    tracing::debug!(error = %e, "could not deliver handshake refusal");
                }
                // Best effort: tell the peer we are done writing.
                let _ = stream.shutdown().await;
            }
            Step::Receive => {
                chunk.clear();
                match stream.read_buf(&mut chunk).await? {
                    0 => machine.receive_eof(),
                    _ => machine.receive(&chunk),
                }
            }
            Step::NeedsAdmission(peer) => {
                let decision = match admit.take() {
                    Some(admit) => admit(peer).await,
                    None => Err(Refusal::Other("admission already decided".into())),
                };
                machine.admit(decision);
            }
            Step::Done(peer, rest) => return Ok((peer, rest)),
            Step::Refused(r) => return Err(HandshakeError::Refused(r)),
            Step::Failed(e) => return Err(e),
        }
    }
}

async fn with_timeout<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, HandshakeError>>,
) -> Result<T, HandshakeError> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

fn fresh_nonce() -> Result<[u8; 16], HandshakeError> {
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.try_fill_bytes(&mut nonce).map_err(|e| {
        HandshakeError::Io(io::Error::other(format!(
            "operating system random number generator failed: {e}"
        )))
    })?;
    Ok(nonce)
}
