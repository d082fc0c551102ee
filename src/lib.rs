#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! gen_leader
pub mod election;
pub mod types;
