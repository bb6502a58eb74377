//! RFC 6455 §5.4: fragmented messages, control frames between fragments,
//! and the frame and message size limits.

mod common;

use std::time::Instant;

use blaze_proto::frame::{OpCode, Role};
use blaze_proto::{CloseCause, Connection, Event, Message, ProtocolError, State};
use common::*;
use OpCode::{Binary, Continuation, Ping, Pong, Text};

fn server(config: blaze_proto::Config) -> (Connection, Instant) {
    let now = Instant::now();
    (Connection::new(Role::Server, config, now), now)
}

#[test]
fn fragmented_text_is_reassembled() {
    let (mut s, now) = server(quiet());
    assert!(feed(&mut s, &client_frame(Text, false, b"Hel"), now).is_empty());
    assert_eq!(s.buffered_bytes(), 3);
    assert!(feed(&mut s, &client_frame(Continuation, false, b"lo, "), now).is_empty());
    assert_eq!(s.buffered_bytes(), 7);
    let events = feed(&mut s, &client_frame(Continuation, true, b"world"), now);
    assert_eq!(events, [Event::Message(Message::text("Hello, world"))]);
    assert_eq!(s.buffered_bytes(), 0);
    assert!(!s.wants_write());
}

#[test]
fn fragmented_binary_is_reassembled() {
    let (mut s, now) = server(quiet());
    let wire = concat(&[
        client_frame(Binary, false, &[0, 1, 2]),
        client_frame(Continuation, false, &[]),
        client_frame(Continuation, false, &[3, 255]),
        client_frame(Continuation, true, &[4]),
    ]);
    let events = feed(&mut s, &wire, now);
    assert_eq!(events, [Event::Message(Message::binary(vec![0, 1, 2, 3, 255, 4]))]);
}

#[test]
fn fragments_arriving_byte_by_byte_are_reassembled() {
    let (mut s, now) = server(quiet());
    let wire = concat(&[client_frame(Text, false, "κό".as_bytes()), client_frame(Continuation, true, "σμε".as_bytes())]);
    let mut buf = blaze_proto::bytes::BytesMut::new();
    let mut seen = Vec::new();
    for &byte in &wire {
        buf.extend_from_slice(&[byte]);
        s.handle_read(&mut buf, now);
        seen.extend(events(&mut s));
    }
    assert_eq!(seen, [Event::Message(Message::text("κόσμε"))]);
    assert!(buf.is_empty());
}

#[test]
fn empty_first_and_last_fragments_make_a_whole_message() {
    let (mut s, now) = server(quiet());
    let wire = concat(&[
        client_frame(Text, false, b""),
        client_frame(Continuation, false, b"x"),
        client_frame(Continuation, true, b""),
    ]);
    assert_eq!(feed(&mut s, &wire, now), [Event::Message(Message::text("x"))]);
}

#[test]
fn ping_and_pong_between_fragments_are_handled_and_the_message_arrives_whole() {
    let (mut s, now) = server(quiet());
    let wire = concat(&[
        client_frame(Text, false, b"ab"),
        client_frame(Ping, true, b"p1"),
        client_frame(Continuation, false, b"cd"),
        client_frame(Pong, true, b"q"),
        client_frame(Ping, true, b"p2"),
        client_frame(Continuation, true, b"ef"),
    ]);
    let events = feed(&mut s, &wire, now);
    assert_eq!(
        events,
        [
            Event::Ping("p1".into()),
            Event::Pong("q".into()),
            Event::Ping("p2".into()),
            Event::Message(Message::text("abcdef")),
        ]
    );
    // Each ping was answered at once, mid-message (§5.4: control frames may
    // be injected in the middle of a fragmented message).
    let frames = check_stream(Role::Server, &take_output(&mut s));
    let pongs: Vec<(OpCode, &[u8])> = frames.iter().map(|f| (f.header.opcode, &f.payload[..])).collect();
    assert_eq!(pongs, [(Pong, &b"p1"[..]), (Pong, &b"p2"[..])]);
    assert!(s.is_open());
}

#[test]
fn control_frames_between_fragments_in_a_live_pair() {
    let mut pair = Pair::new(quiet());
    let t = pair.now;
    // The client's own encoder never fragments, so hand-feed the fragments
    // while the client answers pings and both stay open.
    let wire = concat(&[client_frame(Binary, false, &[1; 10]), client_frame(Ping, true, b"hb")]);
    assert_eq!(feed(&mut pair.server, &wire, t), [Event::Ping("hb".into())]);
    pair.server_to_client();
    assert_eq!(pair.client_events(), [Event::Pong("hb".into())]);
    let rest = client_frame(Continuation, true, &[2; 10]);
    let mut expected = vec![1; 10];
    expected.extend([2; 10]);
    assert_eq!(feed(&mut pair.server, &rest, t), [Event::Message(Message::binary(expected))]);
}

