//! The outbound queue limit (`max_backpressure`) and its two policies, and
//! that the bytes written stay a valid frame stream whatever is discarded.

mod common;

use std::io::IoSlice;
use std::time::Instant;

use blaze_proto::frame::{OpCode, Role};
use blaze_proto::{
    BackpressurePolicy, CloseCause, Config, Connection, Event, Message, PreparedMessage, State, UsageError,
};
use common::*;

/// The most a frame's header adds to its payload, and the largest control
/// frame: what may sit beyond the limit once it is reached.
const MAX_HEADER: usize = 14;
const MAX_CONTROL_FRAME: usize = 2 + 125 + 4;

fn limited(max: usize, policy: BackpressurePolicy) -> Config {
    quiet().max_backpressure(max).backpressure_policy(policy)
}

/// Everything queued, without marking it written.
fn peek_output(conn: &Connection) -> Vec<u8> {
    let mut slices = [IoSlice::new(&[]); 64];
    let n = conn.transmit_slices(&mut slices);
    let out: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    assert_eq!(out.len(), conn.pending_bytes(), "transmit_slices must cover every pending byte");
    out
}

/// Writes the first `n` queued bytes and returns them.
fn write_partially(conn: &mut Connection, n: usize) -> Vec<u8> {
    let written = peek_output(conn)[..n].to_vec();
    conn.advance_transmit(n);
    written
}

#[test]
fn sending_past_the_limit_with_close_policy_closes_with_1008_after_the_started_frame() {
    let mut pair = Pair::with_configs(limited(1000, BackpressurePolicy::Close), quiet());
    pair.server.send(Message::binary(vec![1; 600])).unwrap();
    // The socket took 10 bytes of the first frame, then stalled.
    let mut wire = write_partially(&mut pair.server, 10);
    assert_eq!(pair.server.send(Message::binary(vec![2; 600])), Err(UsageError::Backpressure));
    assert_eq!(pair.server.state(), State::Closing);
    assert_eq!(pair.server.send(Message::text("x")), Err(UsageError::Closed));
    assert!(pair.server.poll_event().is_none(), "the close is not final until the handshake ends");

    wire.extend(take_output(&mut pair.server));
    let frames = check_stream(Role::Server, &wire);
    assert_eq!(frames.len(), 2);
    assert_eq!(&frames[0].payload[..], &[1; 600][..]);
    assert_eq!(close_of(&frames[1]).map(|c| c.0), Some(1008));

    pair.client.handle_read(&mut wire[..].into(), pair.now);
    let events = pair.client_events();
    assert_eq!(events[0], Event::Message(Message::binary(vec![1; 600])));
    let info = closed_in(&events);
    assert_eq!((info.code.0, info.cause), (1008, CloseCause::Remote));

    pair.client_to_server();
    let info = closed_in(&pair.server_events());
    assert_eq!((info.code.0, info.cause), (1008, CloseCause::Local));
}

#[test]
fn nothing_started_means_everything_queued_is_dropped_for_the_close_frame() {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, limited(1000, BackpressurePolicy::Close), now);
    for _ in 0..9 {
        s.send(Message::binary(vec![0; 100])).unwrap();
    }
    assert_eq!(s.send(Message::binary(vec![0; 100])), Err(UsageError::Backpressure));
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames.len(), 1);
    assert_eq!(close_of(&frames[0]).map(|c| c.0), Some(1008));
}

#[test]
fn pending_bytes_stay_bounded_under_close_policy() {
    let max = 4096;
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, limited(max, BackpressurePolicy::Close), now);
    let mut wire = Vec::new();
    let mut refused = 0;
    for i in 0..2000usize {
        match s.send(Message::binary(vec![i as u8; 1 + i % 300])) {
            Ok(()) => {}
            Err(UsageError::Backpressure) => refused += 1,
            Err(UsageError::Closed) => {}
            Err(other) => panic!("{other:?}"),
        }
        assert!(s.pending_bytes() <= max + MAX_HEADER + MAX_CONTROL_FRAME, "pending {}", s.pending_bytes());
        // A slow reader: a few bytes now and then.
        if i % 7 == 0 {
            let n = s.pending_bytes().min(37);
            wire.extend(write_partially(&mut s, n));
        }
    }
    assert_eq!(refused, 1, "the first overflow closes; later sends see Closed");
    wire.extend(take_output(&mut s));
    let frames = check_stream(Role::Server, &wire);
    assert_eq!(close_of(frames.last().unwrap()).map(|c| c.0), Some(1008));
}

