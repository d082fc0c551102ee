//! The child-process side, node role (`__node`): a gen-leader node driven by JSON commands on
//! stdin, reporting JSON events on stdout.
//!
//! Why a child process: every figure except elections is measured between OS processes, as
//! nodes are deployed; the parent only sends commands and reads timestamps.

use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gen_leader::{Config, LeaderHandle, Mode, Node};
use serde_json::{json, Value};

use crate::behaviour::{Bench, Counter};
use crate::util::{emit, err_kind, lat_summary, lock, nanos, wall_ns};
use crate::{CHILD_LOG_FILTER, COOKIE, PAYLOAD};

/// The children's runtime: tokio's default multi-thread runtime (one worker per CPU), or
/// `BENCH_WORKERS` workers (an experiment knob; `0` means a current-thread runtime).
pub(crate) fn child_runtime() -> tokio::runtime::Runtime {
    let workers = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse::<usize>().ok());
    let mut b = match workers {
        Some(0) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    b.enable_all().build().expect("tokio runtime")
}

/// Child logs go to a file per child; `BENCH_LOG` (a tracing filter) overrides the default
/// filter, and also turns on the parent's own logs (in-process election nodes) on stderr.
pub(crate) fn init_logs(default: &str) {
    let filter = std::env::var("BENCH_LOG").unwrap_or_else(|_| default.to_string());
    if filter.is_empty() {
        return;
    }
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = match filter.parse::<tracing_subscriber::filter::Targets>() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("BENCH_LOG={filter:?} is not a target=level list ({e}): no logs");
            return;
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .finish()
        .with(filter)
        .try_init();
}

/// Commands from the parent, one JSON object a line. The process exits when the parent
/// closes stdin (or dies), so no child outlives the bench.
pub(crate) fn stdin_commands() -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(v) => {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    emit(&json!({"ev": "error", "error": format!("bad command {line:?}: {e}")}))
                }
            }
        }
        std::process::exit(0);
    });
    rx
}

pub(crate) fn reply_to(cmd: &Value, mut v: Value) -> Value {
    v["tag"] = cmd["tag"].clone();
    if v.get("ev").is_none() {
        v["ev"] = json!("result");
    }
    v
}

pub(crate) fn error_to(cmd: &Value, msg: impl Into<String>) -> Value {
    json!({"ev": "error", "tag": cmd["tag"].clone(), "error": msg.into()})
}

// ----- the node role -----------------------------------------------------------------------

pub(crate) fn child_node() {
    init_logs(CHILD_LOG_FILTER);
    install_metrics_if_asked();
    child_runtime().block_on(node_main());
}

/// `BENCH_METRICS=1`: a Prometheus recorder (`metrics-exporter-prometheus`, the call latency
/// as a bucketed histogram, its upkeep every 5 s as the exporter's own listener would run it;
/// nothing serves it) records the node's metrics, so that a paired run with and without it
/// measures what recording costs the hot path. Installed before the node starts, as it must.
fn install_metrics_if_asked() {
    if std::env::var("BENCH_METRICS").as_deref() != Ok("1") {
        return;
    }
    const BUCKETS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ];
    let installed = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .and_then(|b| b.install_recorder());
    match installed {
        Ok(handle) => {
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                handle.run_upkeep();
            });
        }
        Err(e) => {
            emit(&json!({"ev": "error", "error": format!("BENCH_METRICS: {e}")}));
            std::process::exit(2);
        }
    }
}