#[test]
fn close_between_fragments_drops_the_partial_message() {
    let (mut s, now) = server(quiet());
    let wire = concat(&[
        client_frame(Text, false, b"half"),
        client_frame(OpCode::Close, true, &close_payload(1000, b"")),
        client_frame(Continuation, true, b"never"),
    ]);
    let events = feed(&mut s, &wire, now);
    let info = closed_in(&events);
    assert_eq!(events.len(), 1);
    assert_eq!((info.code.0, info.cause), (1000, CloseCause::Remote));
    assert_eq!(s.buffered_bytes(), 0);
}

#[test]
fn continuation_without_a_start_is_1002() {
    let (mut s, now) = server(quiet());
    let events = feed(&mut s, &client_frame(Continuation, true, b"orphan"), now);
    let info = closed_in(&events);
    assert_eq!(info.code.0, 1002);
    assert_eq!(info.cause, CloseCause::Protocol(ProtocolError::UnexpectedContinuation));
    assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(1002));
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn continuation_after_a_finished_message_is_1002() {
    let (mut s, now) = server(quiet());
    let wire = concat(&[client_frame(Text, true, b"done"), client_frame(Continuation, false, b"more")]);
    let events = feed(&mut s, &wire, now);
    assert_eq!(events[0], Event::Message(Message::text("done")));
    assert_eq!(closed_in(&events).cause, CloseCause::Protocol(ProtocolError::UnexpectedContinuation));
}

#[test]
fn new_text_while_a_fragmented_message_is_in_progress_is_1002() {
    let (mut s, now) = server(quiet());
    let wire = concat(&[client_frame(Text, false, b"a"), client_frame(Text, true, b"b")]);
    let events = feed(&mut s, &wire, now);
    assert_eq!(events.len(), 1, "no message may be delivered: {events:?}");
    let info = closed_in(&events);
    assert_eq!(info.code.0, 1002);
    assert_eq!(info.cause, CloseCause::Protocol(ProtocolError::ExpectedContinuation));
    assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(1002));
}

#[test]
fn new_binary_while_a_fragmented_message_is_in_progress_is_1002() {
    let (mut s, now) = server(quiet());
    let wire = concat(&[client_frame(Binary, false, b"a"), client_frame(Binary, false, b"b")]);
    let info = closed_in(&feed(&mut s, &wire, now));
    assert_eq!((info.code.0, info.cause), (1002, CloseCause::Protocol(ProtocolError::ExpectedContinuation)));
}

#[test]
fn message_over_max_message_size_across_fragments_is_1009() {
    let (mut s, now) = server(quiet().max_message_size(10));
    // Each fragment alone is within every limit; together they are not.
    assert!(feed(&mut s, &client_frame(Binary, false, &[0; 6]), now).is_empty());
    assert!(feed(&mut s, &client_frame(Continuation, false, &[0; 4]), now).is_empty());
    let events = feed(&mut s, &client_frame(Continuation, true, &[0; 1]), now);
    let info = closed_in(&events);
    assert_eq!(events.len(), 1);
    assert_eq!(info.code.0, 1009);
    assert_eq!(info.cause, CloseCause::Protocol(ProtocolError::MessageTooLarge { size: 11, max: 10 }));
    assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(1009));
    assert_eq!(s.buffered_bytes(), 0);
}

#[test]
fn message_over_max_message_size_fails_before_fin() {
    let (mut s, now) = server(quiet().max_message_size(10));
    let wire = concat(&[client_frame(Text, false, b"12345678"), client_frame(Continuation, false, b"901")]);
    assert_eq!(closed_in(&feed(&mut s, &wire, now)).code.0, 1009);
}

#[test]
fn message_of_exactly_max_message_size_is_accepted() {
    let (mut s, now) = server(quiet().max_message_size(10));
    let wire = concat(&[client_frame(Text, false, b"12345"), client_frame(Continuation, true, b"67890")]);
    assert_eq!(feed(&mut s, &wire, now), [Event::Message(Message::text("1234567890"))]);
    assert_eq!(feed(&mut s, &client_frame(Binary, true, &[7; 10]), now), [Event::Message(Message::binary(vec![7; 10]))]);
}

#[test]
fn single_frame_over_max_message_size_is_1009() {
    let (mut s, now) = server(quiet().max_message_size(10));
    let info = closed_in(&feed(&mut s, &client_frame(Binary, true, &[0; 11]), now));
    assert_eq!(info.code.0, 1009);
}

#[test]
fn single_frame_over_max_frame_size_is_1009() {
    let (mut s, now) = server(quiet().max_frame_size(100));
    let events = feed(&mut s, &client_frame(Binary, true, &[0; 101]), now);
    let info = closed_in(&events);
    assert_eq!(info.code.0, 1009);
    assert_eq!(info.cause, CloseCause::Protocol(ProtocolError::FrameTooLarge { size: 101, max: 100 }));
    assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(1009));
}

#[test]
fn frame_over_max_frame_size_fails_from_its_header_alone() {
    let (mut s, now) = server(quiet().max_frame_size(100));
    let wire = client_frame(Binary, true, &[0; 1000]);
    // The 16-bit length is in the first 4 bytes: no payload is buffered.
    let info = closed_in(&feed(&mut s, &wire[..4], now));
    assert_eq!(info.code.0, 1009);
}

