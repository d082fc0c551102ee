//! Section `calls-ct`: the `calls` figures with every child (nodes and raw pair) on a tokio
//! current-thread runtime.
//!
//! Why: when node processes share a small machine, one thread per node is the better choice;
//! this measures what it costs or saves.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::calls::calls;
use crate::procs::CHILD_WORKERS;
use crate::report::Report;
use crate::util::lock;
use crate::Params;

/// The same figures with every child process (the three nodes and the raw pair) on a tokio
/// current-thread runtime: what co-located node processes should use on a small machine.
pub(crate) fn sec_calls_ct(p: &Params, rep: &mut Report) {
    *lock(&CHILD_WORKERS) = Some("0");
    let r = catch_unwind(AssertUnwindSafe(|| {
        calls(p, rep, "calls-ct", ", current-thread runtimes")
    }));
    *lock(&CHILD_WORKERS) = None;
    if let Err(e) = r {
        std::panic::resume_unwind(e);
    }
}
