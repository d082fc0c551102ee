//! Who dials whom, when to dial again, when a peer counts as unreachable, and whether an
//! inbound connection claiming a member is admitted.
//!
//! One connection per pair, deterministically: the member with the lower id dials the higher.
//! A higher id that starts (or loses its connection) dials the lower one only to ask for a
//! call back; the lower one answers `CallBack` and dials at once. So two nodes never race two
//! connections, and a restarted node still rejoins in milliseconds.
//!
//! In etcd mode ids are local (each node numbers the members it meets in its own order), so
//! the order is the names' instead ([`PeerDial::order_by_name`]); and the higher side keeps
//! asking a peer it must reach even though that peer may not know it yet
//! ([`PeerDial::set_persistent`]: the leader etcd names).
//!
//! Pure state fed `now` and a jitter sample (no clock, no RNG, no sockets): the node's async
//! shell starts and aborts the dial tasks this module asks for, and its unit tests pin every
//! rule.

use std::time::{Duration, Instant};

use crate::types::NodeId;

/// First retry delay after a failed dial, doubled per attempt up to [`BACKOFF_CAP`].
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(20);
/// Longest delay between two dials of the same peer.
pub(crate) const BACKOFF_CAP: Duration = Duration::from_millis(500);
/// A higher id asks a lower one again this soon after its first refused dial.
pub(crate) const ASK_AGAIN: Duration = Duration::from_millis(25);
/// After a connection is lost, the next dial starts this soon.
pub(crate) const REDIAL: Duration = Duration::from_millis(5);

/// How a dial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialResult {
    /// The handshake completed: the connection is ours.
    Connected,
    /// The peer asked us to wait for its dial (it has the lower id).
    CallBack,
    /// No connection could be opened (nobody listening, unreachable, unresolvable).
    Unreachable,
    /// The peer is up but refused the handshake, or the handshake failed.
    Refused,
}

/// What the node should do after a dial failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AfterFailure {
    /// Tell the engine the peer is unreachable.
    pub unreachable: bool,
    /// Dial again after this delay.
    pub redial: Option<Duration>,
    /// Report the failure at WARN (rate-limited by the caller; else DEBUG): a refusal, or a
    /// peer that has just been found unreachable.
    pub warn: bool,
}

/// Dial bookkeeping for one peer.
#[derive(Debug, Clone)]
pub(crate) struct PeerDial {
    /// Whether this node dials (else it only asks the peer to dial it).
    we_dial: bool,
    /// Keep asking with backoff even when this node does not dial (the peer may not know
    /// it, so it would never dial).
    persistent: bool,
    /// When the current dial starts connecting (after its backoff).
    dial_at: Instant,
    /// Failed dials in a row (backoff exponent).
    attempt: u32,
    /// Dials refused or unreachable in a row.
    refusals: u32,
    /// Generation of the current dial: results of older dials are ignored.
    gen: u64,
    dialing: bool,
}

impl PeerDial {
    pub(crate) fn new(me: NodeId, peer: NodeId, now: Instant) -> Self {
        PeerDial {
            we_dial: me < peer,
            persistent: false,
            dial_at: now,
            attempt: 0,
            refusals: 0,
            gen: 0,
            dialing: false,
        }
    }

    /// Orders the pair by name (etcd mode): the lower full name `name@host:port` dials.
    pub(crate) fn order_by_name(&mut self, me: &str, peer: &str) {
        self.we_dial = me < peer;
    }

    /// Whether this node dials the peer (else it asks the peer to dial it).
    pub(crate) fn we_dial(&self) -> bool {
        self.we_dial
    }

