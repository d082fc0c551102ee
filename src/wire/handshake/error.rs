//! Why a handshake failed: [`HandshakeError`].
//!
//! Why a file of its own: the state machines and the async driver both produce these errors
//! (the machines for everything the peer sent, the driver for I/O and the clock), and callers
//! match on them to tell "the peer refused us" from "we refused the peer" from plain failure.

use std::io;

use super::super::codec::CodecError;
use super::messages::Refusal;
use super::parts::ConfigParts;

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The whole handshake did not finish within
    /// [`HandshakeConfig::timeout`](super::HandshakeConfig::timeout).
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

impl HandshakeError {
    /// The failure as one log line that says who refused whom and why: `peer` is the other
    /// node's name (or address), `ours` this node's configuration. For example
    /// `"refused n2@h:3: its candidate list differs: ..."` on the refusing side and
    /// `"n1@h:1 refused our connection: our candidate list differs from its: ..."` on the
    /// refused side.
    pub fn explain(&self, peer: &str, ours: &ConfigParts) -> String {
        match self {
            HandshakeError::Rejected(r) => format!("refused {peer}: {}", r.describe(true, ours)),
            HandshakeError::Refused(r) => {
                format!("{peer} refused our connection: {}", r.describe(false, ours))
            }
            other => format!("handshake with {peer} failed: {other}"),
        }
    }

    /// The refusal, if the handshake was refused by either side.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            HandshakeError::Rejected(r) | HandshakeError::Refused(r) => Some(r),
            _ => None,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_readable() {
        assert_eq!(
            HandshakeError::Rejected(Refusal::Members).to_string(),
            "refused the peer's handshake: cluster configuration mismatch (candidates, workers, preempt, heartbeat, failure timeout or mode differ)"
        );
        assert_eq!(
            HandshakeError::Refused(Refusal::BadAuth).to_string(),
            "peer refused the handshake: wrong cookie (authentication failed)"
        );
    }

    #[test]
    fn both_sides_say_who_refused_whom() {
        let ours = ConfigParts::default();
        assert_eq!(
            HandshakeError::Rejected(Refusal::BadAuth).explain("b@h:2", &ours),
            "refused b@h:2: wrong cookie (authentication failed): its proof does not match \
             our cookie, so the two nodes have different cookies"
        );
        assert_eq!(
            HandshakeError::Refused(Refusal::BadAuth).explain("a@h:1", &ours),
            "a@h:1 refused our connection: wrong cookie (authentication failed): our proof \
             does not match its cookie, so the two nodes have different cookies"
        );
        let v = Refusal::Version { ours: 2, theirs: 1 };
        assert_eq!(
            HandshakeError::Refused(v).explain("a@h:1", &ours),
            "a@h:1 refused our connection: our protocol version differs from its: ours 1, \
             theirs 2 (run the same release of gen_leader on every node)"
        );
        assert_eq!(
            HandshakeError::Timeout.explain("a@h:1", &ours),
            "handshake with a@h:1 failed: handshake timed out"
        );
    }

    #[test]
    fn codec_io_errors_become_io() {
        let e = HandshakeError::from(CodecError::Io(io::Error::other("x")));
        assert!(matches!(e, HandshakeError::Io(_)), "{e:?}");
        let e = HandshakeError::from(CodecError::EmptyFrame);
        assert!(
            matches!(e, HandshakeError::Codec(CodecError::EmptyFrame)),
            "{e:?}"
        );
    }
}
