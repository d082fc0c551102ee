//! What a node keeps on disk: its term reservation (so a restart never reuses a term), its
//! promise (so a restart neither lowers the term it follows nor claims more than it promised)
//! and the audit trail of leadership changes.
//!
//! Two term files, because they answer two questions. `term` bounds every term this node may
//! have *proposed*: it is a reservation written (with an fsync) only every
//! [`TERM_RESERVATION`] terms, so elections do not wait for the disk, and a restarted node
//! proposes only above it. `promised` is the term this node last *promised* (proposed or
//! accepted), written through on every change: it is what the restarted node tells its peers
//! (`Status`, `Join`). Taking the reservation for the promise, as the node once did, made a
//! restarted follower claim up to 64 terms it never promised, and the sitting leader
//! re-elected itself above them instead of taking the node back (gen_leader's join rule).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::types::Term;

/// The length of `<data_dir>/promised`: 20 digits (any `u64`) and a newline, so that every
/// write overwrites the whole file in place.
const PROMISE_LEN: u64 = 21;

/// How many terms past the last one used a node reserves on disk at once: promising a term
/// below the reservation needs no fsync, so elections do not wait for the disk. A restarted
/// node proposes only above its reservation, so a term is never reused; its own proposals
/// jump by up to this much per restart (joining a sitting leader proposes nothing).
pub(crate) const TERM_RESERVATION: u64 = 64;

/// Where a node keeps the highest term it has proposed or accepted. Behind a trait so that a
/// test can make the write fail: a node that cannot persist a term must stop before it sends
/// anything that depends on it (raft-rs keeps its storage behind a trait for the same reason).
pub(crate) trait TermStore: Send + 'static {
    /// Records `term` as the node's promise, and makes sure it is durably covered by the
    /// reservation, before it is used.
    fn store(&mut self, term: Term) -> io::Result<()>;

    /// The reservation read at start: every term this node may have proposed before is at
    /// or below it, so it proposes only above it (the engine's `proposal_floor`).
    fn proposal_floor(&self) -> Term;
}

/// The two term files of a data directory (see the module docs).
///
/// * `<data_dir>/term`, the reservation: replaced atomically with an fsync (write, fsync,
///   rename, fsync of the directory), at least as high as any term this node has proposed or
///   accepted, so it survives a power loss.
/// * `<data_dir>/promised`, the promise: overwritten in place on every change (one
///   fixed-width write of [`PROMISE_LEN`] bytes at offset 0) **without** an fsync, after the
///   reservation covers it. It survives a crash of the process (SIGKILL, panic, OOM kill),
///   which is what a restart usually is. A power loss may bring back an older promise, or a
///   file that does not read as one: a term is still never reused (the reservation is
///   fsynced), but the node may then follow a leader whose term is below the one it followed
///   before; a file that does not read as a promise is replaced by the reservation, which
///   only costs one extra election. An fsync here would cost 2–21 ms per election and per
///   node.
///
/// Without a data directory nothing is written (and a restart may reuse a term: the node
/// warns at start).
#[derive(Debug)]
pub(crate) struct FileTermStore {
    dir: Option<PathBuf>,
    /// `<data_dir>/promised`, kept open: it is overwritten in place.
    promised: Option<File>,
    reserved: Term,
    floor: Term,
}

/// Reads a term file: `None` if it is missing or empty; an error if it is not a term number
/// or beyond [`crate::election::MAX_TERM`] (a corrupt file is not read as 0).
fn read_term(path: &Path) -> io::Result<Option<Term>> {
    let s = match fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if s.trim().is_empty() {
        return Ok(None);
    }
    let term = Term(s.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a term number: {s:?}", path.display()),
        )
    })?);
    if term.0 > crate::election::MAX_TERM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: term {} is beyond the largest term ({}): the file is corrupt",
                path.display(),
                term.0,
                crate::election::MAX_TERM
            ),
        ));
    }
    Ok(Some(term))
}

