//! The WebSocket connection state machine; see [`Connection`].

mod assemble;
mod config;
mod lazy;
mod outbound;
mod timer;

pub use config::{BackpressurePolicy, Config};

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame};
use crate::deflate::{compress_message, DeflateConfig, DeflateParams, DeflateSide, Inflater};
use crate::error::{ProtocolError, UsageError};
use crate::frame::{encode_frame, put_header, DecodedFrame, FrameDecoder, FrameHeader, OpCode, Role};
use crate::mask_keys::MaskKeys;
use crate::message::{CloseCause, CloseInfo, Event, Message};
use crate::prepared::{PreparedBatch, PreparedMessage};
use assemble::Assembler;
use outbound::{Outbound, COPY_THRESHOLD};
pub(crate) use timer::far_future;
pub use timer::deadline_after;
use timer::{Timer, TimerTable};

/// Bytes a single [`Connection::handle_read`] may inflate before it stops
/// taking frames (the rest waits in the buffer, [`Connection::input_paused`]):
/// a read full of small compression bombs cannot hold the thread, or
/// memory, for more than about this much inflation at a time.
const INFLATE_BUDGET: u64 = 1 << 20;

/// The sending half of permessage-deflate, once negotiated.
#[derive(Debug)]
struct Deflate {
    side: DeflateSide,
    /// Dedicated mode's compressor (context takeover); created on first use.
    compressor: Option<flate2::Compress>,
}

/// Where the connection is in its life (RFC 6455 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// Done: flush what is queued, then drop the transport.
    Closed,
}

/// One WebSocket connection after the handshake (RFC 6455 §5-§7), sans-io:
/// frames in, events out, bytes out, deadlines out.
///
/// # Driving a connection
///
/// The driver owns the socket and the clock. In a loop it:
/// 1. feeds bytes read with [`Connection::handle_read`] (or
///    [`Connection::handle_eof`] when the stream ends);
/// 2. drains [`Connection::poll_event`] and acts on each event;
/// 3. writes what [`Connection::transmit_slices`] returns with one vectored
///    write, then reports it with [`Connection::advance_transmit`];
/// 4. sleeps until [`Connection::poll_timeout`] or new input, then calls
///    [`Connection::handle_timeout`];
/// 5. drops the socket once [`Connection::is_finished`].
///
/// ```
/// use blaze_proto::{Config, Connection, Event, Message, Role};
/// use bytes::BytesMut;
/// use std::time::Instant;
///
/// let now = Instant::now();
/// let mut server = Connection::new(Role::Server, Config::default(), now);
/// let mut client = Connection::new(Role::Client, Config::default(), now);
/// client.send(Message::text("hi")).unwrap();
///
/// // Move the client's output to the server, as a socket would.
/// let mut wire = BytesMut::from(&client.transmit_bytes()[..]);
/// client.advance_transmit(wire.len());
/// server.handle_read(&mut wire, now);
/// assert_eq!(server.poll_event(), Some(Event::Message(Message::text("hi"))));
/// ```
///
/// # States (§7)
///
/// | state | entered when | sends data | accepts data |
/// |---|---|---|---|
/// | `Open` | created (handshake done) | yes | yes |
/// | `Closing` | we sent a close frame | no | discarded |
/// | `Closed` | close frames crossed, protocol error, timeout, EOF | no | no |
///
/// Nothing is emitted after [`Event::Closed`], and it is emitted once.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    /// Shared: every connection of a server route holds the same one.
    config: Arc<Config>,
    state: State,
    decoder: FrameDecoder,
    assembler: Assembler,
    outbound: Outbound,
    /// Boxed and made on the first event: an idle connection holds 8
    /// bytes of it, not a 32-byte `VecDeque` header.
    #[allow(clippy::box_collection)]
    events: Option<Box<VecDeque<Event>>>,
    timers: TimerTable,
    masks: MaskKeys,
    /// The close frame we sent: its code is reported if the peer never answers.
    sent_close: Option<Box<CloseFrame>>,
    closed_emitted: bool,
    /// A close started where no `now` was at hand (backpressure inside a
    /// send): the close-handshake timer is armed at the next timeout check,
    /// which `poll_timeout` asks for at once.
    close_timer_unarmed: bool,
    /// The latest `now` the driver gave; a deadline due "at once" uses it.
    last_now: Instant,
    /// A message was sent since the idle timer was last armed.
    sent_since_idle_arm: bool,
    /// permessage-deflate, if negotiated: how we compress.
    deflate: Option<Box<Deflate>>,
    /// The peer broke the protocol: applied (close frame, `Closed`) once the
    /// events that came before it on the wire have been taken, so replies
    /// to them go out before the close frame, in the wire's order.
    failure: Option<Box<ProtocolError>>,
    /// The last `handle_read` stopped at its inflation budget with
    /// complete frames left in the buffer.
    input_paused: bool,
    /// Payload bytes held by the events not yet taken.
    event_bytes: usize,
    /// A message (or a frame) has started arriving and is unfinished: the
    /// message timer runs from its start (see [`Connection::track_message`]).
    message_in_progress: bool,
}

