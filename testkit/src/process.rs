//! One child OS process: started with piped stdin/stdout and stderr to a log file, its stdout
//! lines collected as JSON [`Event`]s by a reader thread, and killed on drop.
//!
//! Why: no test, benchmark or demo may leave a process behind on any exit path. Dropping a
//! [`Proc`] (normal return, `?`, panic) SIGCONTs it if it was stopped, SIGKILLs it and reaps
//! it; [`kill_children_on_interrupt`] covers SIGINT/SIGTERM/SIGHUP, on which no destructor
//! runs. Signals other than SIGKILL go through `kill(1)` (procps), so no `unsafe` is needed.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Pids of the live children, for [`kill_children_on_interrupt`].
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Bumped on every event from any child; [`wait_for`] sleeps on `EPOCH_CV`.
static EPOCH: Mutex<u64> = Mutex::new(0);
static EPOCH_CV: Condvar = Condvar::new();
/// Orders the events of all children by receipt.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Locks `m`, ignoring poisoning (a panicking test must still be able to clean up).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn bump_epoch() {
    *lock(&EPOCH) += 1;
    EPOCH_CV.notify_all();
}

/// One line a child printed on stdout.
#[derive(Debug, Clone)]
pub struct Event {
    /// Receipt order among the events of every child of this process.
    pub seq: u64,
    /// When the reader thread received the line.
    pub at: Instant,
    /// The line as JSON; a line that is not JSON becomes `{"event": "not_json", "line": ..}`.
    pub v: Value,
}

impl Event {
    /// The `event` field (the `datos` example's event name), or `""`.
    pub fn event(&self) -> &str {
        self.v["event"].as_str().unwrap_or("")
    }

    /// The `term` field, or 0.
    pub fn term(&self) -> u64 {
        self.v["term"].as_u64().unwrap_or(0)
    }

    /// The string field `key`, if there is one.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.v[key].as_str()
    }
}

