//! The `datos` example as a child process: where its binary is, how to start a node, and how
//! to read the nodes' views from their `--json` events and wait on them.
//!
//! Why here: the multi-process tests and the demo observe the same event contract (`ready`
//! and `leader` events carry the view); one reader of it, so they cannot drift apart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `datos` example binary of the same build profile as the running test or bench
/// (`target/<profile>/examples/datos`, next to its `deps` directory).
pub fn datos_exe() -> PathBuf {
    let me = std::env::current_exe().expect("current_exe");
    let profile_dir = me
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let exe = profile_dir
        .join("examples")
        .join(format!("datos{}", std::env::consts::EXE_SUFFIX));
    assert!(
        exe.exists(),
        "the datos example binary is missing at {}: cargo builds examples for `cargo test`; \
         build it with `cargo build --example datos` (same profile as the tests)",
        exe.display()
    );
    exe
}

/// A `datos` node named `name` among `candidates` (comma-separated), with `--json` events
/// and its term in `data_dir`; add the cookie and any other flag to the returned command.
pub fn datos_node(exe: &Path, name: &str, candidates: &str, data_dir: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(["--name", name, "--candidates", candidates, "--json"])
        .arg("--data-dir")
        .arg(data_dir);
    cmd
}

/// `n` free ports on 127.0.0.1, held by listeners until the caller drops them (drop them just
/// before the nodes that will listen there start).
pub fn hold_ports(n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect()
}

/// `n` node names `lider0@127.0.0.1:P0 ..`, each on a port that was free a moment ago (held by a
/// listener, then released for the node that will listen there).
pub fn free_names(n: usize) -> std::io::Result<Vec<String>> {
    let held = hold_ports(n)?;
    held.iter()
        .enumerate()
        .map(|(i, l)| Ok(format!("lider{i}@127.0.0.1:{}", l.local_addr()?.port())))
        .collect()
}

/// A node's view: the leader (if any) and the term.
pub type View = Option<(Option<String>, u64)>;

/// The view in a node's events (oldest first): its last `leader` or `ready` event.
pub fn last_view<'a>(events: impl DoubleEndedIterator<Item = &'a Value>) -> View {
    events
        .rev()
        .find(|v| matches!(v["event"].as_str(), Some("leader" | "ready")))
        .map(|v| {
            (
                v["leader"].as_str().map(str::to_string),
                v["term"].as_u64().unwrap_or(0),
            )
        })
}

/// The leader and term all `views` share, if they do.
pub fn agreement(views: &[View]) -> Option<(String, u64)> {
    let (Some(leader), term) = views.first()?.clone()? else {
        return None;
    };
    views
        .iter()
        .all(|v| v.as_ref() == Some(&(Some(leader.clone()), term)))
        .then_some((leader, term))
}

/// A cluster of `datos` processes a test observes.
pub trait Observed: Sized {
    /// Node `i`'s current view.
    fn view(&self, i: usize) -> View;
    /// Everything worth printing when a wait fails.
    fn report(&self) -> String;

    /// The leader and term every node of `nodes` reports, if they agree on one.
    fn agreed(&self, nodes: &[usize]) -> Option<(String, u64)> {
        let views: Vec<View> = nodes.iter().map(|&i| self.view(i)).collect();
        agreement(&views)
    }

    /// Polls `cond` every 10 ms until it holds; panics with the report after `timeout`.
    /// Returns how long it took.
    fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&Self) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if cond(self) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for: {what}\n{}",
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `nodes` agree on a leader and term accepted by `ok`; panics after
    /// `timeout`.
    fn wait_agreed(
        &self,
        timeout: Duration,
        nodes: &[usize],
        what: &str,
        ok: impl Fn(&str, u64) -> bool,
    ) -> (String, u64) {
        let mut found = None;
        self.wait_until(timeout, what, |c| {
            found = c.agreed(nodes).filter(|(l, t)| ok(l, *t));
            found.is_some()
        });
        found.expect("set when the wait succeeds")
    }
}
