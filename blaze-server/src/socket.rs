//! The connection handle handlers and tasks hold: [`WebSocket`], and its
//! stream-style wrapper [`WsStream`].

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use bytes::Bytes;

use blaze_proto::{CloseCause, CloseCode, ConnId, Connection, Message, PreparedMessage};

use crate::error::{SendError, WsError};
use crate::frame::Frame;
use crate::hub::Hub;
pub use crate::info::ConnInfo;
use crate::info::RequestInfo;
use crate::locals::Extensions;
use crate::outgoing::{IntoMessage, IntoPrepared, Json};
use crate::replies::ConnErrorReplies;
use crate::runtime::BoxFuture;

/// Runs a future on the server's runtime.
pub(crate) type Spawner = Arc<dyn Fn(BoxFuture<()>) + Send + Sync>;

/// Messages (and control frames) waiting for a stream-style handler's
/// `recv()` / `recv_frame()`.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pub(crate) queue: VecDeque<Frame>,
    /// Payload bytes of the frames in `queue`.
    pub(crate) bytes: usize,
    /// Pings and pongs in `queue` (at most `INBOX_CONTROL_LIMIT`).
    pub(crate) controls: usize,
    pub(crate) reader: Option<Waker>,
    pub(crate) closed: bool,
    /// The close code and reason, once closed.
    pub(crate) close: Option<(u16, String)>,
    /// `recv_frame` has handed out the `Frame::Close`.
    pub(crate) close_reported: bool,
    /// A close to start once the handler has taken every message queued
    /// before it and asks for the next one: a rate limit that closes lets
    /// the handler reply to the messages it accepted first (the replies
    /// are queued ahead of the close frame), as callbacks do.
    pub(crate) close_when_read: Option<(CloseCode, String)>,
}

/// How many messages a stream-style handler may leave unread before the
/// connection stops handing it more (see [`WsStream`]).
pub(crate) const INBOX_LIMIT: usize = 64;
/// How many payload bytes of unread messages a stream-style handler may
/// hold before the connection stops handing it more: the inbox is full at
/// `INBOX_LIMIT` messages or this many bytes, whichever comes first (a
/// single larger message is still delivered into an empty inbox).
pub(crate) const INBOX_LIMIT_BYTES: usize = 1 << 20;
/// Unread pings and pongs kept for `recv_frame`; past it the oldest is
/// discarded. They do not count toward the inbox's bounds: a handler that
/// only sends (and never reads) must not stop the connection reading
/// heartbeat pongs, however long it runs.
pub(crate) const INBOX_CONTROL_LIMIT: usize = 16;

impl Inbox {
    /// Whether the inbox is at either of its bounds.
    pub(crate) fn is_full(&self) -> bool {
        self.queue.len() - self.controls >= INBOX_LIMIT || self.bytes >= INBOX_LIMIT_BYTES
    }

    pub(crate) fn push(&mut self, message: Message) {
        self.push_frame(Frame::from(message));
    }

    /// Queues a control frame (ping or pong) or a message.
    pub(crate) fn push_frame(&mut self, frame: Frame) {
        if frame.is_control() {
            if self.controls >= INBOX_CONTROL_LIMIT {
                if let Some(oldest) = self.queue.iter().position(Frame::is_control) {
                    let dropped = self.queue.remove(oldest).expect("position is in range");
                    self.bytes -= dropped.len();
                    self.controls -= 1;
                }
            }
            self.controls += 1;
        }
        self.bytes += frame.len();
        self.queue.push_back(frame);
    }

    /// The next frame, control frames included.
    pub(crate) fn pop_frame(&mut self) -> Option<Frame> {
        let frame = self.queue.pop_front()?;
        self.bytes -= frame.len();
        if frame.is_control() {
            self.controls -= 1;
        }
        Some(frame)
    }

    /// The next data message; control frames before it are discarded
    /// (they were answered and registered when they were read).
    pub(crate) fn pop(&mut self) -> Option<Message> {
        while let Some(frame) = self.pop_frame() {
            if let Some(message) = frame.into_message() {
                return Some(message);
            }
        }
        None
    }
}

