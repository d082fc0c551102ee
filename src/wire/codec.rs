//! The byte format of the gen_leader wire protocol — the one place it lives.
//!
//! Every message on a connection travels in a *frame*:
//!
//! ```text
//! +----------------------+---------+------------------------------+
//! | N: u32, big-endian   | version | body: bincode-2 (N - 1 bytes) |
//! +----------------------+---------+------------------------------+
//! ```
//!
//! `N` counts the bytes after the length field, so it includes the one-byte
//! protocol version ([`PROTOCOL_VERSION`]). The body is the message encoded
//! with serde through bincode 2 using [`bincode::config::standard()`].
//!
//! [`FrameCodec`] splits a byte stream into frame bodies (for use with
//! [`tokio_util::codec::Framed`]); [`encode_frame`] / [`encode_frame_into`]
//! build complete frames and [`decode_body`] turns a body back into a message.
//! [`encode_payload`] / [`decode_payload`] use the same encoding for user
//! payloads that are carried inside messages as opaque bytes.
//!
//! All decoding is defensive: a frame length is checked against the cap before
//! any memory is reserved, and bincode decoding runs with a byte limit so that a
//! hostile length prefix inside a body cannot make the decoder allocate more
//! than [`DEFAULT_MAX_FRAME_LEN`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder};

/// Version byte carried in every frame. A peer speaking another version is refused.
///
/// History: 1, the first release; 2, `Hello` carries the configuration field by field and
/// refusals name the field that differs (`Refusal::Config`). Observers (`Observe`, see
/// `wire::handshake`) came within version 2: members never send their messages, so members'
/// bytes did not change; the observer protocol has its own number,
/// [`OBSERVER_VERSION`](crate::wire::handshake::OBSERVER_VERSION).
pub const PROTOCOL_VERSION: u8 = 2;

/// Default cap on the announced frame length `N` (8 MiB). Also the limit used
/// when decoding a body or payload, and the largest frame [`encode_frame`] builds.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// Size of the big-endian length prefix.
const LEN_HEADER: usize = 4;

/// Size of length prefix plus version byte.
const HEADER: usize = LEN_HEADER + 1;

/// The most the decoder reserves at once while waiting for the rest of a frame.
/// Memory therefore grows with the bytes that actually arrive rather than with
/// what the peer merely announces.
const RESERVE_CHUNK: usize = 64 * 1024;

/// Errors of the wire encoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Reading from or writing to the connection failed.
    #[error("connection I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A frame (or payload) is larger than the allowed maximum.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced or produced length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A frame announced length 0, so it does not even carry a version byte.
    #[error("empty frame: length 0, missing the protocol version byte")]
    EmptyFrame,
    /// A frame carried a protocol version this node does not speak.
    #[error("peer speaks protocol version {got}, this node speaks version {expected}")]
    Version {
        /// Version byte found in the frame.
        got: u8,
        /// Version this node speaks ([`PROTOCOL_VERSION`]).
        expected: u8,
    },
    /// A message could not be serialized.
    #[error("could not encode message: {0}")]
    Encode(#[source] BincodeError),
    /// A frame body or payload is not a valid encoding of the expected type.
    #[error("could not decode message: {0}")]
    Decode(#[source] BincodeError),
    /// [`encode_frame_with_payload`] was given a message that does not end with an empty
    /// payload.
    #[error("could not encode message: the message does not end with an empty payload")]
    NotAPayloadMessage,
    /// A body or payload decoded successfully but had bytes left over.
    #[error("malformed message: unexpected trailing bytes after the encoded value")]
    TrailingBytes,
    /// A frame is too short for, or carries another message than, the one expected.
    #[error("malformed frame: not the message expected here")]
    UnexpectedMessage,
}

/// Why bincode could not encode or decode a value. Opaque, so that the pinned bincode version
/// stays out of this crate's public API; it displays as bincode's own message.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BincodeError(Bincode);

#[derive(Debug, thiserror::Error)]
enum Bincode {
    #[error(transparent)]
    Encode(bincode::error::EncodeError),
    #[error(transparent)]
    Decode(bincode::error::DecodeError),
}

fn encode_error(e: bincode::error::EncodeError) -> CodecError {
    CodecError::Encode(BincodeError(Bincode::Encode(e)))
}

fn decode_error(e: bincode::error::DecodeError) -> CodecError {
    CodecError::Decode(BincodeError(Bincode::Decode(e)))
}

/// Splits a byte stream into frame bodies and writes pre-encoded frames.
///
/// As a [`Decoder`] it yields each frame's body **without** the length prefix
/// and version byte, rejecting frames whose announced length exceeds the cap
/// (before reserving memory), empty frames and frames with a foreign version.
///
/// As an [`Encoder<Bytes>`] it appends its input verbatim: the input must be
/// one or more complete frames as produced by [`encode_frame`] or
/// [`encode_frame_into`] (batching several frames into one `Bytes` is fine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_frame_len: usize,
}

