//! From the command line to a `gen_leader::Config`: names, candidates, mode, backend, TLS,
//! with one clear line for each mistake.

use super::*;

pub(crate) fn build_config(cli: &Cli) -> Result<Config, String> {
    // First: without the feature, `--backend etcd` is this one line whatever else is wrong.
    check_backend_args(cli)?;
    let name = cli
        .name
        .as_deref()
        .ok_or("--name NAME@HOST:PORT is required")?;
    let me: NodeName = name.parse().map_err(|e| format!("--name: {e}"))?;
    let cookie = match cli.cookie.as_deref() {
        Some(c) if !c.is_empty() => c,
        _ => {
            return Err(
                "no cookie: pass --cookie SECRET or set GEN_LEADER_COOKIE (the same secret on \
                 every node)"
                    .into(),
            )
        }
    };
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(|| Path::new("gen_leader-data").join(me.name()));
    let mut b = Config::builder(name)
        .candidates(cli.candidates.iter().map(|s| s.trim()))
        .workers(
            cli.workers
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty()),
        )
        .cookie(cookie)
        .data_dir(data_dir);
    if let Some(ms) = cli.heartbeat_ms {
        b = b.heartbeat(Duration::from_millis(ms));
    }
    if let Some(ms) = cli.failure_ms {
        b = b.failure_timeout(Duration::from_millis(ms));
    }
    match (cli.mode, cli.lease_ms) {
        (ModeArg::Bully, Some(_)) => {
            return Err("--lease-ms applies to --mode quorum only".into());
        }
        (ModeArg::Bully, None) => {}
        (ModeArg::Quorum, lease) => {
            let mut q = QuorumConfig::default();
            if let Some(ms) = lease {
                q = q.lease(Duration::from_millis(ms));
            }
            b = b.mode(Mode::Quorum(q));
        }
    }
    b = apply_backend(&cli.backend, b)?;
    if let Some(addr) = cli.listen.as_deref() {
        b = b.listen(parse_host_port(addr).map_err(|e| format!("--listen {addr:?}: {e}"))?);
    }
    let members: Vec<&str> = cli
        .candidates
        .iter()
        .chain(&cli.workers)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    let mut dialed: Vec<String> = Vec::new();
    for entry in cli.dial.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (peer, addr) =
            parse_dial(entry, &members).map_err(|e| format!("--dial {entry:?}: {e}"))?;
        if dialed.contains(&peer) {
            return Err(format!("--dial: {peer} is given more than once"));
        }
        b = b.dial_addr(&peer, addr);
        dialed.push(peer);
    }
    #[cfg(feature = "tls")]
    if let (Some(cert), Some(key), Some(ca)) = (&cli.tls_cert, &cli.tls_key, &cli.tls_ca) {
        let tls = gen_leader::config::TlsConfig::from_pem_files(cert, key, ca)
            .map_err(|e| format!("TLS: {e}"))?;
        b = b.tls(tls);
    }
    #[cfg(not(feature = "tls"))]
    if cli.tls_cert.is_some() {
        return Err(
            "--tls-cert: this datos was built without the `tls` feature: \
             cargo run --features tls --example datos -- ..."
                .into(),
        );
    }
    b.build().map_err(|e| format!("invalid configuration: {e}"))
}

/// The default etcd election of a cluster: `gen-leader/<cluster name>` (datos keeps the
/// library's default cluster name).
#[cfg(feature = "etcd")]
pub(crate) const DEFAULT_CLUSTER: &str = "gen_leader";

