//! [`TlsConfig`]: the certificate, key and CA a node (or an observer) uses on every cluster
//! connection (cargo feature `tls`).
//!
//! Why parsed and built here, once: every error an operator can make with three PEM files
//! (a path that does not exist, a key where the certificate should be, a CA that is not a
//! certificate, a key that does not match the certificate) is reported by
//! [`TlsConfig::from_pem_files`] before the node starts, with a typed [`TlsError`], instead
//! of as a failed handshake at 3 a.m. The rustls client and server configurations are built
//! here too (TLS 1.3 only, mutual authentication against the one CA) and shared by every
//! connection. Key material never appears in `Debug` output.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Which of the three inputs an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsInput {
    /// The node's certificate (chain).
    Cert,
    /// The node's private key.
    Key,
    /// The CA certificate(s) that sign every member's certificate.
    Ca,
}

impl fmt::Display for TlsInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsInput::Cert => "certificate",
            TlsInput::Key => "private key",
            TlsInput::Ca => "CA certificate",
        })
    }
}

/// Why a [`TlsConfig`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the {what} file {path}: {source}")]
    Read {
        /// Which input.
        what: TlsInput,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The input is not valid PEM.
    #[error("the {what} is not valid PEM: {source}")]
    Pem {
        /// Which input.
        what: TlsInput,
        /// The PEM parser's error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// The input holds no `CERTIFICATE` block.
    #[error("the {what} holds no PEM CERTIFICATE block (is it a key?)")]
    NoCertificate {
        /// Which input ([`TlsInput::Cert`] or [`TlsInput::Ca`]).
        what: TlsInput,
    },
    /// The key input holds no private key (PKCS#8, PKCS#1 or SEC1 PEM block).
    #[error("the private key input holds no PEM PRIVATE KEY block (is it a certificate?)")]
    NoKey,
    /// A CA certificate is not a valid trust anchor.
    #[error("the CA certificate is invalid: {source}")]
    Ca {
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built from the CA.
    #[error("cannot verify peers against the CA: {source}")]
    Verifier {
        /// rustls' reason.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// rustls refused the certificate and key (an unsupported key type, or a key that does
    /// not match the certificate).
    #[error("the certificate and key cannot be used: {source}")]
    KeyPair {
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
}

/// The TLS settings of a node or an observer: its certificate chain and key, and the CA that
/// signs every member's certificate. Cheap to clone.
///
/// A member's certificate carries two subject alternative names: its host (`IP:` or `DNS:`,
/// as in its node name) and the URI `gen-leader://NAME@HOST` (its node name without the
/// port), e.g. `gen-leader://n1@10.0.0.1`; see `docs/operating.md`, "TLS".
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) client: Arc<ClientConfig>,
    pub(crate) server: Arc<ServerConfig>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the key nor the certificates: only that TLS is on.
        f.debug_struct("TlsConfig")
            .field("protocol", &"TLS 1.3, mutual authentication")
            .finish_non_exhaustive()
    }
}

fn read(what: TlsInput, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn certs(what: TlsInput, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

impl TlsConfig {
    /// Reads the node's certificate chain, its private key and the CA certificate(s) from
    /// PEM files.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        ca: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let cert = read(TlsInput::Cert, cert.as_ref())?;
        let key = read(TlsInput::Key, key.as_ref())?;
        let ca = read(TlsInput::Ca, ca.as_ref())?;
        Self::from_pem(&cert, &key, &ca)
    }

    /// [`from_pem_files`](Self::from_pem_files) from PEM text in memory.
    pub fn from_pem(
        cert: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
        ca: impl AsRef<[u8]>,
    ) -> Result<Self, TlsError> {
        let chain = certs(TlsInput::Cert, cert.as_ref())?;
        let key = match PrivateKeyDer::from_pem_slice(key.as_ref()) {
            Ok(k) => k,
            Err(rustls::pki_types::pem::Error::NoItemsFound) => return Err(TlsError::NoKey),
            Err(source) => {
                return Err(TlsError::Pem {
                    what: TlsInput::Key,
                    source,
                })
            }
        };
        let mut roots = RootCertStore::empty();
        for c in certs(TlsInput::Ca, ca.as_ref())? {
            roots.add(c).map_err(|source| TlsError::Ca { source })?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|source| TlsError::Verifier { source })?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|source| TlsError::KeyPair { source })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|source| TlsError::KeyPair { source })?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|source| TlsError::KeyPair { source })?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|source| TlsError::KeyPair { source })?;
        // No session resumption: a resumed session skips the certificate checks, and an
        // expired or revoked certificate must be refused at every connection.
        let (mut client, mut server) = (client, server);
        client.resumption = rustls::client::Resumption::disabled();
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        Ok(TlsConfig {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate (its own CA) and its key, in PEM.
    fn self_signed() -> (String, String) {
        let key = testkit::rcgen::KeyPair::generate().unwrap();
        let p = testkit::rcgen::CertificateParams::new(vec!["node1.example".to_owned()]).unwrap();
        (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    #[test]
    fn good_inputs_build() {
        let (cert, key) = self_signed();
        assert!(TlsConfig::from_pem(&cert, &key, &cert).is_ok());
    }

    #[test]
    fn each_bad_input_has_its_error() {
        let (cert, key) = self_signed();
        let e = TlsConfig::from_pem_files("/nonexistent/c.pem", "k", "ca").unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::Read {
                    what: TlsInput::Cert,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("/nonexistent/c.pem"), "{e}");
        assert!(matches!(
            TlsConfig::from_pem(&key, &key, &cert),
            Err(TlsError::NoCertificate {
                what: TlsInput::Cert
            })
        ));
        assert!(matches!(
            TlsConfig::from_pem(&cert, &cert, &cert),
            Err(TlsError::NoKey)
        ));
        assert!(matches!(
            TlsConfig::from_pem(&cert, &key, "no PEM here"),
            Err(TlsError::NoCertificate { what: TlsInput::Ca })
        ));
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            TlsConfig::from_pem(broken, &key, &cert),
            Err(TlsError::Pem {
                what: TlsInput::Cert,
                ..
            })
        ));
        // A CA "certificate" that is no X.509 at all.
        let not_x509 = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            TlsConfig::from_pem(&cert, &key, not_x509),
            Err(TlsError::Ca { .. })
        ));
        // The certificate with another key.
        let (_, other_key) = self_signed();
        assert!(matches!(
            TlsConfig::from_pem(&cert, &other_key, &cert),
            Err(TlsError::KeyPair { .. })
        ));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let (cert, key) = self_signed();
        let tls = TlsConfig::from_pem(&cert, &key, &cert).unwrap();
        let dbg = format!("{tls:?}");
        assert!(
            !dbg.contains("PRIVATE") && !dbg.contains(&key[40..80]),
            "{dbg}"
        );
        assert!(dbg.len() < 200, "{dbg}");
    }
}
