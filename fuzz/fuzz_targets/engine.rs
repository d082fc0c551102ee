//! Bytes → (via `arbitrary`) an engine configuration and a sequence of up to 256 inputs.
//!
//! Checks after every input: no panic, no deadline left due after `handle_timeout`, and
//! the invariants of `gen_leader::election::testing::NodeChecker` (shared with the property
//! tests and the simulator): `term()` and `promised()` never decrease, `PersistTerm` strictly
//! increases and precedes every Propose/Accept of its term, workers never propose or lead, a
//! leader only leads terms it owns (`term % n_candidates == me`), messages only go to valid
//! peers.
//!
//! Terms cover the whole `u64` range, so this target finds the term-overflow bug (see
//! `verify/tests/props.rs`, `regression_term_near_u64_max_*`) within seconds. Set
//! `FUZZ_TERM_CEILING` (a number) to cap generated terms and search past it until it is fixed.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use gen_leader::election::testing::NodeChecker;
use gen_leader::election::{ElectionMsg, Engine, EngineConfig, LeaderRef};
use gen_leader::{NodeId, Term};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Clone, Copy, Arbitrary)]
enum TermSpec {
    Abs(u64),
    Small(u8),
    Rel(i8),
    OwnedBySender(u8),
    OwnedBy(u8, u8),
    NearMax(u8),
}

#[derive(Debug, Clone, Arbitrary)]
enum MsgSpec {
    Status {
        promised: TermSpec,
        leader: Option<(u8, TermSpec)>,
    },
    StatusSelfLeader {
        promised: TermSpec,
        term: TermSpec,
    },
    Propose {
        term: TermSpec,
        takeover: bool,
    },
    Accept {
        term: TermSpec,
    },
    Reject {
        round: TermSpec,
        promised: TermSpec,
        leader: Option<(u8, TermSpec)>,
    },
    Join {
        promised: TermSpec,
    },
    Leader {
        term: TermSpec,
        synch: Vec<u8>,
    },
}

#[derive(Debug, Clone, Arbitrary)]
enum Input {
    Up(u8),
    Down(u8),
    Unreachable(u8),
    Msg { from: u8, msg: MsgSpec },
    Timeout(u16),
    TimeoutAtDeadline,
    Synch { joined: Option<u8>, synch: Vec<u8> },
}

/// Peer ids: 0..=7 map to themselves (every generated cluster has at most 7 nodes), larger
/// values are out of range (including `u32::MAX`).
fn peer(p: u8) -> u32 {
    match p {
        0..=7 => u32::from(p),
        255 => u32::MAX,
        _ => u32::from(p),
    }
}

fn ceiling() -> u64 {
    static C: OnceLock<u64> = OnceLock::new();
    *C.get_or_init(|| {
        std::env::var("FUZZ_TERM_CEILING")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    })
}

fn owned_above(above: u64, c: u32, n: u32, k: u8) -> u64 {
    let n = u64::from(n.max(1));
    let c = u64::from(c) % n;
    let base = above.saturating_add(1);
    let first = base.saturating_add((c + n - base % n) % n);
    first.saturating_add(n * u64::from(k % 4))
}

fn resolve(t: TermSpec, e: &Engine, from: u32) -> Term {
    let n = e.config().n_candidates;
    let p = e.promised().0;
    let v = match t {
        TermSpec::Abs(v) => v,
        TermSpec::Small(v) => u64::from(v),
        TermSpec::Rel(d) => p.saturating_add_signed(i64::from(d % 4)),
        TermSpec::OwnedBySender(k) => owned_above(p, from, n, k),
        TermSpec::OwnedBy(c, k) => owned_above(p, u32::from(c), n, k),
        TermSpec::NearMax(k) => u64::MAX - u64::from(k % 8),
    };
    Term(v.min(ceiling()))
}

