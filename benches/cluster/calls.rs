//! Section `calls`: `leader_call` latency and throughput from a follower process of a
//! 3-process cluster (sequential and 1/4/16/64 concurrent callers) and on the leader, beside
//! the raw-TCP ping-pong and pipelined echo of the same run.
//!
//! Why: calls are the hot path of an application on gen-leader; the raw baseline shows how
//! much of the time is the library's. Sequential rounds alternate raw and library so that
//! machine noise hits both alike.

use std::time::Duration;

use serde_json::{json, Value};

use crate::procs::{Cluster, Proc};
use crate::report::{fmt_rate, fmt_us, Report, Row};
use crate::util::{env_u64, ev, lat_summary};
use crate::{f, samples, tempdir, Params, PAYLOAD, T_START};

/// The raw-TCP baseline's two processes: an echo server and a client (`raw.rs`).
pub(crate) struct RawPair {
    client: Proc,
    _server: Proc,
    pub(crate) port: u64,
    // Removed after the children are gone (fields drop in order).
    _dir: tempfile::TempDir,
}

impl RawPair {
    pub(crate) fn start() -> RawPair {
        let dir = tempdir("raw");
        let client = Proc::spawn("__raw", "raw/client", dir.path().join("client.log"));
        let server = Proc::spawn("__raw", "raw/echo", dir.path().join("echo.log"));
        let port = server.wait(0, T_START, "the echo server to bind", |v| ev(v) == "bound")["port"]
            .as_u64()
            .unwrap_or(0);
        client.wait(0, T_START, "the raw client to start", |v| ev(v) == "bound");
        RawPair {
            client,
            _server: server,
            port,
            _dir: dir,
        }
    }

    /// `n` sequential round trips (after `n / 10` of warm-up): their latencies in ns.
    pub(crate) fn pingpong(&mut self, n: u64, timeout: Duration) -> Vec<u64> {
        let v = self.client.request(
            json!({"cmd": "pingpong", "port": self.port, "n": n, "warm": n / 10, "size": PAYLOAD}),
            timeout,
            "raw ping-pong",
        );
        samples(&v)
    }

    /// `inflight` messages kept in flight for `secs`: the result (`per_sec`, ...).
    pub(crate) fn pipelined(&mut self, inflight: u64, secs: f64, timeout: Duration) -> Value {
        self.client.request(
            json!({"cmd": "pipelined", "port": self.port, "inflight": inflight, "secs": secs, "size": PAYLOAD}),
            timeout,
            "raw pipelined echo",
        )
    }
}

/// `n` sequential `leader_call`s (after `n / 10` of warm-up) by a task on node `node`: their
/// latencies in ns.
pub(crate) fn call_seq(node: &mut Proc, n: u64, timeout: Duration, what: &str) -> Vec<u64> {
    let v = node.request(
        json!({"cmd": "call_seq", "n": n, "warm": n / 10, "size": PAYLOAD}),
        timeout,
        what,
    );
    samples(&v)
}

/// `c` tasks on node `node` calling back to back for `secs` (after `warm_secs` of warm-up):
/// the result (`per_sec`, `calls`, `secs`, `p50_us`, `p99_us`, ...).
pub(crate) fn call_conc(
    node: &mut Proc,
    c: u64,
    (secs, warm_secs): (f64, f64),
    timeout: Duration,
) -> Value {
    node.request(
        json!({"cmd": "call_conc", "c": c, "secs": secs, "warm_secs": warm_secs, "size": PAYLOAD}),
        timeout,
        &format!("{c} concurrent leader_call callers"),
    )
}

/// Raw TCP baseline and `leader_call` latency/throughput.
pub(crate) fn sec_calls(p: &Params, rep: &mut Report) {
    calls(p, rep, "calls", "");
}

