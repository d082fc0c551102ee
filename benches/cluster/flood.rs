//! Section `flood`: failover and rejoin of a 3-process cluster while every node's port is
//! flooded with idle connections and garbage, next to the same without the flood.
//!
//! Why: the cluster port is reachable by anyone who can reach the host. A flood of
//! unauthenticated connections must not delay a failover or a restarted node's rejoin (goal:
//! within 2 × the no-flood figures plus one heartbeat), must not split the cluster, and must
//! not make a node's memory grow without bound.
//!
//! One run: a fresh cluster; with the flood, a flooder thread in this process (testkit's
//! [`Flood`], its own tokio runtime) keeps `idle` connections open to every node, reopening each as soon as the node
//! closes it, plus [`GARBAGE`] connections per node that send bytes that are no handshake;
//! then the leader is SIGKILLed (failover: until a survivor's view names a new leader), a new
//! process is started under its name, on its port, with its data directory (rejoin: until all
//! three report the same leader and term), calls are served from every node, and the views
//! are watched for one more second (two leaders at once would be a split). RSS: the nodes'
//! peak (`VmHWM`) at the end. The flooder needs one descriptor per connection: the flood is
//! sized to the open-files limit (the report says when it had to shrink).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{open_files_limit, Flood};

use crate::procs::{wait_until, Cluster};
use crate::report::{fmt_ms, fmt_ms_range, Report, Row};
use crate::util::{ev, med_range, wall_ns};
use crate::{f, Params, T_EVENT};

/// Connections per node that send garbage, close, and start again.
const GARBAGE: usize = 4;
/// The nodes' heartbeat (the default), for the goal.
const HEARTBEAT_MS: f64 = 100.0;

/// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One run (see the module doc); `idle == 0`: no flood.
fn flood_rep(idle: usize, rep_no: usize) -> Value {
    let label = if idle > 0 { "flood" } else { "noflood" };
    let mut cl = Cluster::start(3, &format!("{label}{rep_no}"));
    let (old_name, _) = cl.agreed(&[0, 1, 2]).expect("agreed");
    let old = cl.index_of(&old_name);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let addrs: Vec<String> = cl
        .names
        .iter()
        .map(|n| n.split_once('@').map(|x| x.1).unwrap_or("").to_string())
        .collect();
    let flood =
        (idle > 0).then(|| Flood::start(addrs, idle, GARBAGE).expect("the flooder's runtime"));
    let mut ramp = Vec::new();
    if let Some(fl) = &flood {
        let until = Instant::now() + Duration::from_secs(3);
        while fl.opened().iter().any(|&o| o < idle as u64) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(500));
        ramp = fl.opened();
    }

    // Failover.
    let marks: Vec<usize> = cl.procs.iter().map(|p| p.mark()).collect();
    let t0 = wall_ns();
    cl.procs[old].kill9();
    let view = {
        let procs = cl.procs_ref();
        wait_until(T_EVENT, "a survivor to see a new leader", &procs, || {
            survivors.iter().find_map(|&i| {
                cl.procs[i].find(marks[i], |v| {
                    ev(v) == "view"
                        && v["ts"].as_u64().unwrap_or(0) > t0
                        && v["leader"].as_str().is_some_and(|l| l != old_name)
                })
            })
        })
    };
    let failover_ms = view["ts"].as_u64().unwrap_or(0).saturating_sub(t0) as f64 / 1e6;
    let survivors_agree = {
        let procs = cl.procs_ref();
        wait_until(T_EVENT, "the survivors to agree", &procs, || {
            cl.agreed(&survivors)
        })
    };

    // Restart under the same name, on the same port.
    let t1 = cl.restart(old, label);
    let procs_agree = || -> Option<(String, u64)> {
        let (l, t) = cl.agreed(&[0, 1, 2])?;
        // The restarted node must have reported since it started.
        let (_, _, ts) = cl.procs[old].view()?;
        (ts > t1).then_some((l, t))
    };
    let (leader, term) = {
        let procs = cl.procs_ref();
        wait_until(T_EVENT, "the restarted node to rejoin", &procs, procs_agree)
    };
    let rejoin_ms = (0..3)
        .filter_map(|i| cl.procs[i].view().map(|v| v.2))
        .max()
        .unwrap_or(0)
        .saturating_sub(t1) as f64
        / 1e6;
    let settled = wall_ns();

    // Calls served from every node.
    let mut calls = Vec::new();
    for i in 0..3 {
        let r = cl.procs[i].request(
            json!({"cmd": "call_seq", "n": 100, "warm": 0}),
            T_EVENT,
            "100 calls under the flood",
        );
        calls.push(med_range(
            &crate::samples(&r)
                .iter()
                .map(|&ns| ns as f64 / 1e3)
                .collect::<Vec<_>>(),
        ));
    }
    std::thread::sleep(Duration::from_secs(1));
    // After settling, every view event must name the same leader and term.
    let mut split = Vec::new();
    for i in 0..3 {
        for e in cl.procs[i].events() {
            let v = e.v;
            if ev(&v) == "view"
                && v["ts"].as_u64().unwrap_or(0) > settled
                && (v["leader"].as_str() != Some(leader.as_str()) || v["term"] != term)
            {
                split.push(json!({"node": i, "view": v}));
            }
        }
    }
    let last_agree = cl.agreed(&[0, 1, 2]);
    let rss: Vec<Option<u64>> = cl
        .procs
        .iter()
        .map(|p| status_kib(p.pid(), "VmRSS:"))
        .collect();
    let hwm: Vec<Option<u64>> = cl
        .procs
        .iter()
        .map(|p| status_kib(p.pid(), "VmHWM:"))
        .collect();
    let opened = flood.as_ref().map(Flood::opened);
    drop(flood);
    json!({
        "idle_per_node": idle, "garbage_per_node": if idle > 0 { GARBAGE } else { 0 },
        "ramp_opened": ramp, "opened": opened,
        "old_leader": old_name, "failover_ms": failover_ms,
        "survivors_leader": survivors_agree.0, "rejoin_ms": rejoin_ms,
        "leader_after_rejoin": leader, "term_after_rejoin": term,
        "call_us_median_per_node": calls.iter().map(|c| c.map(|m| m.0)).collect::<Vec<_>>(),
        "split_views_after_settling": split,
        "one_leader_at_end": last_agree.is_some_and(|(l, t)| l == leader && t == term),
        "rss_kib": rss, "peak_rss_kib": hwm,
    })
}