/// Refuses `--backend`/`--etcd-*` combinations that cannot work, each with one clear line.
pub(crate) fn check_backend_args(cli: &Cli) -> Result<(), String> {
    let a = &cli.backend;
    match a.backend {
        BackendArg::Mesh => {
            let stray = [
                (!a.etcd_endpoints.is_empty(), "--etcd-endpoints"),
                (a.etcd_election.is_some(), "--etcd-election"),
                (a.etcd_ttl_s.is_some(), "--etcd-ttl-s"),
            ];
            if let Some((_, flag)) = stray.iter().find(|(set, _)| *set) {
                return Err(format!("{flag} applies to --backend etcd only"));
            }
            Ok(())
        }
        BackendArg::Etcd if !cfg!(feature = "etcd") => Err(
            "--backend etcd: this datos was built without the `etcd` feature: cargo run \
             --features etcd --example datos -- ..."
                .into(),
        ),
        BackendArg::Etcd => {
            if cli.mode == ModeArg::Quorum {
                return Err(
                    "--mode quorum does not combine with --backend etcd: etcd decides \
                            (its lease gives the guarantees of quorum mode); drop --mode"
                        .into(),
                );
            }
            if a.etcd_endpoints.iter().all(|e| e.trim().is_empty()) {
                return Err(
                    "--backend etcd needs --etcd-endpoints http://HOST:PORT[,...] \
                            (e.g. http://127.0.0.1:2379)"
                        .into(),
                );
            }
            Ok(())
        }
    }
}

/// Sets the backend on `b` (checked by `check_backend_args`).
#[cfg(feature = "etcd")]
pub(crate) fn apply_backend(
    a: &BackendArgs,
    b: gen_leader::ConfigBuilder,
) -> Result<gen_leader::ConfigBuilder, String> {
    use gen_leader::config::Backend;
    use gen_leader::etcd::EtcdConfig;
    if a.backend != BackendArg::Etcd {
        return Ok(b);
    }
    let election = a
        .etcd_election
        .clone()
        .unwrap_or_else(|| format!("gen-leader/{DEFAULT_CLUSTER}"));
    let endpoints = a
        .etcd_endpoints
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty());
    let mut e = EtcdConfig::new(endpoints, election);
    if let Some(s) = a.etcd_ttl_s {
        e = e.with_ttl(Duration::from_secs(s));
    }
    Ok(b.backend(Backend::Etcd(e)))
}

#[cfg(not(feature = "etcd"))]
pub(crate) fn apply_backend(
    _a: &BackendArgs,
    b: gen_leader::ConfigBuilder,
) -> Result<gen_leader::ConfigBuilder, String> {
    Ok(b)
}

/// Checks a `HOST:PORT` address (an IPv6 host in brackets: `[::1]:4001`) and returns it
/// trimmed.
pub(crate) fn parse_host_port(s: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected HOST:PORT, e.g. 127.0.0.1:4001 or [::1]:4001";
    let s = s.trim();
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("no ':' before the port: {EXPECTED}"))?;
    if host.is_empty() || host == "[]" {
        return Err(format!("the host is empty: {EXPECTED}"));
    }
    if host.chars().any(char::is_whitespace) {
        return Err(format!("the host contains whitespace: {EXPECTED}"));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.contains(':') && !bracketed {
        return Err(format!("an IPv6 host must be in brackets: {EXPECTED}"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(s.to_string()),
        _ => Err(format!("the port {port:?} is not a number from 1 to 65535")),
    }
}

/// Parses one `--dial` entry, `NAME=HOST:PORT`, into the member's full name and the address.
/// `NAME` is a full member name or the part of one before '@'.
pub(crate) fn parse_dial(entry: &str, members: &[&str]) -> Result<(String, String), String> {
    let (name, addr) = entry
        .split_once('=')
        .ok_or("expected NAME=HOST:PORT, e.g. lider2=127.0.0.1:9002")?;
    let (name, addr) = (name.trim(), addr.trim());
    if name.is_empty() {
        return Err("the member name before '=' is empty".into());
    }
    let addr = parse_host_port(addr)?;
    let peer = if name.contains('@') {
        let wanted: NodeName = name.parse().map_err(|e| format!("{e}"))?;
        members
            .iter()
            .find(|m| m.parse::<NodeName>().is_ok_and(|n| n == wanted))
            .map(|m| m.to_string())
    } else {
        members
            .iter()
            .find(|m| m.split_once('@').is_some_and(|(short, _)| short == name))
            .map(|m| m.to_string())
    };
    let peer = peer.ok_or_else(|| {
        format!(
            "{name} is not a member (members: {})",
            if members.is_empty() {
                "none".to_string()
            } else {
                members.join(", ")
            }
        )
    })?;
    Ok((peer, addr))
}
