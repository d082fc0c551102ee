//! Mutual authentication of a new connection between two cluster nodes.
//!
//! The node that opened the connection (the *dialer*) and the node that
//! accepted it (the *acceptor*) prove to each other that they know the
//! cluster cookie, without sending it, in four messages:
//!
//! 1. dialer → acceptor: `Hello { version, cluster, from, to, incarnation, members_digest, nonce_d }`
//! 2. acceptor → dialer: `Challenge { from, incarnation, nonce_a, mac_a }`, or `Refuse(Refusal)`
//! 3. dialer → acceptor: `Auth { mac_d }`, or `Refuse(BadAuth)` if `mac_a` is wrong
//! 4. acceptor → dialer: `Welcome`, or `Refuse(Refusal)`
//!
//! with `mac_x = HMAC-SHA256(cookie, label_x ‖ lp(cluster) ‖ lp(dialer) ‖
//! lp(acceptor) ‖ dialer_incarnation ‖ acceptor_incarnation ‖ nonce_d ‖
//! nonce_a)`, where `label_a = "gen_leader/acceptor"`, `label_d =
//! "gen_leader/dialer"`, `lp(s)` is `s` prefixed by its length as a big-endian
//! `u64`, and incarnations are big-endian `u64`. Both nonces are 16 fresh bytes
//! from the operating system's random number generator, so a recorded
//! exchange cannot be replayed and the distinct labels stop a MAC from being
//! reflected back to its sender. MACs are checked in constant time.
//!
//! Before any MAC is computed the acceptor checks the protocol version (frame
//! version byte and `Hello.version`), cluster name, member-list digest, that
//! `to` is its own name, that `from` is not its own name and that `from` is a
//! known member; a mismatch is answered with a [`Refusal`] before closing.
//! After authentication the acceptor asks the caller's admission closure
//! (e.g. to detect duplicate or simultaneous connections).
//!
//! Frames during the handshake are capped at [`HANDSHAKE_MAX_FRAME_LEN`].
//! On success both sides get a [`HandshakeOk`] holding the raw stream plus any
//! bytes already read past the handshake, to continue with a larger cap
//! (see [`HandshakeOk::into_framed`]). The cookie is never sent, logged or
//! shown in `Debug` output.

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, FramedParts};

use super::codec::{decode_body, encode_frame, CodecError, FrameCodec, PROTOCOL_VERSION};

/// Cap on frame length while the handshake runs (peers are not yet trusted).
pub const HANDSHAKE_MAX_FRAME_LEN: usize = 4096;

const ACCEPTOR_LABEL: &[u8] = b"gen_leader/acceptor";
const DIALER_LABEL: &[u8] = b"gen_leader/dialer";

type HmacSha256 = Hmac<Sha256>;

/// What a node needs to know to authenticate connections.
#[derive(Clone)]
pub struct HandshakeConfig {
    /// Cluster name; both sides must use the same.
    pub cluster: String,
    /// Shared secret used as the HMAC key. Never sent, logged or printed.
    pub cookie: Vec<u8>,
    /// This node's full name, `"name@host:port"`.
    pub me: String,
    /// Random value chosen at each process start, to tell restarts apart.
    pub incarnation: u64,
    /// SHA-256 of the cluster member list; both sides must agree.
    pub members_digest: [u8; 32],
    /// Time limit for the whole handshake.
    pub timeout: Duration,
}

impl fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("cluster", &self.cluster)
            .field("cookie", &"<redacted>")
            .field("me", &self.me)
            .field("incarnation", &self.incarnation)
            .field("members_digest", &HexDigest(&self.members_digest))
            .field("timeout", &self.timeout)
            .finish()
    }
}

struct HexDigest<'a>(&'a [u8]);

impl fmt::Debug for HexDigest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The authenticated identity of the peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerHello {
    /// The peer's full node name.
    pub name: String,
    /// The peer's incarnation (changes whenever the peer process restarts).
    pub incarnation: u64,
}