pub(crate) struct ConnInner {
    pub(crate) conn: Connection,
    pub(crate) driver_waker: Option<Waker>,
    /// A close asked for by a handle; the driver applies it with its clock.
    /// Boxed: rare, and every idle connection would carry it inline.
    #[allow(clippy::box_collection)]
    pub(crate) pending_close: Option<Box<(CloseCode, String)>>,
    /// Drop the connection now (shutdown past its drain timeout).
    pub(crate) pending_abort: bool,
    /// Boxed: only stream-style connections and clients have one.
    pub(crate) inbox: Option<Box<Inbox>>,
    /// Sends counted for the driver to flush (feature `metrics`).
    pub(crate) metrics: crate::metrics::SendCounts,
}

pub(crate) struct ConnShared {
    pub(crate) id: ConnId,
    pub(crate) info: RequestInfo,
    pub(crate) inner: Mutex<ConnInner>,
    pub(crate) locals: Mutex<Extensions>,
    pub(crate) hub: Option<Arc<Hub>>,
    pub(crate) spawner: Spawner,
}

impl ConnShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, ConnInner> {
        // No user code runs under this lock, so a poisoned lock only means a
        // panic elsewhere in our own short critical sections: keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the connection and wakes the driver if there is new
    /// output for it to write or a state change to act on. Broadcasts this
    /// thread has corked go first (`fanout`), so they keep their order
    /// with this send.
    pub(crate) fn with_conn<R>(&self, f: impl FnOnce(&mut ConnInner) -> R) -> R {
        crate::fanout::uncork();
        self.update(f)
    }

    /// [`ConnShared::with_conn`] without the uncork (for the fan-out's
    /// own deliveries).
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut ConnInner) -> R) -> R {
        let mut inner = self.lock();
        let was_idle = !inner.conn.wants_write();
        let was_open = inner.conn.is_open();
        let had_events = inner.conn.has_events();
        let out = f(&mut inner);
        // State changes wake the driver even when it already had output:
        // such a driver is typically blocked on a full socket, and only it
        // acts on them. A send that crosses `max_backpressure` under the
        // Close policy starts the close handshake here (the driver arms the
        // close timer); shutdown's drain sets `pending_abort` on clients
        // that never answered. Woken only when idle, a stalled client kept
        // its registration until the write timeout (or forever without one)
        // instead of `close_timeout`, closing with 1006 instead of 1008, and
        // shutdown overran its drain timeout waiting on the stalled. Found
        // by sim-tests' slow-consumer and shutdown simulations.
        let started_closing = was_open && !inner.conn.is_open();
        // A send refused under the drop policy queued `Dropped` for
        // `on_error`: a driver parked on a full socket must hear of it now,
        // not when the socket drains (found by the drop-policy coverage test).
        let new_events = !had_events && inner.conn.has_events();
        if started_closing
            || new_events
            || inner.pending_abort
            || inner.pending_close.is_some()
            || was_idle && (inner.conn.wants_write() || !inner.conn.is_open())
        {
            if let Some(waker) = &inner.driver_waker {
                waker.wake_by_ref();
            }
        }
        out
    }

    pub(crate) fn send_prepared(&self, message: &PreparedMessage) -> Result<(), SendError> {
        self.with_conn(|inner| {
            if inner.pending_close.is_some() {
                return Err(SendError::Closed);
            }
            let result = inner.conn.send_prepared(message).map_err(SendError::from);
            inner.metrics.sent(&result, inner.conn.is_open());
            result
        })
    }
}

/// A live connection: cheap to clone, usable from any task.
///
/// Sends never wait: they queue the frame (bounded by `max_backpressure`)
/// and the connection's task writes everything queued in one syscall.
#[derive(Clone)]
pub struct WebSocket {
    pub(crate) shared: Arc<ConnShared>,
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.id())
            .field("path", &self.path())
            .field("remote_addr", &self.remote_addr())
            .finish()
    }
}

