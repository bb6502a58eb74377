//! The server side of the handshake (RFC 6455 §4.2).

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::{Buf, BytesMut};

use super::extensions::{parse_extensions, ExtensionOffer};
use super::http::{HttpRequest, HttpResponse};
use super::{accept_key, has_token, tokens};

/// Header slots parsed without a heap allocation (the default limit).
const STACK_HEADERS: usize = 64;

/// Bounds on what a client may send before its request is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// Bytes of request head (request line and headers). Default 16 KiB;
    /// bounds the memory a slow or hostile client can pin. Over it: 431.
    pub max_head_bytes: usize,
    /// Number of header lines. Default 64. Over it: 431.
    pub max_headers: usize,
    /// Time from accepting the TCP connection to a complete request.
    /// Default 10 s; bounds slowloris clients. Over it: 408, then close.
    pub timeout: Duration,
}

impl Default for HandshakeLimits {
    fn default() -> HandshakeLimits {
        HandshakeLimits { max_head_bytes: 16 * 1024, max_headers: 64, timeout: Duration::from_secs(10) }
    }
}

impl HandshakeLimits {
    /// Sets `max_head_bytes`.
    pub fn max_head_bytes(mut self, bytes: usize) -> Self {
        self.max_head_bytes = bytes;
        self
    }
    /// Sets `max_headers`.
    pub fn max_headers(mut self, count: usize) -> Self {
        self.max_headers = count;
        self
    }
    /// Sets `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why a request could not be upgraded. Each variant renders as the HTTP
/// response to send back ([`HandshakeError::to_response`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The bytes are not an HTTP/1.x request.
    #[error("malformed HTTP request: {0}")]
    Malformed(&'static str),
    /// The request head is larger than `max_head_bytes`.
    #[error("request head exceeds {0} bytes")]
    HeadTooLarge(usize),
    /// More header lines than `max_headers`.
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    /// The request did not complete within the handshake timeout.
    #[error("handshake timed out")]
    Timeout,
    /// §4.2.1 (1): the method must be GET.
    #[error("method {0} is not GET")]
    MethodNotGet(String),
    /// §4.2.1 (1): HTTP/1.1 or later.
    #[error("HTTP/1.{0} cannot upgrade")]
    HttpVersion(u8),
    /// §4.2.1 (2): a Host header is required.
    #[error("missing Host header")]
    MissingHost,
    /// §4.2.1 (3), (4): no `Upgrade: websocket` with `Connection: upgrade`;
    /// a plain HTTP request reached a WebSocket endpoint.
    #[error("not a WebSocket upgrade request")]
    NotUpgrade,
    /// §4.2.1 (5): `Sec-WebSocket-Key` missing or not 16 bytes of base64.
    #[error("missing or invalid Sec-WebSocket-Key")]
    InvalidKey,
    /// §4.2.1 (6): `Sec-WebSocket-Version` is not 13.
    #[error("unsupported Sec-WebSocket-Version")]
    UnsupportedVersion,
    /// `Host`, `Sec-WebSocket-Key` or `Sec-WebSocket-Version` sent more
    /// than once: which one counts could differ between a proxy in front
    /// of us and us (request smuggling). 400.
    #[error("duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// `Content-Length` or `Transfer-Encoding` on an upgrade request: a
    /// GET upgrade has no body, and one a proxy would forward as a body
    /// we would read as WebSocket frames (request smuggling). 400.
    #[error("{0} not allowed on an upgrade request")]
    BodyNotAllowed(&'static str),
}

impl HandshakeError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge(_) | HandshakeError::TooManyHeaders(_) => 431,
            HandshakeError::Timeout => 408,
            HandshakeError::MethodNotGet(_) => 405,
            HandshakeError::NotUpgrade | HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    /// The response to send before closing the connection. 426 carries
    /// `Upgrade: websocket` and `Sec-WebSocket-Version: 13` (§4.4).
    pub fn to_response(&self) -> HttpResponse {
        let response = HttpResponse::text(self.status(), self.to_string());
        match self {
            HandshakeError::NotUpgrade | HandshakeError::UnsupportedVersion => response
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Version", "13"),
            HandshakeError::MethodNotGet(_) => response.header("Allow", "GET"),
            _ => response,
        }
    }
}

/// Reads one request head from a byte stream that arrives in pieces,
/// within [`HandshakeLimits`].
///
/// ```
/// use blaze_proto::handshake::{HandshakeLimits, RequestReader};
/// use bytes::BytesMut;
/// use std::time::Instant;
///
/// let reader = RequestReader::new(HandshakeLimits::default(), Instant::now());
/// let mut buf = BytesMut::from(&b"GET /chat?room=1 HTTP/1.1\r\nHost: a\r\n"[..]);
/// assert!(reader.read(&mut buf).unwrap().is_none());
/// buf.extend_from_slice(b"\r\n");
/// let request = reader.read(&mut buf).unwrap().unwrap();
/// assert_eq!(request.path, "/chat");
/// assert_eq!(request.query_param("room").as_deref(), Some("1"));
/// ```
#[derive(Debug, Clone)]
pub struct RequestReader {
    limits: HandshakeLimits,
    /// `None`: the timeout overflows `Instant`, there is no deadline.
    deadline: Option<Instant>,
    start: Instant,
}

impl RequestReader {
    /// Starts reading a request on a connection accepted at `now`.
    pub fn new(limits: HandshakeLimits, now: Instant) -> RequestReader {
        // A timeout too large for `Instant` (`Duration::MAX`) means "never".
        RequestReader { limits, deadline: now.checked_add(limits.timeout), start: now }
    }