pub(crate) fn sec_flood(p: &Params, rep: &mut Report) {
    // Descriptors: the flooder holds `idle` per node; the nodes hold a few hundred each.
    let mut idle = crate::util::env_u64("BENCH_FLOOD_IDLE").map_or(p.flood_idle, |n| n as usize);
    if let Some(l) = open_files_limit() {
        let fit = (l / 3).saturating_sub(400);
        if fit < idle {
            println!("[flood] open files limit {l}: {fit} idle connections per node, not {idle}");
            idle = fit;
        }
    }
    let mut all = serde_json::Map::new();
    let col = |runs: &[Value], k: &str| -> Vec<f64> {
        runs.iter().filter_map(|v| v[k].as_f64()).collect()
    };
    let mut results = Vec::new();
    for (name, n) in [("no flood", 0), ("flood", idle)] {
        let mut runs = Vec::new();
        let reps = crate::util::env_u64("BENCH_FLOOD_REPS").map_or(p.flood_reps, |n| n as usize);
        for r in 0..reps {
            let v = flood_rep(n, r);
            println!(
                "[flood] {name} run {}: failover {}, rejoin {}, split views {}, peak RSS {} KiB",
                r + 1,
                fmt_ms(f(&v, "failover_ms")),
                fmt_ms(f(&v, "rejoin_ms")),
                v["split_views_after_settling"]
                    .as_array()
                    .map_or(0, Vec::len),
                v["peak_rss_kib"]
            );
            runs.push(v);
        }
        let fo = col(&runs, "failover_ms");
        let rj = col(&runs, "rejoin_ms");
        let splits: usize = runs
            .iter()
            .map(|v| {
                v["split_views_after_settling"]
                    .as_array()
                    .map_or(0, Vec::len)
                    + usize::from(v["one_leader_at_end"] != true)
            })
            .sum();
        let peak = runs
            .iter()
            .flat_map(|v| v["peak_rss_kib"].as_array().cloned().unwrap_or_default())
            .filter_map(|x| x.as_u64())
            .max()
            .map_or(f64::NAN, |k| k as f64 / 1024.0);
        results.push((name, fo, rj, splits, peak, runs.len()));
        all.insert(name.to_string(), json!(runs));
    }
    let max = |v: &[f64]| med_range(v).map_or(f64::NAN, |m| m.2);
    let med = |v: &[f64]| med_range(v).map_or(f64::NAN, |m| m.0);
    let (_, fo0, rj0, _, peak0, _) = &results[0];
    let (_, fo1, rj1, splits1, peak1, reps) = &results[1];
    let goal = |base: f64| 2.0 * base + HEARTBEAT_MS;
    rep.rows.push(
        Row::new(
            format!(
                "SIGKILL leader → new leader, {idle} idle + {GARBAGE} garbage conns per node, {reps} runs"
            ),
            fmt_ms_range(fo1),
        )
        .reference(format!("no flood: {}", fmt_ms_range(fo0)))
        .target(
            "≤ 2 × no flood (median) + 1 heartbeat",
            Some(max(fo1) <= goal(med(fo0))),
        ),
    );
    rep.rows.push(
        Row::new(
            "restarted node (same name and port) → all three agree, under the flood",
            fmt_ms_range(rj1),
        )
        .reference(format!("no flood: {}", fmt_ms_range(rj0)))
        .target(
            "≤ 2 × no flood (median) + 1 heartbeat",
            Some(max(rj1) <= goal(med(rj0))),
        ),
    );
    rep.rows.push(
        Row::new(
            "under the flood: views naming another leader or term after settling",
            format!("{splits1}"),
        )
        .target("0 (never two leaders)", Some(*splits1 == 0)),
    );
    rep.rows.push(
        Row::new(
            "node peak RSS (VmHWM), flood / no flood",
            format!("{peak1:.1} MiB / {peak0:.1} MiB"),
        )
        .target(
            "bounded (≤ 2 × no flood + 8 MiB)",
            Some(*peak1 <= 2.0 * peak0 + 8.0),
        ),
    );
    all.insert("idle_per_node".into(), json!(idle));
    rep.data.insert("flood".into(), Value::Object(all));
}
