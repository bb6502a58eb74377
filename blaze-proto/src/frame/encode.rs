//! Frame encoding (RFC 6455 §5.2).

use bytes::{BufMut, BytesMut};

use super::{apply_mask, FrameHeader};

/// The longest header a frame can have: 2 bytes, an 8-byte length and a
/// 4-byte mask.
pub const fn max_header_len() -> usize {
    14
}

/// The encoded size of a frame with this payload length.
pub fn encoded_len(payload_len: usize, masked: bool) -> usize {
    let len_bytes = match payload_len {
        0..=125 => 0,
        126..=65535 => 2,
        _ => 8,
    };
    2 + len_bytes + if masked { 4 } else { 0 } + payload_len
}

/// Appends one frame to `dst`: the header with the minimal length encoding
/// §5.2 requires, then the payload, masked with `mask` if given (clients
/// must mask, servers must not).
///
/// ```
/// use blaze_proto::frame::{encode_frame, FrameHeader, OpCode};
/// use bytes::BytesMut;
/// let mut out = BytesMut::new();
/// encode_frame(FrameHeader::new(OpCode::Text), b"Hello", None, &mut out);
/// assert_eq!(&out[..], &[0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
/// ```
pub fn encode_frame(header: FrameHeader, payload: &[u8], mask: Option<[u8; 4]>, dst: &mut BytesMut) {
    dst.reserve(encoded_len(payload.len(), mask.is_some()));
    put_header(header, payload.len(), mask, dst);
    let start = dst.len();
    dst.put_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut dst[start..], key, 0);
    }
}

/// Appends only the header of a frame whose payload follows separately
/// (servers send large payloads without copying them).
pub(crate) fn put_header(header: FrameHeader, payload_len: usize, mask: Option<[u8; 4]>, dst: &mut BytesMut) {
    let b0 = (header.fin as u8) << 7
        | (header.rsv1 as u8) << 6
        | (header.rsv2 as u8) << 5
        | (header.rsv3 as u8) << 4
        | header.opcode.as_u8();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    dst.put_u8(b0);
    match payload_len {
        0..=125 => dst.put_u8(mask_bit | payload_len as u8),
        126..=65535 => {
            dst.put_u8(mask_bit | 126);
            dst.put_u16(payload_len as u16);
        }
        _ => {
            dst.put_u8(mask_bit | 127);
            dst.put_u64(payload_len as u64);
        }
    }
    if let Some(key) = mask {
        dst.put_slice(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::OpCode;

    #[test]
    fn rfc_example_masked_hello() {
        let mut out = BytesMut::new();
        encode_frame(FrameHeader::new(OpCode::Text), b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]), &mut out);
        assert_eq!(&out[..], &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn length_encoding_is_minimal_at_each_boundary() {
        for (len, header) in [(125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let mut out = BytesMut::new();
            encode_frame(FrameHeader::new(OpCode::Binary), &vec![0; len], None, &mut out);
            assert_eq!(out.len(), header + len, "payload {len}");
            assert_eq!(encoded_len(len, false), out.len());
        }
    }
}
