//! RFC 6455 §5.1-§5.3, §5.5 as enforced by a `Connection`: masking
//! direction, reserved bits and opcodes, length encoding, control frame
//! rules. Each violation fails the connection with 1002 and a close frame.

mod common;

use std::time::Instant;

use blaze_proto::frame::{OpCode, Role};
use blaze_proto::{CloseCause, Connection, Event, Message, ProtocolError};
use common::*;

fn fails_with(role: Role, wire: &[u8], code: u16, err: ProtocolError) {
    let now = Instant::now();
    let mut conn = Connection::new(role, quiet(), now);
    let events = feed(&mut conn, wire, now);
    let info = closed_in(&events);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((info.code.0, info.cause), (code, CloseCause::Protocol(err)), "wire {wire:02x?}");
    assert_eq!(last_close(role, &take_output(&mut conn)).map(|c| c.0), Some(code));
}

#[test]
fn server_fails_an_unmasked_client_frame() {
    fails_with(Role::Server, &server_frame(OpCode::Text, true, b"hi"), 1002, ProtocolError::UnmaskedClientFrame);
}

#[test]
fn client_fails_a_masked_server_frame() {
    fails_with(Role::Client, &client_frame(OpCode::Text, true, b"hi"), 1002, ProtocolError::MaskedServerFrame);
}

#[test]
fn reserved_opcodes_are_1002() {
    for op in [0x3u8, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let wire = [0x80 | op, 0x80, 1, 2, 3, 4];
        fails_with(Role::Server, &wire, 1002, ProtocolError::ReservedOpcode(op));
    }
}

#[test]
fn rsv_bits_without_an_extension_are_1002() {
    for bit in [0x40u8, 0x20, 0x10] {
        let mut wire = client_frame(OpCode::Binary, true, b"x");
        wire[0] |= bit;
        fails_with(Role::Server, &wire, 1002, ProtocolError::ReservedBits);
        let mut wire = client_frame(OpCode::Ping, true, b"");
        wire[0] |= bit;
        fails_with(Role::Server, &wire, 1002, ProtocolError::ReservedBits);
    }
}

#[test]
fn non_minimal_length_encodings_are_1002() {
    // 5 bytes announced with a 16-bit length, and 200 with a 64-bit one.
    let mut wire = vec![0x82, 0xfe, 0x00, 0x05, 1, 2, 3, 4];
    wire.extend([0; 5]);
    fails_with(Role::Server, &wire, 1002, ProtocolError::NonMinimalLength);
    let wire = [0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4];
    fails_with(Role::Server, &wire, 1002, ProtocolError::NonMinimalLength);
}

#[test]
fn length_with_the_most_significant_bit_set_is_1002() {
    let wire = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    fails_with(Role::Server, &wire, 1002, ProtocolError::LengthMsbSet);
}

#[test]
fn control_frames_over_125_bytes_are_1002() {
    for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        fails_with(Role::Server, &client_frame(op, true, &[b'a'; 126]), 1002, ProtocolError::ControlFrameTooLong);
    }
}

#[test]
fn fragmented_control_frames_are_1002() {
    for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        fails_with(Role::Server, &client_frame(op, false, b""), 1002, ProtocolError::FragmentedControlFrame);
    }
}

#[test]
fn frames_before_the_violation_are_still_delivered() {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, quiet(), now);
    let wire = concat(&[client_frame(OpCode::Text, true, b"good"), vec![0x83, 0x80, 0, 0, 0, 0]]);
    let events = feed(&mut s, &wire, now);
    assert_eq!(events[0], Event::Message(Message::text("good")));
    assert_eq!(closed_in(&events).code.0, 1002);
}

#[test]
fn client_frames_are_masked_with_varying_keys_and_server_frames_are_not() {
    let mut pair = Pair::new(quiet());
    for _ in 0..4 {
        pair.client.send(Message::text("same text")).unwrap();
    }
    pair.client.ping(b"p").unwrap();
    let frames = check_stream(Role::Client, &pair.client_to_server());
    let keys: std::collections::HashSet<[u8; 4]> = frames.iter().map(|f| f.mask.unwrap()).collect();
    assert_eq!(keys.len(), frames.len(), "each frame gets its own masking key");
    assert_eq!(pair.server_events().len(), 5);

    pair.server.send(Message::text("reply")).unwrap();
    check_stream(Role::Server, &pair.server_to_client());
    // The auto-pong to the client's ping went first.
    assert_eq!(pair.client_events(), [Event::Pong("p".into()), Event::Message(Message::text("reply"))]);
}

#[test]
fn every_length_encoding_round_trips_both_ways() {
    // 7-bit, 16-bit and 64-bit lengths at their edges, on the server's copy
    // and shared-payload paths and the client's masked path.
    for len in [0usize, 1, 125, 126, 127, 16 * 1024 - 1, 16 * 1024, 65_535, 65_536, 100_000] {
        let mut pair = Pair::new(quiet());
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        pair.server.send(Message::binary(payload.clone())).unwrap();
        pair.client.send(Message::binary(payload.clone())).unwrap();
        pair.pump();
        assert_eq!(pair.client_events(), [Event::Message(Message::binary(payload.clone()))], "len {len}");
        assert_eq!(pair.server_events(), [Event::Message(Message::binary(payload))], "len {len}");
    }
}

#[test]
fn transmit_bytes_and_transmit_slices_write_the_same_stream() {
    let make = || {
        let mut s = Connection::new(Role::Server, quiet(), Instant::now());
        s.send(Message::text("small")).unwrap();
        s.send(Message::binary(vec![3; 20_000])).unwrap();
        s.send_prepared(&blaze_proto::PreparedMessage::binary(&[4; 300])).unwrap();
        s.ping(b"x").unwrap();
        s
    };
    let a = take_output(&mut make());
    let b = take_output_bytes(&mut make());
    assert_eq!(a, b);
    assert_eq!(check_stream(Role::Server, &a).len(), 4);
}
