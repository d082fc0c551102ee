//! Section `tls` (only with `--features tls`): what TLS costs, measured next to plain TCP in
//! the same section: `leader_call` from a follower process (sequential p50/p99, 64 concurrent
//! callers) and broadcast to 2 followers (paced), on a 3-process cluster whose connections
//! run TLS 1.3 (mutual authentication, certificates generated here with rcgen) and on a plain
//! one.
//!
//! How: as the `quorum` section does, each round starts a fresh cluster of each kind and
//! measures them alternately (plain first in even rounds, TLS first in odd ones), so that
//! machine noise and where a cluster's threads landed hit both alike; the figures pool the
//! rounds. The children of the TLS cluster find their certificates through `BENCH_TLS_DIR`
//! (`child.rs`), set in this process's environment only while they are spawned.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::behaviour::BCAST_WINDOW;
use crate::broadcast::{bcast_run, Bcast};
use crate::calls::{call_conc, call_seq};
use crate::procs::{Cluster, NodeMode};
use crate::report::{fmt_rate, fmt_us, Report, Row};
use crate::util::{env_u64, ev, lat_summary, med_range};
use crate::{data_dirs_default, f, Params, T_EVENT};

/// Concurrent callers of the throughput figure.
const CALLERS: u64 = 64;
/// Nodes per cluster.
const NODES: usize = 3;
/// The two sides, in the order of the accumulators.
const SIDES: [&str; 2] = ["plain", "TLS"];

/// Without the feature there is nothing to write (the section is skipped before).
#[cfg(not(feature = "tls"))]
fn write_certs(_: &Path, _: usize) {}

/// Writes a CA (`ca.pem`) and, for `n0..n{count-1}`, a certificate and key (`n<i>.pem`,
/// `n<i>.key`) with SANs `IP:127.0.0.1` and `URI:gen-leader://n<i>@127.0.0.1`.
#[cfg(feature = "tls")]
fn write_certs(dir: &Path, count: usize) {
    let nodes: Vec<(String, String)> = (0..count)
        .map(|i| (format!("n{i}"), format!("n{i}@127.0.0.1")))
        .collect();
    let nodes: Vec<(&str, &str)> = nodes
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    testkit::Pki::new("bench CA")
        .write(dir, &nodes)
        .expect("write the certificates");
}

/// A 3-process cluster, plain or with TLS; its leader and the follower that calls.
struct Side {
    cl: Cluster,
    leader: usize,
    follower: usize,
}

impl Side {
    fn start(tls: Option<&Path>, label: &str) -> Side {
        // The children inherit the variable when they are spawned (and only then).
        match tls {
            Some(d) => std::env::set_var("BENCH_TLS_DIR", d),
            None => std::env::remove_var("BENCH_TLS_DIR"),
        }
        let cl = std::panic::catch_unwind(|| {
            Cluster::start_mode(NODES, label, data_dirs_default(), NodeMode::Bully)
        });
        std::env::remove_var("BENCH_TLS_DIR");
        let cl = cl.unwrap_or_else(|e| std::panic::resume_unwind(e));
        // Each child says whether it runs TLS: the side must be what it claims to be.
        for p in &cl.procs {
            let v = p.wait(0, T_EVENT, "the node's start", |v| ev(v) == "started");
            assert_eq!(
                v["tls"].as_bool(),
                Some(tls.is_some()),
                "{} must run {}",
                p.label(),
                if tls.is_some() { "TLS" } else { "plain TCP" }
            );
        }
        let (leader_name, _) = cl.agreed(&[0, 1, 2]).expect("agreed");
        let leader = cl.index_of(&leader_name);
        let follower = (0..NODES).rev().find(|&i| i != leader).expect("a follower");
        Side {
            cl,
            leader,
            follower,
        }
    }
}

#[derive(Default)]
struct Acc {
    seq: [Vec<u64>; 2],
    conc: [Vec<Value>; 2],
    casts: [Vec<f64>; 2],
    /// Broadcast runs that lost broadcasts or reordered them, per side.
    bad_casts: [Vec<String>; 2],
}

pub(crate) fn sec_tls(p: &Params, rep: &mut Report) {
    if !cfg!(feature = "tls") {
        println!("[tls] skipped: the bench was built without `--features tls`");
        rep.notes
            .push("tls: skipped (the bench was built without `--features tls`)".into());
        return;
    }
    let certs = crate::tempdir("tls-certs");
    write_certs(certs.path(), NODES);
    let rounds = p.tls_rounds;
    let mut acc = Acc::default();
    for r in 0..rounds {
        round(p, r, certs.path(), &mut acc);
    }
    rows(p, rep, &acc);
}

