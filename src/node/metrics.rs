//! What a node records for Prometheus (or any other backend), through the `metrics` facade.
//!
//! Why a file of its own: the names, the label values and the recording rules live in one
//! place, and the runtime records with one line where an event happens (a leader change in
//! the drain, a call when it resolves, a refused handshake in the accept task). The library
//! installs no recorder and imposes no exporter: the application installs one
//! (`metrics-exporter-prometheus`, for instance; the `datos` example's `--metrics-addr` does).
//!
//! **Cost.** Without a recorder every handle is a no-op (one `Option` check). The handles on
//! the hot paths — calls, broadcasts, the leadership gauges — are registered once when the
//! node starts, so recording them is an atomic operation on the recorder's side and nothing
//! else; **install the recorder before starting the node**, as handles registered earlier
//! stay no-ops. Rare events (leader changes, refused handshakes) are registered when they
//! happen. A `leader_call`'s latency costs one clock read at its resolution (the start is
//! the read the call makes anyway for its deadline).
//!
//! Every metric carries a `node` label, the node's name, so that several nodes in one process
//! stay apart. The list, and what to alert on, is in `docs/operating.md` ("Metrics").

use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};

use super::leader_state::LeaderState;
use super::state::NodeState;
use crate::behaviour::Behaviour;
use crate::config::Config;
use crate::election::LossReason;
use crate::error::CallError;
use crate::types::{NodeName, Term};
use crate::wire::handshake::{HandshakeError, Refusal};

/// Gauge: 1 while this node leads, else 0.
pub(crate) const IS_LEADER: &str = "gen_leader_is_leader";
/// Gauge: the highest term this node knows (the one it leads or follows, once elected).
pub(crate) const TERM: &str = "gen_leader_term";
/// Counter, label `reason`: leadership changes seen by this node (see [`Change`]).
pub(crate) const LEADER_CHANGES: &str = "gen_leader_leader_changes_total";
/// Gauge, quorum mode only: seconds left on this leader's lease (0 when not leading),
/// updated whenever the lease moves (at each renewal by a majority).
pub(crate) const LEASE_REMAINING: &str = "gen_leader_lease_remaining_seconds";
/// Counter, label `outcome`: `leader_call`s made on this node, by how they ended.
pub(crate) const CALLS: &str = "gen_leader_calls_total";
/// Histogram: latency of the `leader_call`s made on this node, in seconds, every outcome.
pub(crate) const CALL_SECONDS: &str = "gen_leader_leader_call_seconds";
/// Counter: broadcasts sent by this node as leader.
pub(crate) const BROADCASTS: &str = "gen_leader_broadcasts_total";
/// Gauge: peers with a live, authenticated connection.
pub(crate) const PEERS_CONNECTED: &str = "gen_leader_peers_connected";
/// Counter, label `reason`: inbound connections refused or dropped at the handshake (what
/// `NodeStats::handshakes_refused` counts).
pub(crate) const HANDSHAKES_REFUSED: &str = "gen_leader_handshakes_refused_total";

/// The label every metric carries.
const NODE: &str = "node";

/// The `outcome` label of [`CALLS`], in the order of [`outcome_index`].
pub(crate) const OUTCOMES: [&str; 9] = [
    "ok",
    "timeout",
    "leader_down",
    "no_leader",
    "no_quorum",
    "overloaded",
    "stopped",
    "remote_error",
    "codec_error",
];

