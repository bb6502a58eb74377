//! RFC 6455 §8.1: text messages must be UTF-8, checked incrementally so a
//! fragmented message fails at its first invalid byte.

mod common;

use std::time::Instant;

use blaze_proto::frame::{OpCode, Role};
use blaze_proto::{CloseCause, Connection, Event, Message, ProtocolError};
use common::*;
use OpCode::{Binary, Continuation, Ping, Text};

fn server() -> (Connection, Instant) {
    let now = Instant::now();
    (Connection::new(Role::Server, quiet(), now), now)
}

fn assert_1007(events: &[blaze_proto::Event], s: &mut Connection) {
    let info = closed_in(events);
    assert_eq!(info.code.0, 1007);
    assert_eq!(info.cause, CloseCause::Protocol(ProtocolError::InvalidUtf8));
    assert!(!events.iter().any(|e| matches!(e, Event::Message(_))), "{events:?}");
    assert_eq!(last_close(Role::Server, &take_output(s)).map(|c| c.0), Some(1007));
}

#[test]
fn invalid_utf8_in_a_single_text_frame_is_1007() {
    for bad in [&b"\xff"[..], b"abc\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"a\x80b"] {
        let (mut s, now) = server();
        let events = feed(&mut s, &client_frame(Text, true, bad), now);
        assert_1007(&events, &mut s);
    }
}

#[test]
fn invalid_byte_in_the_first_fragment_fails_before_fin_arrives() {
    let (mut s, now) = server();
    // Only the first fragment has been fed: the connection must not wait
    // for the rest of the message (§8.1 "fail fast").
    let events = feed(&mut s, &client_frame(Text, false, b"ok so far \xff"), now);
    assert_1007(&events, &mut s);
    // The rest of the message is discarded.
    assert!(feed(&mut s, &client_frame(Continuation, true, b"tail"), now).is_empty());
}

#[test]
fn impossible_prefix_at_the_end_of_the_first_fragment_fails_at_once() {
    // U+D800 (a surrogate) and code points over U+10FFFF are invalid from
    // their second byte on; no continuation can repair them.
    for prefix in [&b"\xed\xa0"[..], b"\xf4\x90", b"\xe0\x80", b"\xf0\x80"] {
        let (mut s, now) = server();
        let events = feed(&mut s, &client_frame(Text, false, prefix), now);
        assert_1007(&events, &mut s);
    }
}

#[test]
fn invalid_byte_in_a_middle_fragment_fails_at_that_fragment() {
    let (mut s, now) = server();
    assert!(feed(&mut s, &client_frame(Text, false, b"fine "), now).is_empty());
    assert!(feed(&mut s, &client_frame(Continuation, false, "still fine é".as_bytes()), now).is_empty());
    let events = feed(&mut s, &client_frame(Continuation, false, b" \xfe"), now);
    assert_1007(&events, &mut s);
}

#[test]
fn split_code_point_with_an_impossible_continuation_fails_at_the_next_fragment() {
    let (mut s, now) = server();
    assert!(feed(&mut s, &client_frame(Text, false, b"\xf0\x9d"), now).is_empty());
    let events = feed(&mut s, &client_frame(Continuation, false, b"A"), now);
    assert_1007(&events, &mut s);
}

#[test]
fn code_point_split_across_fragments_is_accepted() {
    // "€" is E2 82 AC; "𝄞" is F0 9D 84 9E.
    let (mut s, now) = server();
    let wire = concat(&[
        client_frame(Text, false, b"price: \xe2"),
        client_frame(Continuation, false, b"\x82"),
        client_frame(Ping, true, b""),
        client_frame(Continuation, false, b"\xac clef: \xf0"),
        client_frame(Continuation, false, b"\x9d\x84"),
        client_frame(Continuation, true, b"\x9e"),
    ]);
    let events = feed(&mut s, &wire, now);
    assert_eq!(events, [Event::Ping("".into()), Event::Message(Message::text("price: € clef: 𝄞"))]);
}

#[test]
fn every_split_of_multibyte_text_into_two_fragments_is_accepted() {
    let text = "añ€𝄞z".as_bytes();
    for cut in 0..=text.len() {
        let (mut s, now) = server();
        let wire = concat(&[client_frame(Text, false, &text[..cut]), client_frame(Continuation, true, &text[cut..])]);
        assert_eq!(feed(&mut s, &wire, now), [Event::Message(Message::text("añ€𝄞z"))], "cut {cut}");
    }
}

#[test]
fn truncated_code_point_at_fin_is_1007() {
    let cases: [&[Vec<u8>]; 3] = [
        &[client_frame(Text, false, b"a\xe2\x82"), client_frame(Continuation, true, b"")],
        &[client_frame(Text, false, b"a"), client_frame(Continuation, true, b"\xe2\x82")],
        &[client_frame(Text, false, b"\xf0"), client_frame(Continuation, false, b"\x9d"), client_frame(Continuation, true, b"\x84")],
    ];
    for frames in cases {
        let (mut s, now) = server();
        let (last, first) = frames.split_last().unwrap();
        // Every fragment before FIN is a valid prefix: nothing happens yet.
        assert!(feed(&mut s, &concat(first), now).is_empty());
        let events = feed(&mut s, last, now);
        assert_1007(&events, &mut s);
    }
}

