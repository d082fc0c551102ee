//! Paired A/B helper (see README.md). `ab_start N R`: R bring-ups of N nodes, first start ->
//! all agree. `ab_start N R join`: the last node starts after the others have settled
//! (50 ms), its start -> all agree. `ab_start N R rejoin`: in one cluster, the last node
//! restarts R times, each start -> all agree. `ab_start N R last`: as the bench's election
//! figure, the nodes start back to back, from the last one's start -> all agree. All agree
//! means one leader and term in every view and every node connected to every other.
//! Milliseconds on stdout; waits on `changes()`.
use std::time::{Duration, Instant};
use gen_leader::{Behaviour, Config, Election, LeaderHandle, LeaderReply, Node, NodeName, ReplyTo};

struct B;
impl Behaviour for B {
    type Call = u64; type Reply = u64; type Cast = u64; type Broadcast = u64; type Synch = u64; type Info = ();
    async fn elected(&mut self, _e: &Election<'_>, _j: Option<&NodeName>) -> u64 { 0 }
    async fn surrendered(&mut self, _s: u64, _e: &Election<'_>) {}
    async fn handle_leader_call(&mut self, r: u64, _f: ReplyTo<u64>, _e: &Election<'_>) -> LeaderReply<u64, u64> { LeaderReply::Reply(r) }
    async fn handle_call(&mut self, r: u64, _e: &Election<'_>) -> u64 { r }
}

async fn agree(hs: &[LeaderHandle<B>]) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let ws: Vec<_> = hs.iter().map(|h| { let mut c = h.changes(); let tx = tx.clone(); tokio::spawn(async move { while c.changed().await.is_ok() { if tx.send(()).is_err() { return; } } }) }).collect();
    loop {
        let v0 = hs[0].view();
        if v0.leader.is_some() && hs.iter().all(|h| { let v = h.view(); v.leader == v0.leader && v.term == v0.term && v.alive.len() == hs.len() }) { break; }
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    }
    for w in ws { w.abort(); }
}

/// `n` listeners on free ports of 127.0.0.1, and the node names that go with them.
async fn listeners(n: usize) -> (Vec<tokio::net::TcpListener>, Vec<String>) {
    let mut ls = Vec::new();
    let mut names = Vec::new();
    for i in 0..n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        names.push(format!("e{i}@127.0.0.1:{}", l.local_addr().unwrap().port()));
        ls.push(l);
    }
    (ls, names)
}

static STARTS: std::sync::Mutex<Vec<f64>> = std::sync::Mutex::new(Vec::new());
fn record_start(x: f64) { STARTS.lock().unwrap().push(x); }
async fn rep(n: usize, settle: bool, last: bool) -> f64 {
    let (ls, names) = listeners(n).await;
    let mut hs = Vec::new();
    let mut t0 = Instant::now();
    static REP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let rep = REP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for (i, l) in ls.into_iter().enumerate() {
        let mut b = Config::builder(&names[i]).candidates(&names).cookie("c");
        if let Ok(d) = std::env::var("ZZ_DATA") { b = b.data_dir(format!("{d}/{rep}/{i}")); }
        let cfg = b.build().unwrap();
        if settle && i == n - 1 {
            agree(&hs).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            t0 = Instant::now();
        }
        if last && i == n - 1 {
            t0 = Instant::now();
        }
        let ts = Instant::now();
        hs.push(Node::start_with_listener(cfg, B, l).await.unwrap());
        record_start(ts.elapsed().as_secs_f64() * 1e6);
    }
    agree(&hs).await;
    let d = t0.elapsed().as_secs_f64() * 1e3;
    for h in hs { h.shutdown().await; }
    d
}

async fn rejoin(n: usize, reps: usize) -> Vec<f64> {
    let (mut ls, names) = listeners(n).await;
    let mut hs = Vec::new();
    let last = ls.pop().unwrap();
    let addr = last.local_addr().unwrap();
    drop(last);
    for (i, l) in ls.into_iter().enumerate() {
        let cfg = Config::builder(&names[i]).candidates(&names).cookie("c").build().unwrap();
        hs.push(Node::start_with_listener(cfg, B, l).await.unwrap());
    }
    let mut v = Vec::new();
    for _ in 0..reps {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let cfg = Config::builder(&names[n - 1]).candidates(&names).cookie("c").build().unwrap();
        let t0 = Instant::now();
        hs.push(Node::start_with_listener(cfg, B, l).await.unwrap());
        agree(&hs).await;
        v.push(t0.elapsed().as_secs_f64() * 1e3);
        let h = hs.pop().unwrap();
        h.shutdown().await;
        // wait until the others see it down
        loop { if hs.iter().all(|h| h.view().alive.len() == n - 1) { break; } tokio::time::sleep(Duration::from_millis(2)).await; }
    }
    for h in hs { h.shutdown().await; }
    v
}

fn main() {
    if std::env::args().nth(3).as_deref() == Some("rejoin") {
        let n: usize = std::env::args().nth(1).unwrap().parse().unwrap();
        let reps: usize = std::env::args().nth(2).unwrap().parse().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let v = rt.block_on(rejoin(n, reps));
        let s: Vec<String> = v.iter().map(|x| format!("{x:.4}")).collect();
        println!("{}", s.join(" "));
        return;
    }
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(3);
    let reps: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(50);
    let settle = std::env::args().nth(3).as_deref() == Some("join");
    let last = std::env::args().nth(3).as_deref() == Some("last");
    let mut v = Vec::new();
    for _ in 0..reps {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        v.push(rt.block_on(rep(n, settle, last)));
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    let s: Vec<String> = v.iter().map(|x| format!("{x:.4}")).collect();
    println!("{}", s.join(" "));
    let mut st = STARTS.lock().unwrap().clone(); st.sort_by(|a,b| a.partial_cmp(b).unwrap());
    eprintln!("start_us p25 {:.1} p50 {:.1} p75 {:.1}", st[st.len()/4], st[st.len()/2], st[st.len()*3/4]);
}
