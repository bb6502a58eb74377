//! `connection`: a server and a client [`Connection`] driven against each
//! other, and against raw hostile bytes, by a structured input.
//!
//! The input ([`ConnInput`]) is two configurations and a list of steps
//! ([`Op`]): sends, pings, pongs, closes, partial deliveries of one end's
//! output to the other (in one piece or vectored), clock advances, spurious
//! timer wake-ups, end of stream, and bytes or frames no conforming peer
//! would send. It is parsed with [`arbitrary::Unstructured`] in the plain
//! layout [`ConnInput::encode`] writes, so the seed generator can build
//! meaningful inputs and libFuzzer's mutations stay local. A bit of the
//! server's configuration negotiates permessage-deflate (RFC 7692) on both
//! ends ([`ConnInput::deflate`]), so conforming traffic is compressed and
//! must round-trip, and reads that pause at the inflation budget are
//! resumed until `input_paused()` clears.
//!
//! After every step, for both ends:
//! - no panic (in the connection or the harness);
//! - everything queued for writing (with any frame already half written)
//!   decodes as whole, valid frames: masked by a client and only by a
//!   client, control frames short and unfragmented, valid close payloads,
//!   no data fragments (a connection sends whole messages), nothing after
//!   the close frame;
//! - no event after `Closed`, `Closed` exactly once, and `state()` agrees;
//!   states only move forward (`Open`, `Closing`, `Closed`);
//! - memory bounded by the configured limits: unsent output by
//!   `max_backpressure` (plus the one frame that may go past it and the
//!   control frames that are not counted), a partial message by
//!   `max_message_size`, an undecoded input remainder by `max_frame_size`
//!   plus a header;
//! - a message delivered equals the next message sent the other way (as
//!   long as no hostile byte was mixed into that direction), and text is
//!   valid UTF-8;
//! - between two conforming ends, the only protocol errors are the
//!   configured size limits;
//! - deadlines converge: a few `handle_timeout(now)` calls leave no
//!   deadline at or before `now` (a driver sleeping until `poll_timeout`
//!   must not spin).
//!
//! At the end, everything queued is delivered both ways: unless a timeout,
//! EOF or hostile input intervened, both ends are then open with every
//! message delivered, or both closed.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use blaze_proto::bytes::{BufMut, BytesMut};
use blaze_proto::deflate::{DeflateConfig, DeflateParams};
use blaze_proto::frame::{apply_mask, DecodedFrame, FrameDecoder, OpCode, Role, MAX_CONTROL_PAYLOAD};
use blaze_proto::{
    BackpressurePolicy, CloseCause, CloseCode, CloseFrame, CloseInfo, Config, Connection, Event, Message,
    PreparedMessage, ProtocolError, State, UsageError,
};

/// Steps run per input at most (longer inputs are cut), so one input
/// cannot take seconds.
const MAX_OPS: usize = 256;

/// The largest header a frame can have.
const MAX_HEADER: usize = 14;

// ---- input --------------------------------------------------------------

/// One end's configuration, 15 bytes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigInput {
    /// `max_frame_size` in units of 4 bytes.
    pub max_frame: u16,
    /// `max_message_size` in units of 4 bytes.
    pub max_message: u16,
    /// `max_backpressure` in units of 4 bytes.
    pub max_backpressure: u16,
    /// Bit 0: drop (not close) on backpressure; bit 1: no auto-pong; bit 2:
    /// heartbeats on; bit 3: an idle timeout. Bits 4-7 describe
    /// permessage-deflate ([`ConnInput::deflate`]): in the server's flags,
    /// bit 4 negotiates it, bits 5 and 6 set `server_no_context_takeover`
    /// and `client_no_context_takeover`, bit 7 compresses every message
    /// (threshold 0, not 64); in the client's, bits 4-5 and 6-7 pick the
    /// server's and the client's `max_window_bits` (absent, 9, 8, 12).
    pub flags: u8,
    /// Milliseconds.
    pub ping_interval: u16,
    /// Milliseconds.
    pub pong_timeout: u16,
    /// Milliseconds.
    pub close_timeout: u16,
    /// Milliseconds.
    pub idle_timeout: u16,
}

