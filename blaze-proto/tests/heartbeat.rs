//! RFC 6455 §5.5.2-§5.5.3 heartbeats and the connection's deadlines: ping
//! after silence, pong deadline, automatic pongs, idle timeout.

mod common;

use std::time::{Duration, Instant};

use blaze_proto::frame::{OpCode, Role};
use blaze_proto::{CloseCause, CloseCode, Config, Connection, Event, Message, State, UsageError};
use common::*;
use OpCode::{Close, Ping, Pong, Text};

const INTERVAL: Duration = Duration::from_secs(30);
const PONG: Duration = Duration::from_secs(60);

fn heartbeat() -> Config {
    Config::default().ping_interval(Some(INTERVAL)).pong_timeout(PONG).idle_timeout(None)
}

fn server(config: Config) -> (Connection, Instant) {
    let now = Instant::now();
    (Connection::new(Role::Server, config, now), now)
}

#[test]
fn poll_timeout_reports_ping_interval_after_creation() {
    let (s, start) = server(heartbeat());
    assert_eq!(s.poll_timeout(), Some(start + INTERVAL));
    let c = Connection::new(Role::Client, heartbeat(), start);
    assert_eq!(c.poll_timeout(), Some(start + INTERVAL));
}

#[test]
fn handle_timeout_at_ping_interval_queues_a_ping() {
    let (mut s, start) = server(heartbeat());
    s.handle_timeout(start + INTERVAL - Duration::from_nanos(1));
    assert!(!s.wants_write(), "no ping before the interval");

    s.handle_timeout(start + INTERVAL);
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.opcode, Ping);
    assert!(frames[0].header.fin);
    assert!(s.poll_event().is_none(), "a timer is not an event");
    assert_eq!(s.poll_timeout(), Some(start + INTERVAL + PONG));
}

#[test]
fn client_heartbeat_ping_is_masked() {
    let start = Instant::now();
    let mut c = Connection::new(Role::Client, heartbeat(), start);
    c.handle_timeout(start + INTERVAL);
    let frames = check_stream(Role::Client, &take_output(&mut c));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.opcode, Ping);
}

#[test]
fn unanswered_ping_closes_with_pong_timeout_at_interval_plus_pong_timeout() {
    let (mut s, start) = server(heartbeat());
    s.handle_timeout(start + INTERVAL);
    take_output(&mut s);
    let deadline = start + INTERVAL + PONG;
    s.handle_timeout(deadline - Duration::from_nanos(1));
    assert!(s.poll_event().is_none());
    assert!(s.is_open());

    s.handle_timeout(deadline);
    let info = closed_in(&events(&mut s));
    assert_eq!((info.code, info.cause), (CloseCode::ABNORMAL, CloseCause::PongTimeout));
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.poll_timeout(), None);
    assert!(s.is_finished());
}

#[test]
fn a_pong_cancels_the_deadline_and_the_next_ping_waits_a_full_interval() {
    // A pong timeout shorter than the interval, so the old deadline falls
    // before the next ping is due.
    let pong = secs(10);
    let mut pair = Pair::new(heartbeat().pong_timeout(pong));
    pair.set_time(INTERVAL);
    pair.server.handle_timeout(pair.now);
    // The ping travels; the client answers it automatically.
    pair.set_time(INTERVAL + secs(1));
    pair.server_to_client();
    assert_eq!(pair.client_events(), [Event::Ping("".into())]);
    pair.set_time(INTERVAL + secs(2));
    pair.client_to_server();
    assert_eq!(pair.server_events(), [Event::Pong("".into())]);

    let answered = pair.now;
    assert_eq!(pair.server.poll_timeout(), Some(answered + INTERVAL));
    // At the old pong deadline: still alive, and no ping yet.
    pair.server.handle_timeout(pair.at(INTERVAL + pong));
    assert!(pair.server.is_open());
    assert!(pair.server.poll_event().is_none());
    assert!(!pair.server.wants_write(), "next ping only after a full interval of silence");
    pair.server.handle_timeout(answered + INTERVAL - Duration::from_nanos(1));
    assert!(!pair.server.wants_write());
    pair.server.handle_timeout(answered + INTERVAL);
    let frames = check_stream(Role::Server, &take_output(&mut pair.server));
    assert_eq!(frames.iter().map(|f| f.header.opcode).collect::<Vec<_>>(), [Ping]);
    assert_eq!(pair.server.poll_timeout(), Some(answered + INTERVAL + pong));
}

