//! RFC 6455 §5.5.1, §7: the close handshake, close payload rules, and what
//! a connection may do once a close frame was sent or received.

mod common;

use std::time::{Duration, Instant};

use blaze_proto::frame::{OpCode, Role};
use blaze_proto::{CloseCause, CloseCode, Config, Connection, Event, Message, ProtocolError, State, UsageError};
use common::*;
use OpCode::{Close, Continuation, Ping, Text};

fn server(config: Config) -> (Connection, Instant) {
    let now = Instant::now();
    (Connection::new(Role::Server, config, now), now)
}

#[test]
fn client_initiated_close_is_echoed_and_reported_as_remote() {
    let mut pair = Pair::new(quiet());
    pair.client.close(code(4000), "bye now", pair.now).unwrap();
    assert_eq!(pair.client.state(), State::Closing);
    let sent = pair.client_to_server();
    assert_eq!(last_close(Role::Client, &sent), Some((4000, "bye now".into())));

    let info = closed_in(&pair.server_events());
    assert_eq!((info.code.0, info.reason.as_str(), info.cause), (4000, "bye now", CloseCause::Remote));
    assert_eq!(pair.server.state(), State::Closed);
    assert!(!pair.server.is_finished(), "the answer is still to be written");

    // §5.5.1: the answer echoes the status code.
    let answer = pair.server_to_client();
    assert_eq!(last_close(Role::Server, &answer).map(|c| c.0), Some(4000));
    assert!(pair.server.is_finished());

    let info = closed_in(&pair.client_events());
    assert_eq!((info.code.0, info.cause), (4000, CloseCause::Local));
    assert!(pair.client.is_finished());
}

#[test]
fn server_initiated_close_is_echoed_and_reported_as_local() {
    let mut pair = Pair::new(quiet());
    pair.server.close(CloseCode::GOING_AWAY, "shutdown", pair.now).unwrap();
    assert_eq!(pair.server.state(), State::Closing);
    assert_eq!(last_close(Role::Server, &pair.server_to_client()), Some((1001, "shutdown".into())));

    let info = closed_in(&pair.client_events());
    assert_eq!((info.code.0, info.reason.as_str(), info.cause), (1001, "shutdown", CloseCause::Remote));
    assert_eq!(last_close(Role::Client, &pair.client_to_server()).map(|c| c.0), Some(1001));

    let info = closed_in(&pair.server_events());
    assert_eq!((info.code.0, info.cause), (1001, CloseCause::Local));
    assert!(pair.server.is_finished() && pair.client.is_finished());
    assert_eq!(pair.server.poll_timeout(), None);
}

#[test]
fn simultaneous_close_sends_one_close_frame_each() {
    let mut pair = Pair::new(quiet());
    pair.server.close(CloseCode::NORMAL, "", pair.now).unwrap();
    pair.client.close(CloseCode::GOING_AWAY, "", pair.now).unwrap();
    let from_client = take_output(&mut pair.client);
    let from_server = take_output(&mut pair.server);
    assert_eq!(check_stream(Role::Client, &from_client).len(), 1);
    assert_eq!(check_stream(Role::Server, &from_server).len(), 1);
    pair.server.handle_read(&mut from_client[..].into(), pair.now);
    pair.client.handle_read(&mut from_server[..].into(), pair.now);
    // Each already sent its close frame: neither answers again.
    assert!(!pair.server.wants_write() && !pair.client.wants_write());
    let s = closed_in(&pair.server_events());
    let c = closed_in(&pair.client_events());
    assert_eq!((s.code.0, s.cause), (1001, CloseCause::Local));
    assert_eq!((c.code.0, c.cause), (1000, CloseCause::Local));
}

#[test]
fn empty_close_payload_reports_1005_and_is_answered_with_an_empty_close() {
    let (mut s, now) = server(quiet());
    let info = closed_in(&feed(&mut s, &client_frame(Close, true, b""), now));
    assert_eq!((info.code, info.reason.as_str(), info.cause), (CloseCode::NO_STATUS, "", CloseCause::Remote));
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.opcode, Close);
    assert!(frames[0].payload.is_empty(), "1005 must never be sent on the wire");
}

#[test]
fn empty_close_answer_to_our_close_reports_1005() {
    // §7.1.5: a close frame without a status code means code 1005.
    let (mut s, now) = server(quiet());
    s.close(CloseCode::NORMAL, "", now).unwrap();
    let info = closed_in(&feed(&mut s, &client_frame(Close, true, b""), now));
    assert_eq!((info.code, info.cause), (CloseCode::NO_STATUS, CloseCause::Local));
}

#[test]
fn invalid_close_codes_on_the_wire_are_1002() {
    for wire_code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
        let (mut s, now) = server(quiet());
        let info = closed_in(&feed(&mut s, &client_frame(Close, true, &close_payload(wire_code, b"")), now));
        assert_eq!(info.code.0, 1002, "code {wire_code}");
        assert_eq!(info.cause, CloseCause::Protocol(ProtocolError::InvalidCloseCode(wire_code)));
        assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(1002), "code {wire_code}");
    }
}

