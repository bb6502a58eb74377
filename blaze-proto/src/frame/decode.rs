//! Incremental frame decoding (RFC 6455 §5.2).

use bytes::{Buf, Bytes, BytesMut};

use super::{apply_mask, FrameHeader, OpCode, Role, MAX_CONTROL_PAYLOAD};
use crate::error::ProtocolError;

/// A frame read off the wire, payload already unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFrame {
    /// FIN, RSV bits and opcode.
    pub header: FrameHeader,
    /// The masking key the frame carried (always `Some` from a client,
    /// always `None` from a server). Kept so a frame can be re-encoded exactly.
    pub mask: Option<[u8; 4]>,
    /// The unmasked payload: a slice of the input buffer, not a copy.
    pub payload: Bytes,
}

/// A parsed header waiting for its payload to arrive.
///
/// The first header byte is kept as it came off the wire (already
/// validated) and expanded into a [`FrameHeader`] only when the frame is
/// returned. Carrying four `bool`s and an opcode through the
/// `Result<Option<_>>` made the compiler store the fields one by one and
/// reload them as wider words: a store-forwarding stall on every frame,
/// about 15% of the time to decode a small frame.
#[derive(Debug, Clone, Copy)]
struct PendingHeader {
    b0: u8,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
    /// Payload bytes already handed out (unmasked) by `take_prefix`.
    taken: usize,
}

/// Decodes frames from a byte stream split at arbitrary points.
///
/// Each call to [`FrameDecoder::decode`] consumes at most one whole frame
/// from the front of the buffer; `Ok(None)` means "need more bytes" and
/// consumes nothing. A header is parsed once and remembered while its
/// payload arrives, so a large frame arriving in many reads costs one parse.
///
/// ```
/// use blaze_proto::frame::{FrameDecoder, OpCode, Role};
/// use bytes::BytesMut;
///
/// // A masked "Hello" from a client (RFC 6455 §5.7).
/// let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let mut decoder = FrameDecoder::new(Role::Server, 1 << 20);
/// let mut buf = BytesMut::from(&wire[..3]);
/// assert!(decoder.decode(&mut buf).unwrap().is_none());
/// buf.extend_from_slice(&wire[3..]);
/// let frame = decoder.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(frame.header.opcode, OpCode::Text);
/// assert_eq!(&frame.payload[..], b"Hello");
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    role: Role,
    max_frame_size: usize,
    allow_rsv1: bool,
    pending: Option<PendingHeader>,
    /// How much of the last decoded frame's payload `take_prefix` had
    /// handed out before it completed.
    last_taken: usize,
}

impl FrameDecoder {
    /// A decoder for the given end of the connection. Frames whose payload
    /// exceeds `max_frame_size` fail with [`ProtocolError::FrameTooLarge`]
    /// before any of their payload is buffered.
    pub fn new(role: Role, max_frame_size: usize) -> FrameDecoder {
        FrameDecoder { role, max_frame_size, allow_rsv1: false, pending: None, last_taken: 0 }
    }

    /// Accepts RSV1 on data frames: set once permessage-deflate is negotiated.
    pub fn allow_rsv1(&mut self, allow: bool) {
        self.allow_rsv1 = allow;
    }

    /// How many more bytes the frame being read needs before it can be
    /// decoded, if a header has been parsed. Drivers use it to size reads.
    pub fn bytes_needed(&self, buffered: usize) -> Option<usize> {
        self.pending.map(|p| (p.header_len + p.payload_len).saturating_sub(buffered))
    }

    /// Decodes one frame from the front of `buf`, removing its bytes.
    ///
    /// Returns `Ok(None)` when `buf` holds no complete frame yet. An error
    /// is final: the stream can no longer be framed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<DecodedFrame>, ProtocolError> {
        let pending = match self.pending {
            Some(p) => p,
            None => match self.parse_header(buf)? {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        let total = pending.header_len + pending.payload_len;
        if buf.len() < total {
            self.pending = Some(pending);
            return Ok(None);
        }
        self.pending = None;
        self.last_taken = pending.taken;
        buf.advance(pending.header_len);
        let mut payload = buf.split_to(pending.payload_len);
        match (pending.mask, pending.taken) {
            // The common case, kept apart so the key needs no rotation.
            (Some(key), 0) => apply_mask(&mut payload, key, 0),
            (Some(key), taken) => apply_mask(&mut payload[taken..], key, taken),
            (None, _) => {}
        }
        Ok(Some(DecodedFrame { header: header_from_b0(pending.b0), mask: pending.mask, payload: payload.freeze() }))
    }

    /// The header of the frame whose payload is still arriving, if any.
    pub fn pending_header(&self) -> Option<FrameHeader> {
        self.pending.map(|p| header_from_b0(p.b0))
    }

    /// The payload bytes of the incomplete frame at the front of `buf` that
    /// arrived since the last call, unmasked in place, with their offset in
    /// the payload. Lets a text frame's UTF-8 (or a compressed frame's
    /// inflation) be checked as its bytes arrive; [`FrameDecoder::decode`]
    /// still returns the whole payload when the frame completes, and
    /// [`FrameDecoder::last_taken`] says how much of it was handed out here.
    pub fn take_prefix<'a>(&mut self, buf: &'a mut BytesMut) -> Option<(usize, &'a [u8])> {
        let pending = self.pending.as_mut()?;
        let start = pending.header_len + pending.taken;
        let end = buf.len().min(pending.header_len + pending.payload_len);
        if end <= start {
            return None;
        }
        if let Some(key) = pending.mask {
            apply_mask(&mut buf[start..end], key, pending.taken);
        }
        let offset = pending.taken;
        pending.taken += end - start;
        Some((offset, &buf[start..end]))
    }

