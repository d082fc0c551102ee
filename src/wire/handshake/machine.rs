//! What the two handshake state machines share: [`Step`], bounded frame input and the
//! output queue.
//!
//! Why a file of its own: the dialer and the acceptor make different decisions, but they read
//! frames, refuse and finish in exactly the same way; keeping that here means both machines
//! cap frames identically (before any allocation), end identically on a foreign protocol
//! version or a truncated frame, and hand back leftover bytes identically.

use std::collections::VecDeque;
use std::io;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

use super::super::codec::{decode_body, CodecError, FrameCodec, PROTOCOL_VERSION};
use super::error::HandshakeError;
use super::messages::{HandshakeMsg, PeerHello, Refusal};
use super::HANDSHAKE_MAX_FRAME_LEN;

/// What a handshake state machine asks of its driver next (from `poll`).
///
/// A machine never does I/O: the driver writes what `Send`/`SendRefusal` carry, reads when
/// asked to with `Receive`, and stops at the first of `Done`, `Refused` or `Failed`. Public but
/// hidden: only the crate's driver, tests and fuzzers use it.
#[doc(hidden)]
#[derive(Debug)]
pub enum Step {
    /// Write this complete frame to the peer and flush; if that fails, the handshake fails.
    Send(Bytes),
    /// Write this `Refuse` frame to the peer and close the write side, both best effort; the
    /// next step is `Failed(HandshakeError::Rejected(..))`.
    SendRefusal(Bytes),
    /// Read from the peer: pass what arrives to `receive`, or call `receive_eof` at its end.
    Receive,
    /// Acceptor only: the dialer proved it knows the cookie; decide whether to admit it and
    /// resume the machine with `Acceptor::admit`.
    NeedsAdmission(PeerHello),
    /// The handshake succeeded: who the peer is, and the bytes received after the last
    /// handshake frame (the start of the peer's next frames).
    Done(PeerHello, BytesMut),
    /// The peer refused us (its `Refuse` frame said why).
    Refused(Refusal),
    /// The handshake failed. If we refused the peer this is
    /// `HandshakeError::Rejected(reason)`, after a `SendRefusal` step.
    Failed(HandshakeError),
}

/// A frame to write.
#[derive(Debug)]
enum Out {
    Frame(Bytes),
    Refusal(Bytes),
}

/// How a machine ended, once it has.
#[derive(Debug)]
enum End {
    Running,
    Done(PeerHello),
    Refused(Refusal),
    Failed(HandshakeError),
    /// The end was handed out by `poll`.
    Taken,
}

/// Frame input, output queue and end state of one machine.
///
/// Bounds: the input buffer holds at most one frame of at most [`HANDSHAKE_MAX_FRAME_LEN`]
/// bytes while the machine reads (bytes past the current frame are not copied in until it is
/// handled), plus, once the machine stops reading, the rest of the chunk it was given. The
/// output queue holds at most three frames (a machine sends at most three messages).
#[derive(Debug)]
pub(super) struct Core {
    codec: FrameCodec,
    buf: BytesMut,
    out: VecDeque<Out>,
    end: End,
}

impl Core {
    pub(super) fn new() -> Self {
        Self {
            codec: FrameCodec::new(HANDSHAKE_MAX_FRAME_LEN),
            buf: BytesMut::new(),
            out: VecDeque::with_capacity(3),
            end: End::Running,
        }
    }

    /// Whether the machine has not ended yet.
    pub(super) fn running(&self) -> bool {
        matches!(self.end, End::Running)
    }

