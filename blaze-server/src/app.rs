//! The application: routes, handlers, configuration, and the broadcast
//! and statistics API that handlers, tasks and HTTP routes share.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use blaze_proto::ConnId;

use crate::config::WsConfig;
use crate::error::SendError;
use crate::handler::{Handler, StreamHandler};
use crate::hub::{ConnectionSummary, Hub};
use crate::outgoing::IntoPrepared;
use crate::request::{Guard, HttpHandler, Request, Response};
use crate::router::{join, Pattern};
use crate::shutdown::Shutdown;
use crate::socket::{WebSocket, WsStream};

pub(crate) enum RouteKind {
    // Boxed: a WsConfig is large and routes are few.
    Ws { handler: Arc<dyn Handler>, config: Option<Box<WsConfig>> },
    Http { method: String, handler: HttpHandler },
}

pub(crate) struct Route {
    pub(crate) pattern: Pattern,
    pub(crate) kind: RouteKind,
    pub(crate) guards: Vec<Guard>,
}

pub(crate) struct AppInner {
    pub(crate) routes: RwLock<Vec<Arc<Route>>>,
    pub(crate) config: RwLock<WsConfig>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) shutdown: Shutdown,
    pub(crate) drain_timeout: RwLock<Duration>,
}

/// A Blaze application: WebSocket and HTTP routes, and the registry of
/// live connections. Cheap to clone; every clone is the same app, so one
/// can be moved into handlers, spawned tasks and HTTP routes to broadcast.
///
/// The runtime adapters (`blaze-tokio`, `blaze-async-std`) wrap it and add
/// `listen`, `serve` and `spawn`.
///
/// ```
/// use blaze_server::{App, Callbacks, Response};
/// let app = App::new();
/// app.ws("/echo", Callbacks::new().on_message(|ws, text| { let _ = ws.send(text); }));
/// app.get("/", |_req| Response::with_body(200, "text/html", "<h1>hi</h1>"));
/// let api = app.group("/api/v1");
/// api.ws("/feed/:topic", Callbacks::new().on_open(|ws| { ws.join(ws.param("topic").unwrap()); }));
/// assert_eq!(app.connection_count("/echo"), 0);
/// ```
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<AppInner>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("routes", &self.read_routes().len()).finish_non_exhaustive()
    }
}

impl Default for App {
    fn default() -> App {
        App::new()
    }
}

impl App {
    /// An app with no routes and the default [`WsConfig`].
    pub fn new() -> App {
        App {
            inner: Arc::new(AppInner {
                routes: RwLock::new(Vec::new()),
                config: RwLock::new(WsConfig::default()),
                hub: Arc::new(Hub::default()),
                shutdown: Shutdown::default(),
                drain_timeout: RwLock::new(Duration::from_secs(10)),
            }),
        }
    }

    /// Sets the configuration of every WebSocket route without its own
    /// (and the handshake limits, which apply before routing).
    pub fn config(&self, config: WsConfig) -> &Self {
        *self.inner.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        self
    }

    /// The app-wide configuration.
    pub fn current_config(&self) -> WsConfig {
        self.inner.config.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// How long shutdown waits for clients to answer close 1001. Default 10 s.
    pub fn drain_timeout(&self, timeout: Duration) -> &Self {
        *self.inner.drain_timeout.write().unwrap_or_else(PoisonError::into_inner) = timeout;
        self
    }

    /// A WebSocket route with a [`Handler`] (a struct, or [`crate::Callbacks`]).
    pub fn ws(&self, path: &str, handler: impl Handler) -> RouteRef<'_> {
        self.add(path, RouteKind::Ws { handler: Arc::new(handler), config: None }, Vec::new())
    }

