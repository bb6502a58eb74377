//! RFC 7692 permessage-deflate as a `Connection` runs it: compressed
//! messages both ways under every parameter, the inbound rules (RSV bits,
//! corrupt data, UTF-8 found while inflating), compression bombs, the order
//! of events before a failure, and broadcasts compressed once.
//!
//! Compressed input is built with `flate2` directly (see `common::RawDeflate`),
//! and what our encoder writes is inflated with `flate2` directly too, so
//! neither direction is only checked against itself.

mod common;

use std::sync::OnceLock;
use std::time::Instant;

use blaze_proto::bytes::BytesMut;
use blaze_proto::deflate::{CompressionMode, DeflateConfig, DeflateParams};
use blaze_proto::frame::{DecodedFrame, FrameHeader, OpCode, Role};
use blaze_proto::handshake::parse_extensions;
use blaze_proto::{CloseCause, Connection, Event, Message, PreparedMessage, ProtocolError, State};
use common::*;
use flate2::{Decompress, FlushCompress, FlushDecompress, Status};
use OpCode::{Binary, Continuation, Ping, Text};

// ---- helpers -----------------------------------------------------------

/// The first header byte of a decoded frame, as it was on the wire.
fn b0(frame: &DecodedFrame) -> u8 {
    let h = frame.header;
    (h.fin as u8) << 7 | (h.rsv1 as u8) << 6 | (h.rsv2 as u8) << 5 | (h.rsv3 as u8) << 4 | h.opcode.as_u8()
}

/// Pseudo-random printable ASCII (incompressible-ish on its own).
fn noise(len: usize, seed: u32) -> String {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (b'!' + (x % 90) as u8) as char
        })
        .collect()
}

/// Text whose repeats are 600 bytes apart: a 9-bit window cannot reach
/// them, a 15-bit one can, so an inflater with too small a window fails.
fn far_repeats(seed: u32) -> String {
    noise(600, seed).repeat(3)
}

/// Inflates what our encoder wrote, with flate2 and the negotiated window.
/// Output comes out in small pieces, so back-references are read from the
/// inflater's window, not from an output buffer holding the whole message:
/// data made with a larger window than negotiated fails here.
struct RawInflate {
    bits: u8,
    no_context: bool,
    state: Decompress,
}

impl RawInflate {
    fn new(bits: u8, no_context: bool) -> RawInflate {
        RawInflate { bits, no_context, state: Decompress::new_with_window_bits(false, bits) }
    }

    /// The side of `params` a receiver of `sender`'s messages inflates.
    fn for_sender(params: &DeflateParams, sender: Role) -> RawInflate {
        let (bits, no_context) = match sender {
            Role::Server => (params.server_max_window_bits, params.server_no_context_takeover),
            Role::Client => (params.client_max_window_bits, params.client_no_context_takeover),
        };
        RawInflate::new(bits.unwrap_or(15).max(9), no_context)
    }

    fn message(&mut self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let mut input = payload.to_vec();
        input.extend_from_slice(&SYNC_TAIL);
        let mut out = Vec::new();
        let mut piece = [0u8; 97];
        let mut consumed = 0;
        loop {
            let (in0, out0) = (self.state.total_in(), self.state.total_out());
            let status =
                self.state.decompress(&input[consumed..], &mut piece, FlushDecompress::Sync).map_err(|e| e.to_string())?;
            consumed += (self.state.total_in() - in0) as usize;
            let produced = (self.state.total_out() - out0) as usize;
            out.extend_from_slice(&piece[..produced]);
            if status == Status::StreamEnd {
                return Err("unexpected BFINAL block from our encoder".into());
            }
            if consumed == input.len() && produced < piece.len() {
                break;
            }
            if produced == 0 && self.state.total_in() == in0 {
                return Err("no progress".into());
            }
        }
        if self.no_context {
            self.state = Decompress::new_with_window_bits(false, self.bits);
        }
        Ok(out)
    }
}

fn assert_closed_with(events: &[Event], code: u16, cause: Option<ProtocolError>) {
    let info = closed_in(events);
    assert_eq!(info.code.0, code, "{events:?}");
    if let Some(cause) = cause {
        assert_eq!(info.cause, CloseCause::Protocol(cause), "{events:?}");
    }
}

/// Feeds one read and checks it failed the connection with `code` (and
/// `cause`), delivering no message, with a close frame of `code` on the wire.
fn assert_fails(s: &mut Connection, wire: &[u8], now: Instant, code: u16, cause: Option<ProtocolError>) {
    let events = feed(s, wire, now);
    assert_closed_with(&events, code, cause);
    assert!(!events.iter().any(|e| matches!(e, Event::Message(_))), "{events:?}");
    assert_eq!(s.state(), State::Closed);
    let sender = s.role();
    assert_eq!(last_close(sender, &take_output(s)).map(|c| c.0), Some(code));
}

fn server_with_deflate() -> (Connection, Instant) {
    deflate_server(quiet(), &no_context_params(), &DeflateConfig::default())
}

fn context_params() -> DeflateParams {
    DeflateParams::default()
}

fn msg_text(s: &str) -> Event {
    Event::Message(Message::text(s))
}

// ---- 1. compressed messages both ways ----------------------------------

/// A deflate pair and, per direction, a flate2 inflater following the
/// sender's context.
struct Link {
    pair: Pair,
    params: DeflateParams,
    s2c: RawInflate,
    c2s: RawInflate,
}

impl Link {
    fn new(params: &DeflateParams, server: &DeflateConfig, client: &DeflateConfig) -> Link {
        Link {
            pair: deflate_pair(params, server, client),
            params: *params,
            s2c: RawInflate::for_sender(params, Role::Server),
            c2s: RawInflate::for_sender(params, Role::Client),
        }
    }

    /// Sends `messages` (message, use `send_uncompressed`) from one end and
    /// checks the wire (RSV1 exactly where expected, our payload inflating
    /// with flate2 to the message) and what the other end receives.
    fn exchange(&mut self, from_server: bool, messages: &[(Message, bool)], threshold: usize, what: &str) {
        let bits = if from_server { self.params.server_max_window_bits } else { self.params.client_max_window_bits };
        let compresses = bits.unwrap_or(15) >= 9;
        let pair = &mut self.pair;
        let (sender, receiver, inflate) = if from_server {
            (&mut pair.server, &mut pair.client, &mut self.s2c)
        } else {
            (&mut pair.client, &mut pair.server, &mut self.c2s)
        };
        for (message, plain) in messages {
            if *plain {
                sender.send_uncompressed(message.clone()).unwrap();
            } else {
                sender.send(message.clone()).unwrap();
            }
        }
        let wire = take_output(sender);
        let frames = check_stream_deflate(sender.role(), &wire);
        assert_eq!(frames.len(), messages.len(), "{what}");
        for ((message, plain), frame) in messages.iter().zip(&frames) {
            let compressed = !plain && compresses && message.len() >= threshold;
            let opcode = if message.as_text().is_some() { 0x1 } else { 0x2 };
            let expected_b0 = if compressed { 0xC0 | opcode } else { 0x80 | opcode };
            assert_eq!(b0(frame), expected_b0, "{what}: first byte for a {}-byte message (plain {plain})", message.len());
            if compressed {
                let inflated =
                    inflate.message(&frame.payload).unwrap_or_else(|e| panic!("{what}: flate2 cannot inflate: {e}"));
                assert_eq!(&inflated[..], message.as_bytes(), "{what}");
            } else {
                assert_eq!(&frame.payload[..], message.as_bytes(), "{what}");
            }
        }
        let received = feed(receiver, &wire, pair.now);
        let expected: Vec<Event> = messages.iter().map(|(m, _)| Event::Message(m.clone())).collect();
        assert_eq!(received, expected, "{what}");
        assert!(receiver.is_open(), "{what}");
        assert_eq!(receiver.buffered_bytes(), 0, "{what}");
    }
}

