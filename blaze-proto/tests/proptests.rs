//! Property tests: the codec round-trips, input splitting never changes
//! behaviour, hostile input never panics and never makes a connection write
//! an invalid stream, and nothing happens after `Closed`.

mod common;

use std::time::{Duration, Instant};

use blaze_proto::bytes::BytesMut;
use blaze_proto::frame::{encode_frame, encoded_len, FrameDecoder, FrameHeader, OpCode, Role};
use blaze_proto::handshake::{
    accept_key, ClientHandshake, ClientHandshakeError, HandshakeLimits, RequestReader, UpgradeRequest,
};
use blaze_proto::{BackpressurePolicy, CloseCode, Config, Connection, Event, Message};
use common::*;
use proptest::prelude::*;
use proptest::sample::Index;

// ---- strategies --------------------------------------------------------

fn opcode() -> impl Strategy<Value = OpCode> {
    prop_oneof![
        Just(OpCode::Continuation),
        Just(OpCode::Text),
        Just(OpCode::Binary),
        Just(OpCode::Close),
        Just(OpCode::Ping),
        Just(OpCode::Pong),
    ]
}

/// A payload length: mostly small, sometimes at the 7/16/64-bit length
/// boundaries. The bytes derive from a seed (cheap to generate and shrink).
fn payload(max_small: usize) -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![
        8 => 0..=max_small,
        1 => prop::sample::select(vec![125usize, 126, 127, 65_535, 65_536, 65_537]),
    ];
    (len, any::<u8>()).prop_map(|(len, seed)| (0..len).map(|i| seed.wrapping_add((i * 31) as u8)).collect())
}

/// Splits `data` at the given indices (sorted, deduplicated).
fn split_at(data: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
    points.sort_unstable();
    points.dedup();
    let mut pieces = Vec::new();
    let mut start = 0;
    for p in points {
        pieces.push(data[start..p].to_vec());
        start = p;
    }
    pieces.push(data[start..].to_vec());
    pieces
}

/// One thing a well-behaved client sends.
#[derive(Debug, Clone)]
enum Item {
    /// A data message, in one or more fragments, with an optional ping
    /// injected after fragment `ping.0`.
    Message { text: bool, data: Vec<u8>, cuts: Vec<Index>, ping: Option<(Index, Vec<u8>)> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn control_payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=125)
}

fn item() -> impl Strategy<Value = Item> {
    let text = prop::collection::vec(any::<char>(), 0..24).prop_map(|c| String::from_iter(c).into_bytes());
    let binary = prop::collection::vec(any::<u8>(), 0..64);
    let message = (prop_oneof![text.prop_map(|d| (true, d)), binary.prop_map(|d| (false, d))],
        prop::collection::vec(any::<Index>(), 0..4),
        prop::option::of((any::<Index>(), control_payload())))
        .prop_map(|((text, data), cuts, ping)| Item::Message { text, data, cuts, ping });
    prop_oneof![
        6 => message,
        1 => control_payload().prop_map(Item::Ping),
        1 => control_payload().prop_map(Item::Pong),
    ]
}

/// Encodes items as masked client frames (a fresh key per frame) and
/// returns the events a server must report for them.
fn encode_items(items: &[Item], key_seed: u8) -> (Vec<u8>, Vec<Event>) {
    let mut wire = BytesMut::new();
    let mut expected = Vec::new();
    let mut n = 0u8;
    let mut put = |header: FrameHeader, payload: &[u8], wire: &mut BytesMut| {
        n = n.wrapping_add(1);
        let key = [key_seed, n, key_seed ^ n, 0x5a];
        encode_frame(header, payload, Some(key), wire);
    };
    for item in items {
        match item {
            Item::Message { text, data, cuts, ping } => {
                let pieces = split_at(data, cuts);
                let ping_after = ping.as_ref().map(|(at, p)| (at.index(pieces.len()), p));
                let first = if *text { OpCode::Text } else { OpCode::Binary };
                for (i, piece) in pieces.iter().enumerate() {
                    let opcode = if i == 0 { first } else { OpCode::Continuation };
                    let fin = i == pieces.len() - 1;
                    put(FrameHeader { fin, ..FrameHeader::new(opcode) }, piece, &mut wire);
                    if let Some((at, payload)) = ping_after {
                        if at == i && !fin {
                            put(FrameHeader::new(OpCode::Ping), payload, &mut wire);
                            expected.push(Event::Ping(payload.clone().into()));
                        }
                    }
                }
                expected.push(Event::Message(if *text {
                    Message::text(String::from_utf8(data.clone()).unwrap())
                } else {
                    Message::binary(data.clone())
                }));
            }
            Item::Ping(p) => {
                put(FrameHeader::new(OpCode::Ping), p, &mut wire);
                expected.push(Event::Ping(p.clone().into()));
            }
            Item::Pong(p) => {
                put(FrameHeader::new(OpCode::Pong), p, &mut wire);
                expected.push(Event::Pong(p.clone().into()));
            }
        }
    }
    (wire.to_vec(), expected)
}

