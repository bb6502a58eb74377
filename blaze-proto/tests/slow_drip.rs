//! Slow-drip hardening (issue 10): a peer that sends one byte a minute
//! passes every liveness check, so a message must finish within
//! `message_timeout` of its start (close 1008), and a message may span at
//! most `max_fragments` frames (close 1008), empty continuations included.
//! Virtual time throughout: `now` is a base `Instant` plus offsets.

mod common;

use std::time::{Duration, Instant};

use blaze_proto::bytes::BytesMut;
use blaze_proto::frame::{OpCode, Role};
use blaze_proto::{CloseCause, Config, Connection, Event, Message, ProtocolError, State};
use common::*;
use OpCode::{Binary, Continuation, Ping, Text};

const TIMEOUT: Duration = Duration::from_secs(10);

fn config(timeout: Option<Duration>) -> Config {
    quiet().message_timeout(timeout)
}

/// A server connection and a read buffer that, like a driver's, keeps
/// the bytes of an incomplete frame between reads.
struct Server {
    conn: Connection,
    buf: BytesMut,
    base: Instant,
}

impl Server {
    fn new(config: Config) -> Server {
        let base = Instant::now();
        Server { conn: Connection::new(Role::Server, config, base), buf: BytesMut::new(), base }
    }

    fn at(&self, offset: Duration) -> Instant {
        self.base + offset
    }

    fn read(&mut self, bytes: &[u8], offset: Duration) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        let now = self.at(offset);
        self.conn.handle_read(&mut self.buf, now);
        events(&mut self.conn)
    }

    fn timeout(&mut self, offset: Duration) -> Vec<Event> {
        let now = self.at(offset);
        self.conn.handle_timeout(now);
        events(&mut self.conn)
    }
}

fn assert_message_timeout(events: &[Event], s: &mut Server, timeout: Duration) {
    let info = closed_in(events);
    assert_eq!(info.code, code(1008));
    assert_eq!(info.cause, CloseCause::Protocol(ProtocolError::MessageTimeout { timeout }));
    assert_eq!(s.conn.state(), State::Closed);
    let (wire_code, _reason) = last_close(Role::Server, &take_output(&mut s.conn)).expect("close frame with a code");
    assert_eq!(wire_code, 1008);
}

#[test]
fn defaults_are_120_seconds_and_4096_fragments() {
    let config = Config::default();
    assert_eq!(config.message_timeout, Some(secs(120)));
    assert_eq!(config.max_fragments, 4096);
    assert_eq!(ProtocolError::MessageTimeout { timeout: secs(1) }.close_code(), code(1008));
    assert_eq!(ProtocolError::TooManyFragments { max: 1 }.close_code(), code(1008));
}

#[test]
fn a_message_dripped_past_the_timeout_closes_1008_at_the_deadline() {
    let mut s = Server::new(config(Some(TIMEOUT)));
    assert_eq!(s.conn.poll_timeout(), None, "no message, no timer");
    assert!(s.read(&client_frame(Text, false, b"almost a whole message"), secs(0)).is_empty());
    assert_eq!(s.conn.poll_timeout(), Some(s.at(TIMEOUT)));
    // The last fragment, one byte a second: liveness, never completion.
    let last = client_frame(Continuation, true, &[b'x'; 100]);
    for (i, byte) in last.iter().take(10).enumerate() {
        assert!(s.read(&[*byte], secs(i as u64)).is_empty());
        assert_eq!(s.conn.poll_timeout(), Some(s.at(TIMEOUT)), "dripping does not push the deadline");
    }
    assert!(s.timeout(TIMEOUT - Duration::from_nanos(1)).is_empty());
    assert!(s.conn.is_open(), "not before the deadline");
    let events = s.timeout(TIMEOUT);
    assert_message_timeout(&events, &mut s, TIMEOUT);
    assert_eq!(s.conn.poll_timeout(), None);
    assert!(s.read(&last[10..], secs(11)).is_empty(), "nothing after Closed");
}

#[test]
fn a_single_frame_whose_payload_trickles_counts_as_started() {
    let mut s = Server::new(config(Some(TIMEOUT)));
    let frame = client_frame(Binary, true, &[7u8; 1000]);
    // Header only (2 + 2 length + 4 mask bytes), then a payload byte.
    assert!(s.read(&frame[..9], secs(3)).is_empty());
    assert_eq!(s.conn.poll_timeout(), Some(s.at(secs(3) + TIMEOUT)));
    assert!(s.read(&frame[9..10], secs(12)).is_empty());
    let events = s.timeout(secs(13));
    assert_message_timeout(&events, &mut s, TIMEOUT);
}

