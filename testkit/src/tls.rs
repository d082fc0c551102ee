//! [`Pki`]: certificates as gen-leader's TLS expects them, for the TLS tests and the bench
//! (feature `tls`).
//!
//! Why one place: every TLS test needs a CA and node certificates with the same SANs
//! (`IP:127.0.0.1` and `URI:gen-leader://NAME@HOST`) and both key usages; four copies of that
//! `rcgen` code drifted in small ways (a CA with or without a common name, the URI with or
//! without the port).

use std::io;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

/// A certificate authority that signs node and observer certificates.
pub struct Pki {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    /// A new self-signed CA called `common_name`.
    pub fn new(common_name: &str) -> Pki {
        let key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, common_name);
        let pem = p.self_signed(&key).expect("CA certificate").pem();
        Pki {
            pem,
            issuer: Issuer::new(p, key),
        }
    }

    /// The CA's certificate, in PEM: what every node trusts.
    pub fn ca_pem(&self) -> &str {
        &self.pem
    }

    /// A certificate and its key, in PEM, signed by this CA, for client and server use, with
    /// the SAN `IP:127.0.0.1` and, for a node `name@host[:port]`, the SAN
    /// `URI:gen-leader://name@host` (an observer has none). Expired since 2001 if `expired`.
    pub fn cert(&self, node: Option<&str>, expired: bool) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        if let Some(n) = node {
            p.subject_alt_names
                .push(SanType::URI(uri(n).try_into().expect("URI SAN")));
        }
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = p.signed_by(&key, &self.issuer).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `ca.pem` and, for each of `nodes`, `<stem>.pem` and `<stem>.key` (its
    /// certificate as [`Pki::cert`] makes it) into `dir`.
    pub fn write(&self, dir: &Path, nodes: &[(&str, &str)]) -> io::Result<()> {
        std::fs::write(dir.join("ca.pem"), &self.pem)?;
        for (stem, node) in nodes {
            let (cert, key) = self.cert(Some(node), false);
            std::fs::write(dir.join(format!("{stem}.pem")), cert)?;
            std::fs::write(dir.join(format!("{stem}.key")), key)?;
        }
        Ok(())
    }
}

/// `gen-leader://name@host` for a node `name@host[:port]` (what the node checks in a peer's
/// certificate).
fn uri(node: &str) -> String {
    let (name, rest) = node.split_once('@').unwrap_or((node, ""));
    let host = match rest.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => rest,
    };
    format!("gen-leader://{name}@{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_leaves_the_port_out() {
        assert_eq!(uri("n0@127.0.0.1:4001"), "gen-leader://n0@127.0.0.1");
        assert_eq!(uri("n0@127.0.0.1"), "gen-leader://n0@127.0.0.1");
        assert_eq!(uri("a@node1.example:9"), "gen-leader://a@node1.example");
    }
}
