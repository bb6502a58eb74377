//! WebSocket route configuration, with the knobs and defaults of the Go
//! Blaze `DefaultWebSocketConfig`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use blaze_proto::handshake::HandshakeLimits;
use blaze_proto::deflate::{CompressionMode, DeflateConfig};
use blaze_proto::BackpressurePolicy;

use crate::replies::ErrorReplies;
use crate::request::Request;

/// Decides whether an upgrade request's `Origin` is allowed (rejected →
/// 403). It sees the same [`Request`] guards see (`req.header("origin")`).
pub type OriginCheck = Arc<dyn Fn(&Request) -> bool + Send + Sync>;

/// A token bucket: `per_second` messages on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained messages per second.
    pub per_second: f64,
    /// Messages allowed at once before the rate applies.
    pub burst: u32,
    /// What happens to a message over the limit.
    pub action: RateLimitAction,
}

impl RateLimit {
    /// `per_second` messages on average, `burst` at once; a message over
    /// the limit is dropped and answered with an error message (the
    /// default [`RateLimitAction`]; see [`RateLimit::action`]).
    ///
    /// ```
    /// use blaze_server::{RateLimit, RateLimitAction, WsConfig};
    /// let config = WsConfig::default().rate_limit(Some(RateLimit::new(10.0, 20).action(RateLimitAction::Close)));
    /// # let _ = config;
    /// ```
    pub fn new(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst, action: RateLimitAction::default() }
    }

    /// Sets what happens to a message over the limit.
    pub fn action(mut self, action: RateLimitAction) -> RateLimit {
        self.action = action;
        self
    }
}

/// What a connection does with a message over its rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RateLimitAction {
    /// Drop the message and send the client the error reply: by default
    /// `{"type":"error","error":"rate limit exceeded"}` (see
    /// [`WsConfig::error_replies`]).
    #[default]
    ErrorMessage,
    /// Close the connection with 1008 (policy violation).
    Close,
}

