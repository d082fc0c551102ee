//! Section `quorum`: quorum mode next to bully mode, measured in the same section with rounds
//! alternating, each figure beside the raw-TCP baseline of the same section: `leader_call`
//! from a follower process (sequential p50/p99, 64 concurrent callers), broadcast to 2
//! followers (paced and burst); then failover after SIGKILL and SIGSTOP of a quorum-mode
//! leader, against its bound `E` + one election.
//!
//! Why: the lease must cost calls and broadcasts nothing (the leader renews it with its
//! heartbeats; no call waits for a round trip because of it): goal within 1.1 × bully. And a
//! quorum-mode failover waits out the voters' promises (the lease `E`), where bully mode waits
//! only for the failure detection: the figure shows what that costs. The bully figures come
//! from a bully cluster of this section (not from the `calls` section), so that the ratio is
//! always from rounds that alternate on the same machine at the same time.

use std::time::Duration;

use gen_leader::config::DEFAULT_ELECTION_TIMEOUT;
use gen_leader::QuorumConfig;
use serde_json::{json, Value};

use crate::broadcast::{bcast_run, Bcast};
use crate::calls::{call_conc, call_seq, RawPair};
use crate::child::BCAST_WINDOW;
use crate::failover::{failover_rep, run_line, Fault};
use crate::procs::{Cluster, NodeMode};
use crate::report::{fmt_ms, fmt_ms_range, fmt_rate, fmt_us, Report, Row};
use crate::util::{env_u64, lat_summary, med_range};
use crate::{data_dirs_default, f, Params};

/// Broadcasts lost per follower, and why (from `Bcast::Lost`).
type Lost = (Vec<(String, u64)>, String);

/// The two modes, in the order of every `[_; 2]` below.
const MODES: [NodeMode; 2] = [NodeMode::Bully, NodeMode::Quorum];
/// The goal: quorum mode within this factor of bully mode.
const GOAL: f64 = 1.1;
/// Concurrent callers of the throughput figure.
const CALLERS: u64 = 64;

/// "One election" in the failover bound `E + one election`: a candidate's proposal waits at
/// most twice the election timeout for its grants (`src/election/engine/propose.rs`).
fn one_election() -> Duration {
    DEFAULT_ELECTION_TIMEOUT * 2
}

/// Round `r`'s order of the two modes (indices into `MODES`): bully first in even rounds,
/// quorum first in odd ones.
fn order(r: usize) -> [usize; 2] {
    if r % 2 == 0 {
        [0, 1]
    } else {
        [1, 0]
    }
}

/// A 3-process cluster in one mode, its leader and the follower that calls.
struct Side {
    cl: Cluster,
    leader: usize,
    follower: usize,
}

impl Side {
    fn start(mode: NodeMode) -> Side {
        let label = format!("quorum-section-{}", mode.name());
        let cl = Cluster::start_mode(3, &label, data_dirs_default(), mode);
        let (leader_name, _) = cl.agreed(&[0, 1, 2]).expect("agreed");
        let leader = cl.index_of(&leader_name);
        // The lowest-priority node: a follower whatever happens.
        let follower = (0..3).rev().find(|&i| i != leader).expect("a follower");
        Side {
            cl,
            leader,
            follower,
        }
    }
}

/// "Q; bully B → r ×" and r = Q / B.
fn versus(q: f64, b: f64, fmt: fn(f64) -> String) -> (String, f64) {
    let r = q / b;
    (format!("{}; bully {} → {r:.2} ×", fmt(q), fmt(b)), r)
}

pub(crate) fn sec_quorum(p: &Params, rep: &mut Report) {
    let mut raw = RawPair::start();
    let mut sides = MODES.map(Side::start);
    for (m, s) in sides.iter().enumerate() {
        println!(
            "[quorum] {} cluster: 3 node processes, leader {}, caller n{}; raw echo on port {}",
            MODES[m].name(),
            s.cl.names[s.leader],
            s.follower,
            raw.port
        );
    }
    let mut data = serde_json::Map::new();
    let raw_pipe = calls(p, rep, &mut raw, &mut sides, &mut data);
    broadcast(p, rep, raw_pipe, &mut sides, &mut data);
    drop(sides);
    drop(raw);
    failover(p, rep, &mut data);
    rep.data.insert("quorum".into(), Value::Object(data));
}

