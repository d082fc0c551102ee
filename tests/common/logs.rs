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
