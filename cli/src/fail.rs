//! What the command says when it cannot do its job: one line, and the exit code.
//!
//! Why a file of its own: at 3 a.m. the first question is "is it down, or am I holding it
//! wrong?", so every failure is sorted into the few answers an operator acts on — the node is
//! *unreachable* (nothing listens, no route, no answer), it *refused* us (wrong cookie,
//! another protocol version, another node or cluster, not a gen-leader port, too many
//! observers), or the connection was *lost* after it worked — and said in one line that names
//! the node, the address and the likely fix.

use std::io;

use gen_leader::wire::handshake::{ConfigField, HandshakeError, Refusal};
use gen_leader::ObserveError;

/// Exit code of a failure to reach or read the node asked for.
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a usage error (as clap's).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `status --all` when the members disagree or some cannot be read.
pub const EXIT_DISAGREE: u8 = 3;

/// A failure: its one line (without the program's name) and the exit code.
#[derive(Debug)]
pub struct Fail {
    pub line: String,
    pub code: u8,
}

impl Fail {
    pub fn new(line: impl Into<String>, code: u8) -> Self {
        Fail {
            line: line.into(),
            code,
        }
    }

    pub fn usage(line: impl Into<String>) -> Self {
        Fail::new(line, EXIT_USAGE)
    }
}

/// The one line for a failure to observe `node` (reached at `addr`).
pub fn explain(node: &str, addr: &str, e: &ObserveError) -> String {
    match e {
        ObserveError::Connect { source, .. } => match source.kind() {
            io::ErrorKind::ConnectionRefused => format!(
                "{node} unreachable: connection refused at {addr} (nothing listens there: is \
                 the node running, and is this its cluster port?)"
            ),
            _ => format!("{node} unreachable: cannot connect to {addr}: {source}"),
        },
        ObserveError::ConnectTimeout { timeout, .. } => format!(
            "{node} unreachable: no TCP connection to {addr} within {timeout:?} (host down, \
             or a firewall dropping packets?)"
        ),
        ObserveError::Handshake { source, .. } => handshake(node, addr, source),
        ObserveError::Closed { .. } => format!("lost {node}: it closed the connection"),
        ObserveError::Timeout { timeout, .. } => {
            format!("lost {node}: no answer within {timeout:?}")
        }
        ObserveError::Connection { source, .. } => {
            format!("lost {node}: the connection failed: {source}")
        }
        ObserveError::Node { message, .. } => format!("{node} could not answer: {message}"),
        other => format!("{node}: {other}"),
    }
}

fn handshake(node: &str, addr: &str, e: &HandshakeError) -> String {
    let not_ours = "not a gen-leader cluster port, a gen-leader release without observer \
                    support (older than this command), or a node with TLS (give --tls-cert, \
                    --tls-key and --tls-ca)";
    match e {
        HandshakeError::Rejected(r) | HandshakeError::Refused(r) => {
            let by_us = matches!(e, HandshakeError::Rejected(_));
            format!("{node} refused: {}", refusal(r, by_us))
        }
        HandshakeError::Closed => format!(
            "{node} refused: the other end at {addr} closed the connection during the \
             handshake: {not_ours}"
        ),
        HandshakeError::Io(io) if io.kind() == io::ErrorKind::ConnectionReset => format!(
            "{node} refused: the other end at {addr} reset the connection during the \
             handshake: {not_ours}"
        ),
        HandshakeError::Codec(_) | HandshakeError::Protocol(_) => {
            format!(
                "{node} refused: what answers at {addr} is not a gen-leader node ({e}), or is \
                 one with TLS (give --tls-cert, --tls-key and --tls-ca)"
            )
        }
        HandshakeError::Timeout => format!(
            "{node} unreachable: no handshake answer from {addr} in time (not a gen-leader \
             cluster port, or the node is overloaded)"
        ),
        other => format!("{node}: handshake failed: {other}"),
    }
}

/// A refusal, from our side when `by_us` (we refused what the node proved or said).
fn refusal(r: &Refusal, by_us: bool) -> String {
    match r {
        Refusal::BadAuth if by_us => "wrong cookie (the node's proof does not match this \
                                      cookie)"
            .into(),
        Refusal::BadAuth => "wrong cookie (the node does not accept this cookie's proof)".into(),
        Refusal::Version { ours, theirs } => {
            let (node_v, cli_v) = if by_us {
                (theirs, ours)
            } else {
                (ours, theirs)
            };
            format!(
                "protocol version mismatch: the node speaks version {node_v}, this command \
                 {cli_v} (use the gen-leader command of the nodes' release)"
            )
        }
        Refusal::ObserverVersion { ours, theirs } => format!(
            "observer protocol version mismatch: the node speaks version {ours}, this command \
             {theirs} (use the gen-leader command of the nodes' release)"
        ),
        Refusal::WrongNode { expected, got } => {
            format!("this address is node {got}, not {expected} (check the name before the '@')")
        }
        Refusal::ObserverLimit { limit } => format!(
            "the node already serves {limit} observers (too many status/watch commands at \
             once?); try again later"
        ),
        Refusal::ShuttingDown => "the node is shutting down".into(),
        Refusal::Config(m) if m.field == ConfigField::Cluster => {
            let (node, ours) = if by_us {
                (&m.refused, &m.refusing)
            } else {
                (&m.refusing, &m.refused)
            };
            format!("the node is in cluster {node}, not {ours} (--cluster)")
        }
        other => other.to_string(),
    }
}
