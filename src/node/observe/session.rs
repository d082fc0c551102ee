//! The node's side of one observer session, after the handshake: read a request, answer it,
//! until the observer goes away, idles, or the node stops.
//!
//! Why bounded everywhere: an observer proved the cookie, but it is still a client the node
//! does not control. A request is one small frame ([`MAX_REQUEST_LEN`]); an observer that
//! asks nothing for [`IDLE_TIMEOUT`] is closed (a watching one pings); every write has
//! [`WRITE_TIMEOUT`]; a status is one request to the node's actor, answered within
//! [`STATUS_TIMEOUT`], one at a time per session; and the sessions of a node are capped
//! ([`MAX_OBSERVERS`], in `accept`). Nothing here touches the election or the members.

use std::time::Duration;

use bytes::BytesMut;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, watch};
use tokio::time::{timeout, Instant};
use tokio_util::codec::{Framed, FramedParts};

use super::status::{NodeStatus, StateKind};
use crate::node::ClusterView;
use crate::wire::codec::{self, FrameCodec};
use crate::wire::handshake::{ObserverRequest, ObserverResponse};

/// Observer sessions a node serves at once; one more is refused
/// ([`Refusal::ObserverLimit`](crate::wire::handshake::Refusal::ObserverLimit)).
pub(crate) const MAX_OBSERVERS: usize = 16;
/// An observer that sends no request for this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a write to an observer may take before the session is closed.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the node's actor may take to produce a status.
pub(crate) const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// During a watch, the node sends a heartbeat when nothing changed for this long.
pub(crate) const WATCH_HEARTBEAT: Duration = Duration::from_secs(2);
/// The largest request frame an observer may send.
pub(crate) const MAX_REQUEST_LEN: usize = 256;

/// A status and, if asked for, a receiver of the node's view changes.
pub(crate) struct Snapshot {
    pub status: NodeStatus,
    pub changes: Option<watch::Receiver<ClusterView>>,
}

/// A session's request to the node's actor.
pub(crate) struct Ask {
    /// Also subscribe to the view's changes (for a watch).
    pub subscribe: bool,
    pub reply: oneshot::Sender<Snapshot>,
}

/// Where a session gets its statuses: the node's actor, or a test's stand-in.
pub(crate) trait Source: Send + Sync {
    /// Asks for a snapshot; a dropped reply means the node is stopping.
    fn ask(&self, ask: Ask);
}

/// Why a session ended (for the node's debug log).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The observer closed the connection.
    Closed,
    /// No request for [`IDLE_TIMEOUT`].
    Idle,
    /// The node is stopping, or did not answer in time.
    Node(&'static str),
    /// The observer sent something that is not a request, or the connection failed.
    Broken(String),
}

/// What identifies a leadership in a status (what a watch reports changes of).
fn key(s: &NodeStatus) -> (Option<String>, u64, StateKind) {
    (s.leader.clone(), s.term, s.state)
}

/// What identifies a leadership in a view (a change of it is worth a new status).
fn view_key(v: &ClusterView) -> (Option<String>, u64, bool) {
    (
        v.leader.as_ref().map(|l| l.to_string()),
        v.term.get(),
        v.no_quorum.is_some(),
    )
}

/// Serves one observer on `stream` (with `read_buf`, bytes already read past the handshake)
/// until the session ends; returns why.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    read_buf: BytesMut,
    source: &dyn Source,
) -> End {
    let mut parts = FramedParts::new::<bytes::Bytes>(stream, FrameCodec::new(MAX_REQUEST_LEN));
    parts.read_buf = read_buf;
    let mut io = Framed::from_parts(parts);
    loop {
        let req = match next_request(&mut io).await {
            Ok(r) => r,
            Err(end) => return end,
        };
        let end = match req {
            ObserverRequest::Status => match snapshot(source, false).await {
                Ok(s) => send_status(&mut io, &s.status).await.err(),
                Err(why) => Some(fail(&mut io, why).await),
            },
            ObserverRequest::Ping => send(&mut io, &ObserverResponse::Heartbeat).await.err(),
            ObserverRequest::Watch => Some(watch_loop(&mut io, source).await),
        };
        if let Some(end) = end {
            return end;
        }
    }
}

type Io<S> = Framed<S, FrameCodec>;

/// The next request, within [`IDLE_TIMEOUT`].
async fn next_request<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
) -> Result<ObserverRequest, End> {
    match timeout(IDLE_TIMEOUT, io.next()).await {
        Err(_) => Err(End::Idle),
        Ok(frame) => decode(frame),
    }
}

fn decode(frame: Option<Result<BytesMut, codec::CodecError>>) -> Result<ObserverRequest, End> {
    match frame {
        None => Err(End::Closed),
        Some(Err(e)) => Err(End::Broken(e.to_string())),
        Some(Ok(body)) => codec::decode_body(&body).map_err(|e| End::Broken(e.to_string())),
    }
}

