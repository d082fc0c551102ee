//! TLS on cluster connections (cargo feature `tls`, issue 11): nodes with certificates
//! generated here (rcgen) elect, call and broadcast over TLS; a certificate from another CA,
//! one that does not carry the node's name, an expired one, and a plain node are each
//! refused, with a reason in the log and in the view; an observer reads a node's status over
//! TLS.

mod common;

use std::time::Duration;

use common::*;
use gen_leader::config::{TlsConfig, TlsError, TlsInput};
use gen_leader::wire::handshake::ObserverConfig;
use gen_leader::{ClusterView, NodeName, Observer};
use testkit::Pki;

/// The TLS settings of `node`: a certificate signed by `ca`, trusting `trust`'s CA.
fn tls_of(ca: &Pki, node: &str, trust: &Pki) -> TlsConfig {
    let (cert, key) = ca.cert(Some(node), false);
    TlsConfig::from_pem(cert, key, trust.ca_pem()).unwrap()
}

fn init_logs() {
    logs::capture(tracing::Level::WARN);
}

fn warns_of(node: &str) -> Vec<String> {
    logs::lines_of(node)
        .into_iter()
        .filter(|l| l.contains("WARN"))
        .collect()
}

/// Waits until `node` logged a WARN line containing every one of `parts`.
async fn logged(node: &str, parts: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(l) = warns_of(node)
            .into_iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return l;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{node} never logged {parts:?}; its WARN lines:\n{}",
                warns_of(node).join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn refused_by(view: &ClusterView, peer: &str) -> Option<String> {
    view.refused
        .iter()
        .find(|(n, _)| n.to_string() == peer)
        .map(|(_, r)| r.clone())
}

/// Waits until `node`'s view lists a refusal of `peer` containing every one of `parts`.
async fn refusal_shown(node: &TNode, peer: &str, parts: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = node.handle.view();
        if let Some(r) = refused_by(&v, peer) {
            if parts.iter().all(|p| r.contains(p)) {
                return r;
            }
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{} never showed a refusal of {peer} with {parts:?}: {:?}; its WARN lines:\n{}",
                node.name,
                v.refused,
                warns_of(&node.name).join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_call_and_broadcast_over_tls() {
    let ca = Pki::new("cluster CA");
    let (ls, names) = bind(3).await;
    let mut nodes = Vec::new();
    for (l, n) in ls.into_iter().zip(&names) {
        nodes.push(start(config(n, &names, &[]).tls(tls_of(&ca, n, &ca)), l).await);
    }
    let leader = agreed(&all(&nodes)).await;
    let r = nodes[2].handle.leader_call("hola".into()).await.unwrap();
    assert_eq!(r, format!("{leader}:hola"));
    eventually("every follower gets the broadcast", || {
        nodes
            .iter()
            .filter(|n| n.name != leader)
            .all(|n| n.from_leader() == vec!["hola"])
    })
    .await;
    for n in &nodes {
        assert!(n.handle.view().refused.is_empty(), "{:?}", n.handle.view());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    init_logs();
    let (ca, other) = (Pki::new("cluster CA"), Pki::new("another CA"));
    let (mut ls, names) = bind(2).await;
    let (a, b) = (names[0].clone(), names[1].clone());
    let lb = ls.pop().unwrap();
    let la = ls.pop().unwrap();
    let na = start(config(&a, &names, &[]).tls(tls_of(&ca, &a, &ca)), la).await;
    // b trusts the cluster's CA, but its own certificate is signed by another.
    let nb = start(config(&b, &names, &[]).tls(tls_of(&other, &b, &ca)), lb).await;
    // a dials b and refuses b's certificate; b hears that a refused its certificate.
    let r = refusal_shown(
        &na,
        &b,
        &["TLS", "certificate was refused", "UnknownIssuer"],
    )
    .await;
    assert!(r.contains(&b), "{r}");
    logged(&b, &["TLS", "refused this node's certificate"]).await;
    assert!(na.handle.view().leader.as_ref().map(|l| l.to_string()) != Some(b.clone()));
    na.handle.shutdown().await;
    nb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_node_is_refused_both_ways() {
    init_logs();
    let ca = Pki::new("cluster CA");
    let (mut ls, names) = bind(2).await;
    let (a, b) = (names[0].clone(), names[1].clone());
    let lb = ls.pop().unwrap();
    let la = ls.pop().unwrap();
    // b's certificate is valid, from the right CA, for its host, but for another node.
    let impostor = format!("n9@127.0.0.1:{}", lb.local_addr().unwrap().port());
    let na = start(config(&a, &names, &[]).tls(tls_of(&ca, &a, &ca)), la).await;
    let nb = start(config(&b, &names, &[]).tls(tls_of(&ca, &impostor, &ca)), lb).await;
    // a dials b: b proves the cookie as b, but its certificate says n9.
    let r = refusal_shown(
        &na,
        &b,
        &[
            "TLS: the certificate of",
            "gen-leader://n1@127.0.0.1",
            "URI:gen-leader://n9@127.0.0.1",
        ],
    )
    .await;
    assert!(r.contains(&b), "{r}");
    // b dials a (to ask a to dial back): a refuses it after the cookie, and says why.
    logged(&a, &["refused", &b, "does not cover"]).await;
    logged(&b, &["refused our connection", "does not cover"]).await;
    assert_eq!(na.handle.view().alive.len(), 1, "{:?}", na.handle.view());
    na.handle.shutdown().await;
    nb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    init_logs();
    let ca = Pki::new("cluster CA");
    let (mut ls, names) = bind(2).await;
    let (a, b) = (names[0].clone(), names[1].clone());
    let lb = ls.pop().unwrap();
    let la = ls.pop().unwrap();
    let (cert, key) = ca.cert(Some(&b), true);
    let expired = TlsConfig::from_pem(cert, key, ca.ca_pem()).unwrap();
    let na = start(config(&a, &names, &[]).tls(tls_of(&ca, &a, &ca)), la).await;
    let nb = start(config(&b, &names, &[]).tls(expired), lb).await;
    refusal_shown(&na, &b, &["TLS", "expired"]).await;
    logged(&b, &["TLS", "refused this node's certificate", "Expired"]).await;
    na.handle.shutdown().await;
    nb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_tls_nodes_refuse_each_other() {
    init_logs();
    let ca = Pki::new("cluster CA");
    let (mut ls, names) = bind(2).await;
    let (a, b) = (names[0].clone(), names[1].clone());
    let lb = ls.pop().unwrap();
    let la = ls.pop().unwrap();
    let na = start(config(&a, &names, &[]).tls(tls_of(&ca, &a, &ca)), la).await;
    let nb = start(config(&b, &names, &[]), lb).await;
    // a (TLS) dials b (plain): b answers no TLS.
    refusal_shown(&na, &b, &["TLS", "configured on both sides"]).await;
    // b (plain) dials a (TLS): a says b does not speak TLS.
    logged(&a, &["does not speak TLS"]).await;
    assert!(na.handle.view().alive.len() == 1 && nb.handle.view().alive.len() == 1);
    na.handle.shutdown().await;
    nb.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_reads_the_status_over_tls() {
    let ca = Pki::new("cluster CA");
    let (ls, names) = bind(2).await;
    let mut nodes = Vec::new();
    for (l, n) in ls.into_iter().zip(&names) {
        nodes.push(start(config(n, &names, &[]).tls(tls_of(&ca, n, &ca)), l).await);
    }
    let leader = agreed(&all(&nodes)).await;
    let node: NodeName = names[1].parse().unwrap();
    let ocfg = ObserverConfig::new("tls-test", "test-cookie");
    // An observer's certificate needs no node name.
    let (cert, key) = ca.cert(None, false);
    let tls = TlsConfig::from_pem(cert, key, ca.ca_pem()).unwrap();
    let mut o = Observer::connect_tls(&node, &ocfg, &tls).await.unwrap();
    let s = o.status().await.unwrap();
    assert_eq!(s.leader.map(|l| l.to_string()), Some(leader));
    // Without TLS, the node does not answer the observer.
    let plain = Observer::connect(&node, &ocfg).await.unwrap_err();
    assert!(plain.handshake().is_some(), "{plain}");
    // With a certificate from another CA, neither.
    let other = Pki::new("another CA");
    let (cert, key) = other.cert(None, false);
    let bad = TlsConfig::from_pem(cert, key, ca.ca_pem()).unwrap();
    let e = Observer::connect_tls(&node, &ocfg, &bad).await.unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");
}

#[test]
fn tls_config_errors_are_typed() {
    let ca = Pki::new("cluster CA");
    let (cert, key) = ca.cert(Some("n0@127.0.0.1:1"), false);
    assert!(TlsConfig::from_pem(&cert, &key, ca.ca_pem()).is_ok());
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let e = TlsConfig::from_pem_files(&missing, &missing, &missing).unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::Read {
                what: TlsInput::Cert,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("missing.pem"), "{e}");
    // A key where the certificate should be, a certificate where the key should be.
    assert!(matches!(
        TlsConfig::from_pem(&key, &key, ca.ca_pem()),
        Err(TlsError::NoCertificate {
            what: TlsInput::Cert
        })
    ));
    assert!(matches!(
        TlsConfig::from_pem(&cert, &cert, ca.ca_pem()),
        Err(TlsError::NoKey)
    ));
    assert!(matches!(
        TlsConfig::from_pem(&cert, &key, "not PEM at all"),
        Err(TlsError::NoCertificate { what: TlsInput::Ca })
    ));
    // A certificate with another node's key.
    let (_, other_key) = ca.cert(None, false);
    let e = TlsConfig::from_pem(&cert, &other_key, ca.ca_pem()).unwrap_err();
    assert!(matches!(e, TlsError::KeyPair { .. }), "{e:?}");
    // Files that exist and are fine.
    let (c, k, a) = (
        dir.path().join("c.pem"),
        dir.path().join("k.pem"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&c, &cert).unwrap();
    std::fs::write(&k, &key).unwrap();
    std::fs::write(&a, ca.ca_pem()).unwrap();
    let tls = TlsConfig::from_pem_files(&c, &k, &a).unwrap();
    // Debug shows no key material.
    let dbg = format!("{tls:?}");
    assert!(
        !dbg.contains("PRIVATE") && !dbg.contains(&key[40..80]),
        "{dbg}"
    );
}
