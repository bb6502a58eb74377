//! The client: connect to a WebSocket server and talk to it with the same
//! message API as the server side ([`WsStream`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;

use blaze_proto::handshake::{ClientHandshake, ClientHandshakeError};
use blaze_proto::{ConnId, Connection, Role};

use crate::config::WsConfig;
use crate::driver::{Driver, DriverLimits};
use crate::handler::Handler;
use crate::info::RequestInfo;
use crate::locals::Extensions;
use crate::runtime::{read_buf, timeout, write_all, Runtime, Transport};
use crate::socket::{ConnInner, ConnShared, WebSocket, WsStream};

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `ws://` or `wss://host[:port][/path]` (or `wss://`
    /// without the `tls` feature).
    #[error("invalid WebSocket URL: {0}")]
    InvalidUrl(String),
    /// Connecting or the handshake's I/O failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server's answer was not a valid 101 (a rejection carries its status).
    #[error("handshake failed: {0}")]
    Handshake(#[from] ClientHandshakeError),
    /// The handshake did not complete in time.
    #[error("handshake timed out")]
    Timeout,
    /// The TLS handshake failed: the server's certificate is not trusted
    /// or not valid for the host (`rustls::Error::InvalidCertificate`), or
    /// the server refused us.
    #[cfg(feature = "tls")]
    #[error("TLS: {0}")]
    Tls(rustls::Error),
}

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `host:port`, as sent in the Host header and used to connect.
    pub authority: String,
    /// The host.
    pub host: String,
    /// The port (80 for `ws://`, 443 for `wss://` if not given).
    pub port: u16,
    /// The path and query (`/chat?room=1`).
    pub path: String,
    /// `wss://`: the connection runs over TLS.
    pub secure: bool,
}

impl WsUrl {
    /// Parses `ws[s]://host[:port][/path][?query]`. The adapters connect
    /// `wss://` over TLS with their `tls` feature; `connect_with` takes a
    /// transport that is already secured.
    pub fn parse(url: &str) -> Result<WsUrl, ClientError> {
        let (rest, secure) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (rest, false),
            (None, Some(rest)) => (rest, true),
            (None, None) => return Err(ClientError::InvalidUrl(url.to_owned())),
        };
        let default_port = if secure { 443 } else { 80 };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') { format!("/{path}") } else { path.to_owned() };
        let invalid = || ClientError::InvalidUrl(url.to_owned());
        // A port follows the last ':' unless that ':' is inside an IPv6
        // literal (`[::1]`, `[::1]:9001`).
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.ends_with(']') => (h.to_owned(), p.parse().map_err(|_| invalid())?),
            _ => (authority.to_owned(), default_port),
        };
        if host.starts_with('[') != host.ends_with(']') {
            return Err(invalid());
        }
        if host.is_empty() {
            return Err(ClientError::InvalidUrl(url.to_owned()));
        }
        Ok(WsUrl { authority: format!("{host}:{port}"), host, port, path, secure })
    }
}

/// Options for [`connect_with`]: subprotocols, headers, limits.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Subprotocols to offer, in order of preference.
    pub protocols: Vec<String>,
    /// Extra request headers (`Authorization`, `Origin`, ...).
    pub headers: Vec<(String, String)>,
    /// Limits and heartbeats (the server defaults; `ping_interval` is off
    /// for clients by default, since servers ping).
    pub config: WsConfig,
    /// The rustls configuration for `wss://`. Default `None`: Mozilla's
    /// roots with hostname verification
    /// ([`tls::default_client_config`](crate::tls::default_client_config)).
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            protocols: Vec::new(),
            headers: Vec::new(),
            config: WsConfig::default().ping_interval(None),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl ClientOptions {
    /// Offers a subprotocol.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Uses this rustls configuration for `wss://` (a private CA's roots:
    /// [`tls::client_config_from_pem`](crate::tls::client_config_from_pem)).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Sets limits and heartbeats.
    pub fn config(mut self, config: WsConfig) -> Self {
        self.config = config;
        self
    }

    /// Offers permessage-deflate (off by default for clients): shared mode
    /// asks the server to keep no context either way; dedicated mode
    /// offers context takeover with the config's window. The server's
    /// answer is checked strictly (RFC 7692 §7.1).
    pub fn deflate(mut self, config: blaze_proto::deflate::DeflateConfig) -> Self {
        self.config.compression = Some(config);
        self
    }
}