impl ConfigInput {
    /// Roomy limits and every timer on: what most seeds use.
    pub fn roomy() -> ConfigInput {
        ConfigInput {
            max_frame: 0x8000,
            max_message: 0xffff,
            max_backpressure: 0x8000,
            flags: 0b1100,
            ping_interval: 30_000,
            pong_timeout: 60_000,
            close_timeout: 5_000,
            idle_timeout: 60_000,
        }
    }

    pub fn config(&self, seed: u64) -> Config {
        let ms = |v: u16| Duration::from_millis(u64::from(v));
        Config::default()
            .max_frame_size(usize::from(self.max_frame) * 4)
            .max_message_size(usize::from(self.max_message) * 4)
            .max_backpressure(usize::from(self.max_backpressure) * 4)
            .backpressure_policy(if self.flags & 1 != 0 { BackpressurePolicy::Drop } else { BackpressurePolicy::Close })
            .auto_pong(self.flags & 2 == 0)
            .ping_interval((self.flags & 4 != 0).then(|| ms(self.ping_interval)))
            .pong_timeout(ms(self.pong_timeout))
            .close_timeout(ms(self.close_timeout))
            .idle_timeout((self.flags & 8 != 0).then(|| ms(self.idle_timeout)))
            .mask_seed(seed)
    }

    fn parse(u: &mut Unstructured<'_>) -> arbitrary::Result<ConfigInput> {
        Ok(ConfigInput {
            max_frame: u.arbitrary()?,
            max_message: u.arbitrary()?,
            max_backpressure: u.arbitrary()?,
            flags: u.arbitrary()?,
            ping_interval: u.arbitrary()?,
            pong_timeout: u.arbitrary()?,
            close_timeout: u.arbitrary()?,
            idle_timeout: u.arbitrary()?,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for v in [self.max_frame, self.max_message, self.max_backpressure] {
            out.extend(v.to_le_bytes());
        }
        out.push(self.flags);
        for v in [self.ping_interval, self.pong_timeout, self.close_timeout, self.idle_timeout] {
            out.extend(v.to_le_bytes());
        }
    }
}

/// Payload bytes: given literally, or one byte repeated (so a short input
/// can send a message past the 16- and 64-bit length boundaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Raw(Vec<u8>),
    /// `len` is the wire value: below 0x8000 the length itself, above it
    /// `(len & 0x7fff) * 4` (up to 128 KiB).
    Repeat { len: u16, byte: u8 },
}

impl Payload {
    pub fn len(&self) -> usize {
        match self {
            Payload::Raw(b) => b.len(),
            Payload::Repeat { len, .. } if len & 0x8000 == 0 => usize::from(*len),
            Payload::Repeat { len, .. } => usize::from(len & 0x7fff) * 4,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Payload::Raw(b) => b.clone(),
            Payload::Repeat { byte, .. } => vec![*byte; self.len()],
        }
    }

    /// The payload as text: raw bytes made valid (lossily), a repeat as a
    /// run of one character of 1 to 4 bytes, so code points straddle
    /// every boundary.
    pub fn text(&self) -> String {
        match self {
            Payload::Raw(b) => String::from_utf8_lossy(b).into_owned(),
            Payload::Repeat { byte, .. } => {
                let c = ['a', 'é', '€', '𝄞'][usize::from(byte & 3)];
                c.to_string().repeat(self.len() / c.len_utf8())
            }
        }
    }

    fn parse(u: &mut Unstructured<'_>) -> arbitrary::Result<Payload> {
        let mode: u8 = u.arbitrary()?;
        if mode & 0x80 != 0 {
            return Ok(Payload::Repeat { len: u.arbitrary()?, byte: u.arbitrary()? });
        }
        let len = if mode == 0x7f { usize::from(u.arbitrary::<u16>()?) } else { usize::from(mode) };
        let len = len.min(u.len());
        Ok(Payload::Raw(u.bytes(len)?.to_vec()))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Repeat { len, byte } => {
                out.push(0x80);
                out.extend(len.to_le_bytes());
                out.push(*byte);
            }
            Payload::Raw(b) if b.len() < 0x7f => {
                out.push(b.len() as u8);
                out.extend(b);
            }
            Payload::Raw(b) => {
                out.push(0x7f);
                out.extend((b.len() as u16).to_le_bytes());
                out.extend(b);
            }
        }
    }
}

/// Which end a step acts on (or delivers to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

impl Side {
    fn index(self) -> usize {
        self as usize
    }
}

