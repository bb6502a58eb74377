//! The automatic error replies: what a client is told when the server
//! refuses one of its messages (bad JSON for `on_json` / `recv_json`, a
//! message over the rate limit), and how to change or silence it.

use std::fmt;
use std::sync::Arc;

use blaze_proto::Message;

use crate::error::WsError;

/// Makes the reply to a refused message, or `None` for no reply.
pub type ErrorReplyFn = Arc<dyn Fn(&WsError) -> Option<Message> + Send + Sync>;

/// What a client is sent when the server refuses one of its messages:
/// malformed JSON for [`crate::Callbacks::on_json`] or
/// [`crate::WsStream::recv_json`] ([`WsError::Json`]), or a message over
/// the rate limit with [`crate::RateLimitAction::ErrorMessage`]
/// ([`WsError::RateLimited`]). Either way `on_error` is told too, and the
/// connection stays open. Set per route with
/// [`crate::WsConfig::error_replies`].
///
/// ```
/// use blaze_server::{ErrorReplies, Message, WsConfig, WsError};
/// // Off: the client hears nothing.
/// let quiet = WsConfig::default().error_replies(ErrorReplies::Off);
/// // Your own protocol's error message (or None to skip one kind).
/// let custom = WsConfig::default().error_replies(ErrorReplies::custom(|error| match error {
///     WsError::RateLimited => Some(Message::text(r#"{"op":"slow_down"}"#)),
///     other => Some(Message::text(format!(r#"{{"op":"error","reason":{:?}}}"#, other.to_string()))),
/// }));
/// # let _ = (quiet, custom);
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ErrorReplies {
    /// `{"type":"error","error":"<the error>"}` as a text message, e.g.
    /// `{"type":"error","error":"invalid JSON: expected value at line 1 column 1"}`
    /// or `{"type":"error","error":"rate limit exceeded"}`. The default.
    #[default]
    Json,
    /// No reply.
    Off,
    /// The function's reply (`None`: no reply). It runs on the
    /// connection's task, like a callback: it must not block.
    Custom(ErrorReplyFn),
}

impl fmt::Debug for ErrorReplies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorReplies::Json => f.write_str("Json"),
            ErrorReplies::Off => f.write_str("Off"),
            ErrorReplies::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl ErrorReplies {
    /// Replies made by `f` (see [`ErrorReplies::Custom`]).
    pub fn custom(f: impl Fn(&WsError) -> Option<Message> + Send + Sync + 'static) -> ErrorReplies {
        ErrorReplies::Custom(Arc::new(f))
    }

    /// The reply to send for `error`, if any. A panicking custom function
    /// sends nothing (and is logged); the connection goes on.
    pub(crate) fn reply(&self, error: &WsError) -> Option<Message> {
        match self {
            ErrorReplies::Json => {
                Some(Message::text(serde_json::json!({"type": "error", "error": error.to_string()}).to_string()))
            }
            ErrorReplies::Off => None,
            ErrorReplies::Custom(f) => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(error))).unwrap_or_else(|panic| {
                    tracing::error!("error reply function panicked: {}", crate::handler::panic_message(&*panic));
                    None
                })
            }
        }
    }

    pub(crate) fn is_default(&self) -> bool {
        matches!(self, ErrorReplies::Json)
    }

    /// The same replies: the same variant, and for `Custom` the same function.
    pub(crate) fn same_as(&self, other: &ErrorReplies) -> bool {
        match (self, other) {
            (ErrorReplies::Json, ErrorReplies::Json) | (ErrorReplies::Off, ErrorReplies::Off) => true,
            (ErrorReplies::Custom(a), ErrorReplies::Custom(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A connection's `ErrorReplies` when its route's is not the default,
/// kept in its locals for `parse_json` (private: no handler can see it).
#[derive(Clone)]
pub(crate) struct ConnErrorReplies(pub(crate) ErrorReplies);
