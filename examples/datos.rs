//! `datos`: the `datos` module of the Spanish gen_leader tutorial ("Estructura
//! Líder/Trabajador en Erlang"), as a terminal program.
//!
//! Every node prints the tutorial's callback lines (`no one elected?`, `elected node [..]`,
//! `surrendered (..)`, `leader_call (..)`, `from_leader (..)`, `DOWN (..)`); every line typed
//! on stdin is sent to the leader with `leader_call`, which replies `ok <line>` and
//! broadcasts `vuestro lider dice: <line>` to the followers. The Synch a new leader hands to
//! its followers is the list of everything broadcast so far.
//!
//! Two terminals:
//!
//! ```text
//! cargo run --example datos -- --cookie secreto --name lider1@127.0.0.1:4001 \
//!     --candidates lider1@127.0.0.1:4001,lider2@127.0.0.1:4002
//! cargo run --example datos -- --cookie secreto --name lider2@127.0.0.1:4002 \
//!     --candidates lider1@127.0.0.1:4001,lider2@127.0.0.1:4002
//! ```
//!
//! then type `hola` in either. Kill the leader (Ctrl-C or `kill -9`) and watch the other
//! take over. With `--json`, stdout carries one JSON object per event instead (for scripts
//! and tests); logs always go to stderr (`RUST_LOG`, default `warn`).
//!
//! Behind NAT or a proxy, `--listen HOST:PORT` binds another address than the name's, and
//! `--dial lider2=HOST:PORT` (repeatable, or comma separated) reaches a peer through another
//! address; `tests/faultproxy.rs` uses both to put a fault-injecting proxy on every link.
//!
//! With `--features etcd`, `--backend etcd --etcd-endpoints http://127.0.0.1:2379` lets etcd
//! decide who leads (an etcd lease and a campaign; `--etcd-ttl-s`, `--etcd-election`); the
//! mesh still carries calls and broadcasts. See docs/guide.md, "The etcd backend".
//!
//! `--metrics-addr 127.0.0.1:9100` serves the node's metrics for Prometheus at
//! `http://127.0.0.1:9100/metrics` (see docs/operating.md, "Metrics").
//!
//! A self-contained local demo with three processes:
//!
//! ```text
//! cargo run --example datos -- demo
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use gen_leader::{
    Behaviour, ClusterView, Config, Election, GuardError, LeaderHandle, LeaderReply, LeaderState,
    LossReason, Mode, Node, NodeName, QuorumConfig, ReplyTo, StopReason,
};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The tutorial's `datos` gen_leader module as a terminal program: type lines to send them
/// to the leader with leader_call.
#[derive(Parser, Debug)]
#[command(
    name = "datos",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,

    /// This node, NAME@HOST:PORT (it listens on HOST:PORT).
    #[arg(long, value_name = "NAME@HOST:PORT", required = true)]
    name: Option<String>,

    /// Candidates in priority order, comma separated (the same list on every node).
    #[arg(
        long,
        value_name = "A@H:P,B@H:P,...",
        value_delimiter = ',',
        required = true
    )]
    candidates: Vec<String>,

    /// Workers (nodes that never lead), comma separated.
    #[arg(long, value_name = "A@H:P,...", value_delimiter = ',')]
    workers: Vec<String>,

    /// The cluster's shared secret.
    #[arg(
        long,
        value_name = "SECRET",
        env = "GEN_LEADER_COOKIE",
        hide_env_values = true
    )]
    cookie: Option<String>,

    /// Where the node keeps its term and audit trail [default: ./gen_leader-data/<name>].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Heartbeat interval in ms (library default 100; the failure timeout defaults to 6
    /// heartbeats).
    #[arg(long, value_name = "N")]
    heartbeat_ms: Option<u64>,

    /// Failure timeout in ms: a peer silent this long is DOWN.
    #[arg(long, value_name = "N")]
    failure_ms: Option<u64>,

    /// Listen on HOST:PORT instead of the address in --name (behind NAT, in a container,
    /// or behind a proxy; peers still use the name to authenticate this node).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,

    /// Reach member NAME by dialing HOST:PORT instead of the address in its name (through a
    /// proxy or a tunnel). NAME is the member's full name (lider2@127.0.0.1:4002) or the part
    /// before '@' (lider2). Repeat the flag or separate entries with commas.
    #[arg(long, value_name = "NAME=HOST:PORT", value_delimiter = ',')]
    dial: Vec<String>,

    /// Print one JSON object per event on stdout instead of the human lines.
    #[arg(long)]
    json: bool,

    /// Election mode: `bully` (gen_leader's: availability first) or `quorum` (a leader needs
    /// a majority of the candidates and holds a lease; never two leaders acting at once). The
    /// same on every node.
    #[arg(long, value_enum, default_value_t = ModeArg::Bully)]
    mode: ModeArg,

    /// Quorum mode: the lease E in ms (library default 1000): a voter's promise to a leader.
    #[arg(long, value_name = "N")]
    lease_ms: Option<u64>,

    /// Serve the node's metrics for Prometheus on http://HOST:PORT/metrics
    /// (metrics-exporter-prometheus), e.g. 127.0.0.1:9100.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,

    /// This node's TLS certificate (PEM): every cluster connection runs TLS 1.3 with mutual
    /// authentication (SANs: its host and URI gen-leader://NAME@HOST; docs/operating.md,
    /// "TLS"). Needs the `tls` feature.
    #[arg(long, value_name = "PATH", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,

    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "PATH", requires_all = ["tls_cert", "tls_ca"])]
    tls_key: Option<PathBuf>,

    /// The cluster's CA certificate (PEM): every member's certificate is signed by it.
    #[arg(long, value_name = "PATH", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,

    #[command(flatten)]
    backend: BackendArgs,
}