/// Sequential and 64-caller `leader_call` from a follower, rounds alternating raw, bully and
/// quorum. Returns the raw 64-in-flight echo rate (mean of the rounds).
fn calls(
    p: &Params,
    rep: &mut Report,
    raw: &mut RawPair,
    sides: &mut [Side; 2],
    data: &mut serde_json::Map<String, Value>,
) -> f64 {
    // At least two rounds, so that each mode goes first once; as many calls in all as `calls`.
    let rounds = p.seq_rounds.max(2);
    let n = env_u64("BENCH_SEQ_N")
        .unwrap_or(p.seq_n * p.seq_rounds as u64 / rounds as u64)
        .max(10);
    let seq_t = Duration::from_secs(60) + Duration::from_millis(n * 2);
    let conc_t = Duration::from_secs_f64(p.conc_secs * 3.0 + p.warm_secs * 3.0 + 60.0);

    let mut raw_s = Vec::new();
    let mut seq: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for r in 0..rounds {
        raw_s.extend(raw.pingpong(n, seq_t));
        for m in order(r) {
            let s = &mut sides[m];
            seq[m].extend(call_seq(
                &mut s.cl.procs[s.follower],
                n,
                seq_t,
                &format!(
                    "sequential leader_call from a follower, {} mode",
                    MODES[m].name()
                ),
            ));
        }
        println!("[quorum] sequential round {} of {rounds} done", r + 1);
    }
    let raw_seq = lat_summary(raw_s);
    let seq = seq.map(lat_summary);

    let mut pipes = Vec::new();
    let mut conc: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
    for r in 0..rounds {
        let pipe = raw.pipelined(CALLERS, p.conc_secs, conc_t);
        let mut line = format!(
            "[quorum] {CALLERS} in flight, round {}: raw {}",
            r + 1,
            fmt_rate(f(&pipe, "per_sec"))
        );
        pipes.push(pipe);
        for m in order(r) {
            let s = &mut sides[m];
            let v = call_conc(&mut s.cl.procs[s.follower], CALLERS, p, conc_t);
            line.push_str(&format!(
                "; {} {} (p50 {}, p99 {})",
                MODES[m].name(),
                fmt_rate(f(&v, "per_sec")),
                fmt_us(f(&v, "p50_us")),
                fmt_us(f(&v, "p99_us"))
            ));
            conc[m].push(v);
        }
        println!("{line}");
    }
    // Rates pooled over the rounds (calls / seconds); latencies: the median round's.
    let pooled = |runs: &[Value], calls: &str| {
        let n: f64 = runs.iter().map(|v| f(v, calls)).sum();
        let secs: f64 = runs.iter().map(|v| f(v, "secs")).sum();
        n / secs
    };
    let med = |runs: &[Value], k: &str| {
        let v: Vec<f64> = runs.iter().map(|v| f(v, k)).collect();
        med_range(&v).map_or(f64::NAN, |m| m.0)
    };
    let raw_pipe = med_range(&pipes.iter().map(|v| f(v, "per_sec")).collect::<Vec<_>>())
        .map_or(f64::NAN, |m| m.0);
    let rate = [pooled(&conc[0], "calls"), pooled(&conc[1], "calls")];

    data.insert(
        "calls".into(),
        json!({
            "rounds": rounds, "seq_calls_per_round": n,
            "raw_pingpong": raw_seq,
            "bully_follower_seq": seq[0], "quorum_follower_seq": seq[1],
            "raw_pipelined_64": pipes,
            "bully_follower_64": conc[0], "quorum_follower_64": conc[1],
        }),
    );

    for (what, k) in [("p50", "p50_us"), ("p99", "p99_us")] {
        let (b, q, raw_v) = (f(&seq[0], k), f(&seq[1], k), f(&raw_seq, k));
        let (measured, r) = versus(q, b, fmt_us);
        rep.rows.push(
            Row::new(
                format!(
                    "quorum mode: leader_call from a follower process, sequential {what} \
                     ({rounds} rounds alternating with bully)"
                ),
                measured,
            )
            .baseline(fmt_us(raw_v), Some(q / raw_v))
            .target(
                format!("≤ {GOAL} × bully = {}", fmt_us(GOAL * b)),
                Some(r <= GOAL),
            ),
        );
    }
    let (measured, r) = versus(rate[1], rate[0], fmt_rate);
    rep.rows.push(
        Row::new(
            format!(
                "quorum mode: leader_call throughput, {CALLERS} concurrent callers (p50 / p99)"
            ),
            format!(
                "{measured} ({} / {})",
                fmt_us(med(&conc[1], "p50_us")),
                fmt_us(med(&conc[1], "p99_us"))
            ),
        )
        .baseline(
            format!("{} ({CALLERS} in flight)", fmt_rate(raw_pipe)),
            Some(rate[1] / raw_pipe),
        )
        .target(
            format!("≥ bully / {GOAL} = {}", fmt_rate(rate[0] / GOAL)),
            Some(r * GOAL >= 1.0),
        ),
    );
    raw_pipe
}

