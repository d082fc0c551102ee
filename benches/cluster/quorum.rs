//! Section `quorum`: quorum mode next to bully mode, measured in the same section, each
//! figure beside the raw-TCP baseline of the same section: `leader_call` from a follower
//! process (sequential p50/p99, 64 concurrent callers) and broadcast to 2 followers (paced and
//! burst); then failover after SIGKILL and SIGSTOP of a quorum-mode leader, against its bound
//! `E` + one election.
//!
//! Why: the lease must cost calls and broadcasts nothing (the leader renews it with its
//! heartbeats; no call waits for a round trip because of it): goal within 1.1 × bully. And a
//! quorum-mode failover waits out the voters' promises (the lease `E`), where bully mode waits
//! only for the failure detection: the figure shows what that costs.
//!
//! How: the bully figures come from this section, not from `calls`, so that the ratio is
//! always from the same minutes. Each round starts a fresh raw pair and a fresh cluster of
//! each mode and measures them alternately (bully first in even rounds, quorum first in odd
//! ones); the figures pool the rounds. Fresh clusters per round because two clusters of the
//! *same* mode can differ by 20–30 % for their whole life (where their tasks and threads
//! landed), which one pair of long-lived clusters would report as a difference between the
//! modes. `BENCH_QUORUM_AA=1` runs the section with two bully clusters: the noise floor.

use std::time::Duration;

use gen_leader::config::DEFAULT_ELECTION_TIMEOUT;
use gen_leader::QuorumConfig;
use serde_json::{json, Value};

use crate::behaviour::BCAST_WINDOW;
use crate::broadcast::{bcast_run, Bcast};
use crate::calls::{call_conc, call_seq, RawPair};
use crate::failover::{failover_rep, run_line, Fault};
use crate::procs::{Cluster, NodeMode};
use crate::report::{fmt_ms, fmt_ms_range, fmt_rate, fmt_us, Report, Row};
use crate::util::{env_u64, lat_summary, med_range};
use crate::{data_dirs_default, f, Params};

/// Broadcasts lost per follower, and why (from `Bcast::Lost`).
type Lost = (Vec<(String, u64)>, String);

/// The goal: quorum mode within this factor of bully mode.
const GOAL: f64 = 1.1;
/// Concurrent callers of the throughput figure.
const CALLERS: u64 = 64;

/// "One election" in the failover bound `E + one election`: a candidate's proposal waits at
/// most twice the election timeout for its grants (`src/election/engine/propose.rs`).
fn one_election() -> Duration {
    DEFAULT_ELECTION_TIMEOUT * 2
}

