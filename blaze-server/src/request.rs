//! The request a guard or a plain HTTP route sees.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use blaze_proto::handshake::HttpResponse;

use crate::locals::Extensions;

/// An HTTP response: what plain routes return and guards reject with.
///
/// ```
/// use blaze_server::Response;
/// #[derive(serde::Serialize)]
/// struct Stats { online: usize }
/// let page = Response::with_body(200, "text/html", "<h1>hi</h1>");
/// let stats = Response::json(200, &Stats { online: 3 });
/// assert_eq!(stats.body, r#"{"online":3}"#);
/// let denied = Response::text(401, "missing token").header("WWW-Authenticate", "Bearer");
/// # let _ = (page, denied);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers besides `Content-Length`, which is added when it is written.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// A response with a status and no body.
    pub fn status(status: u16) -> Response {
        Response { status, headers: Vec::new(), body: Bytes::new() }
    }

    /// A response with a status and a plain-text body.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        HttpResponse::text(status, body).into()
    }

    /// A response with a status, a content type and a body.
    pub fn with_body(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response {
        HttpResponse::with_body(status, content_type, body).into()
    }

    /// A response with a status and a value serialized as a JSON body
    /// (`application/json`). A value that cannot be serialized (a map
    /// with non-string keys) gives a 500 instead.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::with_body(status, "application/json", body),
            Err(err) => {
                tracing::error!("response body did not serialize: {err}");
                Response::text(500, "internal server error")
            }
        }
    }

    /// Adds a header. A name or value holding CR or LF is left out (it
    /// could inject a header or end the head early).
    pub fn header(self, name: impl Into<String>, value: impl Into<String>) -> Response {
        HttpResponse::from(self).header(name, value).into()
    }

    /// The standard reason phrase for the status.
    pub fn reason(&self) -> &'static str {
        HttpResponse { status: self.status, headers: Vec::new(), body: Bytes::new() }.reason()
    }

    /// The response as written on the wire.
    pub fn to_bytes(&self) -> Bytes {
        HttpResponse { status: self.status, headers: self.headers.clone(), body: self.body.clone() }.to_bytes()
    }

    /// The response as HTTP/1.1 bytes for a connection that stays open
    /// (`Connection: keep-alive`; see `keep_alive.rs`).
    pub(crate) fn to_bytes_keep_alive(&self) -> Bytes {
        HttpResponse { status: self.status, headers: self.headers.clone(), body: self.body.clone() }.to_bytes_keep_alive()
    }
}

impl From<HttpResponse> for Response {
    fn from(r: HttpResponse) -> Response {
        Response { status: r.status, headers: r.headers, body: r.body }
    }
}

impl From<Response> for HttpResponse {
    fn from(r: Response) -> HttpResponse {
        HttpResponse { status: r.status, headers: r.headers, body: r.body }
    }
}

/// An HTTP request: an upgrade request seen by a guard, or a plain request
/// to an `app.get`/`app.post` route.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The method (`GET`).
    pub method: String,
    /// The path, without the query string, normalized exactly as routing
    /// saw it: repeated slashes collapsed, a trailing slash dropped (`/`
    /// stays `/`), never percent-decoded (`/ch%61t` is not `/chat`). A
    /// WebSocket connection is registered under this same path, so it is
    /// what `ws.path()` returns and what `App::broadcast(path)` and
    /// `App::connection_count(path)` look up (they normalize their argument
    /// the same way).
    pub path: String,
    /// Path parameters captured by the route (`:room_id`).
    pub params: Vec<(String, String)>,
    /// Query parameters, percent-decoded.
    pub query: Vec<(String, String)>,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The client's address, as accepted (an IPv4 client of a dual-stack
    /// `[::]` listener shows as `::ffff:a.b.c.d`). `max_connections_per_ip`
    /// counts IPv4-mapped addresses as their IPv4 address and other IPv6
    /// addresses by their /64; a connection with no address (`None`, e.g. a
    /// Unix socket) is never limited per IP, only by `max_connections`.
    /// Behind a proxy this is the proxy's address, unless the proxy is in
    /// `WsConfig::trusted_proxies` (the route's for WebSocket routes, the
    /// app's for plain ones): then it is the client the proxy forwarded
    /// for (`Forwarded` / `X-Forwarded-For`, rightmost untrusted hop; port
    /// 0 if the header gave none), and that is what the per-IP limit counts.
    pub remote_addr: Option<SocketAddr>,
    /// The server's address.
    pub local_addr: Option<SocketAddr>,
    /// The body (plain routes; empty for upgrade requests).
    pub body: Bytes,
}

impl Request {
    /// A header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// A path parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A bearer token from `Authorization: Bearer ...` or, for browsers
    /// (which cannot set headers on a WebSocket), the `token` query parameter.
    pub fn bearer_token(&self) -> Option<&str> {
        self.header("authorization").and_then(|v| v.strip_prefix("Bearer ")).or_else(|| self.query("token"))
    }

    /// Whether this is a WebSocket upgrade request (`Upgrade: websocket`):
    /// an async guard on a WebSocket route can answer other requests with
    /// a plain page ([`crate::Admission::respond`]).
    pub fn is_upgrade(&self) -> bool {
        self.headers.iter().any(|(n, v)| n == "upgrade" && v.to_ascii_lowercase().contains("websocket"))
    }

    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`), in
    /// its order of preference: what an async guard may choose from
    /// ([`crate::Admission::protocol`]).
    pub fn protocols(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "sec-websocket-protocol")
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// A check run on an upgrade request before the handshake. It accepts by
/// returning `Ok(())`, optionally storing typed data in the connection's
/// locals (read with [`crate::WebSocket::local`]), or rejects with a
/// response (401, 403, 429, ...). Guards run in the order they were added.
///
/// ```
/// use blaze_server::{guard, Response};
/// #[derive(Clone)]
/// struct User(String);
/// let auth = guard(|req, locals| match req.bearer_token() {
///     Some("secret") => { locals.insert(User("ann".into())); Ok(()) }
///     _ => Err(Response::text(401, "missing or bad token")),
/// });
/// ```
pub type Guard = Arc<dyn Fn(&Request, &mut Extensions) -> Result<(), Response> + Send + Sync>;

/// Makes a [`Guard`] from a closure.
pub fn guard(f: impl Fn(&Request, &mut Extensions) -> Result<(), Response> + Send + Sync + 'static) -> Guard {
    Arc::new(f)
}

/// A plain HTTP route's handler.
pub type HttpHandler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;
