//! gen-leader's heavy verification suites live in this crate's `tests/`: the deterministic
//! simulators (`sim`, `sim_quorum`), the stateright model checkers (`model`, `model_quorum`),
//! the turmoil network simulation (`turmoil`) and the property tests (`props`). They are a
//! workspace member of their own so that the root crate's dev-dependencies stay light: every
//! example of the root crate is built with all of its dev-dependencies, and stateright,
//! turmoil and proptest roughly doubled the first build of `cargo run --example datos`.
//! `cargo test` at the workspace root runs them (the workspace's default members).
