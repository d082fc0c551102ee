//! Unit tests of the configuration: what builds, what is refused and why, the digest.

use super::*;

fn base() -> ConfigBuilder {
    Config::builder("a@127.0.0.1:1")
        .candidates(["a@127.0.0.1:1", "b@127.0.0.1:2"])
        .cookie("secret")
}

#[test]
fn valid_config_builds() {
    let c = base().workers(["w@127.0.0.1:3"]).build().unwrap();
    assert_eq!(c.my_id, NodeId(0));
    assert_eq!(c.members().candidates().len(), 2);
    assert_eq!(c.members().workers().len(), 1);
    assert_eq!(c.failure_timeout(), DEFAULT_HEARTBEAT * 6);
}

#[test]
fn bad_configs_are_refused_with_clear_errors() {
    let e = |b: ConfigBuilder| b.build().unwrap_err().to_string();
    assert!(e(Config::builder("nope")).contains("has no '@'"));
    assert!(e(base().candidates(Vec::<String>::new())).contains("empty"));
    assert!(e(base().candidates(["b@127.0.0.1:2"])).contains("neither"));
    assert!(e(base().candidates(["a@127.0.0.1:1", "a@127.0.0.1:9"])).contains("twice"));
    assert!(e(base().workers(["b@127.0.0.1:2"])).contains("twice"));
    assert!(e(base().heartbeat(Duration::ZERO)).contains("greater than zero"));
    assert!(e(base().failure_timeout(Duration::from_millis(50))).contains("shorter"));
    assert!(e(base().cookie("")).contains("cookie"));
    assert!(e(base().max_frame_len(1)).contains("out of range"));
    assert!(e(base().call_timeout(Duration::MAX)).contains("out of range"));
    assert!(e(base().spin(Duration::from_secs(1))).contains("spin"));
    assert!(base().spin(Duration::from_micros(50)).build().is_ok());
}

#[test]
fn listen_and_dial_overrides() {
    let c = base()
        .listen("0.0.0.0:7000")
        .dial_addr("b@127.0.0.1:2", "127.0.0.1:9002")
        .build()
        .unwrap();
    assert_eq!(c.listen_addr(), "0.0.0.0:7000");
    assert_eq!(c.dial_addr(NodeId(1)), "127.0.0.1:9002");
    assert_eq!(c.dial_addr(NodeId(0)), "127.0.0.1:1");
    let e = base()
        .dial_addr("zz@127.0.0.1:5", "x:1")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("neither"), "{e}");
}

#[test]
fn digest_depends_on_member_order() {
    let a = base().build().unwrap();
    let b = base()
        .candidates(["b@127.0.0.1:2", "a@127.0.0.1:1"])
        .build()
        .unwrap();
    assert_ne!(a.members_digest(), b.members_digest());
}

/// A builder for `me` with the etcd backend (no lists), for the tests of `config` and its
/// modules.
#[cfg(feature = "etcd")]
pub(super) fn etcd(me: &str) -> ConfigBuilder {
    use crate::etcd::EtcdConfig;
    Config::builder(me)
        .cookie("secret")
        .backend(Backend::Etcd(EtcdConfig::new(
            ["http://127.0.0.1:2379"],
            "e",
        )))
}

#[cfg(feature = "etcd")]
#[test]
fn election_roles_and_lists() {
    let e = |b: ConfigBuilder| b.build().unwrap_err().to_string();
    // Listed ids come first; this node, unlisted, after them.
    let c = etcd("c@127.0.0.1:3")
        .candidates(["a@127.0.0.1:1"])
        .workers(["w@127.0.0.1:9"])
        .build()
        .unwrap();
    assert_eq!(c.my_id, NodeId(2));
    assert_eq!(c.members().len(), 3);
    let w = etcd("w@127.0.0.1:9").workers(["w@127.0.0.1:9"]).build();
    assert_eq!(
        w.unwrap().election_role(),
        ElectionRole::Worker,
        "listed as a worker"
    );
    let w = etcd("x@127.0.0.1:9")
        .election_role(ElectionRole::Worker)
        .build();
    assert_eq!(w.unwrap().election_role(), ElectionRole::Worker);
    assert!(e(etcd("w@127.0.0.1:9")
        .workers(["w@127.0.0.1:9"])
        .election_role(ElectionRole::Candidate))
    .contains("contradicts"));
    assert!(e(base().election_role(ElectionRole::Worker)).contains("only with an external"));
    assert!(e(etcd("c@127.0.0.1:3").max_members(0)).contains("max_members"));
    assert!(e(etcd("c@127.0.0.1:3")
        .candidates(["a@127.0.0.1:1"])
        .max_members(1))
    .contains("max_members"));
    assert!(e(etcd("c@127.0.0.1:3").max_members(5000)).contains("max_members"));
    // The digest ignores the lists in etcd mode, not the election.
    let a = etcd("c@127.0.0.1:3").build().unwrap();
    let b = etcd("c@127.0.0.1:3")
        .candidates(["z@127.0.0.1:7"])
        .build()
        .unwrap();
    assert_eq!(a.members_digest(), b.members_digest());
    let other = Config::builder("c@127.0.0.1:3")
        .cookie("secret")
        .backend(Backend::Etcd(crate::etcd::EtcdConfig::new(
            ["http://127.0.0.1:2379"],
            "f",
        )))
        .build()
        .unwrap();
    assert_ne!(a.members_digest(), other.members_digest());
}
