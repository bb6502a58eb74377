//! Errors, split by whose fault they are: the peer's ([`ProtocolError`],
//! answered with a close code; [`HandshakeError`](crate::handshake::HandshakeError),
//! answered with an HTTP status) or the caller's ([`UsageError`]).

use std::time::Duration;

use crate::close::CloseCode;

/// The peer broke RFC 6455 or a configured limit. Each variant maps to the
/// close code the connection fails with ([`ProtocolError::close_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// §5.2: opcode 0x3-0x7 or 0xB-0xF.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// §5.2: an RSV bit set without an extension that defines it.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// §5.1: a client frame without a mask.
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    /// §5.1: a server frame with a mask.
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// §5.2: a 64-bit payload length with its most significant bit set.
    #[error("64-bit payload length has its most significant bit set")]
    LengthMsbSet,
    /// §5.2: a payload length not encoded in the fewest bytes.
    #[error("payload length not minimally encoded")]
    NonMinimalLength,
    /// §5.5: a control frame with more than 125 bytes of payload.
    #[error("control frame payload over 125 bytes")]
    ControlFrameTooLong,
    /// §5.5: a control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// §5.4: a continuation frame with no message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// §5.4: a new text or binary frame while a fragmented message is unfinished.
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    /// A frame larger than the configured `max_frame_size`.
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The frame's payload length.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message larger than the configured `max_message_size`.
    #[error("message of at least {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// How many bytes the message had reached.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// §8.1: a text message that is not UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// §5.5.1: a close frame with a 1-byte payload.
    #[error("close frame payload of one byte")]
    CloseFrameTooShort,
    /// §7.4: a close code that may not be sent.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// §5.5.1: a close reason that is not UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A compressed message that could not be inflated (RFC 7692).
    #[error("compressed message is corrupt")]
    InvalidCompressedData,
    /// A message (or a frame) whose header arrived was not complete within
    /// the configured `message_timeout`: the peer is dripping it. Close 1008.
    #[error("message not completed within {timeout:?}")]
    MessageTimeout {
        /// The configured `message_timeout`.
        timeout: Duration,
    },
    /// A fragmented message with more frames than the configured
    /// `max_fragments` (empty continuation frames count). Close 1008.
    #[error("message has more than {max} fragments")]
    TooManyFragments {
        /// The configured limit.
        max: usize,
    },
}

impl ProtocolError {
    /// The close code to fail the connection with (§7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => CloseCode::INVALID_PAYLOAD,
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            // Limits on how a message is sent, not on its size: a policy.
            ProtocolError::MessageTimeout { .. } | ProtocolError::TooManyFragments { .. } => {
                CloseCode::POLICY_VIOLATION
            }
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// The caller asked for something the connection cannot do in its state.
/// These are bugs or races in the application, never the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The connection has sent a close frame or is closed; §5.5.1 forbids
    /// sending data after a close frame.
    #[error("the connection is closing or closed")]
    Closed,
    /// A control payload over 125 bytes.
    #[error("control frame payload over 125 bytes")]
    ControlPayloadTooLong,
    /// A close code that may not be sent (§7.4.2).
    #[error("close code {0} may not be sent")]
    UnsendableCloseCode(u16),
    /// The outbound queue is over `max_backpressure` and the policy drops
    /// messages: this one was not queued.
    #[error("outbound queue over its limit; message dropped")]
    Backpressure,
    /// A value could not be serialized as JSON.
    #[error("JSON serialization failed: {0}")]
    Json(String),
}