impl WebSocket {
    /// Sends a message: a `&str`/`String` as text, `Bytes`/`Vec<u8>` as
    /// binary, [`Json`] as JSON text.
    ///
    /// # What `Ok` guarantees
    ///
    /// `Ok` means the message was queued, in order after every message
    /// sent before it; it does not wait for the socket. Every message a
    /// send accepted then has exactly one of two fates: it is written
    /// whole to the socket (handed to the OS; delivery to the peer is
    /// then TCP's business, and a peer that vanishes may still never read
    /// it), or it is counted in the one [`WsError::Lost`] that `on_error`
    /// gets after `on_close` (the queue was discarded by the backpressure
    /// close policy, the peer went away, or a close or drain deadline
    /// passed with it still queued). [`WebSocket::unsent`] says how many
    /// are still waiting at any moment. `Err` means it was not queued at
    /// all ([`SendError`]: closed, over `max_backpressure`, not
    /// serializable).
    pub fn send(&self, message: impl IntoMessage) -> Result<(), SendError> {
        self.queue(message.into_message()?, Connection::send)
    }

    /// Sends a message uncompressed even if the client negotiated
    /// permessage-deflate: for payloads that are compressed already
    /// (images, archives), where deflate only costs CPU.
    pub fn send_uncompressed(&self, message: impl IntoMessage) -> Result<(), SendError> {
        self.queue(message.into_message()?, Connection::send_uncompressed)
    }

    fn queue(
        &self,
        message: Message,
        send: fn(&mut Connection, Message) -> Result<(), blaze_proto::UsageError>,
    ) -> Result<(), SendError> {
        self.shared.with_conn(|inner| {
            if inner.pending_close.is_some() {
                return Err(SendError::Closed);
            }
            let result = send(&mut inner.conn, message).map_err(SendError::from);
            inner.metrics.sent(&result, inner.conn.is_open());
            result
        })
    }

    /// Messages a send accepted that have not yet been written whole to
    /// the socket, and their bytes. Once the connection has ended, these
    /// were lost (and `on_error` got [`WsError::Lost`] with the same count).
    pub fn unsent(&self) -> (u64, u64) {
        crate::fanout::uncork();
        self.shared.lock().conn.unsent()
    }

    /// Whether permessage-deflate was negotiated on this connection.
    pub fn is_compressed(&self) -> bool {
        self.shared.lock().conn.is_deflate_enabled()
    }

    /// Sends a binary message.
    pub fn send_binary(&self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.send(Message::Binary(data.into()))
    }