    /// When the request must be complete. With a timeout too large to add
    /// to `now` (no deadline), a date decades away, which never fires in
    /// practice and which a runtime's timer can still hold.
    pub fn poll_timeout(&self) -> Instant {
        self.deadline.unwrap_or_else(|| crate::connection::far_future(self.start))
    }

    /// Checks the deadline: past it, [`HandshakeError::Timeout`]. Never,
    /// when the timeout overflows `Instant`.
    pub fn handle_timeout(&self, now: Instant) -> Result<(), HandshakeError> {
        if self.deadline.is_some_and(|deadline| now >= deadline) {
            Err(HandshakeError::Timeout)
        } else {
            Ok(())
        }
    }

    /// Parses a request head from the front of `buf`, consuming it.
    /// `Ok(None)` means more bytes are needed; bytes after the head (a
    /// client's first frames, sent eagerly) stay in `buf`.
    pub fn read(&self, buf: &mut BytesMut) -> Result<Option<HttpRequest>, HandshakeError> {
        // Called on every partial read: the usual limit fits on the stack.
        let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
        let mut on_heap = Vec::new();
        let headers = if self.limits.max_headers <= STACK_HEADERS {
            &mut on_stack[..self.limits.max_headers]
        } else {
            on_heap.resize(self.limits.max_headers, httparse::EMPTY_HEADER);
            &mut on_heap[..]
        };
        let mut req = httparse::Request::new(headers);
        // Only the first `max_head_bytes` can hold an acceptable head:
        // parsing no further keeps a too-long head 431 however its bytes
        // arrive (byte by byte it was 431, at once 400 when a bad byte lay
        // past the limit; found by the handshake fuzz target).
        let window = &buf[..buf.len().min(self.limits.max_head_bytes)];
        let status = match req.parse(window) {
            Ok(status) => status,
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HandshakeError::TooManyHeaders(self.limits.max_headers))
            }
            Err(_) => return Err(HandshakeError::Malformed("invalid request head")),
        };
        let head_len = match status {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => {
                if buf.len() > self.limits.max_head_bytes {
                    return Err(HandshakeError::HeadTooLarge(self.limits.max_head_bytes));
                }
                return Ok(None);
            }
        };
        if head_len > self.limits.max_head_bytes {
            return Err(HandshakeError::HeadTooLarge(self.limits.max_head_bytes));
        }
        let target = req.path.ok_or(HandshakeError::Malformed("no request target"))?;
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (target.to_owned(), None),
        };
        let request = HttpRequest {
            method: req.method.unwrap_or_default().to_owned(),
            path,
            query,
            version: req.version.unwrap_or(0),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                .collect(),
        };
        buf.advance(head_len);
        Ok(Some(request))
    }
}

