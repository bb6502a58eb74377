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
