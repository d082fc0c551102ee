//! TLS over any [`Connector`] and [`Listener`]: every stream they open is wrapped in a
//! [`TlsConn`] whose TLS handshake runs on its first read or write.
//!
//! Why lazily: the accept loop must never wait on one connection (see `node::accept`), so the
//! server side of the handshake runs in the connection's own task, under the same deadline
//! as the `Hello` that follows it; and both sides' TLS failures surface where every other
//! handshake failure does, as an I/O error of the gen-leader handshake, carrying a
//! [`TlsFailure`] that says what went wrong in words an operator can act on.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::AlertDescription;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::{Accept, Connect, TlsAcceptor, TlsStream};

use super::identity::IdentityMismatch;
use super::TlsFailure;
use crate::config::TlsConfig;
use crate::transport::{BoxFuture, BoxStream, Connector, Listener};

/// The end-entity certificate the peer presented, once the TLS handshake is done.
pub(crate) type PeerCert = Arc<OnceLock<Vec<u8>>>;

enum State {
    Connecting(Connect<BoxStream>),
    Accepting(Accept<BoxStream>),
    Ready(Box<TlsStream<BoxStream>>),
    /// The handshake failed (the error was returned once already).
    Failed,
}

/// A TLS connection whose handshake runs on its first read or write.
pub(crate) struct TlsConn {
    state: State,
    peer: PeerCert,
}

impl TlsConn {
    /// The peer's certificate, filled when the handshake completes.
    pub(crate) fn peer_cert(&self) -> PeerCert {
        self.peer.clone()
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let done = match &mut self.state {
            State::Ready(_) => return Poll::Ready(Ok(())),
            State::Failed => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the TLS handshake failed",
                )))
            }
            State::Connecting(c) => match Pin::new(c).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r.map(TlsStream::Client),
            },
            State::Accepting(a) => match Pin::new(a).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r.map(TlsStream::Server),
            },
        };
        match done {
            Ok(s) => {
                let cert = match &s {
                    TlsStream::Client(c) => c.get_ref().1.peer_certificates(),
                    TlsStream::Server(c) => c.get_ref().1.peer_certificates(),
                }
                .and_then(|chain| chain.first())
                .map(|c| c.as_ref().to_vec());
                if let Some(c) = cert {
                    let _ = self.peer.set(c);
                }
                self.state = State::Ready(Box::new(s));
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                self.state = State::Failed;
                Poll::Ready(Err(classify(e, true)))
            }
        }
    }

    fn stream(&mut self) -> Option<Pin<&mut TlsStream<BoxStream>>> {
        match &mut self.state {
            State::Ready(s) => Some(Pin::new(s.as_mut())),
            _ => None,
        }
    }
}

fn not_ready() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS not ready")
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_handshake(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let Some(s) = this.stream() else {
            return Poll::Ready(Err(not_ready()));
        };
        // An alert after the handshake (the server refused our certificate) arrives here.
        s.poll_read(cx, buf).map_err(|e| classify(e, false))
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_handshake(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let Some(s) = this.stream() else {
            return Poll::Ready(Err(not_ready()));
        };
        s.poll_write(cx, buf).map_err(|e| classify(e, false))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_handshake(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let Some(s) = this.stream() else {
            return Poll::Ready(Err(not_ready()));
        };
        s.poll_write_vectored(cx, bufs)
            .map_err(|e| classify(e, false))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Some(s) => s.poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Some(s) => s.poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Alerts by which a peer says it refused our certificate.
fn refuses_our_certificate(a: AlertDescription) -> bool {
    matches!(
        a,
        AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::AccessDenied
    )
}

/// Turns rustls' error (inside an I/O error) into a [`TlsFailure`] (inside an I/O error).
fn classify(e: io::Error, handshaking: bool) -> io::Error {
    let kind = e.kind();
    let Some(tls) = e
        .get_ref()
        .and_then(|r| r.downcast_ref::<rustls::Error>())
        .cloned()
    else {
        if handshaking && kind == io::ErrorKind::UnexpectedEof {
            return io::Error::new(kind, TlsFailure::ClosedInHandshake);
        }
        return e;
    };
    let failure = match tls {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            TlsFailure::PeerCertificate(tls)
        }
        rustls::Error::AlertReceived(a) if refuses_our_certificate(a) => {
            TlsFailure::OurCertificate(tls)
        }
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. }
            if handshaking =>
        {
            TlsFailure::NotTls(tls)
        }
        other => TlsFailure::Other(other),
    };
    io::Error::new(kind, failure)
}

/// The host of `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Wraps a stream in TLS as the client, checking the server's certificate against `host`.
pub(crate) fn client(tls: &TlsConfig, host: &str, stream: BoxStream) -> io::Result<TlsConn> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            TlsFailure::Identity {
                claimed: host.to_owned(),
                reason: IdentityMismatch::BadName(e.to_string()),
            },
        )
    })?;
    let c = tokio_rustls::TlsConnector::from(tls.client.clone());
    Ok(TlsConn {
        state: State::Connecting(c.connect(name, stream)),
        peer: Arc::default(),
    })
}

