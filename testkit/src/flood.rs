//! A flood of unauthenticated connections on nodes' cluster ports: idle connections held open
//! (reopened as soon as a node closes one) and connections that send bytes that are no
//! handshake.
//!
//! Why here: the `flood` integration test and the cluster benchmark's `flood` section attack
//! the nodes the same way, so that the test's bounds and the benchmark's figures are about the
//! same load; one flooder, so they cannot drift apart.
//!
//! The flooder runs on its own thread with its own tokio runtime, so that it competes with
//! the nodes for the CPU as another process would, not for their runtime's workers. Every
//! connection holds a descriptor: size the flood to [`open_files_limit`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running flooder; dropping it stops every connection and joins its thread.
pub struct Flood {
    stop: Arc<AtomicBool>,
    /// Connections opened to each node (idle ones and garbage ones).
    opened: Arc<Vec<AtomicU64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    /// Starts flooding every address in `addrs` (`host:port`) with `idle` idle connections
    /// and `garbage` connections that send garbage, close, and start again.
    ///
    /// Errors: the flooder's runtime could not be built.
    pub fn start(addrs: Vec<String>, idle: usize, garbage: usize) -> std::io::Result<Flood> {
        let stop = Arc::new(AtomicBool::new(false));
        let opened: Arc<Vec<AtomicU64>> =
            Arc::new(addrs.iter().map(|_| AtomicU64::new(0)).collect());
        let (s, o) = (stop.clone(), opened.clone());
        // The runtime is built (and dropped) on the flooder's thread: the caller may be in an
        // async context, where a runtime must not be dropped. Its outcome comes back here.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = tx.send(Ok(()));
                    rt
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let mut set = tokio::task::JoinSet::new();
                for (i, addr) in addrs.into_iter().enumerate() {
                    for _ in 0..idle {
                        set.spawn(idle_conn(addr.clone(), s.clone(), o.clone(), i));
                    }
                    for k in 0..garbage {
                        set.spawn(garbage_conn(addr.clone(), s.clone(), o.clone(), i, k));
                    }
                }
                while !s.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                set.abort_all();
            });
        });
        let started = rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the flooder thread exited")));
        let flood = Flood {
            stop,
            opened,
            thread: Some(thread),
        };
        started.map(|()| flood)
    }

    /// Connections opened so far to each node, in the order of the addresses.
    pub fn opened(&self) -> Vec<u64> {
        self.opened
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens a connection, says nothing, waits for the node to close it, and starts again.
async fn idle_conn(addr: String, stop: Arc<AtomicBool>, opened: Arc<Vec<AtomicU64>>, i: usize) {
    let mut buf = [0u8; 256];
    while !stop.load(Ordering::Relaxed) {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(mut s) => {
                opened[i].fetch_add(1, Ordering::Relaxed);
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }
            // The node is down (being restarted), or the machine is out of ports for a moment.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Opens a connection, sends bytes that are no handshake, and starts again.
async fn garbage_conn(
    addr: String,
    stop: Arc<AtomicBool>,
    opened: Arc<Vec<AtomicU64>>,
    i: usize,
    k: usize,
) {
    let junk: [Vec<u8>; 4] = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 300],
        (0..=255u8).collect(),
        vec![0, 0, 0, 9, 1, 2, 3],
    ];
    let mut buf = [0u8; 256];
    let mut n = k;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await {
            opened[i].fetch_add(1, Ordering::Relaxed);
            let _ = s.write_all(&junk[n % junk.len()]).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await;
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux), if it can be read
/// (`None` also when it is "unlimited").
pub fn open_files_limit() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
