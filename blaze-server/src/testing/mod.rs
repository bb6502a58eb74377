//! Testing handlers without a network (feature `testing`).
//!
//! [`App::test_client`] connects a client to the app through an
//! in-memory, bounded byte pipe ([`pipe`]), on an executor with a virtual
//! clock ([`TestRuntime`]) that only the test moves. Everything between the
//! two ends is the real thing: the client speaks WebSocket frames through
//! Blaze's own client (the handshake and codec of `blaze-proto`), and the
//! server side is [`App::serve_with`] itself: the accept loop, routing,
//! guards, the upgrade, the connection driver, the hub, heartbeats and
//! graceful shutdown. No sockets, no ports, no threads, no sleeping:
//! a 90-second heartbeat timeout runs in microseconds, and a test runs the
//! same way every time.
//!
//! ```
//! use std::time::Duration;
//! use blaze_server::{App, Callbacks};
//!
//! let app = App::new();
//! app.ws("/chat", Callbacks::new()
//!     .on_open(|ws| { let _ = ws.send(format!("hi {}", ws.query("name").unwrap_or("?"))); })
//!     .on_message(|ws, text| { let _ = ws.broadcast(text); }));
//!
//! let mut ann = app.test_client("/chat?name=ann").unwrap();
//! let mut bob = app.test_client("/chat?name=bob").unwrap();
//! assert_eq!(ann.recv_text().as_deref(), Some("hi ann"));
//! assert_eq!(bob.recv_text().as_deref(), Some("hi bob"));
//! ann.send("hello").unwrap();
//! assert_eq!(bob.recv_text().as_deref(), Some("hello"));
//!
//! // Bob's network goes silent (no FIN): the server's heartbeat (ping
//! // every 30 s, pong within 60 s) prunes him in virtual time.
//! bob.hold();
//! ann.advance(Duration::from_secs(91));
//! assert_eq!(app.connection_count("/chat"), 1);
//! ```
//!
//! All clients of one app share one [`TestServer`] (one clock, one
//! executor) for as long as any of them is alive; [`TestServer::new`]
//! makes a separate one. Tasks a handler spawns (`ws.spawn`) run on the
//! test executor too; a task that needs a runtime's own timers or I/O
//! (`tokio::time::sleep`) does not: take a [`Runtime`] parameter instead
//! and pass it [`TestServer::runtime`] in tests.

mod pipe;
mod sim;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::app::App;
use crate::client::{connect_with, ClientError, ClientOptions, WsUrl};
use crate::error::SendError;
use crate::outgoing::IntoMessage;
use crate::runtime::{Accepted, Listener, Runtime};
use crate::socket::{WebSocket, WsStream};
use blaze_proto::Message;

pub use pipe::{pipe, MemStream, DEFAULT_PIPE_CAPACITY};
pub use sim::TestRuntime;

/// Where an [`App`] keeps the test server its `test_client`s share (weakly:
/// it lives as long as one of them).
#[derive(Debug, Default)]
pub(crate) struct TestSlot(Mutex<Weak<Env>>);

impl App {
    /// A client connected to this app through an in-memory transport
    /// (see [`crate::testing`]): `path` is the request target, with its
    /// query (`"/chat?name=ann"`). Fails as a real client would: a guard's
    /// rejection is `ClientError::Handshake(Rejected { status, body })`.
    pub fn test_client(&self, path: &str) -> Result<TestClient, ClientError> {
        self.test_server().client(path)
    }

    /// The test server this app's [`test_client`](App::test_client)s share,
    /// started if none is alive.
    pub fn test_server(&self) -> TestServer {
        let mut slot = self.inner.test_slot.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(env) = slot.upgrade() {
            return TestServer { env };
        }
        let server = TestServer::new(self);
        *slot = Arc::downgrade(&server.env);
        server
    }
}

struct Env {
    app: App,
    rt: TestRuntime,
    incoming: Arc<Mutex<Incoming>>,
    serving: Arc<AtomicBool>,
    next_port: AtomicU16,
    pipe_capacity: AtomicUsize,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer").field("rt", &self.rt).field("serving", &self.serving).finish_non_exhaustive()
    }
}

impl Drop for Env {
    /// Frees the server: its tasks hold the runtime, so without this a
    /// finished test would keep every connection alive.
    fn drop(&mut self) {
        self.rt.clear();
    }
}

/// An [`App`] served on a [`TestRuntime`] from an in-memory listener.
/// Cheap to clone; every clone is the same server. When the last clone
/// (and the last [`TestClient`]) is dropped, every task it ran is dropped.
#[derive(Clone, Debug)]
pub struct TestServer {
    env: Arc<Env>,
}

