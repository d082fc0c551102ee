//! `gen-leader status`: one node's view, or every member's side by side.
//!
//! Why `--all` asks each member itself rather than trusting the first node's lists: the point
//! is to see disagreement (two leaders after a partition in bully mode, a member stuck on an
//! old term, a member that refuses the others), which only the members' own views show.

use gen_leader::{NodeName, NodeStatus};
use serde_json::json;

use crate::fail::{explain, Fail, EXIT_DISAGREE, EXIT_FAILED};
use crate::show::{self, Row};
use crate::{out, StatusArgs};

/// Asks `node` (at `addr`) for its status; the error is the one-line explanation.
pub async fn ask(
    node: &NodeName,
    addr: &str,
    cfg: &crate::link::Link,
) -> Result<NodeStatus, String> {
    let name = node.to_string();
    let mut o = cfg
        .connect(node, addr)
        .await
        .map_err(|e| explain(&name, addr, &e))?;
    o.status().await.map_err(|e| explain(&name, addr, &e))
}

pub async fn run(a: StatusArgs) -> Result<u8, Fail> {
    let cfg = a.conn.observer()?;
    let addr = a.conn.addr();
    let first = ask(&a.conn.node, &addr, &cfg)
        .await
        .map_err(|line| Fail::new(line, EXIT_FAILED))?;
    if !a.all {
        if a.json {
            out(serde_json::to_string_pretty(&first).unwrap_or_default());
        } else {
            for line in show::detail(&first) {
                out(line);
            }
        }
        return Ok(0);
    }
    // Every member, in the configuration's order, asked at once.
    let members: Vec<String> = first
        .candidates
        .iter()
        .chain(&first.workers)
        .cloned()
        .collect();
    let asks = members.iter().map(|m| {
        let cfg = &cfg;
        let first = &first;
        async move {
            if *m == first.node {
                return (m.clone(), Ok(first.clone()));
            }
            match m.parse::<NodeName>() {
                Ok(n) => (m.clone(), ask(&n, &n.addr(), cfg).await),
                Err(e) => (m.clone(), Err(format!("{m}: {e}"))),
            }
        }
    });
    let rows: Vec<Row> = futures::future::join_all(asks).await;
    let (lines, agree) = show::table(&rows);
    if a.json {
        let nodes: Vec<serde_json::Value> = rows
            .iter()
            .map(|(node, r)| match r {
                Ok(s) => json!({ "node": node, "status": s }),
                Err(e) => json!({ "node": node, "error": e }),
            })
            .collect();
        let verdict = lines.last().cloned().unwrap_or_default();
        let doc = json!({ "nodes": nodes, "agree": agree, "verdict": verdict });
        out(serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for line in lines {
            out(line);
        }
    }
    Ok(if agree { 0 } else { EXIT_DISAGREE })
}
