//! Placeholder replaced by the cluster benchmark.
fn main() {}