    /// A WebSocket route with its own configuration.
    pub fn ws_with_config(&self, path: &str, config: WsConfig, handler: impl Handler) -> RouteRef<'_> {
        self.add(path, RouteKind::Ws { handler: Arc::new(handler), config: Some(Box::new(config)) }, Vec::new())
    }

    /// A WebSocket route in stream style: `f` gets the connection and
    /// loops over `recv()`; the connection closes when it returns.
    ///
    /// ```
    /// let app = blaze_server::App::new();
    /// app.ws_stream("/echo", |mut ws| async move {
    ///     while let Some(msg) = ws.recv().await {
    ///         let _ = ws.send(msg);
    ///     }
    /// });
    /// ```
    pub fn ws_stream<F, Fut>(&self, path: &str, f: F) -> RouteRef<'_>
    where
        F: Fn(WsStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.ws(path, StreamHandler { f })
    }

    /// A plain HTTP `GET` route (a page, a health check).
    pub fn get(&self, path: &str, handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> RouteRef<'_> {
        self.http("GET", path, handler)
    }

    /// A plain HTTP `POST` route (e.g. `POST /broadcast`).
    pub fn post(&self, path: &str, handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> RouteRef<'_> {
        self.http("POST", path, handler)
    }

    /// A plain HTTP route for any method.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> RouteRef<'_> {
        self.add(path, RouteKind::Http { method: method.to_ascii_uppercase(), handler: Arc::new(handler) }, Vec::new())
    }

    /// Routes under a common prefix, sharing guards: `app.group("/api/v1")`.
    pub fn group(&self, prefix: &str) -> Group<'_> {
        Group { app: self, prefix: join("", prefix), guards: Vec::new() }
    }

    fn add(&self, path: &str, kind: RouteKind, guards: Vec<Guard>) -> RouteRef<'_> {
        let mut routes = self.inner.routes.write().unwrap_or_else(PoisonError::into_inner);
        routes.push(Arc::new(Route { pattern: Pattern::parse(path), kind, guards }));
        RouteRef { app: self, index: routes.len() - 1 }
    }

    pub(crate) fn read_routes(&self) -> Vec<Arc<Route>> {
        self.inner.routes.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sends a message to every connection on `path` (text, binary,
    /// [`crate::Json`], or a prepared message), framed once. Returns how
    /// many connections it was queued for; never waits on a slow client.
    pub fn broadcast(&self, path: &str, message: impl IntoPrepared) -> Result<usize, SendError> {
        self.inner.hub.broadcast(path, message, None)
    }

    /// Like [`App::broadcast`], but not to `except` (usually the sender).
    pub fn broadcast_except(&self, path: &str, message: impl IntoPrepared, except: ConnId) -> Result<usize, SendError> {
        self.inner.hub.broadcast(path, message, Some(except))
    }

    /// Sends a message to every member of a topic, framed once.
    pub fn publish(&self, topic: &str, message: impl IntoPrepared) -> Result<usize, SendError> {
        self.inner.hub.publish(topic, message, None)
    }

    /// Live connections on a path.
    pub fn connection_count(&self, path: &str) -> usize {
        self.inner.hub.connection_count(path)
    }

    /// Live connections on every path.
    pub fn total_connections(&self) -> usize {
        self.inner.hub.total()
    }

    /// Members of a topic.
    pub fn topic_count(&self, topic: &str) -> usize {
        self.inner.hub.topic_count(topic)
    }

    /// The connections on a path, with their ids and addresses.
    pub fn connections(&self, path: &str) -> Vec<ConnectionSummary> {
        self.inner.hub.connections(path)
    }

    /// A live connection by id.
    pub fn connection(&self, id: ConnId) -> Option<WebSocket> {
        self.inner.hub.get(id)
    }

    /// How many times a broadcast or publish has framed a message: exactly
    /// one per call, whatever the number of receivers.
    pub fn encodings(&self) -> u64 {
        self.inner.hub.encodings()
    }

    /// How many times broadcasts and publishes have compressed a message
    /// (permessage-deflate): at most one per call for every receiver in
    /// shared mode, plus one per dedicated-mode receiver (each keeps its
    /// own context, so compresses its own copy).
    pub fn compressions(&self) -> u64 {
        self.inner.hub.compressions()
    }

    /// A handle that stops the server gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { app: self.clone() }
    }

    /// Starts a graceful shutdown: stop accepting, close every client with
    /// 1001, wait up to the drain timeout for their `on_close`, return from
    /// `serve`. A request still in its HTTP phase (arriving, or judged by
    /// guards) is answered 503; a handshake that completes during the drain
    /// is closed with 1001 right after its 101. No connection outlives
    /// `serve`.
    pub fn shutdown(&self) {
        self.inner.shutdown.trigger();
    }
}