impl FrameCodec {
    /// A codec accepting frames whose announced length `N` is at most `max_frame_len`.
    #[must_use]
    pub const fn new(max_frame_len: usize) -> Self {
        Self { max_frame_len }
    }

    /// The cap on the announced frame length `N`.
    #[must_use]
    pub const fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }
}

impl Default for FrameCodec {
    /// A codec with the [`DEFAULT_MAX_FRAME_LEN`] cap.
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        let Some(header) = src.get(..LEN_HEADER) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; LEN_HEADER];
        len_bytes.copy_from_slice(header);
        // u32 always fits in usize on the platforms tokio supports; saturate otherwise.
        let n = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap_or(usize::MAX);

        // Validate the announced length before reserving anything.
        if n == 0 {
            return Err(CodecError::EmptyFrame);
        }
        if n > self.max_frame_len {
            return Err(CodecError::FrameTooLarge {
                len: n,
                max: self.max_frame_len,
            });
        }
        // Reject a foreign version as soon as its byte is visible, without
        // waiting for (or buffering) the rest of the frame.
        if let Some(&version) = src.get(LEN_HEADER) {
            if version != PROTOCOL_VERSION {
                return Err(CodecError::Version {
                    got: version,
                    expected: PROTOCOL_VERSION,
                });
            }
        }

        let total = LEN_HEADER + n; // n <= max_frame_len, no overflow for sane caps
        if src.len() < total {
            let missing = total - src.len();
            src.reserve(missing.min(RESERVE_CHUNK));
            return Ok(None);
        }

        src.advance(HEADER);
        Ok(Some(src.split_to(n - 1)))
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frames: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&frames);
        Ok(())
    }
}

/// Encodes `msg` as one complete frame (length, version, body) in a fresh buffer.
///
/// Fails with [`CodecError::FrameTooLarge`] if the frame would exceed
/// [`DEFAULT_MAX_FRAME_LEN`], since no peer would accept it.
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T) -> Result<Bytes, CodecError> {
    let mut buf = BytesMut::with_capacity(128);
    encode_frame_into(msg, &mut buf)?;
    Ok(buf.freeze())
}

/// Appends one complete frame carrying `msg` to `buf` (for batching several
/// frames into one write). On error `buf` is left as it was.
pub fn encode_frame_into<T: Serialize + ?Sized>(
    msg: &T,
    buf: &mut BytesMut,
) -> Result<(), CodecError> {
    let start = buf.len();
    buf.put_u32(0); // patched below
    buf.put_u8(PROTOCOL_VERSION);
    let mut writer = (&mut *buf).writer();
    if let Err(e) = bincode::serde::encode_into_std_write(msg, &mut writer, config()) {
        buf.truncate(start);
        return Err(encode_error(e));
    }
    let n = buf.len() - start - LEN_HEADER;
    let len = match u32::try_from(n) {
        Ok(len) if n <= DEFAULT_MAX_FRAME_LEN => len,
        _ => {
            buf.truncate(start);
            return Err(CodecError::FrameTooLarge {
                len: n,
                max: DEFAULT_MAX_FRAME_LEN,
            });
        }
    };
    match buf.get_mut(start..start + LEN_HEADER) {
        Some(header) => header.copy_from_slice(&len.to_be_bytes()),
        None => {
            buf.truncate(start);
            return Err(encode_error(bincode::error::EncodeError::Other(
                "frame header vanished",
            )));
        }
    }
    Ok(())
}

