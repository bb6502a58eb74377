//! A two-ended harness for driving `Connection`s without I/O: a server and a
//! client joined by an in-memory "wire", a fake clock (a base `Instant` plus
//! offsets), and helpers to build raw frames and decode what a connection
//! wrote.
#![allow(dead_code)]

use std::io::IoSlice;
use std::time::{Duration, Instant};

use blaze_proto::bytes::BytesMut;
use blaze_proto::frame::{encode_frame, DecodedFrame, FrameDecoder, FrameHeader, OpCode, Role};
use blaze_proto::{CloseCode, CloseFrame, CloseInfo, Config, Connection, Event};

/// The masking key of the RFC 6455 §5.7 example; any key works.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Default config with no timers, so tests that are not about time are not
/// disturbed by heartbeats.
pub fn quiet() -> Config {
    Config::default().ping_interval(None).idle_timeout(None)
}

// ---- raw frames --------------------------------------------------------

/// A masked (client-to-server) frame with the given FIN bit.
pub fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let header = FrameHeader { fin, ..FrameHeader::new(opcode) };
    encode_frame(header, payload, Some(MASK), &mut out);
    out.to_vec()
}

/// An unmasked (server-to-client) frame with the given FIN bit.
pub fn server_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let header = FrameHeader { fin, ..FrameHeader::new(opcode) };
    encode_frame(header, payload, None, &mut out);
    out.to_vec()
}

/// A close payload: big-endian code, then the reason bytes as given.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(reason);
    out
}

/// Concatenates frames into one byte stream.
pub fn concat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.iter().flatten().copied().collect()
}

// ---- output ------------------------------------------------------------

/// Takes everything queued via `transmit_slices` (vectored writes of at most
/// 16 slices), marking it written.
pub fn take_output(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut slices = [IoSlice::new(&[]); 16];
        let n = conn.transmit_slices(&mut slices);
        if n == 0 {
            break;
        }
        let mut written = 0;
        for slice in &slices[..n] {
            out.extend_from_slice(slice);
            written += slice.len();
        }
        conn.advance_transmit(written);
    }
    assert!(!conn.wants_write());
    assert_eq!(conn.pending_bytes(), 0);
    out
}

/// Like [`take_output`] but through `transmit_bytes`, one slice at a time.
pub fn take_output_bytes(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while conn.wants_write() {
        let chunk = conn.transmit_bytes().to_vec();
        assert!(!chunk.is_empty(), "wants_write but transmit_bytes is empty");
        conn.advance_transmit(chunk.len());
        out.extend_from_slice(&chunk);
    }
    out
}

/// Decodes a byte stream `sender` wrote, with the rules its peer applies
/// (masking direction, control frame limits); panics on an invalid frame
/// or a trailing partial frame.
pub fn decode_frames(sender: Role, bytes: &[u8]) -> Vec<DecodedFrame> {
    let reader = match sender {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut decoder = FrameDecoder::new(reader, usize::MAX);
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).expect("connection wrote an invalid frame") {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "connection wrote a partial frame ({} bytes left)", buf.len());
    frames
}

/// Checks what an endpoint wrote is a valid RFC 6455 stream: valid frames,
/// no data frame interleaving broken, valid close payloads, and nothing
/// after the first close frame. Returns the frames.
pub fn check_stream(sender: Role, bytes: &[u8]) -> Vec<DecodedFrame> {
    let frames = decode_frames(sender, bytes);
    if let Some(pos) = frames.iter().position(|f| f.header.opcode == OpCode::Close) {
        assert_eq!(pos, frames.len() - 1, "frames after the close frame: {:?}", &frames[pos..]);
        CloseFrame::parse(&frames[pos].payload).expect("close frame we sent is invalid");
    }
    for frame in &frames {
        if sender == Role::Client {
            assert!(frame.mask.is_some(), "client frame not masked");
        } else {
            assert!(frame.mask.is_none(), "server frame masked");
        }
    }
    frames
}

/// The code and reason of a close frame (`None` for an empty payload).
pub fn close_of(frame: &DecodedFrame) -> Option<(u16, String)> {
    assert_eq!(frame.header.opcode, OpCode::Close);
    CloseFrame::parse(&frame.payload).expect("valid close payload").map(|f| (f.code.0, f.reason))
}