    /// How many payload bytes of the frame [`FrameDecoder::decode`] last
    /// returned had been handed out by [`FrameDecoder::take_prefix`].
    pub fn last_taken(&self) -> usize {
        self.last_taken
    }

    fn parse_header(&self, buf: &[u8]) -> Result<Option<PendingHeader>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0f))?;
        let header = header_from_b0(b0);
        // §5.2: RSV bits are nonzero only when an extension defines them;
        // RFC 7692 §6 defines RSV1 on the first frame of a data message only.
        let rsv1_ok = self.allow_rsv1 && !header.opcode.is_control();
        if (header.rsv1 && !rsv1_ok) || header.rsv2 || header.rsv3 {
            return Err(ProtocolError::ReservedBits);
        }
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        let (payload_len, len_bytes) = match b1 & 0x7f {
            126 => {
                let Some(ext) = buf.get(2..4) else { return Ok(None) };
                let len = u16::from_be_bytes([ext[0], ext[1]]) as u64;
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 2)
            }
            127 => {
                let Some(ext) = buf.get(2..10) else { return Ok(None) };
                let mut raw = [0u8; 8];
                raw.copy_from_slice(ext);
                let len = u64::from_be_bytes(raw);
                if len & (1 << 63) != 0 {
                    return Err(ProtocolError::LengthMsbSet);
                }
                if len <= u16::MAX as u64 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 8)
            }
            short => (short as u64, 0),
        };
        if header.opcode.is_control() {
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        }
        if payload_len > self.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooLarge { size: payload_len, max: self.max_frame_size });
        }
        let mask_at = 2 + len_bytes;
        let mask = if masked {
            let Some(raw) = buf.get(mask_at..mask_at + 4) else { return Ok(None) };
            Some([raw[0], raw[1], raw[2], raw[3]])
        } else {
            None
        };
        let header_len = mask_at + if masked { 4 } else { 0 };
        Ok(Some(PendingHeader { b0, mask, header_len, payload_len: payload_len as usize, taken: 0 }))
    }
}