/// One step. On the wire: a tag byte (`kind = (tag & 0x7f) % 13`, bit 7
/// picks the side), then the step's fields in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `send` a text (flags bit 0) or binary message.
    Send { side: Side, text: bool, payload: Payload },
    /// `send_prepared` (a broadcast frame).
    SendPrepared { side: Side, text: bool, payload: Payload },
    Ping { side: Side, payload: Payload },
    Pong { side: Side, payload: Payload },
    Close { side: Side, code: u16, reason: Payload },
    /// Moves up to `max` bytes (0xffff: all) of the other end's output to
    /// `to`, through `transmit_slices` or `transmit_bytes`, and reads them.
    Deliver { to: Side, max: u16, vectored: bool },
    /// Moves the clock; each end whose deadline passed handles it.
    Advance { ms: u16 },
    /// `handle_timeout(now)` whether or not a deadline is due.
    Timeout { side: Side },
    /// Raw bytes appended to what `to` reads.
    Hostile { to: Side, payload: Payload },
    /// A frame with any first byte (FIN, RSV bits, any opcode), masked
    /// correctly or not (flags bit 0 flips it), with the length encoded
    /// minimally, or (flags bits 1-2) in 16 or 64 bits.
    HostileFrame { to: Side, b0: u8, flags: u8, key: [u8; 4], payload: Payload },
    /// The transport of `side` ended.
    Eof { side: Side },
    /// Delivers everything both ways until neither end writes.
    Pump,
    /// `handle_read` with nothing new.
    Read { side: Side },
}

const KINDS: u8 = 13;

impl Op {
    fn parse(u: &mut Unstructured<'_>) -> arbitrary::Result<Op> {
        let tag: u8 = u.arbitrary()?;
        let side = if tag & 0x80 != 0 { Side::Client } else { Side::Server };
        Ok(match (tag & 0x7f) % KINDS {
            0 => Op::Send { side, text: u.arbitrary::<u8>()? & 1 != 0, payload: Payload::parse(u)? },
            1 => Op::SendPrepared { side, text: u.arbitrary::<u8>()? & 1 != 0, payload: Payload::parse(u)? },
            2 => Op::Ping { side, payload: Payload::parse(u)? },
            3 => Op::Pong { side, payload: Payload::parse(u)? },
            4 => Op::Close { side, code: u.arbitrary()?, reason: Payload::parse(u)? },
            5 => Op::Deliver { to: side, max: u.arbitrary()?, vectored: u.arbitrary::<u8>()? & 1 != 0 },
            6 => Op::Advance { ms: u.arbitrary()? },
            7 => Op::Timeout { side },
            8 => Op::Hostile { to: side, payload: Payload::parse(u)? },
            9 => Op::HostileFrame {
                to: side,
                b0: u.arbitrary()?,
                flags: u.arbitrary()?,
                key: u.arbitrary()?,
                payload: Payload::parse(u)?,
            },
            10 => Op::Eof { side },
            11 => Op::Pump,
            _ => Op::Read { side },
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let tag = |kind: u8, side: Side| kind | if side == Side::Client { 0x80 } else { 0 };
        match self {
            Op::Send { side, text, payload } | Op::SendPrepared { side, text, payload } => {
                out.push(tag(if matches!(self, Op::Send { .. }) { 0 } else { 1 }, *side));
                out.push(*text as u8);
                payload.encode(out);
            }
            Op::Ping { side, payload } => {
                out.push(tag(2, *side));
                payload.encode(out);
            }
            Op::Pong { side, payload } => {
                out.push(tag(3, *side));
                payload.encode(out);
            }
            Op::Close { side, code, reason } => {
                out.push(tag(4, *side));
                out.extend(code.to_le_bytes());
                reason.encode(out);
            }
            Op::Deliver { to, max, vectored } => {
                out.push(tag(5, *to));
                out.extend(max.to_le_bytes());
                out.push(*vectored as u8);
            }
            Op::Advance { ms } => {
                out.push(6);
                out.extend(ms.to_le_bytes());
            }
            Op::Timeout { side } => out.push(tag(7, *side)),
            Op::Hostile { to, payload } => {
                out.push(tag(8, *to));
                payload.encode(out);
            }
            Op::HostileFrame { to, b0, flags, key, payload } => {
                out.push(tag(9, *to));
                out.extend([*b0, *flags]);
                out.extend(key);
                payload.encode(out);
            }
            Op::Eof { side } => out.push(tag(10, *side)),
            Op::Pump => out.push(11),
            Op::Read { side } => out.push(tag(12, *side)),
        }
    }
}

/// The whole input: the server's and the client's configuration, the
/// client's masking seed, then steps until the bytes run out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInput {
    pub server: ConfigInput,
    pub client: ConfigInput,
    pub mask_seed: u64,
    pub ops: Vec<Op>,
}

impl<'a> Arbitrary<'a> for ConnInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<ConnInput> {
        let server = ConfigInput::parse(u)?;
        let client = ConfigInput::parse(u)?;
        let mask_seed = u.arbitrary()?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            ops.push(Op::parse(u)?);
        }
        Ok(ConnInput { server, client, mask_seed, ops })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<ConnInput> {
        Self::arbitrary(&mut u)
    }
}