async fn snapshot(source: &dyn Source, subscribe: bool) -> Result<Snapshot, &'static str> {
    let (reply, rx) = oneshot::channel();
    source.ask(Ask { subscribe, reply });
    match timeout(STATUS_TIMEOUT, rx).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(_)) => Err("the node is stopping"),
        Err(_) => Err("the node did not answer in time"),
    }
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    msg: &ObserverResponse,
) -> Result<(), End> {
    let frame = codec::encode_frame(msg).map_err(|e| End::Broken(e.to_string()))?;
    match timeout(WRITE_TIMEOUT, io.send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(End::Broken(e.to_string())),
        Err(_) => Err(End::Broken("write timed out".into())),
    }
}

async fn send_status<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    status: &NodeStatus,
) -> Result<(), End> {
    let json = serde_json::to_vec(status).map_err(|e| End::Broken(e.to_string()))?;
    send(io, &ObserverResponse::Status(json)).await
}

/// Tells the observer why the session ends (best effort).
async fn fail<S: AsyncRead + AsyncWrite + Unpin>(io: &mut Io<S>, why: &'static str) -> End {
    let _ = send(io, &ObserverResponse::Error(why.into())).await;
    End::Node(why)
}

/// A watch: the status now, then after each leadership change, heartbeats in between; the
/// observer's pings keep it from idling out. Ends the session.
async fn watch_loop<S: AsyncRead + AsyncWrite + Unpin>(io: &mut Io<S>, source: &dyn Source) -> End {
    let snap = match snapshot(source, true).await {
        Ok(s) => s,
        Err(why) => return fail(io, why).await,
    };
    let Some(mut changes) = snap.changes else {
        return fail(io, "the node is stopping").await;
    };
    if let Err(end) = send_status(io, &snap.status).await {
        return end;
    }
    let mut last = key(&snap.status);
    let mut last_view = view_key(&changes.borrow_and_update());
    let mut quiet_until = Instant::now() + WATCH_HEARTBEAT;
    let mut idle_until = Instant::now() + IDLE_TIMEOUT;
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return fail(io, "the node is stopping").await;
                }
                let k = view_key(&changes.borrow_and_update());
                if k == last_view {
                    continue;
                }
                last_view = k;
                let status = match snapshot(source, false).await {
                    Ok(s) => s.status,
                    Err(why) => return fail(io, why).await,
                };
                if key(&status) != last {
                    last = key(&status);
                    if let Err(end) = send_status(io, &status).await {
                        return end;
                    }
                    quiet_until = Instant::now() + WATCH_HEARTBEAT;
                }
            }
            () = tokio::time::sleep_until(quiet_until) => {
                if let Err(end) = send(io, &ObserverResponse::Heartbeat).await {
                    return end;
                }
                quiet_until = Instant::now() + WATCH_HEARTBEAT;
            }
            () = tokio::time::sleep_until(idle_until) => return End::Idle,
            frame = io.next() => match decode(frame) {
                Ok(ObserverRequest::Ping) => idle_until = Instant::now() + IDLE_TIMEOUT,
                Ok(_) => return End::Broken("a request during a watch".into()),
                Err(end) => return end,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::types::Term;
    use std::sync::Mutex;
    use tokio::io::{duplex, DuplexStream};

    /// A node stand-in: answers with a status built from the view it publishes.
    struct Fake {
        view: watch::Sender<ClusterView>,
        asked: Mutex<u32>,
        dead: bool,
    }

    impl Source for Fake {
        fn ask(&self, ask: Ask) {
            *self.asked.lock().unwrap() += 1;
            if self.dead {
                return;
            }
            let v = self.view.borrow().clone();
            let status = NodeStatus {
                node: v.me.to_string(),
                leader: v.leader.as_ref().map(|l| l.to_string()),
                term: v.term.get(),
                state: if v.leader.is_some() {
                    StateKind::Following
                } else {
                    StateKind::Electing
                },
                ..NodeStatus::default()
            };
            let changes = ask.subscribe.then(|| self.view.subscribe());
            let _ = ask.reply.send(Snapshot { status, changes });
        }
    }

    fn fake(dead: bool) -> Fake {
        let cfg = Config::builder("a@127.0.0.1:1")
            .candidates(["a@127.0.0.1:1", "b@127.0.0.1:2"])
            .cookie("c")
            .build()
            .unwrap();
        let (view, _) = watch::channel(ClusterView::starting(&cfg));
        Fake {
            view,
            asked: Mutex::new(0),
            dead,
        }
    }

    type Client = Framed<DuplexStream, FrameCodec>;

    fn client() -> (Client, DuplexStream) {
        let (c, n) = duplex(64 * 1024);
        (Framed::new(c, FrameCodec::default()), n)
    }

    async fn request(c: &mut Client, r: ObserverRequest) {
        c.send(codec::encode_frame(&r).unwrap()).await.unwrap();
    }

    async fn response(c: &mut Client) -> Option<ObserverResponse> {
        let body = c.next().await?.ok()?;
        codec::decode_body(&body).ok()
    }

    fn status_of(r: Option<ObserverResponse>) -> NodeStatus {
        match r {
            Some(ObserverResponse::Status(json)) => serde_json::from_slice(&json).unwrap(),
            other => panic!("expected a status, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn status_ping_and_idle() {
        let node = fake(false);
        let (mut c, n) = client();
        let server = serve(n, BytesMut::new(), &node);
        let talk = async {
            request(&mut c, ObserverRequest::Status).await;
            let s = status_of(response(&mut c).await);
            assert_eq!(s.node, "a@127.0.0.1:1");
            request(&mut c, ObserverRequest::Ping).await;
            assert_eq!(response(&mut c).await, Some(ObserverResponse::Heartbeat));
            // Then nothing: the node closes the session after the idle timeout.
            let t0 = Instant::now();
            assert_eq!(response(&mut c).await, None);
            assert!(t0.elapsed() >= IDLE_TIMEOUT);
        };
        let (end, ()) = tokio::join!(server, talk);
        assert_eq!(end, End::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_reports_leadership_changes_only() {
        let node = fake(false);
        let (mut c, n) = client();
        let server = serve(n, BytesMut::new(), &node);
        let leader = |name: &str, term: u64| {
            node.view.send_modify(|v| {
                v.leader = Some(name.parse().unwrap());
                v.term = Term(term);
            });
        };
        let talk = async {
            request(&mut c, ObserverRequest::Watch).await;
            let s = status_of(response(&mut c).await);
            assert_eq!((s.leader, s.term), (None, 0));
            leader("b@127.0.0.1:2", 3);
            let s = status_of(response(&mut c).await);
            assert_eq!((s.leader.as_deref(), s.term), (Some("b@127.0.0.1:2"), 3));
            // A view change that is no leadership change (the alive list) sends nothing but
            // the heartbeat, after WATCH_HEARTBEAT.
            node.view
                .send_modify(|v| v.alive.push("b@127.0.0.1:2".parse().unwrap()));
            let t0 = Instant::now();
            assert_eq!(response(&mut c).await, Some(ObserverResponse::Heartbeat));
            assert!(t0.elapsed() >= WATCH_HEARTBEAT);
            leader("a@127.0.0.1:1", 4);
            let s = status_of(response(&mut c).await);
            assert_eq!(s.term, 4);
            // Pings keep the watch past the idle timeout.
            for _ in 0..3 {
                tokio::time::sleep(IDLE_TIMEOUT / 2).await;
                request(&mut c, ObserverRequest::Ping).await;
            }
            while let Some(r) = response(&mut c).await {
                assert_eq!(r, ObserverResponse::Heartbeat);
                if Instant::now() - t0 > IDLE_TIMEOUT * 2 {
                    break;
                }
            }
            drop(c);
        };
        let (end, ()) = tokio::join!(server, talk);
        assert_eq!(end, End::Closed);
        // One status for the watch, one per leadership change (not for the alive change).
        assert_eq!(*node.asked.lock().unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_node_says_so() {
        let node = fake(true);
        let (mut c, n) = client();
        let server = serve(n, BytesMut::new(), &node);
        let talk = async {
            request(&mut c, ObserverRequest::Status).await;
            assert_eq!(
                response(&mut c).await,
                Some(ObserverResponse::Error("the node is stopping".into()))
            );
        };
        let (end, ()) = tokio::join!(server, talk);
        assert_eq!(end, End::Node("the node is stopping"));
    }

    #[tokio::test(start_paused = true)]
    async fn garbage_and_big_frames_end_the_session() {
        let node = fake(false);
        let (mut c, n) = client();
        let server = serve(n, BytesMut::new(), &node);
        let talk = async {
            c.send(codec::encode_frame(&"x".repeat(MAX_REQUEST_LEN)).unwrap())
                .await
                .unwrap();
        };
        let (end, ()) = tokio::join!(server, talk);
        assert!(matches!(end, End::Broken(_)), "{end:?}");
        let (mut c, n) = client();
        let server = serve(n, BytesMut::new(), &node);
        let talk = async {
            c.send(codec::encode_frame(&7u64).unwrap()).await.unwrap();
        };
        let (end, ()) = tokio::join!(server, talk);
        assert!(matches!(end, End::Broken(_)), "{end:?}");
    }
}
