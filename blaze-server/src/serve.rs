//! Serving: the accept loop, the HTTP phase of each connection (request,
//! routing, guards, limits, the 101), and graceful shutdown.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use blaze_proto::handshake::{HandshakeError, HttpRequest, RequestReader, UpgradeRequest};
use blaze_proto::{CloseCode, Connection, Role};

use crate::async_admission::{run_async_guards, AcceptOptions, Decision};
use crate::app::{App, Route, RouteKind};
use crate::driver::{Driver, DriverLimits};
use crate::hub::AdmitError;
use crate::keep_alive::{self, HttpConn};
use crate::locals::Extensions;
use crate::info::RequestInfo;
use crate::handler::panic_message;
use crate::request::{Guard, Request, Response};
use crate::admission::{read_or_shutdown, PhaseRead};
use crate::runtime::{shutdown, timeout, write_all, Accepted, Acceptor, Listener, Plain, Runtime, Transport};
use crate::socket::{ConnInner, ConnShared, Spawner, WebSocket};

/// Largest body a plain HTTP route accepts (413 above).
pub(crate) const MAX_HTTP_BODY: usize = 1 << 20;
/// First and longest pause of the accept loop after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Tasks still running for this server (handshakes and connections), so
/// shutdown can wait for every `on_close`, and (`.1`) how many of them are
/// still in their HTTP phase (for `max_pending_handshakes`), and (`.2`)
/// how many rejected sockets are being answered 503 (admission.rs).
#[derive(Debug, Default)]
pub(crate) struct TaskCount(pub(crate) AtomicUsize, pub(crate) AtomicUsize, pub(crate) AtomicUsize);

/// Counts one task in [`TaskCount`]; in the HTTP phase until
/// [`TaskGuard::handshake_done`].
pub(crate) struct TaskGuard(Arc<TaskCount>, bool);

impl TaskGuard {
    fn new(tasks: &Arc<TaskCount>) -> TaskGuard {
        tasks.0.fetch_add(1, Ordering::SeqCst);
        tasks.1.fetch_add(1, Ordering::SeqCst);
        TaskGuard(tasks.clone(), true)
    }