#[derive(Default)]
struct Incoming {
    queue: std::collections::VecDeque<Accepted<MemStream>>,
    waker: Option<Waker>,
    closed: bool,
}

/// The server's side of the in-memory listener.
struct MemListener(Arc<Mutex<Incoming>>);

impl Listener for MemListener {
    type Io = MemStream;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<Accepted<MemStream>>> {
        let mut incoming = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match incoming.queue.pop_front() {
            Some(accepted) => Poll::Ready(Ok(accepted)),
            None => {
                incoming.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for MemListener {
    /// `serve` returned: later connections are refused (their streams
    /// dropped, which the client reads as end of stream).
    fn drop(&mut self) {
        let mut incoming = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        incoming.closed = true;
        incoming.queue.clear();
    }
}

impl TestServer {
    /// Starts serving `app` on a new [`TestRuntime`] (its own clock).
    pub fn new(app: &App) -> TestServer {
        let rt = TestRuntime::new();
        let incoming = Arc::new(Mutex::new(Incoming::default()));
        let serving = Arc::new(AtomicBool::new(false));
        start_serving(app, &rt, &incoming, &serving);
        TestServer {
            env: Arc::new(Env {
                app: app.clone(),
                rt,
                incoming,
                serving,
                next_port: AtomicU16::new(40_000),
                pipe_capacity: AtomicUsize::new(DEFAULT_PIPE_CAPACITY),
            }),
        }
    }

    /// The app served.
    pub fn app(&self) -> &App {
        &self.env.app
    }

    /// The runtime every task of this server runs on: pass it to code
    /// that takes a [`Runtime`] (a background loop), or spawn on it.
    pub fn runtime(&self) -> &TestRuntime {
        &self.env.rt
    }

    /// Bytes each direction of later connections buffers (default
    /// [`DEFAULT_PIPE_CAPACITY`]); smaller makes backpressure come sooner.
    pub fn set_pipe_capacity(&self, bytes: usize) {
        self.env.pipe_capacity.store(bytes, Ordering::SeqCst);
    }

    /// Runs every task until all wait on input or time.
    pub fn run(&self) {
        self.env.rt.run_until_idle();
    }

    /// Moves virtual time forward, firing every deadline on the way.
    pub fn advance(&self, duration: Duration) {
        self.env.rt.advance(duration);
    }

    /// Virtual time since the server started.
    pub fn elapsed(&self) -> Duration {
        self.env.rt.elapsed()
    }

    /// Runs a background task on the test executor (as `App::spawn` does
    /// on a real runtime), and runs it until it waits.
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.env.rt.spawn(Box::pin(future));
        self.run();
    }

    /// Serves again after a [`shutdown`](Self::shutdown) (a restarted
    /// server: same app, same clock); nothing if still serving.
    pub fn restart(&self) {
        if !self.is_serving() {
            self.env.incoming.lock().unwrap_or_else(PoisonError::into_inner).closed = false;
            start_serving(&self.env.app, &self.env.rt, &self.env.incoming, &self.env.serving);
        }
    }

    /// Whether `serve` is still running (it returns after a shutdown).
    pub fn is_serving(&self) -> bool {
        self.env.serving.load(Ordering::SeqCst)
    }

    /// Shuts the app down gracefully (close 1001 to every client, each
    /// `on_close`, the drain) and advances time until `serve` returns, at
    /// most the drain timeout and a few seconds more. Returns the virtual
    /// time it took.
    pub fn shutdown(&self) -> Duration {
        let start = self.elapsed();
        self.env.app.shutdown();
        let limit =
            *self.env.app.inner.drain_timeout.read().unwrap_or_else(PoisonError::into_inner) + Duration::from_secs(5);
        while self.is_serving() && self.elapsed() - start < limit {
            // Every timer on the way fires at its own deadline.
            self.advance(Duration::from_millis(50));
        }
        self.elapsed() - start
    }

    /// Opens a raw connection: whatever is written is what the server
    /// reads, from an address of its own (`127.0.0.1`, a new port).
    pub fn connect_raw(&self) -> RawConn {
        let addr = self.next_addr();
        self.connect_raw_from(addr)
    }

    /// A transport connected to the server (for [`crate::connect_with`],
    /// or a [`crate::ReconnectingClient`]'s connector); end of stream at
    /// once if the server is no longer listening.
    pub fn connect_stream(&self) -> MemStream {
        let (client, server) = pipe(self.env.pipe_capacity.load(Ordering::SeqCst));
        let addr = self.next_addr();
        self.accept(server, addr);
        client
    }

    /// Opens a raw connection from `remote_addr`.
    pub fn connect_raw_from(&self, remote_addr: SocketAddr) -> RawConn {
        let (client, server) = pipe(self.env.pipe_capacity.load(Ordering::SeqCst));
        self.accept(server, remote_addr);
        self.run();
        RawConn { io: client, server: self.clone() }
    }

    /// A client on `path` (with its query), as [`App::test_client`].
    pub fn client(&self, path: &str) -> Result<TestClient, ClientError> {
        self.client_with(path, ClientOptions::default())
    }

    /// A client with subprotocols, headers (`Authorization`, `Origin`) or
    /// its own limits.
    pub fn client_with(&self, path: &str, options: ClientOptions) -> Result<TestClient, ClientError> {
        let addr = self.next_addr();
        self.client_from(path, options, addr)
    }

    /// A client connecting from `remote_addr` (per-IP limits, guards that
    /// look at the address).
    pub fn client_from(
        &self,
        path: &str,
        options: ClientOptions,
        remote_addr: SocketAddr,
    ) -> Result<TestClient, ClientError> {
        let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
        let url = WsUrl { authority: "localhost:80".into(), host: "localhost".into(), port: 80, path, secure: false };
        let (client, server) = pipe(self.env.pipe_capacity.load(Ordering::SeqCst));
        let link = client.link();
        self.accept(server, remote_addr);
        let handshake_timeout = options.config.handshake_timeout;
        let slot = Arc::new(Mutex::new(None));
        let rt = self.env.rt.clone();
        let result = slot.clone();
        self.env.rt.spawn(Box::pin(async move {
            let connected = connect_with(rt, client, &url, options).await;
            *result.lock().unwrap_or_else(PoisonError::into_inner) = Some(connected);
        }));
        self.run();
        // A handshake needs no time unless a guard or the server waits on
        // one: then let the client's own timeout decide.
        let give_up = self.elapsed().saturating_add(handshake_timeout).saturating_add(Duration::from_secs(1));
        loop {
            if let Some(connected) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
                let stream = connected?;
                return Ok(TestClient { stream, link, server: self.clone() });
            }
            if self.elapsed() >= give_up {
                return Err(ClientError::Timeout);
            }
            self.advance(Duration::from_millis(10));
        }
    }

    fn accept(&self, io: MemStream, remote_addr: SocketAddr) {
        let mut incoming = self.env.incoming.lock().unwrap_or_else(PoisonError::into_inner);
        if incoming.closed {
            // Not listening: the stream is dropped, which the client reads
            // as end of stream (as a refused connection).
            return;
        }
        let local_addr = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 80)));
        incoming.queue.push_back(Accepted { io, remote_addr: Some(remote_addr), local_addr });
        if let Some(waker) = incoming.waker.take() {
            waker.wake();
        }
    }

    fn next_addr(&self) -> SocketAddr {
        let port = self.env.next_port.fetch_add(1, Ordering::Relaxed);
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }
}

