//! What a node needs to know to authenticate connections: [`HandshakeConfig`]; what an
//! observer needs: [`ObserverConfig`].
//!
//! Why a file of its own: the configuration holds the cluster cookie, the one secret of the
//! protocol, and its hand-written `Debug` is what keeps the cookie out of logs. Having it
//! alone here makes that redaction (and its test) hard to miss.

use std::fmt;
use std::time::Duration;

use super::parts::ConfigParts;

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
    /// The same configuration field by field, sent in `Hello` so that a mismatch can be
    /// named (see [`ConfigParts`]).
    pub parts: ConfigParts,
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
            .field("parts", &self.parts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What an observer needs to know to authenticate to a node (see `observer.rs`).
#[derive(Clone)]
pub struct ObserverConfig {
    /// Shared secret used as the HMAC key. Never sent, logged or printed.
    pub cookie: Vec<u8>,
    /// A label for the observer, shown in the node's logs: 1 to 64 printable characters,
    /// e.g. `gen-leader-cli`.
    pub name: String,
    /// The cluster the observer expects; `None` takes the node's (which the proofs cover).
    pub cluster: Option<String>,
    /// Time limit for the whole handshake.
    pub timeout: Duration,
}

impl ObserverConfig {
    /// An observer labelled `name` with `cookie`, any cluster, and a 5 s handshake timeout.
    pub fn new(name: impl Into<String>, cookie: impl AsRef<[u8]>) -> Self {
        ObserverConfig {
            cookie: cookie.as_ref().to_vec(),
            name: name.into(),
            cluster: None,
            timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for ObserverConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserverConfig")
            .field("cookie", &"<redacted>")
            .field("name", &self.name)
            .field("cluster", &self.cluster)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cookie: &[u8]) -> HandshakeConfig {
        HandshakeConfig {
            cluster: "test".into(),
            cookie: cookie.to_vec(),
            me: "a@127.0.0.1:4001".into(),
            incarnation: 1,
            members_digest: [7; 32],
            parts: ConfigParts::default(),
            timeout: Duration::from_secs(5),
        }
    }

    /// No rendering of the cookie appears: not as text, not as the byte list a derived
    /// `Debug` would print, not in hex; also with `{:#?}`.
    #[test]
    fn debug_redacts_the_cookie() {
        let cookie = b"secret cookie";
        let c = cfg(cookie);
        let hex: String = cookie.iter().map(|b| format!("{b:02x}")).collect();
        for s in [format!("{c:?}"), format!("{c:#?}")] {
            assert!(!s.contains("secret"), "{s}");
            assert!(!s.contains(&format!("{cookie:?}")), "{s}");
            assert!(!s.contains("115, 101, 99"), "{s}"); // "sec" as decimal bytes
            assert!(!s.contains(&hex), "{s}");
            assert!(s.contains("cookie: \"<redacted>\""), "{s}");
            let o = ObserverConfig::new("cli", cookie);
            for s in [format!("{o:?}"), format!("{o:#?}")] {
                assert!(!s.contains("secret") && !s.contains(&hex), "{s}");
                assert!(s.contains("<redacted>") && s.contains("cli"), "{s}");
            }
            // The rest is still there to debug with.
            assert!(
                s.contains("a@127.0.0.1:4001") && s.contains(&"07".repeat(32)),
                "{s}"
            );
        }
    }
}
