//! Which pending inbound handshake to shed when the listener is flooded: [`Budget`].
//!
//! Why a file of its own, and pure: the cluster port is reachable by anyone who can reach the
//! host, so what the accept loop keeps and what it drops decides whether a flood of idle or
//! garbage connections can starve the members. The rules are here without sockets, tasks or
//! clock reads (`now` is an argument) so that they are tested with exact expectations; the
//! accept loop (`accept.rs`) only applies them (it aborts the tasks this module names).
//!
//! The rules:
//! * a new connection is never refused: it is always taken, and when that puts a budget over
//!   its cap, the oldest pending handshake of the lowest class in that budget (the newcomer
//!   aside) is shed;
//! * classes, lowest first: a connection that has not yet sent a valid `Hello`, then one whose
//!   `Hello` named a member (it still has to prove the cookie);
//! * connections from a configured member's host have a budget of their own
//!   ([`Limits::members_total`]); every other host has [`Limits::per_source`] and all of them
//!   together [`Limits::others_total`], so a flood from elsewhere never sheds a member's dial;
//! * a `Hello` naming a member may have at most [`Limits::per_name`] handshakes pending under
//!   that name (a real member has one or two at once); the oldest beyond that is shed;
//! * an authenticated connection has proven the cookie: it leaves the budget and is never shed.
//!
//! Linear scans: the entries are capped by the limits (a few hundred), and one scan per
//! accepted connection costs less than the accept itself.

use std::time::{Duration, Instant};

/// Caps on pending (unauthenticated) inbound handshakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Pending handshakes from one host that is not a member's host.
    pub per_source: usize,
    /// Pending handshakes from all hosts that are not a member's host.
    pub others_total: usize,
    /// Pending handshakes from members' hosts (all of them together).
    pub members_total: usize,
    /// Pending handshakes whose `Hello` named the same member.
    pub per_name: usize,
}

impl Limits {
    /// The defaults: at most 16 + 128 + 128 = 272 pending handshakes whatever arrives (a
    /// pending handshake holds a task, an 8 KiB read buffer and a socket).
    pub(crate) const DEFAULT: Limits = Limits {
        per_source: 16,
        others_total: 128,
        members_total: 128,
        per_name: 4,
    };
}

/// Deadline for a new connection's first message (the `Hello`): twice the heartbeat, at
/// least 200 ms, at most the whole handshake's timeout. A member's dialer sends its `Hello`
/// as soon as the connection is open, so only a silent or slow peer waits this long.
pub(crate) fn hello_deadline(heartbeat: Duration, handshake_timeout: Duration) -> Duration {
    (heartbeat * 2)
        .max(Duration::from_millis(200))
        .min(handshake_timeout)
}

