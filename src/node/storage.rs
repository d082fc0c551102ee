//! What a node keeps on disk: its term reservation (so a restart never reuses a term), its
//! promise (so a restart neither lowers the term it follows nor claims more than it promised)
//! and the audit trail of leadership changes.
//!
//! Two terms, because they answer two questions. The *reservation* bounds every term this
//! node may have *proposed*: it is written (with an fsync) only every [`TERM_RESERVATION`]
//! terms, so elections do not wait for the disk, and a restarted node proposes only above it.
//! The *promise* is the term this node last *promised* (proposed or accepted), written
//! through on every change: it is what the restarted node tells its peers (`Status`, `Join`).
//! Taking the reservation for the promise, as the node once did, made a restarted follower
//! claim up to 64 terms it never promised, and the sitting leader re-elected itself above
//! them instead of taking the node back (gen_leader's join rule).
//!
//! Both live in one file, `<data_dir>/term`: the reservation in its first page, the promise
//! at the start of its second ([`PROMISE_AT`]). One file because creating a file is what a
//! node's first start pays most for on a disk shared with other fsyncs (about a millisecond
//! each on ext4, measured while the nodes of a cluster start together); two pages so that
//! overwriting the promise in place never rewrites the page that holds the fsynced
//! reservation. A data directory from before (the promise in its own file, `promised`) is
//! read once and moved.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::types::Term;

/// Where the promise starts in `<data_dir>/term`: the file's second page (see the module
/// docs). The bytes between the reservation's line and it are a hole (they read as zeros).
const PROMISE_AT: u64 = 4096;

/// The promise's width: 20 digits (any `u64`) and a newline, so that every write overwrites
/// the whole of it in place.
const PROMISE_LEN: u64 = 21;

/// A term file longer than this is not one (the promise ends at `PROMISE_AT + PROMISE_LEN`).
const MAX_TERM_FILE: u64 = 2 * PROMISE_AT;

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

/// The term file of a data directory, `<data_dir>/term` (see the module docs).
///
/// * The reservation (first line): the file is replaced atomically with an fsync (write,
///   fsync, rename, fsync of the directory), with the reservation at least as high as any
///   term this node has proposed or accepted and the current promise, so both survive a
///   power loss.
/// * The promise (at [`PROMISE_AT`]): overwritten in place on every change (one fixed-width
///   write of [`PROMISE_LEN`] bytes) **without** an fsync, after the reservation covers it.
///   It survives a crash of the process (SIGKILL, panic, OOM kill), which is what a restart
///   usually is. A power loss may bring back an older promise, or bytes that do not read as
///   one: a term is still never reused (the reservation is fsynced, and its page is never
///   written again), but the node may then follow a leader whose term is below the one it
///   followed before; a promise that does not read as one is replaced by the reservation,
///   which only costs one extra election. An fsync here would cost 2–21 ms per election and
///   per node.
///
/// Without a data directory nothing is written (and a restart may reuse a term: the node
/// warns at start).
#[derive(Debug)]
pub(crate) struct FileTermStore {
    dir: Option<PathBuf>,
    /// `<data_dir>/term`, kept open from the write that created it: the promise is
    /// overwritten in place.
    file: Option<File>,
    reserved: Term,
    promise: Term,
    floor: Term,
}

/// Parses a term from its line (the bytes up to the first newline; what follows is the
/// file's hole): `None` if the bytes are empty or blank; an error if the line is not a term
/// number or beyond [`crate::election::MAX_TERM`]. Zeros are not blank: a corrupt file is
/// not read as "no term", which would let the node reuse terms.
fn parse_term(path: &Path, bytes: &[u8]) -> io::Result<Option<Term>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let t = text.trim();
    let term = Term(t.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not a term number: {t:?}", path.display()),
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

/// What `<data_dir>/term` holds.
struct TermFile {
    /// `None` if the file is missing or empty.
    reservation: Option<Term>,
    /// `None` if the file has no promise (missing, or written before the promise moved in);
    /// else what the promise's bytes read as.
    promise: Option<io::Result<Option<Term>>>,
}

/// Reads `<data_dir>/term`. An unreadable reservation is an error; an unreadable promise is
/// returned as one, for the caller to replace.
fn read_term_file(path: &Path) -> io::Result<TermFile> {
    let mut bytes = Vec::new();
    match File::open(path) {
        // One byte past the largest term file is enough to refuse a larger one.
        Ok(f) => f.take(MAX_TERM_FILE + 1).read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(TermFile {
                reservation: None,
                promise: None,
            })
        }
        Err(e) => return Err(e),
    };
    if bytes.len() as u64 > MAX_TERM_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: more than {MAX_TERM_FILE} bytes: not a term file",
                path.display()
            ),
        ));
    }
    let at = PROMISE_AT as usize;
    let (head, tail) = bytes.split_at(bytes.len().min(at));
    Ok(TermFile {
        reservation: parse_term(path, head)?,
        promise: (!tail.is_empty()).then(|| parse_term(path, tail)),
    })
}

