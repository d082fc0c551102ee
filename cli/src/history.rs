//! `gen-leader history`: the audit trails (`audit.jsonl`) of one or more nodes as a
//! timeline of leaderships — who led which term, from when to when, and why it ended.
//!
//! Why a timeline per term and not the raw records: each node writes only what it saw (a
//! leader its `elected`, a follower its `surrendered` and `leader_lost`), a bully-mode leader
//! that is stopped or killed writes nothing about its end, and a restarted node's monotonic
//! clock starts again. So the records of every directory given are merged by wall-clock time,
//! and each term is rebuilt from whatever evidence there is: it starts at its earliest
//! `elected` or `surrendered`; it ends at its leader's own `lost` / `stepped_down` if that
//! was recorded, else when a follower saw it lost (`leader_lost`), else when the next term
//! started. Which evidence was used is said in the last column.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::fail::{Fail, EXIT_FAILED};
use crate::time::{human, now_ms, parse_since, rfc3339};
use crate::{out, HistoryArgs};

/// One audit record (a line of `audit.jsonl`, as `src/node/storage.rs` writes it).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Record {
    pub wall_ms: i64,
    #[serde(default)]
    pub mono_ms: i64,
    pub node: String,
    pub event: String,
    pub term: u64,
    #[serde(default)]
    pub leader: Option<String>,
    #[serde(default)]
    pub reason: String,
}

/// One leadership, rebuilt from the records.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Leadership {
    pub term: u64,
    pub leader: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Why it ended, and from whose record.
    pub ended: String,
    pub followers: BTreeSet<String>,
}

/// The audit file of `p`: `p/audit.jsonl`, or `p` itself if it is a file.
fn audit_file(p: &Path) -> PathBuf {
    if p.is_dir() {
        p.join("audit.jsonl")
    } else {
        p.to_path_buf()
    }
}

/// Reads the records of every file, merged by wall-clock time (ties in file order); returns
/// them with the number of lines that are no record.
pub fn read(paths: &[PathBuf]) -> Result<(Vec<Record>, usize), Fail> {
    let mut all: Vec<(i64, usize, usize, Record)> = Vec::new();
    let mut skipped = 0;
    for (f, p) in paths.iter().enumerate() {
        let path = audit_file(p);
        let file = File::open(&path).map_err(|e| {
            Fail::new(
                format!(
                    "cannot read {}: {e} (give a node's data directory, which holds \
                     audit.jsonl)",
                    path.display()
                ),
                EXIT_FAILED,
            )
        })?;
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line =
                line.map_err(|e| Fail::new(format!("cannot read {}: {e}", path.display()), 1))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(&line) {
                Ok(r) => all.push((r.wall_ms, f, i, r)),
                Err(_) => skipped += 1,
            }
        }
    }
    all.sort_by_key(|(wall, f, i, _)| (*wall, *f, *i));
    Ok((all.into_iter().map(|(_, _, _, r)| r).collect(), skipped))
}

/// The leaderships the records show, by term.
pub fn timeline(records: &[Record]) -> Vec<Leadership> {
    #[derive(Default)]
    struct T {
        l: Leadership,
        own_end: Option<(i64, String)>,
        seen_end: Option<(i64, String)>,
        seen_by: BTreeSet<String>,
    }
    let mut terms: BTreeMap<u64, T> = BTreeMap::new();
    for r in records {
        let t = terms.entry(r.term).or_default();
        t.l.term = r.term;
        let start = |t: &mut T| {
            t.l.from_ms = Some(t.l.from_ms.map_or(r.wall_ms, |f| f.min(r.wall_ms)));
        };
        match r.event.as_str() {
            "elected" => {
                t.l.leader = Some(r.node.clone());
                start(t);
            }
            "surrendered" => {
                if t.l.leader.is_none() {
                    t.l.leader.clone_from(&r.leader);
                }
                t.l.followers.insert(r.node.clone());
                start(t);
            }
            "lost" | "stepped_down" => {
                let why = if r.event == "stepped_down" {
                    format!("stepped down: {}", r.reason)
                } else {
                    r.reason.clone()
                };
                t.own_end.get_or_insert((r.wall_ms, why));
            }
            "leader_lost" => {
                t.seen_end.get_or_insert((r.wall_ms, r.reason.clone()));
                t.seen_by.insert(r.node.clone());
            }
            _ => {}
        }
    }
    let starts: Vec<(u64, Option<i64>)> = terms.iter().map(|(k, t)| (*k, t.l.from_ms)).collect();
    terms
        .into_iter()
        .filter(|(_, t)| t.l.from_ms.is_some() || t.own_end.is_some())
        .map(|(term, mut t)| {
            let next = starts
                .iter()
                .find(|(k, from)| *k > term && from.is_some())
                .and_then(|(k, from)| Some((*k, (*from)?)));
            let (to, ended) = match (t.own_end, t.seen_end, next) {
                (Some((at, why)), _, _) => (Some(at), format!("{why} (its leader's record)")),
                (None, Some((at, why)), _) => {
                    let by: Vec<&str> = t.seen_by.iter().map(String::as_str).collect();
                    (Some(at), format!("{why} (seen by {})", by.join(", ")))
                }
                (None, None, Some((k, at))) => (
                    Some(at),
                    format!("term {k} began (no record of the end: its leader's trail not given, or it stopped)"),
                ),
                (None, None, None) => (None, "still leading at the last record".into()),
            };
            t.l.to_ms = to;
            t.l.ended = ended;
            t.l
        })
        .collect()
}

