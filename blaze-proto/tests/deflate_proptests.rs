//! Property tests for permessage-deflate: whatever the message, window,
//! context takeover, level, threshold and the way the wire is cut into
//! reads, the other end gets exactly the messages sent, in order; and
//! arbitrary bytes marked RSV1 never panic and either decode or fail with
//! 1002, 1007 or 1009.

mod common;

use std::time::Instant;

use blaze_proto::bytes::BytesMut;
use blaze_proto::deflate::{CompressionMode, DeflateConfig, DeflateParams};
use blaze_proto::frame::{OpCode, Role};
use blaze_proto::{Connection, Event, Message};
use common::*;
use proptest::prelude::*;
use proptest::sample::Index;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig { cases: n, failure_persistence: None, ..ProptestConfig::default() }
}

/// A message of 0..4096 bytes: random, or repetitive (compresses, with
/// back-references at all distances).
fn message() -> impl Strategy<Value = Message> {
    let random_text = prop::collection::vec(any::<char>(), 0..1024).prop_map(|c| {
        let mut s = String::from_iter(c);
        while s.len() > 4096 {
            s.pop();
        }
        Message::text(s)
    });
    let repetitive_text = (prop::collection::vec(prop::sample::select(vec!["a", "b", "é", "𝄞", "{\"k\":1}", " "]), 1..16), 0usize..300)
        .prop_map(|(words, n)| {
            let unit = words.concat();
            let mut s = unit.repeat(n.max(1));
            while s.len() > 4096 {
                s.pop();
            }
            Message::text(s)
        });
    let random_binary = prop::collection::vec(any::<u8>(), 0..4096).prop_map(Message::binary);
    let repetitive_binary = (prop::collection::vec(any::<u8>(), 1..40), 0usize..4096).prop_map(|(unit, len)| {
        Message::binary(unit.iter().copied().cycle().take(len).collect::<Vec<u8>>())
    });
    prop_oneof![random_text, repetitive_text, random_binary, repetitive_binary]
}

fn window() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![Just(None), (9u8..=15).prop_map(Some)]
}

fn params() -> impl Strategy<Value = DeflateParams> {
    (any::<bool>(), any::<bool>(), window(), window()).prop_map(|(s, c, sw, cw)| DeflateParams {
        server_no_context_takeover: s,
        client_no_context_takeover: c,
        server_max_window_bits: sw,
        client_max_window_bits: cw,
    })
}

fn config() -> impl Strategy<Value = DeflateConfig> {
    (0u32..=9, prop::sample::select(vec![0usize, 1, 64, 500]), any::<bool>()).prop_map(|(level, threshold, dedicated)| {
        let mode = if dedicated { CompressionMode::Dedicated } else { CompressionMode::Shared };
        DeflateConfig::default().level(level).threshold(threshold).mode(mode)
    })
}

/// Splits `data` at the given indices.
fn cut_points(len: usize, cuts: &[Index]) -> Vec<usize> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(len + 1)).collect();
    points.sort_unstable();
    points.dedup();
    points
}

/// Sends `messages` from one end of `pair`, checks RSV1 on the wire (set
/// exactly on messages of at least `threshold` bytes), feeds the wire to
/// the other end cut at `cuts`, and returns what it received.
fn send_and_receive(
    pair: &mut Pair,
    from_server: bool,
    messages: &[Message],
    threshold: usize,
    can_compress: bool,
    cuts: &[Index],
) -> Result<Vec<Event>, TestCaseError> {
    let now = pair.now;
    let (sender, receiver) = if from_server { (&mut pair.server, &mut pair.client) } else { (&mut pair.client, &mut pair.server) };
    for m in messages {
        sender.send(m.clone()).unwrap();
    }
    let wire = take_output(sender);
    let frames = check_stream_deflate(sender.role(), &wire);
    prop_assert_eq!(frames.len(), messages.len());
    for (m, f) in messages.iter().zip(&frames) {
        prop_assert!(f.header.fin);
        prop_assert_eq!(f.header.rsv1, can_compress && m.len() >= threshold, "len {} threshold {}", m.len(), threshold);
        let opcode = if m.as_text().is_some() { OpCode::Text } else { OpCode::Binary };
        prop_assert_eq!(f.header.opcode, opcode);
        if !f.header.rsv1 {
            prop_assert_eq!(&f.payload[..], m.as_bytes());
        }
    }
    let events = feed_cut(receiver, &wire, &cut_points(wire.len(), cuts), now);
    prop_assert!(receiver.is_open());
    prop_assert_eq!(receiver.buffered_bytes(), 0);
    Ok(events)
}

