//! Reassembly of fragmented messages (RFC 6455 §5.4) with incremental
//! UTF-8 validation (§8.1) and the message size limit.

use bytes::{Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::frame::{DecodedFrame, OpCode};
use crate::message::Message;
use crate::utf8::{validate_utf8, Utf8Bytes, Utf8Validator};

/// A message whose first fragment has arrived but not its last.
#[derive(Debug)]
struct Partial {
    is_text: bool,
    data: BytesMut,
    utf8: Utf8Validator,
}

/// Joins data frames into messages. Control frames never reach it.
#[derive(Debug)]
pub(crate) struct Assembler {
    max_message_size: usize,
    partial: Option<Partial>,
}

impl Assembler {
    pub(crate) fn new(max_message_size: usize) -> Assembler {
        Assembler { max_message_size, partial: None }
    }

    /// Bytes held for an unfinished message.
    pub(crate) fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.data.len())
    }

    /// Takes one data frame; returns the message it completes, if any.
    pub(crate) fn push(&mut self, frame: DecodedFrame) -> Result<Option<Message>, ProtocolError> {
        let fin = frame.header.fin;
        match (frame.header.opcode, self.partial.as_mut()) {
            (OpCode::Continuation, None) => Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => Err(ProtocolError::ExpectedContinuation),
            (OpCode::Text | OpCode::Binary, None) if fin => {
                // The common case: a whole message in one frame, no copy.
                self.check_size(frame.payload.len())?;
                if frame.header.opcode == OpCode::Text {
                    if !validate_utf8(&frame.payload) {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    Ok(Some(Message::Text(Utf8Bytes::from_validated(frame.payload))))
                } else {
                    Ok(Some(Message::Binary(frame.payload)))
                }
            }
            (opcode, None) => {
                self.check_size(frame.payload.len())?;
                let is_text = opcode == OpCode::Text;
                let mut utf8 = Utf8Validator::new();
                if is_text && !utf8.feed(&frame.payload) {
                    return Err(ProtocolError::InvalidUtf8);
                }
                self.partial = Some(Partial { is_text, data: BytesMut::from(&frame.payload[..]), utf8 });
                Ok(None)
            }
            (_continuation, Some(partial)) => {
                let size = partial.data.len() + frame.payload.len();
                if size > self.max_message_size {
                    return Err(ProtocolError::MessageTooLarge { size, max: self.max_message_size });
                }
                if partial.is_text && !partial.utf8.feed(&frame.payload) {
                    return Err(ProtocolError::InvalidUtf8);
                }
                partial.data.extend_from_slice(&frame.payload);
                if !fin {
                    return Ok(None);
                }
                let partial = self.partial.take().expect("matched Some above");
                finish(partial).map(Some)
            }
        }
    }

    fn check_size(&self, size: usize) -> Result<(), ProtocolError> {
        if size > self.max_message_size {
            return Err(ProtocolError::MessageTooLarge { size, max: self.max_message_size });
        }
        Ok(())
    }
}

fn finish(partial: Partial) -> Result<Message, ProtocolError> {
    let data: Bytes = partial.data.freeze();
    if partial.is_text {
        if !partial.utf8.is_complete() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(Message::Text(Utf8Bytes::from_validated(data)))
    } else {
        Ok(Message::Binary(data))
    }
}