pub fn run(a: HistoryArgs) -> Result<u8, Fail> {
    let since = match &a.since {
        Some(s) => Some(parse_since(s, now_ms()).map_err(Fail::usage)?),
        None => None,
    };
    let (records, skipped) = read(&a.data_dirs)?;
    if skipped > 0 {
        eprintln!("gen-leader: skipped {skipped} line(s) that are no audit record");
    }
    if a.events {
        for r in records
            .iter()
            .filter(|r| since.is_none_or(|s| r.wall_ms >= s))
        {
            if a.json {
                out(serde_json::to_string(r).unwrap_or_default());
            } else {
                let leader = r.leader.as_deref().unwrap_or("-");
                out(format!(
                    "{}  {}  {} term {} leader {} ({})",
                    rfc3339(r.wall_ms),
                    r.node,
                    r.event,
                    r.term,
                    leader,
                    r.reason
                ));
            }
        }
        return Ok(0);
    }
    let lines: Vec<Leadership> = timeline(&records)
        .into_iter()
        .filter(|l| since.is_none_or(|s| l.to_ms.is_none_or(|to| to >= s)))
        .collect();
    if a.json {
        let doc: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| {
                json!({
                    "term": l.term,
                    "leader": l.leader,
                    "from_ms": l.from_ms,
                    "from": l.from_ms.map(rfc3339),
                    "to_ms": l.to_ms,
                    "to": l.to_ms.map(rfc3339),
                    "lasted_ms": l.from_ms.zip(l.to_ms).map(|(f, t)| t - f),
                    "ended": l.ended,
                    "followers": l.followers,
                })
            })
            .collect();
        out(serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(0);
    }
    for line in table(&lines) {
        out(line);
    }
    Ok(0)
}

