//! Section `failover`: SIGKILL and SIGSTOP (then SIGCONT) of the leader process of a
//! 3-process cluster; when the survivors see a new leader and when a call is served again.
//!
//! Why: failover time is what an application notices; a killed process closes its sockets
//! (fast path), a frozen one is only detected by the failure timeout.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{json, Value};

use crate::procs::{diagnose, try_wait_until, wait_until, Cluster, NodeMode, NEXT_TAG};
use crate::report::{fmt_ms, fmt_ms_range, Report, Row};
use crate::util::{ev, med_range, wall_ns};
use crate::{data_dirs_default, f, Params, T_EVENT};

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Fault {
    Kill,
    Stop,
    /// A graceful shutdown of the leader (the child's `quit` command: `LeaderHandle::shutdown`).
    /// Only the `etcd` section uses it.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    Quit,
}

/// One failover: a fresh 3-process cluster in `mode`, a probe on a follower, then the fault.
pub(crate) fn failover_rep(fault: Fault, durable: bool, mode: NodeMode, rep_no: usize) -> Value {
    let label = match fault {
        Fault::Kill => "kill",
        Fault::Stop => "stop",
        Fault::Quit => "quit",
    };
    let prefix = match mode {
        NodeMode::Bully => "",
        NodeMode::Quorum => "quorum-",
        NodeMode::Etcd => "etcd-",
    };
    let mut cl = Cluster::start_mode(3, &format!("{prefix}{label}{rep_no}"), durable, mode);
    let (old_name, old_term) = cl.agreed(&[0, 1, 2]).expect("agreed");
    let old = cl.index_of(&old_name);
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    // The highest-priority survivor should take over; probe from the other one.
    let prober = survivors[1];
    let marks: Vec<usize> = cl.procs.iter().map(|p| p.mark()).collect();
    let tag = NEXT_TAG.fetch_add(1, Ordering::SeqCst);
    cl.procs[prober].send(&json!({"cmd": "probe", "old": old_name, "tag": tag}));
    cl.procs[prober].wait(
        marks[prober],
        T_EVENT,
        "the probe to hold a call at the leader",
        |v| ev(v) == "probe_started" || (ev(v) == "error" && v["tag"] == tag),
    );
    let t0 = wall_ns();
    match fault {
        Fault::Kill => cl.procs[old].kill9(),
        Fault::Stop => cl.procs[old].signal("STOP"),
        Fault::Quit => cl.procs[old].send(&json!({"cmd": "quit"})),
    }
    let procs = cl.procs_ref();
    let first_new_view = |i: usize| {
        cl.procs[i].find(marks[i], |v| {
            ev(v) == "view"
                && v["ts"].as_u64().unwrap_or(0) > t0
                && v["leader"].as_str().is_some_and(|l| l != old_name)
        })
    };
    let views = wait_until(T_EVENT, "the survivors to see a new leader", &procs, || {
        survivors
            .iter()
            .map(|&i| first_new_view(i))
            .collect::<Option<Vec<_>>>()
    });
    let ms = |ts: u64| ts.saturating_sub(t0) as f64 / 1e6;
    let view_ms: Vec<f64> = views
        .iter()
        .map(|v| ms(v["ts"].as_u64().unwrap_or(0)))
        .collect();
    let new_leader = views[0]["leader"].as_str().unwrap_or("").to_string();
    let ok = wait_until(
        T_EVENT,
        "the first call answered by the new leader",
        &procs,
        || {
            cl.procs[prober].find(marks[prober], |v| {
                v["tag"] == tag && matches!(ev(v), "probe_ok" | "error")
            })
        },
    );
    if ev(&ok) == "error" {
        panic!("probe failed: {}\n{}", ok["error"], diagnose(&procs));
    }
    let hold = wait_until(T_EVENT, "the call in flight to end", &procs, || {
        cl.procs[prober].find(marks[prober], |v| ev(v) == "hold_done" && v["tag"] == tag)
    });
    // Every view change after the fault, for the record.
    let timeline: Vec<Value> = (0..3)
        .flat_map(|i| {
            cl.procs[i]
                .events()
                .into_iter()
                .map(|e| e.v)
                .skip(marks[i])
                .filter(|v| ev(v) == "view" && v["ts"].as_u64().unwrap_or(0) > t0)
                .map(|v| {
                    json!({
                        "node": i, "ms": ms(v["ts"].as_u64().unwrap_or(0)),
                        "leader": v["leader"], "term": v["term"], "role": v["role"],
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut out = json!({
        "timeline": timeline,
        "old_leader": old_name, "old_term": old_term, "new_leader": new_leader,
        "new_leader_first_view_ms": view_ms.iter().copied().fold(f64::INFINITY, f64::min),
        "new_leader_all_survivors_ms": view_ms.iter().copied().fold(0.0, f64::max),
        "first_call_ok_ms": ms(ok["ts"].as_u64().unwrap_or(0)),
        "first_call_answered_by": ok["who"],
        "probe_errors": ok["errors"],
        "call_in_flight_result": hold["result"],
        "call_in_flight_detail": hold["detail"],
        "call_in_flight_ended_ms": ms(hold["ts"].as_u64().unwrap_or(0)),
    });
    drop(procs);
    if fault == Fault::Stop {
        // Resume the frozen leader: how long until the three agree on one leader again?
        let t_cont = wall_ns();
        cl.procs[old].signal("CONT");
        let agreed = try_wait_until(Duration::from_secs(10), || {
            let (l, t) = cl.agreed(&[0, 1, 2])?;
            let last = (0..3)
                .filter_map(|i| cl.procs[i].view().map(|v| v.2))
                .max()
                .unwrap_or(0);
            // The resumed node must have reported since it resumed (its old view said it led).
            let resumed_view = cl.procs[old].view()?;
            (resumed_view.2 > t_cont || l == old_name).then_some((l, t, last))
        });
        out["resume_timeline"] = json!((0..3)
            .flat_map(|i| {
                cl.procs[i]
                    .events()
                    .into_iter()
                    .map(|e| e.v)
                    .filter(|v| ev(v) == "view" && v["ts"].as_u64().unwrap_or(0) > t_cont)
                    .map(|v| {
                        json!({
                            "node": i,
                            "ms": v["ts"].as_u64().unwrap_or(0).saturating_sub(t_cont) as f64 / 1e6,
                            "leader": v["leader"], "term": v["term"], "role": v["role"],
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>());
        match agreed {
            Some((l, t, last)) => {
                out["resume_one_leader_ms"] = json!(last.saturating_sub(t_cont) as f64 / 1e6);
                out["resume_leader"] = json!(l);
                out["resume_term"] = json!(t);
            }
            None => {
                out["resume_one_leader_ms"] = Value::Null;
                out["resume_views"] = json!((0..3)
                    .map(|i| format!("{:?}", cl.procs[i].view()))
                    .collect::<Vec<_>>());
            }
        }
    }
    out
}

/// One run's figures, for the progress lines.
pub(crate) fn run_line(v: &Value) -> String {
    format!(
        "new leader {} after {}, first call after {}, call in flight: {} after {}{}",
        v["new_leader"].as_str().unwrap_or("?"),
        fmt_ms(f(v, "new_leader_first_view_ms")),
        fmt_ms(f(v, "first_call_ok_ms")),
        v["call_in_flight_result"].as_str().unwrap_or("?"),
        fmt_ms(f(v, "call_in_flight_ended_ms")),
        match v.get("resume_one_leader_ms") {
            Some(Value::Null) => ", resumed: NO single leader within 10 s".to_string(),
            Some(x) => format!(
                ", resumed: one leader after {}",
                fmt_ms(x.as_f64().unwrap_or(f64::NAN))
            ),
            None => String::new(),
        }
    )
}

pub(crate) fn sec_failover(p: &Params, rep: &mut Report) {
    let mut all = serde_json::Map::new();
    // SIGKILL with durable terms (a data directory: each promise fsyncs the term) and with
    // terms in memory (no data directory, the library's default); SIGSTOP is dominated by
    // the failure timeout, durable only. `BENCH_DATA_DIRS=0` makes every run memory-only.
    let durable = data_dirs_default();
    let mut variants = vec![(Fault::Kill, durable), (Fault::Stop, durable)];
    if durable {
        variants.insert(1, (Fault::Kill, false));
    }
    for (fault, durable) in variants {
        let name = match (fault, durable) {
            (Fault::Kill, true) => "SIGKILL",
            (Fault::Kill, false) => "SIGKILL, no data dir",
            (Fault::Stop, _) => "SIGSTOP",
            // Not one of this section's variants (the `etcd` section's).
            (Fault::Quit, _) => "graceful shutdown",
        };
        let dd = if durable {
            "data dir (durable terms)"
        } else {
            "no data dir (terms in memory)"
        };
        let mut runs = Vec::new();
        for r in 0..p.fail_reps {
            let v = failover_rep(fault, durable, NodeMode::Bully, r);
            println!("[failover] {name} run {}: {}", r + 1, run_line(&v));
            runs.push(v);
        }
        let col = |k: &str| -> Vec<f64> { runs.iter().filter_map(|v| v[k].as_f64()).collect() };
        let first = col("new_leader_first_view_ms");
        let allv = col("new_leader_all_survivors_ms");
        let call = col("first_call_ok_ms");
        let infl = col("call_in_flight_ended_ms");
        let leader_down = runs
            .iter()
            .filter(|v| v["call_in_flight_result"] == "LeaderDown")
            .count();
        let reps = runs.len();
        match fault {
            Fault::Kill => {
                let med = med_range(&first).map(|m| m.0).unwrap_or(f64::NAN);
                rep.rows.push(
                    Row::new(
                        format!(
                            "SIGKILL leader → new leader (first survivor's view), {dd}, {reps} runs"
                        ),
                        fmt_ms_range(&first),
                    )
                    .reference("7.1–7.5 ms (5.4–12.2)")
                    .target("≤ 7 ms median", Some(med <= 7.0)),
                );
                rep.rows.push(Row::new(
                    format!("SIGKILL leader → both survivors agree, {dd}"),
                    fmt_ms_range(&allv),
                ));
                rep.rows.push(
                    Row::new(
                        format!(
                            "SIGKILL leader → first successful leader_call from a follower, {dd}"
                        ),
                        fmt_ms_range(&call),
                    )
                    .reference("a call in flight hangs 10 s"),
                );
                let infl_med = med_range(&infl).map(|m| m.0).unwrap_or(f64::NAN);
                rep.rows.push(
                    Row::new(
                        format!("SIGKILL leader → call in flight at the leader fails, {dd}"),
                        format!("{leader_down}/{reps} LeaderDown, {}", fmt_ms_range(&infl)),
                    )
                    .reference("hangs until its timeout (10 s), 6 of 6")
                    .target(
                        "fails at once with LeaderDown",
                        Some(leader_down == reps && infl_med <= 50.0),
                    ),
                );
            }
            Fault::Stop => {
                let max = med_range(&first).map(|m| m.2).unwrap_or(f64::NAN);
                let med = med_range(&first).map(|m| m.0).unwrap_or(f64::NAN);
                rep.rows.push(
                    Row::new(
                        format!(
                            "SIGSTOP leader → new leader (first survivor's view), {dd}, {reps} runs"
                        ),
                        fmt_ms_range(&first),
                    )
                    .reference("73–87 s (default net_ticktime)")
                    .target(
                        "≤ 1 s, default settings",
                        Some(med <= 1000.0 && max <= 1000.0),
                    ),
                );
                rep.rows.push(Row::new(
                    "SIGSTOP leader → first successful leader_call from a follower",
                    fmt_ms_range(&call),
                ));
                rep.rows.push(Row::new(
                    "SIGSTOP leader → call in flight at the leader fails",
                    format!("{leader_down}/{reps} LeaderDown, {}", fmt_ms_range(&infl)),
                ));
                let resumed = col("resume_one_leader_ms");
                let hb = 100.0;
                let max_r = med_range(&resumed).map(|m| m.2).unwrap_or(f64::NAN);
                rep.rows.push(
                    Row::new(
                        "SIGCONT of the frozen leader → one leader",
                        format!(
                            "{}/{reps} converged, {}",
                            resumed.len(),
                            fmt_ms_range(&resumed)
                        ),
                    )
                    .reference("never (14 of 14 kept two)")
                    .target(
                        "always, within 1 heartbeat round (100 ms)",
                        Some(resumed.len() == reps && max_r <= hb),
                    ),
                );
            }
            Fault::Quit => {}
        }
        all.insert(name.to_string(), json!(runs));
    }
    rep.data.insert("failover".into(), Value::Object(all));
}
