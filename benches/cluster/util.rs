//! Small helpers shared by the parent and the children: clocks, environment knobs, the
//! children's JSON event output and latency statistics.
//!
//! Why apart: both sides of the process boundary use them, and none belongs to one section.

use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gen_leader::CallError;
use serde_json::{json, Value};

/// Wall-clock nanoseconds: comparable between processes (CLOCK_REALTIME), used only for
/// cross-process intervals (failover, broadcast); in-process figures use `Instant`.
/// An unsigned integer from the environment, if set and valid.
pub(crate) fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

pub(crate) fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Prints one JSON event line on stdout (children only).
pub(crate) fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

pub(crate) fn ev(v: &Value) -> &str {
    v["ev"].as_str().unwrap_or("")
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Latency summary (µs) of samples in ns.
pub(crate) fn lat_summary(mut s: Vec<u64>) -> Value {
    s.sort_unstable();
    let mean = if s.is_empty() {
        0.0
    } else {
        s.iter().map(|&x| x as f64).sum::<f64>() / s.len() as f64
    };
    json!({
        "n": s.len(),
        "p50_us": pct(&s, 0.50) as f64 / 1e3,
        "p90_us": pct(&s, 0.90) as f64 / 1e3,
        "p99_us": pct(&s, 0.99) as f64 / 1e3,
        "p999_us": pct(&s, 0.999) as f64 / 1e3,
        "min_us": s.first().copied().unwrap_or(0) as f64 / 1e3,
        "max_us": s.last().copied().unwrap_or(0) as f64 / 1e3,
        "mean_us": mean / 1e3,
    })
}

/// Median, min and max.
pub(crate) fn med_range(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some((med, s[0], s[n - 1]))
}

pub(crate) fn err_kind(e: &CallError) -> String {
    let d = format!("{e:?}");
    d.split([' ', '(', '{'])
        .next()
        .unwrap_or("error")
        .to_string()
}

/// Locks `m`, ignoring poisoning (a failed section must not stop the next).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