fn round(p: &Params, r: usize, certs: &Path, acc: &mut Acc) {
    let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
    let mut started: [Option<Side>; 2] = [None, None];
    for s in order {
        let label = format!("tls-r{r}-{}", SIDES[s].to_lowercase());
        started[s] = Some(Side::start((s == 1).then_some(certs), &label));
    }
    let mut cl = started.map(|s| s.expect("both sides started"));
    let head = format!("[tls] round {} of {rounds}", r + 1, rounds = p.tls_rounds);

    let n = env_u64("BENCH_SEQ_N").unwrap_or(p.tls_seq_n).max(10);
    let seq_t = Duration::from_secs(60) + Duration::from_millis(n * 2);
    let mut line = format!("{head}: sequential p50");
    for s in order {
        let side = &mut cl[s];
        let v = call_seq(
            &mut side.cl.procs[side.follower],
            n,
            seq_t,
            &format!("sequential leader_call from a follower, {}", SIDES[s]),
        );
        line.push_str(&format!(
            "; {} {}",
            SIDES[s],
            fmt_us(f(&lat_summary(v.clone()), "p50_us"))
        ));
        acc.seq[s].extend(v);
    }
    println!("{line}");

    let secs = (p.tls_conc_secs, p.warm_secs);
    let conc_t = Duration::from_secs_f64(secs.0 + secs.1 + 60.0);
    let mut line = format!("{head}: {CALLERS} in flight");
    for s in order {
        let side = &mut cl[s];
        let v = call_conc(&mut side.cl.procs[side.follower], CALLERS, secs, conc_t);
        line.push_str(&format!(
            "; {} {} (p50 {}, p99 {})",
            SIDES[s],
            fmt_rate(f(&v, "per_sec")),
            fmt_us(f(&v, "p50_us")),
            fmt_us(f(&v, "p99_us"))
        ));
        acc.conc[s].push(v);
    }
    println!("{line}");

    let n = p.tls_bcast_n;
    let mut line = format!("{head}: broadcast to 2 followers, window {BCAST_WINDOW}, {n} casts");
    for s in order {
        let side = &mut cl[s];
        // Warm-up (connections, allocator).
        let _ = bcast_run(&mut side.cl, side.leader, n / 10, BCAST_WINDOW);
        match bcast_run(&mut side.cl, side.leader, n, BCAST_WINDOW) {
            Bcast::Delivered(rate, _, anomalies) => {
                line.push_str(&format!("; {} {}", SIDES[s], fmt_rate(rate)));
                acc.casts[s].push(rate);
                if anomalies > 0 {
                    acc.bad_casts[s].push(format!("{anomalies} out of order"));
                }
            }
            Bcast::Lost(l, why) => {
                line.push_str(&format!("; {}: follower dropped ({why})", SIDES[s]));
                acc.bad_casts[s].push(format!("lost {l:?} ({why})"));
            }
        }
    }
    println!("{line}");
}

/// "TLS T; plain P → r ×".
fn versus(tls: f64, plain: f64, fmt: fn(f64) -> String) -> String {
    format!("{}; plain {} → {:.2} ×", fmt(tls), fmt(plain), tls / plain)
}

fn rows(p: &Params, rep: &mut Report, acc: &Acc) {
    let rounds = p.tls_rounds;
    let seq = acc.seq.clone().map(lat_summary);
    let pooled = |runs: &[Value]| {
        let n: f64 = runs.iter().map(|v| f(v, "calls")).sum();
        let secs: f64 = runs.iter().map(|v| f(v, "secs")).sum();
        n / secs
    };
    let med = |v: &[f64]| med_range(v).map_or(f64::NAN, |m| m.0);
    let med_of = |runs: &[Value], k: &str| med(&runs.iter().map(|v| f(v, k)).collect::<Vec<_>>());
    let how = format!("{rounds} rounds, fresh clusters, alternating with plain TCP");
    for (what, k) in [("p50", "p50_us"), ("p99", "p99_us")] {
        rep.rows.push(Row::new(
            format!("TLS: leader_call from a follower process, sequential {what} ({how})"),
            versus(f(&seq[1], k), f(&seq[0], k), fmt_us),
        ));
    }
    let rate = [pooled(&acc.conc[0]), pooled(&acc.conc[1])];
    rep.rows.push(Row::new(
        format!("TLS: leader_call throughput, {CALLERS} concurrent callers (p50 / p99)"),
        format!(
            "{} ({} / {})",
            versus(rate[1], rate[0], fmt_rate),
            fmt_us(med_of(&acc.conc[1], "p50_us")),
            fmt_us(med_of(&acc.conc[1], "p99_us"))
        ),
    ));
    let casts = [med(&acc.casts[0]), med(&acc.casts[1])];
    let mut measured = versus(casts[1], casts[0], fmt_rate);
    for s in [1, 0] {
        if !acc.bad_casts[s].is_empty() {
            measured.push_str(&format!("; {}: {}", SIDES[s], acc.bad_casts[s].join(", ")));
        }
    }
    if acc.bad_casts.iter().all(Vec::is_empty) {
        measured.push_str("; in order, none lost");
    }
    rep.rows.push(Row::new(
        format!(
            "TLS: leader_cast + broadcast to 2 follower processes, window {BCAST_WINDOW} \
             ({rounds} × {} casts; medians)",
            p.tls_bcast_n
        ),
        measured,
    ));
    for (s, bad) in acc.bad_casts.iter().enumerate() {
        if !bad.is_empty() {
            rep.failures
                .push(format!("tls: {} broadcasts: {}", SIDES[s], bad.join(", ")));
        }
    }
    rep.data.insert(
        "tls".into(),
        json!({
            "rounds": rounds, "seq_calls_per_round": p.tls_seq_n,
            "secs_per_round_64": p.tls_conc_secs, "casts_per_round": p.tls_bcast_n,
            "follower_seq": {"plain": seq[0], "tls": seq[1]},
            "follower_64": {"plain": acc.conc[0], "tls": acc.conc[1]},
            "broadcast_2": {"plain": acc.casts[0], "tls": acc.casts[1]},
        }),
    );
}
