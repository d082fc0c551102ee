//! Bytes → `FrameCodec` (split into chunks) → `decode_body::<Msg>` / `decode_payload`.
//!
//! Input layout: byte 0 picks the frame cap, byte 1 the chunk size, the rest is the stream.
//! Checks: no panic; frames and the terminal error agree with a reference decoder; `Ok(None)`
//! leaves the buffer alone; capacity never grows beyond the bytes fed plus the announced frame
//! (capped by the configured maximum and the decoder's 64 KiB reservation chunk), doubled for
//! `Vec` growth; decoded messages re-encode to something that decodes to the same value.
#![no_main]

use bytes::BytesMut;
use gen_leader::wire::codec::{
    decode_body, decode_payload, encode_frame, encode_payload, CodecError, FrameCodec,
    DEFAULT_MAX_FRAME_LEN, PROTOCOL_VERSION,
};
use gen_leader::wire::handshake::HANDSHAKE_MAX_FRAME_LEN;
use gen_leader::wire::Msg;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

const LEN_HEADER: usize = 4;
const HEADER: usize = 5;
const RESERVE_CHUNK: usize = 64 * 1024;
const CAP_SLACK: usize = 64;

#[derive(Debug, PartialEq, Eq)]
enum End {
    NeedMore(usize),
    Empty,
    TooLarge(usize),
    Version(u8),
}

fn model(bytes: &[u8], max: usize) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    let mut rest = bytes;
    loop {
        if rest.len() < LEN_HEADER {
            return (frames, End::NeedMore(rest.len()));
        }
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if n == 0 {
            return (frames, End::Empty);
        }
        if n > max {
            return (frames, End::TooLarge(n));
        }
        if let Some(&v) = rest.get(LEN_HEADER) {
            if v != PROTOCOL_VERSION {
                return (frames, End::Version(v));
            }
        }
        if rest.len() < LEN_HEADER + n {
            return (frames, End::NeedMore(rest.len()));
        }
        frames.push(&rest[HEADER..LEN_HEADER + n]);
        rest = &rest[LEN_HEADER + n..];
    }
}

fn check_body(body: &[u8]) {
    if let Ok(m) = decode_body::<Msg>(body) {
        let f = encode_frame(&m).expect("decoded message re-encodes");
        assert_eq!(decode_body::<Msg>(&f[HEADER..]).expect("re-decodes"), m);
    }
    if let Ok(v) = decode_payload::<Vec<String>>(body) {
        let b = encode_payload(&v).expect("decoded payload re-encodes");
        assert_eq!(decode_payload::<Vec<String>>(&b).expect("re-decodes"), v);
    }
}

fuzz_target!(|data: &[u8]| {
    let [sel, chunk, stream @ ..] = data else {
        return;
    };
    let max = match sel % 8 {
        0 => 0,
        1 => 1,
        2 => usize::from(*sel),
        3 => HANDSHAKE_MAX_FRAME_LEN,
        4 => RESERVE_CHUNK,
        5 => DEFAULT_MAX_FRAME_LEN,
        6 => u32::MAX as usize,
        _ => usize::MAX,
    };
    let chunk = usize::from(*chunk).max(1);

    let mut codec = FrameCodec::new(max);
    let mut buf = BytesMut::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut err = None;
    let mut fed = 0;
    'feed: while fed < stream.len() || fed == 0 {
        let next = (fed + chunk).min(stream.len());
        buf.extend_from_slice(&stream[fed..next]);
        fed = next;
        loop {
            let cap_before = buf.capacity();
            let len_before = buf.len();
            let n = buf
                .get(..LEN_HEADER)
                .map(|h| u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize);
            let res = codec.decode(&mut buf);
            if buf.capacity() > cap_before {
                let n = n.expect("reserved without a length prefix");
                let allowance = n
                    .saturating_add(LEN_HEADER)
                    .min(max.saturating_add(LEN_HEADER))
                    .min(RESERVE_CHUNK + HEADER);
                let bound = 2 * (fed + allowance) + CAP_SLACK;
                assert!(
                    buf.capacity() <= bound,
                    "capacity {} > {bound} (announced {n}, max {max}, fed {fed})",
                    buf.capacity()
                );
            }
            match res {
                Ok(Some(body)) => {
                    check_body(&body);
                    got.push(body.to_vec());
                }
                Ok(None) => {
                    assert_eq!(buf.len(), len_before);
                    if fed == stream.len() {
                        break 'feed;
                    }
                    continue 'feed;
                }
                Err(e) => {
                    err = Some(e);
                    break 'feed;
                }
            }
        }
    }

    let (want, end) = model(stream, max);
    assert_eq!(got.len(), want.len(), "frame count");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(&g[..], *w);
    }
    match (end, err) {
        (End::NeedMore(rest), None) => assert_eq!(buf.len(), rest),
        (End::Empty, Some(CodecError::EmptyFrame)) => {}
        (End::TooLarge(n), Some(CodecError::FrameTooLarge { len, max: m })) => {
            assert_eq!((len, m), (n, max))
        }
        (End::Version(v), Some(CodecError::Version { got, .. })) => assert_eq!(got, v),
        (end, err) => panic!("decoder ended with {err:?}, reference with {end:?}"),
    }

    // The raw stream as a body too.
    check_body(stream);
});
