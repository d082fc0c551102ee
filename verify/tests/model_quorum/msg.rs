//! An ordered, `Copy` mirror of the engine's messages, quorum mode's included, so that the
//! model's network can be a sorted multiset in a canonical order.

use gen_leader::election::{ElectionMsg, LeaderRef};
use gen_leader::{NodeId, Term};

/// An ordered, `Copy` mirror of [`ElectionMsg`] (which is neither). The engine's Synch is
/// always empty here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Msg {
    Status {
        promised: u64,
        leader: Option<(u32, u64)>,
    },
    Propose {
        term: u64,
        takeover: bool,
    },
    Accept {
        term: u64,
    },
    Reject {
        round: u64,
        promised: u64,
        leader: Option<(u32, u64)>,
    },
    Join {
        promised: u64,
    },
    Leader {
        term: u64,
    },
    Renew {
        term: u64,
        round: u64,
    },
    RenewAck {
        term: u64,
        round: u64,
    },
    StepDown {
        term: u64,
    },
}

fn lr_from(l: Option<LeaderRef>) -> Option<(u32, u64)> {
    l.map(|l| (l.node.0, l.term.0))
}

fn lr_to(l: Option<(u32, u64)>) -> Option<LeaderRef> {
    l.map(|(n, t)| LeaderRef {
        node: NodeId(n),
        term: Term(t),
    })
}

impl Msg {
    pub(crate) fn from_engine(m: ElectionMsg) -> Msg {
        match m {
            ElectionMsg::Status { promised, leader } => Msg::Status {
                promised: promised.0,
                leader: lr_from(leader),
            },
            ElectionMsg::Propose { term, takeover } => Msg::Propose {
                term: term.0,
                takeover,
            },
            ElectionMsg::Accept { term } => Msg::Accept { term: term.0 },
            ElectionMsg::Reject {
                round,
                promised,
                leader,
            } => Msg::Reject {
                round: round.0,
                promised: promised.0,
                leader: lr_from(leader),
            },
            ElectionMsg::Join { promised } => Msg::Join {
                promised: promised.0,
            },
            ElectionMsg::Leader { term, synch } => {
                assert!(synch.is_empty(), "the model always provides an empty Synch");
                Msg::Leader { term: term.0 }
            }
            ElectionMsg::Renew { term, round } => Msg::Renew {
                term: term.0,
                round,
            },
            ElectionMsg::RenewAck { term, round } => Msg::RenewAck {
                term: term.0,
                round,
            },
            ElectionMsg::StepDown { term } => Msg::StepDown { term: term.0 },
            other => panic!("message unknown to the model: {other:?}"),
        }
    }

    pub(crate) fn to_engine(self) -> ElectionMsg {
        match self {
            Msg::Status { promised, leader } => ElectionMsg::Status {
                promised: Term(promised),
                leader: lr_to(leader),
            },
            Msg::Propose { term, takeover } => ElectionMsg::Propose {
                term: Term(term),
                takeover,
            },
            Msg::Accept { term } => ElectionMsg::Accept { term: Term(term) },
            Msg::Reject {
                round,
                promised,
                leader,
            } => ElectionMsg::Reject {
                round: Term(round),
                promised: Term(promised),
                leader: lr_to(leader),
            },
            Msg::Join { promised } => ElectionMsg::Join {
                promised: Term(promised),
            },
            Msg::Leader { term } => ElectionMsg::Leader {
                term: Term(term),
                synch: Vec::new(),
            },
            Msg::Renew { term, round } => ElectionMsg::Renew {
                term: Term(term),
                round,
            },
            Msg::RenewAck { term, round } => ElectionMsg::RenewAck {
                term: Term(term),
                round,
            },
            Msg::StepDown { term } => ElectionMsg::StepDown { term: Term(term) },
        }
    }
}