impl Connection {
    /// A connection whose handshake completed at `now`. `config` is a
    /// [`Config`] or an `Arc<Config>`: a server gives every connection of
    /// a route the same `Arc`, so an idle connection does not carry a copy
    /// of it (the mask seed is read here, once).
    pub fn new(role: Role, config: impl Into<Arc<Config>>, now: Instant) -> Connection {
        let config = config.into();
        let mut connection = Connection {
            role,
            decoder: FrameDecoder::new(role, config.max_frame_size),
            assembler: Assembler::new(config.max_message_size, config.max_fragments),
            masks: MaskKeys::new(config.mask_seed),
            outbound: Outbound::default(),
            events: None,
            timers: TimerTable::new(now),
            state: State::Open,
            sent_close: None,
            closed_emitted: false,
            close_timer_unarmed: false,
            last_now: now,
            sent_since_idle_arm: false,
            deflate: None,
            failure: None,
            input_paused: false,
            event_bytes: 0,
            message_in_progress: false,
            config,
        };
        connection.on_inbound_activity(now);
        connection.touch_idle(now);
        connection
    }

    /// Turns permessage-deflate on with the parameters the handshake
    /// agreed (RFC 7692): RSV1 is accepted on first data frames, compressed
    /// messages are inflated (bounded by `max_message_size`), and messages
    /// of at least `config.threshold` bytes are sent compressed.
    pub fn enable_deflate(&mut self, params: &DeflateParams, config: &DeflateConfig) {
        let side = DeflateSide::new(params, config, self.role);
        self.decoder.allow_rsv1(true);
        self.assembler.set_inflater(Inflater::new(&side));
        self.deflate = Some(Box::new(Deflate { side, compressor: None }));
    }

