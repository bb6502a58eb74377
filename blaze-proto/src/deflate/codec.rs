//! DEFLATE in and out, as RFC 7692 §7.2 frames it: every message ends
//! with a sync flush whose `00 00 ff ff` tail is cut on the wire and put
//! back before inflating. Inflation is bounded as it runs, so a few KiB
//! that would inflate to GiBs stop at the message size limit.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::DeflateSide;
use crate::error::ProtocolError;
use crate::frame::{apply_mask, max_header_len, put_header, FrameHeader, OpCode};

/// The empty stored block a sync flush ends with (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compressors that keep no context between messages, one per level and
/// window per thread: every connection in shared mode borrows them, so no
/// connection holds a compressor of its own (uWebSockets' shared
/// compressor, per worker thread).
struct SharedCompressors(Vec<(u32, u8, Compress)>);

thread_local! {
    static SHARED_COMPRESSORS: RefCell<SharedCompressors> = const { RefCell::new(SharedCompressors(Vec::new())) };
    static INFLATER_POOL: RefCell<Vec<(u8, Decompress)>> = const { RefCell::new(Vec::new()) };
}

/// Inflaters kept per thread for reuse by connections without context.
const INFLATER_POOL_SIZE: usize = 8;

fn new_compress(level: u32, window: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(level.min(9)), false, window.clamp(9, 15))
}