#[test]
fn any_inbound_bytes_cancel_the_pong_deadline() {
    let (mut s, start) = server(heartbeat());
    s.handle_timeout(start + INTERVAL);
    take_output(&mut s);
    // Two bytes of a frame that has not finished arriving still prove the
    // peer is alive.
    let arrived = start + INTERVAL + secs(59);
    let frame = client_frame(Text, true, b"slow");
    let mut buf = blaze_proto::bytes::BytesMut::from(&frame[..2]);
    s.handle_read(&mut buf, arrived);
    assert_eq!(s.poll_timeout(), Some(arrived + INTERVAL));
    s.handle_timeout(start + INTERVAL + PONG);
    assert!(s.is_open());
    assert!(s.poll_event().is_none());
}

#[test]
fn inbound_messages_postpone_the_ping() {
    let (mut s, start) = server(heartbeat());
    let t = start + secs(20);
    assert_eq!(feed(&mut s, &client_frame(Text, true, b"hi"), t).len(), 1);
    assert_eq!(s.poll_timeout(), Some(t + INTERVAL));
    s.handle_timeout(start + INTERVAL);
    assert!(!s.wants_write());
}

#[test]
fn automatic_pong_echoes_the_ping_payload() {
    let (mut s, now) = server(heartbeat());
    let payload = [7u8; 125];
    let events = feed(&mut s, &client_frame(Ping, true, &payload), now);
    assert_eq!(events, [Event::Ping(payload.to_vec().into())]);
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].header.opcode, Pong);
    assert_eq!(&frames[0].payload[..], &payload[..]);
}

#[test]
fn client_automatic_pong_is_masked_and_echoes_the_payload() {
    let mut pair = Pair::new(heartbeat());
    pair.server.ping(b"are you there").unwrap();
    pair.server_to_client();
    assert_eq!(pair.client_events(), [Event::Ping("are you there".into())]);
    let wire = pair.client_to_server();
    let frames = check_stream(Role::Client, &wire);
    assert_eq!((frames[0].header.opcode, &frames[0].payload[..]), (Pong, &b"are you there"[..]));
    assert_eq!(pair.server_events(), [Event::Pong("are you there".into())]);
}

#[test]
fn auto_pong_off_reports_the_ping_without_answering() {
    let (mut s, now) = server(heartbeat().auto_pong(false));
    assert_eq!(feed(&mut s, &client_frame(Ping, true, b"x"), now), [Event::Ping("x".into())]);
    assert!(!s.wants_write());
    s.pong(b"x").unwrap();
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!((frames[0].header.opcode, &frames[0].payload[..]), (Pong, &b"x"[..]));
}

#[test]
fn unsolicited_pong_is_reported_and_not_answered() {
    let (mut s, now) = server(heartbeat());
    assert_eq!(feed(&mut s, &client_frame(Pong, true, b"beat"), now), [Event::Pong("beat".into())]);
    assert!(!s.wants_write());
}

#[test]
fn application_ping_payload_is_limited_to_125_bytes() {
    let (mut s, _) = server(heartbeat());
    assert_eq!(s.ping(&[0; 126]), Err(UsageError::ControlPayloadTooLong));
    assert_eq!(s.pong(&[0; 126]), Err(UsageError::ControlPayloadTooLong));
    s.ping(&[0; 125]).unwrap();
    assert_eq!(check_stream(Role::Server, &take_output(&mut s))[0].payload.len(), 125);
}

#[test]
fn ping_interval_none_means_no_timers() {
    let (mut s, start) = server(heartbeat().ping_interval(None));
    assert_eq!(s.poll_timeout(), None);
    feed(&mut s, &client_frame(Text, true, b"x"), start + secs(1));
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(start + Duration::from_secs(24 * 3600));
    assert!(!s.wants_write());
    assert!(s.poll_event().is_none());
    assert!(s.is_open());
}

