//! Application-level messages and the events a connection reports.

use bytes::Bytes;

use crate::close::CloseCode;
use crate::error::ProtocolError;
use crate::utf8::Utf8Bytes;

/// A complete data message (RFC 6455 §5.6), all fragments joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, valid UTF-8.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Message {
        Message::Text(Utf8Bytes::from(text.into()))
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Message {
        Message::Binary(data.into())
    }

    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t.as_str()),
            Message::Binary(_) => None,
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload as shared bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Message::Text(t) => t.into_bytes(),
            Message::Binary(b) => b,
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Message {
        Message::text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Message {
        Message::text(text)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Message {
        Message::Binary(data.into())
    }
}

/// Why a connection reached `Closed`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// The peer sent a close frame first and we answered it.
    Remote,
    /// We sent a close frame first and the peer answered it.
    Local,
    /// The peer broke the protocol; we sent the matching close code.
    Protocol(ProtocolError),
    /// No bytes arrived within `pong_timeout` of a ping.
    PongTimeout,
    /// The peer did not answer our close frame within `close_timeout`.
    CloseTimeout,
    /// The transport ended (EOF, reset, write error) without a close frame.
    TransportClosed,
}

/// How a connection ended: what `on_close(code, reason)` receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The code the peer sent; 1005 if its close frame had none, 1006 if
    /// the connection ended without a close frame (§7.1.5), or the code we
    /// failed the connection with on a protocol error.
    pub code: CloseCode,
    /// The reason that came with the code.
    pub reason: String,
    /// What ended the connection.
    pub cause: CloseCause,
}

/// Something the connection reports to its driver, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A complete message arrived.
    Message(Message),
    /// A ping arrived; with `auto_pong` the pong is already queued.
    Ping(Bytes),
    /// A pong arrived.
    Pong(Bytes),
    /// A message was not queued because the outbound queue is over
    /// `max_backpressure` and the policy is to drop (the handler's `on_error`).
    Dropped {
        /// The size of the dropped message.
        len: usize,
    },
    /// The connection is closed. Always the last event, exactly once.
    Closed(CloseInfo),
}
