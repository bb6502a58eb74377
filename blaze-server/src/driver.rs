//! Drives one connection: moves bytes between a [`Transport`] and the
//! protocol core, runs the handler for each event and sleeps until the
//! core's next deadline. Written once for every runtime.
//!
//! Speed comes from batching: one read hands the core every frame it
//! holds, the handler's replies queue up, and everything queued (echoes,
//! pongs, broadcast frames) leaves in one vectored write.

use std::future::Future;
use std::io::IoSlice;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use blaze_proto::{CloseCause, CloseCode, Event, Message, Role, State};

use crate::config::{RateLimit, RateLimitAction, WsConfig};
use crate::error::WsError;
use crate::handler::{panic_message, Handler};
use crate::rate::TokenBucket;
use crate::replies::{ConnErrorReplies, ErrorReplies};
use crate::runtime::{BoxFuture, Runtime, Transport};
use crate::serve::Release;
use crate::socket::ClosedBy;
use crate::socket::WebSocket;

/// Read-dispatch-write rounds per poll before yielding, so one busy client
/// cannot starve the others on its worker thread.
const ROUNDS_PER_POLL: usize = 16;
/// The most a read reserves ahead for a frame announced but not yet
/// arrived (larger frames grow the buffer by doubling as they arrive).
const MAX_READ_AHEAD: usize = 256 * 1024;
/// What a read may reserve ahead for an announced frame before any of its
/// payload has arrived: one 64 KiB frame is read into a buffer made once
/// (growing from 4 KiB by doubling cost 64 KiB echoes ~4% more CPU), and a
/// stalled header holds no more than this.
const READ_AHEAD_FLOOR: usize = 64 * 1024;
/// Undispatched events (and the payload bytes they hold) past which the
/// driver stops reading. Events are handed to the handler one per round
/// while the output is over `write_buffer_size`; without this bound a
/// client that stops reading while flooding small messages grew the queue
/// without end (issue 10). Past it TCP pushes back on the client, and its
/// stalled output runs into `write_timeout`.
const MAX_BACKLOG_EVENTS: usize = 1024;
const MAX_BACKLOG_BYTES: usize = 1 << 20;
/// Slices per vectored write (Linux takes up to 1024; 64 covers any batch
/// worth one syscall).
const MAX_IOVECS: usize = 64;
/// The reason of the close a rate limit with the Close action sends.
const RATE_LIMIT_REASON: &str = "rate limit exceeded";

/// Limits the driver enforces itself (the core's are in its `Config`).
#[derive(Debug, Clone)]
pub(crate) struct DriverLimits {
    pub(crate) read_buffer_size: usize,
    pub(crate) write_buffer_size: usize,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) close_timeout: Duration,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) error_replies: ErrorReplies,
}

impl DriverLimits {
    /// Whether `other` enforces the same limits (see `settings.rs`).
    pub(crate) fn same_as(&self, other: &DriverLimits) -> bool {
        self.read_buffer_size == other.read_buffer_size
            && self.write_buffer_size == other.write_buffer_size
            && self.read_timeout == other.read_timeout
            && self.write_timeout == other.write_timeout
            && self.close_timeout == other.close_timeout
            && self.rate_limit == other.rate_limit
            && self.error_replies.same_as(&other.error_replies)
    }

    pub(crate) fn from_config(config: &WsConfig) -> DriverLimits {
        DriverLimits {
            read_buffer_size: config.read_buffer_size.max(256),
            write_buffer_size: config.write_buffer_size.max(1024),
            read_timeout: config.read_timeout,
            write_timeout: config.write_timeout,
            close_timeout: config.close_timeout,
            rate_limit: config.rate_limit,
            error_replies: config.error_replies.clone(),
        }
    }
}

