//! Cluster benchmark: gen-leader against a raw-TCP baseline measured in the same run.
//!
//! ```text
//! cargo bench --bench cluster                 # full run (about 3 min)
//! cargo bench --bench cluster -- --quick      # smoke run for CI (about 30 s)
//! cargo bench --bench cluster -- --only calls,failover
//! ```
//!
//! See `docs/benchmarks.md` for what each figure means and measured results. Experiment
//! knobs: `BENCH_WORKERS=N` (child runtime workers, `0` = current-thread),
//! `BENCH_DATA_DIRS=0` (no data directories), `BENCH_LOG=<filter>` (logs),
//! `BENCH_CONC=64` (only these concurrency levels, comma-separated), `BENCH_SEQ_N=N`
//! (sequential calls per round), `BENCH_FLOOD_IDLE=N` and `BENCH_FLOOD_REPS=N` (the `flood`
//! section's idle connections per node and runs), `BENCH_QUORUM_AA=1` (the `quorum` section
//! compares two bully clusters instead: its noise floor).
//!
//! Sections (`--only` takes a comma-separated list of them):
//!
//! * `calls` (`calls.rs`): raw tokio TCP ping-pong and pipelined echo between two OS
//!   processes (`raw.rs`), then `leader_call` from a follower process of a 3-process cluster
//!   (sequential, and 1/4/16/64 concurrent callers), and on the leader itself. Sequential
//!   rounds alternate raw and library so that machine noise hits both alike.
//! * `calls-ct` (`calls_ct.rs`): the same with every child (nodes and raw pair) on a tokio
//!   current-thread runtime, the better choice when node processes share a small machine.
//! * `bcast` (`broadcast.rs`): `leader_cast` on the leader, broadcast to 2 and to 8 follower
//!   processes.
//! * `failover` (`failover.rs`): SIGKILL and SIGSTOP of the leader process (then SIGCONT).
//! * `quorum` (`quorum.rs`): quorum mode next to bully mode in the same section, in rounds
//!   on fresh clusters, alternating: `leader_call` from a follower (sequential, 64 callers)
//!   and broadcast to 2 followers, beside the raw baseline; then SIGKILL and SIGSTOP of a
//!   quorum-mode leader.
//! * `etcd` (`etcd.rs`; cargo feature `etcd` and an `etcd` binary on the PATH, else
//!   skipped): the etcd backend next to bully mode (the `quorum` section's rounds), then
//!   failover after SIGKILL and after a graceful shutdown of the leader (TTL 2 s).
//! * `election` (`election.rs`): last node up → all agree, 3 to 33 in-process nodes.
//! * `idle` (`idle.rs`): RSS and CPU time of idle node processes.
//! * `flood` (`flood.rs`): SIGKILL of the leader and a restart of it while every node's port
//!   is flooded with 1 000 idle connections and garbage, next to the same without the flood
//!   (`--quick`: 100 idle connections, one run).
//! * `tls` (`tls.rs`, with `--features tls`; skipped with a note otherwise): `leader_call`
//!   from a follower (sequential, 64 callers) and broadcast to 2 followers on a cluster whose
//!   connections run TLS, next to a plain one, in alternating rounds on fresh clusters.
//!
//! The bench re-executes its own binary with a hidden role (`__node`: `child.rs`, running
//! the behaviour in `behaviour.rs`; `__raw`: `raw.rs`) to run a node or a raw echo/client
//! process. Children read JSON commands on stdin
//! and print JSON events on stdout; they exit when stdin closes. The parent's side of that
//! protocol is `procs.rs`, on the `testkit` crate's `Proc`: every child is killed (SIGCONT
//! then SIGKILL) on every exit path: drop guards, panics, SIGINT/SIGTERM/SIGHUP. Every wait
//! has a deadline.
//!
//! Results (`report.rs`): a table on stdout and `target/bench-cluster.json` (or `--out PATH`).
//! This file: options, parameters and the order of the sections.

#![forbid(unsafe_code)]