/// Builds the frame of `msg` whose last field is a byte payload holding `payload` encoded with
/// [`encode_payload`], without encoding the payload into a buffer of its own first: the bytes
/// are exactly those of `encode_frame(msg with its payload set to encode_payload(payload))`.
///
/// `msg` must carry an empty payload as its very last encoded field (as
/// `Msg::LeaderCall`, `Msg::Reply` with `ReplyResult::Ok`, `Msg::Broadcast` and
/// `Msg::LeaderCast` do); [`CodecError::NotAPayloadMessage`] otherwise.
///
/// Hidden from the docs and outside the semver promise: the node runtime, tests and benches
/// use it.
#[doc(hidden)]
pub fn encode_frame_with_payload<M, T>(msg: &M, payload: &T) -> Result<Bytes, CodecError>
where
    M: Serialize + ?Sized,
    T: Serialize + ?Sized,
{
    // The message with an empty payload ends with that payload's length, a one-byte varint 0.
    let mut buf = BytesMut::with_capacity(128);
    encode_frame_into(msg, &mut buf)?;
    if buf.last() != Some(&0) {
        return Err(CodecError::NotAPayloadMessage);
    }
    buf.truncate(buf.len() - 1);
    let prefix = buf.len();
    // Room for the payload's length (a varint of at most 9 bytes for a u64), then the payload.
    buf.put_bytes(0, MAX_VARINT);
    let start = buf.len();
    let mut writer = (&mut buf).writer();
    bincode::serde::encode_into_std_write(payload, &mut writer, config()).map_err(encode_error)?;
    let n = buf.len() - start;
    if n > DEFAULT_MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge {
            len: n,
            max: DEFAULT_MAX_FRAME_LEN,
        });
    }
    let mut varint = [0u8; MAX_VARINT];
    let vlen = bincode::encode_into_slice(n as u64, &mut varint, config()).map_err(encode_error)?;
    // Close the gap: the length goes right before the payload, and the frame's first `prefix`
    // bytes move up against it; the frame then starts `gap` bytes into the buffer.
    let gap = MAX_VARINT - vlen;
    buf[start - vlen..start].copy_from_slice(&varint[..vlen]);
    buf.copy_within(0..prefix, gap);
    buf.advance(gap);
    let body = buf.len() - LEN_HEADER;
    let len = match u32::try_from(body) {
        Ok(len) if body <= DEFAULT_MAX_FRAME_LEN => len,
        _ => {
            return Err(CodecError::FrameTooLarge {
                len: body,
                max: DEFAULT_MAX_FRAME_LEN,
            })
        }
    };
    buf[..LEN_HEADER].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// The longest bincode varint of a `u64`: a marker byte and 8 bytes.
const MAX_VARINT: usize = 9;

/// Decodes a frame body (as yielded by [`FrameCodec`]) into a message.
///
/// Decoding is limited to [`DEFAULT_MAX_FRAME_LEN`] bytes of claimed
/// allocation, and the whole body must be consumed
/// ([`CodecError::TrailingBytes`] otherwise).
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (value, used) =
        bincode::serde::decode_from_slice(body, config().with_limit::<DEFAULT_MAX_FRAME_LEN>())
            .map_err(decode_error)?;
    if used != body.len() {
        return Err(CodecError::TrailingBytes);
    }
    Ok(value)
}

