//! `frame_decode`: arbitrary bytes into the frame decoder, judged by a
//! reference decoder and a reference encoder written here by hand.
//!
//! Input layout: a control byte, a chunking byte, then the body.
//! - control bits 0-1: `max_frame_size` (1 MiB, 125, 0 or 4096), so the
//!   size limit is reached by short inputs too;
//! - control bit 2: RSV1 allowed (as once permessage-deflate is negotiated);
//! - the chunking byte and control bits 3-7 seed how the bytes are chunked
//!   ([`crate::chunks::plan`]; bits 0-1 of the chunking byte pick the mode).
//!
//! Both roles, and the body used two ways:
//!
//! 1. **As wire bytes.** Checked: no panic; every step agrees with
//!    [`reference_verdict`], an independent header parser (§5.2): a frame
//!    the reference finds valid and complete is returned with exactly the
//!    reference's header, key and hand-unmasked payload, consuming exactly
//!    its bytes; a valid but incomplete one is `Ok(None)`; an invalid one
//!    (masking rule, reserved opcode or bits, non-minimal or MSB-set
//!    length, control frame rules, size limit) is an error the reference
//!    also found; every frame re-encodes (`encode_frame` with its header,
//!    payload and key) to exactly its bytes; `Ok(None)` consumes nothing;
//!    the bytes delivered in pieces decode to the same frames and the same
//!    final error as delivered at once.
//! 2. **As a recipe** for [`reference_stream`]: frames with fuzz-chosen
//!    FIN, RSV1, opcode, length class, key and payload, made valid for the
//!    role and limits (§5.1 masking, §5.2 minimal lengths, §5.5 control
//!    frames, RSV1 only when allowed and on data frames, at most
//!    `max_frame_size`), with headers built and payloads masked by hand.
//!    Checked: the decoder accepts all of them, whole and in pieces, as
//!    exactly those frames, with nothing left over and no error.

use blaze_proto::bytes::{Bytes, BytesMut};
use blaze_proto::frame::{encode_frame, DecodedFrame, FrameDecoder, FrameHeader, OpCode, Role, MAX_CONTROL_PAYLOAD};
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

/// The reference stream stops growing past this many bytes (a 64-bit
/// length needs more than 64 KiB), so one input stays fast.
const MAX_REFERENCE_BYTES: usize = 128 * 1024;
/// ... or this many frames.
const MAX_REFERENCE_FRAMES: usize = 256;
/// A long reference stream is delivered in at most this many pieces
/// (byte by byte through a 64 KiB payload would cost a millisecond per
/// input and tell nothing new).
const MAX_REFERENCE_PIECES: usize = 2048;

/// `plan` with neighbouring pieces joined until there are at most `max`.
fn at_most(plan: Vec<usize>, max: usize) -> Vec<usize> {
    if plan.len() <= max {
        return plan;
    }
    let least = plan.iter().sum::<usize>().div_ceil(max);
    let mut out = Vec::new();
    let mut run = 0;
    for piece in plan {
        run += piece;
        if run >= least {
            out.push(std::mem::take(&mut run));
        }
    }
    if run > 0 {
        out.push(run);
    }
    out
}

pub fn frame_decode(data: &[u8]) {
    let [ctl, chunking, body @ ..] = data else { return };
    let max_frame_size = match ctl & 3 {
        0 => 1 << 20,
        1 => MAX_CONTROL_PAYLOAD,
        2 => 0,
        _ => 4096,
    };
    let allow_rsv1 = ctl & 4 != 0;
    let seed = [*chunking, ctl >> 3];
    let plan = chunks::plan(&seed, body.len());
    for role in [Role::Server, Role::Client] {
        let decoder = || {
            let mut d = FrameDecoder::new(role, max_frame_size);
            d.allow_rsv1(allow_rsv1);
            d
        };
        // 1. The body as wire bytes.
        let whole = decode_whole(decoder(), role, max_frame_size, allow_rsv1, body);
        let pieces = decode_in_pieces(decoder(), body, &plan);
        assert_eq!(whole, pieces, "{role:?}: chunking {plan:?} changed what was decoded");

        // 2. The body as a recipe of valid frames, encoded by hand.
        let (stream, frames) = reference_stream(body, role, max_frame_size, allow_rsv1);
        let expected = Outcome { frames, error: None, left: 0 };
        let whole = decode_whole(decoder(), role, max_frame_size, allow_rsv1, &stream);
        assert_eq!(whole, expected, "{role:?}: valid frames (max {max_frame_size}, rsv1 {allow_rsv1}) not decoded as built");
        let stream_plan = at_most(chunks::plan(&seed, stream.len()), MAX_REFERENCE_PIECES);
        let pieces = decode_in_pieces(decoder(), &stream, &stream_plan);
        assert_eq!(pieces, expected, "{role:?}: valid frames in pieces {stream_plan:?} not decoded as built");
    }
}

