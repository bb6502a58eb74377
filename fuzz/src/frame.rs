//! `frame_decode`: arbitrary bytes into the frame decoder.
//!
//! Input layout: one control byte, then the wire bytes.
//! - bits 0-1: `max_frame_size` (1 MiB, 125, 0 or 4096), so the size
//!   limit is reached by short inputs too;
//! - bit 2: RSV1 allowed (as once permessage-deflate is negotiated);
//! - bits 3-7: how the bytes are chunked ([`crate::chunks::plan`]).
//!
//! Both roles decode the same bytes. Checked: no panic; every frame obeys
//! the role's masking rule, the size limit and the control frame rules;
//! every frame re-encodes (header, payload and the key it carried) to
//! exactly the bytes it was decoded from; `Ok(None)` consumes nothing; and
//! the bytes delivered in pieces decode to the same frames and the same
//! final error as delivered at once.

use blaze_proto::bytes::BytesMut;
use blaze_proto::frame::{encode_frame, DecodedFrame, FrameDecoder, Role, MAX_CONTROL_PAYLOAD};
use blaze_proto::ProtocolError;

use crate::chunks;

/// What decoding a whole stream produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<DecodedFrame>,
    /// The error that ended framing, if one did.
    error: Option<ProtocolError>,
    /// Bytes left undecoded at the end (an incomplete frame).
    left: usize,
}

pub fn frame_decode(data: &[u8]) {
    let Some((&ctl, wire)) = data.split_first() else { return };
    let max_frame_size = match ctl & 3 {
        0 => 1 << 20,
        1 => MAX_CONTROL_PAYLOAD,
        2 => 0,
        _ => 4096,
    };
    let allow_rsv1 = ctl & 4 != 0;
    let plan = chunks::plan(ctl >> 3, wire.len());
    for role in [Role::Server, Role::Client] {
        let decoder = || {
            let mut d = FrameDecoder::new(role, max_frame_size);
            d.allow_rsv1(allow_rsv1);
            d
        };
        let whole = decode_whole(decoder(), role, max_frame_size, allow_rsv1, wire);
        let pieces = decode_in_pieces(decoder(), wire, &plan);
        assert_eq!(whole, pieces, "{role:?}: chunking {plan:?} changed what was decoded");
    }
}

fn decode_whole(mut decoder: FrameDecoder, role: Role, max: usize, allow_rsv1: bool, wire: &[u8]) -> Outcome {
    let mut buf = BytesMut::from(wire);
    let mut frames = Vec::new();
    let mut offset = 0;
    loop {
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                let consumed = before - buf.len();
                check_frame(&frame, role, max, allow_rsv1);
                let mut again = BytesMut::new();
                encode_frame(frame.header, &frame.payload, frame.mask, &mut again);
                assert_eq!(
                    &again[..],
                    &wire[offset..offset + consumed],
                    "{role:?}: frame {} does not re-encode to its bytes: {frame:?}",
                    frames.len()
                );
                offset += consumed;
                frames.push(frame);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                return Outcome { frames, error: None, left: buf.len() };
            }
            Err(err) => return Outcome { frames, error: Some(err), left: buf.len() },
        }
    }
}

fn decode_in_pieces(mut decoder: FrameDecoder, wire: &[u8], plan: &[usize]) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut at = 0;
    for &piece in plan {
        buf.extend_from_slice(&wire[at..at + piece]);
        at += piece;
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    if let Some(needed) = decoder.bytes_needed(buf.len()) {
                        assert!(needed > 0, "a complete frame was left undecoded");
                    }
                    break;
                }
                Err(err) => {
                    // An error is final: the rest of the input is not looked at.
                    buf.extend_from_slice(&wire[at..]);
                    return Outcome { frames, error: Some(err), left: buf.len() };
                }
            }
        }
    }
    Outcome { frames, error: None, left: buf.len() }
}

fn check_frame(frame: &DecodedFrame, role: Role, max: usize, allow_rsv1: bool) {
    let h = frame.header;
    match role {
        Role::Server => assert!(frame.mask.is_some(), "server accepted an unmasked frame"),
        Role::Client => assert!(frame.mask.is_none(), "client accepted a masked frame"),
    }
    assert!(frame.payload.len() <= max, "frame of {} bytes over the limit {max}", frame.payload.len());
    if h.opcode.is_control() {
        assert!(h.fin, "fragmented control frame accepted");
        assert!(frame.payload.len() <= MAX_CONTROL_PAYLOAD, "long control frame accepted");
    }
    assert!(!h.rsv2 && !h.rsv3, "RSV2/RSV3 accepted");
    assert!(!h.rsv1 || (allow_rsv1 && !h.opcode.is_control()), "RSV1 accepted where not allowed");
}