#[test]
fn backpressure_close_arms_the_close_timeout_at_the_next_check() {
    let timeout = secs(5);
    let start = Instant::now();
    let mut s = Connection::new(Role::Server, limited(100, BackpressurePolicy::Close).close_timeout(timeout), start);
    let t1 = start + secs(3);
    feed(&mut s, &client_frame(OpCode::Pong, true, b""), t1);
    s.send(Message::binary(vec![0; 100])).unwrap();
    assert_eq!(s.send(Message::binary(vec![0; 1])), Err(UsageError::Backpressure));
    // `send` has no clock: the deadline is requested at once...
    assert_eq!(s.poll_timeout(), Some(t1));
    let t2 = start + secs(4);
    s.handle_timeout(t2);
    // ...and armed from the time of that check.
    assert_eq!(s.poll_timeout(), Some(t2 + timeout));
    s.handle_timeout(t2 + timeout - ms(1));
    assert!(s.poll_event().is_none());
    s.handle_timeout(t2 + timeout);
    let info = closed_in(&events(&mut s));
    assert_eq!((info.code.0, info.cause), (1008, CloseCause::CloseTimeout));
}

#[test]
fn closed_connection_has_no_deadline_after_a_backpressure_close_completes() {
    let start = Instant::now();
    let mut s = Connection::new(Role::Server, limited(100, BackpressurePolicy::Close), start);
    s.send(Message::binary(vec![0; 100])).unwrap();
    assert_eq!(s.send(Message::binary(vec![0; 1])), Err(UsageError::Backpressure));
    take_output(&mut s);
    // The peer answers before the driver ever checks its timers.
    let info = closed_in(&feed(&mut s, &client_frame(OpCode::Close, true, &close_payload(1008, b"")), start));
    assert_eq!(info.cause, CloseCause::Local);
    assert!(s.is_finished());
    assert_eq!(s.poll_timeout(), None, "a closed connection has nothing to wait for");
}

#[test]
fn drop_policy_refuses_the_message_reports_dropped_and_stays_open() {
    let mut pair = Pair::with_configs(limited(1000, BackpressurePolicy::Drop), quiet());
    for i in 0..9u8 {
        pair.server.send(Message::binary(vec![i; 100])).unwrap();
    }
    assert_eq!(pair.server.send(Message::binary(vec![99; 100])), Err(UsageError::Backpressure));
    assert_eq!(pair.server.send_prepared(&PreparedMessage::binary(&[98; 100])), Err(UsageError::Backpressure));
    assert_eq!(pair.server_events(), [Event::Dropped { len: 100 }, Event::Dropped { len: 102 }]);
    assert!(pair.server.is_open());
    assert!(pair.server.pending_bytes() <= 1000);

    pair.server_to_client();
    let got = pair.client_events();
    assert_eq!(got.len(), 9);
    for (i, event) in got.into_iter().enumerate() {
        assert_eq!(event, Event::Message(Message::binary(vec![i as u8; 100])));
    }
    // Once drained, sends are accepted again.
    pair.server.send(Message::text("again")).unwrap();
    pair.server_to_client();
    assert_eq!(pair.client_events(), [Event::Message(Message::text("again"))]);
}

#[test]
fn a_single_message_larger_than_the_limit_is_accepted_on_an_empty_queue() {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, limited(100, BackpressurePolicy::Close), now);
    s.send(Message::binary(vec![0; 5000])).unwrap();
    assert!(s.is_open());
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames[0].payload.len(), 5000);
}

