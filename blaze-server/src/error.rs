//! Errors a handler sees.

use blaze_proto::{ProtocolError, UsageError};

/// Something went wrong on a connection; passed to `on_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsError {
    /// The peer broke the protocol; the connection is closing with the
    /// matching code.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A text message was not the JSON the handler expects. The client was
    /// told; the connection stays open.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A message for this client was dropped: its outbound queue is over
    /// `max_backpressure` and the policy drops.
    #[error("message of {len} bytes dropped: client is not reading")]
    Dropped {
        /// The dropped message's size.
        len: usize,
    },
    /// The client sent messages faster than its rate limit.
    #[error("rate limit exceeded")]
    RateLimited,
    /// A handler panicked; the connection is closing with 1011.
    #[error("handler panicked: {0}")]
    HandlerPanicked(String),
    /// Reading or writing the socket failed.
    #[error("transport error: {0}")]
    Io(String),
    /// Messages that a send accepted (`Ok`) never reached the socket: the
    /// connection ended first (a backpressure close discarded its queue,
    /// the peer went away, the close or drain deadline passed with output
    /// still queued). Reported once, after `on_close`, when the
    /// connection's task ends; never for a connection that wrote
    /// everything. `bytes` are frame bytes, headers included.
    #[error("{messages} accepted messages ({bytes} bytes) never reached the socket")]
    Lost {
        /// How many messages.
        messages: u64,
        /// Their size on the wire.
        bytes: u64,
    },
}

/// Why a send did not queue a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closing or closed.
    #[error("connection is closed")]
    Closed,
    /// The client's outbound queue is full (see `max_backpressure`).
    #[error("client is not reading; outbound queue full")]
    Backpressure,
    /// The value could not be serialized.
    #[error("serialization failed: {0}")]
    Json(String),
    /// A control payload over 125 bytes, or an unsendable close code.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A broadcast to a path that no WebSocket route matches (a typo, or a
    /// route not added yet): nobody could ever be there. Checked before
    /// the message is serialized.
    #[error("no WebSocket route matches {0:?}")]
    NoRoute(String),
}

impl From<UsageError> for SendError {
    fn from(err: UsageError) -> SendError {
        match err {
            UsageError::Closed => SendError::Closed,
            UsageError::Backpressure => SendError::Backpressure,
            UsageError::Json(e) => SendError::Json(e),
            other => SendError::Invalid(other.to_string()),
        }
    }
}