impl FileTermStore {
    /// Opens (creating the directory), reads the reservation (0 if none: the
    /// [`TermStore::proposal_floor`]) and the promise, which the node must start from
    /// (returned), and reserves the next [`TERM_RESERVATION`] terms on disk with the promise
    /// beside them.
    ///
    /// A promise that is missing, unreadable as a term or above the reservation (what a
    /// power loss left of bytes that are never fsynced, or a data directory from before the
    /// node kept a promise) is replaced by the reservation, which is always a safe promise
    /// (at the cost of one re-election when the node joins), with a warning.
    pub(crate) fn open(dir: Option<&Path>) -> io::Result<(Self, Term)> {
        let Some(dir) = dir else {
            return Ok((
                FileTermStore {
                    dir: None,
                    file: None,
                    reserved: Term(u64::MAX),
                    promise: Term(0),
                    floor: Term(0),
                },
                Term(0),
            ));
        };
        fs::create_dir_all(dir)?;
        let path = dir.join("term");
        let read = read_term_file(&path)?;
        let term = read.reservation.unwrap_or(Term(0));
        // Before the promise moved into `term`, it had a file of its own.
        let legacy = dir.join("promised");
        let (promise, from) = match read.promise {
            Some(p) => (p, &path),
            None => match fs::read(&legacy) {
                Ok(bytes) => (parse_term(&legacy, &bytes), &legacy),
                Err(e) if e.kind() == io::ErrorKind::NotFound => (Ok(None), &path),
                Err(e) => (Err(e), &legacy),
            },
        };
        let promised = match promise {
            Ok(Some(p)) if p <= term => p,
            Ok(None) if term == Term(0) => term,
            other => {
                let why = match other {
                    Ok(Some(p)) => format!("promise {p} above the reservation"),
                    Ok(None) => "missing or empty".to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(path = %from.display(), reservation = %term, %why,
                    "no valid promise on disk: starting from the reservation (the node may \
                     make the leader re-elect when it joins)");
                term
            }
        };
        let mut store = FileTermStore {
            dir: Some(dir.to_path_buf()),
            file: None,
            reserved: term,
            promise: promised,
            floor: term,
        };
        store.reserve(term)?;
        if from == &legacy {
            // Moved into `term` (fsynced above); a leftover would only be ignored.
            let _ = fs::remove_file(&legacy);
        }
        Ok((store, promised))
    }

    /// Overwrites the promise in place: one fixed-width write at [`PROMISE_AT`], no fsync
    /// (see the type's docs). A write of a few bytes within one page is all or nothing if
    /// the process dies; a write-and-rename would cost 1–2 ms on ext4 (the rename flushes
    /// the new file's data), as much as a whole failover, this costs microseconds.
    fn write_promise(&mut self) -> io::Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        write_promise_to(f, self.promise)
    }

    /// Replaces `<data_dir>/term` with a reservation [`TERM_RESERVATION`] terms above `term`
    /// and the current promise: write, fsync, rename, fsync of the directory. Keeps the new
    /// file open for the promise's writes.
    fn reserve(&mut self, term: Term) -> io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let term = Term(
            term.0
                .saturating_add(TERM_RESERVATION)
                .min(crate::election::MAX_TERM),
        );
        let tmp = dir.join("term.tmp");
        let mut f = File::create(&tmp)?;
        writeln!(f, "{}", term.0)?;
        write_promise_to(&mut f, self.promise)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join("term"))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        self.file = Some(f);
        self.reserved = term;
        Ok(())
    }
}

/// Writes `promise` at [`PROMISE_AT`] of `f`, at its fixed width.
fn write_promise_to(f: &mut File, promise: Term) -> io::Result<()> {
    let line = format!("{:0width$}\n", promise.0, width = PROMISE_LEN as usize - 1);
    f.seek(SeekFrom::Start(PROMISE_AT))?;
    f.write_all(line.as_bytes())
}

