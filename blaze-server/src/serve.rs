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
use crate::locals::Extensions;
use crate::handler::panic_message;
use crate::request::{Guard, Request, Response};
use crate::runtime::{read_buf, shutdown, timeout, write_all, Accepted, Acceptor, Listener, Plain, Runtime, Transport};
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
                    let acceptor = acceptor.clone();
                    rt.spawn(Box::pin(accept_and_handle(app, task_rt, spawner, accepted, guard, acceptor)));
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
    handle_connection(app, rt, spawner, Accepted { io, remote_addr, local_addr }, guard, started).await
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
) {
    let Accepted { mut io, remote_addr, local_addr } = accepted;
    let config = app.current_config();
    let reader = RequestReader::new(config.handshake_limits(), started);
    let mut buf = BytesMut::with_capacity(1024);
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
    let ctx = Ctx { remote_addr, local_addr };
    match (ws_route, http_route) {
        (Some((route, params)), _) if is_upgrade => {
            upgrade(app, rt, spawner, io, buf, request, &route, params, ctx, guard).await
        }
        (_, Some((route, params))) => serve_http(&rt, io, buf, request, &route, params, ctx, &reader).await,
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
    let id = hub.next_id();
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
        }),
        locals: Mutex::new(locals),
        hub: Some(hub.clone()),
        spawner,
    });
    hub.register(shared.clone());
    tracing::debug!(%id, path = %shared.info.path, remote = ?ctx.remote_addr, "connection open");
    let limits = DriverLimits::from_config(&config);
    let release = Release { hub, id, route: Arc::from(route_key), ip, _task: guard };
    let driver = Driver::new(rt.clone(), io, WebSocket { shared }, handler.clone(), limits, leftover, Some(release));
    // A task of its own: the handshake's state (request, route, config)
    // is freed now instead of living as long as the connection.
    rt.spawn(Box::pin(driver));
}

/// Gives back what an upgraded connection holds in the hub when its
/// driver ends, however it ends (the driver also unregisters at Closed).
pub(crate) struct Release {
    hub: Arc<crate::hub::Hub>,
    id: blaze_proto::ConnId,
    route: Arc<str>,
    ip: Option<std::net::IpAddr>,
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
) {
    let RouteKind::Http { handler, .. } = &route.kind else { return };
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
    respond_and_close(rt, &mut io, response).await;
}

/// Writes a response and closes the connection (responses that do not
/// upgrade always close: these are pages and rejections, not an API server).
async fn respond_and_close<R: Runtime, T: Transport>(rt: &R, io: &mut T, response: Response) {
    if response.status >= 400 {
        tracing::debug!(status = response.status, "request rejected");
    }
    let deadline = rt.now() + Duration::from_secs(5);
    let _ = timeout(rt, deadline, write_all(io, &response.to_bytes())).await;
    shutdown(rt, io, deadline).await;
}