/// Configuration of a WebSocket route. `Default` holds the defaults below.
///
/// The Go Blaze's `DefaultWebSocketConfig` knobs keep its defaults where
/// they mean the same thing: `read_buffer_size` 4096, `read_timeout` 60 s,
/// `write_timeout` 10 s, `ping_interval` 30 s, `pong_timeout` 60 s,
/// `max_message_size` 1 MiB, compression level 6 (when compression is on;
/// it is off by default, see `compression`), any origin accepted. One
/// differs in meaning, and so in value: `write_buffer_size` (see there).
///
/// ```
/// use blaze_server::WsConfig;
/// use std::time::Duration;
/// let config = WsConfig::default()
///     .max_message_size(64 * 1024)
///     .ping_interval(Some(Duration::from_secs(10)))
///     .subprotocols(["chat.v1"]);
/// assert_eq!(config.pong_timeout, Duration::from_secs(60));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct WsConfig {
    /// Initial read buffer per connection, in bytes. Default 4096, the Go
    /// Blaze's `ReadBufferSize`. Unlike Go's, the buffer is released while
    /// a connection is idle, and grows for a large frame as it arrives.
    pub read_buffer_size: usize,
    /// Bytes of queued output at which the connection writes before
    /// handling the rest of a batch of input. Default 64 KiB.
    ///
    /// **Not the Go Blaze's `WriteBufferSize`** (4096 there), though the
    /// name is the same: Go's is a buffer each connection owns, into which
    /// frames are copied before they are written (memory per connection;
    /// a message larger than it is written in pieces). Blaze has no such
    /// buffer: frames are queued as shared bytes (a broadcast's once for
    /// every receiver) and leave in one vectored write, and an idle
    /// connection holds no output memory at all. This is only the point at
    /// which a batch of replies is flushed before more input is handled,
    /// so 4096 here would cost a write syscall per 4 KiB of a busy
    /// connection's replies and save no memory. A ported
    /// `WriteBufferSize` can be dropped; the memory bound on a
    /// connection's queued output is `max_backpressure`.
    pub write_buffer_size: usize,
    /// Close a connection from which no byte arrives for this long (its
    /// `on_close` gets 1006). Default 60 s, the Go Blaze's `ReadTimeout`,
    /// with the same meaning: any byte (a message, a pong to the
    /// heartbeat's ping) starts it again.
    ///
    /// With the default heartbeat (a ping after 30 s of silence), a live
    /// client answers long before it fires, so it is what drops a dead peer
    /// 60 s after its last byte (the Go seed's bound), before
    /// `ping_interval + pong_timeout` (90 s) would. Keep it above
    /// `ping_interval`, or live but quiet clients are dropped; with the
    /// heartbeat off (`ping_interval(None)`), quiet clients are dropped
    /// after it unless it is off too (`read_timeout(None)`).
    pub read_timeout: Option<Duration>,
    /// Close a connection whose pending output makes no progress for this
    /// long. Default 10 s.
    pub write_timeout: Option<Duration>,
    /// Silence after which the server pings. Default 30 s; `None` disables.
    pub ping_interval: Option<Duration>,
    /// Time a ping may go unanswered before the connection is dropped and
    /// its `on_close` runs. Default 60 s.
    pub pong_timeout: Duration,
    /// Largest message accepted (close 1009 above). Default 1 MiB.
    pub max_message_size: usize,
    /// Largest frame accepted (close 1009 above). Default 1 MiB.
    pub max_frame_size: usize,
    /// Time allowed from TCP accept to a complete upgrade request. Default 10 s.
    pub handshake_timeout: Duration,
    /// Time to wait for the peer's answer to our close frame. Default 5 s.
    pub close_timeout: Duration,
    /// Close after this long without a message either way. Default `None`.
    pub idle_timeout: Option<Duration>,
    /// Time allowed to finish a message once the header of its first
    /// frame has arrived (a frame whose payload is still arriving counts);
    /// unfinished by then: close 1008. Default 120 s, so a peer dripping a
    /// byte a minute cannot hold a message open forever even with
    /// `read_timeout` and `idle_timeout` off. `None` disables it.
    pub message_timeout: Option<Duration>,
    /// Most frames one message may span, empty continuations included
    /// (close 1008 above). Default 4096: a 1 MiB message in 256-byte
    /// fragments.
    pub max_fragments: usize,
    /// Subprotocols the route speaks, in order of preference.
    pub subprotocols: Vec<String>,
    /// Origin policy; `None` accepts any origin. Rejected requests get 403.
    pub check_origin: Option<OriginCheck>,
    /// Most live connections on this route; more get 503. Default `None`.
    pub max_connections: Option<usize>,
    /// Unsent bytes a connection may queue. Default 1 MiB.
    pub max_backpressure: usize,
    /// What happens past `max_backpressure`. Default: close with 1008.
    pub backpressure_policy: BackpressurePolicy,
    /// Per-connection message rate limit. Default `None`.
    pub rate_limit: Option<RateLimit>,
    /// Most connections from one IP address on this route; more get 429.
    pub max_connections_per_ip: Option<usize>,
    /// Most bytes in an upgrade request head (431 above). Default 16 KiB.
    pub max_request_head: usize,
    /// permessage-deflate (RFC 7692): `None` (the default) declines every
    /// offer; `Some` accepts the first acceptable one with these settings.
    /// Off by default: compression costs CPU per message (and, in
    /// dedicated mode, memory per connection) that small real-time
    /// messages rarely repay; turn it on for large or repetitive text.
    /// See [`WsConfig::enable_compression`].
    pub compression: Option<DeflateConfig>,
    /// Most connections the server holds at once, counting every accepted
    /// socket (handshakes in flight, plain HTTP requests and WebSocket
    /// connections); one more is answered a static 503 and closed before
    /// its request is read. App-wide: read from [`crate::App::config`] at
    /// each accept (a route's own value is ignored). Default 65,536.
    pub max_total_connections: Option<usize>,
    /// Most accepted sockets still in their HTTP phase (request not yet
    /// answered or upgraded); one more gets the static 503 at once. Bounds
    /// what slowloris clients hold: each is at most `max_request_head` of
    /// buffer for at most `handshake_timeout`. App-wide like
    /// `max_total_connections`. Default 4096.
    pub max_pending_handshakes: Option<usize>,
    /// How many leading bits of an IPv6 address make one client for
    /// `max_connections_per_ip` (0-128; IPv4 and IPv4-mapped IPv6
    /// addresses count per address). Default 64: a single host can take
    /// any address of its /64, so counting per address would not limit it.
    pub ipv6_prefix_len: u8,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed
    /// (see [`crate::Cidr`] and [`WsConfig::trusted_proxies`]). Default
    /// empty: the headers are ignored and the TCP peer is the client.
    pub trusted_proxies: Vec<crate::Cidr>,
    /// Requests a plain HTTP connection may carry (HTTP/1.1 keep-alive,
    /// so a page and its assets load over one connection); the last
    /// response says `Connection: close`. Default 100; 1 closes after
    /// every response. Bounds how long one client holds a connection.
    pub http_keep_alive_requests: usize,
    /// How long a kept-alive connection may wait for its next request
    /// before it is closed (nginx's `keepalive_timeout`). Default 5 s.
    /// Each request's head then has `handshake_timeout` and
    /// `max_request_head`, as the first one has.
    pub http_keep_alive_timeout: Duration,
    /// What a client is sent when one of its messages is refused (bad
    /// JSON, over the rate limit). Default [`ErrorReplies::Json`]:
    /// `{"type":"error","error":"..."}`; or `Off`, or your own.
    pub error_replies: ErrorReplies,
}