/// The timeline as text: a header and one line per leadership.
pub fn table(ls: &[Leadership]) -> Vec<String> {
    if ls.is_empty() {
        return vec!["no leadership in the audit trail(s)".into()];
    }
    let leader_w = ls
        .iter()
        .map(|l| l.leader.as_deref().unwrap_or("?").len())
        .max()
        .unwrap_or(0)
        .max("LEADER".len());
    let term_w = ls
        .iter()
        .map(|l| l.term.to_string().len())
        .max()
        .unwrap_or(0)
        .max("TERM".len());
    let time_w = 24;
    let mut out = vec![format!(
        "{:<term_w$}  {:<leader_w$}  {:<time_w$}  {:<time_w$}  {:<8}  ENDED",
        "TERM", "LEADER", "FROM", "TO", "LASTED"
    )];
    for l in ls {
        let from = l.from_ms.map_or_else(|| "?".into(), rfc3339);
        let to = l.to_ms.map_or_else(|| "-".into(), rfc3339);
        let lasted = match (l.from_ms, l.to_ms) {
            (Some(f), Some(t)) => human(t - f),
            _ => "-".into(),
        };
        out.push(format!(
            "{:<term_w$}  {:<leader_w$}  {from:<time_w$}  {to:<time_w$}  {lasted:<8}  {}",
            l.term,
            l.leader.as_deref().unwrap_or("?"),
            l.ended
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        wall_ms: i64,
        node: &str,
        event: &str,
        term: u64,
        leader: Option<&str>,
        reason: &str,
    ) -> Record {
        Record {
            wall_ms,
            mono_ms: 0,
            node: node.into(),
            event: event.into(),
            term,
            leader: leader.map(Into::into),
            reason: reason.into(),
        }
    }

    #[test]
    fn terms_are_rebuilt_from_every_node() {
        let r = [
            rec(1000, "a", "elected", 3, Some("a"), "won the election"),
            rec(1005, "b", "surrendered", 3, Some("a"), "accepted a leader"),
            rec(1006, "c", "surrendered", 3, Some("a"), "accepted a leader"),
            // a is killed: b and c see it go.
            rec(9000, "b", "leader_lost", 3, Some("a"), "leader down"),
            rec(9001, "c", "leader_lost", 3, Some("a"), "leader down"),
            rec(9100, "b", "elected", 4, Some("b"), "won the election"),
            rec(9102, "c", "surrendered", 4, Some("b"), "accepted a leader"),
            // a restarts and takes over (preempt): b records its loss.
            rec(20_000, "a", "elected", 66, Some("a"), "won the election"),
            rec(
                20_001,
                "b",
                "lost",
                4,
                None,
                "taken over by a higher-priority leader",
            ),
            rec(
                20_002,
                "b",
                "surrendered",
                66,
                Some("a"),
                "accepted a leader",
            ),
        ];
        let t = timeline(&r);
        assert_eq!(t.len(), 3);
        assert_eq!(
            (t[0].term, t[0].leader.as_deref(), t[0].from_ms, t[0].to_ms),
            (3, Some("a"), Some(1000), Some(9000))
        );
        assert_eq!(t[0].ended, "leader down (seen by b, c)");
        assert_eq!(t[0].followers, BTreeSet::from(["b".into(), "c".into()]));
        assert_eq!((t[1].term, t[1].to_ms), (4, Some(20_001)));
        assert_eq!(
            t[1].ended,
            "taken over by a higher-priority leader (its leader's record)"
        );
        assert_eq!((t[2].term, t[2].to_ms), (66, None));
        assert_eq!(t[2].ended, "still leading at the last record");
        let lines = table(&t);
        assert_eq!(
            lines[1],
            "3     a       1970-01-01T00:00:01.000Z  1970-01-01T00:00:09.000Z  8.0s      \
             leader down (seen by b, c)"
        );
    }

    #[test]
    fn a_term_without_a_recorded_end_ends_when_the_next_begins() {
        // Only the old leader's trail: its followers' records are missing.
        let r = [
            rec(1000, "a", "elected", 3, Some("a"), "won the election"),
            rec(5000, "a", "surrendered", 4, Some("b"), "accepted a leader"),
        ];
        let t = timeline(&r);
        assert_eq!(t[0].to_ms, Some(5000));
        assert!(t[0].ended.starts_with("term 4 began"), "{}", t[0].ended);
        assert_eq!(t[1].leader.as_deref(), Some("b"));
    }

    #[test]
    fn trails_are_merged_by_time_and_bad_lines_counted() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        std::fs::write(
            d1.path().join("audit.jsonl"),
            "{\"wall_ms\":30,\"mono_ms\":1,\"node\":\"a\",\"event\":\"elected\",\"term\":5,\"leader\":\"a\",\"reason\":\"r\"}\nnot json\n\n",
        )
        .unwrap();
        std::fs::write(
            d2.path().join("audit.jsonl"),
            "{\"wall_ms\":10,\"mono_ms\":1,\"node\":\"b\",\"event\":\"elected\",\"term\":2,\"leader\":\"b\",\"reason\":\"r\"}\n",
        )
        .unwrap();
        let (r, skipped) = read(&[d1.path().into(), d2.path().into()]).unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(
            r.iter().map(|r| r.term).collect::<Vec<_>>(),
            [2, 5],
            "merged by time"
        );
        let missing = read(&[d1.path().join("nope")]).unwrap_err();
        assert!(missing.line.contains("cannot read"), "{}", missing.line);
    }
}
