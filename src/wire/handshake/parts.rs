//! What two nodes' configurations must agree on, field by field: [`ConfigParts`], and how a
//! difference is described: [`ConfigMismatch`].
//!
//! Why a file of its own: a single digest only says *that* two configurations differ, which
//! leaves the operator to diff them by hand on every machine. The dialer sends its parts in
//! `Hello`, so the acceptor can name the field that differs, both values (both digests and the
//! first differing entry, for lists) and send that back; both sides then log the same facts,
//! each from its own point of view. Pure: no I/O, and nothing here ever sees the cookie.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Total bytes of member names above which the lists are not sent in `Hello` (only their
/// digests), so that the `Hello` stays well below the handshake's frame cap.
pub const MAX_LIST_BYTES: usize = 2048;

/// Longest entry quoted back in a refusal (longer ones are cut), so a refusal stays small.
const MAX_ENTRY_CHARS: usize = 128;

/// The parts of a cluster configuration that every node must agree on (besides the cluster
/// name, checked on its own). Sent by the dialer in `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfigParts {
    /// The candidates, in priority order (empty when longer than [`MAX_LIST_BYTES`] in all;
    /// the digest is then all there is).
    pub candidates: Vec<String>,
    /// SHA-256 of the full candidate list.
    pub candidates_digest: [u8; 32],
    /// The workers (empty when the lists are too long to send, as above).
    pub workers: Vec<String>,
    /// SHA-256 of the full worker list.
    pub workers_digest: [u8; 32],
    /// Whether a returning higher-priority candidate replaces a sitting leader.
    pub preempt: bool,
    /// Heartbeat interval, in microseconds.
    pub heartbeat_us: u64,
    /// Failure timeout, in microseconds.
    pub failure_timeout_us: u64,
    /// The election mode and its parameters. Last, so that the fields above keep their
    /// place in `Hello`.
    pub mode: ModeParts,
}

/// The election mode as two nodes compare it: bully, quorum with its parameters as the
/// election engine takes them, or an external store (etcd…) with its election and lease timing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[non_exhaustive]
pub enum ModeParts {
    /// Bully mode (the default).
    #[default]
    Bully,
    /// Quorum mode.
    Quorum {
        /// The lease `E`, in nanoseconds.
        lease_ns: u64,
        /// The clock rate bound `ρ`, in parts per million.
        drift_ppm: u32,
        /// The margin `δ`, in nanoseconds.
        margin_ns: u64,
    },
    /// A store decides (`Backend::Etcd`, `Backend::External`). In this mode the election stands
    /// for the member lists: nodes belong together when they campaign on the same election.
    External {
        /// The store's kind (`etcd`).
        store: String,
        /// The election's name in the store (etcd: its key prefix).
        election: String,
        /// The lease TTL, in milliseconds.
        ttl_ms: u64,
        /// The clock rate bound `ρ`, in parts per million.
        drift_ppm: u32,
        /// The margin `δ`, in nanoseconds.
        margin_ns: u64,
    },
}

impl ModeParts {
    /// The mode of a validated configuration.
    pub fn of(config: &crate::config::Config) -> Self {
        if let Some(id) = config.backend().identity() {
            return ModeParts::External {
                store: id.store,
                election: id.election,
                ttl_ms: id.lease.ttl.as_millis() as u64,
                drift_ppm: id.lease.drift_ppm,
                margin_ns: id.lease.margin.as_nanos() as u64,
            };
        }
        match config.quorum_params() {
            None => ModeParts::Bully,
            Some(q) => ModeParts::Quorum {
                lease_ns: q.lease.as_nanos() as u64,
                drift_ppm: q.drift_ppm,
                margin_ns: q.margin.as_nanos() as u64,
            },
        }
    }
}

impl fmt::Display for ModeParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModeParts::Bully => f.write_str("bully"),
            ModeParts::Quorum {
                lease_ns,
                drift_ppm,
                margin_ns,
            } => write!(
                f,
                "quorum (lease {:?}, max_drift {}, margin {:?})",
                Duration::from_nanos(*lease_ns),
                f64::from(*drift_ppm) / 1e6,
                Duration::from_nanos(*margin_ns)
            ),
            ModeParts::External {
                store,
                election,
                ttl_ms,
                drift_ppm,
                margin_ns,
            } => write!(
                f,
                "{} (election {:?}, ttl {:?}, max_drift {}, margin {:?})",
                kind(store),
                cut(election),
                Duration::from_millis(*ttl_ms),
                f64::from(*drift_ppm) / 1e6,
                Duration::from_nanos(*margin_ns)
            ),
        }
    }
}