/// Byte soup that often parses as frames: random first bytes (any opcode,
/// FIN and RSV bits), mostly masked, minimal lengths, random payloads.
fn frame_soup() -> impl Strategy<Value = Vec<u8>> {
    let raw_frame = (any::<u8>(), prop::bool::weighted(0.9), any::<[u8; 4]>(), prop::collection::vec(any::<u8>(), 0..140))
        .prop_map(|(b0, masked, key, payload)| {
            let mut out = vec![b0];
            let mask_bit = if masked { 0x80 } else { 0 };
            match payload.len() {
                0..=125 => out.push(mask_bit | payload.len() as u8),
                len => {
                    out.push(mask_bit | 126);
                    out.extend((len as u16).to_be_bytes());
                }
            }
            if masked {
                out.extend(key);
            }
            out.extend(payload);
            out
        });
    let close = (prop::sample::select(vec![1000u16, 1001, 1005, 999, 4000, 1006]), prop::collection::vec(any::<u8>(), 0..4))
        .prop_map(|(code, reason)| client_frame(OpCode::Close, true, &close_payload(code, &reason)));
    let piece = prop_oneof![
        4 => raw_frame,
        4 => item().prop_map(|i| encode_items(&[i], 7).0),
        1 => close,
        1 => prop::collection::vec(any::<u8>(), 0..32),
    ];
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

fn limits_config() -> impl Strategy<Value = Config> {
    (prop::sample::select(vec![16usize, 100, 1 << 20]), prop::sample::select(vec![32usize, 200, 1 << 20]), any::<bool>())
        .prop_map(|(frame, message, auto_pong)| {
            quiet().max_frame_size(frame).max_message_size(message).auto_pong(auto_pong)
        })
}

/// Feeds `wire` in the pieces the cuts make, returning all events.
fn feed_split(conn: &mut Connection, wire: &[u8], cuts: &[Index], now: Instant) -> Vec<Event> {
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    for piece in split_at(wire, cuts) {
        buf.extend_from_slice(&piece);
        conn.handle_read(&mut buf, now);
        seen.extend(events(conn));
    }
    seen
}

/// Decodes a stream that may end in a partial frame (the transport died
/// mid-write), checking every whole frame and that nothing follows a close.
fn check_truncated_stream(sender: Role, bytes: &[u8]) {
    let reader = if sender == Role::Server { Role::Client } else { Role::Server };
    let mut decoder = FrameDecoder::new(reader, usize::MAX);
    let mut buf = BytesMut::from(bytes);
    let mut closed = false;
    while let Some(frame) = decoder.decode(&mut buf).expect("connection wrote an invalid frame") {
        assert!(!closed, "frame after the close frame: {frame:?}");
        if frame.header.opcode == OpCode::Close {
            blaze_proto::CloseFrame::parse(&frame.payload).expect("close frame we sent is invalid");
            closed = true;
        }
    }
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig { cases: n, failure_persistence: None, ..ProptestConfig::default() }
}

// ---- properties --------------------------------------------------------

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn encode_decode_round_trip(
        client in any::<bool>(),
        opcode in opcode(),
        fin in any::<bool>(),
        key in any::<[u8; 4]>(),
        data in payload(300),
        cut in any::<Index>(),
    ) {
        let (sender, reader) = if client { (Role::Client, Role::Server) } else { (Role::Server, Role::Client) };
        // Control frames: FIN set and at most 125 bytes (§5.5).
        let (fin, data) = if opcode.is_control() { (true, data[..data.len().min(125)].to_vec()) } else { (fin, data) };
        let mask = (sender == Role::Client).then_some(key);
        let header = FrameHeader { fin, ..FrameHeader::new(opcode) };
        let mut wire = BytesMut::new();
        encode_frame(header, &data, mask, &mut wire);
        prop_assert_eq!(wire.len(), encoded_len(data.len(), mask.is_some()));

        // Whole, and split at any point.
        for split in [wire.len(), cut.index(wire.len() + 1)] {
            let mut decoder = FrameDecoder::new(reader, usize::MAX);
            let mut buf = BytesMut::from(&wire[..split]);
            let first = decoder.decode(&mut buf).unwrap();
            let frame = match first {
                Some(frame) => frame,
                None => {
                    prop_assert!(split < wire.len());
                    buf.extend_from_slice(&wire[split..]);
                    decoder.decode(&mut buf).unwrap().expect("whole frame")
                }
            };
            prop_assert_eq!(frame.header, header);
            prop_assert_eq!(frame.mask, mask);
            prop_assert_eq!(&frame.payload[..], &data[..]);
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn any_split_of_the_input_yields_the_same_events(
        items in prop::collection::vec(item(), 0..8),
        key_seed in any::<u8>(),
        cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        let (wire, expected) = encode_items(&items, key_seed);
        let now = Instant::now();
        let mut whole = Connection::new(Role::Server, quiet(), now);
        let mut split = Connection::new(Role::Server, quiet(), now);
        let whole_events = feed(&mut whole, &wire, now);
        let split_events = feed_split(&mut split, &wire, &cuts, now);
        prop_assert_eq!(&whole_events, &expected);
        prop_assert_eq!(&split_events, &expected);
        // Same answers (pongs) on the wire too.
        let whole_out = take_output(&mut whole);
        prop_assert_eq!(&whole_out, &take_output(&mut split));
        let pongs = check_stream(Role::Server, &whole_out);
        let pings: Vec<&[u8]> = expected.iter().filter_map(|e| match e { Event::Ping(p) => Some(&p[..]), _ => None }).collect();
        prop_assert_eq!(pongs.iter().map(|f| &f.payload[..]).collect::<Vec<_>>(), pings);
        prop_assert!(whole.is_open() && split.is_open());
        prop_assert_eq!(whole.buffered_bytes(), 0);
    }

    #[test]
    fn arbitrary_input_never_panics_and_output_stays_valid(
        wire in prop_oneof![frame_soup(), prop::collection::vec(any::<u8>(), 0..300)],
        cuts in prop::collection::vec(any::<Index>(), 0..6),
        config in limits_config(),
    ) {
        let now = Instant::now();
        for role in [Role::Server, Role::Client] {
            let mut conn = Connection::new(role, config.clone(), now);
            let events = feed_split(&mut conn, &wire, &cuts, now);
            let closed = events.iter().filter(|e| matches!(e, Event::Closed(_))).count();
            prop_assert!(closed <= 1);
            if closed == 1 {
                prop_assert!(matches!(events.last(), Some(Event::Closed(_))));
            }
            check_stream(role, &take_output(&mut conn));
        }
        // The bare decoder: frames or an error, never a panic, and it never
        // yields more payload than it consumed.
        for role in [Role::Server, Role::Client] {
            let mut decoder = FrameDecoder::new(role, config.max_frame_size);
            let mut buf = BytesMut::from(&wire[..]);
            loop {
                let before = buf.len();
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => prop_assert!(frame.payload.len() + 2 <= before - buf.len()),
                    Ok(None) => { prop_assert_eq!(before, buf.len()); break }
                    Err(_) => break,
                }
            }
        }
    }

}

proptest! {
    // Cheap per case and the most stateful property: more cases.
    #![proptest_config(cases(512))]

    #[test]
    fn after_closed_nothing_produces_events(
        ops in prop::collection::vec(op(), 1..40),
        policy in prop_oneof![Just(BackpressurePolicy::Close), Just(BackpressurePolicy::Drop)],
        ping_interval in prop::sample::select(vec![10u64, 30]),
        idle in prop::sample::select(vec![None, Some(20u64), Some(45)]),
    ) {
        let start = Instant::now();
        let max_backpressure = 400;
        let config = Config::default()
            .ping_interval(Some(Duration::from_secs(ping_interval)))
            .pong_timeout(Duration::from_secs(10))
            .idle_timeout(idle.map(Duration::from_secs))
            .close_timeout(Duration::from_secs(5))
            .max_backpressure(max_backpressure)
            .backpressure_policy(policy);
        let n_ops = ops.len();
        let mut conn = Connection::new(Role::Server, config, start);
        let mut now = start;
        let mut wire = Vec::new();
        let mut closed = false;
        let mut eof = false;
        for op in ops {
            match op {
                Op::Read(bytes) => conn.handle_read(&mut BytesMut::from(&bytes[..]), now),
                Op::Advance(ms) => { now += Duration::from_millis(ms); conn.handle_timeout(now) }
                Op::NextDeadline => if let Some(at) = conn.poll_timeout() {
                    prop_assert!(at >= start);
                    now = now.max(at);
                    conn.handle_timeout(now);
                },
                Op::Send(len) => { let _ = conn.send(Message::binary(vec![1; len])); }
                Op::Ping => { let _ = conn.ping(b"app"); }
                Op::Close(code) => { let _ = conn.close(CloseCode(code), "bye", now); }
                Op::Write(n) => {
                    let n = n.index(conn.pending_bytes() + 1);
                    let bytes = conn.transmit_bytes();
                    let n = n.min(bytes.len());
                    wire.extend_from_slice(&bytes[..n]);
                    conn.advance_transmit(n);
                }
                Op::Eof => { conn.handle_eof(); eof = true; }
            }
            // Queued output stays bounded whatever the peer sends: data and
            // pongs within the limit (plus one header), then our one close
            // frame, and the pings we send ourselves (at most one per op).
            prop_assert!(
                conn.pending_bytes() <= max_backpressure + 14 + 131 + 7 * n_ops,
                "pending {}", conn.pending_bytes()
            );
            let events = events(&mut conn);
            if closed {
                prop_assert!(events.is_empty(), "events after Closed: {:?}", events);
                prop_assert_eq!(conn.poll_timeout(), None);
                prop_assert!(!conn.is_open());
            }
            let n_closed = events.iter().filter(|e| matches!(e, Event::Closed(_))).count();
            prop_assert!(n_closed <= 1);
            if n_closed == 1 {
                prop_assert!(matches!(events.last(), Some(Event::Closed(_))));
                closed = true;
            }
        }
        if !eof {
            wire.extend(take_output(&mut conn));
        }
        check_truncated_stream(Role::Server, &wire);
        if !eof {
            check_stream(Role::Server, &wire);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Read(Vec<u8>),
    Advance(u64),
    NextDeadline,
    Send(usize),
    Ping,
    Close(u16),
    Write(Index),
    Eof,
}

/// What a peer sends: mostly valid traffic, sometimes a close, sometimes junk.
fn peer_bytes() -> impl Strategy<Value = Vec<u8>> {
    let close = prop::sample::select(vec![Some(1000u16), Some(4000), None]).prop_map(|code| {
        client_frame(OpCode::Close, true, &code.map(|c| close_payload(c, b"")).unwrap_or_default())
    });
    prop_oneof![
        6 => prop::collection::vec(item(), 1..5).prop_map(|items| encode_items(&items, 3).0),
        1 => close,
        1 => frame_soup(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => peer_bytes().prop_map(Op::Read),
        2 => (0u64..40_000).prop_map(Op::Advance),
        3 => Just(Op::NextDeadline),
        3 => (0usize..300).prop_map(Op::Send),
        1 => Just(Op::Ping),
        1 => prop::sample::select(vec![1000u16, 1001, 4000, 1005]).prop_map(Op::Close),
        3 => any::<Index>().prop_map(Op::Write),
        1 => Just(Op::Eof),
    ]
}

// ---- handshake parsers ---------------------------------------------------

const REQUEST: &str = "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// Standard base64 of 16 bytes, written out here (not blaze-proto's encoder).
fn base64_16(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Bytes that are either random or a valid head with a few bytes changed.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        prop::collection::vec((0..len, any::<u8>()), 0..6).prop_map(move |edits| {
            let mut bytes = valid.clone();
            for (at, byte) in edits {
                bytes[at] = byte;
            }
            bytes
        }),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn request_reader_never_panics(bytes in mutated(REQUEST.as_bytes().to_vec()), cut in any::<Index>()) {
        let reader = RequestReader::new(HandshakeLimits::default().max_headers(8), Instant::now());
        // Unmutated, and cut where the mutated bytes are, the request is
        // read and upgraded with every field it carries.
        let valid = REQUEST.as_bytes();
        let valid_cut = cut.index(valid.len() + 1);
        let mut buf = BytesMut::from(&valid[..valid_cut]);
        let first = reader.read(&mut buf);
        let request = match first {
            Ok(None) => {
                prop_assert!(valid_cut < valid.len(), "the whole request read as incomplete");
                prop_assert_eq!(buf.len(), valid_cut, "Ok(None) consumed bytes");
                buf.extend_from_slice(&valid[valid_cut..]);
                reader.read(&mut buf)
            }
            other => other,
        };
        let request = match request {
            Ok(Some(request)) => request,
            other => return Err(TestCaseError::fail(format!("valid request cut at {valid_cut}: {other:?}"))),
        };
        prop_assert!(buf.is_empty(), "{} bytes left after the head", buf.len());
        prop_assert_eq!((request.method.as_str(), request.path.as_str(), request.query.as_deref()), ("GET", "/chat", Some("room=1")));
        prop_assert_eq!(request.version, 1);
        prop_assert_eq!(request.header("host"), Some("server.example.com"));
        let up = match UpgradeRequest::validate(request) {
            Ok(up) => up,
            Err(err) => return Err(TestCaseError::fail(format!("valid request refused: {err:?}"))),
        };
        prop_assert_eq!(up.key.as_str(), "dGhlIHNhbXBsZSBub25jZQ==");
        prop_assert_eq!(&up.protocols, &["chat", "superchat"]);
        prop_assert_eq!(up.extensions.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["permessage-deflate"]);
        let supported = ["superchat".to_owned()];
        prop_assert_eq!(up.select_protocol(&supported), Some("superchat"));
        let response = up.accept(Some("chat"), None).to_bytes();
        let response = String::from_utf8(response.to_vec()).expect("an ASCII response");
        prop_assert!(response.starts_with("HTTP/1.1 101 "), "{}", response);
        // RFC 6455 §1.3: this key's accept value.
        prop_assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{}", response);
        prop_assert!(response.contains("Sec-WebSocket-Protocol: chat\r\n"), "{}", response);

        let cut = cut.index(bytes.len() + 1);
        let mut buf = BytesMut::from(&bytes[..cut]);
        let result = match reader.read(&mut buf) {
            Ok(None) => { buf.extend_from_slice(&bytes[cut..]); reader.read(&mut buf) }
            other => other,
        };
        match result {
            Ok(Some(request)) => {
                prop_assert!(buf.len() < bytes.len());
                if let Ok(upgrade) = UpgradeRequest::validate(request) {
                    let _ = upgrade.accept(upgrade.select_protocol(&["chat".to_owned()]), None).to_bytes();
                }
            }
            Ok(None) => {}
            Err(err) => { let _ = err.to_response().to_bytes(); }
        }
    }

    #[test]
    fn client_response_reader_never_panics(key in any::<[u8; 16]>(), edits in prop::collection::vec((any::<Index>(), any::<u8>()), 0..6), random in prop::option::of(prop::collection::vec(any::<u8>(), 0..400))) {
        let hs = ClientHandshake::new("h", "/", key).protocols(["chat"]).extensions("permessage-deflate");
        let accept = accept_key(hs.key().as_bytes());
        let valid = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: chat\r\n\r\n").into_bytes();
        // The key is the 16 bytes in base64 (encoded here independently),
        // the request carries it, and its accept value is 20 bytes of SHA-1
        // in base64.
        prop_assert_eq!(accept.len(), 28);
        prop_assert_eq!(hs.key(), base64_16(&key));
        let request = String::from_utf8(hs.request()).expect("an ASCII request");
        prop_assert!(request.contains(&format!("Sec-WebSocket-Key: {}\r\n", hs.key())), "{}", request);
        // Unmutated, the response is accepted with the protocol it names,
        // the frame after it left in the buffer.
        let mut buf = BytesMut::from(&valid[..]);
        buf.extend_from_slice(&[0x81, 0x00]);
        match hs.read_response(&mut buf) {
            Ok(Some(done)) => {
                prop_assert_eq!(done.protocol.as_deref(), Some("chat"));
                prop_assert!(done.extensions.is_empty() && done.deflate.is_none());
                prop_assert_eq!(done.headers.iter().find(|(n, _)| n == "sec-websocket-accept").map(|(_, v)| v.as_str()), Some(accept.as_str()));
                prop_assert_eq!(&buf[..], &[0x81, 0x00]);
            }
            other => return Err(TestCaseError::fail(format!("valid response refused: {other:?}"))),
        }
        // ... but not by a client that sent another key.
        let mut other_key = key;
        other_key[0] ^= 1;
        let other = ClientHandshake::new("h", "/", other_key).protocols(["chat"]);
        prop_assert_eq!(other.read_response(&mut BytesMut::from(&valid[..])), Err(ClientHandshakeError::BadAccept));

        let mut bytes = random.unwrap_or(valid);
        // A frame the server sent eagerly after the head.
        bytes.extend_from_slice(&[0x81, 0x00]);
        let len = bytes.len();
        if len > 0 {
            for (at, byte) in edits {
                bytes[at.index(len)] = byte;
            }
        }
        let mut buf = BytesMut::from(&bytes[..]);
        if let Ok(Some(_)) = hs.read_response(&mut buf) {
            prop_assert!(buf.len() < bytes.len());
        }
    }
}
