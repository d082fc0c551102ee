//! [`LeaderValue`]: what a campaigner writes as its election value, so that followers know
//! whom to route calls to. In a node runtime the name is also how a follower that lists no one
//! meets the leader: it adds the name to its member table and dials it (`node/backend.rs`).
//!
//! Why JSON (`{"v":1,"name":"a@127.0.0.1:4001","addr":"127.0.0.1:4001"}`): the value is read
//! by every follower and by operators with `etcdctl get --prefix`, so it should be readable;
//! the `v` field lets a later version change it. Decoding never panics: the value comes from
//! etcd, where anything with access to the key space may have written anything, so it is
//! size-capped and checked.

use serde::{Deserialize, Serialize};

/// The longest name or address accepted, in bytes.
pub const MAX_FIELD_LEN: usize = 256;

/// The longest encoded value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 1024;

/// The encoding's version.
const VERSION: u32 = 1;

/// Who a campaigner is: its node name and the address its cluster listener accepts on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaderValue {
    /// The node's name (`name@host:port`).
    pub name: String,
    /// The address other nodes dial to reach its cluster listener (`host:port`).
    pub addr: String,
}

/// Why an election value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A field is empty or longer than [`MAX_FIELD_LEN`] bytes.
    #[error("election value: {field} must be 1 to {MAX_FIELD_LEN} bytes, not {len}")]
    BadField {
        /// `name` or `addr`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The value is longer than [`MAX_VALUE_LEN`] bytes.
    #[error("election value of {0} bytes is longer than {MAX_VALUE_LEN}")]
    TooLong(usize),
    /// The value is not this encoding.
    #[error("election value is not gen-leader's JSON")]
    NotJson(#[source] serde_json::Error),
    /// The value is a version this build does not read.
    #[error("election value version {0} is not supported (this build reads {VERSION})")]
    Version(u32),
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    name: String,
    addr: String,
}

impl LeaderValue {
    /// A value for the node `name` listening on `addr`.
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> Self {
        LeaderValue {
            name: name.into(),
            addr: addr.into(),
        }
    }

    fn check(&self) -> Result<(), ValueError> {
        for (field, s) in [("name", &self.name), ("addr", &self.addr)] {
            if s.is_empty() || s.len() > MAX_FIELD_LEN {
                return Err(ValueError::BadField {
                    field,
                    len: s.len(),
                });
            }
        }
        Ok(())
    }

    /// The bytes stored in etcd.
    pub fn encode(&self) -> Result<Vec<u8>, ValueError> {
        self.check()?;
        let bytes = serde_json::to_vec(&Wire {
            v: VERSION,
            name: self.name.clone(),
            addr: self.addr.clone(),
        })
        .map_err(ValueError::NotJson)?;
        if bytes.len() > MAX_VALUE_LEN {
            return Err(ValueError::TooLong(bytes.len()));
        }
        Ok(bytes)
    }

    /// Reads a value from etcd.
    pub fn decode(bytes: &[u8]) -> Result<Self, ValueError> {
        if bytes.len() > MAX_VALUE_LEN {
            return Err(ValueError::TooLong(bytes.len()));
        }
        let w: Wire = serde_json::from_slice(bytes).map_err(ValueError::NotJson)?;
        if w.v != VERSION {
            return Err(ValueError::Version(w.v));
        }
        let v = LeaderValue {
            name: w.name,
            addr: w.addr,
        };
        v.check()?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_readable_json() {
        let v = LeaderValue::new("a@127.0.0.1:4001", "127.0.0.1:4001");
        let bytes = v.encode().unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"v":1,"name":"a@127.0.0.1:4001","addr":"127.0.0.1:4001"}"#
        );
        assert_eq!(LeaderValue::decode(&bytes).unwrap(), v);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(matches!(
            LeaderValue::new("", "x").encode(),
            Err(ValueError::BadField {
                field: "name",
                len: 0
            })
        ));
        assert!(matches!(
            LeaderValue::new("n", "x".repeat(300)).encode(),
            Err(ValueError::BadField {
                field: "addr",
                len: 300
            })
        ));
        assert!(matches!(
            LeaderValue::decode(b"hello"),
            Err(ValueError::NotJson(_))
        ));
        assert!(matches!(
            LeaderValue::decode(br#"{"v":2,"name":"a","addr":"b"}"#),
            Err(ValueError::Version(2))
        ));
        assert!(matches!(
            LeaderValue::decode(br#"{"v":1,"name":"","addr":"b"}"#),
            Err(ValueError::BadField { field: "name", .. })
        ));
        assert!(matches!(
            LeaderValue::decode(&[b' '; 2000]),
            Err(ValueError::TooLong(2000))
        ));
    }
}