#[test]
fn every_sendable_close_code_is_accepted_and_echoed() {
    for wire_code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
        let (mut s, now) = server(quiet());
        let info = closed_in(&feed(&mut s, &client_frame(Close, true, &close_payload(wire_code, b"r")), now));
        assert_eq!((info.code.0, info.reason.as_str(), info.cause), (wire_code, "r", CloseCause::Remote));
        assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(wire_code));
    }
}

#[test]
fn one_byte_close_payload_is_1002() {
    let (mut s, now) = server(quiet());
    let info = closed_in(&feed(&mut s, &client_frame(Close, true, &[0x03]), now));
    assert_eq!((info.code.0, info.cause), (1002, CloseCause::Protocol(ProtocolError::CloseFrameTooShort)));
    assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(1002));
}

#[test]
fn invalid_utf8_close_reason_is_1007() {
    let (mut s, now) = server(quiet());
    let info = closed_in(&feed(&mut s, &client_frame(Close, true, &close_payload(1000, b"ok\xff")), now));
    assert_eq!((info.code.0, info.cause), (1007, CloseCause::Protocol(ProtocolError::InvalidCloseReason)));
    assert_eq!(last_close(Role::Server, &take_output(&mut s)).map(|c| c.0), Some(1007));
}

#[test]
fn close_frame_over_125_bytes_is_1002() {
    let (mut s, now) = server(quiet());
    let payload = close_payload(1000, &[b'x'; 124]);
    let info = closed_in(&feed(&mut s, &client_frame(Close, true, &payload), now));
    assert_eq!((info.code.0, info.cause), (1002, CloseCause::Protocol(ProtocolError::ControlFrameTooLong)));
}

#[test]
fn fragmented_close_frame_is_1002() {
    let (mut s, now) = server(quiet());
    let info = closed_in(&feed(&mut s, &client_frame(Close, false, &close_payload(1000, b"")), now));
    assert_eq!((info.code.0, info.cause), (1002, CloseCause::Protocol(ProtocolError::FragmentedControlFrame)));
}

#[test]
fn close_with_an_unsendable_code_is_refused_and_changes_nothing() {
    let (mut s, now) = server(quiet());
    for bad in [1005u16, 1006, 1015, 999, 2000] {
        assert_eq!(s.close(code(bad), "", now), Err(UsageError::UnsendableCloseCode(bad)));
    }
    assert!(s.is_open());
    assert!(!s.wants_write());
}

#[test]
fn closing_twice_sends_one_close_frame() {
    let (mut s, now) = server(quiet());
    s.close(CloseCode::NORMAL, "first", now).unwrap();
    s.close(CloseCode::GOING_AWAY, "second", now).unwrap();
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames.len(), 1);
    assert_eq!(close_of(&frames[0]), Some((1000, "first".into())));
}

#[test]
fn long_close_reason_is_cut_to_fit_a_control_frame() {
    let (mut s, now) = server(quiet());
    s.close(CloseCode::NORMAL, &"ü".repeat(200), now).unwrap();
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert!(frames[0].payload.len() <= 125);
    let (code, reason) = close_of(&frames[0]).unwrap();
    assert_eq!(code, 1000);
    assert!(reason.chars().all(|c| c == 'ü') && !reason.is_empty());
}

#[test]
fn data_frames_before_the_close_frame_in_the_same_read_are_delivered() {
    let (mut s, now) = server(quiet());
    let wire = concat(&[
        client_frame(Text, true, b"last words"),
        client_frame(Close, true, &close_payload(1000, b"")),
        client_frame(Text, true, b"from beyond"),
    ]);
    let events = feed(&mut s, &wire, now);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], Event::Message(Message::text("last words")));
    assert_eq!(closed_in(&events).code.0, 1000);
}

#[test]
fn after_our_close_sends_are_refused_with_closed() {
    let (mut s, now) = server(quiet());
    s.close(CloseCode::NORMAL, "", now).unwrap();
    assert_eq!(s.send(Message::text("late")), Err(UsageError::Closed));
    assert_eq!(s.send_prepared(&blaze_proto::PreparedMessage::text("late")), Err(UsageError::Closed));
    assert_eq!(s.ping(b""), Err(UsageError::Closed));
    assert_eq!(s.pong(b""), Err(UsageError::Closed));
    // Only the close frame went out.
    assert_eq!(check_stream(Role::Server, &take_output(&mut s)).len(), 1);
    assert!(s.poll_event().is_none());
}

#[test]
fn data_frames_arriving_after_our_close_are_not_delivered() {
    let (mut s, now) = server(quiet());
    // A message begun before our close and finished after is dropped too.
    assert!(feed(&mut s, &client_frame(Text, false, b"begun"), now).is_empty());
    s.close(CloseCode::NORMAL, "", now).unwrap();
    let wire = concat(&[
        client_frame(Continuation, true, b" then finished"),
        client_frame(Text, true, b"in flight"),
        client_frame(OpCode::Binary, true, b"also in flight"),
    ]);
    assert!(feed(&mut s, &wire, now).is_empty());
    let info = closed_in(&feed(&mut s, &client_frame(Close, true, &close_payload(1000, b"")), now));
    assert_eq!(info.cause, CloseCause::Local);
}

