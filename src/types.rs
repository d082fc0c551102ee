//! Basic vocabulary shared by every layer: node names, node ids, terms and fencing tokens.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A node's name, `name@host:port`, as given on the command line.
///
/// The `name` part identifies the node (as the part before `@` does in Erlang); `host:port`
/// is where its listener accepts connections from the other nodes.
///
/// Cheap to clone (a reference count; names are copied into every view, peer table and
/// message), and its text is made once, when it is parsed. Compared, ordered and serialized
/// as the three fields `name`, `host`, `port`, in that order; hashed by its text (equal names
/// have equal text).
#[derive(Clone)]
pub struct NodeName(Arc<Parts>);

/// What a [`NodeName`] shares between its clones.
struct Parts {
    /// `name@host:port` (an IPv6 host inside `[ ]`), as `Display` shows it.
    text: Box<str>,
    /// `text[..at]` is the name.
    at: usize,
    /// `text[host.0..host.1]` is the host.
    host: (usize, usize),
    port: u16,
}

impl NodeName {
    /// The name of these parts, its text written out once (without `format!`: names are
    /// parsed at every handshake).
    fn from_parts(name: &str, host: &str, port: u16) -> Self {
        let v6 = host.contains(':');
        let mut text = String::with_capacity(name.len() + host.len() + 9);
        text.push_str(name);
        text.push('@');
        if v6 {
            text.push('[');
        }
        let h0 = text.len();
        text.push_str(host);
        let h1 = text.len();
        if v6 {
            text.push(']');
        }
        text.push(':');
        text.push_str(itoa::Buffer::new().format(port));
        NodeName(Arc::new(Parts {
            text: text.into_boxed_str(),
            at: name.len(),
            host: (h0, h1),
            port,
        }))
    }

    fn key(&self) -> (&str, &str, u16) {
        (self.name(), self.host(), self.0.port)
    }
}

impl PartialEq for NodeName {
    fn eq(&self, other: &Self) -> bool {
        // The fields are equal exactly when the text and where it is cut are (the text is
        // written out from them; the offsets say how to cut it back).
        let (a, b) = (&*self.0, &*other.0);
        Arc::ptr_eq(&self.0, &other.0)
            || (a.at == b.at && a.host == b.host && a.port == b.port && a.text == b.text)
    }
}

impl Eq for NodeName {}

impl PartialOrd for NodeName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NodeName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl Hash for NodeName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Equal names have equal text (see `eq`); the text alone is what tells them apart.
        self.0.text.hash(state);
    }
}

/// The serialized form: the three fields, as the derived implementation wrote them before
/// the name was shared (the bytes on the wire and the JSON are unchanged).
#[derive(Serialize)]
#[serde(rename = "NodeName")]
struct FieldsRef<'a> {
    name: &'a str,
    host: &'a str,
    port: u16,
}

#[derive(Deserialize)]
#[serde(rename = "NodeName")]
struct Fields<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    host: Cow<'a, str>,
    port: u16,
}

impl Serialize for NodeName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        FieldsRef {
            name: self.name(),
            host: self.host(),
            port: self.0.port,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = Fields::deserialize(d)?;
        Ok(NodeName::from_parts(&f.name, &f.host, f.port))
    }
}

/// Why a string is not a valid [`NodeName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeNameError {
    /// There is no `@` between the name and the address.
    #[error("node name {0:?} has no '@': expected NAME@HOST:PORT, e.g. lider1@127.0.0.1:4001")]
    MissingAt(String),
    /// The part before `@` is empty or has characters other than `A-Z a-z 0-9 _ - .`.
    #[error("node name {0:?}: the name before '@' must be 1-64 characters of A-Z a-z 0-9 _ - .")]
    BadName(String),
    /// The part after `@` is not `host:port`.
    #[error("node name {0:?}: expected HOST:PORT after '@' (port 1-65535)")]
    BadAddress(String),
    /// The host has a character that cannot be in a host name or an IP address.
    #[error("node name {name:?}: the host {host:?} has the character {bad:?}, which cannot be in a host name (allowed: A-Z a-z 0-9 - . _, or an IPv6 address in [ ])")]
    BadHost {
        /// The whole string.
        name: String,
        /// The host part.
        host: String,
        /// The first character not allowed.
        bad: char,
    },
    /// The string looks like several node names joined by something other than `,`.
    #[error("{0:?} is not one node name: it contains ';' or a space; separate node names with ',' (e.g. --candidates a@h:1,b@h:2)")]
    Separator(String),
}

