//! `inflate`: hostile permessage-deflate (RFC 7692) streams through a
//! server [`Connection`] that negotiated the extension.
//!
//! Input layout: four control bytes, then the body.
//! - byte 0: bit 0 `server_no_context_takeover`, bit 1
//!   `client_no_context_takeover`, bit 2 the body is records of messages to
//!   build (below) rather than wire bytes, bits 3-7 how the wire bytes are
//!   chunked ([`crate::chunks::plan`]);
//! - byte 1: the negotiated windows, low nibble the server's, high nibble
//!   the client's: 0..=7 is `max_window_bits` 8 + n, 8..=15 leaves it out
//!   (15);
//! - byte 2: `max_message_size` = (b + 1) * 256 bytes (256 B to 64 KiB), so
//!   bombs hit the limit after a few bytes;
//! - byte 3: bits 0-3 the compression level of built messages (mod 10),
//!   bit 4 the transport ends (EOF) after the input.
//!
//! In wire mode the body is what the client sends. In record mode each
//! record builds one message the way a client would (compressed with
//! flate2, raw deflate with the client's window, sync flushed, `00 00 ff
//! ff` cut, context kept unless `client_no_context_takeover`), cut into
//! fragments, masked and framed with RSV1, possibly corrupted:
//! - a kind byte: bit 0 text; bit 1 sent uncompressed (no RSV1); bits 2-3
//!   fragments - 1; bit 4 a ping before every fragment but the first (or
//!   before a whole message); bit 5 the payload is one byte repeated; bit 6
//!   a corruption follows; bit 7 each fragment compressed and flushed on
//!   its own rather than the message compressed and then cut;
//! - a length byte (0xff: a little-endian u16 follows): raw payload bytes,
//!   or for a repeat 256-byte units (at most 80 KiB) and the byte repeated
//!   (text repeats a character of 1 to 4 bytes);
//! - with bit 6, a corruption kind byte and a position byte: flip a bit,
//!   truncate, RSV1 on a continuation, RSV1 cleared on compressed data,
//!   garbage appended, invalid UTF-8 compressed as text, no final
//!   fragment, or a final (BFINAL) deflate block.
//!
//! Checked, after every piece delivered: no panic; `handle_read` called
//! again while `input_paused()` (each call making progress) until it
//! clears; what stays unread is less than one frame; `buffered_bytes()` at
//! most `max_message_size` + 1 (the byte that proves a message too big);
//! the heap a `handle_read` grows bounded by the inflation budget, the
//! limit and the input, never by what the data inflates to; every message
//! at most `max_message_size`, text valid UTF-8; a protocol failure closes
//! with 1002, 1007 or 1009 (its close frame saying the same) and nothing
//! is emitted after `Closed`; the server writes only valid, unmasked
//! frames and nothing after its close frame. For built input: every
//! message before the first corrupted one is delivered, equal and in
//! order; with none corrupted the connection stays open with every
//! message delivered and nothing buffered, unless a message was over the
//! limit, in which case the ones before it are delivered and it closes
//! with 1009.

use std::time::Instant;

use blaze_proto::bytes::BytesMut;
use blaze_proto::deflate::{DeflateConfig, DeflateParams};
use blaze_proto::frame::{encode_frame, FrameDecoder, FrameHeader, OpCode, Role};
use blaze_proto::{CloseCause, CloseCode, CloseFrame, CloseInfo, Config, Connection, Event, Message, ProtocolError, State};
use flate2::{Compress, Compression, FlushCompress};

use crate::{alloc, chunks};