fn outcome_index<T>(r: &Result<T, CallError>) -> usize {
    match r {
        Ok(_) => 0,
        Err(CallError::Timeout) => 1,
        Err(CallError::LeaderDown { .. }) => 2,
        Err(CallError::NoLeader) => 3,
        Err(CallError::NoQuorum { .. }) => 4,
        Err(CallError::Overloaded) => 5,
        Err(CallError::Stopped) => 6,
        Err(CallError::Remote(_)) => 7,
        Err(CallError::Codec(_)) => 8,
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(IS_LEADER, "1 while this node leads, else 0");
    describe_gauge!(TERM, "The highest term this node knows");
    describe_counter!(LEADER_CHANGES, "Leadership changes seen by this node");
    describe_gauge!(
        LEASE_REMAINING,
        Unit::Seconds,
        "Quorum mode: time left on this leader's lease (0 when not leading)"
    );
    describe_counter!(CALLS, "leader_calls made on this node, by outcome");
    describe_histogram!(
        CALL_SECONDS,
        Unit::Seconds,
        "Latency of the leader_calls made on this node"
    );
    describe_counter!(BROADCASTS, "Broadcasts sent by this node as leader");
    describe_gauge!(
        PEERS_CONNECTED,
        "Peers with a live, authenticated connection"
    );
    describe_counter!(
        HANDSHAKES_REFUSED,
        "Inbound connections refused or dropped at the handshake"
    );
}

/// The call metrics of one node, held by its handles.
#[derive(Debug)]
pub(crate) struct CallMetrics {
    calls: [Counter; OUTCOMES.len()],
    seconds: Histogram,
}

impl CallMetrics {
    pub(crate) fn new(node: &NodeName) -> Self {
        let n = node.to_string();
        CallMetrics {
            calls: OUTCOMES.map(|o| metrics::counter!(CALLS, NODE => n.clone(), "outcome" => o)),
            seconds: metrics::histogram!(CALL_SECONDS, NODE => n),
        }
    }

    /// A `leader_call` that started at `started` resolved with `r`.
    pub(crate) fn call<T>(&self, r: &Result<T, CallError>, started: tokio::time::Instant) {
        self.calls[outcome_index(r)].increment(1);
        self.seconds.record(started.elapsed());
    }
}

/// A leadership change, as the `reason` label of [`LEADER_CHANGES`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// This node won an election (`elected`).
    Elected,
    /// This node accepted a leader (`surrendered`).
    Surrendered,
    /// This node lost its leadership (`leadership_lost_<why>`).
    LeadershipLost(LossReason),
    /// This node stepped down because it is shutting down (`leadership_lost_shutdown`).
    StoppedLeading,
    /// The leader this node followed was lost (`leader_lost_<why>`).
    LeaderLost(LossReason),
}

impl Change {
    pub(crate) fn label(self) -> &'static str {
        use LossReason as L;
        match self {
            Change::Elected => "elected",
            Change::Surrendered => "surrendered",
            Change::LeadershipLost(L::LeaderDown) => "leadership_lost_leader_down",
            Change::LeadershipLost(L::TakenOver) => "leadership_lost_taken_over",
            Change::LeadershipLost(L::NewerTerm) => "leadership_lost_newer_term",
            Change::LeadershipLost(L::LeaseExpired) => "leadership_lost_lease_expired",
            Change::StoppedLeading => "leadership_lost_shutdown",
            Change::LeaderLost(L::LeaderDown) => "leader_lost_leader_down",
            Change::LeaderLost(L::TakenOver) => "leader_lost_taken_over",
            Change::LeaderLost(L::NewerTerm) => "leader_lost_newer_term",
            Change::LeaderLost(L::LeaseExpired) => "leader_lost_lease_expired",
        }
    }
}

/// The metrics of one node's actor.
#[derive(Debug)]
pub(crate) struct NodeMetrics {
    node: String,
    is_leader: Gauge,
    term: Gauge,
    /// Quorum mode only (bully mode has no lease).
    lease: Option<Gauge>,
    peers: Gauge,
    broadcasts: Counter,
}

impl NodeMetrics {
    /// The metrics of the node `config` describes.
    pub(crate) fn of(config: &Config) -> Self {
        describe();
        let n = config.me().to_string();
        let quorum = config.quorum_params().is_some();
        NodeMetrics {
            is_leader: metrics::gauge!(IS_LEADER, NODE => n.clone()),
            term: metrics::gauge!(TERM, NODE => n.clone()),
            lease: quorum.then(|| metrics::gauge!(LEASE_REMAINING, NODE => n.clone())),
            peers: metrics::gauge!(PEERS_CONNECTED, NODE => n.clone()),
            broadcasts: metrics::counter!(BROADCASTS, NODE => n.clone()),
            node: n,
        }
    }

    /// The leader state published now; `term` is the engine's; `lease_now` reads the lease
    /// clock (only for a quorum-mode leader).
    pub(crate) fn leadership(
        &self,
        state: &LeaderState,
        term: Term,
        lease_now: impl FnOnce() -> Instant,
    ) {
        self.is_leader
            .set(if state.leading().is_some() { 1.0 } else { 0.0 });
        self.term.set(term.0 as f64);
        if let Some(g) = &self.lease {
            let left = match state {
                LeaderState::Leading {
                    until: Some(end), ..
                } => end.saturating_duration_since(lease_now()),
                _ => Duration::ZERO,
            };
            g.set(left.as_secs_f64());
        }
    }

