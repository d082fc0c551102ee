//! Whether a peer's certificate covers the node name it claims: its host as a `DNS:` or `IP:`
//! subject alternative name, and its node name as the URI `gen-leader://NAME@HOST`.
//!
//! Why a check of its own: rustls verifies the chain against the CA, the validity dates and,
//! when dialing, the host; but a client certificate's names are never checked by TLS, and
//! several nodes may share a host. So every certificate is also bound to one node name, and
//! the name a peer proves with the cookie must be the one its certificate carries. The
//! certificate was already parsed and verified by rustls; this file reads only its subject
//! alternative names, with a small DER reader that never panics on any input.

use std::net::IpAddr;

/// The URI scheme of a node's name in its certificate.
pub const URI_SCHEME: &str = "gen-leader://";

/// Why a certificate does not cover a claimed node name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityMismatch {
    /// The claimed name is not `NAME@HOST:PORT`.
    #[error("{0:?} is not a node name")]
    BadName(String),
    /// The peer presented no certificate (TLS was off on that connection).
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// Its subject alternative names could not be read.
    #[error("its subject alternative names cannot be read")]
    Unreadable,
    /// No `DNS:` or `IP:` name is the host.
    #[error("no DNS or IP subject alternative name is {host:?} (it has {found})")]
    Host {
        /// The claimed host.
        host: String,
        /// The names it has.
        found: String,
    },
    /// No URI name is `gen-leader://NAME@HOST`.
    #[error("no URI subject alternative name is {expected:?} (it has {found})")]
    Name {
        /// The URI expected.
        expected: String,
        /// The names it has.
        found: String,
    },
}

/// One subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum San<'a> {
    Dns(&'a str),
    Ip(&'a [u8]),
    Uri(&'a str),
}

/// One DER element: its tag, its value and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    let (value, rest) = rest.split_at_checked(len)?;
    Some((tag, value, rest))
}

/// The elements of a constructed value, in order.
fn elements(mut input: &[u8]) -> impl Iterator<Item = Option<(u8, &[u8])>> + '_ {
    std::iter::from_fn(move || {
        if input.is_empty() {
            return None;
        }
        match tlv(input) {
            Some((tag, value, rest)) => {
                input = rest;
                Some(Some((tag, value)))
            }
            None => {
                input = &[];
                Some(None)
            }
        }
    })
}

const SEQUENCE: u8 = 0x30;
const EXTENSIONS: u8 = 0xa3;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
/// 2.5.29.17, subjectAltName.
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

/// The subject alternative names of a DER certificate (`None` if it cannot be read).
fn sans(cert: &[u8]) -> Option<Vec<San<'_>>> {
    let (SEQUENCE, cert, _) = tlv(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut out = Vec::new();
    for el in elements(tbs) {
        let (tag, value) = el?;
        if tag != EXTENSIONS {
            continue;
        }
        let (SEQUENCE, exts, _) = tlv(value)? else {
            return None;
        };
        for ext in elements(exts) {
            let (SEQUENCE, ext) = ext? else {
                return None;
            };
            let mut parts = elements(ext);
            let Some(Some((OID, oid))) = parts.next() else {
                return None;
            };
            if oid != SAN_OID {
                continue;
            }
            // An optional `critical` BOOLEAN, then the value.
            let (_, names) = parts.flatten().find(|(t, _)| *t == OCTET_STRING)?;
            let (SEQUENCE, names, _) = tlv(names)? else {
                return None;
            };
            for name in elements(names) {
                let (tag, v) = name?;
                match tag {
                    0x82 => out.push(San::Dns(std::str::from_utf8(v).ok()?)),
                    0x86 => out.push(San::Uri(std::str::from_utf8(v).ok()?)),
                    0x87 => out.push(San::Ip(v)),
                    _ => {}
                }
            }
        }
    }
    Some(out)
}

fn describe(sans: &[San<'_>]) -> String {
    if sans.is_empty() {
        return "none".into();
    }
    let names: Vec<String> = sans
        .iter()
        .map(|s| match s {
            San::Dns(d) => format!("DNS:{d}"),
            San::Uri(u) => format!("URI:{u}"),
            San::Ip(b) => match <[u8; 4]>::try_from(*b) {
                Ok(v4) => format!("IP:{}", IpAddr::from(v4)),
                Err(_) => match <[u8; 16]>::try_from(*b) {
                    Ok(v6) => format!("IP:{}", IpAddr::from(v6)),
                    Err(_) => "IP:?".into(),
                },
            },
        })
        .collect();
    names.join(", ")
}

fn same_host(a: &str, b: &str) -> bool {
    let trim = |h: &str| h.trim_start_matches('[').trim_end_matches(']').to_owned();
    let (a, b) = (trim(a), trim(b));
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a
            .trim_end_matches('.')
            .eq_ignore_ascii_case(b.trim_end_matches('.')),
    }
}

