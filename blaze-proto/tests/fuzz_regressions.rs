//! Regression tests for what the fuzz targets (fuzz/, `scripts/fuzz.sh`)
//! found. Each test replays a crashing input, minimized, with the fuzz
//! artifact it came from named in its doc comment.

mod common;

use std::time::Instant;

use blaze_proto::frame::{OpCode, Role};
use blaze_proto::{BackpressurePolicy, Config, Connection, Event, Message, State, UsageError};
use common::*;

/// `connection` crash-e0c7c230f142c132c5760cc41ab18f9dc8d98df9 (minimized
/// to 61 bytes): a client with `max_backpressure` 0 and the default close
/// policy queues one large text message (allowed: the queue was empty),
/// then the application sends a pong. The pong was queued past the limit
/// without any check, so an application pinging or ponging a peer that
/// does not read grew the queue without bound.
#[test]
fn application_pong_past_max_backpressure_is_refused_and_closes() {
    let now = Instant::now();
    let config = Config::default()
        .max_frame_size(0)
        .max_message_size(0)
        .max_backpressure(0)
        .ping_interval(None)
        .pong_timeout(ms(0))
        .close_timeout(ms(0))
        .mask_seed(0);
    let mut client = Connection::new(Role::Client, config, now);
    client.send(Message::text("\0".repeat(5329))).unwrap();
    let queued = client.pending_bytes();
    assert_eq!(queued, 5329 + 4 + 4); // a 16-bit length and a mask

    assert_eq!(client.pong(&[209, 209, 124, 124, 124, 124, 124, 136, 19]), Err(UsageError::Backpressure));
    // The close policy: the unsent message is discarded and 1008 queued.
    assert_eq!(client.state(), State::Closing);
    let frames = check_stream(Role::Client, &take_output(&mut client));
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(close_of(&frames[0]).map(|c| c.0), Some(1008));
}

/// The same, under the drop policy and with pings: refused every time,
/// reported, and the queue does not grow.
#[test]
fn application_pings_past_max_backpressure_are_dropped() {
    let now = Instant::now();
    let config = quiet().max_backpressure(100).backpressure_policy(BackpressurePolicy::Drop);
    let mut server = Connection::new(Role::Server, config, now);
    server.send(Message::binary(vec![7; 1000])).unwrap();
    let queued = server.pending_bytes();
    for _ in 0..1000 {
        assert_eq!(server.ping(b"are you there"), Err(UsageError::Backpressure));
    }
    assert_eq!(server.pending_bytes(), queued);
    let events = events(&mut server);
    assert_eq!(events.len(), 1000);
    assert!(events.iter().all(|e| *e == Event::Dropped { len: 13 }), "{:?}", &events[..1]);
    // Below the limit they go out as before.
    let frames = check_stream(Role::Server, &take_output(&mut server));
    assert_eq!(frames.len(), 1);
    server.ping(b"now").unwrap();
    let frames = check_stream(Role::Server, &take_output(&mut server));
    assert_eq!((frames[0].header.opcode, &frames[0].payload[..]), (OpCode::Ping, &b"now"[..]));
    assert_eq!(server.state(), State::Open);
}

/// `handshake_request` (the stricter harness comparing chunked and whole
/// reads; minimized: 65 × `A` then a NUL, `max_head_bytes` 64): fed byte by
/// byte the head was 431 once it passed the limit, but fed at once httparse
/// reached the NUL past the limit first and it was 400.
#[test]
fn a_head_over_the_limit_is_431_however_it_arrives() {
    use blaze_proto::bytes::BytesMut;
    use blaze_proto::handshake::{HandshakeLimits, RequestReader};
    let mut wire = b"A".repeat(65);
    wire.push(0);
    let reader = RequestReader::new(HandshakeLimits::default().max_head_bytes(64), Instant::now());
    let whole = reader.read(&mut BytesMut::from(&wire[..])).map(|r| r.is_some()).map_err(|e| e.status());
    let mut buf = BytesMut::new();
    let mut pieces = Ok(false);
    for byte in &wire {
        buf.extend_from_slice(&[*byte]);
        pieces = reader.read(&mut buf).map(|r| r.is_some()).map_err(|e| e.status());
        if pieces != Ok(false) {
            break;
        }
    }
    assert_eq!(whole, Err(431));
    assert_eq!(pieces, Err(431));
}

/// The same on the client side (found by the same harness on
/// `handshake_response`): a response head over 16 KiB with a bad byte past
/// the limit is `TooLarge` at once as in pieces.
#[test]
fn a_response_head_over_the_limit_is_too_large_however_it_arrives() {
    use blaze_proto::bytes::BytesMut;
    use blaze_proto::handshake::{ClientHandshake, ClientHandshakeError};
    let mut wire = b"HTTP/1.1 101 Switching Protocols\r\nX-Long: ".to_vec();
    wire.extend(b"a".repeat(16_400));
    wire.push(0);
    let client = ClientHandshake::new("h", "/", [1; 16]);
    assert_eq!(client.read_response(&mut BytesMut::from(&wire[..])), Err(ClientHandshakeError::TooLarge));
    let mut buf = BytesMut::new();
    let mut last = Ok(None);
    for chunk in wire.chunks(1000) {
        buf.extend_from_slice(chunk);
        last = client.read_response(&mut buf);
        if !matches!(last, Ok(None)) {
            break;
        }
    }
    assert_eq!(last, Err(ClientHandshakeError::TooLarge));
}