/// Who decides the leader: the `--backend` and `--etcd-*` flags (kept together; `etcd`
/// needs the cargo feature `etcd`).
#[derive(clap::Args, Debug)]
struct BackendArgs {
    /// Who decides which node leads: `mesh` (the nodes elect among themselves, as --mode
    /// says; the default) or `etcd` (an etcd lease and campaign decide; needs the cargo
    /// feature `etcd` and --etcd-endpoints). The same on every node.
    #[arg(long, value_enum, default_value_t = BackendArg::Mesh)]
    backend: BackendArg,

    /// etcd client URLs, comma separated (--backend etcd), e.g. http://127.0.0.1:2379.
    #[arg(long, value_name = "http://HOST:PORT,...", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,

    /// The etcd election's name, the same on every node of the cluster (--backend etcd)
    /// [default: gen-leader/<cluster name>, i.e. gen-leader/gen_leader].
    #[arg(long, value_name = "NAME")]
    etcd_election: Option<String>,

    /// The etcd lease's TTL in whole seconds, at least 2 (--backend etcd; library default
    /// 5): a crashed leader is replaced after about this long.
    #[arg(long, value_name = "N")]
    etcd_ttl_s: Option<u64>,
}

/// `--backend`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BackendArg {
    Mesh,
    Etcd,
}

/// `--mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ModeArg {
    Bully,
    Quorum,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a local demo: three node processes, an election, calls, a leader killed.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Cmd::Demo)) {
        return demo::run();
    }
    init_logging();
    let config = match build_config(&cli) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(addr) = cli.metrics_addr {
        // Before the node starts: the library registers its metrics then.
        let _in_runtime = rt.enter();
        if let Err(e) = install_metrics(addr) {
            eprintln!("error: --metrics-addr {addr}: {e}");
            return ExitCode::from(2);
        }
    }
    let lease = match (cli.mode, cli.backend.backend) {
        (_, BackendArg::Etcd) => LeaseKind::Etcd,
        (ModeArg::Quorum, _) => LeaseKind::Quorum,
        (ModeArg::Bully, BackendArg::Mesh) => LeaseKind::None,
    };
    let code = rt.block_on(run_node(config, cli.json, lease));
    // The stdin reader may be blocked in a read on a blocking-pool thread, which a normal
    // runtime drop would wait for forever: do not wait for it.
    rt.shutdown_background();
    code
}

/// Installs the Prometheus recorder and serves it on `addr` (on the current runtime).
/// `gen_leader_leader_call_seconds` becomes a histogram with latency buckets (the exporter's
/// default is a summary). The HTTP side is a few lines of tokio rather than the exporter's
/// hyper listener: hyper would double the example's first build.
fn install_metrics(addr: std::net::SocketAddr) -> Result<(), String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const BUCKETS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0,
    ];
    let listener = std::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("gen_leader_leader_call_seconds".into()),
            BUCKETS,
        )
        .and_then(|b| b.install_recorder())
        .map_err(|e| e.to_string())?;
    // At most METRICS_CONNECTIONS connections are read at once (each for at most 2 s); more
    // wait in the listen backlog. An accept error (out of file descriptors) is retried after a
    // pause: retrying at once would spin a core until a descriptor frees up.
    const METRICS_CONNECTIONS: usize = 64;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(METRICS_CONNECTIONS));
    tokio::spawn(async move {
        let mut warned: Option<std::time::Instant> = None;
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let mut sock = match listener.accept().await {
                Ok((sock, _)) => sock,
                Err(e) => {
                    // Once, then at most every 30 s while it lasts.
                    if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                        warned = Some(std::time::Instant::now());
                        tracing::warn!(error = %e, "metrics endpoint: accept failed; retrying every 100 ms");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let _slot = slot;
                // Any request gets the metrics: read the client's request head (up to its blank
                // line, bounded in size and time), answer, close. Answering after a partial read
                // would close the socket with request bytes unread, and the kernel then resets
                // the connection under the client's feet (it loses the answer).
                let mut buf = [0u8; 8192];
                let mut got = 0;
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while got < buf.len() && !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf[got..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n,
                        }
                    }
                })
                .await;
                handle.run_upkeep();
                let body = handle.render();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(())
}

fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // RUST_LOG holds `target=level` directives (`gen_leader=debug,warn`); unset or unparsable:
    // `warn`. A `Targets` filter rather than an `EnvFilter`, whose regex engine would be the
    // biggest part of the example's first build.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::WARN));
    // Colour only on a terminal: escape codes in a log file are noise.
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .finish()
        .with(filter)
        .init();
}

