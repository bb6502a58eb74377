//! Reassembly of fragmented messages (RFC 6455 §5.4) with incremental
//! UTF-8 validation (§8.1), inflation of compressed messages (RFC 7692
//! §6.2), the message size limit and the cap on fragments per message.
//!
//! Input can arrive before its frame is complete: [`Assembler::inspect`]
//! takes the arrived prefix of a text or compressed frame, so invalid
//! UTF-8 or a compression bomb fails the connection as soon as its bytes
//! are in, not when the frame (or message) ends.

use bytes::{Bytes, BytesMut};

use crate::deflate::Inflater;
use crate::error::ProtocolError;
use crate::frame::{DecodedFrame, FrameHeader, OpCode};
use crate::message::Message;
use crate::utf8::{validate_utf8, Utf8Bytes, Utf8Validator};

/// A message whose first bytes have arrived but not its last.
#[derive(Debug)]
struct Partial {
    is_text: bool,
    /// RSV1 was set on its first frame: its payload is DEFLATE data.
    compressed: bool,
    /// Plain messages: the fragments completed so far, joined.
    data: BytesMut,
    /// Compressed messages: what has been inflated so far.
    inflated: Vec<u8>,
    /// Over the message's text (plain bytes, or inflated output).
    utf8: Utf8Validator,
    /// Frames of the message started so far, the first included.
    fragments: usize,
}

/// Joins data frames into messages. Control frames never reach it.
#[derive(Debug)]
pub(crate) struct Assembler {
    max_message_size: usize,
    /// Most frames one message may span (`Config::max_fragments`).
    max_fragments: usize,
    /// Boxed: only fragmented, compressed or still-arriving messages
    /// have one, and every idle connection would carry it inline.
    partial: Option<Box<Partial>>,
    /// Present once permessage-deflate is negotiated.
    inflater: Option<Box<Inflater>>,
    /// Bytes inflated over the connection's life (the driver's budget).
    inflated_total: u64,
}

impl Assembler {
    pub(crate) fn new(max_message_size: usize, max_fragments: usize) -> Assembler {
        Assembler { max_message_size, max_fragments, partial: None, inflater: None, inflated_total: 0 }
    }

    /// Whether a fragmented message is unfinished.
    pub(crate) fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    pub(crate) fn set_inflater(&mut self, inflater: Inflater) {
        self.inflater = Some(Box::new(inflater));
    }

    /// Drops the message in progress (the connection closed).
    pub(crate) fn reset(&mut self) {
        self.partial = None;
        if let Some(inflater) = &mut self.inflater {
            inflater.release();
        }
    }