/// The single close frame at the end of `bytes` written by `sender`.
pub fn last_close(sender: Role, bytes: &[u8]) -> Option<(u16, String)> {
    let frames = check_stream(sender, bytes);
    let last = frames.last().expect("no frames written");
    close_of(last)
}

// ---- events ------------------------------------------------------------

pub fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

/// Feeds `bytes` in one read and returns the events it caused.
pub fn feed(conn: &mut Connection, bytes: &[u8], now: Instant) -> Vec<Event> {
    let mut buf = BytesMut::from(bytes);
    conn.handle_read(&mut buf, now);
    events(conn)
}

/// The `Closed` info in `events`, checking it is there exactly once and last.
pub fn closed_in(events: &[Event]) -> CloseInfo {
    let closed: Vec<&CloseInfo> =
        events.iter().filter_map(|e| if let Event::Closed(info) = e { Some(info) } else { None }).collect();
    assert_eq!(closed.len(), 1, "expected exactly one Closed in {events:?}");
    assert!(matches!(events.last(), Some(Event::Closed(_))), "Closed is not the last event: {events:?}");
    closed[0].clone()
}

pub fn code(n: u16) -> CloseCode {
    CloseCode(n)
}

// ---- two ends ----------------------------------------------------------

/// A server and a client connection after the handshake, and a fake clock.
#[derive(Debug)]
pub struct Pair {
    pub server: Connection,
    pub client: Connection,
    pub base: Instant,
    pub now: Instant,
}

impl Pair {
    pub fn new(config: Config) -> Pair {
        Pair::with_configs(config.clone(), config)
    }

    pub fn with_configs(server: Config, client: Config) -> Pair {
        let base = Instant::now();
        Pair {
            server: Connection::new(Role::Server, server, base),
            client: Connection::new(Role::Client, client, base),
            base,
            now: base,
        }
    }

    /// The instant `offset` after the pair was created.
    pub fn at(&self, offset: Duration) -> Instant {
        self.base + offset
    }

    /// Moves the fake clock to `offset` after creation.
    pub fn set_time(&mut self, offset: Duration) {
        self.now = self.base + offset;
    }

    /// Moves everything the client queued to the server; returns the bytes.
    pub fn client_to_server(&mut self) -> Vec<u8> {
        let bytes = take_output(&mut self.client);
        if !bytes.is_empty() {
            self.server.handle_read(&mut BytesMut::from(&bytes[..]), self.now);
        }
        bytes
    }

    /// Moves everything the server queued to the client; returns the bytes.
    pub fn server_to_client(&mut self) -> Vec<u8> {
        let bytes = take_output(&mut self.server);
        if !bytes.is_empty() {
            self.client.handle_read(&mut BytesMut::from(&bytes[..]), self.now);
        }
        bytes
    }

    /// Moves bytes both ways until neither end has anything to write.
    pub fn pump(&mut self) {
        for _ in 0..16 {
            let a = self.client_to_server();
            let b = self.server_to_client();
            if a.is_empty() && b.is_empty() {
                return;
            }
        }
        panic!("the two ends keep talking");
    }

    pub fn server_events(&mut self) -> Vec<Event> {
        events(&mut self.server)
    }

    pub fn client_events(&mut self) -> Vec<Event> {
        events(&mut self.client)
    }
}

// ---- permessage-deflate ------------------------------------------------

use blaze_proto::deflate::{DeflateConfig, DeflateParams};
use flate2::{Compress, Compression, FlushCompress, Status};

/// The empty stored block a sync flush ends with (RFC 7692 §7.2.1).
pub const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A masked (client-to-server) frame with any header bits.
pub fn client_frame_with(header: FrameHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(header, payload, Some(MASK), &mut out);
    out.to_vec()
}

/// An unmasked (server-to-client) frame with any header bits.
pub fn server_frame_with(header: FrameHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(header, payload, None, &mut out);
    out.to_vec()
}

/// A header: `fin`, RSV1 = `rsv1`, the opcode.
pub fn hdr(opcode: OpCode, fin: bool, rsv1: bool) -> FrameHeader {
    FrameHeader { fin, rsv1, ..FrameHeader::new(opcode) }
}

/// A raw DEFLATE compressor independent of the library's encoder.
pub struct RawDeflate(pub Compress);

