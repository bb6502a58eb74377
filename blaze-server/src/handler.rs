//! The three handler styles: the [`Handler`] trait a struct implements,
//! [`Callbacks`] built from closures, and stream style ([`crate::WsStream`]).
//! All three run on the same driver; callbacks and trait methods run on
//! the connection's task between reads, so they must not block: anything
//! that awaits goes in [`WebSocket::spawn`](crate::WebSocket::spawn).

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use blaze_proto::{Message, Utf8Bytes};

use crate::error::WsError;
use crate::frame::Frame;
use crate::socket::{parse_json, WebSocket, WsStream};

/// A WebSocket endpoint's behaviour, one method per lifecycle event (the
/// Azu `Channel`, the C++ Blaze callbacks). Every method has an empty
/// default, so implement only what you need.
///
/// ```
/// use blaze_server::{Handler, Utf8Bytes, WebSocket};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_message(&self, ws: &WebSocket, text: Utf8Bytes) {
///         let _ = ws.send(text);
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// The handshake completed.
    fn on_open(&self, ws: &WebSocket) {
        let _ = ws;
    }
    /// A text message arrived.
    fn on_message(&self, ws: &WebSocket, text: Utf8Bytes) {
        let _ = (ws, text);
    }
    /// A binary message arrived.
    fn on_binary(&self, ws: &WebSocket, data: Bytes) {
        let _ = (ws, data);
    }
    /// The connection closed, however it ended; called exactly once.
    ///
    /// `code` and `reason` are those of the close handshake: the peer's
    /// when it closed first, its answer to ours when we did (normally our
    /// own code echoed back), the code we sent when we failed the
    /// connection for a protocol error (1002, 1007, 1009, ...; the peer's
    /// answer is not awaited), 1005 if the peer's close frame had no code,
    /// and 1006 when there was no close handshake (reset, pong timeout,
    /// close timeout, read or write timeout). Who closed and why:
    /// [`WebSocket::close_cause`].
    fn on_close(&self, ws: &WebSocket, code: u16, reason: &str) {
        let _ = (ws, code, reason);
    }
    /// Something went wrong; the connection may be closing.
    fn on_error(&self, ws: &WebSocket, error: &WsError) {
        let _ = (ws, error);
    }
    /// A ping arrived. It has already been answered with a pong (whatever
    /// this method does), so only implement it to observe pings.
    fn on_ping(&self, ws: &WebSocket, payload: Bytes) {
        let _ = (ws, payload);
    }
    /// A pong arrived: an answer to the heartbeat's (or
    /// [`WebSocket::ping`]'s) ping, or an unsolicited one. The heartbeat
    /// has already counted it.
    fn on_pong(&self, ws: &WebSocket, payload: Bytes) {
        let _ = (ws, payload);
    }
}