/// Appends `payload` deflated and sync-flushed to `out`, tail cut.
/// `None` if the compressor failed (it is then unusable).
fn deflate_into(compress: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if payload.is_empty() {
        // zlib emits nothing for a sync flush with no new input after
        // another sync flush, and an empty payload would then be inflated
        // as `00 00 ff ff` alone: a stored-block header whose lengths are
        // the next message's bytes, desynchronizing a kept context. An
        // empty stored block, tail cut, is one zero byte (§7.2.3.6), and
        // leaves the compressor where it was: at a byte boundary.
        out.push(0x00);
        return Some(());
    }
    let start_in = compress.total_in();
    out.reserve(payload.len() / 2 + 64);
    loop {
        let consumed = (compress.total_in() - start_in) as usize;
        compress.compress_vec(&payload[consumed..], out, FlushCompress::Sync).ok()?;
        let consumed = (compress.total_in() - start_in) as usize;
        // A sync flush is complete once the output has room left over.
        if consumed == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    Some(())
}

/// Compresses with the thread's shared compressor for `level` and
/// `window`, reset after the message.
pub(crate) fn shared_compress(level: u32, window: u8, payload: &[u8], out: &mut Vec<u8>) -> Option<()> {
    // `try_with`: during a thread's teardown the cache may be gone; a
    // compressor of its own then does the job.
    let cached = SHARED_COMPRESSORS.try_with(|cell| {
        let Ok(mut shared) = cell.try_borrow_mut() else {
            return deflate_into(&mut new_compress(level, window), payload, out);
        };
        let list = &mut shared.0;
        let at = match list.iter().position(|(l, w, _)| *l == level && *w == window) {
            Some(at) => at,
            None => {
                list.push((level, window, new_compress(level, window)));
                list.len() - 1
            }
        };
        let compress = &mut list[at].2;
        let result = deflate_into(compress, payload, out);
        compress.reset();
        result
    });
    match cached {
        Ok(result) => result,
        Err(_) => deflate_into(&mut new_compress(level, window), payload, out),
    }
}

/// Frames `payload` as one compressed message (RSV1 set), masked with
/// `mask` if given: header and payload in one buffer, built in place.
/// `dedicated` is the connection's own compressor (context takeover);
/// without one the thread's shared compressor is used. `None` if
/// compression failed: the caller sends the message uncompressed.
pub(crate) fn compress_message(
    side: &DeflateSide,
    dedicated: &mut Option<Compress>,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> Option<Bytes> {
    let room = max_header_len();
    let mut out = Vec::with_capacity(room + payload.len() / 2 + 64);
    out.resize(room, 0);
    let result = if side.send_no_context {
        shared_compress(side.level, side.send_window, payload, &mut out)
    } else {
        let compress = dedicated.get_or_insert_with(|| new_compress(side.level, side.send_window));
        let result = deflate_into(compress, payload, &mut out);
        if result.is_none() {
            *dedicated = None;
        }
        result
    };
    result?;
    Some(frame_in_place(out, room, opcode, mask))
}

/// Writes the header of the compressed payload `out[room..]` just before
/// it and masks the payload: one buffer, no copy.
fn frame_in_place(mut out: Vec<u8>, room: usize, opcode: OpCode, mask: Option<[u8; 4]>) -> Bytes {
    let len = out.len() - room;
    let mut header = bytes::BytesMut::with_capacity(max_header_len());
    put_header(FrameHeader { rsv1: true, ..FrameHeader::new(opcode) }, len, mask, &mut header);
    let start = room - header.len();
    out[start..room].copy_from_slice(&header);
    if let Some(key) = mask {
        apply_mask(&mut out[room..], key, 0);
    }
    Bytes::from(out).slice(start..)
}

/// Frames a server-to-client compressed message with the shared
/// compressor (broadcasts: compressed once, queued on every receiver).
pub(crate) fn shared_frame(level: u32, window: u8, opcode: OpCode, payload: &[u8]) -> Option<Bytes> {
    let room = max_header_len();
    let mut out = Vec::with_capacity(room + payload.len() / 2 + 64);
    out.resize(room, 0);
    shared_compress(level, window, payload, &mut out)?;
    Some(frame_in_place(out, room, opcode, None))
}

/// Inflates the messages of one connection. With the peer's context kept
/// (dedicated), it holds its decompressor for the connection's life;
/// without it, it borrows one from the thread's pool per message and
/// gives it back at the message's end, so an idle connection holds none.
#[derive(Debug)]
pub(crate) struct Inflater {
    window: u8,
    no_context: bool,
    state: Option<Decompress>,
    /// The message in progress ended its DEFLATE stream (a BFINAL block):
    /// the rest of it is ignored, and no tail is put back.
    stream_ended: bool,
    /// Compressed bytes taken for the message in progress.
    taken: usize,
}

impl Inflater {
    pub(crate) fn new(side: &DeflateSide) -> Inflater {
        Inflater { window: side.recv_window, no_context: side.recv_no_context, state: None, stream_ended: false, taken: 0 }
    }

    fn state(&mut self) -> &mut Decompress {
        let window = self.window;
        self.state.get_or_insert_with(|| {
            let pooled = INFLATER_POOL
                .try_with(|pool| {
                    let mut pool = pool.try_borrow_mut().ok()?;
                    let at = pool.iter().position(|(w, _)| *w == window)?;
                    Some(pool.swap_remove(at).1)
                })
                .ok()
                .flatten();
            pooled.unwrap_or_else(|| Decompress::new_with_window_bits(false, window))
        })
    }

    /// Inflates the next piece of a compressed message onto `out`, failing
    /// once `out` would pass `max` bytes. Output grows with what inflates,
    /// never with what a header announced.
    pub(crate) fn inflate(&mut self, input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), ProtocolError> {
        if input.is_empty() {
            return Ok(());
        }
        if self.stream_ended {
            // Padding after a final block (RFC 7692 §7.2.3.5 has a byte
            // of it): nothing more inflates in this message.
            return Ok(());
        }
        self.taken += input.len();
        self.inflate_bytes(input, out, max)
    }

    fn inflate_bytes(&mut self, input: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), ProtocolError> {
        let state = self.state();
        let mut consumed = 0;
        loop {
            if out.len() > max {
                return Err(ProtocolError::MessageTooLarge { size: out.len(), max });
            }
            if out.len() == out.capacity() {
                // Doubling, capped one byte past the limit: a bomb stops
                // having allocated at most `max + 1` bytes.
                let grow = out.len().max(input.len() * 2).clamp(256, 1 << 20).min(max + 1 - out.len());
                out.reserve_exact(grow);
            }
            let (in_before, out_before) = (state.total_in(), out.len());
            let status = state
                .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
                .map_err(|_| ProtocolError::InvalidCompressedData)?;
            consumed += (state.total_in() - in_before) as usize;
            if status == Status::StreamEnd {
                // The sender ended its stream (a BFINAL block): the next
                // message starts a fresh one; what follows in this one is
                // padding and is ignored.
                state.reset(false);
                self.stream_ended = true;
                return Ok(());
            }
            let room_left = out.len() < out.capacity();
            if consumed == input.len() && room_left {
                return Ok(());
            }
            if state.total_in() == in_before && out.len() == out_before && room_left {
                return Err(ProtocolError::InvalidCompressedData);
            }
        }
    }

    /// Ends a message: inflates the tail §7.2.2 puts back, then forgets
    /// the context if the peer keeps none.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), ProtocolError> {
        // An empty payload carries no block at all (a sender with nothing
        // to flush): the tail alone would read as a stored block whose
        // lengths are the next message's bytes. A message that ended its
        // stream has no tail put back either.
        let skip_tail = self.taken == 0 || self.stream_ended;
        let result = if skip_tail { Ok(()) } else { self.inflate_bytes(&TAIL, out, max) };
        self.taken = 0;
        self.stream_ended = false;
        if self.no_context || result.is_err() {
            self.release();
        }
        result
    }

    /// Forgets the message in progress and gives the decompressor back.
    pub(crate) fn release(&mut self) {
        self.taken = 0;
        self.stream_ended = false;
        let Some(mut state) = self.state.take() else { return };
        if !self.no_context {
            // A dedicated context broken mid-message cannot be reused.
            return;
        }
        state.reset(false);
        let window = self.window;
        // `try_with`: a connection dropped during the thread's teardown
        // just frees its decompressor.
        let _ = INFLATER_POOL.try_with(|pool| {
            if let Ok(mut pool) = pool.try_borrow_mut() {
                if pool.len() < INFLATER_POOL_SIZE {
                    pool.push((window, state));
                }
            }
        });
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        if self.no_context {
            self.release();
        }
    }
}

impl std::fmt::Debug for SharedCompressors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCompressors").field("count", &self.0.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(no_context: bool, window: u8) -> DeflateSide {
        DeflateSide {
            level: 6,
            threshold: 0,
            send_window: window,
            send_no_context: no_context,
            recv_window: window,
            recv_no_context: no_context,
        }
    }

    fn roundtrip(no_context: bool, window: u8, messages: &[&[u8]]) {
        let s = side(no_context, window);
        let mut dedicated = None;
        let mut inflater = Inflater::new(&s);
        for message in messages {
            let frame = compress_message(&s, &mut dedicated, OpCode::Binary, message, None).unwrap();
            assert_eq!(frame[0], 0xC2, "FIN, RSV1, binary");
            let header = match frame[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            let mut out = Vec::new();
            inflater.inflate(&frame[header..], &mut out, 1 << 20).unwrap();
            inflater.finish(&mut out, 1 << 20).unwrap();
            assert_eq!(&out[..], *message);
        }
    }

    #[test]
    fn messages_round_trip_with_and_without_context_at_every_window() {
        let json = br#"{"symbol":"BTC-USD","price":95012.5,"qty":0.25}"#.repeat(40);
        for window in 9..=15 {
            for no_context in [true, false] {
                roundtrip(no_context, window, &[&json, b"hello hello hello", &json, b""]);
            }
        }
    }

    #[test]
    fn the_sync_flush_tail_is_cut() {
        let mut out = Vec::new();
        shared_compress(6, 15, b"Hello", &mut out).unwrap();
        // RFC 7692 §7.2.3.1: "Hello" compressed without context.
        assert_eq!(out, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    }

    #[test]
    fn inflation_stops_at_the_limit_having_allocated_at_most_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        let mut compressed = Vec::new();
        shared_compress(9, 15, &zeros, &mut compressed).unwrap();
        assert!(compressed.len() < 16 * 1024);
        let mut inflater = Inflater::new(&side(true, 15));
        let mut out = Vec::new();
        let err = inflater.inflate(&compressed, &mut out, 1 << 20).unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooLarge { .. }));
        assert!(out.capacity() <= (1 << 20) + 1);
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_panic() {
        let mut inflater = Inflater::new(&side(true, 15));
        let mut out = Vec::new();
        // BTYPE 11 is reserved.
        assert_eq!(inflater.inflate(&[0xff, 0xff, 0xff], &mut out, 1 << 20), Err(ProtocolError::InvalidCompressedData));
    }

    #[test]
    fn a_final_block_mid_message_restarts_the_stream() {
        // "Hello" as a BFINAL fixed block, then the tail §7.2.2 appends.
        let mut compress = Compress::new(Compression::new(6), false);
        let mut data = Vec::with_capacity(64);
        compress.compress_vec(b"Hello", &mut data, FlushCompress::Finish).unwrap();
        let mut inflater = Inflater::new(&side(false, 15));
        let mut out = Vec::new();
        inflater.inflate(&data, &mut out, 100).unwrap();
        inflater.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
    }
}