fn sample_messages() -> Vec<(Message, bool)> {
    vec![
        (Message::text(far_repeats(1)), false),
        (Message::binary(far_repeats(2).into_bytes()), false),
        (Message::text("x".repeat(63)), false),
        (Message::text("y".repeat(64)), false),
        (Message::text(far_repeats(1)), false),
        (Message::binary(noise(3000, 3).into_bytes()), true),
        (Message::text(far_repeats(4)), true),
        (Message::text("κόσμε 𝄞 ".repeat(40)), false),
        (Message::binary(vec![0u8; 10]), false),
        (Message::binary(far_repeats(2).into_bytes()), false),
    ]
}

#[test]
fn every_parameter_combination_round_trips_both_ways() {
    let windows: Vec<Option<u8>> = std::iter::once(None).chain((9..=15).map(Some)).collect();
    for mode in [CompressionMode::Shared, CompressionMode::Dedicated] {
        let config = DeflateConfig::default().mode(mode);
        for server_nct in [false, true] {
            for client_nct in [false, true] {
                for &server_bits in &windows {
                    for &client_bits in &windows {
                        let params = DeflateParams {
                            server_no_context_takeover: server_nct,
                            client_no_context_takeover: client_nct,
                            server_max_window_bits: server_bits,
                            client_max_window_bits: client_bits,
                        };
                        let what = format!("{mode:?} {params:?}");
                        let mut link = Link::new(&params, &config, &config);
                        assert!(link.pair.server.is_deflate_enabled() && link.pair.client.is_deflate_enabled());
                        let messages = sample_messages();
                        link.exchange(true, &messages, 64, &format!("s->c {what}"));
                        link.exchange(false, &messages, 64, &format!("c->s {what}"));
                        // And once more each way, on top of the contexts so far.
                        link.exchange(true, &messages[..3], 64, &format!("s->c 2 {what}"));
                        link.exchange(false, &messages[..3], 64, &format!("c->s 2 {what}"));
                    }
                }
            }
        }
    }
}

#[test]
fn negotiated_params_round_trip_for_every_mode_and_window() {
    for mode in [CompressionMode::Shared, CompressionMode::Dedicated] {
        for bits in 9..=15 {
            let config = DeflateConfig::default().mode(mode).window_bits(bits);
            let offer = parse_extensions(&DeflateParams::offer(&config));
            let params = DeflateParams::negotiate(&offer, &config).expect("our offer is accepted");
            let back = DeflateParams::from_response(&offer, &parse_extensions(&params.to_header())).unwrap().unwrap();
            assert_eq!(back, params);
            let mut link = Link::new(&params, &config, &config);
            let what = format!("{mode:?} {bits} {params:?}");
            let messages = sample_messages();
            for _ in 0..2 {
                link.exchange(true, &messages, 64, &what);
                link.exchange(false, &messages, 64, &what);
            }
        }
    }
}

#[test]
fn wire_bytes_mark_exactly_the_compressed_messages() {
    let params = no_context_params();
    let mut pair = deflate_pair(&params, &DeflateConfig::default(), &DeflateConfig::default());
    let big = "abc".repeat(100);
    pair.server.send(Message::text(big.clone())).unwrap();
    pair.server.send(Message::binary(big.clone().into_bytes())).unwrap();
    pair.server.send(Message::text("z".repeat(63))).unwrap();
    pair.server.send(Message::binary(vec![1; 63])).unwrap();
    pair.server.send(Message::text("z".repeat(64))).unwrap();
    pair.server.send_uncompressed(Message::text(big.clone())).unwrap();
    pair.server.send_uncompressed(Message::binary(big.clone().into_bytes())).unwrap();
    pair.server.ping(b"still plain").unwrap();
    let wire = take_output(&mut pair.server);
    let frames = check_stream_deflate(Role::Server, &wire);
    let firsts: Vec<u8> = frames.iter().map(b0).collect();
    assert_eq!(firsts, [0xC1, 0xC2, 0x81, 0x82, 0xC1, 0x81, 0x82, 0x89]);
    // The raw bytes too: the first frame starts the stream.
    assert_eq!(wire[0], 0xC1);
    assert!(frames[0].payload.len() < big.len() / 4, "300 bytes of 'abc' compress well");
    assert_eq!(&frames[5].payload[..], big.as_bytes());

    // The client masks its compressed frames: 0xC1 then the mask bit.
    pair.client.send(Message::text(big.clone())).unwrap();
    pair.client.send_uncompressed(Message::binary(big.clone().into_bytes())).unwrap();
    let wire = take_output(&mut pair.client);
    assert_eq!(wire[0], 0xC1);
    assert_eq!(wire[1] & 0x80, 0x80);
    let frames = check_stream_deflate(Role::Client, &wire);
    assert_eq!(frames.iter().map(b0).collect::<Vec<_>>(), [0xC1, 0x82]);
    let received = feed(&mut pair.server, &wire, pair.now);
    assert_eq!(received, [msg_text(&big), Event::Message(Message::binary(big.into_bytes()))]);
}

#[test]
fn threshold_zero_compresses_even_the_empty_message() {
    let config = DeflateConfig::default().threshold(0);
    let mut link = Link::new(&no_context_params(), &config, &config);
    for message in [Message::text("x"), Message::text(""), Message::binary(Vec::new()), Message::text("a")] {
        link.pair.server.send(message.clone()).unwrap();
        let wire = take_output(&mut link.pair.server);
        assert_eq!(wire[0] & 0x40, 0x40, "RSV1 on a compressed {}-byte message", message.len());
        assert_eq!(feed(&mut link.pair.client, &wire, link.pair.now), [Event::Message(message)]);
    }
    link.exchange(true, &sample_messages(), 0, "after empties");
}

#[test]
// Regression: zlib emits nothing for a second sync flush with no input; an
// empty message must still go out as a whole (empty) block.
fn empty_messages_with_context_takeover_round_trip() {
    let config = DeflateConfig::default().threshold(0).mode(CompressionMode::Dedicated);
    let mut link = Link::new(&context_params(), &config, &config);
    let messages = [
        (Message::text("x"), false),
        (Message::text(""), false),
        (Message::binary(Vec::new()), false),
        (Message::text("a"), false),
        (Message::text(""), false),
    ];
    link.exchange(true, &messages, 0, "s->c");
    link.exchange(false, &messages, 0, "c->s");
    link.exchange(true, &sample_messages(), 0, "s->c after empties");
    link.exchange(false, &sample_messages(), 0, "c->s after empties");
}