async fn node_main() {
    let mut cmds = stdin_commands();
    // `BENCH_NODE_PORT`: a restart binds the port of the node it replaces (set by the `flood`
    // section; a few tries, as the port is being released).
    let port = crate::util::env_u64("BENCH_NODE_PORT").unwrap_or(0);
    let addr = format!("127.0.0.1:{port}");
    let mut tries = 0;
    let listener = loop {
        match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => break l,
            Err(_) if port != 0 && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                emit(&json!({"ev": "error", "error": format!("bind {addr}: {e}")}));
                std::process::exit(2);
            }
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    emit(&json!({"ev": "bound", "port": port}));
    let Some(start) = cmds.recv().await else {
        return;
    };
    let me = start["me"].as_u64().unwrap_or(0) as usize;
    let names: Vec<String> = start["names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let Some(my_name) = names.get(me).cloned() else {
        emit(&json!({"ev": "error", "error": "bad start command"}));
        std::process::exit(2);
    };
    let mut builder = Config::builder(&my_name).candidates(&names).cookie(COOKIE);
    if let Some(d) = start["data_dir"].as_str() {
        builder = builder.data_dir(d);
    }
    // The election mode (`BENCH_MODE`, set by the parent for every node: `procs::NodeMode`).
    match std::env::var("BENCH_MODE").as_deref() {
        Ok("quorum") => builder = builder.mode(Mode::quorum()),
        Ok("bully") | Err(_) => {}
        Ok("etcd") => builder = etcd_backend(builder),
        Ok(other) => {
            emit(&json!({"ev": "error", "error": format!("unknown BENCH_MODE {other:?}")}));
            std::process::exit(2);
        }
    }
    // Opt-in spin mode (`BENCH_SPIN_US=N`): see `ConfigBuilder::spin`.
    if let Some(us) = std::env::var("BENCH_SPIN_US")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        builder = builder.spin(Duration::from_micros(us));
    }
    // TLS (`BENCH_TLS_DIR`, set by the `tls` section while it spawns a TLS cluster):
    // `n<me>.pem`, `n<me>.key` and `ca.pem` in that directory.
    #[cfg(feature = "tls")]
    let tls = std::env::var_os("BENCH_TLS_DIR").is_some();
    #[cfg(feature = "tls")]
    if let Some(dir) = std::env::var_os("BENCH_TLS_DIR").map(std::path::PathBuf::from) {
        match gen_leader::config::TlsConfig::from_pem_files(
            dir.join(format!("n{me}.pem")),
            dir.join(format!("n{me}.key")),
            dir.join("ca.pem"),
        ) {
            Ok(t) => builder = builder.tls(t),
            Err(e) => {
                emit(&json!({"ev": "error", "error": format!("BENCH_TLS_DIR: {e}")}));
                std::process::exit(2);
            }
        }
    }
    #[cfg(not(feature = "tls"))]
    let tls = false;
    let cfg = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            emit(&json!({"ev": "error", "error": format!("config: {e}")}));
            std::process::exit(2);
        }
    };
    // "etcd" when etcd decides (the mode stays bully then).
    let cfg_mode = if cfg.backend().is_external() {
        "etcd".to_string()
    } else {
        cfg.mode().to_string()
    };
    let counter = Arc::new(Counter::default());
    counter.next_cast.store(1, Ordering::SeqCst);
    let h = match Node::start_with_listener(cfg, Bench::new(&my_name, counter.clone()), listener)
        .await
    {
        Ok(h) => h,
        Err(e) => {
            emit(&json!({"ev": "error", "error": format!("start: {e}")}));
            std::process::exit(2);
        }
    };
    emit(&json!({
        "ev": "started", "name": my_name, "pid": std::process::id(),
        "mode": cfg_mode, "tls": tls,
    }));
    tokio::spawn(watch_view(h.clone()));
    while let Some(cmd) = cmds.recv().await {
        if cmd["cmd"] == "quit" {
            let _ = tokio::time::timeout(Duration::from_secs(5), h.shutdown()).await;
            emit(&json!({"ev": "bye"}));
            std::process::exit(0);
        }
        let h = h.clone();
        let counter = counter.clone();
        tokio::spawn(async move {
            let r = node_cmd(&h, &counter, &cmd).await;
            emit(&r);
        });
    }
}