    /// Whether permessage-deflate is on.
    pub fn is_deflate_enabled(&self) -> bool {
        self.deflate.is_some()
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The connection's current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration it was created with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether messages can still be sent.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// Whether the driver should drop the transport: closed, and every
    /// queued byte (the final close frame included) written.
    pub fn is_finished(&self) -> bool {
        self.state == State::Closed && self.outbound.is_empty()
    }

    // ---- input -------------------------------------------------------

    /// How many more bytes the frame being read needs, once its header is
    /// in (`buffered` is what the read buffer holds). Drivers size their
    /// next read with it, so a large frame is read straight into a buffer
    /// big enough for all of it.
    pub fn read_hint(&self, buffered: usize) -> Option<usize> {
        self.decoder.bytes_needed(buffered)
    }

    /// Consumes every complete frame at the front of `buf` (bytes read from
    /// the transport, in order); an incomplete frame stays in `buf` for the
    /// next read. After a protocol error or close, the rest is discarded.
    ///
    /// A protocol error takes effect after the events before it: they are
    /// returned by [`Connection::poll_event`] first, and the connection
    /// stays open (so replies to them are queued) until they are taken.
    /// Text and compressed frames are checked as their bytes arrive, before
    /// the frame is complete. At most about 1 MiB is inflated per call;
    /// past that the rest stays in `buf` and [`Connection::input_paused`]
    /// says to call again (with or without new bytes).
    pub fn handle_read(&mut self, buf: &mut BytesMut, now: Instant) {
        self.last_now = now;
        self.input_paused = false;
        if self.state == State::Closed || self.failure.is_some() {
            buf.clear();
            return;
        }
        if !buf.is_empty() {
            self.on_inbound_activity(now);
        }
        let inflated_before = self.assembler.inflated_total();
        loop {
            match self.decoder.decode(buf) {
                Ok(Some(frame)) => {
                    let taken = self.decoder.last_taken();
                    self.on_frame(frame, taken, now);
                    self.track_message(now);
                }
                Ok(None) => {
                    self.inspect_incomplete_frame(buf);
                    self.track_message(now);
                    break;
                }
                Err(err) => self.defer_failure(err),
            }
            if self.state == State::Closed || self.failure.is_some() {
                break;
            }
            if self.deflate.is_some()
                && self.assembler.inflated_total() - inflated_before >= INFLATE_BUDGET
                && !buf.is_empty()
            {
                self.input_paused = true;
                break;
            }
        }
        if self.state == State::Closed || self.failure.is_some() {
            buf.clear();
        }
        if self.events_is_empty() {
            self.apply_failure();
        }
    }

    /// Whether the last [`Connection::handle_read`] left complete frames in
    /// its buffer to bound the work of one call: call it again soon.
    pub fn input_paused(&self) -> bool {
        self.input_paused
    }

    /// Checks the arrived part of a frame still being read: UTF-8 of text,
    /// inflation of compressed data.
    fn inspect_incomplete_frame(&mut self, buf: &mut BytesMut) {
        let Some(header) = self.decoder.pending_header() else { return };
        if header.opcode.is_control() || !self.assembler.wants_prefix(&header) {
            return;
        }
        if let Some((offset, bytes)) = self.decoder.take_prefix(buf) {
            if let Err(err) = self.assembler.inspect(header, offset, bytes) {
                self.defer_failure(err);
            }
        }
    }

    /// Records a protocol error; input stops here.
    fn defer_failure(&mut self, err: ProtocolError) {
        if self.failure.is_none() {
            self.failure = Some(Box::new(err));
        }
    }

    fn apply_failure(&mut self) {
        if let Some(err) = self.failure.take() {
            self.fail(*err);
        }
    }

    /// The transport reached end of stream (or failed): the connection is
    /// closed, abnormally (1006) unless the close handshake had finished.
    pub fn handle_eof(&mut self) {
        self.apply_failure();
        if self.state != State::Closed {
            self.finish(CloseCode::ABNORMAL, String::new(), CloseCause::TransportClosed);
        }
        // Nothing more can be written either (what was queued is counted
        // by `unsent`: lost).
        self.outbound.clear();
    }

    /// Fires every deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        if std::mem::take(&mut self.close_timer_unarmed) && self.state == State::Closing {
            self.timers.set_after(Timer::CloseHandshake, now, self.config.close_timeout);
        }
        let due: Vec<Timer> = self.timers.expired(now).collect();
        for timer in due {
            if self.state == State::Closed {
                return;
            }
            // An earlier timer of this batch may have stopped or moved this
            // one (an idle close stops the heartbeat): only fire it if it is
            // still due, or a ping could follow our close frame.
            if !self.timers.get(timer).is_some_and(|at| at <= now) {
                continue;
            }
            self.timers.stop(timer);
            match timer {
                Timer::Ping => {
                    // Silent for a whole `ping_interval`: let go of what
                    // the last burst grew, before the ping reuses any of it.
                    self.release_idle_buffers();
                    self.queue_control(OpCode::Ping, &[]);
                    self.timers.set_after(Timer::PongDeadline, now, self.config.pong_timeout);
                }
                Timer::PongDeadline => {
                    self.finish(CloseCode::ABNORMAL, "pong timeout".into(), CloseCause::PongTimeout)
                }
                Timer::CloseHandshake => {
                    let code = self.sent_close.as_ref().map_or(CloseCode::ABNORMAL, |c| c.code);
                    self.finish(code, "close handshake timed out".into(), CloseCause::CloseTimeout);
                }
                Timer::Idle if std::mem::take(&mut self.sent_since_idle_arm) => {
                    // Sends carry no `now`; one since the timer was armed
                    // restarts the idle period from here.
                    self.touch_idle(now);
                }
                Timer::Idle => {
                    let _ = self.close(CloseCode::NORMAL, "idle timeout", now);
                }
                // A protocol error already waits for the events before it:
                // it closes the connection, in the wire's order.
                Timer::Message if self.failure.is_some() => {}
                Timer::Message => {
                    // Due now, after every event already queued: nothing
                    // more is read, so there is nothing to wait for.
                    let timeout = self.config.message_timeout.unwrap_or_default();
                    self.fail(ProtocolError::MessageTimeout { timeout });
                }
            }
        }
    }

    /// The earliest deadline, if any: call [`Connection::handle_timeout`] then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.close_timer_unarmed {
            return Some(self.last_now);
        }
        self.timers.next()
    }

    #[inline]
    fn events_is_empty(&self) -> bool {
        self.events.as_ref().map_or(true, |e| e.is_empty())
    }

    /// Frees the event queue and the output queues if they are empty: a
    /// connection keeps what its traffic grew while it is busy (no
    /// allocation per message), and lets it go once it has been idle.
    fn release_idle_buffers(&mut self) {
        if self.events_is_empty() {
            self.events = None;
        }
        self.outbound.release_if_empty();
    }

    /// Whether events wait for [`Connection::poll_event`] (a send refused
    /// under the drop policy queues [`Event::Dropped`]).
    pub fn has_events(&self) -> bool {
        !self.events_is_empty() || self.failure.is_some()
    }

    /// The next event, in the order they happened.
    #[must_use]
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events_is_empty() {
            // Every event before the protocol error is taken: now fail.
            self.apply_failure();
        }
        let event = self.events.as_mut()?.pop_front()?;
        self.event_bytes -= event_payload_len(&event);
        Some(event)
    }

    /// Events not yet taken with [`Connection::poll_event`], and the payload
    /// bytes they hold. A driver stops reading while this is over its bound,
    /// so a peer whose handler cannot keep up is slowed by TCP instead of
    /// growing the queue.
    pub fn backlog(&self) -> (usize, usize) {
        (self.events.as_ref().map_or(0, |e| e.len()), self.event_bytes)
    }

    // Always: one call per message, and an `Event` moved through a call
    // is a 56-byte copy (+4% instructions per echoed message when it
    // stopped being inlined).
    #[inline(always)]
    fn push_event(&mut self, event: Event) {
        self.event_bytes += event_payload_len(&event);
        self.event_queue().push_back(event);
    }

    /// The event queue, made on the first event.
    #[inline]
    fn event_queue(&mut self) -> &mut VecDeque<Event> {
        lazy::boxed(&mut self.events)
    }

    // ---- output ------------------------------------------------------

    /// Fills `out` with the queued output, in order, for one vectored
    /// write; returns how many slices were filled.
    #[must_use]
    pub fn transmit_slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        self.outbound.slices(out)
    }

    /// The first contiguous piece of queued output (for non-vectored writers).
    #[must_use]
    pub fn transmit_bytes(&self) -> &[u8] {
        self.outbound.first_slice()
    }

    /// Records that the first `n` queued bytes were written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.outbound.advance(n);
    }

    /// Bytes queued and not yet written (the backpressure measure).
    pub fn pending_bytes(&self) -> usize {
        self.outbound.len()
    }

    /// Bytes held for a message whose fragments are still arriving.
    pub fn buffered_bytes(&self) -> usize {
        self.assembler.buffered()
    }

    /// Messages a send accepted that have not been written whole to the
    /// transport yet, and their bytes (frame headers included). Control
    /// frames (pings, pongs, close) are not counted. Once the connection
    /// [`is_finished`](Connection::is_finished), these never will be: a
    /// backpressure close discarded them, or the transport ended first.
    pub fn unsent(&self) -> (u64, u64) {
        self.outbound.unsent()
    }

    /// Whether there is output to write.
    pub fn wants_write(&self) -> bool {
        !self.outbound.is_empty()
    }

    // ---- commands ----------------------------------------------------

    /// Queues a message, as one frame.
    ///
    /// With permessage-deflate on, a message of at least the configured
    /// threshold is compressed.
    pub fn send(&mut self, message: Message) -> Result<(), UsageError> {
        let opcode = opcode_of(&message);
        self.send_payload(opcode, message.into_bytes(), true)
    }

    /// Queues a message uncompressed even when permessage-deflate is on
    /// (already-compressed payloads: images, archives).
    pub fn send_uncompressed(&mut self, message: Message) -> Result<(), UsageError> {
        let opcode = opcode_of(&message);
        self.send_payload(opcode, message.into_bytes(), false)
    }

    /// Queues `payload` compressed; `false` if compression failed (the
    /// caller sends it plain). Out of line: plain sends stay small.
    #[inline(never)]
    fn send_compressed(&mut self, opcode: OpCode, payload: &[u8]) -> bool {
        let Some(frame) = self.compress(opcode, payload) else { return false };
        self.outbound.push_shared(&frame);
        self.note_sent();
        true
    }

    /// Whether a message of `len` bytes goes out compressed.
    fn compresses(&self, len: usize) -> bool {
        self.deflate.as_ref().is_some_and(|d| d.side.can_send_compressed() && len >= d.side.threshold)
    }

    /// Compresses `payload` as one message, masked for the client role.
    /// `None`: compression failed, send it plain.
    fn compress(&mut self, opcode: OpCode, payload: &[u8]) -> Option<Bytes> {
        let mask = match self.role {
            Role::Client => Some(self.masks.next_key()),
            Role::Server => None,
        };
        let deflate = self.deflate.as_deref_mut()?;
        compress_message(&deflate.side, &mut deflate.compressor, opcode, payload, mask)
    }

    /// Queues a message encoded once for many connections. A server shares
    /// the encoded frame without copying; a client must mask, so it encodes
    /// its own copy.
    ///
    /// With permessage-deflate on and no server context kept (shared
    /// mode), every such connection queues the same compressed frame,
    /// compressed once; with context takeover each compresses its own copy.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), UsageError> {
        self.check_can_send(message.frame().len())?;
        if message.compressible() && self.compresses(message.payload_len()) {
            let deflate = self.deflate.as_deref().expect("compresses() checked");
            let shared = match (self.role, deflate.side.send_no_context) {
                (Role::Server, true) => message.shared_compressed(deflate.side.level, deflate.side.send_window),
                _ => None,
            };
            let frame = shared.or_else(|| {
                message.count_compression();
                self.compress(message.opcode(), &message.payload())
            });
            if let Some(frame) = frame {
                self.outbound.push_shared(&frame);
                self.note_sent();
                return Ok(());
            }
        }
        match self.role {
            Role::Server => self.outbound.push_shared(message.frame()),
            Role::Client => {
                let mask = Some(self.masks.next_key());
                let payload = message.payload();
                self.outbound.push_encoded(|dst| encode_frame(FrameHeader::new(message.opcode()), &payload, mask, dst));
            }
        }
        self.note_sent();
        Ok(())
    }

    /// Queues every message of `batch` in one step, as one shared chunk,
    /// when that is exactly what [`Connection::send_prepared`] on each in
    /// turn would do: a server connection, open, none of the messages
    /// compressed, and all of them within `max_backpressure`. Returns
    /// whether it did; `false` queues nothing, and the caller sends them
    /// one by one (compression, the backpressure policy).
    pub fn send_prepared_batch(&mut self, batch: &PreparedBatch) -> bool {
        let fits = self.outbound.len() + batch.frames().len() <= self.config.max_backpressure;
        if self.role != Role::Server || self.state != State::Open || !fits {
            return false;
        }
        if self.deflate.is_some()
            && batch.messages().iter().any(|m| m.compressible() && self.compresses(m.payload_len()))
        {
            return false;
        }
        self.outbound.push_shared_frames(batch.frames(), batch.messages().iter().map(|m| m.frame().len()));
        self.sent_since_idle_arm = true;
        true
    }

    fn send_payload(&mut self, opcode: OpCode, payload: Bytes, compress: bool) -> Result<(), UsageError> {
        // Checked before compressing: a compressor keeping context must
        // not take in a message the peer will never receive.
        self.check_can_send(payload.len())?;
        if compress && self.compresses(payload.len()) && self.send_compressed(opcode, &payload) {
            return Ok(());
        }
        let header = FrameHeader::new(opcode);
        match self.role {
            Role::Server if payload.len() >= COPY_THRESHOLD => {
                let len = payload.len();
                self.outbound.push_with_shared_payload(|dst| put_header(header, len, None, dst), payload)
            }
            Role::Server => self.outbound.push_encoded(|dst| encode_frame(header, &payload, None, dst)),
            Role::Client => {
                let mask = Some(self.masks.next_key());
                self.outbound.push_encoded(|dst| encode_frame(header, &payload, mask, dst))
            }
        }
        self.note_sent();
        Ok(())
    }

    /// Checks state and backpressure before queueing `len` bytes of data.
    fn check_can_send(&mut self, len: usize) -> Result<(), UsageError> {
        if self.state != State::Open {
            return Err(UsageError::Closed);
        }
        if self.outbound.len() + len <= self.config.max_backpressure || self.outbound.is_empty() {
            return Ok(());
        }
        match self.config.backpressure_policy {
            BackpressurePolicy::Drop => {
                self.event_queue().push_back(Event::Dropped { len });
                Err(UsageError::Backpressure)
            }
            BackpressurePolicy::Close => {
                self.outbound.discard_unstarted();
                self.start_close(CloseFrame {
                    code: CloseCode::POLICY_VIOLATION,
                    reason: "outbound queue over limit".into(),
                });
                self.close_timer_unarmed = true;
                Err(UsageError::Backpressure)
            }
        }
    }

    /// Sends a ping with up to 125 bytes of payload. Like a message, it
    /// counts toward `max_backpressure`.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.send_control(OpCode::Ping, payload)
    }

    /// Sends an unsolicited pong (a one-way heartbeat, §5.5.3).
    pub fn pong(&mut self, payload: &[u8]) -> Result<(), UsageError> {
        self.send_control(OpCode::Pong, payload)
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), UsageError> {
        if self.state != State::Open {
            return Err(UsageError::Closed);
        }
        if payload.len() > crate::frame::MAX_CONTROL_PAYLOAD {
            return Err(UsageError::ControlPayloadTooLong);
        }
        // The application's pings and pongs count toward max_backpressure
        // like its messages: pinging a peer that does not read must not
        // grow the queue without bound (found by the `connection` fuzz target).
        self.check_can_send(payload.len())?;
        self.queue_control(opcode, payload);
        Ok(())
    }

    /// Starts the close handshake (§7.1.2): queues a close frame and waits
    /// up to `close_timeout` for the peer's. A no-op if already closing.
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant) -> Result<(), UsageError> {
        if !code.is_sendable() {
            return Err(UsageError::UnsendableCloseCode(code.0));
        }
        if self.state != State::Open {
            return Ok(());
        }
        self.start_close(CloseFrame { code, reason: reason.to_owned() });
        self.timers.set_after(Timer::CloseHandshake, now, self.config.close_timeout);
        Ok(())
    }

    /// Queues our close frame and enters `Closing`; the caller arms the
    /// close-handshake timer.
    fn start_close(&mut self, frame: CloseFrame) {
        self.queue_control(OpCode::Close, &frame.to_payload());
        self.sent_close = Some(Box::new(frame));
        self.state = State::Closing;
        self.timers.stop(Timer::Ping);
        self.timers.stop(Timer::Idle);
        // `close_timeout` bounds everything from here on.
        self.timers.stop(Timer::Message);
    }

    // ---- internals ---------------------------------------------------

    fn on_frame(&mut self, frame: DecodedFrame, taken: usize, now: Instant) {
        match frame.header.opcode {
            OpCode::Ping => {
                // Pongs count toward max_backpressure like data: a peer that
                // pings without reading must not grow the queue without bound.
                let auto_pong = self.config.auto_pong && self.state == State::Open;
                if auto_pong && self.check_can_send(frame.payload.len()).is_ok() {
                    self.queue_control(OpCode::Pong, &frame.payload);
                }
                self.push_event(Event::Ping(frame.payload));
            }
            OpCode::Pong => self.push_event(Event::Pong(frame.payload)),
            OpCode::Close => self.on_close_frame(&frame.payload),
            _ => match self.assembler.push(frame, taken) {
                Ok(Some(message)) if self.state == State::Open => {
                    self.touch_idle(now);
                    self.push_event(Event::Message(message));
                }
                // §1.4: after our close frame, data still in flight is dropped.
                Ok(_) => {}
                Err(err) => self.defer_failure(err),
            },
        }
    }

    fn on_close_frame(&mut self, payload: &[u8]) {
        let received = match CloseFrame::parse(payload) {
            Ok(frame) => frame,
            Err(err) => return self.defer_failure(err),
        };
        let (code, reason) = match &received {
            Some(frame) => (frame.code, frame.reason.clone()),
            None => (CloseCode::NO_STATUS, String::new()),
        };
        if self.state == State::Open {
            // §5.5.1: answer with a close frame, echoing the code.
            let answer = received.map(|f| CloseFrame { code: f.code, reason: String::new() });
            let payload = answer.map(|f| f.to_payload()).unwrap_or_default();
            self.queue_control(OpCode::Close, &payload);
            self.finish(code, reason, CloseCause::Remote);
        } else {
            self.finish(code, reason, CloseCause::Local);
        }
    }

    /// Fails the connection (§7.1.7): sends the error's close code unless a
    /// close frame was already sent, then closes.
    fn fail(&mut self, err: ProtocolError) {
        let code = err.close_code();
        if self.state == State::Open {
            let frame = CloseFrame { code, reason: err.to_string() };
            self.queue_control(OpCode::Close, &frame.to_payload());
        }
        self.finish(code, err.to_string(), CloseCause::Protocol(err));
    }

    fn finish(&mut self, code: CloseCode, reason: String, cause: CloseCause) {
        self.state = State::Closed;
        self.timers.stop_all();
        // A close timer still waiting to be armed has nothing left to time.
        self.close_timer_unarmed = false;
        self.failure = None;
        self.assembler.reset();
        if !self.closed_emitted {
            self.closed_emitted = true;
            self.event_queue().push_back(Event::Closed(CloseInfo { code, reason, cause }));
        }
    }

    fn queue_control(&mut self, opcode: OpCode, payload: &[u8]) {
        let mask = match self.role {
            Role::Client => Some(self.masks.next_key()),
            Role::Server => None,
        };
        self.outbound.push_encoded(|dst| encode_frame(FrameHeader::new(opcode), payload, mask, dst));
    }

    /// Any bytes from the peer prove it alive: the pong deadline is met and
    /// the next ping waits for another `ping_interval` of silence.
    fn on_inbound_activity(&mut self, now: Instant) {
        self.timers.stop(Timer::PongDeadline);
        if let (Some(interval), State::Open) = (self.config.ping_interval, self.state) {
            self.timers.set_after(Timer::Ping, now, interval);
        }
    }

    /// Arms the message timer when a message starts (the header of its
    /// first frame is read, or any frame's header while none is in
    /// progress), and stops it once nothing is unfinished: no fragmented
    /// message in the assembler and no frame whose payload is still
    /// arriving. Frames continuing a message do not re-arm it: the whole
    /// message must arrive within `message_timeout` of its start.
    fn track_message(&mut self, now: Instant) {
        let in_progress = self.state == State::Open
            && (self.assembler.in_progress() || self.decoder.pending_header().is_some());
        if in_progress && !self.message_in_progress {
            if let Some(timeout) = self.config.message_timeout {
                // `Duration::MAX` overflows: never.
                self.timers.set_after(Timer::Message, now, timeout);
            }
        } else if !in_progress {
            self.timers.stop(Timer::Message);
        }
        self.message_in_progress = in_progress;
    }

    fn touch_idle(&mut self, now: Instant) {
        self.sent_since_idle_arm = false;
        if let (Some(idle), State::Open) = (self.config.idle_timeout, self.state) {
            self.timers.set_after(Timer::Idle, now, idle);
        }
    }

    fn note_sent(&mut self) {
        self.sent_since_idle_arm = true;
        self.outbound.mark_data();
    }
}