#[test]
fn frame_of_exactly_max_frame_size_is_accepted() {
    let (mut s, now) = server(quiet().max_frame_size(100));
    assert_eq!(feed(&mut s, &client_frame(Binary, true, &[9; 100]), now).len(), 1);
    assert!(s.is_open());
}

#[test]
fn fragment_over_max_frame_size_is_1009_even_if_the_message_fits() {
    let (mut s, now) = server(quiet().max_frame_size(8).max_message_size(100));
    assert!(feed(&mut s, &client_frame(Text, false, b"12345678"), now).is_empty());
    let info = closed_in(&feed(&mut s, &client_frame(Continuation, true, b"123456789"), now));
    assert_eq!(info.code.0, 1009);
}

#[test]
fn large_message_fragmented_in_a_live_pair() {
    // Server → client with the server's large-payload path and a client
    // that reassembles nothing: one 70 KB frame (64-bit length).
    let mut pair = Pair::new(quiet());
    let payload: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    pair.server.send(Message::binary(payload.clone())).unwrap();
    let wire = pair.server_to_client();
    assert_eq!(wire.len(), payload.len() + 10);
    assert_eq!(pair.client_events(), [Event::Message(Message::binary(payload))]);
}

// ---- errors take effect after the events before them ----------------------

/// One read: "hello", then `bad`. The message is taken first while the
/// connection is still open, a reply to it is queued, and only then does
/// the connection fail with `code`; the reply precedes the close frame.
fn message_then(bad: &[u8], code: u16, cause: ProtocolError) {
    let (mut s, now) = server(quiet());
    let wire = concat(&[client_frame(Text, true, b"hello"), bad.to_vec()]);
    s.handle_read(&mut blaze_proto::bytes::BytesMut::from(&wire[..]), now);
    assert_eq!(s.poll_event(), Some(Event::Message(Message::text("hello"))));
    assert!(s.is_open(), "open while the message before the error is handled");
    s.send(Message::text("reply")).expect("reply to the message before the error");
    match s.poll_event() {
        Some(Event::Closed(info)) => assert_eq!((info.code.0, info.cause), (code, CloseCause::Protocol(cause))),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert_eq!(s.poll_event(), None);
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!((frames[0].header.opcode, &frames[0].payload[..]), (Text, &b"reply"[..]));
    assert_eq!(close_of(&frames[1]).map(|c| c.0), Some(code));
}

#[test]
fn a_message_before_a_bad_frame_is_delivered_and_answered_before_the_close() {
    let rsv2 = blaze_proto::frame::FrameHeader { rsv2: true, ..blaze_proto::frame::FrameHeader::new(Text) };
    message_then(&client_frame_with(rsv2, b"x"), 1002, ProtocolError::ReservedBits);
    let rsv3 = blaze_proto::frame::FrameHeader { rsv3: true, ..blaze_proto::frame::FrameHeader::new(Binary) };
    message_then(&client_frame_with(rsv3, b"x"), 1002, ProtocolError::ReservedBits);
    message_then(&client_frame_with(hdr(Text, true, true), b"x"), 1002, ProtocolError::ReservedBits);
    let mut reserved = client_frame(Binary, true, b"x");
    reserved[0] = 0x80 | 0xB;
    message_then(&reserved, 1002, ProtocolError::ReservedOpcode(0xB));
    message_then(&client_frame(Continuation, true, b"orphan"), 1002, ProtocolError::UnexpectedContinuation);
    // Only the first two bytes of the bad frame have arrived.
    message_then(&client_frame_with(rsv2, &[0; 300])[..2], 1002, ProtocolError::ReservedBits);
}

#[test]
fn pings_and_messages_before_an_error_are_all_answered_in_wire_order() {
    let (mut s, now) = server(quiet());
    let wire = concat(&[
        client_frame(Text, true, b"one"),
        client_frame(Ping, true, b"p"),
        client_frame(Binary, true, b"two"),
        client_frame(Continuation, true, b"orphan"),
        client_frame(Text, true, b"never"),
    ]);
    s.handle_read(&mut blaze_proto::bytes::BytesMut::from(&wire[..]), now);
    let mut replies = 0;
    let mut seen = Vec::new();
    while let Some(event) = s.poll_event() {
        if matches!(event, Event::Message(_)) {
            assert!(s.is_open());
            s.send(Message::text(format!("reply {replies}"))).unwrap();
            replies += 1;
        }
        seen.push(event);
    }
    assert_eq!(&seen[..3], [Event::Message(Message::text("one")), Event::Ping("p".into()), Event::Message(Message::binary(&b"two"[..]))]);
    assert_eq!(closed_in(&seen).code.0, 1002);
    assert_eq!(seen.len(), 4);
    let frames = check_stream(Role::Server, &take_output(&mut s));
    let kinds: Vec<(OpCode, Vec<u8>)> = frames.iter().map(|f| (f.header.opcode, f.payload.to_vec())).collect();
    // The pong is queued as the ping is read; the replies as the messages are taken.
    assert_eq!(kinds[..3], [(Pong, b"p".to_vec()), (Text, b"reply 0".to_vec()), (Text, b"reply 1".to_vec())]);
    assert_eq!(close_of(&frames[3]).map(|c| c.0), Some(1002));
}
