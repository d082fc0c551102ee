//! The model's engines: interned (a model state holds one id per node) with every
//! `(engine, time, input)` transition computed once, and the driver that acts on each
//! transition's outputs as the real one does, checking them with the shared `NodeChecker`.
//!
//! Why apart from `verify/tests/model_quorum.rs`: this is only a cache of the real engine's
//! deterministic transitions (it makes a debug build fast enough); the model's network, time
//! and properties are there.

use std::collections::HashMap;
use std::sync::Arc;

use gen_leader::election::testing::NodeChecker;
use gen_leader::election::{Engine, Output};
use gen_leader::{NodeId, Term};

use super::{Msg, QuorumModel};

/// One input to one engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Input {
    Msg(u8, Msg),
    Timeout,
    Down(u8),
    Up(u8),
}

/// What one input made an engine do, once the driver acted on its outputs.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub(crate) sends: Vec<(u8, Msg)>,
    /// Terms of `Elected { joined: None }`.
    pub(crate) elected: Vec<u16>,
    /// `(term, grantee)` of every grant: an `Accept` sent, or this node's own proposal.
    pub(crate) grants: Vec<(u16, u8)>,
    /// Whether a `Lease` output moved a sitting leader's lease.
    pub(crate) renewed: bool,
    pub(crate) broken: Option<String>,
}

/// An interned engine and the facts the model reads from it.
pub(crate) struct Local {
    pub(crate) engine: Engine,
    pub(crate) term: u16,
    pub(crate) promised: u16,
    pub(crate) is_leader: bool,
    pub(crate) timeout: Option<u32>,
    pub(crate) connected: u8,
}

#[derive(Default)]
pub(crate) struct Store {
    pub(crate) engine_ids: HashMap<Engine, u32>,
    pub(crate) locals: Vec<Arc<Local>>,
    pub(crate) memo: HashMap<(u32, u32, Input), (u32, Arc<Effects>)>,
}

fn small(t: Term) -> u16 {
    u16::try_from(t.0).expect("terms stay small in the model")
}

impl QuorumModel {
    pub(crate) fn local(&self, id: u32) -> Arc<Local> {
        Arc::clone(&self.store.read().unwrap().locals[id as usize])
    }

    pub(crate) fn intern(&self, engine: Engine) -> u32 {
        let mut st = self.store.write().unwrap();
        if let Some(&id) = st.engine_ids.get(&engine) {
            return id;
        }
        let id = u32::try_from(st.locals.len()).unwrap();
        let local = Local {
            term: small(engine.term()),
            promised: small(engine.promised()),
            is_leader: engine.is_leader(),
            timeout: engine.poll_timeout().map(|t| self.ms(t)),
            connected: engine.connected().iter().fold(0, |m, p| m | 1 << p.0),
            engine: engine.clone(),
        };
        st.locals.push(Arc::new(local));
        st.engine_ids.insert(engine, id);
        id
    }

    /// Acts on an engine's outputs as the real driver does, checking each with `chk`.
    pub(crate) fn drain(&self, e: &mut Engine, mut chk: NodeChecker) -> Effects {
        let me = e.me().0 as u8;
        let mut eff = Effects::default();
        while let Some(out) = e.poll_output() {
            if let Err(v) = chk.output(&out) {
                eff.broken.get_or_insert(v.to_string());
            }
            match out {
                Output::Send { to, msg } => {
                    let m = Msg::from_engine(msg);
                    match m {
                        Msg::Accept { term } => eff.grants.push((term as u16, to.0 as u8)),
                        Msg::Propose { term, .. } => eff.grants.push((term as u16, me)),
                        _ => {}
                    }
                    eff.sends.push((to.0 as u8, m));
                }
                Output::Elected { term, joined } => {
                    if joined.is_none() {
                        eff.elected.push(small(term));
                    }
                    e.provide_synch(joined, Vec::new());
                }
                Output::Lease { .. } if e.is_leader() => eff.renewed = true,
                _ => {}
            }
        }
        if let Err(v) = chk.state(e) {
            eff.broken.get_or_insert(v.to_string());
        }
        eff
    }

    pub(crate) fn step(&self, id: u32, now_ms: u32, input: Input) -> (u32, Arc<Effects>) {
        let key = (id, now_ms, input);
        if let Some((next, eff)) = self.store.read().unwrap().memo.get(&key) {
            return (*next, Arc::clone(eff));
        }
        let mut e = self.local(id).engine.clone();
        let chk = NodeChecker::at(&e).without_owned_terms();
        let now = self.at(now_ms);
        match input {
            Input::Msg(from, m) => e.handle_message(now, NodeId(from.into()), m.to_engine()),
            Input::Timeout => e.handle_timeout(now),
            Input::Down(p) => e.handle_peer_down(now, NodeId(p.into())),
            Input::Up(p) => e.handle_peer_up(now, NodeId(p.into())),
        }
        let eff = Arc::new(self.drain(&mut e, chk));
        let next = self.intern(e);
        self.store
            .write()
            .unwrap()
            .memo
            .insert(key, (next, Arc::clone(&eff)));
        (next, eff)
    }
}