impl ConfigParts {
    /// The parts of a configuration, with the lists' digests computed here.
    pub fn new(
        candidates: Vec<String>,
        workers: Vec<String>,
        preempt: bool,
        heartbeat: Duration,
        failure_timeout: Duration,
    ) -> Self {
        let candidates_digest = list_digest(&candidates);
        let workers_digest = list_digest(&workers);
        let bytes: usize = candidates.iter().chain(&workers).map(String::len).sum();
        let (candidates, workers) = if bytes > MAX_LIST_BYTES {
            (Vec::new(), Vec::new())
        } else {
            (candidates, workers)
        };
        ConfigParts {
            candidates,
            candidates_digest,
            workers,
            workers_digest,
            preempt,
            heartbeat_us: heartbeat.as_micros() as u64,
            failure_timeout_us: failure_timeout.as_micros() as u64,
            mode: ModeParts::Bully,
        }
    }

    /// The same parts with `mode` (they start as bully).
    pub fn with_mode(mut self, mode: ModeParts) -> Self {
        self.mode = mode;
        self
    }

    /// The parts of a node's validated configuration.
    pub fn of(config: &crate::config::Config) -> Self {
        let names = |l: &[crate::types::NodeName]| l.iter().map(ToString::to_string).collect();
        let m = config.members();
        // External backend: the lists are local hints, left out (the mode part names the election).
        let (candidates, workers) = if m.is_growable() {
            (Vec::new(), Vec::new())
        } else {
            (names(m.candidates()), names(m.workers()))
        };
        ConfigParts::new(
            candidates,
            workers,
            config.preempt(),
            config.heartbeat(),
            config.failure_timeout(),
        )
        .with_mode(ModeParts::of(config))
    }

    /// The first field where `theirs` (the dialer's) differs from `self` (the refusing
    /// acceptor's), described with the refusing node's value first; `None` if they agree.
    pub fn mismatch(&self, theirs: &ConfigParts) -> Option<ConfigMismatch> {
        let list = |field, ours: &[String], od: &[u8; 32], theirs: &[String], td: &[u8; 32]| {
            (od != td).then(|| ConfigMismatch {
                field,
                refusing: short_hex(od),
                refused: short_hex(td),
                first_difference: first_difference(ours, theirs),
            })
        };
        let scalar = |field, ours: String, theirs: String| {
            let differs = ours != theirs;
            differs.then_some(ConfigMismatch {
                field,
                refusing: ours,
                refused: theirs,
                first_difference: None,
            })
        };
        list(
            ConfigField::Candidates,
            &self.candidates,
            &self.candidates_digest,
            &theirs.candidates,
            &theirs.candidates_digest,
        )
        .or_else(|| {
            list(
                ConfigField::Workers,
                &self.workers,
                &self.workers_digest,
                &theirs.workers,
                &theirs.workers_digest,
            )
        })
        .or_else(|| {
            scalar(
                ConfigField::Preempt,
                self.preempt.to_string(),
                theirs.preempt.to_string(),
            )
        })
        .or_else(|| {
            scalar(
                ConfigField::Heartbeat,
                micros(self.heartbeat_us),
                micros(theirs.heartbeat_us),
            )
        })
        .or_else(|| {
            scalar(
                ConfigField::FailureTimeout,
                micros(self.failure_timeout_us),
                micros(theirs.failure_timeout_us),
            )
        })
        .or_else(|| {
            scalar(
                ConfigField::Mode,
                self.mode.to_string(),
                theirs.mode.to_string(),
            )
        })
    }