impl ConnInput {
    /// The permessage-deflate both ends run with, if the server's flags
    /// negotiate it (see [`ConfigInput::flags`]): the agreed parameters and
    /// the level (the top nibble of `mask_seed`, mod 10) and threshold
    /// both ends compress with.
    pub fn deflate(&self) -> Option<(DeflateParams, DeflateConfig)> {
        let (s, c) = (self.server.flags, self.client.flags);
        if s & 0x10 == 0 {
            return None;
        }
        let window = |bits: u8| [None, Some(9), Some(8), Some(12)][usize::from(bits & 3)];
        let params = DeflateParams {
            server_no_context_takeover: s & 0x20 != 0,
            client_no_context_takeover: s & 0x40 != 0,
            server_max_window_bits: window(c >> 4),
            client_max_window_bits: window(c >> 6),
        };
        let level = (self.mask_seed >> 60) as u32 % 10;
        let config = DeflateConfig::default().level(level).threshold(if s & 0x80 != 0 { 0 } else { 64 });
        Some((params, config))
    }

    /// The bytes that parse back to this input (for the seed generator).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.server.encode(&mut out);
        self.client.encode(&mut out);
        out.extend(self.mask_seed.to_le_bytes());
        for op in &self.ops {
            op.encode(&mut out);
        }
        out
    }

    pub fn parse(data: &[u8]) -> Option<ConnInput> {
        ConnInput::arbitrary_take_rest(Unstructured::new(data)).ok()
    }
}

// ---- the two ends -------------------------------------------------------

/// One connection and everything the harness knows about it.
struct End {
    conn: Connection,
    config: Config,
    /// Bytes delivered to this end and not yet consumed.
    inbound: BytesMut,
    /// Whether hostile bytes were mixed into what this end reads: from then
    /// on, what it receives is not compared with what the peer sent.
    tainted: bool,
    /// Checks, frame by frame, what this end has written so far.
    written: FrameDecoder,
    written_partial: BytesMut,
    wrote_close: bool,
    /// Messages this end queued, in order, for the peer to receive.
    sent: VecDeque<Message>,
    closed: Option<CloseInfo>,
    last_state: State,
    eof: bool,
    /// A step touched this end since its queue was last checked (checking
    /// decodes everything queued, the costliest part of a step).
    dirty: bool,
    /// permessage-deflate is on: data frames may carry RSV1.
    deflate: bool,
}

fn peer_of(role: Role) -> Role {
    match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    }
}

fn rank(state: State) -> u8 {
    match state {
        State::Open => 0,
        State::Closing => 1,
        State::Closed => 2,
    }
}

impl End {
    fn new(role: Role, config: Config, now: Instant, deflate: Option<&(DeflateParams, DeflateConfig)>) -> End {
        let mut conn = Connection::new(role, config.clone(), now);
        let mut written = FrameDecoder::new(peer_of(role), usize::MAX);
        if let Some((params, deflate_config)) = deflate {
            conn.enable_deflate(params, deflate_config);
            written.allow_rsv1(true);
        }
        End {
            conn,
            config,
            inbound: BytesMut::new(),
            tainted: false,
            written,
            written_partial: BytesMut::new(),
            wrote_close: false,
            sent: VecDeque::new(),
            closed: None,
            last_state: State::Open,
            eof: false,
            dirty: true,
            deflate: deflate.is_some(),
        }
    }

