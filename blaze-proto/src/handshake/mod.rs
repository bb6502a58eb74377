//! The HTTP/1.1 upgrade handshake (RFC 6455 §4), both ends.
//!
//! The server side reads an [`HttpRequest`] incrementally
//! ([`RequestReader`]), checks it is a valid upgrade ([`UpgradeRequest`])
//! and answers with a 101 or a [`HttpResponse`] rejection. The client side
//! ([`ClientHandshake`]) builds the request and validates the 101.

mod client;
mod extensions;
mod http;
mod server;

pub use client::{ClientHandshake, ClientHandshakeError, HandshakeResponse};
pub use extensions::{parse_extensions, ExtensionOffer};
pub use http::{HttpRequest, HttpResponse};
pub use server::{HandshakeError, HandshakeLimits, RequestReader, UpgradeRequest};

use base64::Engine;
use sha1::{Digest, Sha1};

/// The GUID RFC 6455 §1.3 appends to the client's key.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`:
/// base64(SHA-1(key ++ GUID)) (§4.2.2).
///
/// ```
/// use blaze_proto::handshake::accept_key;
/// assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether a comma-separated header value contains `token`, compared
/// case-insensitively (`Connection: keep-alive, Upgrade`).
pub(crate) fn has_token(value: &str, token: &str) -> bool {
    value.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
pub(crate) fn tokens(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|t| !t.is_empty())
}