fn start_serving(app: &App, rt: &TestRuntime, incoming: &Arc<Mutex<Incoming>>, serving: &Arc<AtomicBool>) {
    serving.store(true, Ordering::SeqCst);
    let (app, rt2, listener, serving) = (app.clone(), rt.clone(), MemListener(incoming.clone()), serving.clone());
    rt.spawn(Box::pin(async move {
        let _ = app.serve_with(rt2, listener).await;
        serving.store(false, Ordering::SeqCst);
    }));
    rt.run_until_idle();
}

/// A network link's controls: cut it without a FIN, restore it.
#[derive(Debug, Clone)]
pub struct Link(pipe::LinkInner);

impl Link {
    /// Holds both directions (a partition: nothing arrives, no FIN).
    pub fn hold(&self) {
        self.0.hold();
    }
    /// Ends the hold: what was written meanwhile arrives.
    pub fn release(&self) {
        self.0.release();
    }
}

/// A WebSocket client of a [`TestServer`], driven synchronously: every
/// call runs the server and the client until both wait, so what a call
/// causes has happened when it returns.
#[derive(Debug)]
pub struct TestClient {
    stream: WsStream,
    link: Link,
    server: TestServer,
}

impl TestClient {
    /// Sends a message (text, binary, [`crate::Json`]) and runs the server.
    pub fn send(&self, message: impl IntoMessage) -> Result<(), SendError> {
        let result = self.stream.send(message);
        self.server.run();
        result
    }

