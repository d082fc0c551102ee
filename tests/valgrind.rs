//! A node runs under valgrind.
//!
//! Why a test: rustix (the lease clock's `CLOCK_BOOTTIME`) finds the vDSO through the aux
//! vector, which it asked the kernel for (`PR_GET_AUXV`). Under valgrind that vector names
//! the real vDSO, which valgrind does not map: the first clock read faulted, and every node
//! died with SIGSEGV at start. With rustix's `use-libc-auxv` feature it reads the aux vector
//! libc was given, valgrind's own, and falls back to the system call. Users debug with
//! valgrind; the library must not be the thing that crashes under it.
//!
//! Needs `valgrind` on the PATH. Skipped (with a message) when it is missing, unless
//! `GEN_LEADER_REQUIRE_VALGRIND` is set, as CI sets it: then a missing valgrind fails.

use std::process::Command;
use std::time::Duration;

use testkit::datos::{datos_exe, datos_node, free_names};
use testkit::{wait_for, Proc};

const REQUIRE: &str = "GEN_LEADER_REQUIRE_VALGRIND";

fn valgrind_present() -> bool {
    let found = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os(REQUIRE).is_none(),
            "valgrind is not installed and {REQUIRE} is set"
        );
        eprintln!("valgrind is not installed: skipped (set {REQUIRE} to make this a failure)");
    }
    found
}

#[test]
fn a_node_elects_itself_under_valgrind() {
    if !valgrind_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = free_names(1).unwrap().remove(0);
    let node = datos_node(&datos_exe(), &name, &name, &dir.path().join("data"));
    let mut cmd = Command::new("valgrind");
    cmd.args(["--quiet", "--error-limit=no"])
        .arg(node.get_program())
        .args(node.get_args())
        .args(["--cookie", "valgrind-test-cookie"]);
    let mut p = Proc::spawn(cmd, "valgrind", &dir.path().join("log")).expect("spawn valgrind");
    // Valgrind runs the node tens of times slower: be generous.
    let elected = wait_for(Duration::from_secs(60), || {
        p.find(0, |e| e["event"] == "elected")
            .or_else(|| p.stdout_closed().then_some(serde_json::Value::Null))
    });
    let diagnosis = p.diagnose(10, 30);
    p.kill();
    match elected {
        Some(e) if !e.is_null() => {}
        Some(_) => panic!("the node died under valgrind:\n{diagnosis}"),
        None => panic!("no `elected` event under valgrind in 60 s:\n{diagnosis}"),
    }
}