/// Records built per input at most.
const MAX_MESSAGES: usize = 64;
/// Payload bytes built per input at most (repeats make them cheap to ask
/// for): past the 1 MiB inflation budget of one read, and no further.
const MAX_BUILT: usize = 5 << 18;
/// The largest repeated payload: past the largest `max_message_size`.
const MAX_REPEAT: usize = 80 << 10;
/// Pieces delivered per input at most: a large built stream delivered
/// byte by byte would take seconds, so its pieces are joined.
const MAX_PIECES: usize = 4096;
/// What one `handle_read` inflates before pausing (`INFLATE_BUDGET` in
/// blaze-proto), for the heap bound.
const INFLATE_BUDGET: usize = 1 << 20;
/// The largest frame header.
const MAX_HEADER: usize = 14;
/// The empty stored block a sync flush ends with (RFC 7692 §7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The negotiated parameters and limits an input asks for.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub params: DeflateParams,
    pub max_message_size: usize,
    pub level: u32,
    pub eof: bool,
    pub records: bool,
    pub chunking: u8,
}

impl Setup {
    pub fn parse(ctl: [u8; 4]) -> Setup {
        let window = |nibble: u8| (nibble < 8).then_some(8 + nibble);
        Setup {
            params: DeflateParams {
                server_no_context_takeover: ctl[0] & 1 != 0,
                client_no_context_takeover: ctl[0] & 2 != 0,
                server_max_window_bits: window(ctl[1] & 0xf),
                client_max_window_bits: window(ctl[1] >> 4),
            },
            max_message_size: (usize::from(ctl[2]) + 1) * 256,
            level: u32::from(ctl[3] & 0xf) % 10,
            eof: ctl[3] & 0x10 != 0,
            records: ctl[0] & 4 != 0,
            chunking: ctl[0] >> 3,
        }
    }

    /// The window the client compresses with: zlib makes no 8-bit raw
    /// streams, it uses 9 (which the server's inflater covers).
    fn client_window(&self) -> u8 {
        self.params.client_max_window_bits.unwrap_or(15).max(9)
    }
}

// ---- building a client's stream -----------------------------------------

/// A corruption of one built message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// Flip bit `at & 7` of a compressed byte at a position `at` picks.
    FlipBit,
    /// Cut the compressed data at `at`/256 of its length.
    Truncate,
    /// RSV1 on the second frame (or on an uncompressed message's first).
    Rsv1OnContinuation,
    /// The compressed data sent without RSV1.
    ClearRsv1,
    /// `at` pseudo-random bytes after the compressed data.
    AppendGarbage,
    /// A text message whose bytes are not UTF-8 (compressed as they are).
    InvalidUtf8,
    /// The last fragment without FIN.
    NoFin,
    /// The message ends its deflate stream with a BFINAL block.
    FinalBlock,
}

impl Corruption {
    pub fn from_byte(b: u8) -> Corruption {
        [
            Corruption::FlipBit,
            Corruption::Truncate,
            Corruption::Rsv1OnContinuation,
            Corruption::ClearRsv1,
            Corruption::AppendGarbage,
            Corruption::InvalidUtf8,
            Corruption::NoFin,
            Corruption::FinalBlock,
        ][usize::from(b & 7)]
    }

    pub fn to_byte(self) -> u8 {
        self as u8
    }
}

/// One message to build, as a record of the input encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub text: bool,
    pub uncompressed: bool,
    /// 1..=4.
    pub fragments: u8,
    pub pings: bool,
    /// `Some((units, byte))`: `byte` repeated in 256-byte units.
    pub repeat: Option<(u16, u8)>,
    pub raw: Vec<u8>,
    pub corrupt: Option<(Corruption, u8)>,
    pub per_fragment: bool,
}

impl Record {
    /// A compressed message in one frame.
    pub fn compressed(text: bool, payload: &[u8]) -> Record {
        Record {
            text,
            uncompressed: false,
            fragments: 1,
            pings: false,
            repeat: None,
            raw: payload.to_vec(),
            corrupt: None,
            per_fragment: false,
        }
    }

