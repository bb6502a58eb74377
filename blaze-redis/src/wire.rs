//! The wire format of one broadcast on a Redis channel, version 1.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "BLZC"
//! 4       1     version (1)
//! 5       1     flags: bit 0 = text (payload is UTF-8), other bits 0
//! 6       8     origin node id, big-endian
//! 14      8     publisher sequence number, big-endian (per node, +1 per message)
//! 22      n     payload (the WebSocket message, unframed)
//! ```
//!
//! The path or topic is the Redis channel's name, so it is not repeated.
//! Anything else on a Blaze channel (another application, an older or
//! newer version, a truncated message) is rejected by [`decode`] with the
//! reason, which the subscriber counts.

use blaze_server::{Message, Utf8Bytes};
use bytes::Bytes;

/// The first four bytes of every Blaze message.
pub(crate) const MAGIC: [u8; 4] = *b"BLZC";
/// The version this crate writes and reads.
pub(crate) const VERSION: u8 = 1;
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 22;
const FLAG_TEXT: u8 = 1;

/// A decoded broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) node: u64,
    pub(crate) seq: u64,
    pub(crate) message: Message,
}

/// Why a message on a Blaze channel was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Not written by Blaze (no magic): another application's message.
    Foreign,
    /// A Blaze message of another version.
    Version(u8),
    /// Blaze's magic and version but broken: too short, unknown flags,
    /// text that is not UTF-8, or larger than the configured limit.
    Malformed,
}

/// The header for a message; the payload follows it as is.
pub(crate) fn header(node: u64, seq: u64, text: bool) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = if text { FLAG_TEXT } else { 0 };
    out[6..14].copy_from_slice(&node.to_be_bytes());
    out[14..22].copy_from_slice(&seq.to_be_bytes());
    out
}

/// One message as bytes (tests and tools; the publisher writes the header
/// and payload straight into the command buffer).
#[cfg(test)]
pub(crate) fn encode(node: u64, seq: u64, text: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = header(node, seq, text).to_vec();
    out.extend_from_slice(payload);
    out
}

/// Parses a message, checking everything a receiver relies on (a text
/// payload is valid UTF-8). `max_payload` bounds what is delivered.
pub(crate) fn decode(bytes: &[u8], max_payload: usize) -> Result<Frame, Rejected> {
    if bytes.len() < MAGIC.len() || bytes[..4] != MAGIC {
        return Err(Rejected::Foreign);
    }
    let Some(&version) = bytes.get(4) else {
        return Err(Rejected::Malformed);
    };
    if version != VERSION {
        return Err(Rejected::Version(version));
    }
    if bytes.len() < HEADER_LEN {
        return Err(Rejected::Malformed);
    }
    let flags = bytes[5];
    if flags & !FLAG_TEXT != 0 {
        return Err(Rejected::Malformed);
    }
    let payload = &bytes[HEADER_LEN..];
    if payload.len() > max_payload {
        return Err(Rejected::Malformed);
    }
    // The one copy on this node: the frame made from it is shared by
    // every local receiver.
    let payload = Bytes::copy_from_slice(payload);
    let message = if flags & FLAG_TEXT != 0 {
        Message::Text(Utf8Bytes::try_from_bytes(payload).map_err(|_| Rejected::Malformed)?)
    } else {
        Message::Binary(payload)
    };
    let word = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    Ok(Frame { node: word(6), seq: word(14), message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (text, payload) in [(true, &b"hello"[..]), (false, &[0, 255, 1][..]), (true, &b""[..])] {
            let bytes = encode(0xdead_beef, 42, text, payload);
            assert_eq!(bytes.len(), HEADER_LEN + payload.len());
            let frame = decode(&bytes, 1 << 20).unwrap();
            let message = if text {
                Message::text(std::str::from_utf8(payload).unwrap())
            } else {
                Message::Binary(Bytes::copy_from_slice(payload))
            };
            assert_eq!(frame, Frame { node: 0xdead_beef, seq: 42, message });
        }
    }

    #[test]
    fn rejects_what_blaze_did_not_write() {
        assert_eq!(decode(b"", 100), Err(Rejected::Foreign));
        assert_eq!(decode(b"hello world, not blaze", 100), Err(Rejected::Foreign));
        assert_eq!(decode(b"BLZ", 100), Err(Rejected::Foreign));
        assert_eq!(decode(b"BLZC", 100), Err(Rejected::Malformed));
        let mut v2 = encode(1, 1, true, b"x");
        v2[4] = 2;
        assert_eq!(decode(&v2, 100), Err(Rejected::Version(2)));
        let good = encode(1, 1, true, b"x");
        for cut in 4..HEADER_LEN {
            assert_eq!(decode(&good[..cut], 100), Err(Rejected::Malformed), "cut at {cut}");
        }
        let mut flags = good.clone();
        flags[5] = 0x80;
        assert_eq!(decode(&flags, 100), Err(Rejected::Malformed));
        assert_eq!(decode(&encode(1, 1, true, &[0xff, 0xfe]), 100), Err(Rejected::Malformed), "text must be UTF-8");
        assert!(decode(&encode(1, 1, false, &[0xff, 0xfe]), 100).is_ok(), "binary may be anything");
        assert_eq!(decode(&encode(1, 1, false, &[0; 101]), 100), Err(Rejected::Malformed), "over the limit");
    }
}