impl NodeName {
    /// Builds a node name from its parts, validating them.
    pub fn new(name: &str, host: &str, port: u16) -> Result<Self, NodeNameError> {
        format!("{name}@{host}:{port}").parse()
    }

    /// The part before `@`.
    pub fn name(&self) -> &str {
        &self.0.text[..self.0.at]
    }

    /// The host part of the address.
    pub fn host(&self) -> &str {
        &self.0.text[self.0.host.0..self.0.host.1]
    }

    /// The port part of the address.
    pub fn port(&self) -> u16 {
        self.0.port
    }

    /// The whole name, `name@host:port`, as [`Display`](fmt::Display) shows it (without
    /// formatting anything).
    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// `host:port`, the address other nodes dial.
    pub fn addr(&self) -> String {
        // The text after the name and its `@`.
        self.0.text[self.0.at + 1..].to_string()
    }
}

impl FromStr for NodeName {
    type Err = NodeNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.contains(';') || s.contains(char::is_whitespace) {
            return Err(NodeNameError::Separator(s.to_string()));
        }
        let (name, addr) = s
            .split_once('@')
            .ok_or_else(|| NodeNameError::MissingAt(s.to_string()))?;
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !name_ok {
            return Err(NodeNameError::BadName(s.to_string()));
        }
        let bad = || NodeNameError::BadAddress(s.to_string());
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.len() > 255 {
            return Err(bad());
        }
        // A DNS name (letters, digits, '-', '.', and '_' as some resolvers allow) or an IP
        // address (IPv6 inside '[ ]', with ':' and a '%' zone).
        let ipv6 = addr.starts_with('[');
        let allowed = |c: char| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '.' | '_')
                || (ipv6 && matches!(c, ':' | '%'))
        };
        if let Some(bad) = host.chars().find(|&c| !allowed(c)) {
            return Err(NodeNameError::BadHost {
                name: s.to_string(),
                host: host.to_string(),
                bad,
            });
        }
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(bad());
        }
        Ok(NodeName::from_parts(name, host, port))
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A node's index in the cluster's member list (candidates first, in priority order, then
/// workers). Every node is configured with the same list, which the handshake checks, so an
/// id means the same node everywhere. For candidates, a lower id is a higher priority.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize, Default,
)]
pub struct NodeId(pub u32);

impl NodeId {
    /// The id as a `usize` index into the member list.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A leadership term: a monotonic number that orders leaderships and serves as a fencing
/// token.
///
/// Terms strictly increase at every node and are persisted, so a restarted node never reuses
/// one. Term `t` can only ever be led by candidate number `t % number_of_candidates`, so two
/// leaders never share a term, even across a partition.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize, Default,
)]
pub struct Term(pub u64);

impl Term {
    /// The term as a plain number (for fencing tokens in external stores).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A fencing token: the term of a leadership, as the resource it guards should see it.
///
/// A leader passes its token with every write; the resource stores the highest token it has
/// accepted and refuses writes that carry a lower one ([`FencingToken::admits`]). Terms
/// strictly increase, so once a newer leader has written, an older one that was paused,
/// partitioned or simply slow can no longer overwrite it — even if it still *believes* it
/// leads. Get it from [`LeaderGuard::term`](crate::LeaderGuard::term) (or
/// `FencingToken::from(term)`).
///
/// # Example: a conditional write
///
/// Against a SQL store the check is part of the write itself:
/// `UPDATE jobs SET owner = $owner, fence = $term WHERE id = $id AND fence <= $term` — zero
/// rows updated means a newer leader has written: this one is stale and must stop. Here a tiny
/// in-memory table stands in for the database:
///
/// ```
/// use std::collections::HashMap;
/// use gen_leader::{FencingToken, Term};
///
/// /// One row: the value and the highest fence that wrote it.
/// struct Row { owner: String, fence: u64 }
///
/// /// Stands in for `UPDATE jobs SET owner = $2, fence = $3 WHERE id = $1 AND fence <= $3`;
/// /// returns the number of rows updated.
/// fn update(table: &mut HashMap<u32, Row>, id: u32, owner: &str, token: FencingToken) -> usize {
///     match table.get_mut(&id) {
///         Some(row) if token.admits(row.fence) => {
///             row.owner = owner.to_string();
///             row.fence = token.get();
///             1
///         }
///         _ => 0,
///     }
/// }
///
/// let mut jobs = HashMap::from([(7, Row { owner: "nobody".into(), fence: 0 })]);
/// let old_leader = FencingToken::from(Term(3));
/// let new_leader = FencingToken::from(Term(5));
///
/// assert_eq!(update(&mut jobs, 7, "a", old_leader), 1);
/// assert_eq!(update(&mut jobs, 7, "b", new_leader), 1);
/// // The old leader wakes up from a pause and tries again: refused, 0 rows.
/// assert_eq!(update(&mut jobs, 7, "a", old_leader), 0, "stale leader: stop acting");
/// assert_eq!(jobs[&7].owner, "b");
/// // The current leader may write again with the same token.
/// assert_eq!(update(&mut jobs, 7, "b2", new_leader), 1);
/// ```
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize, Default,
)]
pub struct FencingToken(u64);

