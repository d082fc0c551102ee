//! The phantom-leadership check: after etcd's `Campaign` returns, is the key still ours?
//!
//! Why: `Campaign` puts this node's key (attached to its lease) under the election prefix,
//! then waits until every key created before it is deleted. If this node's lease expires
//! while it waits, its own key is deleted too, but the wait does not notice: when the older
//! keys go, `Campaign` returns success for a key that no longer exists, and another
//! campaigner may already lead (Jepsen found this in etcd 3.4.3; etcd's Go
//! `Election.Campaign` has the same hole). So before reporting leadership the campaigner asks,
//! in one transaction, whether the key still exists with the create revision the campaign
//! returned. A key re-created since would have a newer create revision, so the comparison
//! also refuses a key of the same name from a different incarnation.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn};

use super::client::request;
use super::error::{EtcdError, EtcdOp};

/// Whether `key` exists with create revision `rev`. `Ok(Some(header_revision))` if it does
/// (the store's revision at the check, from which to watch the key), `Ok(None)` if not.
pub async fn leader_key_holds(
    client: &Client,
    key: &[u8],
    rev: i64,
    timeout: Duration,
) -> Result<Option<i64>, EtcdError> {
    let txn = Txn::new().when([Compare::create_revision(
        key.to_vec(),
        CompareOp::Equal,
        rev,
    )]);
    let mut kv = client.kv_client();
    let resp = request(EtcdOp::Check, timeout, kv.txn(txn)).await?;
    if !resp.succeeded() {
        return Ok(None);
    }
    Ok(Some(resp.header().map_or(rev, |h| h.revision())))
}