/// Broadcast to 2 followers, paced and burst, runs alternating bully and quorum.
fn broadcast(
    p: &Params,
    rep: &mut Report,
    raw_pipe: f64,
    sides: &mut [Side; 2],
    data: &mut serde_json::Map<String, Value>,
) {
    let n = p.bcast_n2;
    let reps = p.bcast_reps.max(2);
    let mut out = serde_json::Map::new();
    for (how, window) in [("paced", BCAST_WINDOW), ("burst", 0)] {
        for (m, s) in sides.iter_mut().enumerate() {
            // Warm-up (connections, allocator).
            if let Bcast::Lost(l, why) = bcast_run(&mut s.cl, s.leader, n / 10, window) {
                println!(
                    "[quorum] {} warm-up lost broadcasts: {l:?} ({why})",
                    MODES[m].name()
                );
            }
        }
        let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut anomalies = [0u64; 2];
        let mut lost: [Option<Lost>; 2] = [None, None];
        for r in 0..reps {
            for m in order(r) {
                if lost[m].is_some() {
                    continue;
                }
                let s = &mut sides[m];
                let mode = MODES[m].name();
                match bcast_run(&mut s.cl, s.leader, n, window) {
                    Bcast::Delivered(rate, e, a) => {
                        println!(
                            "[quorum] broadcast to 2 followers, {how}, {mode}, run {}: {} ({} enqueued/s, {a} out of order)",
                            r + 1,
                            fmt_rate(rate),
                            fmt_rate(e)
                        );
                        rates[m].push(rate);
                        anomalies[m] += a;
                    }
                    Bcast::Lost(l, why) => {
                        println!(
                            "[quorum] broadcast to 2 followers, {how}, {mode}, run {}: follower dropped ({why}); lost {l:?}",
                            r + 1
                        );
                        lost[m] = Some((l, why));
                    }
                }
            }
        }
        let lost_json = |l: &Option<Lost>| {
            l.as_ref()
                .map(|(l, why)| json!({"per_follower": l, "reason": why}))
        };
        out.insert(
            how.to_string(),
            json!({
                "casts": n, "window": window,
                "bully_rates": rates[0], "quorum_rates": rates[1],
                "bully_anomalies": anomalies[0], "quorum_anomalies": anomalies[1],
                "bully_lost": lost_json(&lost[0]), "quorum_lost": lost_json(&lost[1]),
            }),
        );
        let med = rates.each_ref().map(|r| med_range(r).map(|m| m.0));
        let what = match how {
            "paced" => format!("window {BCAST_WINDOW}"),
            _ => "unpaced burst".to_string(),
        };
        let clean = |m: usize| lost[m].is_none() && anomalies[m] == 0;
        let mut measured = match (med[1], med[0]) {
            (Some(q), Some(b)) => versus(q, b, fmt_rate).0,
            _ => "—".to_string(),
        };
        for m in [1, 0] {
            if let Some((l, why)) = &lost[m] {
                let total: u64 = l.iter().map(|x| x.1).sum();
                measured.push_str(&format!(
                    "; {}: a follower was DROPPED ({why}), {total} broadcasts lost",
                    MODES[m].name()
                ));
            } else if anomalies[m] > 0 {
                measured.push_str(&format!(
                    "; {}: {} OUT OF ORDER",
                    MODES[m].name(),
                    anomalies[m]
                ));
            }
        }
        if clean(0) && clean(1) {
            measured.push_str("; in order, none lost");
        }
        let mut row = Row::new(
            format!(
                "quorum mode: leader_cast + broadcast to 2 follower processes, {what} \
                 ({reps} × {n} casts alternating with bully)"
            ),
            measured,
        );
        if let Some(q) = med[1] {
            row = row.baseline(
                format!("{} ({CALLERS} in flight)", fmt_rate(raw_pipe)),
                Some(q / raw_pipe),
            );
        }
        let met = match med {
            [Some(b), Some(q)] => Some(q * GOAL >= b && clean(1)),
            _ => Some(false),
        };
        let goal = med[0].map_or("—".to_string(), |b| fmt_rate(b / GOAL));
        rep.rows
            .push(row.target(format!("≥ bully / {GOAL} = {goal}, none lost"), met));
    }
    data.insert("broadcast_2".into(), Value::Object(out));
}