/// Like `feed_cut`, calling again while input is paused.
fn feed_resuming(conn: &mut Connection, bytes: &[u8], cuts: &[usize], now: Instant) -> Vec<Event> {
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        buf.extend_from_slice(&bytes[start..cut.max(start)]);
        start = cut.max(start);
        loop {
            conn.handle_read(&mut buf, now);
            seen.extend(events(conn));
            if !conn.input_paused() {
                break;
            }
        }
    }
    seen
}

fn as_events(messages: &[Message]) -> Vec<Event> {
    messages.iter().cloned().map(Event::Message).collect()
}

proptest! {
    #![proptest_config(cases(96))]

    #[test]
    fn compressed_messages_round_trip_under_any_parameters_and_any_split(
        messages in prop::collection::vec(message(), 1..5),
        params in params(),
        server_config in config(),
        client_config in config(),
        cuts in prop::collection::vec(any::<Index>(), 0..10),
    ) {
        let mut pair = deflate_pair(&params, &server_config, &client_config);
        let got = send_and_receive(&mut pair, true, &messages, server_config.threshold, true, &cuts)?;
        prop_assert_eq!(got, as_events(&messages));
        let got = send_and_receive(&mut pair, false, &messages, client_config.threshold, true, &cuts)?;
        prop_assert_eq!(got, as_events(&messages));
    }

    #[test]
    fn a_sequence_with_context_takeover_round_trips(
        pool in prop::collection::vec(message(), 1..4),
        picks in prop::collection::vec((any::<Index>(), any::<bool>(), any::<bool>()), 1..24),
        server_bits in window(),
        client_bits in window(),
        level in 0u32..=9,
        cuts in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        // Repeats from a small pool: later messages refer back into earlier
        // ones through the kept windows.
        let params = DeflateParams { server_max_window_bits: server_bits, client_max_window_bits: client_bits, ..DeflateParams::default() };
        let config = DeflateConfig::default().mode(CompressionMode::Dedicated).level(level).threshold(0);
        let mut pair = deflate_pair(&params, &config, &config);
        for (pick, from_server, plain) in picks {
            let m = pool[pick.index(pool.len())].clone();
            let (sender, receiver) = if from_server { (&mut pair.server, &mut pair.client) } else { (&mut pair.client, &mut pair.server) };
            if plain {
                sender.send_uncompressed(m.clone()).unwrap();
            } else {
                sender.send(m.clone()).unwrap();
            }
            let wire = take_output(sender);
            prop_assert_eq!(wire[0] & 0x40 != 0, !plain);
            let got = feed_cut(receiver, &wire, &cut_points(wire.len(), &cuts), pair.now);
            prop_assert_eq!(got, vec![Event::Message(m)]);
        }
        prop_assert!(pair.server.is_open() && pair.client.is_open());
    }

    #[test]
    fn a_sequence_compressed_by_flate2_with_context_round_trips(
        pool in prop::collection::vec(message(), 1..4),
        picks in prop::collection::vec((any::<Index>(), any::<Index>()), 1..12),
        bits in 9u8..=15,
        level in 0u32..=9,
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        // An independent compressor, fragmenting each message at a cut.
        let params = DeflateParams { client_max_window_bits: Some(bits), ..DeflateParams::default() };
        let (mut s, now) = deflate_server(quiet(), &params, &DeflateConfig::default().mode(CompressionMode::Dedicated));
        let mut raw = RawDeflate::with_window(level, bits);
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for (pick, cut) in picks {
            let m = pool[pick.index(pool.len())].clone();
            let data = raw.message(m.as_bytes());
            let (a, b) = data.split_at(cut.index(data.len() + 1));
            let opcode = if m.as_text().is_some() { OpCode::Text } else { OpCode::Binary };
            wire.extend(client_frame_with(hdr(opcode, false, true), a));
            wire.extend(client_frame(OpCode::Continuation, true, b));
            expected.push(Event::Message(m));
        }
        let got = feed_cut(&mut s, &wire, &cut_points(wire.len(), &cuts), now);
        prop_assert_eq!(got, expected);
        prop_assert!(s.is_open());
    }
}