mod behaviour;
mod broadcast;
mod calls;
mod calls_ct;
mod child;
mod election;
mod etcd;
mod failover;
mod flood;
mod idle;
mod procs;
mod quorum;
mod raw;
mod report;
mod tls;
mod util;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::behaviour::{ACK_EVERY, BCAST_WINDOW};
use crate::broadcast::sec_bcast;
use crate::calls::sec_calls;
use crate::calls_ct::sec_calls_ct;
use crate::child::{child_node, init_logs};
use crate::election::sec_election;
use crate::etcd::sec_etcd;
use crate::failover::sec_failover;
use crate::flood::sec_flood;
use crate::idle::{loadavg, sec_idle};
use crate::quorum::sec_quorum;
use crate::raw::child_raw;
use crate::report::Report;
use crate::tls::sec_tls;

pub(crate) const COOKIE: &str = "bench-cookie";
/// Size of a `leader_call` request and reply payload, of a cast, and of a raw message.
pub(crate) const PAYLOAD: usize = 64;
/// Log filter of child nodes (their stderr goes to a file, shown when something fails).
pub(crate) const CHILD_LOG_FILTER: &str = "warn,gen_leader=info";
/// Deadline for starting processes and for a cluster's first agreement.
pub(crate) const T_START: Duration = Duration::from_secs(20);
/// Deadline for an event that should come within milliseconds to a second.
pub(crate) const T_EVENT: Duration = Duration::from_secs(20);
/// An election slower than this counts as a stall (gen_leader's stalls were ≈ 5 s).
pub(crate) const STALL: Duration = Duration::from_secs(1);
/// Give up on an election after this long.
pub(crate) const ELECTION_GIVE_UP: Duration = Duration::from_secs(10);

const SECTIONS: [&str; 10] = [
    "calls", "calls-ct", "bcast", "failover", "quorum", "etcd", "election", "idle", "flood", "tls",
];

pub(crate) struct Opts {
    pub(crate) quick: bool,
    only: Option<Vec<String>>,
    pub(crate) out: PathBuf,
}

impl Opts {
    pub(crate) fn parse(args: &[String]) -> Opts {
        let mut quick = false;
        let mut only: Option<Vec<String>> = None;
        let mut out = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--quick" => quick = true,
                "--only" => {
                    only = it
                        .next()
                        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
                }
                "--out" => out = it.next().map(PathBuf::from),
                "-h" | "--help" => {
                    println!(
                        "cargo bench --bench cluster [-- [--quick] [--only {}] [--out PATH]]",
                        SECTIONS.join(",")
                    );
                    std::process::exit(0);
                }
                // `--bench` (from cargo) and anything else: ignored.
                _ => {}
            }
        }
        if let Some(o) = &only {
            for s in o {
                if !SECTIONS.contains(&s.as_str()) {
                    eprintln!("unknown section {s:?} (sections: {})", SECTIONS.join(", "));
                    std::process::exit(2);
                }
            }
        }
        Opts {
            quick,
            only,
            out: out.unwrap_or_else(|| target_dir().join("bench-cluster.json")),
        }
    }

    pub(crate) fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|s| s == section))
    }
}

/// `target/` (from `CARGO_TARGET_DIR`, else from `target/<profile>/deps/<this exe>`).
fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.ancestors().nth(3).map(Path::to_path_buf))
        .filter(|d| d.join("CACHEDIR.TAG").exists() || d.ends_with("target"))
        .unwrap_or_else(|| PathBuf::from("target"))
}

