//! How statuses look on a terminal: one node in detail, several side by side, one line per
//! leadership change.
//!
//! Why a file of its own: these are pure functions from statuses to text, so their output is
//! tested exactly without a cluster, and `status` and `watch` share one wording.

use gen_leader::{NodeStatus, StateKind};

use crate::time::{human, rfc3339};

/// A list, or `-`.
fn list(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

/// The leadership in a few words: `leading term 3`, `following n0@h:1 term 3`, ...
pub fn leadership(s: &NodeStatus) -> String {
    match s.state {
        StateKind::Leading => format!("leading term {}", s.term),
        StateKind::Following => format!(
            "following {} term {}",
            s.leader.as_deref().unwrap_or("?"),
            s.term
        ),
        StateKind::NoQuorum => match s.no_quorum {
            Some(nq) => format!(
                "no quorum (reaches {} of the {} candidates needed), term {}",
                nq.reachable, nq.needed, s.term
            ),
            None => format!("no quorum, term {}", s.term),
        },
        StateKind::Electing => format!("electing (no leader), term {}", s.term),
        StateKind::Stopped => "stopped".into(),
        _ => format!("{}, term {}", s.state.as_str(), s.term),
    }
}

fn lease(s: &NodeStatus) -> String {
    match s.lease_remaining_ms {
        Some(ms) => format!("{} left", human(i64::try_from(ms).unwrap_or(i64::MAX))),
        None if s.mode.kind == "quorum" && s.state == StateKind::Leading => {
            "none (waiting for a majority)".into()
        }
        None => "-".into(),
    }
}

/// One node in detail.
pub fn detail(s: &NodeStatus) -> Vec<String> {
    let mut lines = vec![
        format!("{}  {}", s.node, leadership(s)),
        format!(
            "  cluster     {}, {} mode, gen-leader {}, up {}",
            s.cluster,
            s.mode,
            s.version,
            human(i64::try_from(s.uptime_ms).unwrap_or(i64::MAX))
        ),
        format!("  role        {}", s.role),
        format!("  alive       {}", list(&s.alive)),
        format!("  down        {}", list(&s.down)),
    ];
    if s.state == StateKind::Leading {
        lines.push(format!("  followers   {}", list(&s.followers)));
    }
    if s.mode.lease_ms.is_some() {
        lines.push(format!("  lease       {}", lease(s)));
    }
    if let Some(why) = &s.backend_unavailable {
        lines.push(format!("  store       {} unavailable ({why})", s.mode.kind));
    }
    if s.refused.is_empty() {
        lines.push("  refused     -".into());
    }
    for r in &s.refused {
        lines.push(format!("  refused     {}: {}", r.peer, r.reason));
    }
    lines.push(format!(
        "  calls       {} pending ({} waiting for a leader), {} casts held",
        s.pending_calls, s.waiting_calls, s.held_casts
    ));
    lines.push(format!(
        "  handshakes  {} refused since start",
        s.handshakes_refused
    ));
    lines
}

/// What one member answered `status --all`: its status, or why there is none.
pub type Row = (String, Result<NodeStatus, String>);

/// Every member side by side, then a verdict line; and whether they agree.
pub fn table(rows: &[Row]) -> (Vec<String>, bool) {
    let cells: Vec<[String; 7]> = rows
        .iter()
        .filter_map(|(node, r)| {
            let s = r.as_ref().ok()?;
            Some([
                node.clone(),
                s.state.as_str().to_string(),
                s.leader.clone().unwrap_or_else(|| "-".into()),
                s.term.to_string(),
                format!("{}/{}", s.alive.len(), s.alive.len() + s.down.len()),
                s.lease_remaining_ms
                    .map_or_else(|| "-".into(), |ms| human(ms as i64)),
                s.pending_calls.to_string(),
            ])
        })
        .collect();
    let head = ["NODE", "STATE", "LEADER", "TERM", "ALIVE", "LEASE", "CALLS"];
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for c in &cells {
        for (i, x) in c.iter().enumerate() {
            w[i] = w[i].max(x.len());
        }
    }
    let fmt = |c: &[String]| -> String {
        let mut line = String::new();
        for (i, x) in c.iter().enumerate() {
            if i == 3 || i == 6 {
                line.push_str(&format!("{x:>width$}  ", width = w[i]));
            } else {
                line.push_str(&format!("{x:<width$}  ", width = w[i]));
            }
        }
        line.trim_end().to_string()
    };
    let mut lines = vec![fmt(&head.map(String::from))];
    let mut cells = cells.into_iter();
    for (node, r) in rows {
        match r {
            Ok(_) => lines.extend(cells.next().map(|c| fmt(&c))),
            Err(why) => lines.push(format!("{node:<w0$}  {why}", w0 = w[0])),
        }
    }
    for (node, r) in rows {
        for p in r.iter().flat_map(|s| &s.refused) {
            lines.push(format!("{node} refused {}: {}", p.peer, p.reason));
        }
    }
    let (verdict, agree) = verdict(rows);
    lines.push(verdict);
    (lines, agree)
}

/// Whether the members agree on one leader and term, in one line.
pub fn verdict(rows: &[Row]) -> (String, bool) {
    let ok: Vec<&NodeStatus> = rows.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    let failed = rows.len() - ok.len();
    let leaders: Vec<&NodeStatus> = ok.iter().copied().filter(|s| s.is_leader()).collect();
    let mut views: Vec<(Option<&str>, u64)> =
        ok.iter().map(|s| (s.leader.as_deref(), s.term)).collect();
    views.sort_unstable();
    views.dedup();
    let unread = if failed > 0 {
        format!(" ({failed} member(s) could not be read)")
    } else {
        String::new()
    };
    if leaders.len() > 1 {
        let who: Vec<String> = leaders
            .iter()
            .map(|s| format!("{} (term {})", s.node, s.term))
            .collect();
        return (
            format!(
                "DISAGREEMENT: {} leaders: {}{unread}",
                leaders.len(),
                who.join(", ")
            ),
            false,
        );
    }
    match views.as_slice() {
        [(Some(l), t)] => (
            format!("agreement: every member read sees leader {l} at term {t}{unread}"),
            failed == 0,
        ),
        [(None, _)] => (
            format!("no leader: every member read is without one{unread}"),
            false,
        ),
        _ => {
            let v: Vec<String> = views
                .iter()
                .map(|(l, t)| format!("{} at term {t}", l.unwrap_or("no leader")))
                .collect();
            (
                format!("DISAGREEMENT: the members see {}{unread}", v.join(" / ")),
                false,
            )
        }
    }
}

/// One line of a watch: when, which node, what it sees.
pub fn watch_line(s: &NodeStatus, at_ms: i64) -> String {
    format!("{}  {}  {}", rfc3339(at_ms), s.node, leadership(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(node: &str, state: StateKind, leader: Option<&str>, term: u64) -> NodeStatus {
        let mut s = NodeStatus::default();
        s.node = node.into();
        s.state = state;
        s.leader = leader.map(Into::into);
        s.term = term;
        s.alive = vec![node.into()];
        s
    }

    #[test]
    fn tables_and_verdicts() {
        let rows: Vec<Row> = vec![
            (
                "a@h:1".into(),
                Ok(st("a@h:1", StateKind::Leading, Some("a@h:1"), 3)),
            ),
            (
                "b@h:2".into(),
                Ok(st("b@h:2", StateKind::Following, Some("a@h:1"), 3)),
            ),
        ];
        let (lines, agree) = table(&rows);
        assert!(agree);
        assert_eq!(
            lines,
            [
                "NODE   STATE      LEADER  TERM  ALIVE  LEASE  CALLS",
                "a@h:1  leading    a@h:1      3  1/1    -          0",
                "b@h:2  following  a@h:1      3  1/1    -          0",
                "agreement: every member read sees leader a@h:1 at term 3",
            ]
        );
        let mut split = rows.clone();
        split.push((
            "c@h:3".into(),
            Ok(st("c@h:3", StateKind::Leading, Some("c@h:3"), 5)),
        ));
        split.push(("d@h:4".into(), Err("unreachable".into())));
        let (lines, agree) = table(&split);
        assert!(!agree);
        assert_eq!(lines[4], "d@h:4  unreachable");
        assert_eq!(
            lines[5],
            "DISAGREEMENT: 2 leaders: a@h:1 (term 3), c@h:3 (term 5) (1 member(s) could not be read)"
        );
        let mut old = rows;
        old[1].1 = Ok(st("b@h:2", StateKind::Following, Some("a@h:1"), 2));
        assert_eq!(
            verdict(&old).0,
            "DISAGREEMENT: the members see a@h:1 at term 2 / a@h:1 at term 3"
        );
    }

    #[test]
    fn details_and_lines() {
        let mut s = st("b@h:2", StateKind::Following, Some("a@h:1"), 3);
        s.mode.kind = "bully".into();
        s.cluster = "c".into();
        s.version = "0.1.0".into();
        s.role = "follower".into();
        let d = detail(&s);
        assert_eq!(d[0], "b@h:2  following a@h:1 term 3");
        assert_eq!(
            d[1],
            "  cluster     c, bully mode, gen-leader 0.1.0, up 0ms"
        );
        assert!(d.contains(&"  refused     -".to_string()), "{d:?}");
        assert_eq!(
            watch_line(&s, 0),
            "1970-01-01T00:00:00.000Z  b@h:2  following a@h:1 term 3"
        );
        s.state = StateKind::Electing;
        s.leader = None;
        assert_eq!(leadership(&s), "electing (no leader), term 3");
    }

    #[test]
    fn a_store_that_decides_shows_its_lease_and_why_it_is_unavailable() {
        let mut s = st("b@h:2", StateKind::Electing, None, 41);
        s.mode.kind = "etcd".into();
        s.mode.election = Some("gl/x".into());
        s.mode.lease_ms = Some(2000);
        s.mode.max_drift = Some(0.01);
        s.mode.margin_ms = Some(10);
        s.backend_unavailable = Some("lease keep-alive: unreachable".into());
        let d = detail(&s);
        assert!(
            d[1].contains(
                "etcd (election \"gl/x\", lease 2000 ms, max drift 0.01, margin 10 ms) mode"
            ),
            "{d:?}"
        );
        assert!(d.contains(&"  lease       -".to_string()), "{d:?}");
        assert!(
            d.contains(
                &"  store       etcd unavailable (lease keep-alive: unreachable)".to_string()
            ),
            "{d:?}"
        );
    }
}
