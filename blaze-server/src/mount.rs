//! Blaze routes mounted in another HTTP server (hyper, axum): that server
//! parses the request and owns the connection until the upgrade; Blaze
//! decides the handshake exactly as on its own listener (the same
//! [`Handshake`](crate::serve::Handshake): validation, origin check,
//! guards, admission, subprotocol and compression negotiation) and runs
//! the upgraded stream with its own driver, registered in the same hub,
//! counted, broadcast to and shut down like every other connection.
//!
//! The runtime adapters turn their server's request into a
//! [`MountedRequest`] and the [`MountedUpgrade`]'s response into theirs
//! (`blaze_tokio::hyper`, `blaze_tokio::axum`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use blaze_proto::handshake::{HandshakeError, HttpRequest};
use bytes::BytesMut;

use crate::app::{App, RouteKind};
use crate::request::Response;
use crate::router::{normalize_path, Pattern};
use crate::runtime::{Runtime, Transport};
use crate::serve::{Ctx, Handshake, TaskCount, TaskGuard};
use crate::socket::Spawner;

/// What an app keeps for its mounted connections: their count, which a
/// shutdown drains, and whether a task is watching for that shutdown.
#[derive(Debug, Default)]
pub(crate) struct Mounted {
    tasks: Arc<TaskCount>,
    watching: AtomicBool,
}

/// A WebSocket request received by another HTTP server, for
/// [`App::accept_mounted`].
///
/// ```
/// use blaze_server::{App, Callbacks, MountedRequest};
/// use blaze_proto::handshake::HttpRequest;
///
/// let app = App::new();
/// app.ws("/chat", Callbacks::new());
/// let request = HttpRequest {
///     method: "GET".into(), path: "/chat".into(), query: None, version: 1,
///     headers: vec![
///         ("host".into(), "example.com".into()),
///         ("upgrade".into(), "websocket".into()),
///         ("connection".into(), "Upgrade".into()),
///         ("sec-websocket-key".into(), "dGhlIHNhbXBsZSBub25jZQ==".into()),
///         ("sec-websocket-version".into(), "13".into()),
///     ],
/// };
/// let upgrade = app.accept_mounted(MountedRequest::http1(request)).unwrap();
/// assert_eq!(upgrade.response().status, 101);
/// // ... send the response, then `upgrade.run(runtime, upgraded_io)`.
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MountedRequest {
    /// The request head: header names lowercased, the path without its
    /// query. Over HTTP/2 the method is `CONNECT`, `Host` carries the
    /// `:authority`, and `version` is 1 (Blaze's checks only ask for
    /// "at least HTTP/1.1").
    pub request: HttpRequest,
    /// The `:protocol` pseudo-header of an HTTP/2 request (RFC 8441
    /// extended CONNECT), `Some` for every HTTP/2 request even without
    /// it (`Some("")`); `None` for HTTP/1.1.
    pub extended_connect: Option<String>,
    /// The Blaze route to serve (its pattern as written, `/chat`), or
    /// `None` to route by the request path like Blaze's own listener.
    pub route: Option<String>,
    /// The client's address, if the server knows it (guards and
    /// `max_connections_per_ip` use it).
    pub remote_addr: Option<SocketAddr>,
    /// Our address.
    pub local_addr: Option<SocketAddr>,
}

impl MountedRequest {
    /// An HTTP/1.1 upgrade request.
    pub fn http1(request: HttpRequest) -> MountedRequest {
        MountedRequest { request, extended_connect: None, route: None, remote_addr: None, local_addr: None }
    }

    /// An HTTP/2 request with its `:protocol` pseudo-header, if any.
    pub fn http2(request: HttpRequest, protocol: Option<&str>) -> MountedRequest {
        MountedRequest {
            extended_connect: Some(protocol.unwrap_or_default().to_owned()),
            ..MountedRequest::http1(request)
        }
    }

    /// Serves the Blaze route `pattern` whatever the request path (see
    /// [`App::accept_mounted`]).
    pub fn route(mut self, pattern: &str) -> MountedRequest {
        self.route = Some(pattern.to_owned());
        self
    }

    /// Sets the client's address.
    pub fn remote_addr(mut self, addr: Option<SocketAddr>) -> MountedRequest {
        self.remote_addr = addr;
        self
    }

    /// Sets our address.
    pub fn local_addr(mut self, addr: Option<SocketAddr>) -> MountedRequest {
        self.local_addr = addr;
        self
    }
}

