//! What a node keeps on disk: its last term (so a restart never reuses one) and the audit
//! trail of leadership changes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::types::Term;

/// How many terms past the last one used a node reserves on disk at once: promising a term
/// below the reservation needs no disk write, so elections do not wait for an fsync. A
/// restarted node starts above its reservation, so a term is never reused; its terms jump by
/// up to this much per restart.
pub(crate) const TERM_RESERVATION: u64 = 64;

/// Where a node keeps the highest term it has proposed or accepted. Behind a trait so that a
/// test can make the write fail: a node that cannot persist a term must stop before it sends
/// anything that depends on it (raft-rs keeps its storage behind a trait for the same reason).
pub(crate) trait TermStore: Send + 'static {
    /// Makes sure `term` is durably covered before it is used.
    fn store(&mut self, term: Term) -> io::Result<()>;
}

/// The persisted term high-water mark: `<data_dir>/term`, replaced atomically (write, fsync,
/// rename, fsync of the directory). It holds a term at least as high as any this node has
/// proposed or accepted. Without a data directory nothing is written (and a restart may reuse
/// a term: the node warns at start).
#[derive(Debug)]
pub(crate) struct FileTermStore {
    dir: Option<PathBuf>,
    reserved: Term,
}

impl FileTermStore {
    /// Opens (creating the directory), reads the stored term (0 if none), which the node must
    /// start from, and reserves the next [`TERM_RESERVATION`] terms on disk.
    pub(crate) fn open(dir: Option<&Path>) -> io::Result<(Self, Term)> {
        let Some(dir) = dir else {
            return Ok((
                FileTermStore {
                    dir: None,
                    reserved: Term(u64::MAX),
                },
                Term(0),
            ));
        };
        fs::create_dir_all(dir)?;
        let term = match fs::read_to_string(dir.join("term")) {
            Ok(s) => Term(s.trim().parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a term number: {s:?}", dir.join("term").display()),
                )
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Term(0),
            Err(e) => return Err(e),
        };
        if term.0 > crate::election::MAX_TERM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: term {} is beyond the largest term ({}): the file is corrupt",
                    dir.join("term").display(),
                    term.0,
                    crate::election::MAX_TERM
                ),
            ));
        }
        let mut store = FileTermStore {
            dir: Some(dir.to_path_buf()),
            reserved: term,
        };
        store.reserve(term)?;
        Ok((store, term))
    }

    fn reserve(&mut self, term: Term) -> io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let term = Term(
            term.0
                .saturating_add(TERM_RESERVATION)
                .min(crate::election::MAX_TERM),
        );
        let tmp = dir.join("term.tmp");
        {
            let mut f = File::create(&tmp)?;
            writeln!(f, "{}", term.0)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, dir.join("term"))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        self.reserved = term;
        Ok(())
    }
}

impl TermStore for FileTermStore {
    /// A disk write only when `term` is beyond the current reservation.
    fn store(&mut self, term: Term) -> io::Result<()> {
        if term <= self.reserved {
            return Ok(());
        }
        self.reserve(term)
    }
}

/// One leadership change, as written to the audit trail.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct AuditEvent<'a> {
    pub node: &'a str,
    pub event: &'a str,
    pub term: Term,
    pub leader: Option<&'a str>,
    pub reason: &'a str,
    pub mono_ms: u128,
}

/// A line of `audit.jsonl`: the event with the wall-clock time it was written.
#[derive(serde::Serialize)]
struct AuditLine<'a> {
    wall_ms: u128,
    mono_ms: u128,
    node: &'a str,
    event: &'a str,
    term: u64,
    leader: Option<&'a str>,
    reason: &'a str,
}

/// The audit trail: `<data_dir>/audit.jsonl`, one JSON object per leadership change, with
/// wall-clock time (for humans) and monotonic time since the node started (for order).
#[derive(Debug)]
pub(crate) struct AuditLog {
    file: Option<File>,
}

impl AuditLog {
    pub(crate) fn open(dir: Option<&Path>) -> io::Result<Self> {
        let file = match dir {
            None => None,
            Some(d) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(d.join("audit.jsonl"))?,
            ),
        };
        Ok(AuditLog { file })
    }

    pub(crate) fn append(&mut self, ev: &AuditEvent<'_>) {
        let Some(f) = self.file.as_mut() else { return };
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let line = AuditLine {
            wall_ms,
            mono_ms: ev.mono_ms,
            node: ev.node,
            event: ev.event,
            term: ev.term.0,
            leader: ev.leader,
            reason: ev.reason,
        };
        let mut bytes = match serde_json::to_vec(&line) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode an audit event");
                return;
            }
        };
        bytes.push(b'\n');
        if let Err(e) = f.write_all(&bytes) {
            tracing::warn!(error = %e, "cannot append to the audit trail");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reopened_store_starts_above_every_term_used() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, t) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!(t, Term(0));
        // Within the reservation: no write needed, still covered after a restart.
        s.store(Term(42)).unwrap();
        let (mut s, t) = FileTermStore::open(Some(d.path())).unwrap();
        assert!(t >= Term(42), "{t:?}");
        assert_eq!(t, Term(TERM_RESERVATION));
        // Beyond it: a new reservation.
        s.store(Term(500)).unwrap();
        let (_, t) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!(t, Term(500 + TERM_RESERVATION));
    }

    #[test]
    fn corrupt_term_file_is_an_error_not_zero() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("term"), "garbage").unwrap();
        assert!(FileTermStore::open(Some(d.path())).is_err());
    }

    #[test]
    fn audit_lines_are_json() {
        let d = tempfile::tempdir().unwrap();
        let mut a = AuditLog::open(Some(d.path())).unwrap();
        a.append(&AuditEvent {
            node: "a@h:1",
            event: "elected",
            term: Term(3),
            leader: Some("a@h:1"),
            reason: "say \"hi\"",
            mono_ms: 5,
        });
        let s = fs::read_to_string(d.path().join("audit.jsonl")).unwrap();
        let v: serde_json::Value = serde_json::from_str(s.trim()).unwrap();
        assert_eq!(v["event"], "elected");
        assert_eq!(v["term"], 3);
        assert_eq!(v["reason"], "say \"hi\"");
    }
}
