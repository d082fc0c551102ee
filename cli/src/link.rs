//! How the command reaches a node: the observer's cookie and name, and TLS when the cluster
//! runs it (`--tls-cert/--tls-key/--tls-ca`, cargo feature `tls` of this crate).
//!
//! Why the TLS flags exist without the feature: a command built without TLS, given them,
//! says so in one line instead of failing the handshake with a node it cannot speak to.

use std::path::PathBuf;

use gen_leader::wire::handshake::ObserverConfig;
use gen_leader::{NodeName, ObserveError, Observer};

use crate::fail::Fail;

/// The TLS flags as given.
#[derive(Debug, Default, clap::Args)]
pub struct TlsArgs {
    /// This command's TLS certificate (PEM), signed by the cluster's CA (no node name needed).
    #[arg(long, value_name = "PATH", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "PATH", requires_all = ["tls_cert", "tls_ca"])]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM): the node's certificate must be signed by it.
    #[arg(long, value_name = "PATH", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
}

/// TLS settings ready to use.
#[derive(Clone, Debug)]
pub struct Tls(#[cfg(feature = "tls")] gen_leader::config::TlsConfig);

impl TlsArgs {
    /// The TLS settings, if the flags are given.
    pub fn load(&self) -> Result<Option<Tls>, Fail> {
        let (Some(cert), Some(key), Some(ca)) = (&self.tls_cert, &self.tls_key, &self.tls_ca)
        else {
            return Ok(None);
        };
        #[cfg(feature = "tls")]
        {
            gen_leader::config::TlsConfig::from_pem_files(cert, key, ca)
                .map(|t| Some(Tls(t)))
                .map_err(|e| Fail::usage(format!("TLS: {e}")))
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (cert, key, ca);
            Err(Fail::usage(
                "this gen-leader command was built without TLS: rebuild it with \
                 `--features tls` to use --tls-cert/--tls-key/--tls-ca",
            ))
        }
    }
}

/// The observer's configuration and TLS settings.
#[derive(Debug, Clone)]
pub struct Link {
    pub observer: ObserverConfig,
    pub tls: Option<Tls>,
}

impl Link {
    /// Connects to `node` at `addr` as an observer.
    pub async fn connect(&self, node: &NodeName, addr: &str) -> Result<Observer, ObserveError> {
        match &self.tls {
            None => Observer::connect_to(node, addr, &self.observer).await,
            #[cfg(feature = "tls")]
            Some(Tls(t)) => Observer::connect_tls_to(node, addr, &self.observer, t).await,
            #[cfg(not(feature = "tls"))]
            Some(_) => Observer::connect_to(node, addr, &self.observer).await,
        }
    }
}
