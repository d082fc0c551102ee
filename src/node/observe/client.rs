//! [`Observer`]: the client side of an observer session, for tools (the `gen-leader` command)
//! and for programs that watch a cluster they are not part of.
//!
//! Why in the library: the handshake, the frames and the status are the library's protocol;
//! a tool that re-implemented them would drift from the nodes it observes. This file only
//! connects, runs [`handshake::observe`] and turns requests and answers into calls, with a
//! timeout on each.

use std::io;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_util::codec::Framed;

use super::session::{IDLE_TIMEOUT, WATCH_HEARTBEAT};
use super::status::NodeStatus;
use crate::transport::BoxStream;
use crate::types::NodeName;
use crate::wire::codec::{self, CodecError, FrameCodec};
use crate::wire::handshake::{
    self, HandshakeError, ObserverConfig, ObserverRequest, ObserverResponse,
};

/// The largest answer an observer reads (a status with long refusal reasons is a few KiB).
const MAX_RESPONSE_LEN: usize = 4 * 1024 * 1024;

/// During a watch, the node is taken for gone after this long without a frame (it sends a
/// heartbeat every 2 s).
const WATCH_SILENCE: Duration = Duration::from_secs(8);

/// During a watch, the observer pings this often (the node closes an observer that sends
/// nothing for a minute).
const PING_EVERY: Duration = Duration::from_secs(20);

