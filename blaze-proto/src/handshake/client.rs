//! The client side of the handshake (RFC 6455 §4.1).

use std::fmt::Write as _;

use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};

use super::extensions::{parse_extensions, ExtensionOffer};
use super::{accept_key, has_token};

/// The response's head bytes may not exceed this (a hostile server cannot
/// make the client buffer without end).
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
const MAX_RESPONSE_HEADERS: usize = 64;

/// Why a server's answer did not complete the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// The bytes are not an HTTP/1.1 response.
    #[error("malformed HTTP response")]
    Malformed,
    /// The response head is over 16 KiB or 64 headers.
    #[error("response head too large")]
    TooLarge,
    /// The server answered with another status: a rejection.
    #[error("server answered {status} instead of 101")]
    Rejected {
        /// The status code.
        status: u16,
        /// Any body bytes that arrived with the head.
        body: Bytes,
    },
    /// §4.1 (2), (3): `Upgrade: websocket` or `Connection: Upgrade` missing.
    #[error("101 response without Upgrade: websocket and Connection: Upgrade")]
    MissingUpgrade,
    /// §4.1 (4): `Sec-WebSocket-Accept` missing or wrong.
    #[error("Sec-WebSocket-Accept does not match the key")]
    BadAccept,
    /// §4.1 (6): a subprotocol the client did not offer.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    UnexpectedProtocol(String),
    /// §4.1 (5): an extension the client did not offer.
    #[error("server chose extension {0:?}, which was not offered")]
    UnexpectedExtension(String),
    /// RFC 7692 §7.1: a permessage-deflate answer that is malformed or
    /// outside what the offer allowed.
    #[error("bad permessage-deflate response: {0}")]
    BadDeflate(#[from] crate::deflate::DeflateParamsError),
}

/// A validated 101 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// The subprotocol the server chose, if any.
    pub protocol: Option<String>,
    /// The extensions the server accepted.
    pub extensions: Vec<ExtensionOffer>,
    /// permessage-deflate, if the server accepted it: pass to
    /// [`crate::Connection::enable_deflate`].
    pub deflate: Option<crate::deflate::DeflateParams>,
    /// Every header, names lowercased.
    pub headers: Vec<(String, String)>,
}

/// Builds a client's upgrade request and validates the server's answer.
///
/// The key is the caller's 16 random bytes: the core draws no randomness.
///
/// ```
/// use blaze_proto::handshake::ClientHandshake;
/// use bytes::BytesMut;
///
/// let hs = ClientHandshake::new("localhost:9001", "/chat", [7; 16]).protocols(["chat"]);
/// let request = hs.request();
/// assert!(request.starts_with(b"GET /chat HTTP/1.1\r\n"));
/// let accept = blaze_proto::handshake::accept_key(hs.key().as_bytes());
/// let mut response = BytesMut::from(format!(
///     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///      Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n").as_bytes());
/// let done = hs.read_response(&mut response).unwrap().unwrap();
/// assert_eq!(done.protocol.as_deref(), Some("chat"));
/// ```
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    host: String,
    path: String,
    key: String,
    protocols: Vec<String>,
    extensions: Option<String>,
    headers: Vec<(String, String)>,
}

impl ClientHandshake {
    /// A request for `path` (with any query) on `host` (`host:port`), keyed
    /// by 16 random bytes.
    pub fn new(host: impl Into<String>, path: impl Into<String>, key: [u8; 16]) -> ClientHandshake {
        ClientHandshake {
            host: host.into(),
            path: path.into(),
            key: base64::engine::general_purpose::STANDARD.encode(key),
            protocols: Vec::new(),
            extensions: None,
            headers: Vec::new(),
        }
    }

    /// Offers subprotocols, in order of preference.
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Offers permessage-deflate as `config` says ([`crate::deflate::DeflateParams::offer`]).
    pub fn deflate(self, config: &crate::deflate::DeflateConfig) -> Self {
        self.extensions(crate::deflate::DeflateParams::offer(config))
    }

    /// Offers extensions: the raw `Sec-WebSocket-Extensions` value.
    pub fn extensions(mut self, offer: impl Into<String>) -> Self {
        self.extensions = Some(offer.into());
        self
    }