impl FencingToken {
    /// A token from its number (as read back from a store).
    pub fn new(token: u64) -> Self {
        FencingToken(token)
    }

    /// The token as a plain number, to store next to the data it guards.
    pub fn get(self) -> u64 {
        self.0
    }

    /// Whether a resource whose stored (highest accepted) token is `stored` must accept a
    /// write carrying this token: true iff `self.get() >= stored`. Equal tokens are admitted,
    /// so a leader can write many times in its term.
    pub fn admits(self, stored: u64) -> bool {
        self.0 >= stored
    }
}

impl From<Term> for FencingToken {
    fn from(t: Term) -> Self {
        FencingToken(t.0)
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_tokens_admit_equal_or_newer_only() {
        let t = FencingToken::from(Term(5));
        assert_eq!(t, FencingToken::new(5));
        assert_eq!(t.get(), 5);
        assert!(t.admits(0));
        assert!(t.admits(4));
        assert!(t.admits(5), "the same leadership may write again");
        assert!(!t.admits(6), "a newer leadership has written");
        assert!(!FencingToken::new(0).admits(u64::MAX));
        assert!(FencingToken::new(u64::MAX).admits(u64::MAX));
        assert!(FencingToken::new(3) < FencingToken::new(4));
        assert_eq!(t.to_string(), "5");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "5");
        assert_eq!(serde_json::from_str::<FencingToken>(&json).unwrap(), t);
    }

    /// The derived implementation the shared name replaced: the bytes on the wire and the
    /// JSON must stay what they were.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    #[serde(rename = "NodeName")]
    struct Before {
        name: String,
        host: String,
        port: u16,
    }

    #[test]
    fn a_shared_name_serializes_as_the_three_fields_did() {
        for text in [
            "lider1@127.0.0.1:4001",
            "a@[::1]:9",
            "n.o-d_e@example.org:65535",
        ] {
            let n: NodeName = text.parse().unwrap();
            let before = Before {
                name: n.name().into(),
                host: n.host().into(),
                port: n.port(),
            };
            let bytes = crate::wire::codec::encode_payload(&n).unwrap();
            assert_eq!(bytes, crate::wire::codec::encode_payload(&before).unwrap());
            assert_eq!(
                crate::wire::codec::decode_payload::<NodeName>(&bytes).unwrap(),
                n
            );
            let json = serde_json::to_string(&n).unwrap();
            assert_eq!(json, serde_json::to_string(&before).unwrap());
            let back: NodeName = serde_json::from_str(&json).unwrap();
            assert_eq!(back, n);
            assert_eq!(back.as_str(), text);
        }
    }

    /// Names are copied into every view, peer table and many messages: a copy is a reference
    /// count, not three strings (a 9-node rejoin spent about 10 % of its instructions
    /// copying, formatting and freeing names when they were).
    #[test]
    fn a_name_is_one_pointer_and_its_clones_share_it() {
        assert_eq!(
            std::mem::size_of::<NodeName>(),
            std::mem::size_of::<usize>()
        );
        let n: NodeName = "a@h:1".parse().unwrap();
        let c = n.clone();
        assert!(std::ptr::eq(n.as_str(), c.as_str()));
    }