    fn parse(body: &mut &[u8]) -> Option<Record> {
        let kind = take(body, 1)?[0];
        let len = match take(body, 1)?[0] {
            0xff => u16::from_le_bytes(take(body, 2)?.try_into().ok()?),
            n => u16::from(n),
        };
        let (repeat, raw) = if kind & 0x20 != 0 {
            (Some((len, take(body, 1)?[0])), Vec::new())
        } else {
            (None, take(body, usize::from(len).min(body.len()))?.to_vec())
        };
        let corrupt = if kind & 0x40 != 0 {
            let c = take(body, 2)?;
            Some((Corruption::from_byte(c[0]), c[1]))
        } else {
            None
        };
        Some(Record {
            text: kind & 1 != 0,
            uncompressed: kind & 2 != 0,
            fragments: ((kind >> 2) & 3) + 1,
            pings: kind & 0x10 != 0,
            repeat,
            raw,
            corrupt,
            per_fragment: kind & 0x80 != 0,
        })
    }

    /// The bytes that parse back to this record (for the seed generator).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let kind = self.text as u8
            | (self.uncompressed as u8) << 1
            | (self.fragments.clamp(1, 4) - 1) << 2
            | (self.pings as u8) << 4
            | (self.repeat.is_some() as u8) << 5
            | (self.corrupt.is_some() as u8) << 6
            | (self.per_fragment as u8) << 7;
        out.push(kind);
        let len = match self.repeat {
            Some((units, _)) => units,
            None => self.raw.len() as u16,
        };
        if len < 0xff {
            out.push(len as u8);
        } else {
            out.push(0xff);
            out.extend(len.to_le_bytes());
        }
        match self.repeat {
            Some((_, byte)) => out.push(byte),
            None => out.extend(&self.raw),
        }
        if let Some((c, at)) = self.corrupt {
            out.extend([c.to_byte(), at]);
        }
    }

    /// The message's payload, and whether it is valid for its type.
    fn payload(&self) -> (Vec<u8>, bool) {
        match self.repeat {
            Some((units, byte)) => {
                let len = (usize::from(units) * 256).min(MAX_REPEAT);
                if self.text {
                    let c = ['a', 'é', '€', '𝄞'][usize::from(byte & 3)];
                    (c.to_string().repeat(len / c.len_utf8()).into_bytes(), true)
                } else {
                    (vec![byte; len], true)
                }
            }
            None if self.text && self.corrupt.is_some_and(|(c, _)| c == Corruption::InvalidUtf8) => {
                let valid = std::str::from_utf8(&self.raw).is_ok();
                (self.raw.clone(), valid)
            }
            None if self.text => (String::from_utf8_lossy(&self.raw).into_owned().into_bytes(), true),
            None => (self.raw.clone(), true),
        }
    }
}

fn take<'a>(body: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if body.len() < n {
        return None;
    }
    let (head, rest) = body.split_at(n);
    *body = rest;
    Some(head)
}

/// The records of a body, as many as it holds (and the caps allow).
pub fn parse_records(mut body: &[u8]) -> Vec<Record> {
    let mut records = Vec::new();
    while records.len() < MAX_MESSAGES {
        match Record::parse(&mut body) {
            Some(r) => records.push(r),
            None => break,
        }
    }
    records
}

/// The control bytes and records that make an input (for the seed generator).
pub fn encode_records(ctl: [u8; 4], records: &[Record]) -> Vec<u8> {
    let mut out = ctl.to_vec();
    out[0] |= 4;
    for r in records {
        r.encode(&mut out);
    }
    out
}

/// xorshift32: masking keys, fragment cuts and garbage, deterministic.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    fn key(&mut self) -> [u8; 4] {
        self.next().to_le_bytes()
    }
}

/// Deflates `input` onto `out` with `flush`, as zlib would for a sender.
fn deflate(compress: &mut Compress, input: &[u8], out: &mut Vec<u8>, flush: FlushCompress) {
    let start = compress.total_in();
    loop {
        out.reserve(input.len() / 2 + 64);
        let consumed = (compress.total_in() - start) as usize;
        let status = compress.compress_vec(&input[consumed..], out, flush).expect("flate2 compresses");
        let consumed = (compress.total_in() - start) as usize;
        let done = match flush {
            FlushCompress::Finish => status == flate2::Status::StreamEnd,
            _ => consumed == input.len() && out.len() < out.capacity(),
        };
        if done {
            return;
        }
    }
}

