//! The results: the table printed on stdout, the JSON file, and the number formats.
//!
//! Why apart: sections only add rows and data; how figures are laid out is decided here.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{med_range, wall_ns};
use crate::{Opts, Params};

pub(crate) fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

pub(crate) fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub(crate) fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.1} k/s", r / 1e3)
    }
}

pub(crate) fn fmt_ms_range(v: &[f64]) -> String {
    match med_range(v) {
        Some((m, lo, hi)) => format!("{} ({}–{})", fmt_ms(m), fmt_ms(lo), fmt_ms(hi)),
        None => "—".into(),
    }
}

pub(crate) struct Row {
    pub(crate) figure: String,
    pub(crate) measured: String,
    pub(crate) baseline: String,
    ratio: String,
    pub(crate) reference: String,
    pub(crate) target: String,
    verdict: String,
}

impl Row {
    pub(crate) fn new(figure: impl Into<String>, measured: impl Into<String>) -> Row {
        Row {
            figure: figure.into(),
            measured: measured.into(),
            baseline: "—".into(),
            ratio: "—".into(),
            reference: "—".into(),
            target: "—".into(),
            verdict: "".into(),
        }
    }
    pub(crate) fn baseline(mut self, b: impl Into<String>, ratio: Option<f64>) -> Row {
        self.baseline = b.into();
        if let Some(r) = ratio {
            self.ratio = format!("{r:.2}×");
        }
        self
    }
    pub(crate) fn reference(mut self, r: impl Into<String>) -> Row {
        self.reference = r.into();
        self
    }
    pub(crate) fn target(mut self, t: impl Into<String>, met: Option<bool>) -> Row {
        self.target = t.into();
        self.verdict = match met {
            Some(true) => "met".into(),
            Some(false) => "MISSED".into(),
            None => "".into(),
        };
        self
    }
}

#[derive(Default)]
pub(crate) struct Report {
    pub(crate) rows: Vec<Row>,
    pub(crate) data: serde_json::Map<String, Value>,
    pub(crate) failures: Vec<String>,
    pub(crate) notes: Vec<String>,
    /// `/proc/loadavg` before and after each section (other work on the machine).
    pub(crate) load: Vec<Value>,
    /// Raw ping-pong p50/p99 (µs) and pipelined echo (msgs/s) from this run.
    pub(crate) raw_p50: Option<f64>,
    pub(crate) raw_p99: Option<f64>,
    pub(crate) raw_pipe: Option<f64>,
}

impl Report {
    pub(crate) fn print(&self) {
        let head = [
            "figure",
            "measured",
            "raw baseline (same run)",
            "ratio",
            "gen_leader (reference)",
            "target",
            "",
        ];
        let cells: Vec<[&str; 7]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.figure.as_str(),
                    r.measured.as_str(),
                    r.baseline.as_str(),
                    r.ratio.as_str(),
                    r.reference.as_str(),
                    r.target.as_str(),
                    r.verdict.as_str(),
                ]
            })
            .collect();
        let mut w = [0usize; 7];
        for row in std::iter::once(&head).chain(cells.iter()) {
            for (i, c) in row.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |row: &[&str; 7]| {
            let mut s = String::from("|");
            for (i, c) in row.iter().enumerate() {
                let pad = w[i] - c.chars().count();
                s.push_str(&format!(" {c}{} |", " ".repeat(pad)));
            }
            s
        };
        println!("{}", line(&head));
        let sep: Vec<String> = w.iter().map(|&n| "-".repeat(n)).collect();
        let sep_refs: Vec<&str> = sep.iter().map(String::as_str).collect();
        println!(
            "{}",
            line(&<[&str; 7]>::try_from(sep_refs.as_slice()).expect("7 columns"))
        );
        for c in &cells {
            println!("{}", line(c));
        }
        for n in &self.notes {
            println!("note: {n}");
        }
        for f in &self.failures {
            println!("FAILED: {f}");
        }
    }

    pub(crate) fn json(&self, opts: &Opts, p: &Params, total: Duration) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "figure": r.figure, "measured": r.measured, "raw_baseline": r.baseline,
                    "ratio": r.ratio, "gen_leader": r.reference, "target": r.target,
                    "verdict": r.verdict,
                })
            })
            .collect();
        json!({
            "bench": "gen-leader cluster",
            "quick": opts.quick,
            "started_unix_s": wall_ns() / 1_000_000_000 - total.as_secs(),
            "duration_s": total.as_secs_f64(),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "params": p.json(),
            "rows": rows,
            "data": Value::Object(self.data.clone()),
            "notes": self.notes,
            "load": self.load,
            "failures": self.failures,
        })
    }
}