    /// Whether to keep asking a peer that should dial us, with backoff, however often it
    /// fails (for a peer that may not know this node: the leader etcd names).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn set_persistent(&mut self, on: bool) {
        self.persistent = on;
    }

    /// Whether a dial task is running (sleeping in its backoff or connecting).
    pub(crate) fn dialing(&self) -> bool {
        self.dialing
    }

    /// Starts a dial after `delay`; returns its generation.
    pub(crate) fn start(&mut self, now: Instant, delay: Duration) -> u64 {
        self.dial_at = now + delay;
        self.gen += 1;
        self.dialing = true;
        self.gen
    }

    /// Whether a finished dial of generation `gen` is the current one (else it was
    /// abandoned and its result is ignored).
    pub(crate) fn is_current(&self, gen: u64) -> bool {
        self.dialing && gen == self.gen
    }

    /// The current dial was abandoned (its task aborted).
    pub(crate) fn abandon(&mut self) {
        self.dialing = false;
    }

    /// A connection was lost: dial again soon, from the first backoff step.
    pub(crate) fn lost(&mut self) -> Duration {
        self.attempt = 0;
        REDIAL
    }

    /// The peer asked us (the lower id) to dial it: whether the current dial is asleep in its
    /// backoff and must be replaced by one that starts now. Resets the backoff either way.
    pub(crate) fn asked_to_dial(&mut self, now: Instant) -> bool {
        self.attempt = 0;
        self.dialing && self.dial_at > now
    }

    /// The current dial ended with `result`; `jitter` is a sample in `[0, 1)`.
    pub(crate) fn finished(&mut self, result: DialResult, jitter: f64) -> AfterFailure {
        self.dialing = false;
        let ok = AfterFailure {
            unreachable: false,
            redial: None,
            warn: false,
        };
        match result {
            DialResult::Connected => {
                self.attempt = 0;
                self.refusals = 0;
                ok
            }
            DialResult::CallBack => {
                self.refusals = 0;
                ok
            }
            DialResult::Unreachable | DialResult::Refused => {
                let refused = result == DialResult::Refused;
                // A refused connection right at startup often means the peer is starting too
                // and not listening yet: only the second failure in a row (tens of ms later)
                // makes it unreachable, so that simultaneous starts elect by priority. A
                // peer that is up but refuses the handshake is unreachable at once.
                self.refusals = self.refusals.saturating_add(1);
                let unreachable = refused || self.refusals >= 2;
                // A refusal is news; so is a peer nobody answers for twice in a row (an
                // unresolvable or mistyped host, a firewall). The caller rate-limits both.
                let warn = unreachable;
                let redial = if self.we_dial || self.persistent {
                    let a = self.attempt;
                    self.attempt = a.saturating_add(1);
                    Some(super::backoff(a, BACKOFF_BASE, BACKOFF_CAP, jitter))
                } else if !unreachable {
                    // We only ask lower ids to dial us: ask once more.
                    Some(ASK_AGAIN)
                } else {
                    None
                };
                AfterFailure {
                    unreachable,
                    redial,
                    warn,
                }
            }
        }
    }
}

/// What the node knows of its current connection to a peer, for admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Existing {
    pub incarnation: u64,
    /// Heard from within a heartbeat interval.
    pub healthy: bool,
}

/// The decision on an inbound handshake from `peer` (authenticated, asking to be admitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The peer claims this node's own name.
    RefuseSelf,
    /// A live connection from another incarnation of that name exists: a duplicate.
    RefuseDuplicate,
    /// A handshake with that peer is already finishing.
    RefuseBusy,
    /// We have the lower id: we dial. `drop_existing` says the connection we hold is from an
    /// earlier incarnation (the peer restarted) and is dead; `dial` says to start our dial.
    CallBack { drop_existing: bool, dial: bool },
    /// Admit the connection; `drop_existing` replaces the one we hold (the peer restarted or
    /// redialed: it is dead).
    Admit { drop_existing: bool },
}

