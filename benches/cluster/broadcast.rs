//! Section `bcast`: `leader_cast` on the leader, broadcast to 2 and to 8 follower processes.
//!
//! Why: a broadcast reaches every follower through its own connection; this measures the
//! delivered rate and whether a flooded follower is dropped (and how many casts it lost).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use crate::behaviour::BCAST_WINDOW;
use crate::procs::{diagnose, wait_until, Cluster, NEXT_TAG};
use crate::report::{fmt_rate, Report, Row};
use crate::util::{ev, med_range, wall_ns};
use crate::{Params, PAYLOAD, T_EVENT};

/// How a broadcast run ended.
pub(crate) enum Bcast {
    /// Every follower got every broadcast: end-to-end rate, enqueue rate, out-of-order count.
    Delivered(f64, f64, u64),
    /// The leader dropped a follower: broadcasts lost (per follower) and what happened.
    Lost(Vec<(String, u64)>, String),
}

/// One broadcast run: `n` casts on the leader (`window` 0: as fast as `leader_cast` takes
/// them; else at most `window` unacknowledged), until every follower has all of them or a
/// follower loses its leader.
pub(crate) fn bcast_run(cl: &mut Cluster, leader: usize, n: u64, window: u64) -> Bcast {
    let followers: Vec<usize> = (0..cl.procs.len()).filter(|&i| i != leader).collect();
    let leader_name = cl.names[leader].clone();
    let tag = NEXT_TAG.fetch_add(1, Ordering::SeqCst);
    let marks: Vec<usize> = cl.procs.iter().map(|p| p.mark()).collect();
    for &i in &followers {
        cl.procs[i].send(&json!({"cmd": "expect", "n": n, "tag": tag, "timeout_secs": 150}));
    }
    let mut before = Vec::new();
    for &i in &followers {
        let v = cl.procs[i].wait(marks[i], T_EVENT, "the follower to arm its counter", |v| {
            ev(v) == "expect_ok" && v["tag"] == tag
        });
        before.push(v["before"].as_u64().unwrap_or(0));
    }
    let ctag = NEXT_TAG.fetch_add(1, Ordering::SeqCst);
    let fnames: Vec<&String> = followers.iter().map(|&i| &cl.names[i]).collect();
    let t_start = wall_ns();
    cl.procs[leader].send(&json!({
        "cmd": "cast", "n": n, "size": PAYLOAD, "tag": ctag, "window": window,
        "followers": fnames,
    }));
    let procs = cl.procs_ref();
    // Done, or a follower lost its leader (the leader dropped it).
    let outcome = wait_until(
        Duration::from_secs(150),
        &format!("{} followers to receive {n} broadcasts", followers.len()),
        &procs,
        || {
            for &i in &followers {
                let lost = cl.procs[i].find(marks[i], |v| {
                    ev(v) == "view"
                        && v["ts"].as_u64().unwrap_or(0) > t_start
                        && v["leader"].as_str() != Some(leader_name.as_str())
                });
                if lost.is_some() {
                    return Some(None);
                }
            }
            let sent = cl.procs[leader].find(marks[leader], |v| v["tag"] == ctag)?;
            let mut got = Vec::new();
            for &i in &followers {
                got.push(cl.procs[i].find(marks[i], |v| {
                    v["tag"] == tag && matches!(ev(v), "result" | "error")
                })?);
            }
            Some(Some((sent, got)))
        },
    );
    drop(procs);
    let Some((sent, got)) = outcome else {
        // Let the burst end and the follower rejoin, then count what arrived.
        cl.procs[leader].wait(
            marks[leader],
            Duration::from_secs(150),
            "the burst to end",
            |v| v["tag"] == ctag,
        );
        let all: Vec<usize> = (0..cl.procs.len()).collect();
        cl.wait_agreed(
            &all,
            T_EVENT,
            "the cluster to agree again after a follower was dropped",
        );
        std::thread::sleep(Duration::from_millis(500));
        let mut lost = Vec::new();
        for (k, &i) in followers.iter().enumerate() {
            let c = cl.procs[i].request(json!({"cmd": "count"}), T_EVENT, "broadcast count");
            let got = c["count"].as_u64().unwrap_or(0).saturating_sub(before[k]);
            if got < n {
                lost.push((cl.names[i].clone(), n - got));
            }
        }
        // Retire the pending `expect`s.
        for &i in &followers {
            cl.procs[i].send(&json!({"cmd": "expect", "n": 0, "tag": 0}));
        }
        let why = cl.procs[leader]
            .stderr_tail(200)
            .lines()
            .rev()
            .find(|l| l.contains("disconnected"))
            .and_then(|l| l.split("reason=").nth(1))
            .unwrap_or("a follower lost its leader")
            .to_string();
        return Bcast::Lost(lost, why);
    };
    for v in std::iter::once(&sent).chain(got.iter()) {
        if ev(v) == "error" {
            panic!(
                "broadcast run failed: {}\n{}",
                v["error"].as_str().unwrap_or("?"),
                diagnose(&cl.procs_ref())
            );
        }
    }
    let ts0 = sent["ts0"].as_u64().unwrap_or(0);
    let ts1 = sent["ts1"].as_u64().unwrap_or(0);
    let last = got
        .iter()
        .map(|v| v["ts"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    let anomalies: u64 = got
        .iter()
        .map(|v| v["anomalies"].as_u64().unwrap_or(0))
        .sum();
    let secs = last.saturating_sub(ts0) as f64 / 1e9;
    let enq = ts1.saturating_sub(ts0) as f64 / 1e9;
    Bcast::Delivered(n as f64 / secs, n as f64 / enq, anomalies)
}

pub(crate) fn sec_bcast(p: &Params, rep: &mut Report) {
    let mut out = serde_json::Map::new();
    for (followers, n) in [(2usize, p.bcast_n2), (8, p.bcast_n8)] {
        let mut cl = Cluster::start(followers + 1, &format!("bcast{followers}"));
        let all: Vec<usize> = (0..=followers).collect();
        let (leader_name, _) = cl.agreed(&all).expect("agreed");
        let leader = cl.index_of(&leader_name);
        let mut modes = serde_json::Map::new();
        for (mode, window) in [("paced", BCAST_WINDOW), ("burst", 0)] {
            // Warm-up (connections, allocator).
            if let Bcast::Lost(l, why) = bcast_run(&mut cl, leader, n / 10, window) {
                println!("[bcast] warm-up lost broadcasts: {l:?} ({why})");
            }
            let mut rates = Vec::new();
            let mut enq = Vec::new();
            let mut anomalies = 0;
            let mut lost: Option<(Vec<(String, u64)>, String)> = None;
            for r in 0..p.bcast_reps {
                match bcast_run(&mut cl, leader, n, window) {
                    Bcast::Delivered(rate, e, a) => {
                        println!(
                            "[bcast] {followers} followers, {mode}, run {}: {} ({} enqueued/s, {a} out of order)",
                            r + 1,
                            fmt_rate(rate),
                            fmt_rate(e)
                        );
                        rates.push(rate);
                        enq.push(e);
                        anomalies += a;
                    }
                    Bcast::Lost(l, why) => {
                        println!(
                            "[bcast] {followers} followers, {mode}, run {}: follower dropped ({why}); lost {l:?}",
                            r + 1
                        );
                        lost = Some((l, why));
                        break;
                    }
                }
            }
            modes.insert(
                mode.to_string(),
                json!({
                    "casts": n, "window": window, "rates": rates, "enqueue_rates": enq,
                    "anomalies": anomalies,
                    "lost": lost.as_ref().map(|(l, why)| json!({"per_follower": l, "reason": why})),
                }),
            );
            let what = match mode {
                "paced" => format!("window {BCAST_WINDOW}"),
                _ => "unpaced burst".to_string(),
            };
            let measured = match (&lost, med_range(&rates)) {
                (Some((l, why)), _) => {
                    let total: u64 = l.iter().map(|x| x.1).sum();
                    format!(
                        "a follower was DROPPED ({why}): {total} broadcasts lost{}",
                        match med_range(&rates) {
                            Some((m, _, _)) => format!("; earlier runs {}", fmt_rate(m)),
                            None => String::new(),
                        }
                    )
                }
                (None, Some((m, lo, hi))) => format!(
                    "{} ({}–{}); {}",
                    fmt_rate(m),
                    fmt_rate(lo),
                    fmt_rate(hi),
                    if anomalies == 0 {
                        "in order, none lost".to_string()
                    } else {
                        format!("{anomalies} OUT OF ORDER")
                    }
                ),
                (None, None) => "—".into(),
            };
            let med = med_range(&rates).map(|m| m.0).unwrap_or(0.0);
            let mut row = Row::new(
                format!(
                    "leader_cast + broadcast to {followers} follower processes, {what} ({n} casts)"
                ),
                measured,
            );
            if let Some(raw) = rep.raw_pipe {
                if lost.is_none() {
                    row =
                        row.baseline(format!("{} (64 in flight)", fmt_rate(raw)), Some(med / raw));
                }
            }
            match (followers, mode) {
                (2, "paced") => {
                    row = row.reference("55–127 k casts/s, none lost").target(
                        "≥ 300 k/s",
                        Some(med >= 300_000.0 && anomalies == 0 && lost.is_none()),
                    )
                }
                (2, _) => {
                    row = row.reference("55–127 k casts/s, none lost").target(
                        "none lost (as gen_leader)",
                        Some(lost.is_none() && anomalies == 0),
                    )
                }
                _ => {
                    row = row.target("none lost", Some(lost.is_none() && anomalies == 0));
                }
            }
            rep.rows.push(row);
        }
        out.insert(format!("followers_{followers}"), Value::Object(modes));
    }
    rep.data.insert("broadcast".into(), Value::Object(out));
}