/// A request that passed every check of RFC 6455 §4.2.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The whole request: method, path, query and headers, for routing,
    /// guards and origin checks.
    pub request: HttpRequest,
    /// The `Sec-WebSocket-Key`, as sent. Empty for an HTTP/2 extended
    /// CONNECT, which has none (RFC 8441 §5).
    pub key: String,
    /// Subprotocols the client offered, in its order of preference.
    pub protocols: Vec<String>,
    /// Extensions the client offered (`permessage-deflate` and its parameters).
    pub extensions: Vec<ExtensionOffer>,
    /// Whether this is an HTTP/2 extended CONNECT (RFC 8441), answered
    /// 200 instead of 101.
    pub http2: bool,
}

impl UpgradeRequest {
    /// Validates a request as a WebSocket upgrade (§4.2.1).
    pub fn validate(request: HttpRequest) -> Result<UpgradeRequest, HandshakeError> {
        let upgrade = request.header_all("upgrade").any(|v| has_token(v, "websocket"));
        let connection = request.header_all("connection").any(|v| has_token(v, "upgrade"));
        if !upgrade || !connection {
            return Err(HandshakeError::NotUpgrade);
        }
        if request.method != "GET" {
            return Err(HandshakeError::MethodNotGet(request.method.clone()));
        }
        if request.version < 1 {
            return Err(HandshakeError::HttpVersion(request.version));
        }
        // Smuggling: a header that must be single, or a body, where a
        // proxy and we could disagree on what the request says.
        for (name, label) in
            [("host", "Host"), ("sec-websocket-key", "Sec-WebSocket-Key"), ("sec-websocket-version", "Sec-WebSocket-Version")]
        {
            if request.header_all(name).nth(1).is_some() {
                return Err(HandshakeError::DuplicateHeader(label));
            }
        }
        for (name, label) in [("content-length", "Content-Length"), ("transfer-encoding", "Transfer-Encoding")] {
            if request.header(name).is_some() {
                return Err(HandshakeError::BodyNotAllowed(label));
            }
        }
        if request.header("host").is_none() {
            return Err(HandshakeError::MissingHost);
        }
        if request.header("sec-websocket-version").map(str::trim) != Some("13") {
            return Err(HandshakeError::UnsupportedVersion);
        }
        let key = request.header("sec-websocket-key").map(str::trim).ok_or(HandshakeError::InvalidKey)?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(key).map_err(|_| HandshakeError::InvalidKey)?;
        if decoded.len() != 16 {
            return Err(HandshakeError::InvalidKey);
        }
        let key = key.to_owned();
        let protocols =
            request.header_all("sec-websocket-protocol").flat_map(tokens).map(str::to_owned).collect();
        let extensions = request.header_all("sec-websocket-extensions").flat_map(parse_extensions).collect();
        Ok(UpgradeRequest { request, key, protocols, extensions, http2: false })
    }

    /// Validates an HTTP/2 request as a WebSocket bootstrap (RFC 8441 §4,
    /// §5): an extended CONNECT whose `:protocol` pseudo-header (passed as
    /// `protocol`, as the HTTP/2 server decoded it) is `websocket`, with
    /// `Sec-WebSocket-Version: 13`. There is no key and no `Upgrade` or
    /// `Connection` header; `:authority` is expected in `Host` (HTTP/2
    /// servers expose it as the request URI's authority).
    ///
    /// ```
    /// use blaze_proto::handshake::{HttpRequest, UpgradeRequest};
    /// let request = HttpRequest {
    ///     method: "CONNECT".into(), path: "/chat".into(), query: None, version: 1,
    ///     headers: vec![("host".into(), "example.com".into()), ("sec-websocket-version".into(), "13".into())],
    /// };
    /// let upgrade = UpgradeRequest::validate_extended_connect(request, Some("websocket")).unwrap();
    /// assert_eq!(upgrade.accept(None, None).status, 200);
    /// ```
    pub fn validate_extended_connect(
        request: HttpRequest,
        protocol: Option<&str>,
    ) -> Result<UpgradeRequest, HandshakeError> {
        // A plain request (no extended CONNECT) reaching a WebSocket
        // endpoint: 426, as over HTTP/1.1.
        if request.method != "CONNECT" || !protocol.is_some_and(|p| p.eq_ignore_ascii_case("websocket")) {
            return Err(HandshakeError::NotUpgrade);
        }
        for (name, label) in [("host", "Host"), ("sec-websocket-version", "Sec-WebSocket-Version")] {
            if request.header_all(name).nth(1).is_some() {
                return Err(HandshakeError::DuplicateHeader(label));
            }
        }
        // The stream's DATA frames are the WebSocket bytes; a declared
        // body length would be a second, conflicting framing.
        for (name, label) in [("content-length", "Content-Length"), ("transfer-encoding", "Transfer-Encoding")] {
            if request.header(name).is_some() {
                return Err(HandshakeError::BodyNotAllowed(label));
            }
        }
        if request.header("host").is_none() {
            return Err(HandshakeError::MissingHost);
        }
        if request.header("sec-websocket-version").map(str::trim) != Some("13") {
            return Err(HandshakeError::UnsupportedVersion);
        }
        let protocols =
            request.header_all("sec-websocket-protocol").flat_map(tokens).map(str::to_owned).collect();
        let extensions = request.header_all("sec-websocket-extensions").flat_map(parse_extensions).collect();
        Ok(UpgradeRequest { request, key: String::new(), protocols, extensions, http2: true })
    }

