//! What can be sent or broadcast: text, binary, or a value as JSON.

use bytes::Bytes;

use blaze_proto::{Message, PreparedMessage};

use crate::error::SendError;

/// Serializes a value as a JSON text message: `ws.send(Json(&value))`,
/// `app.broadcast("/market", Json(&update))`.
#[derive(Debug, Clone, Copy)]
pub struct Json<T>(pub T);

/// A message ready to frame: text, binary or JSON.
pub trait IntoMessage {
    /// Builds the message (serializing if needed).
    fn into_message(self) -> Result<Message, SendError>;
}

impl IntoMessage for Message {
    fn into_message(self) -> Result<Message, SendError> {
        Ok(self)
    }
}

impl IntoMessage for &str {
    fn into_message(self) -> Result<Message, SendError> {
        Ok(Message::text(self))
    }
}

impl IntoMessage for String {
    fn into_message(self) -> Result<Message, SendError> {
        Ok(Message::text(self))
    }
}

impl IntoMessage for &String {
    fn into_message(self) -> Result<Message, SendError> {
        Ok(Message::text(self.as_str()))
    }
}

impl IntoMessage for Bytes {
    fn into_message(self) -> Result<Message, SendError> {
        Ok(Message::Binary(self))
    }
}

impl IntoMessage for Vec<u8> {
    fn into_message(self) -> Result<Message, SendError> {
        Ok(Message::Binary(self.into()))
    }
}

impl IntoMessage for &[u8] {
    fn into_message(self) -> Result<Message, SendError> {
        Ok(Message::Binary(Bytes::copy_from_slice(self)))
    }
}

impl<T: serde::Serialize> IntoMessage for Json<T> {
    fn into_message(self) -> Result<Message, SendError> {
        let text = serde_json::to_string(&self.0).map_err(|e| SendError::Json(e.to_string()))?;
        Ok(Message::text(text))
    }
}

/// Something a broadcast can send: anything [`IntoMessage`], or a
/// [`PreparedMessage`] framed earlier.
pub trait IntoPrepared {
    /// Frames the message once.
    fn into_prepared(self) -> Result<PreparedMessage, SendError>;
}

impl<T: IntoMessage> IntoPrepared for T {
    fn into_prepared(self) -> Result<PreparedMessage, SendError> {
        Ok(PreparedMessage::new(&self.into_message()?))
    }
}

impl IntoPrepared for PreparedMessage {
    fn into_prepared(self) -> Result<PreparedMessage, SendError> {
        Ok(self)
    }
}

impl IntoPrepared for &PreparedMessage {
    fn into_prepared(self) -> Result<PreparedMessage, SendError> {
        Ok(self.clone())
    }
}

impl IntoMessage for blaze_proto::Utf8Bytes {
    /// Sends received text back without copying it.
    fn into_message(self) -> Result<Message, SendError> {
        Ok(Message::Text(self))
    }
}