    /// Bytes held for an unfinished message.
    pub(crate) fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.data.len() + p.inflated.len())
    }

    pub(crate) fn inflated_total(&self) -> u64 {
        self.inflated_total
    }

    /// Whether the arrived prefix of a frame with this header is worth
    /// looking at before the frame completes: text (to validate it) and
    /// compressed data (to inflate it).
    pub(crate) fn wants_prefix(&self, header: &FrameHeader) -> bool {
        match (header.opcode, &self.partial) {
            (OpCode::Text, _) => true,
            (OpCode::Binary, _) => header.rsv1 && self.inflater.is_some(),
            (OpCode::Continuation, Some(p)) => p.is_text || p.compressed,
            _ => false,
        }
    }

    /// Takes `bytes`, the payload of the frame being read from `offset`
    /// on, before the frame is complete.
    pub(crate) fn inspect(&mut self, header: FrameHeader, offset: usize, bytes: &[u8]) -> Result<(), ProtocolError> {
        if offset == 0 {
            self.start_frame(header)?;
        }
        let max = self.max_message_size;
        let Some(partial) = self.partial.as_mut() else { return Ok(()) };
        if partial.compressed {
            return self.inflate(bytes);
        }
        check_size(partial.data.len() + offset + bytes.len(), max)?;
        if partial.is_text && !partial.utf8.feed(bytes) {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(())
    }

    /// Takes one complete data frame, of which the first `taken` payload
    /// bytes went through [`Assembler::inspect`] already; returns the
    /// message it completes, if any.
    pub(crate) fn push(&mut self, frame: DecodedFrame, taken: usize) -> Result<Option<Message>, ProtocolError> {
        let header = frame.header;
        if taken == 0 && self.partial.is_none() && header.fin && !header.rsv1 && header.opcode != OpCode::Continuation {
            return self.single_frame(frame);
        }
        if taken == 0 {
            self.start_frame(header)?;
        }
        let rest = &frame.payload[taken..];
        if self.partial.as_ref().is_some_and(|p| p.compressed) {
            self.inflate(rest)?;
            if !header.fin {
                return Ok(None);
            }
            return self.finish_compressed();
        }
        let max = self.max_message_size;
        let partial = self.partial.as_mut().expect("start_frame made one");
        check_size(partial.data.len() + frame.payload.len(), max)?;
        if partial.is_text && !partial.utf8.feed(rest) {
            return Err(ProtocolError::InvalidUtf8);
        }
        if !header.fin {
            partial.data.extend_from_slice(&frame.payload);
            return Ok(None);
        }
        let partial = *self.partial.take().expect("matched above");
        let data = if partial.data.is_empty() {
            // One frame whose prefix was inspected: still no copy.
            frame.payload
        } else {
            let mut data = partial.data;
            data.extend_from_slice(&frame.payload);
            data.freeze()
        };
        text_or_binary(partial.is_text, partial.utf8.is_complete(), data)
    }

    /// The common case: a whole uncompressed message in one frame, no copy.
    fn single_frame(&mut self, frame: DecodedFrame) -> Result<Option<Message>, ProtocolError> {
        check_size(frame.payload.len(), self.max_message_size)?;
        if frame.header.opcode == OpCode::Text {
            if !validate_utf8(&frame.payload) {
                return Err(ProtocolError::InvalidUtf8);
            }
            return Ok(Some(Message::Text(Utf8Bytes::from_validated(frame.payload))));
        }
        Ok(Some(Message::Binary(frame.payload)))
    }

    /// Checks a data frame's place in the message sequence (§5.4) and its
    /// RSV1 bit (RFC 7692 §6.1), starting a message on a first frame.
    fn start_frame(&mut self, header: FrameHeader) -> Result<(), ProtocolError> {
        match (header.opcode, &self.partial) {
            (OpCode::Continuation, None) => Err(ProtocolError::UnexpectedContinuation),
            // RSV1 marks the first frame of a compressed message only.
            (OpCode::Continuation, Some(_)) if header.rsv1 => Err(ProtocolError::ReservedBits),
            (OpCode::Continuation, Some(_)) => {
                let max = self.max_fragments;
                let partial = self.partial.as_mut().expect("matched Some");
                partial.fragments += 1;
                // The first frame is never refused: 0 and 1 both mean
                // "unfragmented messages only".
                if partial.fragments > max {
                    return Err(ProtocolError::TooManyFragments { max });
                }
                Ok(())
            }
            (_, Some(_)) => Err(ProtocolError::ExpectedContinuation),
            (opcode, None) => {
                if header.rsv1 && self.inflater.is_none() {
                    return Err(ProtocolError::ReservedBits);
                }
                self.partial = Some(Box::new(Partial {
                    is_text: opcode == OpCode::Text,
                    compressed: header.rsv1,
                    data: BytesMut::new(),
                    inflated: Vec::new(),
                    utf8: Utf8Validator::new(),
                    fragments: 1,
                }));
                Ok(())
            }
        }
    }

    /// Inflates compressed input onto the message, validating the text
    /// that comes out as it comes out.
    fn inflate(&mut self, input: &[u8]) -> Result<(), ProtocolError> {
        let (Some(partial), Some(inflater)) = (self.partial.as_mut(), self.inflater.as_mut()) else {
            return Err(ProtocolError::ReservedBits);
        };
        let before = partial.inflated.len();
        let result = inflater.inflate(input, &mut partial.inflated, self.max_message_size);
        self.inflated_total += (partial.inflated.len() - before) as u64;
        result?;
        if partial.is_text && !partial.utf8.feed(&partial.inflated[before..]) {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(())
    }

    fn finish_compressed(&mut self) -> Result<Option<Message>, ProtocolError> {
        let (Some(partial), Some(inflater)) = (self.partial.as_mut(), self.inflater.as_mut()) else {
            return Err(ProtocolError::ReservedBits);
        };
        let before = partial.inflated.len();
        inflater.finish(&mut partial.inflated, self.max_message_size)?;
        if partial.is_text && !partial.utf8.feed(&partial.inflated[before..]) {
            return Err(ProtocolError::InvalidUtf8);
        }
        let partial = *self.partial.take().expect("matched above");
        text_or_binary(partial.is_text, partial.utf8.is_complete(), Bytes::from(partial.inflated))
    }
}

fn check_size(size: usize, max: usize) -> Result<(), ProtocolError> {
    if size > max {
        return Err(ProtocolError::MessageTooLarge { size, max });
    }
    Ok(())
}

fn text_or_binary(is_text: bool, utf8_complete: bool, data: Bytes) -> Result<Option<Message>, ProtocolError> {
    if !is_text {
        return Ok(Some(Message::Binary(data)));
    }
    if !utf8_complete {
        return Err(ProtocolError::InvalidUtf8);
    }
    Ok(Some(Message::Text(Utf8Bytes::from_validated(data))))
}
