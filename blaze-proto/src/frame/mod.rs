//! The frame layer of RFC 6455 §5: opcodes, headers, masking, incremental
//! decoding and encoding.
//!
//! Frames are the wire unit; messages (what an application sees) are built
//! from them by [`crate::Connection`].

mod decode;
mod encode;
mod mask;

pub use decode::{DecodedFrame, FrameDecoder};
pub use encode::{encode_frame, encoded_len, max_header_len};
pub(crate) use encode::put_header;
pub use mask::apply_mask;

/// Which end of the connection a codec or connection speaks for.
///
/// RFC 6455 §5.1: a client masks every frame it sends and a server masks
/// none; each side rejects frames that break that rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that accepted the TCP connection and answered the handshake.
    Server,
    /// The end that opened the connection and sent the handshake request.
    Client,
}

/// A frame opcode (RFC 6455 §5.2). Reserved opcodes are rejected by the
/// decoder, so they have no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// `0x0`: continues a fragmented message.
    Continuation,
    /// `0x1`: a UTF-8 text message (or its first fragment).
    Text,
    /// `0x2`: a binary message (or its first fragment).
    Binary,
    /// `0x8`: the close handshake.
    Close,
    /// `0x9`: a ping, answered by a pong with the same payload.
    Ping,
    /// `0xA`: a pong, answering a ping or sent unsolicited as a heartbeat.
    Pong,
}

impl OpCode {
    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Parses a 4-bit wire value; `None` for the reserved opcodes
    /// `0x3..=0x7` and `0xB..=0xF` (§5.2).
    pub fn from_u8(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Control frames (close, ping, pong) have the high opcode bit set (§5.5).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Everything in a frame header except the payload length and mask, which
/// the codec derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last fragment of its message.
    pub fin: bool,
    /// RSV1, used by permessage-deflate (RFC 7692) to mark a compressed message.
    pub rsv1: bool,
    /// RSV2, reserved for extensions.
    pub rsv2: bool,
    /// RSV3, reserved for extensions.
    pub rsv3: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
}

impl FrameHeader {
    /// A header with FIN set and no RSV bits: a whole, unextended frame.
    pub fn new(opcode: OpCode) -> FrameHeader {
        FrameHeader { fin: true, rsv1: false, rsv2: false, rsv3: false, opcode }
    }
}