    /// This node's own value of `field`, as shown in its logs (lists in full when known).
    fn show(&self, field: ConfigField) -> String {
        let list = |l: &[String], d: &[u8; 32]| {
            if l.is_empty() && *d != list_digest(&[]) {
                format!("(digest {})", short_hex(d))
            } else {
                format!("[{}] (digest {})", l.join(", "), short_hex(d))
            }
        };
        match field {
            ConfigField::Candidates => list(&self.candidates, &self.candidates_digest),
            ConfigField::Workers => list(&self.workers, &self.workers_digest),
            ConfigField::Preempt => self.preempt.to_string(),
            // Not one of the parts: the mismatch carries both names.
            ConfigField::Cluster => String::new(),
            ConfigField::Heartbeat => micros(self.heartbeat_us),
            ConfigField::FailureTimeout => micros(self.failure_timeout_us),
            ConfigField::Mode => self.mode.to_string(),
        }
    }
}

/// SHA-256 over a list of node names.
fn list_digest(list: &[String]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"gen_leader/list/v1\0");
    h.update((list.len() as u64).to_be_bytes());
    for n in list {
        h.update(n.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// The first 4 bytes of a digest in hex: enough to tell two digests apart in a log line.
fn short_hex(d: &[u8; 32]) -> String {
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

fn micros(us: u64) -> String {
    format!("{:?}", Duration::from_micros(us))
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_ENTRY_CHARS).collect()
}

/// A store's kind as printed unquoted: letters, digits, `-`, `_` and `.` only (it comes from
/// the peer).
fn kind(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(MAX_ENTRY_CHARS)
        .collect()
}

/// Where two lists first differ; `None` when either is not known (not sent) or they agree
/// entry by entry.
fn first_difference(ours: &[String], theirs: &[String]) -> Option<ListDifference> {
    if ours.is_empty() || theirs.is_empty() {
        return None;
    }
    let n = ours.len().max(theirs.len());
    (0..n)
        .find(|&i| ours.get(i) != theirs.get(i))
        .map(|i| ListDifference {
            index: i as u32,
            refusing: ours.get(i).map(|s| cut(s)),
            refused: theirs.get(i).map(|s| cut(s)),
        })
}

/// A configuration field the nodes of a cluster must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ConfigField {
    /// The cluster name.
    Cluster,
    /// The candidate list (names and priority order).
    Candidates,
    /// The worker list.
    Workers,
    /// The `preempt` setting.
    Preempt,
    /// The heartbeat interval.
    Heartbeat,
    /// The failure timeout.
    FailureTimeout,
    /// The election mode and its parameters (bully, or quorum with lease, max drift and
    /// margin).
    Mode,
}

impl fmt::Display for ConfigField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigField::Cluster => "cluster name",
            ConfigField::Candidates => "candidate list",
            ConfigField::Workers => "worker list",
            ConfigField::Preempt => "preempt setting",
            ConfigField::Heartbeat => "heartbeat interval",
            ConfigField::FailureTimeout => "failure timeout",
            ConfigField::Mode => "mode",
        })
    }
}

/// Where two member lists first differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListDifference {
    /// Position (0-based) of the first entry that differs.
    pub index: u32,
    /// The refusing node's entry there (`None`: its list ends before).
    pub refusing: Option<String>,
    /// The refused node's entry there (`None`: its list ends before).
    pub refused: Option<String>,
}

/// Which configuration field differs between the refusing and the refused node, and how.
/// Sent in [`Refusal::Config`](super::Refusal::Config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigMismatch {
    /// The first field (in the order candidates, workers, preempt, heartbeat, failure
    /// timeout, mode) that differs.
    pub field: ConfigField,
    /// The refusing node's value (for lists, the start of its digest in hex).
    pub refusing: String,
    /// The refused node's value (for lists, the start of its digest in hex).
    pub refused: String,
    /// For lists known to both sides: the first entry that differs.
    pub first_difference: Option<ListDifference>,
}

fn entry(e: &Option<String>) -> &str {
    e.as_deref().unwrap_or("(end of list)")
}

impl ConfigMismatch {
    /// The cluster names differ: the refusing node's is `ours`.
    pub fn cluster(ours: &str, theirs: &str) -> Self {
        ConfigMismatch {
            field: ConfigField::Cluster,
            refusing: format!("{:?}", cut(ours)),
            refused: format!("{:?}", cut(theirs)),
            first_difference: None,
        }
    }

