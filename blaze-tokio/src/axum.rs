//! Blaze routes on an axum 0.8 `Router` (feature `axum`).
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use blaze_tokio::{App, Callbacks};
//!
//! # async fn demo() -> std::io::Result<()> {
//! let app = App::new();
//! app.ws("/chat", Callbacks::new().on_message(|ws, msg| { let _ = ws.broadcast(msg); }));
//! let router = Router::new()
//!     .route("/api/health", get(|| async { "ok" }))
//!     // The Blaze route whose pattern matches the request path.
//!     .route("/chat", blaze_tokio::axum::upgrade(&app))
//!     // Or a Blaze route by name, at any axum path.
//!     .route("/ws", blaze_tokio::axum::route(&app, "/chat"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
//!     .with_graceful_shutdown(app.shutdown_requested())
//!     .await
//! # }
//! ```
//!
//! The handler answers every method (Blaze's handshake answers 426 to a
//! request that is not an upgrade); `axum::serve` with the `http2`
//! feature also accepts WebSockets over HTTP/2 (RFC 8441). With
//! `into_make_service_with_connect_info::<SocketAddr>()` the client's
//! address reaches guards and `max_connections_per_ip`. [`App::shutdown`]
//! closes these connections with 1001 and refuses new ones (503); pass
//! [`App::shutdown_requested`] to `with_graceful_shutdown` to stop axum
//! with it.
//!
//! [`App::shutdown`]: blaze_server::App::shutdown
//! [`App::shutdown_requested`]: blaze_server::App::shutdown_requested

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, OriginalUri, Request};
use axum::response::Response;
use axum::routing::{any, MethodRouter};

/// A handler for any axum path that serves the Blaze route whose pattern
/// matches the request path (the original path, under `Router::nest`).
pub fn upgrade<S: Clone + Send + Sync + 'static>(app: &blaze_server::App) -> MethodRouter<S> {
    handler(app.clone(), None)
}

/// A handler that serves the Blaze route `pattern` (as written in
/// `app.ws(pattern, ..)`) at whatever axum path it is mounted on. If the
/// request path does not match the pattern (`/ws` serving `/chat`), the
/// connection counts and receives broadcasts under the pattern.
pub fn route<S: Clone + Send + Sync + 'static>(app: &blaze_server::App, pattern: &str) -> MethodRouter<S> {
    handler(app.clone(), Some(pattern.to_owned()))
}

fn handler<S: Clone + Send + Sync + 'static>(app: blaze_server::App, pattern: Option<String>) -> MethodRouter<S> {
    any(move |mut request: Request| {
        let app = app.clone();
        let pattern = pattern.clone();
        async move {
            let remote = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
            let path = match request.extensions().get::<OriginalUri>() {
                Some(original) => original.0.path().to_owned(),
                None => request.uri().path().to_owned(),
            };
            let response = crate::hyper::upgrade_at(&app, &mut request, &path, pattern.as_deref(), remote);
            response.map(axum::body::Body::new)
        }
    })
}

/// A response of this bridge, as axum's (for handlers that call
/// [`crate::hyper::upgrade`] themselves).
pub fn into_axum(response: ::hyper::Response<http_body_util::Full<bytes::Bytes>>) -> Response {
    response.map(axum::body::Body::new)
}