fn decode_whole(mut decoder: FrameDecoder, role: Role, max: usize, allow_rsv1: bool, wire: &[u8]) -> Outcome {
    let mut buf = BytesMut::from(wire);
    let mut frames = Vec::new();
    let mut offset = 0;
    loop {
        let before = buf.len();
        let verdict = reference_verdict(&wire[offset..], role, max, allow_rsv1);
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                let consumed = before - buf.len();
                let Verdict::Valid { header, mask, header_len, len } = verdict else {
                    panic!("{role:?}: decoded {frame:?} from bytes the reference judges {verdict:?}")
                };
                assert_eq!(consumed, header_len + len, "{role:?}: frame consumed {consumed} bytes, the reference {header_len} + {len}");
                assert_eq!((frame.header, frame.mask), (header, mask), "{role:?}: header decoded differently from the reference");
                let unmasked = unmask(&wire[offset + header_len..offset + consumed], mask);
                assert_eq!(&frame.payload[..], &unmasked[..], "{role:?}: payload unmasked differently from the reference");
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
                match &verdict {
                    Verdict::Incomplete(_) => {}
                    Verdict::Valid { header_len, len, .. } if header_len + len > before => {}
                    _ => panic!("{role:?}: Ok(None) for {before} bytes the reference judges {verdict:?}"),
                }
                return Outcome { frames, error: None, left: buf.len() };
            }
            Err(err) => {
                match &verdict {
                    Verdict::Invalid(found) | Verdict::Incomplete(found) if found.contains(&err) => {}
                    _ => panic!("{role:?}: refused with {err:?} bytes the reference judges {verdict:?}"),
                }
                return Outcome { frames, error: Some(err), left: buf.len() };
            }
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

// ---- the reference ------------------------------------------------------

/// What RFC 6455 §5.2 makes of the frame at the front of some bytes, for a
/// decoder of `role` with the given limit. Written from the RFC, sharing
/// no code with blaze-proto's decoder.
#[derive(Debug)]
enum Verdict {
    /// The header is not all there yet; the errors already visible in what
    /// is (a decoder may report one of them now, or wait).
    Incomplete(Vec<ProtocolError>),
    /// The length is known and the frame breaks these rules.
    Invalid(Vec<ProtocolError>),
    /// A valid header; the frame is complete once `header_len + len` bytes
    /// are there.
    Valid { header: FrameHeader, mask: Option<[u8; 4]>, header_len: usize, len: usize },
}

fn reference_verdict(b: &[u8], role: Role, max: usize, allow_rsv1: bool) -> Verdict {
    let mut bad = Vec::new();
    let [b0, b1, rest @ ..] = b else { return Verdict::Incomplete(bad) };
    let (fin, rsv1, rsv2, rsv3, op) = (b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x20 != 0, b0 & 0x10 != 0, b0 & 0x0f);
    // §5.2: 0x3-0x7 and 0xB-0xF are reserved; 0x8 and up are control frames.
    let control = op & 0x8 != 0;
    let opcode = match op {
        0x0 => Some(OpCode::Continuation),
        0x1 => Some(OpCode::Text),
        0x2 => Some(OpCode::Binary),
        0x8 => Some(OpCode::Close),
        0x9 => Some(OpCode::Ping),
        0xA => Some(OpCode::Pong),
        _ => None,
    };
    if opcode.is_none() {
        bad.push(ProtocolError::ReservedOpcode(op));
    }
    // RSV1 only as permessage-deflate defines it (RFC 7692 §6: data frames).
    if rsv2 || rsv3 || (rsv1 && !(allow_rsv1 && !control)) {
        bad.push(ProtocolError::ReservedBits);
    }
    // §5.1: clients mask, servers do not.
    let masked = b1 & 0x80 != 0;
    match (role, masked) {
        (Role::Server, false) => bad.push(ProtocolError::UnmaskedClientFrame),
        (Role::Client, true) => bad.push(ProtocolError::MaskedServerFrame),
        _ => {}
    }
    // §5.2: 7 bits, or 126 and 16 bits, or 127 and 63 bits; the minimal one.
    let (len, ext): (u64, usize) = match b1 & 0x7f {
        126 => {
            let [x0, x1, ..] = rest else { return Verdict::Incomplete(bad) };
            let len = u64::from(*x0) << 8 | u64::from(*x1);
            if len <= 125 {
                bad.push(ProtocolError::NonMinimalLength);
            }
            (len, 2)
        }
        127 => {
            let Some(x) = rest.get(..8) else { return Verdict::Incomplete(bad) };
            let len = x.iter().fold(0u64, |acc, &d| acc << 8 | u64::from(d));
            if len >> 63 != 0 {
                bad.push(ProtocolError::LengthMsbSet);
            } else if len <= 0xffff {
                bad.push(ProtocolError::NonMinimalLength);
            }
            (len, 8)
        }
        short => (u64::from(short), 0),
    };
    // §5.5: control frames are not fragmented and carry at most 125 bytes.
    if control {
        if !fin {
            bad.push(ProtocolError::FragmentedControlFrame);
        }
        if len > 125 {
            bad.push(ProtocolError::ControlFrameTooLong);
        }
    }
    if len > max as u64 {
        bad.push(ProtocolError::FrameTooLarge { size: len, max });
    }
    if !bad.is_empty() {
        return Verdict::Invalid(bad);
    }
    let header_len = 2 + ext + if masked { 4 } else { 0 };
    if b.len() < header_len {
        return Verdict::Incomplete(bad);
    }
    let mask = masked.then(|| [b[2 + ext], b[3 + ext], b[4 + ext], b[5 + ext]]);
    let header = FrameHeader { fin, rsv1, rsv2, rsv3, opcode: opcode.expect("checked above") };
    Verdict::Valid { header, mask, header_len, len: len as usize }
}

fn unmask(bytes: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    match key {
        Some(k) => bytes.iter().enumerate().map(|(i, b)| b ^ k[i % 4]).collect(),
        None => bytes.to_vec(),
    }
}

/// Reads a recipe byte by byte; zeros once it runs out.
struct Recipe<'a>(&'a [u8]);

