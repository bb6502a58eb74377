//! What [`crate::WsStream::recv_frame`] returns: every frame a stream-style
//! handler can see, control frames included (cnetmod's `recv_frame`).

use bytes::Bytes;

use blaze_proto::{Message, Utf8Bytes};

/// One thing that arrived on a connection, as [`crate::WsStream::recv_frame`]
/// hands it over: a whole data message (fragments already joined), a ping,
/// a pong, or the end of the connection.
///
/// Pings are answered automatically (the pong is queued as the ping is
/// read, before the handler sees it), and the heartbeat's pongs are
/// registered at read time, so a handler that ignores control frames — or
/// never reads them at all — loses nothing. They are here for handlers
/// that want to see them (latency measurement, application heartbeats).
///
/// ```
/// # async fn demo(mut ws: blaze_server::WsStream) {
/// use blaze_server::Frame;
/// while let Some(frame) = ws.recv_frame().await {
///     match frame {
///         Frame::Text(text) => { let _ = ws.send(text); }
///         Frame::Binary(data) => { let _ = ws.send_binary(data); }
///         Frame::Ping(payload) => println!("ping {payload:?} (already answered)"),
///         Frame::Pong(payload) => println!("pong {payload:?}"),
///         Frame::Close { code, reason } => println!("closed: {code} {reason}"),
///         _ => {}
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping from the peer (already answered with a pong).
    Ping(Bytes),
    /// A pong from the peer (an answer to our ping, or unsolicited).
    Pong(Bytes),
    /// The connection ended, with the code and reason `on_close` gets
    /// (see [`crate::Handler::on_close`]). The last frame: after it,
    /// `recv_frame` returns `None`.
    Close {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

impl Frame {
    /// The payload length (0 for `Close`).
    pub(crate) fn len(&self) -> usize {
        match self {
            Frame::Text(text) => text.len(),
            Frame::Binary(data) | Frame::Ping(data) | Frame::Pong(data) => data.len(),
            Frame::Close { .. } => 0,
        }
    }

    /// A ping or a pong.
    pub(crate) fn is_control(&self) -> bool {
        matches!(self, Frame::Ping(_) | Frame::Pong(_))
    }

    /// The data message it carries, if it is one.
    pub(crate) fn into_message(self) -> Option<Message> {
        match self {
            Frame::Text(text) => Some(Message::Text(text)),
            Frame::Binary(data) => Some(Message::Binary(data)),
            _ => None,
        }
    }
}

impl From<Message> for Frame {
    fn from(message: Message) -> Frame {
        match message {
            Message::Text(text) => Frame::Text(text),
            Message::Binary(data) => Frame::Binary(data),
        }
    }
}