    /// Sends a value as a JSON text message.
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        self.send(Json(value))
    }

    /// Sends a message framed once for many receivers.
    pub fn send_prepared(&self, message: &PreparedMessage) -> Result<(), SendError> {
        self.shared.send_prepared(message)
    }

    /// Sends a ping (at most 125 bytes of payload).
    pub fn ping(&self, payload: &[u8]) -> Result<(), SendError> {
        self.shared.with_conn(|inner| inner.conn.ping(payload).map_err(SendError::from))
    }

    /// Sends a pong (at most 125 bytes of payload): an unsolicited one is
    /// a one-way heartbeat (RFC 6455 §5.5.3). Pings from the peer need no
    /// call: they are answered automatically as they are read (Go's
    /// `Pong`, cnetmod's `pong`).
    pub fn pong(&self, payload: &[u8]) -> Result<(), SendError> {
        self.shared.with_conn(|inner| {
            if inner.pending_close.is_some() {
                return Err(SendError::Closed);
            }
            inner.conn.pong(payload).map_err(SendError::from)
        })
    }

    /// Starts the close handshake with a code (1000 normal, 4000-4999 for
    /// the application) and a reason. `on_close` runs when it completes.
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) -> Result<(), SendError> {
        let code = code.into();
        if !code.is_sendable() {
            return Err(SendError::Invalid(format!("close code {code} may not be sent")));
        }
        self.shared.with_conn(|inner| {
            // `with_conn` wakes the driver, which applies it with its clock.
            if inner.conn.is_open() && inner.pending_close.is_none() {
                inner.pending_close = Some(Box::new((code, reason.to_owned())));
            }
        });
        Ok(())
    }

    /// Whether messages can still be sent.
    pub fn is_open(&self) -> bool {
        crate::fanout::uncork();
        let inner = self.shared.lock();
        inner.conn.is_open() && inner.pending_close.is_none()
    }

    /// Bytes queued for this client and not yet written.
    pub fn buffered_amount(&self) -> usize {
        crate::fanout::uncork();
        self.shared.lock().conn.pending_bytes()
    }

    /// The connection's id, unique for the life of the server.
    pub fn id(&self) -> ConnId {
        self.shared.id
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.shared.info.remote_addr
    }

    /// The server's address on this connection.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.info.local_addr
    }

    /// A header of the upgrade request (case-insensitive; for a client, of
    /// the server's 101 response).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.shared.info.header(name)
    }

    /// The request path.
    pub fn path(&self) -> &str {
        self.shared.info.path()
    }

    /// A path parameter of the route (`:room_id`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.shared.info.param(name)
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.shared.info.query(name)
    }

    /// The negotiated subprotocol.
    pub fn protocol(&self) -> Option<&str> {
        self.shared.info.protocol()
    }

    /// Everything known from the upgrade request: path, route, params,
    /// query, headers, addresses, subprotocol. What the Go Blaze reaches
    /// through `ws.Context()` (`ctx.Query("user_id")` is
    /// `ws.query("user_id")` or `ws.info().query`), as plain data: the
    /// request itself is gone once the connection is upgraded.
    ///
    /// A connection keeps this compactly (one string, read in place by
    /// [`WebSocket::header`], [`WebSocket::param`] and the like); the
    /// owned `ConnInfo` is built on the first call, and kept for the
    /// connection's life. Prefer those getters on a server holding many
    /// connections.
    pub fn info(&self) -> &ConnInfo {
        self.shared.info.full()
    }

    /// The `User-Agent` of the upgrade request (the Go Blaze's
    /// `ws.UserAgent()`).
    pub fn user_agent(&self) -> Option<&str> {
        self.header("user-agent")
    }

    /// How the connection ended, once it has (from `on_close` on; `None`
    /// before): [`CloseCause::Remote`] the peer closed first,
    /// [`CloseCause::Local`] we did (`ws.close`, shutdown, a rate limit, a
    /// stream handler returning), [`CloseCause::Protocol`] we failed it
    /// for a protocol error, [`CloseCause::PongTimeout`] /
    /// [`CloseCause::CloseTimeout`] a peer that stopped answering,
    /// [`CloseCause::TransportClosed`] the connection itself ended (reset,
    /// EOF, or the read or write timeout).
    pub fn close_cause(&self) -> Option<CloseCause> {
        self.locals().get::<ClosedBy>().map(|c| c.0.clone())
    }

    /// Stores typed per-connection state, replacing any of the same type.
    pub fn set_local<T: Send + Sync + 'static>(&self, value: T) {
        self.locals().insert(value);
    }

    /// A copy of the per-connection state of type `T` (set by a handler
    /// or attached by a guard).
    pub fn local<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.locals().get::<T>().cloned()
    }

    /// Runs `f` on the per-connection state of type `T`, mutably.
    pub fn with_local<T: Send + Sync + 'static, R>(&self, f: impl FnOnce(Option<&mut T>) -> R) -> R {
        f(self.locals().get_mut::<T>())
    }

    fn locals(&self) -> MutexGuard<'_, Extensions> {
        self.shared.locals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins a topic (a room). Left automatically when the connection closes.
    pub fn join(&self, topic: &str) -> bool {
        self.shared.hub.as_ref().is_some_and(|hub| hub.join(self.id(), topic))
    }

    /// Leaves a topic.
    pub fn leave(&self, topic: &str) -> bool {
        self.shared.hub.as_ref().is_some_and(|hub| hub.leave(self.id(), topic))
    }

    /// The topics this connection has joined.
    pub fn topics(&self) -> Vec<String> {
        self.shared.hub.as_ref().map(|hub| hub.topics_of(self.id())).unwrap_or_default()
    }

    /// Sends to every connection on this connection's path, itself included.
    /// Returns how many it was queued for; made from a callback handler, how
    /// many it is addressed to, as it is delivered when the batch of
    /// messages being handled ends (see [`crate::App::broadcast`]).
    pub fn broadcast(&self, message: impl IntoPrepared) -> Result<usize, SendError> {
        self.with_hub(|hub| hub.broadcast(self.path(), message, None))
    }

    /// Sends to every other connection on this connection's path.
    pub fn broadcast_others(&self, message: impl IntoPrepared) -> Result<usize, SendError> {
        self.with_hub(|hub| hub.broadcast(self.path(), message, Some(self.id())))
    }

    /// Sends to every live connection on every route of the server, this
    /// one included (see [`crate::App::broadcast_all`]).
    pub fn broadcast_all(&self, message: impl IntoPrepared) -> Result<usize, SendError> {
        self.with_hub(|hub| hub.broadcast_all(message, None))
    }

    /// Sends a value as JSON to every connection on this connection's
    /// path, itself included, serialized and framed once.
    pub fn broadcast_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<usize, SendError> {
        self.broadcast(Json(value))
    }

    /// Sends a value as JSON to every member of a topic, serialized and
    /// framed once.
    pub fn publish_json<T: serde::Serialize + ?Sized>(&self, topic: &str, value: &T) -> Result<usize, SendError> {
        self.publish(topic, Json(value))
    }

    /// Sends to every member of a topic.
    pub fn publish(&self, topic: &str, message: impl IntoPrepared) -> Result<usize, SendError> {
        self.with_hub(|hub| hub.publish(topic, message, None))
    }

    /// Sends to every member of a topic but this connection.
    pub fn publish_others(&self, topic: &str, message: impl IntoPrepared) -> Result<usize, SendError> {
        self.with_hub(|hub| hub.publish(topic, message, Some(self.id())))
    }

    fn with_hub<R>(&self, f: impl FnOnce(&Arc<Hub>) -> Result<R, SendError>) -> Result<R, SendError> {
        match &self.shared.hub {
            Some(hub) => f(hub),
            None => Err(SendError::Invalid("broadcast is for server connections".into())),
        }
    }

    /// Whether the server is shutting down (the Go Blaze's
    /// `ctx.IsShuttingDown()`): a long loop can say goodbye and stop. The
    /// server closes every connection with 1001 right after a shutdown
    /// starts, so this is mostly for work spawned from a handler. Always
    /// `false` for a client.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.hub.as_ref().is_some_and(|hub| hub.shutdown.is_triggered())
    }

    /// Runs a future on the server's runtime (for handler work that awaits).
    pub fn spawn(&self, future: impl std::future::Future<Output = ()> + Send + 'static) {
        // What this handler broadcast comes before anything the task sends.
        crate::fanout::uncork();
        (self.shared.spawner)(Box::pin(future));
    }
}

