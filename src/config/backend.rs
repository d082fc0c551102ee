//! [`Backend`]: who decides which node leads — the nodes' own election over the mesh (the
//! default), or an external store (etcd, cargo feature `etcd`).
//!
//! Why apart from [`Mode`](super::Mode): the mode says what a leadership *means* inside the
//! built-in election (bully or quorum); a backend replaces that election. With an external
//! backend the engine runs in external mode (`Engine::new_external`): the store names the
//! leader and its lease, and the mesh still carries calls, the Synch and broadcasts. Every
//! node of a cluster must use the same backend: it is part of the handshake's digest.

#[cfg(feature = "etcd")]
use sha2::Digest;
use sha2::Sha256;

#[cfg(feature = "etcd")]
use crate::election::QuorumParams;
#[cfg(feature = "etcd")]
use crate::etcd::EtcdConfig;

/// Who decides which node leads. Set with
/// [`ConfigBuilder::backend`](crate::ConfigBuilder::backend).
#[derive(Clone, Debug, PartialEq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// The nodes elect among themselves over their TCP mesh ([`Mode`](super::Mode) says
    /// how). The default.
    #[default]
    Mesh,
    /// etcd decides: each candidate campaigns on `EtcdConfig::election` with a lease of
    /// `EtcdConfig::ttl`; the fencing token ([`LeaderGuard::term`](crate::LeaderGuard::term))
    /// is the leader key's create revision. The mode must be [`Mode::Bully`](super::Mode)
    /// (the default: etcd replaces the election). The member lists are optional in this
    /// mode: a node learns the leader's name and address from the election value, and the
    /// leader admits any node that proves the cookie and campaigns on the same election
    /// (see [`ConfigBuilder::etcd_role`](crate::ConfigBuilder::etcd_role) and
    /// [`ConfigBuilder::max_members`](crate::ConfigBuilder::max_members)).
    #[cfg(feature = "etcd")]
    Etcd(EtcdConfig),
}

impl Backend {
    /// Whether an external store decides (the engine runs in external mode).
    pub fn is_external(&self) -> bool {
        !matches!(self, Backend::Mesh)
    }

    /// The lease as the runtime's lease checks take it (`QuorumParams::leader_lease` equals
    /// the backend's local lease), or `None` for the mesh.
    #[cfg(feature = "etcd")]
    pub(crate) fn lease_params(
        &self,
        heartbeat: std::time::Duration,
        durable: bool,
    ) -> Option<QuorumParams> {
        match self {
            Backend::Mesh => None,
            Backend::Etcd(e) => Some(QuorumParams {
                lease: e.ttl,
                drift_ppm: e.drift_ppm(),
                margin: e.margin,
                renew_interval: heartbeat,
                durable,
                sticky: true,
            }),
        }
    }

    #[cfg(not(feature = "etcd"))]
    pub(crate) fn lease_params(
        &self,
        _heartbeat: std::time::Duration,
        _durable: bool,
    ) -> Option<crate::election::QuorumParams> {
        None
    }

    /// The etcd configuration, if etcd decides.
    #[cfg(feature = "etcd")]
    pub fn etcd(&self) -> Option<&EtcdConfig> {
        match self {
            Backend::Etcd(e) => Some(e),
            Backend::Mesh => None,
        }
    }
}

/// etcd mode: whether a node campaigns or only follows. Set with
/// [`ConfigBuilder::etcd_role`](crate::ConfigBuilder::etcd_role).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum EtcdRole {
    /// Campaigns on the election: may lead. The default.
    #[default]
    Candidate,
    /// Never campaigns: follows the leader etcd names (calls, broadcasts), never leads.
    Worker,
}

/// Feeds the backend into the cluster digest: nothing for the mesh (digests of existing
/// clusters do not change); for etcd, the election and the lease's timing (not the
/// endpoints: nodes may reach one etcd cluster through different members).
#[cfg_attr(not(feature = "etcd"), allow(unused_variables))]
pub(super) fn digest(backend: &Backend, h: &mut Sha256) {
    match backend {
        Backend::Mesh => {}
        #[cfg(feature = "etcd")]
        Backend::Etcd(e) => {
            h.update(b"backend/etcd\0");
            h.update(e.election.as_bytes());
            h.update([0]);
            h.update(e.ttl.as_secs().to_be_bytes());
            h.update(e.drift_ppm().to_be_bytes());
            h.update((e.margin.as_nanos() as u64).to_be_bytes());
        }
    }
}

#[cfg(all(test, feature = "etcd"))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn etcd_lease_params_give_the_backends_local_lease() {
        let e = EtcdConfig::new(["http://127.0.0.1:2379"], "x").with_ttl(Duration::from_secs(3));
        let b = Backend::Etcd(e.clone());
        assert!(b.is_external() && !Backend::Mesh.is_external());
        let p = b.lease_params(Duration::from_millis(100), false).unwrap();
        assert_eq!(p.leader_lease(), e.local_lease());
        assert_eq!(Backend::Mesh.lease_params(Duration::ZERO, false), None);
    }

    #[test]
    fn digest_covers_the_election_not_the_endpoints() {
        let d = |b: &Backend| {
            let mut h = Sha256::new();
            digest(b, &mut h);
            <[u8; 32]>::from(h.finalize())
        };
        let a = Backend::Etcd(EtcdConfig::new(["http://127.0.0.1:1"], "x"));
        let b = Backend::Etcd(EtcdConfig::new(["http://127.0.0.1:2"], "x"));
        let c = Backend::Etcd(EtcdConfig::new(["http://127.0.0.1:1"], "y"));
        assert_eq!(d(&a), d(&b));
        assert_ne!(d(&a), d(&c));
        assert_ne!(d(&a), d(&Backend::Mesh));
    }
}