impl Default for WsConfig {
    fn default() -> WsConfig {
        WsConfig {
            read_buffer_size: 4096,
            write_buffer_size: 64 * 1024,
            read_timeout: Some(Duration::from_secs(60)),
            write_timeout: Some(Duration::from_secs(10)),
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(60),
            max_message_size: 1 << 20,
            max_frame_size: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            idle_timeout: None,
            message_timeout: Some(Duration::from_secs(120)),
            max_fragments: 4096,
            subprotocols: Vec::new(),
            check_origin: None,
            max_connections: None,
            max_backpressure: 1 << 20,
            backpressure_policy: BackpressurePolicy::Close,
            rate_limit: None,
            max_connections_per_ip: None,
            max_request_head: 16 * 1024,
            compression: None,
            max_total_connections: Some(65_536),
            max_pending_handshakes: Some(4096),
            ipv6_prefix_len: crate::hub::IPV6_PREFIX_LEN,
            trusted_proxies: Vec::new(),
            http_keep_alive_requests: 100,
            http_keep_alive_timeout: Duration::from_secs(5),
            error_replies: ErrorReplies::Json,
        }
    }
}

impl fmt::Debug for WsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsConfig")
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("max_message_size", &self.max_message_size)
            .field("message_timeout", &self.message_timeout)
            .field("max_fragments", &self.max_fragments)
            .field("max_backpressure", &self.max_backpressure)
            .field("subprotocols", &self.subprotocols)
            .field("check_origin", &self.check_origin.is_some())
            .field("max_connections", &self.max_connections)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        impl WsConfig {
            $($(#[$doc])* pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            })*
        }
    };
}

setters! {
    /// Sets `read_buffer_size`.
    read_buffer_size: usize;
    /// Sets `write_buffer_size`.
    write_buffer_size: usize;
    /// Sets `read_timeout`.
    read_timeout: Option<Duration>;
    /// Sets `write_timeout`.
    write_timeout: Option<Duration>;
    /// Sets `ping_interval`.
    ping_interval: Option<Duration>;
    /// Sets `pong_timeout`.
    pong_timeout: Duration;
    /// Sets `max_message_size`.
    max_message_size: usize;
    /// Sets `max_frame_size`.
    max_frame_size: usize;
    /// Sets `handshake_timeout`.
    handshake_timeout: Duration;
    /// Sets `close_timeout`.
    close_timeout: Duration;
    /// Sets `idle_timeout`.
    idle_timeout: Option<Duration>;
    /// Sets `message_timeout` (`None` disables it).
    message_timeout: Option<Duration>;
    /// Sets `max_fragments`.
    max_fragments: usize;
    /// Sets `max_connections`.
    max_connections: Option<usize>;
    /// Sets `max_backpressure`.
    max_backpressure: usize;
    /// Sets `backpressure_policy`.
    backpressure_policy: BackpressurePolicy;
    /// Sets `rate_limit`.
    rate_limit: Option<RateLimit>;
    /// Sets `max_connections_per_ip`.
    max_connections_per_ip: Option<usize>;
    /// Sets `max_request_head`.
    max_request_head: usize;
    /// Sets `max_total_connections` (app-wide; `None`: no cap).
    max_total_connections: Option<usize>;
    /// Sets `max_pending_handshakes` (app-wide; `None`: no cap).
    max_pending_handshakes: Option<usize>;
    /// Sets `ipv6_prefix_len` (values over 128 count as 128).
    ipv6_prefix_len: u8;
    /// Sets `http_keep_alive_requests`.
    http_keep_alive_requests: usize;
    /// Sets `http_keep_alive_timeout`.
    http_keep_alive_timeout: Duration;
    /// Sets `error_replies` (`ErrorReplies::Off` for none).
    error_replies: ErrorReplies;
}