    /// Takes bytes from `input` (no more than the current frame needs) until a frame is
    /// complete, and returns its message. `None` when `input` is used up, or when the frame is
    /// bad: the machine has then ended (a foreign version is refused, anything else fails).
    pub(super) fn next_msg(&mut self, input: &mut &[u8]) -> Option<HandshakeMsg> {
        let body = loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(body)) => break body,
                Ok(None) => {}
                Err(CodecError::Version { got, .. }) => {
                    self.reject(Refusal::Version {
                        ours: PROTOCOL_VERSION,
                        theirs: got,
                    });
                    return None;
                }
                Err(e) => {
                    self.fail(e.into());
                    return None;
                }
            }
            if input.is_empty() {
                return None;
            }
            let take = self.missing().min(input.len());
            let (now, later) = input.split_at(take);
            self.buf.extend_from_slice(now);
            *input = later;
        };
        match decode_body::<HandshakeMsg>(&body) {
            Ok(msg) => Some(msg),
            Err(e) => {
                self.fail(e.into());
                None
            }
        }
    }

    /// Bytes still missing from the frame being read. Only called after the codec accepted the
    /// announced length (so it is at most the cap) and found the frame incomplete.
    fn missing(&self) -> usize {
        match self.buf.get(..4) {
            Some(header) => {
                let mut n = [0u8; 4];
                n.copy_from_slice(header);
                let total = 4usize.saturating_add(u32::from_be_bytes(n) as usize);
                total.saturating_sub(self.buf.len()).max(1)
            }
            None => 4 - self.buf.len(),
        }
    }

    /// The peer closed its side while the machine was reading.
    pub(super) fn eof(&mut self) {
        if self.buf.is_empty() {
            self.fail(HandshakeError::Closed);
        } else {
            // What `Framed` reports for a frame cut short, kept for the same behaviour.
            self.fail(HandshakeError::Io(io::Error::other(
                "bytes remaining on stream",
            )));
        }
    }

    /// Keeps bytes received after the last handshake frame, to hand back with `Done`.
    pub(super) fn keep(&mut self, rest: &[u8]) {
        self.buf.extend_from_slice(rest);
    }

    /// Queues `msg` for sending; if it cannot be encoded, the handshake fails.
    pub(super) fn send(&mut self, msg: &HandshakeMsg) {
        self.send_frame(msg.to_frame());
    }

    /// Queues an encoded message for sending; if it could not be encoded, the handshake fails.
    pub(super) fn send_frame(&mut self, frame: Result<Bytes, CodecError>) {
        match frame {
            Ok(frame) => self.out.push_back(Out::Frame(frame)),
            Err(e) => self.fail(e.into()),
        }
    }

    /// Refuses the peer: queues the `Refuse` frame and ends with `Rejected`.
    pub(super) fn reject(&mut self, refusal: Refusal) {
        match HandshakeMsg::Refuse(refusal.clone()).to_frame() {
            Ok(frame) => self.out.push_back(Out::Refusal(frame)),
            // Best effort, as a failed write of the refusal would be.
            Err(e) => tracing::debug!(error = %e, "could not encode handshake refusal"),
        }
        self.end(End::Failed(HandshakeError::Rejected(refusal)));
    }

    pub(super) fn fail(&mut self, e: HandshakeError) {
        self.end(End::Failed(e));
    }

    pub(super) fn refused(&mut self, r: Refusal) {
        self.end(End::Refused(r));
    }

    pub(super) fn done(&mut self, peer: PeerHello) {
        self.end(End::Done(peer));
    }

    /// Ends the machine; the first end wins.
    fn end(&mut self, end: End) {
        if self.running() {
            self.end = end;
        }
    }

    /// The next queued frame, else the end once the machine has ended; `None` while it runs
    /// (the machine then says what it waits for).
    pub(super) fn poll(&mut self) -> Option<Step> {
        if let Some(out) = self.out.pop_front() {
            return Some(match out {
                Out::Frame(b) => Step::Send(b),
                Out::Refusal(b) => Step::SendRefusal(b),
            });
        }
        match std::mem::replace(&mut self.end, End::Taken) {
            End::Running => {
                self.end = End::Running;
                None
            }
            End::Done(peer) => Some(Step::Done(peer, std::mem::take(&mut self.buf))),
            End::Refused(r) => Some(Step::Refused(r)),
            End::Failed(e) => Some(Step::Failed(e)),
            End::Taken => Some(Step::Failed(HandshakeError::Protocol(
                "the handshake machine was polled after it ended".into(),
            ))),
        }
    }
}

/// Error for a message that is well formed but not the one expected.
pub(super) fn unexpected(expected: &str, got: &HandshakeMsg) -> HandshakeError {
    HandshakeError::Protocol(format!("expected {expected}, got {}", got.kind()))
}

/// Error when the cookie cannot key an HMAC (does not happen with HMAC-SHA256).
pub(super) fn unusable_cookie() -> HandshakeError {
    HandshakeError::Protocol("cookie unusable as an HMAC key".into())
}
