//! `gen-leader`: look at a running gen-leader cluster from a terminal.
//!
//! - `gen-leader status NAME@HOST:PORT` — that node's view (`--all`: every member's, side by
//!   side, so that disagreement shows; `--json` for scripts);
//! - `gen-leader watch NAME@HOST:PORT` — one line per leadership change, until Ctrl-C;
//! - `gen-leader history --data-dir DIR...` — who led which term, when, and why it ended,
//!   from the nodes' audit trails.
//!
//! `status` and `watch` connect to the node's cluster port as an *observer*: authenticated
//! with the cluster cookie like a member, never counted as one (see `docs/operating.md`).
//! Why a crate of its own: the library must not depend on clap.
#![forbid(unsafe_code)]

mod fail;
mod history;
mod link;
mod show;
mod status;
mod time;
mod watch;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use gen_leader::wire::handshake::ObserverConfig;
use gen_leader::NodeName;

use fail::Fail;

/// Look at a running gen-leader cluster: status, watch, history.
#[derive(Debug, Parser)]
#[command(name = "gen-leader", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Print a node's view of the cluster (with --all, every member's side by side).
    ///
    /// Exit codes: 0 the view was printed (with --all: every member answered and all agree
    /// on one leader and term); 1 the node could not be reached or refused us; 2 usage;
    /// 3 (--all) the members disagree, or some could not be read.
    Status(StatusArgs),
    /// Print one line per leadership change, as a node sees it, until Ctrl-C.
    ///
    /// If the node goes away, the watch continues through another member.
    Watch(WatchArgs),
    /// Print the leadership timeline from audit trails (DIR/audit.jsonl), several merged.
    History(HistoryArgs),
}

/// How to reach and authenticate to a node.
#[derive(Debug, Args)]
struct Conn {
    /// The node to ask, NAME@HOST:PORT, as in the cluster's configuration.
    node: NodeName,
    /// The cluster cookie. Prefer GEN_LEADER_COOKIE or --cookie-file: a command line is
    /// visible to every user of the machine.
    #[arg(long, env = "GEN_LEADER_COOKIE", hide_env_values = true)]
    cookie: Option<String>,
    /// Read the cookie from this file (trailing newline ignored).
    #[arg(long, value_name = "PATH", conflicts_with = "cookie")]
    cookie_file: Option<PathBuf>,
    /// Connect to this HOST:PORT instead of the address in the node's name.
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<String>,
    /// Refuse a node of another cluster (default: any).
    #[arg(long)]
    cluster: Option<String>,
    /// Time allowed to connect, for the handshake and for each answer.
    #[arg(long, default_value = "3s", value_parser = time::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    tls: link::TlsArgs,
}

impl Conn {
    /// The observer's configuration, or why there is none.
    fn observer(&self) -> Result<link::Link, Fail> {
        let cookie = match (&self.cookie, &self.cookie_file) {
            (Some(c), _) => c.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| Fail::usage(format!("cannot read {}: {e}", path.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            (None, None) => {
                return Err(Fail::usage(
                    "no cookie: give --cookie, --cookie-file or set GEN_LEADER_COOKIE",
                ))
            }
        };
        let mut cfg = ObserverConfig::new(format!("gen-leader-cli/{}", whoami()), cookie);
        cfg.cluster = self.cluster.clone();
        cfg.timeout = self.timeout;
        Ok(link::Link {
            observer: cfg,
            tls: self.tls.load()?,
        })
    }

    /// The address of the node asked.
    fn addr(&self) -> String {
        self.addr.clone().unwrap_or_else(|| self.node.addr())
    }
}

/// Who runs the command, for the node's logs (user@host, cut to fit an observer's name).
fn whoami() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let mut s: String = user.chars().filter(|c| !c.is_control()).take(40).collect();
    if s.is_empty() {
        s.push('?');
    }
    s
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    conn: Conn,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Ask every member the node lists, and print their views side by side.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Args)]
struct WatchArgs {
    #[command(flatten)]
    conn: Conn,
    /// Print each status as one JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct HistoryArgs {
    /// A node's data directory (its audit.jsonl), or the audit file itself; repeat for
    /// several nodes: their trails are merged by time.
    #[arg(long = "data-dir", value_name = "DIR", required = true)]
    data_dirs: Vec<PathBuf>,
    /// Only leaderships that ended after this time: RFC 3339 (2025-05-01T12:00:00Z) or a
    /// time ago (-10m, -2h, -1d).
    #[arg(long, allow_hyphen_values = true)]
    since: Option<String>,
    /// Print the timeline as JSON.
    #[arg(long)]
    json: bool,
    /// Print every audit record, merged by time, instead of the timeline.
    #[arg(long)]
    events: bool,
}

/// Writes a line to stdout; a closed stdout (`| head`) ends the program quietly.
fn out(line: impl AsRef<str>) {
    let mut o = std::io::stdout().lock();
    if writeln!(o, "{}", line.as_ref())
        .and_then(|()| o.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gen-leader: cannot start the runtime: {e}");
            return ExitCode::from(fail::EXIT_FAILED);
        }
    };
    let result = match cli.cmd {
        Cmd::Status(a) => rt.block_on(status::run(a)),
        Cmd::Watch(a) => rt.block_on(watch::run(a)),
        Cmd::History(a) => history::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("gen-leader: {}", f.line);
            ExitCode::from(f.code)
        }
    }
}