pub(crate) struct Params {
    pub(crate) seq_n: u64,
    pub(crate) seq_rounds: usize,
    pub(crate) conc_secs: f64,
    pub(crate) warm_secs: f64,
    pub(crate) bcast_n2: u64,
    pub(crate) bcast_n8: u64,
    pub(crate) bcast_reps: usize,
    pub(crate) fail_reps: usize,
    /// `quorum`: rounds, each on fresh clusters of both modes (and a fresh raw pair).
    pub(crate) quorum_rounds: usize,
    /// `quorum`, per round and mode: sequential calls, seconds of 64 callers, broadcasts.
    pub(crate) quorum_seq_n: u64,
    pub(crate) quorum_conc_secs: f64,
    pub(crate) quorum_bcast_n: u64,
    /// Failover runs per fault in quorum mode (each waits out the lease twice).
    pub(crate) quorum_fail_reps: usize,
    /// `etcd`: rounds of the comparison with bully mode (per round: the `quorum_*` amounts).
    pub(crate) etcd_rounds: usize,
    /// `etcd`: failover runs per fault (a SIGKILL run waits out the TTL).
    pub(crate) etcd_fail_reps: usize,
    pub(crate) elect_reps: usize,
    pub(crate) elect_sizes: Vec<usize>,
    pub(crate) idle_secs: f64,
    pub(crate) flood_idle: usize,
    pub(crate) flood_reps: usize,
    /// `tls`: rounds, each on a fresh plain and a fresh TLS cluster; per round and side:
    /// sequential calls, seconds of 64 callers, broadcasts.
    pub(crate) tls_rounds: usize,
    pub(crate) tls_seq_n: u64,
    pub(crate) tls_conc_secs: f64,
    pub(crate) tls_bcast_n: u64,
}

impl Params {
    pub(crate) fn new(quick: bool) -> Params {
        if quick {
            Params {
                seq_n: 2_000,
                seq_rounds: 1,
                conc_secs: 0.4,
                warm_secs: 0.1,
                bcast_n2: 20_000,
                bcast_n8: 10_000,
                bcast_reps: 1,
                fail_reps: 3,
                quorum_rounds: 4,
                quorum_seq_n: 500,
                quorum_conc_secs: 0.2,
                quorum_bcast_n: 10_000,
                quorum_fail_reps: 2,
                etcd_rounds: 2,
                etcd_fail_reps: 2,
                elect_reps: 1,
                elect_sizes: vec![3, 5, 9, 17, 33],
                idle_secs: 2.0,
                flood_idle: 100,
                flood_reps: 1,
                tls_rounds: 2,
                tls_seq_n: 500,
                tls_conc_secs: 0.2,
                tls_bcast_n: 10_000,
            }
        } else {
            Params {
                seq_n: 20_000,
                seq_rounds: 3,
                conc_secs: 3.0,
                warm_secs: 0.5,
                bcast_n2: 200_000,
                bcast_n8: 100_000,
                bcast_reps: 3,
                fail_reps: 10,
                quorum_rounds: 6,
                quorum_seq_n: 10_000,
                quorum_conc_secs: 1.0,
                quorum_bcast_n: 100_000,
                quorum_fail_reps: 5,
                etcd_rounds: 4,
                etcd_fail_reps: 5,
                elect_reps: 5,
                elect_sizes: vec![3, 5, 9, 17, 33],
                idle_secs: 10.0,
                flood_idle: 1_000,
                flood_reps: 3,
                tls_rounds: 6,
                tls_seq_n: 10_000,
                tls_conc_secs: 1.0,
                tls_bcast_n: 100_000,
            }
        }
    }
    pub(crate) fn json(&self) -> Value {
        json!({
            "payload_bytes": PAYLOAD, "seq_calls_per_round": self.seq_n,
            "seq_rounds": self.seq_rounds, "conc_secs": self.conc_secs,
            "bcast_casts_2": self.bcast_n2, "bcast_casts_8": self.bcast_n8,
            "bcast_reps": self.bcast_reps, "failover_reps": self.fail_reps,
            "quorum_rounds": self.quorum_rounds, "quorum_seq_calls_per_round": self.quorum_seq_n,
            "quorum_conc_secs_per_round": self.quorum_conc_secs,
            "quorum_bcast_casts_per_round": self.quorum_bcast_n,
            "quorum_failover_reps": self.quorum_fail_reps,
            "etcd_rounds": self.etcd_rounds, "etcd_failover_reps": self.etcd_fail_reps,
            "election_reps": self.elect_reps, "election_sizes": self.elect_sizes,
            "idle_secs": self.idle_secs,
            "flood_idle_per_node": self.flood_idle, "flood_reps": self.flood_reps,
            "tls_rounds": self.tls_rounds, "tls_seq_calls_per_round": self.tls_seq_n,
            "tls_conc_secs_per_round": self.tls_conc_secs,
            "tls_bcast_casts_per_round": self.tls_bcast_n,
            "child_runtime_workers": std::env::var("BENCH_WORKERS").ok(),
            "data_dirs": data_dirs_default(),
            "bcast_window": BCAST_WINDOW, "bcast_ack_every": ACK_EVERY,
        })
    }
}

