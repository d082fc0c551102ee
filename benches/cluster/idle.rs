//! Section `idle`: RSS and CPU time of idle node processes (heartbeats only), and the
//! `/proc` readers it needs.
//!
//! Why: an idle cluster should cost close to nothing; this is the standing cost of a node.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::procs::Cluster;
use crate::report::{Report, Row};
use crate::Params;

/// The 1-minute load average and runnable/total tasks, from `/proc/loadavg`.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| {
            let f: Vec<&str> = s.split_whitespace().collect();
            format!(
                "{} ({} runnable)",
                f.first().unwrap_or(&"?"),
                f.get(3).unwrap_or(&"?")
            )
        })
        .unwrap_or_else(|| "?".into())
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub(crate) fn sec_idle(p: &Params, rep: &mut Report) {
    let cl = Cluster::start(3, "idle");
    let (leader_name, _) = cl.agreed(&[0, 1, 2]).expect("agreed");
    let leader = cl.index_of(&leader_name);
    std::thread::sleep(Duration::from_secs(1));
    let tck = clk_tck();
    let pids: Vec<u32> = cl.procs.iter().map(|p| p.pid()).collect();
    let before: Vec<Option<u64>> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(p.idle_secs));
    let secs = t.elapsed().as_secs_f64();
    let after: Vec<Option<u64>> = pids.iter().map(|&p| cpu_ticks(p)).collect();
    let rss: Vec<Option<u64>> = pids.iter().map(|&p| rss_kib(p)).collect();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let cpu_s = match (before[i], after[i]) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / tck),
            _ => None,
        };
        nodes.push(json!({
            "node": cl.names[i], "leader": i == leader, "rss_kib": rss[i],
            "cpu_s": cpu_s, "cpu_pct": cpu_s.map(|c| c / secs * 100.0),
        }));
    }
    let mib = |k: Option<u64>| k.map(|k| k as f64 / 1024.0).unwrap_or(f64::NAN);
    let max_rss = rss
        .iter()
        .flatten()
        .copied()
        .max()
        .map(|k| k as f64 / 1024.0);
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let pct_of = |i: usize| nodes[i]["cpu_pct"].as_f64().unwrap_or(f64::NAN);
    let max_pct = (0..3).map(pct_of).fold(0.0, f64::max);
    rep.rows.push(
        Row::new(
            "idle node process, 3-node cluster: RSS (leader / follower)",
            format!(
                "{:.1} MiB / {:.1} MiB",
                mib(rss[leader]),
                mib(rss[follower])
            ),
        )
        .target("≤ 10 MiB", max_rss.map(|m| m <= 10.0)),
    );
    rep.rows.push(
        Row::new(
            format!("idle node process: CPU over {secs:.0} s (leader / follower)"),
            format!(
                "{:.2} % / {:.2} % of a core ({:.0} / {:.0} ms)",
                pct_of(leader),
                pct_of(follower),
                nodes[leader]["cpu_s"].as_f64().unwrap_or(f64::NAN) * 1e3,
                nodes[follower]["cpu_s"].as_f64().unwrap_or(f64::NAN) * 1e3
            ),
        )
        .target("near zero (≤ 1 % of a core)", Some(max_pct <= 1.0)),
    );
    rep.data.insert(
        "idle".into(),
        json!({"secs": secs, "clk_tck": tck, "nodes": nodes}),
    );
}
