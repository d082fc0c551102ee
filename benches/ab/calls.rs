//! Paired A/B helper: `leader_call`s in a 3-node cluster in one process, counting heap
//! allocations per call. `ab_calls N C`: N calls from C concurrent callers on a follower's handle;
//! with `ZZ_ONLEADER=1`, on the leader's. Built against two commits (see README.md) and run
//! under `valgrind --tool=callgrind` with two values of N, the difference of the instruction
//! totals divided by the difference of N is the cost of one call, free of timing noise.
use std::time::{Duration, Instant};
use std::sync::atomic::{AtomicU64, Ordering};
use std::alloc::{GlobalAlloc, Layout, System};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 { ALLOCS.fetch_add(1, Ordering::Relaxed); BYTES.fetch_add(l.size() as u64, Ordering::Relaxed); unsafe { System.alloc(l) } }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) { unsafe { System.dealloc(p, l) } }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 { ALLOCS.fetch_add(1, Ordering::Relaxed); BYTES.fetch_add(n as u64, Ordering::Relaxed); unsafe { System.realloc(p, l, n) } }
}
#[global_allocator]
static GA: Counting = Counting;
use gen_leader::{Behaviour, Config, Election, LeaderReply, Node, NodeName, ReplyTo};

struct B;
impl Behaviour for B {
    type Call = u64; type Reply = u64; type Cast = u64; type Broadcast = u64; type Synch = u64; type Info = ();
    async fn elected(&mut self, _e: &Election<'_>, _j: Option<&NodeName>) -> u64 { 0 }
    async fn surrendered(&mut self, _s: u64, _e: &Election<'_>) {}
    async fn handle_leader_call(&mut self, r: u64, _f: ReplyTo<u64>, _e: &Election<'_>) -> LeaderReply<u64, u64> { LeaderReply::Reply(r) }
    async fn handle_call(&mut self, r: u64, _e: &Election<'_>) -> u64 { r }
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(20000);
    let conc: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(1);
    let n = 3;
    let mut ls = Vec::new(); let mut names = Vec::new();
    for i in 0..n {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        names.push(format!("e{i}@127.0.0.1:{}", l.local_addr().unwrap().port()));
        ls.push(l);
    }
    let mut hs = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let cfg = Config::builder(&names[i]).candidates(&names).cookie("c").build().unwrap();
        hs.push(Node::start_with_listener(cfg, B, l).await.unwrap());
    }
    loop {
        let v0 = hs[0].view();
        if v0.leader.is_some() && hs.iter().all(|h| { let v = h.view(); v.leader == v0.leader && v.term == v0.term }) { break; }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let f = if std::env::var("ZZ_ONLEADER").is_ok() { hs.iter().find(|h| h.is_leader()).unwrap().clone() } else { hs[2].clone() };
    for i in 0..1000u64 { f.leader_call(i).await.unwrap(); }
    let a0 = ALLOCS.load(Ordering::Relaxed); let b0 = BYTES.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conc {
        let f = f.clone();
        let per = calls / conc;
        tasks.push(tokio::spawn(async move { for i in 0..per as u64 { f.leader_call(i + c as u64).await.unwrap(); } }));
    }
    for t in tasks { t.await.unwrap(); }
    let el = t0.elapsed();
    let da = ALLOCS.load(Ordering::Relaxed) - a0; let db = BYTES.load(Ordering::Relaxed) - b0;
    println!("conc {conc}: {:.1} k/s, {:.1} us/call, {:.2} allocs/call, {:.0} bytes/call", calls as f64 / el.as_secs_f64() / 1e3, el.as_secs_f64() * 1e6 / calls as f64, da as f64 / calls as f64, db as f64 / calls as f64);
    for h in hs { h.shutdown().await; }
}
