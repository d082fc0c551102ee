//! The `gen-leader` binary against a running cluster: three nodes in this test process on
//! 127.0.0.1:0 with data directories; the binary runs as a child process, as an operator
//! would run it.

mod common;

use std::process::Output;
use std::time::Duration;

use common::{run, Echo, BIN, WAIT};
use gen_leader::{Config, LeaderHandle, Node};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const COOKIE: &str = "cli-test-cookie";

struct Cluster {
    names: Vec<String>,
    nodes: Vec<LeaderHandle<Echo>>,
    dirs: Vec<TempDir>,
}

/// Three nodes with data directories; returns once they agree on n0.
async fn cluster() -> Cluster {
    let (mut ls, mut names, mut dirs) = (vec![], vec![], vec![]);
    for i in 0..3 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        names.push(format!("n{i}@{}", l.local_addr().unwrap()));
        ls.push(l);
        dirs.push(tempfile::tempdir().unwrap());
    }
    let mut nodes = Vec::new();
    for ((name, l), dir) in names.iter().zip(ls).zip(&dirs) {
        let cfg = Config::builder(name)
            .candidates(&names)
            .cookie(COOKIE)
            .data_dir(dir.path())
            .heartbeat(Duration::from_millis(50))
            .failure_timeout(Duration::from_millis(1000))
            .election_timeout(Duration::from_millis(100))
            .startup_timeout(Duration::from_millis(1500))
            .build()
            .unwrap();
        nodes.push(Node::start_with_listener(cfg, Echo, l).await.unwrap());
    }
    let c = Cluster { names, nodes, dirs };
    c.agree_on(&[0, 1, 2], 0).await;
    c
}