/// Why a handshake was refused. Sent on the wire, so both sides see the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The two nodes speak different protocol versions.
    #[error("protocol version mismatch (refusing node speaks version {ours}, refused node speaks version {theirs})")]
    Version {
        /// Version of the node that refused.
        ours: u8,
        /// Version of the node that was refused.
        theirs: u8,
    },
    /// The cluster names differ.
    #[error("cluster name mismatch")]
    Cluster,
    /// The member lists differ (different cluster configuration).
    #[error("cluster configuration mismatch (member lists differ)")]
    Members,
    /// The dialer reached a node other than the one it meant to.
    #[error("wrong node: expected to reach {expected:?} but reached {got:?}")]
    WrongNode {
        /// The node the dialer meant to reach.
        expected: String,
        /// The node actually reached.
        got: String,
    },
    /// The dialer's name is not a member of the cluster.
    #[error("unknown node {0:?}: not a member of this cluster")]
    Unknown(String),
    /// The peer could not prove knowledge of the cookie.
    #[error("wrong cookie (authentication failed)")]
    BadAuth,
    /// The peer is already connected, or claims the acceptor's own name.
    #[error("duplicate node {0:?}: already connected or same name as the acceptor")]
    Duplicate(String),
    /// Simultaneous connection attempts; the other connection is kept.
    #[error("simultaneous connection attempt; the connection in the other direction is kept")]
    CallBack,
    /// The refusing node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// Any other reason.
    #[error("{0}")]
    Other(String),
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The whole handshake did not finish within [`HandshakeConfig::timeout`].
    #[error("handshake timed out")]
    Timeout,
    /// Reading or writing the connection failed.
    #[error("I/O error during handshake: {0}")]
    Io(#[source] io::Error),
    /// The peer sent bytes that are not a valid handshake frame.
    #[error("invalid handshake data: {0}")]
    Codec(#[source] CodecError),
    /// The peer refused us.
    #[error("peer refused the handshake: {0}")]
    Refused(Refusal),
    /// We refused the peer (the refusal was sent to it).
    #[error("refused the peer's handshake: {0}")]
    Rejected(Refusal),
    /// The peer sent a well-formed but unexpected message.
    #[error("handshake protocol violation: {0}")]
    Protocol(String),
    /// The peer closed the connection before the handshake completed.
    #[error("connection closed during handshake")]
    Closed,
}

impl From<CodecError> for HandshakeError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Io(e) => HandshakeError::Io(e),
            other => HandshakeError::Codec(other),
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

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
    pub fn into_framed(self, max_frame_len: usize) -> (Framed<S, FrameCodec>, PeerHello) {
        let mut parts = FramedParts::new::<Bytes>(self.stream, FrameCodec::new(max_frame_len));
        parts.read_buf = self.read_buf;
        (Framed::from_parts(parts), self.peer)
    }
}

/// Handshake messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Msg {
    Hello {
        version: u8,
        cluster: String,
        from: String,
        to: String,
        incarnation: u64,
        members_digest: [u8; 32],
        nonce: [u8; 16],
    },
    Challenge {
        from: String,
        incarnation: u64,
        nonce: [u8; 16],
        mac: [u8; 32],
    },
    Auth {
        mac: [u8; 32],
    },
    Welcome,
    Refuse(Refusal),
}

impl Msg {
    fn kind(&self) -> &'static str {
        match self {
            Msg::Hello { .. } => "Hello",
            Msg::Challenge { .. } => "Challenge",
            Msg::Auth { .. } => "Auth",
            Msg::Welcome => "Welcome",
            Msg::Refuse(_) => "Refuse",
        }
    }
}

/// The fields both MACs are computed over.
struct Transcript<'a> {
    cluster: &'a str,
    dialer: &'a str,
    acceptor: &'a str,
    dialer_incarnation: u64,
    acceptor_incarnation: u64,
    dialer_nonce: &'a [u8; 16],
    acceptor_nonce: &'a [u8; 16],
}