/// `BENCH_MODE=etcd`: etcd decides, at `BENCH_ETCD_ENDPOINTS` (comma separated) on the
/// election `BENCH_ETCD_ELECTION` with a TTL of `BENCH_ETCD_TTL_S` seconds (`procs.rs` sets
/// them from the `etcd` section's etcd).
#[cfg(feature = "etcd")]
fn etcd_backend(builder: gen_leader::ConfigBuilder) -> gen_leader::ConfigBuilder {
    use gen_leader::config::Backend;
    use gen_leader::etcd::EtcdConfig;
    let endpoints = std::env::var("BENCH_ETCD_ENDPOINTS").unwrap_or_default();
    let election = std::env::var("BENCH_ETCD_ELECTION").unwrap_or_else(|_| "gl-bench".into());
    let ttl = crate::util::env_u64("BENCH_ETCD_TTL_S").unwrap_or(2);
    let e = EtcdConfig::new(endpoints.split(',').filter(|s| !s.is_empty()), election)
        .with_ttl(Duration::from_secs(ttl));
    builder.backend(Backend::Etcd(e))
}

#[cfg(not(feature = "etcd"))]
fn etcd_backend(_builder: gen_leader::ConfigBuilder) -> gen_leader::ConfigBuilder {
    emit(&json!({"ev": "error", "error": "BENCH_MODE=etcd: built without the `etcd` feature"}));
    std::process::exit(2);
}