#[test]
fn a_peer_limited_to_an_8_bit_window_gets_everything_uncompressed() {
    // zlib cannot write window-8 streams; compressing is optional (§6).
    let params = DeflateParams { server_max_window_bits: Some(8), ..no_context_params() };
    let mut link = Link::new(&params, &DeflateConfig::default(), &DeflateConfig::default());
    let messages = sample_messages();
    link.exchange(true, &messages, 64, "server window 8");
    // The client still compresses, and the server still inflates.
    link.exchange(false, &messages, 64, "client window 15");
    // A client limited to 8 bits: it sends plain, and the server inflates
    // window-8 streams (made by another implementation) with a 9-bit window.
    let params = DeflateParams { client_max_window_bits: Some(8), ..no_context_params() };
    let mut link = Link::new(&params, &DeflateConfig::default(), &DeflateConfig::default());
    link.exchange(false, &messages, 64, "client window 8");
    let pair = &mut link.pair;
    let wire = client_frame_with(hdr(Text, true, true), &RawDeflate::with_window(6, 9).message(b"from a tiny window, tiny window"));
    assert_eq!(feed(&mut pair.server, &wire, pair.now), [msg_text("from a tiny window, tiny window")]);
}

#[test]
fn context_takeover_shrinks_the_second_identical_message_in_dedicated_mode_only() {
    // 200 noisy bytes: poor on their own, a single back-reference the second
    // time, within reach of even a 9-bit window (distance < 250).
    let text = noise(200, 7);
    for mode in [CompressionMode::Shared, CompressionMode::Dedicated] {
        for bits in 9..=15 {
            let config = DeflateConfig::default().mode(mode).window_bits(bits);
            let offer = parse_extensions(&DeflateParams::offer(&config));
            let params = DeflateParams::negotiate(&offer, &config).unwrap();
            let mut pair = deflate_pair(&params, &config, &config);
            for from_server in [true, false] {
                let (sender, receiver) =
                    if from_server { (&mut pair.server, &mut pair.client) } else { (&mut pair.client, &mut pair.server) };
                let mut sizes = Vec::new();
                let mut payloads = Vec::new();
                for _ in 0..3 {
                    sender.send(Message::text(text.clone())).unwrap();
                    let wire = take_output(sender);
                    let frames = check_stream_deflate(sender.role(), &wire);
                    assert_eq!(b0(&frames[0]), 0xC1);
                    sizes.push(frames[0].payload.len());
                    payloads.push(frames[0].payload.clone());
                    assert_eq!(feed(receiver, &wire, pair.now), [msg_text(&text)]);
                }
                let what = format!("{mode:?} bits {bits} from_server {from_server}: sizes {sizes:?}");
                match mode {
                    CompressionMode::Dedicated => {
                        assert!(sizes[1] < sizes[0] / 4, "{what}");
                        assert!(sizes[2] < sizes[0] / 4, "{what}");
                    }
                    _ => {
                        assert_eq!(sizes[0], sizes[1], "{what}");
                        assert_eq!(sizes[1], sizes[2], "{what}");
                        assert_eq!(payloads[0], payloads[1], "{what}: no context, same bytes");
                    }
                }
            }
        }
    }
}

#[test]
fn an_uncompressed_message_between_compressed_ones_leaves_the_context_alone() {
    let config = DeflateConfig::default().mode(CompressionMode::Dedicated);
    let mut link = Link::new(&context_params(), &config, &config);
    let text = noise(300, 9);
    let messages =
        [(Message::text(text.clone()), false), (Message::text(text.clone()), true), (Message::text(text.clone()), false)];
    link.exchange(true, &messages, 64, "s->c");
    link.exchange(false, &messages, 64, "c->s");
}

// ---- 2. inbound rules --------------------------------------------------

#[test]
fn rsv1_on_a_continuation_frame_is_1002() {
    let data = deflate_message(noise(100, 1).as_bytes());
    let (a, b) = data.split_at(data.len() / 2);
    let cases = [
        // A compressed message whose continuation also carries RSV1.
        concat(&[client_frame_with(hdr(Text, false, true), a), client_frame_with(hdr(Continuation, true, true), b)]),
        // An uncompressed message with RSV1 on its continuation.
        concat(&[client_frame(Text, false, b"plain "), client_frame_with(hdr(Continuation, true, true), &data)]),
        concat(&[client_frame(Binary, false, b"plain "), client_frame_with(hdr(Continuation, false, true), &data)]),
    ];
    for wire in cases {
        let (mut s, now) = server_with_deflate();
        assert_fails(&mut s, &wire, now, 1002, Some(ProtocolError::ReservedBits));
    }
    // Fed in pieces: the continuation's header alone is enough.
    let (mut s, now) = server_with_deflate();
    let cont = client_frame_with(hdr(Continuation, true, true), b);
    assert!(feed(&mut s, &client_frame_with(hdr(Text, false, true), a), now).is_empty());
    assert_fails(&mut s, &cont[..cont.len() - 1], now, 1002, Some(ProtocolError::ReservedBits));
}

#[test]
fn rsv1_on_a_control_frame_is_1002() {
    for opcode in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        let payload = if opcode == OpCode::Close { close_payload(1000, b"") } else { b"x".to_vec() };
        let (mut s, now) = server_with_deflate();
        assert_fails(&mut s, &client_frame_with(hdr(opcode, true, true), &payload), now, 1002, Some(ProtocolError::ReservedBits));
        // Not answered: no pong went out (assert_fails took the output,
        // which held only the close frame).
    }
    // Between the fragments of a compressed message, too.
    let data = deflate_message(b"Hello Hello Hello Hello");
    let (mut s, now) = server_with_deflate();
    let wire = concat(&[client_frame_with(hdr(Text, false, true), &data), client_frame_with(hdr(Ping, true, true), b"")]);
    assert_fails(&mut s, &wire, now, 1002, Some(ProtocolError::ReservedBits));
}

#[test]
fn rsv2_and_rsv3_are_1002_with_deflate_on() {
    let data = deflate_message(b"Hello");
    for opcode in [Text, Binary, Ping] {
        for (rsv1, rsv2, rsv3) in [(false, true, false), (false, false, true), (true, true, false), (true, false, true)] {
            if opcode == Ping && rsv1 {
                continue;
            }
            let header = FrameHeader { fin: true, rsv1, rsv2, rsv3, opcode };
            let (mut s, now) = server_with_deflate();
            assert_fails(&mut s, &client_frame_with(header, &data), now, 1002, Some(ProtocolError::ReservedBits));
        }
    }
    // On a continuation.
    let (mut s, now) = server_with_deflate();
    let header = FrameHeader { fin: true, rsv1: false, rsv2: true, rsv3: false, opcode: Continuation };
    let wire = concat(&[client_frame(Text, false, b"a"), client_frame_with(header, b"b")]);
    assert_fails(&mut s, &wire, now, 1002, Some(ProtocolError::ReservedBits));
}

#[test]
fn rsv1_without_deflate_negotiated_is_1002() {
    let data = deflate_message(b"Hello");
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, quiet(), now);
    assert!(!s.is_deflate_enabled());
    assert_fails(&mut s, &client_frame_with(hdr(Text, true, true), &data), now, 1002, Some(ProtocolError::ReservedBits));
    let mut c = Connection::new(Role::Client, quiet(), now);
    assert_fails(&mut c, &server_frame_with(hdr(Binary, true, true), &data), now, 1002, Some(ProtocolError::ReservedBits));
    // Fed a byte at a time (the header alone decides).
    let mut s = Connection::new(Role::Server, quiet(), now);
    assert_fails(&mut s, &client_frame_with(hdr(Text, false, true), &data)[..2], now, 1002, Some(ProtocolError::ReservedBits));
}

