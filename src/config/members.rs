//! [`Members`]: the member table — the listed candidates and workers, and in etcd mode the
//! nodes met at run time.
//!
//! Why a file of its own: with the mesh backend the lists are fixed and identical on every
//! node, so an id is the same everywhere; in etcd mode the table grows (a leader etcd names,
//! a stranger that proved the cookie), ids are local to each node, and the table is shared
//! between the accept tasks, which add to it, and the actor, which takes snapshots
//! ([`Members::refreshed`]). Bounded by `ConfigBuilder::max_members`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::types::{NodeId, NodeName};

/// The cluster's member list: candidates (in priority order) then workers, as listed; in etcd
/// mode also the nodes met at run time ([`Members::joined`]). The lists are identical on every
/// node with the mesh backend (the handshake checks a digest of them); in etcd mode they are
/// optional and local (see `docs/design.md`, "etcd mode without a member list").
#[derive(Debug)]
pub struct Members {
    /// Listed candidates, listed workers, then the nodes met at run time (a snapshot).
    all: Vec<NodeName>,
    n_candidates: usize,
    n_listed: usize,
    by_name: HashMap<NodeName, NodeId>,
    /// etcd mode: the table the nodes met at run time are added to, shared by the accept
    /// tasks and the actor (`None`: the lists are all there is).
    joined: Option<Arc<Mutex<Joined>>>,
}

/// The nodes met at run time, in the order they were met (ids `n_listed..`).
#[derive(Debug, Clone)]
struct Joined {
    names: Vec<NodeName>,
    ids: HashMap<NodeName, NodeId>,
    /// The most members (listed and met) the table holds.
    limit: usize,
}

/// The member table is full: no node beyond [`ConfigBuilder::max_members`](super::ConfigBuilder::max_members) is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the member table is full ({limit} members, see ConfigBuilder::max_members)")]
pub struct MemberLimit {
    /// The most members a node holds.
    pub limit: u32,
}

impl Clone for Members {
    /// A deep copy: a cloned [`Config`](super::Config) gets a member table of its own.
    fn clone(&self) -> Self {
        Members {
            all: self.all.clone(),
            n_candidates: self.n_candidates,
            n_listed: self.n_listed,
            by_name: self.by_name.clone(),
            joined: self
                .joined
                .as_ref()
                .map(|j| Arc::new(Mutex::new(lock_joined(j).clone()))),
        }
    }
}