    fn role(&self) -> Role {
        self.conn.role()
    }

    fn read(&mut self, now: Instant) {
        self.conn.handle_read(&mut self.inbound, now);
        // With deflate, a read stops after its inflation budget: a driver
        // calls again until the complete frames are all taken.
        let mut rounds = 0;
        while self.conn.input_paused() {
            rounds += 1;
            assert!(rounds < 10_000, "{:?}: input_paused never clears", self.role());
            assert!(self.conn.state() != State::Closed, "{:?}: input paused on a closed connection", self.role());
            let before = self.inbound.len();
            self.conn.handle_read(&mut self.inbound, now);
            assert!(self.inbound.len() < before || !self.conn.input_paused(), "{:?}: paused without progress", self.role());
        }
        if self.conn.state() == State::Closed {
            assert!(self.inbound.is_empty(), "{:?}: input kept after Closed", self.role());
        } else {
            // Only an incomplete frame may stay: its header announced at
            // most max_frame_size bytes.
            let bound = self.config.max_frame_size.saturating_add(MAX_HEADER);
            assert!(
                self.inbound.len() < bound,
                "{:?}: {} input bytes left undecoded (max_frame_size {})",
                self.role(),
                self.inbound.len(),
                self.config.max_frame_size
            );
        }
    }

    /// Takes up to `max` bytes of output, as a socket write would.
    fn take_output(&mut self, max: usize, vectored: bool) -> Vec<u8> {
        let mut out = Vec::new();
        if vectored {
            let mut slices = [IoSlice::new(&[]); 64];
            let n = self.conn.transmit_slices(&mut slices);
            for s in &slices[..n] {
                let take = s.len().min(max - out.len());
                out.extend_from_slice(&s[..take]);
                if out.len() == max {
                    break;
                }
            }
        } else {
            let first = self.conn.transmit_bytes();
            out.extend_from_slice(&first[..first.len().min(max)]);
        }
        self.conn.advance_transmit(out.len());
        self.record_written(&out);
        out
    }

    /// Follows the stream this end writes, frame by frame.
    fn record_written(&mut self, bytes: &[u8]) {
        self.written_partial.extend_from_slice(bytes);
        loop {
            match self.written.decode(&mut self.written_partial) {
                Ok(Some(frame)) => {
                    check_written_frame(self.role(), &frame, self.wrote_close, self.deflate);
                    self.wrote_close |= frame.header.opcode == OpCode::Close;
                }
                Ok(None) => break,
                Err(err) => panic!("{:?} wrote an invalid frame: {err}", self.role()),
            }
        }
    }

