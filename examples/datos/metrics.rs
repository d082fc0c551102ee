//! `--metrics-addr`: the Prometheus recorder and a small, bounded HTTP endpoint serving it.

use super::*;

/// Installs the Prometheus recorder and serves it on `addr` (on the current runtime).
/// `gen_leader_leader_call_seconds` becomes a histogram with latency buckets (the exporter's
/// default is a summary). The HTTP side is a few lines of tokio rather than the exporter's
/// hyper listener: hyper would double the example's first build.
pub(crate) fn install_metrics(addr: std::net::SocketAddr) -> Result<(), String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const BUCKETS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0,
    ];
    let listener = std::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("gen_leader_leader_call_seconds".into()),
            BUCKETS,
        )
        .and_then(|b| b.install_recorder())
        .map_err(|e| e.to_string())?;
    // At most METRICS_CONNECTIONS connections are read at once (each for at most 2 s); more
    // wait in the listen backlog. An accept error (out of file descriptors) is retried after a
    // pause: retrying at once would spin a core until a descriptor frees up.
    const METRICS_CONNECTIONS: usize = 64;
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(METRICS_CONNECTIONS));
    tokio::spawn(async move {
        let mut warned: Option<std::time::Instant> = None;
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let mut sock = match listener.accept().await {
                Ok((sock, _)) => sock,
                Err(e) => {
                    // Once, then at most every 30 s while it lasts.
                    if warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                        warned = Some(std::time::Instant::now());
                        tracing::warn!(error = %e, "metrics endpoint: accept failed; retrying every 100 ms");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let _slot = slot;
                // Any request gets the metrics: read the client's request head (up to its blank
                // line, bounded in size and time), answer, close. Answering after a partial read
                // would close the socket with request bytes unread, and the kernel then resets
                // the connection under the client's feet (it loses the answer).
                let mut buf = [0u8; 8192];
                let mut got = 0;
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    while got < buf.len() && !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf[got..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n,
                        }
                    }
                })
                .await;
                handle.run_upkeep();
                let body = handle.render();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(())
}
