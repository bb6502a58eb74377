//! Writes the seed corpora under fuzz/seeds/<target>/ from the RFC 6455
//! test vectors, requests in the style of real clients, and the traffic
//! capture.py recorded from the examples (seedgen/traffic/), and copies
//! the inputs the fuzzer found (seedgen/found/<target>/) verbatim.
//!
//!     cd fuzz && cargo run --example seedgen
//!
//! Every seed is also run through its harness once, so a seed that breaks
//! an invariant is caught here rather than by the fuzzer.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use blaze_fuzz::connection::{ConfigInput, ConnInput, Op, Payload, Side};
use blaze_fuzz::handshake::CLIENT_KEY;
use blaze_fuzz::inflate::{encode_records, Corruption, Record};
use blaze_proto::bytes::BytesMut;
use blaze_proto::frame::{encode_frame, FrameDecoder, FrameHeader, OpCode, Role};
use blaze_proto::handshake::{accept_key, ClientHandshake, HandshakeError, HandshakeLimits, RequestReader, UpgradeRequest};

/// The RFC 6455 §5.7 masking key.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// The accept value for [`CLIENT_KEY`] (RFC 6455 §1.3).
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Seeds stay small: longer frame streams are cut at a frame boundary.
const MAX_SEED: usize = 4096;

struct Seeds {
    dir: PathBuf,
    count: usize,
}

impl Seeds {
    fn new(root: &Path, target: &str) -> Seeds {
        let dir = root.join("seeds").join(target);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Seeds { dir, count: 0 }
    }

    fn add(&mut self, name: &str, bytes: &[u8]) {
        fs::write(self.dir.join(name), bytes).unwrap();
        self.count += 1;
    }
}

fn frame(opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(FrameHeader { fin, ..FrameHeader::new(opcode) }, payload, mask, &mut out);
    out.to_vec()
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// Splits a recorded stream into its HTTP head and what followed it.
fn split_head(stream: &[u8]) -> (&[u8], &[u8]) {
    let end = stream.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP head") + 4;
    stream.split_at(end)
}

/// The first whole frames of `wire` (sent by `sender`) that fit in
/// `MAX_SEED` bytes; a frame too large for a seed is kept as its header and
/// the first bytes of its payload.
fn cut_frames(sender: Role, wire: &[u8]) -> Vec<u8> {
    let reader = if sender == Role::Client { Role::Server } else { Role::Client };
    let mut decoder = FrameDecoder::new(reader, usize::MAX);
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    loop {
        let before = buf.len();
        let start = wire.len() - before;
        match decoder.decode(&mut buf) {
            Ok(Some(_)) => {
                let end = wire.len() - buf.len();
                if out.len() + (end - start) > MAX_SEED {
                    if out.is_empty() || end - start > MAX_SEED {
                        out.extend_from_slice(&wire[start..start + 64]);
                    }
                    return out;
                }
                out.extend_from_slice(&wire[start..end]);
            }
            _ => return out,
        }
    }
}

fn traffic(root: &Path) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let dir = root.join("seedgen").join("traffic");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".c2s").map(str::to_owned))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let c2s = fs::read(dir.join(format!("{n}.c2s"))).unwrap();
            let s2c = fs::read(dir.join(format!("{n}.s2c"))).unwrap();
            (n, c2s, s2c)
        })
        .collect()
}

// ---- requests -------------------------------------------------------------

const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
    Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// What Firefox sends (its header order and `Connection: keep-alive, Upgrade`).
const FIREFOX_REQUEST: &str = "GET /chat HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
    User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
    Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
    Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:8080\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\
    Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nConnection: keep-alive, Upgrade\r\nSec-Fetch-Dest: empty\r\n\
    Sec-Fetch-Mode: websocket\r\nSec-Fetch-Site: same-origin\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n\
    Upgrade: websocket\r\n\r\n";

/// What tungstenite's client sends.
const TUNGSTENITE_REQUEST: &str = "GET /socket?x=1 HTTP/1.1\r\nHost: localhost:3012\r\nConnection: Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: 8nmNuR5DyxjRb7mSTyh4Kw==\r\n\r\n";