#[test]
fn corrupt_deflate_data_is_1002() {
    let mut bad_later = deflate_message(noise(300, 2).as_bytes());
    bad_later.extend_from_slice(&[0xff, 0xff, 0xff]);
    let cases: Vec<Vec<u8>> = vec![
        // BTYPE 11 (reserved).
        vec![0xff, 0xff, 0xff],
        vec![0x07],
        // A stored block whose NLEN is not LEN's complement.
        vec![0x01, 0x05, 0x00, 0x00, 0x00, b'H', b'e', b'l', b'l', b'o'],
        // A back-reference before the start of the stream (§7.2.3.2's
        // second message without the first).
        vec![0xf2, 0x00, 0x11, 0x00, 0x00],
        // Good data, then garbage.
        bad_later,
    ];
    for payload in cases {
        for opcode in [Text, Binary] {
            let (mut s, now) = server_with_deflate();
            let wire = client_frame_with(hdr(opcode, true, true), &payload);
            assert_fails(&mut s, &wire, now, 1002, Some(ProtocolError::InvalidCompressedData));
        }
        // Arriving in pieces and in fragments.
        let (mut s, now) = server_with_deflate();
        let (a, b) = payload.split_at(payload.len() / 2);
        let wire = concat(&[client_frame_with(hdr(Binary, false, true), a), client_frame(Continuation, true, b)]);
        assert_fails(&mut s, &wire, now, 1002, Some(ProtocolError::InvalidCompressedData));
    }
    // The client role, from a server.
    let now = Instant::now();
    let mut c = Connection::new(Role::Client, quiet(), now);
    c.enable_deflate(&no_context_params(), &DeflateConfig::default());
    assert_fails(&mut c, &server_frame_with(hdr(Text, true, true), &[0xff, 0xff]), now, 1002, Some(ProtocolError::InvalidCompressedData));
}

#[test]
fn invalid_utf8_inside_compressed_text_is_1007() {
    for bad in [&b"\xff"[..], b"abc\xe2\x82", b"hello \xed\xa0\x80 world", b"a\x80b"] {
        let (mut s, now) = server_with_deflate();
        let wire = client_frame_with(hdr(Text, true, true), &deflate_message(bad));
        assert_fails(&mut s, &wire, now, 1007, Some(ProtocolError::InvalidUtf8));
    }
    // Binary is not validated.
    let (mut s, now) = server_with_deflate();
    let wire = client_frame_with(hdr(Binary, true, true), &deflate_message(b"\xff\xfe"));
    assert_eq!(feed(&mut s, &wire, now), [Event::Message(Message::binary(&b"\xff\xfe"[..]))]);
    // A code point split across two compressed fragments is fine.
    let mut raw = RawDeflate::new(6);
    let a = raw.run("price \u{20ac}".as_bytes().split_at(7).0, FlushCompress::Sync);
    let b = raw.message(&"price \u{20ac}".as_bytes()[7..]);
    let (mut s, now) = server_with_deflate();
    let wire = concat(&[client_frame_with(hdr(Text, false, true), &a), client_frame(Continuation, true, &b)]);
    assert_eq!(feed(&mut s, &wire, now), [msg_text("price \u{20ac}")]);
}

#[test]
fn invalid_utf8_found_while_inflating_fails_before_the_last_fragment() {
    // The first fragment is sync-flushed: all of its text inflates from it.
    let mut raw = RawDeflate::new(6);
    let first = raw.run(b"all fine until here \xff and then", FlushCompress::Sync);
    let middle = raw.run(noise(500, 3).as_bytes(), FlushCompress::Sync);
    let last = raw.message(b" the end");
    let (mut s, now) = server_with_deflate();
    let events = feed(&mut s, &client_frame_with(hdr(Text, false, true), &first), now);
    assert_closed_with(&events, 1007, Some(ProtocolError::InvalidUtf8));
    assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(1007));
    // The rest is discarded.
    let rest = concat(&[client_frame(Continuation, false, &middle), client_frame(Continuation, true, &last)]);
    assert!(feed(&mut s, &rest, now).is_empty());
    assert!(!s.wants_write());

    // In a middle fragment: fails at that fragment.
    let mut raw = RawDeflate::new(6);
    let first = raw.run(b"all fine", FlushCompress::Sync);
    let middle = raw.run(b" still fine \xc3\x28 not any more", FlushCompress::Sync);
    let (mut s, now) = server_with_deflate();
    assert!(feed(&mut s, &client_frame_with(hdr(Text, false, true), &first), now).is_empty());
    let events = feed(&mut s, &client_frame(Continuation, false, &middle), now);
    assert_closed_with(&events, 1007, Some(ProtocolError::InvalidUtf8));
}

#[test]
fn a_compressed_message_in_one_byte_fragments_with_pings_between_arrives_whole() {
    let text = format!("{} and κόσμε", noise(80, 5).repeat(2));
    let data = deflate_message(text.as_bytes());
    let mut frames = Vec::new();
    let mut expected = Vec::new();
    for (i, byte) in data.iter().enumerate() {
        let opcode = if i == 0 { Text } else { Continuation };
        frames.push(client_frame_with(hdr(opcode, i == data.len() - 1, i == 0), &[*byte]));
        if i % 7 == 0 && i != data.len() - 1 {
            let p = format!("p{i}");
            frames.push(client_frame(Ping, true, p.as_bytes()));
            expected.push(Event::Ping(p.into_bytes().into()));
        }
    }
    expected.push(msg_text(&text));
    // All in one read, and frame by frame.
    for one_read in [true, false] {
        let (mut s, now) = server_with_deflate();
        let events = if one_read {
            feed(&mut s, &concat(&frames), now)
        } else {
            frames.iter().flat_map(|f| feed(&mut s, f, now)).collect()
        };
        assert_eq!(events, expected);
        let out = check_stream_deflate(Role::Server, &take_output(&mut s));
        let pongs: Vec<&[u8]> = out.iter().map(|f| {
            assert_eq!(f.header.opcode, OpCode::Pong);
            &f.payload[..]
        }).collect();
        let pings: Vec<&[u8]> = expected.iter().filter_map(|e| match e { Event::Ping(p) => Some(&p[..]), _ => None }).collect();
        assert_eq!(pongs, pings);
        assert!(s.is_open());
        assert_eq!(s.buffered_bytes(), 0);
    }
}

