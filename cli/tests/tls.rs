//! `gen-leader status` over TLS (cargo feature `tls` of this crate): two nodes whose cluster
//! connections run TLS, certificates generated here; the command with `--tls-cert/--tls-key/
//! --tls-ca` prints the status, and without them fails in one line that names TLS.

mod common;

use std::time::Duration;

use common::{run, Echo, WAIT};
use gen_leader::config::TlsConfig;
use gen_leader::{Config, Node};
use testkit::Pki;

const COOKIE: &str = "cli-tls-cookie";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_over_tls() {
    let ca = Pki::new("cluster CA");
    let ca_pem = ca.ca_pem();

    let mut ls = Vec::new();
    let mut names = Vec::new();
    for i in 0..2 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        names.push(format!("n{i}@{}", l.local_addr().unwrap()));
        ls.push(l);
    }
    let mut nodes = Vec::new();
    for (name, l) in names.iter().zip(ls) {
        let (c, k) = ca.cert(Some(name), false);
        let cfg = Config::builder(name)
            .candidates(&names)
            .cookie(COOKIE)
            .heartbeat(Duration::from_millis(50))
            .failure_timeout(Duration::from_millis(1000))
            .election_timeout(Duration::from_millis(100))
            .startup_timeout(Duration::from_millis(1500))
            .tls(TlsConfig::from_pem(c, k, ca_pem).unwrap())
            .build()
            .unwrap();
        nodes.push(Node::start_with_listener(cfg, Echo, l).await.unwrap());
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while nodes.iter().any(|n| n.view().leader.is_none()) {
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The command's own certificate carries no node name.
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = ca.cert(None, false);
    let (cp, kp, ap) = (
        dir.path().join("cli.pem"),
        dir.path().join("cli.key"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cp, c).unwrap();
    std::fs::write(&kp, k).unwrap();
    std::fs::write(&ap, ca_pem).unwrap();
    let (cp, kp, ap) = (
        cp.to_str().unwrap(),
        kp.to_str().unwrap(),
        ap.to_str().unwrap(),
    );
    let o = run(&[
        "status",
        &names[1],
        "--cookie",
        COOKIE,
        "--json",
        "--tls-cert",
        cp,
        "--tls-key",
        kp,
        "--tls-ca",
        ap,
    ])
    .await;
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "stdout: {out}\nstderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["node"], names[1].as_str(), "{out}");
    assert!(v["leader"].is_string(), "{out}");

    // Without TLS: one line that says TLS may be why.
    let o = run(&["status", &names[1], "--cookie", COOKIE]).await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--tls-cert"), "{err}");

    // A missing key file: one line naming it.
    let o = run(&[
        "status",
        &names[1],
        "--cookie",
        COOKIE,
        "--tls-cert",
        cp,
        "--tls-key",
        "/nonexistent.key",
        "--tls-ca",
        ap,
    ])
    .await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("/nonexistent.key"), "{err}");
    for n in &nodes {
        n.shutdown().await;
    }
}
