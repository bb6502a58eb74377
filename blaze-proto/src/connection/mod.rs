//! The WebSocket connection state machine; see [`Connection`].

mod assemble;
mod config;
mod outbound;
mod timer;

pub use config::{BackpressurePolicy, Config};

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::close::{CloseCode, CloseFrame};
use crate::error::{ProtocolError, UsageError};
use crate::frame::{encode_frame, put_header, DecodedFrame, FrameDecoder, FrameHeader, OpCode, Role};
use crate::mask_keys::MaskKeys;
use crate::message::{CloseCause, CloseInfo, Event, Message};
use crate::prepared::PreparedMessage;
use assemble::Assembler;
use outbound::{Outbound, COPY_THRESHOLD};
use timer::{Timer, TimerTable};

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
    config: Config,
    state: State,
    decoder: FrameDecoder,
    assembler: Assembler,
    outbound: Outbound,
    events: VecDeque<Event>,
    timers: TimerTable,
    masks: MaskKeys,
    /// The close frame we sent: its code is reported if the peer never answers.
    sent_close: Option<CloseFrame>,
    closed_emitted: bool,
    /// A close started where no `now` was at hand (backpressure inside a
    /// send): the close-handshake timer is armed at the next timeout check,
    /// which `poll_timeout` asks for at once.
    close_timer_unarmed: bool,
    /// The latest `now` the driver gave; a deadline due "at once" uses it.
    last_now: Instant,
    /// A message was sent since the idle timer was last armed.
    sent_since_idle_arm: bool,
}

impl Connection {
    /// A connection whose handshake completed at `now`.
    pub fn new(role: Role, config: Config, now: Instant) -> Connection {
        let mut connection = Connection {
            role,
            decoder: FrameDecoder::new(role, config.max_frame_size),
            assembler: Assembler::new(config.max_message_size),
            masks: MaskKeys::new(config.mask_seed),
            outbound: Outbound::default(),
            events: VecDeque::new(),
            timers: TimerTable::default(),
            state: State::Open,
            sent_close: None,
            closed_emitted: false,
            close_timer_unarmed: false,
            last_now: now,
            sent_since_idle_arm: false,
            config,
        };
        connection.on_inbound_activity(now);
        connection.touch_idle(now);
        connection
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
    pub fn handle_read(&mut self, buf: &mut BytesMut, now: Instant) {
        self.last_now = now;
        if self.state == State::Closed {
            buf.clear();
            return;
        }
        if !buf.is_empty() {
            self.on_inbound_activity(now);
        }
        loop {
            match self.decoder.decode(buf) {
                Ok(Some(frame)) => self.on_frame(frame, now),
                Ok(None) => break,
                Err(err) => self.fail(err),
            }
            if self.state == State::Closed {
                buf.clear();
                break;
            }
        }
    }

    /// The transport reached end of stream (or failed): the connection is
    /// closed, abnormally (1006) unless the close handshake had finished.
    pub fn handle_eof(&mut self) {
        if self.state != State::Closed {
            self.finish(CloseCode::ABNORMAL, String::new(), CloseCause::TransportClosed);
        }
        // Nothing more can be written either.
        self.outbound = Outbound::default();
    }

    /// Fires every deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        if std::mem::take(&mut self.close_timer_unarmed) && self.state == State::Closing {
            self.timers.set(Timer::CloseHandshake, now + self.config.close_timeout);
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
                    self.queue_control(OpCode::Ping, &[]);
                    self.timers.set(Timer::PongDeadline, now + self.config.pong_timeout);
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

    /// The next event, in the order they happened.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
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

    /// Whether there is output to write.
    pub fn wants_write(&self) -> bool {
        !self.outbound.is_empty()
    }

    // ---- commands ----------------------------------------------------

    /// Queues a message, as one frame.
    pub fn send(&mut self, message: Message) -> Result<(), UsageError> {
        let opcode = match message {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        };
        self.send_payload(opcode, message.into_bytes())
    }

    /// Queues a message encoded once for many connections. A server shares
    /// the encoded frame without copying; a client must mask, so it encodes
    /// its own copy.
    pub fn send_prepared(&mut self, message: &PreparedMessage) -> Result<(), UsageError> {
        self.check_can_send(message.frame().len())?;
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

    fn send_payload(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), UsageError> {
        self.check_can_send(payload.len())?;
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
                self.events.push_back(Event::Dropped { len });
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
        self.timers.set(Timer::CloseHandshake, now + self.config.close_timeout);
        Ok(())
    }

    /// Queues our close frame and enters `Closing`; the caller arms the
    /// close-handshake timer.
    fn start_close(&mut self, frame: CloseFrame) {
        self.queue_control(OpCode::Close, &frame.to_payload());
        self.sent_close = Some(frame);
        self.state = State::Closing;
        self.timers.stop(Timer::Ping);
        self.timers.stop(Timer::Idle);
    }

    // ---- internals ---------------------------------------------------

    fn on_frame(&mut self, frame: DecodedFrame, now: Instant) {
        match frame.header.opcode {
            OpCode::Ping => {
                // Pongs count toward max_backpressure like data: a peer that
                // pings without reading must not grow the queue without bound.
                let auto_pong = self.config.auto_pong && self.state == State::Open;
                if auto_pong && self.check_can_send(frame.payload.len()).is_ok() {
                    self.queue_control(OpCode::Pong, &frame.payload);
                }
                self.events.push_back(Event::Ping(frame.payload));
            }
            OpCode::Pong => self.events.push_back(Event::Pong(frame.payload)),
            OpCode::Close => self.on_close_frame(&frame.payload),
            _ => match self.assembler.push(frame) {
                Ok(Some(message)) if self.state == State::Open => {
                    self.touch_idle(now);
                    self.events.push_back(Event::Message(message));
                }
                // §1.4: after our close frame, data still in flight is dropped.
                Ok(_) => {}
                Err(err) => self.fail(err),
            },
        }
    }

    fn on_close_frame(&mut self, payload: &[u8]) {
        let received = match CloseFrame::parse(payload) {
            Ok(frame) => frame,
            Err(err) => return self.fail(err),
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
        self.assembler = Assembler::new(self.config.max_message_size);
        if !self.closed_emitted {
            self.closed_emitted = true;
            self.events.push_back(Event::Closed(CloseInfo { code, reason, cause }));
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
            self.timers.set(Timer::Ping, now + interval);
        }
    }

    fn touch_idle(&mut self, now: Instant) {
        self.sent_since_idle_arm = false;
        if let (Some(idle), State::Open) = (self.config.idle_timeout, self.state) {
            self.timers.set(Timer::Idle, now + idle);
        }
    }

    fn note_sent(&mut self) {
        self.sent_since_idle_arm = true;
    }
}
