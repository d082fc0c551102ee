//! The naive bully: a deliberately broken hand-written protocol (not the engine) on which
//! the model's "at most one leader per term" predicate must find a counterexample. See the
//! module docs of `verify/tests/model.rs`.

use std::fmt::Write as _;

use stateright::{Checker, Model, Property};

use super::{insert_set, insert_sorted, two_in_a_term};

const BULLY_N: u8 = 3;
/// Rounds beyond this are outside the explored space.
const BULLY_MAX_ROUND: u16 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum BullyMsg {
    /// "I am electing in this round", to every higher-priority candidate.
    Election(u16),
    /// "I am here: stand down", the answer to an `Election`.
    Answer(u16),
    /// "I lead this round", to everyone.
    Coordinator(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum BullyRole {
    Idle,
    Electing,
    Waiting,
    Leader,
    Follower,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct BullyNode {
    role: BullyRole,
    /// The highest round seen.
    round: u16,
    leader: Option<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BullyState {
    nodes: [BullyNode; BULLY_N as usize],
    /// In-flight messages, a sorted multiset.
    net: Vec<(u8, u8, BullyMsg)>,
    /// Every `(round, node)` that ever led, sorted.
    led: Vec<(u16, u8)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum BullyAction {
    /// An idle candidate starts an election.
    Start(u8),
    /// A candidate's timer fires.
    Timeout(u8),
    Deliver(u8, u8, BullyMsg),
    Drop(u8, u8, BullyMsg),
}

/// A naive bully: rounds are not owned by candidates, and a candidate that heard no answer
/// from a higher-priority one before its timer fires declares itself leader.
struct NaiveBully;

impl NaiveBully {
    fn start(s: &mut BullyState, i: u8) {
        let n = &mut s.nodes[usize::from(i)];
        n.round += 1; // the next round: any candidate may pick the same one
        n.leader = None;
        if i == 0 {
            Self::lead(s, i);
            return;
        }
        n.role = BullyRole::Electing;
        let round = n.round;
        for j in 0..i {
            insert_sorted(&mut s.net, (i, j, BullyMsg::Election(round)));
        }
    }

    fn lead(s: &mut BullyState, i: u8) {
        let n = &mut s.nodes[usize::from(i)];
        n.role = BullyRole::Leader;
        n.leader = Some(i);
        let round = n.round;
        insert_set(&mut s.led, (round, i));
        for j in (0..BULLY_N).filter(|&j| j != i) {
            insert_sorted(&mut s.net, (i, j, BullyMsg::Coordinator(round)));
        }
    }
}

impl Model for NaiveBully {
    type State = BullyState;
    type Action = BullyAction;

    fn init_states(&self) -> Vec<BullyState> {
        let idle = BullyNode {
            role: BullyRole::Idle,
            round: 0,
            leader: None,
        };
        vec![BullyState {
            nodes: [idle; BULLY_N as usize],
            net: Vec::new(),
            led: Vec::new(),
        }]
    }

    fn actions(&self, s: &BullyState, actions: &mut Vec<BullyAction>) {
        for (i, n) in s.nodes.iter().enumerate() {
            let i = i as u8;
            match n.role {
                BullyRole::Idle => actions.push(BullyAction::Start(i)),
                BullyRole::Electing | BullyRole::Waiting => actions.push(BullyAction::Timeout(i)),
                BullyRole::Leader | BullyRole::Follower => {}
            }
        }
        let mut distinct = s.net.clone();
        distinct.dedup();
        for &(f, t, m) in &distinct {
            actions.push(BullyAction::Deliver(f, t, m));
            actions.push(BullyAction::Drop(f, t, m));
        }
    }

    fn next_state(&self, prev: &BullyState, action: BullyAction) -> Option<BullyState> {
        let mut s = prev.clone();
        match action {
            BullyAction::Start(i) => Self::start(&mut s, i),
            BullyAction::Timeout(i) => match s.nodes[usize::from(i)].role {
                // No answer from a higher-priority candidate: lead.
                BullyRole::Electing => Self::lead(&mut s, i),
                // Answered, but no coordinator came: try again.
                _ => Self::start(&mut s, i),
            },
            BullyAction::Deliver(f, t, m) | BullyAction::Drop(f, t, m) => {
                let k = s.net.binary_search(&(f, t, m)).ok()?;
                s.net.remove(k);
                if matches!(action, BullyAction::Drop(..)) {
                    return Some(s);
                }
                let n = &mut s.nodes[usize::from(t)];
                match m {
                    BullyMsg::Election(r) => {
                        n.round = n.round.max(r);
                        insert_sorted(&mut s.net, (t, f, BullyMsg::Answer(r)));
                        if s.nodes[usize::from(t)].role == BullyRole::Idle {
                            Self::start(&mut s, t);
                        }
                    }
                    BullyMsg::Answer(r) => {
                        if n.role == BullyRole::Electing && n.round == r {
                            n.role = BullyRole::Waiting;
                        }
                    }
                    BullyMsg::Coordinator(r) => {
                        n.round = n.round.max(r);
                        if f < t {
                            n.role = BullyRole::Follower;
                            n.leader = Some(f);
                        }
                    }
                }
            }
        }
        Some(s)
    }

    fn within_boundary(&self, s: &BullyState) -> bool {
        s.nodes.iter().all(|n| n.round <= BULLY_MAX_ROUND)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("at most one leader per term", |_, s: &BullyState| {
                !two_in_a_term(&s.led)
            }),
            Property::sometimes("a leader is elected", |_, s: &BullyState| !s.led.is_empty()),
        ]
    }
}

#[test]
fn naive_bully_elects_two_leaders_in_one_round() {
    // One thread: the BFS then finds a shortest counterexample.
    let checker = NaiveBully
        .checker()
        .target_state_count(1_000_000)
        .spawn_bfs()
        .join();
    eprintln!(
        "naive bully: {} unique states, BFS depth {}",
        checker.unique_state_count(),
        checker.max_depth()
    );
    checker.assert_any_discovery("a leader is elected");
    let path = checker
        .discovery("at most one leader per term")
        .expect("the checker no longer finds two leaders in one round of the naive bully");
    let mut trace = String::new();
    for (state, action) in path.clone().into_vec() {
        let nodes: Vec<String> = state
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("n{i} {:?} round {} leader {:?}", n.role, n.round, n.leader))
            .collect();
        let _ = writeln!(
            trace,
            "  {} | in flight {:?} | led {:?}",
            nodes.join(" | "),
            state.net,
            state.led
        );
        if let Some(a) = action {
            let _ = writeln!(trace, "    -> {a:?}");
        }
    }
    let steps = path.clone().into_actions().len();
    eprintln!(
        "naive bully counterexample for \"at most one leader per term\" ({steps} steps):\n{trace}"
    );
    assert!(
        two_in_a_term(&path.last_state().led),
        "the counterexample does not end with two leaders in one round"
    );
    assert!(
        steps <= 8,
        "counterexample unexpectedly long: {steps} steps"
    );
}