/// The connection's close cause, kept in its locals once closed (private:
/// no handler can see it but through `close_cause`).
#[derive(Clone)]
pub(crate) struct ClosedBy(pub(crate) CloseCause);

/// A connection read as a stream of messages: the style of the Go Blaze's
/// `ReadMessage` loop and cnetmod's `co_await ws.recv()`.
///
/// Derefs to [`WebSocket`] for sending and everything else. When the
/// handler's future returns, the connection is closed with 1000.
///
/// # Unread messages
///
/// Messages the handler has not yet `recv`ed wait in an inbox bounded at
/// 64 messages or 1 MiB of payload, whichever comes first (a single
/// larger message still goes into an empty inbox). While it is full, further messages stay
/// in the connection's own bounded queue and the socket is still read, so
/// pings are answered, pongs registered (a handler that only sends for a
/// while keeps its live clients past the heartbeat) and a close from the
/// peer is handled; once that queue is full too, the socket is no longer
/// read and TCP slows the client down. (A client from `connect` stops
/// reading its socket as soon as its inbox is full, so the server feels
/// an application that stopped calling `recv`.) Messages are delivered in order;
/// when the connection ends, every message it received is still handed to
/// `recv` before it returns `None`.
///
/// Pings and pongs are queued beside the messages for
/// [`WsStream::recv_frame`] (the 16 most recent unread ones; they do not
/// count toward the bounds above); `recv` skips them.
#[derive(Debug)]
pub struct WsStream {
    ws: WebSocket,
}

impl std::ops::Deref for WsStream {
    type Target = WebSocket;
    fn deref(&self) -> &WebSocket {
        &self.ws
    }
}