/// Sends `sig` (a name such as `STOP`) to `pid` with `kill(1)`; whether it succeeded.
pub fn send_signal(sig: &str, pid: u32) -> bool {
    Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A child process: lines on its stdin, JSON events from its stdout, stderr in a log file.
/// Killed (SIGCONT first if stopped, then SIGKILL) and reaped on drop.
pub struct Proc {
    label: String,
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    events: Arc<Mutex<Vec<Event>>>,
    eof: Arc<AtomicBool>,
    log: PathBuf,
    stopped: bool,
    reaped: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Proc {
    /// Starts `cmd` with piped stdin and stdout and its stderr appended to `log`. `label`
    /// names the child in failure messages.
    pub fn spawn(mut cmd: Command, label: &str, log: &Path) -> std::io::Result<Proc> {
        let logf = File::options().create(true).append(true).open(log)?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(logf))
            .spawn()?;
        let pid = child.id();
        lock(&LIVE).push(pid);
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdin = child.stdin.take();
        let events = Arc::new(Mutex::new(Vec::new()));
        let eof = Arc::new(AtomicBool::new(false));
        {
            let events = events.clone();
            let eof = eof.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|_| json!({ "event": "not_json", "line": line }));
                    lock(&events).push(Event {
                        seq: NEXT_SEQ.fetch_add(1, Ordering::SeqCst),
                        at: Instant::now(),
                        v,
                    });
                    bump_epoch();
                }
                eof.store(true, Ordering::SeqCst);
                bump_epoch();
            });
        }
        Ok(Proc {
            label: label.to_string(),
            child,
            pid,
            stdin,
            events,
            eof,
            log: log.to_path_buf(),
            stopped: false,
            reaped: false,
        })
    }

    /// The label given to [`Proc::spawn`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The stderr log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Whether the child is stopped (SIGSTOP without SIGCONT since).
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Whether the child is (as far as this handle knows) running: not killed, not reaped.
    pub fn is_running(&self) -> bool {
        !self.reaped
    }

    /// Whether the child's stdout has closed (it exited, or closed it).
    pub fn stdout_closed(&self) -> bool {
        self.eof.load(Ordering::SeqCst)
    }

    /// Writes `line` and a newline on the child's stdin and flushes it.
    pub fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        let Some(s) = self.stdin.as_mut() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "stdin is closed",
            ));
        };
        writeln!(s, "{line}").and_then(|_| s.flush())
    }

    /// Closes the child's stdin.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// How many events arrived so far: a mark to search from with [`Proc::find`].
    pub fn mark(&self) -> usize {
        lock(&self.events).len()
    }

    /// Runs `f` on every event so far (oldest first), under the lock.
    pub fn with_events<R>(&self, f: impl FnOnce(&[Event]) -> R) -> R {
        f(&lock(&self.events))
    }

    /// A copy of every event so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).clone()
    }

    /// The first event at or after `from` whose JSON satisfies `pred`.
    pub fn find(&self, from: usize, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        lock(&self.events)
            .iter()
            .skip(from)
            .find(|e| pred(&e.v))
            .map(|e| e.v.clone())
    }

    /// Sends `sig` (`STOP`, `CONT`, `TERM`, ...) with `kill(1)`; whether it succeeded.
    /// Remembers STOP/CONT so that the drop can resume a stopped child before killing it.
    pub fn signal(&mut self, sig: &str) -> bool {
        if self.reaped {
            return false;
        }
        let ok = send_signal(sig, self.pid);
        if ok {
            match sig {
                "STOP" => self.stopped = true,
                "CONT" => self.stopped = false,
                _ => {}
            }
        }
        ok
    }

    /// SIGKILLs the child (std's direct `kill`, nothing spawned) without reaping it.
    pub fn sigkill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
        }
    }

    /// Kills and reaps the child, closing its stdin; SIGCONT first if it is stopped. The
    /// events it printed stay readable. Does nothing if it was reaped already.
    pub fn kill(&mut self) {
        self.stdin.take();
        if self.reaped {
            return;
        }
        if self.stopped {
            send_signal("CONT", self.pid);
            self.stopped = false;
        }
        let _ = self.child.kill();
        self.reap();
    }

    /// SIGTERM, then waits up to `grace` for the child to exit, else kills it. Whether it
    /// exited on its own.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        if self.reaped {
            return true;
        }
        if self.signal("TERM") {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    self.reaped = true;
                    lock(&LIVE).retain(|p| *p != self.pid);
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill();
        false
    }

    fn reap(&mut self) {
        let _ = self.child.wait();
        self.reaped = true;
        lock(&LIVE).retain(|p| *p != self.pid);
    }

    /// The last `lines` lines of the stderr log.
    pub fn stderr_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The child's state, last `events` events (each cut at 300 characters) and the last
    /// `stderr_lines` lines of its log, for failure messages.
    pub fn diagnose(&self, events: usize, stderr_lines: usize) -> String {
        let last: Vec<String> = self.with_events(|evs| {
            evs[evs.len().saturating_sub(events)..]
                .iter()
                .map(|e| {
                    let s = e.v.to_string();
                    if s.chars().count() > 300 {
                        format!("{}…", s.chars().take(300).collect::<String>())
                    } else {
                        s
                    }
                })
                .collect()
        });
        format!(
            "--- {} (pid {}, {}{})\n  last events:\n    {}\n  stderr tail ({}):\n{}\n",
            self.label,
            self.pid,
            if self.stdout_closed() {
                "exited"
            } else {
                "running"
            },
            if self.stopped { ", stopped" } else { "" },
            last.join("\n    "),
            self.log.display(),
            self.stderr_tail(stderr_lines)
        )
    }
}

/// The last `lines` lines of the file at `path` (empty if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Waits, without polling (woken by every event of any child, and at the deadline), until
/// `f` returns a value; `None` after `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = *lock(&EPOCH);
        if let Some(t) = f() {
            return Some(t);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let g = lock(&EPOCH);
        if *g == seen {
            let _ = EPOCH_CV.wait_timeout(g, deadline - now);
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP (which run no destructor): kills every live child (SIGCONT
/// then SIGKILL), calls `then` with how many there were, and exits with status 130. Returns
/// once the handler is installed (or could not be, after at most 5 s).
pub fn kill_children_on_interrupt(then: impl FnOnce(usize) + Send + 'static) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            let _ = ready_tx.send(());
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                let _ = ready_tx.send(());
                return;
            };
            let _ = ready_tx.send(());
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
        });
        let pids = lock(&LIVE).clone();
        for pid in &pids {
            send_signal("CONT", *pid);
            send_signal("KILL", *pid);
        }
        then(pids.len());
        std::process::exit(130);
    });
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
}