pub(crate) struct Driver<R: Runtime, T: Transport> {
    rt: R,
    io: T,
    ws: WebSocket,
    handler: Arc<dyn Handler>,
    /// Shared by the connections of one configuration (`settings.rs`).
    limits: Arc<DriverLimits>,
    read_buf: BytesMut,
    read_closed: bool,
    sleep: Option<(Instant, BoxFuture<()>)>,
    /// Boxed: most routes have no rate limit.
    rate: Option<Box<RateState>>,
    last_read: Instant,
    write_stalled_since: Option<Instant>,
    /// A flush returned `Pending`: a TLS stream holds written bytes, so the
    /// flush is retried on the next wake-up even with nothing new to write.
    flush_pending: bool,
    phase: Phase,
    /// Where the last batch's broadcasts may still wait (`fanout::catch_up`).
    last_cork: Option<Arc<crate::fanout::Cork>>,
    /// The cork this driver delivers after yielding (its batch opened it).
    cork_delivery: Option<crate::fanout::PendingFlush>,
    stats: crate::metrics::ConnStats,
    /// Dropped with the driver: unregisters the connection (server side).
    _release: Option<Release>,
}

/// A connection's rate limit.
struct RateState {
    bucket: TokenBucket,
    /// The limit tripped with the Close action on a stream-style
    /// connection: the close waits for the handler to take what it
    /// accepted (see `Inbox::close_when_read`), at most until this instant.
    deferred_close_at: Option<Instant>,
}

/// Where the driver is in the connection's life.
#[derive(Clone, Copy)]
enum Phase {
    /// `on_open` has not run yet.
    Opening,
    /// Moving bytes and events; `closed_at`: when the core closed (the
    /// last bytes' flush is bounded from there).
    Running { closed_at: Option<Instant> },
    /// Finished: shutting the transport down until the deadline.
    ShuttingDown(Instant),
}

/// The driver is the connection's task: spawning it runs the connection
/// to its end (`on_open`, every event, `on_close`, FIN). A hand-written
/// future rather than an `async fn`, so an idle connection's task holds
/// only the driver itself.
impl<R: Runtime, T: Transport> Future for Driver<R, T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match this.phase {
                Phase::Opening => {
                    this.open();
                    this.phase = Phase::Running { closed_at: None };
                }
                Phase::Running { .. } => {
                    let poll = this.poll_connection(cx);
                    this.stats.flush();
                    std::task::ready!(poll);
                    this.report_lost();
                    this.sleep = None;
                    this.phase = Phase::ShuttingDown(this.rt.now() + Duration::from_secs(1));
                }
                Phase::ShuttingDown(deadline) => return this.poll_shutdown(cx, deadline),
            }
        }
    }
}

impl<R: Runtime, T: Transport> Driver<R, T> {
    /// A driver for a connection whose first bytes (sent right after the
    /// handshake) may already be in `read_buf`.
    pub(crate) fn new(
        rt: R,
        io: T,
        ws: WebSocket,
        handler: Arc<dyn Handler>,
        limits: Arc<DriverLimits>,
        read_buf: BytesMut,
        release: Option<Release>,
    ) -> Self {
        let now = rt.now();
        let rate = limits.rate_limit.map(|l| {
            Box::new(RateState { bucket: TokenBucket::new(l.per_second, l.burst, now), deferred_close_at: None })
        });
        Driver {
            rt,
            io,
            ws,
            handler,
            limits,
            read_buf,
            read_closed: false,
            sleep: None,
            rate,
            last_read: now,
            write_stalled_since: None,
            flush_pending: false,
            phase: Phase::Opening,
            last_cork: None,
            cork_delivery: None,
            stats: crate::metrics::ConnStats::new(release.is_some()),
            _release: release,
        }
    }

    /// Runs `on_open` and feeds the core any frames that arrived with the
    /// handshake. Called on the first poll.
    fn open(&mut self) {
        if !self.limits.error_replies.is_default() {
            // For `parse_json`, which has only the handle.
            self.ws.set_local(ConnErrorReplies(self.limits.error_replies.clone()));
        }
        self.call(|h, ws| h.on_open(ws));
        if !self.read_buf.is_empty() {
            let now = self.rt.now();
            let mut buf = std::mem::take(&mut self.read_buf);
            self.ws.shared.lock().conn.handle_read(&mut buf, now);
            self.read_buf = buf;
        }
    }