fn lock_joined(j: &Mutex<Joined>) -> std::sync::MutexGuard<'_, Joined> {
    j.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Members {
    pub(super) fn new(candidates: Vec<NodeName>, workers: Vec<NodeName>) -> Self {
        let n_candidates = candidates.len();
        let all: Vec<NodeName> = candidates.into_iter().chain(workers).collect();
        let by_name = all
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), NodeId(i as u32)))
            .collect();
        Members {
            n_listed: all.len(),
            all,
            n_candidates,
            by_name,
            joined: None,
        }
    }

    /// Makes the table growable (etcd mode), up to `limit` members; `me` is added if it is
    /// not listed.
    pub(super) fn growable(mut self, me: &NodeName, limit: usize) -> Self {
        self.joined = Some(Arc::new(Mutex::new(Joined {
            names: Vec::new(),
            ids: HashMap::new(),
            limit,
        })));
        if self.id(me).is_none() {
            // Cannot fail: the caller checked that the lists leave room for this node.
            let _ = self.join(me);
            if let Some(m) = self.refreshed() {
                self = m;
            }
        }
        self
    }

    /// The name of member `id`.
    ///
    /// # Panics
    /// If `id` is not a member id (ids come from this list, so this is a bug).
    pub fn name(&self, id: NodeId) -> &NodeName {
        &self.all[id.index()]
    }

    /// The id of a member, by name.
    pub fn id(&self, name: &NodeName) -> Option<NodeId> {
        self.by_name.get(name).copied()
    }

    /// The id of a member, by its full name string `name@host:port`.
    pub fn id_of_str(&self, name: &str) -> Option<NodeId> {
        name.parse::<NodeName>().ok().and_then(|n| self.id(&n))
    }

    /// Candidates, highest priority first, as listed.
    pub fn candidates(&self) -> &[NodeName] {
        &self.all[..self.n_candidates]
    }

    /// Workers (never lead), as listed.
    pub fn workers(&self) -> &[NodeName] {
        &self.all[self.n_candidates..self.n_listed]
    }

    /// etcd mode: the members this node met at run time (named by the election, or admitted
    /// when they connected), in the order it met them; itself first if it is not listed.
    /// Empty with the mesh backend.
    pub fn joined(&self) -> &[NodeName] {
        &self.all[self.n_listed..]
    }

    /// Every member: candidates, workers, then the members met at run time.
    pub fn all(&self) -> &[NodeName] {
        &self.all
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Always false: a valid cluster has at least one member (this node).
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Number of listed candidates.
    pub fn n_candidates(&self) -> usize {
        self.n_candidates
    }

    /// Whether members are added at run time (etcd mode).
    pub fn is_growable(&self) -> bool {
        self.joined.is_some()
    }

    /// The id of `name`, adding it to the table if it is new and the table grows (etcd
    /// mode). `Ok(None)`: not a member and the table does not grow. The id is valid in the
    /// snapshot [`Members::refreshed`] returns from now on.
    pub(crate) fn join(&self, name: &NodeName) -> Result<Option<NodeId>, MemberLimit> {
        if let Some(id) = self.id(name) {
            return Ok(Some(id));
        }
        let Some(j) = &self.joined else {
            return Ok(None);
        };
        let mut j = lock_joined(j);
        if let Some(id) = j.ids.get(name) {
            return Ok(Some(*id));
        }
        let n = self.n_listed + j.names.len();
        if n >= j.limit {
            return Err(MemberLimit {
                limit: j.limit as u32,
            });
        }
        let id = NodeId(n as u32);
        j.names.push(name.clone());
        j.ids.insert(name.clone(), id);
        Ok(Some(id))
    }

    /// A snapshot with the members added since this one was taken, sharing the same table;
    /// `None` if there are none.
    pub(crate) fn refreshed(&self) -> Option<Members> {
        let shared = self.joined.as_ref()?;
        let j = lock_joined(shared);
        let known = self.all.len() - self.n_listed;
        if j.names.len() <= known {
            return None;
        }
        let mut m = Members {
            all: self.all.clone(),
            n_candidates: self.n_candidates,
            n_listed: self.n_listed,
            by_name: self.by_name.clone(),
            joined: Some(shared.clone()),
        };
        for n in &j.names[known..] {
            m.by_name.insert(n.clone(), NodeId(m.all.len() as u32));
            m.all.push(n.clone());
        }
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigBuilder, ElectionRole};

    fn base() -> ConfigBuilder {
        Config::builder("a@127.0.0.1:1")
            .candidates(["a@127.0.0.1:1", "b@127.0.0.1:2"])
            .cookie("secret")
    }

    #[cfg(feature = "etcd")]
    use crate::config::tests::etcd;

    #[cfg(feature = "etcd")]
    #[test]
    fn etcd_mode_needs_no_list_and_grows_its_table_up_to_the_limit() {
        let c = etcd("c@127.0.0.1:3").max_members(3).build().unwrap();
        assert_eq!(c.election_role(), ElectionRole::Candidate);
        let m = c.members();
        assert!(m.is_growable());
        assert_eq!(c.my_id, NodeId(0));
        assert_eq!(m.joined(), [c.me().clone()]);
        assert!(m.candidates().is_empty() && m.workers().is_empty());
        let a: NodeName = "a@127.0.0.1:1".parse().unwrap();
        let b: NodeName = "b@127.0.0.1:2".parse().unwrap();
        let d: NodeName = "d@127.0.0.1:4".parse().unwrap();
        assert_eq!(m.join(&a), Ok(Some(NodeId(1))));
        assert_eq!(m.join(&a), Ok(Some(NodeId(1))), "the same id again");
        assert_eq!(m.join(c.me()), Ok(Some(NodeId(0))));
        // The snapshot does not move until refreshed; the table is shared with the refresh.
        assert_eq!(m.id(&a), None);
        let m2 = m.refreshed().expect("a new member");
        assert_eq!(m2.id(&a), Some(NodeId(1)));
        assert_eq!(m2.name(NodeId(1)), &a);
        assert_eq!(m2.all().len(), 2);
        assert!(m2.refreshed().is_none(), "nothing newer");
        assert_eq!(m2.join(&b), Ok(Some(NodeId(2))));
        assert_eq!(m.join(&d), Err(MemberLimit { limit: 3 }), "full at 3");
        assert_eq!(m.refreshed().unwrap().len(), 3);
        // A cloned config gets a table of its own.
        let copy = c.clone();
        let e: NodeName = "e@127.0.0.1:5".parse().unwrap();
        assert_eq!(copy.members().join(&e), Err(MemberLimit { limit: 3 }));
        let fresh = etcd("c@127.0.0.1:3").max_members(3).build().unwrap();
        let cl = fresh.clone();
        assert_eq!(cl.members().join(&e), Ok(Some(NodeId(1))));
        assert_eq!(fresh.members().join(&a), Ok(Some(NodeId(1))), "not shared");
    }

    #[test]
    fn the_mesh_backend_still_needs_its_lists() {
        let e = |b: ConfigBuilder| b.build().unwrap_err().to_string();
        assert!(e(Config::builder("a@127.0.0.1:1").cookie("s")).contains("empty"));
        let c = base().build().unwrap();
        assert!(!c.members().is_growable());
        let z: NodeName = "z@127.0.0.1:9".parse().unwrap();
        assert_eq!(c.members().join(&z), Ok(None), "no stranger joins");
        assert!(c.members().refreshed().is_none());
        assert!(c.members().joined().is_empty());
        assert_eq!(c.election_role(), ElectionRole::Candidate);
    }
}