/// 64 random bits from the OS-seeded hasher std keeps per process, mixed
/// with a counter: enough for handshake keys and masking keys without a
/// dependency.
pub(crate) fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Performs the handshake over an already-connected transport and starts
/// the connection on `rt`. Runtime adapters wrap this in `connect(url)`.
pub async fn connect_with<R: Runtime, T: Transport>(
    rt: R,
    mut io: T,
    url: &WsUrl,
    options: ClientOptions,
) -> Result<WsStream, ClientError> {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&random_u64().to_ne_bytes());
    key[8..].copy_from_slice(&random_u64().to_ne_bytes());
    let mut handshake = ClientHandshake::new(url.authority.clone(), url.path.clone(), key)
        .protocols(options.protocols.iter().cloned());
    for (name, value) in &options.headers {
        handshake = handshake.header(name.clone(), value.clone());
    }
    if let Some(deflate) = &options.config.compression {
        handshake = handshake.deflate(deflate);
    }
    let deadline = blaze_proto::deadline_after(rt.now(), options.config.handshake_timeout);
    let mut buf = BytesMut::with_capacity(1024);
    let response = timeout(&rt, deadline, async {
        write_all(&mut io, &handshake.request()).await?;
        loop {
            if let Some(response) = handshake.read_response(&mut buf)? {
                return Ok::<_, ClientError>(response);
            }
            buf.reserve(1024);
            if read_buf(&mut io, &mut buf).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    })
    .await
    .ok_or(ClientError::Timeout)??;

    let config = &options.config;
    let mut conn = Connection::new(Role::Client, config.connection_config(random_u64()), rt.now());
    if let (Some(params), Some(deflate)) = (&response.deflate, &config.compression) {
        conn.enable_deflate(params, deflate);
    }
    let shared = Arc::new(ConnShared {
        id: ConnId(0),
        info: RequestInfo::new(
            Arc::from(""),
            &url.path,
            &[],
            &[],
            &response.headers,
            response.protocol.as_deref(),
            None,
            None,
        ),
        inner: Mutex::new(ConnInner {
            conn,
            driver_waker: None,
            pending_close: None,
            pending_abort: false,
            inbox: Some(Box::default()),
            metrics: Default::default(),
        }),
        locals: Mutex::new(Extensions::new()),
        hub: None,
        spawner: {
            let rt = rt.clone();
            Arc::new(move |future| rt.spawn(future))
        },
    });
    let ws = WebSocket { shared };
    let limits = Arc::new(DriverLimits::from_config(config));
    let driver = Driver::new(rt.clone(), io, ws.clone(), Arc::new(ClientHandler), limits, buf, None);
    rt.spawn_unboxed(driver);
    Ok(WsStream::new(ws))
}

/// Feeds a client connection's messages to its [`WsStream`].
struct ClientHandler;

impl Handler for ClientHandler {
    fn on_message(&self, ws: &WebSocket, text: blaze_proto::Utf8Bytes) {
        crate::handler::push_inbox(ws, blaze_proto::Message::Text(text));
    }
    fn on_binary(&self, ws: &WebSocket, data: bytes::Bytes) {
        crate::handler::push_inbox(ws, blaze_proto::Message::Binary(data));
    }
    fn on_close(&self, ws: &WebSocket, code: u16, reason: &str) {
        crate::handler::close_inbox(ws, code, reason);
    }
    fn on_ping(&self, ws: &WebSocket, payload: bytes::Bytes) {
        crate::handler::push_inbox_frame(ws, crate::frame::Frame::Ping(payload));
    }
    fn on_pong(&self, ws: &WebSocket, payload: bytes::Bytes) {
        crate::handler::push_inbox_frame(ws, crate::frame::Frame::Pong(payload));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let url = WsUrl::parse("ws://127.0.0.1:9001/chat?room=1").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("127.0.0.1", 9001, "/chat?room=1"));
        assert_eq!(WsUrl::parse("ws://example.com").unwrap().path, "/");
        assert_eq!(WsUrl::parse("ws://h:1?x=1").unwrap().path, "/?x=1");
        assert!(WsUrl::parse("http://h/").is_err());
        let wss = WsUrl::parse("wss://h/x").unwrap();
        assert_eq!((wss.port, wss.secure, wss.authority.as_str()), (443, true, "h:443"));
        assert!(!WsUrl::parse("ws://h/").unwrap().secure);
        assert_eq!(WsUrl::parse("wss://h:8443").unwrap().port, 8443);
        assert!(WsUrl::parse("ws://h:notaport/").is_err());
        let v6 = WsUrl::parse("ws://[::1]/chat").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.authority.as_str()), ("[::1]", 80, "[::1]:80"));
        let v6 = WsUrl::parse("ws://[::1]:9001/").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("[::1]", 9001));
        assert!(WsUrl::parse("ws://[::1/").is_err());
    }
}
