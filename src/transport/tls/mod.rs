//! TLS on cluster connections (cargo feature `tls`): what the node runtime calls, whether the
//! feature is on or not.
//!
//! Why one module of hooks: the runtime only sees boxed streams, so TLS wraps the listener
//! and the connector (`conn`) and nothing else of the runtime changes, except the few places
//! that must know about certificates: after the gen-leader handshake, the name a peer proved
//! with the cookie must be the one its certificate carries (`identity`), and a TLS failure
//! is a misconfiguration shown in the view's refusals. Without the feature, every hook here
//! is a no-op.

#[cfg(feature = "tls")]
mod conn;
#[cfg(feature = "tls")]
pub mod identity;

use std::sync::Arc;

use crate::config::Config;
#[cfg(feature = "tls")]
use crate::transport::BoxStream;
use crate::transport::{Connector, Listener, Stream};
use crate::wire::handshake::{HandshakeError, HandshakeOk, Refusal};

#[cfg(feature = "tls")]
pub use identity::IdentityMismatch;

/// What went wrong with TLS on a connection: the source of the I/O error a failed handshake
/// reports (`HandshakeError::Io`), so that logs and the view's refusals say it in words.
#[cfg(feature = "tls")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFailure {
    /// We refused the peer's certificate: not signed by the CA, expired or not yet valid,
    /// not for the host dialed, or none at all.
    #[error("TLS: the peer's certificate was refused: {0} (is it signed by this node's CA, valid now, and issued for the peer's host?)")]
    PeerCertificate(#[source] rustls::Error),
    /// The peer refused ours.
    #[error("TLS: the peer refused this node's certificate: {0} (is it signed by the peer's CA and valid now?)")]
    OurCertificate(#[source] rustls::Error),
    /// The peer does not speak TLS.
    #[error("TLS: the peer does not speak TLS ({0}): is TLS configured on both sides?")]
    NotTls(#[source] rustls::Error),
    /// The peer closed the connection during the TLS handshake.
    #[error("TLS: the peer closed the connection during the TLS handshake (is TLS configured on both sides?)")]
    ClosedInHandshake,
    /// The peer's certificate is valid but does not cover the node it claims to be.
    #[error("TLS: the certificate of {claimed} does not cover it: {reason}")]
    Identity {
        /// The node name the peer claims (or the host dialed).
        claimed: String,
        /// Why not.
        #[source]
        reason: IdentityMismatch,
    },
    /// Any other TLS error.
    #[error("TLS: {0}")]
    Other(#[source] rustls::Error),
}

/// How a refusal sent for a certificate that does not cover the claimed name starts (it
/// travels as `Refusal::Other`, a string; this prefix lets both sides treat it as a
/// misconfiguration).
const IDENTITY_REFUSAL: &str = "TLS: the certificate of ";

/// The listener and connector a node uses: wrapped in TLS when its configuration has it.
#[cfg_attr(not(feature = "tls"), allow(unused_variables))]
pub(crate) fn wrap(
    config: &Config,
    listener: Box<dyn Listener>,
    connector: Arc<dyn Connector>,
) -> (Box<dyn Listener>, Arc<dyn Connector>) {
    #[cfg(feature = "tls")]
    if let Some(tls) = config.tls() {
        return (
            Box::new(conn::TlsListener {
                inner: listener,
                acceptor: tokio_rustls::TlsAcceptor::from(tls.server.clone()),
            }),
            Arc::new(conn::TlsConnector {
                inner: connector,
                tls: tls.clone(),
                hosts: dial_hosts(config),
            }),
        );
    }
    (listener, connector)
}

/// `stream` wrapped in TLS as a client that checks the server's certificate against `host`
/// (for an observer).
#[cfg(feature = "tls")]
pub(crate) fn client_stream(
    tls: &crate::config::TlsConfig,
    host: &str,
    stream: BoxStream,
) -> std::io::Result<BoxStream> {
    Ok(Box::new(conn::client(tls, host, stream)?))
}

/// For each address this node dials, the host of the member's name: the name its certificate
/// must carry, also when the address is another (`ConfigBuilder::dial_addr`: a NAT, a proxy).
#[cfg(feature = "tls")]
fn dial_hosts(config: &Config) -> std::collections::HashMap<String, String> {
    let m = config.members();
    m.all()
        .iter()
        .filter_map(|n| {
            m.id(n)
                .map(|id| (config.dial_addr(id), n.host().to_owned()))
        })
        .collect()
}

/// The handle on the certificate a TLS stream's peer presents (filled by its TLS
/// handshake); `None` for a stream without TLS.
#[derive(Clone, Debug)]
pub(crate) struct PeerCert(#[cfg(feature = "tls")] conn::PeerCert);

/// The peer certificate handle of `stream`, if it runs TLS.
#[cfg_attr(not(feature = "tls"), allow(unused_variables))]
pub(crate) fn peer_of(stream: &dyn Stream) -> Option<PeerCert> {
    #[cfg(feature = "tls")]
    {
        let any = Stream::as_any(stream);
        if let Some(c) = any.downcast_ref::<conn::TlsConn>() {
            return Some(PeerCert(c.peer_cert()));
        }
        // A boxed stream boxed again.
        if let Some(inner) = any.downcast_ref::<BoxStream>() {
            return peer_of(&**inner);
        }
    }
    None
}

impl PeerCert {
    /// Whether the certificate covers the node `claimed`.
    #[cfg(feature = "tls")]
    fn check(&self, claimed: &str) -> Result<(), TlsFailure> {
        let reason = match self.0.get() {
            None => IdentityMismatch::NoCertificate,
            Some(der) => match identity::check(der, claimed) {
                Ok(()) => return Ok(()),
                Err(r) => r,
            },
        };
        Err(TlsFailure::Identity {
            claimed: claimed.to_owned(),
            reason,
        })
    }
}

/// On the accepting side, after the dialer proved the cookie as `claimed`: the refusal to
/// send if its certificate does not cover that name.
#[cfg_attr(not(feature = "tls"), allow(unused_variables))]
pub(crate) fn refuse_claim(peer: Option<&PeerCert>, claimed: &str) -> Option<Refusal> {
    #[cfg(feature = "tls")]
    if let Some(Err(e)) = peer.map(|p| p.check(claimed)) {
        return Some(Refusal::Other(e.to_string()));
    }
    None
}

/// On the dialing side, after the handshake: the connection, if the peer's certificate
/// covers the node dialed (`name`).
#[cfg_attr(not(feature = "tls"), allow(unused_variables))]
pub(crate) fn verified<S: Stream>(
    ok: HandshakeOk<S>,
    name: &str,
) -> Result<HandshakeOk<S>, HandshakeError> {
    #[cfg(feature = "tls")]
    if let Some(p) = peer_of(&ok.stream) {
        p.check(name)
            .map_err(|e| HandshakeError::Io(std::io::Error::other(e)))?;
    }
    Ok(ok)
}

/// Whether a failed handshake failed for TLS (a misconfiguration: shown in the view's
/// refusals, logged at WARN).
pub(crate) fn is_tls_failure(e: &HandshakeError) -> bool {
    match e {
        #[cfg(feature = "tls")]
        HandshakeError::Io(io) => io
            .get_ref()
            .is_some_and(|r| r.downcast_ref::<TlsFailure>().is_some()),
        HandshakeError::Rejected(Refusal::Other(s))
        | HandshakeError::Refused(Refusal::Other(s)) => s.starts_with(IDENTITY_REFUSAL),
        _ => false,
    }
}