/// Prints every change of (leader, term) with a wall-clock timestamp.
async fn watch_view(h: LeaderHandle<Bench>) {
    let mut rx = h.changes();
    let mut last: Option<(Option<String>, u64, String)> = None;
    loop {
        let cur = {
            let v = rx.borrow_and_update();
            (
                v.leader.as_ref().map(|l| l.to_string()),
                v.term.get(),
                format!("{:?}", v.role),
            )
        };
        if last.as_ref() != Some(&cur) {
            emit(
                &json!({"ev": "view", "leader": cur.0, "term": cur.1, "role": cur.2, "ts": wall_ns()}),
            );
            last = Some(cur);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

pub(crate) fn arg_u64(cmd: &Value, key: &str, default: u64) -> u64 {
    cmd[key].as_u64().unwrap_or(default)
}

pub(crate) fn arg_secs(cmd: &Value, key: &str, default: f64) -> Duration {
    Duration::from_secs_f64(cmd[key].as_f64().unwrap_or(default).max(0.0))
}

async fn node_cmd(h: &LeaderHandle<Bench>, counter: &Counter, cmd: &Value) -> Value {
    let size = arg_u64(cmd, "size", PAYLOAD as u64) as usize;
    match cmd["cmd"].as_str().unwrap_or("") {
        "call_seq" => {
            let n = arg_u64(cmd, "n", 1000) as usize;
            let warm = arg_u64(cmd, "warm", 100) as usize;
            match call_seq(h, n, warm, size).await {
                Ok(samples) => reply_to(cmd, json!({"samples_ns": samples})),
                Err(e) => error_to(cmd, e),
            }
        }
        "call_conc" => {
            let c = arg_u64(cmd, "c", 1).max(1) as usize;
            let secs = arg_secs(cmd, "secs", 1.0);
            let warm = arg_secs(cmd, "warm_secs", 0.0);
            if !warm.is_zero() {
                if let Err(e) = run_conc(h, c, warm, size).await {
                    return error_to(cmd, format!("warm-up: {e}"));
                }
            }
            match run_conc(h, c, secs, size).await {
                Ok((samples, elapsed)) => {
                    let n = samples.len();
                    let mut v = lat_summary(samples);
                    v["calls"] = json!(n);
                    v["secs"] = json!(elapsed.as_secs_f64());
                    v["per_sec"] = json!(n as f64 / elapsed.as_secs_f64());
                    reply_to(cmd, v)
                }
                Err(e) => error_to(cmd, e),
            }
        }
        "probe" => probe(h, cmd).await,
        "expect" => {
            let n = arg_u64(cmd, "n", 0);
            let generation = counter.generation.fetch_add(1, Ordering::SeqCst) + 1;
            let before = counter.count.load(Ordering::SeqCst);
            let anomalies_before = counter.anomalies.load(Ordering::SeqCst);
            counter.resync.store(true, Ordering::SeqCst);
            let target = before + n;
            counter.done_ts.store(0, Ordering::SeqCst);
            counter.target.store(target, Ordering::SeqCst);
            emit(&json!({"ev": "expect_ok", "tag": cmd["tag"].clone(), "before": before}));
            let deadline = tokio::time::Instant::now() + arg_secs(cmd, "timeout_secs", 120.0);
            loop {
                if counter.generation.load(Ordering::SeqCst) != generation {
                    // A newer `expect` took over (the parent gave up on this one).
                    return json!({"ev": "superseded", "tag": cmd["tag"].clone()});
                }
                if counter.count.load(Ordering::SeqCst) >= target {
                    break;
                }
                // The callback records the exact time; waking late here costs nothing.
                let wake = tokio::time::Instant::now() + Duration::from_millis(50);
                let _ =
                    tokio::time::timeout_at(wake.min(deadline), counter.notify.notified()).await;
                if tokio::time::Instant::now() >= deadline
                    && counter.count.load(Ordering::SeqCst) < target
                {
                    return error_to(
                        cmd,
                        format!(
                            "received {} of {target} broadcasts before the deadline (view {:?})",
                            counter.count.load(Ordering::SeqCst),
                            h.view()
                        ),
                    );
                }
            }
            let ts = match counter.done_ts.load(Ordering::SeqCst) {
                0 => wall_ns(),
                t => t,
            };
            reply_to(
                cmd,
                json!({
                    "ts": ts,
                    "count": counter.count.load(Ordering::SeqCst),
                    "anomalies": counter.anomalies.load(Ordering::SeqCst) - anomalies_before,
                }),
            )
        }
        "cast" => {
            let n = arg_u64(cmd, "n", 0);
            let window = arg_u64(cmd, "window", 0);
            let followers: Vec<String> = cmd["followers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let first = counter.next_cast.fetch_add(n, Ordering::SeqCst);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            let ts0 = wall_ns();
            for i in 0..n {
                while window > 0 && counter.min_ack(&followers, first - 1) + window < first + i {
                    let wake = tokio::time::Instant::now() + Duration::from_millis(20);
                    let _ = tokio::time::timeout_at(wake, counter.ack_notify.notified()).await;
                    if tokio::time::Instant::now() > deadline {
                        return error_to(
                            cmd,
                            format!(
                                "paced cast stalled at {i} of {n}: acks {:?}",
                                lock(&counter.acks)
                            ),
                        );
                    }
                }
                let mut p = vec![0u8; size.max(8)];
                p[..8].copy_from_slice(&(first + i).to_le_bytes());
                // Paced by the node's bounded mailbox when it is full.
                if let Err(e) = h.leader_cast_wait(p).await {
                    return error_to(cmd, format!("leader_cast: {e}"));
                }
                if i % 1024 == 1023 {
                    tokio::task::yield_now().await;
                }
            }
            reply_to(cmd, json!({"ts0": ts0, "ts1": wall_ns()}))
        }
        "count" => reply_to(
            cmd,
            json!({
                "count": counter.count.load(Ordering::SeqCst),
                "anomalies": counter.anomalies.load(Ordering::SeqCst),
            }),
        ),
        other => error_to(cmd, format!("unknown command {other:?}")),
    }
}

pub(crate) async fn call_seq(
    h: &LeaderHandle<Bench>,
    n: usize,
    warm: usize,
    size: usize,
) -> Result<Vec<u64>, String> {
    let payload = vec![0xA5u8; size];
    let mut samples = Vec::with_capacity(n);
    for i in 0..warm + n {
        let t = Instant::now();
        let r = h
            .leader_call_timeout(payload.clone(), Duration::from_secs(2))
            .await;
        let d = t.elapsed();
        match r {
            Ok(rep) if rep.len() == size => {}
            Ok(rep) => return Err(format!("reply of {} bytes, not {size}", rep.len())),
            Err(e) => return Err(format!("leader_call #{i}: {e}")),
        }
        if i >= warm {
            samples.push(nanos(d));
        }
    }
    Ok(samples)
}

/// `c` tasks calling back to back for `dur`; returns every latency and the elapsed time.
async fn run_conc(
    h: &LeaderHandle<Bench>,
    c: usize,
    dur: Duration,
    size: usize,
) -> Result<(Vec<u64>, Duration), String> {
    let start = Instant::now();
    let end = start + dur;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..c {
        let h = h.clone();
        set.spawn(async move {
            let payload = vec![0x5Au8; size];
            let mut lat = Vec::with_capacity(1 << 16);
            while Instant::now() < end {
                let t = Instant::now();
                let r = h
                    .leader_call_timeout(payload.clone(), Duration::from_secs(2))
                    .await;
                lat.push(nanos(t.elapsed()));
                match r {
                    Ok(rep) if rep.len() == size => {}
                    Ok(rep) => return Err(format!("reply of {} bytes", rep.len())),
                    Err(e) => return Err(format!("leader_call: {e}")),
                }
            }
            Ok(lat)
        });
    }
    let mut all = Vec::new();
    let mut err = None;
    while let Some(r) = set.join_next().await {
        match r {
            Ok(Ok(l)) => all.extend(l),
            Ok(Err(e)) => err = Some(e),
            Err(e) => err = Some(e.to_string()),
        }
    }
    let elapsed = start.elapsed();
    match err {
        Some(e) => Err(e),
        None => Ok((all, elapsed)),
    }
}

/// Failover probe. A `hold` call stays in flight at the leader (deferred forever); `who`
/// calls every millisecond until the leader holds it (`probe_started`). When the held call
/// ends (`hold_done`: the leader is gone), the probe retries at once, back to back, until a
/// call is answered by another leader (`probe_ok`): what a client that retries does.
pub(crate) async fn probe(h: &LeaderHandle<Bench>, cmd: &Value) -> Value {
    let old = cmd["old"].as_str().unwrap_or("").to_string();
    let tag = cmd["tag"].clone();
    let mut hold = {
        let h = h.clone();
        tokio::spawn(async move {
            let r = h
                .leader_call_timeout(b"hold".to_vec(), Duration::from_secs(30))
                .await;
            (wall_ns(), r)
        })
    };
    let who = |rep: &[u8]| {
        let s = String::from_utf8_lossy(rep).to_string();
        let (w, held) = s.split_once('|').unwrap_or((s.as_str(), "0"));
        (w.to_string(), held != "0")
    };
    // 1. Until the leader holds the call.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if Instant::now() > deadline {
            hold.abort();
            return error_to(cmd, "the leader never held the probe's call");
        }
        if let Ok(rep) = h
            .leader_call_timeout(Vec::new(), Duration::from_secs(2))
            .await
        {
            let (w, held) = who(&rep);
            if w == old && held {
                emit(&json!({"ev": "probe_started", "tag": tag.clone()}));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // 2. The held call ends when the leader is gone.
    let (ts, r) = match (&mut hold).await {
        Ok(x) => x,
        Err(e) => return error_to(cmd, format!("hold task: {e}")),
    };
    let (result, detail) = match &r {
        Ok(_) => ("ok".to_string(), String::new()),
        Err(e) => (err_kind(e), e.to_string()),
    };
    emit(
        &json!({"ev": "hold_done", "tag": tag.clone(), "ts": ts, "result": result, "detail": detail}),
    );
    // 3. Retry at once until another leader answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut errors: Vec<Value> = Vec::new();
    loop {
        if Instant::now() > deadline {
            return error_to(
                cmd,
                format!("no call answered by a new leader within 60 s; errors {errors:?}"),
            );
        }
        let r = h
            .leader_call_timeout(Vec::new(), Duration::from_secs(5))
            .await;
        let ts = wall_ns();
        match r {
            Ok(rep) => {
                let (w, _) = who(&rep);
                if w != old {
                    return json!({"ev": "probe_ok", "tag": tag, "ts": ts, "who": w, "errors": errors});
                }
            }
            Err(e) => {
                if errors.len() < 50 {
                    errors.push(json!({"ts": ts, "kind": err_kind(&e)}));
                }
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
        }
    }
}
