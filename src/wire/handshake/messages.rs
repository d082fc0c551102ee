//! The handshake's vocabulary: the four messages, the refusal reasons and the peer identity.
//!
//! Why a file of its own: these types are the handshake's wire format (they are encoded with
//! the ordinary frame codec), so both state machines, the tests that pin the bytes and the
//! fuzzers share exactly one definition of them. Changing a field or a variant's order
//! changes the bytes on the wire and breaks interoperation with older nodes.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::super::codec::{encode_frame, CodecError};
use super::parts::{ConfigMismatch, ConfigParts};

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
    /// The cluster names differ (sent by nodes before protocol version 2; newer ones send
    /// [`Refusal::Config`] with both names).
    #[error("cluster name mismatch")]
    Cluster,
    /// The cluster configurations differ (candidates, workers, `preempt`, heartbeat, failure
    /// timeout or mode), and the refusing node could not tell which field (newer nodes send
    /// [`Refusal::Config`]).
    #[error("cluster configuration mismatch (candidates, workers, preempt, heartbeat, failure timeout or mode differ)")]
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
    /// A configuration field differs: which one, and both values.
    #[error("configuration mismatch: {0}")]
    Config(ConfigMismatch),
    /// An observer speaks another version of the observer protocol (see
    /// [`OBSERVER_VERSION`](super::OBSERVER_VERSION)).
    #[error("observer protocol version mismatch (refusing node speaks observer version {ours}, refused observer speaks version {theirs})")]
    ObserverVersion {
        /// Observer version of the node that refused.
        ours: u8,
        /// Observer version of the observer that was refused.
        theirs: u8,
    },
    /// The node already serves as many observer sessions as it allows.
    #[error("too many observers: this node serves at most {limit} observer sessions at once")]
    ObserverLimit {
        /// The most observer sessions the node serves at once.
        limit: u32,
    },
    /// etcd mode: the refusing node's member table is full (its `max_members`), so it
    /// admits no node it has not met yet.
    #[error("member table full: the refusing node holds at most {limit} members (raise its max_members)")]
    MemberLimit {
        /// The most members the refusing node holds.
        limit: u32,
    },
}

impl Refusal {
    /// The refusal as seen by one side, for its logs: `we_refused` says whether this node is
    /// the refusing one; `ours` is this node's configuration (to show its own values in full).
    pub fn describe(&self, we_refused: bool, ours: &ConfigParts) -> String {
        match self {
            Refusal::Config(m) => m.describe(we_refused, ours),
            Refusal::Version {
                ours: v_refusing,
                theirs: v_refused,
            } => {
                let (o, t) = if we_refused {
                    (v_refusing, v_refused)
                } else {
                    (v_refused, v_refusing)
                };
                let whose = if we_refused {
                    "its protocol version differs"
                } else {
                    "our protocol version differs from its"
                };
                format!(
                    "{whose}: ours {o}, theirs {t} \
                     (run the same release of gen_leader on every node)"
                )
            }
            Refusal::BadAuth if we_refused => {
                "wrong cookie (authentication failed): its proof does not match our cookie, \
                 so the two nodes have different cookies"
                    .into()
            }
            Refusal::BadAuth => {
                "wrong cookie (authentication failed): our proof does not match its cookie, \
                 so the two nodes have different cookies"
                    .into()
            }
            other => other.to_string(),
        }
    }

    /// Whether this refusal says the two nodes are configured differently (as opposed to a
    /// passing condition: a duplicate connection, a call back, a node shutting down).
    pub fn is_misconfiguration(&self) -> bool {
        matches!(
            self,
            Refusal::Version { .. }
                | Refusal::Cluster
                | Refusal::Members
                | Refusal::Config(_)
                | Refusal::WrongNode { .. }
                | Refusal::Unknown(_)
                | Refusal::BadAuth
                | Refusal::MemberLimit { .. }
        )
    }
}

/// The handshake's messages, in order: `Hello` (dialer), `Challenge` (acceptor), `Auth`
/// (dialer), then `Welcome` or `Refuse` (acceptor); either side may send `Refuse` instead of
/// its next message. Public (but hidden from the docs and outside the semver promise) so that
/// tests and fuzzers can build exact (and hostile) frames.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
// `Hello` carries the configuration's parts (with the etcd election key); there are four of
// these messages per connection, so boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
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
        /// The dialer's configuration, field by field, so that a mismatch can be named.
        parts: ConfigParts,
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
    /// An observer's opening (instead of `Hello`): it asks for a read-only session, is never
    /// a member and names no member. Added after protocol version 2 without changing it: a
    /// member never sends it, so members' bytes are unchanged; a node that predates it cannot
    /// decode it and closes the connection.
    Observe {
        /// The observer protocol version ([`OBSERVER_VERSION`](super::OBSERVER_VERSION)).
        observer_version: u8,
        /// The cluster the observer expects, if it knows (the node refuses another one).
        cluster: Option<String>,
        /// A label for the observer (for the node's logs), e.g. `gen-leader-cli`.
        from: String,
        /// The node the observer means to reach.
        to: String,
        /// The observer's fresh nonce.
        nonce: [u8; 16],
    },
    /// The node's answer to `Observe`: its proof that it knows the cookie (under the
    /// observer labels), its nonce and the cluster's name (which the proofs cover).
    ObserverChallenge {
        /// The node's name.
        from: String,
        /// The node's cluster name.
        cluster: String,
        /// The node's incarnation.
        incarnation: u64,
        /// The node's fresh nonce.
        nonce: [u8; 16],
        /// HMAC-SHA256 over the exchange, labelled for a node answering an observer.
        mac: [u8; 32],
    },
}

