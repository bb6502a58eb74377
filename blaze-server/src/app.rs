//! The application: routes, handlers, configuration, and the broadcast
//! and statistics API that handlers, tasks and HTTP routes share.

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use blaze_proto::ConnId;

use crate::async_admission::{async_guard, Admission, AsyncGuard};
use crate::config::WsConfig;
use crate::error::SendError;
use crate::handler::{Handler, StreamHandler};
use crate::hub::{ConnectionSummary, Hub};
use crate::outgoing::IntoPrepared;
use crate::request::{Guard, HttpHandler, Request, Response};
use crate::router::{join, Pattern};
use crate::runtime::Runtime;
use crate::shutdown::Shutdown;
use crate::tasks::BackgroundTasks;
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
    /// Run after `guards`, on WebSocket routes (see `RouteRef::guard_async`).
    pub(crate) async_guards: Vec<AsyncGuard>,
}

pub(crate) struct AppInner {
    pub(crate) routes: RwLock<Vec<Arc<Route>>>,
    pub(crate) config: RwLock<WsConfig>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) shutdown: Arc<Shutdown>,
    pub(crate) drain_timeout: RwLock<Duration>,
    /// Connections accepted through another HTTP server (`mount`).
    pub(crate) mounted: crate::mount::Mounted,
    pub(crate) tasks: Arc<BackgroundTasks>,
    /// The connections' shared settings, one copy per configuration.
    pub(crate) settings: crate::settings::SettingsCache,
    #[cfg(feature = "testing")]
    pub(crate) test_slot: crate::testing::TestSlot,
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
        let shutdown = Arc::new(Shutdown::default());
        App {
            inner: Arc::new(AppInner {
                routes: RwLock::new(Vec::new()),
                config: RwLock::new(WsConfig::default()),
                hub: Arc::new(Hub::with_shutdown(shutdown.clone())),
                shutdown,
                drain_timeout: RwLock::new(Duration::from_secs(10)),
                mounted: Default::default(),
                tasks: Arc::default(),
                settings: Default::default(),
                #[cfg(feature = "testing")]
                test_slot: Default::default(),
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

    /// A stream-style WebSocket route with its own configuration
    /// (subprotocols, limits, timeouts, compression), as
    /// [`App::ws_with_config`] is for a [`Handler`].
    pub fn ws_stream_with_config<F, Fut>(&self, path: &str, config: WsConfig, f: F) -> RouteRef<'_>
    where
        F: Fn(WsStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.ws_with_config(path, config, StreamHandler { f })
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
        routes.push(Arc::new(Route { pattern: Pattern::parse(path), kind, guards, async_guards: Vec::new() }));
        RouteRef { app: self, index: routes.len() - 1 }
    }

    pub(crate) fn read_routes(&self) -> Vec<Arc<Route>> {
        self.inner.routes.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Sends a message (text, binary, [`crate::Json`], or a prepared
    /// message), framed once, to every connection `path` reaches:
    ///
    /// * a concrete path (`/game/42`, `/chat`) reaches the connections on
    ///   that path (normalized like request paths: `/chat/` is `/chat`);
    /// * a route pattern with parameters, exactly as the route was added
    ///   (`/game/:room_id`, `/files/*path`), reaches every connection of
    ///   that route, whatever their paths (every room).
    ///
    /// Returns how many connections it was queued for (0 if none is there
    /// now); never waits on a slow client. Made from a callback handler,
    /// a broadcast is queued when the batch of messages the connection
    /// read ends, together with the batch's other broadcasts (one buffer
    /// and one wake-up per receiver; order and the receivers of the moment
    /// are kept), and the count is of the connections it is addressed to. A path no WebSocket route
    /// matches is [`SendError::NoRoute`]: nobody could ever be there, so it
    /// is a mistake (a typo, a route not added yet), reported before the
    /// message is serialized. Every connection on every route:
    /// [`App::broadcast_all`].
    ///
    /// ```
    /// use blaze_server::{App, Callbacks, SendError};
    /// let app = App::new();
    /// app.ws("/game/:room_id", Callbacks::new());
    /// assert_eq!(app.broadcast("/game/:room_id", "to every room"), Ok(0));
    /// assert_eq!(app.broadcast("/game/7", "to room 7"), Ok(0));
    /// assert!(matches!(app.broadcast("/gmae/7", "typo"), Err(SendError::NoRoute(_))));
    /// ```
    pub fn broadcast(&self, path: &str, message: impl IntoPrepared) -> Result<usize, SendError> {
        self.broadcast_to(path, message, None)
    }

    /// Like [`App::broadcast`], but not to `except` (usually the sender).
    pub fn broadcast_except(&self, path: &str, message: impl IntoPrepared, except: ConnId) -> Result<usize, SendError> {
        self.broadcast_to(path, message, Some(except))
    }

    /// Sends a value as JSON text to every connection `path` reaches (see
    /// [`App::broadcast`]), serialized and framed once: the C++ Blaze's
    /// `app.broadcast("/market", Update{...})`. The same as
    /// `app.broadcast(path, Json(value))`; a separate method because one
    /// `broadcast` cannot take both strings (sent as they are) and any
    /// `Serialize` value (a `&str` is `Serialize` too: it would be quoted).
    pub fn broadcast_json<T: serde::Serialize + ?Sized>(&self, path: &str, value: &T) -> Result<usize, SendError> {
        self.broadcast(path, crate::Json(value))
    }

    /// Sends a message to every live connection on every route, framed
    /// once (crest's `ws.broadcast`).
    pub fn broadcast_all(&self, message: impl IntoPrepared) -> Result<usize, SendError> {
        self.inner.hub.broadcast_all(message, None)
    }

    fn broadcast_to(&self, path: &str, message: impl IntoPrepared, except: Option<ConnId>) -> Result<usize, SendError> {
        let normalized = crate::router::normalize_path(path);
        let mut matched = false;
        for route in self.inner.routes.read().unwrap_or_else(PoisonError::into_inner).iter() {
            if !matches!(route.kind, RouteKind::Ws { .. }) {
                continue;
            }
            let Some(params) = route.pattern.matches(&normalized) else { continue };
            if !params.is_empty() && route.pattern.as_str() == normalized {
                // The pattern itself: every connection of the route.
                return self.inner.hub.broadcast_route(route.pattern.as_str(), message, except);
            }
            matched = true;
        }
        if !matched {
            return Err(SendError::NoRoute(path.to_owned()));
        }
        self.inner.hub.broadcast(&normalized, message, except)
    }

    /// Sends a value as JSON text to every member of a topic, serialized
    /// and framed once (see [`App::broadcast_json`]).
    pub fn publish_json<T: serde::Serialize + ?Sized>(&self, topic: &str, value: &T) -> Result<usize, SendError> {
        self.publish(topic, crate::Json(value))
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

    /// Whether a graceful shutdown has started and `serve` has not yet
    /// returned (the Go Blaze's `ctx.IsShuttingDown()`). Also on the
    /// handle: [`WebSocket::is_shutting_down`].
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_triggered()
    }

    /// A future that completes when a graceful shutdown starts, for a
    /// background loop to end cleanly instead of being stopped mid-step:
    ///
    /// ```
    /// let app = blaze_server::App::new();
    /// let stop = app.shutdown_signal();
    /// let ticker = app.clone();
    /// let task = async move {
    ///     // On tokio, in a loop: `tokio::select! { _ = &mut stop => break, _ = tick() => {} }`.
    ///     stop.await;
    ///     let _ = ticker.broadcast("/market", "market closed");
    /// };
    /// # drop(task);
    /// ```
    ///
    /// It owns what it needs (`'static`), so it moves into a task. A
    /// shutdown that starts after the call completes it, even if the
    /// shutdown has ended by the time the future is polled.
    pub fn shutdown_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        self.inner.shutdown.signal()
    }

    /// Runs a background task on `rt` for the life of the server: when a
    /// graceful shutdown has drained the connections, every task still
    /// running is stopped (dropped) and `serve` waits for that before it
    /// returns. A task that finishes leaves the count at once. The
    /// adapters' `App::spawn` call this with their runtime.
    pub fn spawn_with<R: Runtime>(&self, rt: &R, future: impl Future<Output = ()> + Send + 'static) {
        self.inner.tasks.spawn(rt, Box::pin(future));
    }

    /// Background tasks (from `spawn`) still running.
    pub fn background_tasks(&self) -> usize {
        self.inner.tasks.len()
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

    /// Whether a graceful shutdown is under way (see [`App::is_shutting_down`]).
    pub fn is_shutting_down(&self) -> bool {
        self.app.is_shutting_down()
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
        let updated = Route {
            pattern: route.pattern.clone(),
            kind: route.kind.clone_kind(),
            guards,
            async_guards: route.async_guards.clone(),
        };
        *route = Arc::new(updated);
        drop(routes);
        self
    }

    /// Adds an asynchronous guard to a WebSocket route: it runs after the
    /// synchronous guards, may await (a token looked up in a database),
    /// and decides with an [`Admission`]: accept (optionally choosing the
    /// subprotocol from the client's offer, this connection's
    /// configuration, typed locals), reject with a status and body, or
    /// answer a plain HTTP request to the route with a page. It must
    /// decide within the handshake timeout (counted from accept; 408
    /// after); a panic answers 500. Guards run in the order added.
    ///
    /// ```
    /// use blaze_server::{Admission, App, Callbacks, WsConfig};
    /// # async fn lookup(_token: &str) -> Option<String> { Some("ann".into()) }
    /// #[derive(Clone)]
    /// struct User(String);
    /// let app = App::new();
    /// app.ws("/chat", Callbacks::new().on_open(|ws| {
    ///     let _ = ws.send(format!("hi {}", ws.local::<User>().unwrap().0));
    /// }))
    /// .guard_async(|req| async move {
    ///     if !req.is_upgrade() {
    ///         return Admission::respond(blaze_server::Response::text(200, "connect with a WebSocket"));
    ///     }
    ///     let Some(token) = req.bearer_token() else { return Admission::reject(401, "missing token") };
    ///     match lookup(token).await {
    ///         Some(name) => {
    ///             let accept = Admission::accept().local(User(name));
    ///             if req.protocols().contains(&"chat.v2") { accept.protocol("chat.v2") } else { accept }
    ///         }
    ///         None => Admission::reject(403, "unknown token"),
    ///     }
    /// });
    /// ```
    ///
    /// On an HTTP route it is never run.
    pub fn guard_async<F, Fut>(self, f: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Admission> + Send + 'static,
    {
        let mut routes = self.app.inner.routes.write().unwrap_or_else(PoisonError::into_inner);
        let route = &mut routes[self.index];
        let mut async_guards = route.async_guards.clone();
        async_guards.push(async_guard(f));
        let updated = Route {
            pattern: route.pattern.clone(),
            kind: route.kind.clone_kind(),
            guards: route.guards.clone(),
            async_guards,
        };
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

    /// A stream-style WebSocket route under the prefix, with its own
    /// configuration.
    pub fn ws_stream_with_config<F, Fut>(&self, path: &str, config: WsConfig, f: F) -> RouteRef<'a>
    where
        F: Fn(WsStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.ws_with_config(path, config, StreamHandler { f })
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