impl WsStream {
    pub(crate) fn new(ws: WebSocket) -> WsStream {
        WsStream { ws }
    }

    /// The next message; `None` once the connection is closed. Control
    /// frames are skipped (pings are answered automatically); see
    /// [`WsStream::recv_frame`] to see them.
    pub async fn recv(&mut self) -> Option<Message> {
        poll_fn(|cx| self.poll_inbox(cx, false).map(|frame| frame.and_then(Frame::into_message))).await
    }

    /// The next frame: a text or binary message, a ping (already answered),
    /// a pong, or, once, the connection's end as [`Frame::Close`] with its
    /// code and reason; `None` after that. cnetmod's `recv_frame`. Mixing
    /// it with [`WsStream::recv`] is fine: `recv` skips the control frames
    /// it meets.
    pub async fn recv_frame(&mut self) -> Option<Frame> {
        poll_fn(|cx| self.poll_inbox(cx, true)).await
    }

    /// Takes the next frame for `recv` (data only) or `recv_frame` (all,
    /// and the close).
    fn poll_inbox(&mut self, cx: &mut std::task::Context<'_>, frames: bool) -> Poll<Option<Frame>> {
        let shared = &self.ws.shared;
        let mut inner = shared.lock();
        let inner = &mut *inner;
        let was_full = inner.inbox.as_ref().is_some_and(|i| i.is_full());
        let inbox = inner.inbox.get_or_insert_with(Box::default);
        let next = if frames { inbox.pop_frame() } else { inbox.pop().map(Frame::from) };
        let now_full = inbox.is_full();
        if was_full && !now_full {
            // The driver paused handing us messages; let it resume.
            if let Some(waker) = &inner.driver_waker {
                waker.wake_by_ref();
            }
        }
        if let Some(frame) = next {
            return Poll::Ready(Some(frame));
        }
        if let Some((code, reason)) = inbox.close_when_read.take() {
            // Every message accepted before the close was asked for has
            // been taken (and answered): start it now (what `close` does).
            if inner.conn.is_open() && inner.pending_close.is_none() {
                inner.pending_close = Some(Box::new((code, reason)));
                if let Some(waker) = &inner.driver_waker {
                    waker.wake_by_ref();
                }
            }
        }
        if inbox.closed {
            if frames && !inbox.close_reported {
                inbox.close_reported = true;
                let (code, reason) = inbox.close.clone().unwrap_or((1006, String::new()));
                return Poll::Ready(Some(Frame::Close { code, reason }));
            }
            return Poll::Ready(None);
        }
        inbox.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The next text message, parsed as JSON into `T`. Malformed JSON (or a
    /// binary message) is answered to the client with
    /// `{"type":"error","error":"..."}` and returned as an error; the
    /// connection stays open. `None` once the connection is closed.
    pub async fn recv_json<T: serde::de::DeserializeOwned>(&mut self) -> Option<Result<T, WsError>> {
        let message = self.recv().await?;
        Some(parse_json(&self.ws, &message))
    }

    /// The handle, to move into another task.
    pub fn handle(&self) -> WebSocket {
        self.ws.clone()
    }

    /// The close code and reason the connection ended with, once `recv`
    /// has returned `None`.
    pub fn close_status(&self) -> Option<(u16, String)> {
        self.ws.shared.lock().inbox.as_ref().and_then(|i| i.close.clone())
    }
}

impl Drop for WsStream {
    /// Dropping the stream ends the conversation: close with 1000. Not
    /// while unwinding: a panicking handler's connection closes with 1011.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.ws.close(CloseCode::NORMAL, "");
        }
    }
}

/// Parses a message as JSON, answering the client with an error message
/// if it is not.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(ws: &WebSocket, message: &Message) -> Result<T, WsError> {
    let result = match message {
        Message::Text(text) => serde_json::from_str(text).map_err(|e| WsError::Json(e.to_string())),
        Message::Binary(_) => Err(WsError::Json("expected a text message".into())),
    };
    if let Err(error) = &result {
        let replies = ws.locals().get::<ConnErrorReplies>().map(|r| r.0.clone()).unwrap_or_default();
        if let Some(reply) = replies.reply(error) {
            let _ = ws.send(reply);
        }
    }
    result
}
