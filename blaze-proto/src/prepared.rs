//! Broadcast encoding: a message serialized and framed once, shared by
//! every connection it is sent to, and compressed at most once for every
//! connection that compresses without context.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::frame::{encode_frame, encoded_len, FrameHeader, OpCode};
use crate::message::Message;

/// A server-to-client frame encoded once. Cloning it, or queueing it on
/// any number of server connections (`send_prepared` on a connection: in
/// Blaze's server, `WebSocket::send_prepared`, or pass it to a broadcast),
/// shares the same bytes: no copy, no re-encoding.
///
/// Connections with permessage-deflate in shared mode (no server context
/// takeover) get one compressed frame, made by the first of them and
/// shared by the rest; a connection keeping context compresses its own
/// copy. [`PreparedMessage::compressions`] counts how many were made.
///
/// ```
/// use blaze_proto::PreparedMessage;
/// let update = PreparedMessage::text("BTC 95000");
/// let copy = update.clone();
/// assert_eq!(update.frame().as_ptr(), copy.frame().as_ptr()); // one buffer
/// assert_eq!(&update.frame()[..2], &[0x81, 9]);
/// ```
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    opcode: OpCode,
    frame: Bytes,
    header_len: usize,
    compressible: bool,
    compressed: Arc<Compressed>,
}

/// The compressed frame shared by clients without context, made once by
/// the first (for its level and window; others compress their own).
#[derive(Debug, Default)]
struct Compressed {
    frame: OnceLock<(u32, u8, Option<Bytes>)>,
    compressions: AtomicU64,
}

impl PartialEq for PreparedMessage {
    fn eq(&self, other: &PreparedMessage) -> bool {
        self.opcode == other.opcode && self.frame == other.frame && self.compressible == other.compressible
    }
}

impl Eq for PreparedMessage {}

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
        PreparedMessage {
            opcode,
            header_len: total - payload.len(),
            frame: frame.freeze(),
            compressible: true,
            compressed: Arc::default(),
        }
    }

    /// Never compressed, even to clients that negotiated permessage-deflate
    /// (already-compressed payloads).
    pub fn uncompressed(mut self) -> PreparedMessage {
        self.compressible = false;
        self
    }

    /// The encoded frame, header and payload.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The payload, shared with the frame.
    pub fn payload(&self) -> Bytes {
        self.frame.slice(self.header_len..)
    }

    /// The payload's length.
    pub fn payload_len(&self) -> usize {
        self.frame.len() - self.header_len
    }

    /// Text or binary.
    pub fn opcode(&self) -> OpCode {
        self.opcode
    }

    /// How many times this message (and its clones) has been compressed:
    /// at most once for every receiver without context that shares the
    /// first one's level and window, plus one per other receiver.
    pub fn compressions(&self) -> u64 {
        self.compressed.compressions.load(Ordering::Relaxed)
    }

    pub(crate) fn compressible(&self) -> bool {
        self.compressible
    }

    pub(crate) fn count_compression(&self) {
        self.compressed.compressions.fetch_add(1, Ordering::Relaxed);
    }

    /// The compressed server frame for receivers without context, made
    /// once; `None` if it was made for another level or window (the
    /// caller compresses its own) or compression failed.
    pub(crate) fn shared_compressed(&self, level: u32, window: u8) -> Option<Bytes> {
        let (l, w, frame) = self.compressed.frame.get_or_init(|| {
            self.count_compression();
            let payload = &self.frame[self.header_len..];
            (level, window, crate::deflate::shared_frame(level, window, self.opcode, payload))
        });
        (*l == level && *w == window).then(|| frame.clone()).flatten()
    }
}

/// Several prepared messages for the same receivers, their frames joined
/// once into one buffer: a connection queues the whole batch as one shared
/// chunk (one reference count, one iovec) with
/// [`crate::Connection::send_prepared_batch`], in the messages' order.
///
/// ```
/// use blaze_proto::{PreparedBatch, PreparedMessage};
/// let batch = PreparedBatch::new(vec![PreparedMessage::text("a"), PreparedMessage::text("bc")]);
/// assert_eq!(&batch.frames()[..], &[0x81, 1, b'a', 0x81, 2, b'b', b'c']);
/// assert_eq!(batch.messages().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct PreparedBatch {
    messages: Vec<PreparedMessage>,
    frames: Bytes,
}

impl PreparedBatch {
    /// Joins the messages' frames, in order (one copy, made once for every
    /// receiver).
    pub fn new(messages: Vec<PreparedMessage>) -> PreparedBatch {
        let mut frames = BytesMut::with_capacity(messages.iter().map(|m| m.frame.len()).sum());
        for message in &messages {
            frames.extend_from_slice(&message.frame);
        }
        PreparedBatch { messages, frames: frames.freeze() }
    }

    /// The messages, in order.
    pub fn messages(&self) -> &[PreparedMessage] {
        &self.messages
    }

    /// Every message's frame, one after the other.
    pub fn frames(&self) -> &Bytes {
        &self.frames
    }
}

impl From<&Message> for PreparedMessage {
    fn from(message: &Message) -> PreparedMessage {
        PreparedMessage::new(message)
    }
}