impl Recipe<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

/// Valid frames built from `recipe`, as the peer of a `role` decoder
/// would send them, and the frames the decoder must return for them.
///
/// Per frame: a byte with FIN (bit 7), RSV1 (bit 6), the length class
/// (bits 3-5) and the opcode (bits 0-2, mod 6); a length byte (classes
/// 0-4: 0..=127; 5: 126..=1146, a 16-bit length; 6: a boundary value of
/// the 7-, 16- and 64-bit encodings or the 4096 limit; 7: 64 KiB and up,
/// a 64-bit length); the masking key (four bytes, from
/// a client only); a fill byte; then the payload, taken from the recipe
/// and filled in from the fill byte when the recipe runs short. The
/// fields are then made valid: control frames get FIN and at most 125
/// bytes, RSV1 stays only where allowed, the length at most `max`.
/// Headers are built and payloads masked here, not by `encode_frame`.
pub fn reference_stream(recipe: &[u8], role: Role, max: usize, allow_rsv1: bool) -> (Vec<u8>, Vec<DecodedFrame>) {
    const OPCODES: [(OpCode, u8); 6] = [
        (OpCode::Continuation, 0x0),
        (OpCode::Text, 0x1),
        (OpCode::Binary, 0x2),
        (OpCode::Close, 0x8),
        (OpCode::Ping, 0x9),
        (OpCode::Pong, 0xA),
    ];
    // A server decodes what a client sends: masked; a client, unmasked.
    let masked = role == Role::Server;
    let mut r = Recipe(recipe);
    let mut wire = Vec::new();
    let mut frames = Vec::new();
    while !r.0.is_empty() && frames.len() < MAX_REFERENCE_FRAMES && wire.len() < MAX_REFERENCE_BYTES {
        let f = r.byte();
        let (opcode, bits) = OPCODES[usize::from(f & 7) % 6];
        let control = bits & 0x8 != 0;
        let fin = f & 0x80 != 0 || control;
        let rsv1 = f & 0x40 != 0 && allow_rsv1 && !control;
        let mut len = match (f >> 3) & 7 {
            0..=4 => usize::from(r.byte() & 0x7f),
            5 => 126 + usize::from(r.byte()) * 4,
            6 => [0, 1, 125, 126, 127, 4095, 4096, 4097, 65_535, 65_536, 65_537][usize::from(r.byte()) % 11],
            _ => 65_536 + usize::from(r.byte()) * 16,
        };
        if control && len > 125 {
            len %= 126;
        }
        len = len.min(max).min(MAX_REFERENCE_BYTES);
        let key = masked.then(|| [r.byte(), r.byte(), r.byte(), r.byte()]);
        let fill = r.byte();
        let mut payload = r.take(len).to_vec();
        while payload.len() < len {
            payload.push(fill.wrapping_add((payload.len() as u8).wrapping_mul(31)));
        }

        wire.push(u8::from(fin) << 7 | u8::from(rsv1) << 6 | bits);
        let mask_bit = if masked { 0x80 } else { 0 };
        if len <= 125 {
            wire.push(mask_bit | len as u8);
        } else if len <= 0xffff {
            wire.extend([mask_bit | 126, (len >> 8) as u8, len as u8]);
        } else {
            wire.push(mask_bit | 127);
            wire.extend((0..8).rev().map(|i| ((len as u64) >> (8 * i)) as u8));
        }
        match key {
            Some(k) => {
                wire.extend(k);
                wire.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => wire.extend(&payload),
        }
        let header = FrameHeader { fin, rsv1, rsv2: false, rsv3: false, opcode };
        frames.push(DecodedFrame { header, mask: key, payload: Bytes::from(payload) });
    }
    (wire, frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC 6455 §5.7 examples come out of the reference encoder byte
    /// for byte.
    #[test]
    fn reference_encoder_matches_rfc_examples() {
        // Unmasked "Hello": FIN, text, class 0, length 5, fill, payload.
        let (wire, frames) = reference_stream(&[0x81, 5, 0, b'H', b'e', b'l', b'l', b'o'], Role::Client, 1 << 20, false);
        assert_eq!(wire, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(frames.len(), 1);
        // Masked "Hello" with the RFC key.
        let recipe = [0x81, 5, 0x37, 0xfa, 0x21, 0x3d, 0, b'H', b'e', b'l', b'l', b'o'];
        let (wire, _) = reference_stream(&recipe, Role::Server, 1 << 20, false);
        assert_eq!(wire, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        // 254 bytes unmasked (class 5): a 16-bit length; 64 KiB: a 64-bit one.
        let (wire, _) = reference_stream(&[0xaa, 32, 7], Role::Client, 1 << 20, false);
        assert_eq!(&wire[..4], [0x82, 0x7e, 0x00, 0xfe]);
        assert_eq!(wire.len(), 4 + 254);
        let (wire, _) = reference_stream(&[0xba, 0, 7], Role::Client, 1 << 20, false);
        assert_eq!(&wire[..10], [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn reference_verdict_refuses_what_the_rfc_refuses() {
        let v = |b: &[u8], role| reference_verdict(b, role, 1 << 20, false);
        assert!(matches!(v(&[0x81, 0x00], Role::Server), Verdict::Invalid(e) if e == [ProtocolError::UnmaskedClientFrame]));
        assert!(matches!(v(&[0x83, 0x00], Role::Client), Verdict::Invalid(e) if e == [ProtocolError::ReservedOpcode(3)]));
        assert!(matches!(v(&[0x82, 0x7e, 0, 5], Role::Client), Verdict::Invalid(e) if e == [ProtocolError::NonMinimalLength]));
        assert!(matches!(v(&[0x09, 0x00], Role::Client), Verdict::Invalid(e) if e == [ProtocolError::FragmentedControlFrame]));
        assert!(matches!(v(&[0x82, 0x7e, 1], Role::Client), Verdict::Incomplete(e) if e.is_empty()));
        assert!(matches!(v(&[0x81, 0x85, 1, 2], Role::Server), Verdict::Incomplete(e) if e.is_empty()));
        assert!(matches!(v(&[0x81, 0x05, 1], Role::Client), Verdict::Valid { header_len: 2, len: 5, mask: None, .. }));
    }
}