/// SIGKILL and SIGSTOP (then SIGCONT) of a quorum-mode leader: fresh clusters, as in
/// `failover.rs`.
fn failover(p: &Params, rep: &mut Report, data: &mut serde_json::Map<String, Value>) {
    let lease = QuorumConfig::default().get_lease();
    let bound = lease + one_election();
    let bound_ms = bound.as_secs_f64() * 1e3;
    let durable = data_dirs_default();
    let reps = p.quorum_fail_reps;
    let mut all = serde_json::Map::new();
    for (fault, name) in [(Fault::Kill, "SIGKILL"), (Fault::Stop, "SIGSTOP")] {
        let mut runs = Vec::new();
        for r in 0..reps {
            let v = failover_rep(fault, durable, NodeMode::Quorum, r);
            println!("[quorum] {name} run {}: {}", r + 1, run_line(&v));
            runs.push(v);
        }
        let col = |k: &str| -> Vec<f64> { runs.iter().filter_map(|v| v[k].as_f64()).collect() };
        let first = col("new_leader_first_view_ms");
        let call = col("first_call_ok_ms");
        let infl = col("call_in_flight_ended_ms");
        let max = |v: &[f64]| med_range(v).map_or(f64::NAN, |m| m.2);
        let target = format!(
            "≤ E + one election = {} (E {}, election 2 × {} ms)",
            fmt_ms(bound_ms),
            fmt_ms(lease.as_secs_f64() * 1e3),
            DEFAULT_ELECTION_TIMEOUT.as_millis()
        );
        let within = |v: &[f64]| Some(v.len() == reps && max(v) <= bound_ms);
        rep.rows.push(
            Row::new(
                format!(
                    "quorum mode: {name} leader → new leader (first survivor's view), {reps} runs"
                ),
                fmt_ms_range(&first),
            )
            .target(target.clone(), within(&first)),
        );
        rep.rows.push(
            Row::new(
                format!(
                    "quorum mode: {name} leader → first successful leader_call from a follower"
                ),
                fmt_ms_range(&call),
            )
            .target(target, within(&call)),
        );
        let leader_down = runs
            .iter()
            .filter(|v| v["call_in_flight_result"] == "LeaderDown")
            .count();
        rep.rows.push(Row::new(
            format!("quorum mode: {name} leader → call in flight at the leader fails"),
            format!("{leader_down}/{reps} LeaderDown, {}", fmt_ms_range(&infl)),
        ));
        if fault == Fault::Stop {
            let resumed = col("resume_one_leader_ms");
            rep.rows.push(
                Row::new(
                    "quorum mode: SIGCONT of the frozen leader → one leader",
                    format!(
                        "{}/{reps} converged, {}",
                        resumed.len(),
                        fmt_ms_range(&resumed)
                    ),
                )
                .target("always", Some(resumed.len() == reps)),
            );
        }
        all.insert(name.to_string(), json!(runs));
    }
    all.insert("lease_ms".into(), json!(lease.as_secs_f64() * 1e3));
    all.insert("bound_ms".into(), json!(bound_ms));
    data.insert("failover".into(), Value::Object(all));
}
