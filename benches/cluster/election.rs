//! Section `election`: from the last node up to all agreeing on a leader, 3 to 33 nodes, and
//! the join of one node into a cluster that has settled.
//!
//! The first figure starts the nodes back to back, so it also measures how far the others got
//! while the last one was starting (a slower start of the first nodes leaves less to do after
//! the last one): with data directories on, 33 nodes agree sooner than with them off. The join
//! figure waits for the others to agree and settle first, so it times only the last node's
//! start, its handshakes with every member and its joining the sitting leader.
//!
//! Why in-process: 33 node processes would not fit a small machine; one process with
//! 127.0.0.1:0 listeners measures the protocol's round trips without the process cost.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gen_leader::{Config, LeaderHandle, Node};
use serde_json::{json, Value};

use crate::behaviour::{Bench, Counter};
use crate::report::{fmt_ms_range, Report, Row};
use crate::util::med_range;
use crate::{data_dirs_default, tempdir, Params, COOKIE, ELECTION_GIVE_UP, STALL};

/// How long the others are left to settle before the joining node starts.
const SETTLE: Duration = Duration::from_millis(50);

/// In-process election: `n` nodes started back to back (`join`: the last one only once the
/// others agree and have settled); from just before the last one starts until every node
/// reports the same leader and term.
async fn election_rep(n: usize, dir: &Path, join: bool) -> Result<Duration, String> {
    let mut ls = Vec::new();
    let mut names = Vec::new();
    for i in 0..n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let port = l.local_addr().map_err(|e| e.to_string())?.port();
        names.push(format!("e{i}@127.0.0.1:{port}"));
        ls.push(l);
    }
    let mut handles = Vec::new();
    let mut t0 = Instant::now();
    for (i, l) in ls.into_iter().enumerate() {
        let mut b = Config::builder(&names[i]).candidates(&names).cookie(COOKIE);
        if data_dirs_default() {
            b = b.data_dir(dir.join(format!("e{i}")));
        }
        let cfg = b.build().map_err(|e| e.to_string())?;
        if i == n - 1 {
            if join && !handles.is_empty() {
                agree(&handles, Instant::now() + ELECTION_GIVE_UP).await?;
                tokio::time::sleep(SETTLE).await;
            }
            t0 = Instant::now();
        }
        let b = Bench::new(&names[i], Arc::new(Counter::default()));
        handles.push(
            Node::start_with_listener(cfg, b, l)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let result = agree(&handles, t0 + ELECTION_GIVE_UP)
        .await
        .map(|()| t0.elapsed());
    let mut set = tokio::task::JoinSet::new();
    for h in handles {
        set.spawn(async move { h.shutdown().await });
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while set.join_next().await.is_some() {}
    })
    .await;
    result
}

/// Waits until every node in `handles` reports the same leader and term, or `deadline`.
async fn agree(handles: &[LeaderHandle<Bench>], deadline: Instant) -> Result<(), String> {
    let n = handles.len();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watchers: Vec<_> = handles
        .iter()
        .map(|h| {
            let mut c = h.changes();
            let tx = tx.clone();
            tokio::spawn(async move {
                while c.changed().await.is_ok() {
                    if tx.send(()).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    let deadline = tokio::time::Instant::from_std(deadline);
    let agreed = || {
        let first = handles[0].view();
        let l = first.leader.as_ref()?;
        handles
            .iter()
            .all(|h| {
                let v = h.view();
                v.leader.as_ref() == Some(l) && v.term == first.term
            })
            .then_some(())
    };
    let result = loop {
        if agreed().is_some() {
            break Ok(());
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(())) => {}
            _ => {
                let views: Vec<String> = handles
                    .iter()
                    .map(|h| {
                        let v = h.view();
                        format!(
                            "{}: leader {:?} term {} role {:?}",
                            v.me,
                            v.leader.map(|l| l.to_string()),
                            v.term.get(),
                            v.role
                        )
                    })
                    .collect();
                break Err(format!(
                    "{n} nodes did not agree within {ELECTION_GIVE_UP:?}:\n  {}",
                    views.join("\n  ")
                ));
            }
        }
    };
    for w in watchers {
        w.abort();
    }
    result
}

pub(crate) fn sec_election(p: &Params, rep: &mut Report) {
    let mut out = serde_json::Map::new();
    for &n in &p.elect_sizes {
        let times = reps(p, n, false, &mut out);
        let med = med_range(&times.0).map(|m| m.0).unwrap_or(f64::NAN);
        let mut row = Row::new(
            format!("election, {n} in-process nodes on 127.0.0.1:0: last up → all agree"),
            measured(p, &times.0, times.1),
        );
        if n == 3 {
            row = row
                .reference("28–36 ms; 5 of 30 ≈ 5 s")
                .target("≤ 20 ms, never a stall", Some(med <= 20.0 && times.1 == 0));
        }
        rep.rows.push(row);
    }
    for &n in p
        .elect_sizes
        .iter()
        .filter(|&&n| n == 3 || n == 9 || n == 33)
    {
        let times = reps(p, n, true, &mut out);
        rep.rows.push(Row::new(
            format!(
                "join, 1 node into {} settled in-process nodes: its start → all agree",
                n - 1
            ),
            measured(p, &times.0, times.1),
        ));
    }
    rep.data.insert("election".into(), Value::Object(out));
}

/// A row's measured column: the times' median and range, and the stalls.
fn measured(p: &Params, times: &[f64], stalls: usize) -> String {
    format!(
        "{}; {stalls}/{} stalls (> {} s)",
        fmt_ms_range(times),
        p.elect_reps,
        STALL.as_secs()
    )
}

/// `p.elect_reps` runs of `n` nodes, each on a fresh runtime; the times (ms) and the stalls
/// and failures, also recorded in `out` (`nodes_{n}`, or `join_{n}`).
fn reps(
    p: &Params,
    n: usize,
    join: bool,
    out: &mut serde_json::Map<String, Value>,
) -> (Vec<f64>, usize) {
    let what = if join { "join" } else { "election" };
    let mut times = Vec::new();
    let mut failures = Vec::new();
    for _ in 0..p.elect_reps {
        let dir = tempdir(&format!("elect{n}"));
        // A fresh runtime per run: whatever a failed run leaves behind dies with it.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let r = rt.block_on(election_rep(n, dir.path(), join));
        rt.shutdown_timeout(Duration::from_secs(2));
        match r {
            Ok(d) => times.push(d.as_secs_f64() * 1e3),
            Err(e) => {
                eprintln!("[{what}] {e}");
                failures.push(e);
            }
        }
    }
    let stalls = times
        .iter()
        .filter(|&&t| t > STALL.as_secs_f64() * 1e3)
        .count()
        + failures.len();
    println!(
        "[{what}] {n} nodes: {} over {} runs, {stalls} stall(s)",
        fmt_ms_range(&times),
        p.elect_reps
    );
    let key = if join {
        format!("join_{n}")
    } else {
        format!("nodes_{n}")
    };
    out.insert(
        key,
        json!({"ms": times, "stalls": stalls, "failures": failures}),
    );
    (times, stalls)
}
