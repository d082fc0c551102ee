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
    /// The cluster configurations differ (candidates, workers, `preempt`, heartbeat or
    /// failure timeout).
    #[error("cluster configuration mismatch (candidates, workers, preempt, heartbeat or failure timeout differ)")]
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

/// The handshake's messages, in order: `Hello` (dialer), `Challenge` (acceptor), `Auth`
/// (dialer), then `Welcome` or `Refuse` (acceptor); either side may send `Refuse` instead of
/// its next message. Public so that tests and fuzzers can build exact (and hostile) frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HandshakeMsg {
    /// The dialer's opening.
    Hello {
        /// The dialer's protocol version.
        version: u8,
        /// The cluster name.
        cluster: String,
        /// The dialer's node name.
        from: String,
        /// The node the dialer means to reach.
        to: String,
        /// The dialer's incarnation (random per process start).
        incarnation: u64,
        /// Digest of the dialer's cluster configuration.
        members_digest: [u8; 32],
        /// The dialer's fresh nonce.
        nonce: [u8; 16],
    },
    /// The acceptor's proof that it knows the cookie, and its own nonce.
    Challenge {
        /// The acceptor's node name.
        from: String,
        /// The acceptor's incarnation.
        incarnation: u64,
        /// The acceptor's fresh nonce.
        nonce: [u8; 16],
        /// HMAC-SHA256 over the exchange, labelled for the acceptor.
        mac: [u8; 32],
    },
    /// The dialer's proof that it knows the cookie.
    Auth {
        /// HMAC-SHA256 over the exchange, labelled for the dialer.
        mac: [u8; 32],
    },
    /// The acceptor admits the dialer: the connection carries messages from now on.
    Welcome,
    /// The sender refuses the handshake, and says why.
    Refuse(Refusal),
}

type Msg = HandshakeMsg;

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
            } => (
                version,
                cluster,
                from,
                to,
                incarnation,
                members_digest,
                nonce,
            ),
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

#[cfg(test)]
mod tests {
    use super::super::codec::{encode_frame_into, DEFAULT_MAX_FRAME_LEN};
    use super::*;
    use rand::{Rng, SeedableRng};
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    const A: &str = "a@127.0.0.1:4001";
    const B: &str = "b@127.0.0.1:4002";

    fn cfg(me: &str, incarnation: u64) -> HandshakeConfig {
        HandshakeConfig {
            cluster: "test".into(),
            cookie: b"secret cookie".to_vec(),
            me: me.into(),
            incarnation,
            members_digest: [7; 32],
            timeout: Duration::from_secs(5),
        }
    }

    fn known(name: &str) -> bool {
        name == A || name == B
    }

    async fn admit_all(_: PeerHello) -> Result<(), Refusal> {
        Ok(())
    }

    /// Runs `dial` (from `dcfg` towards `target`) against `accept` (`acfg`) over a duplex pipe.
    async fn run(
        dcfg: &HandshakeConfig,
        target: &str,
        acfg: &HandshakeConfig,
    ) -> (
        Result<HandshakeOk<DuplexStream>, HandshakeError>,
        Result<HandshakeOk<DuplexStream>, HandshakeError>,
    ) {
        let (d, a) = duplex(64 * 1024);
        tokio::join!(dial(d, dcfg, target), accept(a, acfg, known, admit_all))
    }

    fn refused(r: &Result<HandshakeOk<DuplexStream>, HandshakeError>) -> Option<&Refusal> {
        match r {
            Err(HandshakeError::Refused(r)) => Some(r),
            _ => None,
        }
    }

    fn rejected(r: &Result<HandshakeOk<DuplexStream>, HandshakeError>) -> Option<&Refusal> {
        match r {
            Err(HandshakeError::Rejected(r)) => Some(r),
            _ => None,
        }
    }

    fn frame_with_version(msg: &Msg, version: u8) -> Vec<u8> {
        let mut buf = BytesMut::new();
        encode_frame_into(msg, &mut buf).expect("encode");
        buf[4] = version;
        buf.to_vec()
    }

