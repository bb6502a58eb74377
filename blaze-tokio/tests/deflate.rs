//! permessage-deflate end to end over loopback TCP: Blaze's client against
//! Blaze's server in every mode and window, broadcasts to a mix of
//! compressing and plain clients, and hostile compressed input written
//! byte by byte on a raw socket (frames built here with flate2, not with
//! our encoder).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use blaze_tokio::{App, Callbacks, ClientOptions, CompressionMode, DeflateConfig, Message, WsConfig};
use common::*;
use flate2::{Compress, Compression, FlushCompress};

// The bomb test bounds the server's memory.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---- helpers -------------------------------------------------------------

fn echo() -> Callbacks {
    Callbacks::new()
        .on_message(|ws, text| {
            let _ = ws.send(text);
        })
        .on_binary(|ws, data| {
            let _ = ws.send(data);
        })
}

fn shared() -> WsConfig {
    WsConfig::default().enable_compression(true).compression_threshold(0)
}

fn dedicated(bits: u8) -> WsConfig {
    shared().compression_mode(CompressionMode::Dedicated).compression_window_bits(bits)
}

/// Raw DEFLATE of one message, sync-flushed, tail cut (RFC 7692 §7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    loop {
        let consumed = compress.total_in() as usize;
        compress.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync).unwrap();
        if compress.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A masked client frame: `b0` is the first header byte as sent.
fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    out.extend(key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Opens a raw socket and completes a handshake offering `extensions`;
/// returns the stream and the 101's head.
fn raw_upgrade(addr: SocketAddr, path: &str, extensions: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {extensions}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (stream, head)
}

/// Reads one server frame: (first header byte, payload).
fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).unwrap();
    assert_eq!(header[1] & 0x80, 0, "server frames are not masked");
    let len = match header[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).unwrap();
            u16::from_be_bytes(ext) as usize
        }
        127 => {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).unwrap();
            u64::from_be_bytes(ext) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    (header[0], payload)
}

