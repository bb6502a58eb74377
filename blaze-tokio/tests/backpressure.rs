//! A client that stops reading is cut off by its backpressure policy
//! alone: the others keep receiving everything, and what the server
//! queues for the slow one stays under the bound.
//!
//! Behaviour, not deadlines: no test here bounds how long a broadcast
//! takes over loopback on a loaded machine (every wait is bounded only
//! against a hang). That a slow consumer costs the others nothing in time
//! is asserted on virtual time by the turmoil simulation
//! `sim-tests/tests/scenarios/slow_consumer.rs`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blaze_tokio::{App, BackpressurePolicy, Callbacks, Message, WsConfig, WsError};
use common::*;

const LIMIT: usize = 256 * 1024;

/// Serves with a fixed 64 KiB kernel send buffer per connection (inherited
/// from the listening socket): Linux would otherwise autotune it to
/// megabytes and hide a stalled reader's backlog in the kernel.
async fn serve_small_sndbuf(app: &App) -> std::net::SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(64 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1024).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    tokio::spawn(async move { app.serve(listener).await });
    addr
}

/// Opens a WebSocket by hand, with a small receive buffer, and never reads
/// from it again.
fn stalled_client(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    // Only for the 101 below (reads after it are by `drain_until_close`,
    // with its own timeout): a server that never answers fails the test.
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut stream = stream;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    // The 101 response, up to its blank line and not a byte further (its
    // length depends on the headers).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("the 101 response");
        head.push(byte[0]);
        assert!(head.len() < 4096, "no end of the response head");
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// Reads frames until a close frame; returns its code.
fn drain_until_close(mut stream: TcpStream) -> u16 {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut decoder = blaze_proto::frame::FrameDecoder::new(blaze_proto::Role::Client, usize::MAX);
    let mut buf = blaze_proto::bytes::BytesMut::new();
    let mut chunk = [0u8; 65536];
    loop {
        while let Some(frame) = decoder.decode(&mut buf).expect("valid frames") {
            if frame.header.opcode == blaze_proto::frame::OpCode::Close {
                return u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
            }
        }
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "EOF before a close frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_client_is_closed_with_1008_while_the_others_receive_everything() {
    // 199 readers of 800 KB each: enough to show one stalled client does
    // not hold the others back, without pushing ~800 MB through a debug
    // build (160 MB here). Both ends of every connection live in this process.
    const READERS: usize = 199;
    ensure_fd_limit(2 * (READERS as u64 + 1) + 100);
    let app = App::new();
    // The stalled client reads again only after the whole broadcast, which
    // can take longer than the default close and write timeouts on a busy
    // machine; those would (rightly) drop it before it sees its 1008.
    app.config(
        WsConfig::default()
            .max_backpressure(LIMIT)
            .close_timeout(Duration::from_secs(120))
            .write_timeout(Some(Duration::from_secs(120))),
    );
    app.ws("/feed", Callbacks::new());
    let addr = serve_small_sndbuf(&app).await;

    let stalled = blocking(move || stalled_client(addr, "/feed")).await;
    let mut readers = Vec::new();
    for _ in 0..READERS {
        readers.push(blaze_tokio::connect(&format!("ws://{addr}/feed")).await.unwrap());
    }
    assert!(eventually(Duration::from_secs(30), || app.connection_count("/feed") == READERS + 1).await);
    let stalled_id = app.connections("/feed").into_iter().map(|c| c.id).min().unwrap();
    let stalled_ws = app.connection(stalled_id).unwrap();

    const MESSAGES: usize = 800;
    let payload = "x".repeat(1000);
    let readers: Vec<_> = readers
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                for i in 0..MESSAGES {
                    let msg = recv_within_for(&mut ws, Duration::from_secs(20)).await;
                    let text = msg.and_then(|m| m.as_text().map(str::to_owned)).expect("a message");
                    assert!(text.starts_with(&format!("{i}:")), "out of order: {i} vs {}", &text[..10]);
                }
                ws // kept open until the end of the test
            })
        })
        .collect();

    // The publisher goes as fast as the healthy readers drain (it never
    // lets their queues pass half the bound, however loaded the machine):
    // only the stalled client can hit the limit.
    let healthy: Vec<_> = app
        .connections("/feed")
        .into_iter()
        .filter(|c| c.id != stalled_id)
        .filter_map(|c| app.connection(c.id))
        .collect();
    let broadcaster = app.clone();
    let watched = stalled_ws.clone();
    let max_queued = tokio::spawn(async move {
        let mut max_queued = 0;
        // The first message after which the stalled client was found cut off.
        let mut cut_off_after = None;
        for i in 0..MESSAGES {
            let waiting = Instant::now();
            while healthy.iter().map(|ws| ws.buffered_amount()).max().unwrap_or(0) > LIMIT / 2 {
                assert!(waiting.elapsed() < Duration::from_secs(30), "a healthy reader stopped draining at message {i}");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            broadcaster.broadcast("/feed", format!("{i}:{payload}")).unwrap();
            max_queued = max_queued.max(watched.buffered_amount());
            if cut_off_after.is_none() && !watched.is_open() {
                cut_off_after = Some(i);
            }
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        (max_queued, cut_off_after)
    })
    .await
    .unwrap();
    let (max_queued, cut_off_after) = max_queued;
    let mut still_open = Vec::new();
    for reader in readers {
        still_open.push(reader.await.unwrap());
    }
    // Cut off while the broadcast was still going, and every other reader
    // got every message, in order, all the same (each reader's waits are
    // bounded, 20 s a message, only against a hang).
    assert!(cut_off_after.is_some_and(|i| i + 1 < MESSAGES), "the stalled client was not cut off during the broadcast");
    assert_eq!(still_open.len(), READERS);
    assert!(max_queued <= LIMIT + 1100, "queued {max_queued} bytes for the stalled client");
    assert!(!stalled_ws.is_open());
    assert_eq!(blocking(move || drain_until_close(stalled)).await, 1008);
    assert!(eventually(Duration::from_secs(30), || app.connection_count("/feed") == READERS).await);
    assert!(still_open.iter().all(|ws| ws.is_open()), "a healthy reader was closed");
    assert!(app.connection(stalled_id).is_none());
    drop(still_open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_policy_keeps_the_connection_and_reports_on_error() {
    let dropped = Arc::new(Mutex::new(0usize));
    let app = App::new();
    app.config(WsConfig::default().max_backpressure(LIMIT).backpressure_policy(BackpressurePolicy::Drop));
    let seen = dropped.clone();
    app.ws(
        "/feed",
        Callbacks::new().on_error(move |_ws, error| {
            if let WsError::Dropped { .. } = error {
                *seen.lock().unwrap() += 1;
            }
        }),
    );
    let (addr, _server) = serve(&app).await;
    let stalled = blocking(move || stalled_client(addr, "/feed")).await;
    assert!(eventually(Duration::from_secs(2), || app.connection_count("/feed") == 1).await);
    let ws = app.connections("/feed")[0].id;
    let ws = app.connection(ws).unwrap();
    let payload = "y".repeat(10_000);
    for _ in 0..2000 {
        let _ = app.broadcast("/feed", payload.as_str());
        assert!(ws.buffered_amount() <= LIMIT + payload.len() + 16);
        tokio::task::yield_now().await;
    }
    assert!(eventually(Duration::from_secs(2), || *dropped.lock().unwrap() > 0).await);
    assert!(ws.is_open(), "the drop policy keeps the connection");
    drop(stalled);
    let _ = Message::text("");
}