    /// Reads one frame from a raw stream and decodes it as a handshake message.
    async fn read_msg(s: &mut DuplexStream) -> Msg {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.expect("read length");
        let mut rest = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut rest).await.expect("read frame");
        assert_eq!(rest[0], PROTOCOL_VERSION);
        decode_body(&rest[1..]).expect("decode")
    }

    fn hello(c: &HandshakeConfig, to: &str) -> Msg {
        Msg::Hello {
            version: PROTOCOL_VERSION,
            cluster: c.cluster.clone(),
            from: c.me.clone(),
            to: to.into(),
            incarnation: c.incarnation,
            members_digest: c.members_digest,
            nonce: [1; 16],
        }
    }

    #[tokio::test]
    async fn success_both_ways() {
        let (ca, cb) = (cfg(A, 11), cfg(B, 22));
        let (d, a) = run(&ca, B, &cb).await;
        let (d, a) = (d.expect("dial"), a.expect("accept"));
        assert_eq!(
            d.peer,
            PeerHello {
                name: B.into(),
                incarnation: 22
            }
        );
        assert_eq!(
            a.peer,
            PeerHello {
                name: A.into(),
                incarnation: 11
            }
        );

        let (d, a) = run(&cb, A, &ca).await;
        let (d, a) = (d.expect("dial"), a.expect("accept"));
        assert_eq!(
            d.peer,
            PeerHello {
                name: A.into(),
                incarnation: 11
            }
        );
        assert_eq!(
            a.peer,
            PeerHello {
                name: B.into(),
                incarnation: 22
            }
        );

        // The connection is usable afterwards with a bigger cap.
        let (mut df, _) = d.into_framed(DEFAULT_MAX_FRAME_LEN);
        let (mut af, _) = a.into_framed(DEFAULT_MAX_FRAME_LEN);
        let big = vec![9u8; 100_000];
        // Larger than the pipe buffer: send and receive concurrently.
        let (sent, body) = tokio::join!(df.send(encode_frame(&big).unwrap()), af.next());
        sent.unwrap();
        let body = body.unwrap().unwrap();
        assert_eq!(decode_body::<Vec<u8>>(&body).unwrap(), big);
    }

    #[tokio::test]
    async fn admit_sees_authenticated_peer() {
        let (ca, cb) = (cfg(A, 11), cfg(B, 22));
        let (d, a) = duplex(4096);
        let (dr, ar) = tokio::join!(
            dial(d, &ca, B),
            accept(a, &cb, known, |p: PeerHello| async move {
                assert_eq!(
                    p,
                    PeerHello {
                        name: A.into(),
                        incarnation: 11
                    }
                );
                Ok(())
            })
        );
        assert!(dr.is_ok() && ar.is_ok());
    }

    #[tokio::test]
    async fn over_tcp() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (ca, cb) = (cfg(A, 1), cfg(B, 2));
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let ok = accept(sock, &cb, known, admit_all).await.unwrap();
            let (mut f, peer) = ok.into_framed(DEFAULT_MAX_FRAME_LEN);
            f.send(encode_frame(&String::from("hi")).unwrap())
                .await
                .unwrap();
            peer
        });
        let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let ok = dial(sock, &ca, B).await.unwrap();
        assert_eq!(
            ok.peer,
            PeerHello {
                name: B.into(),
                incarnation: 2
            }
        );
        let (mut f, _) = ok.into_framed(DEFAULT_MAX_FRAME_LEN);
        let body = f.next().await.unwrap().unwrap();
        assert_eq!(decode_body::<String>(&body).unwrap(), "hi");
        assert_eq!(
            server.await.unwrap(),
            PeerHello {
                name: A.into(),
                incarnation: 1
            }
        );
    }

    #[tokio::test]
    async fn bytes_after_welcome_are_kept() {
        // A scripted acceptor writes Welcome and an application frame in one
        // write; the dialer must hand the second frame back in `read_buf`.
        let ca = cfg(A, 1);
        let cb = cfg(B, 2);
        let (d, mut a) = duplex(64 * 1024);
        let script = async {
            let Msg::Hello { nonce: nd, .. } = read_msg(&mut a).await else {
                panic!("expected Hello")
            };
            let na = [5u8; 16];
            let t = Transcript {
                cluster: &cb.cluster,
                dialer: A,
                acceptor: B,
                dialer_incarnation: 1,
                acceptor_incarnation: 2,
                dialer_nonce: &nd,
                acceptor_nonce: &na,
            };
            let challenge = Msg::Challenge {
                from: B.into(),
                incarnation: 2,
                nonce: na,
                mac: t.sign(&cb.cookie, ACCEPTOR_LABEL).unwrap(),
            };
            a.write_all(&encode_frame(&challenge).unwrap())
                .await
                .unwrap();
            let Msg::Auth { mac } = read_msg(&mut a).await else {
                panic!("expected Auth")
            };
            assert!(t.verify(&cb.cookie, DIALER_LABEL, &mac).unwrap());
            let mut out = BytesMut::new();
            encode_frame_into(&Msg::Welcome, &mut out).unwrap();
            encode_frame_into(&String::from("after"), &mut out).unwrap();
            a.write_all(&out).await.unwrap();
            a
        };
        let (res, _a) = tokio::join!(dial(d, &ca, B), script);
        let ok = res.expect("dial");
        assert!(!ok.read_buf.is_empty());
        let (mut f, _) = ok.into_framed(DEFAULT_MAX_FRAME_LEN);
        let body = f.next().await.unwrap().unwrap();
        assert_eq!(decode_body::<String>(&body).unwrap(), "after");
    }

    #[tokio::test]
    async fn wrong_cookie() {
        let ca = cfg(A, 1);
        let mut cb = cfg(B, 2);
        cb.cookie = b"another cookie".to_vec();
        let (d, a) = run(&ca, B, &cb).await;
        // The dialer notices first (the challenge MAC is wrong) and says so.
        assert_eq!(rejected(&d), Some(&Refusal::BadAuth), "{d:?}");
        assert_eq!(refused(&a), Some(&Refusal::BadAuth), "{a:?}");
        assert_eq!(
            a.unwrap_err().to_string(),
            "peer refused the handshake: wrong cookie (authentication failed)"
        );
    }

    #[tokio::test]
    async fn forged_auth_rejected_by_acceptor() {
        // A dialer that skips checking the challenge and sends a bogus MAC.
        let ca = cfg(A, 1);
        let cb = cfg(B, 2);
        let (mut d, a) = duplex(4096);
        let script = async {
            d.write_all(&encode_frame(&hello(&ca, B)).unwrap())
                .await
                .unwrap();
            assert!(matches!(read_msg(&mut d).await, Msg::Challenge { .. }));
            d.write_all(&encode_frame(&Msg::Auth { mac: [0; 32] }).unwrap())
                .await
                .unwrap();
            read_msg(&mut d).await
        };
        let (reply, res) = tokio::join!(script, accept(a, &cb, known, admit_all));
        assert_eq!(reply, Msg::Refuse(Refusal::BadAuth));
        assert!(matches!(
            res,
            Err(HandshakeError::Rejected(Refusal::BadAuth))
        ));
    }

    /// B, sent `first` as the dialer's first bytes, answers `Refuse(expected)` and fails
    /// with it.
    async fn acceptor_refuses(first: &[u8], expected: Refusal) {
        let cb = cfg(B, 2);
        let (mut d, a) = duplex(4096);
        let script = async {
            d.write_all(first).await.unwrap();
            read_msg(&mut d).await
        };
        let (reply, res) = tokio::join!(script, accept(a, &cb, known, admit_all));
        assert_eq!(reply, Msg::Refuse(expected.clone()));
        assert!(matches!(res, Err(HandshakeError::Rejected(r)) if r == expected));
    }

    #[tokio::test]
    async fn wrong_frame_version_from_dialer() {
        let ca = cfg(A, 1);
        let expected = Refusal::Version {
            ours: PROTOCOL_VERSION,
            theirs: 2,
        };
        acceptor_refuses(&frame_with_version(&hello(&ca, B), 2), expected).await;
    }

    #[tokio::test]
    async fn wrong_hello_version_field() {
        let ca = cfg(A, 1);
        let Msg::Hello {
            cluster,
            from,
            to,
            incarnation,
            members_digest,
            nonce,
            ..
        } = hello(&ca, B)
        else {
            unreachable!()
        };
        let h = Msg::Hello {
            version: 9,
            cluster,
            from,
            to,
            incarnation,
            members_digest,
            nonce,
        };
        let expected = Refusal::Version {
            ours: PROTOCOL_VERSION,
            theirs: 9,
        };
        acceptor_refuses(&encode_frame(&h).unwrap(), expected).await;
    }

    #[tokio::test]
    async fn wrong_frame_version_from_acceptor() {
        let ca = cfg(A, 1);
        let (d, mut a) = duplex(4096);
        let script = async {
            assert!(matches!(read_msg(&mut a).await, Msg::Hello { .. }));
            let c = Msg::Challenge {
                from: B.into(),
                incarnation: 2,
                nonce: [0; 16],
                mac: [0; 32],
            };
            a.write_all(&frame_with_version(&c, 3)).await.unwrap();
            read_msg(&mut a).await
        };
        let (res, reply) = tokio::join!(dial(d, &ca, B), script);
        let expected = Refusal::Version {
            ours: PROTOCOL_VERSION,
            theirs: 3,
        };
        assert_eq!(reply, Msg::Refuse(expected.clone()));
        assert!(matches!(res, Err(HandshakeError::Rejected(r)) if r == expected));
    }

    #[tokio::test]
    async fn wrong_cluster() {
        let ca = cfg(A, 1);
        let mut cb = cfg(B, 2);
        cb.cluster = "other".into();
        let (d, a) = run(&ca, B, &cb).await;
        assert_eq!(refused(&d), Some(&Refusal::Cluster), "{d:?}");
        assert_eq!(rejected(&a), Some(&Refusal::Cluster), "{a:?}");
    }

    #[tokio::test]
    async fn members_mismatch() {
        let ca = cfg(A, 1);
        let mut cb = cfg(B, 2);
        cb.members_digest = [8; 32];
        let (d, a) = run(&ca, B, &cb).await;
        assert_eq!(refused(&d), Some(&Refusal::Members), "{d:?}");
        assert_eq!(rejected(&a), Some(&Refusal::Members), "{a:?}");
    }

    #[tokio::test]
    async fn unknown_name() {
        let cx = cfg("x@127.0.0.1:9", 1);
        let cb = cfg(B, 2);
        let (d, a) = run(&cx, B, &cb).await;
        let expected = Refusal::Unknown("x@127.0.0.1:9".into());
        assert_eq!(refused(&d), Some(&expected), "{d:?}");
        assert_eq!(rejected(&a), Some(&expected), "{a:?}");
    }

    #[tokio::test]
    async fn wrong_node() {
        let ca = cfg(A, 1);
        let cb = cfg(B, 2);
        let (d, a) = run(&ca, "c@127.0.0.1:4003", &cb).await;
        let expected = Refusal::WrongNode {
            expected: "c@127.0.0.1:4003".into(),
            got: B.into(),
        };
        assert_eq!(refused(&d), Some(&expected), "{d:?}");
        assert_eq!(rejected(&a), Some(&expected), "{a:?}");
    }

    #[tokio::test]
    async fn dialer_claiming_our_name() {
        let impostor = cfg(B, 1);
        let cb = cfg(B, 2);
        let (d, a) = run(&impostor, B, &cb).await;
        assert_eq!(refused(&d), Some(&Refusal::Duplicate(B.into())), "{d:?}");
        assert_eq!(rejected(&a), Some(&Refusal::Duplicate(B.into())), "{a:?}");
    }

    #[tokio::test]
    async fn admission_refused() {
        let ca = cfg(A, 1);
        let cb = cfg(B, 2);
        let (d, a) = duplex(4096);
        let (dr, ar) = tokio::join!(
            dial(d, &ca, B),
            accept(a, &cb, known, |p: PeerHello| async move {
                Err(Refusal::Duplicate(p.name))
            })
        );
        assert_eq!(refused(&dr), Some(&Refusal::Duplicate(A.into())), "{dr:?}");
        assert_eq!(rejected(&ar), Some(&Refusal::Duplicate(A.into())), "{ar:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn silent_dialer_times_out() {
        let cb = cfg(B, 2);
        let (_d, a) = duplex(4096); // keep the client end open, send nothing
        let res = accept(a, &cb, known, admit_all).await;
        assert!(matches!(res, Err(HandshakeError::Timeout)), "{res:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn silent_acceptor_times_out() {
        let ca = cfg(A, 1);
        let (d, _a) = duplex(4096);
        let res = dial(d, &ca, B).await;
        assert!(matches!(res, Err(HandshakeError::Timeout)), "{res:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_admission_times_out() {
        let ca = cfg(A, 1);
        let cb = cfg(B, 2);
        let (d, a) = duplex(4096);
        let (dr, ar) = tokio::join!(
            dial(d, &ca, B),
            accept(a, &cb, known, |_| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            })
        );
        assert!(matches!(ar, Err(HandshakeError::Timeout)), "{ar:?}");
        assert!(dr.is_err());
    }

    #[tokio::test]
    async fn closed_early() {
        let cb = cfg(B, 2);
        let (d, a) = duplex(4096);
        drop(d);
        let res = accept(a, &cb, known, admit_all).await;
        assert!(matches!(res, Err(HandshakeError::Closed)), "{res:?}");
    }

    #[tokio::test]
    async fn unexpected_first_message() {
        let cb = cfg(B, 2);
        let (mut d, a) = duplex(4096);
        d.write_all(&encode_frame(&Msg::Welcome).unwrap())
            .await
            .unwrap();
        let res = accept(a, &cb, known, admit_all).await;
        assert!(matches!(res, Err(HandshakeError::Protocol(_))), "{res:?}");
    }

    #[tokio::test]
    async fn random_bytes_to_acceptor() {
        let cb = cfg(B, 2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for round in 0..500 {
            let len = rng.random_range(0..300usize);
            let mut bytes = vec![0u8; len];
            rng.fill(&mut bytes[..]);
            if round % 2 == 0 && len > 5 {
                // plausible header, garbage body
                let n = u32::try_from(len - 4).unwrap();
                bytes[..4].copy_from_slice(&n.to_be_bytes());
                bytes[4] = PROTOCOL_VERSION;
            }
            let (mut d, a) = duplex(1024);
            let client = async move {
                let _ = d.write_all(&bytes).await;
                // dropping `d` closes the stream: the acceptor must not wait forever
            };
            let (_, res) = tokio::join!(client, accept(a, &cb, known, admit_all));
            assert!(res.is_err(), "round {round} unexpectedly succeeded");
        }
    }

    #[tokio::test]
    async fn huge_length_prefix() {
        let cb = cfg(B, 2);
        let (mut d, a) = duplex(4096);
        d.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, PROTOCOL_VERSION])
            .await
            .unwrap();
        // `d` stays open: the error must come from the length check, not EOF.
        let res = accept(a, &cb, known, admit_all).await;
        assert!(
            matches!(
                res,
                Err(HandshakeError::Codec(CodecError::FrameTooLarge {
                    len: 0xFFFF_FFFF,
                    max: HANDSHAKE_MAX_FRAME_LEN
                }))
            ),
            "{res:?}"
        );
    }

    #[test]
    fn debug_hides_cookie() {
        let c = cfg(A, 1);
        let s = format!("{c:?}");
        assert!(!s.contains("secret"), "{s}");
        assert!(s.contains("redacted"));
    }

    #[test]
    fn messages_are_readable() {
        assert_eq!(
            HandshakeError::Rejected(Refusal::Members).to_string(),
            "refused the peer's handshake: cluster configuration mismatch (candidates, workers, preempt, heartbeat or failure timeout differ)"
        );
        assert_eq!(
            Refusal::Unknown("x@h:1".into()).to_string(),
            "unknown node \"x@h:1\": not a member of this cluster"
        );
    }
}