/// Ends a message's compressed data as §7.2.1 says: the tail of the sync
/// flush cut. zlib writes nothing at all for a flush with no new input
/// after a flush (an empty message or last fragment with the context
/// kept); the receiver's tail must then still find a block header, so the
/// sender writes the header byte of an empty stored block, `00` (what
/// §7.2.3.6 sends for an empty message).
fn end_message(out: &mut Vec<u8>) {
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    } else if out.is_empty() {
        out.push(0x00);
    }
}

/// What the built stream should come out as.
#[derive(Debug, Default)]
pub struct Expected {
    /// The messages before the first corrupted or oversized one.
    pub messages: Vec<Message>,
    /// A message was corrupted: after `messages`, anything may happen.
    pub corrupted: bool,
    /// A valid message over `max_message_size` came right after `messages`.
    pub too_big: bool,
}

/// The client's wire bytes for `records`, and what the server should deliver.
pub fn build(setup: &Setup, records: &[Record]) -> (Vec<u8>, Expected) {
    let window = setup.client_window();
    let no_context = setup.params.client_no_context_takeover;
    let level = Compression::new(setup.level);
    let mut compress = Compress::new_with_window_bits(level, false, window);
    let mut rng = Rng(0x9e37_79b9);
    let mut wire = BytesMut::new();
    let mut expected = Expected::default();
    let mut built = 0;
    let frame = |wire: &mut BytesMut, rng: &mut Rng, fin: bool, rsv1: bool, opcode: OpCode, payload: &[u8]| {
        let header = FrameHeader { fin, rsv1, ..FrameHeader::new(opcode) };
        encode_frame(header, payload, Some(rng.key()), wire);
    };
    for record in records {
        let (payload, valid_text) = record.payload();
        built += payload.len();
        if built > MAX_BUILT {
            break;
        }
        let corrupt = record.corrupt;
        let kind = corrupt.map(|(c, _)| c);
        let at = corrupt.map_or(0, |(_, at)| usize::from(at));
        let compressed = !record.uncompressed;
        let n = usize::from(record.fragments.clamp(1, 4));
        // The fragments' payloads (compressed or not), in order.
        let mut pieces: Vec<Vec<u8>> = if compressed && record.per_fragment {
            let cuts = cut_points(payload.len(), n, &mut rng);
            let mut pieces = Vec::new();
            for (i, w) in cuts.windows(2).enumerate() {
                let mut out = Vec::new();
                let last = i == n - 1;
                let flush = if last && kind == Some(Corruption::FinalBlock) { FlushCompress::Finish } else { FlushCompress::Sync };
                deflate(&mut compress, &payload[w[0]..w[1]], &mut out, flush);
                if last {
                    end_message(&mut out);
                }
                pieces.push(out);
            }
            pieces
        } else {
            let data = if compressed {
                let mut out = Vec::new();
                let flush = if kind == Some(Corruption::FinalBlock) { FlushCompress::Finish } else { FlushCompress::Sync };
                deflate(&mut compress, &payload, &mut out, flush);
                end_message(&mut out);
                out
            } else {
                payload.clone()
            };
            let cuts = cut_points(data.len(), n, &mut rng);
            cuts.windows(2).map(|w| data[w[0]..w[1]].to_vec()).collect()
        };
        if compressed && (no_context || kind == Some(Corruption::FinalBlock)) {
            compress.reset();
        }
        // Corruptions of the data itself.
        let total: usize = pieces.iter().map(Vec::len).sum();
        match kind {
            Some(Corruption::FlipBit) if total > 0 => {
                let mut i = at * total / 256;
                for p in pieces.iter_mut() {
                    if i < p.len() {
                        p[i] ^= 1 << (at & 7);
                        break;
                    }
                    i -= p.len();
                }
            }
            Some(Corruption::Truncate) => {
                let mut keep = at * total / 256;
                for p in pieces.iter_mut() {
                    let k = keep.min(p.len());
                    p.truncate(k);
                    keep -= k;
                }
            }
            Some(Corruption::AppendGarbage) => {
                let last = pieces.last_mut().expect("at least one fragment");
                last.extend((0..at.max(1)).map(|_| rng.next() as u8));
            }
            _ => {}
        }
        let data_opcode = if record.text { OpCode::Text } else { OpCode::Binary };
        for (i, piece) in pieces.iter().enumerate() {
            if record.pings && (i > 0 || n == 1) {
                frame(&mut wire, &mut rng, true, false, OpCode::Ping, &[i as u8; 3]);
            }
            let opcode = if i == 0 { data_opcode } else { OpCode::Continuation };
            let fin = i == n - 1 && kind != Some(Corruption::NoFin);
            let rsv1 = match kind {
                Some(Corruption::ClearRsv1) => false,
                Some(Corruption::Rsv1OnContinuation) if n > 1 => compressed || i == 1,
                Some(Corruption::Rsv1OnContinuation) => true,
                _ => compressed && i == 0,
            };
            frame(&mut wire, &mut rng, fin, rsv1, opcode, piece);
        }
        if expected.corrupted || expected.too_big {
            continue;
        }
        // A corruption that leaves the message as it was (a text message
        // that was UTF-8 anyway, an RSV1 cleared on a message sent plain)
        // still counts: the stream is no longer the client's.
        if corrupt.is_some() || !valid_text {
            expected.corrupted = true;
        } else if payload.len() > setup.max_message_size {
            expected.too_big = true;
        } else if record.text {
            expected.messages.push(Message::text(String::from_utf8(payload).expect("valid text")));
        } else {
            expected.messages.push(Message::binary(payload));
        }
    }
    (wire.to_vec(), expected)
}