#[test]
fn an_incomplete_header_alone_does_not_start_the_clock() {
    let mut s = Server::new(config(Some(TIMEOUT)));
    let frame = client_frame(Binary, true, &[7u8; 1000]);
    assert!(s.read(&frame[..1], secs(0)).is_empty());
    assert_eq!(s.conn.poll_timeout(), None, "the clock starts with the first frame's header");
    assert!(s.read(&frame[1..8], secs(1)).is_empty());
    assert_eq!(s.conn.poll_timeout(), Some(s.at(secs(1) + TIMEOUT)));
}

#[test]
fn a_message_completed_in_time_is_delivered_and_the_timer_stops() {
    let mut s = Server::new(config(Some(TIMEOUT)));
    assert!(s.read(&client_frame(Text, false, b"hel"), secs(0)).is_empty());
    assert!(s.read(&client_frame(Continuation, false, b"lo "), secs(4)).is_empty());
    let events = s.read(&client_frame(Continuation, true, b"world"), TIMEOUT - ms(1));
    assert_eq!(events, vec![Event::Message(Message::text("hello world"))]);
    assert_eq!(s.conn.poll_timeout(), None, "stopped once the message completed");
    // No late failure, however late.
    assert!(s.timeout(TIMEOUT).is_empty());
    assert!(s.timeout(secs(100_000)).is_empty());
    assert!(s.conn.is_open());
    assert!(take_output(&mut s.conn).is_empty(), "no close frame");
}

#[test]
fn each_message_gets_its_own_deadline_from_its_start() {
    let mut s = Server::new(config(Some(TIMEOUT)));
    assert!(s.read(&client_frame(Text, false, b"a"), secs(0)).is_empty());
    // One read completes the first message and starts the second.
    let bytes = concat(&[client_frame(Continuation, true, b"b"), client_frame(Binary, false, b"c")]);
    assert_eq!(s.read(&bytes, secs(8)), vec![Event::Message(Message::text("ab"))]);
    assert_eq!(s.conn.poll_timeout(), Some(s.at(secs(8) + TIMEOUT)));
    assert!(s.timeout(secs(17)).is_empty());
    assert!(s.conn.is_open(), "the first message's deadline no longer applies");
    let events = s.timeout(secs(18));
    assert_message_timeout(&events, &mut s, TIMEOUT);
}

#[test]
fn whole_messages_in_one_read_never_arm_the_timer() {
    let mut s = Server::new(config(Some(TIMEOUT)));
    let bytes = concat(&[
        client_frame(Text, false, b"a"),
        client_frame(Continuation, true, b"b"),
        client_frame(Binary, true, b"c"),
    ]);
    assert_eq!(s.read(&bytes, secs(0)).len(), 2);
    assert_eq!(s.conn.poll_timeout(), None);
}

#[test]
fn events_before_the_timeout_come_first() {
    let mut s = Server::new(config(Some(TIMEOUT)));
    s.buf.extend_from_slice(&concat(&[client_frame(Ping, true, b"p"), client_frame(Text, false, b"a")]));
    let now = s.at(secs(0));
    s.conn.handle_read(&mut s.buf, now);
    // The driver has not taken the ping yet when the deadline passes.
    s.conn.handle_timeout(s.at(TIMEOUT));
    let conn_events = events(&mut s.conn);
    assert!(matches!(conn_events[0], Event::Ping(_)), "{conn_events:?}");
    assert_message_timeout(&conn_events, &mut s, TIMEOUT);
}

#[test]
fn our_close_hands_the_deadline_to_close_timeout() {
    let mut s = Server::new(config(Some(TIMEOUT)).close_timeout(secs(5)));
    assert!(s.read(&client_frame(Text, false, b"a"), secs(0)).is_empty());
    let now = s.at(secs(1));
    s.conn.close(code(1000), "bye", now).unwrap();
    assert_eq!(s.conn.poll_timeout(), Some(s.at(secs(6))), "only the close handshake is timed");
    let info = closed_in(&s.timeout(secs(20)));
    assert_eq!(info.cause, CloseCause::CloseTimeout);
    assert_eq!(info.code, code(1000));
}

#[test]
fn none_disables_the_message_timeout() {
    let mut s = Server::new(config(None));
    assert!(s.read(&client_frame(Text, false, b"a"), secs(0)).is_empty());
    assert!(s.read(&client_frame(Continuation, true, &[b'x'; 100])[..20], secs(1)).is_empty());
    assert_eq!(s.conn.poll_timeout(), None);
    assert!(s.timeout(secs(10_000_000)).is_empty());
    assert!(s.conn.is_open());
}

#[test]
fn duration_max_is_never_and_does_not_overflow() {
    let mut s = Server::new(config(Some(Duration::MAX)));
    assert!(s.read(&client_frame(Text, false, b"a"), secs(0)).is_empty());
    assert_eq!(s.conn.poll_timeout(), None);
    assert!(s.timeout(secs(1 << 30)).is_empty());
    assert!(s.conn.is_open());
    let events = s.read(&client_frame(Continuation, true, b"b"), secs(1 << 30));
    assert_eq!(events, vec![Event::Message(Message::text("ab"))]);
}