    /// The mismatch as seen by one side: `we_refused` says whether this node is the refusing
    /// one; `ours` is this node's configuration (to show its own value in full).
    pub fn describe(&self, we_refused: bool, ours: &ConfigParts) -> String {
        let (our_value, their_value) = if we_refused {
            (&self.refusing, &self.refused)
        } else {
            (&self.refused, &self.refusing)
        };
        let list = matches!(self.field, ConfigField::Candidates | ConfigField::Workers);
        let mut s = if we_refused {
            format!("its {} differs: ours ", self.field)
        } else {
            format!("our {} differs from its: ours ", self.field)
        };
        if list {
            s.push_str(&ours.show(self.field));
            s.push_str(&format!(", theirs digest {their_value}"));
        } else {
            s.push_str(&format!("{our_value}, theirs {their_value}"));
        }
        if let Some(d) = &self.first_difference {
            let (o, t) = if we_refused {
                (&d.refusing, &d.refused)
            } else {
                (&d.refused, &d.refusing)
            };
            s.push_str(&format!(
                ", first difference at #{}: ours {}, theirs {}",
                d.index,
                entry(o),
                entry(t)
            ));
        }
        s
    }
}

impl fmt::Display for ConfigMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = matches!(self.field, ConfigField::Candidates | ConfigField::Workers);
        let what = if list { " digest" } else { "" };
        write!(
            f,
            "{} differs: refusing node has{what} {}, refused node has{what} {}",
            self.field, self.refusing, self.refused
        )?;
        if let Some(d) = &self.first_difference {
            write!(
                f,
                ", first difference at #{}: refusing node has {}, refused node has {}",
                d.index,
                entry(&d.refusing),
                entry(&d.refused)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn parts(c: &[&str], w: &[&str], preempt: bool, hb: u64, ft: u64) -> ConfigParts {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        ConfigParts::new(v(c), v(w), preempt, ms(hb), ms(ft))
    }

    #[test]
    fn equal_parts_agree() {
        let a = parts(&["a@h:1", "b@h:2"], &["w@h:3"], false, 100, 600);
        assert_eq!(a.mismatch(&a.clone()), None);
    }

    #[test]
    fn a_candidate_list_difference_names_the_entry() {
        let ours = parts(&["a@h:1", "b@h:2", "c@h:3"], &[], false, 100, 600);
        let theirs = parts(&["a@h:1", "c@h:3", "b@h:2"], &[], false, 100, 600);
        let m = ours.mismatch(&theirs).expect("differs");
        assert_eq!(m.field, ConfigField::Candidates);
        assert_eq!(
            m.first_difference,
            Some(ListDifference {
                index: 1,
                refusing: Some("b@h:2".into()),
                refused: Some("c@h:3".into()),
            })
        );
        let (od, td) = (short_hex(&ours.candidates_digest), m.refused.clone());
        assert_ne!(od, td);
        assert_eq!(
            m.describe(true, &ours),
            format!(
                "its candidate list differs: ours [a@h:1, b@h:2, c@h:3] (digest {od}), \
                 theirs digest {td}, first difference at #1: ours b@h:2, theirs c@h:3"
            )
        );
        assert_eq!(
            m.describe(false, &theirs),
            format!(
                "our candidate list differs from its: ours [a@h:1, c@h:3, b@h:2] (digest {td}), \
                 theirs digest {od}, first difference at #1: ours c@h:3, theirs b@h:2"
            )
        );
        assert_eq!(
            m.to_string(),
            format!(
                "candidate list differs: refusing node has digest {od}, refused node has digest \
                 {td}, first difference at #1: refusing node has b@h:2, refused node has c@h:3"
            )
        );
    }

    #[test]
    fn a_shorter_list_ends_first() {
        let ours = parts(&["a@h:1"], &["w@h:3", "x@h:4"], false, 100, 600);
        let theirs = parts(&["a@h:1"], &["w@h:3"], false, 100, 600);
        let m = ours.mismatch(&theirs).expect("differs");
        assert_eq!(m.field, ConfigField::Workers);
        assert!(
            m.describe(true, &ours)
                .ends_with("first difference at #1: ours x@h:4, theirs (end of list)"),
            "{}",
            m.describe(true, &ours)
        );
    }

    #[test]
    fn scalar_fields_show_both_values() {
        let base = parts(&["a@h:1"], &[], false, 100, 600);
        let m = base
            .mismatch(&parts(&["a@h:1"], &[], false, 200, 600))
            .expect("differs");
        assert_eq!(m.field, ConfigField::Heartbeat);
        assert_eq!(
            m.describe(true, &base),
            "its heartbeat interval differs: ours 100ms, theirs 200ms"
        );
        assert_eq!(
            m.describe(false, &base),
            "our heartbeat interval differs from its: ours 200ms, theirs 100ms"
        );
        let m = base
            .mismatch(&parts(&["a@h:1"], &[], true, 100, 600))
            .expect("differs");
        assert_eq!(m.field, ConfigField::Preempt);
        assert_eq!(
            m.to_string(),
            "preempt setting differs: refusing node has false, refused node has true"
        );
        let m = base
            .mismatch(&parts(&["a@h:1"], &[], false, 100, 900))
            .expect("differs");
        assert_eq!(m.field, ConfigField::FailureTimeout);
        let quorum = ModeParts::Quorum {
            lease_ns: 1_000_000_000,
            drift_ppm: 10_000,
            margin_ns: 10_000_000,
        };
        let m = base
            .mismatch(&base.clone().with_mode(quorum.clone()))
            .expect("differs");
        assert_eq!(m.field, ConfigField::Mode);
        assert_eq!(
            m.describe(true, &base),
            "its mode differs: ours bully, theirs quorum (lease 1s, max_drift 0.01, margin 10ms)"
        );
        let other = ModeParts::Quorum {
            lease_ns: 2_000_000_000,
            drift_ppm: 10_000,
            margin_ns: 10_000_000,
        };
        let q = base.clone().with_mode(quorum);
        let m = q.mismatch(&base.clone().with_mode(other)).expect("differs");
        assert_eq!(
            m.to_string(),
            "mode differs: refusing node has quorum (lease 1s, max_drift 0.01, margin 10ms), \
             refused node has quorum (lease 2s, max_drift 0.01, margin 10ms)"
        );
        let m = ConfigMismatch::cluster("prod", "test");
        assert_eq!(
            m.describe(true, &base),
            "its cluster name differs: ours \"prod\", theirs \"test\""
        );
        assert_eq!(
            m.describe(false, &base),
            "our cluster name differs from its: ours \"test\", theirs \"prod\""
        );
    }

    #[test]
    fn long_lists_travel_as_digests_only() {
        let many: Vec<String> = (0..200)
            .map(|i| format!("node{i}@host.example:{i}"))
            .collect();
        let p = ConfigParts::new(many.clone(), vec![], false, ms(1), ms(2));
        assert!(p.candidates.is_empty());
        assert_eq!(p.candidates_digest, list_digest(&many));
        let other = parts(&["a@h:1"], &[], false, 1, 2);
        let m = p.mismatch(&other).expect("differs");
        assert_eq!(m.first_difference, None, "unknown without the list");
        assert!(m
            .describe(true, &p)
            .starts_with("its candidate list differs: ours (digest "));
    }

    #[test]
    fn another_etcd_election_is_named_in_the_refusal() {
        let etcd = |election: &str| ModeParts::External {
            store: "etcd".into(),
            election: election.into(),
            ttl_ms: 2_000,
            drift_ppm: 10_000,
            margin_ns: 10_000_000,
        };
        // etcd mode sends no lists: only the mode (with the election key) can differ.
        let ours = ConfigParts::new(vec![], vec![], false, ms(100), ms(600)).with_mode(etcd("a"));
        let theirs = ours.clone().with_mode(etcd("b"));
        assert_eq!(ours.mismatch(&ours.clone()), None);
        let m = ours.mismatch(&theirs).expect("differs");
        assert_eq!(m.field, ConfigField::Mode);
        assert_eq!(
            m.describe(true, &ours),
            "its mode differs: ours etcd (election \"a\", ttl 2s, max_drift 0.01, margin 10ms), \
             theirs etcd (election \"b\", ttl 2s, max_drift 0.01, margin 10ms)"
        );
        let m = ours
            .mismatch(&ours.clone().with_mode(ModeParts::Bully))
            .expect("differs");
        assert_eq!(m.refused, "bully");
    }
}