    /// The connection upgraded: no longer a pending handshake.
    fn handshake_done(&mut self) {
        if std::mem::take(&mut self.1) {
            self.0 .1.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl TaskCount {
    /// Counts one more task until the guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> TaskGuard {
        TaskGuard::new(self)
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.handshake_done();
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl App {
    /// Serves connections from `listener` on runtime `rt` until
    /// [`App::shutdown`] is called, then drains gracefully. Runtime
    /// adapters call this; applications call the adapter's `serve`.
    pub async fn serve_with<R: Runtime, L: Listener>(&self, rt: R, listener: L) -> std::io::Result<()> {
        self.serve_with_acceptor(rt, listener, Plain).await
    }

    /// Like [`App::serve_with`], with every accepted stream first passed
    /// through `acceptor` (a TLS handshake) in the connection's own task,
    /// under `handshake_timeout`. Runtime adapters call this for `wss://`.
    pub async fn serve_with_acceptor<R: Runtime, L: Listener, A: Acceptor<L::Io>>(
        &self,
        rt: R,
        mut listener: L,
        acceptor: A,
    ) -> std::io::Result<()> {
        let acceptor = Arc::new(acceptor);
        let tasks = Arc::new(TaskCount::default());
        crate::metrics::init();
        let spawner: Spawner = {
            let rt = rt.clone();
            Arc::new(move |future| rt.spawn(future))
        };
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let accepted = poll_fn(|cx| {
                if self.inner.shutdown.is_triggered() {
                    return Poll::Ready(None);
                }
                // Register for the shutdown signal before polling accept.
                let mut wait = std::pin::pin!(self.inner.shutdown.wait());
                if wait.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                listener.poll_accept(cx).map(Some)
            })
            .await;
            match accepted {
                None => break,
                Some(Ok(accepted)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    if crate::admission::over_global_caps(self, &tasks) {
                        crate::admission::reject_busy(&rt, accepted.io, &tasks).await;
                        continue;
                    }
                    let guard = TaskGuard::new(&tasks);
                    let app = self.clone();
                    let task_rt = rt.clone();
                    let spawner = spawner.clone();
                    let acceptor = acceptor.clone();
                    let span = connection_span(accepted.remote_addr);
                    let task = accept_and_handle(app, task_rt, spawner, accepted, guard, acceptor);
                    rt.spawn(Box::pin(tracing::Instrument::instrument(task, span)));
                }
                Some(Err(err)) => {
                    // Out of file descriptors (EMFILE, ENFILE) and the like:
                    // back off (doubling, up to ACCEPT_BACKOFF_MAX) instead
                    // of spinning; the listener stays open and the loop
                    // goes on once descriptors are free again.
                    tracing::warn!(backoff = ?backoff, "accept failed: {err}");
                    crate::admission::sleep_or_shutdown(&rt, &self.inner.shutdown, backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
        drop(listener);
        self.drain(&rt, &tasks).await;
        self.inner.tasks.stop_all(&rt).await;
        self.inner.shutdown.reset();
        Ok(())
    }

    /// Closes every connection with 1001 and waits (up to the drain
    /// timeout) for each to finish and run its `on_close`.
    pub(crate) async fn drain<R: Runtime>(&self, rt: &R, tasks: &TaskCount) {
        let drain_timeout = *self.inner.drain_timeout.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        tracing::info!(connections = self.total_connections(), "shutting down");
        for ws in self.inner.hub.all() {
            let _ = ws.close(CloseCode::GOING_AWAY, "server shutting down");
        }
        let deadline = blaze_proto::deadline_after(rt.now(), drain_timeout);
        while tasks.0.load(Ordering::SeqCst) > 0 && rt.now() < deadline {
            rt.sleep_until(rt.now() + Duration::from_millis(5)).await;
        }
        // Clients that never answered: drop them (their on_close still runs).
        for ws in self.inner.hub.all() {
            ws.shared.with_conn(|inner| inner.pending_abort = true);
        }
        let hard_deadline = rt.now() + Duration::from_secs(1);
        while tasks.0.load(Ordering::SeqCst) > 0 && rt.now() < hard_deadline {
            rt.sleep_until(rt.now() + Duration::from_millis(5)).await;
        }
        // Whatever is still registered now (a task stuck in a write, an
        // upgrade whose 101 is still going out) leaves the hub here, so no
        // connection outlives `serve`; its task ends at its next poll.
        let stuck = self.inner.hub.all();
        if !stuck.is_empty() {
            tracing::warn!(connections = stuck.len(), "still open after the drain: dropped");
            for ws in stuck {
                ws.shared.with_conn(|inner| inner.pending_abort = true);
                self.inner.hub.unregister(ws.id());
            }
        }
    }
}

/// Runs the acceptor's step (the TLS handshake) and then the HTTP phase,
/// both under one `handshake_timeout` deadline.
async fn accept_and_handle<R: Runtime, T: Transport, A: Acceptor<T>>(
    app: App,
    rt: R,
    spawner: Spawner,
    accepted: Accepted<T>,
    guard: TaskGuard,
    acceptor: Arc<A>,
) {
    let started = rt.now();
    // Which serve accepted it: an upgrade finishing after that serve's
    // shutdown began must not register (see `upgrade`).
    let epoch = app.inner.shutdown.epoch();
    let deadline = blaze_proto::deadline_after(started, app.current_config().handshake_timeout);
    let Accepted { io, remote_addr, local_addr } = accepted;
    let io = match timeout(&rt, deadline, acceptor.accept(io)).await {
        Some(Ok(io)) => io,
        Some(Err(err)) => {
            tracing::debug!(remote = ?remote_addr, "connection setup failed: {err}");
            return;
        }
        // Dropping the stream closes it: there is no HTTP to answer with yet.
        None => {
            tracing::debug!(remote = ?remote_addr, "connection setup timed out");
            return;
        }
    };
    handle_connection(app, rt, spawner, Accepted { io, remote_addr, local_addr }, guard, started, epoch).await
}

/// The HTTP phase of one connection. An upgraded connection continues in a
/// task of its own (see [`upgrade`]); `guard` counts it until it ends.
async fn handle_connection<R: Runtime, T: Transport>(
    app: App,
    rt: R,
    spawner: Spawner,
    accepted: Accepted<T>,
    guard: TaskGuard,
    started: std::time::Instant,
    epoch: u64,
) {
    let Accepted { io, remote_addr, local_addr } = accepted;
    let ctx = Ctx { remote_addr, local_addr };
    let mut next = Some(HttpConn { io, buf: BytesMut::with_capacity(1024), served: 0, guard });
    while let Some(conn) = next.take() {
        handle_request(app.clone(), rt.clone(), spawner.clone(), conn, ctx, started, epoch, &mut next).await;
    }
}

/// One request of a connection; a connection kept alive after it comes
/// back in `next` (see [`crate::keep_alive`]). `epoch`: the shutdown epoch
/// when it was accepted.
#[allow(clippy::too_many_arguments)]
async fn handle_request<R: Runtime, T: Transport>(
    app: App,
    rt: R,
    spawner: Spawner,
    conn: HttpConn<T>,
    ctx: Ctx,
    started: std::time::Instant,
    epoch: u64,
    next: &mut Option<HttpConn<T>>,
) {
    let HttpConn { mut io, mut buf, served, guard } = conn;
    let config = app.current_config();
    let idle = config.http_keep_alive_timeout;
    if served > 0 && !keep_alive::wait_for_request(&rt, &mut io, &mut buf, idle, &app.inner.shutdown).await {
        return;
    }
    // The first request's deadline counts from accept (a TLS handshake
    // shares it); a kept-alive connection's next one from its first byte.
    let reader = RequestReader::new(config.handshake_limits(), if served == 0 { started } else { rt.now() });
    let mut request = loop {
        match reader.read(&mut buf) {
            Ok(Some(request)) => break request,
            Ok(None) => {}
            Err(err) => return respond_and_close(&rt, &mut io, err.to_response()).await,
        }
        buf.reserve(1024);
        match read_or_shutdown(&rt, &app.inner.shutdown, reader.poll_timeout(), &mut io, &mut buf).await {
            PhaseRead::TimedOut => return respond_and_close(&rt, &mut io, HandshakeError::Timeout.to_response()).await,
            PhaseRead::ShuttingDown => return respond_and_close(&rt, &mut io, shutting_down()).await,
            PhaseRead::Read(Some(0) | None) => return,
            PhaseRead::Read(Some(_)) => {}
        }
    };
    let is_upgrade = crate::async_admission::is_upgrade(&request);
    let routes = app.read_routes();
    // One normalized path decides routing and what the origin check,
    // guards, the registry and the counts see (router::normalize_path).
    if let std::borrow::Cow::Owned(path) = crate::router::normalize_path(&request.path) {
        request.path = path;
    }
    let mut path_matched = false;
    let mut ws_route = None;
    let mut http_route = None;
    for route in &routes {
        let Some(params) = route.pattern.matches(&request.path) else { continue };
        path_matched = true;
        match &route.kind {
            RouteKind::Ws { .. } if ws_route.is_none() => ws_route = Some((route.clone(), params)),
            RouteKind::Http { method, .. } if *method == request.method && http_route.is_none() => {
                http_route = Some((route.clone(), params))
            }
            _ => {}
        }
    }
    match (ws_route, http_route) {
        (Some((route, params)), _) if is_upgrade => {
            upgrade(app, rt, spawner, io, buf, request, &route, params, ctx, guard, reader.poll_timeout(), epoch).await
        }
        (_, Some((route, params))) => {
            // Plain routes have no config of their own: the app's proxies.
            let remote_addr = crate::proxy::client_addr(ctx.remote_addr, &request, &config.trusted_proxies);
            let request_ctx = Ctx { remote_addr, ..ctx };
            let room = served + 1 < config.http_keep_alive_requests;
            let mut kept = None;
            let shutdown = &app.inner.shutdown;
            serve_http(&rt, io, buf, request, &route, params, request_ctx, &reader, shutdown, room, &mut kept).await;
            *next = kept.map(|(io, buf)| HttpConn { io, buf, served: served + 1, guard });
        }
        // A WebSocket route asked for without an upgrade: 426.
        (Some((route, params)), None) => {
            upgrade(app, rt, spawner, io, buf, request, &route, params, ctx, guard, reader.poll_timeout(), epoch).await
        }
        (None, None) if path_matched => respond_and_close(&rt, &mut io, Response::text(405, "method not allowed")).await,
        (None, None) => respond_and_close(&rt, &mut io, Response::text(404, "not found")).await,
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Ctx {
    pub(crate) remote_addr: Option<SocketAddr>,
    pub(crate) local_addr: Option<SocketAddr>,
}

fn to_request(http: &HttpRequest, params: Vec<(String, String)>, ctx: Ctx, body: Bytes) -> Request {
    Request {
        method: http.method.clone(),
        path: http.path.clone(),
        params,
        query: http.query_pairs().collect(),
        headers: http.headers.clone(),
        remote_addr: ctx.remote_addr,
        local_addr: ctx.local_addr,
        body,
    }
}

#[allow(clippy::too_many_arguments)]
async fn upgrade<R: Runtime, T: Transport>(
    app: App,
    rt: R,
    spawner: Spawner,
    mut io: T,
    leftover: BytesMut,
    request: HttpRequest,
    route: &Route,
    params: Vec<(String, String)>,
    ctx: Ctx,
    guard: TaskGuard,
    deadline: std::time::Instant,
    epoch: u64,
) {
    if !route.async_guards.is_empty() && !crate::async_admission::is_upgrade(&request) {
        // A plain request to the route: its async guards may answer it
        // (a page); if they accept, it is still not an upgrade (426).
        let plain = to_request(&request, params.clone(), ctx, Bytes::new());
        for guard in &route.guards {
            if let Err(response) = run_guard(guard, &plain, &mut Extensions::new()) {
                return respond_and_close(&rt, &mut io, response).await;
            }
        }
        if let Decision::Respond(response) = run_async_guards(&rt, deadline, &route.async_guards, &plain).await {
            return respond_and_close(&rt, &mut io, response).await;
        }
    }
    let judged = match Handshake::judge(&app, request, None, route, params, ctx) {
        Ok(judged) => judged,
        Err(response) => return respond_and_close(&rt, &mut io, response).await,
    };
    // Asynchronous guards: accept with options, or answer instead.
    let mut accepted = AcceptOptions::default();
    if !route.async_guards.is_empty() {
        match run_async_guards(&rt, deadline, &route.async_guards, &judged.request).await {
            Decision::Respond(response) => return respond_and_close(&rt, &mut io, response).await,
            Decision::Accept(options) => accepted = options,
        }
    }
    let handshake = match judged.admit(&app, accepted) {
        Ok(handshake) => handshake,
        Err(response) => return respond_and_close(&rt, &mut io, response).await,
    };
    let shutdown = &app.inner.shutdown;
    if shutdown.is_triggered() || shutdown.fired_since(epoch) {
        // The serve that accepted this connection is draining or has
        // returned (its drain found nothing to close: this was still being
        // read or judged). Registered now, it would outlive that serve
        // (found by the server fuzz target: a request completing after the
        // drain, from a client that never reads its 101). Answer as every
        // request during shutdown is answered; dropping `handshake` gives
        // its admission back.
        return respond_and_close(&rt, &mut io, shutting_down()).await;
    }
    let response = handshake.response.to_bytes();
    // Registered before the 101 goes out, so a client holding its 101 is
    // in every broadcast made after (found by a broadcast right after a
    // second client's handshake, under load).
    let registered = handshake.register(&rt, spawner, guard, tracing::Span::current());
    // Dropping the registration on a failed (or, past the handshake
    // deadline, unfinished) write unregisters it and gives its admission back.
    if !matches!(timeout(&rt, deadline, write_all(&mut io, &response)).await, Some(Ok(()))) {
        return;
    }
    if shutdown.fired_since(epoch) && !shutdown.is_triggered() {
        // A whole shutdown began and ended while the 101 was being written
        // (serve has returned): no connection may outlive it, so the
        // client gets the 101 and then EOF.
        tracing::debug!("upgrade completed after the server stopped: dropped");
        return;
    }
    registered.run(rt, io, leftover);
}

/// An upgrade request Blaze has accepted (validated, origin-checked,
/// guarded, admitted, subprotocol and compression negotiated) whose
/// `response` (101, or 200 for HTTP/2) is still to be sent. Blaze's own
/// listener and servers it is mounted in (`mount`) share it. Dropped
/// before [`Handshake::start`], it gives its admission back.
pub(crate) struct Handshake {
    pub(crate) response: Response,
    state: Option<HandshakeState>,
}

struct HandshakeState {
    app: App,
    hub: Arc<crate::hub::Hub>,
    route: Arc<str>,
    ip: Option<std::net::IpAddr>,
    handler: Arc<dyn crate::handler::Handler>,
    config: crate::config::WsConfig,
    deflate: Option<(blaze_proto::deflate::DeflateParams, blaze_proto::deflate::DeflateConfig)>,
    info: RequestInfo,
    locals: Extensions,
}

/// An upgrade request that passed validation, the origin check and the
/// synchronous guards ([`Handshake::judge`]); its asynchronous guards run
/// next (they need the runtime), then [`Judged::admit`].
pub(crate) struct Judged {
    /// The request as guards and the handler see it.
    pub(crate) request: Request,
    upgrade: UpgradeRequest,
    handler: Arc<dyn crate::handler::Handler>,
    config: crate::config::WsConfig,
    route_key: Arc<str>,
    ctx: Ctx,
    locals: Extensions,
}

impl Handshake {
    /// Runs the synchronous checks of a WebSocket `route` on `request`,
    /// answering the rejection to send if one fails. `extended_connect` is
    /// the `:protocol` of an HTTP/2 extended CONNECT (RFC 8441), `None`
    /// for an HTTP/1.1 upgrade.
    pub(crate) fn judge(
        app: &App,
        request: HttpRequest,
        extended_connect: Option<&str>,
        route: &Route,
        params: Vec<(String, String)>,
        ctx: Ctx,
    ) -> Result<Judged, Response> {
        let RouteKind::Ws { handler, config } = &route.kind else {
            return Err(Response::text(404, "not found"));
        };
        let config = config.as_deref().cloned().unwrap_or_else(|| app.current_config());
        let validated = match extended_connect {
            None => UpgradeRequest::validate(request),
            Some(protocol) => UpgradeRequest::validate_extended_connect(request, Some(protocol)),
        };
        let upgrade = validated.map_err(|err| Response::from(err.to_response()))?;
        // Behind a trusted proxy the client is who the proxy says (proxy.rs);
        // the origin check, guards, the per-IP limit and the handler all
        // see that address.
        let remote_addr = crate::proxy::client_addr(ctx.remote_addr, &upgrade.request, &config.trusted_proxies);
        let ctx = Ctx { remote_addr, ..ctx };
        let request = to_request(&upgrade.request, params, ctx, Bytes::new());
        // A panicking origin check or guard answers 500 and ends only this
        // request; the server goes on (as for HTTP handlers).
        if let Some(check) = &config.check_origin {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&request))) {
                Ok(true) => {}
                Ok(false) => return Err(Response::text(403, "origin not allowed")),
                Err(panic) => {
                    tracing::error!(path = %request.path, panic = %panic_message(&*panic), "check_origin panicked");
                    return Err(Response::text(500, "internal server error"));
                }
            }
        }
        let mut locals = Extensions::new();
        for guard in &route.guards {
            run_guard(guard, &request, &mut locals)?;
        }
        let route_key = route.pattern.key();
        Ok(Judged { request, upgrade, handler: handler.clone(), config, route_key, ctx, locals })
    }
}

impl Judged {
    /// Admits the connection under its route's limits with what the
    /// asynchronous guards decided (`accepted`), and negotiates the
    /// subprotocol and compression: the handshake whose response is to be
    /// sent.
    pub(crate) fn admit(self, app: &App, mut accepted: AcceptOptions) -> Result<Handshake, Response> {
        let Judged { request, upgrade, handler, config, route_key, ctx, mut locals } = self;
        locals.extend(std::mem::take(&mut accepted.locals));
        if let Some(chosen) = &accepted.protocol {
            if !upgrade.protocols.iter().any(|offered| offered == chosen) {
                tracing::error!(path = %request.path, protocol = %chosen, offered = ?upgrade.protocols, "async guard chose a subprotocol the client did not offer");
                return Err(Response::text(500, "internal server error"));
            }
        }
        let hub = app.inner.hub.clone();
        let ip = ctx.remote_addr.map(|a| crate::hub::ip_key(a.ip(), config.ipv6_prefix_len));
        if app.inner.shutdown.is_triggered() {
            // Shutdown started while this request was being judged: no 101
            // for a connection the drain may already have passed by.
            return Err(shutting_down());
        }
        if let Err(err) = hub.admit(&route_key, ip, config.max_connections, config.max_connections_per_ip) {
            return Err(match err {
                AdmitError::RouteFull => Response::text(503, "too many connections"),
                AdmitError::IpFull => Response::text(429, "too many connections from this address"),
            });
        }
        // The connection's own configuration, if a guard chose one (the
        // route's limits above still counted it).
        let config = accepted.config.map(|c| *c).unwrap_or(config);
        let protocol = accepted.protocol.or_else(|| upgrade.select_protocol(&config.subprotocols).map(str::to_owned));
        let deflate = config.compression.as_ref().and_then(|c| Some((upgrade.negotiate_deflate(c)?, *c)));
        let extensions = deflate.as_ref().map(|(params, _)| params.to_header());
        let response = upgrade.accept(protocol.as_deref(), extensions.as_deref()).into();
        let info = RequestInfo::new(
            route_key.clone(),
            &request.path,
            &request.params,
            &request.query,
            &without_handshake_headers(request.headers),
            protocol.as_deref(),
            ctx.remote_addr,
            ctx.local_addr,
        );
        let state = HandshakeState {
            app: app.clone(),
            hub,
            route: route_key,
            ip,
            handler: handler.clone(),
            config,
            deflate,
            info,
            locals,
        };
        Ok(Handshake { response, state: Some(state) })
    }
}

/// A connection registered in the hub whose driver is not running yet
/// ([`Handshake::register`]): frames broadcast to it wait in its queue.
/// Dropped instead of [`Registered::run`] (its response could not be
/// sent), it leaves the hub and gives its admission back.
pub(crate) struct Registered {
    ws: WebSocket,
    handler: Arc<dyn crate::handler::Handler>,
    limits: Arc<DriverLimits>,
    release: Release,
    span: tracing::Span,
    status: u16,
}

impl Handshake {
    /// Registers the connection, before its response is sent: a broadcast
    /// made once the client holds its 101 reaches it (what it queues leaves
    /// after the 101, when the driver starts). `task` counts it until it
    /// ends; `span` (see [`connection_span`]) gets its id and route and
    /// holds every log line of the connection.
    pub(crate) fn register<R: Runtime>(
        mut self,
        rt: &R,
        spawner: Spawner,
        mut task: TaskGuard,
        span: tracing::Span,
    ) -> Registered {
        let Some(HandshakeState { app, hub, route, ip, handler, config, deflate, info, locals }) = self.state.take()
        else {
            unreachable!("a handshake registers once");
        };
        let id = hub.next_id();
        span.record("id", tracing::field::display(id)).record("route", tracing::field::display(&*route));
        let now = rt.now();
        let (core_config, limits) = app.inner.settings.get(&config);
        let mut conn = Connection::new(Role::Server, core_config, now);
        if let Some((params, deflate_config)) = &deflate {
            conn.enable_deflate(params, deflate_config);
        }
        let shared = Arc::new(ConnShared {
            id,
            info,
            inner: Mutex::new(ConnInner {
                conn,
                driver_waker: None,
                pending_close: None,
                pending_abort: false,
                inbox: None,
                metrics: Default::default(),
            }),
            locals: Mutex::new(locals),
            hub: Some(hub.clone()),
            spawner,
        });
        hub.register(shared.clone());
        let ws = WebSocket { shared };
        if app.inner.shutdown.is_triggered() {
            // The drain may have listed the registry before this connection
            // joined it: close it here (1001 right after the 101), so no
            // connection outlives `serve` (issue 10).
            let _ = ws.close(CloseCode::GOING_AWAY, "server shutting down");
        }
        task.handshake_done();
        let _metrics = crate::metrics::OpenConnection::new(&route);
        let release = Release { shared: ws.shared.clone(), ip, _metrics, _task: task };
        Registered { ws, handler, limits, release, span, status: self.response.status }
    }
}

impl Registered {
    /// After the response went out: runs the connection's driver over `io`
    /// in a task of its own (`leftover`: bytes read past the request).
    pub(crate) fn run<R: Runtime, T: Transport>(self, rt: R, io: T, leftover: BytesMut) -> WebSocket {
        let Registered { ws, handler, limits, release, span, status } = self;
        crate::metrics::http_response(status);
        tracing::debug!(id = %ws.id(), path = %ws.shared.info.path(), remote = ?ws.shared.info.remote_addr, "connection open");
        let driver = Driver::new(rt.clone(), io, ws.clone(), handler, limits, leftover, Some(release));
        // A task of its own: the handshake's state (request, route, config)
        // is freed now instead of living as long as the connection.
        if span.is_disabled() {
            // Filtered out: the driver unwrapped, so its polls pay nothing.
            rt.spawn_unboxed(driver);
        } else {
            rt.spawn_unboxed(tracing::Instrument::instrument(driver, span));
        }
        ws
    }
}

impl Handshake {
    /// The client's address, as guards and the handler see it.
    pub(crate) fn remote_addr(&self) -> Option<SocketAddr> {
        self.state.as_ref().and_then(|state| state.info.remote_addr)
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        // Never started (the response could not be sent): the admission
        // is given back; nothing was registered.
        if let Some(state) = self.state.take() {
            state.hub.release(&state.route, state.ip);
        }
    }
}

/// The span every log line of one connection is in: its remote address
/// from the start, its id and route once upgraded. At `info` so that a
/// connection's warnings and errors carry them under the usual filters.
pub(crate) fn connection_span(remote_addr: Option<SocketAddr>) -> tracing::Span {
    let remote = remote_addr.map(tracing::field::display);
    tracing::info_span!("conn", id = tracing::field::Empty, route = tracing::field::Empty, remote)
}

/// Gives back what an upgraded connection holds in the hub when its
/// driver ends, however it ends (the driver also unregisters at Closed).
pub(crate) struct Release {
    /// The connection: its hub, id and route (not copied here: every idle
    /// connection holds this).
    shared: Arc<ConnShared>,
    ip: Option<std::net::IpAddr>,
    /// The open-connections gauge, down again on drop (feature `metrics`).
    _metrics: crate::metrics::OpenConnection,
    _task: TaskGuard,
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(hub) = &self.shared.hub {
            hub.unregister(self.shared.id);
            hub.release(self.shared.info.route(), self.ip);
        }
    }
}

/// Runs a guard; a panic in it is logged and answered 500, as a panicking
/// handler is, and ends only this request.
fn run_guard(guard: &Guard, request: &Request, locals: &mut Extensions) -> Result<(), Response> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| guard(request, locals))) {
        Ok(result) => result,
        Err(panic) => {
            tracing::error!(path = %request.path, panic = %panic_message(&*panic), "guard panicked");
            Err(Response::text(500, "internal server error"))
        }
    }
}

/// The body length a request announces (RFC 9110 §8.6: digits only; every
/// `Content-Length` it carries must agree, RFC 9112 §6.3). `Err` for
/// anything else, which is answered 400.
fn content_length(request: &HttpRequest) -> Result<Option<usize>, ()> {
    let mut length = None;
    for value in request.header_all("content-length").flat_map(|v| v.split(',')) {
        let value = value.trim();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        let n: usize = value.parse().map_err(|_| ())?;
        if length.is_some_and(|seen| seen != n) {
            return Err(());
        }
        length = Some(n);
    }
    Ok(length)
}

/// The headers worth keeping for the connection's life: the handshake's
/// own (key, version, upgrade, connection, extensions) mean nothing after
/// it, and every idle connection would pay for them.
fn without_handshake_headers(mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
    const HANDSHAKE: [&str; 5] =
        ["upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"];
    headers.retain(|(name, _)| !HANDSHAKE.contains(&name.as_str()));
    headers
}

#[allow(clippy::too_many_arguments)]
async fn serve_http<R: Runtime, T: Transport>(
    rt: &R,
    mut io: T,
    mut buf: BytesMut,
    request: HttpRequest,
    route: &Route,
    params: Vec<(String, String)>,
    ctx: Ctx,
    reader: &RequestReader,
    shutdown_signal: &crate::shutdown::Shutdown,
    room: bool,
    kept: &mut Option<(T, BytesMut)>,
) {
    let RouteKind::Http { handler, .. } = &route.kind else { return };
    let keep_alive = room && keep_alive::requested(&request);
    if request.header("transfer-encoding").is_some() {
        // No chunked bodies here; guessing a length would desynchronize
        // the request from what a proxy in front of us saw (RFC 9112 §6.1).
        return respond_and_close(rt, &mut io, Response::text(501, "transfer-encoding not supported")).await;
    }
    let length = match content_length(&request) {
        Ok(None) => 0,
        Ok(Some(n)) if n <= MAX_HTTP_BODY => n,
        Ok(Some(_)) => return respond_and_close(rt, &mut io, Response::text(413, "body too large")).await,
        Err(()) => return respond_and_close(rt, &mut io, Response::text(400, "bad content-length")).await,
    };
    while buf.len() < length {
        // Room for what has arrived, not what was announced: a request
        // announcing 1 MB and sending nothing holds a few KiB, and a real
        // body grows the buffer by doubling (issue 10).
        buf.reserve((length - buf.len()).min(buf.len().max(8 * 1024)));
        match read_or_shutdown(rt, shutdown_signal, reader.poll_timeout(), &mut io, &mut buf).await {
            PhaseRead::TimedOut => return respond_and_close(rt, &mut io, HandshakeError::Timeout.to_response()).await,
            PhaseRead::ShuttingDown => return respond_and_close(rt, &mut io, shutting_down()).await,
            PhaseRead::Read(Some(0) | None) => return,
            PhaseRead::Read(Some(_)) => {}
        }
    }
    let body = buf.split_to(length).freeze();
    let request = to_request(&request, params, ctx, body);
    for guard in &route.guards {
        if let Err(response) = run_guard(guard, &request, &mut Extensions::new()) {
            return respond_and_close(rt, &mut io, response).await;
        }
    }
    let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&request)))
        .unwrap_or_else(|_| Response::text(500, "internal server error"));
    if keep_alive::keeps(keep_alive, &response) {
        if keep_alive::respond(rt, &mut io, &response).await {
            *kept = Some((io, buf));
        }
        return;
    }
    respond_and_close(rt, &mut io, response).await;
}

/// What a request gets once shutdown has started.
fn shutting_down() -> Response {
    Response::text(503, "server shutting down")
}

/// Writes a response and closes the connection (rejections, and pages
/// whose client or request bound asks to close; see [`crate::keep_alive`]).
async fn respond_and_close<R: Runtime, T: Transport>(rt: &R, io: &mut T, response: impl Into<Response>) {
    let response = response.into();
    crate::metrics::http_response(response.status);
    if response.status >= 400 {
        tracing::debug!(status = response.status, "request rejected");
    }
    let deadline = rt.now() + Duration::from_secs(5);
    let _ = timeout(rt, deadline, write_all(io, &response.to_bytes())).await;
    shutdown(rt, io, deadline).await;
}