    #[test]
    fn the_text_is_written_out_as_format_would() {
        for port in [1u16, 9, 10, 99, 100, 4001, 65535] {
            for host in ["h", "127.0.0.1", "::1", "fe80::1%eth0"] {
                let n = NodeName::from_parts("n", host, port);
                let want = if host.contains(':') {
                    format!("n@[{host}]:{port}")
                } else {
                    format!("n@{host}:{port}")
                };
                assert_eq!(n.as_str(), want);
                assert_eq!((n.name(), n.host(), n.port()), ("n", host, port));
                assert_eq!(n.addr(), want["n@".len()..]);
            }
        }
        // Not a valid name, but it can come off the wire: still written out.
        assert_eq!(NodeName::from_parts("n", "h", 0).as_str(), "n@h:0");
    }

    #[test]
    fn names_compare_by_name_then_host_then_port() {
        let p = |s: &str| s.parse::<NodeName>().unwrap();
        // As the derived order did: the fields in turn, not the text ("a@h:10" < "a@h:9").
        assert!(p("a@h:9") < p("a@h:10"));
        assert!(p("a@z:1") < p("b@a:1"));
        assert!(p("a@a:2") < p("a@b:1"));
        // Equal names made apart are equal and hash alike; a clone is the same name.
        let (x, y) = (p("a@h:1"), p("a@h:1"));
        assert_eq!(x, y);
        use std::hash::BuildHasher;
        let s = std::collections::hash_map::RandomState::new();
        assert_eq!(s.hash_one(&x), s.hash_one(&y));
        assert_eq!(x.clone(), y);
        assert_ne!(x, p("a@h:2"));
        // Off the wire the fields are not checked: two names can share a text and still
        // differ, as their fields do.
        let (u, v) = (
            NodeName::from_parts("a@b", "c", 1),
            NodeName::from_parts("a", "b@c", 1),
        );
        assert_eq!(u.as_str(), v.as_str());
        assert_ne!(u, v);
        assert_eq!(u, NodeName::from_parts("a@b", "c", 1));
    }

    #[test]
    fn parses_and_displays() {
        let n: NodeName = "lider1@127.0.0.1:4001".parse().unwrap();
        assert_eq!(n.name(), "lider1");
        assert_eq!(n.host(), "127.0.0.1");
        assert_eq!(n.port(), 4001);
        assert_eq!(n.to_string(), "lider1@127.0.0.1:4001");
        assert_eq!(n.addr(), "127.0.0.1:4001");
        let v6: NodeName = "a@[::1]:9".parse().unwrap();
        assert_eq!(v6.addr(), "[::1]:9");
        assert_eq!(v6.to_string(), "a@[::1]:9");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "lider1",
            "@h:1",
            "a b@h:1",
            "a@:1",
            "a@h",
            "a@h:0",
            "a@h:99999",
            "a@h:x",
        ] {
            assert!(bad.parse::<NodeName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rejects_hosts_that_cannot_be_host_names_with_a_hint() {
        let e = "a@h:1;b@h:2".parse::<NodeName>().unwrap_err();
        assert_eq!(e, NodeNameError::Separator("a@h:1;b@h:2".into()));
        assert!(
            e.to_string().contains("separate node names with ','"),
            "{e}"
        );
        assert!(matches!(
            "a@h:1 b@h:2".parse::<NodeName>(),
            Err(NodeNameError::Separator(_))
        ));
        for (bad, ch) in [
            ("a@h/x:1", '/'),
            ("a@b@h:1", '@'),
            ("a@h,b:1", ','),
            ("a@h*:1", '*'),
        ] {
            assert_eq!(
                bad.parse::<NodeName>(),
                Err(NodeNameError::BadHost {
                    name: bad.into(),
                    host: bad[2..bad.len() - 2].into(),
                    bad: ch
                }),
                "{bad}"
            );
        }
        // A mistyped IP address is a valid host name: it is reported when it cannot be
        // reached (see `transport::peers`).
        assert!("a@127.0.0.l:1".parse::<NodeName>().is_ok());
        for good in [
            "a@my-host.example.com:1",
            "a@[fe80::1%eth0]:9",
            "a@under_score:2",
        ] {
            assert!(good.parse::<NodeName>().is_ok(), "{good}");
        }
    }
}