/// Implements [`Handler`] for a smart pointer by forwarding every method
/// to the handler it points to.
macro_rules! forward_handler {
    ($(#[$doc:meta])* $pointer:ident) => {
        $(#[$doc])*
        impl<H: Handler + ?Sized> Handler for $pointer<H> {
            fn on_open(&self, ws: &WebSocket) {
                (**self).on_open(ws)
            }
            fn on_message(&self, ws: &WebSocket, text: Utf8Bytes) {
                (**self).on_message(ws, text)
            }
            fn on_binary(&self, ws: &WebSocket, data: Bytes) {
                (**self).on_binary(ws, data)
            }
            fn on_close(&self, ws: &WebSocket, code: u16, reason: &str) {
                (**self).on_close(ws, code, reason)
            }
            fn on_error(&self, ws: &WebSocket, error: &WsError) {
                (**self).on_error(ws, error)
            }
            fn on_ping(&self, ws: &WebSocket, payload: Bytes) {
                (**self).on_ping(ws, payload)
            }
            fn on_pong(&self, ws: &WebSocket, payload: Bytes) {
                (**self).on_pong(ws, payload)
            }
        }
    };
}

forward_handler!(
    /// Forwards every method to the shared handler, so one value can serve a
    /// route and be kept by HTTP routes, tasks and tests:
    /// `app.ws("/chat", chat.clone())` with `chat: Arc<Chat>`.
    Arc
);
forward_handler!(
    /// Forwards every method to the boxed handler (`Box<dyn Handler>` chosen
    /// at run time).
    Box
);

type OpenFn = Box<dyn Fn(&WebSocket) + Send + Sync>;
/// Text callbacks report bad JSON (from `on_json`) back to `on_error`.
type TextFn = Box<dyn Fn(&WebSocket, Utf8Bytes) -> Result<(), WsError> + Send + Sync>;
type BinaryFn = Box<dyn Fn(&WebSocket, Bytes) + Send + Sync>;
type CloseFn = Box<dyn Fn(&WebSocket, u16, &str) + Send + Sync>;
type ErrorFn = Box<dyn Fn(&WebSocket, &WsError) + Send + Sync>;
type ControlFn = Box<dyn Fn(&WebSocket, Bytes) + Send + Sync>;

/// A [`Handler`] built from closures: the lifecycle-callback style.
///
/// ```
/// use blaze_server::Callbacks;
/// #[derive(serde::Deserialize)]
/// struct Chat { text: String }
///
/// let handler = Callbacks::new()
///     .on_open(|ws| { let _ = ws.send("Welcome!"); })
///     .on_json(|ws, msg: Chat| { let _ = ws.send(format!("Echo: {}", msg.text)); })
///     .on_close(|_ws, code, _reason| println!("closed with {code}"));
/// ```
#[derive(Default)]
pub struct Callbacks {
    open: Option<OpenFn>,
    text: Option<TextFn>,
    binary: Option<BinaryFn>,
    close: Option<CloseFn>,
    error: Option<ErrorFn>,
    ping: Option<ControlFn>,
    pong: Option<ControlFn>,
}

impl fmt::Debug for Callbacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks").finish_non_exhaustive()
    }
}

impl Callbacks {
    /// No callbacks yet.
    pub fn new() -> Callbacks {
        Callbacks::default()
    }

    /// Called when the handshake completes.
    pub fn on_open(mut self, f: impl Fn(&WebSocket) + Send + Sync + 'static) -> Self {
        self.open = Some(Box::new(f));
        self
    }

    /// Called for each text message.
    pub fn on_message(mut self, f: impl Fn(&WebSocket, Utf8Bytes) + Send + Sync + 'static) -> Self {
        self.text = Some(Box::new(move |ws, text| {
            f(ws, text);
            Ok(())
        }));
        self
    }

    /// Called for each text message, parsed as JSON into `T`. Malformed
    /// input is answered with `{"type":"error","error":"invalid JSON: ..."}`
    /// and reported to `on_error`; the connection stays open.
    pub fn on_json<T, F>(mut self, f: F) -> Self
    where
        T: serde::de::DeserializeOwned,
        F: Fn(&WebSocket, T) + Send + Sync + 'static,
    {
        self.text = Some(Box::new(move |ws, text| {
            f(ws, parse_json::<T>(ws, &Message::Text(text))?);
            Ok(())
        }));
        self
    }

    /// Called for each binary message.
    pub fn on_binary(mut self, f: impl Fn(&WebSocket, Bytes) + Send + Sync + 'static) -> Self {
        self.binary = Some(Box::new(f));
        self
    }

    /// Called once when the connection closes, with the code and reason.
    pub fn on_close(mut self, f: impl Fn(&WebSocket, u16, &str) + Send + Sync + 'static) -> Self {
        self.close = Some(Box::new(f));
        self
    }

    /// Called on errors (protocol errors, bad JSON, dropped messages).
    pub fn on_error(mut self, f: impl Fn(&WebSocket, &WsError) + Send + Sync + 'static) -> Self {
        self.error = Some(Box::new(f));
        self
    }

    /// Called for each ping from the peer, after it has been answered
    /// (see [`Handler::on_ping`]).
    pub fn on_ping(mut self, f: impl Fn(&WebSocket, Bytes) + Send + Sync + 'static) -> Self {
        self.ping = Some(Box::new(f));
        self
    }

    /// Called for each pong from the peer (see [`Handler::on_pong`]).
    pub fn on_pong(mut self, f: impl Fn(&WebSocket, Bytes) + Send + Sync + 'static) -> Self {
        self.pong = Some(Box::new(f));
        self
    }
}

