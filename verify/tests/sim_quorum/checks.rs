//! What the quorum simulator checks after every event, in true time: at most one node acting
//! (each on its own clock), every node's acting intervals and their pairwise disjointness,
//! fencing tokens, and the shared harness's invariants (one leader per term, every engine's
//! own).
//!
//! Why apart from `sim.rs`: these are the claims under test; the event loop that feeds them
//! should not hide them.

use gen_leader::Term;

use super::{Acting, Sim};

impl Sim {
    /// The checks at this instant (after any event): the shared cluster's invariants, and
    /// on every node's own clock, at most one node acting; acting intervals in true time;
    /// fencing tokens.
    pub(super) fn check(&mut self) {
        if self.failure.is_some() {
            return;
        }
        if let Some(v) = self.cluster.violation() {
            let v = v.to_string();
            self.fail(&v);
            return;
        }
        let now = self.now;
        let mut acting_now = Vec::new();
        for i in 0..self.n {
            let local = self.local(i);
            let clock = self.nodes[i].clock;
            let state = self
                .engine(i)
                .filter(|e| e.is_acting(local))
                .map(|e| (e.term(), e.lease_until()));
            let state = match state {
                Some((term, Some(until))) => Some((term, until)),
                Some((term, None)) => {
                    self.fail(&format!("n{i} acts in term {term} without a lease"));
                    return;
                }
                None => None,
            };
            if let Some(k) = self.open[i] {
                let iv = &mut self.acting[k];
                let lapsed = clock.true_at(self.t0, iv.until_local);
                match state {
                    _ if lapsed <= now => {
                        // The lease ran out between two events, unrenewed.
                        iv.end = lapsed;
                        iv.open = false;
                        self.open[i] = None;
                    }
                    Some((term, until)) if term == iv.term => {
                        iv.until_local = until;
                        iv.end = clock.true_at(self.t0, until);
                    }
                    _ => {
                        // It stopped acting at this event (lost, stepped down, crashed).
                        iv.end = now;
                        iv.open = false;
                        self.open[i] = None;
                    }
                }
            }
            if let Some((term, until)) = state {
                acting_now.push((i, term));
                if self.open[i].is_none() {
                    if let Err(e) = self.fencing(i, term) {
                        self.fail(&e);
                        return;
                    }
                    self.open[i] = Some(self.acting.len());
                    self.acting.push(Acting {
                        node: i,
                        term,
                        start: now,
                        end: clock.true_at(self.t0, until),
                        until_local: until,
                        open: true,
                    });
                    let l = format!("{:9.3} n{i} ACTS term {term}", self.ms());
                    self.note(l);
                }
            }
        }
        if acting_now.len() > 1 {
            self.fail(&format!(
                "two nodes acting at once (overlapping leases): {acting_now:?}"
            ));
        }
    }

    /// A new acting interval of `i` in `term`: its fencing token must be above every token
    /// that acted before (or the same leadership resuming: same node, same highest term).
    fn fencing(&mut self, i: usize, term: Term) -> Result<(), String> {
        match self.max_acted {
            Some((t, n)) if term < t || (term == t && n != i) => Err(format!(
                "fencing token did not increase: n{i} acts in term {term} after n{n} acted in \
                 term {t}"
            )),
            _ => {
                self.max_acted = Some((term, i));
                Ok(())
            }
        }
    }

    /// Every two acting intervals of different nodes are disjoint (open ones end now at the
    /// latest): the pairwise form of the instant check, over the whole run.
    pub fn check_intervals(&mut self) -> Result<(), String> {
        let end = |a: &Acting| if a.open { a.end.min(self.now) } else { a.end };
        for (x, a) in self.acting.iter().enumerate() {
            for b in &self.acting[x + 1..] {
                if a.node != b.node && a.start < end(b) && b.start < end(a) {
                    let msg = format!("acting intervals overlap: {a:?} and {b:?}");
                    return Err(self.fail(&msg));
                }
            }
        }
        Ok(())
    }
}