fn build_config(cli: &Cli) -> Result<Config, String> {
    // First: without the feature, `--backend etcd` is this one line whatever else is wrong.
    check_backend_args(cli)?;
    let name = cli
        .name
        .as_deref()
        .ok_or("--name NAME@HOST:PORT is required")?;
    let me: NodeName = name.parse().map_err(|e| format!("--name: {e}"))?;
    let cookie = match cli.cookie.as_deref() {
        Some(c) if !c.is_empty() => c,
        _ => {
            return Err(
                "no cookie: pass --cookie SECRET or set GEN_LEADER_COOKIE (the same secret on \
                 every node)"
                    .into(),
            )
        }
    };
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| Path::new("gen_leader-data").join(me.name()));
    let mut b = Config::builder(name)
        .candidates(cli.candidates.iter().map(|s| s.trim()))
        .workers(
            cli.workers
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty()),
        )
        .cookie(cookie)
        .data_dir(data_dir);
    if let Some(ms) = cli.heartbeat_ms {
        b = b.heartbeat(Duration::from_millis(ms));
    }
    if let Some(ms) = cli.failure_ms {
        b = b.failure_timeout(Duration::from_millis(ms));
    }
    match (cli.mode, cli.lease_ms) {
        (ModeArg::Bully, Some(_)) => {
            return Err("--lease-ms applies to --mode quorum only".into());
        }
        (ModeArg::Bully, None) => {}
        (ModeArg::Quorum, lease) => {
            let mut q = QuorumConfig::default();
            if let Some(ms) = lease {
                q = q.lease(Duration::from_millis(ms));
            }
            b = b.mode(Mode::Quorum(q));
        }
    }
    b = apply_backend(&cli.backend, b)?;
    if let Some(addr) = cli.listen.as_deref() {
        b = b.listen(parse_host_port(addr).map_err(|e| format!("--listen {addr:?}: {e}"))?);
    }
    let members: Vec<&str> = cli
        .candidates
        .iter()
        .chain(&cli.workers)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    let mut dialed: Vec<String> = Vec::new();
    for entry in cli.dial.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (peer, addr) =
            parse_dial(entry, &members).map_err(|e| format!("--dial {entry:?}: {e}"))?;
        if dialed.contains(&peer) {
            return Err(format!("--dial: {peer} is given more than once"));
        }
        b = b.dial_addr(&peer, addr);
        dialed.push(peer);
    }
    #[cfg(feature = "tls")]
    if let (Some(cert), Some(key), Some(ca)) = (&cli.tls_cert, &cli.tls_key, &cli.tls_ca) {
        let tls = gen_leader::config::TlsConfig::from_pem_files(cert, key, ca)
            .map_err(|e| format!("TLS: {e}"))?;
        b = b.tls(tls);
    }
    #[cfg(not(feature = "tls"))]
    if cli.tls_cert.is_some() {
        return Err(
            "--tls-cert: this datos was built without the `tls` feature: \
             cargo run --features tls --example datos -- ..."
                .into(),
        );
    }
    b.build().map_err(|e| format!("invalid configuration: {e}"))
}

/// The default etcd election of a cluster: `gen-leader/<cluster name>` (datos keeps the
/// library's default cluster name).
#[cfg(feature = "etcd")]
const DEFAULT_CLUSTER: &str = "gen_leader";

/// Refuses `--backend`/`--etcd-*` combinations that cannot work, each with one clear line.
fn check_backend_args(cli: &Cli) -> Result<(), String> {
    let a = &cli.backend;
    match a.backend {
        BackendArg::Mesh => {
            let stray = [
                (!a.etcd_endpoints.is_empty(), "--etcd-endpoints"),
                (a.etcd_election.is_some(), "--etcd-election"),
                (a.etcd_ttl_s.is_some(), "--etcd-ttl-s"),
            ];
            if let Some((_, flag)) = stray.iter().find(|(set, _)| *set) {
                return Err(format!("{flag} applies to --backend etcd only"));
            }
            Ok(())
        }
        BackendArg::Etcd if !cfg!(feature = "etcd") => Err(
            "--backend etcd: this datos was built without the `etcd` feature: cargo run \
             --features etcd --example datos -- ..."
                .into(),
        ),
        BackendArg::Etcd => {
            if cli.mode == ModeArg::Quorum {
                return Err(
                    "--mode quorum does not combine with --backend etcd: etcd decides \
                            (its lease gives the guarantees of quorum mode); drop --mode"
                        .into(),
                );
            }
            if a.etcd_endpoints.iter().all(|e| e.trim().is_empty()) {
                return Err(
                    "--backend etcd needs --etcd-endpoints http://HOST:PORT[,...] \
                            (e.g. http://127.0.0.1:2379)"
                        .into(),
                );
            }
            Ok(())
        }
    }
}

/// Sets the backend on `b` (checked by `check_backend_args`).
#[cfg(feature = "etcd")]
fn apply_backend(
    a: &BackendArgs,
    b: gen_leader::ConfigBuilder,
) -> Result<gen_leader::ConfigBuilder, String> {
    use gen_leader::config::Backend;
    use gen_leader::etcd::EtcdConfig;
    if a.backend != BackendArg::Etcd {
        return Ok(b);
    }
    let election = a
        .etcd_election
        .clone()
        .unwrap_or_else(|| format!("gen-leader/{DEFAULT_CLUSTER}"));
    let endpoints = a
        .etcd_endpoints
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty());
    let mut e = EtcdConfig::new(endpoints, election);
    if let Some(s) = a.etcd_ttl_s {
        e = e.with_ttl(Duration::from_secs(s));
    }
    Ok(b.backend(Backend::Etcd(e)))
}

#[cfg(not(feature = "etcd"))]
fn apply_backend(
    _a: &BackendArgs,
    b: gen_leader::ConfigBuilder,
) -> Result<gen_leader::ConfigBuilder, String> {
    Ok(b)
}