/// Queues frames of every kind the outbound queue handles differently
/// (copied small frames, a large frame with a shared payload, a shared
/// prepared frame), writes `cut`
/// bytes, overflows, and checks what the peer receives.
fn overflow_after_writing(cut: usize) {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, limited(50_000, BackpressurePolicy::Close), now);
    let big: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
    let prepared = PreparedMessage::binary(&[5; 300]);
    s.send(Message::text("a")).unwrap(); // 3 bytes
    s.send(Message::binary(big.clone())).unwrap(); // 4 + 20000 bytes
    s.send_prepared(&prepared).unwrap(); // 4 + 300 bytes
    s.send(Message::text("b")).unwrap(); // 3 bytes
    let ends = [3, 3 + 20_004, 3 + 20_004 + 304, 3 + 20_004 + 304 + 3];
    let mut wire = write_partially(&mut s, cut);
    // Over the limit whatever is still queued (an empty queue would take it).
    assert_eq!(s.send(Message::binary(vec![0; 60_000])), Err(UsageError::Backpressure), "cut {cut}");
    wire.extend(take_output(&mut s));

    let frames = check_stream(Role::Server, &wire);
    // Every frame that was at least partly written goes out whole, then the
    // close frame; nothing that had not started.
    let starts = [0, ends[0], ends[1], ends[2]];
    let started = starts.iter().filter(|&&start| start < cut).count();
    let expected: Vec<Vec<u8>> = [b"a".to_vec(), big, vec![5; 300], b"b".to_vec()][..started].to_vec();
    assert_eq!(frames.len(), expected.len() + 1, "cut {cut}");
    for (frame, payload) in frames.iter().zip(&expected) {
        assert_eq!(&frame.payload[..], &payload[..], "cut {cut}");
    }
    assert_eq!(close_of(frames.last().unwrap()).map(|c| c.0), Some(1008), "cut {cut}");
}

#[test]
fn a_half_written_frame_is_kept_whole_when_the_queue_overflows() {
    // Every boundary and points inside headers and payloads of each frame
    // (not the very end: an empty queue accepts any message).
    let cuts = [0, 1, 2, 3, 4, 5, 6, 7, 1000, 19_999, 20_006, 20_007, 20_008, 20_200, 20_310, 20_311, 20_312, 20_313];
    for cut in cuts {
        overflow_after_writing(cut);
    }
}

#[test]
fn half_written_frame_through_transmit_bytes_is_kept_whole() {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, limited(1000, BackpressurePolicy::Close), now);
    s.send(Message::text("0123456789")).unwrap();
    s.send(Message::text("abcdef")).unwrap();
    let mut wire = s.transmit_bytes()[..4].to_vec();
    s.advance_transmit(4);
    assert_eq!(s.send(Message::binary(vec![0; 2000])), Err(UsageError::Backpressure));
    wire.extend(take_output_bytes(&mut s));
    let frames = check_stream(Role::Server, &wire);
    assert_eq!(frames.len(), 2);
    assert_eq!(&frames[0].payload[..], b"0123456789");
}

#[test]
fn ping_flood_from_a_peer_that_never_reads_keeps_the_queue_bounded() {
    // Every ping asks for a pong of the same size; a peer that sends pings
    // but never reads must not make the server queue pongs without bound.
    for policy in [BackpressurePolicy::Close, BackpressurePolicy::Drop] {
        let max = 1000;
        let now = Instant::now();
        let mut s = Connection::new(Role::Server, limited(max, policy), now);
        let ping = client_frame(OpCode::Ping, true, &[b'p'; 125]);
        for _ in 0..200 {
            feed(&mut s, &ping, now);
            assert!(
                s.pending_bytes() <= max + MAX_HEADER + MAX_CONTROL_FRAME,
                "{policy:?}: pending {}",
                s.pending_bytes()
            );
        }
        check_stream(Role::Server, &take_output(&mut s));
        match policy {
            BackpressurePolicy::Close => assert_eq!(s.state(), State::Closing),
            _ => assert!(s.is_open()),
        }
    }
}

#[test]
fn pongs_within_the_limit_are_all_sent() {
    let now = Instant::now();
    let mut s = Connection::new(Role::Server, limited(1000, BackpressurePolicy::Close), now);
    let wire = concat(&vec![client_frame(OpCode::Ping, true, &[1; 100]); 9]);
    assert_eq!(feed(&mut s, &wire, now).len(), 9);
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames.len(), 9);
    assert!(frames.iter().all(|f| f.header.opcode == OpCode::Pong && f.payload.len() == 100));
    assert!(s.is_open());
}
