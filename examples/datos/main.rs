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
//!
//! Files: this one has the flags and `main`; `config.rs` turns the flags into a `Config`;
//! `node.rs` is the behaviour, its events and the watchers; `metrics.rs` serves
//! `--metrics-addr`; `demo.rs` is `datos demo`.

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

mod config;
mod demo;
mod metrics;
mod node;

use config::*;
use metrics::install_metrics;
use node::*;
