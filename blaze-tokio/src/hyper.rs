//! Blaze routes in a hyper 1 server (feature `hyper`).
//!
//! Your hyper service hands a WebSocket request to [`upgrade`]; Blaze
//! decides it with its own handshake ([`blaze_server::App::accept_mounted`]: the route's
//! guards, origin check, subprotocols, compression and limits) and
//! answers 101, or for an HTTP/2 extended CONNECT (RFC 8441, served by
//! `hyper::server::conn::http2::Builder` with `enable_connect_protocol()`)
//! 200. Once hyper has upgraded the connection, the stream runs on Blaze's
//! driver, in the app's hub like every connection of its own listener:
//! same handlers, broadcast, topics, heartbeats, limits, counts and
//! shutdown.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use blaze_tokio::{App, Callbacks};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let app = App::new();
//! app.ws("/echo", Callbacks::new().on_message(|ws, msg| { let _ = ws.send(msg); }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! loop {
//!     let (stream, remote) = listener.accept().await?;
//!     let app = app.clone();
//!     let service = hyper::service::service_fn(move |request| {
//!         let response = blaze_tokio::hyper::upgrade(&app, request, Some(remote));
//!         async move { Ok::<_, Infallible>(response) }
//!     });
//!     tokio::spawn(async move {
//!         let io = hyper_util::rt::TokioIo::new(stream);
//!         let _ = hyper::server::conn::http1::Builder::new()
//!             .serve_connection(io, service)
//!             .with_upgrades()
//!             .await;
//!     });
//! }
//! # }
//! ```

use std::net::SocketAddr;

use blaze_proto::handshake::HttpRequest;
use blaze_server::{MountedRequest, Response as BlazeResponse};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};

use crate::{TokioIo, TokioRuntime};

/// Answers a WebSocket request with the Blaze route its path matches,
/// as Blaze's own listener would route it. `remote_addr` is the client's
/// address (hyper does not know it; guards and `max_connections_per_ip`
/// use it). Return the response from your service; the connection runs
/// on Blaze once hyper upgrades it (HTTP/1.1 needs `with_upgrades()` on
/// the connection).
pub fn upgrade<B>(
    app: &blaze_server::App,
    request: Request<B>,
    remote_addr: Option<SocketAddr>,
) -> Response<Full<Bytes>> {
    upgrade_mounted(app, request, None, remote_addr)
}

/// Like [`upgrade`], but serves the Blaze route `pattern` (as written in
/// `app.ws(pattern, ..)`) whatever the request path: hyper or axum did
/// the routing. If the path does not match the pattern, the connection
/// counts and receives broadcasts under the pattern.
pub fn upgrade_route<B>(
    app: &blaze_server::App,
    pattern: &str,
    request: Request<B>,
    remote_addr: Option<SocketAddr>,
) -> Response<Full<Bytes>> {
    upgrade_mounted(app, request, Some(pattern), remote_addr)
}

/// The request as Blaze sees it (for `App::accept_mounted`).
pub(crate) fn mounted_request<B>(request: &Request<B>, path: &str) -> MountedRequest {
    let mut headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let http2 = request.version() >= http::Version::HTTP_2;
    if http2 && !headers.iter().any(|(name, _)| name == "host") {
        // HTTP/2 carries the host as `:authority`, which hyper keeps in
        // the URI.
        if let Some(authority) = request.uri().authority() {
            headers.push(("host".to_owned(), authority.as_str().to_owned()));
        }
    }
    let head = HttpRequest {
        method: request.method().as_str().to_owned(),
        path: path.to_owned(),
        query: request.uri().query().map(str::to_owned),
        // HTTP/2 counts as "at least HTTP/1.1" (see MountedRequest).
        version: u8::from(request.version() != http::Version::HTTP_10 && request.version() != http::Version::HTTP_09),
        headers,
    };
    if http2 {
        let protocol = request.extensions().get::<hyper::ext::Protocol>().map(hyper::ext::Protocol::as_str);
        MountedRequest::http2(head, protocol)
    } else {
        MountedRequest::http1(head)
    }
}

pub(crate) fn upgrade_mounted<B>(
    app: &blaze_server::App,
    mut request: Request<B>,
    route: Option<&str>,
    remote_addr: Option<SocketAddr>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    upgrade_at(app, &mut request, &path, route, remote_addr)
}

/// [`upgrade`] with the path to route by given (axum's original URI
/// under `nest`).
pub(crate) fn upgrade_at<B>(
    app: &blaze_server::App,
    request: &mut Request<B>,
    path: &str,
    route: Option<&str>,
    remote_addr: Option<SocketAddr>,
) -> Response<Full<Bytes>> {
    let mut mounted = mounted_request(request, path).remote_addr(remote_addr);
    if let Some(route) = route {
        mounted = mounted.route(route);
    }
    let accepted = match app.accept_mounted(mounted) {
        Ok(accepted) => accepted,
        Err(rejection) => return to_hyper(&rejection),
    };
    let response = to_hyper(accepted.response());
    let on_upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => accepted.run(TokioRuntime, TokioIo(hyper_util::rt::TokioIo::new(upgraded))),
            // The client went away before the upgrade completed (or the
            // connection was not served `with_upgrades`); dropping the
            // accepted upgrade gives its admission back.
            Err(err) => tracing::debug!("upgrade failed: {err}"),
        }
    });
    response
}

/// A Blaze response (a 101/200 or a rejection) as hyper's.
fn to_hyper(response: &BlazeResponse) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(response.body.clone()));
    *out.status_mut() = http::StatusCode::from_u16(response.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &response.headers {
        // Blaze builds its headers itself; a guard's that does not parse
        // is left out, as Blaze's own writer leaves out unsafe ones.
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
        {
            out.headers_mut().append(name, value);
        }
    }
    out
}