/// Reads frames until the server's close frame; returns its code.
fn close_code_of(stream: &mut TcpStream) -> u16 {
    loop {
        let (b0, payload) = read_frame(stream);
        if b0 & 0x0f == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

fn messages() -> Vec<Message> {
    let json = r#"{"symbol":"BTC-USD","price":95012.5,"qty":0.25}"#;
    vec![
        Message::text(json.repeat(30)),
        Message::text(""),
        Message::text("κόσμε 𝄞 ".repeat(500)),
        Message::binary(vec![7u8; 200_000]),
        Message::text(json.repeat(30)),
        Message::binary((0..=255u8).cycle().take(5000).collect::<Vec<u8>>()),
    ]
}

// ---- Blaze's client and server, both compressing ------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_and_window_round_trips_between_our_client_and_server() {
    let app = App::new();
    app.ws_with_config("/shared", shared(), echo());
    for bits in 9..=15u8 {
        app.ws_with_config(&format!("/dedicated-{bits}"), dedicated(bits), echo());
    }
    let (addr, _server) = serve(&app).await;
    let mut routes: Vec<String> = (9..=15).map(|b| format!("/dedicated-{b}")).collect();
    routes.push("/shared".into());
    for route in routes {
        for (mode, bits) in [(CompressionMode::Shared, 15), (CompressionMode::Dedicated, 15), (CompressionMode::Dedicated, 9), (CompressionMode::Dedicated, 12)] {
            let client = DeflateConfig::default().mode(mode).window_bits(bits).threshold(0);
            let options = ClientOptions::default().deflate(client);
            let mut ws = blaze_tokio::connect_with_options(&format!("ws://{addr}{route}"), options).await.unwrap();
            assert!(ws.handle().is_compressed(), "{route} {mode:?} {bits}");
            let answer = ws.header("sec-websocket-extensions").unwrap().to_owned();
            assert!(answer.starts_with("permessage-deflate"), "{answer}");
            for message in messages() {
                ws.send(message.clone()).unwrap();
                assert_eq!(recv_within(&mut ws).await, Some(message), "{route} {mode:?} {bits} ({answer})");
            }
            ws.close(1000u16, "").unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_is_declined_when_off_on_either_side() {
    let app = App::new();
    app.ws("/plain", echo());
    app.ws_with_config("/shared", shared(), echo());
    let (addr, _server) = serve(&app).await;
    let options = ClientOptions::default().deflate(DeflateConfig::default());
    let mut ws = blaze_tokio::connect_with_options(&format!("ws://{addr}/plain"), options).await.unwrap();
    assert!(!ws.handle().is_compressed());
    assert_eq!(ws.header("sec-websocket-extensions"), None);
    ws.send("still works").unwrap();
    assert_eq!(recv_within(&mut ws).await, Some(Message::text("still works")));
    let ws = blaze_tokio::connect(&format!("ws://{addr}/shared")).await.unwrap();
    assert!(!ws.handle().is_compressed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_is_compressed_once_for_every_shared_mode_client() {
    let app = App::new();
    app.ws_with_config("/room", shared(), Callbacks::new());
    app.ws_with_config("/dedicated", dedicated(15), Callbacks::new());
    let (addr, _server) = serve(&app).await;
    let deflate = || ClientOptions::default().deflate(DeflateConfig::default().threshold(0));
    let mut clients = Vec::new();
    for i in 0..40 {
        let options = if i % 2 == 0 { deflate() } else { ClientOptions::default() };
        clients.push(blaze_tokio::connect_with_options(&format!("ws://{addr}/room"), options).await.unwrap());
    }
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/room") == 40).await);
    let json = serde_json::json!({"symbol": "BTC-USD", "bids": vec![[95012.5, 0.25]; 40]}).to_string();
    let (encodings, compressions) = (app.encodings(), app.compressions());
    assert_eq!(app.broadcast("/room", json.as_str()).unwrap(), 40);
    assert_eq!(app.encodings() - encodings, 1, "framed once");
    assert_eq!(app.compressions() - compressions, 1, "compressed once for 20 compressing clients");
    for (i, ws) in clients.iter_mut().enumerate() {
        assert_eq!(ws.handle().is_compressed(), i % 2 == 0);
        assert_eq!(recv_within(ws).await, Some(Message::text(json.clone())), "client {i}");
    }
    // Dedicated mode: each client keeps its own context (its offer does
    // not ask for server_no_context_takeover), so each compresses its own.
    let mut dedicated_clients = Vec::new();
    for _ in 0..5 {
        let options = ClientOptions::default().deflate(DeflateConfig::default().mode(CompressionMode::Dedicated));
        dedicated_clients.push(blaze_tokio::connect_with_options(&format!("ws://{addr}/dedicated"), options).await.unwrap());
    }
    assert!(eventually(Duration::from_secs(5), || app.connection_count("/dedicated") == 5).await);
    let compressions = app.compressions();
    for round in 0..3 {
        app.broadcast("/dedicated", json.as_str()).unwrap();
        assert_eq!(app.compressions() - compressions, 5 * (round + 1));
    }
    for ws in &mut dedicated_clients {
        for _ in 0..3 {
            assert_eq!(recv_within(ws).await, Some(Message::text(json.clone())));
        }
    }
}

// ---- the wire, seen from a raw socket ------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_carry_rsv1_and_inflate_and_uncompressed_sends_do_not() {
    let app = App::new();
    app.ws_with_config(
        "/e",
        WsConfig::default().enable_compression(true),
        Callbacks::new().on_message(|ws, text| {
            if text.starts_with("raw") {
                let _ = ws.send_uncompressed(text);
            } else {
                let _ = ws.send(text);
            }
        }),
    );
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let (mut s, head) = raw_upgrade(addr, "/e", "permessage-deflate; client_max_window_bits");
        assert!(
            head.contains("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"),
            "{head}"
        );
        let text = "hello hello hello hello hello hello hello hello hello hello hello hello";
        s.write_all(&frame(0xC1, &deflate(text.as_bytes()))).unwrap();
        let (b0, payload) = read_frame(&mut s);
        assert_eq!(b0, 0xC1, "FIN, RSV1, text");
        let mut input = payload.clone();
        input.extend([0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(1000);
        flate2::Decompress::new(false).decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync).unwrap();
        assert_eq!(out, text.as_bytes());
        // Below the 64-byte default threshold: plain.
        s.write_all(&frame(0x81, b"short")).unwrap();
        assert_eq!(read_frame(&mut s), (0x81, b"short".to_vec()));
        let raw = format!("raw {}", "x".repeat(200));
        s.write_all(&frame(0x81, raw.as_bytes())).unwrap();
        assert_eq!(read_frame(&mut s), (0x81, raw.into_bytes()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_compressed_input_gets_the_right_close_code() {
    let app = App::new();
    app.ws_with_config("/e", shared(), echo());
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let offer = "permessage-deflate";
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            // RSV1 on a continuation frame (RFC 7692 §6.1).
            ("rsv1 on continuation", [frame(0x41, &deflate(b"ab")), frame(0xC0, &deflate(b"cd"))].concat(), 1002),
            // RSV1 on a control frame.
            ("rsv1 on ping", frame(0xC9, b""), 1002),
            ("rsv2", frame(0xA1, b"x"), 1002),
            // BTYPE 11 is reserved: corrupt DEFLATE data.
            ("corrupt", frame(0xC1, &[0xff, 0xff, 0xff, 0xff]), 1002),
            ("invalid utf-8 inside", frame(0xC1, &deflate(b"ok \xff\xfe")), 1007),
        ];
        for (name, wire, code) in cases {
            let (mut s, _) = raw_upgrade(addr, "/e", offer);
            s.write_all(&wire).unwrap();
            assert_eq!(close_code_of(&mut s), code, "{name}");
        }
        // Invalid UTF-8 in the first fragment's inflated output fails the
        // connection before the message's last fragment is sent.
        let (mut s, _) = raw_upgrade(addr, "/e", offer);
        let mut compress = Compress::new(Compression::new(6), false);
        let mut first = Vec::with_capacity(256);
        compress.compress_vec(b"bad \xc3\x28 text", &mut first, FlushCompress::Sync).unwrap();
        s.write_all(&frame(0x41, &first)).unwrap();
        assert_eq!(close_code_of(&mut s), 1007);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compression_bomb_gets_1009_with_bounded_memory_and_others_are_served() {
    let app = App::new();
    app.ws_with_config("/e", shared().max_message_size(1 << 20), echo());
    let (addr, _server) = serve(&app).await;
    // 256 MiB of zeros compress to about 250 KiB.
    let bomb = deflate(&vec![0u8; 256 << 20]);
    assert!(bomb.len() < 512 * 1024, "{}", bomb.len());
    let mut other = blaze_tokio::connect(&format!("ws://{addr}/e")).await.unwrap();
    let baseline = LIVE.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let (code, elapsed) = blocking(move || {
        let started = std::time::Instant::now();
        let (mut s, _) = raw_upgrade(addr, "/e", "permessage-deflate");
        // One frame, and the same bomb spread over 64 fragments.
        s.write_all(&frame(0xC2, &bomb)).unwrap();
        let one = close_code_of(&mut s);
        let (mut s, _) = raw_upgrade(addr, "/e", "permessage-deflate");
        let pieces: Vec<&[u8]> = bomb.chunks(bomb.len() / 64 + 1).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let b0 = match (i, i + 1 == pieces.len()) {
                (0, _) => 0x42,
                (_, true) => 0x80,
                _ => 0x00,
            };
            if s.write_all(&frame(b0, piece)).is_err() {
                break;
            }
        }
        let spread = close_code_of(&mut s);
        assert_eq!(one, spread);
        (one, started.elapsed())
    })
    .await;
    assert_eq!(code, 1009);
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    // The frame itself (read whole: 250 KiB) and at most 1 MiB inflated,
    // never the 256 MiB the bomb announces.
    assert!(peak < 8 << 20, "peak allocation during the bomb {peak} bytes");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    other.send("still served").unwrap();
    assert_eq!(recv_within(&mut other).await, Some(Message::text("still served")));
}

// ---- order before failure, and UTF-8 inside an incomplete frame ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_message_before_a_bad_frame_is_answered_before_the_close() {
    let app = App::new();
    app.ws("/e", echo());
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        for bad in [frame(0xA1, b"x"), frame(0x83, b""), frame(0x80, b"orphan")] {
            let (mut s, _) = raw_upgrade(addr, "/e", "x-none");
            s.write_all(&[frame(0x81, b"first"), bad].concat()).unwrap();
            assert_eq!(read_frame(&mut s), (0x81, b"first".to_vec()), "the reply comes before the close");
            assert_eq!(close_code_of(&mut s), 1002);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_fails_before_its_frame_is_complete() {
    let app = App::new();
    app.ws("/e", echo());
    app.ws_with_config("/z", shared(), echo());
    let (addr, _server) = serve(&app).await;
    blocking(move || {
        let mut text = b"a".repeat(1000);
        text[400] = 0xff;
        let wire = frame(0x81, &text);
        let (mut s, _) = raw_upgrade(addr, "/e", "x-none");
        s.write_all(&wire[..300]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(&wire[300..600]).unwrap();
        // The rest of the frame never comes: the close must.
        assert_eq!(close_code_of(&mut s), 1007);

        // Compressed: the invalid byte is in the first half's output.
        let mut text = "κόσμε".repeat(100).into_bytes();
        text.extend(b"\xff");
        text.extend((0..20_000u32).flat_map(|i| (i % 251).to_string().into_bytes()));
        let wire = frame(0xC1, &deflate(&text));
        let (mut s, _) = raw_upgrade(addr, "/z", "permessage-deflate");
        s.write_all(&wire[..wire.len() / 2]).unwrap();
        assert_eq!(close_code_of(&mut s), 1007);
    })
    .await;
}
