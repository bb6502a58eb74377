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

use crate::app::{App, Route, RouteKind};
use crate::driver::{Driver, DriverLimits};
use crate::hub::AdmitError;
use crate::keep_alive::{self, HttpConn};
use crate::locals::Extensions;
use crate::handler::panic_message;
use crate::request::{Guard, Request, Response};
use crate::runtime::{read_buf, shutdown, timeout, write_all, Accepted, Listener, Runtime, Transport};
use crate::socket::{ConnInfo, ConnInner, ConnShared, Spawner, WebSocket};

/// Largest body a plain HTTP route accepts (413 above).
const MAX_HTTP_BODY: usize = 1 << 20;

/// Tasks still running for this server (handshakes and connections), so
/// shutdown can wait for every `on_close`.
#[derive(Debug, Default)]
pub(crate) struct TaskCount(AtomicUsize);

pub(crate) struct TaskGuard(Arc<TaskCount>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl App {
    /// Serves connections from `listener` on runtime `rt` until
    /// [`App::shutdown`] is called, then drains gracefully. Runtime
    /// adapters call this; applications call the adapter's `serve`.
    pub async fn serve_with<R: Runtime, L: Listener>(&self, rt: R, mut listener: L) -> std::io::Result<()> {
        let tasks = Arc::new(TaskCount::default());
        crate::metrics::init();
        let spawner: Spawner = {
            let rt = rt.clone();
            Arc::new(move |future| rt.spawn(future))
        };
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
                    tasks.0.fetch_add(1, Ordering::SeqCst);
                    let guard = TaskGuard(tasks.clone());
                    let app = self.clone();
                    let task_rt = rt.clone();
                    let spawner = spawner.clone();
                    let span = connection_span(accepted.remote_addr);
                    let task = handle_connection(app, task_rt, spawner, accepted, guard);
                    rt.spawn(Box::pin(tracing::Instrument::instrument(task, span)));
                }
                Some(Err(err)) => {
                    // Out of file descriptors and the like: back off briefly
                    // instead of spinning; the listener stays open.
                    tracing::warn!("accept failed: {err}");
                    rt.sleep_until(rt.now() + Duration::from_millis(20)).await;
                }
            }
        }
        drop(listener);
        self.drain(&rt, &tasks).await;
        self.inner.shutdown.reset();
        Ok(())
    }

    /// Closes every connection with 1001 and waits (up to the drain
    /// timeout) for each to finish and run its `on_close`.
    async fn drain<R: Runtime>(&self, rt: &R, tasks: &TaskCount) {
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
    }
}

/// The HTTP phase of one connection. An upgraded connection continues in a
/// task of its own (see [`upgrade`]); `guard` counts it until it ends.
async fn handle_connection<R: Runtime, T: Transport>(
    app: App,
    rt: R,
    spawner: Spawner,
    accepted: Accepted<T>,
    guard: TaskGuard,
) {
    let Accepted { io, remote_addr, local_addr } = accepted;
    let ctx = Ctx { remote_addr, local_addr };
    let mut next = Some(HttpConn { io, buf: BytesMut::with_capacity(1024), served: 0, guard });
    while let Some(conn) = next.take() {
        handle_request(app.clone(), rt.clone(), spawner.clone(), conn, ctx, &mut next).await;
    }
}

/// One request of a connection; a connection kept alive after it comes
/// back in `next` (see [`crate::keep_alive`]).
async fn handle_request<R: Runtime, T: Transport>(
    app: App,
    rt: R,
    spawner: Spawner,
    conn: HttpConn<T>,
    ctx: Ctx,
    next: &mut Option<HttpConn<T>>,
) {
    let HttpConn { mut io, mut buf, served, guard } = conn;
    let config = app.current_config();
    let idle = config.http_keep_alive_timeout;
    if served > 0 && !keep_alive::wait_for_request(&rt, &mut io, &mut buf, idle, &app.inner.shutdown).await {
        return;
    }
    let reader = RequestReader::new(config.handshake_limits(), rt.now());
    let mut request = loop {
        match reader.read(&mut buf) {
            Ok(Some(request)) => break request,
            Ok(None) => {}
            Err(err) => return respond_and_close(&rt, &mut io, err.to_response()).await,
        }
        buf.reserve(1024);
        match timeout(&rt, reader.poll_timeout(), read_buf(&mut io, &mut buf)).await {
            None => return respond_and_close(&rt, &mut io, HandshakeError::Timeout.to_response()).await,
            Some(Ok(0)) | Some(Err(_)) => return,
            Some(Ok(_)) => {}
        }
    };
    let is_upgrade = request.header_all("upgrade").any(|v| v.to_ascii_lowercase().contains("websocket"));
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
            upgrade(app, rt, spawner, io, buf, request, &route, params, ctx, guard).await
        }
        (_, Some((route, params))) => {
            let room = served + 1 < config.http_keep_alive_requests;
            let mut kept = None;
            serve_http(&rt, io, buf, request, &route, params, ctx, &reader, room, &mut kept).await;
            *next = kept.map(|(io, buf)| HttpConn { io, buf, served: served + 1, guard });
        }
        // A WebSocket route asked for without an upgrade: 426.
        (Some((route, params)), None) => {
            upgrade(app, rt, spawner, io, buf, request, &route, params, ctx, guard).await
        }
        (None, None) if path_matched => respond_and_close(&rt, &mut io, Response::text(405, "method not allowed")).await,
        (None, None) => respond_and_close(&rt, &mut io, Response::text(404, "not found")).await,
    }
}