#[test]
fn the_timeout_also_runs_for_client_connections() {
    let base = Instant::now();
    let mut c = Connection::new(Role::Client, config(Some(TIMEOUT)), base);
    let mut buf = BytesMut::from(&server_frame(Binary, false, b"a")[..]);
    c.handle_read(&mut buf, base);
    assert_eq!(c.poll_timeout(), Some(base + TIMEOUT));
    c.handle_timeout(base + TIMEOUT);
    let info = closed_in(&events(&mut c));
    assert_eq!(info.code, code(1008));
}

// ---- max_fragments -----------------------------------------------------

#[test]
fn a_message_of_exactly_max_fragments_is_accepted() {
    let mut s = Server::new(config(Some(TIMEOUT)).max_fragments(4));
    let bytes = concat(&[
        client_frame(Text, false, b"a"),
        client_frame(Continuation, false, b""),
        client_frame(Continuation, false, b"b"),
        client_frame(Continuation, true, b""),
    ]);
    assert_eq!(s.read(&bytes, secs(0)), vec![Event::Message(Message::text("ab"))]);
    // The count is per message: the next one starts from one again.
    assert_eq!(s.read(&bytes, secs(1)), vec![Event::Message(Message::text("ab"))]);
}

#[test]
fn one_fragment_over_the_cap_closes_1008_even_when_empty() {
    let mut s = Server::new(config(Some(TIMEOUT)).max_fragments(4));
    let mut frames = vec![client_frame(Binary, false, b"a")];
    frames.extend((0..3).map(|_| client_frame(Continuation, false, b"")));
    assert!(s.read(&concat(&frames), secs(0)).is_empty());
    assert!(s.conn.is_open(), "four fragments are allowed");
    let events = s.read(&client_frame(Continuation, false, b""), secs(0));
    let info = closed_in(&events);
    assert_eq!(info.code, code(1008));
    assert_eq!(info.cause, CloseCause::Protocol(ProtocolError::TooManyFragments { max: 4 }));
    assert_eq!(last_close(Role::Server, &take_output(&mut s.conn)).map(|(c, _)| c), Some(1008));
}

#[test]
fn the_cap_applies_when_a_text_fragment_is_inspected_before_it_completes() {
    let mut s = Server::new(config(Some(TIMEOUT)).max_fragments(2));
    let two = concat(&[client_frame(Text, false, b"a"), client_frame(Continuation, false, b"b")]);
    assert!(s.read(&two, secs(0)).is_empty());
    // The third frame's header and a prefix of its text payload.
    let third = client_frame(Continuation, true, b"cdefgh");
    let info = closed_in(&s.read(&third[..8], secs(0)));
    assert_eq!(info.cause, CloseCause::Protocol(ProtocolError::TooManyFragments { max: 2 }));
}

#[test]
fn max_fragments_one_allows_unfragmented_messages_only() {
    for max in [0, 1] {
        let mut s = Server::new(config(Some(TIMEOUT)).max_fragments(max));
        assert_eq!(s.read(&client_frame(Text, true, b"whole"), secs(0)), vec![Event::Message(Message::text("whole"))]);
        assert!(s.read(&client_frame(Text, false, b"a"), secs(0)).is_empty());
        let info = closed_in(&s.read(&client_frame(Continuation, true, b"b"), secs(0)));
        assert_eq!(info.cause, CloseCause::Protocol(ProtocolError::TooManyFragments { max }));
    }
}

#[test]
fn the_default_cap_takes_a_mebibyte_in_256_byte_fragments_and_no_more() {
    let mut s = Server::new(quiet());
    let chunk = [0x5au8; 256];
    let mut frames = vec![client_frame(Binary, false, &chunk)];
    frames.extend((0..4094).map(|_| client_frame(Continuation, false, &chunk)));
    frames.push(client_frame(Continuation, true, &chunk));
    let events = s.read(&concat(&frames), secs(0));
    let one_mib = matches!(events.as_slice(), [Event::Message(Message::Binary(b))] if b.len() == 1 << 20);
    assert!(one_mib, "one 1 MiB message");

    // Endless empty continuations: the size limit never sees them.
    let mut frames = vec![client_frame(Binary, false, b"")];
    frames.extend((0..4096).map(|_| client_frame(Continuation, false, b"")));
    let info = closed_in(&s.read(&concat(&frames), secs(1)));
    assert_eq!(info.code, code(1008));
    assert_eq!(info.cause, CloseCause::Protocol(ProtocolError::TooManyFragments { max: 4096 }));
}