fn request_seeds(root: &Path, captured: &[(String, Vec<u8>, Vec<u8>)]) -> usize {
    let mut seeds = Seeds::new(root, "handshake_request");
    // Control byte 0: default limits; chunking byte: whole, byte by byte, random pieces.
    let add = |seeds: &mut Seeds, name: &str, bytes: &[u8]| {
        for (suffix, ctl, chunk) in [("", 0u8, 0u8), ("-bytewise", 0, 1), ("-pieces", 0, 0x6e)] {
            let mut seed = vec![ctl, chunk];
            seed.extend_from_slice(bytes);
            seeds.add(&format!("{name}{suffix}"), &seed);
        }
    };
    add(&mut seeds, "rfc6455", RFC_REQUEST.as_bytes());
    add(&mut seeds, "firefox", FIREFOX_REQUEST.as_bytes());
    add(&mut seeds, "tungstenite", TUNGSTENITE_REQUEST.as_bytes());
    for (name, c2s, _) in captured {
        let (head, frames) = split_head(c2s);
        add(&mut seeds, name, head);
        // A client that sends its first frames with the request.
        let mut eager = head.to_vec();
        let cut = cut_frames(Role::Client, frames);
        eager.extend_from_slice(&cut[..cut.len().min(64)]);
        add(&mut seeds, &format!("{name}-with-frames"), &eager);
    }
    let blaze = ClientHandshake::new("127.0.0.1:9001", "/game/7?token=a%20b&x=1+2", [9; 16])
        .protocols(["chat", "superchat"])
        .extensions("permessage-deflate; client_max_window_bits=\"10\", x-webkit-deflate-frame")
        .header("Origin", "http://127.0.0.1:9001")
        .header("Cookie", "session=abc; theme=dark")
        .request();
    add(&mut seeds, "blaze-client", &blaze);

    // Requests every check of §4.2.1 refuses, and heads over the limits.
    let rejected = [
        ("post", RFC_REQUEST.replacen("GET", "POST", 1)),
        ("http10", RFC_REQUEST.replace("HTTP/1.1", "HTTP/1.0")),
        ("no-host", RFC_REQUEST.replace("Host: server.example.com\r\n", "")),
        ("version-8", RFC_REQUEST.replace("Version: 13", "Version: 8")),
        ("short-key", RFC_REQUEST.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==")),
        ("bad-key", RFC_REQUEST.replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64!")),
        ("no-upgrade", "GET /chat HTTP/1.1\r\nHost: a\r\n\r\n".to_owned()),
        ("lowercase-tokens", RFC_REQUEST.replace("Upgrade: websocket", "upgrade: WebSocket")),
        ("obs-fold", RFC_REQUEST.replace("Origin: http://example.com\r\n", "X-Fold: a\r\n b\r\n")),
        ("bare-lf", RFC_REQUEST.replace("\r\n", "\n")),
        ("tls-hello", String::from_utf8_lossy(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").into_owned()),
        ("http2-preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned()),
    ];
    for (name, raw) in rejected {
        add(&mut seeds, name, raw.as_bytes());
    }
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..20 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    // Control byte 0b1000: at most 4 headers; 0b0001: a 64-byte head limit.
    seeds.add("too-many-headers", &[[0b1000, 0].as_slice(), many.as_bytes()].concat());
    seeds.add("head-over-64-bytes", &[[0b0001, 0].as_slice(), FIREFOX_REQUEST.as_bytes()].concat());
    seeds.add("partial", &[[0, 0].as_slice(), &RFC_REQUEST.as_bytes()[..100]].concat());
    seeds.count
}

// ---- responses ------------------------------------------------------------

fn response_seeds(root: &Path, captured: &[(String, Vec<u8>, Vec<u8>)]) -> usize {
    let mut seeds = Seeds::new(root, "handshake_response");
    let add = |seeds: &mut Seeds, name: &str, ctl: u8, bytes: &[u8]| {
        for (suffix, chunk) in [("", 0u8), ("-bytewise", 1)] {
            let mut seed = vec![ctl, chunk];
            seed.extend_from_slice(bytes);
            seeds.add(&format!("{name}{suffix}"), &seed);
        }
    };
    // Blaze's own 101, for the RFC key: exactly what the servers send.
    let mut buf = BytesMut::from(RFC_REQUEST.as_bytes());
    let request = RequestReader::new(HandshakeLimits::default(), Instant::now()).read(&mut buf).unwrap().unwrap();
    let up = UpgradeRequest::validate(request).unwrap();
    assert_eq!(accept_key(up.key.as_bytes()), RFC_ACCEPT);
    add(&mut seeds, "blaze-101", 0, &up.accept(None, None).to_bytes());
    // Control bits 0-1 = 2: the client offers chat and superchat.
    add(&mut seeds, "blaze-101-chat", 2, &up.accept(Some("chat"), None).to_bytes());
    // Control bit 2: the client offers permessage-deflate.
    add(&mut seeds, "blaze-101-deflate", 6, &up.accept(Some("superchat"), Some("permessage-deflate")).to_bytes());
    let rfc = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {RFC_ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
    );
    add(&mut seeds, "rfc6455-101", 1, rfc.as_bytes());
    // The recorded 101s (and the frames that followed), re-keyed for CLIENT_KEY.
    for (name, c2s, s2c) in captured {
        let (req_head, _) = split_head(c2s);
        let key = std::str::from_utf8(req_head)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .to_owned();
        let (head, frames) = split_head(s2c);
        let head = String::from_utf8_lossy(head).replace(&accept_key(key.as_bytes()), RFC_ACCEPT);
        add(&mut seeds, name, 0, head.as_bytes());
        let mut with_frames = head.into_bytes();
        let cut = cut_frames(Role::Server, frames);
        with_frames.extend_from_slice(&cut[..cut.len().min(256)]);
        add(&mut seeds, &format!("{name}-with-frames"), 0, &with_frames);
    }
    for err in [HandshakeError::NotUpgrade, HandshakeError::HeadTooLarge(16384), HandshakeError::MethodNotGet("POST".into())]
    {
        let status = err.status();
        add(&mut seeds, &format!("rejected-{status}"), 0, &err.to_response().to_bytes());
    }
    let bad = [
        ("wrong-accept", rfc.replace(RFC_ACCEPT, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
        ("no-upgrade", rfc.replace("Upgrade: websocket\r\n", "")),
        ("protocol-not-offered", rfc.replace("chat", "mqtt")),
        ("extension-not-offered", rfc.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")),
        ("http10-101", rfc.replace("HTTP/1.1", "HTTP/1.0")),
        ("404", "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found".to_owned()),
        ("partial", rfc[..40].to_owned()),
    ];
    for (name, raw) in bad {
        add(&mut seeds, name, 1, raw.as_bytes());
    }
    seeds.count
}

// ---- frames ---------------------------------------------------------------

fn frame_seeds(root: &Path, captured: &[(String, Vec<u8>, Vec<u8>)]) -> usize {
    let mut seeds = Seeds::new(root, "frame_decode");
    // Control byte 0 = 1 MiB limit, no RSV1; 0x04 = RSV1 allowed; 0x01 = a
    // 125-byte limit. Chunking byte (here `ctl >> 3`): 0 = whole, 1 = byte
    // by byte, 2 = random pieces, 3 = cut anywhere.
    let add = |seeds: &mut Seeds, name: &str, ctl: u8, bytes: &[u8]| {
        let mut seed = vec![ctl & 7, ctl >> 3];
        seed.extend_from_slice(bytes);
        seeds.add(name, &seed);
    };
    // RFC 6455 §5.7, verbatim.
    add(&mut seeds, "rfc-unmasked-hello", 0, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    add(&mut seeds, "rfc-masked-hello", 0, &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    add(&mut seeds, "rfc-fragmented", 0x08, &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
    add(&mut seeds, "rfc-ping", 0, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    add(&mut seeds, "rfc-masked-pong", 0, &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    let mut b256 = vec![0x82, 0x7e, 0x01, 0x00];
    b256.extend((0..256).map(|i| i as u8));
    add(&mut seeds, "rfc-256-bytes", 0, &b256);
    add(&mut seeds, "rfc-64k-header", 0, &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]);

    // Every opcode in every length class, masked and not.
    let opcodes = [
        ("continuation", OpCode::Continuation),
        ("text", OpCode::Text),
        ("binary", OpCode::Binary),
        ("close", OpCode::Close),
        ("ping", OpCode::Ping),
        ("pong", OpCode::Pong),
    ];
    for (name, op) in opcodes {
        let sizes: &[usize] = if op.is_control() { &[0, 2, 125] } else { &[0, 1, 125, 126, 1000] };
        for &len in sizes {
            let payload: Vec<u8> = if op == OpCode::Close && len >= 2 {
                let mut p = close_payload(1000, &"r".repeat(len - 2));
                p.truncate(len);
                p
            } else {
                (0..len).map(|i| b'a' + (i % 26) as u8).collect()
            };
            for (m, mask) in [("masked", Some(MASK)), ("unmasked", None)] {
                add(&mut seeds, &format!("{name}-{len}-{m}"), 0, &frame(op, true, &payload, mask));
            }
        }
    }
    // A fragmented text message with a ping between fragments, split
    // inside a code point, from each side.
    for (m, mask) in [("masked", Some(MASK)), ("unmasked", None)] {
        let text = "κόσμε 𝄞".as_bytes();
        let stream = [
            frame(OpCode::Text, false, &text[..3], mask),
            frame(OpCode::Ping, true, b"mid", mask),
            frame(OpCode::Continuation, false, &text[3..9], mask),
            frame(OpCode::Continuation, true, &text[9..], mask),
            frame(OpCode::Close, true, &close_payload(1001, "going away"), mask),
        ]
        .concat();
        add(&mut seeds, &format!("fragmented-{m}"), 0x10, &stream);
    }
    // Cut at positions anywhere in the stream (chunking mode 3).
    for (name, chunk) in [("cut-a", 0x03u8), ("cut-b", 0x47), ("cut-c", 0xbb)] {
        let stream = [
            frame(OpCode::Binary, false, &[7; 300], Some(MASK)),
            frame(OpCode::Ping, true, b"p", Some(MASK)),
            frame(OpCode::Continuation, true, &[9; 40], Some(MASK)),
        ]
        .concat();
        let mut seed = vec![0, chunk];
        seed.extend_from_slice(&stream);
        seeds.add(&format!("fragmented-masked-{name}"), &seed);
    }
    // Compressed (RSV1) data frames once deflate is negotiated.
    add(&mut seeds, "rsv1-deflate", 0x04, &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
    // What the decoder must refuse.
    let refused: [(&str, &[u8]); 8] = [
        ("reserved-opcode", &[0x83, 0x80, 1, 2, 3, 4]),
        ("rsv2", &[0xa1, 0x80, 1, 2, 3, 4]),
        ("non-minimal-16", &[0x82, 0xfe, 0x00, 0x05, 1, 2, 3, 4, 0, 0, 0, 0, 0]),
        ("non-minimal-64", &[0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4]),
        ("length-msb", &[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
        ("long-ping", &[0x89, 0xfe, 0x00, 0x7e, 1, 2, 3, 4]),
        ("fragmented-ping", &[0x09, 0x80, 1, 2, 3, 4]),
        ("over-limit", &[0x82, 0xfe, 0x01, 0x00, 1, 2, 3, 4]),
    ];
    for (name, bytes) in refused {
        add(&mut seeds, name, 0x01, bytes);
    }
    // Real traffic, both directions.
    for (name, c2s, s2c) in captured {
        add(&mut seeds, &format!("{name}-client-frames"), 0, &cut_frames(Role::Client, split_head(c2s).1));
        add(&mut seeds, &format!("{name}-server-frames"), 0x10, &cut_frames(Role::Server, split_head(s2c).1));
    }
    seeds.count
}

// ---- inflation --------------------------------------------------------------

/// A client frame (masked with the RFC key) with RSV1 as given.
fn client_frame(opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(FrameHeader { fin, rsv1, ..FrameHeader::new(opcode) }, payload, Some(MASK), &mut out);
    out.to_vec()
}

fn inflate_seeds(root: &Path) -> usize {
    let mut seeds = Seeds::new(root, "inflate");
    // Control bytes: byte 0 bit 0/1 server/client_no_context_takeover, bit
    // 2 records, bits 3-7 chunking; byte 1 windows (0x88: both absent);
    // byte 2 max_message_size in 256-byte units - 1; byte 3 level, bit 4 EOF.
    let wire = |seeds: &mut Seeds, name: &str, ctl: [u8; 4], frames: &[Vec<u8>]| {
        for (suffix, chunking) in [("", 0u8), ("-bytewise", 1 << 3)] {
            let mut seed = ctl.to_vec();
            seed[0] |= chunking;
            seed.extend(frames.concat());
            seeds.add(&format!("{name}{suffix}"), &seed);
        }
    };
    let no_context = [0b011, 0x88, 0xff, 6];
    let takeover = [0b000, 0x88, 0xff, 6];
    let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    // RFC 7692 §7.2.3.1-§7.2.3.6, verbatim (masked, as a client sends them).
    wire(&mut seeds, "rfc-hello", no_context, &[client_frame(OpCode::Text, true, true, &hello)]);
    wire(
        &mut seeds,
        "rfc-hello-fragmented",
        no_context,
        &[client_frame(OpCode::Text, false, true, &hello[..3]), client_frame(OpCode::Continuation, true, false, &hello[3..])],
    );
    wire(
        &mut seeds,
        "rfc-hello-context-takeover",
        takeover,
        &[client_frame(OpCode::Text, true, true, &hello), client_frame(OpCode::Text, true, true, &[0xf2, 0x00, 0x11, 0x00, 0x00])],
    );
    wire(
        &mut seeds,
        "rfc-stored-block",
        no_context,
        &[client_frame(OpCode::Text, true, true, &[0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00])],
    );
    wire(
        &mut seeds,
        "rfc-bfinal",
        no_context,
        &[client_frame(OpCode::Text, true, true, &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00])],
    );
    wire(
        &mut seeds,
        "rfc-two-blocks",
        no_context,
        &[client_frame(
            OpCode::Text,
            true,
            true,
            &[0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00],
        )],
    );
    wire(&mut seeds, "rfc-empty", no_context, &[client_frame(OpCode::Binary, true, true, &[0x00])]);
    // Refused: RSV1 on a continuation, on a ping, and corrupt data.
    wire(
        &mut seeds,
        "rsv1-continuation",
        no_context,
        &[client_frame(OpCode::Text, false, true, &hello[..3]), client_frame(OpCode::Continuation, true, true, &hello[3..])],
    );
    wire(&mut seeds, "rsv1-ping", no_context, &[client_frame(OpCode::Ping, true, true, b"hi")]);
    wire(&mut seeds, "reserved-btype", no_context, &[client_frame(OpCode::Binary, true, true, &[0xff, 0xff, 0xff])]);
    // A bomb: 1 MiB of zeros in about a KiB, against a 256-byte limit.
    let zeros = vec![0u8; 1 << 20];
    let mut compress = flate2::Compress::new(flate2::Compression::best(), false);
    let mut bomb = Vec::with_capacity(4096);
    compress.compress_vec(&zeros, &mut bomb, flate2::FlushCompress::Sync).unwrap();
    assert!(bomb.len() < 2048 && bomb.ends_with(&[0, 0, 0xff, 0xff]));
    bomb.truncate(bomb.len() - 4);
    wire(&mut seeds, "bomb", [0b011, 0x88, 0x00, 9], &[client_frame(OpCode::Binary, true, true, &bomb)]);
    wire(&mut seeds, "bomb-text", [0b011, 0x88, 0x00, 9], &[client_frame(OpCode::Text, true, true, &bomb)]);

    // Built: records the harness compresses as a client would.
    let rec = |text: bool, payload: &str| Record::compressed(text, payload.as_bytes());
    let chat = [
        r#"{"type":"join","name":"alice","online":1}"#,
        r#"{"name":"alice","text":"hello from Chromium ✓"}"#,
        r#"{"type":"message","name":"alice","text":"hello from Chromium ✓"}"#,
        "κόσμε 𝄞",
        "",
    ];
    let built = |seeds: &mut Seeds, name: &str, ctl: [u8; 4], records: &[Record]| {
        seeds.add(name, &encode_records(ctl, records));
    };
    let chat_records: Vec<Record> = chat.iter().map(|m| rec(true, m)).collect();
    built(&mut seeds, "chat-shared", no_context, &chat_records);
    built(&mut seeds, "chat-takeover-window9", [0b000, 0x11, 0xff, 6], &chat_records);
    built(&mut seeds, "chat-window8-pieces", [0b010 | (0x6e << 3), 0x00, 0x0f, 1], &chat_records);
    // Fragmented, with pings between the fragments, cut after compression
    // or compressed fragment by fragment, mixed with plain messages.
    let mut mixed = Vec::new();
    for (i, m) in chat.iter().enumerate() {
        let mut r = rec(i % 2 == 0, m);
        r.fragments = 1 + (i % 4) as u8;
        r.pings = i % 3 == 0;
        r.per_fragment = i % 2 == 1;
        r.uncompressed = i == 3;
        mixed.push(r);
    }
    mixed.push(Record { repeat: Some((40, 2)), fragments: 3, per_fragment: true, ..rec(true, "") });
    mixed.push(Record { repeat: Some((3, 0x5a)), fragments: 4, ..rec(false, "") });
    built(&mut seeds, "fragmented-mixed", [0b000, 0x8a, 0xff, 6], &mixed);
    built(&mut seeds, "fragmented-mixed-shared-bytewise", [0b011 | (1 << 3), 0x8a, 0xff, 0], &mixed);
    // Over the limit after two good messages (1009), and a run of 64 KiB
    // messages that passes the 1 MiB inflation budget of one read.
    let mut over = chat_records[..2].to_vec();
    over.push(Record { repeat: Some((20, 0)), ..rec(false, "") });
    over.push(rec(true, "never delivered"));
    built(&mut seeds, "too-big", [0b011, 0x88, 0x0f, 6], &over);
    let run: Vec<Record> = (0..20).map(|i| Record { repeat: Some((256, i)), ..rec(i % 2 == 0, "") }).collect();
    built(&mut seeds, "budget-run", [0b011, 0x88, 0xff, 9], &run);
    built(&mut seeds, "budget-run-takeover-eof", [0b000, 0x88, 0xff, 0x19], &run);
    // Every corruption, after a good message.
    for c in 0..8u8 {
        let kind = Corruption::from_byte(c);
        let mut bad = rec(true, chat[1]);
        bad.fragments = 2;
        bad.corrupt = Some((kind, 0x80 | c));
        if kind == Corruption::InvalidUtf8 {
            bad.raw = b"caf\xc3 \xff\xfe not text".to_vec();
        }
        let records = [rec(true, chat[0]), bad, rec(false, chat[2])];
        built(&mut seeds, &format!("corrupt-{kind:?}").to_lowercase(), [0b000, 0x88, 0xff, 6], &records);
    }
    seeds.count
}

// ---- connections ----------------------------------------------------------

fn conn(ops: Vec<Op>) -> ConnInput {
    ConnInput { server: ConfigInput::roomy(), client: ConfigInput::roomy(), mask_seed: 0x5eed, ops }
}

fn text(side: Side, s: &str) -> Op {
    Op::Send { side, text: true, payload: Payload::Raw(s.as_bytes().to_vec()) }
}

fn deliver_all(to: Side) -> Op {
    Op::Deliver { to, max: u16::MAX, vectored: true }
}

fn connection_seeds(root: &Path, captured: &[(String, Vec<u8>, Vec<u8>)]) -> usize {
    use Side::{Client as C, Server as S};
    let mut seeds = Seeds::new(root, "connection");
    let mut scenarios: Vec<(String, ConnInput)> = Vec::new();

    // The echo example: each message comes back with its opcode.
    let mut echo = Vec::new();
    for m in ["Hello, Blaze!", "κόσμε ✓ 𝄞"] {
        echo.extend([text(C, m), deliver_all(S), text(S, m), deliver_all(C)]);
    }
    echo.extend([
        Op::Send { side: C, text: false, payload: Payload::Raw((0..=255).collect()) },
        Op::Deliver { to: S, max: 100, vectored: false },
        Op::Deliver { to: S, max: u16::MAX, vectored: false },
        Op::Ping { side: C, payload: Payload::Raw(b"are you there".to_vec()) },
        Op::Pump,
        Op::Close { side: C, code: 1000, reason: Payload::Raw(b"bye".to_vec()) },
        Op::Pump,
    ]);
    scenarios.push(("echo".into(), conn(echo)));

    // The chat example: JSON text both ways, a broadcast frame, a leave.
    let join = r#"{"type":"join","name":"alice","online":1}"#;
    let msg = r#"{"name":"alice","text":"hello from Chromium ✓"}"#;
    let out = r#"{"type":"message","name":"alice","text":"hello from Chromium ✓"}"#;
    scenarios.push((
        "chat".into(),
        conn(vec![
            Op::SendPrepared { side: S, text: true, payload: Payload::Raw(join.as_bytes().to_vec()) },
            deliver_all(C),
            text(C, msg),
            Op::Deliver { to: S, max: 7, vectored: true },
            Op::Deliver { to: S, max: u16::MAX, vectored: true },
            Op::SendPrepared { side: S, text: true, payload: Payload::Raw(out.as_bytes().to_vec()) },
            Op::Pump,
            Op::Close { side: C, code: 1001, reason: Payload::Raw(b"tab closed".to_vec()) },
            Op::Pump,
        ]),
    ));

    // Messages across the 7/16/64-bit length boundaries, in pieces.
    let mut big = Vec::new();
    for (len, side) in [(125u16, C), (126, S), (0xffff, C), (0x8000 | 16500, S)] {
        big.push(Op::Send { side, text: false, payload: Payload::Repeat { len, byte: 0x5a } });
        big.push(Op::Send { side, text: true, payload: Payload::Repeat { len, byte: 3 } });
        for _ in 0..3 {
            big.push(Op::Deliver { to: if side == C { S } else { C }, max: 20_000, vectored: false });
        }
        big.push(Op::Pump);
    }
    scenarios.push(("large-messages".into(), conn(big)));

    // The server closes; a timer-driven close; heartbeats and their timeout.
    scenarios.push((
        "server-close".into(),
        conn(vec![
            text(S, "last words"),
            Op::Close { side: S, code: 1001, reason: Payload::Raw("server shutting down ✓".as_bytes().to_vec()) },
            Op::Send { side: S, text: true, payload: Payload::Raw(b"too late".to_vec()) },
            Op::Pump,
        ]),
    ));
    scenarios.push((
        "heartbeat".into(),
        conn(vec![
            Op::Advance { ms: 30_000 },
            Op::Pump,
            Op::Advance { ms: 30_000 },
            Op::Advance { ms: 30_000 },
            Op::Advance { ms: 30_000 },
            Op::Timeout { side: S },
            Op::Pump,
        ]),
    ));
    scenarios.push((
        "close-timeout".into(),
        conn(vec![
            Op::Close { side: C, code: 4000, reason: Payload::Raw(vec![]) },
            Op::Advance { ms: 4_000 },
            Op::Advance { ms: 2_000 },
            Op::Pump,
        ]),
    ));
    let mut idle = conn(vec![Op::Advance { ms: 59_000 }, text(C, "still here"), Op::Pump, Op::Advance { ms: 60_000 }, Op::Pump]);
    idle.server.idle_timeout = 60_000;
    scenarios.push(("idle-timeout".into(), idle));

    // Backpressure under both policies: a reader that never reads.
    for (name, flags) in [("backpressure-close", 0b0000u8), ("backpressure-drop", 0b0001)] {
        let mut input = conn(
            std::iter::repeat_with(|| Op::Send { side: S, text: false, payload: Payload::Repeat { len: 300, byte: 1 } })
                .take(8)
                .chain([
                    Op::Deliver { to: C, max: 450, vectored: true },
                    Op::Send { side: S, text: true, payload: Payload::Repeat { len: 900, byte: 2 } },
                    Op::Pump,
                ])
                .collect(),
        );
        input.server.max_backpressure = 256; // 1 KiB
        input.server.flags = flags;
        scenarios.push((name.into(), input));
    }
    // Limits on the receiving side: a message over max_message_size.
    let mut limits = conn(vec![
        Op::Send { side: C, text: true, payload: Payload::Repeat { len: 5000, byte: 1 } },
        Op::Pump,
    ]);
    limits.server.max_message = 1024; // 4 KiB
    scenarios.push(("message-too-big".into(), limits));

    // Hostile input: a fragmented message with a ping in the middle, then
    // an unmasked frame, a reserved opcode, a bad close code.
    scenarios.push((
        "hostile-frames".into(),
        conn(vec![
            Op::HostileFrame { to: S, b0: 0x01, flags: 0, key: MASK, payload: Payload::Raw(b"frag".to_vec()) },
            Op::HostileFrame { to: S, b0: 0x89, flags: 0, key: MASK, payload: Payload::Raw(b"p".to_vec()) },
            Op::HostileFrame { to: S, b0: 0x80, flags: 2, key: MASK, payload: Payload::Raw(b"ment".to_vec()) },
            Op::HostileFrame { to: C, b0: 0x88, flags: 0, key: MASK, payload: Payload::Raw(vec![0x03, 0xed]) },
            Op::HostileFrame { to: S, b0: 0x83, flags: 0, key: MASK, payload: Payload::Raw(vec![]) },
            Op::Pump,
        ]),
    ));
    scenarios.push((
        "eof-mid-frame".into(),
        conn(vec![
            Op::Send { side: C, text: false, payload: Payload::Repeat { len: 1000, byte: 7 } },
            Op::Deliver { to: S, max: 10, vectored: false },
            Op::Eof { side: C },
            Op::Eof { side: S },
            Op::Pump,
        ]),
    ));
    // Real traffic fed raw: what each client sent, to the server, and
    // what the server sent, to the client, in 125-byte pieces.
    for (name, c2s, s2c) in captured {
        let mut ops = Vec::new();
        for (to, sender, stream) in [(S, Role::Client, c2s), (C, Role::Server, s2c)] {
            let frames = cut_frames(sender, split_head(stream).1);
            for piece in frames.chunks(125).take(8) {
                ops.push(Op::Hostile { to, payload: Payload::Raw(piece.to_vec()) });
            }
        }
        ops.push(Op::Pump);
        scenarios.push((format!("{name}-raw"), conn(ops)));
    }

    // The same traffic with permessage-deflate: shared (no context either
    // way, everything compressed), dedicated (context both ways) with
    // small windows, and a server window of 8 (the server sends plain).
    let deflated: Vec<(String, ConnInput)> = scenarios
        .iter()
        .filter(|(name, _)| ["echo", "chat", "large-messages", "message-too-big", "backpressure-drop"].contains(&name.as_str()))
        .flat_map(|(name, input)| {
            [("shared", 0xf0u8, 0x00u8), ("dedicated", 0x10, 0x55), ("window8", 0x90, 0xe8)].map(|(mode, s, c)| {
                let mut input = input.clone();
                input.server.flags = (input.server.flags & 0x0f) | s;
                input.client.flags = (input.client.flags & 0x0f) | (c & 0xf0);
                (format!("{name}-deflate-{mode}"), input)
            })
        })
        .collect();
    scenarios.extend(deflated);
    // Context kept both ways, every message compressed (threshold 0),
    // level 6: an empty message between two others must not desynchronize
    // the kept contexts (zlib writes nothing for an empty sync flush).
    let mut empty = conn(vec![text(C, "hello"), text(C, ""), text(C, "hello"), text(S, ""), text(S, "hello"), Op::Pump]);
    empty.server.flags |= 0x90;
    empty.mask_seed |= 6 << 60;
    scenarios.push(("empty-deflate-takeover".into(), empty));

    for (name, input) in scenarios {
        let bytes = input.encode();
        assert_eq!(ConnInput::parse(&bytes).as_ref(), Some(&input), "{name} does not parse back");
        seeds.add(&name, &bytes);
    }
    seeds.count
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let captured = traffic(&root);
    let counts = [
        ("frame_decode", frame_seeds(&root, &captured)),
        ("handshake_request", request_seeds(&root, &captured)),
        ("handshake_response", response_seeds(&root, &captured)),
        ("connection", connection_seeds(&root, &captured)),
        ("inflate", inflate_seeds(&root)),
    ];
    // Inputs the fuzzer found, kept verbatim: seedgen/found/<target>/.
    for target in blaze_fuzz::TARGETS {
        let Ok(entries) = fs::read_dir(root.join("seedgen").join("found").join(target)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            fs::copy(&path, root.join("seeds").join(target).join(path.file_name().unwrap())).unwrap();
        }
    }
    // Every seed passes its own harness.
    for (target, count) in counts {
        let dir = root.join("seeds").join(target);
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let data = fs::read(&path).unwrap();
            println!("checking {}", path.display());
            blaze_fuzz::run_target(target, &data);
        }
        println!("{target}: {count} seeds");
    }
    let _ = CLIENT_KEY;
}
