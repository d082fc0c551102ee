//! The parent's side of the child processes: a bench child ([`Proc`]) and a cluster of node
//! children ([`Cluster`]).
//!
//! Why: every section starts children of this binary (`__node`, `__raw`) and talks to them in
//! tagged JSON commands and events; this file is that protocol. Starting, killing on every
//! exit path and reading events is testkit's `Proc`, shared with the tests and the demo.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{ev, lock};
use crate::{data_dirs_default, T_START};

/// `BENCH_WORKERS` for the children spawned from now on (`None`: inherited).
pub(crate) static CHILD_WORKERS: Mutex<Option<&'static str>> = Mutex::new(None);
/// The election mode of a cluster's node children, passed to each as `BENCH_MODE`
/// (`child.rs` builds its `Config` with it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeMode {
    /// `Mode::Bully`, the library's default.
    Bully,
    /// `Mode::quorum()` (lease 1 s, max drift 1 %, margin 10 ms).
    Quorum,
    /// `Backend::Etcd` on the etcd in [`ETCD`] (feature `etcd`; the `etcd` section).
    Etcd,
}

/// The etcd of [`NodeMode::Etcd`] clusters: endpoints (comma separated) and the lease TTL in
/// seconds. Set by the `etcd` section; each cluster campaigns on an election of its own
/// (named after its label).
pub(crate) static ETCD: Mutex<Option<(String, u64)>> = Mutex::new(None);

impl NodeMode {
    /// The value of `BENCH_MODE` (and the word used in labels and row names).
    pub(crate) fn name(self) -> &'static str {
        match self {
            NodeMode::Bully => "bully",
            NodeMode::Quorum => "quorum",
            NodeMode::Etcd => "etcd",
        }
    }

    /// The environment of a node child of a cluster labelled `label` in this mode.
    fn env(self, label: &str) -> Vec<(&'static str, String)> {
        let mut env = vec![("BENCH_MODE", self.name().to_string())];
        if self == NodeMode::Etcd {
            let (endpoints, ttl) = lock(&ETCD)
                .clone()
                .expect("NodeMode::Etcd without an etcd (procs::ETCD)");
            env.push(("BENCH_ETCD_ENDPOINTS", endpoints));
            env.push(("BENCH_ETCD_TTL_S", ttl.to_string()));
            env.push(("BENCH_ETCD_ELECTION", format!("gl-bench/{label}")));
        }
        env
    }
}

/// Tags of commands, so that a result can be matched to its request.
pub(crate) static NEXT_TAG: AtomicU64 = AtomicU64::new(1);

/// A child process of this binary: JSON commands on its stdin, JSON events (`ev`) from its
/// stdout. Killed on drop (testkit).
pub(crate) struct Proc(testkit::Proc);

impl Deref for Proc {
    type Target = testkit::Proc;
    fn deref(&self) -> &testkit::Proc {
        &self.0
    }
}

impl DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut testkit::Proc {
        &mut self.0
    }
}

impl Proc {
    /// Starts this binary in `role` (`__node`, `__raw`), its stderr in `log`.
    pub(crate) fn spawn(role: &str, label: &str, log: PathBuf) -> Proc {
        Proc::spawn_env(role, label, log, &[])
    }

    /// [`Proc::spawn`] with extra environment variables (`BENCH_NODE_PORT`: see `child.rs`).
    pub(crate) fn spawn_env(role: &str, label: &str, log: PathBuf, env: &[(&str, String)]) -> Proc {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        if let Some(w) = *lock(&CHILD_WORKERS) {
            cmd.env("BENCH_WORKERS", w);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.arg(role);
        let p = testkit::Proc::spawn(cmd, label, &log)
            .unwrap_or_else(|e| panic!("cannot spawn child {label} (log {}): {e}", log.display()));
        Proc(p)
    }

    /// Sends one command; panics if the child has exited.
    pub(crate) fn send(&mut self, v: &Value) {
        if self.0.send_line(&v.to_string()).is_err() {
            panic!(
                "cannot send {v} to {}: it has exited\n{}",
                self.label(),
                diagnose(&[self])
            );
        }
    }

    /// Waits for the first event from mark `from` on that satisfies `pred`.
    pub(crate) fn wait(
        &self,
        from: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_until(
            timeout,
            &format!("{what} ({})", self.label()),
            &[self],
            || self.find(from, &pred),
        )
    }

    /// Sends a command and waits for its result.
    pub(crate) fn request(&mut self, mut cmd: Value, timeout: Duration, what: &str) -> Value {
        let tag = NEXT_TAG.fetch_add(1, Ordering::SeqCst);
        cmd["tag"] = json!(tag);
        let m = self.mark();
        self.send(&cmd);
        let v = self.wait(m, timeout, what, |v| {
            v["tag"] == tag && matches!(ev(v), "result" | "error")
        });
        if ev(&v) == "error" {
            panic!(
                "{what} failed on {}: {}\n{}",
                self.label(),
                v["error"].as_str().unwrap_or("?"),
                diagnose(&[self])
            );
        }
        v
    }

    /// Sends `sig` (`STOP`, `CONT`); panics if that fails.
    pub(crate) fn signal(&mut self, sig: &str) {
        if !self.0.signal(sig) {
            panic!("kill -{sig} {} ({}) failed", self.pid(), self.label());
        }
    }

    /// SIGKILL, through the std `kill` (a direct syscall, nothing spawned).
    pub(crate) fn kill9(&mut self) {
        self.0.sigkill();
    }

    /// Latest (leader, term, ts) this node reported.
    pub(crate) fn view(&self) -> Option<(Option<String>, u64, u64)> {
        self.with_events(|evs| {
            evs.iter().rev().find(|e| ev(&e.v) == "view").map(|e| {
                (
                    e.v["leader"].as_str().map(String::from),
                    e.v["term"].as_u64().unwrap_or(0),
                    e.v["ts"].as_u64().unwrap_or(0),
                )
            })
        })
    }
}

/// The children's states, last events and stderr tails, for failure messages.
pub(crate) fn diagnose(procs: &[&Proc]) -> String {
    procs.iter().map(|p| p.diagnose(6, 15)).collect()
}

/// Waits (without polling: woken by every child event) until `f` returns a value.
pub(crate) fn try_wait_until<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    testkit::wait_for(timeout, f)
}