/// Decides on an inbound connection from `peer` with `incarnation`; `we_dial` says whether
/// this node is the one that dials `peer` ([`PeerDial::we_dial`]).
pub(crate) fn admit(
    me: NodeId,
    peer: NodeId,
    we_dial: bool,
    incarnation: u64,
    existing: Option<Existing>,
    handshake_in_progress: bool,
) -> Admission {
    if peer == me {
        return Admission::RefuseSelf;
    }
    if we_dial {
        // We dial higher ids. A request from the incarnation we are connected to raced with
        // our own dial: nothing to do but tell it to wait.
        return match existing {
            Some(c) if c.incarnation == incarnation => Admission::CallBack {
                drop_existing: false,
                dial: false,
            },
            Some(_) => Admission::CallBack {
                drop_existing: true,
                dial: true,
            },
            None => Admission::CallBack {
                drop_existing: false,
                dial: true,
            },
        };
    }
    if handshake_in_progress {
        return Admission::RefuseBusy;
    }
    match existing {
        Some(c) if c.incarnation != incarnation && c.healthy => Admission::RefuseDuplicate,
        Some(_) => Admission::Admit {
            drop_existing: true,
        },
        None => Admission::Admit {
            drop_existing: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_lower_id_backs_off_and_keeps_dialing() {
        let t0 = Instant::now();
        let mut d = PeerDial::new(NodeId(0), NodeId(1), t0);
        d.start(t0, Duration::ZERO);
        let a = d.finished(DialResult::Unreachable, 0.0);
        assert_eq!(
            a,
            AfterFailure {
                unreachable: false,
                redial: Some(super::super::backoff(0, BACKOFF_BASE, BACKOFF_CAP, 0.0)),
                warn: false
            }
        );
        d.start(t0, a.redial.unwrap());
        let b = d.finished(DialResult::Unreachable, 0.0);
        assert!(b.unreachable, "second failure in a row");
        assert_eq!(
            b.redial,
            Some(super::super::backoff(1, BACKOFF_BASE, BACKOFF_CAP, 0.0))
        );
        // Connected: the backoff starts over.
        d.start(t0, Duration::ZERO);
        d.finished(DialResult::Connected, 0.0);
        d.start(t0, Duration::ZERO);
        let c = d.finished(DialResult::Unreachable, 0.0);
        assert!(!c.unreachable);
        assert_eq!(
            c.redial,
            Some(super::super::backoff(0, BACKOFF_BASE, BACKOFF_CAP, 0.0))
        );
    }

    #[test]
    fn the_higher_id_asks_twice_then_waits() {
        let t0 = Instant::now();
        let mut d = PeerDial::new(NodeId(2), NodeId(1), t0);
        d.start(t0, Duration::ZERO);
        assert_eq!(
            d.finished(DialResult::Unreachable, 0.5),
            AfterFailure {
                unreachable: false,
                redial: Some(ASK_AGAIN),
                warn: false
            }
        );
        d.start(t0, ASK_AGAIN);
        assert_eq!(
            d.finished(DialResult::Unreachable, 0.5),
            AfterFailure {
                unreachable: true,
                redial: None,
                warn: true
            }
        );
    }

    #[test]
    fn a_refusing_peer_is_unreachable_and_warned_about_at_once() {
        let t0 = Instant::now();
        let mut d = PeerDial::new(NodeId(0), NodeId(1), t0);
        for _ in 0..20 {
            d.start(t0, Duration::ZERO);
            let a = d.finished(DialResult::Refused, 0.0);
            assert!(a.unreachable && a.warn, "{a:?}");
        }
    }

    #[test]
    fn an_unreachable_peer_is_warned_about_from_the_second_failure() {
        // The first failure at startup is usually a peer not listening yet: DEBUG. The second
        // in a row is news (e.g. host `127.0.0.l`): WARN, rate-limited by the caller.
        for (me, peer) in [(0, 1), (1, 0)] {
            let t0 = Instant::now();
            let mut d = PeerDial::new(NodeId(me), NodeId(peer), t0);
            d.start(t0, Duration::ZERO);
            assert!(!d.finished(DialResult::Unreachable, 0.0).warn);
            d.start(t0, Duration::ZERO);
            assert!(d.finished(DialResult::Unreachable, 0.0).warn);
        }
    }

    #[test]
    fn stale_dials_are_ignored() {
        let t0 = Instant::now();
        let mut d = PeerDial::new(NodeId(0), NodeId(1), t0);
        let g1 = d.start(t0, ms(100));
        assert!(d.is_current(g1));
        // Asked to dial now while asleep in the backoff: replace the dial.
        assert!(d.asked_to_dial(t0 + ms(10)));
        d.abandon();
        let g2 = d.start(t0 + ms(10), Duration::ZERO);
        assert!(!d.is_current(g1));
        assert!(d.is_current(g2));
        assert!(!d.asked_to_dial(t0 + ms(10)), "already dialing now");
    }

    #[test]
    fn admission_rules() {
        let (lo, me, hi) = (NodeId(0), NodeId(1), NodeId(2));
        let live = |inc| {
            Some(Existing {
                incarnation: inc,
                healthy: true,
            })
        };
        let silent = |inc| {
            Some(Existing {
                incarnation: inc,
                healthy: false,
            })
        };
        assert_eq!(admit(me, me, false, 1, None, false), Admission::RefuseSelf);
        // Higher ids are dialed by us.
        assert_eq!(
            admit(me, hi, true, 7, None, false),
            Admission::CallBack {
                drop_existing: false,
                dial: true
            }
        );
        assert_eq!(
            admit(me, hi, true, 7, live(7), false),
            Admission::CallBack {
                drop_existing: false,
                dial: false
            }
        );
        assert_eq!(
            admit(me, hi, true, 8, live(7), false),
            Admission::CallBack {
                drop_existing: true,
                dial: true
            }
        );
        // Lower ids dial us.
        assert_eq!(
            admit(me, lo, false, 7, None, false),
            Admission::Admit {
                drop_existing: false
            }
        );
        assert_eq!(admit(me, lo, false, 7, None, true), Admission::RefuseBusy);
        assert_eq!(
            admit(me, lo, false, 8, live(7), false),
            Admission::RefuseDuplicate
        );
        assert_eq!(
            admit(me, lo, false, 8, silent(7), false),
            Admission::Admit {
                drop_existing: true
            }
        );
        assert_eq!(
            admit(me, lo, false, 7, live(7), false),
            Admission::Admit {
                drop_existing: true
            }
        );
    }

    #[test]
    fn by_name_the_lower_name_dials_whatever_the_ids() {
        let t0 = Instant::now();
        // Local ids say 0 < 5, the names say the other way round.
        let mut d = PeerDial::new(NodeId(0), NodeId(5), t0);
        assert!(d.we_dial());
        d.order_by_name("n2@127.0.0.1:9", "n1@127.0.0.1:9");
        assert!(!d.we_dial());
        // The other side agrees, with its own ids.
        let mut e = PeerDial::new(NodeId(3), NodeId(1), t0);
        e.order_by_name("n1@127.0.0.1:9", "n2@127.0.0.1:9");
        assert!(e.we_dial());
        // As the asking side, a failure is asked again once, then given up on...
        d.start(t0, Duration::ZERO);
        assert_eq!(d.finished(DialResult::Refused, 0.0).redial, None);
        // ... unless persistent: then it is retried with the dialer's backoff.
        d.set_persistent(true);
        for a in 0..3 {
            d.start(t0, Duration::ZERO);
            assert_eq!(
                d.finished(DialResult::Unreachable, 0.0).redial,
                Some(super::super::backoff(a, BACKOFF_BASE, BACKOFF_CAP, 0.0))
            );
        }
        // Admission follows the same order: the dialing side calls back, the other admits.
        assert_eq!(
            admit(NodeId(0), NodeId(5), false, 1, None, false),
            Admission::Admit {
                drop_existing: false
            }
        );
        assert_eq!(
            admit(NodeId(3), NodeId(1), true, 1, None, false),
            Admission::CallBack {
                drop_existing: false,
                dial: true
            }
        );
    }
}
