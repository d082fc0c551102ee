//! `gen-leader watch`: one line per leadership change, as a node sees it, until Ctrl-C.
//!
//! Why it moves to another member when its node goes away: the moment an operator watches is
//! when nodes fail, and the node watched may be the one that fails; a watch that ended then
//! would miss the election that follows. The first connection must work (else one line and
//! exit 1, like `status`); after that a lost node is a line in the stream, and the watch
//! continues through the next member that answers (retrying every second while none does).

use std::time::Duration;

use gen_leader::{NodeName, NodeStatus, StatusWatch};

use crate::fail::{explain, Fail, EXIT_FAILED};
use crate::link::Link;
use crate::show::watch_line;
use crate::time::{now_ms, rfc3339};
use crate::{out, WatchArgs};

/// How long the watch waits between two rounds of trying every member.
const RETRY: Duration = Duration::from_secs(1);

async fn start(node: &NodeName, addr: &str, cfg: &Link) -> Result<StatusWatch, String> {
    let name = node.to_string();
    let o = cfg
        .connect(node, addr)
        .await
        .map_err(|e| explain(&name, addr, &e))?;
    o.watch().await.map_err(|e| explain(&name, addr, &e))
}

/// Prints a status (a line, or JSON).
fn show(s: &NodeStatus, json: bool) {
    if json {
        out(serde_json::to_string(s).unwrap_or_default());
    } else {
        let at = if s.at_ms > 0 {
            i64::try_from(s.at_ms).unwrap_or(i64::MAX)
        } else {
            now_ms()
        };
        out(watch_line(s, at));
    }
}

/// A line about the watch itself (not a status): in the stream for people, on stderr for
/// JSON consumers.
fn note(line: &str, json: bool) {
    let line = format!("{}  {line}", rfc3339(now_ms()));
    if json {
        eprintln!("{line}");
    } else {
        out(line);
    }
}

pub async fn run(a: WatchArgs) -> Result<u8, Fail> {
    let cfg = a.conn.observer()?;
    let addr = a.conn.addr();
    let mut watch = start(&a.conn.node, &addr, &cfg)
        .await
        .map_err(|line| Fail::new(line, EXIT_FAILED))?;
    let mut watched = a.conn.node.to_string();
    let mut members: Vec<String> = vec![watched.clone()];
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let r = tokio::select! {
            _ = &mut ctrl_c => return Ok(0),
            r = watch.next() => r,
        };
        match r {
            Ok(s) => {
                let listed: Vec<String> = s.candidates.iter().chain(&s.workers).cloned().collect();
                if !listed.is_empty() {
                    members = listed;
                }
                show(&s, a.json);
            }
            Err(e) => {
                note(&explain(&watched, "", &e), a.json);
                let next = tokio::select! {
                    _ = &mut ctrl_c => return Ok(0),
                    n = failover(&members, &watched, &cfg, a.json) => n,
                };
                (watch, watched) = next;
                note(&format!("watching through {watched}"), a.json);
            }
        }
    }
}

/// The next member that answers, starting after `lost` (which is tried last), retrying every
/// [`RETRY`] while none does.
async fn failover(members: &[String], lost: &str, cfg: &Link, json: bool) -> (StatusWatch, String) {
    let at = members.iter().position(|m| m == lost).map_or(0, |i| i + 1);
    let order: Vec<&String> = members[at..].iter().chain(&members[..at]).collect();
    let mut said = false;
    loop {
        for m in &order {
            let Ok(node) = m.parse::<NodeName>() else {
                continue;
            };
            if let Ok(w) = start(&node, &node.addr(), cfg).await {
                return (w, m.to_string());
            }
        }
        if !said {
            note("no member answers; retrying every second", json);
            said = true;
        }
        tokio::time::sleep(RETRY).await;
    }
}
