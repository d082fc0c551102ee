//! The checks can fail: each one is fed what it must reject.

use super::*;

fn cfg(me: u32) -> EngineConfig {
    EngineConfig {
        me: NodeId(me),
        n_candidates: 2,
        n_nodes: 3,
        election_timeout: Duration::from_millis(100),
        startup_timeout: Duration::from_millis(500),
        preempt: false,
        announce_interval: Duration::from_secs(1),
        seed: 0,
        initial_term: Term(4),
        proposal_floor: Term(4),
        quorum: None,
    }
}

#[test]
fn leader_log_rejects_a_second_leader_in_a_term() {
    let mut log = LeaderLog::default();
    assert!(log.record(Term(3), NodeId(1)).is_ok());
    assert!(
        log.record(Term(3), NodeId(1)).is_ok(),
        "the same leader again"
    );
    let v = log.record(Term(3), NodeId(0)).unwrap_err();
    assert_eq!(v.to_string(), "two leaders in term 3: n1 and n0");
}

#[test]
fn node_checker_rejects_what_breaks_an_invariant() {
    let kind = |c: &mut NodeChecker, o: Output| c.output(&o).unwrap_err().kind;
    let mut c = NodeChecker::new(&cfg(0));
    assert!(matches!(
        kind(&mut c, Output::PersistTerm(Term(4))),
        ViolationKind::PersistNotIncreasing(..)
    ));
    let propose = |t| ElectionMsg::Propose {
        term: Term(t),
        takeover: false,
    };
    let send = |to, msg| Output::Send {
        to: NodeId(to),
        msg,
    };
    assert!(matches!(
        kind(&mut c, send(1, propose(6))),
        ViolationKind::SentBeforePersisted(_)
    ));
    assert!(matches!(
        kind(&mut c, send(0, propose(4))),
        ViolationKind::InvalidPeer(_)
    ));
    assert!(matches!(
        kind(&mut c, send(1, propose(3))),
        ViolationKind::UnownedTerm(_)
    ));
    assert!(c
        .clone()
        .without_owned_terms()
        .output(&send(1, propose(3)))
        .is_ok());
    let mut w = NodeChecker::new(&cfg(2));
    assert!(matches!(
        kind(&mut w, send(1, propose(4))),
        ViolationKind::WorkerLeads(_)
    ));
    // A restarted engine below the term seen before the crash.
    let mut c = NodeChecker::new(&cfg(0));
    let mut e = Engine::new(cfg(0), Instant::now());
    c.drain(&mut e).unwrap();
    c.last_term = Term(9);
    assert!(matches!(
        c.state(&e).unwrap_err().kind,
        ViolationKind::TermDecreased(..)
    ));
}