#[test]
fn idle_timeout_closes_with_1000_after_silence() {
    let idle = secs(10);
    let mut pair = Pair::new(quiet().idle_timeout(Some(idle)));
    assert_eq!(pair.server.poll_timeout(), Some(pair.at(idle)));
    pair.server.handle_timeout(pair.at(idle) - Duration::from_nanos(1));
    assert!(pair.server.is_open());

    pair.set_time(idle);
    pair.server.handle_timeout(pair.now);
    assert_eq!(pair.server.state(), State::Closing);
    let wire = pair.server_to_client();
    assert_eq!(last_close(Role::Server, &wire).map(|c| c.0), Some(1000));
    assert_eq!(closed_in(&pair.client_events()).code.0, 1000);
    pair.client_to_server();
    let info = closed_in(&pair.server_events());
    assert_eq!((info.code.0, info.cause), (1000, CloseCause::Local));
}

#[test]
fn a_received_message_restarts_the_idle_period() {
    let idle = secs(10);
    let (mut s, start) = server(quiet().idle_timeout(Some(idle)));
    feed(&mut s, &client_frame(Text, true, b"still here"), start + secs(6));
    assert_eq!(s.poll_timeout(), Some(start + secs(16)));
    s.handle_timeout(start + idle);
    assert!(s.is_open());
    assert!(!s.wants_write());
}

#[test]
fn pings_do_not_count_as_activity_for_the_idle_timeout() {
    let idle = secs(10);
    let (mut s, start) = server(quiet().idle_timeout(Some(idle)));
    feed(&mut s, &client_frame(Ping, true, b""), start + secs(6));
    take_output(&mut s);
    s.handle_timeout(start + idle);
    assert_eq!(s.state(), State::Closing);
}

#[test]
fn a_sent_message_postpones_the_idle_close() {
    let idle = secs(10);
    let (mut s, start) = server(quiet().idle_timeout(Some(idle)));
    s.send(Message::text("tick")).unwrap();
    take_output(&mut s);
    s.handle_timeout(start + idle);
    // Sends carry no time: the idle period restarts from this check.
    assert!(s.is_open());
    assert!(!s.wants_write());
    assert_eq!(s.poll_timeout(), Some(start + idle + idle));
    s.handle_timeout(start + idle + idle);
    assert_eq!(s.state(), State::Closing);
}

#[test]
fn timers_due_together_fire_in_order_and_nothing_follows_the_close_frame() {
    // The driver oversleeps: the idle deadline (10 s) and the ping (15 s)
    // are both past when it wakes at 20 s. The idle close comes first, and
    // a ping may not follow our close frame (the heartbeat stops once
    // closing).
    let (mut s, start) = server(Config::default().ping_interval(Some(secs(15))).idle_timeout(Some(secs(10))));
    s.handle_timeout(start + secs(20));
    assert_eq!(s.state(), State::Closing);
    let frames = check_stream(Role::Server, &take_output(&mut s));
    assert_eq!(frames.iter().map(|f| f.header.opcode).collect::<Vec<_>>(), [Close]);
    // Only the close-handshake deadline is left.
    assert_eq!(s.poll_timeout(), Some(start + secs(20) + Config::default().close_timeout));
}

#[test]
fn heartbeat_stops_once_closing() {
    let (mut s, start) = server(heartbeat().close_timeout(secs(100)));
    s.close(CloseCode::NORMAL, "", start).unwrap();
    take_output(&mut s);
    assert_eq!(s.poll_timeout(), Some(start + secs(100)));
    // Inbound bytes while closing do not re-arm the ping.
    feed(&mut s, &client_frame(Pong, true, b""), start + secs(1));
    assert_eq!(s.poll_timeout(), Some(start + secs(100)));
    s.handle_timeout(start + INTERVAL + INTERVAL);
    assert!(!s.wants_write());
}

#[test]
fn outstanding_ping_still_times_out_while_closing() {
    // A dead peer answers neither the ping nor the close: whichever
    // deadline is first closes the connection, once.
    let (mut s, start) = server(heartbeat().pong_timeout(secs(2)).close_timeout(secs(5)));
    s.handle_timeout(start + INTERVAL);
    s.close(CloseCode::NORMAL, "", start + INTERVAL).unwrap();
    s.handle_timeout(start + INTERVAL + secs(10));
    let info = closed_in(&events(&mut s));
    assert_eq!(info.cause, CloseCause::PongTimeout);
}
