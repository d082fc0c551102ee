//! Node configuration, built and validated with [`Config::builder`].

mod backend;
mod members;
mod mode;
#[cfg(feature = "tls")]
mod tls;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::election::QuorumParams;
use crate::error::{BackendConfigError, ConfigError};
use crate::types::{NodeId, NodeName};

pub use backend::{Backend, ElectionRole};
pub use members::{MemberLimit, Members};
pub use mode::{Mode, QuorumConfig, DEFAULT_LEASE, DEFAULT_MARGIN, DEFAULT_MAX_DRIFT};
#[cfg(feature = "tls")]
pub use tls::{TlsConfig, TlsError, TlsInput};

/// Default heartbeat interval: a connection with no traffic sends a heartbeat this often.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(100);
/// Default failure timeout: a peer silent for this long is declared DOWN.
pub const DEFAULT_FAILURE_TIMEOUT: Duration = Duration::from_millis(600);
/// Default election timeout (base of every election wait).
pub const DEFAULT_ELECTION_TIMEOUT: Duration = Duration::from_millis(150);
/// Default time a starting node waits to hear from unresponsive peers.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_millis(500);
/// Default time allowed for a connection handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `leader_call` timeout (gen_leader's is 5 s too).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default maximum frame size.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;
/// Default per-connection send queue length, in frames.
pub const DEFAULT_SEND_QUEUE: usize = 4096;
/// Default bound of the member table in etcd mode ([`ConfigBuilder::max_members`]).
pub const DEFAULT_MAX_MEMBERS: usize = 256;
/// The most members a node holds, in any mode.
pub const MAX_MEMBERS: usize = 4096;
/// Default bound of a node's mailbox: messages from its handles (`leader_cast`, `cast`,
/// `info`, calls through the node) not yet handled.
pub const DEFAULT_MAILBOX: usize = 4096;

/// A secret (the cookie): compared and hashed, never shown. Its `Debug` prints `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Secret(Vec<u8>);