fn build(spec: &MsgSpec, e: &Engine, from: u32) -> ElectionMsg {
    let r = |t: TermSpec| resolve(t, e, from);
    let lr = |l: &Option<(u8, TermSpec)>| {
        l.map(|(node, t)| LeaderRef {
            node: NodeId(peer(node)),
            term: resolve(t, e, peer(node)),
        })
    };
    match spec {
        MsgSpec::Status { promised, leader } => ElectionMsg::Status {
            promised: r(*promised),
            leader: lr(leader),
        },
        MsgSpec::StatusSelfLeader { promised, term } => ElectionMsg::Status {
            promised: r(*promised),
            leader: Some(LeaderRef {
                node: NodeId(from),
                term: r(*term),
            }),
        },
        MsgSpec::Propose { term, takeover } => ElectionMsg::Propose {
            term: r(*term),
            takeover: *takeover,
        },
        MsgSpec::Accept { term } => ElectionMsg::Accept { term: r(*term) },
        MsgSpec::Reject {
            round,
            promised,
            leader,
        } => ElectionMsg::Reject {
            round: r(*round),
            promised: r(*promised),
            leader: lr(leader),
        },
        MsgSpec::Join { promised } => ElectionMsg::Join {
            promised: r(*promised),
        },
        MsgSpec::Leader { term, synch } => ElectionMsg::Leader {
            term: r(*term),
            synch: synch.clone(),
        },
    }
}

/// One fuzz case: a cluster shape, engine settings and the inputs (`cargo fuzz fmt engine
/// <artifact>` prints it).
#[derive(Debug, Clone)]
struct Case {
    cfg: EngineConfig,
    inputs: Vec<Input>,
}

impl<'a> Arbitrary<'a> for Case {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let n_candidates = u.int_in_range(1u32..=5)?;
        let n_workers = u.int_in_range(0u32..=2)?;
        let n_nodes = n_candidates + n_workers;
        let me = u.int_in_range(0..=n_nodes - 1)?;
        let initial_term = match u.int_in_range(0u8..=3)? {
            0 | 1 => 0,
            2 => u64::from(u.arbitrary::<u16>()?),
            _ => u.arbitrary::<u64>()?,
        }
        .min(ceiling());
        // The on-disk reservation: at or above the promise.
        let floor_gap = u64::from(u.int_in_range(0u8..=128)?);
        let cfg = EngineConfig {
            me: NodeId(me),
            n_candidates,
            n_nodes,
            election_timeout: Duration::from_millis(u.int_in_range(1u64..=500)?),
            startup_timeout: Duration::from_millis(u.int_in_range(1u64..=2000)?),
            preempt: u.arbitrary()?,
            announce_interval: Duration::from_millis(u.int_in_range(1u64..=3000)?),
            seed: u.arbitrary()?,
            initial_term: Term(initial_term),
            proposal_floor: Term(initial_term.saturating_add(floor_gap).min(ceiling())),
            quorum: None,
        };
        let mut inputs = Vec::new();
        while !u.is_empty() && inputs.len() < 256 {
            inputs.push(u.arbitrary()?);
        }
        Ok(Case { cfg, inputs })
    }
}

fn run(case: &Case) {
    let cfg = &case.cfg;
    let mut now = Instant::now();
    let mut e = Engine::new(cfg.clone(), now);
    let mut chk = NodeChecker::new(cfg);
    let step = |chk: &mut NodeChecker, e: &mut Engine, at: usize| {
        if let Err(v) = chk.drain(e) {
            panic!("{v} at input {at}");
        }
    };
    step(&mut chk, &mut e, 0);
    for (i, input) in case.inputs.iter().enumerate() {
        let at = i + 1;
        match input {
            Input::Up(p) => e.handle_peer_up(now, NodeId(peer(*p))),
            Input::Down(p) => e.handle_peer_down(now, NodeId(peer(*p))),
            Input::Unreachable(p) => e.handle_peer_unreachable(now, NodeId(peer(*p))),
            Input::Msg { from, msg } => {
                let from = peer(*from);
                let m = build(msg, &e, from);
                e.handle_message(now, NodeId(from), m);
            }
            Input::Timeout(ms) => {
                now += Duration::from_millis(u64::from(*ms));
                e.handle_timeout(now);
            }
            Input::TimeoutAtDeadline => {
                if let Some(t) = e.poll_timeout() {
                    now = now.max(t);
                }
                e.handle_timeout(now);
            }
            Input::Synch { joined, synch } => {
                e.provide_synch(joined.map(|j| NodeId(peer(j))), synch.clone());
            }
        }
        if matches!(input, Input::Timeout(_) | Input::TimeoutAtDeadline) {
            if let Some(t) = e.poll_timeout() {
                assert!(t > now, "deadline still due after handle_timeout at {at}");
            }
        }
        step(&mut chk, &mut e, at);
    }
}

fuzz_target!(|case: Case| run(&case));