/// `n` + 1 ascending cut positions from 0 to `len`.
fn cut_points(len: usize, n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut cuts: Vec<usize> = (1..n).map(|_| if len == 0 { 0 } else { rng.next() as usize % (len + 1) }).collect();
    cuts.sort_unstable();
    let mut out = vec![0];
    out.extend(cuts);
    out.push(len);
    out
}

// ---- running the server ---------------------------------------------------

/// The server end and what the harness saw of it.
struct Server {
    conn: Connection,
    max: usize,
    delivered: Vec<Message>,
    closed: Option<CloseInfo>,
    /// Follows what the server writes, frame by frame.
    written: FrameDecoder,
    written_buf: BytesMut,
    wrote_close: Option<CloseFrame>,
}

impl Server {
    fn new(setup: &Setup, now: Instant) -> Server {
        let config = Config::default()
            .max_message_size(setup.max_message_size)
            .ping_interval(None)
            .idle_timeout(None);
        let mut conn = Connection::new(Role::Server, config, now);
        conn.enable_deflate(&setup.params, &DeflateConfig::default());
        assert!(conn.is_deflate_enabled());
        let mut written = FrameDecoder::new(Role::Client, usize::MAX);
        written.allow_rsv1(true);
        Server {
            conn,
            max: setup.max_message_size,
            delivered: Vec::new(),
            closed: None,
            written,
            written_buf: BytesMut::new(),
            wrote_close: None,
        }
    }

    /// Delivers `piece`, reading until the connection no longer pauses.
    fn read(&mut self, buf: &mut BytesMut, piece: &[u8], now: Instant) {
        buf.extend_from_slice(piece);
        let limit = self.max;
        let input = buf.len();
        for round in 0.. {
            assert!(round < 100_000, "input_paused never clears");
            let before = buf.len();
            let ((), peak) = alloc::peak_during(|| self.conn.handle_read(buf, now));
            // Inflation is bounded per call, whatever the data inflates to:
            // the budget, a message over it, a message held, and per input
            // byte a small message's allocation and its event.
            let bound = INFLATE_BUDGET + 3 * limit + 256 * input + (256 << 10);
            assert!(peak <= bound, "handle_read grew the heap by {peak} bytes (bound {bound}, limit {limit}, {input} bytes in)");
            self.check_buffered();
            if !self.conn.input_paused() {
                break;
            }
            assert!(self.conn.state() != State::Closed, "input paused on a closed connection");
            assert!(buf.len() < before, "handle_read paused without consuming anything");
            assert!(!buf.is_empty(), "input paused with nothing left to read");
            // A driver may take the events between the calls, or not.
            if round % 2 == 0 {
                self.drain();
            }
        }
        if self.conn.state() == State::Closed {
            assert!(buf.is_empty(), "input kept after Closed");
        } else {
            assert!(buf.len() < (1 << 20) + MAX_HEADER, "{} input bytes left unread", buf.len());
        }
        self.drain();
    }