    /// Adds a header (`Authorization`, `Origin`, cookies).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The base64 `Sec-WebSocket-Key`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The request bytes to send.
    pub fn request(&self) -> Vec<u8> {
        let mut out = String::with_capacity(256);
        let _ = write!(
            out,
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.host, self.key
        );
        if !self.protocols.is_empty() {
            let _ = write!(out, "Sec-WebSocket-Protocol: {}\r\n", self.protocols.join(", "));
        }
        if let Some(ext) = &self.extensions {
            let _ = write!(out, "Sec-WebSocket-Extensions: {ext}\r\n");
        }
        for (name, value) in &self.headers {
            let _ = write!(out, "{name}: {value}\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    /// Reads the response head from the front of `buf`, consuming it, and
    /// validates it (§4.1). `Ok(None)` means more bytes are needed; frames
    /// the server sent right after the head stay in `buf`.
    pub fn read_response(&self, buf: &mut BytesMut) -> Result<Option<HandshakeResponse>, ClientHandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        // Only the first MAX_RESPONSE_HEAD bytes can hold an acceptable
        // head: parsing no further makes the verdict on a too-long head the
        // same however its bytes arrived (found by the handshake fuzz
        // target comparing chunked and whole reads).
        let window = &buf[..buf.len().min(MAX_RESPONSE_HEAD)];
        let head_len = match response.parse(window) {
            Ok(httparse::Status::Complete(n)) if n <= MAX_RESPONSE_HEAD => n,
            Ok(httparse::Status::Partial) if buf.len() <= MAX_RESPONSE_HEAD => return Ok(None),
            Ok(_) | Err(httparse::Error::TooManyHeaders) => return Err(ClientHandshakeError::TooLarge),
            Err(_) => return Err(ClientHandshakeError::Malformed),
        };
        let status = response.code.unwrap_or(0);
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
            .collect();
        buf.advance(head_len);
        if status != 101 {
            return Err(ClientHandshakeError::Rejected { status, body: buf.split().freeze() });
        }
        let all = |name: &'static str| headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str());
        if !all("upgrade").any(|v| has_token(v, "websocket")) || !all("connection").any(|v| has_token(v, "upgrade")) {
            return Err(ClientHandshakeError::MissingUpgrade);
        }
        if all("sec-websocket-accept").next().map(str::trim) != Some(accept_key(self.key.as_bytes()).as_str()) {
            return Err(ClientHandshakeError::BadAccept);
        }
        let protocol = all("sec-websocket-protocol").next().map(|p| p.trim().to_owned());
        if let Some(p) = &protocol {
            if !self.protocols.iter().any(|o| o == p) {
                return Err(ClientHandshakeError::UnexpectedProtocol(p.clone()));
            }
        }
        let offered: Vec<ExtensionOffer> = self.extensions.as_deref().map(parse_extensions).unwrap_or_default();
        let extensions: Vec<ExtensionOffer> = all("sec-websocket-extensions").flat_map(parse_extensions).collect();
        if let Some(ext) = extensions.iter().find(|e| !offered.iter().any(|o| o.name == e.name)) {
            return Err(ClientHandshakeError::UnexpectedExtension(ext.name.clone()));
        }
        let deflate = crate::deflate::DeflateParams::from_response(&offered, &extensions)?;
        Ok(Some(HandshakeResponse { protocol, extensions, deflate, headers }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_for(hs: &ClientHandshake, extra: &str) -> BytesMut {
        BytesMut::from(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
                accept_key(hs.key().as_bytes())
            )
            .as_bytes(),
        )
    }

    #[test]
    fn request_is_accepted_by_the_server_parser() {
        use crate::handshake::{HandshakeLimits, RequestReader, UpgradeRequest};
        let hs = ClientHandshake::new("h:1", "/a?b=c", [1; 16]).protocols(["x", "y"]).header("Origin", "http://h");
        let mut buf = BytesMut::from(&hs.request()[..]);
        let req = RequestReader::new(HandshakeLimits::default(), std::time::Instant::now()).read(&mut buf);
        let up = UpgradeRequest::validate(req.unwrap().unwrap()).unwrap();
        assert_eq!(up.protocols, ["x", "y"]);
        assert_eq!(up.request.header("origin"), Some("http://h"));
        assert_eq!(up.request.query.as_deref(), Some("b=c"));
    }

    #[test]
    fn wrong_accept_key_is_rejected() {
        let hs = ClientHandshake::new("h", "/", [1; 16]);
        let other = ClientHandshake::new("h", "/", [2; 16]);
        assert_eq!(hs.read_response(&mut response_for(&other, "")), Err(ClientHandshakeError::BadAccept));
    }

    #[test]
    fn non_101_status_is_a_rejection_with_its_body() {
        let hs = ClientHandshake::new("h", "/", [1; 16]);
        let mut buf = BytesMut::from(&b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno"[..]);
        match hs.read_response(&mut buf) {
            Err(ClientHandshakeError::Rejected { status, body }) => assert_eq!((status, &body[..]), (401, &b"no"[..])),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_upgrade_header_is_rejected() {
        let hs = ClientHandshake::new("h", "/", [1; 16]);
        let mut buf = response_for(&hs, "");
        let text = String::from_utf8(buf.to_vec()).unwrap().replace("Upgrade: websocket\r\n", "");
        buf = BytesMut::from(text.as_bytes());
        assert_eq!(hs.read_response(&mut buf), Err(ClientHandshakeError::MissingUpgrade));
    }

    #[test]
    fn subprotocol_not_offered_is_rejected() {
        let hs = ClientHandshake::new("h", "/", [1; 16]).protocols(["a"]);
        let mut buf = response_for(&hs, "Sec-WebSocket-Protocol: b\r\n");
        assert_eq!(hs.read_response(&mut buf), Err(ClientHandshakeError::UnexpectedProtocol("b".into())));
    }

    #[test]
    fn extension_not_offered_is_rejected() {
        let hs = ClientHandshake::new("h", "/", [1; 16]);
        let mut buf = response_for(&hs, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
        assert!(matches!(hs.read_response(&mut buf), Err(ClientHandshakeError::UnexpectedExtension(_))));
    }

    #[test]
    fn partial_response_needs_more_and_trailing_frames_stay() {
        let hs = ClientHandshake::new("h", "/", [1; 16]);
        let mut full = response_for(&hs, "");
        full.extend_from_slice(&[0x81, 0x00]);
        let mut partial = BytesMut::from(&full[..20]);
        assert_eq!(hs.read_response(&mut partial), Ok(None));
        assert!(hs.read_response(&mut full).unwrap().is_some());
        assert_eq!(&full[..], &[0x81, 0x00]);
    }
}