/// A WebSocket upgrade Blaze accepted from another HTTP server: send
/// [`MountedUpgrade::response`] (101, or 200 for HTTP/2), then hand the
/// upgraded stream to [`MountedUpgrade::run`]. Dropped instead (the
/// upgrade failed), it gives back its place under the route's limits.
pub struct MountedUpgrade {
    handshake: Handshake,
    app: App,
    task: TaskGuard,
}

impl std::fmt::Debug for MountedUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountedUpgrade").field("status", &self.handshake.response.status).finish_non_exhaustive()
    }
}

impl MountedUpgrade {
    /// The response to send: status and headers (no body).
    pub fn response(&self) -> &Response {
        &self.handshake.response
    }

    /// Runs the connection over the upgraded stream `io` on runtime `rt`,
    /// in a task of its own: the route's handler, the hub, heartbeats and
    /// limits, as on Blaze's own listener. Returns at once.
    pub fn run<R: Runtime, T: Transport>(self, rt: R, io: T) {
        let MountedUpgrade { handshake, app, task } = self;
        let spawner: Spawner = {
            let rt = rt.clone();
            Arc::new(move |future| rt.spawn(future))
        };
        watch_shutdown(&app, &rt);
        // A shutdown that began meanwhile closes it with 1001 (start).
        let span = crate::serve::connection_span(handshake.remote_addr());
        handshake.register(&rt, spawner, task, span).run(rt, io, BytesMut::new());
    }
}

/// Starts the app's shutdown watcher for mounted connections, once: at
/// [`App::shutdown`] it closes them with 1001 and waits for them as
/// `serve` does for its own (no Blaze accept loop may be running).
fn watch_shutdown<R: Runtime>(app: &App, rt: &R) {
    let mounted = &app.inner.mounted;
    if mounted.watching.swap(true, Ordering::SeqCst) {
        return;
    }
    let app = app.clone();
    let task_rt = rt.clone();
    rt.spawn(Box::pin(async move {
        app.inner.shutdown.wait().await;
        app.drain(&task_rt, &app.inner.mounted.tasks).await;
        // The next mounted connection (after the app is served again)
        // starts a new watcher; until then upgrades are refused (503).
        app.inner.mounted.watching.store(false, Ordering::SeqCst);
    }));
}

/// The connection-specific headers HTTP/2 forbids (RFC 9113 §8.2.2); a
/// rejection sent there (426 carries `Upgrade`) leaves them out.
const HTTP1_ONLY_HEADERS: [&str; 5] = ["connection", "upgrade", "keep-alive", "proxy-connection", "transfer-encoding"];