#[test]
fn empty_compressed_messages_are_empty_messages() {
    // §7.2.3.6: a single 0x00 (an empty stored block with the tail), or
    // nothing at all.
    for payload in [&[0x00u8][..], &[][..]] {
        for (opcode, expected) in [(Text, Message::text("")), (Binary, Message::binary(Vec::new()))] {
            let (mut s, now) = server_with_deflate();
            let events = feed(&mut s, &client_frame_with(hdr(opcode, true, true), payload), now);
            assert_eq!(events, [Event::Message(expected.clone())], "payload {payload:?}");
            assert!(s.is_open());
            // The next compressed message still decodes.
            let wire = client_frame_with(hdr(Text, true, true), &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
            assert_eq!(feed(&mut s, &wire, now), [msg_text("Hello")]);
        }
    }
    // An empty first fragment (nothing, or an empty sync-flushed block
    // with its tail kept), then the compressed rest.
    for empty in [&[][..], &[0x00, 0x00, 0x00, 0xff, 0xff][..]] {
        for opcode in [Text, Binary] {
            let (mut s, now) = server_with_deflate();
            let wire = concat(&[
                client_frame_with(hdr(opcode, false, true), empty),
                client_frame(Continuation, true, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            ]);
            let hello = if opcode == Text { Message::text("Hello") } else { Message::binary(&b"Hello"[..]) };
            assert_eq!(feed(&mut s, &wire, now), [Event::Message(hello)], "first fragment {empty:?}");
        }
    }
}

#[test]
fn an_empty_0x00_message_keeps_the_context_in_step() {
    let (mut s, now) = deflate_server(quiet(), &context_params(), &DeflateConfig::default().mode(CompressionMode::Dedicated));
    let wire = concat(&[
        client_frame_with(hdr(Text, true, true), &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
        client_frame_with(hdr(Text, true, true), &[0x00]),
        client_frame_with(hdr(Text, true, true), &[0xf2, 0x00, 0x11, 0x00, 0x00]),
    ]);
    assert_eq!(feed(&mut s, &wire, now), [msg_text("Hello"), msg_text(""), msg_text("Hello")]);
}

#[test]

fn an_empty_payload_message_with_context_takeover_does_not_break_the_next_message() {
    // An empty RSV1 payload inflates only the bare tail `00 00 ff ff`,
    // which is not a whole block. Either the message is accepted and the
    // context stays usable, or it is refused at once; delivering it and
    // then failing the next, valid, message is not acceptable.
    let (mut s, now) = deflate_server(quiet(), &context_params(), &DeflateConfig::default().mode(CompressionMode::Dedicated));
    let wire = concat(&[
        client_frame_with(hdr(Text, true, true), &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
        client_frame_with(hdr(Text, true, true), &[]),
        client_frame_with(hdr(Text, true, true), &[0xf2, 0x00, 0x11, 0x00, 0x00]),
    ]);
    let events = feed(&mut s, &wire, now);
    let accepted = events == [msg_text("Hello"), msg_text(""), msg_text("Hello")];
    let refused_at_once = events.len() == 2 && events[0] == msg_text("Hello") && closed_in(&events).code.0 == 1002;
    assert!(accepted || refused_at_once, "{events:?}");
}

#[test]
fn rfc7692_examples_decode() {
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    // §7.2.3.1: "Hello", one frame and two fragments.
    let (mut s, now) = server_with_deflate();
    assert_eq!(feed(&mut s, &client_frame_with(hdr(Text, true, true), &hello), now), [msg_text("Hello")]);
    let wire = concat(&[client_frame_with(hdr(Text, false, true), &hello[..3]), client_frame(Continuation, true, &hello[3..])]);
    assert_eq!(feed(&mut s, &wire, now), [msg_text("Hello")]);
    // §7.2.3.3: a stored (uncompressed) block.
    let stored = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00];
    assert_eq!(feed(&mut s, &client_frame_with(hdr(Text, true, true), &stored), now), [msg_text("Hello")]);
    // §7.2.3.5: a block with BFINAL set.
    let bfinal = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    assert_eq!(feed(&mut s, &client_frame_with(hdr(Text, true, true), &bfinal), now), [msg_text("Hello")]);
    // The client role reads the same bytes from a server.
    let now = Instant::now();
    let mut c = Connection::new(Role::Client, quiet(), now);
    c.enable_deflate(&no_context_params(), &DeflateConfig::default());
    assert_eq!(feed(&mut c, &server_frame_with(hdr(Text, true, true), &hello), now), [msg_text("Hello")]);
    // Our encoder writes exactly §7.2.3.1's bytes for "Hello" (threshold 0).
    let mut pair = deflate_pair(&no_context_params(), &DeflateConfig::default().threshold(0), &DeflateConfig::default());
    pair.server.send(Message::text("Hello")).unwrap();
    assert_eq!(take_output(&mut pair.server), [&[0xC1, 0x07][..], &hello].concat());
}

#[test]
fn rfc7692_context_takeover_example_decodes_as_two_messages() {
    // §7.2.3.2: the second "Hello" is one back-reference into the first.
    let first = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
    let wire = concat(&[client_frame_with(hdr(Text, true, true), &first), client_frame_with(hdr(Text, true, true), &second)]);
    let (mut s, now) = deflate_server(quiet(), &context_params(), &DeflateConfig::default().mode(CompressionMode::Dedicated));
    assert_eq!(feed(&mut s, &wire, now), [msg_text("Hello"), msg_text("Hello")]);
    assert!(s.is_open());
    // Split at every byte.
    for cut in 0..=wire.len() {
        let (mut s, now) = deflate_server(quiet(), &context_params(), &DeflateConfig::default());
        let events = feed_cut(&mut s, &wire, &[cut], now);
        assert_eq!(events, [msg_text("Hello"), msg_text("Hello")], "cut {cut}");
    }
    // The client agreed to reset its context: the server must reset too, so
    // the back-reference has nothing to point at.
    let params = DeflateParams { client_no_context_takeover: true, ..DeflateParams::default() };
    let (mut s, now) = deflate_server(quiet(), &params, &DeflateConfig::default());
    let events = feed(&mut s, &wire, now);
    assert_eq!(events[0], msg_text("Hello"));
    assert_closed_with(&events, 1002, Some(ProtocolError::InvalidCompressedData));
    // Our own encoder, with context, writes exactly those bytes.
    let config = DeflateConfig::default().mode(CompressionMode::Dedicated).threshold(0);
    let mut pair = deflate_pair(&context_params(), &config, &config);
    pair.server.send(Message::text("Hello")).unwrap();
    pair.server.send(Message::text("Hello")).unwrap();
    let out = take_output(&mut pair.server);
    assert_eq!(out, [&[0xC1, 0x07][..], &first, &[0xC1, 0x05], &second].concat());
}

#[test]
fn a_bfinal_compressed_message_decodes() {
    let text = format!("final block: {}", noise(200, 8));
    let finished = RawDeflate::new(6).run(text.as_bytes(), FlushCompress::Finish);
    for params in [no_context_params(), context_params()] {
        let (mut s, now) = deflate_server(quiet(), &params, &DeflateConfig::default());
        assert_eq!(feed(&mut s, &client_frame_with(hdr(Text, true, true), &finished), now), [msg_text(&text)]);
        assert!(s.is_open());
        // Fragmented.
        let (mut s, now) = deflate_server(quiet(), &params, &DeflateConfig::default());
        let (a, b) = finished.split_at(finished.len() / 2);
        let wire = concat(&[client_frame_with(hdr(Text, false, true), a), client_frame(Continuation, true, b)]);
        assert_eq!(feed(&mut s, &wire, now), [msg_text(&text)]);
        assert!(s.is_open());
    }
    // Without context, a BFINAL message is followed by ordinary ones.
    let (mut s, now) = server_with_deflate();
    let wire = concat(&[
        client_frame_with(hdr(Text, true, true), &finished),
        client_frame_with(hdr(Text, true, true), &deflate_message(b"next")),
        client_frame_with(hdr(Text, true, true), &finished),
    ]);
    assert_eq!(feed(&mut s, &wire, now), [msg_text(&text), msg_text("next"), msg_text(&text)]);
}

#[test]

fn a_bfinal_message_with_context_takeover_is_followed_by_a_fresh_stream() {
    // A sender that ends its stream (BFINAL) starts a new one for the next
    // message; the receiver must read that message.
    let text = format!("final block: {}", noise(200, 8));
    let finished = RawDeflate::new(6).run(text.as_bytes(), FlushCompress::Finish);
    let next = deflate_message(b"a fresh stream after the final block");
    let (mut s, now) = deflate_server(quiet(), &context_params(), &DeflateConfig::default().mode(CompressionMode::Dedicated));
    let wire = concat(&[client_frame_with(hdr(Text, true, true), &finished), client_frame_with(hdr(Text, true, true), &next)]);
    assert_eq!(feed(&mut s, &wire, now), [msg_text(&text), msg_text("a fresh stream after the final block")]);
}

// ---- 3. compression bombs ----------------------------------------------

/// 100 MiB of zeros as one compressed message (about 100 KiB: DEFLATE
/// cannot beat about 1032:1), made once.
fn bomb() -> &'static [u8] {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let zeros = vec![0u8; 1 << 20];
        let mut raw = RawDeflate::new(9);
        let mut out = Vec::new();
        for _ in 0..100 {
            out.extend(raw.run(&zeros, FlushCompress::None));
        }
        out.extend(raw.message(&[]));
        assert!(out.len() < 200 * 1024, "{}", out.len());
        out
    })
}