impl TermStore for FileTermStore {
    /// An fsync only when `term` is beyond the current reservation (the new reservation
    /// carries the promise); else the promise is written through in place.
    fn store(&mut self, term: Term) -> io::Result<()> {
        self.promise = term;
        if term > self.reserved {
            return self.reserve(term);
        }
        self.write_promise()
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

    /// Writes a term file as the node writes it: the reservation's line, then `promise` at
    /// the start of the second page.
    fn write_term_file(dir: &Path, reservation: &str, promise: &[u8]) {
        let mut bytes = reservation.as_bytes().to_vec();
        bytes.resize(PROMISE_AT as usize, 0);
        bytes.extend_from_slice(promise);
        fs::write(dir.join("term"), bytes).unwrap();
    }

    #[test]
    fn a_promise_that_does_not_read_as_one_is_replaced_by_the_reservation() {
        // What a power loss left of bytes never fsynced, or a data directory from before
        // the node kept a promise: the reservation is a safe promise.
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("term"), "70\n").unwrap();
        let (_, p) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!(p, Term(70), "missing");
        let mut reservation = Term(70 + TERM_RESERVATION);
        for bad in [&b"\0\0\0\0"[..], b"x\n", b"99999999\n"] {
            write_term_file(d.path(), &format!("{}\n", reservation.0), bad);
            let (s, p) = FileTermStore::open(Some(d.path())).unwrap();
            assert_eq!(
                (p, s.proposal_floor()),
                (reservation, reservation),
                "{bad:?}"
            );
            reservation = Term(reservation.0 + TERM_RESERVATION);
        }
        // What it rewrote (the last reservation it read, as the promise) reads back.
        let (_, p) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!(p, Term(reservation.0 - TERM_RESERVATION));
    }

    #[test]
    fn a_promise_in_its_own_file_is_read_once_and_moved_into_the_term_file() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("term"), "128\n").unwrap();
        fs::write(d.path().join("promised"), "00000000000000000077\n").unwrap();
        let (s, p) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!((p, s.proposal_floor()), (Term(77), Term(128)));
        assert!(!d.path().join("promised").exists(), "moved");
        let (s, p) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!(
            (p, s.proposal_floor()),
            (Term(77), Term(128 + TERM_RESERVATION))
        );
        // A legacy file that does not read as a promise: the reservation, as above.
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("term"), "128\n").unwrap();
        fs::write(d.path().join("promised"), "999\n").unwrap();
        let (_, p) = FileTermStore::open(Some(d.path())).unwrap();
        assert_eq!(p, Term(128));
    }

    #[test]
    fn the_promise_is_overwritten_in_place_and_never_touches_the_reservations_page() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = FileTermStore::open(Some(d.path())).unwrap();
        let path = d.path().join("term");
        let before = fs::read(&path).unwrap();
        s.store(Term(12)).unwrap();
        s.store(Term(13)).unwrap();
        let after = fs::read(&path).unwrap();
        assert_eq!(after.len() as u64, PROMISE_AT + PROMISE_LEN);
        let at = PROMISE_AT as usize;
        assert_eq!(
            after[..at],
            before[..at],
            "the reservation's page is not rewritten"
        );
        assert_eq!(&after[at..], b"00000000000000000013\n");
        assert_eq!(
            String::from_utf8_lossy(&after[..at]).trim_end_matches('\0'),
            format!("{TERM_RESERVATION}\n")
        );
        // Beyond the reservation: one new file carries both.
        s.store(Term(123_457)).unwrap();
        let t = read_term_file(&path).unwrap();
        assert_eq!(t.reservation, Some(Term(123_457 + TERM_RESERVATION)));
        assert_eq!(t.promise.unwrap().unwrap(), Some(Term(123_457)));
        // And the in-place writes go to that new file.
        s.store(Term(123_458)).unwrap();
        let t = read_term_file(&path).unwrap();
        assert_eq!(t.promise.unwrap().unwrap(), Some(Term(123_458)));
    }

    #[test]
    fn a_first_start_creates_no_file_beside_the_term_file() {
        // Each file created at start waits for the journal while other nodes fsync (about
        // a millisecond on ext4): the promise has no file of its own.
        let d = tempfile::tempdir().unwrap();
        FileTermStore::open(Some(d.path())).unwrap();
        let names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["term"]);
    }

    #[test]
    fn a_failed_promise_write_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let (mut s, _) = FileTermStore::open(Some(d.path())).unwrap();
        // Read-only: every write fails.
        s.file = Some(File::open(d.path().join("term")).unwrap());
        assert!(
            s.store(Term(3)).is_err(),
            "the node must stop, not go on unpersisted"
        );
    }

    #[test]
    fn a_term_file_of_the_wrong_size_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("term"),
            vec![b'0'; MAX_TERM_FILE as usize + 1],
        )
        .unwrap();
        assert!(FileTermStore::open(Some(d.path())).is_err());
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
        // Zeros where the reservation should be (what a crash can leave of a file): not
        // "no reservation", which would let the node reuse terms. The zeros after the
        // reservation's line are the file's hole and do not count.
        for zeros in [
            &b"\0\0\0\0"[..],
            &[0u8; PROMISE_AT as usize + 21][..],
            b"\n\0\0",
        ] {
            fs::write(d.path().join("term"), zeros).unwrap();
            assert!(
                FileTermStore::open(Some(d.path())).is_err(),
                "{} bytes read as a reservation",
                zeros.len()
            );
        }
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