/// Checks a `HOST:PORT` address (an IPv6 host in brackets: `[::1]:4001`) and returns it
/// trimmed.
fn parse_host_port(s: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected HOST:PORT, e.g. 127.0.0.1:4001 or [::1]:4001";
    let s = s.trim();
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("no ':' before the port: {EXPECTED}"))?;
    if host.is_empty() || host == "[]" {
        return Err(format!("the host is empty: {EXPECTED}"));
    }
    if host.chars().any(char::is_whitespace) {
        return Err(format!("the host contains whitespace: {EXPECTED}"));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.contains(':') && !bracketed {
        return Err(format!("an IPv6 host must be in brackets: {EXPECTED}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.to_string()),
        _ => Err(format!("the port {port:?} is not a number from 1 to 65535")),
    }
}

/// Parses one `--dial` entry, `NAME=HOST:PORT`, into the member's full name and the address.
/// `NAME` is a full member name or the part of one before '@'.
fn parse_dial(entry: &str, members: &[&str]) -> Result<(String, String), String> {
    let (name, addr) = entry
        .split_once('=')
        .ok_or("expected NAME=HOST:PORT, e.g. lider2=127.0.0.1:9002")?;
    let (name, addr) = (name.trim(), addr.trim());
    if name.is_empty() {
        return Err("the member name before '=' is empty".into());
    }
    let addr = parse_host_port(addr)?;
    let peer = if name.contains('@') {
        let wanted: NodeName = name.parse().map_err(|e| format!("{e}"))?;
        members
            .iter()
            .find(|m| m.parse::<NodeName>().is_ok_and(|n| n == wanted))
            .map(|m| m.to_string())
    } else {
        members
            .iter()
            .find(|m| m.split_once('@').is_some_and(|(short, _)| short == name))
            .map(|m| m.to_string())
    };
    let peer = peer.ok_or_else(|| {
        format!(
            "{name} is not a member (members: {})",
            if members.is_empty() {
                "none".to_string()
            } else {
                members.join(", ")
            }
        )
    })?;
    Ok((peer, addr))
}

/// Milliseconds since the UNIX epoch, for offline history checks.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Where events go: human lines or JSON lines, always flushed.
#[derive(Clone)]
struct Out {
    json: bool,
    me: String,
    /// Whether etcd decides: the view events then carry `etcd_unavailable`.
    etcd: bool,
}

impl Out {
    /// Prints one event: `human` in human mode, or a JSON object with `event`, `node`,
    /// `leader`, `term`, `at_ms` (wall-clock Unix time in ms, fractional; `t_ms` is the same
    /// value under its first name) and `fields`.
    fn emit(
        &self,
        event: &str,
        leader: Option<&NodeName>,
        term: u64,
        fields: Value,
        human: impl FnOnce() -> String,
    ) {
        let line = if self.json {
            let at_ms = now_ms();
            let mut obj = json!({
                "event": event,
                "node": self.me,
                "leader": leader.map(|l| l.to_string()),
                "term": term,
                "at_ms": at_ms,
                "t_ms": at_ms,
            });
            if let (Some(o), Value::Object(f)) = (obj.as_object_mut(), fields) {
                o.extend(f);
            }
            obj.to_string()
        } else {
            human()
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. the reader went away) must not stop the node.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Prints one event carrying the node's *current* view. The view is read while stdout is
    /// locked: the node publishes its view before it runs a leadership callback, so an event
    /// printed here never shows an older term than a callback event printed before it.
    fn emit_view(
        &self,
        event: &str,
        handle: &LeaderHandle<Datos>,
        fields: Value,
        human: impl FnOnce(&ClusterView) -> String,
    ) {
        let _order = std::io::stdout().lock();
        let view = handle.view();
        // Every view event says which peers refused us (or we them) and why, so a script
        // can tell "alone because misconfigured" from "alone because the others are down".
        let mut fields = fields;
        if let Value::Object(f) = &mut fields {
            f.insert("refused".into(), refused_json(&view));
            if self.etcd {
                f.insert("etcd_unavailable".into(), etcd_unavailable_json(&view));
            }
        }
        self.emit(event, view.leader.as_ref(), view.term.get(), fields, || {
            human(&view)
        })
    }
}

/// `[{"peer": NAME, "reason": TEXT}, ...]`: the view's refused connections.
fn refused_json(view: &ClusterView) -> Value {
    Value::Array(
        view.refused
            .iter()
            .map(|(peer, reason)| json!({ "peer": peer.to_string(), "reason": reason }))
            .collect(),
    )
}

/// `{"op": TEXT, "kind": TEXT}` while etcd is unreachable (which operation failed, how), else
/// `null`.
fn etcd_unavailable_json(view: &ClusterView) -> Value {
    view.backend_unavailable.map_or(
        Value::Null,
        |(op, kind)| json!({ "op": op.to_string(), "kind": kind.to_string() }),
    )
}

fn names(v: &[&NodeName]) -> String {
    let v: Vec<String> = v.iter().map(|n| n.to_string()).collect();
    format!("[{}]", v.join(", "))
}

fn leader_str(l: Option<&NodeName>) -> String {
    l.map_or_else(|| "none".to_string(), |l| l.to_string())
}

/// The tutorial's `datos` callback module.
struct Datos {
    out: Out,
    /// Every message broadcast so far (the Synch).
    history: Vec<String>,
}

impl Behaviour for Datos {
    type Call = String;
    type Reply = String;
    type Cast = String;
    type Synch = Vec<String>;
    type Broadcast = String;
    type Info = ();

    async fn elected(&mut self, e: &Election<'_>, joined: Option<&NodeName>) -> Vec<String> {
        let alive = e.alive();
        let fields = json!({
            "joined": joined.map(|j| j.to_string()),
            "alive": alive.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "synch": self.history,
        });
        self.out.emit(
            "elected",
            e.leader(),
            e.term().get(),
            fields,
            || match joined {
                None => format!(
                    "no one elected? elected {} (this node): term {}, alive {}",
                    e.me(),
                    e.term(),
                    names(&alive)
                ),
                Some(n) => format!(
                    "elected node [{n}]: term {}, alive {}",
                    e.term(),
                    names(&alive)
                ),
            },
        );
        self.history.clone()
    }

    async fn surrendered(&mut self, synch: Vec<String>, e: &Election<'_>) {
        let fields = json!({ "synch": synch });
        self.out
            .emit("surrendered", e.leader(), e.term().get(), fields, || {
                format!(
                    "surrendered ({synch:?}): leader {} term {}",
                    leader_str(e.leader()),
                    e.term()
                )
            });
        self.history = synch;
    }

    async fn handle_leader_call(
        &mut self,
        request: String,
        _from: ReplyTo<String>,
        e: &Election<'_>,
    ) -> LeaderReply<String, String> {
        self.out.emit(
            "leader_call",
            e.leader(),
            e.term().get(),
            json!({ "request": request }),
            || format!("leader_call ({}): {request:?}", leader_str(e.leader())),
        );
        let broadcast = format!("vuestro lider dice: {request}");
        self.history.push(broadcast.clone());
        LeaderReply::ReplyAndBroadcast(format!("ok {request}"), broadcast)
    }

    async fn from_leader(&mut self, message: String, e: &Election<'_>) {
        self.out.emit(
            "from_leader",
            e.leader(),
            e.term().get(),
            json!({ "message": message }),
            || format!("from_leader ({}): {message:?}", leader_str(e.leader())),
        );
        self.history.push(message);
    }

    async fn handle_down(&mut self, node: &NodeName, e: &Election<'_>) -> Option<String> {
        self.out.emit(
            "down",
            e.leader(),
            e.term().get(),
            json!({ "down": node.to_string() }),
            || format!("DOWN ({node}): {}", leader_str(e.leader())),
        );
        None
    }

    /// A local call: this node's copy of the history.
    async fn handle_call(&mut self, _request: String, _e: &Election<'_>) -> String {
        format!("{:?}", self.history)
    }

    async fn terminate(&mut self, reason: StopReason) {
        tracing::info!(?reason, "datos stopping");
    }
}

/// Whose lease a leader holds, if any: what `lease` events say.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LeaseKind {
    /// Bully mode on the mesh: no lease.
    None,
    /// Quorum mode: renewed by a majority every heartbeat.
    Quorum,
    /// The etcd backend: renewed by etcd keep-alives.
    Etcd,
}

async fn run_node(config: Config, json: bool, lease: LeaseKind) -> ExitCode {
    let out = Out {
        json,
        me: config.me().to_string(),
        etcd: lease == LeaseKind::Etcd,
    };
    let behaviour = Datos {
        out: out.clone(),
        history: Vec::new(),
    };
    let handle = match Node::start(config, behaviour).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: cannot start the node: {e}");
            return ExitCode::FAILURE;
        }
    };
    out.emit_view("ready", &handle, json!({}), |view| {
        format!(
            "ready: {} (candidates {}); type a line to send it to the leader",
            view.me,
            names(&handle.candidates().iter().collect::<Vec<_>>())
        )
    });

    tokio::spawn(watch_leader(handle.clone(), out.clone()));
    if lease != LeaseKind::None {
        tokio::spawn(watch_lease(handle.clone(), out.clone(), lease));
    }
    tokio::spawn(read_stdin(handle.clone(), out.clone()));

    wait_for_stop_signal().await;
    handle.shutdown().await;
    ExitCode::SUCCESS
}

