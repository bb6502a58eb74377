//! Broadcast encoding: a message serialized and framed once, shared by
//! every connection it is sent to.

use bytes::{Bytes, BytesMut};

use crate::frame::{encode_frame, encoded_len, FrameHeader, OpCode};
use crate::message::Message;

/// A server-to-client frame encoded once. Cloning it, or queueing it on
/// any number of server connections ([`crate::Connection::send_prepared`]),
/// shares the same bytes: no copy, no re-encoding.
///
/// ```
/// use blaze_proto::PreparedMessage;
/// let update = PreparedMessage::text("BTC 95000");
/// let copy = update.clone();
/// assert_eq!(update.frame().as_ptr(), copy.frame().as_ptr()); // one buffer
/// assert_eq!(&update.frame()[..2], &[0x81, 9]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedMessage {
    opcode: OpCode,
    frame: Bytes,
    header_len: usize,
}

impl PreparedMessage {
    /// Frames a message once.
    pub fn new(message: &Message) -> PreparedMessage {
        let opcode = match message {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        };
        PreparedMessage::encode(opcode, message.as_bytes())
    }

    /// Frames a text message once.
    pub fn text(text: &str) -> PreparedMessage {
        PreparedMessage::encode(OpCode::Text, text.as_bytes())
    }

    /// Frames a binary message once.
    pub fn binary(data: &[u8]) -> PreparedMessage {
        PreparedMessage::encode(OpCode::Binary, data)
    }

    /// Serializes a value as JSON and frames it as a text message, once.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<PreparedMessage, crate::UsageError> {
        let text = serde_json::to_vec(value).map_err(|e| crate::UsageError::Json(e.to_string()))?;
        Ok(PreparedMessage::encode(OpCode::Text, &text))
    }

    fn encode(opcode: OpCode, payload: &[u8]) -> PreparedMessage {
        let total = encoded_len(payload.len(), false);
        let mut frame = BytesMut::with_capacity(total);
        encode_frame(FrameHeader::new(opcode), payload, None, &mut frame);
        PreparedMessage { opcode, header_len: total - payload.len(), frame: frame.freeze() }
    }

    /// The encoded frame, header and payload.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The payload, shared with the frame.
    pub fn payload(&self) -> Bytes {
        self.frame.slice(self.header_len..)
    }

    /// Text or binary.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }
}

impl From<&Message> for PreparedMessage {
    fn from(message: &Message) -> PreparedMessage {
        PreparedMessage::new(message)
    }
}