/// Expands a first header byte whose opcode has been validated.
#[inline]
fn header_from_b0(b0: u8) -> FrameHeader {
    FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        rsv2: b0 & 0x20 != 0,
        rsv3: b0 & 0x10 != 0,
        opcode: OpCode::from_u8(b0 & 0x0f).unwrap_or(OpCode::Continuation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(role: Role, bytes: &[u8]) -> Result<Option<DecodedFrame>, ProtocolError> {
        FrameDecoder::new(role, 1 << 20).decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn rfc_example_unmasked_text_from_server() {
        let frame = decode_all(Role::Client, &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']).unwrap().unwrap();
        assert_eq!(&frame.payload[..], b"Hello");
        assert!(frame.header.fin);
    }

    #[test]
    fn rfc_example_fragmented_text_frames() {
        let mut buf = BytesMut::from(&[0x01, 0x03, b'H', b'e', b'l', 0x80, 0x02, b'l', b'o'][..]);
        let mut decoder = FrameDecoder::new(Role::Client, 1 << 20);
        let first = decoder.decode(&mut buf).unwrap().unwrap();
        assert!(!first.header.fin);
        assert_eq!(first.header.opcode, OpCode::Text);
        let second = decoder.decode(&mut buf).unwrap().unwrap();
        assert!(second.header.fin);
        assert_eq!(second.header.opcode, OpCode::Continuation);
        assert_eq!(&second.payload[..], b"lo");
    }

    #[test]
    fn rfc_example_256_byte_binary_uses_16_bit_length() {
        let mut wire = vec![0x82, 0x7e, 0x01, 0x00];
        wire.extend(std::iter::repeat(7u8).take(256));
        let frame = decode_all(Role::Client, &wire).unwrap().unwrap();
        assert_eq!(frame.payload.len(), 256);
    }

    #[test]
    fn rfc_example_64_kib_binary_uses_64_bit_length() {
        let mut wire = vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0];
        wire.extend(std::iter::repeat(7u8).take(65536));
        let frame = decode_all(Role::Client, &wire).unwrap().unwrap();
        assert_eq!(frame.payload.len(), 65536);
    }

    #[test]
    fn server_rejects_unmasked_client_frame() {
        assert_eq!(decode_all(Role::Server, &[0x81, 0x00]), Err(ProtocolError::UnmaskedClientFrame));
    }

    #[test]
    fn client_rejects_masked_server_frame() {
        assert_eq!(decode_all(Role::Client, &[0x81, 0x80, 1, 2, 3, 4]), Err(ProtocolError::MaskedServerFrame));
    }

    #[test]
    fn reserved_opcodes_are_rejected() {
        for op in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(decode_all(Role::Client, &[0x80 | op, 0x00]), Err(ProtocolError::ReservedOpcode(op)));
        }
    }

    #[test]
    fn rsv_bits_without_extension_are_rejected() {
        for bit in [0x40, 0x20, 0x10] {
            assert_eq!(decode_all(Role::Client, &[0x81 | bit, 0x00]), Err(ProtocolError::ReservedBits));
        }
    }

    #[test]
    fn rsv1_is_accepted_on_data_frames_once_deflate_is_negotiated() {
        let mut decoder = FrameDecoder::new(Role::Client, 1 << 20);
        decoder.allow_rsv1(true);
        assert!(decoder.decode(&mut BytesMut::from(&[0xC1, 0x00][..])).unwrap().is_some());
        assert_eq!(decoder.decode(&mut BytesMut::from(&[0xC9, 0x00][..])), Err(ProtocolError::ReservedBits));
    }

    #[test]
    fn length_with_most_significant_bit_set_is_rejected() {
        let wire = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_all(Role::Client, &wire), Err(ProtocolError::LengthMsbSet));
    }

    #[test]
    fn non_minimal_length_encodings_are_rejected() {
        assert_eq!(decode_all(Role::Client, &[0x82, 0x7e, 0x00, 0x05]), Err(ProtocolError::NonMinimalLength));
        let wire = [0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        assert_eq!(decode_all(Role::Client, &wire), Err(ProtocolError::NonMinimalLength));
    }

    #[test]
    fn control_frame_over_125_bytes_is_rejected() {
        let mut wire = vec![0x89, 0x7e, 0x00, 0x7e];
        wire.extend([0u8; 126]);
        assert_eq!(decode_all(Role::Client, &wire), Err(ProtocolError::ControlFrameTooLong));
    }

    #[test]
    fn fragmented_control_frame_is_rejected() {
        assert_eq!(decode_all(Role::Client, &[0x09, 0x00]), Err(ProtocolError::FragmentedControlFrame));
    }

    #[test]
    fn frame_over_max_frame_size_fails_before_payload_arrives() {
        let mut decoder = FrameDecoder::new(Role::Client, 100);
        let err = decoder.decode(&mut BytesMut::from(&[0x82, 0x7e, 0x01, 0x00][..])).unwrap_err();
        assert_eq!(err, ProtocolError::FrameTooLarge { size: 256, max: 100 });
        assert_eq!(err.close_code(), crate::CloseCode::MESSAGE_TOO_BIG);
    }

    #[test]
    fn a_prefix_taken_early_is_unmasked_once() {
        let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let mut decoder = FrameDecoder::new(Role::Server, 1 << 20);
        let mut buf = BytesMut::from(&wire[..8]);
        assert!(decoder.decode(&mut buf).unwrap().is_none());
        assert_eq!(decoder.take_prefix(&mut buf), Some((0, &b"He"[..])));
        assert_eq!(decoder.take_prefix(&mut buf), None);
        buf.extend_from_slice(&wire[8..10]);
        assert_eq!(decoder.take_prefix(&mut buf), Some((2, &b"ll"[..])));
        buf.extend_from_slice(&wire[10..]);
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&frame.payload[..], b"Hello");
        assert_eq!(decoder.last_taken(), 4);
    }

    #[test]
    fn incomplete_input_consumes_nothing() {
        let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(FrameDecoder::new(Role::Server, 1 << 20).decode(&mut buf), Ok(None));
            assert_eq!(buf.len(), cut);
        }
    }
}