    /// Everything queued, after what is already half written, decodes as
    /// whole valid frames, within the backpressure bound.
    fn check_queued(&self) {
        let role = self.role();
        let pending = self.conn.pending_bytes();
        assert_eq!(self.conn.wants_write(), pending > 0, "{role:?}: wants_write disagrees with pending_bytes");
        if pending > 0 {
            assert!(!self.conn.transmit_bytes().is_empty(), "{role:?}: output pending but transmit_bytes is empty");
        }
        assert!(self.conn.is_finished() == (self.conn.state() == State::Closed && pending == 0));
        if self.eof {
            assert_eq!(pending, 0, "{role:?}: output kept after EOF");
            return;
        }
        // A stack array covers the usual case; initializing a large vector
        // on every check was most of this target's time.
        let mut few = [IoSlice::new(&[]); 256];
        let mut many;
        let n = self.conn.transmit_slices(&mut few);
        let mut slices = &few[..n];
        if n == few.len() {
            many = vec![IoSlice::new(&[]); 1 << 16];
            let n = self.conn.transmit_slices(&mut many);
            assert!(n < many.len(), "{role:?}: more than 65535 output slices");
            slices = &many[..n];
        }
        let mut stream = BytesMut::from(&self.written_partial[..]);
        let mut total = 0;
        for s in slices {
            assert!(!s.is_empty(), "{role:?}: empty slice in transmit_slices");
            stream.extend_from_slice(s);
            total += s.len();
        }
        assert_eq!(total, pending, "{role:?}: transmit_slices does not add up to pending_bytes");
        assert!(
            self.conn.transmit_bytes().len() <= pending
                && slices.first().is_none_or(|s| **s == *self.conn.transmit_bytes()),
            "{role:?}: transmit_bytes is not the first slice"
        );
        let mut decoder = FrameDecoder::new(peer_of(role), usize::MAX);
        decoder.allow_rsv1(self.deflate);
        let mut seen_close = self.wrote_close;
        let (mut counted, mut uncounted, mut largest) = (0usize, 0usize, 0usize);
        loop {
            let before = stream.len();
            match decoder.decode(&mut stream) {
                Ok(Some(frame)) => {
                    check_written_frame(role, &frame, seen_close, self.deflate);
                    seen_close |= frame.header.opcode == OpCode::Close;
                    let size = before - stream.len();
                    match frame.header.opcode {
                        // Pings from the heartbeat and the one close frame
                        // are not counted against max_backpressure.
                        OpCode::Ping | OpCode::Close => uncounted += size,
                        _ => {
                            counted += size;
                            largest = largest.max(size);
                        }
                    }
                }
                Ok(None) => break,
                Err(err) => panic!("{role:?} queued an invalid frame: {err}"),
            }
        }
        assert!(stream.is_empty(), "{role:?}: queued output ends in a partial frame ({} bytes)", stream.len());
        let bound = self.config.max_backpressure + MAX_HEADER + largest;
        assert!(
            counted <= bound,
            "{role:?}: {counted} bytes of data and pongs queued (max_backpressure {}, largest frame {largest}, \
             plus {uncounted} of pings and close)",
            self.config.max_backpressure
        );
        assert!(
            self.conn.buffered_bytes() <= self.config.max_message_size,
            "{role:?}: {} bytes of a partial message held (max_message_size {})",
            self.conn.buffered_bytes(),
            self.config.max_message_size
        );
    }
}

/// What one end may write: the rules its peer enforces, and that a
/// connection sends whole messages, valid close payloads, and nothing after
/// its close frame. RSV1 (compressed) only on data frames, with deflate on.
fn check_written_frame(role: Role, frame: &DecodedFrame, after_close: bool, deflate: bool) {
    assert!(!after_close, "{role:?} wrote a frame after its close frame: {frame:?}");
    let h = frame.header;
    assert!(!h.rsv2 && !h.rsv3, "{role:?} set RSV2 or RSV3");
    assert!(!h.rsv1 || (deflate && !h.opcode.is_control()), "{role:?} set RSV1 on {:?} (deflate {deflate})", h.opcode);
    assert!(h.fin && h.opcode != OpCode::Continuation, "{role:?} wrote a fragment");
    if h.opcode == OpCode::Close {
        CloseFrame::parse(&frame.payload).unwrap_or_else(|e| panic!("{role:?} wrote an invalid close frame: {e}"));
    }
}

/// Drives the two ends through an input's steps.
pub struct Harness {
    ends: [End; 2],
    now: Instant,
    /// A timeout or EOF ended a connection without a close handshake.
    abrupt: bool,
}

impl Harness {
    pub fn new(input: &ConnInput) -> Harness {
        let now = Instant::now();
        let deflate = input.deflate();
        Harness {
            ends: [
                End::new(Role::Server, input.server.config(0), now, deflate.as_ref()),
                End::new(Role::Client, input.client.config(input.mask_seed), now, deflate.as_ref()),
            ],
            now,
            abrupt: false,
        }
    }

    fn end(&mut self, side: Side) -> &mut End {
        let end = &mut self.ends[side.index()];
        end.dirty = true;
        end
    }

    pub fn run(input: &ConnInput) {
        let mut h = Harness::new(input);
        for op in &input.ops {
            h.step(op);
            h.check();
        }
        h.finish();
    }