impl HandshakeMsg {
    /// The variant's name, for protocol-violation errors (never the fields: they may be
    /// hostile and arbitrarily long).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            HandshakeMsg::Hello { .. } => "Hello",
            HandshakeMsg::Challenge { .. } => "Challenge",
            HandshakeMsg::Auth { .. } => "Auth",
            HandshakeMsg::Welcome => "Welcome",
            HandshakeMsg::Refuse(_) => "Refuse",
            HandshakeMsg::Observe { .. } => "Observe",
            HandshakeMsg::ObserverChallenge { .. } => "ObserverChallenge",
        }
    }

    /// The complete frame (length, version, body) carrying this message.
    pub(super) fn to_frame(&self) -> Result<Bytes, CodecError> {
        encode_frame(self)
    }
}

/// [`HandshakeMsg::Hello`] as the dialer sends it: the same bytes, borrowing the dialer's
/// configuration instead of copying it (both member lists) for every connection it opens.
/// `Hello` is the first variant of `HandshakeMsg`, as it is the only one here; a test holds
/// the two encodings equal.
#[derive(Serialize)]
#[serde(rename = "HandshakeMsg")]
pub(super) enum HelloRef<'a> {
    Hello {
        version: u8,
        cluster: &'a str,
        from: &'a str,
        to: &'a str,
        incarnation: u64,
        members_digest: &'a [u8; 32],
        nonce: &'a [u8; 16],
        parts: &'a ConfigParts,
    },
}

impl HelloRef<'_> {
    /// The complete frame carrying this `Hello`.
    pub(super) fn to_frame(&self) -> Result<Bytes, CodecError> {
        encode_frame(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The variant indices are part of the wire format: pin the frames of the field-less and
    /// small messages (the big ones are pinned by the exchange test in `tests.rs`).
    #[test]
    fn small_frames_are_pinned() {
        assert_eq!(
            hex(&HandshakeMsg::Welcome.to_frame().unwrap()),
            "000000020203"
        );
        let refuse = |r| hex(&HandshakeMsg::Refuse(r).to_frame().unwrap());
        assert_eq!(refuse(Refusal::BadAuth), "00000003020405");
        assert_eq!(
            refuse(Refusal::Version { ours: 1, theirs: 2 }),
            "000000050204000102"
        );
        assert_eq!(refuse(Refusal::Duplicate("x".into())), "000000050204060178");
    }

    /// The dialer sends `Hello` borrowing its configuration: the bytes must be those of
    /// `HandshakeMsg::Hello`, lists and mode included.
    #[test]
    fn a_borrowed_hello_is_the_same_frame() {
        use super::super::parts::ModeParts;
        use std::time::Duration;
        let parts = ConfigParts::new(
            vec!["a@h:1".into(), "b@h:2".into()],
            vec!["w@h:3".into()],
            true,
            Duration::from_millis(100),
            Duration::from_millis(300),
        )
        .with_mode(ModeParts::Quorum {
            lease_ns: 5,
            drift_ppm: 6,
            margin_ns: 7,
        });
        let owned = HandshakeMsg::Hello {
            version: 2,
            cluster: "c".into(),
            from: "a@h:1".into(),
            to: "b@h:2".into(),
            incarnation: 1 << 40,
            members_digest: [7; 32],
            nonce: [9; 16],
            parts: parts.clone(),
        };
        let borrowed = HelloRef::Hello {
            version: 2,
            cluster: "c",
            from: "a@h:1",
            to: "b@h:2",
            incarnation: 1 << 40,
            members_digest: &[7; 32],
            nonce: &[9; 16],
            parts: &parts,
        };
        assert_eq!(borrowed.to_frame().unwrap(), owned.to_frame().unwrap());
    }

    #[test]
    fn kinds() {
        assert_eq!(HandshakeMsg::Welcome.kind(), "Welcome");
        assert_eq!(HandshakeMsg::Auth { mac: [0; 32] }.kind(), "Auth");
        assert_eq!(HandshakeMsg::Refuse(Refusal::Cluster).kind(), "Refuse");
    }

    #[test]
    fn messages_are_readable() {
        assert_eq!(
            Refusal::Unknown("x@h:1".into()).to_string(),
            "unknown node \"x@h:1\": not a member of this cluster"
        );
    }
}