impl Secret {
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A validated node configuration. Build it with [`Config::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) me: NodeName,
    pub(crate) my_id: NodeId,
    pub(crate) members: Members,
    pub(crate) cluster: String,
    pub(crate) cookie: Secret,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) heartbeat: Duration,
    pub(crate) failure_timeout: Duration,
    pub(crate) election_timeout: Duration,
    pub(crate) startup_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) preempt: bool,
    pub(crate) mode: Mode,
    pub(crate) backend: Backend,
    pub(crate) election_role: ElectionRole,
    pub(crate) max_frame_len: usize,
    pub(crate) send_queue: usize,
    pub(crate) mailbox: usize,
    pub(crate) seed: Option<u64>,
    pub(crate) listen: Option<String>,
    pub(crate) dial_addrs: HashMap<NodeId, String>,
    pub(crate) spin: Option<Duration>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<TlsConfig>,
}

impl Config {
    /// The TLS settings of every cluster connection, if any (cargo feature `tls`).
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// The shared secret, for the handshake.
    pub(crate) fn cookie(&self) -> &[u8] {
        self.cookie.expose()
    }

    /// Starts a builder for the node called `me` (`name@host:port`).
    pub fn builder(me: impl AsRef<str>) -> ConfigBuilder {
        ConfigBuilder {
            me: me.as_ref().to_string(),
            candidates: Vec::new(),
            workers: Vec::new(),
            cluster: "gen_leader".to_string(),
            cookie: None,
            data_dir: None,
            heartbeat: DEFAULT_HEARTBEAT,
            failure_timeout: None,
            election_timeout: DEFAULT_ELECTION_TIMEOUT,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            preempt: false,
            mode: Mode::Bully,
            backend: Backend::Mesh,
            election_role: None,
            max_members: DEFAULT_MAX_MEMBERS,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            send_queue: DEFAULT_SEND_QUEUE,
            mailbox: DEFAULT_MAILBOX,
            seed: None,
            listen: None,
            dial_addrs: Vec::new(),
            spin: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// This node's name.
    pub fn me(&self) -> &NodeName {
        &self.me
    }

    /// The member list.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Whether a returning higher-priority candidate replaces a sitting leader.
    pub fn preempt(&self) -> bool {
        self.preempt
    }

    /// The election mode (bully unless [`ConfigBuilder::mode`] said otherwise).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Who decides which node leads (the mesh unless [`ConfigBuilder::backend`] said
    /// otherwise).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// With an external backend (etcd): whether this node campaigns
    /// ([`ElectionRole::Candidate`]) or only follows ([`ElectionRole::Worker`]).
    /// [`ElectionRole::Candidate`] with the mesh backend, where the lists say who may lead.
    pub fn election_role(&self) -> ElectionRole {
        self.election_role
    }

    /// The lease parameters of the runtime's lease checks: quorum mode's (renewing every
    /// heartbeat), or an external backend's lease expressed the same way (its TTL as `E`, so
    /// that `leader_lease` is its local lease); `None` in bully mode. The engine takes them
    /// only in quorum mode ([`Config::engine_quorum`]).
    pub(crate) fn quorum_params(&self) -> Option<QuorumParams> {
        if self.backend.is_external() {
            return self
                .backend
                .lease_params(self.heartbeat, self.data_dir.is_some());
        }
        self.engine_quorum()
    }

    /// Quorum mode's parameters as the engine takes them; `None` in bully mode and with an
    /// external backend (the engine then runs in external mode).
    pub(crate) fn engine_quorum(&self) -> Option<QuorumParams> {
        if self.backend.is_external() {
            return None;
        }
        match self.mode {
            Mode::Bully => None,
            Mode::Quorum(q) => Some(q.params(self.heartbeat, self.data_dir.is_some())),
        }
    }

    /// The data directory, if any.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref()
    }

    /// The address the listener binds: the one given with [`ConfigBuilder::listen`], else
    /// `host:port` from this node's name.
    pub fn listen_addr(&self) -> String {
        self.listen.clone().unwrap_or_else(|| self.me.addr())
    }

    /// The address this node dials to reach `peer`: an override given with
    /// [`ConfigBuilder::dial_addr`], else `host:port` from the peer's name.
    pub fn dial_addr(&self, peer: NodeId) -> String {
        self.dial_addrs
            .get(&peer)
            .cloned()
            .unwrap_or_else(|| self.members.name(peer).addr())
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// The failure timeout.
    pub fn failure_timeout(&self) -> Duration {
        self.failure_timeout
    }

    /// The default `leader_call` timeout.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// SHA-256 over everything the nodes of a cluster must agree on: cluster name, member
    /// list (not in etcd mode, where the election key stands for it), `preempt`, heartbeat interval, failure timeout, and the mode with its
    /// parameters.
    pub fn members_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"gen_leader/members/v1\0");
        h.update(self.cluster.as_bytes());
        h.update([0]);
        // In etcd mode the lists are local hints, not something to agree on: the election key
        // (in the backend's part below) says who belongs together.
        if !self.members.is_growable() {
            h.update((self.members.n_candidates() as u64).to_be_bytes());
            for n in self.members.all() {
                h.update(n.as_str().as_bytes());
                h.update([0]);
            }
        }
        h.update([u8::from(self.preempt)]);
        // Failure detection must agree too: a peer that heartbeats more slowly than our
        // failure timeout would be declared DOWN again and again.
        h.update((self.heartbeat.as_micros() as u64).to_be_bytes());
        h.update((self.failure_timeout.as_micros() as u64).to_be_bytes());
        // Bully and quorum nodes must never form one cluster: each would trust a leader the
        // other's rules did not make.
        mode::digest(&self.mode, &mut h);
        backend::digest(&self.backend, &mut h);
        h.finalize().into()
    }
}

/// Builder for [`Config`]; [`ConfigBuilder::build`] validates everything.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    me: String,
    candidates: Vec<String>,
    workers: Vec<String>,
    cluster: String,
    cookie: Option<Secret>,
    data_dir: Option<PathBuf>,
    heartbeat: Duration,
    failure_timeout: Option<Duration>,
    election_timeout: Duration,
    startup_timeout: Duration,
    handshake_timeout: Duration,
    call_timeout: Duration,
    preempt: bool,
    mode: Mode,
    backend: Backend,
    election_role: Option<ElectionRole>,
    max_members: usize,
    max_frame_len: usize,
    send_queue: usize,
    mailbox: usize,
    seed: Option<u64>,
    listen: Option<String>,
    dial_addrs: Vec<(String, String)>,
    spin: Option<Duration>,
    #[cfg(feature = "tls")]
    tls: Option<TlsConfig>,
}

impl ConfigBuilder {
    /// Runs every cluster connection of the node (its dials, the connections it accepts,
    /// observers' included) over TLS 1.3 with mutual authentication (cargo feature `tls`):
    /// see [`TlsConfig`] for what the certificates must carry. Every member of a cluster
    /// must have it, or none: a node with TLS refuses plain connections and a plain node
    /// cannot reach it.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The candidates, highest priority first (gen_leader's `CandidateNodes`). Must be the
    /// same list, in the same order, on every node.
    pub fn candidates<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.candidates = names.into_iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    /// Worker nodes: they join, call and receive broadcasts but never lead.
    pub fn workers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.workers = names.into_iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    /// The cluster name (default `gen_leader`); nodes of different clusters refuse each other.
    pub fn cluster(mut self, name: impl Into<String>) -> Self {
        self.cluster = name.into();
        self
    }

    /// The shared secret that authenticates connections (required).
    pub fn cookie(mut self, cookie: impl AsRef<[u8]>) -> Self {
        self.cookie = Some(Secret(cookie.as_ref().to_vec()));
        self
    }

    /// Directory for the persisted term and the audit trail (gen_leader's `vardir`).
    /// Without one, terms live in memory only and a restarted node may reuse a term.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Heartbeat interval (default 100 ms).
    pub fn heartbeat(mut self, d: Duration) -> Self {
        self.heartbeat = d;
        self
    }

    /// Failure timeout: a peer silent this long is DOWN (default 6 heartbeats, 600 ms).
    pub fn failure_timeout(mut self, d: Duration) -> Self {
        self.failure_timeout = Some(d);
        self
    }

    /// Election timeout: how long a proposal waits for answers (default 150 ms).
    pub fn election_timeout(mut self, d: Duration) -> Self {
        self.election_timeout = d;
        self
    }

    /// How long a starting node waits for peers that neither answer nor refuse (default
    /// 500 ms).
    pub fn startup_timeout(mut self, d: Duration) -> Self {
        self.startup_timeout = d;
        self
    }

    /// Handshake timeout (default 2 s).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// Default `leader_call` timeout (default 5 s).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// Whether a returning higher-priority candidate replaces a sitting leader (default
    /// false, as in gen_leader: it avoids flapping).
    pub fn preempt(mut self, on: bool) -> Self {
        self.preempt = on;
        self
    }

    /// The election mode (default [`Mode::Bully`], gen_leader's contract). Every node of a
    /// cluster must use the same mode with the same parameters: the handshake refuses a peer
    /// configured otherwise. See [`Mode::Quorum`] and `docs/guide.md`.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Who decides which node leads (default [`Backend::Mesh`]: the nodes' own election).
    /// With an external backend the mode must stay [`Mode::Bully`]. Part of the handshake's
    /// digest: every node of a cluster must use the same one.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// With an external backend (etcd): whether this node campaigns for leadership
    /// ([`ElectionRole::Candidate`]) or only follows the leader the store names
    /// ([`ElectionRole::Worker`]). Default: a node listed in [`ConfigBuilder::workers`] is a
    /// worker, any other a candidate. With an external backend the lists are optional: a node
    /// need list no one (it learns the leader from the store, and the leader admits it when it
    /// connects). Refused with the mesh backend (the lists give the roles)
    /// and when it contradicts this node's own listing.
    pub fn election_role(mut self, role: ElectionRole) -> Self {
        self.election_role = Some(role);
        self
    }

    /// With an external backend (etcd): the most members this node holds, listed and met at
    /// run time, itself included (default 256, at most 4096). A node that connects beyond it
    /// is refused ([`Refusal::MemberLimit`](crate::wire::handshake::Refusal::MemberLimit)), and
    /// a leader named by the store beyond it is treated as "no leader".
    pub fn max_members(mut self, n: usize) -> Self {
        self.max_members = n;
        self
    }

    /// Maximum frame size in bytes (default 8 MiB).
    pub fn max_frame_len(mut self, n: usize) -> Self {
        self.max_frame_len = n;
        self
    }

    /// Per-connection send queue, in frames (default 4096). A peer that lets it fill is
    /// disconnected.
    pub fn send_queue(mut self, n: usize) -> Self {
        self.send_queue = n;
        self
    }

    /// Bound of the node's mailbox (default 4096 messages): `leader_cast`, `cast`, `info`,
    /// `stats` and calls that go through the node wait for room (async calls, up to their
    /// timeout) or fail with [`CallError::Overloaded`](crate::CallError::Overloaded)
    /// (non-async sends) while this many are queued, instead of queueing without limit.
    /// Deferred replies ([`LeaderHandle::reply`](crate::LeaderHandle::reply)) are not counted:
    /// they are bounded by the calls in flight.
    pub fn mailbox(mut self, n: usize) -> Self {
        self.mailbox = n;
        self
    }

    /// Seed for timer jitter (default: random). Fix it for reproducible runs.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Binds the listener on `addr` (`host:port`) instead of the address in this node's name
    /// (behind NAT, in a container, or behind a proxy).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// Dials `addr` (`host:port`) to reach `peer` (a member's name) instead of the address in
    /// its name (to go through a proxy or a tunnel). The peer is still authenticated by name.
    pub fn dial_addr(mut self, peer: impl AsRef<str>, addr: impl Into<String>) -> Self {
        self.dial_addrs
            .push((peer.as_ref().to_string(), addr.into()));
        self
    }

    /// Opt-in low-latency mode: after each burst of activity the node keeps one runtime
    /// worker busy-polling (yielding, so it polls the I/O driver) for `window`, instead of
    /// letting it park. On a virtual machine a parked thread costs tens of microseconds to
    /// wake, so this cuts `leader_call` latency, at the cost of up to one core while traffic
    /// flows. An idle node does not spin. Off by default; `window` is at most 10 ms.
    pub fn spin(mut self, window: Duration) -> Self {
        self.spin = Some(window);
        self
    }

    /// Validates and builds the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let me: NodeName = self.me.parse()?;
        let parse = |v: &[String]| -> Result<Vec<NodeName>, ConfigError> {
            v.iter()
                .map(|s| s.parse::<NodeName>().map_err(ConfigError::from))
                .collect()
        };
        let candidates = parse(&self.candidates)?;
        let workers = parse(&self.workers)?;
        // A store decides who leads: the lists are optional hints (see `docs/design.md`).
        let dynamic = self.backend.is_external();
        if candidates.is_empty() && !dynamic {
            return Err(ConfigError::NoCandidates);
        }
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for n in candidates.iter().chain(&workers) {
            if !names.insert(n.name().to_string()) {
                return Err(ConfigError::DuplicateNode(n.name().to_string()));
            }
            if !addrs.insert(n.addr()) {
                return Err(ConfigError::DuplicateNode(n.addr()));
            }
        }
        if candidates.len() + workers.len() > MAX_MEMBERS {
            return Err(ConfigError::OutOfRange("the number of nodes (max 4096)"));
        }
        let listed_worker = workers.contains(&me);
        let listed = listed_worker || candidates.contains(&me);
        let election_role = match (self.election_role, dynamic) {
            (Some(_), false) => {
                return Err(ConfigError::OutOfRange(
                    "election_role (only with an external backend: the lists give the roles)",
                ))
            }
            (Some(r), true) if listed && (r == ElectionRole::Worker) != listed_worker => {
                return Err(ConfigError::OutOfRange(
                    "election_role (it contradicts this node's own listing as candidate or worker)",
                ))
            }
            (Some(r), true) => r,
            (None, _) if listed_worker => ElectionRole::Worker,
            (None, _) => ElectionRole::Candidate,
        };
        let mut members = Members::new(candidates, workers);
        if dynamic {
            let need = members.len() + usize::from(!listed);
            if !(1..=MAX_MEMBERS).contains(&self.max_members) || need > self.max_members {
                return Err(ConfigError::OutOfRange(
                    "max_members (1 to 4096, and room for the listed nodes and this one)",
                ));
            }
            members = members.growable(&me, self.max_members);
        }
        let my_id = members
            .id(&me)
            .ok_or_else(|| ConfigError::NotAMember(me.clone()))?;
        let failure_timeout = self.failure_timeout.unwrap_or(self.heartbeat * 6);
        for (d, what) in [
            (self.heartbeat, "the heartbeat interval"),
            (failure_timeout, "the failure timeout"),
            (self.election_timeout, "the election timeout"),
            (self.startup_timeout, "the startup timeout"),
            (self.handshake_timeout, "the handshake timeout"),
            (self.call_timeout, "the call timeout"),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration(what));
            }
            if d > Duration::from_secs(24 * 3600) {
                return Err(ConfigError::OutOfRange(
                    "a timeout or interval (at most 24 hours)",
                ));
            }
        }
        if self.heartbeat >= failure_timeout {
            return Err(ConfigError::HeartbeatTooSlow {
                heartbeat_ms: self.heartbeat.as_millis(),
                failure_ms: failure_timeout.as_millis(),
            });
        }
        if let Mode::Quorum(q) = &self.mode {
            q.validate(self.heartbeat)?;
        }
        if self.backend.is_external() && self.mode != Mode::Bully {
            return Err(ConfigError::OutOfRange(
                "the mode with an external backend (it replaces the election: keep Mode::Bully)",
            ));
        }
        #[cfg(feature = "etcd")]
        if let Some(e) = self.backend.etcd() {
            e.validate()?;
        }
        if let Backend::External(e) = &self.backend {
            e.validate()
                .map_err(|e| ConfigError::Backend(BackendConfigError::new(e)))?;
        }
        let cookie = self.cookie.unwrap_or_default();
        if cookie.expose().is_empty() {
            return Err(ConfigError::EmptyCookie);
        }
        if self.cluster.is_empty() {
            return Err(ConfigError::EmptyCluster);
        }
        if !(1024..=1 << 30).contains(&self.max_frame_len) {
            return Err(ConfigError::OutOfRange("max_frame_len (1 KiB to 1 GiB)"));
        }
        if !(16..=1 << 20).contains(&self.send_queue) {
            return Err(ConfigError::OutOfRange("send_queue (16 to 1048576 frames)"));
        }
        if !(1..=1 << 20).contains(&self.mailbox) {
            return Err(ConfigError::OutOfRange("mailbox (1 to 1048576 messages)"));
        }
        if self
            .spin
            .is_some_and(|w| w.is_zero() || w > Duration::from_millis(10))
        {
            return Err(ConfigError::OutOfRange("the spin window (1 ns to 10 ms)"));
        }
        let mut dial_addrs = HashMap::new();
        for (peer, addr) in self.dial_addrs {
            let name: NodeName = peer.parse()?;
            let id = members
                .id(&name)
                .ok_or_else(|| ConfigError::NotAMember(name.clone()))?;
            dial_addrs.insert(id, addr);
        }
        Ok(Config {
            me,
            my_id,
            members,
            cluster: self.cluster,
            cookie,
            data_dir: self.data_dir,
            heartbeat: self.heartbeat,
            failure_timeout,
            election_timeout: self.election_timeout,
            startup_timeout: self.startup_timeout,
            handshake_timeout: self.handshake_timeout,
            call_timeout: self.call_timeout,
            preempt: self.preempt,
            mode: self.mode,
            backend: self.backend,
            election_role,
            max_frame_len: self.max_frame_len,
            send_queue: self.send_queue,
            mailbox: self.mailbox,
            seed: self.seed,
            listen: self.listen,
            dial_addrs,
            spin: self.spin,
            #[cfg(feature = "tls")]
            tls: self.tls,
        })
    }
}

#[cfg(test)]
mod tests;
