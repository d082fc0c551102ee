//! Dev-only harness for running programs as child OS processes: the multi-process tests, the
//! cluster benchmark and the `datos` example's demo all start nodes this one way.
//!
//! Why one crate: a child that outlives its test keeps ports and CPU busy and corrupts the next
//! run, so the kill-on-drop rules (SIGCONT a stopped child before SIGKILL, reap it, kill every
//! child on SIGINT/SIGTERM/SIGHUP) live in exactly one place.
//!
//! * [`process`]: [`Proc`], a child whose stdout JSON lines are collected as [`Event`]s, with
//!   signals, stdin lines and its stderr log; [`wait_for`] wakes on every event of any child.
//! * [`datos`]: the `datos` example binary, and reading the views in its `--json` events.
//! * [`flood`]: [`Flood`], a flood of idle and garbage connections on nodes' ports (the
//!   `flood` test and the benchmark's `flood` section), and [`open_files_limit`] to size it.
//! * `tls` (feature `tls`): `Pki`, a CA and node certificates for the TLS tests and bench.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod datos;
pub mod etcd;
pub mod flood;
pub mod process;
#[cfg(feature = "tls")]
pub mod tls;

pub use flood::{open_files_limit, Flood};
pub use process::{kill_children_on_interrupt, wait_for, Event, Proc};

/// `rcgen`, for the TLS tests and bench (feature `tls`); [`tls::Pki`] makes the usual
/// certificates with it.
#[cfg(feature = "tls")]
pub use rcgen;
#[cfg(feature = "tls")]
pub use tls::Pki;