impl App {
    /// Decides a WebSocket request that another HTTP server received
    /// (Blaze mounted in hyper or axum), as Blaze's own listener would:
    /// routing (by the request path, or the route named in
    /// [`MountedRequest::route`]), the upgrade checks (HTTP/1.1, or the
    /// HTTP/2 extended CONNECT of RFC 8441), the origin check, guards,
    /// `max_connections`, subprotocol and permessage-deflate negotiation.
    /// `Err` is the rejection to send (404, 400, 403, 426, a guard's, 503
    /// while shutting down, ...).
    ///
    /// The handshake limits apply to what the other server parsed: more
    /// headers than `max_headers` or a head larger than `max_head_bytes`
    /// is 431 (that server's own limits apply first, as does its timeout).
    ///
    /// With an explicit route whose pattern does not match the request
    /// path (`/ws` serving the route `/chat`), the connection counts,
    /// and receives broadcasts, under the route's pattern, with no path
    /// parameters.
    pub fn accept_mounted(&self, request: MountedRequest) -> Result<MountedUpgrade, Response> {
        let http2 = request.extended_connect.is_some();
        self.decide_mounted(request).map_err(|mut response| {
            if response.status >= 400 {
                tracing::debug!(status = response.status, "mounted upgrade rejected");
            }
            if http2 {
                response.headers.retain(|(name, _)| !HTTP1_ONLY_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
            }
            response
        })
    }

    fn decide_mounted(&self, mounted: MountedRequest) -> Result<MountedUpgrade, Response> {
        let MountedRequest { mut request, extended_connect, route, remote_addr, local_addr } = mounted;
        if self.inner.shutdown.is_triggered() {
            return Err(Response::text(503, "server shutting down"));
        }
        let limits = self.current_config().handshake_limits();
        if request.headers.len() > limits.max_headers {
            return Err(HandshakeError::TooManyHeaders(limits.max_headers).to_response().into());
        }
        let head_bytes = request.method.len()
            + request.path.len()
            + request.query.as_ref().map_or(0, String::len)
            + request.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>();
        if head_bytes > limits.max_head_bytes {
            return Err(HandshakeError::HeadTooLarge(limits.max_head_bytes).to_response().into());
        }
        if let std::borrow::Cow::Owned(path) = normalize_path(&request.path) {
            request.path = path;
        }
        let routes = self.read_routes();
        let is_ws = |kind: &RouteKind| matches!(kind, RouteKind::Ws { .. });
        let found = match &route {
            None => routes
                .iter()
                .filter(|r| is_ws(&r.kind))
                .find_map(|r| r.pattern.matches(&request.path).map(|params| (r, params))),
            Some(pattern) => {
                let wanted = Pattern::parse(pattern);
                let route = routes.iter().find(|r| is_ws(&r.kind) && r.pattern.as_str() == wanted.as_str());
                if route.is_none() {
                    tracing::warn!(route = %pattern, "mounted Blaze route does not exist");
                }
                route.map(|r| match r.pattern.matches(&request.path) {
                    Some(params) => (r, params),
                    None => {
                        request.path = r.pattern.as_str().to_owned();
                        (r, Vec::new())
                    }
                })
            }
        };
        let Some((route, params)) = found else {
            return Err(Response::text(404, "not found"));
        };
        let ctx = Ctx { remote_addr, local_addr };
        let task = self.inner.mounted.tasks.enter();
        if !route.async_guards.is_empty() {
            // They need a runtime this synchronous entry point does not
            // have; skipping them would skip what they check.
            tracing::error!(route = %route.pattern.as_str(), "async guards are not supported on mounted routes yet");
            return Err(Response::text(500, "internal server error"));
        }
        let judged = Handshake::judge(self, request, extended_connect.as_deref(), route, params, ctx)?;
        let handshake = judged.admit(self, Default::default())?;
        Ok(MountedUpgrade { handshake, app: self.clone(), task })
    }

    /// Completes when [`App::shutdown`] is called: give it to the other
    /// server's graceful shutdown (axum's `with_graceful_shutdown`) so one
    /// call stops both. Mounted connections are closed with 1001 by Blaze.
    pub fn shutdown_requested(&self) -> impl Future<Output = ()> + Send + 'static {
        let app = self.clone();
        async move { app.inner.shutdown.wait().await }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Callbacks;

    fn request(method: &str, headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: "/chat".into(),
            query: None,
            version: 1,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }

    fn app() -> App {
        let app = App::new();
        app.ws("/chat", Callbacks::new());
        app
    }

    #[test]
    fn http2_rejections_leave_out_connection_specific_headers() {
        let plain_get = request("GET", &[("host", "a"), ("sec-websocket-version", "13")]);
        let rejection = app().accept_mounted(MountedRequest::http2(plain_get.clone(), None)).unwrap_err();
        assert_eq!(rejection.status, 426);
        let names: Vec<String> = rejection.headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        assert!(names.contains(&"sec-websocket-version".to_owned()), "{names:?}");
        assert!(!names.iter().any(|n| n == "upgrade" || n == "connection"), "{names:?}");
        // Over HTTP/1.1 the same 426 names the upgrade it wants (RFC 6455 §4.4).
        let rejection = app().accept_mounted(MountedRequest::http1(plain_get)).unwrap_err();
        assert!(rejection.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("upgrade")));
    }

    #[test]
    fn handshake_limits_and_shutdown_apply_to_mounted_requests() {
        let app = app();
        let connect = |extra: usize| {
            let mut headers =
                vec![("host".to_owned(), "a".to_owned()), ("sec-websocket-version".to_owned(), "13".to_owned())];
            headers.extend((0..extra).map(|i| (format!("x-{i}"), "v".to_owned())));
            let request = HttpRequest { headers, ..request("CONNECT", &[]) };
            MountedRequest::http2(request, Some("websocket"))
        };
        assert_eq!(app.accept_mounted(connect(0)).unwrap().response().status, 200);
        let max = app.current_config().handshake_limits().max_headers;
        assert_eq!(app.accept_mounted(connect(max)).unwrap_err().status, 431);
        app.shutdown();
        assert_eq!(app.accept_mounted(connect(0)).unwrap_err().status, 503);
    }

    #[test]
    fn a_named_route_serves_any_path_and_a_missing_one_is_404() {
        let app = app();
        let upgrade = |path: &str, route: &str| {
            let headers = [("host", "a"), ("sec-websocket-version", "13")];
            let request = HttpRequest { path: path.into(), ..request("CONNECT", &headers) };
            app.accept_mounted(MountedRequest::http2(request, Some("websocket")).route(route))
                .map(|u| u.response().status)
        };
        assert_eq!(upgrade("/ws", "/chat"), Ok(200));
        assert_eq!(upgrade("/ws", "/nope").map_err(|r| r.status), Err(404));
    }
}
