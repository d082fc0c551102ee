//! [`Backend`]: who decides which node leads — the nodes' own election over the mesh (the
//! default), or an external store (etcd with cargo feature `etcd`, or any
//! [`ExternalElection`]).
//!
//! Why apart from [`Mode`](super::Mode): the mode says what a leadership *means* inside the
//! built-in election (bully or quorum); a backend replaces that election. With an external
//! backend the engine runs in external mode (`Engine::new_external`): the store names the
//! leader and its lease, and the mesh still carries calls, the Synch and broadcasts. Every
//! node of a cluster must use the same backend: its [`ElectionIdentity`] is part of the
//! handshake's digest.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::backend::{ElectionIdentity, ExternalElection};
use crate::election::QuorumParams;
#[cfg(feature = "etcd")]
use crate::etcd::EtcdConfig;

/// Who decides which node leads. Set with
/// [`ConfigBuilder::backend`](crate::ConfigBuilder::backend).
#[derive(Clone, Debug, Default)]
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
    /// (see [`ConfigBuilder::election_role`](crate::ConfigBuilder::election_role) and
    /// [`ConfigBuilder::max_members`](crate::ConfigBuilder::max_members)).
    #[cfg(feature = "etcd")]
    Etcd(EtcdConfig),
    /// Another store decides, through its [`ExternalElection`] implementation (a lease row
    /// in a database, say). Everything said of `Backend::Etcd` holds, with the store's
    /// revision as the fencing token.
    External(Arc<dyn ExternalElection>),
}

/// Two backends are equal when they would follow the same election: the same kind, and for
/// an external store the same [`ElectionIdentity`].
impl PartialEq for Backend {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Backend::Mesh, Backend::Mesh) => true,
            #[cfg(feature = "etcd")]
            (Backend::Etcd(a), Backend::Etcd(b)) => a == b,
            (Backend::External(a), Backend::External(b)) => {
                Arc::ptr_eq(a, b) || a.identity() == b.identity()
            }
            _ => false,
        }
    }
}

impl Backend {
    /// Whether an external store decides (the engine runs in external mode).
    pub fn is_external(&self) -> bool {
        !matches!(self, Backend::Mesh)
    }

    /// The store that decides, if one does (etcd's is its `EtcdConfig`).
    pub fn external(&self) -> Option<Arc<dyn ExternalElection>> {
        match self {
            Backend::Mesh => None,
            #[cfg(feature = "etcd")]
            Backend::Etcd(e) => Some(Arc::new(e.clone())),
            Backend::External(e) => Some(e.clone()),
        }
    }

    /// What the nodes must share to follow the same election, if a store decides.
    pub fn identity(&self) -> Option<ElectionIdentity> {
        match self {
            Backend::Mesh => None,
            #[cfg(feature = "etcd")]
            Backend::Etcd(e) => Some(e.identity()),
            Backend::External(e) => Some(e.identity()),
        }
    }

    /// The lease as the runtime's lease checks take it (`QuorumParams::leader_lease` equals
    /// the backend's local lease), or `None` for the mesh.
    pub(crate) fn lease_params(
        &self,
        heartbeat: std::time::Duration,
        durable: bool,
    ) -> Option<QuorumParams> {
        let lease = self.identity()?.lease;
        Some(QuorumParams {
            lease: lease.ttl,
            drift_ppm: lease.drift_ppm,
            margin: lease.margin,
            renew_interval: heartbeat,
            durable,
            sticky: true,
        })
    }

    /// The etcd configuration, if etcd decides.
    #[cfg(feature = "etcd")]
    pub fn etcd(&self) -> Option<&EtcdConfig> {
        match self {
            Backend::Etcd(e) => Some(e),
            _ => None,
        }
    }
}

/// With an external backend: whether a node campaigns or only follows. Set with
/// [`ConfigBuilder::election_role`](crate::ConfigBuilder::election_role).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ElectionRole {
    /// Campaigns on the election: may lead. The default.
    #[default]
    Candidate,
    /// Never campaigns: follows the leader the store names (calls, broadcasts), never leads.
    Worker,
}

/// Feeds the backend into the cluster digest: nothing for the mesh (digests of existing
/// clusters do not change); for a store, its identity: kind, election and the lease's timing
/// (not etcd's endpoints: nodes may reach one etcd cluster through different members).
pub(super) fn digest(backend: &Backend, h: &mut Sha256) {
    let Some(id) = backend.identity() else {
        return;
    };
    h.update(b"backend/");
    h.update(id.store.as_bytes());
    h.update([0]);
    h.update(id.election.as_bytes());
    h.update([0]);
    h.update((id.lease.ttl.as_nanos() as u64).to_be_bytes());
    h.update(id.lease.drift_ppm.to_be_bytes());
    h.update((id.lease.margin.as_nanos() as u64).to_be_bytes());
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

#[cfg(test)]
mod external_tests {
    use super::*;
    use crate::backend::{LeaderValue, LeaseTiming, Started};
    use crate::error::BoxError;
    use std::time::Duration;

    #[derive(Debug)]
    struct Fake(&'static str, &'static str, u64);

    impl ExternalElection for Fake {
        fn identity(&self) -> ElectionIdentity {
            let t = LeaseTiming::new(
                Duration::from_secs(self.2),
                10_000,
                Duration::from_millis(10),
            );
            ElectionIdentity::new(self.0, self.1, t)
        }
        fn start(&self, _me: LeaderValue, _campaign: bool) -> Result<Started, BoxError> {
            Err("not in this test".into())
        }
    }

    fn ext(store: &'static str, election: &'static str, ttl: u64) -> Backend {
        Backend::External(Arc::new(Fake(store, election, ttl)))
    }

    fn d(b: &Backend) -> [u8; 32] {
        let mut h = Sha256::new();
        digest(b, &mut h);
        h.finalize().into()
    }

    #[test]
    fn a_store_is_known_by_its_kind_election_and_lease() {
        let a = ext("sql", "x", 2);
        assert!(a.is_external());
        assert_eq!(a, ext("sql", "x", 2), "equal identities, distinct values");
        assert_eq!(d(&a), d(&ext("sql", "x", 2)));
        for other in [ext("kv", "x", 2), ext("sql", "y", 2), ext("sql", "x", 3)] {
            assert_ne!(a, other);
            assert_ne!(d(&a), d(&other));
        }
        assert_ne!(a, Backend::Mesh);
        assert_ne!(d(&a), d(&Backend::Mesh));
        let p = a.lease_params(Duration::from_millis(100), false).unwrap();
        assert_eq!(p.leader_lease(), a.identity().unwrap().lease.local_lease());
    }
}