/// Why an observer could not get what it asked for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObserveError {
    /// No TCP connection could be opened (refused, no route, unknown host...).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialed.
        addr: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The TCP connection was not established in time.
    #[error("cannot connect to {addr}: no answer within {timeout:?}")]
    ConnectTimeout {
        /// The address dialed.
        addr: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The handshake failed: the node refused us ([`HandshakeError::Refused`], e.g. a wrong
    /// cookie), we refused it ([`HandshakeError::Rejected`]: its proof does not match our
    /// cookie, or another node answered), it closed the connection (not a gen-leader port,
    /// or a release without observers), its answer is no handshake, or time ran out.
    #[error("handshake with {node} failed: {source}")]
    Handshake {
        /// The node.
        node: String,
        /// What happened (boxed: it is large, and errors travel by value).
        #[source]
        source: Box<HandshakeError>,
    },
    /// The node closed the session.
    #[error("{node} closed the connection")]
    Closed {
        /// The node.
        node: String,
    },
    /// The connection failed, or the node sent a frame this client cannot read.
    #[error("connection to {node} failed: {source}")]
    Connection {
        /// The node.
        node: String,
        /// What failed.
        #[source]
        source: CodecError,
    },
    /// The node did not answer in time.
    #[error("{node} did not answer within {timeout:?}")]
    Timeout {
        /// The node.
        node: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The node answered with an error (e.g. it is stopping).
    #[error("{node} answered: {message}")]
    Node {
        /// The node.
        node: String,
        /// Its message.
        message: String,
    },
    /// The node's status is not valid JSON for a [`NodeStatus`].
    #[error("{node} sent a status this client cannot read: {source}")]
    Status {
        /// The node.
        node: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
}

impl ObserveError {
    /// The handshake's failure, if the handshake failed.
    pub fn handshake(&self) -> Option<&HandshakeError> {
        match self {
            ObserveError::Handshake { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An authenticated, read-only session with one node (see `docs/operating.md`).
///
/// ```no_run
/// use gen_leader::wire::handshake::ObserverConfig;
/// use gen_leader::{NodeName, Observer};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let node: NodeName = "n1@10.0.0.1:4001".parse()?;
/// let mut o = Observer::connect(&node, &ObserverConfig::new("my-tool", "cookie")).await?;
/// let s = o.status().await?;
/// println!("{} says the leader is {:?} at term {}", s.node, s.leader, s.term);
/// # Ok(()) }
/// ```
pub struct Observer {
    io: Framed<BoxStream, FrameCodec>,
    node: String,
    timeout: Duration,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("node", &self.node)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Observer {
    /// Connects to `node` at the address in its name and authenticates as an observer; the
    /// connection and the handshake each have `cfg.timeout`, as every later answer does.
    pub async fn connect(node: &NodeName, cfg: &ObserverConfig) -> Result<Self, ObserveError> {
        Self::connect_to(node, &node.addr(), cfg).await
    }

    /// [`connect`](Self::connect) through another address than the one in the node's name
    /// (a proxy, a NAT).
    pub async fn connect_to(
        node: &NodeName,
        addr: &str,
        cfg: &ObserverConfig,
    ) -> Result<Self, ObserveError> {
        Self::open(node, addr, cfg, |s| Ok(Box::new(s))).await
    }

    /// [`connect`](Self::connect) to a node whose cluster connections run TLS (cargo feature
    /// `tls`): the observer presents its certificate (signed by the cluster's CA; no name is
    /// required in it) and checks that the node's covers the node's name.
    #[cfg(feature = "tls")]
    pub async fn connect_tls(
        node: &NodeName,
        cfg: &ObserverConfig,
        tls: &crate::config::TlsConfig,
    ) -> Result<Self, ObserveError> {
        Self::connect_tls_to(node, &node.addr(), cfg, tls).await
    }

    /// [`connect_tls`](Self::connect_tls) through another address than the one in the
    /// node's name (the node's certificate is still checked against its name's host).
    #[cfg(feature = "tls")]
    pub async fn connect_tls_to(
        node: &NodeName,
        addr: &str,
        cfg: &ObserverConfig,
        tls: &crate::config::TlsConfig,
    ) -> Result<Self, ObserveError> {
        Self::open(node, addr, cfg, |s| {
            crate::transport::tls::client_stream(tls, node.host(), Box::new(s))
        })
        .await
    }

    async fn open(
        node: &NodeName,
        addr: &str,
        cfg: &ObserverConfig,
        wrap: impl FnOnce(TcpStream) -> io::Result<BoxStream>,
    ) -> Result<Self, ObserveError> {
        let stream = match timeout(cfg.timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(ObserveError::ConnectTimeout {
                    addr: addr.to_owned(),
                    timeout: cfg.timeout,
                })
            }
            Ok(Err(source)) => {
                return Err(ObserveError::Connect {
                    addr: addr.to_owned(),
                    source,
                })
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let stream = wrap(stream).map_err(|source| ObserveError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
        let name = node.to_string();
        let ok = handshake::observe(stream, cfg, &name)
            .await
            .and_then(|ok| crate::transport::tls::verified(ok, &name))
            .map_err(|source| ObserveError::Handshake {
                node: name.clone(),
                source: Box::new(source),
            })?;
        let (io, _) = ok.into_framed(MAX_RESPONSE_LEN);
        Ok(Observer {
            io,
            node: name,
            timeout: cfg.timeout,
        })
    }

    /// The node observed.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node's status now.
    pub async fn status(&mut self) -> Result<NodeStatus, ObserveError> {
        self.request(ObserverRequest::Status).await?;
        loop {
            match self.answer(self.timeout).await? {
                ObserverResponse::Heartbeat => continue,
                other => return self.status_of(other),
            }
        }
    }

    /// Turns the session into a watch: [`StatusWatch::next`] yields the status now, then
    /// once per leadership change on the node.
    pub async fn watch(mut self) -> Result<StatusWatch, ObserveError> {
        self.request(ObserverRequest::Watch).await?;
        Ok(StatusWatch {
            observer: self,
            next_ping: Instant::now() + PING_EVERY,
            heard: Instant::now(),
        })
    }

    async fn request(&mut self, r: ObserverRequest) -> Result<(), ObserveError> {
        let frame = codec::encode_frame(&r).map_err(|source| self.broken(source))?;
        match timeout(self.timeout, self.io.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(self.broken(source)),
            Err(_) => Err(ObserveError::Timeout {
                node: self.node.clone(),
                timeout: self.timeout,
            }),
        }
    }

    /// The node's next frame, within `limit`.
    async fn answer(&mut self, limit: Duration) -> Result<ObserverResponse, ObserveError> {
        match timeout(limit, self.io.next()).await {
            Err(_) => Err(ObserveError::Timeout {
                node: self.node.clone(),
                timeout: limit,
            }),
            Ok(None) => Err(ObserveError::Closed {
                node: self.node.clone(),
            }),
            Ok(Some(Err(source))) => Err(self.broken(source)),
            Ok(Some(Ok(body))) => codec::decode_body(&body).map_err(|source| self.broken(source)),
        }
    }

    fn status_of(&self, r: ObserverResponse) -> Result<NodeStatus, ObserveError> {
        match r {
            ObserverResponse::Status(json) => {
                serde_json::from_slice(&json).map_err(|source| ObserveError::Status {
                    node: self.node.clone(),
                    source,
                })
            }
            ObserverResponse::Error(message) => Err(ObserveError::Node {
                node: self.node.clone(),
                message,
            }),
            // Heartbeats are skipped by the callers; anything else is from a newer node.
            _ => Err(ObserveError::Node {
                node: self.node.clone(),
                message: "an answer this client does not know".into(),
            }),
        }
    }

    fn broken(&self, source: CodecError) -> ObserveError {
        ObserveError::Connection {
            node: self.node.clone(),
            source,
        }
    }
}

/// A watch of one node's leadership (from [`Observer::watch`]).
#[derive(Debug)]
pub struct StatusWatch {
    observer: Observer,
    next_ping: Instant,
    /// When the node last sent a frame.
    heard: Instant,
}

impl StatusWatch {
    /// The node observed.
    pub fn node(&self) -> &str {
        self.observer.node()
    }

    /// The next status: the first call returns the status at the start of the watch, each
    /// later one the status after the next leadership change (leader, term or state). Fails
    /// when the connection is lost or the node is silent for 8 s (it sends a heartbeat every
    /// 2 s while nothing changes).
    pub async fn next(&mut self) -> Result<NodeStatus, ObserveError> {
        debug_assert!(PING_EVERY < IDLE_TIMEOUT && WATCH_HEARTBEAT < WATCH_SILENCE);
        loop {
            let now = Instant::now();
            if now >= self.next_ping {
                self.observer.request(ObserverRequest::Ping).await?;
                self.next_ping = now + PING_EVERY;
            }
            let silent_at = self.heard + WATCH_SILENCE;
            let wait = silent_at.min(self.next_ping).saturating_duration_since(now);
            match self.observer.answer(wait).await {
                Ok(ObserverResponse::Heartbeat) => self.heard = Instant::now(),
                Ok(other) => {
                    self.heard = Instant::now();
                    return self.observer.status_of(other);
                }
                // A ping is due: not yet silent.
                Err(ObserveError::Timeout { .. }) if Instant::now() < silent_at => {}
                Err(ObserveError::Timeout { node, .. }) => {
                    return Err(ObserveError::Timeout {
                        node,
                        timeout: WATCH_SILENCE,
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }
}
