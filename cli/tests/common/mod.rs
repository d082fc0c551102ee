//! What the CLI's tests share: the binary and how to run it, and a behaviour whose leader
//! echoes calls.
#![allow(dead_code)]

use std::process::Output;
use std::time::Duration;

use gen_leader::{Behaviour, Election, LeaderReply, NodeName, ReplyTo};
use tokio::process::Command;

/// The `gen-leader` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gen-leader");

/// How long any one step may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// Runs the command with `args` (no cookie from the environment) and collects its output,
/// failing the test if it takes longer than [`WAIT`].
pub async fn run(args: &[&str]) -> Output {
    tokio::time::timeout(
        WAIT,
        Command::new(BIN)
            .args(args)
            .env_remove("GEN_LEADER_COOKIE")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the command did not finish")
    .expect("the command ran")
}

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