    /// Tells the handler (after `on_close`) about messages a send accepted
    /// that never reached the transport: nothing is lost silently.
    fn report_lost(&self) {
        let (messages, bytes) = self.ws.shared.lock().conn.unsent();
        if messages > 0 {
            tracing::debug!(id = %self.ws.id(), messages, bytes, "accepted messages never written");
            let error = WsError::Lost { messages, bytes };
            self.call(|h, ws| h.on_error(ws, &error));
        }
    }

    /// Sends FIN once the connection is finished, giving up after a second.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        if self.io.poll_shutdown(cx).is_ready() || self.rt.now() >= deadline {
            return Poll::Ready(());
        }
        let sleep = self.sleep.get_or_insert_with(|| (deadline, self.rt.sleep_until(deadline)));
        sleep.1.as_mut().poll(cx)
    }

    fn poll_connection(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(delivery) = &mut self.cork_delivery {
            // Polled again after yielding with a cork to deliver (see
            // `fanout`): once more while other drivers still add to it.
            if !delivery.after_yield() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if let Some(delivery) = self.cork_delivery.take() {
                delivery.run();
            }
        }
        for _ in 0..ROUNDS_PER_POLL {
            let now = self.rt.now();
            let mut progress = self.apply_commands_and_timers(cx, now);
            progress |= self.read(cx, now);
            progress |= self.dispatch_events(now);
            progress |= self.write(cx, now);
            if self.ws.shared.lock().conn.is_finished() {
                // A write that fails (the peer reset the connection) closes
                // the core after this round's dispatch: hand its Closed event
                // to the handler before finishing. Without this, `on_close`
                // never ran for such a connection, and a client's `recv()`
                // never returned `None`. Found by sim-tests' shutdown
                // simulation (a stalled client writing after a reset).
                self.dispatch_events(now);
                if let Some(delivery) = self.cork_delivery.take() {
                    delivery.run();
                }
                return Poll::Ready(());
            }
            if self.enforce_driver_deadlines(now) {
                continue;
            }
            if progress {
                continue;
            }
            match self.poll_sleep(cx, now) {
                Poll::Ready(()) => continue,
                Poll::Pending => {
                    if self.cork_delivery.is_some() {
                        // Yield: the tasks ready on this worker run before
                        // the cork is delivered.
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                }
            }
        }
        // Budget spent with input still coming: yield, and come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Registers our waker for other tasks' sends, applies a close asked
    /// for by a handle, and fires the core's due deadlines.
    fn apply_commands_and_timers(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut inner = self.ws.shared.lock();
        if !inner.driver_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            inner.driver_waker = Some(cx.waker().clone());
        }
        let mut progress = false;
        if std::mem::take(&mut inner.pending_abort) {
            inner.conn.handle_eof();
            self.read_closed = true;
            progress = true;
        }
        if let Some((code, reason)) = inner.pending_close.take().map(|b| *b) {
            let _ = inner.conn.close(code, &reason, now);
            progress = true;
        }
        if inner.conn.poll_timeout().is_some_and(|at| at <= now) {
            inner.conn.handle_timeout(now);
            progress = true;
        }
        if let Some(rate) = self.rate.as_mut().filter(|r| r.deferred_close_at.is_some_and(|at| at <= now)) {
            // The handler did not come back for its messages in time.
            rate.deferred_close_at = None;
            let _ = inner.conn.close(CloseCode::POLICY_VIOLATION, RATE_LIMIT_REASON, now);
            progress = true;
        }
        progress
    }

    /// Reads once and hands the core every complete frame the read holds.
    /// Returns whether anything was read.
    fn read(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        if self.read_closed {
            return false;
        }
        let needed = {
            // One lock for every question the read asks of the connection.
            let mut inner = self.ws.shared.lock();
            // A full stream-style inbox does not stop reading: its messages
            // wait in the core's backlog (see `dispatch_events`), and the
            // core keeps answering pings, registering pongs and handling a
            // close at read time, so a handler that only sends for a while
            // does not lose live clients to the heartbeat. Only the
            // backlog's own bound stops reading. A client (`connect`)
            // still stops at a full inbox: an application that stops
            // calling `recv` stops reading its socket, so the server it
            // talks to feels the backpressure (sim-tests' slow-consumer
            // and shutdown scenarios model a stalled client this way).
            let inbox_full = inner.inbox.as_ref().is_some_and(|i| i.is_full());
            let (events, bytes) = inner.conn.backlog();
            if inbox_full && inner.conn.role() == Role::Client
                || events >= MAX_BACKLOG_EVENTS
                || bytes >= MAX_BACKLOG_BYTES
            {
                return false;
            }
            if inner.conn.input_paused() {
                // The core stopped at its inflation budget with frames left
                // in the buffer: take them before reading more.
                inner.conn.handle_read(&mut self.read_buf, now);
                return true;
            }
            // A frame whose header is in says how much more it needs. Room
            // is made for what has arrived, not what was announced: at most
            // twice what the buffer already holds of it (or
            // read_buffer_size), so the buffer doubles as a large frame
            // arrives (a 14-byte header announcing 1 MiB, then silence,
            // holds READ_AHEAD_FLOOR, not MAX_READ_AHEAD; issue 10), and a
            // large echo still regrows it only log(size) times. Growing by
            // read_buffer_size instead regrew, and recopied, the buffer
            // every few KiB of a large frame: ~10% of the CPU of 64 KiB echoes.
            let buffered = self.read_buf.len();
            let arrived_bound = self.limits.read_buffer_size.max(READ_AHEAD_FLOOR).max(buffered.saturating_mul(2));
            inner.conn.read_hint(buffered).unwrap_or(0).min(MAX_READ_AHEAD).min(arrived_bound)
        };
        if self.read_buf.capacity() - self.read_buf.len() < needed.max(self.limits.read_buffer_size / 2) {
            self.read_buf.reserve(needed.max(self.limits.read_buffer_size));
        }
        match self.io.poll_read_buf(cx, &mut self.read_buf) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                self.read_closed = true;
                self.ws.shared.lock().conn.handle_eof();
                true
            }
            Poll::Ready(Ok(n)) => {
                self.stats.read(n);
                self.last_read = now;
                self.ws.shared.lock().conn.handle_read(&mut self.read_buf, now);
                true
            }
            Poll::Pending => {
                if self.read_buf.is_empty() {
                    // An idle connection holds no read buffer.
                    self.read_buf = BytesMut::new();
                }
                false
            }
        }
    }

    /// Hands pending events to the handler one at a time, outside the lock
    /// so the handler can send. Taken one by one, not drained: the core
    /// fails the connection on a protocol error only once the events
    /// before it are taken, so the handler's replies to them are queued
    /// ahead of the close frame, in the wire's order.
    ///
    /// While a stream-style inbox is full no event is taken: they stay in
    /// the core's queue, in order (bounded by `MAX_BACKLOG_*`: reading
    /// stops there), and `recv` wakes the driver when it makes room. Once
    /// the core is closed (nothing more can arrive, so what is left is
    /// bounded), everything left goes to the inbox at once: `on_close`
    /// runs and the close's flush deadline starts without waiting for the
    /// handler to `recv`, and `recv` still sees every message, then `None`.
    fn dispatch_events(&mut self, now: Instant) -> bool {
        if let Some(previous) = self.last_cork.take() {
            crate::fanout::catch_up(&previous);
        }
        // The batch's broadcasts are delivered together with those of the
        // other drivers this worker runs in the same tick (see `fanout`).
        let cork = crate::fanout::cork();
        let mut progress = false;
        loop {
            let event = {
                let mut inner = self.ws.shared.lock();
                if inner.conn.state() != State::Closed && inner.inbox.as_ref().is_some_and(|i| i.is_full()) {
                    break;
                }
                if progress && inner.conn.pending_bytes() >= self.limits.write_buffer_size {
                    // Enough output for one write: send it before handling
                    // the rest of the batch, so replies to a huge batch do
                    // not pile up.
                    break;
                }
                inner.conn.poll_event()
            };
            let Some(event) = event else { break };
            progress = true;
            match event {
                Event::Message(message) => {
                    self.stats.message_received();
                    self.on_message(message, now)
                }
                Event::Dropped { len } => {
                    self.stats.backpressure_drop();
                    self.call(|h, ws| h.on_error(ws, &WsError::Dropped { len }))
                }
                Event::Closed(info) => {
                    if let Phase::Running { closed_at } = &mut self.phase {
                        *closed_at = Some(now);
                    }
                    if let Some(hub) = &self.ws.shared.hub {
                        hub.unregister(self.ws.id());
                    }
                    if let CloseCause::Protocol(err) = &info.cause {
                        let err = WsError::Protocol(err.clone());
                        self.call(|h, ws| h.on_error(ws, &err));
                    }
                    tracing::debug!(id = %self.ws.id(), code = info.code.0, cause = ?info.cause, "connection closed");
                    self.stats.closed(&info);
                    // Who closed, for `ws.close_cause()` in on_close and after.
                    self.ws.set_local(ClosedBy(info.cause.clone()));
                    self.call(|h, ws| h.on_close(ws, info.code.0, &info.reason));
                }
                // Already answered (pings) and counted by the heartbeat
                // (pongs) at read time: the handler only observes them.
                Event::Ping(payload) => self.call(|h, ws| h.on_ping(ws, payload)),
                Event::Pong(payload) => self.call(|h, ws| h.on_pong(ws, payload)),
                _ => {}
            }
        }
        let (last_cork, delivery) = cork.finish();
        self.last_cork = last_cork;
        if delivery.is_some() {
            self.cork_delivery = delivery;
        }
        progress
    }

    fn on_message(&mut self, message: Message, now: Instant) {
        if self.deferred_close_at().is_some() {
            // Closing for the rate limit: nothing more is accepted.
            return;
        }
        if let Some(rate) = &mut self.rate {
            if !rate.bucket.take(now) {
                self.stats.rate_limited();
                let action = self.limits.rate_limit.map(|l| l.action).unwrap_or_default();
                self.call(|h, ws| h.on_error(ws, &WsError::RateLimited));
                match action {
                    RateLimitAction::Close => self.close_for_rate_limit(now),
                    _ => {
                        if let Some(reply) = self.limits.error_replies.reply(&WsError::RateLimited) {
                            let _ = self.ws.send(reply);
                        }
                    }
                }
                return;
            }
        }
        match message {
            Message::Text(text) => self.call(|h, ws| h.on_message(ws, text)),
            Message::Binary(data) => self.call(|h, ws| h.on_binary(ws, data)),
        }
    }

    /// Closes with 1008 for the rate limit. Callbacks have already queued
    /// their replies to the messages accepted before this one, so the
    /// close frame follows them at once. A stream-style handler may not
    /// have taken those messages yet: the close waits until it has taken
    /// them all and asks for the next (its replies are queued by then),
    /// at most `close_timeout`, so it loses no reply either.
    fn close_for_rate_limit(&mut self, now: Instant) {
        // This batch's broadcasts are queued ahead of the close, as sends are.
        crate::fanout::uncork();
        let mut inner = self.ws.shared.lock();
        if let Some(inbox) = inner.inbox.as_mut() {
            inbox.close_when_read = Some((CloseCode::POLICY_VIOLATION, RATE_LIMIT_REASON.to_owned()));
            if let Some(reader) = inbox.reader.take() {
                // A handler waiting in recv applies it now.
                reader.wake();
            }
            if let Some(rate) = self.rate.as_mut() {
                rate.deferred_close_at = Some(blaze_proto::deadline_after(now, self.limits.close_timeout));
            }
            return;
        }
        let _ = inner.conn.close(CloseCode::POLICY_VIOLATION, RATE_LIMIT_REASON, now);
    }

    /// Runs a handler method, catching a panic: the connection is closed
    /// with 1011 and the server goes on.
    fn call(&self, f: impl FnOnce(&dyn Handler, &WebSocket)) {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(&*self.handler, &self.ws)));
        if let Err(panic) = result {
            let message = panic_message(&*panic);
            tracing::error!(id = %self.ws.id(), "handler panicked: {message}");
            crate::fanout::uncork();
            let now = self.rt.now();
            let _ = self.ws.shared.lock().conn.close(CloseCode::INTERNAL_ERROR, "internal error", now);
            let error = WsError::HandlerPanicked(message);
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| self.handler.on_error(&self.ws, &error)));
        }
    }

    /// Writes everything queued, as few syscalls as the socket allows.
    fn write(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        let shared = self.ws.shared.clone();
        let mut inner = shared.lock();
        self.stats.take_sent(&mut inner.metrics);
        while inner.conn.wants_write() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count = inner.conn.transmit_slices(&mut slices);
            match self.io.poll_write_vectored(cx, &slices[..count]) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.stats.write(n);
                    inner.conn.advance_transmit(n);
                    self.write_stalled_since = None;
                    progress = true;
                }
                Poll::Ready(_) => {
                    // Write error or zero-length write: the peer is gone.
                    inner.conn.handle_eof();
                    self.read_closed = true;
                    return true;
                }
                Poll::Pending => {
                    self.write_stalled_since.get_or_insert(now);
                    return progress;
                }
            }
        }
        if progress || self.flush_pending {
            self.flush_pending = self.io.poll_flush(cx).is_pending();
        }
        progress
    }

    /// The deadlines the driver keeps itself: read and write timeouts, and
    /// the bound on flushing the last bytes after close. Returns whether
    /// one fired.
    fn enforce_driver_deadlines(&mut self, now: Instant) -> bool {
        if self.driver_deadline().is_some_and(|at| at <= now) {
            self.read_closed = true;
            self.ws.shared.lock().conn.handle_eof();
            return true;
        }
        false
    }

    fn deferred_close_at(&self) -> Option<Instant> {
        self.rate.as_ref().and_then(|r| r.deferred_close_at)
    }

    fn driver_deadline(&self) -> Option<Instant> {
        // checked_add: a configured Duration::MAX means "never", not a panic.
        let read = self.limits.read_timeout.filter(|_| !self.read_closed).and_then(|t| self.last_read.checked_add(t));
        let write = self.write_stalled_since.zip(self.limits.write_timeout).and_then(|(since, t)| since.checked_add(t));
        let closed_at = match self.phase {
            Phase::Running { closed_at } => closed_at,
            _ => None,
        };
        let flush = closed_at.and_then(|at| at.checked_add(self.limits.close_timeout));
        [read, write, flush].into_iter().flatten().min()
    }

    /// Sleeps until the earliest deadline. The sleep is re-armed only when
    /// a deadline moves earlier; one that moved later is re-checked when
    /// the sleep fires (heartbeat deadlines move on every read).
    fn poll_sleep(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        let core = self.ws.shared.lock().conn.poll_timeout();
        let deferred = self.deferred_close_at();
        let Some(deadline) = [core, self.driver_deadline(), deferred].into_iter().flatten().min() else {
            self.sleep = None;
            return Poll::Pending;
        };
        if deadline <= now {
            return Poll::Ready(());
        }
        let rearm = self.sleep.as_ref().map_or(true, |(at, _)| deadline < *at);
        if rearm {
            self.sleep = Some((deadline, self.rt.sleep_until(deadline)));
        }
        let (_, sleep) = self.sleep.as_mut().expect("armed above");
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