/// [`try_wait_until`], panicking with the children's state after `timeout`.
pub(crate) fn wait_until<T>(
    timeout: Duration,
    what: &str,
    procs: &[&Proc],
    f: impl FnMut() -> Option<T>,
) -> T {
    match try_wait_until(timeout, f) {
        Some(t) => t,
        None => panic!(
            "timed out after {timeout:?} waiting for {what}\n{}",
            diagnose(procs)
        ),
    }
}

/// `n` node processes forming one cluster (names `n0..`, in priority order).
pub(crate) struct Cluster {
    pub(crate) procs: Vec<Proc>,
    pub(crate) names: Vec<String>,
    /// Whether the nodes have data directories (`<dir>/n<i>`).
    pub(crate) durable: bool,
    /// The nodes' election mode (a restarted node gets the same).
    pub(crate) mode: NodeMode,
    /// The label given to `start_mode` (an etcd-mode restart joins the same election).
    pub(crate) label: String,
    // Removed after the children are gone (fields drop in order).
    pub(crate) dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes, with a data directory each (durable terms) unless `BENCH_DATA_DIRS=0`.
    pub(crate) fn start(n: usize, label: &str) -> Cluster {
        Cluster::start_with(n, label, data_dirs_default())
    }

    pub(crate) fn start_with(n: usize, label: &str, durable: bool) -> Cluster {
        Cluster::start_mode(n, label, durable, NodeMode::Bully)
    }

    /// Starts `n` nodes in `mode`. Without data directories, a quorum-mode cluster's first
    /// agreement takes at least the lease `E` (a node that may have forgotten a promise grants
    /// nothing for `E` after its start); `T_START` allows for it.
    pub(crate) fn start_mode(n: usize, label: &str, durable: bool, mode: NodeMode) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("gen-leader-bench-{label}-"))
            .tempdir()
            .expect("tempdir");
        let mut procs: Vec<Proc> = (0..n)
            .map(|i| {
                Proc::spawn_env(
                    "__node",
                    &format!("{label}/n{i}"),
                    dir.path().join(format!("n{i}.log")),
                    &mode.env(label),
                )
            })
            .collect();
        let ports: Vec<u64> = procs
            .iter()
            .map(|p| {
                p.wait(0, T_START, "the node to bind", |v| ev(v) == "bound")["port"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .collect();
        let names: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("n{i}@127.0.0.1:{p}"))
            .collect();
        for (i, p) in procs.iter_mut().enumerate() {
            let dd = durable.then(|| dir.path().join(format!("n{i}")));
            p.send(&json!({"cmd": "start", "me": i, "names": names, "data_dir": dd}));
        }
        for p in &procs {
            let v = p.wait(0, T_START, "the node to start", |v| ev(v) == "started");
            let m = v["mode"].as_str().unwrap_or("?");
            assert!(
                m.starts_with(mode.name()),
                "{} runs in mode {m:?}, not {}",
                p.label(),
                mode.name()
            );
        }
        let c = Cluster {
            procs,
            names,
            durable,
            mode,
            label: label.to_string(),
            dir,
        };
        let all: Vec<usize> = (0..n).collect();
        c.wait_agreed(&all, T_START, "the cluster's first agreement");
        c
    }

    /// Replaces node `i` (already killed) by a new process under the same name, on the same
    /// port and with the same data directory. Returns the wall-clock time (`util::wall_ns`)
    /// just before the start command was sent (the process had bound the port).
    pub(crate) fn restart(&mut self, i: usize, label: &str) -> u64 {
        let port = self.names[i].rsplit(':').next().unwrap_or("0").to_string();
        let mut env = self.mode.env(&self.label);
        env.push(("BENCH_NODE_PORT", port));
        let mut p = Proc::spawn_env(
            "__node",
            &format!("{label}/n{i}-restarted"),
            self.dir.path().join(format!("n{i}-restarted.log")),
            &env,
        );
        p.wait(0, T_START, "the restarted node to bind", |v| {
            ev(v) == "bound"
        });
        let dd = self.durable.then(|| self.dir.path().join(format!("n{i}")));
        let t = crate::util::wall_ns();
        p.send(&json!({"cmd": "start", "me": i, "names": self.names, "data_dir": dd}));
        self.procs[i] = p;
        t
    }

    pub(crate) fn procs_ref(&self) -> Vec<&Proc> {
        self.procs.iter().collect()
    }

    /// The leader and term every node in `among` reports, if they agree.
    pub(crate) fn agreed(&self, among: &[usize]) -> Option<(String, u64)> {
        let mut it = among.iter().map(|&i| self.procs[i].view());
        let (l, t, _) = it.next()??;
        let l = l?;
        for v in it {
            let (l2, t2, _) = v?;
            if l2.as_deref() != Some(l.as_str()) || t2 != t {
                return None;
            }
        }
        Some((l, t))
    }

    pub(crate) fn wait_agreed(
        &self,
        among: &[usize],
        timeout: Duration,
        what: &str,
    ) -> (String, u64) {
        wait_until(timeout, what, &self.procs_ref(), || self.agreed(among))
    }

    pub(crate) fn index_of(&self, name: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} is not a member"))
    }
}