    /// The subprotocol to use: the first of the server's `supported`, in
    /// the server's order of preference, that the client offered.
    pub fn select_protocol<'a>(&self, supported: &'a [String]) -> Option<&'a str> {
        supported.iter().find(|s| self.protocols.iter().any(|p| p == *s)).map(String::as_str)
    }

    /// The permessage-deflate parameters to accept, if any offer is
    /// acceptable under `config` (RFC 7692 §7.1; invalid offers are
    /// declined, never an error). Pass them to
    /// [`crate::Connection::enable_deflate`] and their
    /// [`to_header`](crate::deflate::DeflateParams::to_header) to
    /// [`UpgradeRequest::accept`].
    pub fn negotiate_deflate(&self, config: &crate::deflate::DeflateConfig) -> Option<crate::deflate::DeflateParams> {
        crate::deflate::DeflateParams::negotiate(&self.extensions, config)
    }

    /// The 101 response completing the handshake (§4.2.2), naming the
    /// chosen subprotocol and accepted extensions, if any. For an HTTP/2
    /// extended CONNECT, a 200 without `Upgrade`, `Connection` and
    /// `Sec-WebSocket-Accept` (RFC 8441 §5).
    pub fn accept(&self, protocol: Option<&str>, extensions: Option<&str>) -> HttpResponse {
        let mut response = if self.http2 {
            HttpResponse { status: 200, headers: Vec::with_capacity(2), body: Default::default() }
        } else {
            HttpResponse { status: 101, headers: Vec::with_capacity(5), body: Default::default() }
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Accept", accept_key(self.key.as_bytes()))
        };
        if let Some(protocol) = protocol {
            response = response.header("Sec-WebSocket-Protocol", protocol);
        }
        if let Some(extensions) = extensions {
            response = response.header("Sec-WebSocket-Extensions", extensions);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    fn read(raw: &str) -> Result<Option<HttpRequest>, HandshakeError> {
        RequestReader::new(HandshakeLimits::default(), Instant::now()).read(&mut BytesMut::from(raw.as_bytes()))
    }

    fn upgrade(raw: &str) -> Result<UpgradeRequest, HandshakeError> {
        UpgradeRequest::validate(read(raw)?.expect("complete request"))
    }

    #[test]
    fn rfc_example_request_is_accepted_with_the_rfc_accept_key() {
        let up = upgrade(VALID).unwrap();
        assert_eq!(up.protocols, ["chat", "superchat"]);
        let response = up.accept(up.select_protocol(&["superchat".to_owned()]), None).to_bytes();
        let text = std::str::from_utf8(&response).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: superchat\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn request_split_at_every_byte_parses_the_same() {
        let reader = RequestReader::new(HandshakeLimits::default(), Instant::now());
        for cut in 0..VALID.len() {
            let mut buf = BytesMut::from(&VALID.as_bytes()[..cut]);
            assert_eq!(reader.read(&mut buf), Ok(None), "cut {cut}");
            buf.extend_from_slice(&VALID.as_bytes()[cut..]);
            assert!(reader.read(&mut buf).unwrap().is_some());
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn bytes_after_the_head_stay_in_the_buffer() {
        let mut buf = BytesMut::from(VALID.as_bytes());
        buf.extend_from_slice(b"\x81\x80");
        RequestReader::new(HandshakeLimits::default(), Instant::now()).read(&mut buf).unwrap().unwrap();
        assert_eq!(&buf[..], b"\x81\x80");
    }

    #[test]
    fn upgrade_and_connection_tokens_are_case_insensitive_lists() {
        let raw = VALID.replace("Upgrade: websocket", "upgrade: WebSocket").replace(
            "Connection: Upgrade",
            "connection: keep-alive, UPGRADE",
        );
        assert!(upgrade(&raw).is_ok());
    }

    #[test]
    fn non_get_method_is_405() {
        let err = upgrade(&VALID.replace("GET", "POST")).unwrap_err();
        assert_eq!(err.status(), 405);
    }

    #[test]
    fn http_1_0_is_rejected() {
        assert_eq!(upgrade(&VALID.replace("HTTP/1.1", "HTTP/1.0")), Err(HandshakeError::HttpVersion(0)));
    }

    #[test]
    fn missing_host_is_400() {
        let err = upgrade(&VALID.replace("Host: server.example.com\r\n", "")).unwrap_err();
        assert_eq!((err.clone(), err.status()), (HandshakeError::MissingHost, 400));
    }

    #[test]
    fn plain_http_request_is_426_with_version_header() {
        let err = upgrade("GET /chat HTTP/1.1\r\nHost: a\r\n\r\n").unwrap_err();
        assert_eq!(err, HandshakeError::NotUpgrade);
        let response = err.to_response().to_bytes();
        let text = std::str::from_utf8(&response).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn wrong_version_is_426_with_version_header() {
        let err = upgrade(&VALID.replace("Version: 13", "Version: 8")).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedVersion);
        assert_eq!(err.status(), 426);
        assert!(err.to_response().headers.iter().any(|(n, v)| n == "Sec-WebSocket-Version" && v == "13"));
    }

    #[test]
    fn key_that_is_not_16_bytes_is_400() {
        for key in ["", "not base64!", "dGhlIHNhbXBsZQ==", "dGhlIHNhbXBsZSBub25jZSBsb25nZXI="] {
            let raw = VALID.replace("dGhlIHNhbXBsZSBub25jZQ==", key);
            assert_eq!(upgrade(&raw), Err(HandshakeError::InvalidKey), "{key:?}");
        }
        let err = upgrade(&VALID.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")).unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn oversized_head_is_431_even_before_it_completes() {
        let reader = RequestReader::new(HandshakeLimits::default().max_head_bytes(100), Instant::now());
        let mut buf = BytesMut::from(format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(200)).as_bytes());
        let err = reader.read(&mut buf).unwrap_err();
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn too_many_headers_is_431() {
        let reader = RequestReader::new(HandshakeLimits::default().max_headers(4), Instant::now());
        let mut raw = String::from("GET / HTTP/1.1\r\n");
        for i in 0..10 {
            raw.push_str(&format!("X-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(reader.read(&mut BytesMut::from(raw.as_bytes())), Err(HandshakeError::TooManyHeaders(4)));
    }

    #[test]
    fn garbage_is_400() {
        let err = read("\x16\x03\x01\x02\x00 not http\r\n\r\n").unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn handshake_deadline_is_enforced() {
        let start = Instant::now();
        let reader = RequestReader::new(HandshakeLimits::default().timeout(Duration::from_secs(2)), start);
        assert_eq!(reader.poll_timeout(), start + Duration::from_secs(2));
        assert!(reader.handle_timeout(start + Duration::from_secs(1)).is_ok());
        let err = reader.handle_timeout(start + Duration::from_secs(2)).unwrap_err();
        assert_eq!(err.status(), 408);
    }

    #[test]
    fn duplicate_single_headers_are_400() {
        let cases = [
            ("Host: server.example.com\r\n", "Host: server.example.com\r\nHost: evil.example.com\r\n", "Host"),
            (
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
                "Sec-WebSocket-Key",
            ),
            ("Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n", "Sec-WebSocket-Version"),
            // The same value twice is still two headers.
            ("Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version"),
        ];
        for (from, to, label) in cases {
            let err = upgrade(&VALID.replace(from, to)).unwrap_err();
            assert_eq!((err.clone(), err.status()), (HandshakeError::DuplicateHeader(label), 400), "{label}");
        }
    }

    #[test]
    fn body_headers_on_an_upgrade_are_400() {
        for (header, label) in [
            ("Content-Length: 0", "Content-Length"),
            ("Content-Length: 10", "Content-Length"),
            ("Transfer-Encoding: chunked", "Transfer-Encoding"),
            ("transfer-encoding: identity", "Transfer-Encoding"),
        ] {
            let raw = VALID.replace("Origin:", &format!("{header}\r\nOrigin:"));
            let err = upgrade(&raw).unwrap_err();
            assert_eq!((err.clone(), err.status()), (HandshakeError::BodyNotAllowed(label), 400), "{header}");
        }
    }

    #[test]
    fn handshake_timeout_near_duration_max_never_fires_and_does_not_panic() {
        let start = Instant::now();
        let reader = RequestReader::new(HandshakeLimits::default().timeout(Duration::MAX), start);
        assert!(reader.poll_timeout() > start + Duration::from_secs(365 * 24 * 3600));
        assert!(reader.handle_timeout(start + Duration::from_secs(1 << 32)).is_ok());
        assert!(reader.handle_timeout(reader.poll_timeout()).is_ok());
    }

    #[test]
    fn subprotocol_choice_follows_server_preference_among_offers() {
        let up = upgrade(VALID).unwrap();
        let supported = ["superchat".to_owned(), "chat".to_owned()];
        assert_eq!(up.select_protocol(&supported), Some("superchat"));
        assert_eq!(up.select_protocol(&["mqtt".to_owned()]), None);
    }

    #[test]
    fn extension_offers_are_parsed() {
        let raw = VALID.replace(
            "Sec-WebSocket-Version: 13\r\n",
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
        );
        let up = upgrade(&raw).unwrap();
        assert_eq!(up.extensions.len(), 1);
        assert_eq!(up.extensions[0].name, "permessage-deflate");
        assert_eq!(up.extensions[0].param("client_max_window_bits"), Some(None));
    }

    fn h2_request(method: &str, headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: "/chat".into(),
            query: None,
            version: 1,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn extended_connect_is_accepted_with_200_and_no_accept_key() {
        let request = h2_request(
            "CONNECT",
            &[
                ("host", "a"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-protocol", "chat, superchat"),
                ("sec-websocket-extensions", "permessage-deflate"),
            ],
        );
        let upgrade = UpgradeRequest::validate_extended_connect(request, Some("websocket")).unwrap();
        assert!(upgrade.http2);
        assert_eq!(upgrade.protocols, ["chat", "superchat"]);
        assert_eq!(upgrade.extensions.len(), 1);
        let response = upgrade.accept(Some("chat"), None);
        assert_eq!(response.status, 200);
        let names: Vec<&str> = response.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Sec-WebSocket-Protocol"]);
    }

    #[test]
    fn extended_connect_needs_connect_websocket_version_13_and_host() {
        let ok = [("host", "a"), ("sec-websocket-version", "13")];
        let check = |method: &str, headers: &[(&str, &str)], protocol: Option<&str>| {
            UpgradeRequest::validate_extended_connect(h2_request(method, headers), protocol).map(|_| ())
        };
        assert_eq!(check("CONNECT", &ok, Some("WebSocket")), Ok(()));
        assert_eq!(check("GET", &ok, Some("websocket")), Err(HandshakeError::NotUpgrade));
        assert_eq!(check("CONNECT", &ok, None), Err(HandshakeError::NotUpgrade));
        assert_eq!(check("CONNECT", &ok, Some("webtransport")), Err(HandshakeError::NotUpgrade));
        assert_eq!(check("CONNECT", &[("host", "a")], Some("websocket")), Err(HandshakeError::UnsupportedVersion));
        assert_eq!(check("CONNECT", &[("sec-websocket-version", "13")], Some("websocket")), Err(HandshakeError::MissingHost));
        let two_versions = [("host", "a"), ("sec-websocket-version", "13"), ("sec-websocket-version", "8")];
        assert!(matches!(check("CONNECT", &two_versions, Some("websocket")), Err(HandshakeError::DuplicateHeader(_))));
        let body = [("host", "a"), ("sec-websocket-version", "13"), ("content-length", "5")];
        assert!(matches!(check("CONNECT", &body, Some("websocket")), Err(HandshakeError::BodyNotAllowed(_))));
    }
}