#[test]
fn no_frame_is_sent_after_our_close_frame() {
    let (mut s, now) = server(quiet());
    s.close(CloseCode::NORMAL, "", now).unwrap();
    // A ping from the peer is reported but not answered: our close frame
    // must stay the last frame we write.
    assert_eq!(feed(&mut s, &client_frame(Ping, true, b"late ping"), now), [Event::Ping("late ping".into())]);
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.opcode, Close);
}

#[test]
fn after_closed_nothing_is_accepted_and_closed_is_emitted_once() {
    let (mut s, now) = server(Default::default());
    let info = closed_in(&feed(&mut s, &client_frame(Close, true, &close_payload(1000, b"")), now));
    assert_eq!(info.cause, CloseCause::Remote);
    take_output(&mut s);

    let mut buf = blaze_proto::bytes::BytesMut::from(
        &concat(&[client_frame(Text, true, b"x"), client_frame(Ping, true, b""), client_frame(Close, true, b"")])[..],
    );
    s.handle_read(&mut buf, now);
    assert!(buf.is_empty(), "input after Closed is discarded");
    s.handle_timeout(now + Duration::from_secs(3600));
    s.handle_eof();
    assert_eq!(s.send(Message::text("x")), Err(UsageError::Closed));
    assert_eq!(s.ping(b""), Err(UsageError::Closed));
    assert_eq!(s.close(CloseCode::NORMAL, "", now), Ok(()));
    assert!(s.poll_event().is_none());
    assert!(!s.wants_write());
    assert!(s.is_finished());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn close_handshake_times_out_at_exactly_close_timeout() {
    let timeout = Duration::from_secs(5);
    let (mut s, start) = server(Config::default().close_timeout(timeout));
    let closed_at = start + Duration::from_secs(2);
    s.close(code(4001), "going", closed_at).unwrap();
    take_output(&mut s);
    // The heartbeat is off while closing: the close deadline is the only one.
    assert_eq!(s.poll_timeout(), Some(closed_at + timeout));
    s.handle_timeout(closed_at + timeout - Duration::from_nanos(1));
    assert!(s.poll_event().is_none());
    assert_eq!(s.state(), State::Closing);

    s.handle_timeout(closed_at + timeout);
    let info = closed_in(&events(&mut s));
    assert_eq!((info.code.0, info.cause), (4001, CloseCause::CloseTimeout));
    assert_eq!(s.state(), State::Closed);
    assert!(s.is_finished());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn peer_activity_does_not_extend_the_close_timeout() {
    let (mut s, start) = server(quiet().close_timeout(Duration::from_secs(5)));
    s.close(CloseCode::NORMAL, "", start).unwrap();
    // The peer keeps talking but never closes.
    for i in 1..5 {
        feed(&mut s, &client_frame(Text, true, b"chatter"), start + Duration::from_secs(i));
    }
    assert_eq!(s.poll_timeout(), Some(start + Duration::from_secs(5)));
    s.handle_timeout(start + Duration::from_secs(5));
    assert_eq!(closed_in(&events(&mut s)).cause, CloseCause::CloseTimeout);
}

#[test]
fn handle_eof_mid_connection_is_1006() {
    let (mut s, now) = server(quiet());
    feed(&mut s, &client_frame(Text, false, b"partial"), now);
    s.send(Message::text("unsent")).unwrap();
    s.handle_eof();
    let info = closed_in(&events(&mut s));
    assert_eq!((info.code, info.cause), (CloseCode::ABNORMAL, CloseCause::TransportClosed));
    assert_eq!(s.state(), State::Closed);
    assert!(!s.wants_write(), "nothing can be written to a closed transport");
    assert!(s.is_finished());
    s.handle_eof();
    assert!(s.poll_event().is_none());
}

#[test]
fn handle_eof_while_closing_is_1006() {
    let (mut s, now) = server(quiet());
    s.close(CloseCode::NORMAL, "", now).unwrap();
    s.handle_eof();
    let info = closed_in(&events(&mut s));
    assert_eq!((info.code, info.cause), (CloseCode::ABNORMAL, CloseCause::TransportClosed));
}

#[test]
fn handle_eof_after_a_clean_close_changes_nothing() {
    let mut pair = Pair::new(quiet());
    pair.client.close(CloseCode::NORMAL, "", pair.now).unwrap();
    pair.pump();
    assert_eq!(closed_in(&pair.server_events()).code.0, 1000);
    assert_eq!(closed_in(&pair.client_events()).code.0, 1000);
    pair.server.handle_eof();
    pair.client.handle_eof();
    assert!(pair.server.poll_event().is_none() && pair.client.poll_event().is_none());
}