/// The calls section; `tag` names it in the output, `suffix` ends its row labels.
pub(crate) fn calls(p: &Params, rep: &mut Report, tag: &str, suffix: &str) {
    let ct = !suffix.is_empty();
    let mut raw_pair = RawPair::start();
    let port = raw_pair.port;
    let mut cl = Cluster::start(3, tag);
    let (leader_name, _) = cl.agreed(&[0, 1, 2]).expect("agreed");
    let leader = cl.index_of(&leader_name);
    // The lowest-priority node: a follower whatever happens.
    let follower = (0..3).rev().find(|&i| i != leader).expect("a follower");
    println!(
        "[{tag}] 3 node processes, leader {leader_name}, caller n{follower}; raw echo on port {port}"
    );

    // Sequential: rounds alternate raw and library.
    let n = env_u64("BENCH_SEQ_N").unwrap_or(p.seq_n).max(10);
    let seq_t = Duration::from_secs(60) + Duration::from_millis(n * 2);
    let mut raw_s = Vec::new();
    let mut lib_s = Vec::new();
    for r in 0..p.seq_rounds {
        raw_s.extend(raw_pair.pingpong(n, seq_t));
        lib_s.extend(call_seq(
            &mut cl.procs[follower],
            n,
            seq_t,
            "sequential leader_call from a follower",
        ));
        println!(
            "[{tag}] sequential round {} of {} done",
            r + 1,
            p.seq_rounds
        );
    }
    let raw = lat_summary(raw_s);
    let lib = lat_summary(lib_s);
    let (raw_p50, raw_p99) = (f(&raw, "p50_us"), f(&raw, "p99_us"));
    let (lib_p50, lib_p99) = (f(&lib, "p50_us"), f(&lib, "p99_us"));
    if !ct {
        rep.raw_p50 = Some(raw_p50);
        rep.raw_p99 = Some(raw_p99);
    }

    // Throughput: for each level, raw pipelined echo with as many messages in flight, then
    // the library; raw 64 once more at the end (its baseline is the mean of both).
    let conc_t = Duration::from_secs_f64(p.conc_secs * 3.0 + p.warm_secs * 3.0 + 60.0);
    let pipe = |raw: &mut RawPair, inflight: u64| raw.pipelined(inflight, p.conc_secs, conc_t);
    let mut conc = Vec::new();
    let levels: Vec<u64> = std::env::var("BENCH_CONC")
        .ok()
        .map(|v| v.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .filter(|l: &Vec<u64>| !l.is_empty())
        .unwrap_or_else(|| vec![1, 4, 16, 64]);
    for c in levels {
        let raw_v = pipe(&mut raw_pair, c);
        let v = call_conc(
            &mut cl.procs[follower],
            c,
            (p.conc_secs, p.warm_secs),
            conc_t,
        );
        println!(
            "[{tag}] {c:>2} in flight: raw {}; leader_call {} (p50 {}, p99 {})",
            fmt_rate(f(&raw_v, "per_sec")),
            fmt_rate(f(&v, "per_sec")),
            fmt_us(f(&v, "p50_us")),
            fmt_us(f(&v, "p99_us"))
        );
        conc.push((c, v, raw_v));
    }
    let pipe_again = pipe(&mut raw_pair, 64);
    let pipe_first = conc.last().map(|x| f(&x.2, "per_sec")).unwrap_or(f64::NAN);
    let raw_pipe = (pipe_first + f(&pipe_again, "per_sec")) / 2.0;
    if !ct {
        rep.raw_pipe = Some(raw_pipe);
    }

    // On the leader itself.
    let local = lat_summary(call_seq(
        &mut cl.procs[leader],
        n,
        seq_t,
        "sequential leader_call on the leader",
    ));

    rep.data.insert(
        tag.into(),
        json!({
            "raw_pingpong": raw, "leader_call_follower_seq": lib,
            "raw_pipelined_64_again": pipe_again,
            "leader_call_follower_conc": conc.iter().map(|(c, v, r)| json!({"callers": c, "result": v, "raw_pipelined": r})).collect::<Vec<_>>(),
            "leader_call_on_leader_seq": local,
        }),
    );

    rep.rows.push(
        Row::new(
            format!("raw TCP ping-pong RTT, {PAYLOAD} B, 2 processes (p50 / p99){suffix}"),
            format!("{} / {}", fmt_us(raw_p50), fmt_us(raw_p99)),
        )
        .reference("≈ 78 µs blocking C ping-pong (docs/benchmarks.md)"),
    );
    rep.rows.push(Row::new(
        format!("raw TCP pipelined echo, 64 in flight, {PAYLOAD} B{suffix}"),
        format!(
            "{} (runs: {}, {})",
            fmt_rate(raw_pipe),
            fmt_rate(pipe_first),
            fmt_rate(f(&pipe_again, "per_sec"))
        ),
    ));
    // The targets are judged on the default runtime; the current-thread rows are
    // there for comparison.
    let mut row = Row::new(
        format!("leader_call from a follower process, sequential p50{suffix}"),
        fmt_us(lib_p50),
    )
    .baseline(fmt_us(raw_p50), Some(lib_p50 / raw_p50))
    .reference("26 µs");
    if !ct {
        row = row.target(
            format!("≤ 1.2 × raw = {}", fmt_us(1.2 * raw_p50)),
            Some(lib_p50 <= 1.2 * raw_p50),
        );
    }
    rep.rows.push(row);
    rep.rows.push(
        Row::new(
            format!("leader_call from a follower process, sequential p99{suffix}"),
            fmt_us(lib_p99),
        )
        .baseline(fmt_us(raw_p99), Some(lib_p99 / raw_p99))
        .reference("62–65 µs"),
    );
    for (c, v, raw_v) in &conc {
        let r = match c {
            1 => "31–37 k/s",
            4 => "42–50 k/s",
            16 => "54–61 k/s",
            64 => "56–87 k/s",
            _ => "—",
        };
        let rate = f(v, "per_sec");
        let raw_rate = if *c == 64 {
            raw_pipe
        } else {
            f(raw_v, "per_sec")
        };
        let mut row = Row::new(
            format!("leader_call throughput, {c} concurrent caller(s) (p50 / p99){suffix}"),
            format!(
                "{} ({} / {})",
                fmt_rate(rate),
                fmt_us(f(v, "p50_us")),
                fmt_us(f(v, "p99_us"))
            ),
        )
        .baseline(
            format!("{} ({c} in flight)", fmt_rate(raw_rate)),
            Some(rate / raw_rate),
        )
        .reference(r);
        if *c == 64 && !ct {
            row = row.target("≥ 3 × gen_leader = 261 k/s", Some(rate >= 261_000.0));
        }
        rep.rows.push(row);
    }
    rep.rows.push(
        Row::new(
            format!("leader_call on the leader itself (p50 / p99){suffix}"),
            format!(
                "{} / {}",
                fmt_us(f(&local, "p50_us")),
                fmt_us(f(&local, "p99_us"))
            ),
        )
        .reference("p50 1.3 µs"),
    );
}