/// Whether nodes get a data directory (durable terms: the recommended setting); the
/// `BENCH_DATA_DIRS=0` knob turns them off everywhere.
pub(crate) fn data_dirs_default() -> bool {
    std::env::var("BENCH_DATA_DIRS").map_or(true, |v| v != "0")
}

pub(crate) fn tempdir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("gen-leader-bench-{label}-"))
        .tempdir()
        .expect("tempdir")
}

pub(crate) fn samples(v: &Value) -> Vec<u64> {
    v["samples_ns"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

pub(crate) fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn run(opts: &Opts) -> i32 {
    let p = Params::new(opts.quick);
    let mut rep = Report::default();
    let start = Instant::now();
    println!(
        "gen-leader cluster bench ({}), {} CPUs, payload {PAYLOAD} B, default node settings \
         (heartbeat 100 ms, failure timeout 600 ms), data dirs {}, child runtime: {}",
        if opts.quick { "--quick" } else { "full" },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        if data_dirs_default() {
            "on (durable terms)"
        } else {
            "OFF (BENCH_DATA_DIRS=0)"
        },
        match std::env::var("BENCH_WORKERS") {
            Ok(w) if w == "0" => "current-thread (BENCH_WORKERS=0)".to_string(),
            Ok(w) => format!("multi-thread, {w} worker(s) (BENCH_WORKERS)"),
            Err(_) => "tokio multi-thread default (one worker per CPU)".to_string(),
        }
    );
    type Section = fn(&Params, &mut Report);
    let sections: [(&str, Section); 10] = [
        ("calls", sec_calls),
        ("calls-ct", sec_calls_ct),
        ("bcast", sec_bcast),
        ("failover", sec_failover),
        ("quorum", sec_quorum),
        ("etcd", sec_etcd),
        ("election", sec_election),
        ("idle", sec_idle),
        ("flood", sec_flood),
        ("tls", sec_tls),
    ];
    for (name, sec) in sections {
        if !opts.runs(name) {
            continue;
        }
        let t = Instant::now();
        let load_before = loadavg();
        let r = catch_unwind(AssertUnwindSafe(|| sec(&p, &mut rep)));
        rep.load
            .push(json!({"section": name, "before": load_before, "after": loadavg()}));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            let first = msg.lines().next().unwrap_or("").to_string();
            rep.failures.push(format!("section {name}: {first}"));
        }
        println!(
            "[{name}] {:.1} s (load average {} → {})",
            t.elapsed().as_secs_f64(),
            load_before,
            loadavg()
        );
    }
    rep.notes.push(
        "election times use in-process nodes (one process, 127.0.0.1:0 listeners); every \
         other figure uses one OS process per node"
            .into(),
    );
    rep.notes.push(
        "failover: wall-clock timestamps taken in the child processes, from just before the \
         signal to the event"
            .into(),
    );
    let total = start.elapsed();
    println!();
    rep.print();
    let json = rep.json(opts, &p, total);
    if let Some(d) = opts.out.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    match std::fs::write(
        &opts.out,
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    ) {
        Ok(()) => println!(
            "\nwrote {} ({:.0} s in all)",
            opts.out.display(),
            total.as_secs_f64()
        ),
        Err(e) => {
            eprintln!("cannot write {}: {e}", opts.out.display());
            return 1;
        }
    }
    if rep.failures.is_empty() {
        0
    } else {
        1
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__node") => return child_node(),
        Some("__raw") => return child_raw(),
        _ => {}
    }
    let opts = Opts::parse(&args);
    init_logs("");
    testkit::kill_children_on_interrupt(|n| {
        eprintln!("\ninterrupted: killed {n} child process(es); no results written");
    });
    let code = run(&opts);
    std::process::exit(code);
}