#[derive(Clone, Copy)]
struct Ctx {
    remote_addr: Option<SocketAddr>,
    local_addr: Option<SocketAddr>,
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
) {
    let RouteKind::Ws { handler, config } = &route.kind else { return };
    let config = config.as_deref().cloned().unwrap_or_else(|| app.current_config());
    let upgrade = match UpgradeRequest::validate(request) {
        Ok(upgrade) => upgrade,
        Err(err) => return respond_and_close(&rt, &mut io, err.to_response()).await,
    };
    // A panicking origin check or guard answers 500 and ends only this
    // request; the server goes on (as for HTTP handlers).
    if let Some(check) = &config.check_origin {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&upgrade.request))) {
            Ok(true) => {}
            Ok(false) => return respond_and_close(&rt, &mut io, Response::text(403, "origin not allowed")).await,
            Err(panic) => {
                tracing::error!(path = %upgrade.request.path, panic = %panic_message(&*panic), "check_origin panicked");
                return respond_and_close(&rt, &mut io, Response::text(500, "internal server error")).await;
            }
        }
    }
    let request = to_request(&upgrade.request, params, ctx, Bytes::new());
    let mut locals = Extensions::new();
    for guard in &route.guards {
        if let Err(response) = run_guard(guard, &request, &mut locals) {
            return respond_and_close(&rt, &mut io, response).await;
        }
    }
    let hub = app.inner.hub.clone();
    let route_key = route.pattern.as_str();
    let ip = ctx.remote_addr.map(|a| a.ip());
    if let Err(err) = hub.admit(route_key, ip, config.max_connections, config.max_connections_per_ip) {
        let response = match err {
            AdmitError::RouteFull => Response::text(503, "too many connections"),
            AdmitError::IpFull => Response::text(429, "too many connections from this address"),
        };
        return respond_and_close(&rt, &mut io, response).await;
    }
    let protocol = upgrade.select_protocol(&config.subprotocols).map(str::to_owned);
    let deflate = config.compression.as_ref().and_then(|c| Some((upgrade.negotiate_deflate(c)?, *c)));
    let extensions = deflate.as_ref().map(|(params, _)| params.to_header());
    let response = upgrade.accept(protocol.as_deref(), extensions.as_deref()).to_bytes();
    if write_all(&mut io, &response).await.is_err() {
        hub.release(route_key, ip);
        return;
    }
    crate::metrics::http_response(101);
    let id = hub.next_id();
    let span = tracing::Span::current();
    span.record("id", tracing::field::display(id)).record("route", tracing::field::display(route_key));
    let now = rt.now();
    let mut conn = Connection::new(Role::Server, config.connection_config(0), now);
    if let Some((params, deflate_config)) = &deflate {
        conn.enable_deflate(params, deflate_config);
    }
    let shared = Arc::new(ConnShared {
        id,
        info: ConnInfo {
            path: request.path.clone(),
            route: route_key.to_owned(),
            params: request.params,
            query: request.query,
            headers: without_handshake_headers(request.headers),
            remote_addr: ctx.remote_addr,
            local_addr: ctx.local_addr,
            protocol,
        },
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
    tracing::debug!(%id, path = %shared.info.path, remote = ?ctx.remote_addr, "connection open");
    let limits = DriverLimits::from_config(&config);
    let _metrics = crate::metrics::OpenConnection::new(route_key);
    let release = Release { hub, id, route: Arc::from(route_key), ip, _metrics, _task: guard };
    let driver = Driver::new(rt.clone(), io, WebSocket { shared }, handler.clone(), limits, leftover, Some(release));
    // A task of its own: the handshake's state (request, route, config)
    // is freed now instead of living as long as the connection.
    if span.is_disabled() {
        // Filtered out: the driver unwrapped, so its polls pay nothing.
        rt.spawn(Box::pin(driver));
    } else {
        rt.spawn(Box::pin(tracing::Instrument::instrument(driver, span)));
    }
}

/// The span every log line of one connection is in: its remote address
/// from the start, its id and route once upgraded. At `info` so that a
/// connection's warnings and errors carry them under the usual filters.
fn connection_span(remote_addr: Option<SocketAddr>) -> tracing::Span {
    let remote = remote_addr.map(tracing::field::display);
    tracing::info_span!("conn", id = tracing::field::Empty, route = tracing::field::Empty, remote)
}

/// Gives back what an upgraded connection holds in the hub when its
/// driver ends, however it ends (the driver also unregisters at Closed).
pub(crate) struct Release {
    hub: Arc<crate::hub::Hub>,
    id: blaze_proto::ConnId,
    route: Arc<str>,
    ip: Option<std::net::IpAddr>,
    /// The open-connections gauge, down again on drop (feature `metrics`).
    _metrics: crate::metrics::OpenConnection,
    _task: TaskGuard,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
        self.hub.release(&self.route, self.ip);
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
    headers.shrink_to_fit();
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
        match timeout(rt, reader.poll_timeout(), read_buf(&mut io, &mut buf)).await {
            None => return respond_and_close(rt, &mut io, HandshakeError::Timeout.to_response()).await,
            Some(Ok(0)) | Some(Err(_)) => return,
            Some(Ok(_)) => {}
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

/// Writes a response and closes the connection (rejections, and pages
/// whose client or request bound asks to close; see [`crate::keep_alive`]).
async fn respond_and_close<R: Runtime, T: Transport>(rt: &R, io: &mut T, response: Response) {
    crate::metrics::http_response(response.status);
    if response.status >= 400 {
        tracing::debug!(status = response.status, "request rejected");
    }
    let deadline = rt.now() + Duration::from_secs(5);
    let _ = timeout(rt, deadline, write_all(io, &response.to_bytes())).await;
    shutdown(rt, io, deadline).await;
}