const MIB: usize = 1 << 20;

/// Feeds `wire` in `piece`-byte reads, checking the connection never holds
/// more than `max + 1` bytes; returns the events and how many bytes had
/// been fed when it closed.
fn feed_watching(s: &mut Connection, wire: &[u8], piece: usize, now: Instant, max: usize) -> (Vec<Event>, Option<usize>) {
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    let mut closed_at = None;
    for (i, chunk) in wire.chunks(piece).enumerate() {
        buf.extend_from_slice(chunk);
        s.handle_read(&mut buf, now);
        assert!(s.buffered_bytes() <= max + 1, "buffered {} after {} bytes", s.buffered_bytes(), i * piece);
        seen.extend(events(s));
        if closed_at.is_none() && s.state() == State::Closed {
            closed_at = Some((i * piece + chunk.len()).min(wire.len()));
        }
    }
    (seen, closed_at)
}

#[test]
fn a_frame_inflating_to_100_mib_is_1009() {
    let bomb = bomb();
    for opcode in [Binary, Text] {
        let config = quiet().max_message_size(MIB);
        let wire = client_frame_with(hdr(opcode, true, true), bomb);
        // In one read.
        let (mut s, now) = deflate_server(config.clone(), &no_context_params(), &DeflateConfig::default());
        assert_fails(&mut s, &wire, now, 1009, None);
        // In 1 KiB reads: it fails long before the frame is complete.
        let (mut s, now) = deflate_server(config, &no_context_params(), &DeflateConfig::default());
        let (events, closed_at) = feed_watching(&mut s, &wire, 1024, now, MIB);
        assert!(matches!(closed_in(&events).cause, CloseCause::Protocol(ProtocolError::MessageTooLarge { .. })), "{events:?}");
        assert_eq!(closed_in(&events).code.0, 1009);
        assert!(!events.iter().any(|e| matches!(e, Event::Message(_))));
        let closed_at = closed_at.unwrap();
        assert!(closed_at < 16 * 1024, "closed after {closed_at} of {} bytes", wire.len());
        assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(1009));
    }
}

#[test]
fn a_bomb_spread_over_many_fragments_is_1009() {
    let bomb = bomb();
    let pieces: Vec<&[u8]> = bomb.chunks(1024).collect();
    let frames: Vec<Vec<u8>> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let opcode = if i == 0 { Binary } else { Continuation };
            client_frame_with(hdr(opcode, i == pieces.len() - 1, i == 0), p)
        })
        .collect();
    let wire = concat(&frames);
    let config = quiet().max_message_size(MIB);
    // Frame by frame, and in reads that cut frames.
    for piece in [frames[0].len(), 333] {
        let (mut s, now) = deflate_server(config.clone(), &no_context_params(), &DeflateConfig::default());
        let (events, closed_at) = feed_watching(&mut s, &wire, piece, now, MIB);
        let info = closed_in(&events);
        assert_eq!(info.code.0, 1009);
        assert!(matches!(info.cause, CloseCause::Protocol(ProtocolError::MessageTooLarge { .. })), "{info:?}");
        assert!(closed_at.unwrap() < 16 * 1024, "closed after {closed_at:?} of {} bytes", wire.len());
        assert_eq!(s.buffered_bytes(), 0);
    }
    // All in one read.
    let (mut s, now) = deflate_server(config, &no_context_params(), &DeflateConfig::default());
    assert_fails(&mut s, &wire, now, 1009, None);
}

#[test]
fn a_message_inflating_to_exactly_the_limit_is_accepted_and_one_more_byte_is_1009() {
    let limit = 64 * 1024;
    for (len, ok) in [(limit, true), (limit + 1, false)] {
        let data = deflate_message(&vec![b'a'; len]);
        let (mut s, now) = deflate_server(quiet().max_message_size(limit), &no_context_params(), &DeflateConfig::default());
        let wire = client_frame_with(hdr(Text, true, true), &data);
        if ok {
            assert_eq!(feed(&mut s, &wire, now), [msg_text(&"a".repeat(len))]);
        } else {
            assert_fails(&mut s, &wire, now, 1009, None);
        }
    }
}

#[test]
fn many_small_bombs_in_one_read_pause_input_and_all_arrive() {
    const N: usize = 20;
    const LEN: usize = 900 * 1024;
    let mut frames = Vec::new();
    let mut expected = Vec::new();
    for i in 0..N {
        let mut message = vec![0u8; LEN];
        message[0] = i as u8;
        frames.push(client_frame_with(hdr(Binary, true, true), &RawDeflate::new(9).message(&message)));
        expected.push(Event::Message(Message::binary(message)));
    }
    let wire = concat(&frames);
    assert!(wire.len() < 64 * 1024, "{}", wire.len());
    let (mut s, now) = deflate_server(quiet().max_message_size(MIB), &no_context_params(), &DeflateConfig::default());
    let mut buf = BytesMut::from(&wire[..]);
    s.handle_read(&mut buf, now);
    let first = events(&mut s);
    assert!(s.input_paused(), "one read of {N} bombs must stop early");
    assert!(!buf.is_empty(), "the rest waits in the buffer");
    assert!(!first.is_empty() && first.len() < N, "{} messages in the first call", first.len());
    // About 1 MiB of inflation per call: at most one message past it.
    assert!(first.len() <= 2, "{} messages of 900 KiB in one call", first.len());
    let mut seen = first;
    let mut calls = 1;
    while s.input_paused() {
        assert!(!buf.is_empty());
        s.handle_read(&mut buf, now);
        let got = events(&mut s);
        assert!(got.len() <= 2, "{} messages in call {calls}", got.len());
        assert!(s.buffered_bytes() <= MIB + 1);
        seen.extend(got);
        calls += 1;
        assert!(calls <= N + 1, "never finishes");
    }
    assert!(buf.is_empty());
    assert!(calls >= N / 2, "{calls} calls for {N} messages of 900 KiB");
    assert_eq!(seen.len(), N);
    assert!(seen == expected, "messages out of order or altered");
    assert!(s.is_open());
    // A read with nothing paused does not pause.
    s.handle_read(&mut BytesMut::new(), now);
    assert!(!s.input_paused());
    // Small compressed messages in one read do not pause.
    let small: Vec<Vec<u8>> = (0..50).map(|i| client_frame_with(hdr(Text, true, true), &deflate_message(format!("m{i}").as_bytes()))).collect();
    let mut buf = BytesMut::from(&concat(&small)[..]);
    s.handle_read(&mut buf, now);
    assert!(!s.input_paused());
    assert_eq!(events(&mut s).len(), 50);
}

// ---- 4. order before failure -------------------------------------------