fn opcode_of(message: &Message) -> OpCode {
    match message {
        Message::Text(_) => OpCode::Text,
        Message::Binary(_) => OpCode::Binary,
    }
}

/// The payload bytes an event holds (what a backlog of them costs).
fn event_payload_len(event: &Event) -> usize {
    match event {
        Event::Message(message) => message.len(),
        Event::Ping(payload) | Event::Pong(payload) => payload.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod instant_overflow_tests {
    use std::time::Duration;

    use super::*;

    /// Every deadline at `Duration::MAX`: arming one must not overflow
    /// `Instant` (it panicked, skipping the close); none ever fires.
    #[test]
    fn durations_near_max_mean_never_and_do_not_panic() {
        let config = Config::default()
            .ping_interval(Some(Duration::MAX))
            .pong_timeout(Duration::MAX)
            .close_timeout(Duration::MAX)
            .idle_timeout(Some(Duration::MAX));
        let now = Instant::now();
        let mut server = Connection::new(Role::Server, config.clone(), now);
        let mut client = Connection::new(Role::Client, config, now);
        assert_eq!(server.poll_timeout(), None);
        client.send(Message::text("hi")).unwrap();
        let mut wire = BytesMut::from(client.transmit_bytes());
        client.advance_transmit(wire.len());
        let later = now + Duration::from_secs(3600);
        server.handle_read(&mut wire, later);
        assert_eq!(server.poll_event(), Some(Event::Message(Message::text("hi"))));
        server.handle_timeout(later + Duration::from_secs(1 << 30));
        assert!(server.is_open());
        server.close(CloseCode::NORMAL, "bye", later).unwrap();
        assert_eq!(server.poll_timeout(), None);
        // The peer answers: closed normally, once.
        let mut wire = BytesMut::from(server.transmit_bytes());
        server.advance_transmit(wire.len());
        client.handle_read(&mut wire, later);
        while client.poll_event().is_some() {}
        let mut wire = BytesMut::from(client.transmit_bytes());
        client.advance_transmit(wire.len());
        server.handle_read(&mut wire, later);
        let closed: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
        assert!(matches!(closed.as_slice(), [Event::Closed(info)] if info.code == CloseCode::NORMAL), "{closed:?}");
    }
}

#[cfg(test)]
mod idle_memory_tests {
    use std::time::Duration;

    use super::*;

    /// A connection that went quiet for a `ping_interval` lets go of the
    /// queues its last burst grew; the heartbeat still goes out, in order.
    #[test]
    fn buffers_grown_by_a_burst_are_freed_once_idle() {
        let now = Instant::now();
        let config = Config::default().ping_interval(Some(Duration::from_secs(30)));
        let mut server = Connection::new(Role::Server, config.clone(), now);
        let mut client = Connection::new(Role::Client, config, now);
        assert!(server.events.is_none(), "nothing allocated before traffic");
        for i in 0..8 {
            client.send(Message::text(format!("m{i}"))).unwrap();
        }
        let mut wire = BytesMut::from(client.transmit_bytes());
        client.advance_transmit(wire.len());
        server.handle_read(&mut wire, now);
        while let Some(Event::Message(message)) = server.poll_event() {
            server.send(message).unwrap();
        }
        let n = server.transmit_bytes().len();
        server.advance_transmit(n);
        assert!(server.events.is_some(), "kept while busy");
        server.handle_timeout(now + Duration::from_secs(30));
        assert!(server.events.is_none());
        // The ping is the only thing queued (the echoes were written).
        let mut wire = BytesMut::from(server.transmit_bytes());
        assert_eq!(&wire[..], &[0x89, 0x00]);
        server.advance_transmit(wire.len());
        client.handle_read(&mut wire, now);
        let events: Vec<Event> = std::iter::from_fn(|| client.poll_event()).collect();
        assert!(matches!(events.as_slice(), [Event::Ping(_)]), "{events:?}");
    }
}