/// Emits a `leader` event whenever the view's leader or term changes.
async fn watch_leader(handle: LeaderHandle<Datos>, out: Out) {
    let mut rx = handle.changes();
    let mut last = None;
    let mut last_refused = Vec::new();
    let mut last_etcd = Value::Null;
    loop {
        let view = rx.borrow_and_update().clone();
        let etcd = etcd_unavailable_json(&view);
        if out.etcd && etcd != last_etcd {
            last_etcd = etcd;
            // `etcd`: etcd became unreachable (which operation failed, how) or reachable again.
            out.emit_view(
                "etcd",
                &handle,
                json!({}),
                |view| match etcd_unavailable_json(view) {
                    Value::Null => "etcd: reachable again".to_string(),
                    v => format!(
                        "etcd: unavailable ({}: {}); no new leader while it lasts",
                        v["op"].as_str().unwrap_or("?"),
                        v["kind"].as_str().unwrap_or("?")
                    ),
                },
            );
        }
        if view.refused != last_refused {
            last_refused = view.refused.clone();
            out.emit_view("refused", &handle, json!({}), |view| {
                if view.refused.is_empty() {
                    "refused: none (every refused peer has connected)".to_string()
                } else {
                    let lines: Vec<String> = view
                        .refused
                        .iter()
                        .map(|(_, r)| format!("refused: {r}"))
                        .collect();
                    lines.join("\n")
                }
            });
        }
        let key = (view.leader.clone(), view.term);
        if last.as_ref() != Some(&key) {
            last = Some(key);
            out.emit_view("leader", &handle, json!({}), |view| {
                format!(
                    "leader: {} term {}",
                    leader_str(view.leader.as_ref()),
                    view.term
                )
            });
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Quorum mode and the etcd backend: a `lease` event whenever this leader's lease end moves
/// (at most once per renewal round), and a `stepped_down` event as soon as it stops acting
/// (its guard is lost: the lease ran out, it was taken over, or the node stops).
async fn watch_lease(handle: LeaderHandle<Datos>, out: Out, kind: LeaseKind) {
    let renewed = match kind {
        LeaseKind::Etcd => "renewed by etcd keep-alives",
        _ => "renewed by a majority every heartbeat",
    };
    let mut rx = handle.watch_state();
    let mut last_until = None;
    let mut guarded = None;
    let mut leased = None;
    loop {
        let state = rx.borrow_and_update().clone();
        if let LeaderState::Leading { term, until } = state {
            if guarded != Some(term) {
                if let Ok(guard) = handle.guard() {
                    guarded = Some(term);
                    let (out, handle) = (out.clone(), handle.clone());
                    tokio::spawn(async move {
                        let why = guard.lost().await;
                        let leader = handle.view().leader;
                        out.emit(
                            "stepped_down",
                            leader.as_ref(),
                            term.get(),
                            json!({ "reason": loss_kind(&why), "detail": why.to_string() }),
                            || format!("stepped down: term {term}, {why}"),
                        );
                    });
                }
            }
            if let Some(until) = until.filter(|u| last_until != Some(*u)) {
                last_until = Some(until);
                // A human reads the first lease of a term; a script gets every move.
                let first = leased != Some(term);
                leased = Some(term);
                if out.json || first {
                    let now = std::time::Instant::now();
                    let until_ms = if until >= now {
                        now_ms() + (until - now).as_secs_f64() * 1000.0
                    } else {
                        now_ms() - (now - until).as_secs_f64() * 1000.0
                    };
                    out.emit(
                        "lease",
                        Some(&handle.me().clone()),
                        term.get(),
                        json!({ "until_ms": until_ms }),
                        || {
                            format!(
                                "lease: term {term}, {:.0} ms, {renewed}",
                                until_ms - now_ms()
                            )
                        },
                    );
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A short name for why a leadership ended, for scripts.
fn loss_kind(e: &GuardError) -> &'static str {
    match e {
        GuardError::Lost { reason, .. } => match reason {
            LossReason::LeaseExpired => "lease_expired",
            LossReason::TakenOver => "taken_over",
            LossReason::NewerTerm => "newer_term",
            LossReason::LeaderDown => "leader_down",
            _ => "lost",
        },
        GuardError::Stopped => "stopped",
        _ => "lost",
    }
}

/// Sends every non-empty stdin line to the leader; EOF only stops reading.
async fn read_stdin(handle: LeaderHandle<Datos>, out: Out) {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read stdin");
                return;
            }
        };
        let request = line.trim().to_string();
        if request.is_empty() {
            continue;
        }
        let result = handle.leader_call(request.clone()).await;
        match result {
            Ok(reply) => out.emit_view(
                "reply",
                &handle,
                json!({ "request": request, "reply": reply }),
                |_| format!("reply: {reply}"),
            ),
            Err(e) => out.emit_view(
                "error",
                &handle,
                json!({ "request": request, "error": format!("{e:?}: {e}") }),
                |_| format!("error: {e}"),
            ),
        }
    }
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling available: run until killed.
        std::future::pending::<()>().await;
    }
}

/// `datos demo`: three child processes of this executable, narrated. Starting, reading and
/// killing the children is the dev-only `testkit` crate's `Proc` (each child is killed and
/// reaped when its `Proc` drops, on every exit path).
mod demo {
    use super::*;
    use std::sync::Mutex;
    use testkit::{Event, Proc};

    const WAIT: Duration = Duration::from_secs(15);

    struct Child {
        name: String,
        short: String,
        proc: Proc,
        /// How many of its events have been narrated.
        seen: usize,
    }

    /// The temp dir, for the Ctrl-C/SIGTERM/SIGHUP handler: a signal would otherwise end the
    /// demo without running any destructor.
    static TMP: Mutex<Option<PathBuf>> = Mutex::new(None);

    fn tmp_slot() -> std::sync::MutexGuard<'static, Option<PathBuf>> {
        TMP.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[derive(Default, Clone)]
    struct NodeState {
        leader: Option<String>,
        term: u64,
        events: Vec<Value>,
    }

    struct Demo {
        start: Instant,
        procs: Vec<Child>,
        state: Vec<NodeState>,
    }

    pub fn run() -> ExitCode {
        // On Ctrl-C, SIGTERM or SIGHUP: the children are killed, the temp dir removed, exit 130.
        testkit::kill_children_on_interrupt(|_| {
            if let Some(dir) = tmp_slot().take() {
                let _ = std::fs::remove_dir_all(dir);
            }
            println!("\nInterrupted: the demo's nodes were stopped.");
        });
        match run_inner() {
            Ok(()) => {
                println!("\nDemo finished: every step happened as expected.");
                ExitCode::SUCCESS
            }
            Err(msg) => {
                println!("\nDEMO FAILED: {msg}");
                ExitCode::FAILURE
            }
        }
    }

    /// `n` ports on 127.0.0.1 that were free a moment ago.
    fn free_ports(n: usize) -> Result<Vec<u16>, String> {
        let ls =
            testkit::datos::hold_ports(n).map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
        ls.iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())
    }

    fn run_inner() -> Result<(), String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find my executable: {e}"))?;
        let tmp = tempfile::Builder::new()
            .prefix("gen_leader-demo-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let ports = free_ports(3)?;
        let names: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("lider{}@127.0.0.1:{p}", i + 1))
            .collect();
        let candidates = names.join(",");
        *tmp_slot() = Some(tmp.path().to_path_buf());

        println!("gen_leader demo: the tutorial's `datos` module on three local processes.");
        println!("Candidates, in priority order: {}", names.join(", "));
        println!("Data and logs: {}\n", tmp.path().display());

        let mut procs = Vec::new();
        let start = Instant::now();
        println!("1. Starting the three nodes...");
        for name in &names {
            let short = name.split('@').next().unwrap_or(name).to_string();
            let dir = tmp.path().join(&short);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let mut cmd = testkit::datos::datos_node(&exe, name, &candidates, &dir);
            cmd.env("GEN_LEADER_COOKIE", "demo-cookie");
            let proc = Proc::spawn(cmd, &short, &dir.join("stderr.log"))
                .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
            println!("   started {short} (pid {}) as {name}", proc.pid());
            procs.push(Child {
                name: name.clone(),
                short,
                proc,
                seen: 0,
            });
        }
        let mut d = Demo {
            start,
            procs,
            state: vec![NodeState::default(); 3],
        };
        let result = d.script();
        if result.is_err() {
            for p in &d.procs {
                println!("   (logs of {}: {})", p.short, p.proc.log().display());
            }
            // Keep the logs for inspection.
            *tmp_slot() = None;
            let _ = tmp.keep();
        }
        result
    }

    impl Demo {
        fn short(&self, full: Option<&str>) -> String {
            match full {
                None => "nobody".into(),
                Some(f) => self
                    .procs
                    .iter()
                    .find(|p| p.name == f)
                    .map_or_else(|| f.to_string(), |p| p.short.clone()),
            }
        }

        fn alive(&self) -> Vec<usize> {
            (0..self.procs.len())
                .filter(|&i| self.procs[i].proc.is_running())
                .collect()
        }

        /// Narrates one child's event.
        fn narrate(&self, i: usize, v: &Value) {
            let who = &self.procs[i].short;
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            let leader = self.short(v["leader"].as_str());
            let term = v["term"].as_u64().unwrap_or(0);
            let text = match v["event"].as_str().unwrap_or("") {
                "ready" => format!("{who} is up and listening"),
                "leader" if v["leader"].is_null() => {
                    format!("{who} has no leader (term {term}): election running")
                }
                "leader" => format!("{who} now sees leader {leader}, term {term}"),
                "elected" if v["joined"].is_null() => {
                    format!("{who}: no one elected? -> I am the leader, term {term}")
                }
                "elected" => format!(
                    "{who}: elected node [{}] -> it joined me, term {term}",
                    self.short(v["joined"].as_str())
                ),
                "surrendered" => format!(
                    "{who}: surrendered ({}) -> follows {leader}, term {term}",
                    v["synch"]
                ),
                "leader_call" => format!("{who}: leader_call ({leader}): {:?}", s("request")),
                "from_leader" => format!("{who}: from_leader ({leader}): {:?}", s("message")),
                "reply" => format!("{who}: reply: {}", s("reply")),
                "down" => format!("{who}: DOWN ({}): {leader}", self.short(v["down"].as_str())),
                "error" => format!("{who}: error: {}", s("error")),
                other => format!("{who}: {other}"),
            };
            println!("   [{:>6} ms] {text}", self.start.elapsed().as_millis());
        }

        /// Whether a child printed an event not narrated yet.
        fn has_new(&self) -> bool {
            self.procs.iter().any(|p| p.proc.mark() > p.seen)
        }

        /// Narrates the children's new events in the order they arrived and records the
        /// views; whether there were any.
        fn pump(&mut self) -> bool {
            let mut new: Vec<(usize, Event)> = Vec::new();
            for (i, p) in self.procs.iter_mut().enumerate() {
                let seen = p.seen;
                let evs = p.proc.with_events(|evs| evs[seen..].to_vec());
                p.seen += evs.len();
                new.extend(evs.into_iter().map(|e| (i, e)));
            }
            new.sort_by_key(|(_, e)| e.seq);
            // Lines that are not JSON (there should be none) are not narrated.
            for (i, e) in new.iter().filter(|(_, e)| e.event() != "not_json") {
                let v = &e.v;
                self.narrate(*i, v);
                let st = &mut self.state[*i];
                if matches!(v["event"].as_str(), Some("leader" | "ready")) {
                    st.leader = v["leader"].as_str().map(str::to_string);
                    st.term = v["term"].as_u64().unwrap_or(0);
                }
                st.events.push(v.clone());
            }
            !new.is_empty()
        }

        /// Pumps events until `cond` returns `Some`, or fails after `WAIT`.
        fn wait<T>(
            &mut self,
            what: &str,
            mut cond: impl FnMut(&Self) -> Option<T>,
        ) -> Result<T, String> {
            let deadline = Instant::now() + WAIT;
            loop {
                if let Some(t) = cond(self) {
                    return Ok(t);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!("timed out after {WAIT:?} waiting for {what}"));
                }
                if self.pump() {
                    continue;
                }
                if self.procs.iter().all(|p| p.proc.stdout_closed()) {
                    return Err(format!("every node exited while waiting for {what}"));
                }
                testkit::wait_for(left, || self.has_new().then_some(()));
            }
        }

        /// The leader and term all of `nodes` agree on, if they do.
        fn agreement(&self, nodes: &[usize]) -> Option<(String, u64)> {
            let first = &self.state[nodes[0]];
            let l = first.leader.clone()?;
            nodes
                .iter()
                .all(|&i| {
                    self.state[i].leader.as_deref() == Some(&l) && self.state[i].term == first.term
                })
                .then_some((l, first.term))
        }

        fn index_of(&self, name: &str) -> Option<usize> {
            self.procs.iter().position(|p| p.name == name)
        }

        fn has_event(&self, i: usize, event: &str, key: &str, val: &str) -> bool {
            self.state[i]
                .events
                .iter()
                .any(|v| v["event"] == event && v[key] == val)
        }

        fn send_line(&mut self, i: usize, line: &str) -> Result<(), String> {
            let p = &mut self.procs[i];
            println!(
                "   [{:>6} ms] typing {line:?} on {}'s stdin",
                self.start.elapsed().as_millis(),
                p.short
            );
            p.proc
                .send_line(line)
                .map_err(|e| format!("cannot write to {}: {e}", p.short))
        }

        /// Sends `line` from node `from` and waits for its reply and every follower's
        /// broadcast.
        fn call(&mut self, from: usize, leader: usize, line: &str) -> Result<(), String> {
            self.send_line(from, line)?;
            let bcast = format!("vuestro lider dice: {line}");
            let followers: Vec<usize> = self.alive().into_iter().filter(|&i| i != leader).collect();
            self.wait(&format!("the reply to {line:?} and its broadcast"), |d| {
                let replied = d.state[from].events.iter().any(|v| {
                    (v["event"] == "reply" || v["event"] == "error") && v["request"] == line
                });
                let served = d.has_event(leader, "leader_call", "request", line);
                let spread = followers
                    .iter()
                    .all(|&f| d.has_event(f, "from_leader", "message", &bcast));
                (replied && served && spread).then_some(())
            })?;
            if let Some(err) = self.state[from]
                .events
                .iter()
                .find(|v| v["event"] == "error" && v["request"] == line)
            {
                return Err(format!("the call {line:?} failed: {}", err["error"]));
            }
            Ok(())
        }

        fn script(&mut self) -> Result<(), String> {
            let all = self.alive();
            let (leader, term) = self.wait("the three nodes to agree on a leader", |d| {
                d.agreement(&all)
            })?;
            let elected_ms = self.start.elapsed().as_millis();
            let li = self.index_of(&leader).ok_or("unknown leader")?;
            println!(
                "\n=> All three agree: the leader is {} ({leader}), term {term}, {elected_ms} ms \
                 after the processes were started.\n",
                self.procs[li].short
            );
            if li != 0 {
                println!(
                    "   ({} is not the first candidate: it was listening before the others, \
                     found nobody up and elected itself, and the others joined it. A sitting \
                     leader is not replaced by a higher-priority candidate that joins later \
                     unless `preempt` is configured.)\n",
                    self.procs[li].short
                );
            }

            let followers: Vec<usize> = all.iter().copied().filter(|&i| i != li).collect();
            let caller = *followers.last().ok_or("no follower")?;
            println!(
                "2. leader_call from the follower {}: its stdin lines go to the leader, which \
                 replies and broadcasts to every follower.",
                self.procs[caller].short
            );
            for line in ["hola", "¿qué tal?", "adiós"] {
                self.call(caller, li, line)?;
            }

            let old_short = self.procs[li].short.clone();
            println!(
                "\n3. Killing the leader {old_short} with SIGKILL (no goodbye to its peers)..."
            );
            let killed_at = Instant::now();
            self.procs[li].proc.kill();
            println!(
                "   [{:>6} ms] {old_short} killed",
                self.start.elapsed().as_millis()
            );
            let survivors = self.alive();
            let old = leader.clone();
            let (new_leader, new_term) = self.wait("the survivors to elect a new leader", |d| {
                d.agreement(&survivors)
                    .filter(|(l, t)| *l != old && *t > term)
            })?;
            let failover_ms = killed_at.elapsed().as_millis();
            let ni = self.index_of(&new_leader).ok_or("unknown new leader")?;
            self.wait("the new leader's DOWN of the old leader", |d| {
                d.has_event(ni, "down", "down", &old).then_some(())
            })?;
            println!(
                "\n=> New leader: {} ({new_leader}), term {term} -> {new_term}, {failover_ms} ms \
                 after the kill; it ran handle_down (DOWN) for {old_short}.",
                self.procs[ni].short
            );
            println!(
                "   (The OS closed the killed process's connections, so its peers noticed at \
                 once; a hung leader would be declared DOWN after the failure timeout.)\n"
            );

            let remaining = *self
                .alive()
                .iter()
                .find(|&&i| i != ni)
                .ok_or("no follower left")?;
            println!(
                "4. leader_call from the remaining follower {}: the new leader serves it (its \
                 Synch carried the history).",
                self.procs[remaining].short
            );
            self.call(remaining, ni, "sigo aquí")?;

            println!("\n5. Stopping the remaining nodes (SIGTERM: graceful shutdown).");
            for i in self.alive() {
                let p = &mut self.procs[i];
                p.proc.close_stdin();
                // SIGTERM (the node shuts down gracefully), or killed after 3 s.
                let how = if p.proc.terminate(Duration::from_secs(3)) {
                    "graceful shutdown"
                } else {
                    "killed"
                };
                println!("   stopped {} ({how})", p.short);
            }
            println!(
                "\nSummary: election {elected_ms} ms from start; failover {failover_ms} ms after \
                 SIGKILL of the leader (default heartbeat 100 ms, failure timeout 600 ms)."
            );
            Ok(())
        }
    }
}