    pub fn step(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Send { side, text, payload } | Op::SendPrepared { side, text, payload } => {
                let message = if *text { Message::text(payload.text()) } else { Message::binary(payload.bytes()) };
                let end = self.end(*side);
                let result = if matches!(op, Op::Send { .. }) {
                    end.conn.send(message.clone())
                } else {
                    end.conn.send_prepared(&PreparedMessage::new(&message))
                };
                match result {
                    Ok(()) => end.sent.push_back(message),
                    Err(UsageError::Closed) => assert_ne!(end.conn.state(), State::Open),
                    Err(UsageError::Backpressure) => {}
                    Err(err) => panic!("send failed with {err:?}"),
                }
            }
            Op::Ping { side, payload } | Op::Pong { side, payload } => {
                let end = self.end(*side);
                let bytes = payload.bytes();
                let was_open = end.conn.is_open();
                let result =
                    if matches!(op, Op::Ping { .. }) { end.conn.ping(&bytes) } else { end.conn.pong(&bytes) };
                match result {
                    Ok(()) => assert!(was_open && bytes.len() <= MAX_CONTROL_PAYLOAD),
                    Err(UsageError::Closed) => assert!(!was_open),
                    Err(UsageError::Backpressure) => assert!(was_open),
                    Err(UsageError::ControlPayloadTooLong) => assert!(bytes.len() > MAX_CONTROL_PAYLOAD),
                    Err(err) => panic!("ping/pong failed with {err:?}"),
                }
            }
            Op::Close { side, code, reason } => {
                let end = self.end(*side);
                match end.conn.close(CloseCode(*code), &reason.text(), now) {
                    Ok(()) => assert!(CloseCode(*code).is_sendable()),
                    Err(UsageError::UnsendableCloseCode(c)) => assert!(!CloseCode(c).is_sendable()),
                    Err(err) => panic!("close failed with {err:?}"),
                }
            }
            Op::Deliver { to, max, vectored } => {
                let max = if *max == u16::MAX { usize::MAX } else { usize::from(*max) };
                self.deliver(*to, max, *vectored);
            }
            Op::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(*ms));
                for side in [Side::Server, Side::Client] {
                    self.fire_due_timers(side);
                }
            }
            Op::Timeout { side } => {
                let now = self.now;
                self.end(*side).conn.handle_timeout(now);
                self.fire_due_timers(*side);
            }
            Op::Hostile { to, payload } => {
                let end = self.end(*to);
                end.tainted = true;
                end.inbound.extend_from_slice(&payload.bytes());
                end.read(now);
            }
            Op::HostileFrame { to, b0, flags, key, payload } => {
                let end = self.end(*to);
                end.tainted = true;
                let masked = (end.role() == Role::Server) != (flags & 1 != 0);
                let frame = raw_frame(*b0, (flags >> 1) & 3, masked.then_some(*key), &payload.bytes());
                end.inbound.extend_from_slice(&frame);
                end.read(now);
            }
            Op::Eof { side } => {
                let end = self.end(*side);
                end.conn.handle_eof();
                end.eof = true;
                end.written_partial.clear();
                self.abrupt = true;
            }
            Op::Pump => self.pump(),
            Op::Read { side } => self.end(*side).read(now),
        }
    }

    /// Moves up to `max` bytes of the other end's output to `to`.
    fn deliver(&mut self, to: Side, max: usize, vectored: bool) -> usize {
        let now = self.now;
        let from = match to {
            Side::Server => Side::Client,
            Side::Client => Side::Server,
        };
        let bytes = self.end(from).take_output(max, vectored);
        let end = self.end(to);
        end.inbound.extend_from_slice(&bytes);
        end.read(now);
        bytes.len()
    }

    /// Delivers both ways until neither end has anything to write.
    fn pump(&mut self) {
        for _ in 0..64 {
            let moved = self.deliver(Side::Server, usize::MAX, true) + self.deliver(Side::Client, usize::MAX, true);
            self.check();
            if moved == 0 {
                return;
            }
        }
        panic!("the two ends keep talking");
    }

    /// Runs the timers of `side` that are due, as a driver sleeping until
    /// `poll_timeout` would: a few rounds must leave nothing due.
    fn fire_due_timers(&mut self, side: Side) {
        let now = self.now;
        let end = self.end(side);
        for _ in 0..8 {
            match end.conn.poll_timeout() {
                Some(at) if at <= now => end.conn.handle_timeout(now),
                _ => return,
            }
        }
        panic!("{side:?}: a deadline stays due at now ({:?} after it)", now - end.conn.poll_timeout().unwrap());
    }

    /// The invariants checked after every step.
    pub fn check(&mut self) {
        for i in 0..2 {
            self.drain_events(i);
            if std::mem::take(&mut self.ends[i].dirty) {
                self.ends[i].check_queued();
            }
        }
    }

    fn drain_events(&mut self, i: usize) {
        let (a, b) = self.ends.split_at_mut(1);
        let (end, peer) = if i == 0 { (&mut a[0], &mut b[0]) } else { (&mut b[0], &mut a[0]) };
        let role = end.role();
        while let Some(event) = end.conn.poll_event() {
            assert!(end.closed.is_none(), "{role:?}: event after Closed: {event:?}");
            match event {
                Event::Message(message) => {
                    assert!(message.len() <= end.config.max_message_size, "{role:?}: message over max_message_size");
                    if let Message::Text(text) = &message {
                        // `as_str` trusts the connection's validation.
                        assert!(std::str::from_utf8(text.as_bytes()).is_ok(), "{role:?}: text that is not UTF-8");
                    }
                    if !end.tainted {
                        let expected = peer.sent.pop_front();
                        assert!(
                            expected.as_ref() == Some(&message),
                            "{role:?} received {} (len {}) but the peer sent {:?} next",
                            summary(&message),
                            message.len(),
                            expected.as_ref().map(summary)
                        );
                    }
                }
                Event::Ping(p) | Event::Pong(p) => assert!(p.len() <= MAX_CONTROL_PAYLOAD),
                Event::Dropped { .. } => {
                    assert_eq!(end.config.backpressure_policy, BackpressurePolicy::Drop, "{role:?}: Dropped under Close")
                }
                Event::Closed(info) => {
                    assert_eq!(end.conn.state(), State::Closed, "{role:?}: Closed event but state {:?}", end.conn.state());
                    if !end.tainted {
                        if let CloseCause::Protocol(err) = &info.cause {
                            assert!(
                                // Limits a conforming peer can still run into: sizes,
                                // and how long or finely fragmented a message is
                                // (virtual time here can pass message_timeout).
                                matches!(
                                    err,
                                    ProtocolError::FrameTooLarge { .. }
                                        | ProtocolError::MessageTooLarge { .. }
                                        | ProtocolError::MessageTimeout { .. }
                                        | ProtocolError::TooManyFragments { .. }
                                ),
                                "{role:?} failed a conforming peer: {err}"
                            );
                        }
                    }
                    if matches!(info.cause, CloseCause::PongTimeout | CloseCause::CloseTimeout | CloseCause::TransportClosed) {
                        self.abrupt = true;
                    }
                    end.closed = Some(info);
                }
                other => panic!("{role:?}: unknown event {other:?}"),
            }
        }
        let state = end.conn.state();
        assert!(rank(state) >= rank(end.last_state), "{role:?}: state went from {:?} to {state:?}", end.last_state);
        end.last_state = state;
        assert_eq!(state == State::Closed, end.closed.is_some(), "{role:?}: state {state:?} but Closed emitted: {:?}", end.closed);
    }

    /// Delivers everything; between conforming ends with no timeout or
    /// EOF, both are then open with every message delivered, or both closed.
    pub fn finish(&mut self) {
        self.pump();
        if self.abrupt || self.ends.iter().any(|e| e.tainted) {
            return;
        }
        let [server, client] = &self.ends;
        match (server.conn.state(), client.conn.state()) {
            (State::Open, State::Open) => {
                assert!(server.sent.is_empty() && client.sent.is_empty(), "messages lost between open ends");
            }
            (State::Closed, State::Closed) => {}
            (s, c) => panic!("after delivering everything: server {s:?}, client {c:?}"),
        }
    }
}

fn summary(message: &Message) -> String {
    let bytes = message.as_bytes();
    let kind = if message.as_text().is_some() { "text" } else { "binary" };
    format!("{kind} {:02x?}", &bytes[..bytes.len().min(16)])
}

/// A frame built byte by byte, so it can break any rule: `b0` as given,
/// the length minimal (`form` 0) or forced into 16 (1) or 64 bits (2, 3).
pub fn raw_frame(b0: u8, form: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(b0);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    match form {
        0 if len < 126 => out.put_u8(bit | len as u8),
        0 | 1 if len <= 0xffff => {
            out.put_u8(bit | 126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(bit | 127);
            out.put_u64(len as u64);
        }
    }
    if let Some(key) = mask {
        out.put_slice(&key);
    }
    let start = out.len();
    out.put_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    out.to_vec()
}

/// The `connection` target.
pub fn connection(data: &[u8]) {
    if let Some(input) = ConnInput::parse(data) {
        Harness::run(&input);
    }
}