impl WsConfig {
    /// Sets the subprotocols, in order of preference.
    pub fn subprotocols<I: IntoIterator<Item = S>, S: Into<String>>(mut self, protocols: I) -> Self {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the origin check.
    pub fn check_origin(mut self, check: impl Fn(&Request) -> bool + Send + Sync + 'static) -> Self {
        self.check_origin = Some(Arc::new(check));
        self
    }

    /// Accepts only requests whose `Origin` is one of `origins` (or that
    /// have no `Origin`, as non-browser clients send none).
    pub fn allowed_origins<I: IntoIterator<Item = S>, S: Into<String>>(self, origins: I) -> Self {
        let origins: Vec<String> = origins.into_iter().map(Into::into).collect();
        self.check_origin(move |req| req.header("origin").map_or(true, |o| origins.iter().any(|a| a == o)))
    }

    /// Accepts only requests whose `Origin` names the host they were sent
    /// to (its host and port equal the `Host` header's), or that carry no
    /// `Origin` (non-browser clients send none): the one-line defence
    /// against cross-site WebSocket hijacking. See [`crate::same_origin`].
    ///
    /// ```
    /// let config = blaze_server::WsConfig::default().same_origin();
    /// assert!(config.check_origin.is_some());
    /// ```
    pub fn same_origin(self) -> Self {
        self.check_origin(crate::origin::same_origin)
    }

    /// Believes `Forwarded` (RFC 7239) and `X-Forwarded-For` only when the
    /// TCP peer is one of `proxies`. The client is then the rightmost
    /// address in those headers that is not itself a trusted proxy: the
    /// per-IP limit counts it and `ws.remote_addr()` / `Request::remote_addr`
    /// report it (with the port the header gave, else 0). From any other
    /// peer the headers are ignored. A connection with no remote address
    /// (a Unix socket) has no peer to trust: its headers are ignored too.
    ///
    /// ```
    /// let config = blaze_server::WsConfig::default()
    ///     .trusted_proxies(["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
    /// assert_eq!(config.trusted_proxies.len(), 2);
    /// ```
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = crate::Cidr>) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// Turns permessage-deflate on (with the current or default settings:
    /// level 6, shared mode, 64-byte threshold) or off.
    ///
    /// ```
    /// use blaze_server::{CompressionMode, WsConfig};
    /// let config = WsConfig::default()
    ///     .enable_compression(true)
    ///     .compression_level(6)
    ///     .compression_threshold(256)
    ///     .compression_mode(CompressionMode::Shared);
    /// assert_eq!(config.compression.unwrap().threshold, 256);
    /// ```
    pub fn enable_compression(mut self, on: bool) -> Self {
        self.compression = on.then(|| self.compression.unwrap_or_default());
        self
    }

    fn deflate_mut(&mut self) -> &mut DeflateConfig {
        self.compression.get_or_insert_with(DeflateConfig::default)
    }

    /// Sets the compression level, 0-9 (default 6); turns compression on.
    pub fn compression_level(mut self, level: u32) -> Self {
        *self.deflate_mut() = self.deflate_mut().level(level);
        self
    }

    /// Sends messages shorter than `bytes` uncompressed (default 64);
    /// turns compression on.
    pub fn compression_threshold(mut self, bytes: usize) -> Self {
        *self.deflate_mut() = self.deflate_mut().threshold(bytes);
        self
    }

    /// Shared (no context kept, broadcasts compressed once; the default)
    /// or dedicated (context takeover per connection); turns compression on.
    pub fn compression_mode(mut self, mode: CompressionMode) -> Self {
        *self.deflate_mut() = self.deflate_mut().mode(mode);
        self
    }

    /// Dedicated mode's window, 9-15 (default 15); turns compression on.
    pub fn compression_window_bits(mut self, bits: u8) -> Self {
        *self.deflate_mut() = self.deflate_mut().window_bits(bits);
        self
    }

    /// The protocol core's configuration for a connection.
    pub(crate) fn connection_config(&self, mask_seed: u64) -> blaze_proto::Config {
        blaze_proto::Config::default()
            .max_frame_size(self.max_frame_size)
            .max_message_size(self.max_message_size)
            .ping_interval(self.ping_interval)
            .pong_timeout(self.pong_timeout)
            .close_timeout(self.close_timeout)
            .idle_timeout(self.idle_timeout)
            .message_timeout(self.message_timeout)
            .max_fragments(self.max_fragments)
            .max_backpressure(self.max_backpressure)
            .backpressure_policy(self.backpressure_policy)
            .mask_seed(mask_seed)
    }

    pub(crate) fn handshake_limits(&self) -> HandshakeLimits {
        HandshakeLimits::default().max_head_bytes(self.max_request_head).timeout(self.handshake_timeout)
    }
}