impl Handler for Callbacks {
    fn on_open(&self, ws: &WebSocket) {
        if let Some(f) = &self.open {
            f(ws);
        }
    }
    fn on_message(&self, ws: &WebSocket, text: Utf8Bytes) {
        if let Some(f) = &self.text {
            if let Err(error) = f(ws, text) {
                self.on_error(ws, &error);
            }
        }
    }
    fn on_binary(&self, ws: &WebSocket, data: Bytes) {
        if let Some(f) = &self.binary {
            f(ws, data);
        }
    }
    fn on_close(&self, ws: &WebSocket, code: u16, reason: &str) {
        if let Some(f) = &self.close {
            f(ws, code, reason);
        }
    }
    fn on_error(&self, ws: &WebSocket, error: &WsError) {
        if let Some(f) = &self.error {
            f(ws, error);
        }
    }
    fn on_ping(&self, ws: &WebSocket, payload: Bytes) {
        if let Some(f) = &self.ping {
            f(ws, payload);
        }
    }
    fn on_pong(&self, ws: &WebSocket, payload: Bytes) {
        if let Some(f) = &self.pong {
            f(ws, payload);
        }
    }
}

/// The stream style: an async function that owns the connection and loops
/// over `recv()`.
pub(crate) struct StreamHandler<F> {
    pub(crate) f: F,
}

impl<F, Fut> Handler for StreamHandler<F>
where
    F: Fn(WsStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn on_open(&self, ws: &WebSocket) {
        ws.shared.lock().inbox.get_or_insert_with(Box::default);
        let future = (self.f)(WsStream::new(ws.clone()));
        let handle = ws.clone();
        ws.spawn(async move {
            if let Err(panic) = CatchUnwind(Box::pin(future)).await {
                tracing::error!(id = %handle.id(), "stream handler panicked: {panic}");
                let _ = handle.close(1011u16, "internal error");
                return;
            }
            // The handler returned: it is done with the connection.
            let _ = handle.close(1000u16, "");
        });
    }

    fn on_message(&self, ws: &WebSocket, text: Utf8Bytes) {
        push_inbox(ws, Message::Text(text));
    }

    fn on_binary(&self, ws: &WebSocket, data: Bytes) {
        push_inbox(ws, Message::Binary(data));
    }

    fn on_close(&self, ws: &WebSocket, code: u16, reason: &str) {
        close_inbox(ws, code, reason);
    }

    fn on_ping(&self, ws: &WebSocket, payload: Bytes) {
        push_inbox_frame(ws, Frame::Ping(payload));
    }

    fn on_pong(&self, ws: &WebSocket, payload: Bytes) {
        push_inbox_frame(ws, Frame::Pong(payload));
    }
}

/// Queues a control frame for `recv_frame` (`recv` skips it).
pub(crate) fn push_inbox_frame(ws: &WebSocket, frame: Frame) {
    let mut inner = ws.shared.lock();
    let inbox = inner.inbox.get_or_insert_with(Box::default);
    inbox.push_frame(frame);
    if let Some(reader) = inbox.reader.take() {
        reader.wake();
    }
}

/// Marks the stream ended: `recv()` returns `None` once the queue is empty.
pub(crate) fn close_inbox(ws: &WebSocket, code: u16, reason: &str) {
    let mut inner = ws.shared.lock();
    let inbox = inner.inbox.get_or_insert_with(Box::default);
    inbox.closed = true;
    inbox.close = Some((code, reason.to_owned()));
    if let Some(reader) = inbox.reader.take() {
        reader.wake();
    }
}

pub(crate) fn push_inbox(ws: &WebSocket, message: Message) {
    let mut inner = ws.shared.lock();
    let inbox = inner.inbox.get_or_insert_with(Box::default);
    inbox.push(message);
    if let Some(reader) = inbox.reader.take() {
        reader.wake();
    }
}

/// Polls a boxed future, turning a panic into an error with its message.
pub(crate) struct CatchUnwind(pub(crate) Pin<Box<dyn Future<Output = ()> + Send>>);

impl Future for CatchUnwind {
    type Output = Result<(), String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic_message(&*panic))),
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}
