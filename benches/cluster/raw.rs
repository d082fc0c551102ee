//! The raw-TCP baseline (`__raw` role): a tokio echo server and a client measuring
//! ping-pong latency and pipelined throughput between two OS processes.
//!
//! Why: every call figure is printed beside this baseline from the same run, so the cost of
//! the library is read against what plain TCP does on the same machine at the same moment.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::child::{
    arg_secs, arg_u64, child_runtime, error_to, init_logs, reply_to, stdin_commands,
};
use crate::util::{emit, nanos};
use crate::{CHILD_LOG_FILTER, PAYLOAD};

// ----- the raw role: echo server and raw client --------------------------------------------

pub(crate) fn child_raw() {
    init_logs(CHILD_LOG_FILTER);
    child_runtime().block_on(raw_main());
}

async fn raw_main() {
    let mut cmds = stdin_commands();
    let l = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            emit(&json!({"ev": "error", "error": format!("bind: {e}")}));
            std::process::exit(2);
        }
    };
    let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
    emit(&json!({"ev": "bound", "port": port}));
    tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = l.accept().await {
                let _ = s.set_nodelay(true);
                tokio::spawn(echo(s));
            }
        }
    });
    while let Some(cmd) = cmds.recv().await {
        let port = arg_u64(&cmd, "port", 0) as u16;
        let size = arg_u64(&cmd, "size", PAYLOAD as u64) as usize;
        let limit = Duration::from_secs(300);
        let r = match cmd["cmd"].as_str().unwrap_or("") {
            "pingpong" => {
                let n = arg_u64(&cmd, "n", 1000) as usize;
                let warm = arg_u64(&cmd, "warm", 100) as usize;
                match tokio::time::timeout(limit, pingpong(port, n, warm, size)).await {
                    Ok(Ok(s)) => reply_to(&cmd, json!({"samples_ns": s})),
                    Ok(Err(e)) => error_to(&cmd, format!("ping-pong: {e}")),
                    Err(_) => error_to(&cmd, "ping-pong timed out"),
                }
            }
            "pipelined" => {
                let inflight = arg_u64(&cmd, "inflight", 64).max(1) as usize;
                let secs = arg_secs(&cmd, "secs", 1.0);
                match tokio::time::timeout(limit, pipelined(port, inflight, secs, size)).await {
                    Ok(Ok(v)) => reply_to(&cmd, v),
                    Ok(Err(e)) => error_to(&cmd, format!("pipelined: {e}")),
                    Err(_) => error_to(&cmd, "pipelined echo timed out"),
                }
            }
            "quit" => std::process::exit(0),
            other => error_to(&cmd, format!("unknown command {other:?}")),
        };
        emit(&r);
    }
}

pub(crate) async fn echo(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn connect(port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sequential round trips of one `size`-byte message.
pub(crate) async fn pingpong(
    port: u16,
    n: usize,
    warm: usize,
    size: usize,
) -> std::io::Result<Vec<u64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect(port).await?;
    let msg = vec![0xA5u8; size];
    let mut buf = vec![0u8; size];
    let mut samples = Vec::with_capacity(n);
    for i in 0..warm + n {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut buf).await?;
        if i >= warm {
            samples.push(nanos(t.elapsed()));
        }
    }
    Ok(samples)
}

/// Keeps `inflight` messages in flight for `dur`: every read is answered with as many new
/// messages as it completed, in one write.
pub(crate) async fn pipelined(
    port: u16,
    inflight: usize,
    dur: Duration,
    size: usize,
) -> std::io::Result<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect(port).await?;
    let batch = vec![0x5Au8; size * inflight];
    let mut buf = vec![0u8; 256 * 1024];
    s.write_all(&batch).await?;
    let start = Instant::now();
    let end = start + dur;
    let mut partial = 0usize;
    let mut received = 0u64;
    let mut in_flight = inflight;
    let mut measured: Option<(u64, Duration)> = None;
    while in_flight > 0 {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("echo server closed the connection"));
        }
        partial += n;
        let k = partial / size;
        partial %= size;
        received += k as u64;
        in_flight -= k;
        if measured.is_none() {
            if Instant::now() >= end {
                measured = Some((received, start.elapsed()));
            } else if k > 0 {
                s.write_all(&batch[..k * size]).await?;
                in_flight += k;
            }
        }
    }
    let (msgs, elapsed) = measured.unwrap_or((received, start.elapsed()));
    Ok(json!({
        "msgs": msgs,
        "secs": elapsed.as_secs_f64(),
        "per_sec": msgs as f64 / elapsed.as_secs_f64(),
    }))
}