    /// Sends a binary message and runs the server.
    pub fn send_binary(&self, data: impl Into<bytes::Bytes>) -> Result<(), SendError> {
        let result = self.stream.send_binary(data);
        self.server.run();
        result
    }

    /// Sends a value as a JSON text message and runs the server.
    pub fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        let result = self.stream.send_json(value);
        self.server.run();
        result
    }

    /// Sends a ping and runs the server.
    pub fn ping(&self, payload: &[u8]) -> Result<(), SendError> {
        let result = self.stream.ping(payload);
        self.server.run();
        result
    }

    /// Runs the server, then returns the next message received, if one
    /// has arrived (`None` if none has, or the connection is closed:
    /// see [`close_status`](Self::close_status)).
    pub fn recv(&mut self) -> Option<Message> {
        self.server.run();
        let message = poll_once(self.stream.recv()).flatten();
        // Taking a message may let the client's driver read more.
        self.server.run();
        message
    }

    /// The next message, which must be text.
    ///
    /// # Panics
    ///
    /// If it is binary.
    pub fn recv_text(&mut self) -> Option<String> {
        self.recv().map(|m| match m {
            Message::Text(text) => text.as_str().to_owned(),
            Message::Binary(data) => panic!("expected a text message, got {} binary bytes", data.len()),
        })
    }

    /// The next message, parsed as JSON.
    ///
    /// # Panics
    ///
    /// If it is not JSON for a `T`.
    pub fn recv_json<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        self.recv().map(|m| {
            serde_json::from_slice(m.as_bytes())
                .unwrap_or_else(|e| panic!("expected JSON: {e}: {:?}", String::from_utf8_lossy(m.as_bytes())))
        })
    }

    /// Every message that has arrived, in order.
    pub fn recv_all(&mut self) -> Vec<Message> {
        std::iter::from_fn(|| self.recv()).collect()
    }

    /// Starts the closing handshake and runs the server.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), SendError> {
        let result = self.stream.close(code, reason);
        self.server.run();
        result
    }

    /// Whether the connection is open (after running the server).
    pub fn is_open(&self) -> bool {
        self.server.run();
        self.stream.is_open()
    }

    /// The close code and reason, once the connection has ended (1006 if
    /// it ended without a close frame).
    pub fn close_status(&self) -> Option<(u16, String)> {
        self.server.run();
        self.stream.close_status()
    }

    /// Moves virtual time forward (for every client of the server).
    pub fn advance(&self, duration: Duration) {
        self.server.advance(duration);
    }

    /// Cuts this client's link without a FIN (a partition): nothing it
    /// sends arrives, nothing the server sends reaches it.
    pub fn hold(&self) {
        self.link.hold();
        self.server.run();
    }

    /// Restores the link after [`hold`](Self::hold).
    pub fn release(&self) {
        self.link.release();
        self.server.run();
    }

    /// The link's controls, to cut it from elsewhere.
    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// The server this client is connected to.
    pub fn server(&self) -> &TestServer {
        &self.server
    }

    /// The underlying stream (its handle, subprotocol, headers).
    pub fn stream(&mut self) -> &mut WsStream {
        &mut self.stream
    }

    /// A handle to the client's connection.
    pub fn handle(&self) -> WebSocket {
        self.stream.handle()
    }
}

/// A raw byte connection to a [`TestServer`]: for HTTP routes, hostile
/// input, and clients that are not Blaze's.
#[derive(Debug)]
pub struct RawConn {
    io: MemStream,
    server: TestServer,
}

impl RawConn {
    /// Writes as much of `data` as the pipe has room for and runs the
    /// server; returns how much was written (0 once the server is gone).
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = self.io.try_write(data).unwrap_or(0);
        self.server.run();
        n
    }

    /// Runs the server and takes everything it has written. The second
    /// value is true once the server has closed its side (end of stream).
    pub fn read(&mut self) -> (Vec<u8>, bool) {
        self.server.run();
        let mut out = Vec::new();
        let mut eof = false;
        loop {
            match self.io.try_read(&mut out) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => self.server.run(),
                Err(_) => break,
            }
        }
        (out, eof)
    }

    /// Ends what this side sends (FIN) and runs the server.
    pub fn shutdown_write(&mut self) {
        self.io.shutdown_write();
        self.server.run();
    }

    /// The link's controls (hold and release).
    pub fn link(&self) -> Link {
        self.io.link()
    }
}

/// Polls a future once, with a waker that does nothing: the test
/// executor has already run everything that could make it ready.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    match pin!(future).poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}
