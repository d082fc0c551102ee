//! Terms: who owns which (only its owner may propose or lead a term, which keeps one leader
//! per term), which term to propose next (above everything seen and the proposal floor), and
//! the promise, whose every increase is persisted before anything that depends on it leaves.

use super::{Engine, MAX_TERM};
use crate::election::Output;
use crate::types::{NodeId, Term};

impl Engine {
    /// Whether `from` may propose or lead term `t`: only its owner may, which is what keeps
    /// one leader per term. The hidden `__mutant_term_owner` feature (checker self-tests only,
    /// see `.ci/negative-control`) deliberately breaks this rule: every candidate owns every
    /// term.
    pub(super) fn owns(&self, from: NodeId, t: Term) -> bool {
        cfg!(feature = "__mutant_term_owner") || self.owner(t) == from
    }

    pub(super) fn owner(&self, t: Term) -> NodeId {
        NodeId((t.0 % u64::from(self.cfg.n_candidates.max(1))) as u32)
    }

    /// The smallest term above every term seen that this candidate owns; `None` once the
    /// term space is exhausted (only reachable from a corrupt term file: peers' terms above
    /// [`MAX_TERM`] are ignored).
    pub(super) fn next_owned_term(&self) -> Option<Term> {
        let n = u64::from(self.cfg.n_candidates.max(1));
        let i = u64::from(self.cfg.me.0);
        let base = self.promised.max(self.max_seen).0.checked_add(1)?;
        let t = if cfg!(feature = "__mutant_term_owner") {
            base // the mutant proposes the next term, whoever owns it
        } else {
            base.checked_add((i + n - base % n) % n)?
        };
        (t <= MAX_TERM).then_some(Term(t))
    }

    pub(super) fn see(&mut self, t: Term) {
        self.max_seen = self.max_seen.max(t);
    }

    pub(super) fn set_promised(&mut self, t: Term) {
        self.see(t);
        if t > self.promised {
            self.promised = t;
            self.out.push_back(Output::PersistTerm(t));
        }
    }
}
