//! What the CLI's tests share: a behaviour whose leader echoes calls.
#![allow(dead_code)]

use gen_leader::{Behaviour, Election, LeaderReply, NodeName, ReplyTo};

/// A leader that answers each call with its request; nothing else happens.
pub struct Echo;

impl Behaviour for Echo {
    type Call = u64;
    type Reply = u64;
    type Cast = ();
    type Synch = ();
    type Broadcast = ();
    type Info = ();

    async fn elected(&mut self, _: &Election<'_>, _: Option<&NodeName>) {}
    async fn surrendered(&mut self, _: (), _: &Election<'_>) {}
    async fn handle_leader_call(
        &mut self,
        n: u64,
        _: ReplyTo<u64>,
        _: &Election<'_>,
    ) -> LeaderReply<u64, ()> {
        LeaderReply::Reply(n)
    }
    async fn from_leader(&mut self, _: (), _: &Election<'_>) {}
    async fn handle_call(&mut self, n: u64, _: &Election<'_>) -> u64 {
        n
    }
}
