//! The fault proxy: one TCP forwarder per ordered pair of nodes, with a policy per link
//! (cut, one-way blackhole, delay) that the scenarios change while the nodes run.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What a link {lo, hi} (lo < hi) does to its traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub cut: bool,
    /// Discard the bytes flowing lo → hi.
    pub drop_up: bool,
    /// Discard the bytes flowing hi → lo.
    pub drop_down: bool,
    pub delay: Duration,
}

impl Policy {
    /// Whether bytes flowing `from` → `to` are discarded.
    pub fn drops(&self, from: usize, to: usize) -> bool {
        if from < to {
            self.drop_up
        } else {
            self.drop_down
        }
    }
}

/// Counters over every proxy, for the report.
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub closed_by_cut: AtomicU64,
    pub bytes_forwarded: AtomicU64,
    pub bytes_dropped: AtomicU64,
}

impl Stats {
    pub fn summary(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "proxied connections {} (closed by a cut {}), refused {}, bytes forwarded {}, \
             discarded {}",
            g(&self.accepted),
            g(&self.closed_by_cut),
            g(&self.refused),
            g(&self.bytes_forwarded),
            g(&self.bytes_dropped)
        )
    }
}

/// Every directed proxy P(a→b), on its own tokio runtime; dropping it stops them all.
pub struct Net {
    rt: Option<tokio::runtime::Runtime>,
    links: BTreeMap<(usize, usize), watch::Sender<Policy>>,
    /// `addrs[a][b]`: where node a dials to reach node b.
    addrs: Vec<Vec<Option<SocketAddr>>>,
    pub stats: Arc<Stats>,
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Net {
    /// One proxy per ordered pair of `targets` (the nodes' real listen addresses).
    pub fn new(targets: &[SocketAddr]) -> Net {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("faultproxy")
            .enable_all()
            .build()
            .expect("build the proxy runtime");
        let n = targets.len();
        let stats = Arc::new(Stats::default());
        let mut links = BTreeMap::new();
        for a in 0..n {
            for b in a + 1..n {
                links.insert((a, b), watch::channel(Policy::default()).0);
            }
        }
        let mut addrs = vec![vec![None; n]; n];
        for a in 0..n {
            for b in 0..n {
                if a == b {
                    continue;
                }
                let listener = rt
                    .block_on(TcpListener::bind("127.0.0.1:0"))
                    .expect("bind a proxy on 127.0.0.1:0");
                addrs[a][b] = Some(listener.local_addr().expect("proxy address"));
                let policy = links[&(a.min(b), a.max(b))].subscribe();
                rt.spawn(accept_loop(
                    listener,
                    a,
                    b,
                    targets[b],
                    policy,
                    stats.clone(),
                ));
            }
        }
        Net {
            rt: Some(rt),
            links,
            addrs,
            stats,
        }
    }

    /// Where node `a` dials to reach node `b`: P(a→b).
    pub fn proxy_addr(&self, a: usize, b: usize) -> SocketAddr {
        self.addrs[a][b].expect("no proxy from a node to itself")
    }

    /// Changes the policy of link {a, b} (both directed proxies of the pair).
    pub fn update(&self, a: usize, b: usize, f: impl FnOnce(&mut Policy)) {
        self.links[&(a.min(b), a.max(b))].send_modify(f);
    }

    /// Every link back to normal.
    pub fn heal_all(&self) {
        for tx in self.links.values() {
            tx.send_replace(Policy::default());
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    client: usize,
    server: usize,
    target: SocketAddr,
    policy: watch::Receiver<Policy>,
    stats: Arc<Stats>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(
                    stream,
                    client,
                    server,
                    target,
                    policy.clone(),
                    stats.clone(),
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// One proxied connection: `client` dialed `server` through P(client→server).
async fn connection(
    inbound: TcpStream,
    client: usize,
    server: usize,
    target: SocketAddr,
    mut policy: watch::Receiver<Policy>,
    stats: Arc<Stats>,
) {
    if policy.borrow().cut {
        // Dropping the accepted stream closes it: the dialer sees the connection die.
        stats.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let outbound =
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await {
            Ok(Ok(s)) => s,
            _ => return,
        };
    if policy.borrow().cut {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    stats.accepted.fetch_add(1, Ordering::Relaxed);
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (client_rd, client_wr) = inbound.into_split();
    let (server_rd, server_wr) = outbound.into_split();
    let (done_tx, mut done_rx) = mpsc::channel::<()>(2);
    let pumps = [
        tokio::spawn(pump(
            client_rd,
            server_wr,
            client,
            server,
            policy.clone(),
            done_tx.clone(),
            stats.clone(),
        )),
        tokio::spawn(pump(
            server_rd,
            client_wr,
            server,
            client,
            policy.clone(),
            done_tx,
            stats.clone(),
        )),
    ];
    tokio::select! {
        r = policy.wait_for(|p| p.cut) => {
            if r.is_ok() {
                stats.closed_by_cut.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ = done_rx.recv() => {}
    }
    // Aborting the pumps drops every half of both sockets: both are closed.
    for p in pumps {
        p.abort();
    }
}

enum Item {
    Data(Instant, Vec<u8>),
    Eof(Instant),
}

/// Copies `from`'s bytes to `to` under the link's policy; signals `done` when the whole
/// connection must close (an end `from` or `to` caused that the other side may see).
async fn pump(
    mut rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    from: usize,
    to: usize,
    policy: watch::Receiver<Policy>,
    done: mpsc::Sender<()>,
    stats: Arc<Stats>,
) {
    let (q_tx, mut q_rx) = mpsc::unbounded_channel::<Item>();
    let reader = {
        let policy = policy.clone();
        let stats = stats.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let p = *policy.borrow();
                let at = Instant::now() + p.delay;
                if n == 0 {
                    let _ = q_tx.send(Item::Eof(at));
                    return;
                }
                if p.drops(from, to) {
                    stats.bytes_dropped.fetch_add(n as u64, Ordering::Relaxed);
                    continue;
                }
                if q_tx.send(Item::Data(at, buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    };
    let writer = async move {
        // Which way the news of a closed socket would travel: `from`'s end reaches `to`
        // unless from→to is blackholed, and `to`'s end reaches `from` unless to→from is.
        let (src, dst) = loop {
            match q_rx.recv().await {
                Some(Item::Data(at, bytes)) => {
                    tokio::time::sleep_until(at).await;
                    if wr.write_all(&bytes).await.is_err() {
                        break (to, from);
                    }
                    stats
                        .bytes_forwarded
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                Some(Item::Eof(at)) => {
                    tokio::time::sleep_until(at).await;
                    break (from, to);
                }
                None => break (from, to),
            }
        };
        let mut policy = policy;
        // While blackholed, the close stays hidden: the other side times out on its own.
        let _ = policy.wait_for(|p| !p.drops(src, dst)).await;
        let _ = done.send(()).await;
    };
    tokio::join!(reader, writer);
}