impl RawDeflate {
    pub fn new(level: u32) -> RawDeflate {
        RawDeflate(Compress::new(Compression::new(level), false))
    }

    pub fn with_window(level: u32, bits: u8) -> RawDeflate {
        RawDeflate(Compress::new_with_window_bits(Compression::new(level), false, bits))
    }

    /// Compresses `input` with `flush`, returning all output (for `Sync`,
    /// the `00 00 ff ff` tail is kept).
    pub fn run(&mut self, mut input: &[u8], flush: FlushCompress) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let (in0, out0) = (self.0.total_in(), self.0.total_out());
            let status = self.0.compress(input, &mut buf, flush).expect("compress");
            let consumed = (self.0.total_in() - in0) as usize;
            let produced = (self.0.total_out() - out0) as usize;
            out.extend_from_slice(&buf[..produced]);
            input = &input[consumed..];
            if status == Status::StreamEnd {
                break;
            }
            if flush != FlushCompress::Finish && input.is_empty() && produced < buf.len() {
                break;
            }
        }
        out
    }

    /// One message as RFC 7692 §7.2.1 sends it: sync-flushed, tail cut.
    ///
    /// An empty message right after another sync flush comes out empty:
    /// zlib emits nothing for a flush without new input, so a zlib-based
    /// peer sends an empty payload there (which the receiver must take as
    /// an empty message, context untouched).
    pub fn message(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = self.run(input, FlushCompress::Sync);
        if out.is_empty() && input.is_empty() {
            return out;
        }
        assert!(out.ends_with(&SYNC_TAIL), "a sync flush ends with the empty stored block");
        out.truncate(out.len() - 4);
        out
    }
}

/// `input` compressed as one message without context (level 6, window 15).
pub fn deflate_message(input: &[u8]) -> Vec<u8> {
    RawDeflate::new(6).message(input)
}

/// Shared-mode params: no context either way, full windows.
pub fn no_context_params() -> DeflateParams {
    DeflateParams { server_no_context_takeover: true, client_no_context_takeover: true, ..DeflateParams::default() }
}

/// A server connection with deflate on.
pub fn deflate_server(config: Config, params: &DeflateParams, deflate: &DeflateConfig) -> (Connection, Instant) {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, config, now);
    s.enable_deflate(params, deflate);
    (s, now)
}

/// A pair with deflate on at both ends, same params, each end's config.
pub fn deflate_pair(params: &DeflateParams, server: &DeflateConfig, client: &DeflateConfig) -> Pair {
    let mut pair = Pair::new(quiet());
    pair.server.enable_deflate(params, server);
    pair.client.enable_deflate(params, client);
    pair
}

/// Like [`check_stream`], for a sender with permessage-deflate on: RSV1 is
/// accepted on data frames (and only there).
pub fn check_stream_deflate(sender: Role, bytes: &[u8]) -> Vec<DecodedFrame> {
    let reader = match sender {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut decoder = FrameDecoder::new(reader, usize::MAX);
    decoder.allow_rsv1(true);
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).expect("connection wrote an invalid frame") {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "connection wrote a partial frame ({} bytes left)", buf.len());
    if let Some(pos) = frames.iter().position(|f| f.header.opcode == OpCode::Close) {
        assert_eq!(pos, frames.len() - 1, "frames after the close frame: {:?}", &frames[pos..]);
        CloseFrame::parse(&frames[pos].payload).expect("close frame we sent is invalid");
    }
    for frame in &frames {
        assert_eq!(frame.mask.is_some(), sender == Role::Client, "masking direction");
        assert!(!frame.header.rsv2 && !frame.header.rsv3);
        assert!(!frame.header.rsv1 || matches!(frame.header.opcode, OpCode::Text | OpCode::Binary), "RSV1 on {frame:?}");
    }
    frames
}

/// Feeds `bytes` in pieces cut at `cuts` (sorted offsets) through one
/// buffer, as reads would arrive; returns all events.
pub fn feed_cut(conn: &mut Connection, bytes: &[u8], cuts: &[usize], now: Instant) -> Vec<Event> {
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(start, bytes.len());
        buf.extend_from_slice(&bytes[start..cut]);
        start = cut;
        conn.handle_read(&mut buf, now);
        seen.extend(events(conn));
    }
    seen
}