/// Round `r`'s order of the two sides: bully first in even rounds, quorum first in odd ones.
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
    fn start(mode: NodeMode, label: &str) -> Side {
        let cl = Cluster::start_mode(3, label, data_dirs_default(), mode);
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

/// One broadcast kind's runs in one mode.
#[derive(Default)]
struct Casts {
    rates: Vec<f64>,
    anomalies: u64,
    /// Set when a run lost broadcasts (a follower was dropped); no more runs then.
    lost: Option<Lost>,
}

/// What the rounds gathered; `[_; 2]` are per side (index into `Sides::modes`).
#[derive(Default)]
struct Acc {
    raw_seq: Vec<u64>,
    seq: [Vec<u64>; 2],
    pipes: Vec<Value>,
    conc: [Vec<Value>; 2],
    /// Per broadcast kind (`KINDS`), per side.
    casts: [[Casts; 2]; 2],
}

/// The broadcast kinds: name and window (0: unpaced).
const KINDS: [(&str, u64); 2] = [("paced", BCAST_WINDOW), ("burst", 0)];

/// The two sides compared: bully and quorum, or (`BENCH_QUORUM_AA=1`, a control that shows
/// how far two clusters of the *same* mode differ) two bully clusters; the `etcd` section
/// compares bully and etcd with the same rounds ([`compare`]).
pub(crate) struct Sides {
    pub(crate) modes: [NodeMode; 2],
    pub(crate) names: [&'static str; 2],
    /// The rows' prefix.
    pub(crate) title: &'static str,
    /// The section, in progress lines and cluster labels.
    pub(crate) section: &'static str,
}

/// "Q; bully B → r ×" and r = Q / B.
fn versus(names: &[&str; 2], q: f64, b: f64, fmt: fn(f64) -> String) -> (String, f64) {
    let r = q / b;
    (format!("{}; {} {} → {r:.2} ×", fmt(q), names[0], fmt(b)), r)
}

pub(crate) fn sec_quorum(p: &Params, rep: &mut Report) {
    let sides = if std::env::var("BENCH_QUORUM_AA").is_ok_and(|v| v == "1") {
        Sides {
            modes: [NodeMode::Bully, NodeMode::Bully],
            names: ["bully A", "bully B"],
            title: "A/A control (bully B vs bully A)",
            section: "quorum",
        }
    } else {
        Sides {
            modes: [NodeMode::Bully, NodeMode::Quorum],
            names: ["bully", "quorum"],
            title: "quorum mode",
            section: "quorum",
        }
    };
    let data = compare(p, rep, &sides, p.quorum_rounds);
    // In the report already if a failover run fails.
    rep.data.insert("quorum".into(), Value::Object(data));
    if sides.modes[1] == NodeMode::Quorum {
        let f = failover(p, rep);
        if let Some(Value::Object(d)) = rep.data.get_mut("quorum") {
            d.insert("failover".into(), f);
        }
    } else {
        rep.notes.push(
            "BENCH_QUORUM_AA=1: the quorum section compared two bully clusters (a control); \
             no quorum-mode failover ran"
                .into(),
        );
    }
}

/// `rounds` rounds comparing the two sides (calls and broadcasts, see the module docs): the
/// rows go into `rep`, the data is returned.
pub(crate) fn compare(
    p: &Params,
    rep: &mut Report,
    sides: &Sides,
    rounds: usize,
) -> serde_json::Map<String, Value> {
    let mut acc = Acc::default();
    for r in 0..rounds {
        round(p, r, rounds, sides, &mut acc);
    }
    let mut data = serde_json::Map::new();
    rows(p, rep, sides, &acc, &mut data, rounds);
    data
}

/// One round: a fresh raw pair and a fresh cluster of each side, then, alternating the
/// sides: sequential calls, 64 callers, paced and burst broadcasts.
fn round(p: &Params, r: usize, rounds: usize, sides: &Sides, acc: &mut Acc) {
    let o = order(r);
    let names = &sides.names;
    let mut raw = RawPair::start();
    let mut started: [Option<Side>; 2] = [None, None];
    for m in o {
        let label = format!("{}-r{r}-{}", sides.section, names[m].replace(' ', "-"));
        started[m] = Some(Side::start(sides.modes[m], &label));
    }
    let mut cl = started.map(|s| s.expect("both sides started"));
    let round = format!("[{}] round {} of {rounds}", sides.section, r + 1);

    // Sequential.
    let n = env_u64("BENCH_SEQ_N").unwrap_or(p.quorum_seq_n).max(10);
    let seq_t = Duration::from_secs(60) + Duration::from_millis(n * 2);
    let v = raw.pingpong(n, seq_t);
    let mut line = format!(
        "{round}: sequential p50: raw {}",
        fmt_us(f(&lat_summary(v.clone()), "p50_us"))
    );
    acc.raw_seq.extend(v);
    for m in o {
        let s = &mut cl[m];
        let v = call_seq(
            &mut s.cl.procs[s.follower],
            n,
            seq_t,
            &format!("sequential leader_call from a follower, {}", names[m]),
        );
        let p50 = f(&lat_summary(v.clone()), "p50_us");
        line.push_str(&format!("; {} {}", names[m], fmt_us(p50)));
        acc.seq[m].extend(v);
    }
    println!("{line}");

    // 64 callers.
    let secs = (p.quorum_conc_secs, p.warm_secs);
    let conc_t = Duration::from_secs_f64(secs.0 + secs.1 + 60.0);
    let pipe = raw.pipelined(CALLERS, secs.0, conc_t);
    let mut line = format!(
        "{round}: {CALLERS} in flight: raw {}",
        fmt_rate(f(&pipe, "per_sec"))
    );
    acc.pipes.push(pipe);
    for m in o {
        let s = &mut cl[m];
        let v = call_conc(&mut s.cl.procs[s.follower], CALLERS, secs, conc_t);
        line.push_str(&format!(
            "; {} {} (p50 {}, p99 {})",
            names[m],
            fmt_rate(f(&v, "per_sec")),
            fmt_us(f(&v, "p50_us")),
            fmt_us(f(&v, "p99_us"))
        ));
        acc.conc[m].push(v);
    }
    println!("{line}");

    // Broadcast to the 2 followers.
    let n = p.quorum_bcast_n;
    for (k, (how, window)) in KINDS.into_iter().enumerate() {
        let mut line = format!("{round}: broadcast to 2 followers, {how}, {n} casts");
        for m in o {
            let c = &mut acc.casts[k][m];
            if c.lost.is_some() {
                continue;
            }
            let s = &mut cl[m];
            // Warm-up (connections, allocator).
            if let Bcast::Lost(l, why) = bcast_run(&mut s.cl, s.leader, n / 10, window) {
                line.push_str(&format!("; {} warm-up lost {l:?} ({why})", names[m]));
            }
            match bcast_run(&mut s.cl, s.leader, n, window) {
                Bcast::Delivered(rate, _, a) => {
                    line.push_str(&format!(
                        "; {} {} ({a} out of order)",
                        names[m],
                        fmt_rate(rate)
                    ));
                    c.rates.push(rate);
                    c.anomalies += a;
                }
                Bcast::Lost(l, why) => {
                    line.push_str(&format!(
                        "; {}: follower dropped ({why}), lost {l:?}",
                        names[m]
                    ));
                    c.lost = Some((l, why));
                }
            }
        }
        println!("{line}");
    }
}

/// The rows (and the JSON data) from what the rounds gathered.
fn rows(
    p: &Params,
    rep: &mut Report,
    sides: &Sides,
    acc: &Acc,
    data: &mut serde_json::Map<String, Value>,
    rounds: usize,
) {
    let (names, title) = (&sides.names, sides.title);
    let raw_seq = lat_summary(acc.raw_seq.clone());
    let seq = acc.seq.clone().map(lat_summary);
    // Rates pooled over the rounds (calls / seconds); latencies: the median round's.
    let pooled = |runs: &[Value]| {
        let n: f64 = runs.iter().map(|v| f(v, "calls")).sum();
        let secs: f64 = runs.iter().map(|v| f(v, "secs")).sum();
        n / secs
    };
    let med = |v: &[f64]| med_range(v).map_or(f64::NAN, |m| m.0);
    let med_of = |runs: &[Value], k: &str| med(&runs.iter().map(|v| f(v, k)).collect::<Vec<_>>());
    let raw_pipe = med_of(&acc.pipes, "per_sec");
    let rate = [pooled(&acc.conc[0]), pooled(&acc.conc[1])];

    let casts: Vec<Value> = KINDS
        .iter()
        .zip(&acc.casts)
        .map(|((how, window), c)| {
            let one = |c: &Casts| {
                json!({
                    "rates": c.rates, "anomalies": c.anomalies,
                    "lost": c.lost.as_ref().map(|(l, why)| json!({"per_follower": l, "reason": why})),
                })
            };
            json!({"kind": how, "window": window, names[0]: one(&c[0]), names[1]: one(&c[1])})
        })
        .collect();
    data.insert(
        "compared".into(),
        json!({
            "sides": names, "rounds": rounds,
            "seq_calls_per_round": p.quorum_seq_n, "secs_per_round_64": p.quorum_conc_secs,
            "casts_per_round": p.quorum_bcast_n,
            "raw_pingpong": raw_seq,
            "follower_seq": {names[0]: seq[0], names[1]: seq[1]},
            "raw_pipelined_64": acc.pipes,
            "follower_64": {names[0]: acc.conc[0], names[1]: acc.conc[1]},
            "broadcast_2": casts,
        }),
    );

    let how = format!(
        "{rounds} rounds, fresh clusters, alternating with {}",
        names[0]
    );
    for (what, k) in [("p50", "p50_us"), ("p99", "p99_us")] {
        let (b, q, raw_v) = (f(&seq[0], k), f(&seq[1], k), f(&raw_seq, k));
        let (measured, r) = versus(names, q, b, fmt_us);
        rep.rows.push(
            Row::new(
                format!("{title}: leader_call from a follower process, sequential {what} ({how})"),
                measured,
            )
            .baseline(fmt_us(raw_v), Some(q / raw_v))
            .target(
                format!("≤ {GOAL} × {} = {}", names[0], fmt_us(GOAL * b)),
                Some(r <= GOAL),
            ),
        );
    }
    let (measured, r) = versus(names, rate[1], rate[0], fmt_rate);
    rep.rows.push(
        Row::new(
            format!("{title}: leader_call throughput, {CALLERS} concurrent callers (p50 / p99)"),
            format!(
                "{measured} ({} / {})",
                fmt_us(med_of(&acc.conc[1], "p50_us")),
                fmt_us(med_of(&acc.conc[1], "p99_us"))
            ),
        )
        .baseline(
            format!("{} ({CALLERS} in flight)", fmt_rate(raw_pipe)),
            Some(rate[1] / raw_pipe),
        )
        .target(
            format!("≥ {} / {GOAL} = {}", names[0], fmt_rate(rate[0] / GOAL)),
            Some(r * GOAL >= 1.0),
        ),
    );

    for ((kind, _), c) in KINDS.iter().zip(&acc.casts) {
        let what = match *kind {
            "paced" => format!("window {BCAST_WINDOW}"),
            _ => "unpaced burst".to_string(),
        };
        let m = [med(&c[0].rates), med(&c[1].rates)];
        let clean = |c: &Casts| c.lost.is_none() && c.anomalies == 0;
        let mut measured = versus(names, m[1], m[0], fmt_rate).0;
        for i in [1, 0] {
            if let Some((l, why)) = &c[i].lost {
                let total: u64 = l.iter().map(|x| x.1).sum();
                measured.push_str(&format!(
                    "; {}: a follower was DROPPED ({why}), {total} broadcasts lost",
                    names[i]
                ));
            } else if c[i].anomalies > 0 {
                measured.push_str(&format!("; {}: {} OUT OF ORDER", names[i], c[i].anomalies));
            }
        }
        if clean(&c[0]) && clean(&c[1]) {
            measured.push_str("; in order, none lost");
        }
        rep.rows.push(
            Row::new(
                format!(
                    "{title}: leader_cast + broadcast to 2 follower processes, {what} \
                     ({rounds} × {} casts; medians)",
                    p.quorum_bcast_n
                ),
                measured,
            )
            .baseline(
                format!("{} ({CALLERS} in flight)", fmt_rate(raw_pipe)),
                Some(m[1] / raw_pipe),
            )
            .target(
                format!(
                    "≥ {} / {GOAL} = {}, none lost",
                    names[0],
                    fmt_rate(m[0] / GOAL)
                ),
                Some(m[1] * GOAL >= m[0] && clean(&c[1])),
            ),
        );
    }
}

/// SIGKILL and SIGSTOP (then SIGCONT) of a quorum-mode leader: fresh clusters, as in
/// `failover.rs`. Returns the runs' data.
fn failover(p: &Params, rep: &mut Report) -> Value {
    let lease = QuorumConfig::default().get_lease();
    let bound = lease + one_election();
    let bound_ms = bound.as_secs_f64() * 1e3;
    println!(
        "[quorum] failover of a quorum-mode leader: E = {}, bound E + one election = {}",
        fmt_ms(lease.as_secs_f64() * 1e3),
        fmt_ms(bound_ms)
    );
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
    Value::Object(all)
}
