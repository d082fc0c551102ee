//! A real etcd for the tests: one member or a 3-member cluster on 127.0.0.1, each on free
//! random ports with its data in a temporary directory, killed on every exit path.
//!
//! Why a harness and not a mock: the etcd backend's hard cases (a campaign that returns after
//! its lease expired, an observe stream that ends when etcd restarts, a member dying under a
//! stream) are etcd's behaviour, which only etcd has. Each member is a [`Proc`], so the
//! kill-on-drop rules (SIGCONT a stopped member, SIGKILL, reap) and the SIGINT handler apply.
//!
//! [`etcd_binary`] finds `etcd` on the PATH; a test skips (with a message) when it is missing,
//! unless `GEN_LEADER_REQUIRE_ETCD` is set, as CI sets it, so a missing etcd fails there.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::Proc;

/// The environment variable that makes a missing `etcd` a failure instead of a skip.
pub const REQUIRE_ETCD: &str = "GEN_LEADER_REQUIRE_ETCD";

/// How long a member may take to answer its health check after starting.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `etcd` binary on the PATH. `None` (after printing why) if it is missing and
/// `GEN_LEADER_REQUIRE_ETCD` is unset: the caller skips. Panics if it is missing and the
/// variable is set.
pub fn etcd_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("etcd"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None if std::env::var_os(REQUIRE_ETCD).is_some() => panic!(
            "etcd is not installed but {REQUIRE_ETCD} is set: install it \
             (Debian: apt-get install etcd-server)"
        ),
        None => {
            eprintln!(
                "SKIPPED: etcd is not on the PATH (Debian: apt-get install etcd-server); set \
                 {REQUIRE_ETCD}=1 to make this a failure"
            );
            None
        }
    }
}

/// A free port on 127.0.0.1 (free when this returns; etcd binds it right after).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One etcd member's identity: its name and ports.
#[derive(Clone, Debug)]
struct Member {
    name: String,
    client: u16,
    peer: u16,
}

impl Member {
    fn new(name: &str) -> std::io::Result<Member> {
        Ok(Member {
            name: name.to_string(),
            client: free_port()?,
            peer: free_port()?,
        })
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer)
    }

    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }
}

/// One etcd member process (see the module docs). Stopped and reaped on drop.
pub struct EtcdServer {
    exe: PathBuf,
    me: Member,
    initial_cluster: String,
    data_dir: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
    token: String,
}

impl EtcdServer {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.exe);
        let me = &self.me;
        cmd.arg("--name")
            .arg(&me.name)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &me.client_url()])
            .args(["--advertise-client-urls", &me.client_url()])
            .args(["--listen-peer-urls", &me.peer_url()])
            .args(["--initial-advertise-peer-urls", &me.peer_url()])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--logger", "zap", "--log-level", "warn"]);
        cmd
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let cmd = self.command();
        self.proc = Some(Proc::spawn(
            cmd,
            &format!("etcd {}", self.me.name),
            &self.log,
        )?);
        Ok(())
    }

    /// The client URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        self.me.client_url()
    }

    /// The member's name.
    pub fn name(&self) -> &str {
        &self.me.name
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().filter(|p| p.is_running()).map(Proc::pid)
    }

    /// Whether it answers its health check with `"health":"true"` now.
    pub fn healthy(&self) -> bool {
        health(self.me.client, Duration::from_millis(500))
    }

    /// Waits up to `timeout` for [`EtcdServer::healthy`]; false if the process exited.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.proc.as_ref().is_none_or(|p| p.stdout_closed()) {
                return false;
            }
            if self.healthy() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGSTOP: the member stops answering, its connections stay open.
    pub fn pause(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.signal("STOP"))
    }

    /// SIGCONT after [`EtcdServer::pause`].
    pub fn resume(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.signal("CONT"))
    }

    /// SIGKILL and reap; the data directory stays, for [`EtcdServer::start_again`].
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts the member again on the same ports and data (after [`EtcdServer::kill`]); does
    /// not wait for it to be ready.
    pub fn start_again(&mut self) -> std::io::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Kill, start again, and wait until it answers.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.start_again()?;
        if self.wait_ready(READY_TIMEOUT) {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "etcd {} did not come back: {}",
                self.me.name,
                self.stderr_tail(20)
            )))
        }
    }

    /// The last `lines` lines of its log.
    pub fn stderr_tail(&self, lines: usize) -> String {
        crate::process::tail(&self.log, lines)
    }
}

/// GET /health on 127.0.0.1:`port`; whether it says healthy.
fn health(port: u16, timeout: Duration) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.take(64 * 1024).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.starts_with("HTTP/1.1 200") && text.contains("\"health\":\"true\"")
}

/// Members of one etcd cluster (1 or 3), in a temporary directory removed on drop.
pub struct EtcdCluster {
    members: Vec<EtcdServer>,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// A one-member etcd, ready. `None` if etcd is not installed (see [`etcd_binary`]).
    pub fn single() -> Option<EtcdCluster> {
        Some(Self::start(&etcd_binary()?, 1).expect("start etcd"))
    }

    /// A three-member etcd cluster, ready. `None` if etcd is not installed.
    pub fn three() -> Option<EtcdCluster> {
        Some(Self::start(&etcd_binary()?, 3).expect("start a 3-member etcd cluster"))
    }

    /// Starts `n` members with `exe` and waits until each is healthy; retries with new ports
    /// (another process may have taken a port between choosing and binding it).
    pub fn start(exe: &Path, n: usize) -> std::io::Result<EtcdCluster> {
        let mut last = String::new();
        for _ in 0..3 {
            // In memory where possible: etcd fsyncs every write, which a test need not wait for.
            let shm = Path::new("/dev/shm");
            let mut b = tempfile::Builder::new();
            b.prefix("gen-leader-etcd");
            let dir = match b.tempdir_in(shm) {
                Ok(d) if shm.is_dir() => d,
                _ => b.tempdir()?,
            };
            let members: Vec<Member> = (0..n)
                .map(|i| Member::new(&format!("etcd{i}")))
                .collect::<Result<_, _>>()?;
            let initial_cluster = members
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_url()))
                .collect::<Vec<_>>()
                .join(",");
            let token = format!("gl-{}-{}", std::process::id(), members[0].client);
            let mut servers = Vec::new();
            for m in members {
                let mut s = EtcdServer {
                    exe: exe.to_path_buf(),
                    data_dir: dir.path().join(format!("{}.data", m.name)),
                    log: dir.path().join(format!("{}.log", m.name)),
                    me: m,
                    initial_cluster: initial_cluster.clone(),
                    proc: None,
                    token: token.clone(),
                };
                s.spawn()?;
                servers.push(s);
            }
            if servers.iter().all(|s| s.wait_ready(READY_TIMEOUT)) {
                return Ok(EtcdCluster {
                    members: servers,
                    _dir: dir,
                });
            }
            last = servers
                .iter()
                .map(|s| format!("--- {}:\n{}", s.name(), s.stderr_tail(15)))
                .collect::<Vec<_>>()
                .join("\n");
        }
        Err(std::io::Error::other(format!(
            "etcd did not become healthy (3 tries):\n{last}"
        )))
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdServer::endpoint).collect()
    }

    /// Member `i`.
    pub fn member(&mut self, i: usize) -> &mut EtcdServer {
        &mut self.members[i]
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The last lines of every member's log, for failure messages.
    pub fn diagnose(&self, lines: usize) -> String {
        self.members
            .iter()
            .map(|s| {
                format!(
                    "--- {} ({}):\n{}",
                    s.name(),
                    s.endpoint(),
                    s.stderr_tail(lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