impl FileTermStore {
    /// Opens (creating the directory), reads the reservation (0 if none: the
    /// [`TermStore::proposal_floor`]) and the promise, which the node must start from
    /// (returned), reserves the next [`TERM_RESERVATION`] terms on disk and rewrites the
    /// promise in its fixed-width form.
    ///
    /// A `promised` that is missing, empty, unreadable as a term or above the reservation
    /// (a data directory from before the promise had its own file, or what a power loss left
    /// of a file that is never fsynced) is replaced by the reservation, which is always a safe
    /// promise (at the cost of one re-election when the node joins), with a warning.
    pub(crate) fn open(dir: Option<&Path>) -> io::Result<(Self, Term)> {
        let Some(dir) = dir else {
            return Ok((
                FileTermStore {
                    dir: None,
                    promised: None,
                    reserved: Term(u64::MAX),
                    floor: Term(0),
                },
                Term(0),
            ));
        };
        fs::create_dir_all(dir)?;
        let term = read_term(&dir.join("term"))?.unwrap_or(Term(0));
        let path = dir.join("promised");
        let promised = match read_term(&path) {
            Ok(Some(p)) if p <= term => p,
            Ok(None) if term == Term(0) => term,
            other => {
                let why = match other {
                    Ok(Some(p)) => format!("promise {p} above the reservation"),
                    Ok(None) => "missing or empty".to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(path = %path.display(), reservation = %term, %why,
                    "no valid promise on disk: starting from the reservation (the node may \
                     make the leader re-elect when it joins)");
                term
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut store = FileTermStore {
            dir: Some(dir.to_path_buf()),
            promised: Some(file),
            reserved: term,
            floor: term,
        };
        store.reserve(term)?;
        store.write_promised(promised)?;
        if let Some(f) = &store.promised {
            f.set_len(PROMISE_LEN)?;
        }
        Ok((store, promised))
    }

    /// Overwrites `promised` in place: one fixed-width write at offset 0, no fsync (see the
    /// type's docs). A write of a few bytes within one page is all or nothing if the process
    /// dies; a write-and-rename would cost 1–2 ms on ext4 (the rename flushes the new file's
    /// data), as much as a whole failover, this costs microseconds.
    fn write_promised(&mut self, term: Term) -> io::Result<()> {
        let Some(f) = self.promised.as_mut() else {
            return Ok(());
        };
        let line = format!("{:0width$}\n", term.0, width = PROMISE_LEN as usize - 1);
        f.seek(SeekFrom::Start(0))?;
        f.write_all(line.as_bytes())
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
    /// An fsync only when `term` is beyond the current reservation; the promise is written
    /// through every time, after the reservation covers it.
    fn store(&mut self, term: Term) -> io::Result<()> {
        if term > self.reserved {
            self.reserve(term)?;
        }
        self.write_promised(term)
    }

    fn proposal_floor(&self) -> Term {
        self.floor
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
    fn a_reopened_store_proposes_above_every_term_used_and_keeps_the_promise() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, p) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!((p, s.proposal_floor()), (Term(0), Term(0)));
        // Within the reservation: no fsync needed, still covered after a restart; the
        // promise is the term stored, not the reservation.
        s.store(Term(42)).unwrap();
        let (mut s, p) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!(p, Term(42));
        assert_eq!(s.proposal_floor(), Term(TERM_RESERVATION));
        // Beyond it: a new reservation.
        s.store(Term(500)).unwrap();
        let (s, p) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!(p, Term(500));
        assert_eq!(s.proposal_floor(), Term(500 + TERM_RESERVATION));
        // A node killed before it promised anything restarts with no promise.
        let d = tempfile::tempdir().unwrap();
        FileTermStore::open(Some(d.path())).unwrap();
        let (s, p) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!((p, s.proposal_floor()), (Term(0), Term(TERM_RESERVATION)));
    }

    #[test]
    fn a_promise_that_does_not_read_as_one_is_replaced_by_the_reservation() {
        // A data directory from before the promise had its own file, or what a power loss
        // left of a file never fsynced: the reservation is a safe promise.
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("term"), "70\n").unwrap();
        let (_, p) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!(p, Term(70), "missing");
        for bad in ["", "\0\0\0\0", "x\n", "999999\n"] {
            fs::write(d.path().join("promised"), bad).unwrap();
            let reservation = read_term(&d.path().join("term")).unwrap().unwrap();
            let (s, p) = FileTermStore::open(Some(d.path())).unwrap();
            assert_eq!(
                (p, s.proposal_floor()),
                (reservation, reservation),
                "{bad:?}"
            );
        }
        // What it rewrote reads back.
        let (_, p) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!(p, Term(70 + 4 * TERM_RESERVATION));
    }

    #[test]
    fn the_promise_is_overwritten_in_place_at_a_fixed_width() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = FileTermStore::open(Some(d.path())).unwrap();
        s.store(Term(123_456)).unwrap();
        s.store(Term(123_457)).unwrap();
        let text = fs::read_to_string(d.path().join("promised")).unwrap();
        assert_eq!(text.len() as u64, PROMISE_LEN);
        assert_eq!(text.trim().parse::<u64>().unwrap(), 123_457);
    }

    #[test]
    fn a_failed_promise_write_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = FileTermStore::open(Some(d.path())).unwrap();
        // Read-only: every write fails.
        s.promised = Some(File::open(d.path().join("promised")).unwrap());
        assert!(
            s.store(Term(3)).is_err(),
            "the node must stop, not go on unpersisted"
        );
    }

    #[test]
    fn the_harness_models_this_reservation() {
        assert_eq!(
            TERM_RESERVATION,
            crate::election::testing::STORE_RESERVATION
        );
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