/// Hostile compressed payloads: random bytes, or valid data damaged.
fn hostile_payload() -> impl Strategy<Value = Vec<u8>> {
    let random = prop::collection::vec(any::<u8>(), 0..300);
    let damaged = (message(), prop::collection::vec((any::<Index>(), any::<u8>()), 0..4), any::<Index>(), any::<bool>())
        .prop_map(|(m, edits, cut, truncate)| {
            let mut data = deflate_message(m.as_bytes());
            if !data.is_empty() {
                for (at, byte) in edits {
                    let i = at.index(data.len());
                    data[i] ^= byte;
                }
            }
            if truncate {
                data.truncate(cut.index(data.len() + 1));
            }
            data
        });
    let bomb = (1usize..8).prop_map(|mib| deflate_message(&vec![0u8; mib << 20]));
    prop_oneof![4 => random, 4 => damaged, 1 => bomb]
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn arbitrary_rsv1_payloads_never_panic_and_fail_only_with_1002_1007_or_1009(
        payloads in prop::collection::vec((hostile_payload(), any::<bool>(), prop::collection::vec(any::<Index>(), 0..3)), 1..4),
        params in params(),
        max_message in prop::sample::select(vec![64usize, 4096, 1 << 20]),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
        client in any::<bool>(),
    ) {
        let role = if client { Role::Client } else { Role::Server };
        let mut wire = Vec::new();
        for (payload, text, frags) in &payloads {
            let opcode = if *text { OpCode::Text } else { OpCode::Binary };
            let points = cut_points(payload.len(), frags);
            let mut pieces = Vec::new();
            let mut start = 0;
            for p in points.iter().copied().chain(std::iter::once(payload.len())) {
                pieces.push(&payload[start..p.max(start)]);
                start = p.max(start);
            }
            for (i, piece) in pieces.iter().enumerate() {
                let header = hdr(if i == 0 { opcode } else { OpCode::Continuation }, i == pieces.len() - 1, i == 0);
                wire.extend(if client { server_frame_with(header, piece) } else { client_frame_with(header, piece) });
            }
        }
        let now = Instant::now();
        let config = quiet().max_message_size(max_message);
        let mut whole = Connection::new(role, config.clone(), now);
        whole.enable_deflate(&params, &DeflateConfig::default());
        let mut split = Connection::new(role, config, now);
        split.enable_deflate(&params, &DeflateConfig::default());
        let whole_events = feed_resuming(&mut whole, &wire, &[], now);
        let split_events = feed_resuming(&mut split, &wire, &cut_points(wire.len(), &cuts), now);
        for (conn, events) in [(&mut whole, &whole_events), (&mut split, &split_events)] {
            let closed: Vec<_> = events.iter().filter_map(|e| match e { Event::Closed(i) => Some(i.clone()), _ => None }).collect();
            prop_assert!(closed.len() <= 1);
            if let Some(info) = closed.first() {
                prop_assert!(matches!(events.last(), Some(Event::Closed(_))));
                prop_assert!([1002, 1007, 1009].contains(&info.code.0), "{:?}", info);
            } else {
                prop_assert!(conn.is_open());
                prop_assert_eq!(events.len(), payloads.len());
            }
            for e in events.iter() {
                if let Event::Message(m) = e {
                    prop_assert!(m.len() <= max_message);
                }
            }
            prop_assert!(conn.buffered_bytes() <= max_message + 1);
            check_stream_deflate(role, &take_output(conn));
        }
        // The messages before any failure are the same however the wire was
        // cut. (Not with a window under 15: a back-reference past the
        // negotiated window is read from the output buffer when the frame
        // arrives whole, and fails when the window had to serve it.)
        let recv_bits = if client { params.server_max_window_bits } else { params.client_max_window_bits };
        if recv_bits.unwrap_or(15) == 15 {
            let messages = |events: &[Event]| events.iter().filter(|e| matches!(e, Event::Message(_))).cloned().collect::<Vec<_>>();
            prop_assert_eq!(messages(&whole_events), messages(&split_events));
        }
    }
}
