//! Refused and failed connections, said once: the rate-limited WARN lines of both dial
//! failures and inbound refusals, and the view's list of peers that refused us (or that we
//! refused) and why.
//!
//! Why a file of its own: the dial tasks' results arrive in the actor, inbound refusals in
//! the accept tasks; both must share one rate limit (the same peer and reason is one warning,
//! whichever side saw it) and one list in the view, so that a program can tell "alone because
//! misconfigured" from "alone because the others are down". The rules are in
//! `transport::ratelimit`; this only applies them.

use std::sync::Mutex;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use super::view::{self, ClusterView};
use crate::transport::ratelimit::{self, Verdict, WarnLimiter};
use crate::types::NodeName;

/// Shared by the actor and the accept tasks.
#[derive(Debug)]
pub(crate) struct Refusals {
    me: NodeName,
    limiter: Mutex<WarnLimiter>,
    view: watch::Sender<ClusterView>,
}

impl Refusals {
    pub(crate) fn new(me: NodeName, view: watch::Sender<ClusterView>) -> Self {
        Refusals {
            me,
            limiter: Mutex::new(WarnLimiter::default()),
            view,
        }
    }

    /// Logs `line` about `peer` at WARN: the first time at once, then at most once per
    /// window with the count of the identical ones in between.
    pub(crate) fn warn(&self, peer: &str, line: &str) {
        let now = Instant::now().into_std();
        let verdict = match self.limiter.lock() {
            Ok(mut l) => l.check(peer, line, now),
            Err(_) => Verdict::Log {
                suppressed: 0,
                over: std::time::Duration::ZERO,
            },
        };
        if let Verdict::Log { suppressed, over } = verdict {
            let more = ratelimit::summary(suppressed, over);
            warn!(node = %self.me, peer = %peer, "{line}{more}");
        }
    }

    /// A handshake with member `peer` was refused because the two nodes are configured
    /// differently: shown in the view until the peer connects.
    pub(crate) fn refused(&self, peer: &NodeName, line: &str) {
        view::set_refused(&self.view, peer, Some(line));
    }

    /// Member `peer` connected: its refusal is over, and its next failure is news again.
    pub(crate) fn connected(&self, peer: &NodeName) {
        if let Ok(mut l) = self.limiter.lock() {
            // (Every connection ends here: no formatting of the name unless there is a line
            // to forget.)
            if !l.is_empty() {
                l.clear(peer.as_str());
            }
        }
        view::set_refused(&self.view, peer, None);
    }

    /// Whether `peer` is connected (as the view shows it).
    pub(crate) fn is_alive(&self, peer: &NodeName) -> bool {
        self.view.borrow().alive.contains(peer)
    }
}
