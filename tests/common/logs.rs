//! Captured tracing output of the nodes in one test binary, to check what a node logged.
//!
//! Why here: the misconfiguration and hostile-client tests both assert on log lines (refusals,
//! which field differs, no fatal errors) and show a node's log when a check fails; one
//! capture, so both read the same format.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// Every line logged at or above the level given to [`capture`], by any node of this binary.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (lines at `level` and above, no colours), once per test
/// binary: the first call's level wins.
pub fn capture(level: tracing::Level) {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(|| LogWriter)
            .try_init();
    });
}

/// Captured log lines that mention `node` (as the `node=` field).
pub fn lines_of(node: &str) -> Vec<String> {
    let logs = LOGS.lock().unwrap();
    let needle = format!("node={node}");
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == needle))
        .map(str::to_string)
        .collect()
}

/// Logs to the test's output, filtered by `RUST_LOG` as `target=level` directives
/// (`gen_leader=debug`); unset or unparsable: errors only. (A `Targets` filter, not an
/// `EnvFilter`: the root crate does not build `tracing-subscriber`'s regex engine.)
pub fn to_test_output() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::ERROR));
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .finish()
        .with(filter)
        .try_init();
}
