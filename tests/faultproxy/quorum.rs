//! Quorum mode through the fault proxy: the property the mode exists for, checked on real
//! processes from their JSON events' wall-clock times (`at_ms`, one machine, one clock).
//!
//! * The leader cut from both others **stops acting before the new leader starts**: its
//!   `stepped_down` and the end of the last lease it announced come before the new leader's
//!   `elected`, and it serves no `leader_call` after stepping down; a call typed on it fails
//!   with `NoQuorum`.
//! * A follower cut from both others changes **no term** anywhere, says `NoQuorum` while cut,
//!   and the heal disrupts nothing (same leader, same term).

use super::*;

/// `datos` flags of every node here: quorum mode, the lease `E` = 600 ms (heartbeat 50 ms).
const QUORUM: &[&str] = &["--mode", "quorum", "--lease-ms", "600"];

fn at_ms(e: &Ev) -> f64 {
    e.v["at_ms"].as_f64().expect("every event carries at_ms")
}

/// The first event of node `i` matching `pred`, waiting for it.
fn wait_event(c: &Cluster, i: usize, what: &str, pred: impl Fn(&Ev) -> bool) -> Ev {
    let mut found = None;
    c.wait_until(WAIT, what, |c| {
        found = c.events(i).into_iter().find(|e| pred(e));
        found.is_some()
    });
    found.expect("set when the wait succeeds")
}

#[test]
fn quorum_leader_cut_from_both_stops_acting_before_the_new_leader_starts() {
    // `l` leads (whichever candidate a majority granted first); `a` and `b` follow.
    let (mut c, l, term) = Cluster::start_any(3, QUORUM);
    let (a, b) = ((l + 1) % 3, (l + 2) % 3);
    assert_eq!(c.call(b, "antes"), "ok antes");
    let l0 = c.procs[l].name.clone();
    assert!(
        c.has(l, |e| e.event() == "lease" && e.v["until_ms"].is_number()),
        "the quorum leader announces its lease\n{}",
        c.history()
    );

    c.cut(l, a);
    c.cut(l, b);
    c.fault(format!(
        "partition: cut {} from the two others",
        c.procs[l].short
    ));
    let (leader, new_term) = c.wait_agreed(WAIT, &[a, b], "the majority elects", |n, t| {
        n != l0 && t > term
    });
    let i_new = c.index_of(&leader).expect("a member");
    let down = wait_event(&c, l, "the old leader steps down", |e| {
        e.event() == "stepped_down" && e.term() == term
    });
    let elected = wait_event(&c, i_new, "the new leader's elected", |e| {
        e.event() == "elected" && e.v["joined"].is_null() && e.term() == new_term
    });
    let last_until = c
        .events(l)
        .iter()
        .filter(|e| e.event() == "lease" && e.term() == term)
        .filter_map(|e| e.v["until_ms"].as_f64())
        .fold(f64::MIN, f64::max);
    eprintln!(
        "[quorum partition] the old leader stepped down at +{:.1} ms, its lease ended at +{:.1} ms, \
         {} elected at +{:.1} ms (relative to the stepped_down event)",
        0.0,
        last_until - at_ms(&down),
        c.short(Some(&leader)),
        at_ms(&elected) - at_ms(&down)
    );
    assert!(
        at_ms(&down) < at_ms(&elected),
        "the cut-off leader stopped acting at {} ms, after the new leader started at {} ms\n{}",
        at_ms(&down),
        at_ms(&elected),
        c.history()
    );
    assert!(
        last_until <= at_ms(&elected),
        "the old lease ran until {last_until} ms, past the new leader's start at {} ms\n{}",
        at_ms(&elected),
        c.history()
    );
    // Nothing served by the old leader after it stepped down.
    assert!(
        !c.has(l, |e| e.event() == "leader_call" && at_ms(e) > at_ms(&down)),
        "the old leader served a call after stepping down\n{}",
        c.history()
    );
    // A call typed on the cut-off node fails, naming NoQuorum.
    c.type_line(l, "aislado");
    let err = wait_event(&c, l, "the call on the old leader to fail", |e| {
        matches!(e.event(), "reply" | "error") && e.str("request") == Some("aislado")
    });
    assert_eq!(err.event(), "error", "{}", c.history());
    assert!(
        err.str("error").unwrap_or("").contains("NoQuorum"),
        "the error names NoQuorum: {}",
        err.v
    );

    c.heal(l, a);
    c.heal(l, b);
    let healed_at = c.fault("heal all".into());
    let f = settle_and_check(&mut c, healed_at, l, "quorum-partition");
    // Stickiness: the old leader comes back and joins; no takeover, no new term.
    assert_eq!(
        (f.leader.as_str(), f.term),
        (leader.as_str(), new_term),
        "{}",
        c.history()
    );
}

#[test]
fn quorum_follower_cut_from_both_changes_no_term() {
    // `l` leads; `m` follows and stays with it; `f` follows and is cut off.
    let (mut c, l, term) = Cluster::start_any(3, QUORUM);
    let (m, f) = ((l + 1) % 3, (l + 2) % 3);
    let l0 = c.procs[l].name.clone();
    c.cut(f, l);
    c.cut(f, m);
    let cut_at = c.fault(format!("cut {} from the two others", c.procs[f].short));
    // The majority side keeps serving; the cut-off node says NoQuorum.
    assert_eq!(c.call(m, "durante"), "ok durante");
    c.wait_until(WAIT, "a failure timeout after the cut", |_| {
        cut_at.elapsed() >= FAILURE_TIMEOUT * 2
    });
    c.type_line(f, "solo");
    let err = wait_event(&c, f, "the call on the cut-off follower to fail", |e| {
        matches!(e.event(), "reply" | "error") && e.str("request") == Some("solo")
    });
    assert!(
        err.event() == "error" && err.str("error").unwrap_or("").contains("NoQuorum"),
        "a call on the cut-off follower fails naming NoQuorum: {}\n{}",
        err.v,
        c.history()
    );
    // Long enough for a cut-off node to have tried elections, were it allowed to.
    c.wait_until(WAIT, "3 s of partition", |_| {
        cut_at.elapsed() >= Duration::from_secs(3)
    });
    c.heal(f, l);
    c.heal(f, m);
    let healed_at = c.fault("heal all".into());
    let fig = settle_and_check(&mut c, healed_at, f, "quorum-follower");
    assert_eq!(
        (fig.leader.as_str(), fig.term),
        (l0.as_str(), term),
        "{}",
        c.history()
    );
    for i in 0..3 {
        let newer: Vec<String> = c
            .events(i)
            .iter()
            .filter(|e| e.term() > term)
            .map(|e| c.describe(e))
            .collect();
        assert!(
            newer.is_empty(),
            "no term above {term} anywhere: {newer:?}\n{}",
            c.history()
        );
    }
}