    /// A leadership change.
    pub(crate) fn change(&self, c: Change) {
        metrics::counter!(LEADER_CHANGES, NODE => self.node.clone(), "reason" => c.label())
            .increment(1);
    }

    /// A broadcast went out.
    pub(crate) fn broadcast(&self) {
        self.broadcasts.increment(1);
    }

    /// The node is stopping: it leads nothing and has no peers any more.
    pub(crate) fn stopped(&self) {
        self.is_leader.set(0.0);
        self.peers.set(0.0);
        if let Some(g) = &self.lease {
            g.set(0.0);
        }
    }
}

impl<B: Behaviour> NodeState<B> {
    /// Sets the connected-peers gauge (after a connection came or went).
    pub(super) fn note_peers(&self) {
        let n = self.peers.iter().filter(|p| p.conn.is_some()).count();
        self.metrics.peers.set(n as f64);
    }
}

/// The `reason` label of [`HANDSHAKES_REFUSED`] for a refused or failed inbound handshake.
pub(crate) fn refusal_label(e: &HandshakeError) -> &'static str {
    match e {
        HandshakeError::Timeout => "timeout",
        HandshakeError::Io(_) => "io",
        HandshakeError::Codec(_) => "garbage",
        HandshakeError::Protocol(_) => "protocol",
        HandshakeError::Closed => "closed",
        HandshakeError::Rejected(r) | HandshakeError::Refused(r) => match r {
            Refusal::Version { .. } => "version",
            Refusal::Cluster => "cluster",
            Refusal::Members | Refusal::Config(_) => "configuration",
            Refusal::WrongNode { .. } => "wrong_node",
            Refusal::Unknown(_) => "unknown_node",
            Refusal::BadAuth => "bad_cookie",
            Refusal::Duplicate(_) => "duplicate",
            Refusal::CallBack => "call_back",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::Other(_) => "other",
            Refusal::ObserverVersion { .. } => "observer_version",
            Refusal::ObserverLimit { .. } => "observer_limit",
            Refusal::MemberLimit { .. } => "member_limit",
        },
    }
}

/// Inbound handshakes of `node` refused or dropped: `n` of them, for `reason` (see
/// [`refusal_label`]; `shed` for the pending handshakes shed by the accept budget).
pub(crate) fn handshakes_refused(node: &NodeName, reason: &'static str, n: u64) {
    metrics::counter!(HANDSHAKES_REFUSED, NODE => node.to_string(), "reason" => reason)
        .increment(n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_outcome_has_its_own_label() {
        let rs: [Result<(), CallError>; 9] = [
            Ok(()),
            Err(CallError::Timeout),
            Err(CallError::LeaderDown {
                leader: "a@h:1".parse().unwrap(),
                term: Term(1),
            }),
            Err(CallError::NoLeader),
            Err(CallError::NoQuorum {
                reachable: 1,
                needed: 2,
            }),
            Err(CallError::Overloaded),
            Err(CallError::Stopped),
            Err(CallError::Remote("x".into())),
            Err(CallError::from(
                crate::wire::codec::CodecError::TrailingBytes,
            )),
        ];
        let got: Vec<&str> = rs.iter().map(|r| OUTCOMES[outcome_index(r)]).collect();
        assert_eq!(got, OUTCOMES.to_vec());
    }

    #[test]
    fn leader_change_labels_are_distinct() {
        let all = [
            LossReason::LeaderDown,
            LossReason::TakenOver,
            LossReason::NewerTerm,
            LossReason::LeaseExpired,
        ];
        let mut labels: Vec<&str> = vec![
            Change::Elected.label(),
            Change::Surrendered.label(),
            Change::StoppedLeading.label(),
        ];
        labels.extend(all.iter().map(|r| Change::LeadershipLost(*r).label()));
        labels.extend(all.iter().map(|r| Change::LeaderLost(*r).label()));
        let n = labels.len();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), n);
    }

    #[test]
    fn a_wrong_cookie_is_labelled_bad_cookie() {
        assert_eq!(
            refusal_label(&HandshakeError::Rejected(Refusal::BadAuth)),
            "bad_cookie"
        );
        assert_eq!(refusal_label(&HandshakeError::Timeout), "timeout");
    }
}