impl Transcript<'_> {
    fn hmac(&self, cookie: &[u8], label: &[u8]) -> Result<HmacSha256, HandshakeError> {
        let mut mac = HmacSha256::new_from_slice(cookie)
            .map_err(|_| HandshakeError::Protocol("cookie unusable as an HMAC key".into()))?;
        mac.update(label);
        for s in [self.cluster, self.dialer, self.acceptor] {
            mac.update(&(s.len() as u64).to_be_bytes());
            mac.update(s.as_bytes());
        }
        mac.update(&self.dialer_incarnation.to_be_bytes());
        mac.update(&self.acceptor_incarnation.to_be_bytes());
        mac.update(self.dialer_nonce);
        mac.update(self.acceptor_nonce);
        Ok(mac)
    }

    fn sign(&self, cookie: &[u8], label: &[u8]) -> Result<[u8; 32], HandshakeError> {
        Ok(self.hmac(cookie, label)?.finalize().into_bytes().into())
    }

    /// Constant-time check of a received MAC.
    fn verify(&self, cookie: &[u8], label: &[u8], mac: &[u8; 32]) -> Result<bool, HandshakeError> {
        Ok(self.hmac(cookie, label)?.verify_slice(mac).is_ok())
    }
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

/// A framed connection during the handshake.
struct Conn<S> {
    framed: Framed<S, FrameCodec>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S) -> Self {
        Self {
            framed: Framed::new(stream, FrameCodec::new(HANDSHAKE_MAX_FRAME_LEN)),
        }
    }

    async fn send(&mut self, msg: &Msg) -> Result<(), HandshakeError> {
        let frame = encode_frame(msg)?;
        self.framed.send(frame).await?;
        Ok(())
    }

    /// Receives the next message. A frame of a foreign protocol version is
    /// answered with a version refusal.
    async fn recv(&mut self) -> Result<Msg, HandshakeError> {
        match self.framed.next().await {
            None => Err(HandshakeError::Closed),
            Some(Ok(body)) => Ok(decode_body(&body)?),
            Some(Err(CodecError::Version { got, .. })) => Err(self
                .reject(Refusal::Version {
                    ours: PROTOCOL_VERSION,
                    theirs: got,
                })
                .await),
            Some(Err(e)) => Err(e.into()),
        }
    }

    /// Sends a refusal (best effort) and returns the matching error.
    async fn reject(&mut self, refusal: Refusal) -> HandshakeError {
        if let Err(e) = self.send(&Msg::Refuse(refusal.clone())).await {
            tracing::debug!(error = %e, "could not deliver handshake refusal");
        }
        // Best effort: tell the peer we are done writing.
        let _ = self.framed.close().await;
        HandshakeError::Rejected(refusal)
    }

    fn finish(self, peer: PeerHello) -> HandshakeOk<S> {
        let parts = self.framed.into_parts();
        HandshakeOk {
            stream: parts.io,
            read_buf: parts.read_buf,
            peer,
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
    stream: S,
    cfg: &HandshakeConfig,
    expected_peer: &str,
) -> Result<HandshakeOk<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut conn = Conn::new(stream);
    let dialer_nonce = fresh_nonce()?;
    conn.send(&Msg::Hello {
        version: PROTOCOL_VERSION,
        cluster: cfg.cluster.clone(),
        from: cfg.me.clone(),
        to: expected_peer.to_owned(),
        incarnation: cfg.incarnation,
        members_digest: cfg.members_digest,
        nonce: dialer_nonce,
    })
    .await?;

    let (peer_name, peer_incarnation, acceptor_nonce, acceptor_mac) = match conn.recv().await? {
        Msg::Challenge {
            from,
            incarnation,
            nonce,
            mac,
        } => (from, incarnation, nonce, mac),
        Msg::Refuse(r) => return Err(HandshakeError::Refused(r)),
        other => {
            return Err(HandshakeError::Protocol(format!(
                "expected Challenge, got {}",
                other.kind()
            )))
        }
    };

    if peer_name != expected_peer {
        return Err(conn
            .reject(Refusal::WrongNode {
                expected: expected_peer.to_owned(),
                got: peer_name,
            })
            .await);
    }

    let transcript = Transcript {
        cluster: &cfg.cluster,
        dialer: &cfg.me,
        acceptor: &peer_name,
        dialer_incarnation: cfg.incarnation,
        acceptor_incarnation: peer_incarnation,
        dialer_nonce: &dialer_nonce,
        acceptor_nonce: &acceptor_nonce,
    };
    if !transcript.verify(&cfg.cookie, ACCEPTOR_LABEL, &acceptor_mac)? {
        return Err(conn.reject(Refusal::BadAuth).await);
    }
    let mac = transcript.sign(&cfg.cookie, DIALER_LABEL)?;
    conn.send(&Msg::Auth { mac }).await?;

    match conn.recv().await? {
        Msg::Welcome => Ok(conn.finish(PeerHello {
            name: peer_name,
            incarnation: peer_incarnation,
        })),
        Msg::Refuse(r) => Err(HandshakeError::Refused(r)),
        other => Err(HandshakeError::Protocol(format!(
            "expected Welcome, got {}",
            other.kind()
        ))),
    }
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
    let mut conn = Conn::new(stream);
    let (version, cluster, from, to, peer_incarnation, members_digest, dialer_nonce) =
        match conn.recv().await? {
            Msg::Hello {
                version,
                cluster,
                from,
                to,
                incarnation,
                members_digest,
                nonce,
            } => (version, cluster, from, to, incarnation, members_digest, nonce),
            other => {
                return Err(HandshakeError::Protocol(format!(
                    "expected Hello, got {}",
                    other.kind()
                )))
            }
        };

    let refusal = if version != PROTOCOL_VERSION {
        Some(Refusal::Version {
            ours: PROTOCOL_VERSION,
            theirs: version,
        })
    } else if cluster != cfg.cluster {
        Some(Refusal::Cluster)
    } else if members_digest != cfg.members_digest {
        Some(Refusal::Members)
    } else if to != cfg.me {
        Some(Refusal::WrongNode {
            expected: to,
            got: cfg.me.clone(),
        })
    } else if from == cfg.me {
        Some(Refusal::Duplicate(from.clone()))
    } else if !check_name(&from) {
        Some(Refusal::Unknown(from.clone()))
    } else {
        None
    };
    if let Some(refusal) = refusal {
        return Err(conn.reject(refusal).await);
    }

    let acceptor_nonce = fresh_nonce()?;
    let transcript = Transcript {
        cluster: &cfg.cluster,
        dialer: &from,
        acceptor: &cfg.me,
        dialer_incarnation: peer_incarnation,
        acceptor_incarnation: cfg.incarnation,
        dialer_nonce: &dialer_nonce,
        acceptor_nonce: &acceptor_nonce,
    };
    let mac = transcript.sign(&cfg.cookie, ACCEPTOR_LABEL)?;
    conn.send(&Msg::Challenge {
        from: cfg.me.clone(),
        incarnation: cfg.incarnation,
        nonce: acceptor_nonce,
        mac,
    })
    .await?;

    let dialer_mac = match conn.recv().await? {
        Msg::Auth { mac } => mac,
        Msg::Refuse(r) => return Err(HandshakeError::Refused(r)),
        other => {
            return Err(HandshakeError::Protocol(format!(
                "expected Auth, got {}",
                other.kind()
            )))
        }
    };
    if !transcript.verify(&cfg.cookie, DIALER_LABEL, &dialer_mac)? {
        return Err(conn.reject(Refusal::BadAuth).await);
    }

    let peer = PeerHello {
        name: from,
        incarnation: peer_incarnation,
    };
    if let Err(refusal) = admit(peer.clone()).await {
        return Err(conn.reject(refusal).await);
    }
    conn.send(&Msg::Welcome).await?;
    Ok(conn.finish(peer))
}