/// One read: a good compressed message, then `bad`. The message comes
/// first, the connection stays open while it is handled (a reply goes
/// out), then it fails with `code`; the reply precedes the close frame.
fn message_then_failure(bad: &[u8], code: u16, cause: ProtocolError) {
    let (mut s, now) = server_with_deflate();
    let good = noise(100, 11).repeat(2);
    let mut wire = client_frame_with(hdr(Text, true, true), &deflate_message(good.as_bytes()));
    wire.extend_from_slice(bad);
    let mut buf = BytesMut::from(&wire[..]);
    s.handle_read(&mut buf, now);
    assert_eq!(s.poll_event(), Some(msg_text(&good)));
    assert!(s.is_open(), "still open while the message before the error is handled");
    let reply = format!("reply to {good}");
    s.send(Message::text(reply.clone())).expect("a reply to the message before the error is sent");
    let closed = s.poll_event();
    let Some(Event::Closed(info)) = closed else { panic!("expected Closed, got {closed:?}") };
    assert_eq!((info.code.0, info.cause), (code, CloseCause::Protocol(cause)));
    assert_eq!(s.poll_event(), None);
    assert!(s.send(Message::text("too late")).is_err());
    let frames = check_stream_deflate(Role::Server, &take_output(&mut s));
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(b0(&frames[0]), 0xC1, "the reply, compressed, first");
    assert_eq!(RawInflate::new(15, true).message(&frames[0].payload).unwrap(), reply.as_bytes());
    assert_eq!(close_of(&frames[1]).map(|c| c.0), Some(code));
}

#[test]
fn a_message_before_a_protocol_error_is_delivered_and_answered_first() {
    let rsv2 = FrameHeader { fin: true, rsv1: false, rsv2: true, rsv3: false, opcode: Text };
    message_then_failure(&client_frame_with(rsv2, b"x"), 1002, ProtocolError::ReservedBits);
    let mut reserved = client_frame(Text, true, b"x");
    reserved[0] = 0x83;
    message_then_failure(&reserved, 1002, ProtocolError::ReservedOpcode(3));
    message_then_failure(&client_frame(Continuation, true, b"orphan"), 1002, ProtocolError::UnexpectedContinuation);
    message_then_failure(&client_frame_with(hdr(Ping, true, true), b""), 1002, ProtocolError::ReservedBits);
    message_then_failure(&client_frame_with(hdr(Binary, true, true), &[0xff, 0xff]), 1002, ProtocolError::InvalidCompressedData);
    message_then_failure(&client_frame_with(hdr(Text, true, true), &deflate_message(b"bad \xff")), 1007, ProtocolError::InvalidUtf8);
    message_then_failure(&client_frame(Text, true, b"plain bad \xff"), 1007, ProtocolError::InvalidUtf8);
    // An incomplete bad frame (its prefix already shows the error).
    let long_bad = client_frame_with(hdr(Text, true, true), &deflate_message(&[&b"\xff"[..], noise(400, 1).as_bytes()].concat()));
    message_then_failure(&long_bad[..long_bad.len() - 10], 1007, ProtocolError::InvalidUtf8);
}

// ---- 5. UTF-8 fail-fast inside a compressed frame ----------------------

#[test]
fn invalid_utf8_in_the_inflated_first_half_of_a_frame_fails_before_the_frame_completes() {
    let mut raw = RawDeflate::new(6);
    let head = raw.run(b"a valid start, then \xff, then more", FlushCompress::Sync);
    let tail = raw.message(noise(3000, 12).as_bytes());
    let payload = [head.clone(), tail].concat();
    let wire = client_frame_with(hdr(Text, true, true), &payload);
    let header_len = wire.len() - payload.len();
    assert!(header_len + head.len() < wire.len() / 2);
    let (mut s, now) = server_with_deflate();
    let mut buf = BytesMut::new();
    // Only the header and a little: nothing yet.
    buf.extend_from_slice(&wire[..header_len + 3]);
    s.handle_read(&mut buf, now);
    assert!(events(&mut s).is_empty());
    assert!(s.is_open());
    // The first half: the invalid byte has inflated.
    buf.extend_from_slice(&wire[header_len + 3..wire.len() / 2]);
    s.handle_read(&mut buf, now);
    let got = events(&mut s);
    assert_closed_with(&got, 1007, Some(ProtocolError::InvalidUtf8));
    assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(1007));
    buf.extend_from_slice(&wire[wire.len() / 2..]);
    s.handle_read(&mut buf, now);
    assert!(events(&mut s).is_empty());

    // The same in a compressed continuation frame.
    let mut raw = RawDeflate::new(6);
    let first = raw.run(b"first fragment is fine", FlushCompress::Sync);
    let head = raw.run(b" second has \xc0\xaf early", FlushCompress::Sync);
    let tail = raw.message(noise(3000, 13).as_bytes());
    let cont = client_frame(Continuation, true, &[head, tail].concat());
    let (mut s, now) = server_with_deflate();
    assert!(feed(&mut s, &client_frame_with(hdr(Text, false, true), &first), now).is_empty());
    let mut buf = BytesMut::from(&cont[..cont.len() / 2]);
    s.handle_read(&mut buf, now);
    assert_closed_with(&events(&mut s), 1007, Some(ProtocolError::InvalidUtf8));
}

#[test]
fn a_compressed_frame_fed_in_chops_is_inflated_as_it_arrives() {
    // Valid text in many reads: same message as in one read.
    let text = format!("{}κόσμε{}", noise(2000, 14), noise(2000, 14));
    let data = deflate_message(text.as_bytes());
    let wire = client_frame_with(hdr(Text, true, true), &data);
    for piece in [1, 7, 100, 1000] {
        let (mut s, now) = server_with_deflate();
        let mut buf = BytesMut::new();
        let mut seen = Vec::new();
        for chunk in wire.chunks(piece) {
            buf.extend_from_slice(chunk);
            s.handle_read(&mut buf, now);
            seen.extend(events(&mut s));
        }
        assert_eq!(seen, [msg_text(&text)], "piece {piece}");
        assert_eq!(s.buffered_bytes(), 0);
    }
}

// ---- 6. broadcast ------------------------------------------------------