/// Whether the DER certificate `cert` covers the node `claimed` (`NAME@HOST:PORT`).
pub(crate) fn check(cert: &[u8], claimed: &str) -> Result<(), IdentityMismatch> {
    let node: crate::types::NodeName = claimed
        .parse()
        .map_err(|_| IdentityMismatch::BadName(claimed.to_owned()))?;
    let sans = sans(cert).ok_or(IdentityMismatch::Unreadable)?;
    let host = node.host();
    let host_ip = host.parse::<IpAddr>().ok();
    let host_ok = sans.iter().any(|s| match (s, host_ip) {
        (San::Ip(b), Some(IpAddr::V4(ip))) => *b == ip.octets(),
        (San::Ip(b), Some(IpAddr::V6(ip))) => *b == ip.octets(),
        (San::Dns(d), None) => same_host(d, host),
        _ => false,
    });
    if !host_ok {
        return Err(IdentityMismatch::Host {
            host: host.to_owned(),
            found: describe(&sans),
        });
    }
    let name_ok = sans.iter().any(|s| {
        let San::Uri(u) = s else { return false };
        let Some(rest) = u.strip_prefix(URI_SCHEME) else {
            return false;
        };
        let rest = rest.trim_end_matches('/');
        rest.split_once('@')
            .is_some_and(|(n, h)| n == node.name() && same_host(h, host))
    });
    if !name_ok {
        let h = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        return Err(IdentityMismatch::Name {
            expected: format!("{URI_SCHEME}{}@{h}", node.name()),
            found: describe(&sans),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(sans: &[&str]) -> Vec<u8> {
        let mut p = testkit::rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for s in sans {
            let san = if let Some(u) = s.strip_prefix("URI:") {
                testkit::rcgen::SanType::URI(u.try_into().unwrap())
            } else if let Some(ip) = s.strip_prefix("IP:") {
                testkit::rcgen::SanType::IpAddress(ip.parse().unwrap())
            } else {
                testkit::rcgen::SanType::DnsName(
                    s.strip_prefix("DNS:").unwrap().try_into().unwrap(),
                )
            };
            p.subject_alt_names.push(san);
        }
        let key = testkit::rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn host_and_name_both_needed() {
        let c = cert(&["IP:127.0.0.1", "URI:gen-leader://n1@127.0.0.1"]);
        assert_eq!(check(&c, "n1@127.0.0.1:4001"), Ok(()));
        assert!(matches!(
            check(&c, "n2@127.0.0.1:4001"),
            Err(IdentityMismatch::Name { .. })
        ));
        assert!(matches!(
            check(&c, "n1@127.0.0.2:4001"),
            Err(IdentityMismatch::Host { .. })
        ));
        let host_only = cert(&["IP:127.0.0.1"]);
        let e = check(&host_only, "n1@127.0.0.1:1").unwrap_err();
        assert!(e.to_string().contains("gen-leader://n1@127.0.0.1"), "{e}");
        assert!(e.to_string().contains("IP:127.0.0.1"), "{e}");
    }

    #[test]
    fn dns_hosts_and_ipv6() {
        let c = cert(&["DNS:Node1.example", "URI:gen-leader://a@node1.example"]);
        assert_eq!(check(&c, "a@node1.example:9"), Ok(()));
        let v6 = cert(&["IP:::1", "URI:gen-leader://a@[::1]"]);
        assert_eq!(check(&v6, "a@[::1]:9"), Ok(()));
    }

    #[test]
    fn garbage_never_panics() {
        let c = cert(&["IP:127.0.0.1", "URI:gen-leader://n1@127.0.0.1"]);
        for cut in 0..c.len() {
            let _ = check(&c[..cut], "n1@127.0.0.1:1");
        }
        let mut flipped = c.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = check(&flipped, "n1@127.0.0.1:1");
            flipped[i] ^= 0xff;
        }
        assert_eq!(
            check(&[], "n1@127.0.0.1:1"),
            Err(IdentityMismatch::Unreadable)
        );
        assert!(matches!(
            check(&c, "nope"),
            Err(IdentityMismatch::BadName(_))
        ));
    }
}