/// Encodes a user payload to bytes with the wire encoding (no frame header).
///
/// Fails with [`CodecError::FrameTooLarge`] if the result exceeds
/// [`DEFAULT_MAX_FRAME_LEN`], since it could never be sent.
pub fn encode_payload<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(v, config()).map_err(encode_error)?;
    if bytes.len() > DEFAULT_MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge {
            len: bytes.len(),
            max: DEFAULT_MAX_FRAME_LEN,
        });
    }
    Ok(bytes)
}

/// Decodes a user payload produced by [`encode_payload`], with the same
/// limits and trailing-byte check as [`decode_body`].
pub fn decode_payload<T: DeserializeOwned>(b: &[u8]) -> Result<T, CodecError> {
    decode_body(b)
}

/// The bincode configuration of the wire format.
fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_inlined_frames_equal_the_two_step_encoding() {
        use crate::types::Term;
        use crate::wire::{Msg, ReplyResult};
        for size in [0usize, 1, 7, 250, 251, 252, 300, 65_535, 65_536, 70_000] {
            let value: Vec<u8> = (0..size).map(|i| i as u8).collect();
            for id in [0u64, 1, 250, 251, 65_536, u64::MAX] {
                let two_step = encode_frame(&Msg::LeaderCall {
                    id,
                    payload: encode_payload(&value).unwrap(),
                })
                .unwrap();
                let inlined = encode_frame_with_payload(
                    &Msg::LeaderCall {
                        id,
                        payload: Vec::new(),
                    },
                    &value,
                )
                .unwrap();
                assert_eq!(inlined, two_step, "size {size} id {id}");
                let two_step = encode_frame(&Msg::Reply {
                    id,
                    term: Term(id / 3),
                    result: ReplyResult::Ok(encode_payload(&value).unwrap()),
                })
                .unwrap();
                let inlined = encode_frame_with_payload(
                    &Msg::Reply {
                        id,
                        term: Term(id / 3),
                        result: ReplyResult::Ok(Vec::new()),
                    },
                    &value,
                )
                .unwrap();
                assert_eq!(inlined, two_step, "reply: size {size} id {id}");
            }
        }
        // Not ending with an empty payload: refused.
        assert!(matches!(
            encode_frame_with_payload(&Msg::Heartbeat, &1u8),
            Err(CodecError::NotAPayloadMessage)
        ));
        // Too large a payload: refused.
        let big = vec![0u8; DEFAULT_MAX_FRAME_LEN + 1];
        assert!(matches!(
            encode_frame_with_payload(
                &Msg::LeaderCast {
                    payload: Vec::new()
                },
                &big
            ),
            Err(CodecError::FrameTooLarge { .. })
        ));
    }
    use rand::{Rng, SeedableRng};
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Ping(u64),
        Text { name: String, data: Vec<u8> },
        Unit,
    }

    fn sample() -> Msg {
        Msg::Text {
            name: "a@127.0.0.1:4000".into(),
            data: (0..=255u8).collect(),
        }
    }

    fn frame_bytes(msg: &Msg) -> Bytes {
        match encode_frame(msg) {
            Ok(b) => b,
            Err(e) => panic!("encode failed: {e}"),
        }
    }

    #[test]
    fn frame_layout() {
        let f = frame_bytes(&Msg::Unit);
        let n = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(n, f.len() - 4);
        assert_eq!(f[4], PROTOCOL_VERSION);
    }

    #[test]
    fn round_trip() {
        let mut codec = FrameCodec::default();
        for msg in [Msg::Ping(u64::MAX), sample(), Msg::Unit] {
            let mut buf = BytesMut::new();
            codec.encode(frame_bytes(&msg), &mut buf).unwrap();
            let body = codec.decode(&mut buf).unwrap().unwrap();
            assert!(buf.is_empty());
            assert_eq!(decode_body::<Msg>(&body).unwrap(), msg);
        }
    }

    #[test]
    fn payload_round_trip() {
        let v = (42u32, String::from("hello"), vec![1u8, 2, 3]);
        let b = encode_payload(&v).unwrap();
        assert_eq!(decode_payload::<(u32, String, Vec<u8>)>(&b).unwrap(), v);
        let mut longer = b.clone();
        longer.push(0);
        assert!(matches!(
            decode_payload::<(u32, String, Vec<u8>)>(&longer),
            Err(CodecError::TrailingBytes)
        ));
    }

    #[test]
    fn frame_split_across_reads() {
        let mut codec = FrameCodec::default();
        let f = frame_bytes(&sample());
        let mut buf = BytesMut::new();
        // Feed in chunks of 3 bytes; only the last chunk completes the frame.
        let chunks: Vec<&[u8]> = f.chunks(3).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            buf.extend_from_slice(chunk);
            let out = codec.decode(&mut buf).unwrap();
            if i < last {
                assert!(out.is_none(), "frame yielded early at chunk {i}");
            } else {
                assert_eq!(decode_body::<Msg>(&out.unwrap()).unwrap(), sample());
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn two_frames_in_one_buffer_and_batching() {
        let mut codec = FrameCodec::default();
        let mut batch = BytesMut::new();
        encode_frame_into(&Msg::Ping(7), &mut batch).unwrap();
        encode_frame_into(&sample(), &mut batch).unwrap();
        let mut buf = BytesMut::new();
        codec.encode(batch.freeze(), &mut buf).unwrap();
        buf.extend_from_slice(&frame_bytes(&Msg::Unit)[..3]); // partial third frame

        let a = codec.decode(&mut buf).unwrap().unwrap();
        let b = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(decode_body::<Msg>(&a).unwrap(), Msg::Ping(7));
        assert_eq!(decode_body::<Msg>(&b).unwrap(), sample());
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 3);
    }

    #[test]
    fn oversized_length_rejected_without_allocating() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, PROTOCOL_VERSION]);
        match codec.decode(&mut buf) {
            Err(CodecError::FrameTooLarge { len, max }) => {
                assert_eq!(len, 0xFFFF_FFFF);
                assert_eq!(max, DEFAULT_MAX_FRAME_LEN);
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert!(buf.capacity() <= 64, "capacity grew to {}", buf.capacity());

        // Just the length prefix is enough to reject.
        let mut buf = BytesMut::with_capacity(8);
        buf.extend_from_slice(&[0x7F, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::FrameTooLarge { .. })
        ));
        assert!(buf.capacity() <= 64);
    }

    #[test]
    fn announced_but_unsent_frame_reserves_little() {
        // A frame within the cap that is announced but not (yet) sent must not
        // make the decoder reserve the full announced size up front.
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::with_capacity(16);
        let n = u32::try_from(DEFAULT_MAX_FRAME_LEN).unwrap();
        buf.extend_from_slice(&n.to_be_bytes());
        buf.put_u8(PROTOCOL_VERSION);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() <= 2 * (RESERVE_CHUNK + HEADER),
            "capacity {}",
            buf.capacity()
        );
    }

    #[test]
    fn respects_custom_cap() {
        let mut codec = FrameCodec::new(10);
        assert_eq!(codec.max_frame_len(), 10);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frame_bytes(&sample()));
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::FrameTooLarge { max: 10, .. })
        ));
    }

    #[test]
    fn empty_frame_rejected() {
        let mut codec = FrameCodec::default();
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::EmptyFrame)
        ));
    }

    #[test]
    fn wrong_version_rejected() {
        let mut codec = FrameCodec::default();
        let f = frame_bytes(&Msg::Ping(1));
        let mut bad = BytesMut::from(&f[..]);
        bad[4] = PROTOCOL_VERSION + 1;
        match codec.decode(&mut bad) {
            Err(CodecError::Version { got, expected }) => {
                assert_eq!(got, PROTOCOL_VERSION + 1);
                assert_eq!(expected, PROTOCOL_VERSION);
            }
            other => panic!("expected Version error, got {other:?}"),
        }
        // Detected as soon as the version byte arrives.
        let mut partial = BytesMut::from(&[0u8, 0, 0, 100, 9][..]);
        assert!(matches!(
            codec.decode(&mut partial),
            Err(CodecError::Version { got: 9, .. })
        ));
    }

    #[test]
    fn garbage_body_is_decode_error() {
        // Variant index far out of range.
        assert!(matches!(
            decode_body::<Msg>(&[0xFB, 0xFF, 0xFF, 0xFF, 0x7F]),
            Err(CodecError::Decode(_))
        ));
        // Truncated body.
        let f = frame_bytes(&sample());
        assert!(matches!(
            decode_body::<Msg>(&f[HEADER..f.len() - 1]),
            Err(CodecError::Decode(_))
        ));
        // Empty body.
        assert!(matches!(
            decode_body::<Msg>(&[]),
            Err(CodecError::Decode(_))
        ));
    }

    #[test]
    fn hostile_inner_length_is_limited() {
        // Variant 1 (Text), then a string length of u64::MAX-ish: must fail
        // cleanly instead of trying to allocate.
        let mut body = vec![1u8, 0xFD];
        body.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode_body::<Msg>(&body),
            Err(CodecError::Decode(_))
        ));
        // A Vec<u8> claiming 2^40 elements.
        let mut body = vec![0xFDu8];
        body.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            decode_body::<Vec<u8>>(&body),
            Err(CodecError::Decode(_))
        ));
        // A Vec<u64> claiming slightly more than the limit allows.
        let mut body = vec![0xFCu8];
        body.extend_from_slice(&u32::try_from(DEFAULT_MAX_FRAME_LEN).unwrap().to_le_bytes());
        assert!(matches!(
            decode_body::<Vec<u64>>(&body),
            Err(CodecError::Decode(_))
        ));
    }

    #[test]
    fn random_input_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x006e_6c65_6164_6572);
        for round in 0..20_000 {
            let len = rng.random_range(0..64usize);
            let mut bytes = vec![0u8; len];
            rng.fill(&mut bytes[..]);
            // Make well-formed headers common so bodies get exercised too.
            if round % 2 == 0 && len >= HEADER {
                let n = u32::try_from(len - LEN_HEADER).unwrap();
                bytes[..LEN_HEADER].copy_from_slice(&n.to_be_bytes());
                bytes[LEN_HEADER] = PROTOCOL_VERSION;
            }
            let mut codec = FrameCodec::new(1024);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(body)) = codec.decode(&mut buf) {
                let _ = decode_body::<Msg>(&body);
                let _ = decode_body::<Vec<String>>(&body);
            }
            assert!(buf.capacity() <= 4096);
        }
    }

    #[test]
    fn error_messages_are_readable() {
        let e = CodecError::Version {
            got: 2,
            expected: 1,
        };
        assert_eq!(
            e.to_string(),
            "peer speaks protocol version 2, this node speaks version 1"
        );
        let e = CodecError::FrameTooLarge { len: 10, max: 5 };
        assert_eq!(
            e.to_string(),
            "frame of 10 bytes exceeds the limit of 5 bytes"
        );
    }

    /// A bincode failure is a typed source (not a string), displayed as before.
    #[test]
    fn decode_errors_have_a_typed_source() {
        use std::error::Error as _;
        let e = decode_body::<Msg>(&[0x77]).unwrap_err();
        let source = e.source().expect("source");
        assert!(source.is::<BincodeError>(), "{source:?}");
        assert_eq!(e.to_string(), format!("could not decode message: {source}"));
        assert!(source.to_string().contains("variant index"), "{source}");
    }
}