fn json_1k() -> String {
    let mut json = String::from("[");
    let mut i = 0;
    while json.len() < 1000 {
        json.push_str(&format!(r#"{{"symbol":"BTC-USD","price":{},"qty":0.{}}},"#, 95_000 + i * 7, i));
        i += 1;
    }
    json.pop();
    json.push(']');
    json
}

fn receiver(params: Option<(&DeflateParams, &DeflateConfig)>) -> Connection {
    let mut s = Connection::new(Role::Server, quiet(), Instant::now());
    if let Some((params, config)) = params {
        s.enable_deflate(params, config);
    }
    s
}

/// What a client with `params` makes of `wire`.
fn client_reads(params: Option<&DeflateParams>, wire: &[u8]) -> Vec<Event> {
    let now = Instant::now();
    let mut c = Connection::new(Role::Client, quiet(), now);
    if let Some(params) = params {
        c.enable_deflate(params, &DeflateConfig::default());
    }
    feed(&mut c, wire, now)
}

#[test]
fn a_broadcast_is_compressed_once_for_every_shared_mode_receiver() {
    let json = json_1k();
    let config = DeflateConfig::default();
    let offer = parse_extensions(&DeflateParams::offer(&config));
    let params = DeflateParams::negotiate(&offer, &config).unwrap();
    assert!(params.server_no_context_takeover);
    let prepared = PreparedMessage::text(&json);
    let mut deflating: Vec<Connection> = (0..50).map(|_| receiver(Some((&params, &config)))).collect();
    let mut plain: Vec<Connection> = (0..50).map(|_| receiver(None)).collect();
    for (d, p) in deflating.iter_mut().zip(plain.iter_mut()) {
        d.send_prepared(&prepared).unwrap();
        p.send_prepared(&prepared.clone()).unwrap();
    }
    assert_eq!(prepared.compressions(), 1);
    let outputs: Vec<Vec<u8>> = deflating.iter_mut().map(take_output).collect();
    assert!(outputs.iter().all(|o| *o == outputs[0]), "every shared-mode receiver gets the same bytes");
    assert_eq!(outputs[0][0], 0xC1);
    assert!(outputs[0].len() < json.len() / 2, "{} bytes for {}", outputs[0].len(), json.len());
    assert_eq!(client_reads(Some(&params), &outputs[0]), [msg_text(&json)]);
    assert_eq!(RawInflate::new(15, true).message(&check_stream_deflate(Role::Server, &outputs[0])[0].payload).unwrap(), json.as_bytes());
    for p in &mut plain {
        let out = take_output(p);
        assert_eq!(out, &prepared.frame()[..]);
        assert_eq!(out[0], 0x81);
        assert_eq!(client_reads(None, &out), [msg_text(&json)]);
    }
    // Sent again: still one compression (and the same bytes).
    deflating[0].send_prepared(&prepared).unwrap();
    assert_eq!(prepared.compressions(), 1);
    assert_eq!(take_output(&mut deflating[0]), outputs[0]);
}

#[test]
fn dedicated_mode_receivers_each_compress_their_own_copy() {
    let json = json_1k();
    let config = DeflateConfig::default().mode(CompressionMode::Dedicated);
    let offer = parse_extensions(&DeflateParams::offer(&config));
    let params = DeflateParams::negotiate(&offer, &config).unwrap();
    assert!(!params.server_no_context_takeover);
    let prepared = PreparedMessage::text(&json);
    let mut receivers: Vec<Connection> = (0..10).map(|_| receiver(Some((&params, &config)))).collect();
    let mut plain = receiver(None);
    for r in &mut receivers {
        r.send_prepared(&prepared).unwrap();
    }
    plain.send_prepared(&prepared).unwrap();
    assert_eq!(prepared.compressions(), 10);
    for r in &mut receivers {
        // Twice on the same connection: the second refers to the first.
        r.send_prepared(&prepared).unwrap();
        let out = take_output(r);
        let frames = check_stream_deflate(Role::Server, &out);
        assert_eq!(frames.iter().map(b0).collect::<Vec<_>>(), [0xC1, 0xC1]);
        assert!(frames[1].payload.len() < frames[0].payload.len() / 4);
        assert_eq!(client_reads(Some(&params), &out), [msg_text(&json), msg_text(&json)]);
    }
    assert_eq!(prepared.compressions(), 20);
    assert_eq!(take_output(&mut plain), &prepared.frame()[..]);
}

#[test]
fn a_receiver_with_another_window_or_level_gets_its_own_compression() {
    // Repeats 2 KiB apart: a frame made for a 15-bit window cannot be read
    // with a 10-bit one.
    let text = noise(2048, 21).repeat(2);
    let config = DeflateConfig::default();
    let wide = no_context_params();
    let narrow = DeflateParams { server_max_window_bits: Some(10), ..no_context_params() };
    let prepared = PreparedMessage::text(&text);
    let mut first: Vec<Connection> = (0..5).map(|_| receiver(Some((&wide, &config)))).collect();
    let mut odd = receiver(Some((&narrow, &config)));
    let mut low = receiver(Some((&wide, &DeflateConfig::default().level(1))));
    let mut rest: Vec<Connection> = (0..5).map(|_| receiver(Some((&wide, &config)))).collect();
    for r in &mut first {
        r.send_prepared(&prepared).unwrap();
    }
    odd.send_prepared(&prepared).unwrap();
    low.send_prepared(&prepared).unwrap();
    for r in &mut rest {
        r.send_prepared(&prepared).unwrap();
    }
    assert_eq!(prepared.compressions(), 3, "one shared, one for window 10, one for level 1");
    let shared = take_output(&mut first[0]);
    for r in first.iter_mut().skip(1).chain(rest.iter_mut()) {
        assert_eq!(take_output(r), shared);
    }
    assert_eq!(client_reads(Some(&wide), &shared), [msg_text(&text)]);
    let odd_out = take_output(&mut odd);
    assert_ne!(odd_out, shared);
    assert_eq!(odd_out[0], 0xC1);
    assert_eq!(client_reads(Some(&narrow), &odd_out), [msg_text(&text)]);
    assert_eq!(RawInflate::new(10, true).message(&check_stream_deflate(Role::Server, &odd_out)[0].payload).unwrap(), text.as_bytes());
    // The shared frame really needs the wide window (the test can tell).
    assert!(RawInflate::new(10, true).message(&check_stream_deflate(Role::Server, &shared)[0].payload).is_err());
    let low_out = take_output(&mut low);
    assert_eq!(low_out[0], 0xC1);
    assert_eq!(client_reads(Some(&wide), &low_out), [msg_text(&text)]);
}

#[test]
fn a_window_limited_receiver_first_does_not_break_the_others() {
    let text = noise(2048, 22).repeat(2);
    let config = DeflateConfig::default();
    let wide = no_context_params();
    let narrow = DeflateParams { server_max_window_bits: Some(10), ..no_context_params() };
    let prepared = PreparedMessage::text(&text);
    let mut odd = receiver(Some((&narrow, &config)));
    odd.send_prepared(&prepared).unwrap();
    let mut others: Vec<Connection> = (0..3).map(|_| receiver(Some((&wide, &config)))).collect();
    for r in &mut others {
        r.send_prepared(&prepared).unwrap();
    }
    assert_eq!(client_reads(Some(&narrow), &take_output(&mut odd)), [msg_text(&text)]);
    for r in &mut others {
        assert_eq!(client_reads(Some(&wide), &take_output(r)), [msg_text(&text)]);
    }
    assert!(prepared.compressions() <= 4);
}

#[test]
fn uncompressed_and_small_broadcasts_go_plain_to_deflate_receivers() {
    let params = no_context_params();
    let config = DeflateConfig::default();
    let json = json_1k();
    for prepared in [PreparedMessage::text(&json).uncompressed(), PreparedMessage::text("short"), PreparedMessage::binary(&[1; 63])] {
        let mut r = receiver(Some((&params, &config)));
        r.send_prepared(&prepared).unwrap();
        assert_eq!(prepared.compressions(), 0);
        let out = take_output(&mut r);
        assert_eq!(out, &prepared.frame()[..]);
        assert_eq!(out[0] & 0x40, 0);
    }
}

#[test]
fn a_client_sending_a_prepared_message_compresses_and_masks_it() {
    let json = json_1k();
    let params = no_context_params();
    let mut pair = deflate_pair(&params, &DeflateConfig::default(), &DeflateConfig::default());
    let prepared = PreparedMessage::text(&json);
    pair.client.send_prepared(&prepared).unwrap();
    assert_eq!(prepared.compressions(), 1);
    let wire = take_output(&mut pair.client);
    assert_eq!(wire[0], 0xC1);
    assert_eq!(wire[1] & 0x80, 0x80);
    assert_eq!(feed(&mut pair.server, &wire, pair.now), [msg_text(&json)]);
}