#[test]
fn binary_messages_are_not_validated() {
    let (mut s, now) = server();
    let wire = concat(&[client_frame(Binary, false, b"\xff\xfe"), client_frame(Continuation, true, b"\xc0")]);
    assert_eq!(feed(&mut s, &wire, now), [Event::Message(Message::binary(&b"\xff\xfe\xc0"[..]))]);
    assert!(s.is_open());
}

#[test]
fn client_fails_invalid_text_from_the_server_with_a_masked_1007() {
    let now = Instant::now();
    let mut c = Connection::new(Role::Client, quiet(), now);
    let events = feed(&mut c, &server_frame(Text, true, b"\xff"), now);
    assert_eq!(closed_in(&events).code.0, 1007);
    assert_eq!(last_close(Role::Client, &take_output(&mut c)).map(|c| c.0), Some(1007));
}

// ---- fail fast inside a frame, and after the events before it -------------

/// Feeds `wire` in reads cut at `cuts`, returning the events after each.
fn feed_chops(s: &mut Connection, wire: &[u8], cuts: &[usize], now: Instant) -> Vec<Vec<Event>> {
    let mut buf = blaze_proto::bytes::BytesMut::new();
    let mut start = 0;
    let mut out = Vec::new();
    for &end in cuts.iter().chain(std::iter::once(&wire.len())) {
        buf.extend_from_slice(&wire[start..end]);
        start = end;
        s.handle_read(&mut buf, now);
        out.push(events(s));
    }
    out
}

fn text_with_bad_byte_at(len: usize, at: usize) -> Vec<u8> {
    let mut payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
    payload[at] = 0xff;
    payload
}

#[test]
fn invalid_byte_inside_a_single_frame_fails_before_the_frame_completes() {
    let wire = client_frame(Text, true, &text_with_bad_byte_at(100, 40));
    // Header 2 + mask 4: payload offset 40 is wire offset 46, in the second read.
    let (mut s, now) = server();
    let steps = feed_chops(&mut s, &wire, &[30, 60], now);
    assert!(steps[0].is_empty());
    let info = closed_in(&steps[1]);
    assert_eq!((info.code.0, info.cause), (1007, CloseCause::Protocol(ProtocolError::InvalidUtf8)));
    assert!(steps[2].is_empty());
    assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(1007));
    // A code point split across reads is fine, and so is the whole frame.
    let text = "añ€𝄞z".repeat(10);
    let wire = client_frame(Text, true, text.as_bytes());
    for cut in 6..wire.len() {
        let (mut s, now) = server();
        let steps = feed_chops(&mut s, &wire, &[cut], now);
        assert_eq!(steps.concat(), [Event::Message(Message::text(text.clone()))], "cut {cut}");
    }
}

#[test]
fn invalid_byte_inside_a_continuation_frame_fails_before_it_completes() {
    let first = client_frame(Text, false, "fine é".as_bytes());
    let cont = client_frame(Continuation, true, &text_with_bad_byte_at(100, 40));
    let wire = concat(&[first.clone(), cont]);
    let (mut s, now) = server();
    let base = first.len();
    let steps = feed_chops(&mut s, &wire, &[base + 30, base + 60], now);
    assert!(steps[0].is_empty());
    assert_eq!(closed_in(&steps[1]).code.0, 1007);
    // A code point split between the fragments, the bad byte arriving in
    // a later read of the continuation.
    let first = client_frame(Text, false, b"ok \xe2\x82");
    let cont = client_frame(Continuation, true, b"\xac then \xc3 bad and more bytes after it");
    let wire = concat(&[first.clone(), cont]);
    let (mut s, now) = server();
    let steps = feed_chops(&mut s, &wire, &[first.len() + 6 + 2], now);
    assert!(steps[0].is_empty(), "{:?}", steps[0]);
    assert_eq!(closed_in(&steps[1]).code.0, 1007);
}

#[test]
fn a_message_before_invalid_utf8_is_answered_before_the_1007_close() {
    let (mut s, now) = server();
    let wire = concat(&[client_frame(Text, true, b"good"), client_frame(Text, true, b"bad \xff")]);
    s.handle_read(&mut blaze_proto::bytes::BytesMut::from(&wire[..]), now);
    assert_eq!(s.poll_event(), Some(Event::Message(Message::text("good"))));
    assert!(s.is_open());
    s.send(Message::text("reply")).unwrap();
    let info = match s.poll_event() {
        Some(Event::Closed(info)) => info,
        other => panic!("{other:?}"),
    };
    assert_eq!((info.code.0, info.cause), (1007, CloseCause::Protocol(ProtocolError::InvalidUtf8)));
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames.len(), 2);
    assert_eq!(&frames[0].payload[..], b"reply");
    assert_eq!(close_of(&frames[1]).map(|c| c.0), Some(1007));
}