/// Wraps a stream in TLS as the server.
pub(crate) fn server(acceptor: &TlsAcceptor, stream: BoxStream) -> TlsConn {
    TlsConn {
        state: State::Accepting(acceptor.accept(stream)),
        peer: Arc::default(),
    }
}

/// A [`Connector`] whose connections run TLS.
pub(crate) struct TlsConnector {
    pub(crate) inner: Arc<dyn Connector>,
    pub(crate) tls: TlsConfig,
    /// The host of the member's name for each address dialed (the server name to check).
    pub(crate) hosts: std::collections::HashMap<String, String>,
}

impl Connector for TlsConnector {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxStream>> {
        let tls = self.tls.clone();
        let host = match self.hosts.get(&addr) {
            Some(h) => h.clone(),
            None => host_of(&addr).to_owned(),
        };
        let open = self.inner.connect(addr);
        Box::pin(async move {
            let s = open.await?;
            Ok(Box::new(client(&tls, &host, s)?) as BoxStream)
        })
    }
}

/// A [`Listener`] whose connections run TLS.
pub(crate) struct TlsListener {
    pub(crate) inner: Box<dyn Listener>,
    pub(crate) acceptor: TlsAcceptor,
}

impl Listener for TlsListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxStream, String)>> {
        Box::pin(async move {
            let (s, from) = self.inner.accept().await?;
            Ok((Box::new(server(&self.acceptor, s)) as BoxStream, from))
        })
    }
    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{read_loop, write_loop};
    use crate::wire::codec::{encode_frame, FrameCodec};
    use crate::wire::Msg;
    use bytes::BytesMut;
    use std::time::Duration;
    use tokio::sync::mpsc;
    use tokio_util::codec::FramedRead;

    /// A certificate for 127.0.0.1 signed by a CA, as both ends' settings.
    fn tls() -> TlsConfig {
        let ca_key = testkit::rcgen::KeyPair::generate().unwrap();
        let mut ca = testkit::rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = testkit::rcgen::IsCa::Ca(testkit::rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = testkit::rcgen::Issuer::new(ca, ca_key);
        let key = testkit::rcgen::KeyPair::generate().unwrap();
        let mut p = testkit::rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names
            .push(testkit::rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        let cert = p.signed_by(&key, &issuer).unwrap().pem();
        TlsConfig::from_pem(&cert, key.serialize_pem(), &ca_pem).unwrap()
    }

    /// A frame larger than the pipe is delivered whole although no frame follows it (the
    /// writer flushes what TLS still holds), and the peer's certificate is known after.
    #[tokio::test]
    async fn a_big_frame_arrives_whole_with_nothing_after_it() {
        let tls = tls();
        let (a, b) = tokio::io::duplex(4096);
        let client = client(&tls, "127.0.0.1", Box::new(a)).unwrap();
        let server = server(&TlsAcceptor::from(tls.server.clone()), Box::new(b));
        let peer = server.peer_cert();
        let frame = encode_frame(&Msg::LeaderCall {
            id: 7,
            payload: vec![1; 300_000],
        })
        .unwrap();
        let (tx, rx) = mpsc::channel(4);
        tx.send(frame).await.unwrap();
        tokio::spawn(write_loop(client, rx));
        let (got_tx, mut got) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(
            FramedRead::new(server, FrameCodec::new(1 << 20)),
            BytesMut::new(),
            move |ms: Vec<Msg>| {
                for m in ms {
                    let _ = got_tx.send(m);
                }
                async { true }
            },
        ));
        let m = tokio::time::timeout(Duration::from_secs(10), got.recv())
            .await
            .expect("the frame's tail stayed in the TLS buffer");
        if m.is_none() {
            panic!("the reader stopped: {}", reader.await.unwrap());
        }
        assert!(matches!(m, Some(Msg::LeaderCall { id: 7, .. })), "{m:?}");
        assert!(peer.get().is_some());
        drop(tx);
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("127.0.0.1:4001"), "127.0.0.1");
        assert_eq!(host_of("[::1]:4001"), "::1");
        assert_eq!(host_of("node1.example:1"), "node1.example");
    }
}