/// Stops a running server gracefully from anywhere.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    app: App,
}

impl ShutdownHandle {
    /// Starts the graceful shutdown (see [`App::shutdown`]).
    pub fn shutdown(&self) {
        self.app.shutdown();
    }
}

/// A just-added route, to attach guards to.
#[derive(Debug)]
pub struct RouteRef<'a> {
    app: &'a App,
    index: usize,
}

impl RouteRef<'_> {
    /// Adds a guard that runs before the handshake (see [`Guard`]).
    pub fn guard(self, guard: Guard) -> Self {
        let mut routes = self.app.inner.routes.write().unwrap_or_else(PoisonError::into_inner);
        let route = &mut routes[self.index];
        let mut guards = route.guards.clone();
        guards.push(guard);
        let updated = Route { pattern: route.pattern.clone(), kind: route.kind.clone_kind(), guards };
        *route = Arc::new(updated);
        drop(routes);
        self
    }
}

impl RouteKind {
    fn clone_kind(&self) -> RouteKind {
        match self {
            RouteKind::Ws { handler, config } => RouteKind::Ws { handler: handler.clone(), config: config.clone() },
            RouteKind::Http { method, handler } => RouteKind::Http { method: method.clone(), handler: handler.clone() },
        }
    }
}

/// Routes sharing a path prefix and guards.
pub struct Group<'a> {
    app: &'a App,
    prefix: String,
    guards: Vec<Guard>,
}

impl std::fmt::Debug for Group<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("prefix", &self.prefix).field("guards", &self.guards.len()).finish()
    }
}

impl<'a> Group<'a> {
    /// Adds a guard to every route added to the group after it.
    pub fn guard(mut self, guard: Guard) -> Self {
        self.guards.push(guard);
        self
    }

    /// A nested group.
    pub fn group(&self, prefix: &str) -> Group<'a> {
        Group { app: self.app, prefix: join(&self.prefix, prefix), guards: self.guards.clone() }
    }

    /// A WebSocket route under the prefix.
    pub fn ws(&self, path: &str, handler: impl Handler) -> RouteRef<'a> {
        let kind = RouteKind::Ws { handler: Arc::new(handler), config: None };
        self.app.add(&join(&self.prefix, path), kind, self.guards.clone())
    }

    /// A WebSocket route under the prefix, with its own configuration.
    pub fn ws_with_config(&self, path: &str, config: WsConfig, handler: impl Handler) -> RouteRef<'a> {
        let kind = RouteKind::Ws { handler: Arc::new(handler), config: Some(Box::new(config)) };
        self.app.add(&join(&self.prefix, path), kind, self.guards.clone())
    }

    /// A stream-style WebSocket route under the prefix.
    pub fn ws_stream<F, Fut>(&self, path: &str, f: F) -> RouteRef<'a>
    where
        F: Fn(WsStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.ws(path, StreamHandler { f })
    }

    /// A GET route under the prefix.
    pub fn get(&self, path: &str, handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> RouteRef<'a> {
        let kind = RouteKind::Http { method: "GET".into(), handler: Arc::new(handler) };
        self.app.add(&join(&self.prefix, path), kind, self.guards.clone())
    }

    /// A POST route under the prefix.
    pub fn post(&self, path: &str, handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> RouteRef<'a> {
        let kind = RouteKind::Http { method: "POST".into(), handler: Arc::new(handler) };
        self.app.add(&join(&self.prefix, path), kind, self.guards.clone())
    }
}