impl Cluster {
    /// Waits until the nodes `on` all see `leader` as the leader of one term.
    async fn agree_on(&self, on: &[usize], leader: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let views: Vec<_> = on.iter().map(|&i| self.nodes[i].view()).collect();
            if views.iter().all(|v| {
                v.leader.as_ref().map(|l| l.to_string()).as_deref() == Some(&*self.names[leader])
                    && v.term == views[0].term
            }) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreement: {views:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(&self) {
        for n in &self.nodes {
            n.shutdown().await;
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One line on stderr, nothing on stdout, exit code 1; returns the line.
fn one_line_failure(o: &Output) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(o.stdout.is_empty(), "stdout: {}", text(&o.stdout));
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("gen-leader: "), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_of_a_leader_and_of_a_follower() {
    let c = cluster().await;
    let term = c.nodes[0].term().get();
    let o = run(&["status", &c.names[0], "--cookie", COOKIE]).await;
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("{}  leading term {term}", c.names[0]));
    let followers = lines
        .iter()
        .find(|l| l.trim_start().starts_with("followers"))
        .expect("a followers line");
    assert!(
        followers.contains(&c.names[1]) && followers.contains(&c.names[2]),
        "{out}"
    );
    assert!(out.contains("  role        leader"), "{out}");
    assert!(out.contains("bully mode"), "{out}");
    assert!(out.contains("  down        -"), "{out}");

    // A follower, with the cookie from the environment.
    let o = tokio::time::timeout(
        WAIT,
        Command::new(BIN)
            .args(["status", &c.names[2]])
            .env("GEN_LEADER_COOKIE", COOKIE)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        out.lines().next(),
        Some(&*format!(
            "{}  following {} term {term}",
            c.names[2], c.names[0]
        ))
    );
    assert!(!out.contains("followers"), "{out}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_all() {
    let c = cluster().await;
    let term = c.nodes[0].term().get();
    let o = run(&["status", &c.names[1], "--cookie", COOKIE, "--json"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["node"], *c.names[1]);
    assert_eq!(v["state"], "following");
    assert_eq!(v["leader"], *c.names[0]);
    assert_eq!(v["term"], term);
    assert_eq!(v["alive"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["mode"]["kind"], "bully");

    // --all: every member, side by side, and the verdict.
    let o = run(&["status", &c.names[1], "--cookie", COOKIE, "--all"]).await;
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NODE "), "{out}");
    for (i, name) in c.names.iter().enumerate() {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&**name))
            .unwrap_or_else(|| panic!("no row for {name}: {out}"));
        let state = if i == 0 { "leading" } else { "following" };
        assert!(row.contains(state) && row.contains(&c.names[0]), "{row}");
    }
    assert_eq!(
        lines.last().copied(),
        Some(&*format!(
            "agreement: every member read sees leader {} at term {term}",
            c.names[0]
        ))
    );
    // --all --json parses too.
    let o = run(&["status", &c.names[0], "--cookie", COOKIE, "--all", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["agree"], true);
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(3));

    // A member down: shown, and the exit code says the picture is not whole.
    c.nodes[2].shutdown().await;
    let o = run(&["status", &c.names[0], "--cookie", COOKIE, "--all"]).await;
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with(&*c.names[2]))
        .expect("a row for the stopped member");
    assert!(row.contains("unreachable"), "{row}");
    c.stop().await;
}

/// The next line of a child's output, within [`WAIT`].
async fn next(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("the watch ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_then_history() {
    let c = cluster().await;
    let term = c.nodes[0].term().get();
    let mut child = Command::new(BIN)
        .args(["watch", &c.names[1], "--cookie", COOKIE])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = next(&mut lines).await;
    assert!(
        first.ends_with(&format!(
            "  {}  following {} term {term}",
            c.names[1], c.names[0]
        )),
        "{first}"
    );
    // The leader stops; n1 takes over, and the watch says so.
    c.nodes[0].shutdown().await;
    let mut seen = vec![first];
    loop {
        let line = next(&mut lines).await;
        seen.push(line.clone());
        if line.contains(&format!("  {}  leading term ", c.names[1])) {
            break;
        }
    }
    let new_term: u64 = seen
        .last()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(new_term > term, "{seen:?}");
    assert!(seen.len() <= 4, "one line per leadership change: {seen:?}");
    child.kill().await.unwrap();
    c.agree_on(&[1, 2], 1).await;

    // The history of the three data directories: n0's term, then n1's, in order.
    let dirs: Vec<String> = c
        .dirs
        .iter()
        .map(|d| d.path().display().to_string())
        .collect();
    let mut args = vec!["history"];
    for d in &dirs {
        args.extend(["--data-dir", d]);
    }
    let o = run(&args).await;
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", text(&o.stderr));
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!((rows[0][0], rows[0][1]), (&*term.to_string(), &*c.names[0]));
    assert_eq!(
        (rows[1][0], rows[1][1]),
        (&*new_term.to_string(), &*c.names[1])
    );
    assert!(rows[0][2] <= rows[1][2], "in time order: {out}");
    assert!(out.contains("leader down"), "why n0's term ended: {out}");
    assert!(out.contains("still leading"), "{out}");
    // --since: a time after everything leaves only the running leadership.
    args.extend(["--since", "-0s"]);
    let o = run(&args).await;
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with(&new_term.to_string()),
        "{out}"
    );
    for n in &c.nodes[1..] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_unreachable_nodes_are_one_line() {
    let c = cluster().await;
    // A wrong cookie.
    let o = run(&["status", &c.names[0], "--cookie", "wrong"]).await;
    let line = one_line_failure(&o);
    assert!(line.contains("refused: wrong cookie"), "{line}");
    assert!(
        !line.contains("wrong\"") && !line.contains(COOKIE),
        "{line}"
    );
    // The right address under another name.
    let other = c.names[0].replacen("n0@", "zz@", 1);
    let line = one_line_failure(&run(&["watch", &other, "--cookie", COOKIE]).await);
    assert!(
        line.contains("refused") && line.contains(&c.names[0]),
        "{line}"
    );
    // Another cluster than the one asked for.
    let line = one_line_failure(
        &run(&[
            "status",
            &c.names[0],
            "--cookie",
            COOKIE,
            "--cluster",
            "prod",
        ])
        .await,
    );
    assert!(
        line.ends_with(
            "refused: the node is in cluster \"gen_leader\", not \"prod\" (--cluster)\n"
        ),
        "{line}"
    );
    // No cookie at all: a usage error.
    let o = run(&["status", &c.names[0]]).await;
    assert_eq!(o.status.code(), Some(2));
    c.stop().await;

    // Nothing listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let name = format!("n0@127.0.0.1:{port}");
    let line = one_line_failure(&run(&["status", &name, "--cookie", COOKIE]).await);
    assert!(line.contains("unreachable: connection refused"), "{line}");
    let line = one_line_failure(&run(&["watch", &name, "--cookie", COOKIE]).await);
    assert!(line.contains("unreachable"), "{line}");

    // Something that is no gen-leader node: it answers garbage, or closes.
    for answer in [&b"HTTP/1.1 400 Bad Request\r\n\r\n"[..], &b""[..]] {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let name = format!("web@{}", l.local_addr().unwrap());
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer).await;
        });
        let line = one_line_failure(&run(&["status", &name, "--cookie", COOKIE]).await);
        assert!(
            line.contains("refused") && line.contains("not a gen-leader"),
            "{line}"
        );
        server.abort();
    }
}