#[cfg(test)]
mod regressions {
    use super::*;

    /// An empty message between two others, with context kept: zlib's
    /// empty sync flush made the next message undecodable (found by the
    /// blaze-tokio end-to-end test at every window).
    #[test]
    fn an_empty_message_keeps_the_context_in_step() {
        let json = r#"{"symbol":"BTC-USD","price":95012.5,"qty":0.25}"#.repeat(30);
        let text = "κόσμε 𝄞 ".repeat(500);
        for w in 9..=15u8 {
            let s = DeflateSide { level: 6, threshold: 0, send_window: w, send_no_context: false, recv_window: w, recv_no_context: false };
            let mut dedicated = None;
            let mut inflater = Inflater::new(&s);
            for (i, m) in [json.as_bytes(), b"", text.as_bytes(), &vec![7u8; 200_000][..]].iter().enumerate() {
                let frame = compress_message(&s, &mut dedicated, OpCode::Binary, m, None).unwrap();
                let header = match frame[1] & 0x7f { 126 => 4, 127 => 10, _ => 2 };
                let mut out = Vec::new();
                let r = inflater.inflate(&frame[header..], &mut out, 1 << 20).and_then(|_| inflater.finish(&mut out, 1 << 20));
                assert!(r.is_ok() && out == *m, "window {w} message {i}: {r:?} {} vs {}", out.len(), m.len());
            }
        }
    }
}