/// The host part of a peer address (`"127.0.0.1:4001"` → `"127.0.0.1"`, `"[::1]:9"` →
/// `"::1"`); an address without a port is its own host.
pub(crate) fn host_of(addr: &str) -> &str {
    let host = match addr.rsplit_once(':') {
        // A bare IPv6 address (`::1`) has colons but no port.
        Some((h, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!h.contains(':') || h.starts_with('[')) =>
        {
            h
        }
        _ => addr,
    };
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[derive(Debug, Clone)]
struct Entry {
    id: u64,
    since: Instant,
    host: String,
    member_host: bool,
    /// The member its `Hello` named, once it sent one.
    named: Option<String>,
}

impl Entry {
    fn class(&self) -> u8 {
        u8::from(self.named.is_some())
    }
}

/// The pending inbound handshakes and the rules for shedding them (see the module doc).
#[derive(Debug)]
pub(crate) struct Budget {
    limits: Limits,
    member_hosts: Vec<String>,
    entries: Vec<Entry>,
}

impl Budget {
    /// A budget with `limits`, connections from `member_hosts` (hosts, as [`host_of`]
    /// returns them) counted apart.
    pub(crate) fn new(limits: Limits, member_hosts: Vec<String>) -> Self {
        Budget {
            limits,
            member_hosts,
            entries: Vec::new(),
        }
    }

    /// Pending handshakes.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// A new connection `id` (ids grow) from `addr` at `now`: it is taken; returns the
    /// pending handshakes to shed to stay within the limits (oldest first).
    pub(crate) fn arrived(&mut self, id: u64, addr: &str, now: Instant) -> Vec<u64> {
        let host = host_of(addr).to_string();
        let member_host = self.member_hosts.contains(&host);
        self.entries.push(Entry {
            id,
            since: now,
            host: host.clone(),
            member_host,
            named: None,
        });
        // The newcomer counts against the caps but is never the one shed.
        let mut shed = Vec::new();
        if member_host {
            self.shed_over(
                self.limits.members_total,
                |e| e.member_host,
                |e| e.id != id,
                &mut shed,
            );
        } else {
            self.shed_over(
                self.limits.per_source,
                |e| !e.member_host && e.host == host,
                |e| e.id != id,
                &mut shed,
            );
            self.shed_over(
                self.limits.others_total,
                |e| !e.member_host,
                |e| e.id != id,
                &mut shed,
            );
        }
        shed
    }

    /// Connection `id` sent a `Hello` naming the member `name`: returns the handshakes to
    /// shed (the oldest beyond [`Limits::per_name`] under that name).
    pub(crate) fn named(&mut self, id: u64, name: &str) -> Vec<u64> {
        let Some(e) = self.entries.iter_mut().find(|e| e.id == id) else {
            return Vec::new();
        };
        e.named = Some(name.to_string());
        let mut shed = Vec::new();
        self.shed_over(
            self.limits.per_name,
            |e| e.named.as_deref() == Some(name),
            |_| true,
            &mut shed,
        );
        shed
    }

    /// Connection `id` proved the cookie: it leaves the budget for good. `false` if it was
    /// already shed (or ended): the caller must then not go on with it.
    pub(crate) fn authenticated(&mut self, id: u64) -> bool {
        self.remove(id)
    }

    /// Whether connection `id` is pending.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.entries.iter().any(|e| e.id == id)
    }

    /// Sheds one pending handshake, whatever the caps (to free a file descriptor when the
    /// listener cannot accept): the oldest of the lowest class, from any host.
    pub(crate) fn shed_one(&mut self) -> Option<u64> {
        let cap = self.entries.len().saturating_sub(1);
        let mut shed = Vec::new();
        self.shed_over(cap, |_| true, |_| true, &mut shed);
        shed.pop()
    }

    /// Connection `id` ended (or was shed); `false` if it was not pending.
    pub(crate) fn remove(&mut self, id: u64) -> bool {
        match self.entries.iter().position(|e| e.id == id) {
            Some(i) => {
                self.entries.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// While more than `cap` entries match `within`, removes the oldest of the lowest class
    /// among those of them that are `sheddable` and records its id in `shed`.
    fn shed_over(
        &mut self,
        cap: usize,
        within: impl Fn(&Entry) -> bool,
        sheddable: impl Fn(&Entry) -> bool,
        shed: &mut Vec<u64>,
    ) {
        type Best = Option<(usize, (u8, Instant, u64))>;
        loop {
            let victim = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, e)| within(e))
                .fold((0usize, None as Best), |(n, best), (i, e)| {
                    let key = (e.class(), e.since, e.id);
                    let best = match best {
                        Some((_, k)) if k <= key => best,
                        _ if !sheddable(e) => best,
                        _ => Some((i, key)),
                    };
                    (n + 1, best)
                });
            match victim {
                (n, Some((i, _))) if n > cap => shed.push(self.entries.swap_remove(i).id),
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: &str = "127.0.0.1";

    fn limits() -> Limits {
        Limits {
            per_source: 2,
            others_total: 3,
            members_total: 3,
            per_name: 2,
        }
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn budget() -> Budget {
        Budget::new(limits(), vec![MEMBER.to_string()])
    }

    #[test]
    fn hosts_are_taken_from_addresses() {
        assert_eq!(host_of("127.0.0.1:4001"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9"), "::1");
        assert_eq!(host_of("example.org:80"), "example.org");
        assert_eq!(host_of("sim-peer"), "sim-peer");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("fe80::1"), "fe80::1");
    }

    #[test]
    fn the_hello_deadline_follows_the_heartbeat_within_bounds() {
        let ms = Duration::from_millis;
        assert_eq!(hello_deadline(ms(100), ms(2000)), ms(200));
        assert_eq!(hello_deadline(ms(20), ms(2000)), ms(200));
        assert_eq!(hello_deadline(ms(500), ms(2000)), ms(1000));
        assert_eq!(hello_deadline(ms(500), ms(300)), ms(300));
    }

    #[test]
    fn within_the_caps_nothing_is_shed() {
        let t0 = Instant::now();
        let mut b = budget();
        assert_eq!(b.arrived(1, "10.0.0.1:5000", t0), Vec::<u64>::new());
        assert_eq!(b.arrived(2, "10.0.0.1:5001", t0), Vec::<u64>::new());
        assert_eq!(b.arrived(3, "10.0.0.2:5000", t0), Vec::<u64>::new());
        assert_eq!(b.arrived(4, "127.0.0.1:6000", t0), Vec::<u64>::new());
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn one_host_over_its_cap_loses_its_oldest_not_the_new_one() {
        let t0 = Instant::now();
        let mut b = budget();
        b.arrived(1, "10.0.0.1:1", at(t0, 0));
        b.arrived(2, "10.0.0.2:1", at(t0, 1));
        b.arrived(3, "10.0.0.1:2", at(t0, 2));
        assert_eq!(b.arrived(4, "10.0.0.1:3", at(t0, 3)), vec![1]);
        assert_eq!(b.arrived(5, "10.0.0.1:4", at(t0, 4)), vec![3]);
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn all_other_hosts_over_their_total_lose_the_oldest_of_any_host() {
        let t0 = Instant::now();
        let mut b = budget();
        b.arrived(1, "10.0.0.1:1", at(t0, 0));
        b.arrived(2, "10.0.0.2:1", at(t0, 1));
        b.arrived(3, "10.0.0.3:1", at(t0, 2));
        assert_eq!(b.arrived(4, "10.0.0.4:1", at(t0, 3)), vec![1]);
    }

    #[test]
    fn a_flood_from_elsewhere_never_sheds_a_member_hosts_connection() {
        let t0 = Instant::now();
        let mut b = budget();
        b.arrived(1, "127.0.0.1:7000", at(t0, 0));
        for i in 0..100 {
            let shed = b.arrived(10 + i, &format!("10.0.{i}.1:1"), at(t0, 1 + i));
            assert!(!shed.contains(&1), "{shed:?}");
        }
        assert_eq!(b.len(), 1 + 3);
        assert!(b.authenticated(1));
    }

    #[test]
    fn members_hosts_have_their_own_budget() {
        let t0 = Instant::now();
        let mut b = budget();
        for i in 1..=3 {
            b.arrived(i, "10.0.0.1:1", at(t0, i));
        }
        for i in 4..=6 {
            assert_eq!(b.arrived(i, "127.0.0.1:1", at(t0, i)), Vec::<u64>::new());
        }
        assert_eq!(b.arrived(7, "127.0.0.1:1", at(t0, 7)), vec![4]);
    }

    #[test]
    fn a_connection_that_sent_a_hello_outlives_older_silent_ones() {
        let t0 = Instant::now();
        let mut b = budget();
        b.arrived(1, "127.0.0.1:1", at(t0, 0)); // a member's dial: sends its Hello
        b.arrived(2, "127.0.0.1:2", at(t0, 1)); // silent
        b.arrived(3, "127.0.0.1:3", at(t0, 2)); // silent
        assert_eq!(b.named(1, "n0@127.0.0.1:1"), Vec::<u64>::new());
        assert_eq!(b.arrived(4, "127.0.0.1:4", at(t0, 3)), vec![2]);
        assert_eq!(b.arrived(5, "127.0.0.1:5", at(t0, 4)), vec![3]);
        assert_eq!(b.arrived(6, "127.0.0.1:6", at(t0, 5)), vec![4]);
        assert!(b.authenticated(1));
    }

    #[test]
    fn when_all_sent_a_hello_the_oldest_goes() {
        let t0 = Instant::now();
        let mut b = budget();
        for i in 1..=3 {
            b.arrived(i, "127.0.0.1:1", at(t0, i));
            b.named(i, &format!("n{i}"));
        }
        assert_eq!(b.arrived(4, "127.0.0.1:1", at(t0, 4)), vec![1]);
    }

    #[test]
    fn one_name_may_have_only_a_few_pending_handshakes() {
        let t0 = Instant::now();
        let mut b = budget();
        b.arrived(1, "10.0.0.1:1", at(t0, 0));
        b.arrived(2, "10.0.0.2:1", at(t0, 1));
        b.arrived(3, "127.0.0.1:1", at(t0, 2));
        assert_eq!(b.named(1, "n1"), Vec::<u64>::new());
        assert_eq!(b.named(2, "n1"), Vec::<u64>::new());
        assert_eq!(b.named(3, "n1"), vec![1]);
        assert_eq!(b.named(99, "n1"), Vec::<u64>::new());
    }

    #[test]
    fn equal_arrival_times_shed_the_smaller_id() {
        let t0 = Instant::now();
        let mut b = budget();
        b.arrived(5, "10.0.0.1:1", t0);
        b.arrived(6, "10.0.0.1:2", t0);
        assert_eq!(b.arrived(7, "10.0.0.1:3", t0), vec![5]);
    }

    #[test]
    fn out_of_descriptors_the_oldest_silent_one_goes_whatever_its_host() {
        let t0 = Instant::now();
        let mut b = budget();
        b.arrived(1, "127.0.0.1:1", at(t0, 0));
        b.arrived(2, "127.0.0.1:2", at(t0, 1));
        b.arrived(3, "10.0.0.1:1", at(t0, 2));
        b.named(1, "n1");
        assert_eq!(b.shed_one(), Some(2));
        assert_eq!(b.shed_one(), Some(3));
        assert_eq!(b.shed_one(), Some(1));
        assert_eq!(b.shed_one(), None);
        assert!(!b.contains(1));
    }

    #[test]
    fn a_shed_connection_cannot_authenticate_and_ended_ones_leave() {
        let t0 = Instant::now();
        let mut b = budget();
        b.arrived(1, "10.0.0.1:1", t0);
        b.arrived(2, "10.0.0.1:2", t0);
        assert_eq!(b.arrived(3, "10.0.0.1:3", t0), vec![1]);
        assert!(!b.authenticated(1));
        assert!(b.remove(2));
        assert!(!b.remove(2));
        assert!(b.authenticated(3));
        assert_eq!(b.len(), 0);
    }
}
