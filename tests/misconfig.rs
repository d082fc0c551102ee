//! Misconfiguration is refused loudly, once, and says what differs (issue 8, part 3).
//!
//! Two in-process nodes that differ in one setting (cookie, candidate list, heartbeat), or a
//! node with an unreachable peer: each side's log says who refused whom and which field
//! differs with both values, the same warning is not repeated within the rate-limit window,
//! and the view lists the refusal until the peer connects.

mod common;

use std::time::Duration;

use common::*;
use gen_leader::ClusterView;

/// Captures the nodes' WARN lines (and worse).
fn init_logs() {
    logs::capture(tracing::Level::WARN);
}

/// The WARN lines logged by `node`.
fn warns_of(node: &str) -> Vec<String> {
    logs::lines_of(node)
        .into_iter()
        .filter(|l| l.contains("WARN"))
        .collect()
}

fn dump(nodes: &[&str]) -> String {
    nodes
        .iter()
        .map(|n| format!("WARN lines of {n}:\n{}\n", warns_of(n).join("\n")))
        .collect()
}

/// Waits until `node` has logged a WARN line containing every one of `parts`; returns it.
async fn logged(node: &str, parts: &[&str], all: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(l) = warns_of(node)
            .into_iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return l;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{node} never logged {parts:?}\n{}", dump(all));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The lines of `node` that contain `text`.
fn count(node: &str, text: &str) -> usize {
    warns_of(node).iter().filter(|l| l.contains(text)).count()
}

fn refused_by(view: &ClusterView, peer: &str) -> Option<String> {
    view.refused
        .iter()
        .find(|(n, _)| n.to_string() == peer)
        .map(|(_, r)| r.clone())
}

/// Long enough for several retries (dials back off to 500 ms), far below the 30 s window.
const RETRIES: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cookie_is_named_on_both_sides_once_and_shown_in_the_view() {
    init_logs();
    let (mut ls, names) = bind(2).await;
    let (a, b) = (names[0].clone(), names[1].clone());
    let lb = ls.pop().unwrap();
    let la = ls.pop().unwrap();
    let na = start(config(&a, &names, &[]), la).await;
    let nb = start(config(&b, &names, &[]).cookie("another-cookie"), lb).await;
    let all = [a.as_str(), b.as_str()];

    // a (the lower id) dials b and finds b's proof wrong: a refused b; b was refused by a.
    let la_line = logged(
        &a,
        &[&format!(
            "refused {b}: wrong cookie (authentication failed)"
        )],
        &all,
    )
    .await;
    let lb_line = logged(
        &b,
        &[&format!(
            "{a} refused our connection: wrong cookie (authentication failed)"
        )],
        &all,
    )
    .await;
    // The cookie itself is never logged.
    for l in [&la_line, &lb_line] {
        assert!(
            !l.contains("test-cookie") && !l.contains("another-cookie"),
            "{l}"
        );
    }

    // Both lead alone (bully mode favours availability), and the view says why.
    eventually("both alone", || {
        na.handle.view().is_leader() && nb.handle.view().is_leader()
    })
    .await;
    eventually("refusals in the views", || {
        refused_by(&na.handle.view(), &b).is_some() && refused_by(&nb.handle.view(), &a).is_some()
    })
    .await;
    assert!(
        refused_by(&na.handle.view(), &b)
            .unwrap()
            .contains("wrong cookie"),
        "{:?}",
        na.handle.view()
    );

    // Rate limit: the retries go on, the identical warnings are not repeated.
    tokio::time::sleep(RETRIES).await;
    let ca = count(&a, "wrong cookie");
    let cb = count(&b, "wrong cookie");
    assert!(ca <= 2 && cb <= 2, "{ca} / {cb} lines\n{}", dump(&all));
    let stats = nb.handle.stats().await.expect("stats");
    assert!(
        stats.handshakes_refused >= 2,
        "the retries happened: {stats:?}"
    );

    // b comes back with the right cookie: the refusal leaves a's view once it connects.
    nb.handle.shutdown().await;
    drop(nb);
    // The stopped node's listener closes as its tasks end: retry the bind a little.
    let addr = b.rsplit_once('@').unwrap().1.to_string();
    let mut lb = None;
    for _ in 0..200 {
        match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => {
                lb = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    let lb = lb.expect("rebind b");
    let nb = start(config(&b, &names, &[]), lb).await;
    eventually("b connected and no longer refused", || {
        let v = na.handle.view();
        v.alive.iter().any(|n| n.to_string() == b) && v.refused.is_empty()
    })
    .await;
    agreed(&[&na, &nb]).await;
    println!("{}", dump(&all)); // seen with --nocapture
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_candidate_list_names_the_first_difference() {
    init_logs();
    let (mut ls, names) = bind(3).await;
    let (a, b, c) = (names[0].clone(), names[1].clone(), names[2].clone());
    drop(ls.pop()); // c never runs
    let lb = ls.pop().unwrap();
    let la = ls.pop().unwrap();
    // b lists c before itself: the lists differ from position #1 on.
    let b_list = vec![a.clone(), c.clone(), b.clone()];
    let _na = start(config(&a, &names, &[]), la).await;
    let _nb = start(config(&b, &b_list, &[]), lb).await;
    let all = [a.as_str(), b.as_str()];

    let line = logged(
        &a,
        &[
            &format!("refused {b}: its candidate list differs: ours [{a}, {b}, {c}] (digest "),
            &format!("first difference at #1: ours {b}, theirs {c}"),
        ],
        &all,
    )
    .await;
    assert!(line.contains("theirs digest "), "{line}");
    logged(
        &b,
        &[
            &format!("{a} refused our connection: our candidate list differs from its: ours [{a}, {c}, {b}]"),
            &format!("first difference at #1: ours {c}, theirs {b}"),
        ],
        &all,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_heartbeat_shows_both_values_and_is_not_repeated() {
    init_logs();
    let (mut ls, names) = bind(2).await;
    let (a, b) = (names[0].clone(), names[1].clone());
    let lb = ls.pop().unwrap();
    let la = ls.pop().unwrap();
    let _na = start(config(&a, &names, &[]), la).await;
    let _nb = start(
        config(&b, &names, &[]).heartbeat(Duration::from_millis(80)),
        lb,
    )
    .await;
    let all = [a.as_str(), b.as_str()];

    let refusing = format!("refused {b}: its heartbeat interval differs: ours 50ms, theirs 80ms");
    let refused =
        format!("{a} refused our connection: our heartbeat interval differs from its: ours 80ms, theirs 50ms");
    // b (the higher id) asks a to dial it: a refuses b's Hello too, and b's dials too.
    logged(&b, &[&refused], &all).await;
    logged(&a, &[&refusing], &all).await;
    tokio::time::sleep(RETRIES).await;
    assert_eq!(count(&a, &refusing), 1, "{}", dump(&all));
    assert_eq!(count(&b, &refused), 1, "{}", dump(&all));
    println!("{}", dump(&all)); // seen with --nocapture
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_is_reported_once_at_warn() {
    init_logs();
    let (mut ls, names) = bind(1).await;
    let a = names[0].clone();
    // Nobody listens there: a closed port on 127.0.0.1.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let x = format!("x@{}", gone.local_addr().unwrap());
    drop(gone);
    let members = vec![a.clone(), x.clone()];
    let na = start(config(&a, &members, &[]), ls.pop().unwrap()).await;
    let all = [a.as_str()];
    logged(&a, &[&format!("cannot reach {x}: connecting to ")], &all).await;
    tokio::time::sleep(RETRIES).await;
    assert_eq!(count(&a, "cannot reach"), 1, "{}", dump(&all));
    // Down, not refused: nothing in the view's refusals.
    assert!(na.handle.view().refused.is_empty());
}
