//! Shared by the tests that run the `datos` example as OS processes.

use std::path::{Path, PathBuf};

/// The `datos` example binary, next to this test's `deps` directory.
pub fn datos_exe() -> PathBuf {
    let me = std::env::current_exe().expect("current_exe");
    let profile_dir = me
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps");
    let exe = profile_dir
        .join("examples")
        .join(format!("datos{}", std::env::consts::EXE_SUFFIX));
    assert!(
        exe.exists(),
        "the datos example binary is missing at {}: cargo builds examples for `cargo test`; \
         build it with `cargo build --example datos` (same profile as the tests)",
        exe.display()
    );
    exe
}