    fn check_buffered(&self) {
        let held = self.conn.buffered_bytes();
        assert!(held <= self.max + 1, "{held} bytes of a partial message held (max_message_size {})", self.max);
    }

    /// Takes every event and everything written, checking both.
    fn drain(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            assert!(self.closed.is_none(), "event after Closed: {event:?}");
            match event {
                Event::Message(message) => {
                    assert!(message.len() <= self.max, "message of {} bytes over max_message_size {}", message.len(), self.max);
                    if let Message::Text(text) = &message {
                        assert!(std::str::from_utf8(text.as_bytes()).is_ok(), "text that is not UTF-8");
                    }
                    self.delivered.push(message);
                }
                Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= 125),
                Event::Closed(info) => {
                    assert_eq!(self.conn.state(), State::Closed, "Closed event but state {:?}", self.conn.state());
                    if let CloseCause::Protocol(err) = &info.cause {
                        assert!(
                            [CloseCode::PROTOCOL_ERROR, CloseCode::INVALID_PAYLOAD, CloseCode::MESSAGE_TOO_BIG].contains(&info.code),
                            "failed with close code {} ({err})",
                            info.code.0
                        );
                        assert_eq!(info.code, err.close_code(), "closed with a code its error does not map to: {err}");
                    }
                    self.closed = Some(info);
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
        self.check_buffered();
        assert_eq!(self.conn.state() == State::Closed, self.closed.is_some(), "state {:?}, Closed {:?}", self.conn.state(), self.closed);
        if self.closed.is_some() {
            assert_eq!(self.conn.buffered_bytes(), 0, "a partial message held after Closed");
        }
        let out = self.conn.transmit_bytes().to_vec();
        self.conn.advance_transmit(out.len());
        self.written_buf.extend_from_slice(&out);
        loop {
            match self.written.decode(&mut self.written_buf) {
                Ok(Some(frame)) => {
                    assert!(self.wrote_close.is_none(), "server wrote a frame after its close frame: {frame:?}");
                    let h = frame.header;
                    assert!(h.fin && !h.rsv1 && !h.rsv2 && !h.rsv3, "server wrote {h:?} unprompted");
                    match h.opcode {
                        OpCode::Pong => {}
                        OpCode::Close => {
                            let close = CloseFrame::parse(&frame.payload)
                                .unwrap_or_else(|e| panic!("server wrote an invalid close frame: {e}"));
                            self.wrote_close = Some(close.unwrap_or(CloseFrame { code: CloseCode::NO_STATUS, reason: String::new() }));
                        }
                        other => panic!("server wrote a {other:?} frame unprompted"),
                    }
                }
                Ok(None) => break,
                Err(err) => panic!("server wrote an invalid frame: {err}"),
            }
        }
    }
}

/// The `inflate` target.
pub fn inflate(data: &[u8]) {
    let Some((ctl, body)) = data.split_first_chunk::<4>() else { return };
    let setup = Setup::parse(*ctl);
    let (wire, expected) = if setup.records {
        let (wire, expected) = build(&setup, &parse_records(body));
        (wire, Some(expected))
    } else {
        (body.to_vec(), None)
    };
    let now = Instant::now();
    let mut server = Server::new(&setup, now);
    let mut buf = BytesMut::new();
    let mut at = 0;
    let mut checked = 0;
    for piece in pieces(setup.chunking, wire.len()) {
        server.read(&mut buf, &wire[at..at + piece], now);
        at += piece;
        if let Some(expected) = &expected {
            checked = check_prefix(&server, expected, checked);
        }
    }
    // Nothing new: a call must not emit or change anything.
    let delivered = server.delivered.len();
    server.read(&mut buf, &[], now);
    assert_eq!(server.delivered.len(), delivered, "a message out of no new input");
    if let Some(expected) = &expected {
        check_outcome(&server, expected);
    }
    if let Some(info) = &server.closed {
        if let CloseCause::Protocol(_) = info.cause {
            let wrote = server.wrote_close.as_ref().expect("a failure writes a close frame");
            assert_eq!(wrote.code, info.code, "the close frame's code is not the one reported");
        }
    }
    if setup.eof {
        let was_closed = server.closed.is_some();
        server.conn.handle_eof();
        server.drain();
        let info = server.closed.as_ref().expect("closed after EOF");
        if !was_closed {
            assert_eq!(info.cause, CloseCause::TransportClosed);
        }
        assert!(server.conn.is_finished(), "output kept after EOF");
        assert_eq!(server.conn.buffered_bytes(), 0, "a partial message held after EOF");
    }
}

/// [`chunks::plan`], its pieces joined so that there are at most
/// [`MAX_PIECES`].
fn pieces(seed: u8, len: usize) -> Vec<usize> {
    let plan = chunks::plan(&[seed], len);
    if plan.len() <= MAX_PIECES {
        return plan;
    }
    let least = len.div_ceil(MAX_PIECES);
    let mut out = Vec::new();
    let mut run = 0;
    for piece in plan {
        run += piece;
        if run >= least {
            out.push(std::mem::take(&mut run));
        }
    }
    if run > 0 {
        out.push(run);
    }
    out
}

/// Every message delivered since the first `checked` is the one built at
/// its place, as far as they were built cleanly; returns how many are
/// checked now.
fn check_prefix(server: &Server, expected: &Expected, checked: usize) -> usize {
    let n = server.delivered.len().min(expected.messages.len());
    for i in checked.min(n)..n {
        let (got, want) = (&server.delivered[i], &expected.messages[i]);
        assert!(got == want, "message {i}: got {} but the client sent {}", summary(got), summary(want));
    }
    if !expected.corrupted && !expected.too_big {
        assert!(server.delivered.len() <= expected.messages.len(), "more messages than the client sent");
        assert!(server.closed.is_none(), "a clean stream closed the connection: {:?}", server.closed);
    }
    n
}

fn check_outcome(server: &Server, expected: &Expected) {
    check_prefix(server, expected, 0);
    let n = expected.messages.len();
    assert!(
        server.delivered.len() >= n,
        "{} of the {n} clean messages delivered (closed: {:?})",
        server.delivered.len(),
        server.closed
    );
    if expected.corrupted {
        return;
    }
    assert_eq!(server.delivered.len(), n, "more messages than the client sent");
    if expected.too_big {
        let info = server.closed.as_ref().expect("a message over the limit closes the connection");
        assert!(
            matches!(
                info.cause,
                CloseCause::Protocol(ProtocolError::MessageTooLarge { .. } | ProtocolError::FrameTooLarge { .. })
            ),
            "a message over the limit closed it with {:?}",
            info
        );
        assert_eq!(info.code, CloseCode::MESSAGE_TOO_BIG);
    } else {
        assert_eq!(server.conn.state(), State::Open, "a clean stream closed the connection: {:?}", server.closed);
        assert_eq!(server.conn.buffered_bytes(), 0, "bytes held after whole messages");
    }
}

fn summary(message: &Message) -> String {
    let bytes = message.as_bytes();
    let kind = if message.as_text().is_some() { "text" } else { "binary" };
    format!("{kind} of {} bytes {:02x?}", bytes.len(), &bytes[..bytes.len().min(16)])
}
